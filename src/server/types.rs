//! The API's request and response bodies: what the handlers read and write and what the
//! OpenAPI document describes (both take them from here). Texts for people (`title`,
//! `message`, `summary` ...) are in the language of the request.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use yishi_core::describe::{Change, FileChange};
use yishi_core::kind::Actor;
use yishi_engine::service::{AcceptedAction, InstanceView, ReloadStatus};
use yishi_engine::store::{EventRow, InstanceSummary};

/// A list of items.
#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "{T}List")]
pub struct Items<T> {
    pub items: Vec<T>,
}

/// A workflow in a listing.
#[derive(Serialize, schemars::JsonSchema)]
pub struct WorkflowItem {
    /// `unit/id`.
    pub key: String,
    pub unit: String,
    pub id: String,
    pub title: String,
    #[serde(rename = "abstract")]
    pub is_abstract: bool,
    /// The active version's number (1, 2 ...).
    pub version: i64,
    /// The active version's content hash.
    pub version_id: String,
    pub active_instances: i64,
    /// `ok`, or `kept_last_good` when the files have problems and the last good version runs.
    pub status: String,
}

/// A workflow's effective definition.
#[derive(Serialize, schemars::JsonSchema)]
pub struct WorkflowDetail {
    pub key: String,
    pub title: String,
    /// The active version's number.
    pub version: i64,
    /// The active version's content hash.
    pub version_id: String,
    #[serde(rename = "abstract")]
    pub is_abstract: bool,
    /// The effective definition after layering.
    pub definition: Value,
}

/// A stored version.
#[derive(Serialize, schemars::JsonSchema)]
pub struct VersionItem {
    /// 1, 2, 3 ... per workflow.
    pub version: i64,
    /// The content hash of the version.
    pub version_id: String,
    pub created_at: i64,
    /// What made it: a file save, a console save, start-up.
    pub created_by: String,
    pub active_instances: i64,
    /// Whether it is the workflow's active version.
    pub current: bool,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct Versions {
    pub workflow: String,
    pub items: Vec<VersionItem>,
}

/// Everything a version was built from.
#[derive(Serialize, schemars::JsonSchema)]
pub struct VersionSource {
    pub workflow: String,
    pub version: i64,
    pub version_id: String,
    pub created_at: i64,
    pub created_by: String,
    /// Every file the version uses (workflow files, scripts, lists, calendars): path -> text.
    pub files: BTreeMap<String, String>,
    /// The effective definition after layering.
    pub definition: Value,
}

/// What changed between two versions.
#[derive(Serialize, schemars::JsonSchema)]
pub struct Diff {
    pub workflow: String,
    /// The version numbers compared.
    pub from: i64,
    pub to: i64,
    /// The effective definition's changes, in words.
    pub changes: Vec<Change>,
    /// Every file of the two versions that differs, as a unified text diff.
    pub files: Vec<FileChange>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct ReloadState {
    /// Activations this server has made since it started.
    pub generation: u64,
    pub reloaded_at: i64,
    pub last: Option<ReloadStatus>,
    pub diagnostics: Vec<yishi_core::Diagnostic>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct Validation {
    pub ok: bool,
    pub diagnostics: Vec<yishi_core::Diagnostic>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct InstancePage {
    pub items: Vec<InstanceSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<i64>,
}

/// A deadline or timer a case waits for.
#[derive(Serialize, schemars::JsonSchema)]
pub struct TimerItem {
    pub step: String,
    pub token: u32,
    pub timer: String,
    pub due_at: i64,
}

/// A case with what it accepts now and its whole history.
#[derive(Serialize, schemars::JsonSchema)]
pub struct InstanceDetail {
    pub instance: InstanceView,
    pub tokens: Vec<yishi_core::runtime::Token>,
    pub accepts: Vec<AcceptedAction>,
    pub timers: Vec<TimerItem>,
    pub history: Vec<EventRow>,
}

/// Open cases of the same unit that may report the same matter, most alike first.
#[derive(Serialize, schemars::JsonSchema)]
pub struct Similar {
    pub instance: i64,
    pub items: Vec<yishi_engine::service::duplicates::Suggestion>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct History {
    pub instance: i64,
    pub events: Vec<EventRow>,
}

/// A file to check as it would be saved.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateBody {
    /// Path of the file relative to the workflows folder, e.g. `pingcheng/proposal.toml`.
    #[schemars(regex(
        pattern = r"^([^\x00-\x1f\x7f-\x9f/\\:.][^\x00-\x1f\x7f-\x9f/\\:]*/)+[^\x00-\x1f\x7f-\x9f/\\:.][^\x00-\x1f\x7f-\x9f/\\:]*\.toml$"
    ))]
    pub path: String,
    /// The file's text as it would be saved.
    pub text: String,
}

/// A case to start.
#[derive(Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// `unit/id` of the workflow.
    pub workflow: String,
    /// The case's data at the start (what the first step and scripts see as `data`).
    #[serde(default)]
    pub data: Map<String, Value>,
    /// How urgent the matter is: one of the workflow's urgency levels (its default when
    /// absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urgency: Option<String>,
}

