//! The API's request and response bodies: what the handlers read and write and what the
//! OpenAPI document describes (both take them from here).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use yishi_core::kind::Actor;

/// A page of items.
#[derive(Serialize, schemars::JsonSchema)]
pub struct Items<T> {
    pub items: Vec<T>,
}

/// A workflow in a listing.
#[derive(Serialize, schemars::JsonSchema)]
pub struct WorkflowItem {
    pub key: String,
    pub unit: String,
    pub id: String,
    pub title: String,
    #[serde(rename = "abstract")]
    pub is_abstract: bool,
    /// The active version's number (1, 2 ...).
    pub version: i64,
    /// The active version's id (for migrations).
    pub version_id: i64,
    pub hash: String,
    pub active_instances: i64,
    /// `ok`, or `kept_last_good` when the files have problems and the last good version runs.
    pub status: String,
}

/// A workflow's effective definition.
#[derive(Serialize, schemars::JsonSchema)]
pub struct WorkflowDetail {
    pub key: String,
    pub version: i64,
    pub version_id: i64,
    pub hash: String,
    #[serde(rename = "abstract")]
    pub is_abstract: bool,
    /// The effective definition after layering.
    pub definition: Value,
}

/// A stored version.
#[derive(Serialize, schemars::JsonSchema)]
pub struct VersionItem {
    pub version: i64,
    pub version_id: i64,
    pub hash: String,
    pub created_at: i64,
    pub active_instances: i64,
    pub current: bool,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct Versions {
    pub workflow: String,
    pub items: Vec<VersionItem>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct Diff {
    pub workflow: String,
    pub from: i64,
    pub to: i64,
    pub changes: Vec<yishi_core::describe::Change>,
    /// Every file of the two versions that differs, as a unified text diff.
    pub files: Vec<yishi_core::describe::FileChange>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct ReloadState {
    pub generation: u64,
    pub reloaded_at: i64,
    pub last: Option<yishi_engine::service::ReloadStatus>,
    pub diagnostics: Vec<yishi_core::Diagnostic>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct Validation {
    pub ok: bool,
    pub diagnostics: Vec<yishi_core::Diagnostic>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct InstancePage {
    pub items: Vec<yishi_engine::store::InstanceSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<i64>,
}

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
    pub instance: yishi_engine::service::InstanceView,
    pub tokens: Vec<yishi_core::runtime::Token>,
    pub accepts: Vec<yishi_engine::service::AcceptedAction>,
    pub timers: Vec<TimerItem>,
    pub history: Vec<yishi_engine::store::EventRow>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct History {
    pub instance: i64,
    pub events: Vec<yishi_engine::store::EventRow>,
}

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

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// `unit/id` of the workflow.
    pub workflow: String,
    #[serde(default)]
    pub data: Map<String, Value>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActBody {
    pub action: String,
    #[serde(default)]
    pub step: Option<String>,
    #[serde(default, deserialize_with = "de_opt_int")]
    #[schemars(range(min = 0, max = u32::MAX))]
    pub token: Option<u32>,
    #[serde(default)]
    pub payload: Map<String, Value>,
    /// The person on whose behalf the action is entered (a resident's paper ballot).
    #[serde(default)]
    pub on_behalf_of: Option<Actor>,
    /// The revision the client last saw; the action is refused with 409 if it moved on.
    #[serde(default, deserialize_with = "de_opt_int")]
    pub expected_revision: Option<i64>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    /// Why (recorded in the history).
    #[schemars(regex(pattern = r"\S"))]
    pub reason: String,
    /// Cancel only this active step (WCP-19) instead of the whole case.
    #[serde(default)]
    pub step: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrateBody {
    /// The version id (`version_id` in the versions listing) to move to.
    #[serde(deserialize_with = "de_int")]
    #[schemars(range(min = 1))]
    pub to_version: i64,
    /// Old step -> new step, for active steps whose id changed or that are part-way through.
    #[serde(default)]
    pub steps: BTreeMap<String, String>,
    #[serde(default)]
    pub dry_run: bool,
}

/// An integer that also accepts integral floats (`138.0`), which JSON Schema counts as integers.
pub(crate) fn de_opt_int<'de, D: serde::Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<Option<T>, D::Error> {
    match Option::<serde_json::Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => {
            let v =
                n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64));
            v.and_then(|v| T::try_from(v).ok())
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a whole number in range")))
        }
    }
}

pub(crate) fn de_int<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    de_opt_int::<D, i64>(d)?.ok_or_else(|| serde::de::Error::custom("a whole number is required"))
}
