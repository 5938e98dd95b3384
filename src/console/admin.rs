//! The console's pages for admins: accounts and tokens (list, create with a first password or a
//! secret shown once, disable, enable, reset a password, revoke), inside the admin's own scope;
//! and operations (the last reload, deliveries given up on, with retry).

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use yishi_core::i18n::{Lang, Message};
use yishi_core::msg;
use yishi_engine::service::EngineError;
use yishi_engine::service::access::TokenSpec;
use yishi_engine::service::accounts::AccountSpec;

use super::pages::{Page, Signed, html_page, internal, localised, signed};
use super::{same, see_other};
use crate::server::AppState;
use crate::server::auth::ApiRole;

type St = State<Arc<AppState>>;
type Params = Query<HashMap<String, String>>;

localised!(AccountsPage, OperationsPage);

#[derive(Template)]
#[template(path = "console/accounts.html")]
struct AccountsPage {
    page: Page,
    notice: Option<String>,
    error: Option<String>,
    /// A first password or a token's secret, shown this once.
    secret: Option<(String, String)>,
    accounts: Vec<[String; 6]>,
    tokens: Vec<[String; 5]>,
    default_scope: String,
}

#[derive(Template)]
#[template(path = "console/operations.html")]
struct OperationsPage {
    page: Page,
    notice: Option<String>,
    reload: Option<super::overview::ReloadLine>,
    /// When, what started it, whether clean, what it activated.
    history: Vec<[String; 4]>,
    /// Deadlines falling due in the next 7 days: when, the case, its title, the step, how long.
    due: Vec<[String; 5]>,
    dead: Vec<[String; 5]>,
}

fn text(l: Lang, key: &'static str) -> String {
    Message::new(key).render(l)
}

/// The refusal for someone who is not an admin (the engine calls repeat the scope rule).
fn not_admin(s: &Signed) -> Option<Response> {
    let refused = s.principal.require(ApiRole::Admin).is_err();
    refused.then(|| super::refused(StatusCode::FORBIDDEN, s.lang, &msg!("console-not-allowed")))
}

/// Whether the admin's scope covers `scope` (`*` only for admins of everything).
fn covers(s: &Signed, scope: &str) -> bool {
    if scope == "*" { s.principal.scope == "*" } else { s.principal.sees(scope) }
}

async fn accounts_page(
    st: &AppState,
    s: &Signed,
    notice: Option<Message>,
    error: Option<Message>,
    secret: Option<(String, String)>,
) -> Result<AccountsPage, EngineError> {
    let l = s.lang;
    let now = st.engine.now();
    let accounts = st
        .engine
        .accounts()
        .await?
        .into_iter()
        .filter(|a| covers(s, &a.scope))
        .map(|a| {
            let state = match (a.disabled_at, a.locked_until.filter(|u| *u > now), a.must_change) {
                (Some(_), _, _) => "console-account-disabled-state",
                (None, Some(_), _) => "console-account-locked-state",
                (None, None, true) => "console-account-new-state",
                _ => "console-account-active-state",
            };
            [a.id.to_string(), a.name, a.role, a.scope, a.acts_as.join("、"), text(l, state)]
        })
        .collect();
    let tokens = st
        .engine
        .tokens()
        .await?
        .into_iter()
        .filter(|t| covers(s, &t.scope))
        .map(|t| {
            let state =
                if t.revoked_at.is_some() { "console-token-revoked-state" } else { "console-account-active-state" };
            [t.id.to_string(), t.name, t.role, t.scope, text(l, state)]
        })
        .collect();
    Ok(AccountsPage {
        page: s.page(l, "console-accounts"),
        notice: notice.map(|m| m.render(l)),
        error: error.map(|m| m.render(l)),
        secret,
        accounts,
        tokens,
        default_scope: s.principal.scope.clone(),
    })
}

pub async fn accounts(State(st): St, headers: HeaderMap, Query(q): Params) -> Response {
    let s = match signed(&st, &headers, &q).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = not_admin(&s) {
        return r;
    }
    let notice = q.contains_key("done").then(|| msg!("console-action-done"));
    match accounts_page(&st, &s, notice, None, None).await {
        Ok(p) => html_page(&p, &headers, s.chose),
        Err(e) => internal(&e),
    }
}

