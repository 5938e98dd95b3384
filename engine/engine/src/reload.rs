//! Hot reload: watch the workflows folder, wait for saves to settle, check the whole folder,
//! run the scenarios of every workflow that would change, and swap in what passes. A broken
//! save changes nothing that runs; its diagnostics are kept for the API and the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::service::{Engine, EngineError, ReloadReport};
use crate::store::Store;
use serde::Serialize;
use tokio::sync::{Mutex, mpsc};
use yishi_core::diag::{Code, Diagnostic, Diagnostics, Origin};
use yishi_core::{FileSet, check};

/// Reloads the workflows folder into an engine, one reload at a time.
pub struct Reloader<S: Store> {
    dir: PathBuf,
    engine: Arc<Engine<S>>,
    lock: Mutex<()>,
    last: std::sync::Mutex<Option<ReloadStatus>>,
}

/// The outcome of the last reload, for `/api/v1/reload`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ReloadStatus {
    pub ok: bool,
    pub at: i64,
    pub took_ms: f64,
    pub trigger: String,
    pub activated: Vec<(String, i64)>,
    pub kept: Vec<String>,
    pub removed: Vec<String>,
    pub diagnostics: Vec<Diagnostic>,
    pub scenarios_run: usize,
    pub scenarios_failed: usize,
}

impl<S: Store> Reloader<S> {
    pub fn new(dir: PathBuf, engine: Arc<Engine<S>>) -> Self {
        Reloader { dir, engine, lock: Mutex::new(()), last: std::sync::Mutex::new(None) }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn status(&self) -> Option<ReloadStatus> {
        self.last.lock().expect("status lock").clone()
    }

    /// Reads, checks, tests and activates the folder.
    pub async fn reload(&self, trigger: &str) -> Result<ReloadStatus, EngineError> {
        let _one_at_a_time = self.lock.lock().await;
        let started = Instant::now();
        let files = FileSet::load_dir(&self.dir)
            .map_err(|e| EngineError::Internal(format!("cannot read {}: {e}", self.dir.display())))?;
        let registry = self.engine.registry().clone();
        let mut catalog = check(&files, &registry, self.engine.sandbox());
        // Scenarios gate what changes: run those of workflows whose version would change.
        let active = self.engine.active();
        let changed: Vec<String> = catalog
            .definitions
            .iter()
            .filter(|(k, d)| active.current.get(*k).is_none_or(|(_, cur)| cur.hash != d.hash))
            .map(|(k, _)| k.clone())
            .collect();
        let results = crate::scenario::run_for(&catalog, &files, &registry, &changed).await;
        let mut extra = Diagnostics::new();
        let mut failed_workflows = Vec::new();
        for r in results.iter().filter(|r| !r.passed) {
            extra.push(
                Code::ScenarioFailed,
                &Origin::file(&r.file),
                None,
                format!("scenario `{}` fails, so `{}` was not activated", r.title, r.workflow),
                None,
            );
            failed_workflows.push(r.workflow.clone());
            for f in &r.failures {
                extra.push_at(f.code, &f.file, f.line, f.column, f.message.clone(), f.hint.clone());
            }
        }
        for w in &failed_workflows {
            if let Some(d) = catalog.definitions.shift_remove(w) {
                catalog.failed.insert(w.clone(), d.sources.keys().cloned().collect());
            }
        }
        let mut diags: Vec<Diagnostic> = std::mem::take(&mut catalog.diagnostics);
        diags.extend(extra.into_sorted());
        catalog.diagnostics = diags;
        let report: ReloadReport = self.engine.activate(catalog).await?;
        let status = ReloadStatus {
            ok: report.ok,
            at: self.engine.now(),
            took_ms: started.elapsed().as_secs_f64() * 1000.0,
            trigger: trigger.to_owned(),
            activated: report.activated,
            kept: report.kept,
            removed: report.removed,
            diagnostics: report.diagnostics,
            scenarios_run: results.len(),
            scenarios_failed: results.iter().filter(|r| !r.passed).count(),
        };
        if status.ok {
            tracing::info!(trigger, took_ms = status.took_ms, activated = ?status.activated, scenarios = status.scenarios_run, "workflows reloaded");
        } else {
            tracing::warn!(trigger, kept = ?status.kept, "reload found problems; the last good versions stay active");
            for d in &status.diagnostics {
                tracing::warn!("{d}");
            }
        }
        *self.last.lock().expect("status lock") = Some(status.clone());
        Ok(status)
    }

    /// Watches the folder and reloads after each burst of changes settles.
    pub fn watch(self: Arc<Self>, settle: Duration) -> notify::Result<impl Drop> {
        use notify_debouncer_full::{DebounceEventResult, new_debouncer, notify::RecursiveMode};
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let mut debouncer = new_debouncer(settle, None, move |res: DebounceEventResult| match res {
            Ok(events) if events.iter().any(|e| !e.kind.is_access()) => {
                let _ = tx.send(());
            }
            Ok(_) => {}
            Err(errors) => {
                for e in errors {
                    tracing::warn!(error = %e, "file watcher error");
                }
            }
        })?;
        debouncer.watch(&self.dir, RecursiveMode::Recursive)?;
        let me = self.clone();
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                while rx.try_recv().is_ok() {} // a burst is one reload
                if let Err(e) = me.reload("file change").await {
                    tracing::error!(error = %e, "reload failed");
                }
            }
        });
        Ok(debouncer)
    }
}
