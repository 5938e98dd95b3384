//! Deadlines and timers: rows in the store, fired when due (never early), at most once (the
//! firing commit consumes the row, and fails if another process fired it first), and late
//! rather than never after a restart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use yishi_core::msg;
use yishi_core::runtime::{self, TimerChange};

use super::{Engine, EngineError};
use crate::store::{Store, StoreError, TimerRow};

/// Timers claimed at once.
const CLAIM: u32 = 2_000;
/// How long a claim keeps other processes away from a timer; a process that dies while firing
/// leaves its timers to the others after this.
const LEASE: Duration = Duration::from_secs(30);

impl Engine {
    /// Fires every timer due now. Returns how many fired (void timers are dropped, not counted).
    pub async fn fire_due(self: &Arc<Self>) -> Result<usize, EngineError> {
        let mut fired = 0;
        let mut rounds = 0;
        loop {
            let due = self.store.claim_due(self.now(), CLAIM, LEASE).await?;
            if due.is_empty() {
                return Ok(fired);
            }
            fired += self.fire_all(due).await?;
            // Firing can set timers that are already due (a follow-up of a late timer): go
            // round again, but never forever.
            rounds += 1;
            if rounds > 1_000 {
                tracing::warn!("timers keep falling due as they fire; stopping this round");
                return Ok(fired);
            }
        }
    }

    /// Fires claimed timers, instances in parallel, each instance's timers in order.
    async fn fire_all(self: &Arc<Self>, due: Vec<TimerRow>) -> Result<usize, EngineError> {
        let mut by_instance: BTreeMap<i64, Vec<TimerRow>> = BTreeMap::new();
        for t in due {
            by_instance.entry(t.instance_id).or_default().push(t);
        }
        let sem = Arc::new(tokio::sync::Semaphore::new(self.config.timer_concurrency));
        let mut set = tokio::task::JoinSet::new();
        for (_, timers) in by_instance {
            let me = self.clone();
            let permit = sem.clone().acquire_owned().await.map_err(|e| EngineError::Internal(e.to_string()))?;
            set.spawn(async move {
                let _permit = permit;
                let mut count = 0;
                for t in timers {
                    match me.fire_one(&t).await {
                        Ok(true) => count += 1,
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(instance = t.instance_id, timer = %t.name, error = %e, "timer could not fire; will retry");
                            return Err(e);
                        }
                    }
                }
                Ok(count)
            });
        }
        let mut fired = 0;
        let mut failed = None;
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(c)) => fired += c,
                Ok(Err(e)) => failed = Some(e),
                Err(e) => failed = Some(EngineError::Internal(e.to_string())),
            }
        }
        failed.map_or(Ok(fired), Err)
    }

    /// Fires one timer. `false` when it turned out void (its step was left) or another process
    /// fired it first.
    async fn fire_one(&self, t: &TimerRow) -> Result<bool, EngineError> {
        let slot = self.slot(t.instance_id);
        let mut guard = slot.lock().await;
        let row = match self.loaded(t.instance_id, &mut guard).await {
            Ok(r) => r.clone(),
            Err(EngineError::NotFound(_)) => {
                self.store.drop_timer(t).await?;
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let now = self.now();
        if t.due_at > now {
            return Ok(false); // never early
        }
        let def = self.definition(row.version).await?;
        let fired = runtime::Fired { token: t.token, step: &t.step, timer: &t.name, due_at: t.due_at };
        let transition = match runtime::fire(&def, &row.state, fired, now, t.instance_id) {
            Ok(None) => {
                self.store.drop_timer(t).await?;
                return Ok(false);
            }
            Ok(Some(mut tr)) => {
                tr.timers.insert(0, TimerChange::Clear { token: t.token, name: t.name.clone() });
                tr
            }
            Err(e) => {
                let message = msg!("engine-timer-failed", timer = &t.name, step = &t.step, error = e.message());
                tracing::warn!(instance = t.instance_id, "{message}");
                runtime::fail(&row.state, message)
            }
        };
        let consumes = Some((t.token, t.name.clone()));
        let workflow = row.workflow.clone();
        match self.apply_transition(&mut guard, row, transition, now, None, consumes).await {
            Ok(_) => {
                self.count(|| super::metrics::timer_fired(&workflow));
                Ok(true)
            }
            // Fired elsewhere first, or the case moved on meanwhile: the timer (if still
            // there) is claimed again next round, on fresh state.
            Err(EngineError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Fires timers as they fall due, until `shutdown` resolves. Timers that fell due while
    /// the server was down fire at once (late rather than never).
    pub async fn run_timers(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            self.timer_wake_at.store(i64::MAX, Ordering::SeqCst);
            if let Err(e) = self.fire_due().await {
                tracing::warn!(error = %e, "firing timers failed; retrying in a second");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = &mut shutdown => return,
                }
            }
            let wait = match self.store.next_due().await {
                Ok(Some(due)) => (due - self.now()).clamp(0, self.timer_poll_ms()),
                Ok(None) => self.timer_poll_ms(),
                Err(StoreError::Unavailable(_)) | Err(_) => 1_000,
            };
            self.timer_wake_at.store(self.now().saturating_add(wait), Ordering::SeqCst);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait as u64 + 1)) => {}
                _ = self.timer_wake.notified() => {}
                _ = &mut shutdown => return,
            }
        }
    }

    /// Wakes the timer loop if a committed change set a timer that falls due before the loop
    /// means to look again. Waking it for every change made it read the timers table after
    /// each one (two reads, each a hop to SQLite's worker thread), which under load took the
    /// four reading connections a few percent of a core each.
    pub(super) fn timers_set<'a>(&self, changes: impl IntoIterator<Item = &'a TimerChange>) {
        let planned = self.timer_wake_at.load(Ordering::SeqCst);
        if changes.into_iter().any(|t| matches!(t, TimerChange::Set { due_at, .. } if *due_at < planned)) {
            self.timer_wake.notify_one();
        }
    }

    /// How long the timer loop sleeps at most: on a shared database, other processes set
    /// timers this one is not told about.
    fn timer_poll_ms(&self) -> i64 {
        if self.store.shared() { 1_000 } else { 60_000 }
    }
}
