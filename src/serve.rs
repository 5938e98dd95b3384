//! `yishi serve`: open the database, load the workflows, resume timers, serve the API, watch
//! the folder, and shut down gracefully on SIGINT or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use yishi_core::clock::SystemClock;
use yishi_engine::reload::Reloader;
use yishi_engine::service::access::TokenSpec;
use yishi_engine::service::{Config, Engine};

use yishi_core::calendar::Zone;
use yishi_core::i18n::{Lang, Message};
use yishi_core::msg;

use crate::config::ServeArgs;
use crate::server::{AppState, router};

/// Sets up logging once (`RUST_LOG` overrides the default `info`).
/// Log times in the deployment's zone (`--tz`), with the offset: what an operator reads.
struct ZoneTime(Zone);

impl tracing_subscriber::fmt::time::FormatTime for ZoneTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let now = chrono::Utc::now().timestamp_millis();
        match self.0.local(now) {
            Some(t) => write!(w, "{}", t.format("%Y-%m-%dT%H:%M:%S%.3f%:z")),
            None => write!(w, "{now}"),
        }
    }
}

/// Logging to standard output: `YISHI_LOG` (else `RUST_LOG`, else `info`) filters, in the
/// deployment's zone, as text (colour only on a terminal, never with `NO_COLOR`) or JSON.
pub fn init_logging(zone: Zone, format: crate::config::LogFormat) {
    use std::io::IsTerminal;
    let filter = std::env::var("YISHI_LOG")
        .ok()
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .or_else(|| tracing_subscriber::EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_timer(ZoneTime(zone));
    let _ = match format {
        crate::config::LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
        crate::config::LogFormat::Text => {
            let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(colour).try_init()
        }
    };
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

/// Connections served at once; more wait in the listen queue.
pub const MAX_CONNECTIONS: usize = 1024;

/// Serves HTTP/1.1 connections with a header-read timeout (slow clients cannot hold a
/// connection), a cap on concurrent connections, and graceful shutdown (in-flight requests
/// finish; nothing is cut off half-way).
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    header_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = &mut shutdown => break,
        };
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // The console limits sign-in attempts per address.
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            app.clone(),
            move |mut r: axum::http::Request<hyper::body::Incoming>| {
                r.extensions_mut().insert(axum::extract::ConnectInfo(_peer));
                r
            },
        ));
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections did not finish within 30 s of the shutdown");
    }
}

/// Topics that waited while no sitting took them (or that a crash left unplaced) go on the
/// next sitting's agenda.
async fn place_waiting(engine: &Engine) {
    match engine.place_all_waiting().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(cases = n, "waiting cases put on a sitting's agenda"),
        Err(e) => tracing::warn!(error = %e, "could not place the cases waiting for a sitting"),
    }
}

pub async fn serve(args: ServeArgs, lang: Lang) -> Result<(), Message> {
    let settings = crate::config::Settings::resolve(args)?;
    if settings.args.print_config {
        crate::output::out!("{}", settings.to_toml().trim_end());
        return Ok(());
    }
    let webhook_options = settings.webhooks(lang);
    let options = settings.store_options();
    let args = settings.args;
    let zone = Zone::parse(&args.tz).ok_or_else(|| msg!("calendar-bad-zone", zone = &args.tz))?;
    init_logging(zone, args.log_format);
    let webhooks = crate::webhook::HttpWebhooks::new(webhook_options)?;
    // Before anything counts: the start-up activation is a reload too.
    crate::server::metrics::install();
    if !args.workflows.is_dir() {
        return Err(msg!("serve-no-workflows", folder = args.workflows.display().to_string()));
    }
    let store = yishi_engine::store::open(&options)
        .await
        .map_err(|e| msg!("cli-database-error", db = yishi_engine::store::redact(&args.db), detail = e.to_string()))?;
    let node_interval = Duration::from_millis(args.cluster_interval_ms.max(50));
    let engine = Engine::new(
        store,
        crate::registry(),
        Arc::new(SystemClock),
        Config { lang, node_interval, ..Config::default() },
    );
    let failed = |e: yishi_engine::service::EngineError| match e {
        yishi_engine::service::EngineError::Unavailable(d) | yishi_engine::service::EngineError::Internal(d) => {
            msg!("cli-engine-failure", detail = d)
        }
        e => e.message(),
    };
    engine.hold_database().map_err(failed)?;
    let durability = engine.durability().await.map_err(failed)?;
    if durability != options.sync {
        return Err(msg!(
            "cli-engine-failure",
            detail = format!("asked for {:?} commits, the database gives {durability:?}", options.sync)
        ));
    }
    tracing::info!(durability = ?durability, "database {}", engine.database());
    let reloader = Arc::new(Reloader::new(args.workflows.clone(), engine.clone()));
    let status = reloader.reload("start").await.map_err(failed)?;
    tracing::info!(
        workflows = engine.active().current.len(),
        ok = status.ok,
        "workflows loaded from {}",
        args.workflows.display()
    );
    place_waiting(&engine).await;
    for (workflow, step, name) in webhooks.unknown_robot_secrets(&engine) {
        tracing::warn!(workflow, step, "{}", msg!("webhook-no-robot-secret", name = &name).render(lang));
    }

    if engine.tokens().await.map_err(failed)?.is_empty() {
        let spec = TokenSpec { name: "admin", role: "admin", scope: "*", acts_as: &[] };
        let (_, token) = engine.create_token(&spec).await.map_err(failed)?;
        eprintln!("\n  {}\n\n    {token}\n", msg!("serve-first-token").render(lang));
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let timers = tokio::spawn(engine.clone().run_timers(stopped(stop_rx.clone())));
    let outbox = tokio::spawn(engine.clone().run_outbox(Arc::new(webhooks), stopped(stop_rx.clone())));
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
        .map_err(|e| msg!("serve-cannot-listen", address = &args.listen, detail = e.to_string()))?;
    let addr = listener.local_addr().map_err(|e| msg!("cli-engine-failure", detail = e.to_string()))?;
    tracing::info!("serving http://{addr}/api/v1 (database {})", engine.database());
    // This process as a node of the database: the lead, following, heartbeats.
    let node = yishi_engine::service::cluster::Node::new(
        addr.to_string(),
        yishi_core::clock::Clock::now(&SystemClock),
        node_interval,
    );
    let leads = engine.try_lead().await.map_err(failed)?;
    tracing::info!(node = %node.id, leads, "node");
    let node_round = tokio::spawn(engine.clone().run_node(node, reloader.clone(), leads, stopped(stop_rx.clone())));
    let app = router(AppState::new(engine.clone(), reloader, lang, zone));
    let upkeep = tokio::spawn(crate::server::metrics::upkeep());
    serve_http(listener, app, Duration::from_secs(args.header_timeout.max(1)), shutdown_signal()).await;
    let _ = stop_tx.send(true);
    let _ = tokio::join!(timers, outbox, node_round);
    upkeep.abort();
    engine.close().await;
    tracing::info!("stopped");
    Ok(())
}
