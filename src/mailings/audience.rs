//! A mailing's audience: who its runs reach. Any mix of every live client of the owner,
//! picked clients (`mailing_clients`), clients with given tags, and a segment; a client in
//! any part is in. Worked out in SQL when each run starts (see `dispatch::runs`), so a
//! recurring mailing reaches clients added since its last run; unsubscribed and deleted
//! clients are never in.

use std::collections::HashMap;

use diesel::dsl::sql;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::model::Mailing;
use crate::clients::model::Client;
use crate::clients::segment::{self, Filter, Segment, SegmentInput};
use crate::clients::tags::Tag;
use crate::db::page::{Page, PageArgs};
use crate::db::schema::{client_tags, clients, mailing_clients, mailing_tags, mailings, tags};
use crate::db::types::{ClientId, MailingId, TagId, UserId};
use crate::deliverability::suppressions;

/// Clients named one by one.
#[derive(Debug, Clone)]
pub enum Picked {
    /// Those stored for a mailing.
    Mailing(MailingId),
    /// These (an audience not saved yet).
    Ids(Vec<ClientId>),
}

/// Who an audience holds, as a union of its parts.
#[derive(Debug, Clone)]
pub struct Audience {
    pub all_clients: bool,
    pub picked: Option<Picked>,
    pub tags: Vec<TagId>,
    pub segment: Option<Segment>,
}

impl Audience {
    /// Only clients picked for a mailing: lists of such mailings are read in one query.
    pub fn picked_only(&self) -> Option<MailingId> {
        match (&self.picked, self.all_clients, self.tags.is_empty(), &self.segment) {
            (Some(Picked::Mailing(id)), false, true, None) => Some(*id),
            _ => None,
        }
    }

    /// The audience as one condition on `clients` (the owner and liveness come on top).
    /// The lists are correlated EXISTS, each a lookup by client: a chunk of a run (a range of
    /// client ids) then reads only its own clients' rows, where `id IN (SELECT ...)` got a
    /// plan reading every picked client of the mailing for each chunk (400 ms a chunk of a
    /// million-client mailing, against 20).
    fn filter(&self) -> Filter {
        if self.all_clients {
            return Box::new(sql::<Bool>("true"));
        }
        let mut parts: Vec<Filter> = Vec::new();
        match &self.picked {
            Some(Picked::Mailing(id)) => parts.push(Box::new(diesel::dsl::exists(
                mailing_clients::table
                    .filter(mailing_clients::mailing_id.eq(*id))
                    .filter(mailing_clients::client_id.eq(clients::id)),
            ))),
            Some(Picked::Ids(ids)) => parts.push(Box::new(clients::id.eq_any(ids.clone()))),
            None => {}
        }
        if !self.tags.is_empty() {
            parts.push(Box::new(diesel::dsl::exists(
                client_tags::table
                    .filter(client_tags::tag_id.eq_any(self.tags.clone()))
                    .filter(client_tags::client_id.eq(clients::id)),
            )));
        }
        if let Some(segment) = &self.segment {
            parts.push(segment::compile(segment));
        }
        parts
            .into_iter()
            .reduce(|either, or| Box::new(either.or(or)))
            .unwrap_or_else(|| Box::new(sql::<Bool>("false")))
    }
}

/// The live, subscribed clients of `owner` in `audience` whose address is not suppressed,
/// as a query to select from.
pub fn members(owner: UserId, audience: &Audience) -> clients::BoxedQuery<'static, Pg> {
    members_within(owner, audience, IdRange::default())
}

/// `members` within `range` of client ids.
pub fn members_within(owner: UserId, audience: &Audience, range: IdRange) -> clients::BoxedQuery<'static, Pg> {
    live_within(owner, audience, range).filter(diesel::dsl::not(suppressions::client_is_suppressed()))
}

