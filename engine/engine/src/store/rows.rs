//! The rows of a commit unit as JSON arrays, one per part (new instances, changed
//! instances, events, timers ...): the one encoding every backend's commit statement reads
//! (SQLite's `commit_batch` trigger, PostgreSQL's `yishi_commit` function), so that a batch of
//! any size is one statement with a fixed text, prepared once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Map;
use serde_json::Value;
use yishi_core::i18n::Message;
use yishi_core::runtime::{Figures, GatheringRef, InstanceState, Scope, Status, TimerChange, Token};

use super::Commit;

/// The state as stored, without `data` (kept in its own column for filters).
#[derive(Serialize)]
pub(crate) struct StoredState<'a> {
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    urgency: &'a Option<String>,
    #[serde(skip_serializing_if = "Figures::is_empty")]
    figures: &'a Figures,
    #[serde(skip_serializing_if = "Option::is_none")]
    gathering: &'a Option<GatheringRef>,
    tokens: &'a [Token],
    #[serde(skip_serializing_if = "<[Scope]>::is_empty")]
    scopes: &'a [Scope],
    visits: &'a BTreeMap<String, u32>,
    next_token: u32,
    next_scope: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: &'a Option<Message>,
}

#[derive(Deserialize)]
pub(crate) struct LoadedState {
    status: Status,
    #[serde(default)]
    outcome: Option<String>,
    #[serde(default)]
    urgency: Option<String>,
    #[serde(default)]
    figures: Figures,
    #[serde(default)]
    gathering: Option<GatheringRef>,
    tokens: Vec<Token>,
    #[serde(default)]
    scopes: Vec<Scope>,
    #[serde(default)]
    visits: BTreeMap<String, u32>,
    next_token: u32,
    next_scope: u32,
    #[serde(default)]
    error: Option<Message>,
}

impl LoadedState {
    /// The whole state, with the data document stored beside it.
    pub(crate) fn with_data(self, data: Map<String, Value>) -> InstanceState {
        InstanceState {
            status: self.status,
            outcome: self.outcome,
            tokens: self.tokens,
            scopes: self.scopes,
            data,
            urgency: self.urgency,
            figures: self.figures,
            gathering: self.gathering,
            visits: self.visits,
            next_token: self.next_token,
            next_scope: self.next_scope,
            error: self.error,
        }
    }
}

pub(crate) fn stored_state(s: &InstanceState) -> StoredState<'_> {
    StoredState {
        status: s.status,
        outcome: &s.outcome,
        urgency: &s.urgency,
        figures: &s.figures,
        gathering: &s.gathering,
        tokens: &s.tokens,
        scopes: &s.scopes,
        visits: &s.visits,
        next_token: s.next_token,
        next_scope: s.next_scope,
        error: &s.error,
    }
}

/// How a commit's documents (data, state, event bodies) travel inside its rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Docs {
    /// As JSON values inside the row: neither side escapes or unescapes them (SQLite, whose
    /// `->` hands back a value's JSON text as written).
    Inline,
    /// As JSON strings holding their text: the rows can then be read as `jsonb` (parsed once,
    /// each field reached without parsing again) while the documents keep their keys in the
    /// order they were written (PostgreSQL).
    Text,
}

/// A document as [`Docs`] says.
struct Doc<T: Serialize>(T, Docs);

impl<T: Serialize> Serialize for Doc<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.1 {
            Docs::Inline => self.0.serialize(s),
            Docs::Text => s.serialize_str(&serde_json::to_string(&self.0).map_err(serde::ser::Error::custom)?),
        }
    }
}

