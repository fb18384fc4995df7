//! Every instance LISTENs on one dedicated connection: wake-ups for its dispatcher, and
//! notices of committed attempts, which it re-reads and publishes to its subscribers.
//! The connection is checked every HEALTH_CHECK and replaced when it fails; after a gap,
//! the dispatcher is woken to re-read the queue.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;

use crate::app::AppState;
use crate::db::types::{MailingId, RunId};
use crate::deliveries::model as deliveries;
use crate::events::{CHANNEL, Event, Notice, Progress};

const HEALTH_CHECK: Duration = Duration::from_secs(15);

pub async fn run(state: AppState, database_url: String, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut retry = Duration::from_millis(100);
    loop {
        let session = async {
            let mut conn = AsyncPgConnection::establish(&database_url).await?;
            diesel::sql_query(format!("LISTEN {CHANNEL}"))
                .execute(&mut conn)
                .await?;
            tracing::debug!("listening for events");
            // Anything may have happened while we were not listening.
            state.dispatch_wakeup().notify_one();
            listen(&state, &mut conn).await
        };
        tokio::select! {
            result = session => {
                if let Err(err) = result {
                    tracing::warn!(error = %err, "event listener lost its connection; reconnecting");
                }
            }
            _ = stop.wait_for(|s| *s) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        retry = (retry * 2).min(Duration::from_secs(5));
    }
}

async fn listen(state: &AppState, conn: &mut AsyncPgConnection) -> anyhow::Result<()> {
    loop {
        let mut notices = Vec::new();
        {
            let mut stream = std::pin::pin!(conn.notifications_stream());
            let deadline = tokio::time::sleep(HEALTH_CHECK);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    item = stream.next() => match item {
                        Some(notification) => {
                            let notification = notification?;
                            match serde_json::from_str::<Notice>(&notification.payload) {
                                Ok(notice) => notices.push(notice),
                                Err(err) => tracing::warn!(error = %err, payload = notification.payload, "unreadable notice"),
                            }
                            if notices.len() >= 64 { break; }
                        }
                        None => anyhow::bail!("the notification stream ended"),
                    },
                    _ = &mut deadline => break,
                    // Deliver what arrived before waiting further.
                    _ = tokio::time::sleep(Duration::from_millis(2)), if !notices.is_empty() => break,
                }
            }
        }
        if notices.is_empty() {
            tokio::time::timeout(Duration::from_secs(5), diesel::sql_query("SELECT 1").execute(conn)).await??;
            continue;
        }
        for notice in notices {
            handle(state, notice).await;
        }
    }
}

async fn handle(state: &AppState, notice: Notice) {
    match notice {
        Notice::Wake => state.dispatch_wakeup().notify_one(),
        Notice::Session { user } => state.live_sessions().changed(user),
        Notice::Run {
            mailing,
            run,
            logged_at,
        } => {
            if let Err(err) = publish_run(state, mailing, run, logged_at).await {
                tracing::warn!(error = %err, mailing_id = %mailing, "cannot read a run's events");
            }
        }
    }
}

/// Publishes the attempts a batch logged and the run's new counts.
async fn publish_run(
    state: &AppState,
    mailing: MailingId,
    run: RunId,
    logged_at: Vec<DateTime<Utc>>,
) -> anyhow::Result<()> {
    // Nobody listening on this instance: nothing to read.
    if state.events().receivers() == 0 {
        return Ok(());
    }
    let mut conn = state.pool().get().await?;
    if !logged_at.is_empty() {
        for attempt in deliveries::attempts_logged_at(&mut conn, mailing, &logged_at).await? {
            state.events().publish(Event::Attempt(attempt));
        }
    }
    let run_at: DateTime<Utc> = {
        use diesel::{ExpressionMethods, QueryDsl};
        crate::db::schema::runs::table
            .filter(crate::db::schema::runs::id.eq(run))
            .select(crate::db::schema::runs::run_at)
            .first(&mut conn)
            .await?
    };
    let counts = deliveries::run_counts(&mut conn, &[run])
        .await?
        .remove(&run)
        .unwrap_or_default();
    state.events().publish(Event::Progress(Progress {
        mailing_id: mailing,
        run_at,
        counts,
    }));
    Ok(())
}
