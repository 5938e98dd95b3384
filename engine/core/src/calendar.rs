//! Working-day calendars: a time zone, weekends, public holidays and make-up working days
//! (调休), as data. A calendar file may extend another (a district's local closures on top of
//! the national calendar) and declares the years it covers: counting working days past them
//! is a guess the engine never makes silently.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Days, FixedOffset, NaiveDate, TimeZone, Weekday};
use chrono_tz::Tz;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::i18n::Message;
use crate::msg;

/// A time zone: a name from the tz database (`Asia/Shanghai`), or a fixed offset (`+08:00`,
/// as calendars written before named zones say).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    Named(Tz),
    Fixed(FixedOffset),
}

impl Default for Zone {
    fn default() -> Self {
        Zone::Named(chrono_tz::Asia::Shanghai)
    }
}

impl Zone {
    /// Reads `Asia/Shanghai`, `UTC`, `+08:00` or `-05:30`.
    pub fn parse(s: &str) -> Option<Zone> {
        let s = s.trim();
        if let Ok(tz) = s.parse::<Tz>() {
            return Some(Zone::Named(tz));
        }
        parse_offset(s).and_then(FixedOffset::east_opt).map(Zone::Fixed)
    }

    /// The zone's name (`Asia/Shanghai`, `+08:00`).
    pub fn name(&self) -> String {
        match self {
            Zone::Named(tz) => tz.name().to_owned(),
            Zone::Fixed(o) => o.to_string(),
        }
    }

    /// The instant `ms` (Unix milliseconds) as a local date and time with its offset.
    pub fn local(&self, ms: i64) -> Option<DateTime<FixedOffset>> {
        let utc = DateTime::from_timestamp_millis(ms)?;
        Some(match self {
            Zone::Named(tz) => utc.with_timezone(tz).fixed_offset(),
            Zone::Fixed(o) => utc.with_timezone(o),
        })
    }

    /// The instant of local date-time `naive` (the earlier one when a clock change repeats it,
    /// the later one when a clock change skips it).
    pub fn instant(&self, naive: chrono::NaiveDateTime) -> Option<i64> {
        let pick = |r: chrono::LocalResult<DateTime<FixedOffset>>| r.earliest();
        let dt = match self {
            Zone::Named(tz) => match tz.from_local_datetime(&naive) {
                chrono::LocalResult::None => {
                    tz.from_local_datetime(&(naive + chrono::TimeDelta::hours(1))).earliest().map(|d| d.fixed_offset())
                }
                r => pick(r.map(|d| d.fixed_offset())),
            },
            Zone::Fixed(o) => pick(o.from_local_datetime(&naive)),
        }?;
        Some(dt.timestamp_millis())
    }
}

/// A calendar of working days in one time zone. The default is China Standard Time with
/// Saturday and Sunday off and no holidays (covering no year in particular).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Calendar {
    pub zone: Zone,
    pub weekend: Vec<Weekday>,
    /// Public holidays, with their names where known.
    pub holidays: BTreeMap<NaiveDate, Option<String>>,
    /// Days that are working days although they fall on a weekend.
    pub workdays: BTreeSet<NaiveDate>,
    /// The years whose holidays the calendar knows; `None` when it does not say (local
    /// calendars without public holidays), which is never a reason to warn.
    pub covers: Option<BTreeSet<i32>>,
    /// The notice each year's holidays come from.
    pub notices: BTreeMap<i32, String>,
    /// The calendar's file (for messages), and the files it extends.
    pub files: Vec<String>,
}

impl Default for Calendar {
    fn default() -> Self {
        Calendar {
            zone: Zone::default(),
            weekend: vec![Weekday::Sat, Weekday::Sun],
            holidays: BTreeMap::new(),
            workdays: BTreeSet::new(),
            covers: None,
            notices: BTreeMap::new(),
            files: Vec::new(),
        }
    }
}

/// A calendar file as written (`calendars/*.toml`).
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarFile {
    /// Another calendar file this one adds to (relative to this file), e.g. the national one.
    #[serde(default)]
    pub extends: Option<String>,
    /// A time zone of the tz database (`Asia/Shanghai`), or a UTC offset such as `+08:00`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Days of the week that are not working days, e.g. `["sat", "sun"]`.
    #[serde(default)]
    pub weekend: Option<Vec<String>>,
    /// The years whose holidays this file lists completely.
    #[serde(default)]
    pub covers: Vec<i32>,
    /// Public holidays and local closures (TOML dates, e.g. `2026-10-01`).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub holidays: Vec<toml::value::Datetime>,
    /// Make-up working days that fall on a weekend.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub workdays: Vec<toml::value::Datetime>,
    /// The notice each year's dates come from: `2026 = "国务院办公厅关于2026年部分节假日安排的通知"`.
    #[serde(default)]
    pub notices: IndexMap<String, String>,
    /// Names of holidays by date: `2026-10-01 = "国庆节"`.
    #[serde(default)]
    pub names: IndexMap<String, String>,
}

