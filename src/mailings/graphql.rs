//! The mailings part of the GraphQL API.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, Enum, ID, InputObject, Object};
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;

use super::access::{may_steer, read_scope};
use super::model::{self, MailingFields};
use super::schedule::{Periodicity, Schedule};
use crate::accounts::graphql::{User, UserLoader};
use crate::accounts::{Viewer, viewer};
use crate::app::AppState;
use crate::clients::graphql::Client;
use crate::clients::model as clients;
use crate::db::DbPool;
use crate::db::page::PageArgs;
use crate::db::types::{ClientId, MailingId, UserId};
use crate::deliveries::graphql::{
    self as log, AttemptStatus, DeliveryStatus, MailingNode, MailingStats, Run, mailing_stats, of_mailing,
};
use crate::deliveries::model::{self as deliveries, Cancel};
use crate::error::{AppError, AppResult};
use crate::events::{self, Notice};
use crate::graphql::connection::Connection;
use crate::graphql::ids::parse_id;
use crate::messages::graphql::{Message, MessageLoader};
use crate::messages::model as messages;

/// Most clients one mailing may have.
pub const MAX_CLIENTS: usize = 10_000;

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "crate::mailings::model::Status")]
pub enum MailingStatus {
    /// First run still in the future.
    Created,
    /// Inside its window: sending, or waiting for its next run.
    Running,
    /// Window over, last run finished, or completed by hand.
    Completed,
}

/// A message to a set of clients on a schedule.
pub struct Mailing(pub model::Mailing);

impl From<model::Mailing> for Mailing {
    fn from(row: model::Mailing) -> Self {
        Mailing(row)
    }
}

impl MailingNode for Mailing {}

/// The log's types with their `mailing` fields answering this `Mailing`.
pub type Delivery = log::Delivery<Mailing>;
pub type Attempt = log::Attempt<Mailing>;
pub type DeliveriesQuery = log::DeliveriesQuery<Mailing>;
pub type DeliveriesSubscription = log::DeliveriesSubscription<Mailing>;

#[Object]
impl Mailing {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn starts_at(&self) -> DateTime<Utc> {
        self.0.starts_at
    }

    /// null: no end. Inclusive: a run falling exactly at endsAt is sent.
    async fn ends_at(&self) -> Option<DateTime<Utc>> {
        self.0.ends_at
    }

    async fn periodicity(&self) -> Periodicity {
        self.0.periodicity
    }

    /// IANA name; days, month ends and DST are counted in this zone.
    async fn time_zone(&self) -> &str {
        &self.0.time_zone
    }

    async fn status(&self, ctx: &Context<'_>) -> async_graphql::Result<MailingStatus> {
        if self.0.completed_at.is_some() {
            return Ok(MailingStatus::Completed);
        }
        let started = ctx
            .data_unchecked::<DataLoader<StartedLoader>>()
            .load_one(self.0.id)
            .await?
            .unwrap_or(false);
        Ok(if started {
            MailingStatus::Running
        } else {
            MailingStatus::Created
        })
    }

    async fn paused(&self) -> bool {
        self.0.paused
    }

    /// The next run not yet started; null when none remains.
    async fn next_run_at(&self) -> Option<DateTime<Utc>> {
        self.0.next_run_at
    }

    async fn message(&self, ctx: &Context<'_>) -> async_graphql::Result<Message> {
        let message = ctx
            .data_unchecked::<DataLoader<MessageLoader>>()
            .load_one(self.0.message_id)
            .await?;
        message.map(Message).ok_or(AppError::NotFound).map_err(Into::into)
    }

    async fn owner(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        let owner = ctx
            .data_unchecked::<DataLoader<UserLoader>>()
            .load_one(self.0.owner_id)
            .await?;
        owner.map(User).ok_or(AppError::NotFound).map_err(Into::into)
    }

