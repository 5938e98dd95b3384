//! The admin console in the browser, served at `/` by the same binary: server-rendered HTML
//! (askama, escaped), Chinese first (`Accept-Language`, switchable on every page), no script.
//! Staff sign in with an account (or an API token); the session is an HttpOnly, SameSite=Strict
//! cookie whose hash is stored in the database, and every form carries the session's
//! anti-forgery token. Authorisation is the API's own (`Principal`), and every change goes
//! through the engine's service calls.

mod admin;
mod cases;
mod overview;
mod pages;
mod rules;
mod workflows;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cookie::{Cookie, SameSite};
use subtle::ConstantTimeEq;
use yishi_core::i18n::{Lang, Message};
use yishi_engine::service::accounts::SessionHolder;

use crate::server::AppState;
use crate::server::auth::{ApiRole, Principal};

/// The session cookie.
pub const SESSION_COOKIE: &str = "yishi_session";
/// The anti-forgery cookie of the sign-in form (before there is a session).
pub const LOGIN_CSRF_COOKIE: &str = "yishi_login";
/// The language a person chose.
pub const LANG_COOKIE: &str = "yishi_lang";

/// Sign-in attempts one address may make in a minute.
pub const SIGN_INS_PER_MINUTE: u32 = 10;

/// The console's routes, to merge into the server's router.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/password", get(pages::password_form).post(pages::password))
        .route("/cases", get(cases::list).post(cases::start))
        .route("/cases.csv", get(cases::csv))
        .route("/cases/{id}", get(cases::case))
        .route("/cases/{id}/act", post(cases::act))
        .route("/cases/{id}/diagram.svg", get(cases::diagram))
        .route("/accounts", get(admin::accounts).post(admin::accounts_post))
        .route("/operations", get(admin::operations))
        .route("/rules", get(rules::files))
        .route("/rules/edit", get(rules::edit).post(rules::act))
        .route("/operations/retry", post(admin::retry))
        .route("/workflows", get(workflows::list))
        .route("/workflows/{*path}", get(workflows::workflow))
        .route("/assets/console.css", get(stylesheet))
        .layer(axum::middleware::from_fn(security_headers))
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../assets/console.css"),
    )
        .into_response()
}

/// Headers on every console answer: no inline script, nothing framed, no sniffing.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    // A drawing sets its own (stricter) policy.
    if h.contains_key(header::CONTENT_SECURITY_POLICY) {
        return resp;
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// A cookie's value from the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// Whether the request came over https (directly or through a proxy that says so).
fn secure(headers: &HeaderMap) -> bool {
    headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, the whole site; Secure over https.
pub fn set_cookie(headers: &HeaderMap, name: &'static str, value: String, max_age_s: Option<i64>) -> HeaderValue {
    let mut c = Cookie::build((name, value)).http_only(true).same_site(SameSite::Strict).path("/");
    if secure(headers) {
        c = c.secure(true);
    }
    if let Some(s) = max_age_s {
        c = c.max_age(cookie::time::Duration::seconds(s));
    }
    HeaderValue::from_str(&c.build().to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The language of a console page: `?lang=`, then the person's choice, then
/// `Accept-Language`, else Chinese.
pub fn page_lang(headers: &HeaderMap, query: Option<&str>) -> (Lang, bool) {
    if let Some(l) = query.and_then(Lang::parse) {
        return (l, true);
    }
    if let Some(l) = cookie(headers, LANG_COOKIE).as_deref().and_then(Lang::parse) {
        return (l, false);
    }
    (crate::server::lang::negotiate(headers, Lang::ZhCn), false)
}

/// Whether two secrets are equal, in constant time.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The person behind a session, as the API's authorisation sees them.
pub fn principal(h: &SessionHolder) -> Option<Principal> {
    Some(Principal {
        token_id: h.token_id.unwrap_or(0),
        name: h.name.clone(),
        role: ApiRole::parse(&h.role)?,
        scope: h.scope.clone(),
        acts_as: h.acts_as.clone(),
    })
}

/// Counts sign-in attempts per address in the current minute.
#[derive(Default)]
pub struct SignInLimiter {
    windows: Mutex<HashMap<IpAddr, (i64, u32)>>,
}

impl SignInLimiter {
    /// Counts one attempt from `addr` at `now_ms`; false when the address has used its minute.
    pub fn allow(&self, addr: Option<IpAddr>, now_ms: i64) -> bool {
        let addr = addr.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let minute = now_ms / 60_000;
        let mut w = self.windows.lock().expect("limiter lock");
        if w.len() > 10_000 {
            w.retain(|_, (m, _)| *m == minute);
        }
        let e = w.entry(addr).or_insert((minute, 0));
        if e.0 != minute {
            *e = (minute, 0);
        }
        e.1 += 1;
        e.1 <= SIGN_INS_PER_MINUTE
    }
}

/// The peer address the server recorded for the connection, if any.
pub fn peer(req_ext: &axum::http::Extensions) -> Option<IpAddr> {
    req_ext.get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip())
}

/// A redirect after a form (303: the browser follows with GET).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// A page refused: the status and the message in the reader's language.
pub fn refused(status: StatusCode, lang: Lang, m: &Message) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], m.render(lang)).into_response()
}
