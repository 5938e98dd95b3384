//! The OpenAPI 3.1 document of the API, generated from the operations table below and the
//! request and response types' JSON Schemas (schemars). A test checks that every route the
//! router serves is in this table and the other way round, so the two cannot drift.

use axum::http::Method;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use super::auth::{ApiRole, Principal};
use super::error::Problem;
use super::types as api;

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn s<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// How an operation answers on success.
pub enum Answer {
    Json(u16, SchemaFn),
    /// JSON by default, or one of these text types when asked for (`format=csv`).
    JsonOr(SchemaFn, &'static [&'static str]),
    /// Text in one of these content types.
    Text(&'static [&'static str]),
}

/// A parameter: name, where (`path`, `query`, `header`), required, description, and its JSON
/// Schema (a JSON text).
pub type Param = (&'static str, &'static str, bool, &'static str, &'static str);

const INT: &str = r#"{"type": "integer", "format": "int64"}"#;
const TEXT: &str = r#"{"type": "string"}"#;

/// One documented operation.
pub struct Op {
    pub method: Method,
    /// The path as documented (`{key}` may hold slashes for workflows).
    pub path: &'static str,
    /// The route that serves it.
    pub route: &'static str,
    pub id: &'static str,
    pub summary: &'static str,
    /// The least API role needed; `None` for routes that need no token.
    pub role: Option<ApiRole>,
    pub params: &'static [Param],
    pub body: Option<SchemaFn>,
    pub answer: Answer,
    pub errors: &'static [u16],
}

const ID: Param = (
    "id",
    "path",
    true,
    "the instance id",
    r#"{"type": "integer", "format": "int64", "minimum": 1, "maximum": 9223372036854775807, "examples": [1, 2]}"#,
);
const KEY: Param = (
    "key",
    "path",
    true,
    "`unit/id` of a workflow; it contains slashes, e.g. `pingcheng/yongtai/liuhangli/proposal`",
    r#"{"type": "string", "examples": ["bench/counter", "chengguan/tianshuinanlu/garden"]}"#,
);
const IDEMPOTENCY: Param = (
    "Idempotency-Key",
    "header",
    false,
    "a retried request with the same key applies once",
    r#"{"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[!-~]+$"}"#,
);

/// What a write with a JSON body can answer besides success (and 401).
const WRITE_ERRORS: &[u16] = &[400, 403, 404, 409, 413, 415, 422];

