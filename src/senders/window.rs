//! A mailing's sending window: the days of the week and hours, in the mailing's time zone,
//! when its deliveries may go out. A delivery that falls outside waits for the next
//! opening. Pure, so the clock is a parameter.

use chrono::{DateTime, Datelike, Duration as Days, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// As stored in `mailings.sending_window`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendingWindow {
    /// ISO weekdays, 1 = Monday, sorted, no repeats.
    pub days: Vec<u8>,
    /// 0-23: the first hour of the window.
    pub from_hour: u8,
    /// 1-24: the hour the window closes (exclusive).
    pub to_hour: u8,
}

impl SendingWindow {
    /// Checks the parts; Err names the part (`days`, `fromHour`, `toHour`) and why.
    pub fn new(days: &[i32], from_hour: i32, to_hour: i32) -> Result<SendingWindow, (&'static str, String)> {
        if days.is_empty() {
            return Err(("days", "choose at least one day (1 = Monday … 7 = Sunday)".into()));
        }
        if let Some(bad) = days.iter().find(|d| !(1..=7).contains(*d)) {
            return Err(("days", format!("{bad} is not a weekday (1 = Monday … 7 = Sunday)")));
        }
        if !(0..=23).contains(&from_hour) {
            return Err(("fromHour", "must be 0-23".into()));
        }
        if !(1..=24).contains(&to_hour) {
            return Err(("toHour", "must be 1-24".into()));
        }
        if to_hour <= from_hour {
            return Err(("toHour", "must be after fromHour".into()));
        }
        let mut days: Vec<u8> = days.iter().map(|d| *d as u8).collect();
        days.sort_unstable();
        days.dedup();
        Ok(SendingWindow {
            days,
            from_hour: from_hour as u8,
            to_hour: to_hour as u8,
        })
    }

    /// Whether `at` falls inside the window in `zone`.
    pub fn is_open(&self, at: DateTime<Utc>, zone: Tz) -> bool {
        let local = at.with_timezone(&zone);
        let day = local.weekday().number_from_monday() as u8;
        let hour = local.hour() as u8;
        self.days.contains(&day) && hour >= self.from_hour && hour < self.to_hour
    }

    /// `at` when the window is open then, else when it next opens.
    pub fn next_opening(&self, at: DateTime<Utc>, zone: Tz) -> DateTime<Utc> {
        if self.is_open(at, zone) {
            return at;
        }
        let today = at.with_timezone(&zone).date_naive();
        (0..=8)
            .map(|n| today + Days::days(n))
            .filter(|date| self.days.contains(&(date.weekday().number_from_monday() as u8)))
            .filter_map(|date| opening_on(date, self.from_hour, self.to_hour, zone))
            .find(|opening| *opening > at)
            .unwrap_or(at + Days::hours(1))
    }

    /// How long a delivery due at `at` must wait; zero while the window is open.
    pub fn wait(&self, at: DateTime<Utc>, zone: Tz) -> std::time::Duration {
        (self.next_opening(at, zone) - at).to_std().unwrap_or_default()
    }
}

/// The first instant of `date` at `hour` or later, before `until`, that exists in `zone`
/// (a daylight-saving gap skips an hour).
fn opening_on(date: NaiveDate, hour: u8, until: u8, zone: Tz) -> Option<DateTime<Utc>> {
    (hour..until).find_map(|h| {
        zone.from_local_datetime(&date.and_hms_opt(u32::from(h), 0, 0)?)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn weekdays_nine_to_five_in_berlin() {
        let window = SendingWindow::new(&[5, 1, 2, 3, 4, 1], 9, 17).unwrap();
        assert_eq!(window.days, vec![1, 2, 3, 4, 5]);
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // Tuesday 2026-12-01 10:00 in Berlin is 09:00 UTC.
        assert!(window.is_open(utc("2026-12-01T09:00:00Z"), berlin));
        // 07:59 UTC is 08:59 in Berlin: closed until 09:00 local.
        let early = utc("2026-12-01T07:59:00Z");
        assert!(!window.is_open(early, berlin));
        assert_eq!(window.next_opening(early, berlin), utc("2026-12-01T08:00:00Z"));
        // Friday 17:00 local: next Monday 09:00 local.
        let friday_evening = utc("2026-12-04T16:00:00Z");
        assert_eq!(window.next_opening(friday_evening, berlin), utc("2026-12-07T08:00:00Z"));
        assert_eq!(
            window.wait(friday_evening, berlin),
            std::time::Duration::from_secs(64 * 3600)
        );
        assert!(window.wait(utc("2026-12-01T09:00:00Z"), berlin).is_zero());
    }

    #[test]
    fn a_whole_day_and_a_daylight_saving_gap() {
        let all_day = SendingWindow::new(&[7], 0, 24).unwrap();
        assert!(all_day.is_open(utc("2026-12-06T23:59:59Z"), chrono_tz::UTC));
        assert_eq!(
            all_day.next_opening(utc("2026-12-07T00:00:00Z"), chrono_tz::UTC),
            utc("2026-12-13T00:00:00Z")
        );
        // 2027-03-28 02:00 does not exist in Berlin: the window opens at 03:00 local (01:00 UTC).
        let two_am = SendingWindow::new(&[7], 2, 4).unwrap();
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(
            two_am.next_opening(utc("2027-03-27T12:00:00Z"), berlin),
            utc("2027-03-28T01:00:00Z")
        );
    }

    #[test]
    fn names_the_part_that_is_wrong() {
        assert_eq!(SendingWindow::new(&[], 9, 17).unwrap_err().0, "days");
        assert_eq!(SendingWindow::new(&[8], 9, 17).unwrap_err().0, "days");
        assert_eq!(SendingWindow::new(&[1], 24, 24).unwrap_err().0, "fromHour");
        assert_eq!(SendingWindow::new(&[1], 9, 25).unwrap_err().0, "toHour");
        assert_eq!(SendingWindow::new(&[1], 9, 9).unwrap_err().0, "toHour");
    }
}
