//! Counters the engine keeps for `/metrics`.

use std::sync::atomic::AtomicU64;

/// What happened since the process started.
#[derive(Debug, Default)]
pub struct Metrics {
    pub actions_applied: AtomicU64,
    pub actions_refused: AtomicU64,
    pub actions_failed: AtomicU64,
    /// Refusals beyond the hourly limit, counted but not recorded in a case's history.
    pub refusals_unrecorded: AtomicU64,
    pub instances_started: AtomicU64,
    pub transitions: AtomicU64,
    pub timers_fired: AtomicU64,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
}
