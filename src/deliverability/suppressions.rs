//! The suppression list: per owner, the addresses no run mails any more (a hard bounce,
//! soft bounces in a row, a complaint, or the owner's own choice), left out when a run
//! expands exactly like unsubscribed clients, until the owner lifts them.

use std::collections::HashMap;

use async_graphql::Enum;
use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::page::{Cursor, Page, PageArgs};
use crate::db::schema::{clients, suppressions};
use crate::db::types::{DeliveryId, SuppressionId, UserId};
use crate::deliveries::model::{Cancel, cancel_pending};

#[derive(
    Enum, Copy, Clone, Debug, PartialEq, Eq, Hash, diesel::expression::AsExpression, diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = Text)]
pub enum SuppressionReason {
    /// The address does not exist (a 5.1.x or 5.2.1 answer or report).
    HardBounce,
    /// SOFT_BOUNCE_LIMIT deliveries in a row bounced softly (mailbox full, server down...).
    SoftBounces,
    /// The recipient marked a message as spam.
    Complaint,
    /// Added by the owner.
    Manual,
}

crate::text_enum!(SuppressionReason {
    HardBounce => "hard_bounce",
    SoftBounces => "soft_bounces",
    Complaint => "complaint",
    Manual => "manual",
});

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = suppressions, check_for_backend(Pg))]
pub struct Suppression {
    pub id: SuppressionId,
    pub owner_id: UserId,
    pub email: String,
    pub reason: SuppressionReason,
    pub delivery_id: Option<DeliveryId>,
    pub created_at: DateTime<Utc>,
}

impl Suppression {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.created_at,
            id: self.id.0,
        }
    }
}

diesel::define_sql_function!(fn lower(x: Text) -> Text);

/// Whether the client's address is on its owner's list: a condition on `clients`, for the
/// run's expansion and the audience's size (an anti-join on the list's unique index).
#[diesel::dsl::auto_type]
pub fn client_is_suppressed() -> _ {
    diesel::dsl::exists(
        suppressions::table
            .filter(suppressions::owner_id.eq(clients::owner_id))
            .filter(lower(suppressions::email).eq(lower(clients::email))),
    )
}

/// The owner's list, newest first, by reason and by a part of the address.
pub async fn list(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    reason: Option<SuppressionReason>,
    search: Option<&str>,
    args: PageArgs,
) -> QueryResult<Page<Suppression>> {
    let listed = || {
        let mut query = suppressions::table
            .filter(suppressions::owner_id.eq(owner))
            .into_boxed();
        if let Some(reason) = reason {
            query = query.filter(suppressions::reason.eq(reason));
        }
        if let Some(search) = search.map(str::trim).filter(|s| !s.is_empty()) {
            query = query.filter(suppressions::email.ilike(crate::db::like_pattern(search)));
        }
        query
    };
    let total = listed().count().get_result(conn).await?;
    let rows = crate::keyset_page!(listed(), suppressions, args)
        .select(Suppression::as_select())
        .load(conn)
        .await?;
    Ok(Page { rows, total })
}

/// The suppressions of the given addresses (compared in lower case), keyed by the address
/// in lower case; the owners are checked by the caller's keys.
pub async fn of_addresses(
    conn: &mut AsyncPgConnection,
    keys: &[(UserId, String)],
) -> QueryResult<HashMap<(UserId, String), Suppression>> {
    let owners: Vec<UserId> = keys.iter().map(|(owner, _)| *owner).collect();
    let emails: Vec<String> = keys.iter().map(|(_, email)| email.to_lowercase()).collect();
    let rows: Vec<Suppression> = suppressions::table
        .filter(suppressions::owner_id.eq_any(&owners))
        .filter(lower(suppressions::email).eq_any(&emails))
        .select(Suppression::as_select())
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|s| ((s.owner_id, s.email.to_lowercase()), s))
        .collect())
}

pub async fn find(conn: &mut AsyncPgConnection, owner: UserId, email: &str) -> QueryResult<Option<Suppression>> {
    suppressions::table
        .filter(suppressions::owner_id.eq(owner))
        .filter(lower(suppressions::email).eq(email.to_lowercase()))
        .select(Suppression::as_select())
        .first(conn)
        .await
        .optional()
}

/// Puts the address on the owner's list (the first reason stays when it is there already)
/// and cancels its pending deliveries (those already on the wire finish). Returns the
/// suppression as it stands.
pub async fn suppress(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    email: &str,
    reason: SuppressionReason,
    delivery: Option<DeliveryId>,
) -> QueryResult<Suppression> {
    diesel::sql_query(
        "INSERT INTO suppressions (owner_id, email, reason, delivery_id) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (owner_id, lower(email)) DO NOTHING",
    )
    .bind::<SqlUuid, _>(owner)
    .bind::<Text, _>(email)
    .bind::<Text, _>(reason)
    .bind::<Nullable<SqlUuid>, _>(delivery)
    .execute(conn)
    .await?;
    let clients: Vec<crate::db::types::ClientId> = clients::table
        .filter(clients::owner_id.eq(owner))
        .filter(lower(clients::email).eq(email.to_lowercase()))
        .select(clients::id)
        .load(conn)
        .await?;
    for client in clients {
        cancel_pending(conn, Cancel::Client(client)).await?;
    }
    find(conn, owner, email).await?.ok_or(diesel::NotFound)
}

/// Takes the address off the owner's list; false when it was not on it.
pub async fn unsuppress(conn: &mut AsyncPgConnection, owner: UserId, email: &str) -> QueryResult<bool> {
    let removed = diesel::delete(
        suppressions::table
            .filter(suppressions::owner_id.eq(owner))
            .filter(lower(suppressions::email).eq(email.to_lowercase())),
    )
    .execute(conn)
    .await?;
    Ok(removed > 0)
}

/// How many of the clients a query selects are suppressed (a run's `suppressed`).
pub async fn count_suppressed(
    conn: &mut AsyncPgConnection,
    members: clients::BoxedQuery<'static, Pg>,
) -> QueryResult<i64> {
    members.filter(client_is_suppressed()).count().get_result(conn).await
}
