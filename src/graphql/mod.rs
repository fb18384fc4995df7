//! The GraphQL schema: assembled here from each domain's part, with the limits that
//! protect the server. Domains own their types and resolvers; this module only joins them.

pub mod connection;
mod error_codes;
pub mod ids;
mod limits;
mod loaders;
mod read_only;

pub use error_codes::{ExecutionStarted, with_code};
pub use loaders::add_loaders;

use async_graphql::{MergedObject, MergedSubscription, Schema};

use crate::accounts::graphql::{AccountsMutation, AccountsQuery};
use crate::app::AppState;
use crate::blog::graphql::{BlogMutation, BlogQuery};
use crate::clients::graphql::{ClientsMutation, ClientsQuery};
use crate::deliverability::graphql::{SuppressionsMutation, SuppressionsQuery};
use crate::mailings::graphql::{DeliveriesQuery, DeliveriesSubscription, MailingsMutation, MailingsQuery};
use crate::messages::graphql::{MessagesMutation, MessagesQuery};
use crate::senders::graphql::{SendersMutation, SendersQuery};
use crate::stats::graphql::{HomeStatsCache, StatsQuery};

/// Deepest selection nesting a query may have.
pub const MAX_DEPTH: usize = 15;
/// async-graphql's complexity: every field counts 1 (but `__typename`, see `limits`), and
/// a list's fields count once per item it may return (`pagination::page_cost`). The web
/// front end's heaviest query (the mailings list, 100 mailings) costs about 2,000.
pub const MAX_COMPLEXITY: usize = 20_000;
/// Most fields a request may select in all, `__typename` and aliases included.
pub const MAX_FIELDS: usize = 1_000;
/// Nesting limit of the parser itself (input values, fragments), against stack exhaustion.
pub const MAX_RECURSIVE_DEPTH: usize = 32;

#[derive(MergedObject, Default)]
pub struct Query(
    AccountsQuery,
    ClientsQuery,
    MessagesQuery,
    MailingsQuery,
    DeliveriesQuery,
    SuppressionsQuery,
    SendersQuery,
    StatsQuery,
    BlogQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    AccountsMutation,
    ClientsMutation,
    MessagesMutation,
    MailingsMutation,
    SuppressionsMutation,
    SendersMutation,
    BlogMutation,
);

#[derive(MergedSubscription, Default)]
pub struct Subscription(DeliveriesSubscription);

pub type MailwarmSchema = Schema<Query, Mutation, Subscription>;

/// The schema with its limits. `state` is absent only when exporting the SDL, which needs
/// no database.
pub fn build_schema(state: Option<AppState>, introspection: bool) -> MailwarmSchema {
    let mut builder = Schema::build(Query::default(), Mutation::default(), Subscription::default())
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .limit_recursive_depth(MAX_RECURSIVE_DEPTH)
        .limit_directives(8)
        .data(HomeStatsCache::default())
        .extension(error_codes::ErrorCodes)
        .extension(limits::FieldCountLimit(MAX_FIELDS))
        .extension(read_only::ReadOnlyKeys);
    if !introspection {
        builder = builder.disable_introspection();
    }
    if let Some(state) = state {
        builder = builder.data(state);
    }
    builder.finish()
}

/// The SDL as committed in `graphql/schema.graphql`.
pub fn sdl() -> String {
    build_schema(None, true).sdl()
}
