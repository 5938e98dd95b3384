//! Bearer tokens: a role (admin, operator, viewer) and a scope (all, or a unit and the units
//! below it). Only a SHA-256 hash of each secret is stored; hashes are compared in constant
//! time; every request reads the token afresh, so a revoked token stops working at once.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use yishi_engine::store::Store;

use super::AppState;
use super::error::ApiError;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApiRole {
    Viewer,
    Operator,
    Admin,
}

impl ApiRole {
    pub fn parse(s: &str) -> Option<ApiRole> {
        match s {
            "viewer" => Some(ApiRole::Viewer),
            "operator" => Some(ApiRole::Operator),
            "admin" => Some(ApiRole::Admin),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ApiRole::Viewer => "viewer",
            ApiRole::Operator => "operator",
            ApiRole::Admin => "admin",
        }
    }
}

/// The holder of the token that made a request.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct Principal {
    pub token_id: i64,
    pub name: String,
    pub role: ApiRole,
    pub scope: String,
    pub acts_as: Vec<String>,
}

impl Principal {
    /// Whether `unit` is inside this token's scope.
    pub fn sees(&self, unit: &str) -> bool {
        self.scope == "*" || unit == self.scope || unit.starts_with(&format!("{}/", self.scope))
    }

    pub fn require(&self, role: ApiRole) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs a token with role `{}`; yours is `{}`",
                role.as_str(),
                self.role.as_str()
            )))
        }
    }

    pub fn require_unit(&self, unit: &str) -> Result<(), ApiError> {
        if self.sees(unit) {
            Ok(())
        } else {
            // Outside the scope looks the same as not existing.
            Err(ApiError::not_found("no such resource in your scope"))
        }
    }
}

/// A new token: `yishi_<key id>_<secret>`. The key id is public (it finds the token); only a
/// hash of the secret is stored. Returns (token, key id, secret hash). Shown once.
pub fn new_token() -> (String, String, String) {
    let mut key = [0u8; 6];
    let mut secret = [0u8; 24];
    rand::rng().fill_bytes(&mut key);
    rand::rng().fill_bytes(&mut secret);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let (key, secret) = (hex(&key), hex(&secret));
    (format!("yishi_{key}_{secret}"), key, hash_secret(&secret))
}

/// The stored form of a secret.
pub fn hash_secret(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Middleware: authenticates `Authorization: Bearer <secret>` and stores the [`Principal`].
pub async fn authenticate<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = req.headers().get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(secret) = header.strip_prefix("Bearer ").map(str::trim).filter(|s| !s.is_empty()) else {
        return Err(ApiError::unauthorized(
            "send a token: `Authorization: Bearer <token>` (create one with `yishi token create`)",
        ));
    };
    let unknown = || ApiError::unauthorized("unknown token");
    let Some((key_id, secret)) = secret.strip_prefix("yishi_").and_then(|t| t.split_once('_')) else {
        return Err(unknown());
    };
    let Some(row) = state.engine.store().token_by_key(key_id).await? else {
        return Err(unknown());
    };
    if !bool::from(hash_secret(secret).as_bytes().ct_eq(row.secret_hash.as_bytes())) {
        return Err(unknown());
    }
    if row.revoked_at.is_some() {
        return Err(ApiError::unauthorized("this token has been revoked"));
    }
    let Some(role) = ApiRole::parse(&row.role) else {
        return Err(ApiError::internal(format!("token {} has an unknown role `{}`", row.id, row.role)));
    };
    req.extensions_mut().insert(Principal {
        token_id: row.id,
        name: row.name,
        role,
        scope: row.scope,
        acts_as: row.acts_as,
    });
    Ok(next.run(req).await)
}