/// The parts of a batch of commits: each one JSON array of rows, or `None` when the batch has
/// none of that part, in this order: created, changed, refused, events, clear_all, clear_token,
/// clear_one, timers, idempotency, outbox, consumed. The row layouts are documented where
/// they are read (engine/engine/migrations/sqlite/0003_contract.sql).
/// Documents (data, state, event bodies) are written inline, not as strings, so that neither
/// side escapes and unescapes them; the trigger stores their JSON text.
/// The statement's text never changes, so SQLite prepares it once per connection, whatever
/// the size of the batch.
pub(crate) fn commit_rows(batch: &[Commit], docs: Docs) -> [Option<String>; 11] {
    let n = batch.len();
    let n_events: usize = batch.iter().map(|c| c.events.len()).sum();
    let created = json_rows(
        n,
        batch.iter().filter(|c| c.create.is_some()).filter_map(|c| {
            let s = c.state.as_ref()?;
            let (unit, workflow) = c.create.as_ref()?;
            Some((
                c.instance_id,
                unit,
                workflow,
                c.version,
                s.status.as_str(),
                &s.outcome,
                s.active_steps(),
                Doc(&s.data, docs),
                Doc(stored_state(s), docs),
                c.last_seq(),
                c.now,
            ))
        }),
    );
    let changed = json_rows(
        n,
        batch.iter().filter(|c| c.create.is_none()).filter_map(|c| {
            let s = c.state.as_ref()?;
            Some((
                c.instance_id,
                c.base_revision,
                s.status.as_str(),
                &s.outcome,
                s.active_steps(),
                Doc(&s.data, docs),
                Doc(stored_state(s), docs),
                c.last_seq(),
                c.now,
                c.version,
            ))
        }),
    );
    // Events-only commits (refused actions) still move last_seq.
    let refused = json_rows(
        0,
        batch.iter().filter(|c| c.state.is_none() && !c.events.is_empty()).map(|c| (c.instance_id, c.last_seq())),
    );
    let events = json_rows(
        n_events,
        batch.iter().flat_map(|c| {
            c.events
                .iter()
                .enumerate()
                .map(move |(i, (e, at))| (c.instance_id, c.first_seq + i as i64, at, c.version, e.kind(), Doc(e, docs)))
        }),
    );
    // Timers: the net effect of each commit, deletes first. A new instance has none stored.
    let mut clear_all: Vec<i64> = Vec::new();
    let mut clear_token: Vec<(i64, u32)> = Vec::new();
    let mut clear_one: Vec<(i64, u32, &str)> = Vec::new();
    let mut sets: Vec<(i64, u32, &str, &str, i64)> = Vec::new();
    for c in batch {
        let stored = c.create.is_none();
        let mut local: Vec<(u32, &str, &str, i64)> = Vec::new();
        for t in &c.timers {
            match t {
                TimerChange::Set { token, step, name, due_at } => {
                    local.retain(|(t, n, _, _)| (t, n) != (token, &name.as_str()));
                    local.push((*token, name.as_str(), step.as_str(), *due_at));
                }
                TimerChange::Clear { token, name } => {
                    local.retain(|(t, n, _, _)| (t, n) != (token, &name.as_str()));
                    if stored {
                        clear_one.push((c.instance_id, *token, name.as_str()));
                    }
                }
                TimerChange::ClearToken { token } => {
                    local.retain(|(t, _, _, _)| t != token);
                    if stored {
                        clear_token.push((c.instance_id, *token));
                    }
                }
                TimerChange::ClearAll => {
                    local.clear();
                    if stored {
                        clear_all.push(c.instance_id);
                    }
                }
            }
        }
        sets.extend(local.into_iter().map(|(token, name, step, due)| (c.instance_id, token, name, step, due)));
    }
    let idempotency = json_rows(
        0,
        batch.iter().filter_map(|c| c.idempotency.as_ref().map(|(k, f, r)| (k, c.instance_id, r, c.now, f))),
    );
    let outbox =
        json_rows(0, batch.iter().flat_map(|c| c.outbox.iter().map(move |n| (c.instance_id, n.to_string(), c.now))));
    let consumed = json_rows(
        0,
        batch.iter().filter_map(|c| c.consumes.as_ref().map(|(token, name)| (c.instance_id, token, name))),
    );
    [
        created,
        changed,
        refused,
        events,
        json_rows(0, clear_all.iter()),
        json_rows(0, clear_token.iter()),
        json_rows(0, clear_one.iter()),
        json_rows(0, sets.iter()),
        idempotency,
        outbox,
        consumed,
    ]
}

/// Rows as one JSON array of arrays, or `None` when there are none. With `expected` rows,
/// the buffer is sized from the first row (a batch's arrays run to hundreds of kilobytes).
fn json_rows<T: Serialize>(expected: usize, rows: impl Iterator<Item = T>) -> Option<String> {
    let mut out = Vec::with_capacity(256);
    out.push(b'[');
    let mut empty = true;
    for row in rows {
        if empty {
            serde_json::to_writer(&mut out, &row).expect("rows of plain values serialise");
            out.reserve((out.len() + 1) * expected.saturating_sub(1) * 5 / 4);
            empty = false;
            continue;
        }
        out.push(b',');
        serde_json::to_writer(&mut out, &row).expect("rows of plain values serialise");
    }
    out.push(b']');
    (!empty).then(|| String::from_utf8(out).expect("serde_json writes UTF-8"))
}
