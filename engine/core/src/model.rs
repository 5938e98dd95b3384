//! The authored model: workflow files as admins write them, before any checking.
//!
//! These types are the single source of the file format: the loader deserializes them, and
//! the JSON Schema that editors use is generated from them (see [`crate::schema`]).
//! Step kinds add their own settings as further keys of a step table.

use std::sync::LazyLock;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// Text for people: one string, or one per language (`{ zh-CN = "提交提案", en = "submit" }`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Text {
    Plain(String),
    /// By language tag: `zh-CN` (or `zh`) and `en`.
    Translated(IndexMap<String, String>),
}

impl Text {
    /// The text in `lang`, or the closest there is.
    pub fn get(&self, lang: crate::i18n::Lang) -> &str {
        match self {
            Text::Plain(s) => s,
            Text::Translated(m) => m
                .iter()
                .find(|(k, _)| crate::i18n::Lang::parse(k) == Some(lang))
                .or_else(|| m.first())
                .map_or("", |(_, v)| v.as_str()),
        }
    }

    /// Language tags this text names that the catalog does not speak.
    pub fn unknown_languages(&self) -> Vec<&str> {
        match self {
            Text::Plain(_) => Vec::new(),
            Text::Translated(m) => {
                m.keys().filter(|k| crate::i18n::Lang::parse(k).is_none()).map(String::as_str).collect()
            }
        }
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text::Plain(s.to_owned())
    }
}

/// The top level of a workflow file (`workflows/<unit>/<name>.toml`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowHeader {
    /// Identifier of the workflow within its unit (letters, digits, `_`, `-`).
    pub id: String,
    /// Human title, e.g. `居民提案`, or one per language: `{ zh-CN = "居民提案", en = "resident proposal" }`.
    #[serde(default)]
    pub title: Option<Text>,
    #[serde(default)]
    pub description: Option<Text>,
    /// `unit/workflow` of a workflow this one extends, e.g. `pingcheng/proposal`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub extends: Option<Spanned<String>>,
    /// A template meant to be extended: it is checked, but no case can start on it.
    #[serde(default, rename = "abstract")]
    pub is_abstract: bool,
    /// Layering: inherited steps this workflow drops.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub remove: Vec<Spanned<String>>,
    /// The first step (default: the first step listed).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub start: Option<Spanned<String>>,
    /// A working-day calendar file, relative to this file.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub calendar: Option<Spanned<String>>,
    /// Named policy values (quorum, deadlines, thresholds) admins tune without touching steps.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, ParamDecl>")]
    pub params: IndexMap<Spanned<String>, Spanned<ParamDecl>>,
    /// Roles that may act in this workflow, with a description each.
    #[serde(default)]
    pub roles: IndexMap<String, Text>,
    /// The stages a step can belong to (`stage = "..."` on a step), with their titles, e.g.
    /// `raise = "提"`; an overview groups open cases by them.
    #[serde(default)]
    pub stages: IndexMap<String, Text>,
    /// Titles of outcomes and actions by id, for people: `passed = "通过"`.
    #[serde(default)]
    pub labels: IndexMap<String, Text>,
    /// Data keys that hold residents' personal data (names, phones, addresses), e.g.
    /// `["proposer_name", "phone"]`: masked in archives and exports unless asked for. Added
    /// to what the workflows it extends name.
    #[serde(default)]
    pub personal: Vec<String>,
    /// How urgent a case is (紧急 / 较急 / 一般): the levels, the level a case gets when its
    /// intake names none, and where and by whom it may be changed. Replaces what the workflows
    /// it extends declare.
    #[serde(default)]
    #[schemars(with = "Option<UrgencyDecl>")]
    pub urgency: Option<Spanned<UrgencyDecl>>,
    /// Merging duplicates (合并): where a case may be merged into another and whom it brings.
    /// Replaces what the workflows it extends declare.
    #[serde(default)]
    #[schemars(with = "Option<MergeDecl>")]
    pub merge: Option<Spanned<MergeDecl>>,
    /// What counts for the statistics (响应率、解决率、满意率). Replaces what the workflows it
    /// extends declare.
    #[serde(default)]
    #[schemars(with = "Option<StatisticsDecl>")]
    pub statistics: Option<Spanned<StatisticsDecl>>,
}

