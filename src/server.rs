//! Start-up and shutdown: find or start the database, migrate, serve, stop cleanly.

use anyhow::Context;
use tokio::net::TcpListener;

use crate::accounts::role::Role;
use crate::app::AppState;
use crate::config::Config;
use crate::db::embedded::{EmbeddedOptions, EmbeddedPostgres};
use crate::db::{build_pool, migrations};
use crate::dispatch::{Dispatcher, listener};
use crate::error::AppError;

/// The database the embedded PostgreSQL creates for the service.
const EMBEDDED_DATABASE: &str = "mailwarm";

/// What this process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The HTTP API and the dispatcher (the default).
    ServeAndDispatch,
    /// The HTTP API only (`--no-dispatch`).
    ServeOnly,
    /// The dispatcher only (`--dispatch-only`).
    DispatchOnly,
    /// Start what is due, send what is due, print a summary, exit (`--dispatch-once`).
    DispatchOnce,
}

/// Runs the service in `mode` until SIGTERM or Ctrl-C (or, for `DispatchOnce`, until done).
pub async fn run(config: Config, mode: Mode) -> anyhow::Result<()> {
    config.validate().map_err(anyhow::Error::msg)?;
    let (database_url, embedded) = provision_database(&config).await?;
    let result = run_on(config, &database_url, mode).await;
    if let Some(postgres) = embedded {
        postgres.stop().await;
    }
    result
}

async fn run_on(mut config: Config, database_url: &str, mode: Mode) -> anyhow::Result<()> {
    // The URL actually in use (the embedded server's when none was given): large imports
    // open a connection of their own with it for COPY.
    config.db.database_url = Some(database_url.to_owned());
    migrations::run_pending(database_url).await?;
    let pool = build_pool(database_url, config.db.db_pool_size, config.db.db_pool_timeout)?;
    let mailer = config.mail.mailer(&config.data_dir)?;
    let grace = config.shutdown_grace;
    let state = AppState::new(config.clone(), pool, mailer);
    // The built-in server's row shows where this instance's SMTP_URL points.
    let host = config
        .mail
        .smtp_url
        .as_ref()
        .and_then(|u| u.host_str())
        .unwrap_or("outbox");
    let mut conn = state.conn().await?;
    crate::senders::model::set_builtin_host(&mut conn, host).await?;
    drop(conn);

    if mode == Mode::DispatchOnce {
        let totals = Dispatcher::new(state.clone()).run_once().await?;
        let jobs = state.job_runner();
        jobs.schedule_recurring().await?;
        while jobs.run_due().await? > 0 {}
        println!("dispatch-once: {totals}");
        return Ok(());
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let tasks = spawn_background(&state, database_url, mode, &stop_rx);
    if mode != Mode::ServeOnly {
        tracing::info!(instance = %state.instance_id(), "dispatching");
    }

    if mode == Mode::DispatchOnly {
        let mut stop = stop_rx.clone();
        let _ = stop.wait_for(|s| *s).await;
    } else {
        serve_http(&config, state, stop_rx, grace).await?;
    }
    // Sends under way finish within the grace period; then we exit regardless.
    let _ = tokio::time::timeout(grace, futures_util::future::join_all(tasks)).await;
    Ok(())
}

async fn serve_http(
    config: &Config,
    state: AppState,
    stop_rx: tokio::sync::watch::Receiver<bool>,
    grace: std::time::Duration,
) -> anyhow::Result<()> {
    let bind_addr = config.http.bind_addr;
    let schema = crate::graphql::build_schema(Some(state.clone()), config.http.introspection);
    let app = crate::http::router(state, schema);
    let listener = TcpListener::bind(bind_addr)
        .await
        .with_context(|| format!("BIND_ADDR: cannot listen on {bind_addr}"))?;
    tracing::info!(%bind_addr, public_url = %config.http.public_url(), "mailwarm is listening; GraphQL at /graphql, playground at /graphiql");

    let mut graceful_rx = stop_rx.clone();
    let mut stop = stop_rx;
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = graceful_rx.wait_for(|stop| *stop).await;
        tracing::info!("shutting down: no new connections");
    });
    tokio::select! {
        result = server.into_future() => result.context("the HTTP server failed")?,
        _ = async {
            let _ = stop.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!(?grace, "connections still open after SHUTDOWN_GRACE; closing them"),
    }
    Ok(())
}

