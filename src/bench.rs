//! `yishi bench CASE`: figures printed as `name value unit` lines (release builds only mean
//! anything). Nothing here is asserted: speed is measured, not tested.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use yishi_engine::FileSet;
use yishi_engine::clock::SystemClock;
use yishi_engine::kind::Actor;
use yishi_engine::service::{Config, Engine};
use yishi_engine::store::sqlite::{SqliteStore, Sync};

/// The benchmark cases.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Case {
    /// One guard evaluation (compiled once), with the case's data converted for the script.
    Guard,
    /// The peers' reference workflow, one instance after another, each committed to SQLite.
    Reference,
    /// The reference workflow with many instances in flight (group commit).
    Concurrent,
    /// Time from saving a workflow file to its new version being active.
    Reload,
}

fn line(name: &str, value: f64, unit: &str) {
    println!("{name} {value:.2} {unit}");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn engine(workflows: &Path, db_dir: &Path, sync: Sync) -> Result<Arc<Engine<SqliteStore>>, String> {
    let store = SqliteStore::open_with(&db_dir.join("bench.db"), sync).await.map_err(|e| e.to_string())?;
    let engine = Engine::new(
        store,
        crate::registry(),
        Arc::new(SystemClock),
        Config { log_activity: false, ..Config::default() },
    )
    .await
    .map_err(|e| e.to_string())?;
    let files = FileSet::load_dir(workflows).map_err(|e| e.to_string())?;
    let report = engine.reload(&files).await.map_err(|e| e.to_string())?;
    if !engine.active().current.contains_key("bench/reference") {
        return Err(format!(
            "bench/reference is not in {} (or has errors: {:?})",
            workflows.display(),
            report.diagnostics
        ));
    }
    Ok(engine)
}

pub async fn run(case: Case, n: usize, clients: usize, workflows: PathBuf, sync: Sync) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let actor = Actor { id: "bench".into(), roles: Vec::new() };
    match case {
        Case::Guard => guard(n),
        Case::Reference => {
            let engine = engine(&workflows, tmp.path(), sync).await?;
            let mut lat = Vec::with_capacity(n);
            let started = Instant::now();
            for i in 0..n {
                let t = Instant::now();
                let data: Map<String, Value> = [("n".to_owned(), json!(i))].into_iter().collect();
                let v = engine.start("bench/reference", data, &actor, None).await.map_err(|e| e.to_string())?;
                debug_assert_eq!(v.outcome.as_deref(), Some(if i % 200 > 100 { "high" } else { "low" }));
                lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
            let secs = started.elapsed().as_secs_f64();
            lat.sort_by(f64::total_cmp);
            line("reference_instances_per_second", n as f64 / secs, "inst/s");
            line("reference_latency_p50", percentile(&lat, 0.5), "us");
            line("reference_latency_p99", percentile(&lat, 0.99), "us");
            Ok(())
        }
        Case::Concurrent => {
            let engine = engine(&workflows, tmp.path(), sync).await?;
            let started = Instant::now();
            let mut set = tokio::task::JoinSet::new();
            let per = n.div_ceil(clients.max(1));
            for c in 0..clients.max(1) {
                let engine = engine.clone();
                let actor = actor.clone();
                set.spawn(async move {
                    let mut lat = Vec::with_capacity(per);
                    for i in 0..per {
                        let t = Instant::now();
                        let data: Map<String, Value> = [("n".to_owned(), json!(c * per + i))].into_iter().collect();
                        engine.start("bench/reference", data, &actor, None).await.map_err(|e| e.to_string())?;
                        lat.push(t.elapsed().as_secs_f64() * 1e6);
                    }
                    Ok::<_, String>(lat)
                });
            }
            let mut lat = Vec::new();
            while let Some(r) = set.join_next().await {
                lat.extend(r.map_err(|e| e.to_string())??);
            }
            let secs = started.elapsed().as_secs_f64();
            lat.sort_by(f64::total_cmp);
            let m = &engine.metrics;
            let batches = m.commit_batches.load(std::sync::atomic::Ordering::Relaxed).max(1);
            let commits = m.commits.load(std::sync::atomic::Ordering::Relaxed);
            let total = clients.max(1) * per;
            line("concurrent_instances_per_second", total as f64 / secs, "inst/s");
            // Each reference instance passes four steps (script, choice, end, and the case's end) in one transition.
            line("concurrent_step_transitions_per_second", (total * 4) as f64 / secs, "steps/s");
            line("concurrent_commits_per_transaction", commits as f64 / batches as f64, "commits");
            line("concurrent_latency_p50", percentile(&lat, 0.5), "us");
            line("concurrent_latency_p99", percentile(&lat, 0.99), "us");
            Ok(())
        }
        Case::Reload => reload(n, &workflows, tmp.path(), sync).await,
    }
}

fn guard(n: usize) -> Result<(), String> {
    use yishi_engine::script::{Sandbox, ScriptOrigin, to_dynamic};
    let sandbox = Sandbox::default();
    let origin = ScriptOrigin { file: "bench".into(), line: 1, column: 1 };
    let script = sandbox
        .compile(
            "data.proposal.cost > params.assembly_cost || data.proposal.households > params.assembly_households",
            origin,
            yishi_engine::kind::SCRIPT_VARS,
        )
        .map_err(|e| e.to_string())?;
    let data = json!({"proposal": {"title": "lifts", "cost": 90000, "households": 40, "category": "building", "channel": "visit"}, "registration": "x-2026-0001"});
    let params = json!({"assembly_cost": 50000, "assembly_households": 100});
    let mut per_eval = Vec::new();
    let mut raw = Vec::new();
    let batch = 1000;
    let pre_data = to_dynamic(&data);
    let pre_params = to_dynamic(&params);
    for _ in 0..(n / batch).max(1) {
        let t = Instant::now();
        for _ in 0..batch {
            // As the runtime does it: the data document converted for the script each time.
            let vars = vec![
                ("data", to_dynamic(&data)),
                ("params", to_dynamic(&params)),
                ("now", rhai::Dynamic::from_int(0)),
                ("visits", rhai::Dynamic::UNIT),
                ("item", rhai::Dynamic::UNIT),
            ];
            let (v, _) = sandbox.eval(&script, vars).map_err(|e| e.to_string())?;
            debug_assert!(v.as_bool().unwrap_or(false));
        }
        per_eval.push(t.elapsed().as_secs_f64() * 1e9 / batch as f64);
        let t = Instant::now();
        for _ in 0..batch {
            let vars = vec![
                ("data", pre_data.clone()),
                ("params", pre_params.clone()),
                ("now", rhai::Dynamic::from_int(0)),
                ("visits", rhai::Dynamic::UNIT),
                ("item", rhai::Dynamic::UNIT),
            ];
            let _ = sandbox.eval(&script, vars).map_err(|e| e.to_string())?;
        }
        raw.push(t.elapsed().as_secs_f64() * 1e9 / batch as f64);
    }
    per_eval.sort_by(f64::total_cmp);
    raw.sort_by(f64::total_cmp);
    line("guard_eval_with_data_conversion_median", percentile(&per_eval, 0.5), "ns");
    line("guard_eval_script_only_median", percentile(&raw, 0.5), "ns");
    line("guard_evals_per_second", 1e9 / percentile(&per_eval, 0.5), "evals/s");
    Ok(())
}

async fn reload(n: usize, workflows: &Path, db_dir: &Path, sync: Sync) -> Result<(), String> {
    let copy = db_dir.join("workflows");
    copy_dir(workflows, &copy).map_err(|e| e.to_string())?;
    let engine = engine(&copy, db_dir, sync).await?;
    let reloader = Arc::new(crate::reload::Reloader::new(copy.clone(), engine.clone()));
    reloader.reload("bench").await.map_err(|e| e.to_string())?;
    let _watcher = reloader.clone().watch(Duration::from_millis(250)).map_err(|e| e.to_string())?;
    let file = copy.join("chengguan/tianshuinanlu/garden.toml");
    let original = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
    let key = "chengguan/tianshuinanlu/garden";
    let mut times = Vec::new();
    for i in 0..n.clamp(1, 50) {
        let before = engine.active().current.get(key).map(|(r, _)| r.id);
        let t = Instant::now();
        let tmp = file.with_extension("toml.tmp~");
        std::fs::write(&tmp, original.replace("value = 10", &format!("value = {}", 11 + i)))
            .map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, &file).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while engine.active().current.get(key).map(|(r, _)| r.id) == before {
            if Instant::now() > deadline {
                return Err("the save was not activated within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let last = reloader.status().map(|s| s.took_ms).unwrap_or(0.0);
    line("reload_save_to_active_median", percentile(&times, 0.5), "ms");
    line("reload_save_to_active_max", percentile(&times, 1.0), "ms");
    line("reload_check_and_scenarios_last", last, "ms");
    line("reload_debounce", 250.0, "ms");
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), target)?;
        }
    }
    Ok(())
}