/// What a case of the workflow counts for (`[statistics]`): when it has been responded to,
/// and which of the residents' own answers in a follow-up (回访) say it was resolved and that
/// they are satisfied.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatisticsDecl {
    /// Entering one of these steps counts as responded (default: entering any step after the
    /// first).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub responded: Vec<Spanned<String>>,
    /// Follow-up steps (回访): a rating given there is a resident's answer.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub follow_up: Vec<Spanned<String>>,
    /// The payload field of an answer that holds the rating (default `score`).
    #[serde(default)]
    pub rating: Option<String>,
    /// An answer rating at least this says the matter was resolved: a number or a param
    /// (default 3, of 5).
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub resolved_at_least: Option<Spanned<crate::kind::NumberOrParam>>,
    /// An answer rating at least this is satisfied: a number or a param (default 4, of 5).
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub satisfied_at_least: Option<Spanned<crate::kind::NumberOrParam>>,
}

/// How cases of a workflow are merged into others (`[merge]`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeDecl {
    /// Steps at which a case may be merged into another (triage); default: the first step.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub at: Vec<Spanned<String>>,
    /// Roles that may merge; default: the roles that may act at those steps.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub roles: Vec<Spanned<String>>,
    /// Data paths naming the people a merged case brings to the one it joins (a name or a
    /// list of names): `["proposer", "raise.co_signers"]`.
    #[serde(default)]
    pub people: Vec<String>,
}

/// The urgency levels of a workflow (`[urgency]`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UrgencyDecl {
    /// The levels, most urgent first, with their titles:
    /// `urgent = { zh-CN = "紧急", en = "urgent" }`. Lists sort by this order.
    pub levels: IndexMap<String, Text>,
    /// The level of a case whose intake names none (default: the last, least urgent).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub default: Option<Spanned<String>>,
    /// Steps at which a case's level may be changed (triage); default: the first step.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub change_at: Vec<Spanned<String>>,
    /// Roles that may change it; default: the roles that may act at those steps.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub change_roles: Vec<Spanned<String>>,
}

/// The whole workflow file, for the JSON Schema: the header plus the steps.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct WorkflowFile {
    #[serde(flatten)]
    pub header: WorkflowHeader,
    /// The steps. A step with the id of an inherited step replaces it.
    pub steps: Vec<StepSchema>,
}

/// The type of a param.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    /// A whole number.
    Int,
    /// Any number.
    Number,
    /// A share between 0 and 1 (e.g. a quorum of 0.5).
    Share,
    Bool,
    String,
    /// A duration such as `7d`, `48h` or `5wd` (working days).
    Duration,
    /// A list of strings.
    List,
}

impl ParamType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::Int => "int",
            ParamType::Number => "number",
            ParamType::Share => "share",
            ParamType::Bool => "bool",
            ParamType::String => "string",
            ParamType::Duration => "duration",
            ParamType::List => "list",
        }
    }
}

/// A param: its type (required where it is first declared) and value.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamDecl {
    #[serde(default, rename = "type")]
    pub ty: Option<ParamType>,
    /// The value. An extending workflow may set only this.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub value: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub description: Option<Text>,
    /// Smallest allowed value (numbers).
    #[serde(default)]
    pub min: Option<f64>,
    /// Largest allowed value (numbers).
    #[serde(default)]
    pub max: Option<f64>,
}