/// The live, subscribed clients of `owner` in `audience` within `range` of client ids,
/// suppressed addresses included.
pub fn with_suppressed_within(owner: UserId, audience: &Audience, range: IdRange) -> clients::BoxedQuery<'static, Pg> {
    live_within(owner, audience, range)
}

/// Client ids after `after` and up to `through`, each bound optional: a slice of an
/// audience in id order (a chunk of a run).
#[derive(Debug, Clone, Copy, Default)]
pub struct IdRange {
    pub after: Option<uuid::Uuid>,
    pub through: Option<uuid::Uuid>,
}

fn live_within(owner: UserId, audience: &Audience, range: IdRange) -> clients::BoxedQuery<'static, Pg> {
    let mut query = clients::table
        .filter(
            clients::owner_id
                .eq(owner)
                .and(clients::deleted_at.is_null())
                .and(clients::unsubscribed_at.is_null()),
        )
        .filter(audience.filter())
        .into_boxed();
    if let Some(after) = range.after {
        query = query.filter(clients::id.gt(after));
    }
    if let Some(through) = range.through {
        query = query.filter(clients::id.le(through));
    }
    query
}

/// How many clients the audience holds now.
pub async fn size(conn: &mut AsyncPgConnection, owner: UserId, audience: &Audience) -> QueryResult<i64> {
    members(owner, audience).count().get_result(conn).await
}

/// One page of its members, newest first.
pub async fn members_page(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    audience: &Audience,
    args: PageArgs,
) -> QueryResult<Page<Client>> {
    let total = size(conn, owner, audience).await?;
    let rows = crate::keyset_page!(members(owner, audience), clients, args)
        .select(Client::as_select())
        .load(conn)
        .await?;
    Ok(Page { rows, total })
}

/// A stored segment read back; one that no longer passes the rules (they changed since it
/// was saved) matches nobody rather than stopping the run that reads it.
pub fn stored_segment(mailing: MailingId, json: Option<&serde_json::Value>) -> Option<(SegmentInput, Segment)> {
    let input: SegmentInput = serde_json::from_value(json?.clone())
        .inspect_err(|err| tracing::warn!(%mailing, %err, "a stored segment cannot be read; it matches nobody"))
        .ok()?;
    let checked = input
        .validate("segment")
        .inspect_err(
            |err| tracing::warn!(%mailing, %err, "a stored segment no longer passes the rules; it matches nobody"),
        )
        .ok()?;
    Some((input, checked))
}

/// One page of the clients picked for a mailing (live ones, unsubscribed included: they stay
/// picked), newest first.
pub async fn picked_page(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    mailing: MailingId,
    args: PageArgs,
) -> QueryResult<Page<Client>> {
    let picked = || {
        clients::table
            .filter(clients::owner_id.eq(owner).and(clients::deleted_at.is_null()))
            .filter(
                clients::id.eq_any(
                    mailing_clients::table
                        .filter(mailing_clients::mailing_id.eq(mailing))
                        .select(mailing_clients::client_id),
                ),
            )
            .into_boxed()
    };
    let total = picked().count().get_result(conn).await?;
    let rows = crate::keyset_page!(picked(), clients, args)
        .select(Client::as_select())
        .load(conn)
        .await?;
    Ok(Page { rows, total })
}

/// The stored audiences of several mailings, tags in one query.
pub async fn of_mailings(conn: &mut AsyncPgConnection, of: &[Mailing]) -> QueryResult<HashMap<MailingId, Audience>> {
    let ids: Vec<MailingId> = of.iter().map(|m| m.id).collect();
    let mut tags = tags_of(conn, &ids).await?;
    Ok(of
        .iter()
        .map(|m| {
            let audience = Audience {
                all_clients: m.audience_all,
                picked: Some(Picked::Mailing(m.id)),
                tags: tags.remove(&m.id).unwrap_or_default(),
                segment: stored_segment(m.id, m.audience_segment.as_ref()).map(|(_, checked)| checked),
            };
            (m.id, audience)
        })
        .collect())
}

