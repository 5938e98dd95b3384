//! The printable public notice (公示) of a case: an A4 page (print stylesheet) with the
//! decision, the vote and the period, rendered from what its `public_notice` step recorded.

use std::sync::Arc;

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use yishi_core::i18n::{Lang, Message};
use yishi_core::msg;

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, ApiResult};
use super::extract::{P, Q};
use super::lang;

#[derive(Template)]
#[template(path = "notice.html")]
struct NoticePage {
    lang: &'static str,
    heading: String,
    subject: String,
    case_label: String,
    case_text: String,
    decision: Vec<(String, String)>,
    period_label: String,
    period: String,
    objections_label: String,
    objections_summary: String,
    objections: Vec<String>,
    status: String,
    unit: String,
    issued: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeQuery {
    /// The notice step, when a case has several.
    step: Option<String>,
}

pub async fn notice(
    State(st): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    P(id): P<i64>,
    Q(q): Q<NoticeQuery>,
) -> ApiResult<Response> {
    let row = st.engine.get(id).await?;
    p.require_unit(&row.unit)?;
    let def = st.engine.definition(row.version).await?;
    let data = &row.state.data;
    // The notice steps this case has been through, last first.
    let step = def
        .steps
        .iter()
        .rev()
        .filter(|s| s.kind == "public_notice" && data.get(&s.id).is_some_and(Value::is_object))
        .find(|s| q.step.as_ref().is_none_or(|want| want == &s.id))
        .ok_or_else(|| {
            let which = q.step.as_ref().map(|s| format!(" `{s}`")).unwrap_or_default();
            ApiError::not_found(msg!("api-no-notice", case = id, step = which))
        })?;
    let lang = lang::current();
    let notice = &data[&step.id];
    let r = |m: Message| m.render(lang);
    let date = |ms: Option<i64>| {
        ms.and_then(|ms| st.zone.local(ms))
            .map(|d| {
                use chrono::Datelike;
                r(msg!(
                    "date-long",
                    year = d.year().to_string(),
                    month = d.month().to_string(),
                    day = d.day().to_string()
                ))
            })
            .unwrap_or_default()
    };
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let title = data
        .get("title")
        .and_then(text)
        .or_else(|| data.get("proposal").and_then(|p| p.get("title")).and_then(text))
        .unwrap_or_default();
    let subject = notice
        .get("subject")
        .and_then(|s| serde_json::from_value::<yishi_core::model::Text>(s.clone()).ok())
        .map(|t| t.get(lang).to_owned())
        .unwrap_or_else(|| title.clone());
    let mut decision = Vec::new();
    if let Some(d) = notice.get("decision").filter(|d| !d.is_null()) {
        let n = |k: &str| d.get(k).and_then(Value::as_i64).unwrap_or(0).to_string();
        if d.get("for").is_some() {
            let tally = msg!("notice-page-tally", yes = n("for"), no = n("against"), abstain = n("abstain"));
            decision.push((r(msg!("notice-page-votes")), r(tally)));
        }
        let outcome =
            d.get("outcome").and_then(text).map(|o| def.labels.get(&o).map_or(o.clone(), |t| t.get(lang).to_owned()));
        let resolution = d.get("resolution").and_then(text);
        if let Some(words) = resolution.or(outcome) {
            decision.push((r(msg!("notice-page-decision")), words));
        }
    }
    let (from, until) = (notice["from"].as_i64(), notice["until"].as_i64());
    let objections: Vec<String> = notice["objections"]
        .as_array()
        .map(|a| a.iter().filter_map(|o| o.get("reason").and_then(text)).collect())
        .unwrap_or_default();
    let status = match notice["outcome"].as_str() {
        Some("confirmed") => msg!("notice-page-confirmed"),
        Some("sent_back") => {
            msg!("notice-page-sent-back", reason = notice["upheld"]["reason"].as_str().unwrap_or_default())
        }
        _ => msg!("notice-page-open", until = date(until)),
    };
    let unit = st.engine.active().catalog.units.get(&row.unit).map_or(row.unit.clone(), |u| u.name.clone());
    let page = NoticePage {
        lang: if lang == Lang::ZhCn { "zh-CN" } else { "en" },
        heading: r(msg!("notice-page-heading")),
        subject,
        case_label: r(msg!("notice-page-case")),
        case_text: r(msg!("notice-page-case-text", case = id, title = title)),
        decision,
        period_label: r(msg!("notice-page-period")),
        period: r(msg!("notice-page-period-text", from = date(from), until = date(until))),
        objections_label: r(msg!("notice-page-objections")),
        objections_summary: if objections.is_empty() {
            r(msg!("notice-page-objections-none"))
        } else {
            r(msg!("notice-page-objections-count", count = objections.len()))
        },
        objections,
        status: r(status),
        unit,
        issued: r(msg!("notice-page-issued", date = date(from))),
    };
    let html = page.render().map_err(|e| ApiError::internal(e.to_string()))?;
    let mut resp = html.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    Ok(resp)
}
