//! Keyset pages shared by every list: newest first, by (created_at, id), with opaque
//! cursors. Keyset, not OFFSET: a page costs the same however deep it is, and rows added
//! meanwhile do not shift later pages.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use uuid::Uuid;

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

/// A `first` or `after` argument out of bounds: the argument's name and why (a
/// BAD_USER_INPUT naming that field, through `AppError`).
#[derive(Debug)]
pub struct BadPageArg {
    pub field: &'static str,
    pub message: String,
}

impl std::fmt::Display for BadPageArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for BadPageArg {}

/// Checked `first` and `after` arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageArgs {
    pub first: i64,
    pub after: Option<Cursor>,
}

impl PageArgs {
    pub fn new(first: Option<i32>, after: Option<&str>) -> Result<PageArgs, BadPageArg> {
        let first = match first {
            None => DEFAULT_PAGE,
            Some(n) if (1..=MAX_PAGE as i32).contains(&n) => i64::from(n),
            Some(_) => {
                return Err(BadPageArg {
                    field: "first",
                    message: format!("must be between 1 and {MAX_PAGE}"),
                });
            }
        };
        let after = match after {
            None => None,
            Some(text) => Some(Cursor::decode(text).ok_or_else(|| BadPageArg {
                field: "after",
                message: "not a cursor from this list".into(),
            })?),
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
        let args: $crate::db::page::PageArgs = $args;
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