/// The stored audience of one mailing.
pub async fn of_mailing(conn: &mut AsyncPgConnection, mailing: &Mailing) -> QueryResult<Audience> {
    let mut audiences = of_mailings(conn, std::slice::from_ref(mailing)).await?;
    Ok(audiences.remove(&mailing.id).expect("asked for this mailing"))
}

/// The tags of several mailings, by name, for `Audience.tags`.
pub async fn tags_of_mailings(
    conn: &mut AsyncPgConnection,
    ids: &[MailingId],
) -> QueryResult<HashMap<MailingId, Vec<Tag>>> {
    let rows: Vec<(MailingId, Tag)> = mailing_tags::table
        .inner_join(tags::table)
        .filter(mailing_tags::mailing_id.eq_any(ids))
        .order(sql::<diesel::sql_types::Text>("lower(tags.name)"))
        .select((mailing_tags::mailing_id, Tag::as_select()))
        .load(conn)
        .await?;
    let mut by_mailing: HashMap<MailingId, Vec<Tag>> = ids.iter().map(|id| (*id, Vec::new())).collect();
    for (mailing, tag) in rows {
        by_mailing.entry(mailing).or_default().push(tag);
    }
    Ok(by_mailing)
}

/// The tag ids of several mailings.
pub async fn tags_of(conn: &mut AsyncPgConnection, ids: &[MailingId]) -> QueryResult<HashMap<MailingId, Vec<TagId>>> {
    let rows: Vec<(MailingId, TagId)> = mailing_tags::table
        .filter(mailing_tags::mailing_id.eq_any(ids))
        .select((mailing_tags::mailing_id, mailing_tags::tag_id))
        .load(conn)
        .await?;
    let mut by_mailing: HashMap<MailingId, Vec<TagId>> = ids.iter().map(|id| (*id, Vec::new())).collect();
    for (mailing, tag) in rows {
        by_mailing.entry(mailing).or_default().push(tag);
    }
    Ok(by_mailing)
}

/// A checked audience to store on a mailing.
#[derive(Debug, Clone, Default)]
pub struct AudienceFields {
    pub all_clients: bool,
    pub client_ids: Vec<ClientId>,
    pub tag_ids: Vec<TagId>,
    pub segment: Option<SegmentInput>,
}

impl AudienceFields {
    pub fn is_empty(&self) -> bool {
        !self.all_clients && self.client_ids.is_empty() && self.tag_ids.is_empty() && self.segment.is_none()
    }
}

/// Makes the mailing's audience exactly `fields`.
pub async fn save(conn: &mut AsyncPgConnection, mailing_id: MailingId, fields: &AudienceFields) -> QueryResult<()> {
    let segment = fields
        .segment
        .as_ref()
        .map(|s| serde_json::to_value(s).expect("a segment serialises"));
    diesel::update(mailings::table.filter(mailings::id.eq(mailing_id)))
        .set((
            mailings::audience_all.eq(fields.all_clients),
            mailings::audience_segment.eq(segment),
        ))
        .execute(conn)
        .await?;
    diesel::delete(
        mailing_tags::table.filter(
            mailing_tags::mailing_id
                .eq(mailing_id)
                .and(mailing_tags::tag_id.ne_all(&fields.tag_ids)),
        ),
    )
    .execute(conn)
    .await?;
    let tags: Vec<_> = fields
        .tag_ids
        .iter()
        .map(|t| (mailing_tags::mailing_id.eq(mailing_id), mailing_tags::tag_id.eq(*t)))
        .collect();
    diesel::insert_into(mailing_tags::table)
        .values(&tags)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    set_clients(conn, mailing_id, &fields.client_ids).await
}