fn date(d: &toml::value::Datetime) -> Result<NaiveDate, Message> {
    let dd = d.date.as_ref().ok_or_else(|| msg!("calendar-not-a-date", value = d.to_string()))?;
    NaiveDate::from_ymd_opt(i32::from(dd.year), u32::from(dd.month), u32::from(dd.day))
        .ok_or_else(|| msg!("calendar-bad-date", value = d.to_string()))
}

impl CalendarFile {
    /// Validates the file and lays it over `base` (the calendar it extends, or the default).
    pub fn build_on(self, mut cal: Calendar, file: &str) -> Result<Calendar, Message> {
        if let Some(tz) = self.timezone {
            cal.zone = Zone::parse(&tz).ok_or_else(|| msg!("calendar-bad-zone", zone = &tz))?;
        }
        if let Some(days) = self.weekend {
            cal.weekend = days
                .iter()
                .map(|d| d.parse::<Weekday>().map_err(|_| msg!("calendar-bad-weekday", day = d)))
                .collect::<Result<_, _>>()?;
        }
        let mut names = BTreeMap::new();
        for (k, v) in self.names {
            let d = NaiveDate::parse_from_str(&k, "%Y-%m-%d").map_err(|_| msg!("calendar-bad-date", value = &k))?;
            names.insert(d, v);
        }
        for d in &self.holidays {
            let d = date(d)?;
            cal.holidays.insert(d, names.get(&d).cloned());
        }
        for d in &self.workdays {
            cal.workdays.insert(date(d)?);
        }
        if !self.covers.is_empty() {
            cal.covers.get_or_insert_with(BTreeSet::new).extend(self.covers.iter().copied());
        }
        for (year, notice) in self.notices {
            let y: i32 = year.parse().map_err(|_| msg!("calendar-bad-year", value = &year))?;
            cal.notices.insert(y, notice);
        }
        cal.files.insert(0, file.to_owned());
        Ok(cal)
    }

    /// [`CalendarFile::build_on`] the default calendar.
    pub fn build(self) -> Result<Calendar, Message> {
        self.build_on(Calendar::default(), "")
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

/// What a calendar says of one day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DayKind {
    Working,
    /// A make-up working day on a weekend (调休上班).
    MakeUp,
    Weekend,
    Holiday(Option<String>),
}

/// One day of a month as a calendar sees it (`yishi calendar show`, the API, the console).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Day {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// `working`, `weekend`, `holiday` or `make_up` (a weekend day worked, 调休上班).
    pub kind: &'static str,
    /// The holiday's name, where the calendar gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Calendar {
    /// Every day of `year`-`month`, or `None` when there is no such month.
    pub fn month(&self, year: i32, month: u32) -> Option<Vec<Day>> {
        let mut d = NaiveDate::from_ymd_opt(year, month, 1)?;
        let mut out = Vec::new();
        while d.month() == month {
            let (kind, name) = match self.day(d) {
                DayKind::Working => ("working", None),
                DayKind::Weekend => ("weekend", None),
                DayKind::MakeUp => ("make_up", None),
                DayKind::Holiday(name) => ("holiday", name),
            };
            out.push(Day { date: d.to_string(), kind, name });
            d = d.succ_opt()?;
        }
        Some(out)
    }

    /// What `date` is.
    pub fn day(&self, date: NaiveDate) -> DayKind {
        if self.workdays.contains(&date) {
            return DayKind::MakeUp;
        }
        if let Some(name) = self.holidays.get(&date) {
            return DayKind::Holiday(name.clone());
        }
        if self.weekend.contains(&date.weekday()) { DayKind::Weekend } else { DayKind::Working }
    }

    /// Whether `date` is a working day.
    pub fn is_working_day(&self, date: NaiveDate) -> bool {
        matches!(self.day(date), DayKind::Working | DayKind::MakeUp)
    }

    /// Whether the calendar knows the holidays of `year` (always, when it does not say).
    pub fn covers(&self, year: i32) -> bool {
        self.covers.as_ref().is_none_or(|c| c.contains(&year))
    }

