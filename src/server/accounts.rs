//! Staff accounts and API tokens (admins only, inside their own scope): list, create (a token's
//! secret is shown once), disable, enable, reset a password, revoke. The console's pages use the
//! same engine calls.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::Response;
use yishi_core::msg;
use yishi_engine::service::access::TokenSpec;
use yishi_engine::service::accounts::AccountSpec;

use super::AppState;
use super::auth::{ApiRole, Principal};
use super::error::{ApiError, ApiResult};
use super::extract::{Body, P};
use super::reply::{json, json_status, with_header};
use super::types::*;

type St = State<Arc<AppState>>;

/// An admin manages accounts and tokens inside their own scope only.
fn within(p: &Principal, scope: &str) -> ApiResult<()> {
    p.require(ApiRole::Admin)?;
    let ok = if scope == "*" { p.scope == "*" } else { p.sees(scope) };
    if ok {
        Ok(())
    } else {
        Err(ApiError::forbidden(msg!("api-scope-beyond", scope = scope, own = &p.scope)).field("/scope"))
    }
}

fn role_ok(role: &str) -> ApiResult<()> {
    ApiRole::parse(role)
        .map(|_| ())
        .ok_or_else(|| ApiError::invalid(msg!("account-bad-role", role = role)).field("/role"))
}

fn field(e: yishi_engine::service::EngineError) -> ApiError {
    let e = ApiError::from(e);
    match e.field.clone() {
        Some(f) if !f.starts_with('/') => ApiError { field: Some(format!("/{f}")), ..e },
        _ => e,
    }
}

pub async fn list(State(st): St, Extension(p): Extension<Principal>) -> ApiResult<Response> {
    p.require(ApiRole::Admin)?;
    let items = st.engine.accounts().await?.into_iter().filter(|a| within(&p, &a.scope).is_ok()).collect();
    json(&AccountList { items })
}

pub async fn create(State(st): St, Extension(p): Extension<Principal>, b: Body<NewAccountBody>) -> ApiResult<Response> {
    let b = b.value;
    within(&p, &b.scope)?;
    role_ok(&b.role)?;
    let spec =
        AccountSpec { name: &b.name, role: &b.role, scope: &b.scope, acts_as: &b.acts_as, password: &b.password };
    let row = st.engine.create_account(&spec).await.map_err(field)?;
    let location = format!("/api/v1/accounts/{}", row.id);
    Ok(with_header(json_status(StatusCode::CREATED, &row)?, header::LOCATION, &location))
}

async fn managed(st: &AppState, p: &Principal, id: i64) -> ApiResult<yishi_engine::store::AccountRow> {
    p.require(ApiRole::Admin)?;
    let a = st.engine.account(id).await?;
    // Outside the scope looks the same as not existing.
    within(p, &a.scope).map_err(|_| ApiError::not_found(msg!("account-none", id = id)))?;
    Ok(a)
}

pub async fn disable(State(st): St, Extension(p): Extension<Principal>, P(id): P<i64>) -> ApiResult<Response> {
    managed(&st, &p, id).await?;
    json(&st.engine.set_account_disabled(id, true).await?)
}

pub async fn enable(State(st): St, Extension(p): Extension<Principal>, P(id): P<i64>) -> ApiResult<Response> {
    managed(&st, &p, id).await?;
    json(&st.engine.set_account_disabled(id, false).await?)
}

pub async fn reset_password(
    State(st): St,
    Extension(p): Extension<Principal>,
    P(id): P<i64>,
    b: Body<PasswordBody>,
) -> ApiResult<Response> {
    managed(&st, &p, id).await?;
    json(&st.engine.reset_password(id, &b.value.password).await.map_err(field)?)
}

pub async fn tokens(State(st): St, Extension(p): Extension<Principal>) -> ApiResult<Response> {
    p.require(ApiRole::Admin)?;
    let items = st.engine.tokens().await?.into_iter().filter(|t| within(&p, &t.scope).is_ok()).collect();
    json(&TokenList { items })
}

pub async fn create_token(
    State(st): St,
    Extension(p): Extension<Principal>,
    b: Body<NewTokenBody>,
) -> ApiResult<Response> {
    let b = b.value;
    within(&p, &b.scope)?;
    role_ok(&b.role)?;
    if b.name.trim().is_empty() {
        return Err(ApiError::invalid(msg!("account-bad-name")).field("/name"));
    }
    let spec = TokenSpec { name: b.name.trim(), role: &b.role, scope: &b.scope, acts_as: &b.acts_as };
    let (token, secret) = st.engine.create_token(&spec).await?;
    json_status(StatusCode::CREATED, &NewTokenResult { token, secret })
}

pub async fn revoke_token(State(st): St, Extension(p): Extension<Principal>, P(id): P<i64>) -> ApiResult<Response> {
    p.require(ApiRole::Admin)?;
    let Some(t) = st.engine.tokens().await?.into_iter().find(|t| t.id == id) else {
        return Err(ApiError::not_found(msg!("api-no-token-id", id = id)));
    };
    within(&p, &t.scope).map_err(|_| ApiError::not_found(msg!("api-no-token-id", id = id)))?;
    json(&Revoked { revoked: st.engine.revoke_token(id).await? })
}
