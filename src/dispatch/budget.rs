//! Rate limits shared by every instance with no leader and no round trip per message:
//! each instance leases a small slice of a scope's budget (a server's, a recipient
//! domain's) from PostgreSQL (`lease_budget` in the `senders` migration) and spends it
//! locally. A slice is good until the shortest of its windows ends and is never carried
//! over, so the sum over instances stays within every limit of every window; a lone
//! instance leases slice after slice and uses the whole budget. Windows are aligned to the
//! epoch (seconds, minutes, hours, days at midnight UTC).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text};
use diesel_async::RunQueryDsl;

use crate::db::DbPool;

/// Slices are a quarter of the shortest window's limit, between 1 and this: an instance
/// that dies holds at most this much of a window's budget unused.
const MAX_SLICE: i32 = 50;

/// The budgets this instance is spending, by scope.
#[derive(Default)]
pub struct Budgets {
    scopes: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slice>>>>,
}

/// What this instance holds of one scope's budget.
#[derive(Default)]
struct Slice {
    tokens: i32,
    valid_until: Option<Instant>,
    /// The budget was spent when last asked: no lease before then.
    spent_until: Option<Instant>,
}

#[derive(diesel::QueryableByName)]
struct Lease {
    #[diesel(sql_type = Integer)]
    granted: i32,
    #[diesel(sql_type = BigInt)]
    wait_ms: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    valid_ms: Option<i64>,
}

impl Budgets {
    /// Takes one send from `scope`'s budget under `windows` ((seconds, limit) pairs): Ok, or
    /// how long until there may be room. No limits: always Ok, no database. A database that
    /// cannot be asked counts as no room for a second (the sending waits, nothing fails).
    pub async fn take(&self, pool: &DbPool, scope: &str, windows: &[(i32, i32)]) -> Result<(), Duration> {
        if windows.is_empty() {
            return Ok(());
        }
        let slot = self
            .scopes
            .lock()
            .expect("budgets lock")
            .entry(scope.to_owned())
            .or_default()
            .clone();
        let mut slice = slot.lock().await;
        let now = Instant::now();
        if let Some(until) = slice.spent_until {
            if until > now {
                return Err(until - now);
            }
            slice.spent_until = None;
        }
        if slice.tokens > 0 && slice.valid_until.is_some_and(|v| v > now) {
            slice.tokens -= 1;
            return Ok(());
        }
        match lease(pool, scope, windows, slice_size(windows)).await {
            Ok(lease) if lease.granted > 0 => {
                slice.tokens = lease.granted - 1;
                slice.valid_until =
                    Some(Instant::now() + Duration::from_millis(lease.valid_ms.unwrap_or(0).max(0) as u64));
                Ok(())
            }
            Ok(lease) => {
                let wait = Duration::from_millis(lease.wait_ms.max(5) as u64);
                slice.tokens = 0;
                slice.spent_until = Some(Instant::now() + wait);
                Err(wait)
            }
            Err(err) => {
                tracing::warn!(scope, error = %err, "cannot lease a send budget; waiting");
                Err(Duration::from_secs(1))
            }
        }
    }
}

fn slice_size(windows: &[(i32, i32)]) -> i32 {
    let shortest = windows
        .iter()
        .min_by_key(|(secs, _)| *secs)
        .map_or(1, |(_, limit)| *limit);
    (shortest / 4).clamp(1, MAX_SLICE)
}

async fn lease(pool: &DbPool, scope: &str, windows: &[(i32, i32)], want: i32) -> anyhow::Result<Lease> {
    let mut conn = pool.get().await?;
    let secs: Vec<i32> = windows.iter().map(|(s, _)| *s).collect();
    let limits: Vec<i32> = windows.iter().map(|(_, l)| *l).collect();
    Ok(
        diesel::sql_query("SELECT granted, wait_ms, valid_ms FROM lease_budget($1, $2, $3, $4)")
            .bind::<Text, _>(scope)
            .bind::<Array<Integer>, _>(secs)
            .bind::<Array<Integer>, _>(limits)
            .bind::<Integer, _>(want)
            .get_result(&mut conn)
            .await?,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn slices_are_a_quarter_of_the_shortest_window() {
        assert_eq!(super::slice_size(&[(1, 20), (60, 1000)]), 5);
        assert_eq!(super::slice_size(&[(86_400, 1_000_000)]), super::MAX_SLICE);
        assert_eq!(super::slice_size(&[(1, 2)]), 1);
    }
}
