//! The rows of a commit unit as JSON arrays, one per part (new instances, changed
//! instances, events, timers ...): the encoding every backend's commit statement reads
//! (SQLite's statement for each part, PostgreSQL's `yishi_commit` function), so that a batch of
//! any size is a fixed text, prepared once. SQLite takes the new instances and the events
//! apart, as values bound to statements of a few sizes ([`created_rows`], [`event_rows`],
//! `store/sqlite/writer.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Map;
use serde_json::Value;
use yishi_core::i18n::Message;
use yishi_core::runtime::{Event, Figures, GatheringRef, InstanceState, Scope, Status, TimerChange, Token};

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

/// A document (data, state, an event's body) inside a row: a string holding its JSON text.
/// The backends read it back as text (SQLite's `->>`, PostgreSQL's `->>`), so the stored
/// document keeps its keys in the order they were written, and neither database parses it on
/// the commit path.
pub(crate) struct Doc<T: Serialize>(pub(crate) T);

impl<T: Serialize> Serialize for Doc<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&serde_json::to_string(&self.0).map_err(serde::ser::Error::custom)?)
    }
}

/// How a commit's rows are written for the database's commit statement.
pub(crate) trait RowEncoding {
    /// One part of a batch (every row of one kind).
    type Part;
    /// Whether changes that keep an instance's status and version go in a part of their own,
    /// which the database updates without assigning the columns its indexes cover (SQLite
    /// rewrites an index entry whenever one of its columns is assigned; PostgreSQL compares
    /// the values itself and leaves the indexes alone when they are equal).
    const MOVED_APART: bool;
    /// Whether the new instances and the events are left out of the parts (empty `created` and
    /// `events` parts), for the backend to write from [`created_rows`] and [`event_rows`] itself.
    const VALUES_APART: bool;
    /// Encodes `rows`; `expected` is a hint of how many there are.
    fn part<T: Serialize>(expected: usize, rows: impl Iterator<Item = T>) -> Self::Part;
}

/// JSON text: each part one array of rows, or `None` when it has none (PostgreSQL, which reads
/// the parts as `jsonb`).
pub(crate) struct Json;

impl RowEncoding for Json {
    type Part = Option<String>;
    const MOVED_APART: bool = false;
    const VALUES_APART: bool = false;
    fn part<T: Serialize>(expected: usize, rows: impl Iterator<Item = T>) -> Option<String> {
        json_rows(expected, rows)
    }
}

/// SQLite's binary JSON (JSONB, <https://sqlite.org/jsonb.html>): each part the rows' encoded
/// elements one after another, without the enclosing array's header, so that the parts of
/// several commit units are joined by appending bytes ([`jsonb_array`] adds the header). SQLite
/// reads JSONB without parsing text, and a document, a raw string inside it, is copied out as
/// it is: built on the callers' tasks, the rows leave the writer thread nothing to parse.
/// Rows hold integers, strings, options and arrays only: `serde_sqlite_jsonb` 0.2 writes a
/// newtype struct as null, so a field of such a type would be stored as NULL without an error.
pub(crate) struct Jsonb;

impl RowEncoding for Jsonb {
    type Part = Vec<u8>;
    const MOVED_APART: bool = true;
    const VALUES_APART: bool = true;
    fn part<T: Serialize>(_expected: usize, rows: impl Iterator<Item = T>) -> Vec<u8> {
        let mut out = Vec::new();
        for row in rows {
            out.extend(serde_sqlite_jsonb::to_vec(&row).expect("rows of plain values serialise"));
        }
        out
    }
}

/// The JSONB array whose elements are `payloads` joined (each a run of encoded elements), or
/// `None` when they are all empty. The header is the element type (array: 0xB) in the low four
/// bits of the first byte and the payload's size: in the high four bits when it is at most 11,
/// else in the 1, 2, 4 or 8 big-endian bytes that follow (high bits 12, 13, 14 or 15).
pub(crate) fn jsonb_array<'a>(payloads: impl Iterator<Item = &'a [u8]> + Clone) -> Option<Vec<u8>> {
    const ARRAY: u8 = 0x0B;
    let size: usize = payloads.clone().map(<[u8]>::len).sum();
    if size == 0 {
        return None;
    }
    let mut out = Vec::with_capacity(size + 9);
    match size {
        0..=11 => out.push(ARRAY | (size as u8) << 4),
        12..=0xff => out.extend([ARRAY | 0xC0, size as u8]),
        0x100..=0xffff => {
            out.push(ARRAY | 0xD0);
            out.extend((size as u16).to_be_bytes());
        }
        _ => match u32::try_from(size) {
            Ok(s) => {
                out.push(ARRAY | 0xE0);
                out.extend(s.to_be_bytes());
            }
            Err(_) => {
                out.push(ARRAY | 0xF0);
                out.extend((size as u64).to_be_bytes());
            }
        },
    }
    for p in payloads {
        out.extend_from_slice(p);
    }
    Some(out)
}

/// How many parts [`commit_rows`] makes.
pub(crate) const PARTS: usize = 12;

