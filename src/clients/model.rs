//! The `clients` table. Every query is scoped to its owner in SQL; deleted clients are
//! kept (soft delete) so the deliveries that name them stay readable.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::segment::Segment;
use crate::db::now;
use crate::db::page::{Cursor, Page, PageArgs};
use crate::db::schema::{client_tags, clients};
use crate::db::types::{ClientId, TagId, UserId};

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = clients, check_for_backend(Pg))]
pub struct Client {
    pub id: ClientId,
    pub owner_id: UserId,
    pub email: String,
    pub full_name: String,
    pub comment: String,
    pub unsubscribed_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The owner's own fields: a JSON object (see `validate::attributes`).
    pub attributes: serde_json::Value,
}

impl Client {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.created_at,
            id: self.id.0,
        }
    }
}

/// Validated fields of a client.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = clients)]
pub struct ClientFields {
    pub email: String,
    pub full_name: String,
    pub comment: String,
    /// None: as they are (an update), or none (a new client).
    pub attributes: Option<serde_json::Value>,
}

/// The live clients of `owner`, optionally matching `search` in e-mail or name.
fn owned(owner: UserId, search: Option<&str>) -> clients::BoxedQuery<'static, Pg> {
    let mut query = clients::table
        .filter(clients::owner_id.eq(owner).and(clients::deleted_at.is_null()))
        .into_boxed();
    if let Some(search) = search.map(str::trim).filter(|s| !s.is_empty()) {
        let pattern = crate::db::like_pattern(search);
        query = query.filter(
            clients::email
                .ilike(pattern.clone())
                .or(clients::full_name.ilike(pattern)),
        );
    }
    query
}

/// Which of the owner's live clients a list shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter<'a> {
    /// In the e-mail or the name.
    pub search: Option<&'a str>,
    /// Carrying this tag.
    pub tag: Option<TagId>,
    /// In this segment.
    pub segment: Option<&'a Segment>,
}

