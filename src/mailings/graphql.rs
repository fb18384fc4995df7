//! The mailings part of the GraphQL API.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, Enum, ID, InputObject, Object};
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;

use super::access::{may_steer, read_scope};
use super::audience::{self, AudienceFields};
use super::model::{self, MailingFields, Scope};
use super::schedule::{Periodicity, Schedule};
use crate::accounts::graphql::{User, UserLoader};
use crate::accounts::{Viewer, viewer};
use crate::app::AppState;
use crate::clients::graphql::{Client, Tag, owned_tags};
use crate::clients::model as clients;
use crate::clients::segment::SegmentInput;
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

    /// Who its mail comes from; null: MAIL_FROM through every server.
    async fn sender_identity(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<crate::senders::graphql::SenderIdentity>> {
        let Some(id) = self.0.sender_identity_id else {
            return Ok(None);
        };
        let identity = ctx
            .data_unchecked::<DataLoader<crate::senders::graphql::SenderIdentityLoader>>()
            .load_one(id)
            .await?;
        Ok(identity.map(crate::senders::graphql::SenderIdentity))
    }

    /// When its deliveries may go out, in its time zone; null: any time.
    async fn sending_window(&self) -> Option<SendingWindow> {
        self.0.window().map(|w| SendingWindow {
            days: w.days.iter().map(|d| i32::from(*d)).collect(),
            from_hour: i32::from(w.from_hour),
            to_hour: i32::from(w.to_hour),
        })
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

    /// Who it reaches.
    async fn audience(&self) -> Audience {
        Audience(self.0.clone())
    }

    /// The clients in its audience now (a run starting now reaches them), newest first.
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
    /// The size of each mailing's audience now (`stats.recipients`, `audience.size`): one
    /// query for all the mailings of picked clients only, one per mailing of any other kind.
    RecipientsLoader: MailingId => i64, |conn, keys| async {
        let mailings = model::find_by_ids(conn, keys).await?;
        let audiences = audience::of_mailings(conn, &mailings).await?;
        let picked: Vec<MailingId> = audiences.values().filter_map(audience::Audience::picked_only).collect();
        let mut sizes = audience::picked_sizes(conn, &picked).await?;
        for mailing in mailings.iter().filter(|m| audiences[&m.id].picked_only().is_none()) {
            let size = audience::size(conn, mailing.owner_id, &audiences[&mailing.id]).await?;
            sizes.insert(mailing.id, size);
        }
        Ok(sizes)
    }
);

/// Who a mailing reaches: everyone in any of its parts.
#[derive(InputObject, Default)]
pub struct AudienceInput {
    /// Every live client of yours, including those added after the mailing was made.
    pub all_clients: Option<bool>,
    /// Clients picked one by one (at most 10,000; for more, use a tag or a segment).
    pub client_ids: Option<Vec<ID>>,
    /// Clients carrying any of these tags of yours.
    pub tag_ids: Option<Vec<ID>>,
    /// Clients in this segment.
    pub segment: Option<SegmentInput>,
}

impl AudienceInput {
    /// The checked audience, every id the owner's; errors name `field.clientIds` and so on.
    async fn validate(
        &self,
        conn: &mut diesel_async::AsyncPgConnection,
        owner: UserId,
        field: &str,
    ) -> AppResult<AudienceFields> {
        Ok(AudienceFields {
            all_clients: self.all_clients.unwrap_or(false),
            client_ids: match &self.client_ids {
                Some(ids) => owned_clients(conn, owner, &format!("{field}.clientIds"), ids).await?,
                None => Vec::new(),
            },
            tag_ids: match &self.tag_ids {
                Some(ids) => owned_tags(conn, owner, &format!("{field}.tagIds"), ids).await?,
                None => Vec::new(),
            },
            segment: match &self.segment {
                Some(segment) => {
                    segment.validate(&format!("{field}.segment"))?;
                    Some(segment.clone())
                }
                None => None,
            },
        })
    }
}

fn too_many_picked(field: &str) -> AppError {
    AppError::bad_input(
        field,
        format!("at most {MAX_CLIENTS} clients picked one by one; use a tag or a segment for more"),
    )
}

/// `ids` as the owner's live clients, each once, or BAD_USER_INPUT on `field`.
async fn owned_clients(
    conn: &mut diesel_async::AsyncPgConnection,
    owner: UserId,
    field: &str,
    ids: &[ID],
) -> AppResult<Vec<ClientId>> {
    if ids.len() > MAX_CLIENTS {
        return Err(too_many_picked(field));
    }
    let mut client_ids = Vec::with_capacity(ids.len());
    let mut seen = HashSet::new();
    for id in ids {
        let parsed = parse_id(id).ok_or_else(|| AppError::bad_input(field, format!("no such client: {}", id.0)))?;
        if seen.insert(parsed) {
            client_ids.push(parsed);
        }
    }
    let owned: HashSet<ClientId> = clients::owned_ids(conn, owner, &client_ids)
        .await?
        .into_iter()
        .collect();
    if let Some(missing) = client_ids.iter().find(|id| !owned.contains(id)) {
        return Err(AppError::bad_input(field, format!("no such client: {missing}")));
    }
    Ok(client_ids)
}

#[derive(InputObject)]
pub struct MailingInput {
    pub starts_at: DateTime<Utc>,
    /// null: no end.
    pub ends_at: Option<DateTime<Utc>>,
    pub periodicity: Periodicity,
    /// IANA name, default "UTC".
    pub time_zone: Option<String>,
    pub message_id: ID,
    /// Clients picked one by one (at most 10,000), as `audience.clientIds`.
    pub client_ids: Option<Vec<ID>>,
    /// Who the mailing reaches. On update, without this and `clientIds` the audience stays
    /// as it is; with either, it becomes what they say.
    pub audience: Option<AudienceInput>,
    /// Who its mail comes from: an identity allowed for you (`senderIdentities`); absent:
    /// MAIL_FROM through every server.
    pub sender_identity_id: Option<ID>,
    /// When its deliveries may go out, in its time zone; absent: any time.
    pub sending_window: Option<SendingWindowInput>,
}

/// Days of the week and hours when a mailing's deliveries may go out.
#[derive(Debug, Clone, async_graphql::InputObject)]
pub struct SendingWindowInput {
    /// ISO weekdays, 1 = Monday.
    pub days: Vec<i32>,
    /// 0-23, in the mailing's time zone.
    pub from_hour: i32,
    /// 1-24, exclusive.
    pub to_hour: i32,
}

/// A mailing's sending window.
#[derive(Debug, Clone, async_graphql::SimpleObject)]
pub struct SendingWindow {
    /// ISO weekdays, 1 = Monday.
    pub days: Vec<i32>,
    /// 0-23, in the mailing's time zone.
    pub from_hour: i32,
    /// 1-24, exclusive.
    pub to_hour: i32,
}

impl MailingInput {
    /// The identity, checked to be one the owner may use (admins: any live one).
    async fn sender_identity(
        &self,
        conn: &mut diesel_async::AsyncPgConnection,
        owner: UserId,
    ) -> AppResult<Option<crate::db::types::SenderIdentityId>> {
        let Some(id) = &self.sender_identity_id else {
            return Ok(None);
        };
        let unknown = || AppError::bad_input("input.senderIdentityId", "no such sender identity allowed for you");
        let id = parse_id(id).ok_or_else(unknown)?;
        let admin = crate::accounts::model::find_user(conn, owner)
            .await?
            .is_some_and(|u| u.role == crate::accounts::role::Role::Admin);
        crate::senders::model::identity(conn, (!admin).then_some(owner), id)
            .await?
            .ok_or_else(unknown)?;
        Ok(Some(id))
    }

    fn sending_window(&self) -> AppResult<Option<serde_json::Value>> {
        let Some(window) = &self.sending_window else {
            return Ok(None);
        };
        let window = crate::senders::window::SendingWindow::new(&window.days, window.from_hour, window.to_hour)
            .map_err(|(part, message)| AppError::bad_input(format!("input.sendingWindow.{part}"), message))?;
        Ok(Some(serde_json::to_value(window).map_err(anyhow::Error::from)?))
    }

    /// Checks the input against the schedule rules and the caller's own messages, clients
    /// and tags (the message's row locked for the transaction). `last_run_at`: the latest
    /// run the mailing already started, from which the next run is counted. The audience is
    /// None when the input leaves it as it is.
    async fn validate(
        &self,
        conn: &mut diesel_async::AsyncPgConnection,
        owner: UserId,
        last_run_at: Option<DateTime<Utc>>,
    ) -> AppResult<(MailingFields, Option<AudienceFields>)> {
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

        let audience = if self.client_ids.is_none() && self.audience.is_none() {
            None
        } else {
            let mut audience = match &self.audience {
                Some(audience) => audience.validate(conn, owner, "input.audience").await?,
                None => AudienceFields::default(),
            };
            if let Some(ids) = &self.client_ids {
                for id in owned_clients(conn, owner, "input.clientIds", ids).await? {
                    if !audience.client_ids.contains(&id) {
                        audience.client_ids.push(id);
                    }
                }
                if audience.client_ids.len() > MAX_CLIENTS {
                    return Err(too_many_picked("input.clientIds"));
                }
            }
            if audience.is_empty() {
                return Err(if self.audience.is_some() {
                    AppError::bad_input("input.audience", "choose all clients, clients, tags or a segment")
                } else {
                    AppError::bad_input("input.clientIds", "choose at least one client")
                });
            }
            Some(audience)
        };

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
            sender_identity_id: self.sender_identity(conn, owner).await?,
            sending_window: self.sending_window()?,
        };
        Ok((fields, audience))
    }
}

