//! The `messages` table, scoped to its owner in every query; soft-deleted.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::now;
use crate::db::page::{Cursor, Page, PageArgs};
use crate::db::schema::{mailings, messages};
use crate::db::types::{LayoutId, MessageId, UserId};

/// What a message's body is written in, and so how it is sent.
#[derive(
    async_graphql::Enum,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum MessageFormat {
    /// text/plain only (the default).
    #[default]
    Text,
    /// CommonMark, rendered to HTML; sent as multipart/alternative.
    Markdown,
    /// HTML; sent as multipart/alternative with a text part.
    Html,
}

crate::text_enum!(MessageFormat { Text => "text", Markdown => "markdown", Html => "html" });

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = messages, check_for_backend(Pg))]
pub struct Message {
    pub id: MessageId,
    pub owner_id: UserId,
    pub subject: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub format: MessageFormat,
    pub text_body: Option<String>,
    pub layout_id: Option<LayoutId>,
}

impl Message {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.created_at,
            id: self.id.0,
        }
    }
}

#[derive(Debug, Clone, AsChangeset, Insertable)]
#[diesel(table_name = messages, treat_none_as_null = true)]
pub struct MessageFields {
    pub subject: String,
    pub body: String,
    pub format: MessageFormat,
    pub text_body: Option<String>,
    pub layout_id: Option<LayoutId>,
}

fn owned(owner: UserId) -> messages::BoxedQuery<'static, Pg> {
    messages::table
        .filter(messages::owner_id.eq(owner).and(messages::deleted_at.is_null()))
        .into_boxed()
}

/// The owner's live messages, newest first; `search` in the subject.
pub async fn list(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    search: Option<&str>,
    args: PageArgs,
) -> QueryResult<Page<Message>> {
    let listed = || {
        let query = owned(owner);
        match search.map(str::trim).filter(|s| !s.is_empty()) {
            Some(search) => query.filter(messages::subject.ilike(crate::db::like_pattern(search))),
            None => query,
        }
    };
    let total = listed().count().get_result(conn).await?;
    let rows = crate::keyset_page!(listed(), messages, args)
        .select(Message::as_select())
        .load(conn)
        .await?;
    Ok(Page { rows, total })
}

pub async fn find(conn: &mut AsyncPgConnection, owner: UserId, id: MessageId) -> QueryResult<Option<Message>> {
    owned(owner)
        .filter(messages::id.eq(id))
        .select(Message::as_select())
        .first(conn)
        .await
        .optional()
}

/// A live message of `owner`, its row locked until the transaction ends: FOR UPDATE to
/// delete it, FOR SHARE to start using it in a mailing (so the two cannot cross).
pub async fn lock(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    id: MessageId,
    exclusive: bool,
) -> QueryResult<Option<Uuid>> {
    let query = messages::table
        .filter(
            messages::id
                .eq(id)
                .and(messages::owner_id.eq(owner))
                .and(messages::deleted_at.is_null()),
        )
        .select(messages::id);
    if exclusive {
        query.for_update().first(conn).await.optional()
    } else {
        query.for_share().first(conn).await.optional()
    }
}

/// Messages by id whatever their owner or state (for loaders behind an ownership check).
pub async fn find_by_ids(conn: &mut AsyncPgConnection, ids: &[MessageId]) -> QueryResult<Vec<Message>> {
    messages::table
        .filter(messages::id.eq_any(ids))
        .select(Message::as_select())
        .load(conn)
        .await
}

pub async fn create(conn: &mut AsyncPgConnection, owner: UserId, fields: &MessageFields) -> QueryResult<Message> {
    diesel::insert_into(messages::table)
        .values((messages::owner_id.eq(owner), fields))
        .returning(Message::as_returning())
        .get_result(conn)
        .await
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    id: MessageId,
    fields: &MessageFields,
) -> QueryResult<Option<Message>> {
    diesel::update(messages::table)
        .filter(
            messages::id
                .eq(id)
                .and(messages::owner_id.eq(owner))
                .and(messages::deleted_at.is_null()),
        )
        .set((fields, messages::updated_at.eq(now())))
        .returning(Message::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Whether a mailing that is not deleted uses the message.
pub async fn in_use(conn: &mut AsyncPgConnection, id: MessageId) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        mailings::table.filter(mailings::message_id.eq(id).and(mailings::deleted_at.is_null())),
    ))
    .get_result(conn)
    .await
}

pub async fn delete(conn: &mut AsyncPgConnection, owner: UserId, id: MessageId) -> QueryResult<bool> {
    let deleted = diesel::update(messages::table)
        .filter(
            messages::id
                .eq(id)
                .and(messages::owner_id.eq(owner))
                .and(messages::deleted_at.is_null()),
        )
        .set((
            messages::deleted_at.eq(now().nullable()),
            messages::updated_at.eq(now()),
        ))
        .execute(conn)
        .await?;
    Ok(deleted == 1)
}
