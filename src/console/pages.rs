//! The console's pages: sign in (an account or an API token), the first-time password change,
//! sign out, and the home page with what the signed-in person may see.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use yishi_core::i18n::{Lang, Message};
use yishi_core::msg;
use yishi_engine::service::accounts::{MIN_PASSWORD_CHARS, SessionHolder, SignInRefusal};

use super::{
    LANG_COOKIE, LOGIN_CSRF_COOKIE, SESSION_COOKIE, cookie, page_lang, principal, same, see_other, set_cookie,
};
use crate::server::AppState;

type St = State<Arc<AppState>>;
type Params = Query<HashMap<String, String>>;

/// What every page's frame needs.
pub struct Page {
    pub lang: &'static str,
    pub l: Lang,
    pub title: String,
    /// The signed-in person's name, when there is one.
    pub who: Option<String>,
    /// The anti-forgery token the page's forms send back.
    pub csrf: String,
    /// Whether the admin pages are offered.
    pub admin: bool,
}

impl Page {
    fn new(l: Lang, title: &'static str, who: Option<String>, csrf: String) -> Page {
        Page { lang: l.tag(), l, title: Message::new(title).render(l), who, csrf, admin: false }
    }
    /// A catalog message in the page's language.
    pub fn t(&self, key: &'static str) -> String {
        Message::new(key).render(self.l)
    }
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    page: Page,
    error: Option<String>,
    name: String,
}

#[derive(Template)]
#[template(path = "console/password.html")]
struct PasswordPage {
    page: Page,
    first: bool,
    error: Option<String>,
    hint: String,
}

#[derive(Template)]
#[template(path = "console/home.html")]
struct HomePage {
    page: Page,
    notice: Option<String>,
    role: String,
    scope: String,
    acts_as: String,
    stages: Vec<String>,
    units: Vec<super::overview::UnitOverview>,
    reload: Option<super::overview::ReloadLine>,
}

/// A console page knows its frame (and so its language).
pub trait Localised {
    fn lang(&self) -> &'static str;
}

