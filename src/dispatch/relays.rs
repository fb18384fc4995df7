//! The SMTP servers and sender identities as this instance sends through them: one
//! connection pool and one circuit breaker per server, each identity's From, Reply-To,
//! DKIM signer and servers by priority. Read from the `senders` tables every
//! SENDERS_REFRESH; a server whose settings did not change keeps its pool and breaker.
//! The built-in server is this instance's own transport (SMTP_URL or the outbox).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lettre::message::Mailbox;

use super::guard::{Allowance, Breaker, Change};
use crate::app::AppState;
use crate::db::types::{SenderIdentityId, SmtpServerId};
use crate::mail::Mailer;
use crate::mail::dkim::Signer;
use crate::mail::smtp::SmtpTarget;
use crate::senders::model::{self, BUILTIN};

/// One server as this instance uses it.
pub struct Relay {
    pub id: SmtpServerId,
    pub name: String,
    /// The windows its rate limits are leased in (`budget::windows`).
    pub windows: Vec<(i64, i32)>,
    pub mailer: Mailer,
    pub breaker: Arc<Breaker>,
    /// The row's `updated_at` the pool was built for.
    version: chrono::DateTime<chrono::Utc>,
}

impl Relay {
    /// The budget scope of its rate limits.
    pub fn scope(&self) -> String {
        format!("server:{}", self.id)
    }
}

/// An identity as the dispatcher sends as it.
pub struct Identity {
    pub from: Mailbox,
    pub reply_to: Option<String>,
    /// Its DKIM signer, or why its key cannot be used (its deliveries fail with that).
    pub dkim: Result<Option<Signer>, String>,
    /// The servers that may carry it, by priority.
    pub servers: Vec<SmtpServerId>,
}

/// What was read at one refresh.
#[derive(Default)]
pub struct Senders {
    /// Live servers by priority (those this instance can build a transport for).
    pub relays: Vec<Arc<Relay>>,
    pub identities: HashMap<SenderIdentityId, Arc<Identity>>,
}

impl Senders {
    /// The servers a delivery sent as `identity` may use, by priority: the identity's, or
    /// every server for the default sender (MAIL_FROM). An identity that is gone (deleted
    /// since the run started) sends as the default sender.
    pub fn candidates(&self, identity: Option<SenderIdentityId>) -> Vec<Arc<Relay>> {
        match identity.and_then(|id| self.identities.get(&id)) {
            None => self.relays.clone(),
            Some(identity) => self
                .relays
                .iter()
                .filter(|r| identity.servers.contains(&r.id))
                .cloned()
                .collect(),
        }
    }

    pub fn identity(&self, id: Option<SenderIdentityId>) -> Option<&Arc<Identity>> {
        id.and_then(|id| self.identities.get(&id))
    }
}

pub struct Relays {
    state: AppState,
    current: Mutex<(Arc<Senders>, Option<Instant>)>,
    refreshing: tokio::sync::Mutex<()>,
}

