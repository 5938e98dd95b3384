//! Suggestions of likely duplicates among a unit's open cases (`yishi_core::similar`): a list
//! for staff to look at, never a merge.

use serde::Serialize;
use serde_json::{Map, Value};
use yishi_core::similar::{Fingerprint, Report};

use super::{Engine, EngineError};
use crate::store::ListFilter;

/// Open cases compared at most (the newest first).
const COMPARED: u32 = 2000;

/// A case that may be the same matter.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct Suggestion {
    pub id: i64,
    pub workflow: String,
    /// How alike the two reports are: bigram overlap 0 to 1, +0.15 for the same place, +0.05
    /// for the same category.
    pub score: f64,
    pub title: Option<String>,
    pub location: Option<String>,
    pub category: Option<String>,
}

fn text<'d>(data: &'d Map<String, Value>, keys: &[&str]) -> Option<&'d str> {
    keys.iter().find_map(|k| data.get(*k).and_then(Value::as_str))
}

/// A report as the data says it: `title`, `text` (or `description`, `content`), `location`,
/// `category`.
fn report(data: &Map<String, Value>) -> Report<'_> {
    Report {
        title: text(data, &["title"]).unwrap_or_default(),
        text: text(data, &["text", "description", "content"]).unwrap_or_default(),
        location: text(data, &["location"]),
        category: text(data, &["category"]),
    }
}

impl Engine {
    /// Open cases of case `id`'s unit that may report the same matter, most alike first, at
    /// most `limit`.
    pub async fn similar(&self, id: i64, limit: usize) -> Result<Vec<Suggestion>, EngineError> {
        let row = self.get(id).await?;
        let target = Fingerprint::of(&report(&row.state.data));
        let filter = ListFilter {
            units: Some(vec![row.unit.clone()]),
            status: Some("active".into()),
            limit: COMPARED,
            ..ListFilter::default()
        };
        let mut found = Vec::new();
        for s in self.list(&filter).await?.into_iter().filter(|s| s.id != id) {
            let other = self.get(s.id).await?;
            let r = report(&other.state.data);
            let score = target.score(&Fingerprint::of(&r));
            if score > 0.0 {
                found.push(Suggestion {
                    id: s.id,
                    workflow: s.workflow,
                    score: (score * 1000.0).round() / 1000.0,
                    title: (!r.title.is_empty()).then(|| r.title.to_owned()),
                    location: r.location.map(str::to_owned),
                    category: r.category.map(str::to_owned),
                });
            }
        }
        found.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
        found.truncate(limit);
        Ok(found)
    }
}
