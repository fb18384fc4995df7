//! The mailing log in the GraphQL API: runs, deliveries, attempts, statistics, retries,
//! and the live subscriptions fed by every instance.

use async_graphql::dataloader::DataLoader;
use std::borrow::Cow;
use std::marker::PhantomData;

use async_graphql::{Context, ID, Object, OutputType, SimpleObject, Subscription, TypeName};
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};

use super::model::{self, AttemptFilter, Counts};
pub use super::model::{AttemptStatus, DeliveryStatus, RunStatus};
use crate::accounts::viewer;
use crate::app::AppState;
use crate::clients::graphql::Client;
use crate::db::types::{ClientId, DeliveryId, MailingId, RunId, UserId};
use crate::deliverability::bounces::{self, Bounce};
use crate::error::AppError;
use crate::events::Event;
use crate::graphql::ids::parse_id;
use crate::mailings::access::read_scope;
use crate::mailings::model::{self as mailings, Scope};

crate::batch_loader!(
    /// Delivery counts of runs.
    RunCountsLoader: RunId => Counts, |conn, keys| model::run_counts(conn, keys)
);
crate::batch_loader!(
    /// When the runs of deliveries fall.
    RunTimeLoader: RunId => DateTime<Utc>, |conn, keys| model::run_times(conn, keys)
);
crate::batch_loader!(
    /// Mailings of deliveries and attempts (their parents were checked already).
    MailingLoader: MailingId => mailings::Mailing, |conn, keys| async {
        Ok(mailings::find_by_ids(conn, keys).await?.into_iter().map(|m| (m.id, m)).collect())
    }
);
crate::batch_loader!(
    /// Clients of deliveries, deleted ones included (shown as null).
    ClientLoader: ClientId => crate::clients::model::Client, |conn, keys| async {
        Ok(crate::clients::model::find_by_ids(conn, keys).await?.into_iter().map(|c| (c.id, c)).collect())
    }
);
crate::batch_loader!(
    /// Deliveries of attempts.
    DeliveryLoader: DeliveryId => model::Delivery, |conn, keys| async {
        Ok(model::deliveries_by_ids(conn, keys).await?.into_iter().map(|d| (d.id, d)).collect())
    }
);
crate::batch_loader!(
    /// The attempts of each delivery, oldest first.
    AttemptsOfLoader: DeliveryId => Vec<model::Attempt>, |conn, keys| model::attempts_of(conn, keys)
);
crate::batch_loader!(
    /// The latest bounce or complaint of each delivery.
    BounceLoader: DeliveryId => Bounce, |conn, keys| bounces::latest_of(conn, keys)
);
crate::batch_loader!(
    /// Each mailing's totals.
    StatsLoader: MailingId => model::Stats, |conn, keys| model::mailing_stats(conn, keys)
);

