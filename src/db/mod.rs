//! The database: connection pool, embedded migrations, the generated schema and the
//! embedded PostgreSQL launcher used when no DATABASE_URL is given.

pub mod embedded;
pub mod migrations;
pub mod page;
pub mod schema;
pub mod types;

use std::time::Duration;

use diesel::dsl::sql;
use diesel::expression::SqlLiteral;
use diesel::sql_types::Timestamptz;
use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::deadpool::{Object, Pool};

/// A pool of async PostgreSQL connections, cheap to clone.
pub type DbPool = Pool<AsyncPgConnection>;
/// One connection taken from the pool.
pub type PooledConn = Object<AsyncPgConnection>;

/// Builds the pool; connections are opened lazily, on first use.
pub fn build_pool(database_url: &str, max_size: u32, wait_timeout: Duration) -> anyhow::Result<DbPool> {
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(database_url);
    Pool::builder(manager)
        .max_size(max_size as usize)
        .wait_timeout(Some(wait_timeout))
        .create_timeout(Some(wait_timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| anyhow::anyhow!("DATABASE_URL: cannot build the connection pool: {e}"))
}

/// `text` for LIKE and ILIKE, its wildcards escaped (matched as themselves).
pub fn like_literal(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// `%text%` for ILIKE: a search for `text` anywhere, wildcards in it taken literally.
pub fn like_pattern(text: &str) -> String {
    format!("%{}%", like_literal(text))
}

/// The database's clock: every "is it due / expired" decision uses it, never the instance's.
pub fn now() -> SqlLiteral<Timestamptz> {
    sql("now()")
}

/// `now() + duration`, on the database's clock.
pub fn now_plus(duration: Duration) -> SqlLiteral<Timestamptz> {
    sql(&format!(
        "(now() + {} * interval '1 microsecond')",
        duration.as_micros()
    ))
}

/// A secret every instance shares, created at random by the first that asks.
pub async fn shared_secret(conn: &mut AsyncPgConnection, name: &str) -> diesel::QueryResult<Vec<u8>> {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use schema::app_secrets;
    let mut fresh = [0u8; 32];
    getrandom::fill(&mut fresh).expect("the OS random number generator works");
    diesel::insert_into(app_secrets::table)
        .values((app_secrets::name.eq(name), app_secrets::value.eq(fresh.to_vec())))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    app_secrets::table
        .filter(app_secrets::name.eq(name))
        .select(app_secrets::value)
        .first(conn)
        .await
}
