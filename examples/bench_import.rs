//! Import benchmark (not a test): `cargo run --release --example bench_import`.
//!
//! 1. A `server` process takes `POST /import/clients.csv` of 100,000 and of 1,000,000 lines
//!    (~60 MB): seconds to upload (the COPY), seconds until the job is DONE, lines per
//!    second, and the server's peak memory (VmHWM) for each file, a fresh process each, so
//!    the two peaks show whether memory grows with the file.
//! 2. Over the million clients: `audienceSize` as the mailing editor asks it (median of 5
//!    over HTTP) for all clients, a tag, a segment on an attribute (EQ and EXISTS, answered
//!    by the attributes' GIN index), a numeric GT (a scan) and a mix; and the plan of the
//!    attribute segment's count.
//!
//! Settings (environment): BENCH_DATABASE_URL (a server where databases may be created;
//! default postgres://postgres@127.0.0.1:5432/postgres), SERVER_BIN (target/release/server),
//! BENCH_LINES (default 100000,1000000).

#[path = "support/process.rs"]
mod process;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use process::{free_port, peak_memory_kib};
use serde_json::{Value, json};

const OWNER: &str = "00000000-0000-0000-0000-000000000001";
const TOKEN: &str = "bench-token-not-secret";

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

/// A fresh database with the schema, one user and a session for `TOKEN`.
async fn fresh_database(admin: &str, name: &str) -> anyhow::Result<String> {
    let mut conn = AsyncPgConnection::establish(admin).await?;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    let mut url = url::Url::parse(admin)?;
    url.set_path(name);
    let url = url.to_string();
    mailwarm::db::migrations::run_pending(&url).await?;
    let mut conn = AsyncPgConnection::establish(&url).await?;
    diesel::sql_query(format!(
        "INSERT INTO users (id, email, full_name, password_hash, email_verified_at) \
         VALUES ('{OWNER}', 'bench@example.com', 'Bench', 'x', now())"
    ))
    .execute(&mut conn)
    .await?;
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(TOKEN.as_bytes()));
    diesel::sql_query(format!(
        "INSERT INTO sessions (user_id, token_hash, expires_at) VALUES \
         ('{OWNER}', decode('{hash}', 'hex'), now() + interval '1 day')"
    ))
    .execute(&mut conn)
    .await?;
    Ok(url)
}