async fn load<L, K, V>(ctx: &Context<'_>, key: K) -> async_graphql::Result<Option<V>>
where
    K: Send + Sync + std::hash::Hash + Eq + Clone + 'static,
    L: async_graphql::dataloader::Loader<K, Value = V, Error = std::sync::Arc<AppError>>,
    V: Clone + Send + Sync + 'static,
{
    ctx.data_unchecked::<DataLoader<L>>()
        .load_one(key)
        .await
        .map_err(Into::into)
}

/// The API's `Mailing`, as the log's `mailing` fields answer it. The mailings' API lists
/// the log (`Mailing.deliveries`), so the log names its parent through this trait instead
/// of importing it, and dependencies point one way: mailings -> deliveries.
pub trait MailingNode: OutputType + From<mailings::Mailing> + Send + Sync + 'static {}

/// The mailing a delivery or attempt belongs to.
async fn mailing_of<M: MailingNode>(ctx: &Context<'_>, id: MailingId) -> async_graphql::Result<M> {
    load::<MailingLoader, _, _>(ctx, id)
        .await?
        .map(M::from)
        .ok_or(AppError::NotFound)
        .map_err(Into::into)
}

fn to_i32(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// One occurrence of a mailing's schedule.
pub struct Run(pub model::Run);

impl Run {
    async fn counts(&self, ctx: &Context<'_>) -> async_graphql::Result<Counts> {
        Ok(load::<RunCountsLoader, _, _>(ctx, self.0.id).await?.unwrap_or_default())
    }
}

#[Object]
impl Run {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn run_at(&self) -> DateTime<Utc> {
        self.0.run_at
    }

    async fn status(&self) -> RunStatus {
        self.0.status
    }

    async fn total(&self, ctx: &Context<'_>) -> async_graphql::Result<i32> {
        Ok(to_i32(self.counts(ctx).await?.total))
    }

    async fn sent(&self, ctx: &Context<'_>) -> async_graphql::Result<i32> {
        Ok(to_i32(self.counts(ctx).await?.sent))
    }

    async fn failed(&self, ctx: &Context<'_>) -> async_graphql::Result<i32> {
        Ok(to_i32(self.counts(ctx).await?.failed))
    }

    async fn unknown(&self, ctx: &Context<'_>) -> async_graphql::Result<i32> {
        Ok(to_i32(self.counts(ctx).await?.unknown))
    }

    async fn pending(&self, ctx: &Context<'_>) -> async_graphql::Result<i32> {
        Ok(to_i32(self.counts(ctx).await?.pending))
    }

    async fn cancelled(&self, ctx: &Context<'_>) -> async_graphql::Result<i32> {
        Ok(to_i32(self.counts(ctx).await?.cancelled))
    }

    /// Clients of the audience left out of this run because their address is suppressed.
    async fn suppressed(&self) -> i32 {
        self.0.suppressed
    }
}

/// One message to one client for one run of a mailing.
pub struct Delivery<M>(pub model::Delivery, PhantomData<fn() -> M>);

impl<M> Delivery<M> {
    pub fn new(row: model::Delivery) -> Self {
        Delivery(row, PhantomData)
    }
}

impl<M> TypeName for Delivery<M> {
    fn type_name() -> Cow<'static, str> {
        "Delivery".into()
    }
}

#[Object(name_type)]
impl<M: MailingNode> Delivery<M> {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn mailing(&self, ctx: &Context<'_>) -> async_graphql::Result<M> {
        mailing_of(ctx, self.0.mailing_id).await
    }

    /// null once the client is deleted; `email` keeps the address.
    async fn client(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Client>> {
        let client = load::<ClientLoader, _, _>(ctx, self.0.client_id).await?;
        Ok(client.filter(|c| c.deleted_at.is_none()).map(Client))
    }

    async fn email(&self) -> &str {
        &self.0.email
    }

    /// The scheduled run (occurrence) it belongs to.
    async fn run_at(&self, ctx: &Context<'_>) -> async_graphql::Result<DateTime<Utc>> {
        load::<RunTimeLoader, _, _>(ctx, self.0.run_id)
            .await?
            .ok_or(AppError::NotFound)
            .map_err(Into::into)
    }

    async fn status(&self) -> DeliveryStatus {
        self.0.shown_status()
    }

    /// The Message-ID header, stable across retries.
    async fn message_id(&self, ctx: &Context<'_>) -> String {
        crate::mail::message::message_id(self.0.id.into(), &AppState::from_ctx(ctx).config().mail.mail_from)
    }

    /// The latest bounce or complaint about this delivery.
    async fn bounce(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Bounce>> {
        load::<BounceLoader, _, _>(ctx, self.0.id).await
    }

    async fn attempts(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Attempt<M>>> {
        Ok(load::<AttemptsOfLoader, _, _>(ctx, self.0.id)
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(Attempt::new)
            .collect())
    }
}

/// The mailing log: one row per try to hand a message to the mail server.
pub struct Attempt<M>(pub model::Attempt, PhantomData<fn() -> M>);

impl<M> Attempt<M> {
    pub fn new(row: model::Attempt) -> Self {
        Attempt(row, PhantomData)
    }
}

impl<M> TypeName for Attempt<M> {
    fn type_name() -> Cow<'static, str> {
        "Attempt".into()
    }
}

#[Object(name_type)]
impl<M: MailingNode> Attempt<M> {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn mailing(&self, ctx: &Context<'_>) -> async_graphql::Result<M> {
        mailing_of(ctx, self.0.mailing_id).await
    }

    async fn delivery(&self, ctx: &Context<'_>) -> async_graphql::Result<Delivery<M>> {
        load::<DeliveryLoader, _, _>(ctx, self.0.delivery_id)
            .await?
            .map(Delivery::new)
            .ok_or(AppError::NotFound)
            .map_err(Into::into)
    }

    async fn email(&self) -> &str {
        &self.0.email
    }

    async fn attempted_at(&self) -> DateTime<Utc> {
        self.0.attempted_at
    }

    /// The SMTP server that carried this attempt.
    async fn smtp_server(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<crate::senders::graphql::SmtpServer>> {
        let Some(id) = self.0.smtp_server_id else {
            return Ok(None);
        };
        Ok(load::<crate::senders::graphql::SmtpServerLoader, _, _>(ctx, id)
            .await?
            .map(crate::senders::graphql::SmtpServer))
    }

    async fn status(&self) -> AttemptStatus {
        self.0.status
    }

    /// The server's reply or the transport error, when there was one (at most 1 KiB).
    async fn server_response(&self) -> Option<&str> {
        self.0.server_response.as_deref()
    }
}

#[derive(SimpleObject)]
pub struct MailingStats {
    /// Clients in its audience now (live, not unsubscribed): a run starting now reaches them.
    pub recipients: i32,
    /// Deliveries SENT, all runs.
    pub sent: i32,
    pub failed: i32,
    pub unknown: i32,
    /// PENDING + SENDING.
    pub pending: i32,
    pub cancelled: i32,
    pub attempts: i32,
    pub last_attempt_at: Option<DateTime<Utc>>,
}

/// A mailing's totals (used by `Mailing.stats`).
pub async fn mailing_stats(
    ctx: &Context<'_>,
    mailing_id: MailingId,
    recipients: i64,
) -> async_graphql::Result<MailingStats> {
    let stats = load::<StatsLoader, _, _>(ctx, mailing_id).await?.unwrap_or_default();
    Ok(MailingStats {
        recipients: to_i32(recipients),
        sent: to_i32(stats.deliveries.sent),
        failed: to_i32(stats.deliveries.failed),
        unknown: to_i32(stats.deliveries.unknown),
        pending: to_i32(stats.deliveries.pending),
        cancelled: to_i32(stats.deliveries.cancelled),
        attempts: to_i32(stats.attempts),
        last_attempt_at: stats.last_attempt_at,
    })
}

/// The counts of a mailing's current run.
#[derive(SimpleObject, Clone)]
pub struct MailingProgress {
    pub mailing_id: ID,
    pub run_at: DateTime<Utc>,
    pub total: i32,
    pub sent: i32,
    pub failed: i32,
    pub unknown: i32,
    pub pending: i32,
}

/// Whose attempts a viewer may read.
fn owner_filter(scope: Scope) -> Option<UserId> {
    match scope {
        Scope::Owner(owner) => Some(owner),
        Scope::Everyone => None,
    }
}

/// The log's queries; `M` is the API's `Mailing` (see [`MailingNode`]).
pub struct DeliveriesQuery<M>(PhantomData<fn() -> M>);

impl<M> Default for DeliveriesQuery<M> {
    fn default() -> Self {
        DeliveriesQuery(PhantomData)
    }
}

#[Object]
impl<M: MailingNode> DeliveriesQuery<M> {
    /// The mailing log, newest first: your mailings' attempts (MANAGER, ADMIN: everyone's).
    #[graphql(complexity = "crate::graphql::connection::page_cost(first, child_complexity)")]
    async fn attempts(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        mailing_id: Option<ID>,
        status: Option<AttemptStatus>,
    ) -> async_graphql::Result<crate::graphql::connection::Connection<Attempt<M>>> {
        let viewer = viewer(ctx)?;
        let args = crate::db::page::PageArgs::new(first, after.as_deref())?;
        let mailing = match &mailing_id {
            Some(id) => match parse_id(id) {
                Some(id) => Some(id),
                None => {
                    return Ok(crate::graphql::connection::Connection::from_page(
                        empty(),
                        args,
                        model::Attempt::cursor,
                        Attempt::new,
                    ));
                }
            },
            None => None,
        };
        let filter = AttemptFilter {
            owner: owner_filter(read_scope(viewer)),
            mailing,
            status,
        };
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let page = model::attempts_page(&mut conn, &filter, args).await?;
        Ok(crate::graphql::connection::Connection::from_page(
            page,
            args,
            model::Attempt::cursor,
            Attempt::new,
        ))
    }
}

fn empty<T>() -> crate::db::page::Page<T> {
    crate::db::page::Page {
        rows: Vec::new(),
        total: 0,
    }
}

/// `Mailing.runs`, `deliveries` and `attempts`: pages of one mailing's log.
pub mod of_mailing {
    use super::*;
    use crate::db::page::PageArgs;
    use crate::graphql::connection::Connection;

    pub async fn runs(
        ctx: &Context<'_>,
        mailing: MailingId,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<Run>> {
        let args = PageArgs::new(first, after.as_deref())?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let page = model::runs_page(&mut conn, mailing, args).await?;
        Ok(Connection::from_page(page, args, model::Run::cursor, Run))
    }

    pub async fn deliveries<M: MailingNode>(
        ctx: &Context<'_>,
        mailing: MailingId,
        first: Option<i32>,
        after: Option<String>,
        status: Option<DeliveryStatus>,
    ) -> async_graphql::Result<Connection<Delivery<M>>> {
        let args = PageArgs::new(first, after.as_deref())?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let page = model::deliveries_page(&mut conn, mailing, status, args).await?;
        Ok(Connection::from_page(
            page,
            args,
            model::Delivery::cursor,
            Delivery::new,
        ))
    }

    pub async fn attempts<M: MailingNode>(
        ctx: &Context<'_>,
        mailing: MailingId,
        first: Option<i32>,
        after: Option<String>,
        status: Option<AttemptStatus>,
    ) -> async_graphql::Result<Connection<Attempt<M>>> {
        let args = PageArgs::new(first, after.as_deref())?;
        let filter = AttemptFilter {
            owner: None,
            mailing: Some(mailing),
            status,
        };
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let page = model::attempts_page(&mut conn, &filter, args).await?;
        Ok(Connection::from_page(page, args, model::Attempt::cursor, Attempt::new))
    }
}

/// The log's subscriptions; `M` is the API's `Mailing` (see [`MailingNode`]).
pub struct DeliveriesSubscription<M>(PhantomData<fn() -> M>);

impl<M> Default for DeliveriesSubscription<M> {
    fn default() -> Self {
        DeliveriesSubscription(PhantomData)
    }
}

#[Subscription]
impl<M: MailingNode> DeliveriesSubscription<M> {
    /// Every attempt as it is recorded, by any instance; only mailings the viewer may see.
    async fn attempts(
        &self,
        ctx: &Context<'_>,
        mailing_id: Option<ID>,
    ) -> async_graphql::Result<impl Stream<Item = Attempt<M>> + use<M>> {
        let viewer = viewer(ctx)?.clone();
        let state = AppState::from_ctx(ctx).clone();
        let mailing = match &mailing_id {
            Some(id) => Some(visible_mailing(&state, &viewer, id).await?),
            None => None,
        };
        let owner = owner_filter(read_scope(&viewer));
        Ok(events(&state).filter_map(move |event| async move {
            match &*event {
                Event::Attempt(a)
                    if mailing.is_none_or(|m| m == a.mailing_id) && owner.is_none_or(|o| o == a.owner_id) =>
                {
                    Some(Attempt::new(a.clone()))
                }
                _ => None,
            }
        }))
    }

    /// The counts of the mailing's current run whenever they change, by any instance.
    async fn mailing_progress(
        &self,
        ctx: &Context<'_>,
        mailing_id: ID,
    ) -> async_graphql::Result<impl Stream<Item = MailingProgress>> {
        let viewer = viewer(ctx)?.clone();
        let state = AppState::from_ctx(ctx).clone();
        let mailing = visible_mailing(&state, &viewer, &mailing_id).await?;
        Ok(events(&state).filter_map(move |event| async move {
            match &*event {
                Event::Progress(p) if p.mailing_id == mailing => Some(MailingProgress {
                    mailing_id: ID(p.mailing_id.to_string()),
                    run_at: p.run_at,
                    total: to_i32(p.counts.total),
                    sent: to_i32(p.counts.sent),
                    failed: to_i32(p.counts.failed),
                    unknown: to_i32(p.counts.unknown),
                    pending: to_i32(p.counts.pending),
                }),
                _ => None,
            }
        }))
    }
}

/// This instance's events; a subscriber that falls behind skips what it missed.
fn events(state: &AppState) -> impl Stream<Item = std::sync::Arc<Event>> + use<> {
    futures_util::stream::unfold(state.events().subscribe(), |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(event) => return Some((event, rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "a slow subscriber skipped events");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

async fn visible_mailing(
    state: &AppState,
    viewer: &crate::accounts::Viewer,
    id: &ID,
) -> async_graphql::Result<MailingId> {
    let id = parse_id(id).ok_or(AppError::NotFound)?;
    let mut conn = state.conn().await?;
    mailings::find(&mut conn, read_scope(viewer), id)
        .await?
        .map(|m| m.id)
        .ok_or(AppError::NotFound)
        .map_err(Into::into)
}
