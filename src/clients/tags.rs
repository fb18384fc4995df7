//! The `tags` and `client_tags` tables: a user's labels for clients, scoped to the owner in
//! every query (a tag or client of someone else is never read or touched).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::segment::Segment;
use crate::db::schema::{client_tags, clients, tags};
use crate::db::types::{ClientId, TagId, UserId};

/// Tags a user may have (the list is answered whole).
pub const MAX_TAGS: i64 = 1_000;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = tags, check_for_backend(Pg))]
pub struct Tag {
    pub id: TagId,
    pub owner_id: UserId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// The owner's tags, by name.
pub async fn list(conn: &mut AsyncPgConnection, owner: UserId) -> QueryResult<Vec<Tag>> {
    tags::table
        .filter(tags::owner_id.eq(owner))
        .order((diesel::dsl::sql::<diesel::sql_types::Text>("lower(name)"), tags::id))
        .limit(MAX_TAGS)
        .select(Tag::as_select())
        .load(conn)
        .await
}

pub async fn count(conn: &mut AsyncPgConnection, owner: UserId) -> QueryResult<i64> {
    tags::table
        .filter(tags::owner_id.eq(owner))
        .count()
        .get_result(conn)
        .await
}

pub async fn find(conn: &mut AsyncPgConnection, owner: UserId, id: TagId) -> QueryResult<Option<Tag>> {
    tags::table
        .filter(tags::id.eq(id).and(tags::owner_id.eq(owner)))
        .select(Tag::as_select())
        .first(conn)
        .await
        .optional()
}

/// How many of `ids` are the owner's tags.
pub async fn count_owned(conn: &mut AsyncPgConnection, owner: UserId, ids: &[TagId]) -> QueryResult<i64> {
    tags::table
        .filter(tags::id.eq_any(ids).and(tags::owner_id.eq(owner)))
        .count()
        .get_result(conn)
        .await
}

pub async fn create(conn: &mut AsyncPgConnection, owner: UserId, name: &str) -> QueryResult<Tag> {
    diesel::insert_into(tags::table)
        .values((tags::owner_id.eq(owner), tags::name.eq(name)))
        .returning(Tag::as_returning())
        .get_result(conn)
        .await
}

pub async fn rename(conn: &mut AsyncPgConnection, owner: UserId, id: TagId, name: &str) -> QueryResult<Option<Tag>> {
    diesel::update(tags::table.filter(tags::id.eq(id).and(tags::owner_id.eq(owner))))
        .set(tags::name.eq(name))
        .returning(Tag::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Deletes the tag and its links to clients (the clients stay).
pub async fn delete(conn: &mut AsyncPgConnection, owner: UserId, id: TagId) -> QueryResult<bool> {
    let deleted = diesel::delete(tags::table.filter(tags::id.eq(id).and(tags::owner_id.eq(owner))))
        .execute(conn)
        .await?;
    Ok(deleted == 1)
}

/// Tags the owner's live clients among `client_ids` (others are skipped); how many got the
/// tag now (those that had it already are not counted). The tag must be the owner's.
pub async fn tag(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    tag: TagId,
    client_ids: &[ClientId],
) -> QueryResult<usize> {
    diesel::sql_query(
        "INSERT INTO client_tags (tag_id, client_id) \
         SELECT $1, c.id FROM clients c WHERE c.id = ANY($2) AND c.owner_id = $3 AND c.deleted_at IS NULL \
         ON CONFLICT DO NOTHING",
    )
    .bind::<SqlUuid, _>(tag)
    .bind::<Array<SqlUuid>, _>(client_ids)
    .bind::<SqlUuid, _>(owner)
    .execute(conn)
    .await
}

/// Tags the owner's live clients in `segment`, in one statement; how many got the tag
/// now. The tag must be the owner's.
pub async fn tag_segment(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    tag: TagId,
    segment: &Segment,
) -> QueryResult<usize> {
    use diesel::IntoSql;
    let matching = clients::table
        .filter(clients::owner_id.eq(owner).and(clients::deleted_at.is_null()))
        .filter(super::segment::compile(segment))
        .select((tag.into_sql::<SqlUuid>(), clients::id));
    diesel::insert_into(client_tags::table)
        .values(matching)
        .into_columns((client_tags::tag_id, client_tags::client_id))
        .on_conflict_do_nothing()
        .execute(conn)
        .await
}

/// Takes the tag off every client; how many had it. The tag must be the owner's.
pub async fn untag_all(conn: &mut AsyncPgConnection, tag: TagId) -> QueryResult<usize> {
    diesel::delete(client_tags::table.filter(client_tags::tag_id.eq(tag)))
        .execute(conn)
        .await
}

/// Takes the tag off `client_ids`; how many had it. The tag must be the owner's.
pub async fn untag(conn: &mut AsyncPgConnection, tag: TagId, client_ids: &[ClientId]) -> QueryResult<usize> {
    diesel::delete(
        client_tags::table.filter(
            client_tags::tag_id
                .eq(tag)
                .and(client_tags::client_id.eq_any(client_ids)),
        ),
    )
    .execute(conn)
    .await
}

/// A client's tags become exactly `tag_ids` (already checked to be the owner's).
pub async fn set_for_client(conn: &mut AsyncPgConnection, client: ClientId, tag_ids: &[TagId]) -> QueryResult<()> {
    diesel::delete(
        client_tags::table.filter(
            client_tags::client_id
                .eq(client)
                .and(client_tags::tag_id.ne_all(tag_ids)),
        ),
    )
    .execute(conn)
    .await?;
    let rows: Vec<_> = tag_ids
        .iter()
        .map(|tag| (client_tags::tag_id.eq(*tag), client_tags::client_id.eq(client)))
        .collect();
    diesel::insert_into(client_tags::table)
        .values(rows)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

/// The tags cells of an import, after its clients were written: names not yet known are
/// created, and each client gets its tags (added to those it has). `pairs` are (e-mail,
/// tag names). Fails with `Ok(false)`, writing nothing, when the owner would have more than
/// MAX_TAGS tags.
pub async fn import(conn: &mut AsyncPgConnection, owner: UserId, pairs: &[(String, Vec<String>)]) -> QueryResult<bool> {
    use diesel::sql_types::Text;
    if pairs.is_empty() {
        return Ok(true);
    }
    let mut names: Vec<String> = Vec::new();
    for name in pairs.iter().flat_map(|(_, names)| names) {
        if !names.iter().any(|known| known.to_lowercase() == name.to_lowercase()) {
            names.push(name.clone());
        }
    }
    diesel::sql_query(
        "INSERT INTO tags (owner_id, name) SELECT $1, n FROM unnest($2::text[]) AS n \
         ON CONFLICT (owner_id, lower(name)) DO NOTHING",
    )
    .bind::<SqlUuid, _>(owner)
    .bind::<Array<Text>, _>(&names)
    .execute(conn)
    .await?;
    if count(conn, owner).await? > MAX_TAGS {
        return Ok(false);
    }
    let (emails, tag_names): (Vec<String>, Vec<String>) = pairs
        .iter()
        .flat_map(|(email, names)| names.iter().map(move |name| (email.clone(), name.clone())))
        .unzip();
    diesel::sql_query(
        "INSERT INTO client_tags (tag_id, client_id) \
         SELECT t.id, c.id FROM unnest($2::text[], $3::text[]) AS x(email, tag) \
         JOIN clients c ON c.owner_id = $1 AND lower(c.email) = lower(x.email) AND c.deleted_at IS NULL \
         JOIN tags t ON t.owner_id = $1 AND lower(t.name) = lower(x.tag) \
         ON CONFLICT DO NOTHING",
    )
    .bind::<SqlUuid, _>(owner)
    .bind::<Array<Text>, _>(&emails)
    .bind::<Array<Text>, _>(&tag_names)
    .execute(conn)
    .await?;
    Ok(true)
}

#[derive(QueryableByName)]
struct TagCount {
    #[diesel(sql_type = SqlUuid)]
    tag_id: TagId,
    #[diesel(sql_type = BigInt)]
    clients: i64,
}

/// Live clients per tag, for `Tag.clientCount` (one query per request, through a loader).
pub async fn client_counts(conn: &mut AsyncPgConnection, ids: &[TagId]) -> QueryResult<HashMap<TagId, i64>> {
    let rows: Vec<TagCount> = diesel::sql_query(
        "SELECT ct.tag_id, count(*) AS clients FROM client_tags ct \
         JOIN clients c ON c.id = ct.client_id AND c.deleted_at IS NULL \
         WHERE ct.tag_id = ANY($1) GROUP BY ct.tag_id",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .load(conn)
    .await?;
    let mut counts: HashMap<TagId, i64> = ids.iter().map(|id| (*id, 0)).collect();
    counts.extend(rows.into_iter().map(|r| (r.tag_id, r.clients)));
    Ok(counts)
}

/// The tags of each of `client_ids`, by name, for `Client.tags`.
pub async fn of_clients(
    conn: &mut AsyncPgConnection,
    client_ids: &[ClientId],
) -> QueryResult<HashMap<ClientId, Vec<Tag>>> {
    let rows: Vec<(ClientId, Tag)> = client_tags::table
        .inner_join(tags::table)
        .inner_join(clients::table)
        .filter(client_tags::client_id.eq_any(client_ids))
        .filter(clients::owner_id.eq(tags::owner_id))
        .order((
            client_tags::client_id,
            diesel::dsl::sql::<diesel::sql_types::Text>("lower(tags.name)"),
        ))
        .select((client_tags::client_id, Tag::as_select()))
        .load(conn)
        .await?;
    let mut by_client: HashMap<ClientId, Vec<Tag>> = client_ids.iter().map(|id| (*id, Vec::new())).collect();
    for (client, tag) in rows {
        by_client.entry(client).or_default().push(tag);
    }
    Ok(by_client)
}
