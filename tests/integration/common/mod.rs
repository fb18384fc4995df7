//! The test harness: a real PostgreSQL for every test, the app driven through its real
//! HTTP router, and real `server` processes where processes matter.
//!
//! PostgreSQL: TEST_DATABASE_URL (or DATABASE_URL) names a server whose superuser may create
//! databases; when neither is set, each test process starts an embedded one of its own.
//! Every test gets a fresh database cloned from a migrated template (`CREATE DATABASE ..
//! TEMPLATE`), dropped when the test ends, so tests run in parallel without seeing each other.
#![allow(dead_code)]

pub mod https;
pub mod imap;
pub mod smtp;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use mailwarm::app::AppState;
use mailwarm::config::Config;
use mailwarm::mail::{Mailer, MemoryOutbox};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

/// The URL of a database on the test server from which databases can be created.
pub fn admin_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        std::env::var("TEST_DATABASE_URL")
            .or_else(|_| std::env::var("DATABASE_URL"))
            .unwrap_or_else(|_| start_embedded_postgres())
    })
    .clone()
}

/// Same server, another database.
pub fn url_for(database: &str) -> String {
    let mut url = url::Url::parse(&admin_url()).expect("TEST_DATABASE_URL is a URL");
    url.set_path(database);
    url.to_string()
}

/// An embedded PostgreSQL for this test process, in target/tmp. It runs on a thread that
/// lives as long as the process; when the process exits, PostgreSQL gets SIGINT (parent
/// death signal) and shuts down.
fn start_embedded_postgres() -> String {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    remove_stale_clusters(&tmp);
    let data_dir = tmp.join(format!("pg-{}", std::process::id()));
    let port = free_port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let postgres = runtime
            .block_on(mailwarm::db::embedded::EmbeddedPostgres::start(
                &mailwarm::db::embedded::EmbeddedOptions {
                    data_dir,
                    bindir: None,
                    port,
                    database: "postgres".into(),
                },
            ))
            .expect("start the embedded PostgreSQL for tests");
        tx.send(postgres.url().to_owned()).unwrap();
        let _keep = postgres;
        loop {
            std::thread::park();
        }
    });
    rx.recv().expect("embedded PostgreSQL started")
}

fn remove_stale_clusters(tmp: &Path) {
    for entry in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("pg-").and_then(|p| p.parse::<u32>().ok())
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A database of its own for one test, dropped (WITH FORCE) when the test ends.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// A fresh database with every migration applied.
    pub async fn migrated() -> TestDb {
        let template = ensure_template().await;
        Self::create(&format!("TEMPLATE \"{template}\"")).await
    }

    /// A fresh, empty database.
    pub async fn empty() -> TestDb {
        Self::create("").await
    }

    async fn create(options: &str) -> TestDb {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = admin_conn().await;
        diesel::sql_query(format!("CREATE DATABASE \"{name}\" {options}"))
            .execute(&mut admin)
            .await
            .unwrap();
        TestDb {
            url: url_for(&name),
            name,
        }
    }

    pub async fn conn(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime: use a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut admin = admin_conn().await;
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut admin)
                    .await;
            });
        })
        .join();
    }
}

async fn admin_conn() -> AsyncPgConnection {
    let url = admin_url();
    AsyncPgConnection::establish(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL: {e}"))
}

/// The migrated template, named after a hash of migrations/ so a changed migration gets
/// a new one. Built once under an advisory lock, however many test processes start at once.
async fn ensure_template() -> String {
    static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("mailwarm_template_{}", migrations_hash());
            let mut admin = admin_conn().await;
            diesel::sql_query("SELECT pg_advisory_lock(7428815)")
                .execute(&mut admin)
                .await
                .unwrap();
            if !database_exists(&mut admin, &name).await {
                let building = format!("{name}_building");
                diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                diesel::sql_query(format!("CREATE DATABASE \"{building}\""))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                mailwarm::db::migrations::run_pending(&url_for(&building))
                    .await
                    .unwrap();
                diesel::sql_query(format!("ALTER DATABASE \"{building}\" RENAME TO \"{name}\""))
                    .execute(&mut admin)
                    .await
                    .unwrap();
            }
            diesel::sql_query("SELECT pg_advisory_unlock(7428815)")
                .execute(&mut admin)
                .await
                .unwrap();
            name
        })
        .await
        .clone()
}

pub async fn database_exists(conn: &mut AsyncPgConnection, name: &str) -> bool {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let count: Count = diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
        .bind::<diesel::sql_types::Text, _>(name)
        .get_result(conn)
        .await
        .unwrap();
    count.n > 0
}

fn migrations_hash() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files: Vec<PathBuf> = walk(&dir);
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update(file.strip_prefix(&dir).unwrap().to_string_lossy().as_bytes());
        hasher.update(std::fs::read(&file).unwrap());
    }
    hex::encode(hasher.finalize())[..16].to_owned()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path))
        } else {
            out.push(path)
        }
    }
    out
}

