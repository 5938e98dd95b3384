//! The JSON Schema of workflow files, generated from the Rust types of the authored model and
//! of each registered step kind's settings (never written by hand).

use serde_json::{Value, json};

use crate::kind::Registry;
use crate::model::WorkflowFile;

/// The schema for editors: a workflow file, with each step's settings validated by its kind.
pub fn workflow_schema(registry: &Registry) -> Value {
    let mut root = serde_json::to_value(schemars::schema_for!(WorkflowFile)).unwrap_or(Value::Null);
    let mut kinds = Vec::new();
    let mut branches = Vec::new();
    for k in registry.iter() {
        kinds.push(Value::String(k.name().to_owned()));
        let mut s = serde_json::to_value(k.settings_schema()).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut s {
            m.remove("$schema");
            m.remove("title");
            // Settings sit beside the common keys, so unknown-key checking is left to the checker.
            m.remove("additionalProperties");
            m.remove("required");
            if let Some(Value::Object(defs)) = m.remove("$defs")
                && let Some(root_defs) =
                    root.as_object_mut().and_then(|r| r.entry("$defs").or_insert_with(|| json!({})).as_object_mut())
            {
                for (name, def) in defs {
                    root_defs.entry(name).or_insert(def);
                }
            }
        }
        branches.push(json!({ "if": { "properties": { "kind": { "const": k.name() } } }, "then": s }));
    }
    if let Some(step) = root.pointer_mut("/$defs/StepSchema").and_then(Value::as_object_mut) {
        step.insert("allOf".into(), Value::Array(branches));
    }
    if let Some(kind) = root.pointer_mut("/$defs/StepCommon/properties/kind").and_then(Value::as_object_mut) {
        kind.insert("examples".into(), Value::Array(kinds));
    }
    if let Some(m) = root.as_object_mut() {
        m.insert("title".into(), json!("Yishi workflow file"));
    }
    root
}