    /// The mailing's clients now (deleted ones drop out), newest first.
    #[graphql(complexity = "crate::graphql::connection::page_cost(first, child_complexity)")]
    async fn clients(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<Client>> {
        let args = PageArgs::new(first, after.as_deref())?;
        let loader = ctx.data_unchecked::<DataLoader<MailingClientsLoader>>();
        let page = loader
            .load_one((self.0.id, args))
            .await?
            .unwrap_or(crate::db::page::Page {
                rows: Vec::new(),
                total: 0,
            });
        Ok(Connection::from_page(page, args, clients::Client::cursor, Client))
    }

    /// Its runs, newest first (SKIPPED and CANCELLED ones included).
    #[graphql(complexity = "crate::graphql::connection::page_cost(first, child_complexity)")]
    async fn runs(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<Run>> {
        of_mailing::runs(ctx, self.0.id, first, after).await
    }

    /// Its deliveries over all runs, newest first.
    #[graphql(complexity = "crate::graphql::connection::page_cost(first, child_complexity)")]
    async fn deliveries(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        status: Option<DeliveryStatus>,
    ) -> async_graphql::Result<Connection<Delivery>> {
        of_mailing::deliveries(ctx, self.0.id, first, after, status).await
    }

    /// Its log: every try to hand a message to the mail server, newest first.
    #[graphql(complexity = "crate::graphql::connection::page_cost(first, child_complexity)")]
    async fn attempts(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        status: Option<AttemptStatus>,
    ) -> async_graphql::Result<Connection<Attempt>> {
        of_mailing::attempts(ctx, self.0.id, first, after, status).await
    }

    async fn stats(&self, ctx: &Context<'_>) -> async_graphql::Result<MailingStats> {
        let recipients = ctx
            .data_unchecked::<DataLoader<RecipientsLoader>>()
            .load_one(self.0.id)
            .await?
            .unwrap_or(0);
        mailing_stats(ctx, self.0.id, recipients).await
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

crate::batch_loader!(
    /// Live clients per mailing (`stats.recipients`).
    RecipientsLoader: MailingId => i64, |conn, keys| model::recipient_counts(conn, keys)
);

#[derive(InputObject)]
pub struct MailingInput {
    pub starts_at: DateTime<Utc>,
    /// null: no end.
    pub ends_at: Option<DateTime<Utc>>,
    pub periodicity: Periodicity,
    /// IANA name, default "UTC".
    pub time_zone: Option<String>,
    pub message_id: ID,
    /// 1 to 10,000 of your clients.
    pub client_ids: Vec<ID>,
}

impl MailingInput {
    /// Checks the input against the schedule rules and the caller's own messages and
    /// clients (their rows locked for the transaction). `last_run_at`: the latest run the
    /// mailing already started, from which the next run is counted.
    async fn validate(
        &self,
        conn: &mut diesel_async::AsyncPgConnection,
        owner: UserId,
        last_run_at: Option<DateTime<Utc>>,
    ) -> AppResult<(MailingFields, Vec<ClientId>)> {
        if self.ends_at.is_some_and(|end| end <= self.starts_at) {
            return Err(AppError::bad_input("input.endsAt", "must be after startsAt"));
        }
        let time_zone = self
            .time_zone
            .as_deref()
            .map(str::trim)
            .filter(|z| !z.is_empty())
            .unwrap_or("UTC");
        let tz: chrono_tz::Tz = time_zone.parse().map_err(|_| {
            AppError::bad_input(
                "input.timeZone",
                format!("`{time_zone}` is not an IANA time zone (like Europe/Berlin)"),
            )
        })?;

        let message_id =
            parse_id(&self.message_id).ok_or_else(|| AppError::bad_input("input.messageId", "no such message"))?;
        if messages::lock(conn, owner, message_id, false).await?.is_none() {
            return Err(AppError::bad_input("input.messageId", "no such message"));
        }

        if self.client_ids.is_empty() {
            return Err(AppError::bad_input("input.clientIds", "choose at least one client"));
        }
        if self.client_ids.len() > MAX_CLIENTS {
            return Err(AppError::bad_input(
                "input.clientIds",
                format!("at most {MAX_CLIENTS} clients per mailing"),
            ));
        }
        let mut client_ids = Vec::with_capacity(self.client_ids.len());
        let mut seen = HashSet::new();
        for id in &self.client_ids {
            let parsed = parse_id(id)
                .ok_or_else(|| AppError::bad_input("input.clientIds", format!("no such client: {}", id.0)))?;
            if seen.insert(parsed) {
                client_ids.push(parsed);
            }
        }
        let owned: HashSet<ClientId> = clients::owned_ids(conn, owner, &client_ids)
            .await?
            .into_iter()
            .collect();
        if let Some(missing) = client_ids.iter().find(|id| !owned.contains(id)) {
            return Err(AppError::bad_input(
                "input.clientIds",
                format!("no such client: {missing}"),
            ));
        }

        let schedule = Schedule {
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            periodicity: self.periodicity,
            time_zone: tz,
        };
        let next_run_at = match last_run_at {
            Some(last) => schedule.next_run_after(last),
            None => schedule.run(0),
        };
        let fields = MailingFields {
            message_id,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            periodicity: self.periodicity,
            time_zone: tz.name().to_owned(),
            next_run_at,
        };
        Ok((fields, client_ids))
    }
}

#[derive(Default)]
pub struct MailingsQuery;

#[Object]
impl MailingsQuery {
    /// USER: own mailings; MANAGER and ADMIN: everyone's. Newest first.
    #[graphql(complexity = "crate::graphql::connection::page_cost(first, child_complexity)")]
    async fn mailings(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        status: Option<MailingStatus>,
    ) -> async_graphql::Result<Connection<Mailing>> {
        let viewer = viewer(ctx)?;
        let args = PageArgs::new(first, after.as_deref())?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let page = model::list(&mut conn, read_scope(viewer), status.map(Into::into), args).await?;
        Ok(Connection::from_page(page, args, model::Mailing::cursor, Mailing))
    }

    async fn mailing(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Mailing>> {
        let viewer = viewer(ctx)?;
        let Some(id) = parse_id(&id) else { return Ok(None) };
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        Ok(model::find(&mut conn, read_scope(viewer), id).await?.map(Mailing))
    }
}

#[derive(Default)]
pub struct MailingsMutation;

#[Object]
impl MailingsMutation {
    async fn create_mailing(&self, ctx: &Context<'_>, input: MailingInput) -> async_graphql::Result<Mailing> {
        let viewer = viewer(ctx)?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let mailing = conn
            .transaction::<_, AppError, _>(async |conn| {
                let (fields, client_ids) = input.validate(conn, viewer.user_id, None).await?;
                let mailing = model::create(conn, viewer.user_id, &fields, &client_ids).await?;
                // Every dispatcher looks now: a mailing whose window has begun starts at once.
                events::notify(conn, &Notice::Wake).await?;
                Ok(mailing)
            })
            .await?;
        AppState::from_ctx(ctx).dispatch_wakeup().notify_one();
        Ok(Mailing(mailing))
    }

    /// Replaces the schedule, message and clients; the next run is recomputed. Runs already
    /// started keep what they started with.
    async fn update_mailing(&self, ctx: &Context<'_>, id: ID, input: MailingInput) -> async_graphql::Result<Mailing> {
        let viewer = viewer(ctx)?;
        let id = parse_id(&id).ok_or(AppError::NotFound)?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let mailing = conn
            .transaction::<_, AppError, _>(async |conn| {
                let existing = visible_for_write(conn, viewer, id).await?;
                let last_run = model::last_run_at(conn, existing.id).await?;
                let (mut fields, client_ids) = input.validate(conn, existing.owner_id, last_run).await?;
                if existing.completed_at.is_some() {
                    fields.next_run_at = None;
                }
                model::update(conn, existing.owner_id, id, &fields, &client_ids)
                    .await?
                    .ok_or(AppError::NotFound)
            })
            .await?;
        Ok(Mailing(mailing))
    }

    /// No new runs start and no new attempts begin (sends under way finish).
    async fn pause_mailing(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Mailing> {
        Self::steer(ctx, &id, async |conn, id| Ok(model::set_paused(conn, id, true).await?)).await
    }

    /// Pending deliveries continue; runs missed meanwhile coalesce into the latest.
    async fn resume_mailing(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Mailing> {
        Self::steer(ctx, &id, async |conn, id| Ok(model::set_paused(conn, id, false).await?)).await
    }

    /// Stops the mailing for good; pending deliveries become CANCELLED.
    async fn complete_mailing(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Mailing> {
        Self::steer(ctx, &id, async |conn, id| {
            conn.transaction::<_, AppError, _>(async |conn| {
                let completed = model::complete(conn, id).await?;
                deliveries::cancel_pending(conn, Cancel::Mailing(id)).await?;
                Ok(completed)
            })
            .await
        })
        .await
    }

    /// Re-queues this mailing's deliveries in the given states (FAILED, UNKNOWN, CANCELLED)
    /// with a fresh attempt budget and the same Message-ID; returns how many.
    async fn retry_deliveries(
        &self,
        ctx: &Context<'_>,
        mailing_id: ID,
        statuses: Vec<DeliveryStatus>,
    ) -> async_graphql::Result<i32> {
        let viewer = viewer(ctx)?;
        let statuses = retryable(&statuses)?;
        let id = parse_id(&mailing_id).ok_or(AppError::NotFound)?;
        let state = AppState::from_ctx(ctx);
        let mut conn = state.conn().await?;
        let retried = conn
            .transaction::<_, AppError, _>(async |conn| {
                visible_for_write(conn, viewer, id).await?;
                let retried = deliveries::retry(conn, id, &statuses).await?;
                events::notify(conn, &Notice::Wake).await?;
                Ok(retried)
            })
            .await?;
        state.dispatch_wakeup().notify_one();
        Ok(i32::try_from(retried).unwrap_or(i32::MAX))
    }

    /// Deletes the mailing from every list; what it sent stays in the log.
    async fn delete_mailing(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let viewer = viewer(ctx)?;
        let id = parse_id(&id).ok_or(AppError::NotFound)?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        conn.transaction::<_, AppError, _>(async |conn| {
            let existing = visible_for_write(conn, viewer, id).await?;
            model::delete(conn, existing.owner_id, id).await?;
            deliveries::cancel_pending(conn, Cancel::Mailing(id)).await?;
            Ok(())
        })
        .await?;
        Ok(true)
    }
}

impl MailingsMutation {
    /// A mailing the viewer may pause, resume or complete: their own, or any as MANAGER
    /// or ADMIN. Invisible: NOT_FOUND.
    async fn steer(
        ctx: &Context<'_>,
        id: &ID,
        change: impl AsyncFnOnce(&mut diesel_async::AsyncPgConnection, MailingId) -> AppResult<Option<model::Mailing>>,
    ) -> async_graphql::Result<Mailing> {
        let viewer = viewer(ctx)?;
        let id = parse_id(id).ok_or(AppError::NotFound)?;
        let state = AppState::from_ctx(ctx);
        let mut conn = state.conn().await?;
        let mailing = model::find(&mut conn, read_scope(viewer), id)
            .await?
            .ok_or(AppError::NotFound)?;
        if !may_steer(viewer, mailing.owner_id) {
            return Err(AppError::Forbidden.into());
        }
        let changed = change(&mut conn, id).await?.ok_or(AppError::NotFound)?;
        events::notify(&mut conn, &Notice::Wake).await?;
        state.dispatch_wakeup().notify_one();
        Ok(Mailing(changed))
    }
}

/// The mailing a viewer may change: their own. A manager or admin sees others' mailings
/// but may not edit them (FORBIDDEN); a mailing the viewer cannot see is NOT_FOUND.
async fn visible_for_write(
    conn: &mut diesel_async::AsyncPgConnection,
    viewer: &Viewer,
    id: MailingId,
) -> AppResult<model::Mailing> {
    let mailing = model::find(conn, read_scope(viewer), id)
        .await?
        .ok_or(AppError::NotFound)?;
    if mailing.owner_id != viewer.user_id {
        return Err(AppError::Forbidden);
    }
    Ok(mailing)
}

crate::batch_loader!(
    /// Whether each mailing has started a run (for `status`), batched per request.
    StartedLoader: MailingId => bool, |conn, keys| async {
        let started: HashSet<MailingId> = model::started(conn, keys).await?.into_iter().collect();
        Ok(keys.iter().map(|k| (*k, started.contains(k))).collect())
    }
);

/// `Mailing.clients` pages, batched per request: one pair of queries for every mailing of
/// a list that asks for the same page.
pub struct MailingClientsLoader(pub DbPool);

impl Loader<(MailingId, PageArgs)> for MailingClientsLoader {
    type Value = crate::db::page::Page<clients::Client>;
    type Error = Arc<AppError>;

    async fn load(
        &self,
        keys: &[(MailingId, PageArgs)],
    ) -> Result<HashMap<(MailingId, PageArgs), Self::Value>, Self::Error> {
        let mut by_args: HashMap<PageArgs, Vec<MailingId>> = HashMap::new();
        for (mailing, args) in keys {
            by_args.entry(*args).or_default().push(*mailing);
        }
        let mut conn = self.0.get().await.map_err(|e| Arc::new(e.into()))?;
        let mut result = HashMap::new();
        for (args, mailings) in by_args {
            let pages = model::clients_pages(&mut conn, &mailings, args)
                .await
                .map_err(|e| Arc::new(e.into()))?;
            result.extend(pages.into_iter().map(|(mailing, page)| ((mailing, args), page)));
        }
        Ok(result)
    }
}

/// Deliveries `retryDeliveries` may re-queue.
pub fn retryable(statuses: &[DeliveryStatus]) -> Result<Vec<DeliveryStatus>, AppError> {
    if statuses.is_empty() {
        return Err(AppError::bad_input(
            "statuses",
            "name at least one of FAILED, UNKNOWN, CANCELLED",
        ));
    }
    statuses
        .iter()
        .map(|s| match s {
            DeliveryStatus::Failed | DeliveryStatus::Unknown | DeliveryStatus::Cancelled => Ok(*s),
            other => Err(AppError::bad_input(
                "statuses",
                format!("{other:?} deliveries cannot be retried; use FAILED, UNKNOWN or CANCELLED"),
            )),
        })
        .collect()
}