/// The background tasks of `mode`, each under the supervisor (`crate::tasks`): the event
/// listener always; the dispatcher and the job runner (account mails, sweeps) unless the
/// instance only serves.
pub fn spawn_background(
    state: &AppState,
    database_url: &str,
    mode: Mode,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let supervised = |name, make: Box<dyn Fn() -> futures_util::future::BoxFuture<'static, ()> + Send + Sync>| {
        crate::tasks::supervise(
            name,
            state.health().clone(),
            state.metrics().clone(),
            stop.clone(),
            make,
        )
    };
    let (s, url, rx) = (state.clone(), database_url.to_owned(), stop.clone());
    let mut tasks = vec![supervised(
        "listener",
        Box::new(move || Box::pin(listener::run(s.clone(), url.clone(), rx.clone()))),
    )];
    if mode != Mode::ServeOnly {
        let (s, rx) = (state.clone(), stop.clone());
        tasks.push(supervised(
            "dispatcher",
            Box::new(move || Box::pin(Dispatcher::new(s.clone()).run(rx.clone()))),
        ));
        let (s, rx) = (state.clone(), stop.clone());
        tasks.push(supervised(
            "jobs",
            Box::new(move || Box::pin(s.job_runner().run(rx.clone()))),
        ));
    }
    tasks
}

/// `server migrate`: apply pending migrations and exit.
pub async fn migrate(config: Config) -> anyhow::Result<()> {
    let (database_url, embedded) = provision_database(&config).await?;
    let result = migrations::run_pending(&database_url).await;
    if let Some(postgres) = embedded {
        postgres.stop().await;
    }
    let applied = result?;
    println!("{applied} migration(s) applied");
    Ok(())
}

/// `server create-user`: an account usable at once (verified), e.g. the first admin.
pub async fn create_user(
    config: Config,
    email: &str,
    full_name: &str,
    role: Role,
    password: &str,
) -> anyhow::Result<()> {
    let (database_url, embedded) = provision_database(&config).await?;
    let result = async {
        migrations::run_pending(&database_url).await?;
        let pool = build_pool(&database_url, 2, config.db.db_pool_timeout)?;
        let mailer = config.mail.mailer(&config.data_dir)?;
        let state = AppState::new(config.clone(), pool, mailer);
        crate::accounts::flows::create_user(&state, email, full_name, password, role)
            .await
            .map_err(|e| match e {
                AppError::BadUserInput { field, message } => anyhow::anyhow!("{field}: {message}"),
                other => anyhow::anyhow!("{other}"),
            })
    }
    .await;
    if let Some(postgres) = embedded {
        postgres.stop().await;
    }
    let user = result?;
    println!("created {} ({}) with id {}", user.email, user.role, user.id);
    Ok(())
}

/// DATABASE_URL when set, else a PostgreSQL of our own (see `db::embedded`).
pub async fn provision_database(config: &Config) -> anyhow::Result<(String, Option<EmbeddedPostgres>)> {
    if let Some(url) = &config.db.database_url {
        return Ok((url.clone(), None));
    }
    tracing::info!("DATABASE_URL is not set: starting an embedded PostgreSQL");
    let postgres = EmbeddedPostgres::start(&EmbeddedOptions {
        data_dir: config.data_dir.clone(),
        bindir: config.db.pg_bindir.clone(),
        port: config.db.embedded_pg_port,
        database: EMBEDDED_DATABASE.to_owned(),
    })
    .await
    .context("embedded PostgreSQL")?;
    Ok((postgres.url().to_owned(), Some(postgres)))
}

/// SIGTERM (service managers) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