fn listed(owner: UserId, filter: Filter<'_>) -> clients::BoxedQuery<'static, Pg> {
    let mut query = owned(owner, filter.search);
    if let Some(tag) = filter.tag {
        query = query.filter(diesel::dsl::exists(
            client_tags::table.filter(client_tags::tag_id.eq(tag).and(client_tags::client_id.eq(clients::id))),
        ));
    }
    if let Some(segment) = filter.segment {
        query = query.filter(super::segment::compile(segment));
    }
    query
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    filter: Filter<'_>,
    args: PageArgs,
) -> QueryResult<Page<Client>> {
    let total = listed(owner, filter).count().get_result(conn).await?;
    let rows = crate::keyset_page!(listed(owner, filter), clients, args)
        .select(Client::as_select())
        .load(conn)
        .await?;
    Ok(Page { rows, total })
}

pub async fn find(conn: &mut AsyncPgConnection, owner: UserId, id: ClientId) -> QueryResult<Option<Client>> {
    owned(owner, None)
        .filter(clients::id.eq(id))
        .select(Client::as_select())
        .first(conn)
        .await
        .optional()
}

/// Clients by id whatever their owner or state (for loaders behind an ownership check).
pub async fn find_by_ids(conn: &mut AsyncPgConnection, ids: &[ClientId]) -> QueryResult<Vec<Client>> {
    clients::table
        .filter(clients::id.eq_any(ids))
        .select(Client::as_select())
        .load(conn)
        .await
}

/// Of `ids`, those that are live clients of `owner`.
pub async fn owned_ids(conn: &mut AsyncPgConnection, owner: UserId, ids: &[ClientId]) -> QueryResult<Vec<ClientId>> {
    owned(owner, None)
        .filter(clients::id.eq_any(ids))
        .select(clients::id)
        .load(conn)
        .await
}

pub async fn create(conn: &mut AsyncPgConnection, owner: UserId, fields: &ClientFields) -> QueryResult<Client> {
    diesel::insert_into(clients::table)
        .values((
            clients::owner_id.eq(owner),
            clients::email.eq(&fields.email),
            clients::full_name.eq(&fields.full_name),
            clients::comment.eq(&fields.comment),
            clients::attributes.eq(fields.attributes.clone().unwrap_or_else(|| serde_json::json!({}))),
        ))
        .returning(Client::as_returning())
        .get_result(conn)
        .await
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    id: ClientId,
    fields: &ClientFields,
) -> QueryResult<Option<Client>> {
    diesel::update(clients::table)
        .filter(
            clients::id
                .eq(id)
                .and(clients::owner_id.eq(owner))
                .and(clients::deleted_at.is_null()),
        )
        .set((fields, clients::updated_at.eq(now())))
        .returning(Client::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Soft delete; returns whether a live client of `owner` was deleted.
pub async fn delete(conn: &mut AsyncPgConnection, owner: UserId, id: ClientId) -> QueryResult<bool> {
    let deleted = diesel::update(clients::table)
        .filter(
            clients::id
                .eq(id)
                .and(clients::owner_id.eq(owner))
                .and(clients::deleted_at.is_null()),
        )
        .set((clients::deleted_at.eq(now().nullable()), clients::updated_at.eq(now())))
        .execute(conn)
        .await?;
    Ok(deleted == 1)
}

/// Marks a client unsubscribed (from the one-click link); true if it was not already.
pub async fn unsubscribe(conn: &mut AsyncPgConnection, id: ClientId) -> QueryResult<bool> {
    let changed = diesel::update(clients::table)
        .filter(clients::id.eq(id).and(clients::unsubscribed_at.is_null()))
        .set((
            clients::unsubscribed_at.eq(now().nullable()),
            clients::updated_at.eq(now()),
        ))
        .execute(conn)
        .await?;
    Ok(changed == 1)
}

/// Upserts clients of `owner` by e-mail (any case) in one statement: new addresses are
/// created, known ones get the new name and comment, and the attributes the row gives
/// (others stay). Returns (created, updated).
pub async fn import(conn: &mut AsyncPgConnection, owner: UserId, rows: &[ClientFields]) -> QueryResult<(usize, usize)> {
    use diesel::sql_types::{Array, Bool, Text, Uuid as SqlUuid};
    #[derive(QueryableByName)]
    struct Upserted {
        #[diesel(sql_type = Bool)]
        created: bool,
    }
    if rows.is_empty() {
        return Ok((0, 0));
    }
    let column = |f: fn(&ClientFields) -> &String| rows.iter().map(f).cloned().collect::<Vec<String>>();
    let attributes: Vec<String> = rows
        .iter()
        .map(|r| r.attributes.as_ref().map_or_else(|| "{}".to_owned(), |a| a.to_string()))
        .collect();
    let upserted: Vec<Upserted> = diesel::sql_query(
        "INSERT INTO clients (owner_id, email, full_name, comment, attributes) \
         SELECT $1, e, n, c, a::jsonb FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS t(e, n, c, a) \
         ON CONFLICT (owner_id, lower(email)) WHERE deleted_at IS NULL \
         DO UPDATE SET email = EXCLUDED.email, full_name = EXCLUDED.full_name, comment = EXCLUDED.comment, \
                       attributes = clients.attributes || EXCLUDED.attributes, updated_at = now() \
         RETURNING (xmax = 0) AS created",
    )
    .bind::<SqlUuid, _>(owner)
    .bind::<Array<Text>, _>(column(|r| &r.email))
    .bind::<Array<Text>, _>(column(|r| &r.full_name))
    .bind::<Array<Text>, _>(column(|r| &r.comment))
    .bind::<Array<Text>, _>(attributes)
    .load(conn)
    .await?;
    let created = upserted.iter().filter(|u| u.created).count();
    Ok((created, upserted.len() - created))
}

/// The attribute keys the live clients of `owner` use, sorted (the export's columns).
pub async fn attribute_keys(conn: &mut AsyncPgConnection, owner: UserId) -> QueryResult<Vec<String>> {
    use diesel::sql_types::{Text, Uuid as SqlUuid};
    #[derive(QueryableByName)]
    struct Key {
        #[diesel(sql_type = Text)]
        key: String,
    }
    let keys: Vec<Key> = diesel::sql_query(
        "SELECT DISTINCT jsonb_object_keys(attributes) AS key FROM clients \
         WHERE owner_id = $1 AND deleted_at IS NULL ORDER BY 1",
    )
    .bind::<SqlUuid, _>(owner)
    .load(conn)
    .await?;
    Ok(keys.into_iter().map(|k| k.key).collect())
}

/// The live clients of `owner` after `after`, oldest first (the export walks them in pages).
pub async fn export_page(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    after: Option<Cursor>,
    limit: i64,
) -> QueryResult<Vec<Client>> {
    let mut query = owned(owner, None);
    if let Some(after) = after {
        query = query.filter(
            clients::created_at
                .gt(after.created_at)
                .or(clients::created_at.eq(after.created_at).and(clients::id.gt(after.id))),
        );
    }
    query
        .order((clients::created_at.asc(), clients::id.asc()))
        .limit(limit)
        .select(Client::as_select())
        .load(conn)
        .await
}
