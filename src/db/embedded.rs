//! The embedded PostgreSQL: with no DATABASE_URL, `server` runs its own PostgreSQL as a
//! child process from the installed server binaries, so a fresh checkout works at once.
//!
//! Layout of its folder (`DATA_DIR/postgres`, or a fallback, see [`cluster_root`]):
//! `data/` is the cluster (created by initdb on first start, reused afterwards; its Unix
//! socket lives there too), `password` the superuser's random password, `postgres.log`
//! the server's log. It listens on 127.0.0.1 only, with password (SCRAM) authentication.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User};
use sha2::{Digest, Sha256};

/// What the launcher needs to know.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// DATA_DIR: the cluster goes to `DATA_DIR/postgres` when the server user can reach it.
    pub data_dir: PathBuf,
    /// PG_BINDIR, when set.
    pub bindir: Option<PathBuf>,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// The database the service uses, created on first start.
    pub database: String,
}

/// A running PostgreSQL child. Stop it with [`EmbeddedPostgres::stop`]; dropping it (or
/// this process dying) also asks it to shut down.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    child: Option<tokio::process::Child>,
    pid: Pid,
    root: PathBuf,
    url: String,
}

impl EmbeddedPostgres {
    /// Starts the cluster (running initdb first when it does not exist yet) and waits until
    /// it accepts connections and has the service's database.
    pub async fn start(opts: &EmbeddedOptions) -> anyhow::Result<Self> {
        let bindir = find_bindir(opts.bindir.as_deref())?;
        // initdb refuses to run as root; then the cluster runs as the `postgres` user.
        let run_as = if nix::unistd::geteuid().is_root() {
            Some(User::from_name("postgres")?.context(
                "running as root, the embedded PostgreSQL needs the unprivileged user `postgres` \
                 (install PostgreSQL, or set DATABASE_URL)",
            )?)
        } else {
            None
        };

        let root = cluster_root(&opts.data_dir, run_as.as_ref())?;
        let pgdata = root.join("data");
        let password_file = root.join("password");
        if !pgdata.join("PG_VERSION").exists() {
            init_cluster(&bindir, &root, &pgdata, &password_file, run_as.as_ref()).await?;
        }
        stop_orphan(&pgdata).await?;

        let password = std::fs::read_to_string(&password_file)
            .with_context(|| format!("cannot read {}", password_file.display()))?;
        let password = password.trim();
        let log_path = root.join("postgres.log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        chown_to(&log_path, run_as.as_ref())?;

        let mut command = tokio::process::Command::new(bindir.join("postgres"));
        command
            .arg("-D")
            .arg(&pgdata)
            .args(["-p", &opts.port.to_string(), "-c", "listen_addresses=127.0.0.1", "-k"])
            .arg(&pgdata)
            .current_dir(&root)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Our own process group: a Ctrl-C in the terminal reaches the server, which then
            // stops PostgreSQL after its own connections are closed.
            .process_group(0);
        as_user(&mut command, run_as.as_ref());
        // SAFETY: set_pdeathsig is async-signal-safe (a single prctl system call).
        unsafe {
            command.pre_exec(|| {
                // If the server dies without stopping us (SIGKILL), shut down anyway.
                nix::sys::prctl::set_pdeathsig(Signal::SIGINT).map_err(std::io::Error::from)
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", bindir.join("postgres").display()))?;
        let pid = Pid::from_raw(child.id().context("postgres exited at once")? as i32);
        tracing::info!(pid = pid.as_raw(), port = opts.port, dir = %root.display(), "started embedded PostgreSQL");

        let base = format!("postgres://postgres:{password}@127.0.0.1:{}", opts.port);
        let mut this = EmbeddedPostgres {
            child: Some(child),
            pid,
            root,
            url: format!("{base}/{}", opts.database),
        };
        if let Err(err) = this.wait_ready(&format!("{base}/postgres"), &opts.database).await {
            let tail = log_tail(&log_path);
            this.shutdown().await;
            bail!("{err:#}\n--- {} ---\n{tail}", log_path.display());
        }
        Ok(this)
    }

    /// The connection URL of the service's database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The folder holding the cluster, its password and its log.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Fast shutdown (SIGINT): open sessions are closed, data is flushed.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = kill(self.pid, Signal::SIGINT);
        match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
            Ok(_) => tracing::info!("embedded PostgreSQL stopped"),
            Err(_) => {
                tracing::warn!("embedded PostgreSQL did not stop in 30 s; killing it");
                let _ = child.kill().await;
            }
        }
    }

    async fn wait_ready(&mut self, admin_url: &str, database: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut conn = loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("the embedded PostgreSQL exited during start-up ({status})");
            }
            match AsyncPgConnection::establish(admin_url).await {
                Ok(conn) => break conn,
                Err(err) if Instant::now() > deadline => {
                    bail!("the embedded PostgreSQL did not accept connections within 30 s: {err}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        create_database_if_missing(&mut conn, database).await
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = kill(self.pid, Signal::SIGINT);
        }
    }
}

/// Creates `database` unless it exists (CREATE DATABASE has no IF NOT EXISTS).
pub async fn create_database_if_missing(conn: &mut AsyncPgConnection, database: &str) -> anyhow::Result<()> {
    use diesel::sql_types::{Bool, Text};
    #[derive(diesel::QueryableByName)]
    struct Exists {
        #[diesel(sql_type = Bool)]
        exists: bool,
    }
    let found: Exists = diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
        .bind::<Text, _>(database)
        .get_result(conn)
        .await?;
    if !found.exists {
        let quoted = database.replace('"', "\"\"");
        match diesel::sql_query(format!("CREATE DATABASE \"{quoted}\""))
            .execute(conn)
            .await
        {
            Ok(_) => tracing::info!(database, "created database"),
            // Another instance created it in the meantime.
            Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)) => {}
            Err(err) => return Err(err).context("cannot create the service's database"),
        }
    }
    Ok(())
}

/// PG_BINDIR, else `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin; the
/// folder must hold both `initdb` and `postgres`.
pub fn find_bindir(configured: Option<&Path>) -> anyhow::Result<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = configured {
        if has_server(dir) {
            return Ok(dir.to_owned());
        }
        bail!("PG_BINDIR: {} holds no `initdb` and `postgres`", dir.display());
    }
    let from_pg_config = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    if let Some(dir) = from_pg_config.filter(|d| has_server(d)) {
        return Ok(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_server(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir).context(
        "no PostgreSQL server binaries found (PG_BINDIR, `pg_config --bindir`, /usr/lib/postgresql/*/bin): \
         install PostgreSQL (apt-get install postgresql) or set DATABASE_URL to an existing database",
    )
}

/// `DATA_DIR/postgres`, unless the cluster's user cannot reach it (a checkout under /root
/// while running as root): then `/var/tmp/mailwarm-<hash of DATA_DIR>`, stable per DATA_DIR.
fn cluster_root(data_dir: &Path, run_as: Option<&User>) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("DATA_DIR: cannot create {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    let preferred = data_dir.join("postgres");
    let root = match run_as {
        Some(user) if !traversable_by(&data_dir, user) => {
            let digest = Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
            let fallback = PathBuf::from(format!("/var/tmp/mailwarm-{}", &hex::encode(digest)[..12]));
            tracing::warn!(
                data_dir = %data_dir.display(),
                cluster = %fallback.display(),
                "user `postgres` cannot enter DATA_DIR; keeping the embedded PostgreSQL here instead"
            );
            fallback
        }
        _ => preferred,
    };
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))?;
    chown_to(&root, run_as)?;
    Ok(root)
}

