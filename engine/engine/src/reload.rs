//! Hot reload: watch the workflows folder, wait for saves to settle, and hand the folder to the
//! engine's one activation path ([`Engine::activate_files`]). A broken save changes nothing
//! that runs; its diagnostics are kept for the API and the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use yishi_core::FileSet;

use crate::service::{Engine, EngineError, ReloadStatus};

/// How long a following node waits for the leading node's first activation.
const FOLLOW_WAIT: Duration = Duration::from_secs(60);

/// A workflows folder and the engine it feeds.
pub struct Reloader {
    dir: PathBuf,
    engine: Arc<Engine>,
}

impl Reloader {
    pub fn new(dir: PathBuf, engine: Arc<Engine>) -> Self {
        Reloader { dir, engine }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the folder and activates it; `trigger` says why (kept in the status). On a node
    /// that does not lead (several nodes on one database), the leading node does that: this one
    /// runs what the database says is active and answers with the status of the activation
    /// that made it so, waiting up to `FOLLOW_WAIT` for a leader's first activation.
    pub async fn reload(&self, trigger: &str) -> Result<ReloadStatus, EngineError> {
        if !self.engine.try_lead().await? {
            let deadline = tokio::time::Instant::now() + FOLLOW_WAIT;
            loop {
                self.engine.follow().await?;
                if let Some(status) = self.engine.last_reload() {
                    return Ok(status);
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(EngineError::Unavailable("no node has activated workflows yet".into()));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let dir = self.dir.clone();
        let files = tokio::task::spawn_blocking(move || FileSet::load_dir(&dir))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))?
            .map_err(|e| EngineError::Internal(format!("cannot read {}: {e}", self.dir.display())))?;
        self.engine.activate_files(&files, trigger).await
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
