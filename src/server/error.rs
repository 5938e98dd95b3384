//! The API's one error type: RFC 9457 problem details with a stable machine `code`.
//! Client errors are answered, not logged; internal errors are logged, not exposed.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use yishi_engine::service::EngineError;
use yishi_engine::store::StoreError;

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub field: Option<String>,
}

/// RFC 9457 problem details, as every error is answered.
#[derive(Serialize, schemars::JsonSchema)]
pub struct Problem {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What went wrong, in plain words.
    pub detail: String,
    /// A stable machine code: bad_request, unauthorized, forbidden, role_not_allowed, not_found,
    /// conflict, closed, too_large, unsupported_media_type, invalid_body, refused, script_failed,
    /// unavailable, internal.
    pub code: String,
    /// The request field at fault, for bad input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError { status, code, detail: detail.into(), field: None }
    }
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on the server; it has been logged",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = Problem {
            kind: format!("https://yishi.invalid/problems/{}", self.code),
            title: title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code.to_owned(),
            field: self.field,
        };
        let mut resp = (self.status, Json(body)).into_response();
        resp.headers_mut()
            .insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/problem+json"));
        resp
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(m) => ApiError::not_found(m),
            EngineError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            EngineError::Closed(m) => ApiError::new(StatusCode::CONFLICT, "closed", m),
            EngineError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, "role_not_allowed", m),
            EngineError::Refused { message, field } => {
                ApiError { status: StatusCode::UNPROCESSABLE_ENTITY, code: "refused", detail: message, field }
            }
            EngineError::ScriptFailed(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "script_failed", m),
            EngineError::BadRequest(m) => ApiError::bad_request(m),
            EngineError::Unavailable(m) => {
                tracing::warn!(error = %m, "storage unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "storage is unavailable right now (disk full, read-only or busy); try again later",
                )
            }
            EngineError::Internal(m) => ApiError::internal(m),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        EngineError::from(e).into()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
