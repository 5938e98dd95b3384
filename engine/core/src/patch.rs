//! JSON merge patches (RFC 7386) between two states of a step: what a `step_state_changed`
//! event records instead of the whole state.
//!
//! A step kind keeps its own state as one JSON document (a vote's ballots, a rating's scores),
//! and every action changes a little of it: a fiftieth ballot among forty-nine. Recording the
//! whole document each time made a case's history grow with the square of its actions (a
//! 50-voter vote wrote 1 + 2 + ... + 50 = 1,275 ballots into its events). A merge patch names only the members
//! that changed: an object member is patched member by member, `null` removes a member, any
//! other value replaces what was there.
//!
//! A merge patch cannot set a member to `null` (that is its removal), so [`diff`] gives `None`
//! for a change it cannot express exactly, and the caller records the whole state instead.
//! [`merge`] and [`diff`] are written here, not taken from a crate: the `json-patch` crate
//! merges but does not compute a merge patch, and the pair is a few lines that must agree.

use serde_json::{Map, Value};

/// The merge patch that turns `old` into `new`, or `None` when none does exactly (either is
/// not an object, or a changed part holds an object member that is `null`). Members equal in
/// both are left out; so `Some` of an empty object means no change.
pub fn diff(old: &Value, new: &Value) -> Option<Value> {
    let (Value::Object(old), Value::Object(new)) = (old, new) else { return None };
    diff_objects(old, new).map(Value::Object)
}

fn diff_objects(old: &Map<String, Value>, new: &Map<String, Value>) -> Option<Map<String, Value>> {
    let mut patch = Map::new();
    for key in old.keys().filter(|k| !new.contains_key(*k)) {
        patch.insert(key.clone(), Value::Null);
    }
    for (key, value) in new {
        match (old.get(key), value) {
            (Some(was), _) if was == value => {}
            (Some(Value::Object(was)), Value::Object(now)) => {
                patch.insert(key.clone(), Value::Object(diff_objects(was, now)?));
            }
            _ if expressible(value) => {
                patch.insert(key.clone(), value.clone());
            }
            _ => return None,
        }
    }
    Some(patch)
}

/// Whether merging `value` onto anything gives `value` itself: a merge applies an object member
/// by member and drops `null` members, while anything else (arrays included) is copied whole.
fn expressible(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Object(m) => m.values().all(expressible),
        _ => true,
    }
}

/// Applies a merge patch to `target` (RFC 7386, section 2). Members keep their places; new
/// ones go last.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else { unreachable!("made an object above") };
    for (key, value) in patch {
        if value.is_null() {
            target.shift_remove(key);
        } else {
            merge(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{diff, merge};

    fn round_trip(old: Value, new: Value) -> Option<Value> {
        let patch = diff(&old, &new)?;
        let mut merged = old;
        merge(&mut merged, &patch);
        assert_eq!(merged, new, "merging the patch {patch} gives the new state");
        Some(patch)
    }

    #[test]
    fn a_new_ballot_is_the_whole_patch() {
        let old = json!({"ballots": {"rep1": {"choice": "for", "at": 1}}, "closed": false});
        let new = json!({"ballots": {"rep1": {"choice": "for", "at": 1}, "rep2": {"choice": "against", "at": 2}},
                         "closed": false});
        let patch = round_trip(old, new).unwrap();
        assert_eq!(patch, json!({"ballots": {"rep2": {"choice": "against", "at": 2}}}));
    }

    #[test]
    fn removed_members_are_null_and_arrays_are_copied_whole() {
        let old = json!({"a": 1, "b": [1, 2], "c": {"d": 1, "e": 2}});
        let new = json!({"b": [1, null, 3], "c": {"d": 1}, "f": "x"});
        let patch = round_trip(old, new).unwrap();
        assert_eq!(patch, json!({"a": null, "b": [1, null, 3], "c": {"e": null}, "f": "x"}));
    }

    #[test]
    fn an_unchanged_state_is_an_empty_patch() {
        assert_eq!(round_trip(json!({"a": {"b": 1}}), json!({"a": {"b": 1}})), Some(json!({})));
    }

    #[test]
    fn a_change_a_merge_patch_cannot_say_is_refused() {
        // Setting a member to null, in a new object or beside an old one.
        assert_eq!(diff(&json!({"a": 1}), &json!({"a": null})), None);
        assert_eq!(diff(&json!({}), &json!({"b": {"c": null}})), None);
        assert_eq!(diff(&json!({"b": {"c": 1}}), &json!({"b": {"c": 1, "d": null}})), None);
        // States that are not objects.
        assert_eq!(diff(&Value::Null, &json!({"a": 1})), None);
        assert_eq!(diff(&json!([1]), &json!([1, 2])), None);
        // A null already there and unchanged is fine.
        assert_eq!(round_trip(json!({"a": null, "b": 1}), json!({"a": null, "b": 2})), Some(json!({"b": 2})));
    }

    #[test]
    fn merging_onto_a_non_object_starts_from_an_empty_one() {
        let mut v = json!(3);
        merge(&mut v, &json!({"a": {"b": 1}, "c": null}));
        assert_eq!(v, json!({"a": {"b": 1}}));
    }
}
