//! The committed SDL is what the server serves.

#[test]
fn graphql_schema_file_is_up_to_date() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/graphql/schema.graphql")).unwrap();
    let current = mailwarm::graphql::sdl();
    assert!(
        committed == current,
        "graphql/schema.graphql is stale: run `cargo run --bin server -- export-schema > graphql/schema.graphql`"
    );
}