/// A change of a case's urgency (at triage).
#[derive(Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UrgencyBody {
    /// The new level, one of the workflow's urgency levels.
    pub level: String,
    /// Why (recorded in the history).
    #[schemars(regex(pattern = r"\S"))]
    pub reason: String,
}

/// A duplicate to merge into this case.
#[derive(Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeBody {
    /// The id of the duplicate: it closes with outcome `merged`.
    #[serde(deserialize_with = "super::extract::int")]
    #[schemars(range(min = 1))]
    pub from: i64,
    /// Why (recorded in both histories).
    #[schemars(regex(pattern = r"\S"))]
    pub reason: String,
}

/// Both cases after a merge.
#[derive(Serialize, schemars::JsonSchema)]
pub struct MergeResult {
    /// The case the duplicate joined.
    pub into: InstanceView,
    /// The duplicate, closed with outcome `merged`.
    pub from: InstanceView,
}

/// An action on a case.
#[derive(Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActBody {
    /// The action, as listed in the case's `accepts`.
    pub action: String,
    /// The step to act on, when several active steps accept the action.
    #[serde(default)]
    pub step: Option<String>,
    /// The branch (token) to act on, when one step is active several times (one branch per
    /// item of a list).
    #[serde(default, deserialize_with = "super::extract::opt_int")]
    #[schemars(range(min = 0, max = u32::MAX))]
    pub token: Option<u32>,
    /// The action's fields, as listed in `accepts[].fields`.
    #[serde(default)]
    pub payload: Map<String, Value>,
    /// The person on whose behalf the action is entered (a resident's paper ballot).
    #[serde(default)]
    pub on_behalf_of: Option<Actor>,
    /// The revision the client last saw; the action is refused with 409 if it moved on.
    #[serde(default, deserialize_with = "super::extract::opt_int")]
    pub expected_revision: Option<i64>,
}

/// A cancellation.
#[derive(Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    /// Why (recorded in the history).
    #[schemars(regex(pattern = r"\S"))]
    pub reason: String,
    /// Cancel only this active step (WCP-19) instead of the whole case.
    #[serde(default)]
    pub step: Option<String>,
}

/// A move to another version.
#[derive(Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrateBody {
    /// The number of the version to move to (`version` in the versions listing).
    #[serde(deserialize_with = "super::extract::int")]
    #[schemars(range(min = 1))]
    pub to_version: i64,
    /// Old step -> new step, for active steps whose id changed or that are part-way through.
    #[serde(default)]
    pub steps: BTreeMap<String, String>,
    #[serde(default)]
    pub dry_run: bool,
}

/// A month of a workflow's working-day calendar.
#[derive(Serialize, schemars::JsonSchema)]
pub struct CalendarMonth {
    pub workflow: String,
    /// The active version, whose calendar this is.
    pub version: i64,
    /// The calendar's file and the files it extends (empty: the default calendar, weekends
    /// only).
    pub files: Vec<String>,
    /// The time zone deadlines are counted in.
    pub zone: String,
    /// Whether the calendar knows this year's holidays; if not, only weekends are marked.
    pub covered: bool,
    /// The notice the year's holidays come from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
    pub days: Vec<yishi_core::calendar::Day>,
}

