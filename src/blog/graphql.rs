//! The blog part of the GraphQL API.

use async_graphql::{Context, ID, InputObject, Object};
use chrono::{DateTime, Utc};

use super::model::{self, PostFields, Readers};
use crate::accounts::auth::RoleGuard;
use crate::accounts::role::Role;
use crate::accounts::viewer;
use crate::app::AppState;
use crate::db::page::PageArgs;
use crate::error::{AppError, AppResult};
use crate::graphql::connection::Connection;
use crate::graphql::ids::parse_id;
use crate::validate;

/// A post of the service's blog.
pub struct BlogPost(pub model::Post);

#[Object]
impl BlogPost {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn title(&self) -> &str {
        &self.0.title
    }

    /// Markdown (or plain text). Show it as text or render it as Markdown with raw HTML
    /// disabled: it is never trusted HTML.
    async fn body(&self) -> &str {
        &self.0.body
    }

    /// An http(s) URL of an image for the post.
    async fn image_url(&self) -> Option<&str> {
        self.0.image_url.as_deref()
    }

    async fn published(&self) -> bool {
        self.0.published
    }

    /// When the post was first published; kept if it is unpublished and published again.
    async fn published_at(&self) -> Option<DateTime<Utc>> {
        self.0.published_at
    }

    /// Reads through `blogPost(id)`.
    async fn views(&self) -> i32 {
        self.0.views
    }

    /// The author's name as it was when the post was written; never their e-mail.
    async fn author_name(&self) -> &str {
        &self.0.author_name
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

#[derive(InputObject)]
pub struct BlogPostInput {
    /// At most 200 characters.
    pub title: String,
    /// Markdown or plain text, at most 100,000 characters.
    pub body: String,
    /// An http:// or https:// URL.
    pub image_url: Option<String>,
    pub published: bool,
}

impl BlogPostInput {
    fn validate(&self) -> AppResult<PostFields> {
        let image_url = match self.image_url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            None => None,
            Some(url) => {
                let url = &validate::line("input.imageUrl", url, 2_000)?;
                let parsed = url::Url::parse(url)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
                if parsed.is_none() || url.len() > 2_000 {
                    return Err(AppError::bad_input(
                        "input.imageUrl",
                        "must be an https:// (or http://) URL",
                    ));
                }
                Some(url.to_owned())
            }
        };
        Ok(PostFields {
            title: validate::required_line("input.title", &self.title, 200)?,
            body: validate::required_text("input.body", &self.body, 100_000)?,
            image_url,
            published: self.published,
        })
    }
}

fn readers(ctx: &Context<'_>) -> Readers {
    match viewer(ctx) {
        Ok(viewer) if viewer.role == Role::Admin => Readers::Editors,
        _ => Readers::Public,
    }
}

#[derive(Default)]
pub struct BlogQuery;

#[Object]
impl BlogQuery {
    /// Published posts, newest first; admins also see drafts. Public.
    #[graphql(complexity = "crate::graphql::connection::page_cost(first, child_complexity)")]
    async fn blog_posts(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<BlogPost>> {
        let args = PageArgs::new(first, after.as_deref())?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let readers = readers(ctx);
        let page = model::list(&mut conn, readers, args).await?;
        Ok(Connection::from_page(page, args, |post| post.cursor(readers), BlogPost))
    }

    /// One post; reading a published post counts a view. Public; drafts only for admins.
    async fn blog_post(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<BlogPost>> {
        let Some(id) = parse_id(&id) else { return Ok(None) };
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        if let Some(post) = model::read_published(&mut conn, id).await? {
            return Ok(Some(BlogPost(post)));
        }
        if readers(ctx) == Readers::Editors {
            return Ok(model::find(&mut conn, id).await?.map(BlogPost));
        }
        Ok(None)
    }
}

#[derive(Default)]
pub struct BlogMutation;

#[Object]
impl BlogMutation {
    /// ADMIN. The byline is the author's name.
    #[graphql(guard = "RoleGuard::at_least(Role::Admin)")]
    async fn create_blog_post(&self, ctx: &Context<'_>, input: BlogPostInput) -> async_graphql::Result<BlogPost> {
        let viewer = viewer(ctx)?;
        let fields = input.validate()?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let author = crate::accounts::model::find_user(&mut conn, viewer.user_id)
            .await?
            .ok_or(AppError::Unauthenticated)?;
        let post = model::create(&mut conn, author.id, &author.full_name, &fields).await?;
        Ok(BlogPost(post))
    }

    /// ADMIN.
    #[graphql(guard = "RoleGuard::at_least(Role::Admin)")]
    async fn update_blog_post(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: BlogPostInput,
    ) -> async_graphql::Result<BlogPost> {
        let id = parse_id(&id).ok_or(AppError::NotFound)?;
        let fields = input.validate()?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        let post = model::update(&mut conn, id, &fields).await?;
        post.map(BlogPost).ok_or(AppError::NotFound).map_err(Into::into)
    }

    /// ADMIN.
    #[graphql(guard = "RoleGuard::at_least(Role::Admin)")]
    async fn delete_blog_post(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let id = parse_id(&id).ok_or(AppError::NotFound)?;
        let mut conn = AppState::from_ctx(ctx).conn().await?;
        if !model::delete(&mut conn, id).await? {
            return Err(AppError::NotFound.into());
        }
        Ok(true)
    }
}
