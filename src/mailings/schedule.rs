//! When a mailing's runs fall: pure functions, no I/O.
//!
//! Run k (k = 0, 1, 2, ...) falls at `startsAt + k·period`, counted on the wall clock of the
//! mailing's time zone and always from `startsAt`, never from the previous run:
//! - DAILY keeps the local time of day across DST changes; WEEKLY also the weekday;
//! - MONTHLY keeps the day of month of `startsAt`, clamped to the month's last day
//!   (Jan 31 → Feb 28 or 29 → Mar 31);
//! - ONCE has only run 0.
//!
//! A local time that does not exist (a DST gap) moves to the first valid instant after it;
//! one that exists twice (a DST overlap) takes the earlier instant. `endsAt` is inclusive.

use chrono::{DateTime, Datelike, Days, LocalResult, Months, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

#[derive(
    async_graphql::Enum,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum Periodicity {
    Once,
    Daily,
    Weekly,
    /// Same day of month as startsAt; clamped to the month's last day.
    Monthly,
}

crate::text_enum!(Periodicity { Once => "once", Daily => "daily", Weekly => "weekly", Monthly => "monthly" });

impl Periodicity {
    /// Roughly one period, to estimate which run is near a given instant.
    fn approximate_seconds(self) -> f64 {
        match self {
            Periodicity::Once => f64::INFINITY,
            Periodicity::Daily => 86_400.0,
            Periodicity::Weekly => 604_800.0,
            Periodicity::Monthly => 2_629_746.0, // 365.2425 days / 12
        }
    }
}

/// A mailing's schedule.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    pub periodicity: Periodicity,
    pub time_zone: Tz,
}

impl Schedule {
    /// Run `k`, or None past `endsAt` (or past run 0 for ONCE).
    pub fn run(&self, k: u32) -> Option<DateTime<Utc>> {
        let at = self.occurrence(k)?;
        match self.ends_at {
            Some(end) if at > end => None,
            _ => Some(at),
        }
    }

    /// The first run strictly after `instant`.
    pub fn next_run_after(&self, instant: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let k = self.first_index_after(instant)?;
        self.run(k)
    }

    /// The latest run at or before `instant` (several overdue runs coalesce into this one).
    pub fn latest_run_at_or_before(&self, instant: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let bound = match self.ends_at {
            Some(end) if end < instant => end,
            _ => instant,
        };
        let k = match self.first_index_after(bound) {
            Some(k) => k.checked_sub(1)?,
            // ONCE whose run has come (periodic schedules only get here on overflow).
            None if self.periodicity == Periodicity::Once && self.starts_at <= bound => 0,
            None => return None,
        };
        self.occurrence(k)
    }

    /// Runs that fall in `(after, up_to]`, oldest first (at most `limit`).
    pub fn runs_between(&self, after: Option<DateTime<Utc>>, up_to: DateTime<Utc>, limit: usize) -> Vec<DateTime<Utc>> {
        let mut k = match after {
            Some(after) => match self.first_index_after(after) {
                Some(k) => k,
                None => return Vec::new(),
            },
            None => 0,
        };
        let mut runs = Vec::new();
        while runs.len() < limit {
            match self.run(k) {
                Some(at) if at <= up_to => runs.push(at),
                _ => break,
            }
            k += 1;
        }
        runs
    }

    /// The smallest k whose occurrence (ignoring endsAt) is after `instant`.
    fn first_index_after(&self, instant: DateTime<Utc>) -> Option<u32> {
        if self.periodicity == Periodicity::Once {
            return (self.starts_at > instant).then_some(0);
        }
        let elapsed = (instant - self.starts_at).num_seconds() as f64;
        let estimate = (elapsed / self.periodicity.approximate_seconds()).floor().max(0.0);
        let mut k = u32::try_from(estimate as u64).ok()?;
        // Occurrences grow strictly with k; the estimate is off by at most one or two.
        while k > 0 && self.occurrence(k - 1).is_some_and(|at| at > instant) {
            k -= 1;
        }
        while self.occurrence(k)? <= instant {
            k = k.checked_add(1)?;
        }
        Some(k)
    }

