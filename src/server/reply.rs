//! Writing answers: JSON with every message in the request's language, entity tags, CSV that
//! Excel opens (UTF-8 with a byte-order mark).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::{ApiError, ApiResult};
use super::lang;

/// `value` as JSON, its messages rendered in the request's language.
pub fn json<T: Serialize>(value: &T) -> ApiResult<Response> {
    json_status(StatusCode::OK, value)
}

/// [`json`] with a status.
pub fn json_status<T: Serialize>(status: StatusCode, value: &T) -> ApiResult<Response> {
    let lang = lang::current();
    let body = yishi_core::i18n::rendering(lang, || serde_json::to_vec(value)).map_err(ApiError::internal)?;
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

/// Adds a header to an answer.
pub fn with_header(mut resp: Response, name: header::HeaderName, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
    resp
}

/// The entity tag of a case at `revision`.
pub fn etag(revision: i64) -> String {
    format!("\"{revision}\"")
}

/// A CSV file: `rows` under `header`, UTF-8 with a byte-order mark unless `bom` is false.
pub fn csv(filename: &str, header: &[String], rows: &[Vec<String>], bom: bool) -> Response {
    let out = csv_text(header, rows, bom);
    let disposition = format!("attachment; filename=\"{filename}\"");
    let mut resp = out.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// CSV text: `rows` under `header`, lines ending in CRLF, with a byte-order mark when `bom`.
pub fn csv_text(header: &[String], rows: &[Vec<String>], bom: bool) -> String {
    let mut out = String::new();
    if bom {
        out.push('\u{feff}');
    }
    let line = |cells: &[String]| cells.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(",") + "\r\n";
    out.push_str(&line(header));
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}
