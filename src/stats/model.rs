//! Statistics queries, computed in SQL.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::types::{MailingId, UserId};

/// The service-wide counts of the home page.
#[derive(Debug, Clone, Copy, diesel::QueryableByName)]
pub struct HomeCounts {
    #[diesel(sql_type = BigInt)]
    pub mailings_total: i64,
    #[diesel(sql_type = BigInt)]
    pub mailings_active: i64,
    #[diesel(sql_type = BigInt)]
    pub unique_clients: i64,
}

/// Live mailings; those running (a run started, not completed) and not paused; distinct
/// client addresses. Whole-table counts: callers cache them (see `graphql::HomeStatsCache`).
pub async fn home_counts(conn: &mut AsyncPgConnection) -> diesel::QueryResult<HomeCounts> {
    diesel::sql_query(
        "SELECT \
           (SELECT count(*) FROM mailings WHERE deleted_at IS NULL) AS mailings_total, \
           (SELECT count(*) FROM mailings m WHERE m.deleted_at IS NULL AND m.completed_at IS NULL AND NOT m.paused \
              AND EXISTS (SELECT 1 FROM runs r WHERE r.mailing_id = m.id AND r.status <> 'skipped')) AS mailings_active, \
           (SELECT count(DISTINCT lower(email)) FROM clients WHERE deleted_at IS NULL) AS unique_clients",
    )
    .get_result(conn)
    .await
}

/// One day of `daily`.
#[derive(Debug, Clone, PartialEq, Eq, diesel::QueryableByName)]
pub struct Day {
    /// YYYY-MM-DD in the requested zone.
    #[diesel(sql_type = Text)]
    pub day: String,
    #[diesel(sql_type = BigInt)]
    pub attempts: i64,
    #[diesel(sql_type = BigInt)]
    pub succeeded: i64,
    #[diesel(sql_type = BigInt)]
    pub failed: i64,
    #[diesel(sql_type = BigInt)]
    pub sent: i64,
}

/// Whose numbers.
#[derive(Debug, Clone, Copy)]
pub enum Of {
    /// Every mailing of a user.
    Owner(UserId),
    /// One mailing.
    Mailing(MailingId),
}

/// Attempts by outcome and deliveries that reached SENT, per calendar day of `time_zone`
/// (an IANA name PostgreSQL knows), for every day that overlaps [from, to), zero days
/// included.
pub async fn daily(
    conn: &mut AsyncPgConnection,
    of: Of,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    time_zone: &str,
) -> diesel::QueryResult<Vec<Day>> {
    let (owner, mailing) = match of {
        Of::Owner(owner) => (Some(owner), None),
        Of::Mailing(mailing) => (None, Some(mailing)),
    };
    diesel::sql_query(
        "WITH days AS ( \
           SELECT d::date AS day FROM generate_series( \
             ($1 AT TIME ZONE $3)::date, (($2 - interval '1 microsecond') AT TIME ZONE $3)::date, interval '1 day') AS d \
         ), tried AS ( \
           SELECT (attempted_at AT TIME ZONE $3)::date AS day, count(*) AS attempts, \
                  count(*) FILTER (WHERE status = 'success') AS succeeded, \
                  count(*) FILTER (WHERE status IN ('temporary_failure', 'permanent_failure')) AS failed \
           FROM attempts \
           WHERE attempted_at >= $1 AND attempted_at < $2 \
             AND ($4::uuid IS NULL OR owner_id = $4) AND ($5::uuid IS NULL OR mailing_id = $5) \
           GROUP BY 1 \
         ), sent AS ( \
           SELECT (sent_at AT TIME ZONE $3)::date AS day, count(*) AS sent \
           FROM deliveries \
           WHERE sent_at >= $1 AND sent_at < $2 \
             AND ($4::uuid IS NULL OR owner_id = $4) AND ($5::uuid IS NULL OR mailing_id = $5) \
           GROUP BY 1 \
         ) \
         SELECT to_char(days.day, 'YYYY-MM-DD') AS day, \
                coalesce(tried.attempts, 0) AS attempts, coalesce(tried.succeeded, 0) AS succeeded, \
                coalesce(tried.failed, 0) AS failed, coalesce(sent.sent, 0) AS sent \
         FROM days LEFT JOIN tried USING (day) LEFT JOIN sent USING (day) ORDER BY days.day",
    )
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .bind::<Text, _>(time_zone)
    .bind::<Nullable<SqlUuid>, _>(owner)
    .bind::<Nullable<SqlUuid>, _>(mailing)
    .load(conn)
    .await
}