/// Every form of the accounts page: `do` says which.
pub async fn accounts_post(State(st): St, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let s = match signed(&st, &headers, &HashMap::new()).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = not_admin(&s) {
        return r;
    }
    if !same(&s.holder.session.csrf, f.get("csrf").map_or("", String::as_str)) {
        return super::refused(StatusCode::FORBIDDEN, s.lang, &msg!("console-csrf"));
    }
    let get = |k: &str| f.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let id = get("id").parse::<i64>().unwrap_or(0);
    let result: Result<Option<(String, String)>, Message> = match get("do").as_str() {
        "create_account" | "create_token" => {
            let (name, role, scope) = (get("name"), get("role"), get("scope"));
            let acts: Vec<String> =
                get("acts_as").split([',', '，', '、', ' ']).filter(|x| !x.is_empty()).map(str::to_owned).collect();
            if !covers(&s, &scope) {
                Err(msg!("api-scope-beyond", scope = &scope, own = &s.principal.scope))
            } else if ApiRole::parse(&role).is_none() {
                Err(msg!("account-bad-role", role = &role))
            } else if get("do") == "create_account" {
                let password = yishi_engine::service::accounts::first_password();
                let spec = AccountSpec { name: &name, role: &role, scope: &scope, acts_as: &acts, password: &password };
                match st.engine.create_account(&spec).await {
                    Ok(a) => Ok(Some((msg!("console-first-password-of", name = &a.name).render(s.lang), password))),
                    Err(e) => Err(e.message()),
                }
            } else if name.is_empty() {
                Err(msg!("account-bad-name"))
            } else {
                let spec = TokenSpec { name: &name, role: &role, scope: &scope, acts_as: &acts };
                match st.engine.create_token(&spec).await {
                    Ok((t, secret)) => {
                        Ok(Some((msg!("console-token-secret-of", name = &t.name).render(s.lang), secret)))
                    }
                    Err(e) => Err(e.message()),
                }
            }
        }
        op @ ("disable" | "enable" | "reset") => match st.engine.account(id).await {
            Ok(a) if covers(&s, &a.scope) => match op {
                "disable" => st.engine.set_account_disabled(id, true).await.map(|_| None).map_err(|e| e.message()),
                "enable" => st.engine.set_account_disabled(id, false).await.map(|_| None).map_err(|e| e.message()),
                _ => {
                    let password = yishi_engine::service::accounts::first_password();
                    match st.engine.reset_password(id, &password).await {
                        Ok(a) => Ok(Some((msg!("console-first-password-of", name = &a.name).render(s.lang), password))),
                        Err(e) => Err(e.message()),
                    }
                }
            },
            _ => Err(msg!("account-none", id = id)),
        },
        "revoke" => match st.engine.tokens().await {
            Ok(ts) if ts.iter().any(|t| t.id == id && covers(&s, &t.scope)) => {
                st.engine.revoke_token(id).await.map(|_| None).map_err(|e| e.message())
            }
            Ok(_) => Err(msg!("api-no-token-id", id = id)),
            Err(e) => return internal(&e),
        },
        _ => Err(msg!("console-bad-form")),
    };
    match result {
        Ok(None) => see_other("/accounts?done=1"),
        // A secret is shown once, on this answer only (never in a URL).
        Ok(Some(secret)) => match accounts_page(&st, &s, Some(msg!("console-action-done")), None, Some(secret)).await {
            Ok(p) => html_page(&p, &headers, None),
            Err(e) => internal(&e),
        },
        Err(m) => match accounts_page(&st, &s, None, Some(m), None).await {
            Ok(p) => {
                let mut r = html_page(&p, &headers, None);
                *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
                r
            }
            Err(e) => internal(&e),
        },
    }
}

pub async fn operations(State(st): St, headers: HeaderMap, Query(q): Params) -> Response {
    let s = match signed(&st, &headers, &q).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = not_admin(&s) {
        return r;
    }
    operations_page(&st, &s, &headers, q.contains_key("done").then(|| msg!("console-action-done"))).await
}

async fn operations_page(st: &AppState, s: &Signed, headers: &HeaderMap, notice: Option<Message>) -> Response {
    let l = s.lang;
    let mut dead = Vec::new();
    match st.engine.dead_letters().await {
        Ok(ds) => {
            for d in ds {
                // Only deliveries of cases in the admin's scope.
                let Ok(row) = st.engine.get(d.instance).await else { continue };
                if !s.principal.sees(&row.unit) {
                    continue;
                }
                let what = d.notice.get("notice").and_then(|n| n.get("webhook")).and_then(|w| w.as_str()).map_or_else(
                    || d.notice.get("kind").and_then(|k| k.as_str()).unwrap_or("-").to_owned(),
                    str::to_owned,
                );
                dead.push([
                    d.id.to_string(),
                    d.instance.to_string(),
                    what,
                    d.attempts.to_string(),
                    d.last_error.unwrap_or_default(),
                ]);
            }
        }
        Err(e) => return internal(&e),
    }
    let history = st
        .engine
        .reload_history()
        .into_iter()
        .map(|r| {
            let activated = r.activated.iter().map(|(k, v)| format!("{k} → {v}")).collect::<Vec<_>>().join("；");
            let errors = r.diagnostics.iter().filter(|d| d.is_error()).count();
            let state =
                if r.ok { text(l, "console-reload-ok") } else { msg!("console-reload-n-errors", n = errors).render(l) };
            [st.local_time(r.at).chars().take(16).collect(), r.trigger, state, activated]
        })
        .collect();
    let due = match super::overview::due_soon(st, &s.principal, l).await {
        Ok(d) => d,
        Err(e) => return internal(&e),
    };
    let page = OperationsPage {
        page: s.page(l, "console-operations"),
        notice: notice.map(|m| m.render(l)),
        reload: super::overview::reload(st, &s.principal, l),
        history,
        due,
        dead,
    };
    html_page(&page, headers, s.chose)
}

/// Retries a delivery given up on (one, by id).
pub async fn retry(State(st): St, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let s = match signed(&st, &headers, &HashMap::new()).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = not_admin(&s) {
        return r;
    }
    if !same(&s.holder.session.csrf, f.get("csrf").map_or("", String::as_str)) {
        return super::refused(StatusCode::FORBIDDEN, s.lang, &msg!("console-csrf"));
    }
    let Some(id) = f.get("id").and_then(|v| v.parse::<i64>().ok()) else {
        return super::refused(StatusCode::BAD_REQUEST, s.lang, &msg!("console-bad-form"));
    };
    // Only a delivery of a case in scope.
    let in_scope = match st.engine.dead_letters().await {
        Ok(ds) => match ds.iter().find(|d| d.id == id) {
            Some(d) => st.engine.get(d.instance).await.is_ok_and(|r| s.principal.sees(&r.unit)),
            None => false,
        },
        Err(e) => return internal(&e),
    };
    if !in_scope {
        return super::refused(StatusCode::NOT_FOUND, s.lang, &msg!("console-no-delivery", id = id));
    }
    match st.engine.retry_dead(Some(id)).await {
        Ok(_) => see_other("/operations?done=1"),
        Err(e) => internal(&e),
    }
}
