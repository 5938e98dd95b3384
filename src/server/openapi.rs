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
/// `If-Match`: the revision a change expects.
const IF_MATCH: Param = (
    "If-Match",
    "header",
    false,
    "the revision the client last saw",
    r#"{"type": "string", "pattern": "^\"?[0-9]{1,18}\"?$"}"#,
);

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
    let mut all = system_operations();
    all.extend(workflow_operations());
    all.extend(instance_operations());
    all.extend(instance_changes());
    all.extend(sitting_operations());
    all.extend(access_operations());
    all
}

/// Staff accounts and API tokens (admins, inside their own scope).
fn access_operations() -> Vec<Op> {
    use Answer::*;
    let account = s::<yishi_engine::store::AccountRow>;
    vec![
        op(
            GET,
            "/api/v1/accounts",
            "listAccounts",
            "the staff accounts of the console inside the caller's scope (never their passwords)",
        )
        .role(ApiRole::Admin)
        .answer(Json(200, s::<api::AccountList>))
        .errors(&[403]),
        op(
            POST,
            "/api/v1/accounts",
            "createAccount",
            "create a staff account with a first password, which its holder must change at the first sign-in",
        )
        .role(ApiRole::Admin)
        .body(s::<api::NewAccountBody>)
        .answer(Json(201, account))
        .errors(WRITE_ERRORS),
        op(POST, "/api/v1/accounts/{id}/disable", "disableAccount", "disable an account: its sessions end at once")
            .role(ApiRole::Admin)
            .params(&[ID])
            .answer(Json(200, account))
            .errors(&[400, 403, 404]),
        op(POST, "/api/v1/accounts/{id}/enable", "enableAccount", "enable a disabled account again")
            .role(ApiRole::Admin)
            .params(&[ID])
            .answer(Json(200, account))
            .errors(&[400, 403, 404]),
        op(
            POST,
            "/api/v1/accounts/{id}/password",
            "resetPassword",
            "set a new first password (the holder must change it; their sessions end)",
        )
        .role(ApiRole::Admin)
        .params(&[ID])
        .body(s::<api::PasswordBody>)
        .answer(Json(200, account))
        .errors(WRITE_ERRORS),
        op(GET, "/api/v1/tokens", "listTokens", "the API tokens inside the caller's scope (never their secrets)")
            .role(ApiRole::Admin)
            .answer(Json(200, s::<api::TokenList>))
            .errors(&[403]),
        op(POST, "/api/v1/tokens", "createToken", "create an API token; its secret is in this answer only")
            .role(ApiRole::Admin)
            .body(s::<api::NewTokenBody>)
            .answer(Json(201, s::<api::NewTokenResult>))
            .errors(WRITE_ERRORS),
        op(
            POST,
            "/api/v1/tokens/{id}/revoke",
            "revokeToken",
            "revoke a token: refused at once, and console sessions opened with it end",
        )
        .role(ApiRole::Admin)
        .params(&[ID])
        .answer(Json(200, s::<api::Revoked>))
        .errors(&[400, 403, 404]),
    ]
}

