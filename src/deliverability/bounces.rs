//! Bounces and complaints, recorded against their delivery, and what each one does: a hard
//! bounce suppresses the address at once; soft bounces suppress it after SOFT_BOUNCE_LIMIT
//! bounced deliveries in a row (a delivery that went out since breaks the row); a
//! complaint unsubscribes the client, suppresses the address, and pauses the mailing when
//! the run's complaint rate goes over COMPLAINT_PAUSE_RATE. Every way a report comes in
//! (the SMTP reply, the bounce mailbox, a webhook) ends here, and the same report twice
//! counts once: one row per delivery and kind.

use std::collections::HashMap;

use async_graphql::{Enum, SimpleObject};
use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::suppressions::{self, SuppressionReason};
use crate::db::schema::bounces;
use crate::db::types::{BounceId, ClientId, DeliveryId, MailingId, RunId, UserId};

#[derive(
    Enum, Copy, Clone, Debug, PartialEq, Eq, Hash, diesel::expression::AsExpression, diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = Text)]
pub enum BounceKind {
    /// The address does not exist or takes no mail: never mailed again.
    Hard,
    /// A temporary trouble (mailbox full, server down) that outlasted the retries.
    Soft,
    /// The recipient marked the message as spam.
    Complaint,
}

crate::text_enum!(BounceKind { Hard => "hard", Soft => "soft", Complaint => "complaint" });

/// Where a report came from.
#[derive(Copy, Clone, Debug, PartialEq, Eq, diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)]
#[diesel(sql_type = Text)]
pub enum Source {
    /// The mail server's reply to our own exchange.
    Smtp,
    /// A report read from the bounce mailbox.
    Mailbox,
    /// A provider's notice posted to a webhook.
    Webhook,
}

crate::text_enum!(Source { Smtp => "smtp", Mailbox => "mailbox", Webhook => "webhook" });

/// A bounce or complaint as the API shows it (`Delivery.bounce`).
#[derive(Debug, Clone, Queryable, Selectable, SimpleObject)]
#[diesel(table_name = bounces, check_for_backend(Pg))]
#[graphql(name = "Bounce")]
pub struct Bounce {
    #[graphql(skip)]
    pub id: BounceId,
    #[graphql(skip)]
    pub delivery_id: DeliveryId,
    pub kind: BounceKind,
    /// The status code and text the report or the server gave.
    pub diagnostic: Option<String>,
    pub received_at: DateTime<Utc>,
}

/// One report about one delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub delivery: DeliveryId,
    pub kind: BounceKind,
    pub diagnostic: Option<String>,
    pub source: Source,
}

/// SOFT_BOUNCE_LIMIT, COMPLAINT_PAUSE_RATE and its minimum sample.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub soft_bounce_limit: u32,
    pub complaint_pause_rate: f64,
    pub complaint_min_sent: u32,
}

/// What recording a report did.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// No such delivery (a forged or very old reference): nothing done.
    UnknownDelivery,
    /// This delivery had a report of this kind already: nothing more done.
    Repeat,
    New {
        owner: UserId,
        email: String,
        suppressed: Option<SuppressionReason>,
        /// The mailing this complaint paused (its owner is to be told).
        paused: Option<MailingId>,
    },
}

#[derive(QueryableByName)]
struct Target {
    #[diesel(sql_type = SqlUuid)]
    owner_id: UserId,
    #[diesel(sql_type = SqlUuid)]
    client_id: ClientId,
    #[diesel(sql_type = SqlUuid)]
    mailing_id: MailingId,
    #[diesel(sql_type = SqlUuid)]
    run_id: RunId,
    #[diesel(sql_type = Text)]
    email: String,
}

