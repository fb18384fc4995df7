//! The suppression list in the GraphQL API: `suppressions`, `suppress`, `unsuppress`, and
//! the `Suppression` that `Client.suppression` shows.

use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, Object};
use chrono::{DateTime, Utc};

use super::suppressions::{self, SuppressionReason};
use crate::accounts::viewer;
use crate::app::AppState;
use crate::db::page::PageArgs;
use crate::db::types::UserId;
use crate::deliveries::graphql::DeliveryLoader;
use crate::graphql::connection::Connection;
use crate::mailings::graphql::Delivery;
use crate::validate;

crate::batch_loader!(
    /// The suppression of each (owner, address in lower case), for `Client.suppression`.
    SuppressionLoader: (UserId, String) => suppressions::Suppression, |conn, keys| suppressions::of_addresses(conn, keys)
);

/// An address its owner no longer mails.
pub struct Suppression(pub suppressions::Suppression);

#[Object]
impl Suppression {
    async fn email(&self) -> &str {
        &self.0.email
    }

    async fn reason(&self) -> SuppressionReason {
        self.0.reason
    }

    async fn since(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// The delivery whose bounce or complaint caused it, when there was one.
    async fn delivery(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Delivery>> {
        let Some(id) = self.0.delivery_id else { return Ok(None) };
        // Batched with the page's other suppressions; the suppression is the caller's, and
        // so must the delivery it names be.
        let delivery = ctx.data_unchecked::<DataLoader<DeliveryLoader>>().load_one(id).await?;
        Ok(delivery.filter(|d| d.owner_id == self.0.owner_id).map(Delivery::new))
    }
}

#[derive(Default)]
pub struct SuppressionsQuery;

#[Object]
impl SuppressionsQuery {
    /// Your suppression list, newest first; `search` matches a part of the address.
    #[graphql(complexity = "crate::graphql::connection::page_cost(first, child_complexity)")]
    async fn suppressions(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        reason: Option<SuppressionReason>,
        search: Option<String>,
    ) -> async_graphql::Result<Connection<Suppression>> {
        let viewer = viewer(ctx)?;
        let args = PageArgs::new(first, after.as_deref())?;
        let search = search.map(|s| validate::search("search", &s)).transpose()?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let page = suppressions::list(&mut conn, viewer.user_id, reason, search.as_deref(), args).await?;
        Ok(Connection::from_page(
            page,
            args,
            suppressions::Suppression::cursor,
            Suppression,
        ))
    }
}

#[derive(Default)]
pub struct SuppressionsMutation;

#[Object]
impl SuppressionsMutation {
    /// Stops mailing the address (MANUAL): its pending deliveries are cancelled and no run
    /// reaches it until `unsuppress`. An address already on the list keeps its reason.
    async fn suppress(&self, ctx: &Context<'_>, email: String) -> async_graphql::Result<Suppression> {
        let viewer = viewer(ctx)?;
        let email = validate::email("email", &email)?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let suppression =
            suppressions::suppress(&mut conn, viewer.user_id, &email, SuppressionReason::Manual, None).await?;
        Ok(Suppression(suppression))
    }

    /// Lifts a suppression: the next runs reach the address again. False when it was not
    /// on your list.
    async fn unsuppress(&self, ctx: &Context<'_>, email: String) -> async_graphql::Result<bool> {
        let viewer = viewer(ctx)?;
        let email = validate::search("email", &email)?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        Ok(suppressions::unsuppress(&mut conn, viewer.user_id, email.trim()).await?)
    }
}
