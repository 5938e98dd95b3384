//! Statistics: the three rates (响应率、解决率、满意率) per unit and month, as JSON or as CSV that
//! Excel opens (`GET /api/v1/stats`); the same table `yishi stats` prints.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use yishi_core::i18n::{Lang, Message};
use yishi_core::msg;
use yishi_engine::service::stats::{Month, MonthStats, StatsReport};

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, ApiResult};
use super::extract::Q;
use super::lang;
use super::reply::{csv, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    unit: Option<String>,
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
    bom: Option<bool>,
}

/// A month given as `YYYY-MM`, or `default`.
pub fn month_arg(name: &str, value: Option<&str>, default: Month) -> Result<Month, Message> {
    match value {
        None => Ok(default),
        Some(v) => Month::parse(v).ok_or_else(|| msg!("api-bad-month", name = name, value = v)),
    }
}

pub async fn stats(
    State(st): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Q(q): Q<StatsQuery>,
) -> ApiResult<Response> {
    let scope = match &q.unit {
        Some(u) => {
            p.require_unit(u)?;
            u.clone()
        }
        None if p.scope == "*" => String::new(),
        None => p.scope.clone(),
    };
    let now = Month::of(st.engine.now(), st.zone).unwrap_or(Month { year: 2026, month: 1 });
    let to = month_arg("to", q.to.as_deref(), now).map_err(|m| ApiError::bad_request(m).field("to"))?;
    let from = month_arg("from", q.from.as_deref(), to).map_err(|m| ApiError::bad_request(m).field("from"))?;
    let report = st.engine.stats(&scope, from, to, st.zone).await?;
    match q.format.as_deref() {
        None | Some("json") => json(&report),
        Some("csv") => {
            let (header, rows) = table(&report, lang::current());
            Ok(csv(&format!("stats-{from}-{to}.csv"), &header, &rows, q.bom.unwrap_or(true)))
        }
        Some(other) => {
            Err(ApiError::bad_request(msg!("api-unknown-format", value = other, known = "json, csv")).field("format"))
        }
    }
}

/// The parties called on (departments whistled) as a table: a row per month and party.
pub fn parties_table(report: &StatsReport, lang: Lang) -> (Vec<String>, Vec<Vec<String>>) {
    let header = [
        "stats-month",
        "stats-party",
        "stats-called",
        "stats-responded",
        "stats-response-rate",
        "stats-in-time-rate",
        "stats-rated",
        "stats-satisfaction-rate",
        "stats-average",
    ]
    .iter()
    .map(|k| Message::new(k).render(lang))
    .collect();
    let rate = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0));
    let rows = report
        .parties
        .iter()
        .map(|p| {
            let c = &p.counts;
            vec![
                p.month.clone(),
                c.party.clone(),
                c.called.to_string(),
                c.responded.to_string(),
                rate(p.response_rate),
                rate(p.in_time_rate),
                c.rated.to_string(),
                rate(p.satisfaction_rate),
                p.average_rating.map_or_else(|| "-".to_owned(), |a| format!("{a:.2}")),
            ]
        })
        .collect();
    (header, rows)
}

/// The report as a table: a row per month and unit, then a total per month.
pub fn table(report: &StatsReport, lang: Lang) -> (Vec<String>, Vec<Vec<String>>) {
    let header = [
        "stats-month",
        "stats-unit",
        "stats-raised",
        "stats-responded",
        "stats-response-rate",
        "stats-rated",
        "stats-resolved",
        "stats-resolution-rate",
        "stats-satisfied",
        "stats-satisfaction-rate",
        "stats-overdue",
        "stats-average",
    ]
    .iter()
    .map(|k| Message::new(k).render(lang))
    .collect();
    let total = msg!("stats-total").render(lang);
    let row = |s: &MonthStats, unit: String| {
        let c = &s.counts;
        let rate = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0));
        vec![
            s.month.clone(),
            unit,
            c.raised.to_string(),
            c.responded.to_string(),
            rate(s.response_rate),
            c.rated.to_string(),
            c.resolved.to_string(),
            rate(s.resolution_rate),
            c.satisfied.to_string(),
            rate(s.satisfaction_rate),
            c.overdue.to_string(),
            s.average_satisfaction.map_or_else(|| "-".to_owned(), |a| format!("{a:.2}")),
        ]
    };
    let mut rows: Vec<Vec<String>> = Vec::new();
    for t in &report.totals {
        rows.extend(report.items.iter().filter(|s| s.month == t.month).map(|s| row(s, s.unit.clone())));
        let label = if report.scope.is_empty() { total.clone() } else { format!("{} {total}", report.scope) };
        rows.push(row(t, label));
    }
    (header, rows)
}
