//! `AppState`: what every request and background task shares. Built once at start-up,
//! cloned cheaply (an `Arc` inside).

use std::sync::Arc;

use tokio::sync::Notify;
use uuid::Uuid;

use crate::accounts::password::Passwords;
use crate::config::Config;
use crate::db::{DbPool, PooledConn};
use crate::error::AppResult;
use crate::events::EventHub;
use crate::mail::Mailer;
use crate::metrics::Metrics;

/// How often expired sessions, tokens and rate-limit windows are deleted.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    pool: DbPool,
    mailer: Mailer,
    passwords: Passwords,
    /// This process's identity as a lease owner in the queues.
    instance_id: Uuid,
    /// Wakes this instance's account-mail worker when a request queues a mail.
    jobs_queued: Arc<Notify>,
    /// Wakes this instance's dispatcher (new work, from here or, via NOTIFY, elsewhere).
    dispatch_wakeup: Arc<Notify>,
    /// Live events for this instance's subscribers.
    events: EventHub,
    metrics: Metrics,
    /// Supervised tasks and dispatcher ticks, for /readyz.
    health: crate::tasks::Health,
    /// Sessions as they are now, for sockets.
    live_sessions: crate::accounts::live::LiveSessions,
    /// The key that signs unsubscribe links, shared by all instances through the database.
    unsubscribe_key: tokio::sync::OnceCell<Vec<u8>>,
    /// Signs every mail when DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY are set.
    dkim: Option<Arc<crate::mail::dkim::Signer>>,
}

impl AppState {
    pub fn new(config: Config, pool: DbPool, mailer: Mailer) -> Self {
        let dkim = config.mail.dkim_signer().map(Arc::new);
        AppState {
            inner: Arc::new(Inner {
                dkim,
                config,
                pool,
                mailer,
                passwords: Passwords::default(),
                instance_id: Uuid::new_v4(),
                jobs_queued: Arc::new(Notify::new()),
                dispatch_wakeup: Arc::new(Notify::new()),
                events: EventHub::default(),
                metrics: Metrics::default(),
                health: crate::tasks::Health::default(),
                live_sessions: crate::accounts::live::LiveSessions::default(),
                unsubscribe_key: tokio::sync::OnceCell::new(),
            }),
        }
    }

    /// The state from a resolver's context (the schema always carries it when serving).
    pub fn from_ctx<'a>(ctx: &async_graphql::Context<'a>) -> &'a AppState {
        ctx.data_unchecked::<AppState>()
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn pool(&self) -> &DbPool {
        &self.inner.pool
    }

    pub fn mailer(&self) -> &Mailer {
        &self.inner.mailer
    }

    /// The DKIM signer, when DKIM is configured.
    pub fn dkim(&self) -> Option<&crate::mail::dkim::Signer> {
        self.inner.dkim.as_deref()
    }

    pub fn passwords(&self) -> &Passwords {
        &self.inner.passwords
    }

    pub fn instance_id(&self) -> Uuid {
        self.inner.instance_id
    }

    pub fn jobs_queued(&self) -> &Arc<Notify> {
        &self.inner.jobs_queued
    }

    pub fn dispatch_wakeup(&self) -> &Arc<Notify> {
        &self.inner.dispatch_wakeup
    }

    pub fn events(&self) -> &EventHub {
        &self.inner.events
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn health(&self) -> &crate::tasks::Health {
        &self.inner.health
    }

    pub fn live_sessions(&self) -> &crate::accounts::live::LiveSessions {
        &self.inner.live_sessions
    }

    /// The unsubscribe-link key: made by the first instance, read by the others.
    pub async fn unsubscribe_key(&self) -> AppResult<&[u8]> {
        let key = self
            .inner
            .unsubscribe_key
            .get_or_try_init(|| async {
                let mut conn = self.conn().await?;
                crate::db::shared_secret(&mut conn, "unsubscribe")
                    .await
                    .map_err(crate::error::AppError::from)
            })
            .await?;
        Ok(key)
    }

    /// A connection from the pool; waits at most DB_POOL_TIMEOUT.
    pub async fn conn(&self) -> AppResult<PooledConn> {
        Ok(self.inner.pool.get().await?)
    }

    /// TLS for connections out other than SMTP's own (the bounce mailbox, SNS): the public
    /// roots and SMTP_TLS_CA's (read at start-up already).
    pub fn outgoing_tls(&self) -> Arc<tokio_rustls::rustls::ClientConfig> {
        crate::mail::smtp::tls_config(
            self.inner
                .config
                .mail
                .smtp_tls_ca
                .as_deref()
                .and_then(|path| crate::mail::smtp::load_roots(path).ok())
                .unwrap_or_default(),
        )
    }

    /// This instance's background-job runner: account mails and the sweep.
    pub fn job_runner(&self) -> crate::jobs::Runner {
        use crate::jobs::{Runner, RunnerSettings, account_mail, sweep};
        let config = &self.inner.config;
        let settings = RunnerSettings {
            poll: config.dispatch.dispatch_interval,
            lease: config.mail.send_timeout + std::time::Duration::from_secs(30),
            concurrency: 20,
            max_attempts: u32::from(config.dispatch.max_attempts),
            retry_base: config.dispatch.retry_base,
            retry_max: config.dispatch.retry_max,
        };
        let sender = account_mail::Sender {
            mailer: self.inner.mailer.clone(),
            from: config.mail.mail_from.clone(),
            max_message_size: config.mail.max_message_size,
            dkim: self.inner.dkim.clone(),
        };
        let runner = Runner::new(
            self.inner.pool.clone(),
            self.inner.instance_id,
            settings,
            self.inner.jobs_queued.clone(),
        )
        .register::<account_mail::AccountMail>(sender)
        .register_recurring(&sweep::Sweep, SWEEP_EVERY, self.inner.pool.clone())
        .register::<crate::clients::import::ImportClients>(self.inner.pool.clone());
        let runner = match config.dispatch.log_retention {
            Some(keep) => {
                use crate::deliveries::retention::{DropOldLog, EVERY, Retention};
                let pool = self.inner.pool.clone();
                runner.register_recurring(&DropOldLog, EVERY, Retention { pool, keep })
            }
            None => runner,
        };
        match &config.bounces.bounce_imap_url {
            Some(url) => {
                use crate::deliverability::mailbox::{Mailbox, PollBounceMailbox};
                let mailbox = Mailbox {
                    pool: self.inner.pool.clone(),
                    url: url.clone(),
                    bounce_address: config.bounces.bounce_address.clone(),
                    policy: config.bounces.policy(),
                    tls: self.outgoing_tls(),
                };
                runner.register_recurring(&PollBounceMailbox, config.bounces.bounce_poll_interval, mailbox)
            }
            None => runner,
        }
    }
}
