//! What the engine counts, through the `metrics` facade: the binary installs a Prometheus
//! exporter; without one (tests, `yishi bench`) every call is a cheap no-op.

use std::time::Duration;

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, histogram};

/// Transitions and their latency, by workflow and the step kind that moved.
pub const TRANSITIONS: &str = "yishi_transitions_total";
pub const TRANSITION_SECONDS: &str = "yishi_transition_duration_seconds";
/// Actions by workflow and outcome (`applied`, `refused`, `failed`).
pub const ACTIONS: &str = "yishi_actions_total";
pub const STARTED: &str = "yishi_instances_started_total";
pub const TIMERS_FIRED: &str = "yishi_timers_fired_total";
pub const REFUSALS_UNRECORDED: &str = "yishi_refusals_unrecorded_total";
pub const RELOADS: &str = "yishi_reloads_total";
pub const DELIVERIES: &str = "yishi_outbox_deliveries_total";
pub const COMMIT_SECONDS: &str = "yishi_db_commit_duration_seconds";
pub const COMMIT_UNITS: &str = "yishi_db_commit_units_total";
/// Read from the database at each scrape (the same figure on every node).
pub const ACTIVE_CASES: &str = "yishi_active_cases";
pub const TIMERS_PENDING: &str = "yishi_timers_pending";
pub const TIMERS_OVERDUE: &str = "yishi_timers_overdue";
pub const OUTBOX_PENDING: &str = "yishi_outbox_pending";
pub const OUTBOX_DEAD: &str = "yishi_outbox_dead";
pub const WORKFLOWS_ACTIVE: &str = "yishi_workflows_active";

/// Gives every engine family its HELP text (once, when the exporter is installed).
pub fn describe() {
    describe_counter!(TRANSITIONS, "Committed transitions, by workflow and the kind of step that moved.");
    describe_histogram!(
        TRANSITION_SECONDS,
        Unit::Seconds,
        "Time to commit a transition (numbers, rows and the database transaction), by workflow and step kind."
    );
    describe_counter!(ACTIONS, "Actions by workflow and outcome (applied, refused, failed).");
    describe_counter!(STARTED, "Cases started, by workflow.");
    describe_counter!(TIMERS_FIRED, "Deadlines and timers fired, by workflow.");
    describe_counter!(
        REFUSALS_UNRECORDED,
        "Refusals beyond the hourly limit, counted but not kept in a case's history."
    );
    describe_counter!(RELOADS, "Workflow reloads by result (ok, failed).");
    describe_counter!(DELIVERIES, "Outbox deliveries by result (delivered, failed, given_up).");
    describe_histogram!(COMMIT_SECONDS, Unit::Seconds, "Time of one database commit transaction.");
    describe_counter!(COMMIT_UNITS, "Changes committed (a transaction may carry several).");
    describe_gauge!(ACTIVE_CASES, "Cases in progress, by workflow and active step (database-wide).");
    describe_gauge!(TIMERS_PENDING, "Deadlines and timers waiting to fire (database-wide).");
    describe_gauge!(TIMERS_OVERDUE, "Timers past their due time and not yet fired (database-wide).");
    describe_gauge!(OUTBOX_PENDING, "Outbox items waiting for delivery (database-wide).");
    describe_gauge!(OUTBOX_DEAD, "Outbox deliveries given up on, waiting for an operator (database-wide).");
    describe_gauge!(WORKFLOWS_ACTIVE, "Workflows this node runs.");
    // Series that exist before the first event, so that rates and alerts see a zero.
    for result in ["ok", "failed"] {
        counter!(RELOADS, "result" => result).increment(0);
    }
    for result in ["delivered", "failed", "given_up"] {
        counter!(DELIVERIES, "result" => result).increment(0);
    }
    counter!(REFUSALS_UNRECORDED).increment(0);
    counter!(COMMIT_UNITS).increment(0);
}

/// Gives an active workflow's series a zero to start from, so that rates and alerts see them
/// before the first event.
pub(crate) fn known_workflow<'k>(workflow: &str, kinds: impl Iterator<Item = &'k str>) {
    counter!(STARTED, "workflow" => workflow.to_owned()).increment(0);
    counter!(TIMERS_FIRED, "workflow" => workflow.to_owned()).increment(0);
    for outcome in ["applied", "refused", "failed"] {
        counter!(ACTIONS, "workflow" => workflow.to_owned(), "outcome" => outcome).increment(0);
    }
    for kind in kinds {
        counter!(TRANSITIONS, "workflow" => workflow.to_owned(), "kind" => kind.to_owned()).increment(0);
    }
}

pub(crate) fn transition(workflow: &str, kind: &str, took: Duration) {
    let labels = [("workflow", workflow.to_owned()), ("kind", kind.to_owned())];
    counter!(TRANSITIONS, &labels).increment(1);
    histogram!(TRANSITION_SECONDS, &labels).record(took.as_secs_f64());
}

pub(crate) fn action(workflow: &str, outcome: &'static str) {
    counter!(ACTIONS, "workflow" => workflow.to_owned(), "outcome" => outcome).increment(1);
}

pub(crate) fn started(workflow: &str) {
    counter!(STARTED, "workflow" => workflow.to_owned()).increment(1);
}

pub(crate) fn timer_fired(workflow: &str) {
    counter!(TIMERS_FIRED, "workflow" => workflow.to_owned()).increment(1);
}

pub(crate) fn refusal_unrecorded() {
    counter!(REFUSALS_UNRECORDED).increment(1);
}

pub(crate) fn reload(ok: bool) {
    counter!(RELOADS, "result" => if ok { "ok" } else { "failed" }).increment(1);
}

pub(crate) fn delivery(result: &'static str) {
    counter!(DELIVERIES, "result" => result).increment(1);
}

pub(crate) fn commit(units: usize, took: Duration) {
    counter!(COMMIT_UNITS).increment(units as u64);
    histogram!(COMMIT_SECONDS).record(took.as_secs_f64());
}

impl super::Engine {
    /// Counts through `f` only when this engine serves real cases (not a scenario rehearsal).
    pub(crate) fn count(&self, f: impl FnOnce()) {
        if self.config.observed {
            f();
        }
    }

    /// What `/metrics` reads from the database at each scrape (the same on every node).
    pub async fn gauges(&self) -> Result<crate::store::Gauges, super::EngineError> {
        use crate::store::Store;
        Ok(self.store.gauges(self.now()).await?)
    }
}