async fn start_server(database_url: &str) -> anyhow::Result<Server> {
    let server = std::env::var("SERVER_BIN").unwrap_or_else(|_| "target/release/server".to_owned());
    let port = free_port();
    let data = std::env::temp_dir().join(format!("mailwarm-bench-import-{port}"));
    let child = Command::new(server)
        .env("DATABASE_URL", database_url)
        .env("DATA_DIR", &data)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let server = Server { child, port };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .map_or(true, |r| !r.status().is_success())
    {
        anyhow::ensure!(Instant::now() < deadline, "the server did not get ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(server)
}

/// Line i of the file: every tenth client tagged `ten`, every tenth on plan `pro`.
fn write_csv(path: &std::path::Path, lines: usize) -> anyhow::Result<u64> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "email,full_name,comment,tags,plan,seats,city")?;
    for i in 0..lines {
        let plan = if i % 10 == 3 { "pro" } else { "free" };
        let tags = if i % 10 == 0 { "ten" } else { "" };
        writeln!(
            out,
            "client-{i}@example-{}.com,Client Number {i},\"imported, line {i}\",{tags},{plan},{},City {}",
            i % 97,
            i % 500,
            i % 1000
        )?;
    }
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

async fn gql(http: &reqwest::Client, port: u16, query: &str, variables: Value) -> anyhow::Result<Value> {
    let reply: Value = http
        .post(format!("http://127.0.0.1:{port}/graphql"))
        .bearer_auth(TOKEN)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(reply["errors"].is_null(), "{reply}");
    Ok(reply["data"].clone())
}

/// Uploads `lines` lines into a fresh database and server; returns the database's URL and
/// the port of the server, still running, for the audience measurements.
async fn import(admin: &str, lines: usize) -> anyhow::Result<(String, Server)> {
    let url = fresh_database(admin, "mailwarm_bench_import").await?;
    let server = start_server(&url).await?;
    let pid = server.child.id();
    let idle = peak_memory_kib(pid);
    let path = std::env::temp_dir().join(format!("mailwarm-bench-{lines}.csv"));
    let bytes = write_csv(&path, lines)?;
    let body = std::fs::read(&path)?;
    let http = reqwest::Client::new();
    let started = Instant::now();
    let reply = http
        .post(format!("http://127.0.0.1:{}/import/clients.csv", server.port))
        .bearer_auth(TOKEN)
        .header("content-type", "text/csv")
        .body(body)
        .send()
        .await?;
    anyhow::ensure!(reply.status().as_u16() == 202, "upload: {}", reply.text().await?);
    let job = reply.json::<Value>().await?["importJob"].as_str().unwrap().to_owned();
    let uploaded = started.elapsed();
    let mut last_print = Instant::now();
    let done = loop {
        let data = gql(
            &http,
            server.port,
            "query($id: ID!) { importJob(id: $id) { status total processed created updated errorCount failure } }",
            json!({ "id": job }),
        )
        .await?;
        let job = data["importJob"].clone();
        if job["status"] == "DONE" || job["status"] == "FAILED" {
            break job;
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            eprintln!("  … {} of {} lines", job["processed"], job["total"]);
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let total = started.elapsed();
    anyhow::ensure!(done["status"] == "DONE", "{done}");
    println!(
        "| import {lines} lines ({:.0} MB) | upload (COPY) {:.1} s, done after {:.1} s: {:.0} lines/s; created {}, errors {}; server peak {} MiB (idle {} MiB) |",
        bytes as f64 / 1e6,
        uploaded.as_secs_f64(),
        total.as_secs_f64(),
        lines as f64 / total.as_secs_f64(),
        done["created"],
        done["errorCount"],
        peak_memory_kib(pid) / 1024,
        idle / 1024,
    );
    let _ = std::fs::remove_file(&path);
    Ok((url, server))
}

async fn audience_sizes(url: &str, server: &Server) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let tag = gql(&http, server.port, "{ tags { id name } }", json!({})).await?["tags"][0]["id"].clone();
    let condition = |field: &str, op: &str, value: Option<&str>| json!({ "match": "ALL", "conditions": [{ "field": field, "op": op, "value": value }] });
    let cases = [
        ("all clients", json!({ "allClients": true })),
        ("tag `ten`", json!({ "tagIds": [tag] })),
        (
            "segment plan EQ pro",
            json!({ "segment": condition("attributes.plan", "EQ", Some("pro")) }),
        ),
        (
            "segment city EQ \"City 7\"",
            json!({ "segment": condition("attributes.city", "EQ", Some("City 7")) }),
        ),
        (
            "segment seats EXISTS",
            json!({ "segment": condition("attributes.seats", "EXISTS", None) }),
        ),
        (
            "segment seats GT 490 (a scan)",
            json!({ "segment": condition("attributes.seats", "GT", Some("490")) }),
        ),
        (
            "tag `ten` or plan EQ pro",
            json!({ "tagIds": [tag], "segment": condition("attributes.plan", "EQ", Some("pro")) }),
        ),
    ];
    for (name, audience) in cases {
        let mut times = Vec::new();
        let mut size = Value::Null;
        for _ in 0..5 {
            let started = Instant::now();
            let data = gql(
                &http,
                server.port,
                "query($a: AudienceInput!) { audienceSize(audience: $a) }",
                json!({ "a": audience }),
            )
            .await?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            size = data["audienceSize"].clone();
        }
        times.sort_by(f64::total_cmp);
        println!("| audienceSize: {name} | {size} clients, median {:.1} ms |", times[2]);
    }
    // The plan of the attribute segment's count, as `audience::members` writes it.
    #[derive(diesel::QueryableByName)]
    struct Line {
        #[diesel(sql_type = Text)]
        #[diesel(column_name = "QUERY PLAN")]
        line: String,
    }
    let mut conn = AsyncPgConnection::establish(url).await?;
    let plan: Vec<Line> = diesel::sql_query(format!(
        "EXPLAIN (ANALYZE, COSTS OFF) SELECT count(*) FROM clients WHERE clients.owner_id = '{OWNER}' \
         AND clients.deleted_at IS NULL AND clients.unsubscribed_at IS NULL \
         AND (clients.attributes @> '{{\"plan\": \"pro\"}}'::jsonb)"
    ))
    .load(&mut conn)
    .await?;
    for line in plan {
        println!("    {}", line.line);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let admin = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let sizes: Vec<usize> = std::env::var("BENCH_LINES")
        .unwrap_or_else(|_| "100000,1000000".to_owned())
        .split(',')
        .map(|n| n.trim().parse().expect("BENCH_LINES: numbers"))
        .collect();
    println!("| measure | figure |\n| --- | --- |");
    let mut last = None;
    for lines in sizes {
        drop(last.take()); // the previous server stops before its database is dropped
        last = Some(import(&admin, lines).await?);
    }
    if let Some((url, server)) = last {
        audience_sizes(&url, &server).await?;
    }
    Ok(())
}