    /// Run k's instant without the endsAt bound.
    fn occurrence(&self, k: u32) -> Option<DateTime<Utc>> {
        let start = self.starts_at.with_timezone(&self.time_zone).naive_local();
        let local = match self.periodicity {
            Periodicity::Once => (k == 0).then_some(start)?,
            Periodicity::Daily => start.checked_add_days(Days::new(u64::from(k)))?,
            Periodicity::Weekly => start.checked_add_days(Days::new(7 * u64::from(k)))?,
            Periodicity::Monthly => {
                let first =
                    NaiveDate::from_ymd_opt(start.year(), start.month(), 1)?.checked_add_months(Months::new(k))?;
                let day = start.day().min(days_in_month(first));
                NaiveDateTime::new(first.with_day(day)?, start.time())
            }
        };
        if k == 0 {
            return Some(self.starts_at);
        }
        resolve_local(self.time_zone, local)
    }
}

fn days_in_month(first_of_month: NaiveDate) -> u32 {
    let next = first_of_month
        .checked_add_months(Months::new(1))
        .expect("a month after a valid date");
    next.signed_duration_since(first_of_month).num_days() as u32
}

/// The instant a local wall-clock time names in `tz`: the earlier one in an overlap, the
/// first valid instant after it in a gap.
pub fn resolve_local(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(at) => Some(at.with_timezone(&Utc)),
        LocalResult::Ambiguous(earlier, _) => Some(earlier.with_timezone(&Utc)),
        LocalResult::None => first_instant_at_or_after(tz, local),
    }
}