/// The keys every step has, whatever its kind. Further keys are the kind's settings.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepCommon {
    /// Identifier of the step, unique in the workflow.
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// The step kind, provided by a plugin (`vote`, `meeting`, ...) or the engine (`choice`, `end`, ...).
    #[schemars(with = "String")]
    pub kind: Spanned<String>,
    #[serde(default)]
    pub title: Option<Text>,
    #[serde(default)]
    pub description: Option<Text>,
    /// The stage the step belongs to, one of the workflow's `stages`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub stage: Option<Spanned<String>>,
    /// Roles that may perform any action of this step (`"*"`: anyone).
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub roles: Option<Vec<Spanned<String>>>,
    /// Roles per action, overriding `roles` for that action: `actors = { close = ["staff"] }`.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, Vec<String>>")]
    pub actors: IndexMap<Spanned<String>, Vec<Spanned<String>>>,
    /// The step after this one, for every outcome not listed in `on`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub next: Option<Spanned<String>>,
    /// The step after this one per outcome: `on = { passed = "review", failed = "revise" }`.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, String>")]
    pub on: IndexMap<Spanned<String>, Spanned<String>>,
    /// A Rhai condition evaluated on entry; when false the step is skipped with outcome `skipped`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub guard: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Option<DeadlineDecl>")]
    pub deadline: Option<Spanned<DeadlineDecl>>,
    /// Layering: insert this new step before an inherited step; transitions that led to that
    /// step lead here, and this step's default `next` is that step.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub insert_before: Option<Spanned<String>>,
}

/// The schema of a step: the common keys plus any kind-specific settings.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct StepSchema {
    #[serde(flatten)]
    pub common: StepCommon,
    /// Settings of the step kind.
    #[serde(flatten)]
    #[schemars(with = "IndexMap<String, serde_json::Value>")]
    pub settings: IndexMap<String, serde_json::Value>,
}

/// A deadline on a step: when it passes, the step kind decides what happens (by default the
/// step finishes with `outcome`). Together with the step's actions this is a deferred choice.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadlineDecl {
    /// A duration (`7d`, `48h`, `5wd`) or the name of a duration param.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub after: Option<Spanned<String>>,
    /// A Rhai script returning a duration string, computed on entry (instead of `after`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub compute: Option<Spanned<String>>,
    /// The outcome when the deadline passes (default `expired`).
    #[serde(default)]
    pub outcome: Option<String>,
    /// Durations per urgency level, instead of `after` for a case at that level:
    /// `by_urgency = { urgent = "24h", pressing = "3d" }` (a duration or a duration param).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(with = "IndexMap<String, String>")]
    pub by_urgency: IndexMap<Spanned<String>, Spanned<String>>,
    /// Reminders before the deadline, e.g. `["1d"]`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub remind_before: Vec<Spanned<String>>,
    /// What the time counts from: `entry` (when the step is entered, the default) or
    /// `gathering` (the date of the gathering, such as a sitting, the case is or was last on
    /// the agenda of; not armed while it is on none).
    #[serde(default)]
    pub from: DeadlineFrom,
}

/// What a deadline counts from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineFrom {
    /// When the step is entered.
    #[default]
    Entry,
    /// The date of the case's gathering (a sitting).
    Gathering,
}

/// A unit's own file (`unit.toml`): what the folder is in the hierarchy
/// district (区) > street (街道) > community (社区).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnitFile {
    /// Display name, e.g. `柳航里社区 (Liuhangli community)`.
    pub name: String,
    /// `district`, `street`, `community`, `grid` ...
    #[serde(default)]
    pub level: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// Keys of a step table that every kind has.
pub fn step_keys() -> &'static [String] {
    static KEYS: LazyLock<Vec<String>> = LazyLock::new(|| schema_keys(&schemars::schema_for!(StepCommon)));
    &KEYS
}

pub(crate) fn header_keys() -> &'static [String] {
    static KEYS: LazyLock<Vec<String>> = LazyLock::new(|| {
        let mut k = schema_keys(&schemars::schema_for!(WorkflowHeader));
        k.push("steps".into());
        k
    });
    &KEYS
}

fn schema_keys(schema: &schemars::Schema) -> Vec<String> {
    schema.get("properties").and_then(|p| p.as_object()).map(|p| p.keys().cloned().collect()).unwrap_or_default()
}

/// Whether `id` is a valid workflow or step id.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}
