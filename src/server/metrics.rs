//! `/metrics`: the Prometheus exporter behind the `metrics` facade, the HTTP request figures,
//! process figures, and the database gauges read at each scrape.

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use yishi_engine::service::{Engine, metrics as m};

const HTTP_REQUESTS: &str = "yishi_http_requests_total";
const HTTP_SECONDS: &str = "yishi_http_request_duration_seconds";
const BUILD_INFO: &str = "yishi_build_info";

/// Bucket bounds (seconds) for every `*_seconds` histogram: 0.5 ms to 10 s.
const BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

struct Exporter {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
    /// (workflow, step) pairs seen active, so that a pair with no cases left reads 0.
    seen: Mutex<BTreeSet<(String, String)>>,
}

static EXPORTER: OnceLock<Exporter> = OnceLock::new();

/// Installs the exporter as the process's recorder (once; later calls return the same one).
fn exporter() -> &'static Exporter {
    EXPORTER.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .expect("bucket bounds are not empty")
            .install_recorder()
            .expect("no other metrics recorder is installed in this process");
        m::describe();
        yishi_engine::service::cluster::describe();
        describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by method, route template and status class.");
        describe_histogram!(
            HTTP_SECONDS,
            Unit::Seconds,
            "Time to answer an HTTP request, by method, route template and status class."
        );
        describe_gauge!(BUILD_INFO, "Always 1; the version of the running binary is a label.");
        gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        let process = metrics_process::Collector::default();
        process.describe();
        Exporter { handle, process, seen: Mutex::new(BTreeSet::new()) }
    })
}

/// Installs the exporter; `serve` calls it at start and keeps histograms drained.
pub fn install() {
    exporter();
}

/// Drains histogram samples into their buckets every few seconds, until the process ends.
pub async fn upkeep() {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        exporter().handle.run_upkeep();
    }
}

/// Counts one answered request under its route template (never the raw path).
pub fn request(method: &str, route: Option<&str>, status: u16, took: Duration) {
    let class = match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    // A client can send any method: only the standard ones become labels.
    let method = match method {
        "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => method,
        _ => "other",
    };
    let labels = [
        ("method", method.to_owned()),
        ("route", route.unwrap_or("unmatched").to_owned()),
        ("status", class.to_owned()),
    ];
    counter!(HTTP_REQUESTS, &labels).increment(1);
    histogram!(HTTP_SECONDS, &labels).record(took.as_secs_f64());
}

/// The page: gauges refreshed from the database and the process, then everything rendered.
pub async fn render(engine: &Engine) -> String {
    let ex = exporter();
    match engine.gauges().await {
        Ok(g) => {
            let mut seen = ex.seen.lock().expect("metrics lock");
            let now: BTreeSet<(String, String)> = g.active.iter().map(|(w, s, _)| (w.clone(), s.clone())).collect();
            for (w, s) in seen.difference(&now) {
                gauge!(m::ACTIVE_CASES, "workflow" => w.clone(), "step" => s.clone()).set(0.0);
            }
            for (w, s, n) in &g.active {
                gauge!(m::ACTIVE_CASES, "workflow" => w.clone(), "step" => s.clone()).set(*n as f64);
            }
            seen.extend(now);
            gauge!(m::TIMERS_PENDING).set(g.timers_pending as f64);
            gauge!(m::TIMERS_OVERDUE).set(g.timers_overdue as f64);
            gauge!(m::OUTBOX_PENDING).set(g.outbox_pending as f64);
            gauge!(m::OUTBOX_DEAD).set(g.outbox_dead as f64);
        }
        // The page still answers: process and counter figures stay useful when the database
        // does not (readiness reports the database).
        Err(e) => tracing::warn!(error = %e, "metrics could not read the database"),
    }
    gauge!(m::WORKFLOWS_ACTIVE).set(engine.active().current.len() as f64);
    ex.process.collect();
    ex.handle.render()
}
