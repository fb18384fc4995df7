//! Dispatch benchmark (not a test): run by `bash bench/dispatch.sh`, which starts Postfix's
//! smtp-sink and measures smtp-source against it first.
//!
//! 1. Throughput: deliveries/s from `server --dispatch-only` processes (1 and 3) into the
//!    sink, 10,000 recipients, and peak memory per process (1,000 vs 10,000 recipients).
//! 2. Latency: `createMailing` over HTTP → the first message accepted by the sink (median, p99).
//! 3. The log at scale: the API's reads of one mailing's log, with 10,000 rows in the tables
//!    and with BENCH_LOG_ROWS (1,000,000) more; the claim's plan beside them; LOG_RETENTION's
//!    chunked delete there.
//! 4. With BENCH_SHARED_LIMIT=N (and nothing else, `bash bench/senders.sh`): a server
//!    limited to N per second shared by 1 and by 3 instances, BENCH_RECIPIENTS (1,000)
//!    messages into a sink that dumps each message to a file in BENCH_SINK_DUMP: the most
//!    the sink took in any calendar second and in any sliding second (files' times), and the
//!    rate over the run.
//!
//! Settings (environment): BENCH_DATABASE_URL (a server where databases may be created;
//! default postgres://postgres@127.0.0.1:5432/postgres), BENCH_SMTP_URL (the sink),
//! SERVER_BIN (target/release/server), BENCH_SMTP_SOURCE (Postfix's smtp-source: then its rate
//! is measured just before each throughput run and the ratio printed), BENCH_MESSAGE=html
//! (send the newsletter of examples/support/newsletter.rs instead of a one-line text).

