//! The catalog of active workflows and the one activation path. Whatever starts it (a file
//! save, `SIGHUP`, the API, the console, start-up), an activation checks the files, runs the
//! scenarios of every workflow whose version would change, stores the versions that pass and
//! swaps them in with one pointer write. A workflow that fails keeps its last good version.
//! Nothing else activates.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use yishi_core::check::{Catalog, check, check_alone};
use yishi_core::definition::Definition;
use yishi_core::describe::{self, VersionDiff};
use yishi_core::diag::{Code, Diagnostic, Diagnostics, Origin};
use yishi_core::files::FileSet;
use yishi_core::msg;

use super::{Engine, EngineError};
use crate::store::{NewVersion, Store, StoredVersion, VersionRow};

/// The currently active workflows.
#[derive(Debug, Default)]
pub struct Active {
    pub catalog: Catalog,
    /// `unit/id` -> the stored version and its compiled definition.
    pub current: BTreeMap<String, (VersionRow, Arc<Definition>)>,
    /// Diagnostics of the last activation (empty when it was clean).
    pub diagnostics: Vec<Diagnostic>,
    /// Unix ms of the last activation.
    pub reloaded_at: i64,
    /// How many activations this process has made (0: none yet).
    pub generation: u64,
}

/// How many activations [`Engine::reload_history`] keeps.
pub const RELOAD_HISTORY: usize = 20;

/// What an activation did.
#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct ReloadStatus {
    /// No errors and no failing scenario.
    pub ok: bool,
    pub at: i64,
    pub took_ms: f64,
    /// What started it: `start`, `file change`, `SIGHUP`, `api (name)` ...
    pub trigger: String,
    /// Workflows whose active version changed: (`unit/id`, new version number).
    pub activated: Vec<(String, i64)>,
    /// Workflows that failed to check or whose scenarios failed; they keep their last good
    /// version, if they had one.
    pub kept: Vec<String>,
    /// Workflows whose files are gone.
    pub removed: Vec<String>,
    pub diagnostics: Vec<Diagnostic>,
    pub scenarios_run: usize,
    pub scenarios_failed: usize,
}

/// A stored version as listed.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct VersionInfo {
    #[serde(flatten)]
    pub row: VersionRow,
    /// Active cases on it.
    pub active_instances: i64,
    /// Whether it is the workflow's active version.
    pub current: bool,
}

impl Engine {
    /// The one activation path: checks `files`, runs the scenario gate, stores and activates
    /// every workflow that passes. `trigger` says what started it (kept in the status and
    /// recorded as the creator of new versions).
    pub async fn activate_files(&self, files: &FileSet, trigger: &str) -> Result<ReloadStatus, EngineError> {
        let _one_at_a_time = self.activation.lock().await;
        let started = Instant::now();
        let mut catalog = check(files, &self.registry, &self.sandbox);
        // Scenarios gate what changes: run those of workflows whose version would change.
        let active = self.active();
        let changed: Vec<String> = catalog
            .definitions
            .iter()
            .filter(|(k, d)| active.current.get(*k).is_none_or(|(_, cur)| cur.hash != d.hash))
            .map(|(k, _)| k.clone())
            .collect();
        let results = crate::scenario::run_for(&catalog, files, &self.registry, &changed).await;
        let mut extra = Diagnostics::new();
        for r in results.iter().filter(|r| !r.passed) {
            extra.push(
                Code::ScenarioFailed,
                &Origin::file(&r.file),
                None,
                msg!("reload-scenario-failed", scenario = &r.title, workflow = &r.workflow),
                None,
            );
            for f in &r.failures {
                extra.add_diagnostic(f.clone());
            }
            if let Some(d) = catalog.definitions.shift_remove(&r.workflow) {
                catalog.failed.insert(r.workflow.clone(), d.sources.keys().cloned().collect());
            }
        }
        catalog.diagnostics.extend(extra.into_sorted());
        catalog.diagnostics.extend(yishi_core::check::calendar_warnings(&catalog, self.now()));
        let (activated, kept, removed) = self.install(catalog, trigger).await?;
        let active = self.active();
        self.count(|| {
            for (key, (_, def)) in &active.current {
                super::metrics::known_workflow(key, def.steps.iter().map(|s| s.kind.as_str()));
            }
        });
        let status = ReloadStatus {
            ok: !active.diagnostics.iter().any(Diagnostic::is_error),
            at: active.reloaded_at,
            took_ms: started.elapsed().as_secs_f64() * 1000.0,
            trigger: trigger.to_owned(),
            activated,
            kept,
            removed,
            diagnostics: active.diagnostics.clone(),
            scenarios_run: results.len(),
            scenarios_failed: results.iter().filter(|r| !r.passed).count(),
        };
        if status.ok {
            self.count(|| super::metrics::reload(true));
            tracing::info!(trigger, took_ms = status.took_ms, activated = ?status.activated, scenarios = status.scenarios_run, "workflows activated");
        } else {
            self.count(|| super::metrics::reload(false));
            tracing::warn!(trigger, kept = ?status.kept, "the rules have problems; the last good versions stay active");
            for d in status.diagnostics.iter().filter(|d| d.is_error()) {
                tracing::warn!("{d}");
            }
        }
        // Every node on the database runs what this one activated (see `follow`).
        let versions: BTreeMap<String, i64> = active.current.iter().map(|(k, (row, _))| (k.clone(), row.id)).collect();
        // Written only when something a node shows changed (the versions, or the outcome and
        // diagnostics of the activation): a reload that changes nothing writes nothing, and
        // other nodes have nothing to follow.
        let stored = self.store.active_set().await?;
        let same = stored.epoch > 0
            && stored.versions == versions
            && serde_json::from_str::<ReloadStatus>(&stored.status)
                .is_ok_and(|s| s.ok == status.ok && s.diagnostics == status.diagnostics);
        let epoch = if same {
            stored.epoch
        } else {
            let json = serde_json::to_string(&status).unwrap_or_else(|_| "{}".into());
            self.store.set_active(&versions, trigger, &json, self.now()).await?
        };
        self.followed.store(epoch, std::sync::atomic::Ordering::SeqCst);
        *self.last_reload.lock().expect("reload status lock") = Some(status.clone());
        let mut history = self.reload_history.lock().expect("reload history lock");
        if history.len() == RELOAD_HISTORY {
            history.pop_front();
        }
        history.push_back(status.clone());
        drop(history);
        Ok(status)
    }