/// Which dead letters: one by its `id`, or every one with `"all": true` (one of the two).
#[derive(Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterChoice {
    #[serde(default, deserialize_with = "super::extract::opt_int")]
    #[schemars(range(min = 1))]
    pub id: Option<i64>,
    #[serde(default)]
    pub all: bool,
}

impl DeadLetterChoice {
    /// The id, `None` for all; a body naming neither (or both) is refused, so that a forgotten
    /// id never touches every dead letter.
    pub fn target(&self) -> Result<Option<i64>, super::error::ApiError> {
        match (self.id, self.all) {
            (Some(id), false) if id >= 1 => Ok(Some(id)),
            (None, true) => Ok(None),
            _ => Err(super::error::ApiError::invalid(yishi_core::msg!("api-dead-letter-choice")).field("/id")),
        }
    }
}

/// How many dead letters an operation touched.
#[derive(Serialize, schemars::JsonSchema)]
pub struct Affected {
    pub count: u64,
}

/// A sitting to schedule (例会).
#[derive(Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    /// The unit (community) holding it.
    pub unit: String,
    /// The sitting workflow's id in that unit (default `sitting`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// When: RFC 3339 (`2026-10-10T19:00:00+08:00`), or `2026-10-10 19:00` in the deployment's
    /// time zone. Must be in the future.
    pub date: String,
    /// Where it meets.
    #[schemars(regex(pattern = r"\S"))]
    pub place: String,
    /// Who is expected (the representatives): the quorum is a share of them.
    #[schemars(length(min = 1))]
    pub expected: Vec<String>,
    /// A title, e.g. `十月例会`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// A case to put on a sitting's agenda, as staff choose.
#[derive(Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgendaBody {
    /// The case (its id); it must be waiting for a sitting of this kind.
    #[serde(deserialize_with = "super::extract::int")]
    #[schemars(range(min = 1))]
    pub case: i64,
}

/// Opening a sitting: who is present (the quorum is checked once).
#[derive(Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenBody {
    pub present: Vec<String>,
}

/// The decision on one agenda item.
#[derive(Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideBody {
    /// One of the outcomes the topic's waiting step names (e.g. `agreed`, `sent_back`).
    pub outcome: String,
    /// A show of hands, recorded with the decision.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub for_: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub against: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub abstain: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Closing a sitting with its minutes; topics not reached roll over.
#[derive(Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseBody {
    #[schemars(regex(pattern = r"\S"))]
    pub minutes: String,
}

/// The sittings of a unit.
#[derive(Serialize, schemars::JsonSchema)]
pub struct SittingList {
    pub items: Vec<yishi_engine::service::gatherings::GatheringView>,
}

/// Calling a sitting off (before it opens); its topics go to the next sitting.
#[derive(Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CallOffBody {
    #[schemars(regex(pattern = r"\S"))]
    pub reason: String,
}

/// A staff account to create (the console's sign-in).
#[derive(Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccountBody {
    /// The sign-in name: one word.
    pub name: String,
    /// `admin`, `operator` or `viewer`, as for tokens.
    pub role: String,
    /// `*` or a unit (and the units below it), inside the caller's own scope.
    pub scope: String,
    /// Workflow roles the holder acts with.
    #[serde(default)]
    pub acts_as: Vec<String>,
    /// The first password (at least 10 characters); the holder must change it at sign-in.
    pub password: String,
}

/// A new first password for an account (its sessions end).
#[derive(Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    pub password: String,
}

/// Accounts.
#[derive(Serialize, schemars::JsonSchema)]
pub struct AccountList {
    pub items: Vec<yishi_engine::store::AccountRow>,
}

/// A token to create.
#[derive(Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenBody {
    pub name: String,
    pub role: String,
    pub scope: String,
    #[serde(default)]
    pub acts_as: Vec<String>,
}

/// A token just made: its secret is shown this once.
#[derive(Serialize, schemars::JsonSchema)]
pub struct NewTokenResult {
    pub token: yishi_engine::store::TokenRow,
    pub secret: String,
}

/// Tokens (never their secrets).
#[derive(Serialize, schemars::JsonSchema)]
pub struct TokenList {
    pub items: Vec<yishi_engine::store::TokenRow>,
}

/// Whether a revocation took effect.
#[derive(Serialize, schemars::JsonSchema)]
pub struct Revoked {
    pub revoked: bool,
}
