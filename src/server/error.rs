//! The API's one error type: RFC 9457 problem details with a stable machine `code`, and
//! `title` and `detail` in the language of the request. Client errors are answered, not
//! logged; internal errors are logged, not exposed.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use yishi_core::i18n::Message;
use yishi_core::msg;
use yishi_engine::service::EngineError;
use yishi_engine::store::StoreError;

use super::lang;

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: Message,
    /// The request field at fault, as a JSON Pointer into the body (`/payload/choice`) or the
    /// name of a query parameter or header.
    pub field: Option<String>,
    /// Headers to send with the problem (`Allow`, `Retry-After`).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

/// RFC 9457 problem details, as every error is answered.
#[derive(Serialize, schemars::JsonSchema)]
pub struct Problem {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short, human-readable summary of the problem type, in the request's language.
    pub title: String,
    pub status: u16,
    /// What went wrong, in plain words, in the request's language.
    pub detail: String,
    /// A stable machine code, the same in every language: bad_request, unauthorized, forbidden,
    /// role_not_allowed, not_found, method_not_allowed, conflict, case_closed, too_large,
    /// unsupported_media_type, invalid_body, refused, script_failed, idempotency_key_reused,
    /// timeout, unavailable, internal.
    pub code: String,
    /// The request field at fault: a JSON Pointer into the body, or a query parameter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The id of the request (as in the `x-request-id` header and the server's log).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: Message) -> Self {
        ApiError { status, code, detail, field: None, headers: Vec::new() }
    }
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
    pub fn header(mut self, name: header::HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }
    pub fn bad_request(detail: Message) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }
    pub fn invalid(detail: Message) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", detail)
    }
    pub fn not_found(detail: Message) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }
    pub fn unauthorized(detail: Message) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }
    pub fn forbidden(detail: Message) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }
    /// A server-side failure: logged with its detail, answered in general words.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", msg!("engine-internal"))
    }
}

/// The title of a problem code, in words.
fn title(code: &str) -> Message {
    match code {
        "bad_request" => msg!("title-bad-request"),
        "unauthorized" => msg!("title-unauthorized"),
        "forbidden" => msg!("title-forbidden"),
        "role_not_allowed" => msg!("title-role-not-allowed"),
        "not_found" => msg!("title-not-found"),
        "method_not_allowed" => msg!("title-method-not-allowed"),
        "conflict" => msg!("title-conflict"),
        "case_closed" => msg!("title-case-closed"),
        "too_large" => msg!("title-too-large"),
        "unsupported_media_type" => msg!("title-unsupported-media-type"),
        "invalid_body" => msg!("title-invalid-body"),
        "refused" => msg!("title-refused"),
        "script_failed" => msg!("title-script-failed"),
        "precondition_failed" => msg!("title-precondition-failed"),
        "idempotency_key_reused" => msg!("title-idempotency-key-reused"),
        "timeout" => msg!("title-timeout"),
        "not_acceptable" => msg!("title-not-acceptable"),
        "unavailable" => msg!("title-unavailable"),
        _ => msg!("title-internal"),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let lang = lang::current();
        let body = Problem {
            kind: format!("https://yishi.invalid/problems/{}", self.code),
            title: title(self.code).render(lang),
            status: self.status.as_u16(),
            detail: self.detail.render(lang),
            code: self.code.to_owned(),
            field: self.field,
            request_id: lang::request_id(),
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = (self.status, json).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        headers.insert(header::CONTENT_LANGUAGE, HeaderValue::from_static(lang.tag()));
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        resp
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(m) => ApiError::not_found(m),
            EngineError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            EngineError::Closed(m) => ApiError::new(StatusCode::CONFLICT, "case_closed", m),
            EngineError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, "role_not_allowed", m),
            EngineError::Refused { message, field } => {
                let e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "refused", message);
                match field {
                    Some(f) => e.field(f),
                    None => e,
                }
            }
            EngineError::ScriptFailed(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "script_failed", m),
            EngineError::BadRequest(m) => ApiError::bad_request(m),
            EngineError::KeyReused(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused", m).field("Idempotency-Key")
            }
            e @ EngineError::Unavailable(_) => {
                tracing::warn!(error = %e, "storage unavailable");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.message())
                    .header(header::RETRY_AFTER, "5")
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