    /// Runs the versions the database says are active, when another node changed them since
    /// this engine last looked: each from its stored files, so a node that never saw the files
    /// runs and shows it. Cheap when nothing changed (one small query); returns whether
    /// anything did.
    pub async fn follow(&self) -> Result<bool, EngineError> {
        use std::sync::atomic::Ordering::SeqCst;
        let epoch = self.store.active_epoch().await?;
        if epoch == 0 || epoch == self.followed.load(SeqCst) {
            return Ok(false);
        }
        let _one_at_a_time = self.activation.lock().await;
        let set = self.store.active_set().await?;
        if set.epoch == self.followed.load(SeqCst) {
            return Ok(false);
        }
        let mut current = BTreeMap::new();
        let mut files = BTreeMap::new();
        for (key, id) in &set.versions {
            let (row, def) = self.version(*id).await?;
            files.extend(def.sources.iter().map(|(k, v)| (k.clone(), v.clone())));
            current.insert(key.clone(), (row, def));
        }
        // The units and their names, from the files the versions were built from.
        let catalog = check(&FileSet::from_map(files), &self.registry, &self.sandbox);
        let status: Option<ReloadStatus> = serde_json::from_str(&set.status).ok();
        let old = self.active();
        let next = Active {
            catalog,
            current,
            diagnostics: status.as_ref().map(|s| s.diagnostics.clone()).unwrap_or_default(),
            reloaded_at: set.changed_at,
            generation: old.generation + 1,
        };
        *self.active.write().expect("active lock") = Arc::new(next);
        self.count(|| {
            for (key, (_, def)) in &self.active().current {
                super::metrics::known_workflow(key, def.steps.iter().map(|s| s.kind.as_str()));
            }
        });
        *self.last_reload.lock().expect("reload status lock") = status;
        self.followed.store(set.epoch, SeqCst);
        tracing::info!(epoch = set.epoch, by = %set.changed_by, workflows = set.versions.len(), "followed the active versions another node activated");
        Ok(true)
    }

    /// Takes the lead, or keeps it: the leading node alone reads the workflows folder (see
    /// [`crate::store::Store::try_lead`]).
    pub async fn try_lead(&self) -> Result<bool, EngineError> {
        Ok(self.store.try_lead().await?)
    }

    /// The status of the last activation.
    /// The last activations this process made (at most [`RELOAD_HISTORY`]), newest first.
    pub fn reload_history(&self) -> Vec<ReloadStatus> {
        self.reload_history.lock().expect("reload history lock").iter().rev().cloned().collect()
    }

    pub fn last_reload(&self) -> Option<ReloadStatus> {
        self.last_reload.lock().expect("reload status lock").clone()
    }