/// Every operation of the API.
pub fn operations() -> Vec<Op> {
    use Answer::*;
    let get = Method::GET;
    let post = Method::POST;
    vec![
        Op {
            method: get.clone(),
            path: "/healthz",
            route: "/healthz",
            id: "healthz",
            summary: "the process is up",
            role: None,
            params: &[],
            body: None,
            answer: Text(&["text/plain"]),
            errors: &[],
        },
        Op {
            method: get.clone(),
            path: "/readyz",
            route: "/readyz",
            id: "readyz",
            summary: "workflows are loaded and the database answers",
            role: None,
            params: &[],
            body: None,
            answer: Text(&["text/plain"]),
            errors: &[503],
        },
        Op {
            method: get.clone(),
            path: "/metrics",
            route: "/metrics",
            id: "metrics",
            summary: "Prometheus text metrics",
            role: None,
            params: &[],
            body: None,
            answer: Text(&["text/plain"]),
            errors: &[],
        },
        Op {
            method: get.clone(),
            path: "/api/v1/openapi.json",
            route: "/api/v1/openapi.json",
            id: "openapi",
            summary: "this document",
            role: None,
            params: &[],
            body: None,
            answer: Json(200, s::<Value>),
            errors: &[],
        },
        Op {
            method: get.clone(),
            path: "/api/v1/whoami",
            route: "/api/v1/whoami",
            id: "whoami",
            summary: "the token's holder, role and scope",
            role: Some(ApiRole::Viewer),
            params: &[],
            body: None,
            answer: Json(200, s::<Principal>),
            errors: &[],
        },
        Op {
            method: get.clone(),
            path: "/api/v1/communities",
            route: "/api/v1/communities",
            id: "listUnits",
            summary: "the units (district, street, community) in scope",
            role: Some(ApiRole::Viewer),
            params: &[],
            body: None,
            answer: Json(200, s::<api::Items<yishi_core::check::Unit>>),
            errors: &[],
        },
        Op {
            method: get.clone(),
            path: "/api/v1/workflows",
            route: "/api/v1/workflows",
            id: "listWorkflows",
            summary: "active workflows in scope with their versions and active cases",
            role: Some(ApiRole::Viewer),
            params: &[("unit", "query", false, "only this unit", TEXT)],
            body: None,
            answer: Json(200, s::<api::Items<api::WorkflowItem>>),
            errors: &[400],
        },
        Op {
            method: get.clone(),
            path: "/api/v1/workflows/{key}",
            route: "/api/v1/workflows/{*path}",
            id: "getWorkflow",
            summary: "the effective definition of the active version",
            role: Some(ApiRole::Viewer),
            params: &[KEY],
            body: None,
            answer: Json(200, s::<api::WorkflowDetail>),
            errors: &[400, 404],
        },
        Op {
            method: get.clone(),
            path: "/api/v1/workflows/{key}/versions",
            route: "/api/v1/workflows/{*path}",
            id: "listVersions",
            summary: "every stored version, with its active cases",
            role: Some(ApiRole::Viewer),
            params: &[KEY],
            body: None,
            answer: Json(200, s::<api::Versions>),
            errors: &[400, 404],
        },
        Op {
            method: get.clone(),
            path: "/api/v1/workflows/{key}/diff",
            route: "/api/v1/workflows/{*path}",
            id: "diffVersions",
            summary: "what changed between two versions, in words",
            role: Some(ApiRole::Viewer),
            params: &[
                KEY,
                ("from", "query", true, "version number", INT),
                ("to", "query", true, "version number", INT),
            ],
            body: None,
            answer: Json(200, s::<api::Diff>),
            errors: &[400, 404],
        },
        Op {
            method: get.clone(),
            path: "/api/v1/workflows/{key}/diagram",
            route: "/api/v1/workflows/{*path}",
            id: "diagram",
            summary: "a diagram of a version (`format` mermaid, the default, or svg)",
            role: Some(ApiRole::Viewer),
            params: &[
                KEY,
                ("version", "query", false, "version number (default: active)", INT),
                ("format", "query", false, "mermaid or svg", r#"{"type": "string", "enum": ["mermaid", "svg"]}"#),
            ],
            body: None,
            answer: Text(&["text/plain", "image/svg+xml"]),
            errors: &[400, 404],
        },
        Op {
            method: get.clone(),
            path: "/api/v1/reload",
            route: "/api/v1/reload",
            id: "reloadStatus",
            summary: "the last reload and the current diagnostics, in scope",
            role: Some(ApiRole::Viewer),
            params: &[],
            body: None,
            answer: Json(200, s::<api::ReloadState>),
            errors: &[],
        },
        Op {
            method: post.clone(),
            path: "/api/v1/reload",
            route: "/api/v1/reload",
            id: "reload",
            summary: "reload the workflows folder now (admin with scope `*`)",
            role: Some(ApiRole::Admin),
            params: &[],
            body: None,
            answer: Json(200, s::<yishi_engine::service::ReloadStatus>),
            errors: &[403],
        },
        Op {
            method: post.clone(),
            path: "/api/v1/validate",
            route: "/api/v1/validate",
            id: "validate",
            summary: "check a file's text without saving it",
            role: Some(ApiRole::Operator),
            params: &[],
            body: Some(s::<api::ValidateBody>),
            answer: Json(200, s::<api::Validation>),
            errors: &[400, 403, 404, 413, 415, 422],
        },
        Op {
            method: get.clone(),
            path: "/api/v1/instances",
            route: "/api/v1/instances",
            id: "listInstances",
            summary: "cases, newest first, filtered; `data.<field>=<value>` filters on the data document",
            role: Some(ApiRole::Viewer),
            params: &[
                ("unit", "query", false, "exactly this unit", TEXT),
                ("within", "query", false, "this unit and the units below it", TEXT),
                ("workflow", "query", false, "`unit/id`", TEXT),
                ("version", "query", false, "version id", INT),
                (
                    "status",
                    "query",
                    false,
                    "active, completed, cancelled or failed",
                    r#"{"type": "string", "enum": ["active", "completed", "cancelled", "failed"]}"#,
                ),
                ("step", "query", false, "an active step", TEXT),
                ("created_from", "query", false, "Unix ms", INT),
                ("created_to", "query", false, "Unix ms", INT),
                ("updated_from", "query", false, "Unix ms", INT),
                ("updated_to", "query", false, "Unix ms", INT),
                ("cursor", "query", false, "`next_cursor` of the previous page", INT),
                (
                    "limit",
                    "query",
                    false,
                    "1 to 500 (default 50)",
                    r#"{"type": "integer", "minimum": 1, "maximum": 500}"#,
                ),
            ],
            body: None,
            answer: Json(200, s::<api::InstancePage>),
            errors: &[400, 404],
        },
        Op {
            method: post.clone(),
            path: "/api/v1/instances",
            route: "/api/v1/instances",
            id: "startInstance",
            summary: "start a case",
            role: Some(ApiRole::Operator),
            params: &[IDEMPOTENCY],
            body: Some(s::<api::StartBody>),
            answer: Json(201, s::<yishi_engine::service::InstanceView>),
            errors: WRITE_ERRORS,
        },
        Op {
            method: get.clone(),
            path: "/api/v1/instances/{id}",
            route: "/api/v1/instances/{id}",
            id: "getInstance",
            summary: "a case: its state, active steps, what it accepts now and from whom, timers and history",
            role: Some(ApiRole::Viewer),
            params: &[ID],
            body: None,
            answer: Json(200, s::<api::InstanceDetail>),
            errors: &[400, 404],
        },
        Op {
            method: get.clone(),
            path: "/api/v1/instances/{id}/history",
            route: "/api/v1/instances/{id}/history",
            id: "history",
            summary: "a case's history (`format` json, the default, or csv)",
            role: Some(ApiRole::Viewer),
            params: &[ID, ("format", "query", false, "json or csv", r#"{"type": "string", "enum": ["json", "csv"]}"#)],
            body: None,
            answer: JsonOr(s::<api::History>, &["text/csv"]),
            errors: &[400, 404],
        },
        Op {
            method: post.clone(),
            path: "/api/v1/instances/{id}/actions",
            route: "/api/v1/instances/{id}/actions",
            id: "act",
            summary: "submit an action (`If-Match: \"<revision>\"` for optimistic concurrency)",
            role: Some(ApiRole::Operator),
            params: &[
                ID,
                IDEMPOTENCY,
                (
                    "If-Match",
                    "header",
                    false,
                    "the revision the client last saw",
                    r#"{"type": "string", "pattern": "^\"?[0-9]{1,18}\"?$"}"#,
                ),
            ],
            body: Some(s::<api::ActBody>),
            answer: Json(200, s::<yishi_engine::service::InstanceView>),
            errors: WRITE_ERRORS,
        },
        Op {
            method: post.clone(),
            path: "/api/v1/instances/{id}/cancel",
            route: "/api/v1/instances/{id}/cancel",
            id: "cancel",
            summary: "cancel a case, or one active step of it",
            role: Some(ApiRole::Admin),
            params: &[ID],
            body: Some(s::<api::CancelBody>),
            answer: Json(200, s::<yishi_engine::service::InstanceView>),
            errors: WRITE_ERRORS,
        },
        Op {
            method: post.clone(),
            path: "/api/v1/instances/{id}/migrate",
            route: "/api/v1/instances/{id}/migrate",
            id: "migrate",
            summary: "move a case to another version (or a dry run)",
            role: Some(ApiRole::Admin),
            params: &[ID],
            body: Some(s::<api::MigrateBody>),
            answer: Json(200, s::<yishi_engine::service::MigrationPlan>),
            errors: WRITE_ERRORS,
        },
    ]
}

fn reason(code: u16) -> &'static str {
    match code {
        400 => "malformed request (JSON, query, path or header)",
        401 => "no token, an unknown token or a revoked one",
        403 => "the token's role may not do this, or the person lacks the workflow role",
        404 => "no such thing in the token's scope",
        409 => "a stale revision or a closed case",
        413 => "the body is larger than 256 KiB",
        415 => "the body is not `application/json`",
        422 => "the request is well formed but not acceptable (unknown fields, a refused action, a failing script)",
        503 => "storage is unavailable; try again later",
        _ => "error",
    }
}

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    let mut settings = schemars::generate::SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    let mut g = settings.into_generator();
    let problem = g.subschema_for::<Problem>();
    let mut paths: Map<String, Value> = Map::new();
    for op in operations() {
        let mut o = Map::new();
        o.insert("operationId".into(), json!(op.id));
        o.insert("summary".into(), json!(op.summary));
        if let Some(role) = op.role {
            o.insert("security".into(), json!([{ "bearer": [] }]));
            o.insert(
                "description".into(),
                json!(format!("Needs a token with role `{}` or above, and the thing in its scope.", role.as_str())),
            );
        }
        let params: Vec<Value> = op
            .params
            .iter()
            .map(|(name, at, required, desc, schema)| {
                let schema: Value =
                    serde_json::from_str(schema).unwrap_or_else(|e| panic!("bad schema of `{name}`: {e}"));
                json!({ "name": name, "in": at, "required": required, "description": desc, "schema": schema })
            })
            .collect();
        if !params.is_empty() {
            o.insert("parameters".into(), Value::Array(params));
        }
        if let Some(body) = op.body {
            o.insert(
                "requestBody".into(),
                json!({ "required": true, "content": { "application/json": { "schema": body(&mut g) } } }),
            );
        }
        let mut responses = Map::new();
        match op.answer {
            Answer::Json(code, schema) => {
                responses.insert(code.to_string(), json!({ "description": "success", "content": { "application/json": { "schema": schema(&mut g) } } }));
            }
            Answer::JsonOr(schema, types) => {
                let mut content = Map::new();
                content.insert("application/json".into(), json!({ "schema": schema(&mut g) }));
                for ct in types {
                    content.insert((*ct).to_owned(), json!({ "schema": { "type": "string" } }));
                }
                responses.insert("200".into(), json!({ "description": "success", "content": content }));
            }
            Answer::Text(types) => {
                let content: Map<String, Value> =
                    types.iter().map(|ct| ((*ct).to_owned(), json!({ "schema": { "type": "string" } }))).collect();
                responses.insert("200".into(), json!({ "description": "success", "content": content }));
            }
        }
        let mut errors: Vec<u16> = op.errors.to_vec();
        if op.role.is_some() {
            errors.push(401);
        }
        errors.sort_unstable();
        errors.dedup();
        for e in errors {
            responses.insert(
                e.to_string(),
                json!({ "description": reason(e), "content": { "application/problem+json": { "schema": problem } } }),
            );
        }
        o.insert("responses".into(), Value::Object(responses));
        let entry = paths.entry(op.path.to_owned()).or_insert_with(|| json!({}));
        if let Some(m) = entry.as_object_mut() {
            m.insert(op.method.as_str().to_lowercase(), Value::Object(o));
        }
    }
    let schemas = g.take_definitions(true);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Yishi (议事) admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Run community-governance procedures: workflows, versions, cases, actions, history. Errors are RFC 9457 problem details with a stable `code`."
        },
        "servers": [{ "url": "/" }],
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "description": "`yishi token create` makes one; `yishi_<key>_<secret>`" } },
            "schemas": schemas
        }
    })
}
