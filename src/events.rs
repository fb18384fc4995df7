//! Live events: what any instance did, for this instance's subscribers.
//!
//! An instance that commits attempts sends a PostgreSQL NOTIFY per run it touched, with a
//! small payload (`Notice`: never lists of ids, NOTIFY payloads are limited to 8,000
//! bytes), after the commit and many at a time (`Notifier`). Every instance LISTENs
//! (src/dispatch/listener.rs), re-reads what the notice points at, and publishes it here,
//! on a `tokio::sync::broadcast` channel: a slow subscriber lags and loses old events; it
//! never slows sending.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::db::types::{MailingId, RunId, UserId};
use crate::deliveries::model::{Attempt, Counts};

/// The PostgreSQL channel every instance listens on.
pub const CHANNEL: &str = "mailwarm_events";

/// Commit times one notice carries (about 1 KiB of payload).
const MAX_TIMES_PER_NOTICE: usize = 32;

/// How long the notifier gathers notices before sending them together.
const GATHER: std::time::Duration = std::time::Duration::from_millis(20);

/// A NOTIFY payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// New work is due (a run started, deliveries re-queued, a mailing resumed): dispatchers
    /// should look now rather than at their next poll.
    Wake,
    /// A run's deliveries changed; `logged_at`: the transaction times of the attempts
    /// logged (all attempts of one recorded group share one), at most
    /// [`MAX_TIMES_PER_NOTICE`]; empty when none were.
    Run {
        mailing: MailingId,
        run: RunId,
        #[serde(default)]
        logged_at: Vec<DateTime<Utc>>,
    },
    /// A user's sessions, role or active flag changed (sign-out, password change or reset,
    /// blocking, a role change, a deleted account): live connections re-check now.
    Session { user: UserId },
}

/// Sends a notice to every instance (delivered when the surrounding transaction commits).
pub async fn notify(conn: &mut AsyncPgConnection, notice: &Notice) -> diesel::QueryResult<()> {
    notify_all(conn, std::slice::from_ref(notice)).await
}

/// Sends several notices in one statement (one short transaction that writes nothing).
pub async fn notify_all(conn: &mut AsyncPgConnection, notices: &[Notice]) -> diesel::QueryResult<()> {
    let payloads: Vec<String> = notices
        .iter()
        .map(|n| serde_json::to_string(n).expect("a notice serialises"))
        .collect();
    diesel::sql_query("SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload")
        .bind::<Text, _>(CHANNEL)
        .bind::<diesel::sql_types::Array<Text>, _>(payloads)
        .execute(conn)
        .await?;
    Ok(())
}

/// Sends the notices of committed work from a task of its own: what arrives within
/// [`GATHER`] goes out in one statement, one notice per run with the commit times of its
/// groups. The dispatcher records each group of sends in its own transaction and hands the
/// notice here: PostgreSQL holds one global lock from a NOTIFYing transaction's pre-commit
/// until its commit is flushed, so a NOTIFY inside the recording statement made every
/// instance's commits take turns, and one notice per group kept every listener busy.
/// Notices are best-effort, as they always were (a listener that reconnects re-reads
/// state): one that cannot be sent is logged and dropped.
#[derive(Clone)]
pub struct Notifier {
    queue: tokio::sync::mpsc::UnboundedSender<Notice>,
}

impl Notifier {
    /// The notifier and its task, which ends once every `Notifier` clone is dropped and
    /// what was queued is sent.
    pub fn start(pool: crate::db::DbPool) -> (Notifier, tokio::task::JoinHandle<()>) {
        let (queue, mut pending) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Some(first) = pending.recv().await {
                let mut gathered = vec![first];
                let window = tokio::time::sleep(GATHER);
                tokio::pin!(window);
                loop {
                    tokio::select! {
                        next = pending.recv() => match next {
                            Some(notice) => gathered.push(notice),
                            None => break,
                        },
                        _ = &mut window => break,
                    }
                }
                let notices = coalesce(gathered);
                let sent = async {
                    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
                    notify_all(&mut conn, &notices).await.map_err(|e| e.to_string())
                };
                if let Err(err) = sent.await {
                    tracing::warn!(error = %err, notices = notices.len(), "cannot send notices; subscribers miss them");
                }
            }
        });
        (Notifier { queue }, task)
    }

    pub fn send(&self, notice: Notice) {
        // The task outlives every sender; a send fails only if it panicked.
        let _ = self.queue.send(notice);
    }
}

/// Merges the notices of one run (their commit times, at most MAX_TIMES_PER_NOTICE per
/// notice) and drops repeated wake-ups; the order of first appearance is kept.
fn coalesce(notices: Vec<Notice>) -> Vec<Notice> {
    let mut merged: Vec<Notice> = Vec::new();
    for notice in notices {
        let same = merged.iter().position(|m| match (m, &notice) {
            (Notice::Wake, Notice::Wake) => true,
            (
                Notice::Run {
                    mailing: a,
                    run: r,
                    logged_at: times,
                },
                Notice::Run { mailing, run, .. },
            ) => a == mailing && r == run && times.len() < MAX_TIMES_PER_NOTICE,
            _ => false,
        });
        match (same.map(|i| &mut merged[i]), notice) {
            (Some(Notice::Run { logged_at, .. }), Notice::Run { logged_at: more, .. }) => {
                for at in more {
                    if !logged_at.contains(&at) {
                        logged_at.push(at);
                    }
                }
            }
            (Some(_), _) => {}
            (None, notice) => merged.push(notice),
        }
    }
    merged
}

/// The counts of one run, whenever they change.
#[derive(Debug, Clone)]
pub struct Progress {
    pub mailing_id: MailingId,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_of_one_run_are_merged() {
        let (m, r, other) = (MailingId::new_random(), RunId::new_random(), RunId::new_random());
        let t = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        let run = |run, times: Vec<DateTime<Utc>>| Notice::Run {
            mailing: m,
            run,
            logged_at: times,
        };
        let merged = coalesce(vec![
            run(r, vec![t(1)]),
            Notice::Wake,
            run(other, vec![t(2)]),
            run(r, vec![t(3)]),
            Notice::Wake,
            run(r, vec![t(3)]),
        ]);
        assert_eq!(
            merged,
            vec![run(r, vec![t(1), t(3)]), Notice::Wake, run(other, vec![t(2)])]
        );
        let many: Vec<Notice> = (0..40).map(|i| run(r, vec![t(i)])).collect();
        let merged = coalesce(many);
        assert_eq!(merged.len(), 2);
        assert!(serde_json::to_string(&merged[0]).unwrap().len() < 8000);
    }
}
