//! The `layouts` table: HTML around messages (`{{ content }}` is where a message goes),
//! scoped to its owner in every query; soft-deleted, like messages.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::now;
use crate::db::page::{Cursor, Page, PageArgs};
use crate::db::schema::{layouts, messages};
use crate::db::types::{LayoutId, UserId};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = layouts, check_for_backend(Pg))]
pub struct Layout {
    pub id: LayoutId,
    pub owner_id: UserId,
    pub name: String,
    pub html: String,
    pub created_at: DateTime<Utc>,
}

impl Layout {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.created_at,
            id: self.id.0,
        }
    }
}

#[derive(Debug, Clone, AsChangeset, Insertable)]
#[diesel(table_name = layouts)]
pub struct LayoutFields {
    pub name: String,
    pub html: String,
}

fn owned(owner: UserId) -> layouts::BoxedQuery<'static, Pg> {
    layouts::table
        .filter(layouts::owner_id.eq(owner).and(layouts::deleted_at.is_null()))
        .into_boxed()
}

pub async fn list(conn: &mut AsyncPgConnection, owner: UserId, args: PageArgs) -> QueryResult<Page<Layout>> {
    let total = owned(owner).count().get_result(conn).await?;
    let rows = crate::keyset_page!(owned(owner), layouts, args)
        .select(Layout::as_select())
        .load(conn)
        .await?;
    Ok(Page { rows, total })
}

pub async fn find(conn: &mut AsyncPgConnection, owner: UserId, id: LayoutId) -> QueryResult<Option<Layout>> {
    owned(owner)
        .filter(layouts::id.eq(id))
        .select(Layout::as_select())
        .first(conn)
        .await
        .optional()
}

/// A live layout of `owner`, its row locked until the transaction ends: FOR UPDATE to
/// delete it, FOR SHARE to start using it in a message (so the two cannot cross).
pub async fn lock(conn: &mut AsyncPgConnection, owner: UserId, id: LayoutId, exclusive: bool) -> QueryResult<bool> {
    let query = layouts::table
        .filter(
            layouts::id
                .eq(id)
                .and(layouts::owner_id.eq(owner))
                .and(layouts::deleted_at.is_null()),
        )
        .select(layouts::id);
    let found: Option<LayoutId> = if exclusive {
        query.for_update().first(conn).await.optional()?
    } else {
        query.for_share().first(conn).await.optional()?
    };
    Ok(found.is_some())
}

/// Layouts by id whatever their owner or state (for loaders behind an ownership check).
pub async fn find_by_ids(conn: &mut AsyncPgConnection, ids: &[LayoutId]) -> QueryResult<Vec<Layout>> {
    layouts::table
        .filter(layouts::id.eq_any(ids))
        .select(Layout::as_select())
        .load(conn)
        .await
}

pub async fn create(conn: &mut AsyncPgConnection, owner: UserId, fields: &LayoutFields) -> QueryResult<Layout> {
    diesel::insert_into(layouts::table)
        .values((layouts::owner_id.eq(owner), fields))
        .returning(Layout::as_returning())
        .get_result(conn)
        .await
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    id: LayoutId,
    fields: &LayoutFields,
) -> QueryResult<Option<Layout>> {
    diesel::update(layouts::table)
        .filter(
            layouts::id
                .eq(id)
                .and(layouts::owner_id.eq(owner))
                .and(layouts::deleted_at.is_null()),
        )
        .set((fields, layouts::updated_at.eq(now())))
        .returning(Layout::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Whether a message that is not deleted uses the layout.
pub async fn in_use(conn: &mut AsyncPgConnection, id: LayoutId) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        messages::table.filter(messages::layout_id.eq(id).and(messages::deleted_at.is_null())),
    ))
    .get_result(conn)
    .await
}

pub async fn delete(conn: &mut AsyncPgConnection, owner: UserId, id: LayoutId) -> QueryResult<bool> {
    let deleted = diesel::update(layouts::table)
        .filter(
            layouts::id
                .eq(id)
                .and(layouts::owner_id.eq(owner))
                .and(layouts::deleted_at.is_null()),
        )
        .set((layouts::deleted_at.eq(now().nullable()), layouts::updated_at.eq(now())))
        .execute(conn)
        .await?;
    Ok(deleted == 1)
}