/// Records a report and acts on it; run it in a transaction (the caller's), so a report is
/// recorded with all its effects or not at all, and can be tried again.
pub async fn record(conn: &mut AsyncPgConnection, report: &Report, policy: &Policy) -> QueryResult<Recorded> {
    let target: Option<Target> = diesel::sql_query(
        "SELECT owner_id, client_id, mailing_id, run_id, email FROM deliveries WHERE id = $1 FOR UPDATE",
    )
    .bind::<SqlUuid, _>(report.delivery)
    .get_result(conn)
    .await
    .optional()?;
    let Some(target) = target else {
        return Ok(Recorded::UnknownDelivery);
    };
    let diagnostic = report.diagnostic.as_deref().map(crate::validate::log_text);
    let inserted = diesel::sql_query(
        "INSERT INTO bounces (delivery_id, kind, diagnostic, source) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (delivery_id, kind) DO NOTHING",
    )
    .bind::<SqlUuid, _>(report.delivery)
    .bind::<Text, _>(report.kind)
    .bind::<Nullable<Text>, _>(&diagnostic)
    .bind::<Text, _>(report.source)
    .execute(conn)
    .await?;
    if inserted == 0 {
        return Ok(Recorded::Repeat);
    }
    if report.source != Source::Smtp {
        // A report after the send is a line of the attempt log too (the SMTP ones are the
        // attempt that failed). Numbers below zero: see the deliverability migration.
        let (number, status) = match report.kind {
            BounceKind::Hard => (-1, "bounced"),
            BounceKind::Soft => (-2, "bounced"),
            BounceKind::Complaint => (-3, "complained"),
        };
        diesel::sql_query(
            "INSERT INTO attempts (delivery_id, mailing_id, owner_id, email, attempt_number, status, server_response) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (delivery_id, attempt_number) DO NOTHING",
        )
        .bind::<SqlUuid, _>(report.delivery)
        .bind::<SqlUuid, _>(target.mailing_id)
        .bind::<SqlUuid, _>(target.owner_id)
        .bind::<Text, _>(&target.email)
        .bind::<Integer, _>(number)
        .bind::<Text, _>(status)
        .bind::<Nullable<Text>, _>(&diagnostic)
        .execute(conn)
        .await?;
    }
    let mut paused = None;
    let reason = match report.kind {
        BounceKind::Hard => Some(SuppressionReason::HardBounce),
        BounceKind::Soft => soft_streak(conn, &target, policy.soft_bounce_limit)
            .await?
            .then_some(SuppressionReason::SoftBounces),
        BounceKind::Complaint => {
            crate::clients::model::unsubscribe(conn, target.client_id).await?;
            paused = pause_if_complained(conn, &target, policy).await?;
            if paused.is_some() {
                tell_owner_of_pause(conn, &target).await?;
            }
            Some(SuppressionReason::Complaint)
        }
    };
    if let Some(reason) = reason {
        suppressions::suppress(conn, target.owner_id, &target.email, reason, Some(report.delivery)).await?;
    }
    Ok(Recorded::New {
        owner: target.owner_id,
        email: target.email,
        suppressed: reason,
        paused,
    })
}

/// Whether the client's last `limit` finished deliveries (of any of the owner's mailings)
/// all bounced softly: one that went out since breaks the row. Read through the runs of
/// the owner's mailings and the (run, client) key, so no index on deliveries is written
/// per delivery for a question asked once per soft bounce.
async fn soft_streak(conn: &mut AsyncPgConnection, target: &Target, limit: u32) -> QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Streak {
        #[diesel(sql_type = BigInt)]
        finished: i64,
        #[diesel(sql_type = BigInt)]
        soft: i64,
    }
    let streak: Streak = diesel::sql_query(
        "SELECT count(*) AS finished, count(*) FILTER (WHERE soft) AS soft FROM ( \
             SELECT EXISTS (SELECT 1 FROM bounces b WHERE b.delivery_id = d.id AND b.kind = 'soft') AS soft \
             FROM runs r JOIN mailings m ON m.id = r.mailing_id \
             JOIN deliveries d ON d.run_id = r.id AND d.client_id = $2 \
             WHERE m.owner_id = $1 AND d.status IN ('sent', 'failed') \
             ORDER BY d.created_at DESC LIMIT $3) last",
    )
    .bind::<SqlUuid, _>(target.owner_id)
    .bind::<SqlUuid, _>(target.client_id)
    .bind::<BigInt, _>(i64::from(limit))
    .get_result(conn)
    .await?;
    Ok(streak.finished >= i64::from(limit) && streak.soft == streak.finished)
}