    /// Stores the versions of a checked (and gated) catalog and swaps them in. Returns what was
    /// activated, kept and removed. Scenario runs use it directly: they are the gate.
    pub(crate) async fn install(
        &self,
        catalog: Catalog,
        created_by: &str,
    ) -> Result<(Vec<(String, i64)>, Vec<String>, Vec<String>), EngineError> {
        let now = self.now();
        let old = self.active();
        let mut current = BTreeMap::new();
        let mut activated = Vec::new();
        for (key, def) in &catalog.definitions {
            let row = self
                .store
                .put_version(
                    &NewVersion {
                        workflow: key,
                        hash: &def.hash,
                        sources: &def.sources,
                        effective: &def.effective,
                        created_by,
                    },
                    now,
                )
                .await?;
            if old.current.get(key).is_none_or(|(r, _)| r.id != row.id) {
                activated.push((key.clone(), row.seq));
            }
            self.versions.lock().expect("versions lock").insert(row.id, (row.clone(), def.clone()));
            current.insert(key.clone(), (row, def.clone()));
        }
        let mut kept = Vec::new();
        for key in catalog.failed.keys() {
            if let Some(prev) = old.current.get(key) {
                current.insert(key.clone(), prev.clone());
            }
            kept.push(key.clone());
        }
        // A workflow that vanished while its unit's folder has errors (an unreadable file, a
        // file that does not parse, so its id is unknown) is kept, not removed: a broken save
        // never takes away what runs.
        let broken_units: std::collections::BTreeSet<&str> = catalog
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| yishi_core::files::parent_dir(d.file()))
            .collect();
        for (key, prev) in &old.current {
            let unit = key.rsplit_once('/').map_or("", |(u, _)| u);
            if !current.contains_key(key) && broken_units.contains(unit) {
                current.insert(key.clone(), prev.clone());
                kept.push(key.clone());
            }
        }
        let removed: Vec<String> = old.current.keys().filter(|k| !current.contains_key(*k)).cloned().collect();
        let diagnostics = catalog.diagnostics.clone();
        let next = Active { catalog, current, diagnostics, reloaded_at: now, generation: old.generation + 1 };
        *self.active.write().expect("active lock") = Arc::new(next);
        Ok((activated, kept, removed))
    }

    /// The compiled definition of a stored version, rebuilt from its stored files if needed.
    pub async fn definition(&self, version: i64) -> Result<Arc<Definition>, EngineError> {
        Ok(self.version(version).await?.1)
    }

    /// A stored version (by id) and its compiled definition, rebuilt from its stored files if
    /// needed.
    pub async fn version(&self, version: i64) -> Result<(VersionRow, Arc<Definition>), EngineError> {
        if let Some(v) = self.versions.lock().expect("versions lock").get(&version) {
            return Ok(v.clone());
        }
        let stored = self.store.version(version).await?;
        let files = FileSet::from_map(stored.sources);
        let catalog = check_alone(&files, &self.registry, &self.sandbox);
        let def = catalog.definitions.get(&stored.row.workflow).cloned().ok_or_else(|| {
            let why = catalog.diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            EngineError::Internal(format!(
                "stored version {} of `{}` no longer compiles with this build: {why}",
                stored.row.seq, stored.row.workflow
            ))
        })?;
        let v = (stored.row, def);
        self.versions.lock().expect("versions lock").insert(version, v.clone());
        Ok(v)
    }

    /// The stored version (by id) of `workflow` with number `number`.
    pub async fn version_number(&self, workflow: &str, number: i64) -> Result<VersionRow, EngineError> {
        let rows = self.store.versions(Some(workflow)).await?;
        match rows.iter().find(|r| r.seq == number) {
            Some(r) => Ok(r.clone()),
            None if rows.is_empty() => Err(EngineError::NotFound(msg!("engine-no-such-workflow", workflow = workflow))),
            None => Err(EngineError::NotFound(msg!(
                "engine-no-such-version",
                workflow = workflow,
                version = number,
                last = rows.len()
            ))),
        }
    }

    /// The stored versions of `workflow` (all workflows with `None`), with their active cases.
    pub async fn versions(&self, workflow: Option<&str>) -> Result<Vec<VersionInfo>, EngineError> {
        let rows = self.store.versions(workflow).await?;
        if rows.is_empty()
            && let Some(w) = workflow
        {
            return Err(EngineError::NotFound(msg!("engine-no-versions", workflow = w)));
        }
        let counts = self.store.active_counts().await?;
        let active = self.active();
        Ok(rows
            .into_iter()
            .map(|row| VersionInfo {
                active_instances: counts.get(&row.id).copied().unwrap_or(0),
                current: active.current.get(&row.workflow).is_some_and(|(r, _)| r.id == row.id),
                row,
            })
            .collect())
    }

    /// Version number `version` of `workflow`, with its files and effective definition.
    pub async fn version_source(&self, workflow: &str, version: i64) -> Result<StoredVersion, EngineError> {
        let row = self.version_number(workflow, version).await?;
        Ok(self.store.version(row.id).await?)
    }

    /// What changed between two version numbers of `workflow`: the effective definition in
    /// words, and every file (scripts, lists, calendars) as a text diff.
    pub async fn diff(&self, workflow: &str, from: i64, to: i64) -> Result<VersionDiff, EngineError> {
        let a = self.version_source(workflow, from).await?;
        let b = self.version_source(workflow, to).await?;
        Ok(describe::version_diff(&a.effective, &a.sources, &b.effective, &b.sources))
    }

    /// Active cases per version id.
    pub async fn active_counts(&self) -> Result<BTreeMap<i64, i64>, EngineError> {
        Ok(self.store.active_counts().await?)
    }
}