/// In a gap, the earliest instant whose local time is at or after `local`: the moment the
/// clocks jumped. UTC offsets lie within -12h..+14h, so it is within these bounds, and local
/// time only grows across one gap: a binary search finds it to the second.
fn first_instant_at_or_after(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    let target = local.and_utc().timestamp();
    let local_of = |secs: i64| DateTime::from_timestamp(secs, 0).map(|at| at.with_timezone(&tz).naive_local());
    let (mut lo, mut hi) = (target - 15 * 3600, target + 13 * 3600); // local(lo) < local <= local(hi)
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if local_of(mid)? >= local {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    DateTime::from_timestamp(hi, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;
    use chrono_tz::Europe::{Berlin, Moscow};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn local(tz: Tz, s: &str) -> DateTime<Utc> {
        let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        tz.from_local_datetime(&naive).earliest().unwrap().with_timezone(&Utc)
    }

    fn schedule(starts: DateTime<Utc>, ends: Option<DateTime<Utc>>, periodicity: Periodicity, tz: Tz) -> Schedule {
        Schedule {
            starts_at: starts,
            ends_at: ends,
            periodicity,
            time_zone: tz,
        }
    }

    fn runs(s: &Schedule, n: u32) -> Vec<String> {
        (0..n)
            .filter_map(|k| s.run(k))
            .map(|t| t.with_timezone(&s.time_zone).format("%Y-%m-%d %H:%M %z").to_string())
            .collect()
    }

    #[test]
    fn once_has_a_single_run() {
        let s = schedule(utc("2026-12-01T09:00:00Z"), None, Periodicity::Once, Tz::UTC);
        assert_eq!(s.run(0), Some(utc("2026-12-01T09:00:00Z")));
        assert_eq!(s.run(1), None);
        assert_eq!(
            s.next_run_after(utc("2026-11-30T00:00:00Z")),
            Some(utc("2026-12-01T09:00:00Z"))
        );
        assert_eq!(s.next_run_after(utc("2026-12-01T09:00:00Z")), None);
        assert_eq!(
            s.latest_run_at_or_before(utc("2027-01-01T00:00:00Z")),
            Some(utc("2026-12-01T09:00:00Z"))
        );
        assert_eq!(s.latest_run_at_or_before(utc("2026-11-01T00:00:00Z")), None);
    }

    #[test]
    fn daily_weekly_and_monthly_in_utc() {
        let start = utc("2026-01-30T08:15:00Z");
        let daily = schedule(start, None, Periodicity::Daily, Tz::UTC);
        assert_eq!(
            runs(&daily, 3),
            [
                "2026-01-30 08:15 +0000",
                "2026-01-31 08:15 +0000",
                "2026-02-01 08:15 +0000"
            ]
        );
        let weekly = schedule(start, None, Periodicity::Weekly, Tz::UTC);
        assert_eq!(
            runs(&weekly, 3),
            [
                "2026-01-30 08:15 +0000",
                "2026-02-06 08:15 +0000",
                "2026-02-13 08:15 +0000"
            ]
        );
        let monthly = schedule(start, None, Periodicity::Monthly, Tz::UTC);
        assert_eq!(
            runs(&monthly, 3),
            [
                "2026-01-30 08:15 +0000",
                "2026-02-28 08:15 +0000",
                "2026-03-30 08:15 +0000"
            ]
        );
    }

    #[test]
    fn monthly_on_the_31st_clamps_and_comes_back() {
        let s = schedule(utc("2026-01-31T12:00:00Z"), None, Periodicity::Monthly, Tz::UTC);
        let got = runs(&s, 5);
        assert_eq!(got[1], "2026-02-28 12:00 +0000");
        assert_eq!(
            got[2], "2026-03-31 12:00 +0000",
            "counted from startsAt, not from Feb 28"
        );
        assert_eq!(got[3], "2026-04-30 12:00 +0000");
        assert_eq!(got[4], "2026-05-31 12:00 +0000");
    }

    #[test]
    fn leap_years() {
        let s = schedule(utc("2027-01-31T00:00:00Z"), None, Periodicity::Monthly, Tz::UTC);
        assert_eq!(runs(&s, 2)[1], "2027-02-28 00:00 +0000");
        let s = schedule(utc("2028-01-31T00:00:00Z"), None, Periodicity::Monthly, Tz::UTC);
        assert_eq!(runs(&s, 2)[1], "2028-02-29 00:00 +0000");
        // Feb 29 monthly: the 29th where it exists, the 28th in February of other years.
        let s = schedule(utc("2028-02-29T10:00:00Z"), None, Periodicity::Monthly, Tz::UTC);
        assert_eq!(s.run(12).unwrap(), utc("2029-02-28T10:00:00Z"));
        assert_eq!(s.run(48).unwrap(), utc("2032-02-29T10:00:00Z"));
        // Daily across Feb 29.
        let s = schedule(utc("2028-02-28T10:00:00Z"), None, Periodicity::Daily, Tz::UTC);
        assert_eq!(s.run(1).unwrap(), utc("2028-02-29T10:00:00Z"));
        assert_eq!(s.run(2).unwrap(), utc("2028-03-01T10:00:00Z"));
    }

    #[test]
    fn ends_at_is_inclusive() {
        let start = utc("2026-03-01T09:00:00Z");
        let s = schedule(start, Some(utc("2026-03-03T09:00:00Z")), Periodicity::Daily, Tz::UTC);
        assert_eq!(runs(&s, 10).len(), 3, "the run exactly at endsAt counts");
        assert_eq!(
            s.next_run_after(utc("2026-03-03T08:59:59Z")),
            Some(utc("2026-03-03T09:00:00Z"))
        );
        assert_eq!(s.next_run_after(utc("2026-03-03T09:00:00Z")), None);
        let s = schedule(start, Some(utc("2026-03-03T08:59:59Z")), Periodicity::Daily, Tz::UTC);
        assert_eq!(runs(&s, 10).len(), 2);
        assert_eq!(
            s.latest_run_at_or_before(utc("2026-04-01T00:00:00Z")),
            Some(utc("2026-03-02T09:00:00Z"))
        );
    }

    #[test]
    fn daily_keeps_local_time_across_berlin_dst() {
        // Clocks go forward on 2026-03-29 and back on 2026-10-25 in Berlin.
        let s = schedule(local(Berlin, "2026-03-27 09:00"), None, Periodicity::Daily, Berlin);
        assert_eq!(
            runs(&s, 4),
            [
                "2026-03-27 09:00 +0100",
                "2026-03-28 09:00 +0100",
                "2026-03-29 09:00 +0200",
                "2026-03-30 09:00 +0200"
            ]
        );
        let s = schedule(local(Berlin, "2026-10-24 09:00"), None, Periodicity::Daily, Berlin);
        assert_eq!(
            runs(&s, 3),
            [
                "2026-10-24 09:00 +0200",
                "2026-10-25 09:00 +0100",
                "2026-10-26 09:00 +0100"
            ]
        );
    }

    #[test]
    fn a_time_in_the_gap_moves_to_the_first_valid_instant_after_it() {
        // 02:30 does not exist on 2026-03-29 in Berlin (02:00 → 03:00).
        let s = schedule(local(Berlin, "2026-03-28 02:30"), None, Periodicity::Daily, Berlin);
        assert_eq!(
            s.run(1).unwrap(),
            utc("2026-03-29T01:00:00Z"),
            "03:00 CEST, when the clocks jumped"
        );
        assert_eq!(runs(&s, 3)[2], "2026-03-30 02:30 +0200");
        // New York: 02:30 does not exist on 2026-03-08.
        let s = schedule(local(New_York, "2026-03-01 02:30"), None, Periodicity::Weekly, New_York);
        assert_eq!(s.run(1).unwrap(), utc("2026-03-08T07:00:00Z"), "03:00 EDT");
        assert_eq!(runs(&s, 3)[2], "2026-03-15 02:30 -0400");
    }

    #[test]
    fn a_time_in_the_overlap_takes_the_earlier_instant() {
        // 02:30 happens twice on 2026-10-25 in Berlin; the first is 00:30 UTC.
        let s = schedule(local(Berlin, "2026-10-24 02:30"), None, Periodicity::Daily, Berlin);
        assert_eq!(s.run(1).unwrap(), utc("2026-10-25T00:30:00Z"));
        // 01:30 happens twice on 2026-11-01 in New York; the first is 05:30 UTC (EDT).
        let s = schedule(local(New_York, "2026-10-31 01:30"), None, Periodicity::Daily, New_York);
        assert_eq!(s.run(1).unwrap(), utc("2026-11-01T05:30:00Z"));
        assert_eq!(s.run(2).unwrap(), utc("2026-11-02T06:30:00Z"));
    }

    #[test]
    fn moscow_on_the_31st_at_local_midnight() {
        // Moscow is UTC+3 all year: 00:00 local on the 31st is 21:00 UTC on the 30th.
        let s = schedule(local(Moscow, "2026-01-31 00:00"), None, Periodicity::Monthly, Moscow);
        assert_eq!(s.starts_at, utc("2026-01-30T21:00:00Z"));
        assert_eq!(
            runs(&s, 4),
            [
                "2026-01-31 00:00 +0300",
                "2026-02-28 00:00 +0300",
                "2026-03-31 00:00 +0300",
                "2026-04-30 00:00 +0300"
            ]
        );
        // In UTC the same schedule would land on the 30th/27th: the zone matters.
        assert_eq!(s.run(1).unwrap(), utc("2026-02-27T21:00:00Z"));
    }

    #[test]
    fn next_and_latest_runs_around_an_instant() {
        let s = schedule(utc("2026-01-01T09:00:00Z"), None, Periodicity::Daily, Tz::UTC);
        let now = utc("2026-03-15T12:00:00Z");
        assert_eq!(s.next_run_after(now), Some(utc("2026-03-16T09:00:00Z")));
        assert_eq!(s.latest_run_at_or_before(now), Some(utc("2026-03-15T09:00:00Z")));
        assert_eq!(
            s.next_run_after(utc("2026-03-15T09:00:00Z")),
            Some(utc("2026-03-16T09:00:00Z"))
        );
        assert_eq!(
            s.latest_run_at_or_before(utc("2026-03-15T09:00:00Z")),
            Some(utc("2026-03-15T09:00:00Z"))
        );
        assert_eq!(
            s.next_run_after(utc("2025-01-01T00:00:00Z")),
            Some(utc("2026-01-01T09:00:00Z"))
        );
        assert_eq!(s.latest_run_at_or_before(utc("2025-01-01T00:00:00Z")), None);

        let m = schedule(utc("2026-01-31T09:00:00Z"), None, Periodicity::Monthly, Tz::UTC);
        assert_eq!(
            m.next_run_after(utc("2030-02-10T00:00:00Z")),
            Some(utc("2030-02-28T09:00:00Z"))
        );
        assert_eq!(
            m.latest_run_at_or_before(utc("2030-02-10T00:00:00Z")),
            Some(utc("2030-01-31T09:00:00Z"))
        );

        let between = s.runs_between(Some(utc("2026-01-02T09:00:00Z")), utc("2026-01-05T09:00:00Z"), 10);
        assert_eq!(
            between,
            vec![
                utc("2026-01-03T09:00:00Z"),
                utc("2026-01-04T09:00:00Z"),
                utc("2026-01-05T09:00:00Z")
            ]
        );
    }

    #[test]
    fn agrees_with_counting_one_by_one_over_years() {
        // The estimate-and-adjust search must match a plain scan, in a zone with DST.
        for periodicity in [Periodicity::Daily, Periodicity::Weekly, Periodicity::Monthly] {
            let s = schedule(local(Berlin, "2026-01-31 02:30"), None, periodicity, Berlin);
            let all: Vec<_> = (0..400).map(|k| s.run(k).unwrap()).collect();
            assert!(all.windows(2).all(|w| w[0] < w[1]), "{periodicity:?} runs increase");
            for probe in all[..all.len() - 1].iter().step_by(7) {
                let probe = *probe + chrono::TimeDelta::minutes(1);
                let expected = all.iter().find(|t| **t > probe).copied();
                assert_eq!(s.next_run_after(probe), expected, "{periodicity:?} after {probe}");
            }
        }
    }
}
