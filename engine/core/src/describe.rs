//! Words and pictures of definitions: what changed between two versions (for admins), and a
//! Mermaid flowchart of a workflow.

use serde::Serialize;
use serde_json::{Map, Value};

/// One difference between two versions.
#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct Change {
    /// `params`, `roles`, `steps`, `transitions`, `scripts`, `settings` or `workflow`.
    pub area: &'static str,
    /// In plain words, e.g. "param `quorum` changed from 0.5 to 0.6".
    pub text: String,
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
    let mut push = |area, text: String| out.push(Change { area, text });
    for key in ["title", "start", "calendar"] {
        if old.get(key) != new.get(key) {
            push(
                "workflow",
                format!(
                    "`{key}` changed from {} to {}",
                    short(old.get(key).unwrap_or(&Value::Null)),
                    short(new.get(key).unwrap_or(&Value::Null))
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
            None => push("params", format!("param `{k}` added: {}", short(v.get("value").unwrap_or(v)))),
            Some(o) if o != v => push(
                "params",
                format!(
                    "param `{k}` changed from {} to {}",
                    short(o.get("value").unwrap_or(o)),
                    short(v.get("value").unwrap_or(v))
                ),
            ),
            _ => {}
        }
    }
    for k in op.keys().filter(|k| !np.contains_key(*k)) {
        push("params", format!("param `{k}` removed"));
    }
    let (or, nr) = (
        old.get("roles").and_then(Value::as_object).unwrap_or(&empty),
        new.get("roles").and_then(Value::as_object).unwrap_or(&empty),
    );
    for k in nr.keys().filter(|k| !or.contains_key(*k)) {
        push("roles", format!("role `{k}` added"));
    }
    for k in or.keys().filter(|k| !nr.contains_key(*k)) {
        push("roles", format!("role `{k}` removed"));
    }
    let (os, ns) = (steps_of(old), steps_of(new));
    for (id, s) in &ns {
        let Some((_, o)) = os.iter().find(|(i, _)| i == id) else {
            push("steps", format!("step `{id}` added ({})", s.get("kind").and_then(Value::as_str).unwrap_or("?")));
            continue;
        };
        if o.get("kind") != s.get("kind") {
            push(
                "steps",
                format!(
                    "step `{id}` is now a {} (was a {})",
                    short(s.get("kind").unwrap_or(&Value::Null)),
                    short(o.get("kind").unwrap_or(&Value::Null))
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
                (None, Some(v)) => format!("step `{id}`: `{k}` set to {}", short(v)),
                (Some(_), None) => format!("step `{id}`: `{k}` removed"),
                (Some(x), Some(y)) if area == "scripts" => {
                    format!("step `{id}`: script `{k}` changed from {} to {}", short(x), short(y))
                }
                (Some(x), Some(y)) => format!("step `{id}`: `{k}` changed from {} to {}", short(x), short(y)),
                (None, None) => continue,
            };
            push(area, text);
        }
    }
    for (id, _) in os.iter().filter(|(i, _)| !ns.iter().any(|(n, _)| n == i)) {
        push("steps", format!("step `{id}` removed"));
    }
    out
}

fn node_id(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

fn label(s: &str) -> String {
    s.replace('"', "'")
}

/// A Mermaid flowchart of an effective definition.
pub fn mermaid(def: &Value) -> String {
    let mut out = String::from("flowchart TD\n");
    let steps = steps_of(def);
    if let Some(start) = def.get("start").and_then(Value::as_str) {
        out.push_str(&format!("    start((start)) --> {}\n", node_id(start)));
    }
    for (id, s) in &steps {
        let kind = s.get("kind").and_then(Value::as_str).unwrap_or("?");
        let title = s.get("title").and_then(Value::as_str).unwrap_or(id);
        let text = label(&format!("{title}<br/><i>{kind}</i>"));
        let shape = match kind {
            "end" => format!("([\"{text}\"])"),
            "choice" => format!("{{\"{text}\"}}"),
            "parallel" | "inclusive" | "foreach" | "join" => format!("[/\"{text}\"/]"),
            _ => format!("[\"{text}\"]"),
        };
        out.push_str(&format!("    {}{shape}\n", node_id(id)));
    }
    for (id, s) in &steps {
        let from = node_id(id);
        if let Some(Value::Object(on)) = s.get("on") {
            for (outcome, to) in on {
                if let Some(to) = to.as_str() {
                    out.push_str(&format!("    {from} -- \"{}\" --> {}\n", label(outcome), node_id(to)));
                }
            }
        }
        if let Some(next) = s.get("next").and_then(Value::as_str) {
            out.push_str(&format!("    {from} --> {}\n", node_id(next)));
        }
        if let Some(Value::Array(b)) = s.get("branches") {
            for br in b {
                let (to, when) = match br {
                    Value::String(t) => (t.as_str(), None),
                    Value::Object(m) => {
                        (m.get("to").and_then(Value::as_str).unwrap_or(""), m.get("when").and_then(Value::as_str))
                    }
                    _ => continue,
                };
                match when {
                    Some(w) => out.push_str(&format!("    {from} -- \"{}\" --> {}\n", label(w), node_id(to))),
                    None => out.push_str(&format!("    {from} --> {}\n", node_id(to))),
                }
            }
        }
        if let Some(body) = s.get("body").and_then(Value::as_str) {
            out.push_str(&format!("    {from} -- \"each item\" --> {}\n", node_id(body)));
        }
        if let Some(join) = s.get("join").and_then(Value::as_str) {
            out.push_str(&format!("    {from} -.-> {}\n", node_id(join)));
        }
    }
    out
}

fn dot_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', " "))
}

/// A Graphviz DOT graph of an effective definition (for SVG rendering).
pub fn dot(def: &Value) -> String {
    let mut out = String::from("digraph workflow {\n");
    let steps = steps_of(def);
    for (id, s) in &steps {
        let kind = s.get("kind").and_then(Value::as_str).unwrap_or("?");
        let title = s.get("title").and_then(Value::as_str).unwrap_or(id);
        let shape = match kind {
            "end" => "ellipse",
            "choice" => "diamond",
            "parallel" | "inclusive" | "foreach" | "join" => "hexagon",
            _ => "box",
        };
        out.push_str(&format!("  {} [label={}, shape={shape}];\n", dot_str(id), dot_str(&format!("{title} ({kind})"))));
    }
    for (id, s) in &steps {
        let mut edge = |to: &str, label: Option<&str>| match label {
            Some(l) => out.push_str(&format!("  {} -> {} [label={}];\n", dot_str(id), dot_str(to), dot_str(l))),
            None => out.push_str(&format!("  {} -> {};\n", dot_str(id), dot_str(to))),
        };
        if let Some(Value::Object(on)) = s.get("on") {
            for (outcome, to) in on {
                if let Some(to) = to.as_str() {
                    edge(to, Some(outcome));
                }
            }
        }
        if let Some(next) = s.get("next").and_then(Value::as_str) {
            edge(next, None);
        }
        if let Some(Value::Array(b)) = s.get("branches") {
            for br in b {
                match br {
                    Value::String(t) => edge(t, None),
                    Value::Object(m) => {
                        if let Some(t) = m.get("to").and_then(Value::as_str) {
                            edge(t, m.get("when").and_then(Value::as_str));
                        }
                    }
                    _ => {}
                }
            }
        }
        if let Some(body) = s.get("body").and_then(Value::as_str) {
            edge(body, Some("each item"));
        }
        if let Some(join) = s.get("join").and_then(Value::as_str) {
            edge(join, Some("joins"));
        }
    }
    out.push_str("}\n");
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

    #[test]
    fn mermaid_draws_every_transition() {
        let def = json!({"start": "a", "steps": [{"id": "a", "kind": "task", "on": {"yes": "b"}, "next": "b"}, {"id": "b", "kind": "end"}]});
        let m = mermaid(&def);
        assert!(m.contains("start((start)) --> a"));
        assert!(m.contains("a -- \"yes\" --> b"));
        assert!(m.contains("b([\""));
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
