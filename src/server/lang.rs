//! What a request carries through its handling: the reader's language (from
//! `Accept-Language`, else the server's default) and the request's id (`x-request-id`, made
//! when the client sends none). Both hold for everything the request's task does: handlers,
//! extractors, error responses and log lines.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use yishi_core::i18n::Lang;

/// The header that names a request.
pub const REQUEST_ID: &str = "x-request-id";

#[derive(Clone, Debug)]
struct RequestCx {
    lang: Lang,
    id: String,
}

tokio::task_local! {
    static REQUEST: RequestCx;
}

/// The language of the request being handled (the default outside a request).
pub fn current() -> Lang {
    REQUEST.try_with(|r| r.lang).unwrap_or_default()
}

/// The id of the request being handled.
pub fn request_id() -> Option<String> {
    REQUEST.try_with(|r| r.id.clone()).ok()
}

/// The language to answer `headers` in.
pub fn negotiate(headers: &axum::http::HeaderMap, default: Lang) -> Lang {
    headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).and_then(Lang::negotiate).unwrap_or(default)
}

fn new_id() -> String {
    let n: u128 = rand::random();
    format!("{:032x}", n)
}

/// A request id the client sent, if it is reasonable to echo.
fn given_id(req: &Request) -> Option<String> {
    let v = req.headers().get(REQUEST_ID)?.to_str().ok()?;
    let ok = !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| v.to_owned())
}

/// Middleware: sets the request's language and id, answers with them, and logs within a span
/// that carries the id.
pub async fn middleware(State(default): State<Lang>, req: Request, next: Next) -> Response {
    let lang = negotiate(req.headers(), default);
    let id = given_id(&req).unwrap_or_else(new_id);
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let cx = RequestCx { lang, id: id.clone() };
    let mut resp = REQUEST.scope(cx, next.run(req)).instrument(span).await;
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        headers.insert(REQUEST_ID, v);
    }
    if !headers.contains_key(header::CONTENT_LANGUAGE) {
        headers.insert(header::CONTENT_LANGUAGE, HeaderValue::from_static(lang.tag()));
    }
    headers.append(header::VARY, HeaderValue::from_static("Accept-Language"));
    resp
}