/// Whether `user` may search (x) `dir` and each of its ancestors.
fn traversable_by(dir: &Path, user: &User) -> bool {
    dir.ancestors().all(|d| match std::fs::metadata(d) {
        Ok(meta) => {
            let mode = meta.mode();
            (meta.uid() == user.uid.as_raw() && mode & 0o100 != 0)
                || (meta.gid() == user.gid.as_raw() && mode & 0o010 != 0)
                || mode & 0o001 != 0
        }
        Err(_) => false,
    })
}

async fn init_cluster(
    bindir: &Path,
    root: &Path,
    pgdata: &Path,
    password_file: &Path,
    run_as: Option<&User>,
) -> anyhow::Result<()> {
    tracing::info!(dir = %pgdata.display(), "creating the embedded PostgreSQL cluster");
    let password = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    std::fs::write(password_file, &password)?;
    std::fs::set_permissions(password_file, std::fs::Permissions::from_mode(0o600))?;
    chown_to(password_file, run_as)?;
    let _ = std::fs::remove_dir_all(pgdata);

    let mut command = tokio::process::Command::new(bindir.join("initdb"));
    command
        .arg("-D")
        .arg(pgdata)
        .args(["-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync"])
        .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
        .arg(format!("--pwfile={}", password_file.display()))
        .current_dir(root)
        .stdin(Stdio::null());
    as_user(&mut command, run_as);
    let output = command
        .output()
        .await
        .with_context(|| format!("cannot run {}", bindir.join("initdb").display()))?;
    if !output.status.success() {
        let _ = std::fs::remove_dir_all(pgdata);
        bail!(
            "initdb failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// A PostgreSQL left running on this cluster by a server that was killed (its parent is
/// gone) is shut down, so that this start can take over. One whose parent is alive
/// belongs to another running server: refuse rather than pull the data from under it.
async fn stop_orphan(pgdata: &Path) -> anyhow::Result<()> {
    let Ok(pid_file) = std::fs::read_to_string(pgdata.join("postmaster.pid")) else {
        return Ok(());
    };
    let Some(pid) = pid_file.lines().next().and_then(|l| l.trim().parse::<i32>().ok()) else {
        return Ok(());
    };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Ok(());
    };
    // Fields after the parenthesised command name: state, ppid, ...
    let ppid = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|p| p.parse::<i32>().ok());
    let is_postgres =
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.windows(8).any(|w| w == b"postgres"));
    if !is_postgres {
        return Ok(()); // a stale pid file; postgres removes it itself
    }
    if ppid.is_some_and(|ppid| ppid > 1 && Path::new(&format!("/proc/{ppid}")).exists()) {
        bail!(
            "the embedded PostgreSQL in {} is in use by another process (pid {pid}); stop that server or set DATABASE_URL",
            pgdata.display()
        );
    }
    tracing::warn!(pid, "stopping an embedded PostgreSQL left behind by a previous run");
    let pid = Pid::from_raw(pid);
    let _ = kill(pid, Signal::SIGINT);
    let deadline = Instant::now() + Duration::from_secs(30);
    while kill(pid, None).is_ok() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn as_user(command: &mut tokio::process::Command, run_as: Option<&User>) {
    if let Some(user) = run_as {
        command
            .uid(user.uid.as_raw())
            .gid(user.gid.as_raw())
            .env("HOME", &user.dir)
            .env("USER", &user.name);
    }
}

fn chown_to(path: &Path, run_as: Option<&User>) -> anyhow::Result<()> {
    if let Some(user) = run_as {
        nix::unistd::chown(path, Some(user.uid), Some(user.gid))
            .with_context(|| format!("cannot hand {} to user {}", path.display(), user.name))?;
    }
    Ok(())
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
