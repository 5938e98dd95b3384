//! Reading requests: JSON bodies (malformed JSON is 400; a body that does not fit is 422 naming
//! the field as a JSON Pointer, in plain words), query strings, paths, and the headers the API
//! takes (`Idempotency-Key`, `If-Match`, `If-None-Match`). Every rejection is a problem.

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use yishi_core::i18n::Message;
use yishi_core::msg;

use super::error::ApiError;

/// A JSON body. The request's bytes are kept for its fingerprint (idempotency).
pub struct Body<T> {
    pub value: T,
    pub bytes: Bytes,
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase())
            .is_some_and(|m| m == "application/json" || (m.starts_with("application/") && m.ends_with("+json")));
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                msg!("api-body-not-json"),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    msg!("api-body-too-large", max = super::MAX_BODY_BYTES),
                )
            } else {
                ApiError::bad_request(msg!("api-body-unreadable"))
            }
        })?;
        let value = parse(&bytes)?;
        Ok(Body { value, bytes })
    }
}

/// Parses a JSON body into `T`, with errors a client can act on.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Syntax first: malformed JSON is a bad request, whatever the type.
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        return Err(ApiError::bad_request(msg!(
            "api-body-syntax",
            line = e.line(),
            column = e.column(),
            detail = e.to_string()
        )));
    }
    match unstorable(bytes) {
        Some((Unstorable::IntegerTooLarge, pointer)) => {
            return Err(ApiError::invalid(msg!("api-body-integer-too-large", max = i64::MAX)).field(pointer));
        }
        Some((Unstorable::NulCharacter, pointer)) => {
            return Err(ApiError::invalid(msg!("api-body-nul-character")).field(pointer));
        }
        None => {}
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let pointer = pointer_of(e.path());
        let (message, field) = describe(e.inner(), &pointer);
        ApiError::invalid(message).field(field)
    })
}

fn pointer_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        let part = match seg {
            Segment::Seq { index } => index.to_string(),
            Segment::Map { key } | Segment::Enum { variant: key } => key.clone(),
            Segment::Unknown => continue,
        };
        out.push('/');
        out.push_str(&part.replace('~', "~0").replace('/', "~1"));
    }
    out
}

/// serde's words for a problem, as a message and the pointer of the field at fault.
fn describe(e: &serde_json::Error, pointer: &str) -> (Message, String) {
    let text = e.to_string();
    let text = text.split(" at line ").next().unwrap_or(&text).to_owned();
    if let Some(rest) = text.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        return (msg!("api-body-missing-field", field = field), format!("{pointer}/{field}"));
    }
    if let Some(rest) = text.strip_prefix("unknown field `")
        && let Some((field, rest)) = rest.split_once('`')
    {
        let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
        let message = match yishi_core::diag::closest(field, expected.iter().copied()) {
            Some(near) => msg!("api-body-unknown-field-near", field = field, near = near),
            None => msg!("api-body-unknown-field", field = field, fields = expected),
        };
        let at =
            if pointer.ends_with(&format!("/{field}")) { pointer.to_owned() } else { format!("{pointer}/{field}") };
        return (message, at);
    }
    if let Some(rest) = text.strip_prefix("invalid type: ")
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        return (
            msg!("api-body-wrong-type", found = found_words(found), expected = expected_words(expected)),
            pointer.to_owned(),
        );
    }
    if let Some(rest) = text.strip_prefix("invalid value: ")
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        return (msg!("api-body-wrong-value", found = found, expected = expected_words(expected)), pointer.to_owned());
    }
    (msg!("api-body-invalid", detail = text), pointer.to_owned())
}

/// serde's name of what it found (`sequence`, ``integer `7` ``), in the reader's words.
fn found_words(found: &str) -> Message {
    let kinds = [
        ("string ", "type-string"),
        ("integer ", "type-int"),
        ("floating point ", "type-number"),
        ("boolean ", "type-bool"),
        ("unsigned integer ", "type-int"),
    ];
    for (prefix, key) in kinds {
        if let Some(value) = found.strip_prefix(prefix) {
            return msg!("found-value", kind = Message::new(key), value = value.trim_matches('`'));
        }
    }
    match found {
        "sequence" => msg!("type-array"),
        "map" => msg!("type-object"),
        "unit value" | "null" => msg!("type-null"),
        other => Message::verbatim(other),
    }
}

