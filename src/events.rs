//! Live events: what any instance did, for this instance's subscribers.
//!
//! An instance that commits a batch of attempts sends one PostgreSQL NOTIFY per run it
//! touched, with a small payload (`Notice`: never lists of ids, NOTIFY payloads are limited
//! to 8,000 bytes). Every instance LISTENs (src/dispatch/listener.rs), re-reads what the
//! notice points at, and publishes it here, on a `tokio::sync::broadcast` channel: a slow
//! subscriber lags and loses old events; it never slows sending.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::deliveries::model::{Attempt, Counts};

/// The PostgreSQL channel every instance listens on.
pub const CHANNEL: &str = "mailwarm_events";

/// A NOTIFY payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// New work is due (a run started, deliveries re-queued, a mailing resumed): dispatchers
    /// should look now rather than at their next poll.
    Wake,
    /// A run's deliveries changed; `logged_at`: the transaction time of the attempts logged
    /// (all attempts of one batch share it).
    Run {
        mailing: Uuid,
        run: Uuid,
        logged_at: Option<DateTime<Utc>>,
    },
}

/// Sends a notice to every instance (delivered when the surrounding transaction commits).
pub async fn notify(conn: &mut AsyncPgConnection, notice: &Notice) -> diesel::QueryResult<()> {
    let payload = serde_json::to_string(notice).expect("a notice serialises");
    diesel::sql_query("SELECT pg_notify($1, $2)")
        .bind::<Text, _>(CHANNEL)
        .bind::<Text, _>(payload)
        .execute(conn)
        .await?;
    Ok(())
}

/// The counts of one run, whenever they change.
#[derive(Debug, Clone)]
pub struct Progress {
    pub mailing_id: Uuid,
    pub run_at: DateTime<Utc>,
    pub counts: Counts,
}

#[derive(Debug, Clone)]
pub enum Event {
    Attempt(Attempt),
    Progress(Progress),
}

/// This instance's fan-out of events to its subscribers.
#[derive(Clone)]
pub struct EventHub {
    sender: broadcast::Sender<Arc<Event>>,
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub {
            sender: broadcast::channel(4096).0,
        }
    }
}

impl EventHub {
    pub fn publish(&self, event: Event) {
        // No subscribers is fine.
        let _ = self.sender.send(Arc::new(event));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.sender.subscribe()
    }

    /// Subscribers on this instance right now.
    pub fn receivers(&self) -> usize {
        self.sender.receiver_count()
    }
}