const CASE: Param = ("case", "path", true, "the case (topic) on the agenda", r#"{"type": "integer", "minimum": 1}"#);

/// Sittings (例会): cases of a unit's sitting workflow, with their agendas.
fn sitting_operations() -> Vec<Op> {
    use Answer::*;
    let sitting = s::<yishi_engine::service::gatherings::GatheringView>;
    vec![
        op(GET, "/api/v1/sittings", "listSittings",
            "the sittings (例会) of the units in scope, latest date first: date, place, expected attendees, status (`scheduled`, `open`, `held`, `inquorate`, `cancelled`)")
        .role(ApiRole::Viewer)
        .params(&[
                ("unit", "query", false, "one unit", TEXT),
                ("within", "query", false, "a unit and everything under it", TEXT),
                ("status", "query", false, "`scheduled`, `open`, `held`, `inquorate` or `cancelled`", TEXT),
            ])
        .answer(Json(200, s::<api::SittingList>))
        .errors(&[400, 403]),
        op(POST, "/api/v1/sittings", "scheduleSitting",
            "schedule a sitting of a unit: topics waiting for one whose registration cut-off has not passed go on its agenda")
        .role(ApiRole::Operator)
        .body(s::<api::ScheduleBody>)
        .answer(Json(201, sitting))
        .errors(WRITE_ERRORS),
        op(GET, "/api/v1/sittings/{id}", "getSitting",
            "a sitting with its agenda: each topic's papers and status (`pending`, `decided` with the outcome and tally, `rolled_over` with where it went), the quorum check and the minutes")
        .role(ApiRole::Viewer)
        .params(&[ID])
        .answer(Json(200, sitting))
        .errors(&[400, 404]),
        op(POST, "/api/v1/sittings/{id}/agenda", "putOnAgenda",
            "put a waiting topic on this sitting's agenda (staff's choice: also after the cut-off, or moving it from another sitting)")
        .role(ApiRole::Operator)
        .params(&[ID])
        .body(s::<api::AgendaBody>)
        .answer(Json(200, sitting))
        .errors(WRITE_ERRORS),
        op(POST, "/api/v1/sittings/{id}/open", "openSitting",
            "open the sitting with who is present: the quorum is checked once; without it the sitting does not take place and every topic rolls over")
        .role(ApiRole::Operator)
        .params(&[ID, IF_MATCH])
        .body(s::<api::OpenBody>)
        .answer(Json(200, sitting))
        .errors(WRITE_ERRORS),
        op(POST, "/api/v1/sittings/{id}/items/{case}", "decideItem",
            "record the sitting's decision on one topic: the topic's case goes on along the outcome, with the sitting, the tally and the note recorded on it, in the same commit")
        .role(ApiRole::Operator)
        .params(&[ID, CASE, IF_MATCH])
        .body(s::<api::DecideBody>)
        .answer(Json(200, sitting))
        .errors(WRITE_ERRORS),
        op(POST, "/api/v1/sittings/{id}/close", "closeSitting",
            "close the sitting with its minutes: topics not reached roll over to the next sitting (recorded on each), in the same commit")
        .role(ApiRole::Operator)
        .params(&[ID, IF_MATCH])
        .body(s::<api::CloseBody>)
        .answer(Json(200, sitting))
        .errors(WRITE_ERRORS),
        op(POST, "/api/v1/sittings/{id}/cancel", "cancelSitting",
            "call off a sitting that has not opened: its topics go to the next sitting")
        .role(ApiRole::Operator)
        .params(&[ID, IF_MATCH])
        .body(s::<api::CallOffBody>)
        .answer(Json(200, sitting))
        .errors(WRITE_ERRORS),
    ]
}

const GET: Method = Method::GET;
const POST: Method = Method::POST;

/// An operation answering `text/plain` to anyone, until told otherwise.
fn op(method: Method, path: &'static str, id: &'static str, summary: &'static str) -> Op {
    // Workflow keys hold slashes, so one wildcard route serves every path under a workflow.
    let route = if path.starts_with("/api/v1/workflows/{key}") { "/api/v1/workflows/{*path}" } else { path };
    Op {
        method,
        path,
        route,
        id,
        summary,
        role: None,
        params: &[],
        body: None,
        answer: Answer::Text(&["text/plain"]),
        errors: &[],
    }
}

impl Op {
    fn role(mut self, role: ApiRole) -> Self {
        self.role = Some(role);
        self
    }
    fn params(mut self, params: &'static [Param]) -> Self {
        self.params = params;
        self
    }
    fn body(mut self, body: SchemaFn) -> Self {
        self.body = Some(body);
        self
    }
    fn answer(mut self, answer: Answer) -> Self {
        self.answer = answer;
        self
    }
    fn errors(mut self, errors: &'static [u16]) -> Self {
        self.errors = errors;
        self
    }
}

/// Probes, metrics and this document.
fn system_operations() -> Vec<Op> {
    use Answer::*;
    vec![
        op(GET, "/healthz", "healthz", "the process is up").answer(Text(&["text/plain"])),
        op(GET, "/readyz", "readyz", "workflows are loaded and the database answers")
            .answer(Text(&["text/plain"]))
            .errors(&[503]),
        op(GET, "/metrics", "metrics", "Prometheus text metrics").answer(Text(&["text/plain"])),
        op(GET, "/api/v1/openapi.json", "openapi", "this document").answer(Json(200, s::<Value>)),
        op(
            GET,
            "/api/v1/stats",
            "stats",
            "the three rates (响应率、解决率、满意率), overdue cases and average satisfaction per unit and month, \
             from what each case counts for (its `counted` events) and the figures kept for purged cases; \
             `parties`: the departments whistled, per month, with their response, in-time and satisfaction rates; \
             `format` json (the default) or csv (the units' rows)",
        )
        .role(ApiRole::Viewer)
        .params(&[
            ("unit", "query", false, "this unit and the units below it (default: the token's scope)", TEXT),
            (
                "from",
                "query",
                false,
                "first month, YYYY-MM (default: `to`)",
                r#"{"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"}"#,
            ),
            (
                "to",
                "query",
                false,
                "last month, YYYY-MM (default: this month in the server's zone)",
                r#"{"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"}"#,
            ),
            ("format", "query", false, "json or csv", r#"{"type": "string", "enum": ["json", "csv"]}"#),
            (
                "bom",
                "query",
                false,
                "csv: begin with a byte-order mark, for Excel (default true)",
                r#"{"type": "boolean"}"#,
            ),
        ])
        .answer(JsonOr(s::<yishi_engine::service::stats::StatsReport>, &["text/csv"]))
        .errors(&[400, 404]),
        op(GET, "/api/v1/whoami", "whoami", "the token's holder, role and scope")
            .role(ApiRole::Viewer)
            .answer(Json(200, s::<Principal>)),
        op(
            GET,
            "/api/v1/outbox/dead",
            "deadLetters",
            "deliveries given up on after every attempt failed, with their last errors (admin with scope `*`)",
        )
        .role(ApiRole::Admin)
        .answer(Json(200, s::<api::Items<yishi_engine::store::DeadLetter>>)),
        op(
            GET,
            "/api/v1/nodes",
            "nodes",
            "the nodes serving this database (heard from in the last day): build, address, last heartbeat, \
             whether alive and which one leads (admin with scope `*`)",
        )
        .role(ApiRole::Admin)
        .answer(Json(200, s::<api::Items<yishi_engine::store::NodeRow>>)),
        op(
            POST,
            "/api/v1/outbox/dead/retry",
            "retryDead",
            "put one dead letter (`id`) or all back in line now (admin with scope `*`)",
        )
        .role(ApiRole::Admin)
        .body(s::<api::DeadLetterChoice>)
        .answer(Json(200, s::<api::Affected>))
        .errors(&[413, 415, 422]),
        op(
            POST,
            "/api/v1/outbox/dead/discard",
            "discardDead",
            "drop one dead letter (`id`) or all (admin with scope `*`)",
        )
        .role(ApiRole::Admin)
        .body(s::<api::DeadLetterChoice>)
        .answer(Json(200, s::<api::Affected>))
        .errors(&[413, 415, 422]),
    ]
}

/// Units, workflows, versions, diagrams, reloads and checks.
fn workflow_operations() -> Vec<Op> {
    use Answer::*;
    vec![
        op(GET, "/api/v1/communities", "listUnits",
            "the units (district, street, community) in scope")
        .role(ApiRole::Viewer)
        .answer(Json(200, s::<api::Items<yishi_core::check::Unit>>)),
        op(GET, "/api/v1/workflows", "listWorkflows",
            "active workflows in scope with their versions and active cases")
        .role(ApiRole::Viewer)
        .params(&[("unit", "query", false, "only this unit", TEXT)])
        .answer(Json(200, s::<api::Items<api::WorkflowItem>>))
        .errors(&[400]),
        op(GET, "/api/v1/workflows/{key}", "getWorkflow",
            "the effective definition of the active version")
        .role(ApiRole::Viewer)
        .params(&[KEY])
        .answer(Json(200, s::<api::WorkflowDetail>))
        .errors(&[400, 404]),
        op(GET, "/api/v1/workflows/{key}/versions", "listVersions",
            "every stored version, with its active cases")
        .role(ApiRole::Viewer)
        .params(&[KEY])
        .answer(Json(200, s::<api::Versions>))
        .errors(&[400, 404]),
        op(GET, "/api/v1/workflows/{key}/versions/{version}", "getVersion",
            "a stored version with every file it was built from (scripts, lists, calendars) and its effective definition")
        .role(ApiRole::Viewer)
        .params(&[
                KEY,
                (
                    "version",
                    "path",
                    true,
                    "the version number (1, 2 ...)",
                    r#"{"type": "integer", "format": "int64", "minimum": 1, "maximum": 9223372036854775807}"#,
                ),
            ])
        .answer(Json(200, s::<api::VersionSource>))
        .errors(&[400, 404]),
        op(GET, "/api/v1/workflows/{key}/diff", "diffVersions",
            "what changed between two versions: the definition in words, and every file as a text diff")
        .role(ApiRole::Viewer)
        .params(&[
                KEY,
                ("from", "query", true, "version number", INT),
                ("to", "query", true, "version number", INT),
            ])
        .answer(Json(200, s::<api::Diff>))
        .errors(&[400, 404]),
        op(GET, "/api/v1/workflows/{key}/diagram", "diagram",
            "a diagram of a version (`format` mermaid, the default, or svg)")
        .role(ApiRole::Viewer)
        .params(&[
                KEY,
                ("version", "query", false, "version number (default: active)", INT),
                ("format", "query", false, "mermaid or svg", r#"{"type": "string", "enum": ["mermaid", "svg"]}"#),
            ])
        .answer(Text(&["text/plain", "image/svg+xml"]))
        .errors(&[400, 404]),
        op(GET, "/api/v1/workflows/{key}/calendar", "calendarMonth", "a month of the working-day calendar the active version counts deadlines by: holidays, make-up working days, weekends")
            .role(ApiRole::Viewer)
            .params(&[KEY, ("month", "query", true, "`YYYY-MM`", r#"{"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$", "examples": ["2026-10"]}"#)])
            .answer(Json(200, s::<api::CalendarMonth>))
            .errors(&[400, 404]),
        op(GET, "/api/v1/reload", "reloadStatus",
            "the last reload and the current diagnostics, in scope")
        .role(ApiRole::Viewer)
        .answer(Json(200, s::<api::ReloadState>)),
        op(POST, "/api/v1/reload", "reload",
            "reload the workflows folder now (admin with scope `*`)")
        .role(ApiRole::Admin)
        .answer(Json(200, s::<yishi_engine::service::ReloadStatus>))
        .errors(&[403]),
        op(POST, "/api/v1/validate", "validate",
            "check a file's text without saving it")
        .role(ApiRole::Operator)
        .body(s::<api::ValidateBody>)
        .answer(Json(200, s::<api::Validation>))
        .errors(&[400, 403, 404, 413, 415, 422]),
    ]
}

/// Cases: list, start, read, history, similar.
fn instance_operations() -> Vec<Op> {
    use Answer::*;
    vec![
        op(GET, "/api/v1/instances", "listInstances",
            "cases, newest first, filtered; `data.<field>=<value>` filters on the data document")
        .role(ApiRole::Viewer)
        .params(&[
                ("unit", "query", false, "exactly this unit", TEXT),
                ("within", "query", false, "this unit and the units below it", TEXT),
                ("workflow", "query", false, "`unit/id`", TEXT),
                ("version", "query", false, "version number (of `workflow`, or of each case's own workflow)", INT),
                (
                    "status",
                    "query",
                    false,
                    "active, completed, cancelled or failed",
                    r#"{"type": "string", "enum": ["active", "completed", "cancelled", "failed"]}"#,
                ),
                ("step", "query", false, "an active step", TEXT),
                ("urgency", "query", false, "an urgency level", TEXT),
                ("text", "query", false, "text the case's `title` contains", TEXT),
                ("overdue", "query", false, "`true`: only cases that went past a deadline nobody acted before", r#"{"type": "boolean"}"#),
                (
                    "sort",
                    "query",
                    false,
                    "`newest` (default) or `urgency`: most urgent first (in the order the workflows declare their levels), newest first within a level",
                    r#"{"type": "string", "enum": ["newest", "urgency"]}"#,
                ),
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
            ])
        .answer(Json(200, s::<api::InstancePage>))
        .errors(&[400, 404]),
        op(POST, "/api/v1/instances", "startInstance",
            "start a case")
        .role(ApiRole::Operator)
        .params(&[IDEMPOTENCY])
        .body(s::<api::StartBody>)
        .answer(Json(201, s::<yishi_engine::service::InstanceView>))
        .errors(WRITE_ERRORS),
        op(GET, "/api/v1/instances/{id}", "getInstance",
            "a case: its state, active steps, what it accepts now and from whom, timers and history (`ETag` is the revision; `If-None-Match` answers 304)")
        .role(ApiRole::Viewer)
        .params(&[
                ID,
                ("If-None-Match", "header", false, "an `ETag` seen before: 304 when the case has not changed", TEXT),
            ])
        .answer(Json(200, s::<api::InstanceDetail>))
        .errors(&[304, 400, 404]),
        op(GET, "/api/v1/instances/{id}/history", "history",
            "a case's history (`format` json, the default, or csv)")
        .role(ApiRole::Viewer)
        .params(&[
                ID,
                ("format", "query", false, "json or csv", r#"{"type": "string", "enum": ["json", "csv"]}"#),
                (
                    "bom",
                    "query",
                    false,
                    "csv: begin with a byte-order mark, for Excel (default true)",
                    r#"{"type": "boolean"}"#,
                ),
                (
                    "personal",
                    "query",
                    false,
                    "csv: keep residents' personal data (the keys the workflow marks personal) instead of masking it; admins only",
                    r#"{"type": "boolean"}"#,
                ),
            ])
        .answer(JsonOr(s::<api::History>, &["text/csv"]))
        .errors(&[400, 404]),
        op(GET, "/api/v1/instances/{id}/notice", "notice",
            "the printable public notice (公示) of a case: an A4 page with the decision, the vote, the period and the objections, from its `public_notice` step")
        .role(ApiRole::Viewer)
        .params(&[ID, ("step", "query", false, "the notice step, when the case has several", TEXT)])
        .answer(Text(&["text/html"]))
        .errors(&[400, 404]),
        op(GET, "/api/v1/instances/{id}/similar", "similar",
            "open cases of the same unit that may report the same matter (character-bigram overlap of title and text, plus the same location or category); a suggestion, never a merge")
        .role(ApiRole::Viewer)
        .params(&[
                ID,
                ("limit", "query", false, "at most this many (1 to 50, default 5)", r#"{"type": "integer", "minimum": 1, "maximum": 50}"#),
            ])
        .answer(Json(200, s::<api::Similar>))
        .errors(&[400, 404]),
    ]
}

/// Changes to one case: act, change urgency, cancel, migrate.
fn instance_changes() -> Vec<Op> {
    use Answer::*;
    vec![
        op(POST, "/api/v1/instances/{id}/actions", "act",
            "submit an action (`If-Match: \"<revision>\"` for optimistic concurrency)")
        .role(ApiRole::Operator)
        .params(&[
                ID,
                IDEMPOTENCY,
                IF_MATCH,
            ])
        .body(s::<api::ActBody>)
        .answer(Json(200, s::<yishi_engine::service::InstanceView>))
        .errors(WRITE_ERRORS),
        op(POST, "/api/v1/instances/{id}/cancel", "cancel",
            "cancel a case, or one active step of it")
        .role(ApiRole::Admin)
        .params(&[ID])
        .body(s::<api::CancelBody>)
        .answer(Json(200, s::<yishi_engine::service::InstanceView>))
        .errors(WRITE_ERRORS),
        op(POST, "/api/v1/instances/{id}/urgency", "setUrgency",
            "change how urgent a case is (紧急程度), at a step its workflow allows (triage), with the reason; deadlines that depend on the level are counted again")
        .role(ApiRole::Operator)
        .params(&[
                ID,
                IF_MATCH,
            ])
        .body(s::<api::UrgencyBody>)
        .answer(Json(200, s::<yishi_engine::service::InstanceView>))
        .errors(WRITE_ERRORS),
        op(POST, "/api/v1/instances/{id}/merge", "merge",
            "merge a duplicate into this case (合并): the duplicate closes with outcome `merged` and `data.merged_into`; this case gains its people in `data.merged` and `data.merged_people`; both change together or neither")
        .role(ApiRole::Operator)
        .params(&[ID])
        .body(s::<api::MergeBody>)
        .answer(Json(200, s::<api::MergeResult>))
        .errors(WRITE_ERRORS),
        op(POST, "/api/v1/instances/{id}/migrate", "migrate",
            "move a case to another version (or a dry run)")
        .role(ApiRole::Admin)
        .params(&[ID])
        .body(s::<api::MigrateBody>)
        .answer(Json(200, s::<yishi_engine::service::MigrationPlan>))
        .errors(WRITE_ERRORS),
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
        304 => "not modified since the `ETag` given in `If-None-Match`",
        500 => "an internal error (logged with the request id)",
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
            // Any token route: no or a bad token, out of scope, storage down, a bug.
            errors.extend([401, 403, 500, 503]);
        }
        if !op.params.is_empty() || op.body.is_some() {
            errors.push(400);
        }
        errors.sort_unstable();
        errors.dedup();
        for e in errors {
            let answer = if e == 304 {
                json!({ "description": reason(e) })
            } else {
                json!({ "description": reason(e), "content": { "application/problem+json": { "schema": problem } } })
            };
            responses.insert(e.to_string(), answer);
        }
        o.insert("responses".into(), Value::Object(responses));
        let entry = paths.entry(op.path.to_owned()).or_insert_with(|| json!({}));
        if let Some(m) = entry.as_object_mut() {
            m.insert(op.method.as_str().to_lowercase(), Value::Object(o));
        }
    }
    let mut schemas = g.take_definitions(true);
    name_tagged_variants(&mut schemas);
    let mut paths = Value::Object(paths);
    let mut schemas = Value::Object(schemas);
    no_boolean_schemas(&mut paths);
    no_boolean_schemas(&mut schemas);
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

/// Writes the boolean schema `true` as `{}`, which means the same: some client generators
/// (openapi-python-client) refuse boolean schemas.
fn no_boolean_schemas(v: &mut Value) {
    fn schema(v: &mut Value) {
        match v {
            Value::Bool(true) => *v = json!({}),
            Value::Object(_) => no_boolean_schemas(v),
            _ => {}
        }
    }
    let Value::Object(m) = v else {
        if let Value::Array(items) = v {
            items.iter_mut().for_each(no_boolean_schemas);
        }
        return;
    };
    for (k, x) in m.iter_mut() {
        match k.as_str() {
            "schema" | "items" | "additionalProperties" | "not" | "contains" | "propertyNames" => schema(x),
            "properties" | "patternProperties" | "$defs" => {
                if let Value::Object(props) = x {
                    props.values_mut().for_each(schema);
                }
            }
            "oneOf" | "anyOf" | "allOf" | "prefixItems" => {
                if let Value::Array(items) = x {
                    items.iter_mut().for_each(schema);
                }
            }
            "const" | "default" | "examples" | "enum" | "example" => {}
            _ => no_boolean_schemas(x),
        }
    }
}

/// Gives each variant of a tagged enum (a `oneOf` of objects told apart by a constant
/// property, such as an event's `type`) a component schema of its own, named after the enum
/// and the tag (`EventStarted`), and a `discriminator`, so generated clients can name and
/// tell apart the variants. Properties the enum's container adds (an event row's `seq`, `at`,
/// `version`) are copied into every variant.
fn name_tagged_variants(schemas: &mut Map<String, Value>) {
    let names: Vec<String> = schemas.keys().cloned().collect();
    for name in names {
        let Some(parent) = schemas.get(&name).cloned() else { continue };
        let Some(variants) = parent.get("oneOf").and_then(Value::as_array) else { continue };
        let Some(tag) = tag_of(variants) else { continue };
        let base = if name == "EventRow" { "Event" } else { name.as_str() };
        let shared_props = parent.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
        let shared_required = parent.get("required").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut refs = Vec::new();
        let mut mapping = Map::new();
        for variant in variants {
            let value = variant["properties"][&tag]["const"].as_str().unwrap_or_default().to_owned();
            let component = format!("{base}{}", pascal(&value));
            let mut v = variant.clone();
            if let Some(props) = v.get_mut("properties").and_then(Value::as_object_mut) {
                for (k, p) in &shared_props {
                    props.entry(k.clone()).or_insert_with(|| p.clone());
                }
            }
            if let Some(req) = v.get_mut("required").and_then(Value::as_array_mut) {
                for r in &shared_required {
                    if !req.contains(r) {
                        req.push(r.clone());
                    }
                }
            }
            let reference = format!("#/components/schemas/{component}");
            mapping.insert(value, json!(reference));
            refs.push(json!({ "$ref": reference }));
            schemas.insert(component, v);
        }
        let mut replaced = json!({ "oneOf": refs, "discriminator": { "propertyName": tag, "mapping": mapping } });
        if let Some(d) = parent.get("description") {
            replaced["description"] = d.clone();
        }
        schemas.insert(name, replaced);
    }
}

/// The property every variant fixes to a constant string, if there is one.
fn tag_of(variants: &[Value]) -> Option<String> {
    let first = variants.first()?.get("properties")?.as_object()?;
    first.iter().filter(|(_, p)| p.get("const").is_some_and(Value::is_string)).map(|(k, _)| k.clone()).find(|k| {
        variants.iter().all(|v| {
            v["properties"][k]["const"].is_string() && v["required"].as_array().is_some_and(|r| r.contains(&json!(k)))
        })
    })
}

/// `timer_fired` as `TimerFired`.
fn pascal(s: &str) -> String {
    s.split(['_', '-'])
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_uppercase().chain(c).collect::<String>()).unwrap_or_default()
        })
        .collect()
}