/// serde's name of an expected type, in the reader's words.
fn expected_words(expected: &str) -> Message {
    let e = expected.trim();
    match e {
        "u8" | "u16" | "u32" | "u64" | "i8" | "i16" | "i32" | "i64" | "usize" | "isize" | "a whole number" => {
            msg!("type-int")
        }
        "f32" | "f64" => msg!("type-number"),
        "a string" => msg!("type-string"),
        "a boolean" => msg!("type-bool"),
        "a map" | "struct Actor" => msg!("type-object"),
        "a sequence" => msg!("type-array"),
        other if other.starts_with("struct ") => msg!("type-object"),
        other => Message::verbatim(other),
    }
}

/// What a JSON body may hold but no store keeps faithfully.
#[derive(Debug, PartialEq, Eq)]
pub enum Unstorable {
    /// A whole number beyond a signed 64-bit integer: it would lose digits, so it is refused
    /// rather than rounded.
    IntegerTooLarge,
    /// The NUL character (`\u0000`) in a string or key: PostgreSQL's text cannot hold it, and
    /// it means nothing in a resident's words, so no backend takes it.
    NulCharacter,
}

/// The first thing in `json` that no store keeps faithfully, with a JSON Pointer to it.
pub fn unstorable(json: &[u8]) -> Option<(Unstorable, String)> {
    enum Frame {
        Object { key: Option<String> },
        Array { index: usize },
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    let pointer = |stack: &[Frame]| -> String {
        let mut out = String::new();
        for f in stack {
            let part = match f {
                Frame::Object { key: Some(k) } => k.clone(),
                Frame::Object { key: None } => continue,
                Frame::Array { index } => index.to_string(),
            };
            out.push('/');
            out.push_str(&part.replace('~', "~0").replace('/', "~1"));
        }
        out
    };
    // After a value inside an array, the next value's index.
    while i < json.len() {
        match json[i] {
            b'{' => {
                stack.push(Frame::Object { key: None });
                i += 1;
            }
            b'[' => {
                stack.push(Frame::Array { index: 0 });
                i += 1;
            }
            b'}' | b']' => {
                stack.pop();
                i += 1;
            }
            b',' => {
                match stack.last_mut() {
                    Some(Frame::Array { index }) => *index += 1,
                    Some(Frame::Object { key }) => *key = None,
                    None => {}
                }
                i += 1;
            }
            b'"' => {
                let start = i + 1;
                i += 1;
                let mut nul = false;
                while i < json.len() && json[i] != b'"' {
                    if json[i] == b'\\' {
                        nul |= json.get(i + 1..i + 6) == Some(b"u0000".as_slice());
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
                let raw = &json[start..i.min(json.len())];
                i += 1;
                if nul {
                    // A key's pointer names the object holding it; a value's, the value.
                    return Some((Unstorable::NulCharacter, pointer(&stack)));
                }
                // A string followed by `:` is a key.
                let mut j = i;
                while j < json.len() && json[j].is_ascii_whitespace() {
                    j += 1;
                }
                if json.get(j) == Some(&b':')
                    && let Some(Frame::Object { key }) = stack.last_mut()
                {
                    let quoted = [b"\"".as_slice(), raw, b"\""].concat();
                    *key = serde_json::from_slice::<String>(&quoted).ok();
                    i = j + 1;
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < json.len() && matches!(json[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                    i += 1;
                }
                let lit = std::str::from_utf8(&json[start..i]).unwrap_or("");
                if !lit.contains(['.', 'e', 'E']) && lit.parse::<i64>().is_err() {
                    return Some((Unstorable::IntegerTooLarge, pointer(&stack)));
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// Query string extractor whose rejections are problems.
pub struct Q<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state).await.map(|Query(v)| Q(v)).map_err(|e: QueryRejection| {
            let text = e.body_text();
            let detail = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text);
            let field = detail.strip_prefix("unknown field `").and_then(|r| r.split('`').next()).map(str::to_owned);
            let err = ApiError::bad_request(msg!("api-bad-query", detail = detail));
            match field {
                Some(f) => err.field(f),
                None => err,
            }
        })
    }
}

/// Path extractor whose rejections are problems.
pub struct P<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for P<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| P(v))
            .map_err(|e: PathRejection| ApiError::bad_request(msg!("api-bad-path", detail = e.body_text())))
    }
}

/// The `Idempotency-Key` header, if sent.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else { return Ok(None) };
    let bad = || ApiError::bad_request(msg!("api-idempotency-key")).field("Idempotency-Key");
    let s = v.to_str().map_err(|_| bad())?;
    if s.is_empty() || s.len() > 200 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(s.to_owned()))
}

/// A fingerprint of a request: its method, path and body.
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update([0]);
    h.update(path.as_bytes());
    h.update([0]);
    h.update(body);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The revision named by `If-Match` (`"3"` or `3`; `*` matches any).
pub fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let s = v.to_str().unwrap_or("").trim();
    if s == "*" {
        return Ok(None);
    }
    s.trim_start_matches("W/")
        .trim_matches('"')
        .parse::<i64>()
        .map(Some)
        .map_err(|_| ApiError::bad_request(msg!("api-if-match")).field("If-Match"))
}