/// The parts of a batch of commits, in this order: created, changed, refused, events,
/// clear_all, clear_token, clear_one, timers, idempotency, outbox, consumed, moved, each
/// encoded as `E` says. `moved` holds the changes that keep the instance's status and version
/// (see [`Commit::stored`]) when [`RowEncoding::MOVED_APART`], in the layout of `changed`. The
/// row layouts are documented where they are read (SQLite's statements in
/// `store/sqlite/writer.rs`, and PostgreSQL's `yishi_commit`).
/// The statement's text never changes, so the database prepares it once per connection,
/// whatever the size of the batch.
pub(crate) fn commit_rows<E: RowEncoding>(batch: &[Commit]) -> [E::Part; PARTS] {
    let n = batch.len();
    let n_events: usize = batch.iter().map(|c| c.events.len()).sum();
    let created = if E::VALUES_APART { E::part(0, std::iter::empty::<()>()) } else { E::part(n, created_rows(batch)) };
    // Changed instances, those that keep their status and version apart when `E` says so.
    let keeps_indexed =
        |c: &&Commit| E::MOVED_APART && c.state.as_ref().is_some_and(|s| c.stored == Some((s.status, c.version)));
    let changes = || batch.iter().filter(|c| c.create.is_none());
    let changed = E::part(n, changes().filter(|c| !keeps_indexed(c)).filter_map(change_row));
    let moved = E::part(n, changes().filter(keeps_indexed).filter_map(change_row));
    // Events-only commits (refused actions) still move last_seq.
    let refused = E::part(
        0,
        batch.iter().filter(|c| c.state.is_none() && !c.events.is_empty()).map(|c| (c.instance_id, c.last_seq())),
    );
    let events =
        if E::VALUES_APART { E::part(0, std::iter::empty::<()>()) } else { E::part(n_events, event_rows(batch)) };
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
    let idempotency = E::part(
        0,
        batch.iter().filter_map(|c| c.idempotency.as_ref().map(|(k, f, r)| (k, c.instance_id, r, c.now, f))),
    );
    let outbox =
        E::part(0, batch.iter().flat_map(|c| c.outbox.iter().map(move |n| (c.instance_id, n.to_string(), c.now))));
    let consumed =
        E::part(0, batch.iter().filter_map(|c| c.consumes.as_ref().map(|(token, name)| (c.instance_id, token, name))));
    [
        created,
        changed,
        refused,
        events,
        E::part(0, clear_all.iter()),
        E::part(0, clear_token.iter()),
        E::part(0, clear_one.iter()),
        E::part(0, sets.iter()),
        idempotency,
        outbox,
        consumed,
        moved,
    ]
}

/// A new instance's row: [id, unit, workflow, version, status, outcome, active_steps, data,
/// state, last_seq, now].
pub(crate) type CreatedRow<'a> = (
    i64,
    &'a str,
    &'a str,
    i64,
    &'static str,
    &'a Option<String>,
    Vec<&'a str>,
    Doc<&'a Map<String, Value>>,
    Doc<StoredState<'a>>,
    i64,
    i64,
);

/// The new instances of a batch of commits as rows.
pub(crate) fn created_rows(batch: &[Commit]) -> impl Iterator<Item = CreatedRow<'_>> {
    batch.iter().filter(|c| c.create.is_some()).filter_map(|c| {
        let s = c.state.as_ref()?;
        let (unit, workflow) = c.create.as_ref()?;
        Some((
            c.instance_id,
            unit.as_str(),
            workflow.as_str(),
            c.version,
            s.status.as_str(),
            &s.outcome,
            s.active_steps(),
            Doc(&s.data),
            Doc(stored_state(s)),
            c.last_seq(),
            c.now,
        ))
    })
}

/// The events of a batch of commits as rows: [instance_id, seq, at, version, type, body].
pub(crate) fn event_rows(batch: &[Commit]) -> impl Iterator<Item = (i64, i64, i64, i64, &'static str, Doc<&Event>)> {
    batch.iter().flat_map(|c| {
        c.events
            .iter()
            .enumerate()
            .map(move |(i, (e, at))| (c.instance_id, c.first_seq + i as i64, *at, c.version, e.kind(), Doc(e)))
    })
}

/// A changed instance's row: [id, base_revision, status, outcome, active_steps, data, state,
/// last_seq, now, version].
fn change_row(c: &Commit) -> Option<impl Serialize + '_> {
    let s = c.state.as_ref()?;
    Some((
        c.instance_id,
        c.base_revision,
        s.status.as_str(),
        &s.outcome,
        s.active_steps(),
        Doc(&s.data),
        Doc(stored_state(s)),
        c.last_seq(),
        c.now,
        c.version,
    ))
}

/// Rows as one JSON array of arrays, or `None` when there are none. With `expected` rows,
/// the buffer is sized from the first row (a batch's arrays run to hundreds of kilobytes).
pub(crate) fn json_rows<T: Serialize>(expected: usize, rows: impl Iterator<Item = T>) -> Option<String> {
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
