//! Bearer tokens: a role (admin, operator, viewer) and a scope (all, or a unit and the units
//! below it). The engine checks each token ([`yishi_engine::service::Engine::authenticate`]);
//! here the holder becomes a [`Principal`] that handlers authorise against.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;
use yishi_core::msg;
use yishi_engine::service::access::TokenRefusal;

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
            Err(ApiError::forbidden(msg!("api-needs-role", needed = role.as_str(), held = self.role.as_str())))
        }
    }

    pub fn require_unit(&self, unit: &str) -> Result<(), ApiError> {
        if self.sees(unit) {
            Ok(())
        } else {
            // Outside the scope looks the same as not existing.
            Err(ApiError::not_found(msg!("api-out-of-scope")))
        }
    }
}

/// 401, with the scheme to use.
fn unauthorized(m: yishi_core::i18n::Message) -> ApiError {
    ApiError::unauthorized(m).header(axum::http::header::WWW_AUTHENTICATE, "Bearer")
}

/// Middleware: authenticates `Authorization: Bearer <secret>` and stores the [`Principal`].
pub async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = req.headers().get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(secret) = header.strip_prefix("Bearer ").map(str::trim).filter(|s| !s.is_empty()) else {
        return Err(unauthorized(msg!("api-no-token")));
    };
    let row = match state.engine.authenticate(secret).await? {
        Ok(row) => row,
        Err(TokenRefusal::Unknown) => return Err(unauthorized(msg!("api-unknown-token"))),
        Err(TokenRefusal::Revoked) => return Err(unauthorized(msg!("api-revoked-token"))),
    };
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