/// Whether `If-None-Match` names the entity tag `etag`.
pub fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == "*" || t.trim().trim_start_matches("W/") == etag))
}

/// An integer that also accepts integral floats (`138.0`), which JSON Schema counts as integers.
pub fn opt_int<'de, D: serde::Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<Option<T>, D::Error> {
    match Option::<serde_json::Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => {
            let v =
                n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64));
            v.and_then(|v| T::try_from(v).ok()).map(Some).ok_or_else(|| {
                serde::de::Error::invalid_value(serde::de::Unexpected::Other(&n.to_string()), &"a whole number")
            })
        }
    }
}

/// [`opt_int`] for a required integer.
pub fn int<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    opt_int::<D, i64>(d)?.ok_or_else(|| serde::de::Error::invalid_type(serde::de::Unexpected::Unit, &"a whole number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_large_integers_are_found_with_their_pointer() {
        let too_large = |json: &[u8]| match unstorable(json) {
            Some((Unstorable::IntegerTooLarge, at)) => Some(at),
            _ => None,
        };
        assert_eq!(too_large(br#"{"a": 1, "b": [1, 99999999999999999999]}"#).as_deref(), Some("/b/1"));
        assert_eq!(too_large(br#"{"x/y": {"n": -99999999999999999999}}"#).as_deref(), Some("/x~1y/n"));
        assert_eq!(too_large(br#"{"s": "99999999999999999999", "f": 1e30, "g": 1.5}"#), None);
        assert_eq!(too_large(br#"{"n": 9223372036854775807}"#), None);
        assert_eq!(too_large(br#"{"n": 9223372036854775808}"#).as_deref(), Some("/n"));
    }

    #[test]
    fn nul_characters_are_found_with_their_pointer() {
        let nul = |json: &[u8]| match unstorable(json) {
            Some((Unstorable::NulCharacter, at)) => Some(at),
            _ => None,
        };
        assert_eq!(nul(br#"{"data": {"title": "a\u0000b"}}"#).as_deref(), Some("/data/title"));
        assert_eq!(nul(br#"{"list": ["ok", "\u0000"]}"#).as_deref(), Some("/list/1"));
        assert_eq!(nul(br#"{"data": {"k\u0000": 1}}"#).as_deref(), Some("/data"));
        assert_eq!(nul(br#"{"path": "C:\\u0000"}"#), None, "an escaped backslash before u0000 is no NUL");
        assert_eq!(nul(br#"{"s": "\u00001"}"#).as_deref(), Some("/s"));
    }
}
