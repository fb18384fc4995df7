//! The messages part of the GraphQL API.

use async_graphql::{Context, ID, InputObject, Object};
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;

use super::model::{self, MessageFields};
use super::template;
use crate::accounts::viewer;
use crate::app::AppState;
use crate::db::page::PageArgs;
use crate::db::types::MessageId;
use crate::error::{AppError, AppResult};
use crate::graphql::connection::Connection;
use crate::graphql::ids::parse_id;
use crate::validate;

/// What a mailing sends. The body is plain text; `{{full_name}}`, `{{email}}` and
/// `{{unsubscribe_url}}` are replaced per recipient.
pub struct Message(pub model::Message);

#[Object]
impl Message {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn subject(&self) -> &str {
        &self.0.subject
    }

    async fn body(&self) -> &str {
        &self.0.body
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A subject is one line of at most 998 characters (folded when sent).
const MAX_SUBJECT: usize = 998;
/// A body is at most 1 MiB.
const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(InputObject)]
pub struct MessageInput {
    /// One line of at most 998 characters, no control characters.
    pub subject: String,
    /// Plain text, at most 1 MiB; line breaks and tabs are the only control characters.
    pub body: String,
}

impl MessageInput {
    fn validate(&self) -> AppResult<MessageFields> {
        let subject = validate::required_line("input.subject", &self.subject, MAX_SUBJECT)?;
        if self.body.len() > MAX_BODY_BYTES {
            return Err(AppError::bad_input("input.body", "is larger than 1 MiB"));
        }
        let body = validate::required_text("input.body", &self.body, MAX_BODY_BYTES)?;
        template::check("input.subject", &subject)?;
        template::check("input.body", &body)?;
        Ok(MessageFields { subject, body })
    }
}

crate::batch_loader!(
    /// Batches `Mailing.message` look-ups into one query per request.
    MessageLoader: MessageId => model::Message, |conn, keys| async {
        Ok(model::find_by_ids(conn, keys).await?.into_iter().map(|m| (m.id, m)).collect())
    }
);

/// A message as one client would get it.
#[derive(async_graphql::SimpleObject)]
pub struct RenderedMessage {
    pub subject: String,
    /// The HTML part; null for a text message.
    pub html: Option<String>,
    pub text: String,
}

/// `message` rendered for one client (today's date, no mailing): BAD_USER_INPUT on
/// `messageId` when a template fails for these values.
fn render(
    message: &model::Message,
    client: template::ClientValues<'_>,
    unsubscribe_url: &str,
    max_size: usize,
) -> AppResult<template::Rendered> {
    let templates = template::MessageTemplates::compile(&message.subject, &message.body)
        .map_err(|(part, invalid)| AppError::bad_input("messageId", format!("the {part} template: {invalid}")))?;
    let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let values = template::Values::new(client, unsubscribe_url, "preview".into(), date);
    templates
        .render_both(&values, max_size)
        .map_err(|rendering| AppError::bad_input("messageId", rendering.to_string()))
}

/// What the mail server said to a test send.
#[derive(async_graphql::SimpleObject)]
pub struct TestSendResult {
    pub accepted: bool,
    pub server_response: Option<String>,
}

#[derive(Default)]
pub struct MessagesQuery;

#[Object]
impl MessagesQuery {
    /// Your messages, newest first.
    #[graphql(complexity = "crate::graphql::connection::page_cost(first, child_complexity)")]
    async fn messages(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<Message>> {
        let viewer = viewer(ctx)?;
        let args = PageArgs::new(first, after.as_deref())?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let page = model::list(&mut conn, viewer.user_id, args).await?;
        Ok(Connection::from_page(page, args, model::Message::cursor, Message))
    }

    /// The message as that client would get it now (without `clientId`, as a sample client
    /// would); its unsubscribe link is a placeholder that unsubscribes nobody.
    async fn render_message(
        &self,
        ctx: &Context<'_>,
        message_id: ID,
        client_id: Option<ID>,
    ) -> async_graphql::Result<RenderedMessage> {
        let viewer = viewer(ctx)?;
        let state = AppState::from_ctx(ctx);
        let id = parse_id(&message_id).ok_or(AppError::NotFound)?;
        let mut conn = state.conn().await?;
        let message = model::find(&mut conn, viewer.user_id, id)
            .await?
            .ok_or(AppError::NotFound)?;
        let client = match &client_id {
            Some(client_id) => {
                let client_id = parse_id(client_id).ok_or(AppError::NotFound)?;
                Some(
                    crate::clients::model::find(&mut conn, viewer.user_id, client_id)
                        .await?
                        .ok_or(AppError::NotFound)?,
                )
            }
            None => None,
        };
        drop(conn);
        let sample_attributes = serde_json::json!({});
        let values = match &client {
            Some(client) => template::ClientValues {
                email: &client.email,
                full_name: &client.full_name,
                comment: &client.comment,
                attributes: &client.attributes,
            },
            None => template::ClientValues {
                email: "ann@example.com",
                full_name: "Ann Example",
                comment: "",
                attributes: &sample_attributes,
            },
        };
        let placeholder_link = state.config().http.link("unsubscribe", &[("preview", "1")]);
        let rendered = render(
            &message,
            values,
            &placeholder_link,
            state.config().mail.max_message_size,
        )?;
        Ok(RenderedMessage {
            subject: crate::mail::message::one_line(&rendered.subject),
            html: None,
            text: rendered.body,
        })
    }

    async fn message(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Message>> {
        let viewer = viewer(ctx)?;
        let Some(id) = parse_id(&id) else { return Ok(None) };
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        Ok(model::find(&mut conn, viewer.user_id, id).await?.map(Message))
    }
}

#[derive(Default)]
pub struct MessagesMutation;

#[Object]
impl MessagesMutation {
    async fn create_message(&self, ctx: &Context<'_>, input: MessageInput) -> async_graphql::Result<Message> {
        let viewer = viewer(ctx)?;
        let fields = input.validate()?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        Ok(Message(model::create(&mut conn, viewer.user_id, &fields).await?))
    }

    /// Later runs send the new text; runs already started keep what they started with.
    async fn update_message(&self, ctx: &Context<'_>, id: ID, input: MessageInput) -> async_graphql::Result<Message> {
        let viewer = viewer(ctx)?;
        let id = parse_id(&id).ok_or(AppError::NotFound)?;
        let fields = input.validate()?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        model::update(&mut conn, viewer.user_id, id, &fields)
            .await?
            .map(Message)
            .ok_or(AppError::NotFound)
            .map_err(Into::into)
    }

    /// Sends one message to `email` now, outside any mailing, through the same transport,
    /// and returns the mail server's answer (nothing is logged or retried).
    async fn send_test_message(
        &self,
        ctx: &Context<'_>,
        message_id: ID,
        email: String,
    ) -> async_graphql::Result<TestSendResult> {
        let viewer = viewer(ctx)?;
        let email = validate::email("email", &email)?;
        let id = parse_id(&message_id).ok_or(AppError::NotFound)?;
        let state = AppState::from_ctx(ctx);
        let mut conn = state.conn().await?;
        let message = model::find(&mut conn, viewer.user_id, id)
            .await?
            .ok_or(AppError::NotFound)?;
        drop(conn);
        let placeholder_link = state.config().http.link("unsubscribe", &[("test", "1")]);
        let attributes = serde_json::json!({});
        let client = template::ClientValues {
            email: &email,
            full_name: "Test Recipient",
            comment: "",
            attributes: &attributes,
        };
        let max_size = state.config().mail.max_message_size;
        let template::Rendered { subject, body } = render(&message, client, &placeholder_link, max_size)?;
        let mail = crate::mail::plain_mail(&state.config().mail.mail_from, &email, &subject, &body, None, max_size)
            .map_err(|e| AppError::bad_input("messageId", e))?;
        Ok(match state.mailer().send(&mail).await {
            Ok(reply) => TestSendResult {
                accepted: true,
                server_response: Some(reply),
            },
            Err(err) => TestSendResult {
                accepted: false,
                server_response: Some(err.to_string()),
            },
        })
    }

    /// CONFLICT while a mailing that is not deleted uses it.
    async fn delete_message(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let viewer = viewer(ctx)?;
        let id = parse_id(&id).ok_or(AppError::NotFound)?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        conn.transaction::<_, AppError, _>(async |conn| {
            if model::lock(conn, viewer.user_id, id, true).await?.is_none() {
                return Err(AppError::NotFound);
            }
            if model::in_use(conn, id).await? {
                return Err(AppError::conflict(
                    Some("id"),
                    "a mailing uses this message; delete the mailing first",
                ));
            }
            model::delete(conn, viewer.user_id, id).await?;
            Ok(())
        })
        .await?;
        Ok(true)
    }
}