/// Pauses the mailing when complaints about its run's sent messages go over the rate, once
/// the run has sent at least the minimum sample. Returns the mailing if this paused it.
async fn pause_if_complained(
    conn: &mut AsyncPgConnection,
    target: &Target,
    policy: &Policy,
) -> QueryResult<Option<MailingId>> {
    #[derive(QueryableByName)]
    struct Paused {
        #[diesel(sql_type = Bool)]
        paused: bool,
    }
    let result: Option<Paused> = diesel::sql_query(
        "WITH rate AS ( \
             SELECT (SELECT count(*) FROM deliveries WHERE run_id = $1 AND status = 'sent') AS sent, \
                    (SELECT count(*) FROM bounces b JOIN deliveries d ON d.id = b.delivery_id \
                     WHERE d.run_id = $1 AND b.kind = 'complaint') AS complaints) \
         UPDATE mailings SET paused = true, updated_at = now() FROM rate \
         WHERE id = $2 AND NOT paused AND rate.sent >= $3 AND rate.complaints > rate.sent * $4 \
         RETURNING true AS paused",
    )
    .bind::<SqlUuid, _>(target.run_id)
    .bind::<SqlUuid, _>(target.mailing_id)
    .bind::<BigInt, _>(i64::from(policy.complaint_min_sent))
    .bind::<diesel::sql_types::Double, _>(policy.complaint_pause_rate)
    .get_result(conn)
    .await
    .optional()?;
    Ok(result.filter(|p| p.paused).map(|_| target.mailing_id))
}

/// A notice mail to the owner of a mailing that paused itself, queued with the pause.
async fn tell_owner_of_pause(conn: &mut AsyncPgConnection, target: &Target) -> QueryResult<()> {
    use crate::db::schema::users;
    let email: String = users::table
        .filter(users::id.eq(target.owner_id))
        .select(users::email)
        .first(conn)
        .await?;
    let body = format!(
        "Your mailing {} has paused itself: too many recipients of its current run marked it as spam.\n\n\
         The clients who complained are unsubscribed and their addresses suppressed. Mailbox providers \
         block senders whose complaint rate stays high; check the message and its audience, then resume \
         the mailing when you are ready.\n",
        target.mailing_id
    );
    crate::jobs::account_mail::enqueue(
        conn,
        Some(target.owner_id),
        &email,
        "A mailing paused: complaints",
        &body,
    )
    .await
}

/// The latest bounce or complaint of each delivery.
pub async fn latest_of(conn: &mut AsyncPgConnection, ids: &[DeliveryId]) -> QueryResult<HashMap<DeliveryId, Bounce>> {
    let rows: Vec<Bounce> = bounces::table
        .filter(bounces::delivery_id.eq_any(ids))
        .order(bounces::received_at.asc())
        .select(Bounce::as_select())
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|b| (b.delivery_id, b)).collect())
}

/// Whether the delivery exists and went to `recipient` (any case; any address when None).
pub async fn delivered_to(
    conn: &mut AsyncPgConnection,
    delivery: DeliveryId,
    recipient: Option<&str>,
) -> QueryResult<bool> {
    use crate::db::schema::deliveries;
    let email: Option<String> = deliveries::table
        .filter(deliveries::id.eq(delivery))
        .select(deliveries::email)
        .first(conn)
        .await
        .optional()?;
    Ok(email.is_some_and(|email| recipient.is_none_or(|r| r.eq_ignore_ascii_case(&email))))
}