/// Makes the mailing's picked clients exactly `client_ids`.
async fn set_clients(conn: &mut AsyncPgConnection, mailing_id: MailingId, client_ids: &[ClientId]) -> QueryResult<()> {
    diesel::delete(
        mailing_clients::table.filter(
            mailing_clients::mailing_id
                .eq(mailing_id)
                .and(mailing_clients::client_id.ne_all(client_ids)),
        ),
    )
    .execute(conn)
    .await?;
    let rows: Vec<_> = client_ids
        .iter()
        .map(|c| {
            (
                mailing_clients::mailing_id.eq(mailing_id),
                mailing_clients::client_id.eq(*c),
            )
        })
        .collect();
    // 10,000 clients are 20,000 bind parameters, under PostgreSQL's 65,535.
    diesel::insert_into(mailing_clients::table)
        .values(&rows)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(QueryableByName)]
struct MailingClientRow {
    #[diesel(sql_type = SqlUuid)]
    mailing_id: MailingId,
    #[diesel(embed)]
    client: Client,
}

#[derive(QueryableByName)]
struct MailingCount {
    #[diesel(sql_type = SqlUuid)]
    mailing_id: MailingId,
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// One page of members for each of several mailings whose audiences are picked clients
/// only, in two queries whatever their number (`Mailing.clients` of a list).
pub async fn picked_members_pages(
    conn: &mut AsyncPgConnection,
    mailing_ids: &[MailingId],
    args: PageArgs,
) -> QueryResult<HashMap<MailingId, Page<Client>>> {
    let rows: Vec<MailingClientRow> = diesel::sql_query(
        "SELECT mailing_id, id, owner_id, email, full_name, comment, unsubscribed_at, deleted_at, created_at, attributes FROM ( \
             SELECT mc.mailing_id, c.*, row_number() OVER ( \
                 PARTITION BY mc.mailing_id ORDER BY c.created_at DESC, c.id DESC) AS rn \
             FROM mailing_clients mc JOIN clients c ON c.id = mc.client_id \
             WHERE mc.mailing_id = ANY($1) AND c.deleted_at IS NULL AND c.unsubscribed_at IS NULL \
               AND ($2::timestamptz IS NULL OR (c.created_at, c.id) < ($2, $3)) \
         ) page WHERE rn <= $4 ORDER BY mailing_id, created_at DESC, id DESC",
    )
    .bind::<Array<SqlUuid>, _>(mailing_ids)
    .bind::<Nullable<Timestamptz>, _>(args.after.map(|c| c.created_at))
    .bind::<Nullable<SqlUuid>, _>(args.after.map(|c| c.id))
    .bind::<BigInt, _>(args.limit())
    .load(conn)
    .await?;
    let totals = picked_sizes(conn, mailing_ids).await?;

    let mut pages: HashMap<MailingId, Page<Client>> = mailing_ids
        .iter()
        .map(|id| {
            (
                *id,
                Page {
                    rows: Vec::new(),
                    total: 0,
                },
            )
        })
        .collect();
    for row in rows {
        pages
            .entry(row.mailing_id)
            .or_insert_with(|| Page {
                rows: Vec::new(),
                total: 0,
            })
            .rows
            .push(row.client);
    }
    for (mailing, total) in totals {
        if let Some(page) = pages.get_mut(&mailing) {
            page.total = total;
        }
    }
    Ok(pages)
}

/// The sizes of several audiences of picked clients only, in one query.
pub async fn picked_sizes(conn: &mut AsyncPgConnection, ids: &[MailingId]) -> QueryResult<HashMap<MailingId, i64>> {
    let counts: Vec<MailingCount> = diesel::sql_query(
        "SELECT mc.mailing_id, count(*) AS count FROM mailing_clients mc JOIN clients c ON c.id = mc.client_id \
         WHERE mc.mailing_id = ANY($1) AND c.deleted_at IS NULL AND c.unsubscribed_at IS NULL GROUP BY mc.mailing_id",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .load(conn)
    .await?;
    let mut result: HashMap<MailingId, i64> = ids.iter().map(|id| (*id, 0)).collect();
    result.extend(counts.into_iter().map(|c| (c.mailing_id, c.count)));
    Ok(result)
}
