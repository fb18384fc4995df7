//! The clients part of the GraphQL API: clients, their CSV import, and tags.

use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, ID, InputObject, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};

use super::import::{self, ImportStatus};
use super::model::{self, ClientFields};
use super::segment::SegmentInput;
use super::tags;
use crate::accounts::viewer;
use crate::app::AppState;
use crate::db::page::PageArgs;
use crate::db::types::{ClientId, TagId, UserId};
use crate::deliverability::graphql::{Suppression, SuppressionLoader};
use crate::error::{AppError, AppResult, on_unique_violation};
use crate::graphql::connection::Connection;
use crate::graphql::ids::parse_id;
use crate::validate;

/// Someone a user mails.
pub struct Client(pub model::Client);

#[Object]
impl Client {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn email(&self) -> &str {
        &self.0.email
    }

    async fn full_name(&self) -> &str {
        &self.0.full_name
    }

    async fn comment(&self) -> &str {
        &self.0.comment
    }

    /// The owner's own fields, `{}` when none.
    async fn attributes(&self) -> Json<serde_json::Value> {
        Json(self.0.attributes.clone())
    }

    /// Set by the one-click unsubscribe link; such clients get no further mail.
    async fn unsubscribed_at(&self) -> Option<DateTime<Utc>> {
        self.0.unsubscribed_at
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// Null when the address is not on the owner's suppression list.
    async fn suppression(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Suppression>> {
        let key = (self.0.owner_id, self.0.email.to_lowercase());
        let found = ctx
            .data_unchecked::<DataLoader<SuppressionLoader>>()
            .load_one(key)
            .await?;
        Ok(found.map(Suppression))
    }

    /// The client's tags, by name.
    async fn tags(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Tag>> {
        let found = ctx
            .data_unchecked::<DataLoader<ClientTagsLoader>>()
            .load_one(self.0.id)
            .await?;
        Ok(found.unwrap_or_default().into_iter().map(Tag).collect())
    }
}

/// A user's label for clients.
pub struct Tag(pub tags::Tag);

#[Object]
impl Tag {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    /// The clients (not deleted) that carry it.
    async fn client_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i32> {
        let count = ctx
            .data_unchecked::<DataLoader<TagCountLoader>>()
            .load_one(self.0.id)
            .await?
            .unwrap_or(0);
        Ok(i32::try_from(count).unwrap_or(i32::MAX))
    }
}

crate::batch_loader!(
    /// Batches `Client.tags` into one query per request.
    ClientTagsLoader: ClientId => Vec<tags::Tag>, |conn, keys| async {
        tags::of_clients(conn, keys).await
    }
);

crate::batch_loader!(
    /// Batches `Tag.clientCount` into one query per request.
    TagCountLoader: TagId => i64, |conn, keys| async {
        tags::client_counts(conn, keys).await
    }
);

/// Clients named in one call, at most (as a mailing's list is).
const MAX_CLIENT_IDS: usize = 10_000;

/// A tag's name: one line of 1 to 100 characters.
fn tag_name(name: &str) -> AppResult<String> {
    validate::required_line("name", name, 100)
}

fn conflict_on_tag_name(err: diesel::result::Error) -> AppError {
    on_unique_violation(
        err,
        "tags_owner_name_key",
        "name",
        "you already have a tag with this name",
    )
}

/// `ids` as tag ids, each the owner's, or BAD_USER_INPUT on `field`.
pub(crate) async fn owned_tags(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    field: &str,
    ids: &[ID],
) -> AppResult<Vec<TagId>> {
    let mut parsed: Vec<TagId> = ids
        .iter()
        .map(|id| parse_id(id).ok_or_else(|| AppError::bad_input(field, "no such tag")))
        .collect::<AppResult<_>>()?;
    parsed.sort_by_key(|id| id.0);
    parsed.dedup();
    if tags::count_owned(conn, owner, &parsed).await? != parsed.len() as i64 {
        return Err(AppError::bad_input(field, "no such tag"));
    }
    Ok(parsed)
}

/// `ClientInput.tagIds`, when given, become the client's tags.
async fn set_tags(conn: &mut AsyncPgConnection, owner: UserId, client: ClientId, ids: Option<&[ID]>) -> AppResult<()> {
    if let Some(ids) = ids {
        let ids = owned_tags(conn, owner, "input.tagIds", ids).await?;
        tags::set_for_client(conn, client, &ids).await?;
    }
    Ok(())
}

/// The owner's tag `id` (NOT_FOUND otherwise) and `client_ids` parsed, for bulk tagging.
async fn tag_and_clients(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    id: &ID,
    client_ids: &[ID],
) -> AppResult<(TagId, Vec<ClientId>)> {
    let tag: TagId = parse_id(id).ok_or(AppError::NotFound)?;
    let clients = client_ids_of(client_ids)?;
    if tags::find(conn, owner, tag).await?.is_none() {
        return Err(AppError::NotFound);
    }
    Ok((tag, clients))
}

/// `ids` as client ids (at most MAX_CLIENT_IDS); ids that name nothing are left out, as
/// the query that uses them scopes them to the owner.
fn client_ids_of(ids: &[ID]) -> AppResult<Vec<ClientId>> {
    if ids.len() > MAX_CLIENT_IDS {
        return Err(AppError::bad_input(
            "clientIds",
            format!("at most {MAX_CLIENT_IDS} clients at a time"),
        ));
    }
    Ok(ids.iter().filter_map(parse_id).collect())
}

/// A CSV line that was not imported.
#[derive(SimpleObject)]
pub struct ImportError {
    /// 1-based line of the CSV, header included.
    pub line: i32,
    pub message: String,
}

/// A large import (`POST /import/clients.csv`): checked and written by a background job,
/// its counts moving as it goes.
pub struct ImportJob(pub import::ImportJob);

#[Object]
impl ImportJob {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn status(&self) -> ImportStatus {
        self.0.status
    }

    /// Data lines in the file.
    async fn total(&self) -> i32 {
        self.0.total
    }

    /// Lines read so far.
    async fn processed(&self) -> i32 {
        self.0.processed
    }

    async fn created(&self) -> i32 {
        self.0.created
    }

    async fn updated(&self) -> i32 {
        self.0.updated
    }

    async fn error_count(&self) -> i32 {
        self.0.error_count
    }

    /// The lines left out and why, in line order; `after` is the last line seen
    /// (all of them: GET /import/{id}/errors.csv).
    async fn errors(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Vec<ImportError>> {
        let after = match after {
            Some(line) => Some(
                line.parse::<i32>()
                    .map_err(|_| AppError::bad_input("after", "the line number of the last error seen"))?,
            ),
            None => None,
        };
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let errors = import::errors(&mut conn, self.0.id, after, import::error_page_limit(first)).await?;
        Ok(errors
            .into_iter()
            .map(|e| ImportError {
                line: e.line,
                message: e.message,
            })
            .collect())
    }

    /// Why a FAILED import stopped.
    async fn failure(&self) -> Option<&str> {
        self.0.failure.as_deref()
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
}

/// What `importClients` did.
#[derive(SimpleObject)]
pub struct ImportResult {
    pub created: i32,
    pub updated: i32,
    pub errors: Vec<ImportError>,
}

#[derive(InputObject)]
pub struct ClientInput {
    pub email: String,
    /// One line of at most 200 characters, no control characters.
    pub full_name: String,
    /// At most 2,000 characters; line breaks and tabs are the only control characters.
    pub comment: Option<String>,
    /// The client's own fields, e.g. `{"company": "Acme", "plan": "pro", "seats": 12}`: at
    /// most 50 keys of letters, digits and `_`; values strings, numbers or booleans. On
    /// update, absent leaves them as they are and `{}` clears them.
    pub attributes: Option<Json<serde_json::Value>>,
    /// The client's tags (your tags' ids). On update, absent leaves them as they are and
    /// `[]` takes them all off.
    pub tag_ids: Option<Vec<ID>>,
}

impl ClientInput {
    pub fn validate(&self, prefix: &str) -> AppResult<ClientFields> {
        Ok(ClientFields {
            email: validate::email(&format!("{prefix}.email"), &self.email)?,
            full_name: validate::required_line(&format!("{prefix}.fullName"), &self.full_name, 200)?,
            comment: validate::text(
                &format!("{prefix}.comment"),
                self.comment.as_deref().unwrap_or("").trim(),
                2_000,
            )?,
            attributes: self
                .attributes
                .as_ref()
                .map(|attributes| validate::attributes(&format!("{prefix}.attributes"), &attributes.0))
                .transpose()?
                .map(serde_json::Value::Object),
        })
    }
}

fn conflict_on_email(err: diesel::result::Error) -> AppError {
    on_unique_violation(
        err,
        "clients_owner_email_key",
        "input.email",
        "you already have a client with this e-mail address",
    )
}

#[derive(Default)]
pub struct ClientsQuery;

#[Object]
impl ClientsQuery {
    /// Your clients, newest first; `search` matches e-mail or name, `tagId` keeps the
    /// clients with that tag (NOT_FOUND when it is not yours), `segment` those in it.
    #[graphql(complexity = "crate::graphql::connection::page_cost(first, child_complexity)")]
    async fn clients(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        search: Option<String>,
        tag_id: Option<ID>,
        segment: Option<SegmentInput>,
    ) -> async_graphql::Result<Connection<Client>> {
        let viewer = viewer(ctx)?;
        let args = PageArgs::new(first, after.as_deref())?;
        let search = search.map(|s| validate::search("search", &s)).transpose()?;
        let segment = segment.map(|s| s.validate("segment")).transpose()?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let tag = match &tag_id {
            Some(id) => Some(
                tags::find(&mut conn, viewer.user_id, parse_id(id).ok_or(AppError::NotFound)?)
                    .await?
                    .ok_or(AppError::NotFound)?
                    .id,
            ),
            None => None,
        };
        let filter = model::Filter {
            search: search.as_deref(),
            tag,
            segment: segment.as_ref(),
        };
        let page = model::list(&mut conn, viewer.user_id, filter, args).await?;
        Ok(Connection::from_page(page, args, model::Client::cursor, Client))
    }

    /// The attribute keys your clients use, sorted (for segment builders and exports).
    async fn attribute_keys(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<String>> {
        let viewer = viewer(ctx)?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        Ok(model::attribute_keys(&mut conn, viewer.user_id).await?)
    }

    /// An upload of yours (`POST /import/clients.csv`) and how far it has got.
    async fn import_job(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<ImportJob>> {
        let viewer = viewer(ctx)?;
        let Some(id) = parse_id(&id) else { return Ok(None) };
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        Ok(import::find(&mut conn, viewer.user_id, id).await?.map(ImportJob))
    }

    async fn client(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Client>> {
        let viewer = viewer(ctx)?;
        let Some(id) = parse_id(&id) else { return Ok(None) };
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        Ok(model::find(&mut conn, viewer.user_id, id).await?.map(Client))
    }

    /// Your tags, by name.
    async fn tags(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Tag>> {
        let viewer = viewer(ctx)?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        Ok(tags::list(&mut conn, viewer.user_id)
            .await?
            .into_iter()
            .map(Tag)
            .collect())
    }
}

#[derive(Default)]
pub struct ClientsMutation;

#[Object]
impl ClientsMutation {
    async fn create_client(&self, ctx: &Context<'_>, input: ClientInput) -> async_graphql::Result<Client> {
        let viewer = viewer(ctx)?;
        let fields = input.validate("input")?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let client = conn
            .transaction::<_, AppError, _>(async |conn| {
                let client = model::create(conn, viewer.user_id, &fields)
                    .await
                    .map_err(conflict_on_email)?;
                set_tags(conn, viewer.user_id, client.id, input.tag_ids.as_deref()).await?;
                Ok(client)
            })
            .await?;
        Ok(Client(client))
    }

    async fn update_client(&self, ctx: &Context<'_>, id: ID, input: ClientInput) -> async_graphql::Result<Client> {
        let viewer = viewer(ctx)?;
        let id = parse_id(&id).ok_or(AppError::NotFound)?;
        let fields = input.validate("input")?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let client = conn
            .transaction::<_, AppError, _>(async |conn| {
                let client = model::update(conn, viewer.user_id, id, &fields)
                    .await
                    .map_err(conflict_on_email)?
                    .ok_or(AppError::NotFound)?;
                set_tags(conn, viewer.user_id, client.id, input.tag_ids.as_deref()).await?;
                Ok(client)
            })
            .await?;
        Ok(Client(client))
    }

    /// A new tag (names are unique per user, whatever the case; at most 1,000 tags).
    async fn create_tag(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<Tag> {
        let viewer = viewer(ctx)?;
        let name = tag_name(&name)?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        if tags::count(&mut conn, viewer.user_id).await? >= tags::MAX_TAGS {
            return Err(AppError::bad_input("name", format!("you have {} tags already", tags::MAX_TAGS)).into());
        }
        let tag = tags::create(&mut conn, viewer.user_id, &name)
            .await
            .map_err(conflict_on_tag_name)?;
        Ok(Tag(tag))
    }

    async fn rename_tag(&self, ctx: &Context<'_>, id: ID, name: String) -> async_graphql::Result<Tag> {
        let viewer = viewer(ctx)?;
        let id = parse_id(&id).ok_or(AppError::NotFound)?;
        let name = tag_name(&name)?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let tag = tags::rename(&mut conn, viewer.user_id, id, &name)
            .await
            .map_err(conflict_on_tag_name)?;
        tag.map(Tag).ok_or(AppError::NotFound).map_err(Into::into)
    }

    /// Takes the tag off every client and deletes it (the clients stay).
    async fn delete_tag(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let viewer = viewer(ctx)?;
        let id = parse_id(&id).ok_or(AppError::NotFound)?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        if !tags::delete(&mut conn, viewer.user_id, id).await? {
            return Err(AppError::NotFound.into());
        }
        Ok(true)
    }

    /// Tags your clients among `clientIds` (at most 10,000; others are skipped) and every
    /// client of yours in `segment`; answers how many got the tag now.
    async fn tag_clients(
        &self,
        ctx: &Context<'_>,
        tag_id: ID,
        client_ids: Option<Vec<ID>>,
        segment: Option<SegmentInput>,
    ) -> async_graphql::Result<i32> {
        let viewer = viewer(ctx)?;
        let segment = segment.map(|s| s.validate("segment")).transpose()?;
        if client_ids.is_none() && segment.is_none() {
            return Err(AppError::bad_input("clientIds", "name the clients, or give a segment").into());
        }
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let (tag, ids) =
            tag_and_clients(&mut conn, viewer.user_id, &tag_id, client_ids.as_deref().unwrap_or(&[])).await?;
        let mut tagged = tags::tag(&mut conn, viewer.user_id, tag, &ids).await?;
        if let Some(segment) = &segment {
            tagged += tags::tag_segment(&mut conn, viewer.user_id, tag, segment).await?;
        }
        Ok(i32::try_from(tagged).unwrap_or(i32::MAX))
    }

    /// Takes the tag off `clientIds`, or off every client when they are absent; answers
    /// how many had it.
    async fn untag_clients(
        &self,
        ctx: &Context<'_>,
        tag_id: ID,
        client_ids: Option<Vec<ID>>,
    ) -> async_graphql::Result<i32> {
        let viewer = viewer(ctx)?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let (tag, ids) =
            tag_and_clients(&mut conn, viewer.user_id, &tag_id, client_ids.as_deref().unwrap_or(&[])).await?;
        let untagged = match client_ids {
            Some(_) => tags::untag(&mut conn, tag, &ids).await?,
            None => tags::untag_all(&mut conn, tag).await?,
        };
        Ok(i32::try_from(untagged).unwrap_or(i32::MAX))
    }

    /// Imports a CSV with the header `email,full_name,comment` (UTF-8, at most 10,000 rows),
    /// then optionally `tags` (names separated by `;`, unknown ones created, added to the
    /// client's) and attribute columns: new addresses are created, known ones updated (by
    /// e-mail, any case). Bad lines are reported by line and skipped; the good ones are
    /// imported all the same. A cell written `'=...` (as the export writes formula-like
    /// cells) is read as `=...`.
    async fn import_clients(&self, ctx: &Context<'_>, csv: String) -> async_graphql::Result<ImportResult> {
        let viewer = viewer(ctx)?;
        let parsed = super::csv::parse(&csv)?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let (created, updated) = conn
            .transaction::<_, AppError, _>(async |conn| {
                let counts = model::import(conn, viewer.user_id, &parsed.rows).await?;
                if !tags::import(conn, viewer.user_id, &parsed.tags).await? {
                    return Err(AppError::bad_input(
                        "csv",
                        format!("the file's tags would make more than {} tags", tags::MAX_TAGS),
                    ));
                }
                Ok(counts)
            })
            .await?;
        Ok(ImportResult {
            created: created as i32,
            updated: updated as i32,
            errors: parsed
                .errors
                .into_iter()
                .map(|e| ImportError {
                    line: e.line as i32,
                    message: e.message,
                })
                .collect(),
        })
    }

    /// Deletes the client from every list; past deliveries to it stay readable.
    async fn delete_client(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let viewer = viewer(ctx)?;
        let id = parse_id(&id).ok_or(AppError::NotFound)?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        conn.transaction::<_, AppError, _>(async |conn| {
            if !model::delete(conn, viewer.user_id, id).await? {
                return Err(AppError::NotFound);
            }
            // Nothing more goes to a deleted client; what was sent stays in the log.
            crate::deliveries::model::cancel_pending(conn, crate::deliveries::model::Cancel::Client(id)).await?;
            Ok(())
        })
        .await?;
        Ok(true)
    }
}