/// The app over a database of its own, driven through its real router in-process, with
/// an in-memory mail transport and the account-mail worker running.
pub struct TestApp {
    /// Shared by `another_instance`s; dropped with the last of them.
    pub db: std::sync::Arc<TestDb>,
    pub state: AppState,
    pub router: Router,
    pub outbox: MemoryOutbox,
    _stop: tokio::sync::watch::Sender<bool>,
}

/// What a test request got back.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// `extensions.code` of the first error.
    pub fn error_code(&self) -> String {
        self.json()["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

impl TestApp {
    pub async fn new() -> TestApp {
        Self::with_args(&[]).await
    }

    /// Extra command-line settings, e.g. `["--body-limit", "1KiB"]`; mail stays in memory
    /// and nothing is dispatched.
    pub async fn with_args(extra: &[&str]) -> TestApp {
        Self::build(extra, false).await
    }

    /// With the dispatcher and the event listener running, as `server` runs them; mail goes
    /// to `--smtp-url` when given, else to memory.
    pub async fn dispatching(extra: &[&str]) -> TestApp {
        Self::build(extra, true).await
    }

    /// A second instance of the service (its own pool, caches and workers) over this
    /// one's database, as a second `server` process would be.
    pub async fn another_instance(&self, extra: &[&str]) -> TestApp {
        Self::build_on(self.db.clone(), extra, false).await
    }

    async fn build(extra: &[&str], dispatch: bool) -> TestApp {
        Self::build_on(std::sync::Arc::new(TestDb::migrated().await), extra, dispatch).await
    }

    async fn build_on(db: std::sync::Arc<TestDb>, extra: &[&str], dispatch: bool) -> TestApp {
        let mut args = vec!["server", "--database-url", &db.url];
        if !extra.contains(&"--db-pool-size") {
            args.extend_from_slice(&["--db-pool-size", "8"]);
        }
        args.extend_from_slice(extra);
        let config = Config::from_args(args).expect("test configuration");
        config.validate().expect("consistent test configuration");
        let pool = mailwarm::db::build_pool(&db.url, config.db.db_pool_size, config.db.db_pool_timeout).unwrap();
        let outbox = MemoryOutbox::default();
        let mailer = match &config.mail.smtp_url {
            Some(_) => config.mail.mailer(&config.data_dir).unwrap(),
            None => Mailer::Memory(outbox.clone()),
        };
        let state = AppState::new(config.clone(), pool, mailer);
        let schema = mailwarm::graphql::build_schema(Some(state.clone()), config.http.introspection);
        let router = mailwarm::http::router(state.clone(), schema);
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        if dispatch {
            // As `server` runs them: listener, dispatcher, account mails, sweeper, supervised.
            mailwarm::server::spawn_background(&state, &db.url, mailwarm::server::Mode::ServeAndDispatch, &stop_rx);
        } else {
            tokio::spawn(state.job_runner().run(stop_rx));
        }
        TestApp {
            db,
            state,
            router,
            outbox,
            _stop: stop,
        }
    }

    /// POST /graphql with `Authorization: Bearer <token>`.
    pub async fn graphql_as(&self, token: &str, query: &str, variables: Value) -> Reply {
        let body = json!({ "query": query, "variables": variables }).to_string();
        self.send(
            Request::post("/graphql")
                .header("content-type", "application/json")
                .header("accept", "application/graphql-response+json")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    /// The token of the `?token=` link in the newest mail to `email`.
    pub async fn mailed_token(&self, email: &str) -> String {
        let mail = self
            .outbox
            .wait_for(email, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("no mail to {email}"));
        let at = mail
            .text
            .find("token=")
            .unwrap_or_else(|| panic!("no token in {}", mail.text));
        mail.text[at + 6..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect()
    }

    /// Registers, verifies through the mailed link and logs in; returns the session token.
    pub async fn sign_up(&self, email: &str) -> String {
        let register =
            "mutation($e: String!) { register(email: $e, password: \"long enough secret\", fullName: \"Test User\") }";
        let reply = self.graphql(register, json!({ "e": email })).await;
        assert_eq!(reply.json()["data"]["register"], true, "{}", reply.json());
        let token = self.mailed_token(email).await;
        let verified = self
            .graphql(
                "mutation($t: String!) { verifyEmail(token: $t) }",
                json!({ "t": token }),
            )
            .await;
        assert_eq!(verified.json()["data"]["verifyEmail"], true, "{}", verified.json());
        self.login(email, "long enough secret").await
    }

    /// An account that can sign in at once (as `server create-user` makes), signed in.
    pub async fn verified_user(&self, email: &str, role: mailwarm::accounts::role::Role) -> String {
        mailwarm::accounts::flows::create_user(&self.state, email, "Test User", "long enough secret", role)
            .await
            .unwrap_or_else(|e| panic!("create {email}: {e}"));
        self.login(email, "long enough secret").await
    }

    /// A client of `token`'s account named "C"; returns its id.
    pub async fn new_client(&self, token: &str, email: &str) -> Value {
        let reply = self
            .graphql_as(
                token,
                "mutation($e: String!) { createClient(input: { email: $e, fullName: \"C\" }) { id } }",
                json!({ "e": email }),
            )
            .await;
        reply.json()["data"]["createClient"]["id"].clone()
    }

    /// A message "Hi" / "Hello" of `token`'s account; returns its id.
    pub async fn new_message(&self, token: &str) -> Value {
        let reply = self
            .graphql_as(
                token,
                "mutation { createMessage(input: { subject: \"Hi\", body: \"Hello\" }) { id } }",
                json!({}),
            )
            .await;
        reply.json()["data"]["createMessage"]["id"].clone()
    }

    /// A ONCE mailing of `message` to `clients` that started a second ago; returns its id.
    pub async fn start_mailing_now(&self, token: &str, message: &str, clients: &[String]) -> String {
        let starts = (chrono::Utc::now() - chrono::TimeDelta::seconds(1)).to_rfc3339();
        let reply = self
            .graphql_as(
                token,
                "mutation($i: MailingInput!) { createMailing(input: $i) { id } }",
                json!({ "i": { "startsAt": starts, "periodicity": "ONCE", "messageId": message, "clientIds": clients } }),
            )
            .await;
        reply.json()["data"]["createMailing"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{}", reply.json()))
            .to_owned()
    }

    /// Clients of `owner` written straight into the table, bypassing the input rules, as
    /// values stored before them would be: (email, full name) -> id.
    pub async fn insert_clients(&self, owner: &str, clients: &[(&str, &str)]) -> Vec<String> {
        #[derive(diesel::QueryableByName)]
        struct Id {
            #[diesel(sql_type = diesel::sql_types::Text)]
            id: String,
        }
        let mut conn = self.db.conn().await;
        let mut ids = Vec::new();
        for (email, name) in clients {
            let row: Id = diesel::sql_query(
                "INSERT INTO clients (owner_id, email, full_name) \
                 VALUES ((SELECT id FROM users WHERE email = $1), $2, $3) RETURNING id::text",
            )
            .bind::<diesel::sql_types::Text, _>(owner)
            .bind::<diesel::sql_types::Text, _>(*email)
            .bind::<diesel::sql_types::Text, _>(*name)
            .get_result(&mut conn)
            .await
            .unwrap();
            ids.push(row.id);
        }
        ids
    }

    /// A login as a client sends it, whatever the answer.
    pub async fn try_login(&self, email: &str, password: &str) -> Reply {
        self.graphql(
            "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }",
            json!({ "e": email, "p": password }),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let query = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }";
        let reply = self.graphql(query, json!({ "e": email, "p": password })).await;
        let token = reply.json()["data"]["login"]["token"].as_str().map(str::to_owned);
        token.unwrap_or_else(|| panic!("login failed: {}", reply.json()))
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Reply { status, headers, body }
    }

    /// POST /graphql as a spec-following client (`application/graphql-response+json`).
    pub async fn graphql(&self, query: &str, variables: Value) -> Reply {
        let body = json!({ "query": query, "variables": variables }).to_string();
        self.send(
            Request::post("/graphql")
                .header("content-type", "application/json")
                .header("accept", "application/graphql-response+json")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }
}

/// A real `server` process (the binary cargo built for these tests), killed on drop.
pub struct ServerProcess {
    pub child: Child,
    pub base_url: String,
    pub log_path: PathBuf,
}

impl ServerProcess {
    /// Starts `server` with `args`, listening on a free port; DATABASE_URL is passed only
    /// when given in `env`.
    pub fn spawn(args: &[&str], env: &[(&str, &str)], log_dir: &Path) -> ServerProcess {
        let port = free_port();
        let log_path = log_dir.join(format!("server-{port}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_server"));
        command
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("TEST_DATABASE_URL")
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("start the server binary");
        ServerProcess {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            log_path,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Polls /readyz until it answers 200.
    pub async fn wait_ready(&mut self, within: Duration) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("server exited ({status}) before it was ready:\n{}", self.log());
            }
            if let Ok(response) = client.get(format!("{}/readyz", self.base_url)).send().await
                && response.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "server not ready within {within:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub async fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit within {within:?} of SIGTERM:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tests/js, with its pinned npm packages installed (CI installs them up front).
pub fn js_packages() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        if ["graphql-http", "graphql-ws", "playwright-core", "mailparser"]
            .iter()
            .all(|p| dir.join("node_modules").join(p).exists())
        {
            return;
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm is needed for this test (Node.js 18 or newer)");
        assert!(status.success(), "npm ci in {} failed", dir.display());
    });
    dir
}
