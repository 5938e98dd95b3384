//! The compiled, runnable definition: every reference resolved, scripts compiled, settings typed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::calendar::Calendar;
use crate::duration::Duration;
use crate::kind::{ActionSpec, ParamValue, Step};
use crate::model::Text;
use crate::script::{Sandbox, Script};

/// A checked workflow, ready to run. Immutable; shared behind `Arc`.
#[derive(Debug)]
pub struct Definition {
    /// `unit/id`.
    pub key: String,
    /// The workflow's own file (relative to the workflows folder).
    pub file: String,
    pub unit: String,
    pub id: String,
    pub title: Text,
    pub description: Option<Text>,
    pub is_abstract: bool,
    /// Content hash (hex SHA-256) of the effective definition and every file it uses.
    pub hash: String,
    pub params: IndexMap<String, ParamValue>,
    /// Param values as the JSON map scripts and steps see.
    pub params_json: Map<String, Value>,
    pub roles: IndexMap<String, Text>,
    /// Stages a step can belong to, with their titles.
    pub stages: IndexMap<String, Text>,
    /// Titles of outcomes and actions by id.
    pub labels: IndexMap<String, Text>,
    pub steps: Vec<StepDef>,
    pub(crate) index: HashMap<String, usize>,
    pub start: usize,
    pub calendar: Arc<Calendar>,
    pub sandbox: Arc<Sandbox>,
    /// The effective definition as JSON, after layering: what runs and what tools show.
    pub effective: Value,
    /// The files this version was built from (path -> text), enough to rebuild it.
    pub sources: BTreeMap<String, String>,
    /// `unit/id` of the workflows this one extends, nearest first.
    pub extends: Vec<String>,
    /// Data keys holding residents' personal data (masked in archives and exports).
    pub personal: Vec<String>,
    /// The urgency levels cases of this workflow carry, when it declares them.
    pub urgency: Option<UrgencyDef>,
    /// How its cases are merged into others, when it allows it.
    pub merge: Option<MergeDef>,
    /// What its cases count for in the statistics.
    pub statistics: StatisticsDef,
}

/// Checked statistics settings (see [`crate::model::StatisticsDecl`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatisticsDef {
    /// Empty: entering any step after the first counts as responded.
    pub responded: Vec<String>,
    pub follow_up: Vec<String>,
    pub rating: String,
    pub resolved_at_least: f64,
    pub satisfied_at_least: f64,
}

impl Default for StatisticsDef {
    fn default() -> Self {
        StatisticsDef {
            responded: Vec::new(),
            follow_up: Vec::new(),
            rating: "score".into(),
            resolved_at_least: 3.0,
            satisfied_at_least: 4.0,
        }
    }
}

/// Checked merge settings (see [`crate::model::MergeDecl`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MergeDef {
    pub at: Vec<String>,
    pub roles: Vec<String>,
    pub people: Vec<String>,
}

/// Checked urgency levels (see [`crate::model::UrgencyDecl`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UrgencyDef {
    /// Most urgent first.
    pub levels: IndexMap<String, Text>,
    pub default: String,
    pub change_at: Vec<String>,
    pub change_roles: Vec<String>,
}

impl UrgencyDef {
    /// Where `level` sorts: 0 for the most urgent.
    pub fn rank(&self, level: &str) -> Option<u32> {
        self.levels.get_index_of(level).map(|i| i as u32)
    }
}

/// One compiled step.
#[derive(Debug)]
pub struct StepDef {
    pub id: String,
    pub kind: String,
    pub title: Option<Text>,
    /// The stage the step belongs to (one of the definition's `stages`).
    pub stage: Option<String>,
    pub behaviour: Arc<dyn Step>,
    pub next: Option<String>,
    pub on: IndexMap<String, String>,
    pub guard: Option<Script>,
    pub deadline: Option<DeadlineDef>,
    pub roles: Vec<String>,
    pub actors: IndexMap<String, Vec<String>>,
    pub actions: Vec<ActionSpec>,
    /// The file the step is written in.
    pub file: String,
}

#[derive(Debug, Clone)]
pub struct DeadlineDef {
    pub after: Option<Duration>,
    /// Durations for cases at these urgency levels, instead of `after`.
    pub by_urgency: IndexMap<String, Duration>,
    pub compute: Option<Script>,
    pub outcome: String,
    pub remind_before: Vec<Duration>,
    /// Counted from the date of the case's gathering instead of the step's entry.
    pub from_gathering: bool,
}

impl StepDef {
    /// The step an outcome leads to.
    pub fn target(&self, outcome: &str) -> Option<&str> {
        self.on.get(outcome).or(self.next.as_ref()).map(String::as_str)
    }

    /// Roles allowed to perform `action` here.
    pub fn allowed_roles(&self, action: &str) -> &[String] {
        self.actors.get(action).map_or(self.roles.as_slice(), Vec::as_slice)
    }

    pub fn action(&self, name: &str) -> Option<&ActionSpec> {
        self.actions.iter().find(|a| a.name == name)
    }
}

impl Definition {
    pub fn step(&self, id: &str) -> Option<&StepDef> {
        self.index.get(id).map(|&i| &self.steps[i])
    }

    /// A short summary for listings.
    pub fn summary(&self) -> DefinitionSummary {
        DefinitionSummary {
            key: self.key.clone(),
            unit: self.unit.clone(),
            id: self.id.clone(),
            title: self.title.clone(),
            hash: self.hash.clone(),
            is_abstract: self.is_abstract,
            steps: self.steps.len(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DefinitionSummary {
    pub key: String,
    pub unit: String,
    pub id: String,
    pub title: Text,
    pub hash: String,
    #[serde(rename = "abstract")]
    pub is_abstract: bool,
    pub steps: usize,
}