#[path = "support/newsletter.rs"]
mod newsletter;
#[path = "support/process.rs"]
mod process;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use process::{free_port, peak_memory_kib};

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(diesel::QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

struct Bench {
    admin: String,
    smtp: String,
    server: String,
}

impl Bench {
    fn url(&self, database: &str) -> String {
        let mut url = url::Url::parse(&self.admin).unwrap();
        url.set_path(database);
        url.to_string()
    }

    async fn fresh_database(&self, name: &str) -> anyhow::Result<String> {
        let mut admin = AsyncPgConnection::establish(&self.admin).await?;
        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await?;
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        let url = self.url(name);
        mailwarm::db::migrations::run_pending(&url).await?;
        if let Ok(sql) = std::env::var("BENCH_EXPERIMENT_SQL") {
            let mut conn = AsyncPgConnection::establish(&url).await?;
            diesel_async::SimpleAsyncConnection::batch_execute(&mut conn, &sql).await?;
        }
        Ok(url)
    }

    async fn drop_database(&self, name: &str) {
        if let Ok(mut admin) = AsyncPgConnection::establish(&self.admin).await {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await;
        }
    }

    fn spawn(&self, database_url: &str, args: &[&str], log: &str, port: u16) -> Child {
        Command::new(&self.server)
            .args(args)
            .env("DATABASE_URL", database_url)
            .env("SMTP_URL", &self.smtp)
            .env(
                "SMTP_CONCURRENCY",
                std::env::var("BENCH_CONCURRENCY").unwrap_or_else(|_| "8".into()),
            )
            .env("DISPATCH_BATCH", "500")
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn,mailwarm::server=info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("SERVER_BIN runs")
    }
}

async fn wait_for_log(path: &str, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(path).unwrap_or_default().contains(needle) {
        assert!(Instant::now() < deadline, "no `{needle}` in {path}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An owner, a message, `recipients` clients; a ONCE mailing due now when `schedule`.
async fn seed(conn: &mut AsyncPgConnection, recipients: i64) -> anyhow::Result<()> {
    diesel::sql_query(
        "INSERT INTO users (id, email, full_name, password_hash, email_verified_at) \
         VALUES ('00000000-0000-0000-0000-000000000001', 'bench@example.com', 'Bench', 'x', now())",
    )
    .execute(conn)
    .await?;
    if std::env::var("BENCH_MESSAGE").as_deref() == Ok("html") {
        // The newsletter of examples/bench_render.rs: HTML in a layout with a stylesheet.
        diesel::sql_query(
            "INSERT INTO layouts (id, owner_id, name, html) VALUES ('00000000-0000-0000-0000-000000000005', \
             '00000000-0000-0000-0000-000000000001', 'Bench', $1)",
        )
        .bind::<diesel::sql_types::Text, _>(newsletter::LAYOUT)
        .execute(conn)
        .await?;
        diesel::sql_query(
            "INSERT INTO messages (id, owner_id, subject, body, format, layout_id) VALUES \
             ('00000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000001', $1, $2, 'html', \
             '00000000-0000-0000-0000-000000000005')",
        )
        .bind::<diesel::sql_types::Text, _>(newsletter::SUBJECT)
        .bind::<diesel::sql_types::Text, _>(newsletter::BODY)
        .execute(conn)
        .await?;
    } else {
        diesel::sql_query(
            "INSERT INTO messages (id, owner_id, subject, body) VALUES ('00000000-0000-0000-0000-000000000002', \
             '00000000-0000-0000-0000-000000000001', 'Benchmark', 'Hello {{full_name}}, this is a benchmark.')",
        )
        .execute(conn)
        .await?;
    }
    diesel::sql_query(
        "INSERT INTO clients (owner_id, email, full_name) SELECT '00000000-0000-0000-0000-000000000001', \
         'client' || i || '@example.com', 'Client ' || i FROM generate_series(1, $1) AS i",
    )
    .bind::<BigInt, _>(recipients)
    .execute(conn)
    .await?;
    Ok(())
}

/// A ONCE mailing of every client, due a day from now: created before a measurement starts,
/// so that the benchmark's own insert of its recipients is not counted as dispatching.
async fn create_mailing(conn: &mut AsyncPgConnection) -> anyhow::Result<()> {
    diesel::sql_query(
        "WITH m AS (INSERT INTO mailings (owner_id, message_id, starts_at, periodicity, next_run_at) \
             VALUES ('00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000002', \
                     now() + interval '1 day', 'once', now() + interval '1 day') \
             RETURNING id) \
         INSERT INTO mailing_clients (mailing_id, client_id) SELECT m.id, c.id FROM m, clients c",
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The mailing falls due now, and the dispatchers are told (as a run falling due at its
/// time wakes them: the timer, or a notice).
async fn make_due(conn: &mut AsyncPgConnection) -> anyhow::Result<()> {
    diesel::sql_query("UPDATE mailings SET starts_at = now(), next_run_at = now()")
        .execute(conn)
        .await?;
    diesel::sql_query("SELECT pg_notify('mailwarm_events', '{\"kind\":\"wake\"}')")
        .execute(conn)
        .await?;
    Ok(())
}

/// The numeric fields of /proc/PID/stat from the third on (after the command name, which
/// is in parentheses and may hold spaces); the state letter reads as 0.
fn stat_fields(pid: u32) -> Vec<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect())
        .unwrap_or_default()
}

/// CPU seconds (user + system) in stat fields, and of the reaped children when `children`.
fn cpu_seconds_of(fields: &[u64], children: bool) -> f64 {
    let at = |i: usize| fields.get(i).copied().unwrap_or(0);
    // utime, stime, cutime, cstime are fields 14-17 of stat(5); `fields` starts at field 3.
    let ticks = at(11) + at(12) + if children { at(13) + at(14) } else { 0 };
    ticks as f64 / 100.0
}

fn cpu_seconds(pid: u32) -> f64 {
    cpu_seconds_of(&stat_fields(pid), false)
}

/// CPU seconds used so far by PostgreSQL: every live postgres process, plus the backends
/// that have exited (counted in the postmaster's children: the postgres process whose
/// parent is init).
fn postgres_cpu_seconds() -> f64 {
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != "postgres" {
            continue;
        }
        let fields = stat_fields(pid);
        let is_postmaster = fields.get(1) == Some(&1);
        total += cpu_seconds_of(&fields, is_postmaster);
    }
    total
}

/// Server processes, stopped (SIGTERM) however the benchmark ends.
struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        }
    }
}

/// Deliveries per second for `instances` dispatchers and `recipients` recipients.
/// What one throughput run measured.
struct Throughput {
    rate: f64,
    memory_kib: u64,
    /// CPU microseconds per delivery, PostgreSQL's and the dispatchers'.
    postgres_us: f64,
    dispatcher_us: f64,
    /// From the run's start to its first message sent, and to its last delivery written
    /// (a run is written in chunks and sends from its first).
    first_sent_ms: f64,
    written_s: f64,
}

async fn throughput(bench: &Bench, instances: usize, recipients: i64) -> anyhow::Result<Throughput> {
    let name = format!("bench_throughput_{instances}_{recipients}");
    let url = bench.fresh_database(&name).await?;
    let mut conn = AsyncPgConnection::establish(&url).await?;
    seed(&mut conn, recipients).await?;
    create_mailing(&mut conn).await?;
    let children = dispatchers(bench, &url, instances).await;

    let cpu = |children: &Servers| children.0.iter().map(|c| cpu_seconds(c.id())).sum::<f64>();
    let (postgres_before, dispatcher_before) = (postgres_cpu_seconds(), cpu(&children));
    // From the moment the run falls due to its last delivery: expanding the run, claiming,
    // sending, recording.
    let started = Instant::now();
    make_due(&mut conn).await?;
    wait_run_done(
        &mut conn,
        started,
        Duration::from_secs(300.max(recipients as u64 / 1000)),
    )
    .await?;
    let elapsed = started.elapsed().as_secs_f64();
    let postgres_us = (postgres_cpu_seconds() - postgres_before) * 1e6 / recipients as f64;
    let dispatcher_us = (cpu(&children) - dispatcher_before) * 1e6 / recipients as f64;
    let sent: Count = diesel::sql_query("SELECT count(*) AS n FROM deliveries WHERE status = 'sent'")
        .get_result(&mut conn)
        .await?;
    anyhow::ensure!(sent.n == recipients, "{} of {recipients} sent", sent.n);
    #[derive(diesel::QueryableByName)]
    struct Timeline {
        #[diesel(sql_type = diesel::sql_types::Double)]
        first_sent_ms: f64,
        #[diesel(sql_type = diesel::sql_types::Double)]
        written_s: f64,
    }
    let timeline: Timeline = diesel::sql_query(
        "SELECT (extract(epoch FROM (SELECT min(sent_at) FROM deliveries) - r.created_at) * 1000)::float8 AS first_sent_ms, \
             extract(epoch FROM (SELECT max(created_at) FROM deliveries) - r.created_at)::float8 AS written_s \
         FROM runs r LIMIT 1",
    )
    .get_result(&mut conn)
    .await?;
    let memory = children.0.iter().map(|c| peak_memory_kib(c.id())).max().unwrap_or(0);
    drop(children);
    drop(conn);
    bench.drop_database(&name).await;
    Ok(Throughput {
        rate: recipients as f64 / elapsed,
        memory_kib: memory,
        postgres_us,
        dispatcher_us,
        first_sent_ms: timeline.first_sent_ms,
        written_s: timeline.written_s,
    })
}

/// `instances` `server --dispatch-only` processes on `url`, each up and dispatching.
async fn dispatchers(bench: &Bench, url: &str, instances: usize) -> Servers {
    let logs: Vec<String> = (0..instances).map(|i| format!("/tmp/mailwarm-bench-{i}.log")).collect();
    let children = Servers(
        logs.iter()
            .map(|log| bench.spawn(url, &["--dispatch-only"], log, free_port()))
            .collect(),
    );
    for log in &logs {
        wait_for_log(log, "dispatching").await;
    }
    children
}

/// Until the one run is done. Polls the run's row (cheap), not the deliveries: the
/// benchmark must not load the database.
async fn wait_run_done(conn: &mut AsyncPgConnection, started: Instant, within: Duration) -> anyhow::Result<()> {
    loop {
        let done: Count = diesel::sql_query("SELECT count(*) AS n FROM runs WHERE status = 'done'")
            .get_result(conn)
            .await?;
        if done.n > 0 {
            return Ok(());
        }
        anyhow::ensure!(started.elapsed() < within, "the run did not finish in {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

struct Limited {
    elapsed: f64,
    rate: f64,
    max_calendar: usize,
    max_sliding: usize,
}

/// `recipients` messages from `instances` dispatchers through one server limited to
/// `limit` a second (an identity allowed that server alone), timed by the sink's dump files.
async fn shared_limit(
    bench: &Bench,
    instances: usize,
    recipients: i64,
    limit: i32,
    dump: &std::path::Path,
) -> anyhow::Result<Limited> {
    let name = format!("bench_limit_{instances}");
    let url = bench.fresh_database(&name).await?;
    let mut conn = AsyncPgConnection::establish(&url).await?;
    seed(&mut conn, recipients).await?;
    create_mailing(&mut conn).await?;
    diesel::sql_query(
        "WITH s AS (INSERT INTO smtp_servers (name, url, host, priority, per_second) \
                    VALUES ('limited', $1, 'sink', 1, $2) RETURNING id), \
              i AS (INSERT INTO sender_identities (name, email, allow_everyone) \
                    VALUES ('Bench', 'bench@example.com', true) RETURNING id), \
              l AS (INSERT INTO sender_identity_servers SELECT i.id, s.id FROM i, s) \
         UPDATE mailings SET sender_identity_id = (SELECT id FROM i)",
    )
    .bind::<Text, _>(&bench.smtp)
    .bind::<diesel::sql_types::Integer, _>(limit)
    .execute(&mut conn)
    .await?;
    for entry in std::fs::read_dir(dump)? {
        std::fs::remove_file(entry?.path())?;
    }
    let children = dispatchers(bench, &url, instances).await;
    let started = Instant::now();
    make_due(&mut conn).await?;
    wait_run_done(&mut conn, started, Duration::from_secs(600)).await?;
    let elapsed = started.elapsed().as_secs_f64();
    drop(children);
    drop(conn);
    bench.drop_database(&name).await;
    let mut times: Vec<f64> = std::fs::read_dir(dump)?
        .map(|entry| {
            let modified = entry?.metadata()?.modified()?;
            Ok(modified.duration_since(std::time::UNIX_EPOCH)?.as_secs_f64())
        })
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(
        times.len() as i64 == recipients,
        "the sink took {} of {recipients}",
        times.len()
    );
    times.sort_by(f64::total_cmp);
    let mut per_second = std::collections::HashMap::<u64, usize>::new();
    for t in &times {
        *per_second.entry(*t as u64).or_insert(0) += 1;
    }
    let mut max_sliding = 0;
    let mut from = 0;
    for to in 0..times.len() {
        while times[to] - times[from] >= 1.0 {
            from += 1;
        }
        max_sliding = max_sliding.max(to - from + 1);
    }
    Ok(Limited {
        elapsed,
        rate: recipients as f64 / elapsed,
        max_calendar: per_second.values().copied().max().unwrap_or(0),
        max_sliding,
    })
}

/// The sink's own rate, measured with Postfix's `smtp-source` (BENCH_SMTP_SOURCE, its path)
/// at the dispatchers' concurrency just before a throughput run: the machine's speed swings
/// within minutes, so a ratio is only fair against a rate measured beside it.
fn raw_rate(bench: &Bench) -> anyhow::Result<Option<f64>> {
    let Ok(source) = std::env::var("BENCH_SMTP_SOURCE") else {
        return Ok(None);
    };
    let sink = url::Url::parse(&bench.smtp)?;
    let target = format!(
        "{}:{}",
        sink.host_str().unwrap_or("127.0.0.1"),
        sink.port().unwrap_or(25)
    );
    let sessions = std::env::var("BENCH_CONCURRENCY").unwrap_or_else(|_| "8".into());
    let messages = 40_000;
    let started = Instant::now();
    let status = Command::new(source)
        .args(["-d", "-s", &sessions, "-m", &messages.to_string(), &target])
        .status()?;
    anyhow::ensure!(status.success(), "smtp-source failed: {status}");
    Ok(Some(f64::from(messages) / started.elapsed().as_secs_f64()))
}

/// A session for the API as the benchmark's owner (the token's SHA-256 is what the server
/// stores); returns the token.
async fn api_session(conn: &mut AsyncPgConnection) -> anyhow::Result<&'static str> {
    let token = "bench-token-not-secret";
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()));
    diesel::sql_query(format!(
        "INSERT INTO sessions (user_id, token_hash, expires_at) VALUES \
         ('00000000-0000-0000-0000-000000000001', decode('{hash}', 'hex'), now() + interval '1 day')"
    ))
    .execute(conn)
    .await?;
    Ok(token)
}

/// One GraphQL request to the server on `port`.
async fn graphql(
    http: &reqwest::Client,
    port: u16,
    token: &str,
    body: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    Ok(http
        .post(format!("http://127.0.0.1:{port}/graphql"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await?
        .json()
        .await?)
}

/// createMailing over HTTP → the first message accepted by the sink, `samples` times.
async fn latency(bench: &Bench, samples: usize) -> anyhow::Result<Vec<f64>> {
    let name = "bench_latency";
    let url = bench.fresh_database(name).await?;
    let mut conn = AsyncPgConnection::establish(&url).await?;
    seed(&mut conn, 1).await?;
    let token = api_session(&mut conn).await?;
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = Text)]
        id: String,
    }
    let client: Id = diesel::sql_query("SELECT id::text FROM clients LIMIT 1")
        .get_result(&mut conn)
        .await?;
    let port = free_port();
    let log = "/tmp/mailwarm-bench-api.log";
    let children = Servers(vec![bench.spawn(&url, &[], log, port)]);
    wait_for_log(log, "dispatching").await;
    wait_for_log(log, "listening").await;
    tokio::time::sleep(Duration::from_millis(500)).await; // the event listener is up

    let http = reqwest::Client::new();
    let mut latencies = Vec::new();
    for _ in 0..samples {
        let body = serde_json::json!({
            "query": "mutation($i: MailingInput!) { createMailing(input: $i) { id } }",
            "variables": { "i": {
                "startsAt": (chrono::Utc::now() - chrono::TimeDelta::seconds(1)).to_rfc3339(),
                "periodicity": "ONCE",
                "messageId": "00000000-0000-0000-0000-000000000002",
                "clientIds": [client.id],
            } }
        });
        let reply = graphql(&http, port, token, &body).await?;
        let mailing = reply["data"]["createMailing"]["id"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("{reply}"))?
            .to_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            #[derive(diesel::QueryableByName)]
            struct Gap {
                #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Double>)]
                ms: Option<f64>,
            }
            let gap: Gap = diesel::sql_query(format!(
                "SELECT (extract(epoch FROM min(d.sent_at) - m.created_at) * 1000)::float8 AS ms \
                 FROM mailings m LEFT JOIN deliveries d ON d.mailing_id = m.id AND d.status = 'sent' \
                 WHERE m.id = '{mailing}' GROUP BY m.created_at"
            ))
            .get_result(&mut conn)
            .await?;
            if let Some(ms) = gap.ms {
                latencies.push(ms);
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "mailing {mailing} was not sent within 10 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    drop(children);
    drop(conn);
    bench.drop_database(name).await;
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

/// The API's reads of one mailing's log (10 runs of 1,000: 10,000 deliveries and attempts)
/// while the tables hold only them, and again after `rows` finished deliveries and as many
/// attempts of another mailing of the same owner (1,000 a run, spread over two years) are
/// added; then the claim's plan and time beside them, and what LOG_RETENTION's chunked
/// delete takes there. Returns the report's lines.
async fn log_at_scale(bench: &Bench, rows: i64) -> anyhow::Result<Vec<String>> {
    let name = "bench_log";
    let url = bench.fresh_database(name).await?;
    let mut conn = AsyncPgConnection::establish(&url).await?;
    seed(&mut conn, 1000).await?;
    let token = api_session(&mut conn).await?;
    // `runs` finished runs of a mailing, each of every client: a delivery and an attempt
    // each, one in twenty FAILED, the runs a day apart ending `ago`.
    let finished_runs = async |conn: &mut AsyncPgConnection, mailing: &str, runs: i64, ago: &str| {
        diesel_async::SimpleAsyncConnection::batch_execute(conn, &format!(
            "INSERT INTO mailings (id, owner_id, message_id, starts_at, periodicity) VALUES ('{mailing}', \
                 '00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000002', now(), 'daily') \
             ON CONFLICT DO NOTHING; \
             INSERT INTO runs (mailing_id, run_at, status, finished_at) \
             SELECT '{mailing}', now() - interval '{ago}' - i * interval '1 hour', 'done', \
                 now() - interval '{ago}' - i * interval '1 hour' FROM generate_series(1, {runs}) AS i; \
             INSERT INTO deliveries (run_id, mailing_id, owner_id, client_id, email, full_name, status, attempt_count, sent_at, created_at) \
             SELECT r.id, r.mailing_id, c.owner_id, c.id, c.email, c.full_name, \
                 CASE WHEN hashtext(c.email) % 20 = 0 THEN 'failed' ELSE 'sent' END, 1, r.run_at, r.run_at \
             FROM runs r CROSS JOIN clients c WHERE r.mailing_id = '{mailing}'; \
             INSERT INTO attempts (delivery_id, mailing_id, owner_id, email, attempt_number, attempted_at, status, server_response) \
             SELECT d.id, d.mailing_id, d.owner_id, d.email, 1, d.created_at, \
                 CASE d.status WHEN 'sent' THEN 'success' ELSE 'permanent_failure' END, '250 2.0.0 Ok: queued as 4F2A31C0D5' \
             FROM deliveries d WHERE d.mailing_id = '{mailing}'; \
             ANALYZE"
        ))
        .await
    };
    let measured = "00000000-0000-0000-0000-00000000000a";
    finished_runs(&mut conn, measured, 10, "1 minute").await?;

    let port = free_port();
    let log = "/tmp/mailwarm-bench-log.log";
    let server = Servers(vec![bench.spawn(&url, &[], log, port)]);
    wait_for_log(log, "listening").await;
    let http = reqwest::Client::new();
    let (from, to) = (chrono::Utc::now() - chrono::TimeDelta::days(30), chrono::Utc::now());
    let reads = [
        (
            "counts of the mailing",
            "query($m: ID!) { mailing(id: $m) { stats { sent failed unknown pending cancelled attempts lastAttemptAt } } }",
        ),
        (
            "counts of its runs",
            "query($m: ID!) { mailing(id: $m) { runs(first: 10) { totalCount nodes { total sent failed unknown pending cancelled } } } }",
        ),
        (
            "its FAILED deliveries, first page",
            "query($m: ID!) { mailing(id: $m) { deliveries(first: 50, status: FAILED) { totalCount nodes { email status } } } }",
        ),
        (
            "its attempt log, first page",
            "query($m: ID!) { mailing(id: $m) { attempts(first: 50) { totalCount nodes { email status attemptedAt serverResponse } } } }",
        ),
        (
            "the owner's daily statistics, 30 days",
            "query($from: DateTime!, $to: DateTime!) { dailyStats(from: $from, to: $to) { day attempts succeeded failed sent } }",
        ),
    ];
    // The median of 20 answers over HTTP, in milliseconds.
    let time_reads = async || -> anyhow::Result<Vec<f64>> {
        let mut medians = Vec::new();
        for (_, query) in &reads {
            let mut took = Vec::new();
            for _ in 0..20 {
                let body = serde_json::json!({ "query": query,
                    "variables": { "m": measured, "from": from.to_rfc3339(), "to": to.to_rfc3339() } });
                let started = Instant::now();
                let reply = graphql(&http, port, token, &body).await?;
                took.push(started.elapsed().as_secs_f64() * 1000.0);
                anyhow::ensure!(reply.get("errors").is_none(), "{reply}");
            }
            took.sort_by(f64::total_cmp);
            medians.push(took[took.len() / 2]);
        }
        Ok(medians)
    };
    let small = time_reads().await?;
    let started = Instant::now();
    finished_runs(
        &mut conn,
        "00000000-0000-0000-0000-00000000000b",
        rows / 1000,
        "30 days",
    )
    .await?;
    let loaded = started.elapsed().as_secs_f64();
    let large = time_reads().await?;
    drop(server);

    let mut report = vec![format!(
        "the API's reads of a mailing's log (10,000 deliveries and attempts), median of 20 over HTTP, \
         with only them in the tables and after adding {rows} finished deliveries and attempts ({loaded:.0} s to load):"
    )];
    for (((what, _), small), large) in reads.iter().zip(&small).zip(&large) {
        report.push(format!("  {what}: {small:.1} ms -> {large:.1} ms"));
    }

    // The claim beside them: 1,000 pending deliveries of a running run.
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut conn,
        "INSERT INTO runs (id, mailing_id, run_at, status) VALUES ('00000000-0000-0000-0000-000000000003', \
             '00000000-0000-0000-0000-00000000000a', now(), 'running'); \
         INSERT INTO deliveries (run_id, mailing_id, owner_id, client_id, email, full_name) \
         SELECT '00000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-00000000000a', owner_id, id, email, full_name \
         FROM clients; ANALYZE deliveries",
    )
    .await?;
    let sql = mailwarm::dispatch::queue::CLAIM_SQL
        .replace("$1", "'00000000-0000-0000-0000-0000000000ff'")
        .replace("$2", "60000000")
        .replace("$3", "500");
    // EXPLAIN cannot be a subquery: read its lines through a function.
    diesel::sql_query(format!(
        "CREATE OR REPLACE FUNCTION claim_plan() RETURNS SETOF text LANGUAGE plpgsql AS $f$ \
         DECLARE l text; BEGIN FOR l IN EXECUTE 'EXPLAIN {}' LOOP RETURN NEXT l; END LOOP; END $f$",
        sql.replace('\'', "''")
    ))
    .execute(&mut conn)
    .await?;
    let plan: Vec<Line> = diesel::sql_query("SELECT claim_plan AS line FROM claim_plan()")
        .load(&mut conn)
        .await?;
    let started = Instant::now();
    let claimed = diesel::sql_query(sql).execute(&mut conn).await?;
    report.push(format!(
        "claim of {claimed} beside them: {:.1} ms, plan:",
        started.elapsed().as_secs_f64() * 1000.0
    ));
    report.extend(plan.into_iter().map(|l| format!("  {}", l.line)));

    // LOG_RETENTION at 20 days: the added runs' log goes, 5,000 deliveries a statement.
    let mut chunks = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        mailwarm::deliveries::retention::drop_chunk(&mut conn, Duration::from_secs(20 * 86_400)).await?;
        chunks.push(format!("{:.0}", started.elapsed().as_secs_f64() * 1000.0));
    }
    report.push(format!(
        "LOG_RETENTION's delete of 5,000 old deliveries with their attempts, five in a row: {} ms",
        chunks.join(" / ")
    ));
    drop(conn);
    bench.drop_database(name).await;
    Ok(report)
}

/// BENCH_LOG_ROWS: the finished rows the log at scale adds (default 1,000,000).
fn log_rows() -> anyhow::Result<i64> {
    Ok(std::env::var("BENCH_LOG_ROWS").map_or(Ok(1_000_000), |n| n.parse())?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bench = Bench {
        admin: std::env::var("BENCH_DATABASE_URL")
            .or_else(|_| std::env::var("TEST_DATABASE_URL"))
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned()),
        smtp: std::env::var("BENCH_SMTP_URL").unwrap_or_else(|_| "smtp://127.0.0.1:25250".to_owned()),
        server: std::env::var("SERVER_BIN").unwrap_or_else(|_| "target/release/server".to_owned()),
    };
    if let Ok(limit) = std::env::var("BENCH_SHARED_LIMIT") {
        let limit: i32 = limit.parse()?;
        let recipients: i64 = std::env::var("BENCH_RECIPIENTS").map_or(Ok(1000), |n| n.parse())?;
        let dump = std::path::PathBuf::from(std::env::var("BENCH_SINK_DUMP")?);
        for instances in [1, 3] {
            let l = shared_limit(&bench, instances, recipients, limit, &dump).await?;
            println!(
                "shared limit {limit}/s, {instances} instance(s), {recipients} messages: {:.1} s, {:.1} messages/s; \
                 most in a calendar second {}, in any sliding second {}",
                l.elapsed, l.rate, l.max_calendar, l.max_sliding
            );
        }
        return Ok(());
    }
    // BENCH_ONLY_LOG: the log at scale alone (BENCH_LOG_ROWS=10000000 takes a while).
    if std::env::var("BENCH_ONLY_LOG").is_ok() {
        for line in log_at_scale(&bench, log_rows()?).await? {
            println!("{line}");
        }
        return Ok(());
    }
    // BENCH_QUICK: one run of BENCH_RECIPIENTS (10,000) on BENCH_INSTANCES instances (1).
    let runs: Vec<(usize, i64)> = if std::env::var("BENCH_QUICK").is_ok() {
        let instances = std::env::var("BENCH_INSTANCES").map_or(Ok(1), |n| n.parse())?;
        let recipients = std::env::var("BENCH_RECIPIENTS").map_or(Ok(10_000), |n| n.parse())?;
        vec![(instances, recipients)]
    } else {
        vec![(1, 1_000), (1, 10_000), (3, 10_000)]
    };
    for (instances, recipients) in runs {
        let raw = raw_rate(&bench)?;
        let t = throughput(&bench, instances, recipients).await?;
        let beside_raw = raw.map_or(String::new(), |raw| {
            format!(
                "; smtp-source just before {raw:.0} messages/s: {:.0}% of it",
                100.0 * t.rate / raw
            )
        });
        println!(
            "throughput: {instances} instance(s), {recipients} recipients: {:.0} deliveries/s, peak memory {} MiB per process, \
             CPU per delivery: PostgreSQL {:.0} µs, dispatchers {:.0} µs{beside_raw}; \
             first message {:.0} ms after the run started, its last delivery written after {:.1} s",
            t.rate,
            t.memory_kib / 1024,
            t.postgres_us,
            t.dispatcher_us,
            t.first_sent_ms,
            t.written_s
        );
    }
    if std::env::var("BENCH_ONLY_THROUGHPUT").is_ok() {
        return Ok(());
    }
    let latencies = latency(&bench, 50).await?;
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!(
        "createMailing -> first message at the sink: median {:.1} ms, p99 {:.1} ms ({} samples)",
        at(0.5),
        at(0.99),
        latencies.len()
    );
    if std::env::var("BENCH_SKIP_PLAN").is_err() {
        for line in log_at_scale(&bench, log_rows()?).await? {
            println!("{line}");
        }
    }
    Ok(())
}
