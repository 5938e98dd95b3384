//! Statistics: the three rates (响应率、解决率、满意率), overdue cases and average satisfaction
//! per unit and month, from what each case counts for (the `counted` events in its history,
//! folded into its state) and, for purged cases, the figures kept when they were purged.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use serde::Serialize;
use yishi_core::calendar::Zone;
use yishi_core::msg;

use super::{Engine, EngineError};
use crate::store::{Counts, Store};

/// A calendar month, `YYYY-MM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

impl Month {
    pub fn parse(s: &str) -> Option<Month> {
        let d = NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d").ok()?;
        (s.len() == 7).then_some(Month { year: d.year(), month: d.month() })
    }
    /// The month `ms` falls in, in `zone`.
    pub fn of(ms: i64, zone: Zone) -> Option<Month> {
        zone.local(ms).map(|d| Month { year: d.year(), month: d.month() })
    }
    pub fn next(self) -> Month {
        if self.month == 12 { Month { year: self.year + 1, month: 1 } } else { Month { month: self.month + 1, ..self } }
    }
    /// Its first instant in `zone`, Unix ms.
    pub fn start(self, zone: Zone) -> Option<i64> {
        zone.instant(NaiveDate::from_ymd_opt(self.year, self.month, 1)?.and_hms_opt(0, 0, 0)?)
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// The figures of one unit (or of every unit asked for) in one month.
#[derive(Clone, Debug, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct MonthStats {
    /// `YYYY-MM` in the deployment's zone.
    pub month: String,
    /// The unit; in `totals`, the scope asked for.
    pub unit: String,
    #[serde(flatten)]
    pub counts: Counts,
    /// Responded / raised (响应率); absent when nothing was raised.
    pub response_rate: Option<f64>,
    /// Resolved / rated (解决率): of the cases residents answered in a follow-up, those they
    /// say were resolved; absent when none was answered.
    pub resolution_rate: Option<f64>,
    /// Satisfied / rated (满意率).
    pub satisfaction_rate: Option<f64>,
    /// The average rating of the follow-up answers.
    pub average_satisfaction: Option<f64>,
}

impl MonthStats {
    fn finish(mut self) -> Self {
        let share = |n: i64, of: i64| (of > 0).then(|| n as f64 / of as f64);
        self.response_rate = share(self.counts.responded, self.counts.raised);
        self.resolution_rate = share(self.counts.resolved, self.counts.rated);
        self.satisfaction_rate = share(self.counts.satisfied, self.counts.rated);
        self.average_satisfaction =
            (self.counts.answers > 0).then(|| self.counts.score_sum / self.counts.answers as f64);
        self
    }
    fn add(&mut self, c: &Counts) {
        self.counts.add(c);
    }
}

/// What one party called on (a department whistled) counts for in one month.
#[derive(Clone, Debug, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PartyStats {
    pub month: String,
    #[serde(flatten)]
    pub counts: crate::store::PartyCounts,
    /// Responded / called.
    pub response_rate: Option<f64>,
    /// Responded before the due time / called.
    pub in_time_rate: Option<f64>,
    /// Satisfied / rated.
    pub satisfaction_rate: Option<f64>,
    /// The average rating of its responses.
    pub average_rating: Option<f64>,
}

/// Statistics of a scope over a run of months.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct StatsReport {
    /// The scope: a unit, and the units below it.
    pub scope: String,
    pub from: String,
    pub to: String,
    /// Per month and unit, months in order, units in order; a unit appears in a month when it
    /// raised a case then.
    pub items: Vec<MonthStats>,
    /// Per month, every unit of the scope together (every month of the period, also empty ones).
    pub totals: Vec<MonthStats>,
    /// Per month and party called on by the scope's cases (departments whistled), parties in
    /// order; from the cases still stored.
    pub parties: Vec<PartyStats>,
}

/// The most months one report covers.
pub const MAX_MONTHS: usize = 36;

impl Engine {
    /// Statistics of `scope` (a unit and those below it; `""` for every unit) for the months
    /// `from` to `to`, both included, in `zone`.
    pub async fn stats(&self, scope: &str, from: Month, to: Month, zone: Zone) -> Result<StatsReport, EngineError> {
        if from > to {
            return Err(EngineError::BadRequest(msg!(
                "engine-stats-backwards",
                from = from.to_string(),
                to = to.to_string()
            )));
        }
        let mut months = vec![from];
        while *months.last().expect("one") < to {
            if months.len() >= MAX_MONTHS {
                return Err(EngineError::BadRequest(msg!("engine-stats-too-long", max = MAX_MONTHS)));
            }
            months.push(months.last().expect("one").next());
        }
        let units = if scope.is_empty() { Vec::new() } else { vec![format!("{scope}/")] };
        let in_scope = |unit: &str| scope.is_empty() || unit == scope || unit.starts_with(&format!("{scope}/"));
        // Cases purged: what they counted for, kept per unit, workflow and month.
        let kept = self.store.kept_figures().await?;
        let mut items = Vec::new();
        let mut totals = Vec::new();
        let mut parties = Vec::new();
        for m in months {
            let bad = || EngineError::BadRequest(msg!("engine-stats-month", month = m.to_string()));
            let (start, end) = (m.start(zone).ok_or_else(bad)?, m.next().start(zone).ok_or_else(bad)?);
            let live = self.store.raised_counts(&units, start, end).await?;
            let share = |n: i64, of: i64| (of > 0).then(|| n as f64 / of as f64);
            for p in self.store.party_counts(&units, start, end).await? {
                parties.push(PartyStats {
                    month: m.to_string(),
                    response_rate: share(p.responded, p.called),
                    in_time_rate: share(p.in_time, p.called),
                    satisfaction_rate: share(p.satisfied, p.rated),
                    average_rating: (p.answers > 0).then(|| p.score_sum / p.answers as f64),
                    counts: p,
                });
            }
            let mut by: BTreeMap<String, MonthStats> = BTreeMap::new();
            let month = m.to_string();
            let rows = live.iter().map(|r| (&r.unit, &r.counts));
            let purged = kept
                .iter()
                .filter(|k| k.month == month && k.counts.raised > 0 && in_scope(&k.unit))
                .map(|k| (&k.unit, &k.counts));
            for (unit, counts) in rows.chain(purged) {
                by.entry(unit.clone())
                    .or_insert_with(|| MonthStats { month: month.clone(), unit: unit.clone(), ..MonthStats::default() })
                    .add(counts);
            }
            let mut total = MonthStats { month: month.clone(), unit: scope.to_owned(), ..MonthStats::default() };
            for s in by.values() {
                total.add(&s.counts);
            }
            totals.push(total.finish());
            items.extend(by.into_values().map(MonthStats::finish));
        }
        Ok(StatsReport { scope: scope.to_owned(), from: from.to_string(), to: to.to_string(), items, totals, parties })
    }
}