    /// The instant (Unix milliseconds) `duration` after `from_ms`. Working days keep the time
    /// of day and skip non-working days: 5 working days from a Friday 10:00 is the next Friday
    /// 10:00 when no holiday intervenes.
    pub fn add(&self, from_ms: i64, duration: Duration) -> i64 {
        self.add_checked(from_ms, duration).0
    }

    /// [`Calendar::add`], and the first year counted through that the calendar does not cover
    /// (its holidays are unknown, so the result may be early or late).
    pub fn add_checked(&self, from_ms: i64, duration: Duration) -> (i64, Option<i32>) {
        match duration {
            Duration::Seconds(s) => (from_ms.saturating_add(s.saturating_mul(1000)), None),
            Duration::WorkingDays(n) => {
                let Some(start) = self.zone.local(from_ms) else {
                    return (from_ms, None);
                };
                let mut date = start.date_naive();
                let mut left = n;
                let mut uncovered = None;
                // Bounded: even a calendar of nothing but holidays ends within 20 years.
                let mut guard = 0;
                while left > 0 && guard < 366 * 20 {
                    date = date.checked_add_days(Days::new(1)).unwrap_or(date);
                    if uncovered.is_none() && !self.covers(date.year()) {
                        uncovered = Some(date.year());
                    }
                    if self.is_working_day(date) {
                        left -= 1;
                    }
                    guard += 1;
                }
                let at = self.zone.instant(date.and_time(start.time())).unwrap_or(from_ms);
                (at, uncovered)
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
        cal.holidays.insert(NaiveDate::from_ymd_opt(2026, 9, 29).unwrap(), None);
        cal.workdays.insert(NaiveDate::from_ymd_opt(2026, 9, 27).unwrap());
        assert_eq!(cal.add(ms(2026, 9, 25, 10), Duration::WorkingDays(3)), ms(2026, 9, 30, 10));
        assert_eq!(Calendar::default().add(ms(2026, 9, 25, 10), Duration::WorkingDays(1)), ms(2026, 9, 28, 10));
        assert_eq!(cal.add(0, Duration::Seconds(60)), 60_000);
    }

    #[test]
    fn calendar_files_are_validated_and_old_offsets_still_load() {
        let f: CalendarFile =
            toml::from_str("timezone = \"+08:00\"\nholidays = [2026-10-01]\nweekend = [\"sat\", \"sun\"]").unwrap();
        let cal = f.build().unwrap();
        assert!(!cal.is_working_day(NaiveDate::from_ymd_opt(2026, 10, 1).unwrap()));
        assert_eq!(cal.zone, Zone::Fixed(FixedOffset::east_opt(8 * 3600).unwrap()));
        let bad: CalendarFile = toml::from_str("weekend = [\"caturday\"]").unwrap();
        assert!(bad.build().is_err());
        let bad: CalendarFile = toml::from_str("timezone = \"Mars/Olympus\"").unwrap();
        assert_eq!(bad.build().unwrap_err().key, "calendar-bad-zone");
    }

    #[test]
    fn the_shipped_national_calendar_knows_2025_and_2026() {
        let text = include_str!("../../../workflows/calendars/china.toml");
        let cal = toml::from_str::<CalendarFile>(text).unwrap().build().unwrap();
        assert_eq!(cal.zone, Zone::Named(chrono_tz::Asia::Shanghai));
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        // Spring Festival 2025: off 01-28 to 02-04; Sunday 01-26 and Saturday 02-08 are worked.
        assert_eq!(cal.day(d(2025, 1, 28)), DayKind::Holiday(Some("春节".into())));
        assert_eq!(cal.day(d(2025, 1, 26)), DayKind::MakeUp);
        assert_eq!(cal.day(d(2025, 2, 8)), DayKind::MakeUp);
        // National Day 2026: 10-01 to 10-07 off, Saturday 10-10 worked.
        assert!(!cal.is_working_day(d(2026, 10, 7)));
        assert!(cal.is_working_day(d(2026, 10, 10)));
        assert!(cal.covers(2026) && !cal.covers(2027));
        // 5 working days from Monday 2026-09-28 10:00: 29, 30, the holiday week, 08, 09, 10.
        let (due, uncovered) = cal.add_checked(ms(2026, 9, 28, 10), Duration::WorkingDays(5));
        assert_eq!((due, uncovered), (ms(2026, 10, 10, 10), None), "Saturday 10-10 is a make-up working day");
        let (_, uncovered) = cal.add_checked(ms(2026, 12, 20, 10), Duration::WorkingDays(20));
        assert_eq!(uncovered, Some(2027));
    }
}
