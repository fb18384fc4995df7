//! The durable queue of account mails (verification links, notices): a row in
//! `account_emails` per mail, written in the same transaction as what caused it, sent by a
//! worker on any instance, retried with backoff. A mail server that is down delays these
//! mails; it never loses them, and never slows the request that queued them.

use std::time::Duration;

use diesel::sql_types::{BigInt, Integer, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{FailureKind, Mailer};
use crate::config::{DispatchConfig, MailConfig};
use crate::db::DbPool;

/// Queues a mail; it is sent once the surrounding transaction commits.
pub async fn enqueue(
    conn: &mut AsyncPgConnection,
    user_id: Option<Uuid>,
    to: &str,
    subject: &str,
    body: &str,
) -> diesel::QueryResult<()> {
    diesel::sql_query("INSERT INTO account_emails (user_id, to_address, subject, body) VALUES ($1, $2, $3, $4)")
        .bind::<Nullable<SqlUuid>, _>(user_id)
        .bind::<Text, _>(to)
        .bind::<Text, _>(subject)
        .bind::<Text, _>(body)
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(diesel::QueryableByName)]
struct Claimed {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    to_address: String,
    #[diesel(sql_type = Text)]
    subject: String,
    #[diesel(sql_type = Text)]
    body: String,
    #[diesel(sql_type = Integer)]
    attempt_count: i32,
}

/// Sends what is due in batches until stopped; sleeps until the next retry is due, a
/// wake-up arrives, or DISPATCH_INTERVAL passes.
pub struct AccountMailWorker {
    pub pool: DbPool,
    pub mailer: Mailer,
    pub mail: MailConfig,
    pub dispatch: DispatchConfig,
    pub instance_id: Uuid,
    pub wakeup: std::sync::Arc<tokio::sync::Notify>,
}

impl AccountMailWorker {
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let pause = match self.send_due().await {
                Ok(0) => self.until_next_due().await.unwrap_or(self.dispatch.dispatch_interval),
                Ok(_) => Duration::ZERO,
                Err(err) => {
                    tracing::warn!(error = %err, "account mail queue unavailable; retrying");
                    Duration::from_secs(1)
                }
            };
            if pause.is_zero() {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.wakeup.notified() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Claims and sends one batch; returns how many were claimed.
    pub async fn send_due(&self) -> anyhow::Result<usize> {
        let mut conn = self.pool.get().await?;
        // Mails whose sender died mid-send go back to the queue: a second copy of a
        // verification mail is harmless, a lost one is not.
        diesel::sql_query(
            "UPDATE account_emails SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL \
             WHERE status = 'sending' AND lease_expires_at < now()",
        )
        .execute(&mut conn)
        .await?;
        let lease = self.mail.send_timeout + Duration::from_secs(30);
        let claimed: Vec<Claimed> = diesel::sql_query(
            "WITH due AS ( \
                 SELECT id FROM account_emails WHERE status = 'pending' AND next_attempt_at <= now() \
                 ORDER BY next_attempt_at LIMIT 20 FOR UPDATE SKIP LOCKED) \
             UPDATE account_emails a SET status = 'sending', lease_owner = $1, \
                 lease_expires_at = now() + $2 * interval '1 microsecond', attempt_count = a.attempt_count + 1 \
             FROM due WHERE a.id = due.id \
             RETURNING a.id, a.to_address, a.subject, a.body, a.attempt_count",
        )
        .bind::<SqlUuid, _>(self.instance_id)
        .bind::<BigInt, _>(lease.as_micros() as i64)
        .load(&mut conn)
        .await?;
        drop(conn); // no connection held while talking to the mail server

        let count = claimed.len();
        let sends = claimed.into_iter().map(|mail| async move {
            let outcome = self.send_one(&mail).await;
            if let Err(err) = self.finish(&mail, outcome).await {
                tracing::warn!(error = %err, mail_id = %mail.id, "cannot record an account mail's outcome");
            }
        });
        futures_util::future::join_all(sends).await;
        Ok(count)
    }

    async fn send_one(&self, mail: &Claimed) -> Result<(), (FailureKind, String)> {
        let message = super::plain_mail(
            &self.mail.mail_from,
            &mail.to_address,
            &mail.subject,
            &mail.body,
            None,
            self.mail.max_message_size,
        )
        .map_err(|e| (FailureKind::Permanent, e))?;
        self.mailer
            .send(&message)
            .await
            .map(|_| ())
            .map_err(|e| (e.kind, e.to_string()))
    }

    async fn finish(&self, mail: &Claimed, outcome: Result<(), (FailureKind, String)>) -> anyhow::Result<()> {
        let attempts = mail.attempt_count as u32;
        let (status, delay, error) = match outcome {
            Ok(()) => ("sent", Duration::ZERO, None),
            Err((FailureKind::Transient, e)) if attempts < u32::from(self.dispatch.max_attempts) => (
                "pending",
                crate::retry::backoff(
                    attempts,
                    self.dispatch.retry_base,
                    self.dispatch.retry_max,
                    crate::retry::jitter(),
                ),
                Some(e),
            ),
            Err((FailureKind::Unknown, e)) => ("unknown", Duration::ZERO, Some(e)),
            Err((_, e)) => ("failed", Duration::ZERO, Some(e)),
        };
        if let Some(error) = &error {
            tracing::warn!(mail_id = %mail.id, status, error, "account mail not delivered");
        }
        let mut conn = self.pool.get().await?;
        // Guarded by lease owner and attempt number: a rescued and re-claimed mail is not ours.
        diesel::sql_query(
            "UPDATE account_emails SET status = $1, last_error = $2, \
                 next_attempt_at = now() + $3 * interval '1 microsecond', \
                 sent_at = CASE WHEN $1 = 'sent' THEN now() END, lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = $4 AND lease_owner = $5 AND attempt_count = $6",
        )
        .bind::<Text, _>(status)
        .bind::<Nullable<Text>, _>(error)
        .bind::<BigInt, _>(delay.as_micros() as i64)
        .bind::<SqlUuid, _>(mail.id)
        .bind::<SqlUuid, _>(self.instance_id)
        .bind::<Integer, _>(mail.attempt_count)
        .execute(&mut conn)
        .await?;
        Ok(())
    }

    async fn until_next_due(&self) -> Option<Duration> {
        #[derive(diesel::QueryableByName)]
        struct Next {
            #[diesel(sql_type = Nullable<BigInt>)]
            micros: Option<i64>,
        }
        let mut conn = self.pool.get().await.ok()?;
        let next: Next = diesel::sql_query(
            "SELECT (extract(epoch FROM min(next_attempt_at) - now()) * 1000000)::bigint AS micros \
             FROM account_emails WHERE status = 'pending'",
        )
        .get_result(&mut conn)
        .await
        .ok()?;
        let wait = Duration::from_micros(next.micros?.max(0) as u64);
        Some(wait.min(self.dispatch.dispatch_interval))
    }
}
