//! The `blog_posts` table. Deleted posts are kept (soft delete) but shown nowhere.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::now;
use crate::db::page::{Cursor, Page, PageArgs};
use crate::db::schema::blog_posts;
use crate::db::types::{PostId, UserId};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = blog_posts, check_for_backend(Pg))]
pub struct Post {
    pub id: PostId,
    pub author_name: String,
    pub title: String,
    pub body: String,
    pub image_url: Option<String>,
    pub published: bool,
    pub published_at: Option<DateTime<Utc>>,
    pub views: i32,
    pub created_at: DateTime<Utc>,
}

/// Validated fields of a post.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = blog_posts, treat_none_as_null = true)]
pub struct PostFields {
    pub title: String,
    pub body: String,
    pub image_url: Option<String>,
    pub published: bool,
}

/// Which posts a reader sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readers {
    /// Published posts only.
    Public,
    /// Drafts too (admins).
    Editors,
}

impl Post {
    /// Where a list continues after this post: the public list is ordered by publication,
    /// the editors' list (drafts too) by creation.
    pub fn cursor(&self, readers: Readers) -> Cursor {
        let at = match readers {
            Readers::Public => self.published_at.unwrap_or(self.created_at),
            Readers::Editors => self.created_at,
        };
        Cursor {
            created_at: at,
            id: self.id.0,
        }
    }
}

fn visible(readers: Readers) -> blog_posts::BoxedQuery<'static, Pg> {
    let query = blog_posts::table.filter(blog_posts::deleted_at.is_null()).into_boxed();
    match readers {
        Readers::Public => query.filter(blog_posts::published.eq(true)),
        Readers::Editors => query,
    }
}

pub async fn list(conn: &mut AsyncPgConnection, readers: Readers, args: PageArgs) -> QueryResult<Page<Post>> {
    let total = visible(readers).count().get_result(conn).await?;
    let rows = match readers {
        Readers::Editors => {
            crate::keyset_page!(visible(readers), blog_posts, args)
                .select(Post::as_select())
                .load(conn)
                .await?
        }
        // On blog_posts_published_idx: published_at DESC, id DESC.
        Readers::Public => {
            let mut query = visible(readers);
            if let Some(after) = args.after {
                query = query.filter(
                    blog_posts::published_at
                        .lt(after.created_at)
                        .or(blog_posts::published_at
                            .eq(after.created_at)
                            .and(blog_posts::id.lt(after.id))),
                );
            }
            query
                .order((blog_posts::published_at.desc(), blog_posts::id.desc()))
                .limit(args.limit())
                .select(Post::as_select())
                .load(conn)
                .await?
        }
    };
    Ok(Page { rows, total })
}

/// A published post, counting one view (`views = views + 1` in the database, so
/// concurrent readers all count).
pub async fn read_published(conn: &mut AsyncPgConnection, id: PostId) -> QueryResult<Option<Post>> {
    diesel::update(blog_posts::table)
        .filter(blog_posts::id.eq(id))
        .filter(blog_posts::published.eq(true).and(blog_posts::deleted_at.is_null()))
        .set(blog_posts::views.eq(blog_posts::views + 1))
        .returning(Post::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Any live post, draft or not, without counting a view.
pub async fn find(conn: &mut AsyncPgConnection, id: PostId) -> QueryResult<Option<Post>> {
    visible(Readers::Editors)
        .filter(blog_posts::id.eq(id))
        .select(Post::as_select())
        .first(conn)
        .await
        .optional()
}

/// Up to `count` published posts picked at random.
pub async fn random_published(conn: &mut AsyncPgConnection, count: i64) -> QueryResult<Vec<Post>> {
    diesel::define_sql_function!(fn random() -> diesel::sql_types::Double);
    visible(Readers::Public)
        .order(random())
        .limit(count)
        .select(Post::as_select())
        .load(conn)
        .await
}

/// `published_at` is set the first time a post is published and kept after that.
fn first_published() -> diesel::expression::SqlLiteral<diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>> {
    diesel::dsl::sql("CASE WHEN published THEN coalesce(published_at, now()) ELSE published_at END")
}

pub async fn create(
    conn: &mut AsyncPgConnection,
    author_id: UserId,
    author_name: &str,
    fields: &PostFields,
) -> QueryResult<Post> {
    let post: Post = diesel::insert_into(blog_posts::table)
        .values((
            blog_posts::author_id.eq(author_id),
            blog_posts::author_name.eq(author_name),
            blog_posts::title.eq(&fields.title),
            blog_posts::body.eq(&fields.body),
            blog_posts::image_url.eq(&fields.image_url),
            blog_posts::published.eq(fields.published),
        ))
        .returning(Post::as_returning())
        .get_result(conn)
        .await?;
    stamp_publication(conn, post.id).await
}

pub async fn update(conn: &mut AsyncPgConnection, id: PostId, fields: &PostFields) -> QueryResult<Option<Post>> {
    let updated = diesel::update(blog_posts::table)
        .filter(blog_posts::id.eq(id).and(blog_posts::deleted_at.is_null()))
        .set((fields, blog_posts::updated_at.eq(now())))
        .execute(conn)
        .await?;
    if updated == 0 {
        return Ok(None);
    }
    stamp_publication(conn, id).await.map(Some)
}

async fn stamp_publication(conn: &mut AsyncPgConnection, id: PostId) -> QueryResult<Post> {
    diesel::update(blog_posts::table.filter(blog_posts::id.eq(id)))
        .set(blog_posts::published_at.eq(first_published()))
        .returning(Post::as_returning())
        .get_result(conn)
        .await
}

pub async fn delete(conn: &mut AsyncPgConnection, id: PostId) -> QueryResult<bool> {
    let deleted = diesel::update(blog_posts::table)
        .filter(blog_posts::id.eq(id).and(blog_posts::deleted_at.is_null()))
        .set(blog_posts::deleted_at.eq(now().nullable()))
        .execute(conn)
        .await?;
    Ok(deleted > 0)
}
