//! Account mails (verification links, password resets, notices) as background jobs:
//! queued in the same transaction as what caused them, sent by any instance, retried with
//! backoff. A mail server that is down delays these mails; it never loses them, and never
//! slows the request that queued them.

use lettre::message::Mailbox;
use serde::{Deserialize, Serialize};

use super::{BackgroundJob, JobError};
use crate::db::types::UserId;
use crate::mail::{FailureKind, Mailer};

/// One plain-text mail to an account holder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountMail {
    /// The account it concerns, so that deleting the account deletes its queued mails.
    pub user_id: Option<UserId>,
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Queues a mail; it is sent once the surrounding transaction commits.
pub async fn enqueue(
    conn: &mut diesel_async::AsyncPgConnection,
    user_id: Option<UserId>,
    to: &str,
    subject: &str,
    body: &str,
) -> diesel::QueryResult<()> {
    let mail = AccountMail {
        user_id,
        to: to.to_owned(),
        subject: subject.to_owned(),
        body: body.to_owned(),
    };
    super::enqueue(conn, &mail).await
}

/// What sending needs.
#[derive(Clone)]
pub struct Sender {
    pub mailer: Mailer,
    pub from: Mailbox,
    pub max_message_size: usize,
    /// Account mails are signed like mailings when DKIM is configured.
    pub dkim: Option<std::sync::Arc<crate::mail::dkim::Signer>>,
}

impl BackgroundJob for AccountMail {
    const KIND: &'static str = "account_mail";
    type Context = Sender;

    async fn run(&self, sender: &Sender) -> Result<(), JobError> {
        let message = crate::mail::plain_mail(
            &sender.from,
            &self.to,
            &self.subject,
            &self.body,
            None,
            sender.dkim.as_deref(),
            sender.max_message_size,
        )
        .map_err(JobError::Permanent)?;
        match sender.mailer.send(&message).await {
            Ok(_) => Ok(()),
            Err(err) => match err.kind {
                FailureKind::Transient => Err(JobError::Retry(err.to_string())),
                // The server may have taken it: a second copy is not worth the risk of
                // mailing a link twice for every timeout; the error stays in the queue.
                FailureKind::Unknown => Err(JobError::Permanent(format!("outcome unknown: {err}"))),
                FailureKind::Permanent => Err(JobError::Permanent(err.to_string())),
            },
        }
    }
}

/// The SQL that forgets an account's queued mails (run when the account is deleted).
pub const FORGET_USER: &str =
    "DELETE FROM background_jobs WHERE kind = 'account_mail' AND payload->>'user_id' = $1::text";
