//! The SQL migrations in `migrations/`, embedded in the binary and applied at start.

use anyhow::Context;
use diesel::RunQueryDsl;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Key of the advisory lock that serialises migrations between instances starting at once.
const MIGRATION_LOCK_KEY: i64 = 0x6d61_696c_7761_726d; // "mailwarm"

type SyncConn = AsyncConnectionWrapper<AsyncPgConnection>;

/// Applies every pending migration, holding `pg_advisory_lock` so that several instances
/// starting together on one database apply them exactly once. Returns how many ran.
pub async fn run_pending(database_url: &str) -> anyhow::Result<usize> {
    with_migration_lock(database_url, |conn| {
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for version in &applied {
            tracing::info!(%version, "applied migration");
        }
        Ok(applied.len())
    })
    .await
}

/// Reverts every applied migration (tests check that each `down.sql` undoes its `up.sql`).
pub async fn revert_all(database_url: &str) -> anyhow::Result<usize> {
    with_migration_lock(database_url, |conn| {
        let reverted = conn
            .revert_all_migrations(MIGRATIONS)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(reverted.len())
    })
    .await
}

/// Diesel's migration harness is synchronous: run it on a blocking thread over an async
/// connection wrapped for sync use, between lock and unlock on that same session.
async fn with_migration_lock<T, F>(database_url: &str, work: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce(&mut SyncConn) -> anyhow::Result<T> + Send + 'static,
{
    use diesel::Connection;
    let url = database_url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = SyncConn::establish(&url).context("cannot connect to the database to migrate it")?;
        diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
            .execute(&mut conn)
            .context("cannot take the migration lock")?;
        let result = work(&mut conn);
        // The lock is a session lock; closing the connection would release it too.
        let _ = diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")).execute(&mut conn);
        result.context("migration failed")
    })
    .await
    .context("migration task panicked")?
}
