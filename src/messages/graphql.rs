//! The messages part of the GraphQL API: messages, the layouts they sit in, and
//! previews (a stored message or a draft, as one client would get it).

use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, ID, InputObject, Object};
use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};

use super::layout::{self, LayoutFields};
use super::model::{self, MessageFields, MessageFormat};
use super::template::{self, Content, Links, MessageTemplates, Rendered};
use crate::accounts::viewer;
use crate::app::AppState;
use crate::db::page::PageArgs;
use crate::db::types::{ClientId, LayoutId, MessageId, UserId};
use crate::error::{AppError, AppResult};
use crate::graphql::connection::Connection;
use crate::graphql::ids::parse_id;
use crate::validate;

/// What a mailing sends: a subject and a body (TEXT, MARKDOWN or HTML), templates filled
/// per recipient; MARKDOWN and HTML go out as multipart/alternative.
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

    async fn format(&self) -> MessageFormat {
        self.0.format
    }

    /// The hand-written text part, when there is one.
    async fn text_body(&self) -> Option<&str> {
        self.0.text_body.as_deref()
    }

    async fn layout(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Layout>> {
        let Some(id) = self.0.layout_id else { return Ok(None) };
        let found = ctx.data_unchecked::<DataLoader<LayoutLoader>>().load_one(id).await?;
        // The message's owner's layout only (the reference cannot cross owners; this says so).
        Ok(found.filter(|l| l.owner_id == self.0.owner_id).map(Layout))
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// HTML around messages: `{{ content }}` is where a message goes.
pub struct Layout(pub layout::Layout);

#[Object]
impl Layout {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    /// A template with `{{ content }}` where the message goes.
    async fn html(&self) -> &str {
        &self.0.html
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A subject is one line of at most 998 characters (folded when sent).
const MAX_SUBJECT: usize = 998;
/// A body, a text part or a layout is at most 1 MiB.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// A layout's name.
const MAX_LAYOUT_NAME: usize = 200;

#[derive(InputObject)]
pub struct MessageInput {
    /// One line of at most 998 characters, no control characters; a template.
    pub subject: String,
    /// A template in `format`, at most 1 MiB; line breaks and tabs are the only control
    /// characters.
    pub body: String,
    /// TEXT when not given.
    pub format: Option<MessageFormat>,
    /// MARKDOWN and HTML only: the text part, hand-written (a template); derived from the
    /// HTML when not given.
    pub text_body: Option<String>,
    /// MARKDOWN and HTML only: the layout the message sits in.
    pub layout_id: Option<ID>,
}

impl MessageInput {
    /// The checked fields; the layout's ownership is checked by `check_layout_of`.
    fn validate(&self) -> AppResult<MessageFields> {
        let subject = validate::required_line("input.subject", &self.subject, MAX_SUBJECT)?;
        if self.body.len() > MAX_BODY_BYTES {
            return Err(AppError::bad_input("input.body", "is larger than 1 MiB"));
        }
        let body = validate::required_text("input.body", &self.body, MAX_BODY_BYTES)?;
        let format = self.format.unwrap_or_default();
        let text_body = match self.text_body.as_deref().filter(|t| !t.trim().is_empty()) {
            Some(_) if format == MessageFormat::Text => {
                return Err(AppError::bad_input(
                    "input.textBody",
                    "a TEXT message is its own text part; choose MARKDOWN or HTML for a separate one",
                ));
            }
            Some(text) if text.len() > MAX_BODY_BYTES => {
                return Err(AppError::bad_input("input.textBody", "is larger than 1 MiB"));
            }
            Some(text) => Some(validate::required_text("input.textBody", text, MAX_BODY_BYTES)?),
            None => None,
        };
        let layout_id = match &self.layout_id {
            Some(_) if format == MessageFormat::Text => {
                return Err(AppError::bad_input(
                    "input.layoutId",
                    "a TEXT message has no layout; choose MARKDOWN or HTML",
                ));
            }
            Some(id) => Some(parse_id(id).ok_or_else(|| AppError::bad_input("input.layoutId", "no such layout"))?),
            None => None,
        };
        template::check("input.subject", &subject)?;
        template::check("input.body", &body)?;
        if let Some(text) = &text_body {
            template::check("input.textBody", text)?;
        }
        Ok(MessageFields {
            subject,
            body,
            format,
            text_body,
            layout_id,
        })
    }
}

/// The layout a message names is the owner's and live, its row held (FOR SHARE) until the
/// transaction ends, so a deleteLayout cannot cross the save.
async fn check_layout_of(conn: &mut AsyncPgConnection, owner: UserId, fields: &MessageFields) -> AppResult<()> {
    if let Some(id) = fields.layout_id
        && !layout::lock(conn, owner, id, false).await?
    {
        return Err(AppError::bad_input("input.layoutId", "no such layout"));
    }
    Ok(())
}

#[derive(InputObject)]
pub struct LayoutInput {
    /// One line of at most 200 characters.
    pub name: String,
    /// HTML with `{{ content }}` where the message goes (a template), at most 1 MiB.
    pub html: String,
}

impl LayoutInput {
    fn validate(&self) -> AppResult<LayoutFields> {
        let name = validate::required_line("input.name", &self.name, MAX_LAYOUT_NAME)?;
        if self.html.len() > MAX_BODY_BYTES {
            return Err(AppError::bad_input("input.html", "is larger than 1 MiB"));
        }
        let html = validate::required_text("input.html", &self.html, MAX_BODY_BYTES)?;
        template::check_layout("input.html", &html)?;
        Ok(LayoutFields { name, html })
    }
}

crate::batch_loader!(
    /// Batches `Mailing.message` look-ups into one query per request.
    MessageLoader: MessageId => model::Message, |conn, keys| async {
        Ok(model::find_by_ids(conn, keys).await?.into_iter().map(|m| (m.id, m)).collect())
    }
);

crate::batch_loader!(
    /// Batches `Message.layout` look-ups into one query per request.
    LayoutLoader: LayoutId => layout::Layout, |conn, keys| async {
        Ok(layout::find_by_ids(conn, keys).await?.into_iter().map(|l| (l.id, l)).collect())
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

impl From<Rendered> for RenderedMessage {
    fn from(rendered: Rendered) -> Self {
        RenderedMessage {
            subject: crate::mail::message::one_line(&rendered.subject),
            html: rendered.html,
            text: rendered.text,
        }
    }
}

/// Where the errors of a preview go: `messageId` for a stored message, the input's fields
/// for a draft.
#[derive(Clone, Copy)]
pub enum PreviewOf {
    Stored,
    Draft,
}

impl PreviewOf {
    fn field(self, part: &str) -> String {
        match (self, part) {
            (PreviewOf::Stored, _) => "messageId".into(),
            (PreviewOf::Draft, "layout") => "input.layoutId".into(),
            (PreviewOf::Draft, part) => format!("input.{part}"),
        }
    }
}

/// Whom a preview is for.
#[derive(Clone, Copy)]
pub enum PreviewFor<'a> {
    /// One of the owner's clients.
    Client(ClientId),
    /// "Ann Example".
    Sample,
    /// A test send's address, as "Test Recipient".
    TestAddress(&'a str),
}

impl PreviewFor<'_> {
    /// One of the owner's clients when `client_id` names one, else the sample.
    pub fn client_or_sample(client_id: Option<ClientId>) -> Self {
        client_id.map_or(PreviewFor::Sample, PreviewFor::Client)
    }
}

/// `fields` rendered for one of `owner`'s clients (or a sample client without one), today,
/// outside any mailing; its links are placeholders that unsubscribe nobody. The layout is
/// read as it is now, scoped to `owner`. BAD_USER_INPUT naming the part that fails.
pub async fn preview(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    fields: &MessageFields,
    to: PreviewFor<'_>,
    links: Links<'_>,
    max_size: usize,
    of: PreviewOf,
) -> AppResult<Rendered> {
    let layout_html = match fields.layout_id.filter(|_| fields.format != MessageFormat::Text) {
        Some(id) => Some(
            layout::find(conn, owner, id)
                .await?
                .ok_or_else(|| AppError::bad_input(of.field("layout"), "no such layout"))?
                .html,
        ),
        None => None,
    };
    let client = match to {
        PreviewFor::Client(id) => Some(
            crate::clients::model::find(conn, owner, id)
                .await?
                .ok_or(AppError::NotFound)?,
        ),
        PreviewFor::Sample | PreviewFor::TestAddress(_) => None,
    };
    let templates = MessageTemplates::compile(&Content {
        format: fields.format,
        subject: &fields.subject,
        body: &fields.body,
        text_body: fields.text_body.as_deref(),
        layout: layout_html.as_deref(),
    })
    .map_err(|(part, invalid)| AppError::bad_input(of.field(part), format!("the {part} template: {invalid}")))?;
    let sample_attributes = serde_json::json!({});
    let values = match &client {
        Some(client) => template::ClientValues {
            email: &client.email,
            full_name: &client.full_name,
            comment: &client.comment,
            attributes: &client.attributes,
        },
        None => template::ClientValues {
            email: match to {
                PreviewFor::TestAddress(email) => email,
                _ => "ann@example.com",
            },
            full_name: match to {
                PreviewFor::TestAddress(_) => "Test Recipient",
                _ => "Ann Example",
            },
            comment: "",
            attributes: &sample_attributes,
        },
    };
    let date = Utc::now().format("%Y-%m-%d").to_string();
    let values = template::Values::new(values, links, "preview".into(), date);
    templates
        .render(&values, max_size)
        .map_err(|rendering| AppError::bad_input(of.field("body"), rendering.to_string()))
}

/// The links of previews and test sends: placeholders that unsubscribe nobody and show
/// no delivery.
pub struct PlaceholderLinks {
    unsubscribe_url: String,
    web_view_url: String,
}

impl PlaceholderLinks {
    /// `what` marks them (`?preview=1`, `?test=1`).
    pub fn new(http: &crate::config::HttpConfig, what: &str) -> Self {
        PlaceholderLinks {
            unsubscribe_url: http.link("unsubscribe", &[(what, "1")]),
            web_view_url: http.link("view/preview", &[(what, "1")]),
        }
    }

    pub fn links(&self) -> Links<'_> {
        Links {
            unsubscribe_url: &self.unsubscribe_url,
            web_view_url: &self.web_view_url,
        }
    }
}

fn fields_of(message: &model::Message) -> MessageFields {
    MessageFields {
        subject: message.subject.clone(),
        body: message.body.clone(),
        format: message.format,
        text_body: message.text_body.clone(),
        layout_id: message.layout_id,
    }
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
        #[graphql(desc = "Matches the subject, any case.")] search: Option<String>,
    ) -> async_graphql::Result<Connection<Message>> {
        let viewer = viewer(ctx)?;
        let args = PageArgs::new(first, after.as_deref())?;
        let search = search.map(|s| crate::validate::search("search", &s)).transpose()?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let page = model::list(&mut conn, viewer.user_id, search.as_deref(), args).await?;
        Ok(Connection::from_page(page, args, model::Message::cursor, Message))
    }

    async fn message(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Message>> {
        let viewer = viewer(ctx)?;
        let Some(id) = parse_id(&id) else { return Ok(None) };
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        Ok(model::find(&mut conn, viewer.user_id, id).await?.map(Message))
    }

    /// Your layouts, newest first.
    #[graphql(complexity = "crate::graphql::connection::page_cost(first, child_complexity)")]
    async fn layouts(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<Layout>> {
        let viewer = viewer(ctx)?;
        let args = PageArgs::new(first, after.as_deref())?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let page = layout::list(&mut conn, viewer.user_id, args).await?;
        Ok(Connection::from_page(page, args, layout::Layout::cursor, Layout))
    }

    async fn layout(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Layout>> {
        let viewer = viewer(ctx)?;
        let Some(id) = parse_id(&id) else { return Ok(None) };
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        Ok(layout::find(&mut conn, viewer.user_id, id).await?.map(Layout))
    }

    /// The message as that client would get it now (without `clientId`, as a sample client
    /// would); its links are placeholders that unsubscribe nobody.
    async fn render_message(
        &self,
        ctx: &Context<'_>,
        message_id: ID,
        client_id: Option<ID>,
    ) -> async_graphql::Result<RenderedMessage> {
        let viewer = viewer(ctx)?;
        let state = AppState::from_ctx(ctx);
        let id: MessageId = parse_id(&message_id).ok_or(AppError::NotFound)?;
        let client_id = match &client_id {
            Some(id) => Some(parse_id(id).ok_or(AppError::NotFound)?),
            None => None,
        };
        let mut conn = state.conn().await?;
        let message = model::find(&mut conn, viewer.user_id, id)
            .await?
            .ok_or(AppError::NotFound)?;
        let placeholders = PlaceholderLinks::new(&state.config().http, "preview");
        let max_size = state.config().mail.max_message_size;
        let fields = fields_of(&message);
        Ok(preview(
            &mut conn,
            viewer.user_id,
            &fields,
            PreviewFor::client_or_sample(client_id),
            placeholders.links(),
            max_size,
            PreviewOf::Stored,
        )
        .await?
        .into())
    }

    /// A draft (not saved) as that client would get it, for an editor's live preview:
    /// errors name the input's field, as `createMessage`'s do.
    async fn preview_message(
        &self,
        ctx: &Context<'_>,
        input: MessageInput,
        client_id: Option<ID>,
    ) -> async_graphql::Result<RenderedMessage> {
        let viewer = viewer(ctx)?;
        let state = AppState::from_ctx(ctx);
        let fields = input.validate()?;
        let client_id = match &client_id {
            Some(id) => Some(parse_id(id).ok_or(AppError::NotFound)?),
            None => None,
        };
        let placeholders = PlaceholderLinks::new(&state.config().http, "preview");
        let mut conn = state.conn().await?;
        let max_size = state.config().mail.max_message_size;
        Ok(preview(
            &mut conn,
            viewer.user_id,
            &fields,
            PreviewFor::client_or_sample(client_id),
            placeholders.links(),
            max_size,
            PreviewOf::Draft,
        )
        .await?
        .into())
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
        let message = conn
            .transaction::<_, AppError, _>(async |conn| {
                check_layout_of(conn, viewer.user_id, &fields).await?;
                Ok(model::create(conn, viewer.user_id, &fields).await?)
            })
            .await?;
        Ok(Message(message))
    }

    /// Later runs send the new text; runs already started keep what they started with.
    async fn update_message(&self, ctx: &Context<'_>, id: ID, input: MessageInput) -> async_graphql::Result<Message> {
        let viewer = viewer(ctx)?;
        let id = parse_id(&id).ok_or(AppError::NotFound)?;
        let fields = input.validate()?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let message = conn
            .transaction::<_, AppError, _>(async |conn| {
                check_layout_of(conn, viewer.user_id, &fields).await?;
                model::update(conn, viewer.user_id, id, &fields)
                    .await?
                    .ok_or(AppError::NotFound)
            })
            .await?;
        Ok(Message(message))
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
        let id: MessageId = parse_id(&message_id).ok_or(AppError::NotFound)?;
        let state = AppState::from_ctx(ctx);
        let mut conn = state.conn().await?;
        let message = model::find(&mut conn, viewer.user_id, id)
            .await?
            .ok_or(AppError::NotFound)?;
        let placeholders = PlaceholderLinks::new(&state.config().http, "test");
        let max_size = state.config().mail.max_message_size;
        let fields = fields_of(&message);
        let rendered = preview(
            &mut conn,
            viewer.user_id,
            &fields,
            PreviewFor::TestAddress(&email),
            placeholders.links(),
            max_size,
            PreviewOf::Stored,
        )
        .await?;
        drop(conn);
        let to = crate::mail::address::parse(&email)
            .map_err(|e| AppError::bad_input("email", format!("the address {e}")))?;
        let mail = crate::mail::message::build(
            &crate::mail::message::Draft {
                from: &state.config().mail.mail_from,
                to: &to,
                to_name: None,
                subject: &rendered.subject,
                body: &rendered.text,
                html: rendered.html.as_deref(),
                message_id: None,
                headers: Vec::new(),
                dkim: state.dkim(),
            },
            max_size,
        )
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

    async fn create_layout(&self, ctx: &Context<'_>, input: LayoutInput) -> async_graphql::Result<Layout> {
        let viewer = viewer(ctx)?;
        let fields = input.validate()?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        Ok(Layout(layout::create(&mut conn, viewer.user_id, &fields).await?))
    }

    /// Later runs of the messages in it use the new HTML; runs already started keep theirs.
    async fn update_layout(&self, ctx: &Context<'_>, id: ID, input: LayoutInput) -> async_graphql::Result<Layout> {
        let viewer = viewer(ctx)?;
        let id = parse_id(&id).ok_or(AppError::NotFound)?;
        let fields = input.validate()?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        layout::update(&mut conn, viewer.user_id, id, &fields)
            .await?
            .map(Layout)
            .ok_or(AppError::NotFound)
            .map_err(Into::into)
    }

    /// CONFLICT while a message that is not deleted uses it.
    async fn delete_layout(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let viewer = viewer(ctx)?;
        let id = parse_id(&id).ok_or(AppError::NotFound)?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        conn.transaction::<_, AppError, _>(async |conn| {
            if !layout::lock(conn, viewer.user_id, id, true).await? {
                return Err(AppError::NotFound);
            }
            if layout::in_use(conn, id).await? {
                return Err(AppError::conflict(
                    Some("id"),
                    "a message uses this layout; change or delete the message first",
                ));
            }
            layout::delete(conn, viewer.user_id, id).await?;
            Ok(())
        })
        .await?;
        Ok(true)
    }
}
