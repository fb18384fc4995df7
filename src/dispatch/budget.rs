//! Rate limits shared by every instance with no leader and no round trip per message:
//! each instance leases a small slice of a scope's budget (a server's, a recipient
//! domain's) from PostgreSQL (`lease_budget` in the `senders` migration) and spends it
//! locally. A slice is good until the shortest of its windows ends and is never carried
//! over, so the sum over instances stays within every limit of every window; a lone
//! instance leases slice after slice and uses the whole budget. Windows are aligned to the
//! epoch (seconds, minutes, hours, days at midnight UTC).
//!
//! Fixed windows alone would let a server see twice a per-second limit in a second that
//! straddles two windows (one's budget spent at its end, the next one's at its start). So
//! a per-second limit also gets tenths (`Limits::windows`): at most a tenth of it per
//! 100 ms (or, under 10 a second, one message per 1/limit s), which keeps any sliding
//! second within about 1.1 times the limit (under 10 a second, the limit plus one: the
//! last send of one spacing window and the first of the next can be close) and bounds the
//! leases at some ten a second per scope and instance, whatever the rate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text};
use diesel_async::RunQueryDsl;

use crate::db::DbPool;

/// Slices are at most this: an instance that dies holds at most this much of a window's
/// budget unused.
const MAX_SLICE: i32 = 50;

/// Limits per window: (seconds, most sends) pairs as configured, turned into the windows
/// leased, in milliseconds, with the per-second limit's tenths added.
pub fn windows(limits: &[(i32, i32)]) -> Vec<(i64, i32)> {
    let mut out: Vec<(i64, i32)> = limits
        .iter()
        .map(|(secs, max)| (i64::from(*secs) * 1000, *max))
        .collect();
    if let Some((_, per_second)) = limits.iter().find(|(secs, _)| *secs == 1) {
        out.push(match *per_second {
            n if n >= 10 => (100, (n + 9) / 10),
            n => (1000 / i64::from(n.max(1)), 1),
        });
    }
    out
}

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
    /// Takes one send from `scope`'s budget under `windows` ((milliseconds, limit) pairs, see
    /// `windows`): Ok, or
    /// how long until there may be room. No limits: always Ok, no database. A database that
    /// cannot be asked counts as no room for a second (the sending waits, nothing fails).
    pub async fn take(&self, pool: &DbPool, scope: &str, windows: &[(i64, i32)]) -> Result<(), Duration> {
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

/// A window of a second or less is leased whole (its limit is small: a tenth of a
/// second's); a longer one a quarter at a time, so several instances share it.
fn slice_size(windows: &[(i64, i32)]) -> i32 {
    let (ms, limit) = windows.iter().min_by_key(|(ms, _)| *ms).copied().unwrap_or((1000, 1));
    let slice = if ms <= 1000 { limit } else { limit / 4 };
    slice.clamp(1, MAX_SLICE)
}

async fn lease(pool: &DbPool, scope: &str, windows: &[(i64, i32)], want: i32) -> anyhow::Result<Lease> {
    let mut conn = pool.get().await?;
    let lengths: Vec<i64> = windows.iter().map(|(ms, _)| *ms).collect();
    let limits: Vec<i32> = windows.iter().map(|(_, l)| *l).collect();
    Ok(
        diesel::sql_query("SELECT granted, wait_ms, valid_ms FROM lease_budget($1, $2, $3, $4)")
            .bind::<Text, _>(scope)
            .bind::<Array<BigInt>, _>(lengths)
            .bind::<Array<Integer>, _>(limits)
            .bind::<Integer, _>(want)
            .get_result(&mut conn)
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_per_second_limit_gets_tenths() {
        assert_eq!(
            windows(&[(1, 20), (60, 1000)]),
            vec![(1000, 20), (60_000, 1000), (100, 2)]
        );
        assert_eq!(windows(&[(1, 25)]), vec![(1000, 25), (100, 3)]);
        assert_eq!(windows(&[(1, 4)]), vec![(1000, 4), (250, 1)]);
        assert_eq!(windows(&[(3600, 100)]), vec![(3_600_000, 100)]);
    }

    #[test]
    fn short_windows_are_leased_whole_and_long_ones_by_quarters() {
        assert_eq!(slice_size(&windows(&[(1, 20), (60, 1000)])), 2);
        assert_eq!(slice_size(&windows(&[(1, 4)])), 1);
        assert_eq!(slice_size(&[(60_000, 600)]), MAX_SLICE);
        assert_eq!(slice_size(&[(3_600_000, 100)]), 25);
        assert_eq!(slice_size(&[(86_400_000, 2)]), 1);
    }
}
