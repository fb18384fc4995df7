//! The clients part of the GraphQL API.

use async_graphql::{Context, ID, InputObject, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;

use super::model::{self, ClientFields};
use crate::accounts::viewer;
use crate::app::AppState;
use crate::db::page::PageArgs;
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
}

/// A CSV line that was not imported.
#[derive(SimpleObject)]
pub struct ImportError {
    /// 1-based line of the CSV, header included.
    pub line: i32,
    pub message: String,
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
    /// Your clients, newest first; `search` matches e-mail or name.
    #[graphql(complexity = "crate::graphql::connection::page_cost(first, child_complexity)")]
    async fn clients(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        search: Option<String>,
    ) -> async_graphql::Result<Connection<Client>> {
        let viewer = viewer(ctx)?;
        let args = PageArgs::new(first, after.as_deref())?;
        let search = search.map(|s| validate::search("search", &s)).transpose()?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let page = model::list(&mut conn, viewer.user_id, search.as_deref(), args).await?;
        Ok(Connection::from_page(page, args, model::Client::cursor, Client))
    }

    async fn client(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Client>> {
        let viewer = viewer(ctx)?;
        let Some(id) = parse_id(&id) else { return Ok(None) };
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        Ok(model::find(&mut conn, viewer.user_id, id).await?.map(Client))
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
        let client = model::create(&mut conn, viewer.user_id, &fields)
            .await
            .map_err(conflict_on_email)?;
        Ok(Client(client))
    }

    async fn update_client(&self, ctx: &Context<'_>, id: ID, input: ClientInput) -> async_graphql::Result<Client> {
        let viewer = viewer(ctx)?;
        let id = parse_id(&id).ok_or(AppError::NotFound)?;
        let fields = input.validate("input")?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let client = model::update(&mut conn, viewer.user_id, id, &fields)
            .await
            .map_err(conflict_on_email)?;
        client.map(Client).ok_or(AppError::NotFound).map_err(Into::into)
    }

    /// Imports a CSV with the header `email,full_name,comment` (UTF-8, at most 10,000 rows):
    /// new addresses are created, known ones updated (by e-mail, any case). Bad lines are
    /// reported by line and skipped; the good ones are imported all the same. A cell
    /// written `'=...` (as the export writes formula-like cells) is read as `=...`.
    async fn import_clients(&self, ctx: &Context<'_>, csv: String) -> async_graphql::Result<ImportResult> {
        let viewer = viewer(ctx)?;
        let parsed = super::csv::parse(&csv)?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let (created, updated) = model::import(&mut conn, viewer.user_id, &parsed.rows).await?;
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
