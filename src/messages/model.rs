//! The `messages` table, scoped to its owner in every query; soft-deleted.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::now;
use crate::db::page::{Cursor, Page, PageArgs};
use crate::db::schema::{mailings, messages};
use crate::db::types::{MessageId, UserId};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = messages, check_for_backend(Pg))]
pub struct Message {
    pub id: MessageId,
    pub owner_id: UserId,
    pub subject: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

impl Message {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.created_at,
            id: self.id.0,
        }
    }
}

#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = messages)]
pub struct MessageFields {
    pub subject: String,
    pub body: String,
}

fn owned(owner: UserId) -> messages::BoxedQuery<'static, Pg> {
    messages::table
        .filter(messages::owner_id.eq(owner).and(messages::deleted_at.is_null()))
        .into_boxed()
}

pub async fn list(conn: &mut AsyncPgConnection, owner: UserId, args: PageArgs) -> QueryResult<Page<Message>> {
    let total = owned(owner).count().get_result(conn).await?;
    let rows = crate::keyset_page!(owned(owner), messages, args)
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
        .values((
            messages::owner_id.eq(owner),
            messages::subject.eq(&fields.subject),
            messages::body.eq(&fields.body),
        ))
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

/// What a message's placeholders stand for, for one recipient.
pub struct Placeholders<'a> {
    pub full_name: &'a str,
    pub email: &'a str,
    pub unsubscribe_url: &'a str,
}

impl<'a> Placeholders<'a> {
    fn value(&self, name: &str) -> Option<&'a str> {
        match name {
            "full_name" => Some(self.full_name),
            "email" => Some(self.email),
            "unsubscribe_url" => Some(self.unsubscribe_url),
            _ => None,
        }
    }

    /// The template as literal pieces and filled-in values, in order.
    fn pieces<'t>(&self, template: &'t str) -> impl Iterator<Item = &'t str>
    where
        'a: 't,
    {
        let mut rest = template;
        let mut pending: Option<&'t str> = None;
        std::iter::from_fn(move || {
            if let Some(value) = pending.take() {
                return Some(value);
            }
            if rest.is_empty() {
                return None;
            }
            let mut from = 0;
            while let Some(at) = rest[from..].find("{{").map(|i| from + i) {
                let tail = &rest[at + 2..];
                if let Some(end) = tail.find("}}")
                    && let Some(value) = self.value(tail[..end].trim_matches(' '))
                {
                    let literal = &rest[..at];
                    rest = &tail[end + 2..];
                    pending = Some(value);
                    return Some(literal);
                }
                from = at + 2;
            }
            Some(std::mem::take(&mut rest))
        })
    }

    /// `{{full_name}}`, `{{email}}` and `{{unsubscribe_url}}` (spaces inside the braces
    /// allowed, as the editor's preview allows them) replaced in one pass: a value is never
    /// read for placeholders again. Anything else is left as written.
    pub fn fill(&self, template: &str) -> String {
        self.pieces(template).collect()
    }

    /// [`fill`](Self::fill), unless the result would be longer than `max` bytes: then its
    /// length, found before anything is allocated.
    pub fn fill_within(&self, template: &str, max: usize) -> Result<String, usize> {
        let len: usize = self.pieces(template).map(str::len).sum();
        if len > max {
            return Err(len);
        }
        let mut out = String::with_capacity(len);
        out.extend(self.pieces(template));
        Ok(out)
    }
}

/// A message's text for one recipient (see [`Placeholders::fill`]).
pub fn fill(template: &str, full_name: &str, email: &str, unsubscribe_url: &str) -> String {
    Placeholders {
        full_name,
        email,
        unsubscribe_url,
    }
    .fill(template)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_once() {
        let values = Placeholders {
            full_name: "{{email}} {{full_name}}",
            email: "a@x.io",
            unsubscribe_url: "http://u",
        };
        assert_eq!(
            values.fill("Hi {{full_name}} <{{email}}>, {{unsubscribe_url}} {{other}} {{ {{email}}}}"),
            "Hi {{email}} {{full_name}} <a@x.io>, http://u {{other}} {{ a@x.io}}"
        );
        assert_eq!(values.fill(""), "");
        assert_eq!(values.fill("{{"), "{{");
        assert_eq!(values.fill("{{email}}"), "a@x.io");
        assert_eq!(values.fill("{{ email }} {{  email}}"), "a@x.io a@x.io");
    }

    #[test]
    fn a_result_over_the_limit_is_refused_before_it_is_built() {
        let name = "{{full_name}}".repeat(15);
        let values = Placeholders {
            full_name: &name,
            email: "a@x.io",
            unsubscribe_url: "",
        };
        let body = "{{full_name}}".repeat(80_000);
        let err = values.fill_within(&body, 10 * 1024 * 1024).unwrap_err();
        assert_eq!(err, name.len() * 80_000);
        assert_eq!(values.fill_within("x{{email}}", 7), Ok("xa@x.io".into()));
        assert_eq!(values.fill_within("x{{email}}", 6), Err(7));
    }
}