impl Relays {
    /// Until the first refresh: the built-in server alone.
    pub fn new(state: AppState) -> Relays {
        let config = &state.config().dispatch;
        let builtin = Arc::new(Relay {
            id: BUILTIN,
            name: "SMTP_URL".to_owned(),
            windows: Vec::new(),
            mailer: state.mailer().clone(),
            breaker: Arc::new(Breaker::new(config.breaker_failures, config.breaker_cooldown)),
            version: chrono::DateTime::<chrono::Utc>::MIN_UTC,
        });
        let senders = Senders {
            relays: vec![builtin],
            identities: HashMap::new(),
        };
        Relays {
            state,
            current: Mutex::new((Arc::new(senders), None)),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    pub fn current(&self) -> Arc<Senders> {
        self.current.lock().expect("relays lock").0.clone()
    }

    /// The best any server allows: a batch while one is closed, one probe while the best is
    /// half open, a wait while all are open.
    pub fn allowance(&self) -> Allowance {
        let senders = self.current();
        let mut best: Option<Allowance> = None;
        for relay in &senders.relays {
            best = Some(match (best, relay.breaker.allowance()) {
                (_, Allowance::Batch) | (Some(Allowance::Batch), _) => Allowance::Batch,
                (_, Allowance::Probe) | (Some(Allowance::Probe), _) => Allowance::Probe,
                (Some(Allowance::Wait(a)), Allowance::Wait(b)) => Allowance::Wait(a.min(b)),
                (None, wait) => wait,
            });
        }
        best.unwrap_or(Allowance::Batch)
    }

    /// Reads the servers and identities again when SENDERS_REFRESH has passed. A failure
    /// keeps what was read before (and is logged): sending goes on.
    pub async fn refresh_if_stale(&self) {
        self.refresh_if_older(self.state.config().senders.senders_refresh).await;
    }

    /// Reads them again unless that was done in the last moment: for an identity made since
    /// (one this instance does not know yet must not send as MAIL_FROM).
    pub async fn refresh_soon(&self) {
        self.refresh_if_older(Duration::ZERO).await;
    }

    async fn refresh_if_older(&self, every: Duration) {
        let stale = |at: Option<Instant>| at.is_none_or(|at| at.elapsed() >= every);
        if !stale(self.current.lock().expect("relays lock").1) {
            return;
        }
        let _one_at_a_time = self.refreshing.lock().await;
        if !stale(self.current.lock().expect("relays lock").1) {
            return;
        }
        let result = self.load().await;
        let mut current = self.current.lock().expect("relays lock");
        current.1 = Some(Instant::now());
        match result {
            Ok(senders) => current.0 = Arc::new(senders),
            Err(err) => tracing::warn!(
                error = format!("{err:#}"),
                "cannot read the SMTP servers; keeping the last ones"
            ),
        }
    }

    async fn load(&self) -> anyhow::Result<Senders> {
        let mut conn = self.state.pool().get().await?;
        let servers = model::servers(&mut conn).await?;
        let identities = model::identities(&mut conn, None).await?;
        let ids: Vec<SenderIdentityId> = identities.iter().map(|i| i.id).collect();
        let mut servers_of = model::servers_of(&mut conn, &ids).await?;
        drop(conn);

        let previous = self.current();
        let config = self.state.config();
        let sealing = config.senders.credentials_key.as_ref();
        let mut relays = Vec::new();
        for server in servers {
            let before = previous.relays.iter().find(|r| r.id == server.id);
            if let Some(kept) = before.filter(|r| r.version == server.updated_at) {
                relays.push(kept.clone());
                continue;
            }
            // Changed settings get a fresh pool; the breaker's state carries over.
            let breaker = before.map_or_else(
                || {
                    Arc::new(Breaker::new(
                        config.dispatch.breaker_failures,
                        config.dispatch.breaker_cooldown,
                    ))
                },
                |r| r.breaker.clone(),
            );
            let mailer = if server.builtin {
                Ok(self.state.mailer().clone())
            } else {
                self.transport(&server, sealing)
            };
            match mailer {
                Ok(mailer) => relays.push(Arc::new(Relay {
                    id: server.id,
                    windows: super::budget::windows(&server.windows()),
                    name: server.name,
                    mailer,
                    breaker,
                    version: server.updated_at,
                })),
                Err(err) => tracing::error!(
                    server = server.name,
                    error = err,
                    "cannot use this SMTP server; skipped"
                ),
            }
        }
        // The outbox (no SMTP_URL) only stands in while no real server exists: mail written
        // to a folder must never be where a full or broken relay's deliveries go.
        if relays.len() > 1 && !matches!(self.state.mailer(), Mailer::Smtp(_)) {
            relays.retain(|r| r.id != BUILTIN);
        }
        let identities = identities
            .into_iter()
            .map(|identity| {
                let servers = servers_of
                    .remove(&identity.id)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|s| s.id)
                    .collect();
                let from = Mailbox::new(
                    Some(crate::mail::message::one_line(&identity.name)).filter(|n| !n.is_empty()),
                    identity.email.parse().unwrap_or_else(|_| {
                        // Checked when saved; an address saved before today's rules sends as MAIL_FROM's.
                        config.mail.mail_from.email.clone()
                    }),
                );
                let dkim = match (&identity.dkim_domain, &identity.dkim_selector, &identity.dkim_key) {
                    (Some(domain), Some(selector), Some(sealed)) => sealing
                        .ok_or_else(|| "CREDENTIALS_KEY is not set".to_owned())
                        .and_then(|key| key.open("sender_identities.dkim_key", sealed))
                        .and_then(|pem| crate::mail::dkim::DkimKey::from_pem(&pem))
                        .map(|key| Some(Signer::new(domain, selector, &key)))
                        .map_err(|e| format!("the sender identity's DKIM key cannot be used: {e}")),
                    _ => Ok(None),
                };
                let sender = Identity {
                    from,
                    reply_to: identity.reply_to,
                    dkim,
                    servers,
                };
                (identity.id, Arc::new(sender))
            })
            .collect();
        Ok(Senders { relays, identities })
    }

    fn transport(
        &self,
        server: &model::SmtpServer,
        sealing: Option<&crate::senders::secrets::SealingKey>,
    ) -> Result<Mailer, String> {
        let stored = server.url.as_deref().ok_or("no URL")?;
        let url = if crate::senders::secrets::is_sealed(stored) {
            sealing
                .ok_or("its credentials are sealed and CREDENTIALS_KEY is not set")?
                .open("smtp_servers.url", stored)?
        } else {
            stored.to_owned()
        };
        let url = url::Url::parse(&url).map_err(|e| e.to_string())?;
        let target = SmtpTarget::from_url(&url)?;
        let pool = self
            .state
            .config()
            .mail
            .smtp_pool(target, server.max_connections.max(1) as usize)
            .map_err(|e| format!("{e:#}"))?;
        Ok(Mailer::Smtp(Arc::new(pool)))
    }

    /// Feeds one exchange to the server's breaker; an opening or closing is shown in the
    /// metrics and, for the API, in the server's row (best effort, in the background).
    pub fn record(&self, relay: &Relay, connection_failed: bool) {
        let Some(change) = relay.breaker.record(connection_failed) else {
            return;
        };
        let open = matches!(change, Change::Opened(_));
        match change {
            Change::Opened(cooldown) => {
                tracing::warn!(
                    server = relay.name,
                    ?cooldown,
                    "SMTP server unreachable; its circuit breaker is open"
                )
            }
            Change::Closed => tracing::info!(
                server = relay.name,
                "SMTP server answers again; its circuit breaker closed"
            ),
        }
        self.state
            .metrics()
            .smtp_breaker_open
            .get_or_create(&crate::metrics::Server {
                server: relay.name.clone(),
            })
            .set(i64::from(open));
        let until = match change {
            Change::Opened(cooldown) => chrono::Duration::from_std(cooldown)
                .ok()
                .map(|c| chrono::Utc::now() + c),
            Change::Closed => None,
        };
        let pool = self.state.pool().clone();
        let id = relay.id;
        tokio::spawn(async move {
            let written = async {
                let mut conn = pool.get().await?;
                model::set_breaker(&mut conn, id, until).await?;
                anyhow::Ok(())
            };
            if let Err(err) = tokio::time::timeout(Duration::from_secs(10), written)
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")))
            {
                tracing::warn!(error = %err, "cannot record a breaker change");
            }
        });
    }
}
