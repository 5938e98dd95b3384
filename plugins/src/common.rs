//! Helpers shared by the governance step kinds: step state, electorates, settings pieces.

use std::collections::BTreeSet;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use toml::Spanned;
use yishi_core::i18n::Message;
use yishi_core::kind::{Actor, CompileCx, NumberOrParam, StepCx};
use yishi_core::msg;

/// Reads the step's state as `T` (default when empty).
pub fn load<T: DeserializeOwned + Default>(cx: &StepCx<'_>) -> T {
    if cx.state.is_null() { T::default() } else { T::deserialize(&cx.state).unwrap_or_default() }
}

/// Stores the step's state.
pub fn save<T: Serialize>(cx: &mut StepCx<'_>, state: &T) {
    cx.state = serde_json::to_value(state).unwrap_or(Value::Null);
}

/// Who may take part (vote, rate, sign): declared in settings as exactly one of `role`,
/// `list` (a list file of members) or `data` (a data key holding a list of ids).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ElectorateDecl {
    /// Everyone holding this role, e.g. `representative`.
    pub role: Option<String>,
    /// A list file with `members = ["id", ...]` or `[[members]] id = "..."`.
    #[schemars(with = "Option<String>")]
    pub list: Option<Spanned<String>>,
    /// A top-level data key holding a list of ids (e.g. the attendees recorded by a meeting).
    pub data: Option<String>,
    /// How many people the electorate has, when it cannot be counted (a role): a number or a param.
    #[schemars(with = "Option<serde_json::Value>")]
    pub size: Option<Spanned<NumberOrParam>>,
}

/// A compiled electorate.
#[derive(Clone, Debug)]
pub enum Electorate {
    Role(String),
    Members(Arc<BTreeSet<String>>),
    Data(String),
}

#[derive(Clone, Debug)]
pub struct CompiledElectorate {
    pub who: Electorate,
    pub size: Option<u64>,
}

impl ElectorateDecl {
    pub fn compile(&self, cx: &mut CompileCx<'_>, span: std::ops::Range<usize>) -> Option<CompiledElectorate> {
        let count = [self.role.is_some(), self.list.is_some(), self.data.is_some()].iter().filter(|b| **b).count();
        if count != 1 {
            cx.error(Some(span), msg!("check-electorate-one-of"), Some(msg!("hint-electorate-example")));
            return None;
        }
        let size = match &self.size {
            Some(s) => Some(cx.number(s)?.max(0.0) as u64),
            None => None,
        };
        if let Some(role) = &self.role {
            if !cx.role(&Spanned::new(span.clone(), role.clone())) {
                return None;
            }
            return Some(CompiledElectorate { who: Electorate::Role(role.clone()), size });
        }
        if let Some(path) = &self.list {
            let list = cx.list(path)?;
            let members = members_of(&list);
            if members.is_empty() {
                cx.error(
                    Some(path.span()),
                    msg!("check-list-no-members", list = path.get_ref()),
                    Some(msg!("hint-members-example")),
                );
                return None;
            }
            let n = members.len() as u64;
            return Some(CompiledElectorate { who: Electorate::Members(Arc::new(members)), size: size.or(Some(n)) });
        }
        Some(CompiledElectorate { who: Electorate::Data(self.data.clone().unwrap_or_default()), size })
    }
}

/// Member ids of a list file: `members = ["a", "b"]` or `[[members]] id = "a"`.
pub fn members_of(list: &Value) -> BTreeSet<String> {
    list.get("members")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| m.as_str().or_else(|| m.get("id").and_then(Value::as_str)).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

impl CompiledElectorate {
    /// Whether `who` belongs to the electorate.
    pub fn admits(&self, cx: &StepCx<'_>, who: &Actor) -> bool {
        match &self.who {
            Electorate::Role(r) => who.roles.iter().any(|x| x == r),
            Electorate::Members(m) => m.contains(&who.id),
            Electorate::Data(key) => data_path(cx, key)
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(who.id.as_str()))),
        }
    }

    /// The electorate's size at run time.
    pub fn size(&self, cx: &StepCx<'_>) -> Option<u64> {
        match &self.who {
            Electorate::Data(key) if self.size.is_none() => {
                data_path(cx, key).and_then(Value::as_array).map(|a| a.len() as u64)
            }
            _ => self.size,
        }
    }

    /// Who a notice about the electorate goes to: the role, or the listed members.
    pub fn recipients(&self) -> Vec<String> {
        match &self.who {
            Electorate::Role(r) => vec![r.clone()],
            Electorate::Members(m) => m.iter().cloned().collect(),
            Electorate::Data(_) => Vec::new(),
        }
    }

    pub fn describe(&self) -> Message {
        match &self.who {
            Electorate::Role(r) => msg!("electorate-role", role = r),
            Electorate::Members(m) => msg!("electorate-members", count = m.len()),
            Electorate::Data(k) => msg!("electorate-data", key = k),
        }
    }
}

/// A score scale or count read from settings, resolved against params.
pub fn opt_number(cx: &mut CompileCx<'_>, v: &Option<Spanned<NumberOrParam>>) -> Result<Option<f64>, ()> {
    match v {
        None => Ok(None),
        Some(s) => cx.number(s).map(Some).ok_or(()),
    }
}

/// A value of the case's data by a dotted path (`meeting.attendees`).
pub fn data_path<'a>(cx: &'a StepCx<'_>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut v = cx.get(parts.next()?)?;
    for p in parts {
        v = v.get(p)?;
    }
    Some(v)
}

/// Strings of a JSON array.
pub fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}