macro_rules! localised {
    ($($t:ty),*) => {$(impl $crate::console::pages::Localised for $t { fn lang(&self) -> &'static str { self.page.lang } })*};
}
pub(crate) use localised;
localised!(LoginPage, PasswordPage, HomePage);

/// Renders a page (for the other console modules).
pub fn html_page(t: &(impl Template + Localised), headers: &HeaderMap, chose_lang: Option<Lang>) -> Response {
    html(t, headers, chose_lang)
}

/// A signed-in person on a page: the session, what they may do, the page's language.
pub struct Signed {
    pub holder: SessionHolder,
    pub principal: crate::server::auth::Principal,
    pub lang: Lang,
    pub chose: Option<Lang>,
}

impl Signed {
    pub fn page(&self, l: Lang, title: &'static str) -> Page {
        let mut p = Page::new(l, title, Some(self.holder.name.clone()), self.holder.session.csrf.clone());
        p.admin = self.principal.role == crate::server::auth::ApiRole::Admin;
        p
    }
}

/// The signed-in person, or the redirect to sign in (or to change a first password).
pub async fn signed(st: &AppState, headers: &HeaderMap, q: &HashMap<String, String>) -> Result<Signed, Response> {
    let (lang, chose) = lang_of(headers, q);
    let Some((_, holder)) = holder(st, headers).await else { return Err(see_other("/login")) };
    if holder.must_change {
        return Err(see_other("/password"));
    }
    let Some(principal) = principal(&holder) else { return Err(see_other("/login")) };
    Ok(Signed { holder, principal, lang, chose })
}

/// Renders a page, remembering a language chosen with `?lang=`.
fn html(t: &(impl Template + Localised), headers: &HeaderMap, chose_lang: Option<Lang>) -> Response {
    match t.render() {
        Ok(body) => {
            let mut resp = Html(body).into_response();
            if let Ok(v) = axum::http::HeaderValue::from_str(t.lang()) {
                resp.headers_mut().insert(header::CONTENT_LANGUAGE, v);
            }
            if let Some(l) = chose_lang {
                let c = set_cookie(headers, LANG_COOKIE, l.tag().to_owned(), Some(365 * 86_400));
                resp.headers_mut().append(header::SET_COOKIE, c);
            }
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "a console page failed to render");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn lang_of(headers: &HeaderMap, q: &HashMap<String, String>) -> (Lang, Option<Lang>) {
    let (l, chosen) = page_lang(headers, q.get("lang").map(String::as_str));
    (l, chosen.then_some(l))
}

/// The live session the request's cookie names.
async fn holder(st: &AppState, headers: &HeaderMap) -> Option<(String, SessionHolder)> {
    let secret = cookie(headers, SESSION_COOKIE)?;
    match st.engine.session_holder(&secret).await {
        Ok(h) => h.map(|h| (secret, h)),
        Err(e) => {
            tracing::warn!(error = %e, "reading a console session");
            None
        }
    }
}

fn random_token() -> String {
    let n: u128 = rand::random();
    format!("{n:032x}")
}

pub async fn home(State(st): St, headers: HeaderMap, Query(q): Params) -> Response {
    let (l, chose) = lang_of(&headers, &q);
    let Some((_, h)) = holder(&st, &headers).await else { return see_other("/login") };
    if h.must_change {
        return see_other("/password");
    }
    let Some(p) = principal(&h) else { return see_other("/login") };
    let units = match super::overview::units(&st, &p, l).await {
        Ok(u) => u,
        Err(e) => return internal(&e),
    };
    let notice = q.contains_key("changed").then(|| Message::new("console-password-changed").render(l));
    let page = HomePage {
        page: Page::new(l, "console-home", Some(h.name.clone()), h.session.csrf.clone()),
        notice,
        role: Message::new(match p.role.as_str() {
            "admin" => "console-role-admin",
            "operator" => "console-role-operator",
            _ => "console-role-viewer",
        })
        .render(l),
        scope: if p.scope == "*" { Message::new("console-scope-all").render(l) } else { p.scope.clone() },
        acts_as: if p.acts_as.is_empty() { "-".into() } else { p.acts_as.join("、") },
        stages: super::overview::stage_titles(&st, l),
        units,
        reload: super::overview::reload(&st, &p, l),
    };
    html(&page, &headers, chose)
}

pub async fn login_form(State(st): St, headers: HeaderMap, Query(q): Params) -> Response {
    let (l, chose) = lang_of(&headers, &q);
    if holder(&st, &headers).await.is_some() {
        return see_other("/");
    }
    login_page(&headers, l, chose, None, String::new(), StatusCode::OK)
}

/// The sign-in form with a fresh anti-forgery token (also set as a cookie: the form's copy
/// must match it).
fn login_page(
    headers: &HeaderMap,
    l: Lang,
    chose: Option<Lang>,
    error: Option<Message>,
    name: String,
    status: StatusCode,
) -> Response {
    let csrf = random_token();
    let page = LoginPage {
        page: Page::new(l, "console-sign-in", None, csrf.clone()),
        error: error.map(|m| m.render(l)),
        name,
    };
    let mut resp = html(&page, headers, chose);
    *resp.status_mut() = status;
    resp.headers_mut().append(header::SET_COOKIE, set_cookie(headers, LOGIN_CSRF_COOKIE, csrf, None));
    resp
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    token: String,
}

pub async fn login(State(st): St, req: Request) -> Response {
    let headers = req.headers().clone();
    let addr = super::peer(req.extensions());
    let (l, _) = page_lang(&headers, None);
    let Ok(Form(f)) = Form::<LoginForm>::from_request(req, &()).await else {
        return login_page(&headers, l, None, Some(msg!("console-bad-form")), String::new(), StatusCode::BAD_REQUEST);
    };
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same(&expected, &f.csrf) {
        return login_page(&headers, l, None, Some(msg!("console-csrf")), f.name, StatusCode::FORBIDDEN);
    }
    if !st.limiter.allow(addr, st.engine.now()) {
        let m = msg!("console-too-many", per_minute = super::SIGN_INS_PER_MINUTE);
        return login_page(&headers, l, None, Some(m), f.name, StatusCode::TOO_MANY_REQUESTS);
    }
    let started = if !f.token.trim().is_empty() {
        match st.engine.sign_in_token(&f.token).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(_)) => Err(msg!("console-token-refused")),
            Err(e) => return internal(&e),
        }
    } else {
        match st.engine.sign_in(&f.name, &f.password).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(SignInRefusal::Invalid)) => Err(msg!("console-sign-in-refused")),
            Ok(Err(SignInRefusal::Disabled)) => Err(msg!("console-account-disabled")),
            Ok(Err(SignInRefusal::Locked { until })) => {
                Err(msg!("console-account-locked", until = st.local_time(until).chars().take(16).collect::<String>()))
            }
            Err(e) => return internal(&e),
        }
    };
    match started {
        Ok(s) => {
            let mut resp = see_other("/");
            let max_age = (s.row.expires_at - s.row.created_at) / 1000;
            resp.headers_mut()
                .append(header::SET_COOKIE, set_cookie(&headers, SESSION_COOKIE, s.secret, Some(max_age)));
            resp.headers_mut()
                .append(header::SET_COOKIE, set_cookie(&headers, LOGIN_CSRF_COOKIE, String::new(), Some(0)));
            resp
        }
        Err(m) => login_page(&headers, l, None, Some(m), f.name, StatusCode::UNAUTHORIZED),
    }
}

pub fn internal(e: &yishi_engine::service::EngineError) -> Response {
    tracing::error!(error = %e, "console");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(State(st): St, headers: HeaderMap, Form(f): Form<CsrfOnly>) -> Response {
    let (l, _) = page_lang(&headers, None);
    let Some((secret, h)) = holder(&st, &headers).await else { return see_other("/login") };
    if !same(&h.session.csrf, &f.csrf) {
        return super::refused(StatusCode::FORBIDDEN, l, &msg!("console-csrf"));
    }
    if let Err(e) = st.engine.sign_out(&secret).await {
        return internal(&e);
    }
    let mut resp = see_other("/login");
    resp.headers_mut().append(header::SET_COOKIE, set_cookie(&headers, SESSION_COOKIE, String::new(), Some(0)));
    resp
}

fn password_page(
    h: &SessionHolder,
    l: Lang,
    error: Option<Message>,
    status: StatusCode,
    headers: &HeaderMap,
) -> Response {
    let page = PasswordPage {
        page: Page::new(l, "console-change-password", Some(h.name.clone()), h.session.csrf.clone()),
        first: h.must_change,
        error: error.map(|m| m.render(l)),
        hint: msg!("console-password-hint", min = MIN_PASSWORD_CHARS).render(l),
    };
    let mut resp = html(&page, headers, None);
    *resp.status_mut() = status;
    resp
}

pub async fn password_form(State(st): St, headers: HeaderMap, Query(q): Params) -> Response {
    let (l, chose) = lang_of(&headers, &q);
    let Some((_, h)) = holder(&st, &headers).await else { return see_other("/login") };
    if h.account_id.is_none() {
        return see_other("/");
    }
    let mut resp = password_page(&h, l, None, StatusCode::OK, &headers);
    if let Some(c) = chose {
        resp.headers_mut()
            .append(header::SET_COOKIE, set_cookie(&headers, LANG_COOKIE, c.tag().to_owned(), Some(365 * 86_400)));
    }
    resp
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    old: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    again: String,
}

pub async fn password(State(st): St, headers: HeaderMap, Form(f): Form<PasswordForm>) -> Response {
    let (l, _) = page_lang(&headers, None);
    let Some((_, h)) = holder(&st, &headers).await else { return see_other("/login") };
    let Some(id) = h.account_id else { return see_other("/") };
    if !same(&h.session.csrf, &f.csrf) {
        return password_page(&h, l, Some(msg!("console-csrf")), StatusCode::FORBIDDEN, &headers);
    }
    if f.new != f.again {
        return password_page(
            &h,
            l,
            Some(msg!("console-passwords-differ")),
            StatusCode::UNPROCESSABLE_ENTITY,
            &headers,
        );
    }
    match st.engine.change_password(id, &f.old, &f.new).await {
        Ok(()) => see_other("/?changed=1"),
        Err(yishi_engine::service::EngineError::Refused { message, .. }) => {
            password_page(&h, l, Some(message), StatusCode::UNPROCESSABLE_ENTITY, &headers)
        }
        Err(e) => internal(&e),
    }
}
