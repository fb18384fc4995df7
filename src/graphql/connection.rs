//! `XConnection { nodes pageInfo totalCount }` of the API contract, for any node type:
//! the name comes from the node's (`name_type`), so this file names no domain type.

use std::borrow::Cow;

use async_graphql::{OutputType, SimpleObject, TypeName};

use crate::db::page::{Cursor, DEFAULT_PAGE, MAX_PAGE, Page, PageArgs};

/// A list field's cost for the complexity limit: its fields once per item it may return.
/// So `mailings(first: 100) { nodes { clients(first: 100) { ... } } }` costs 100 x 100
/// times the client's fields, not their sum (async-graphql counts a field once however
/// many items it returns).
pub fn page_cost(first: Option<i32>, child_complexity: usize) -> usize {
    let items = first.map_or(DEFAULT_PAGE, |n| i64::from(n).clamp(1, MAX_PAGE)) as usize;
    items.saturating_mul(child_complexity).max(1)
}

#[derive(SimpleObject, Debug, Clone)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

/// `XConnection { nodes pageInfo totalCount }` of the API contract.
#[derive(SimpleObject)]
#[graphql(name_type)]
pub struct Connection<T: OutputType> {
    pub nodes: Vec<T>,
    pub page_info: PageInfo,
    pub total_count: i32,
}

impl<T: OutputType> TypeName for Connection<T> {
    fn type_name() -> Cow<'static, str> {
        format!("{}Connection", T::type_name()).into()
    }
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
