// The migrations are embedded in the binary (src/db/migrations.rs): rebuild when one is
// added or changed, not only when a source file is.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
