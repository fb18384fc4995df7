//! The database: connection pool, embedded migrations, the generated schema and the
//! embedded PostgreSQL launcher used when no DATABASE_URL is given.

pub mod embedded;
pub mod migrations;
pub mod schema;

use std::time::Duration;

use deadpool::managed::{Hook, HookError, Metrics};
use diesel::dsl::sql;
use diesel::expression::SqlLiteral;
use diesel::sql_types::Timestamptz;
use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod};

/// A pool of async PostgreSQL connections, cheap to clone.
pub type DbPool = Pool<AsyncPgConnection>;
/// One connection taken from the pool.
pub type PooledConn = Object<AsyncPgConnection>;

/// A connection idle longer than this is checked with `SELECT 1` before it is handed out.
const VERIFY_AFTER_IDLE: Duration = Duration::from_secs(5);

/// Builds the pool; connections are opened lazily, on first use. A connection that failed
/// is dropped (diesel-async marks it broken); one that sat idle is checked before reuse
/// (the server may have closed it meanwhile); one in steady use is handed out as it is
/// (diesel-async's default checks every checkout: a second round trip for every statement
/// run on a connection of its own, which is most of them).
pub fn build_pool(database_url: &str, max_size: u32, wait_timeout: Duration) -> anyhow::Result<DbPool> {
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(database_url, config);
    Pool::builder(manager)
        .pre_recycle(Hook::async_fn(|conn: &mut AsyncPgConnection, metrics: &Metrics| {
            let idle = metrics.last_used() > VERIFY_AFTER_IDLE;
            Box::pin(async move {
                if idle {
                    diesel_async::RunQueryDsl::execute(diesel::sql_query("SELECT 1"), conn)
                        .await
                        .map_err(|e| HookError::Backend(diesel_async::pooled_connection::PoolError::QueryError(e)))?;
                }
                Ok(())
            })
        }))
        .max_size(max_size as usize)
        .wait_timeout(Some(wait_timeout))
        .create_timeout(Some(wait_timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| anyhow::anyhow!("DATABASE_URL: cannot build the connection pool: {e}"))
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
