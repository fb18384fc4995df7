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
    account_mail_queued: Arc<Notify>,
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
}

impl AppState {
    pub fn new(config: Config, pool: DbPool, mailer: Mailer) -> Self {
        AppState {
            inner: Arc::new(Inner {
                config,
                pool,
                mailer,
                passwords: Passwords::default(),
                instance_id: Uuid::new_v4(),
                account_mail_queued: Arc::new(Notify::new()),
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

    pub fn passwords(&self) -> &Passwords {
        &self.inner.passwords
    }

    pub fn instance_id(&self) -> Uuid {
        self.inner.instance_id
    }

    pub fn account_mail_queued(&self) -> &Arc<Notify> {
        &self.inner.account_mail_queued
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

    /// The worker that sends this instance's share of queued account mails.
    pub fn account_mail_worker(&self) -> crate::mail::queue::AccountMailWorker {
        crate::mail::queue::AccountMailWorker {
            pool: self.inner.pool.clone(),
            mailer: self.inner.mailer.clone(),
            mail: self.inner.config.mail.clone(),
            dispatch: self.inner.config.dispatch.clone(),
            instance_id: self.inner.instance_id,
            wakeup: self.inner.account_mail_queued.clone(),
        }
    }
}
