//! Words and pictures of definitions: what changed between two versions (for admins), and
//! diagrams of a workflow ([`diagram`]: Mermaid text and SVG).

pub mod diagram;
mod svg;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::i18n::Message;
use crate::msg;

/// One difference between two versions.
#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct Change {
    /// `params`, `roles`, `steps`, `transitions`, `scripts`, `settings` or `workflow`.
    pub area: &'static str,
    /// In plain words, e.g. "param `quorum` changed from 0.5 to 0.6".
    pub text: Message,
}

const SCRIPT_KEYS: &[&str] = &["guard", "rule", "run", "file", "items", "candidates", "departments_from"];
const TRANSITION_KEYS: &[&str] = &["next", "on", "branches", "body", "join"];

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 { format!("{}…", s.chars().take(79).collect::<String>()) } else { s }
}

fn steps_of(v: &Value) -> Vec<(&str, &Map<String, Value>)> {
    v.get("steps")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|s| Some((s.get("id")?.as_str()?, s.as_object()?))).collect())
        .unwrap_or_default()
}

/// What changed from effective definition `old` to `new`.
pub fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    let mut push = |area, text: Message| out.push(Change { area, text });
    for key in ["title", "start", "calendar"] {
        if old.get(key) != new.get(key) {
            push(
                "workflow",
                msg!(
                    "diff-changed",
                    key = key,
                    from = short(old.get(key).unwrap_or(&Value::Null)),
                    to = short(new.get(key).unwrap_or(&Value::Null))
                ),
            );
        }
    }
    let empty = Map::new();
    let (op, np) = (
        old.get("params").and_then(Value::as_object).unwrap_or(&empty),
        new.get("params").and_then(Value::as_object).unwrap_or(&empty),
    );
    for (k, v) in np {
        match op.get(k) {
            None => push("params", msg!("diff-param-added", name = k, value = short(v.get("value").unwrap_or(v)))),
            Some(o) if o != v => push(
                "params",
                msg!(
                    "diff-param-changed",
                    name = k,
                    from = short(o.get("value").unwrap_or(o)),
                    to = short(v.get("value").unwrap_or(v))
                ),
            ),
            _ => {}
        }
    }
    for k in op.keys().filter(|k| !np.contains_key(*k)) {
        push("params", msg!("diff-param-removed", name = k));
    }
    let (or, nr) = (
        old.get("roles").and_then(Value::as_object).unwrap_or(&empty),
        new.get("roles").and_then(Value::as_object).unwrap_or(&empty),
    );
    for k in nr.keys().filter(|k| !or.contains_key(*k)) {
        push("roles", msg!("diff-role-added", role = k));
    }
    for k in or.keys().filter(|k| !nr.contains_key(*k)) {
        push("roles", msg!("diff-role-removed", role = k));
    }
    let (os, ns) = (steps_of(old), steps_of(new));
    for (id, s) in &ns {
        let Some((_, o)) = os.iter().find(|(i, _)| i == id) else {
            push(
                "steps",
                msg!("diff-step-added", step = *id, kind = s.get("kind").and_then(Value::as_str).unwrap_or("?")),
            );
            continue;
        };
        if o.get("kind") != s.get("kind") {
            push(
                "steps",
                msg!(
                    "diff-step-kind",
                    step = *id,
                    kind = short(s.get("kind").unwrap_or(&Value::Null)),
                    was = short(o.get("kind").unwrap_or(&Value::Null))
                ),
            );
            continue;
        }
        let mut keys: Vec<&String> = s.keys().chain(o.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let (a, b) = (o.get(k), s.get(k));
            if a == b || k == "title" || k == "description" {
                continue;
            }
            let area = if TRANSITION_KEYS.contains(&k.as_str()) {
                "transitions"
            } else if SCRIPT_KEYS.contains(&k.as_str()) {
                "scripts"
            } else {
                "settings"
            };
            let text = match (a, b) {
                (None, Some(v)) => msg!("diff-step-key-set", step = *id, key = k, value = short(v)),
                (Some(_), None) => msg!("diff-step-key-removed", step = *id, key = k),
                (Some(x), Some(y)) if area == "scripts" => {
                    msg!("diff-step-script", step = *id, key = k, from = short(x), to = short(y))
                }
                (Some(x), Some(y)) => {
                    msg!("diff-step-key-changed", step = *id, key = k, from = short(x), to = short(y))
                }
                (None, None) => continue,
            };
            push(area, text);
        }
    }
    for (id, _) in os.iter().filter(|(i, _)| !ns.iter().any(|(n, _)| n == i)) {
        push("steps", msg!("diff-step-removed", step = *id));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_speaks_in_admins_words() {
        let old = json!({"params": {"quorum": {"type": "share", "value": 0.5}}, "steps": [{"id": "vote", "kind": "vote", "quorum": "quorum", "next": "end"}, {"id": "end", "kind": "end"}]});
        let new = json!({"params": {"quorum": {"type": "share", "value": 0.6}}, "roles": {"legal": "x"}, "steps": [{"id": "vote", "kind": "vote", "quorum": "quorum", "next": "review", "guard": "data.x > 1"}, {"id": "review", "kind": "review"}, {"id": "end", "kind": "end"}]});
        let texts: Vec<String> = diff(&old, &new).into_iter().map(|c| format!("{}: {}", c.area, c.text)).collect();
        assert_eq!(
            texts,
            [
                "params: param `quorum` changed from 0.5 to 0.6",
                "roles: role `legal` added",
                "scripts: step `vote`: `guard` set to \"data.x > 1\"",
                "transitions: step `vote`: `next` changed from \"end\" to \"review\"",
                "steps: step `review` added (review)",
            ]
        );
        assert!(diff(&new, &new).is_empty());
    }
}

/// Everything that changed between two versions: the effective definition in words, and each
/// file the versions are built from (workflow files, scripts, lists, calendars) as text.
#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct VersionDiff {
    pub changes: Vec<Change>,
    pub files: Vec<FileChange>,
}

/// How one file differs between two versions.
#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct FileChange {
    /// Path relative to the workflows folder.
    pub path: String,
    /// `added`, `removed` or `changed`.
    pub status: &'static str,
    /// A unified diff of the text (three lines of context).
    pub diff: String,
}

/// [`diff`] of the effective definitions, plus a text diff of every file that differs.
pub fn version_diff(
    old: &Value,
    old_files: &std::collections::BTreeMap<String, String>,
    new: &Value,
    new_files: &std::collections::BTreeMap<String, String>,
) -> VersionDiff {
    let mut files = Vec::new();
    let paths: std::collections::BTreeSet<&String> = old_files.keys().chain(new_files.keys()).collect();
    for path in paths {
        let (a, b) = (old_files.get(path), new_files.get(path));
        let status = match (a, b) {
            (None, Some(_)) => "added",
            (Some(_), None) => "removed",
            (Some(x), Some(y)) if x != y => "changed",
            _ => continue,
        };
        let (a, b) = (a.map_or("", String::as_str), b.map_or("", String::as_str));
        let diff = similar::TextDiff::from_lines(a, b)
            .unified_diff()
            .context_radius(3)
            .header(&format!("a/{path}"), &format!("b/{path}"))
            .to_string();
        files.push(FileChange { path: path.clone(), status, diff });
    }
    VersionDiff { changes: diff(old, new), files }
}
