//! Cursor pagination shared by every list: newest first, by (created_at, id), with opaque
//! cursors. Keyset, not OFFSET: a page costs the same however deep it is, and rows added
//! meanwhile do not shift later pages.

use async_graphql::{OutputType, SimpleObject};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{AppError, AppResult};

pub const DEFAULT_PAGE: i64 = 20;
pub const MAX_PAGE: i64 = 100;

/// A position in a list: the (created_at, id) of the last row seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{}", self.created_at.timestamp_micros(), self.id))
    }

    /// The cursor `encode` made, or None; a time outside years 1 to 9999 is no cursor of
    /// ours (PostgreSQL would refuse what lies beyond its range in the query).
    pub fn decode(text: &str) -> Option<Cursor> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (micros, id) = text.split_once(':')?;
        let created_at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
        if !(1..=9999).contains(&chrono::Datelike::year(&created_at)) {
            return None;
        }
        Some(Cursor {
            created_at,
            id: id.parse().ok()?,
        })
    }
}

/// A list field's cost for the complexity limit: its fields once per item it may return.
/// So `mailings(first: 100) { nodes { clients(first: 100) { ... } } }` costs 100 x 100
/// times the client's fields, not their sum (async-graphql counts a field once however
/// many items it returns).
pub fn page_cost(first: Option<i32>, child_complexity: usize) -> usize {
    let items = first.map_or(DEFAULT_PAGE, |n| i64::from(n).clamp(1, MAX_PAGE)) as usize;
    items.saturating_mul(child_complexity).max(1)
}

/// Checked `first` and `after` arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageArgs {
    pub first: i64,
    pub after: Option<Cursor>,
}

impl PageArgs {
    pub fn new(first: Option<i32>, after: Option<&str>) -> AppResult<PageArgs> {
        let first = match first {
            None => DEFAULT_PAGE,
            Some(n) if (1..=MAX_PAGE as i32).contains(&n) => i64::from(n),
            Some(_) => {
                return Err(AppError::bad_input(
                    "first",
                    format!("must be between 1 and {MAX_PAGE}"),
                ));
            }
        };
        let after = match after {
            None => None,
            Some(text) => {
                Some(Cursor::decode(text).ok_or_else(|| AppError::bad_input("after", "not a cursor from this list"))?)
            }
        };
        Ok(PageArgs { first, after })
    }

    /// Rows to fetch: one more than asked, to learn whether there is a next page.
    pub fn limit(&self) -> i64 {
        self.first + 1
    }
}

/// Orders a boxed diesel query over `$table` newest first and keeps the rows after the
/// cursor: `WHERE (created_at, id) < (cursor) ORDER BY created_at DESC, id DESC LIMIT first + 1`.
#[macro_export]
macro_rules! keyset_page {
    ($query:expr, $table:ident, $args:expr) => {{
        let args: $crate::pagination::PageArgs = $args;
        let mut query = $query;
        if let Some(after) = args.after {
            query = query.filter(
                $table::created_at
                    .lt(after.created_at)
                    .or($table::created_at.eq(after.created_at).and($table::id.lt(after.id))),
            );
        }
        query
            .order(($table::created_at.desc(), $table::id.desc()))
            .limit(args.limit())
    }};
}

/// Rows of one page (fetched with `PageArgs::limit`) and the list's total.
#[derive(Clone)]
pub struct Page<T> {
    pub rows: Vec<T>,
    pub total: i64,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

/// `XConnection { nodes pageInfo totalCount }` of the API contract.
#[derive(SimpleObject)]
#[graphql(concrete(name = "ClientConnection", params(crate::clients::graphql::Client)))]
#[graphql(concrete(name = "MessageConnection", params(crate::messages::graphql::Message)))]
#[graphql(concrete(name = "MailingConnection", params(crate::mailings::graphql::Mailing)))]
#[graphql(concrete(name = "RunConnection", params(crate::deliveries::graphql::Run)))]
#[graphql(concrete(name = "DeliveryConnection", params(crate::deliveries::graphql::Delivery)))]
#[graphql(concrete(name = "AttemptConnection", params(crate::deliveries::graphql::Attempt)))]
#[graphql(concrete(name = "UserConnection", params(crate::accounts::graphql::User)))]
#[graphql(concrete(name = "BlogPostConnection", params(crate::blog::graphql::BlogPost)))]
pub struct Connection<T: OutputType> {
    pub nodes: Vec<T>,
    pub page_info: PageInfo,
    pub total_count: i32,
}

impl<T: OutputType> Connection<T> {
    /// Trims the extra row, converts rows to nodes, and sets the cursor from the last row.
    pub fn from_page<R>(
        page: Page<R>,
        args: PageArgs,
        cursor_of: impl Fn(&R) -> Cursor,
        node: impl Fn(R) -> T,
    ) -> Self {
        let mut rows = page.rows;
        let has_next_page = rows.len() as i64 > args.first;
        rows.truncate(args.first as usize);
        let end_cursor = rows.last().map(|r| cursor_of(r).encode());
        Connection {
            nodes: rows.into_iter().map(node).collect(),
            page_info: PageInfo {
                has_next_page,
                end_cursor,
            },
            total_count: i32::try_from(page.total).unwrap_or(i32::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = Cursor {
            created_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap(),
            id: Uuid::new_v4(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::decode("garbage"), None);
        // Well-formed, but far outside PostgreSQL's range of times.
        let far = URL_SAFE_NO_PAD.encode(format!("{}:{}", i64::MAX / 2, Uuid::new_v4()));
        assert_eq!(Cursor::decode(&far), None);
        let before = URL_SAFE_NO_PAD.encode(format!("{}:{}", -70_000_000_000_000_000i64, Uuid::new_v4()));
        assert_eq!(Cursor::decode(&before), None);
    }

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(PageArgs::new(None, None).unwrap().first, 20);
        assert_eq!(PageArgs::new(Some(100), None).unwrap().limit(), 101);
        assert!(PageArgs::new(Some(0), None).is_err());
        assert!(PageArgs::new(Some(101), None).is_err());
        assert!(PageArgs::new(None, Some("nope")).is_err());
    }
}
