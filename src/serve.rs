//! `yishi serve`: open the database, load the workflows, resume timers, serve the API, watch
//! the folder, and shut down gracefully on SIGINT or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use yishi_engine::clock::SystemClock;
use yishi_engine::service::{Config, Engine};
use yishi_engine::store::sqlite::SqliteStore;
use yishi_engine::store::{NewToken, Store};

use crate::cli::ServeArgs;
use crate::reload::Reloader;
use crate::server::{AppState, router};

/// Sets up logging once (`RUST_LOG` overrides the default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).try_init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

pub async fn serve(args: ServeArgs) -> Result<(), String> {
    init_logging();
    if !args.workflows.is_dir() {
        return Err(format!(
            "the workflows folder `{}` does not exist (set --workflows or YISHI_WORKFLOWS)",
            args.workflows.display()
        ));
    }
    let store = SqliteStore::open(&args.db)
        .await
        .map_err(|e| format!("cannot open the database `{}`: {e}", args.db.display()))?;
    let engine = Engine::new(store, crate::registry(), Arc::new(SystemClock), Config::default())
        .await
        .map_err(|e| e.to_string())?;
    let reloader = Arc::new(Reloader::new(args.workflows.clone(), engine.clone()));
    let status = reloader.reload("start").await.map_err(|e| e.to_string())?;
    tracing::info!(
        workflows = engine.active().current.len(),
        ok = status.ok,
        "workflows loaded from {}",
        args.workflows.display()
    );

    if engine.store().tokens().await.map_err(|e| e.to_string())?.is_empty() {
        let (token, key_id, hash) = crate::server::auth::new_token();
        engine
            .store()
            .add_token(
                &NewToken {
                    name: "admin",
                    key_id: &key_id,
                    secret_hash: &hash,
                    role: "admin",
                    scope: "*",
                    acts_as: &[],
                },
                engine.now(),
            )
            .await
            .map_err(|e| e.to_string())?;
        eprintln!(
            "\n  First run: created an admin token (shown only this once; `yishi token create` makes more):\n\n    {token}\n"
        );
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let timers = tokio::spawn(engine.clone().run_timers(stopped(stop_rx.clone())));
    let outbox = tokio::spawn(
        engine.clone().run_outbox(Arc::new(crate::webhook::HttpWebhooks::default()), stopped(stop_rx.clone())),
    );
    let _watcher = if args.no_watch {
        None
    } else {
        match reloader.clone().watch(Duration::from_millis(250)) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the workflows folder; reload with SIGHUP or POST /api/v1/reload");
                None
            }
        }
    };
    #[cfg(unix)]
    {
        let r = reloader.clone();
        let mut rx = stop_rx.clone();
        if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            tokio::spawn(async move {
                loop {
                    let got = tokio::select! {
                        h = hup.recv() => h.is_some(),
                        _ = rx.changed() => false,
                    };
                    if !got {
                        return;
                    }
                    if let Err(e) = r.reload("SIGHUP").await {
                        tracing::error!(error = %e, "reload failed");
                    }
                }
            });
        }
    }

    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!("serving http://{addr}/api/v1 (database {})", args.db.display());
    let app = router(AppState::new(engine.clone(), reloader));
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await.map_err(|e| e.to_string())?;
    let _ = stop_tx.send(true);
    let _ = tokio::join!(timers, outbox);
    engine.store().close().await;
    tracing::info!("stopped");
    Ok(())
}
