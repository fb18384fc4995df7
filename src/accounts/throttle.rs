//! Rate limits that every instance shares: fixed-window counters in `rate_limits`, keyed
//! by what is limited (`login:email:ann@example.com`, `mail:ip:203.0.113.9`). A window
//! ends by itself, so a throttled owner is never locked out for good.

use std::net::IpAddr;

use diesel::sql_types::{BigInt, Double, Integer, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::config::Limit;
use crate::error::{AppError, AppResult};

#[derive(diesel::QueryableByName)]
struct Window {
    #[diesel(sql_type = Integer)]
    count: i32,
    /// Seconds until the window ends.
    #[diesel(sql_type = Double)]
    secs_left: f64,
}

/// The current window of `limit` starts at a multiple of its length since 2000-01-01,
/// on the database clock.
const WINDOW_START: &str = "date_bin($2 * interval '1 microsecond', now(), timestamptz '2000-01-01 00:00:00+00')";

fn micros(limit: Limit) -> i64 {
    i64::try_from(limit.window.as_micros()).unwrap_or(i64::MAX)
}

fn limited(window: &Window) -> AppError {
    AppError::RateLimited {
        retry_after_secs: window.secs_left.ceil().max(1.0) as u64,
    }
}

/// Counts one event under `key`; RATE_LIMITED when it is more than `limit.max` in the window.
pub async fn hit(conn: &mut AsyncPgConnection, key: &str, limit: Limit) -> AppResult<()> {
    let window: Window = diesel::sql_query(format!(
        "INSERT INTO rate_limits (key, window_start, count) VALUES ($1, {WINDOW_START}, 1) \
         ON CONFLICT (key, window_start) DO UPDATE SET count = rate_limits.count + 1 \
         RETURNING count, extract(epoch FROM window_start + $2 * interval '1 microsecond' - now())::float8 AS secs_left"
    ))
    .bind::<Text, _>(key)
    .bind::<BigInt, _>(micros(limit))
    .get_result(conn)
    .await?;
    if window.count > limit.max as i32 {
        return Err(limited(&window));
    }
    Ok(())
}

/// RATE_LIMITED when `key` already counts `limit.max` events in the window; counts nothing.
pub async fn check(conn: &mut AsyncPgConnection, key: &str, limit: Limit) -> AppResult<()> {
    let window: Option<Window> = diesel::sql_query(format!(
        "SELECT count, extract(epoch FROM window_start + $2 * interval '1 microsecond' - now())::float8 AS secs_left \
         FROM rate_limits WHERE key = $1 AND window_start = {WINDOW_START}"
    ))
    .bind::<Text, _>(key)
    .bind::<BigInt, _>(micros(limit))
    .get_result(conn)
    .await
    .map(Some)
    .or_else(|e| match e {
        diesel::result::Error::NotFound => Ok(None),
        other => Err(other),
    })?;
    match window {
        Some(window) if window.count >= limit.max as i32 => Err(limited(&window)),
        _ => Ok(()),
    }
}

/// Forgets the events counted under `key` (a successful login clears its failures).
pub async fn clear(conn: &mut AsyncPgConnection, key: &str) -> AppResult<()> {
    diesel::sql_query("DELETE FROM rate_limits WHERE key = $1")
        .bind::<Text, _>(key)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes windows that ended long ago (longer than any limit's window).
pub async fn sweep(conn: &mut AsyncPgConnection) -> diesel::QueryResult<usize> {
    diesel::sql_query("DELETE FROM rate_limits WHERE window_start < now() - interval '2 days'")
        .execute(conn)
        .await
}

/// The keys of one limited action.
pub fn email_key(action: &str, email: &str) -> String {
    format!("{action}:email:{}", email.trim().to_lowercase())
}

pub fn ip_key(action: &str, ip: IpAddr) -> String {
    format!("{action}:ip:{ip}")
}
