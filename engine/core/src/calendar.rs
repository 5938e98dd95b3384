//! Working-day calendars: weekends, public holidays and make-up working days (调休), as data.

use std::collections::BTreeSet;

use chrono::{Datelike, Days, FixedOffset, NaiveDate, TimeZone, Weekday};
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

/// A calendar of working days in one time zone. The default is China Standard Time with
/// Saturday and Sunday off and no holidays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Calendar {
    /// Offset from UTC in seconds (`+08:00` is 28800).
    pub utc_offset_secs: i32,
    pub weekend: Vec<Weekday>,
    pub holidays: BTreeSet<NaiveDate>,
    /// Days that are working days although they fall on a weekend.
    pub workdays: BTreeSet<NaiveDate>,
}

impl Default for Calendar {
    fn default() -> Self {
        Calendar {
            utc_offset_secs: 8 * 3600,
            weekend: vec![Weekday::Sat, Weekday::Sun],
            holidays: BTreeSet::new(),
            workdays: BTreeSet::new(),
        }
    }
}

/// A calendar file as written (`calendar.toml`).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarFile {
    /// UTC offset such as `+08:00`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Days of the week that are not working days, e.g. `["sat", "sun"]`.
    #[serde(default)]
    pub weekend: Option<Vec<String>>,
    /// Public holidays (TOML dates, e.g. `2026-10-01`).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub holidays: Vec<toml::value::Datetime>,
    /// Make-up working days that fall on a weekend.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub workdays: Vec<toml::value::Datetime>,
}

impl CalendarFile {
    /// Validates the file and builds the calendar.
    pub fn build(self) -> Result<Calendar, String> {
        let mut cal = Calendar::default();
        if let Some(tz) = self.timezone {
            cal.utc_offset_secs =
                parse_offset(&tz).ok_or_else(|| format!("`{tz}` is not a UTC offset such as `+08:00`"))?;
        }
        if let Some(days) = self.weekend {
            cal.weekend = days
                .iter()
                .map(|d| d.parse::<Weekday>().map_err(|_| format!("`{d}` is not a day of the week (mon, tue, ...)")))
                .collect::<Result<_, _>>()?;
        }
        for (list, out) in [(self.holidays, &mut cal.holidays), (self.workdays, &mut cal.workdays)] {
            for d in list {
                let date = d.date.ok_or_else(|| format!("`{d}` is not a date"))?;
                let nd = NaiveDate::from_ymd_opt(date.year as i32, date.month as u32, date.day as u32)
                    .ok_or_else(|| format!("`{d}` is not a valid date"))?;
                out.insert(nd);
            }
        }
        Ok(cal)
    }
}

fn parse_offset(s: &str) -> Option<i32> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("utc") || s == "Z" {
        return Some(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let h: i32 = h.parse().ok()?;
    let m: i32 = m.parse().ok()?;
    (h <= 14 && m < 60).then_some(sign * (h * 3600 + m * 60))
}

impl Calendar {
    fn tz(&self) -> FixedOffset {
        FixedOffset::east_opt(self.utc_offset_secs).unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset"))
    }

    /// Whether `date` is a working day.
    pub fn is_working_day(&self, date: NaiveDate) -> bool {
        if self.workdays.contains(&date) {
            return true;
        }
        !self.holidays.contains(&date) && !self.weekend.contains(&date.weekday())
    }

    /// The instant (Unix milliseconds) `duration` after `from_ms`. Working days keep the time
    /// of day and skip non-working days: 5 working days from a Friday 10:00 is the next Friday
    /// 10:00 when no holiday intervenes.
    pub fn add(&self, from_ms: i64, duration: Duration) -> i64 {
        match duration {
            Duration::Seconds(s) => from_ms.saturating_add(s.saturating_mul(1000)),
            Duration::WorkingDays(n) => {
                let tz = self.tz();
                let Some(start) = tz.timestamp_millis_opt(from_ms).single() else {
                    return from_ms;
                };
                let mut date = start.date_naive();
                let mut left = n;
                // Bounded: even a calendar of nothing but holidays ends within 20 years.
                let mut guard = 0;
                while left > 0 && guard < 366 * 20 {
                    date = date.checked_add_days(Days::new(1)).unwrap_or(date);
                    if self.is_working_day(date) {
                        left -= 1;
                    }
                    guard += 1;
                }
                let naive = date.and_time(start.time());
                tz.from_local_datetime(&naive).single().map_or(from_ms, |dt| dt.timestamp_millis())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(y: i32, m: u32, d: u32, h: u32) -> i64 {
        FixedOffset::east_opt(8 * 3600).unwrap().with_ymd_and_hms(y, m, d, h, 0, 0).unwrap().timestamp_millis()
    }

    #[test]
    fn working_days_skip_weekends_holidays_and_honour_make_up_days() {
        let mut cal = Calendar::default();
        // Friday 2026-09-25 10:00 + 3 working days, with 2026-09-29 a holiday and
        // Sunday 2026-09-27 a make-up working day: Sun 27, Mon 28, Wed 30.
        cal.holidays.insert(NaiveDate::from_ymd_opt(2026, 9, 29).unwrap());
        cal.workdays.insert(NaiveDate::from_ymd_opt(2026, 9, 27).unwrap());
        assert_eq!(cal.add(ms(2026, 9, 25, 10), Duration::WorkingDays(3)), ms(2026, 9, 30, 10));
        assert_eq!(Calendar::default().add(ms(2026, 9, 25, 10), Duration::WorkingDays(1)), ms(2026, 9, 28, 10));
        assert_eq!(cal.add(0, Duration::Seconds(60)), 60_000);
    }

    #[test]
    fn calendar_file_is_validated() {
        let f: CalendarFile =
            toml::from_str("timezone = \"+08:00\"\nholidays = [2026-10-01]\nweekend = [\"sat\", \"sun\"]").unwrap();
        let cal = f.build().unwrap();
        assert!(!cal.is_working_day(NaiveDate::from_ymd_opt(2026, 10, 1).unwrap()));
        let bad: CalendarFile = toml::from_str("weekend = [\"caturday\"]").unwrap();
        assert!(bad.build().is_err());
    }
}