/// Who a mailing reaches, as saved.
pub struct Audience(model::Mailing);

#[Object]
impl Audience {
    /// Every live client of the owner, those added later included.
    async fn all_clients(&self) -> bool {
        self.0.audience_all
    }

    /// Clients with any of these tags are in.
    async fn tags(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Tag>> {
        let tags = ctx
            .data_unchecked::<DataLoader<MailingTagsLoader>>()
            .load_one(self.0.id)
            .await?
            .unwrap_or_default();
        Ok(tags.into_iter().map(Tag).collect())
    }

    /// Clients in this segment are in.
    async fn segment(&self) -> Option<SegmentInput> {
        audience::stored_segment(self.0.id, self.0.audience_segment.as_ref()).map(|(input, _)| input)
    }

    /// Clients picked one by one (deleted ones drop out), newest first.
    #[graphql(complexity = "crate::graphql::connection::page_cost(first, child_complexity)")]
    async fn clients(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<Client>> {
        let args = PageArgs::new(first, after.as_deref())?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let page = audience::picked_page(&mut conn, self.0.owner_id, self.0.id, args).await?;
        Ok(Connection::from_page(page, args, clients::Client::cursor, Client))
    }

    /// How many clients it holds now (live, not unsubscribed): a run starting now reaches them.
    async fn size(&self, ctx: &Context<'_>) -> async_graphql::Result<i32> {
        let size = ctx
            .data_unchecked::<DataLoader<RecipientsLoader>>()
            .load_one(self.0.id)
            .await?
            .unwrap_or(0);
        Ok(i32::try_from(size).unwrap_or(i32::MAX))
    }
}

crate::batch_loader!(
    /// `Audience.tags`, batched per request.
    MailingTagsLoader: MailingId => Vec<crate::clients::tags::Tag>, |conn, keys| async {
        audience::tags_of_mailings(conn, keys).await
    }
);

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

    /// How many of your clients an audience holds now (live, not unsubscribed): what a
    /// mailing to it would reach if a run started now.
    async fn audience_size(&self, ctx: &Context<'_>, audience: AudienceInput) -> async_graphql::Result<i32> {
        let viewer = viewer(ctx)?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let fields = audience.validate(&mut conn, viewer.user_id, "audience").await?;
        let segment = fields
            .segment
            .as_ref()
            .map(|s| s.validate("audience.segment"))
            .transpose()?;
        let audience = audience::Audience {
            all_clients: fields.all_clients,
            picked: Some(audience::Picked::Ids(fields.client_ids)),
            tags: fields.tag_ids,
            segment,
        };
        let size = audience::size(&mut conn, viewer.user_id, &audience).await?;
        Ok(i32::try_from(size).unwrap_or(i32::MAX))
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
                let (fields, audience) = input.validate(conn, viewer.user_id, None).await?;
                let audience = audience.ok_or_else(|| {
                    AppError::bad_input("input.audience", "choose all clients, clients, tags or a segment")
                })?;
                let mailing = model::create(conn, viewer.user_id, &fields).await?;
                audience::save(conn, mailing.id, &audience).await?;
                let mailing = model::find(conn, Scope::Owner(viewer.user_id), mailing.id)
                    .await?
                    .ok_or(AppError::NotFound)?;
                // Every dispatcher looks now: a mailing whose window has begun starts at once.
                events::notify(conn, &Notice::Wake).await?;
                Ok(mailing)
            })
            .await?;
        AppState::from_ctx(ctx).dispatch_wakeup().notify_one();
        Ok(Mailing(mailing))
    }

    /// Replaces the schedule and message, and the audience when the input names one; the
    /// next run is recomputed. Runs already started keep what they started with.
    async fn update_mailing(&self, ctx: &Context<'_>, id: ID, input: MailingInput) -> async_graphql::Result<Mailing> {
        let viewer = viewer(ctx)?;
        let id = parse_id(&id).ok_or(AppError::NotFound)?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let mailing = conn
            .transaction::<_, AppError, _>(async |conn| {
                let existing = visible_for_write(conn, viewer, id).await?;
                let last_run = model::last_run_at(conn, existing.id).await?;
                let (mut fields, audience) = input.validate(conn, existing.owner_id, last_run).await?;
                if existing.completed_at.is_some() {
                    fields.next_run_at = None;
                }
                let updated = model::update(conn, existing.owner_id, id, &fields)
                    .await?
                    .ok_or(AppError::NotFound)?;
                if updated.sending_window != existing.sending_window {
                    // Deliveries waiting for the old window's opening look again now.
                    model::recheck_waiting(conn, id).await?;
                }
                let Some(audience) = audience else { return Ok(updated) };
                audience::save(conn, id, &audience).await?;
                model::find(conn, Scope::Owner(existing.owner_id), id)
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

/// `Mailing.clients` pages, batched per request: mailings of picked clients only in one
/// pair of queries; any other audience costs a count and a page of its own.
pub struct MailingClientsLoader(pub DbPool);

impl Loader<(MailingId, PageArgs)> for MailingClientsLoader {
    type Value = crate::db::page::Page<clients::Client>;
    type Error = Arc<AppError>;

    async fn load(
        &self,
        keys: &[(MailingId, PageArgs)],
    ) -> Result<HashMap<(MailingId, PageArgs), Self::Value>, Self::Error> {
        let mut conn = self.0.get().await.map_err(|e| Arc::new(e.into()))?;
        let ids: Vec<MailingId> = keys.iter().map(|(id, _)| *id).collect();
        let loaded: AppResult<_> = async {
            let mailings = model::find_by_ids(&mut conn, &ids).await?;
            let audiences = audience::of_mailings(&mut conn, &mailings).await?;
            let mut result = HashMap::new();
            // Mailings of picked clients only: one pair of queries per page asked for.
            let mut picked: HashMap<PageArgs, Vec<MailingId>> = HashMap::new();
            for (id, args) in keys {
                match audiences.get(id) {
                    Some(audience) if audience.picked_only().is_some() => picked.entry(*args).or_default().push(*id),
                    Some(audience) => {
                        let owner = mailings.iter().find(|m| m.id == *id).map(|m| m.owner_id);
                        let Some(owner) = owner else { continue };
                        let page = audience::members_page(&mut conn, owner, audience, *args).await?;
                        result.insert((*id, *args), page);
                    }
                    None => {}
                }
            }
            for (args, ids) in picked {
                let pages = audience::picked_members_pages(&mut conn, &ids, args).await?;
                result.extend(pages.into_iter().map(|(mailing, page)| ((mailing, args), page)));
            }
            Ok(result)
        }
        .await;
        loaded.map_err(Arc::new)
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
