//! `yishi bench CASE`: figures printed as `name value unit` lines (release builds only mean
//! anything). Nothing here is asserted: speed is measured, not tested.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use yishi_core::FileSet;
use yishi_core::clock::SystemClock;
use yishi_core::kind::Actor;
use yishi_engine::service::{Config, Engine};
use yishi_engine::store::{Durability, ScaleFixture, StoreOptions};

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
    /// The full Liuhangli proposal loop (its monthly sitting, a 50-voter vote), many cases at once.
    Case,
    /// A database of 1,000,000 instances and 10,000,000 events: start-up, memory, list and read
    /// latency, and 100,000 overdue deadlines fired after start.
    Scale,
}

fn line(name: &str, value: f64, unit: &str) {
    crate::output::print_line(format_args!("{name} {value:.2} {unit}"));
}

/// Waits for every client and collects their latencies.
async fn gather(mut set: tokio::task::JoinSet<Result<Vec<f64>, String>>) -> Result<Vec<f64>, String> {
    let mut lat = Vec::new();
    while let Some(r) = set.join_next().await {
        lat.extend(r.map_err(|e| e.to_string())??);
    }
    Ok(lat)
}

/// Transactions (at least 1), changes committed, and microseconds spent committing, so far.
fn commit_totals(engine: &Engine) -> (f64, f64, f64) {
    let (units, transactions, micros) = engine.commit_totals();
    ((transactions as f64).max(1.0), units as f64, micros as f64)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn engine(workflows: &Path, db: &str, sync: Durability) -> Result<Arc<Engine>, String> {
    let options = StoreOptions { sync, pool_size: 24, ..StoreOptions::new(db) };
    let store = yishi_engine::store::open(&options).await.map_err(|e| e.to_string())?;
    let engine =
        Engine::new(store, crate::registry(), Arc::new(SystemClock), Config { observed: false, ..Config::default() });
    let files = FileSet::load_dir(workflows).map_err(|e| e.to_string())?;
    let report = engine.activate_files(&files, "bench").await.map_err(|e| e.to_string())?;
    if !engine.active().current.contains_key("bench/reference") {
        return Err(format!(
            "bench/reference is not in {} (or has errors: {:?})",
            workflows.display(),
            report.diagnostics
        ));
    }
    Ok(engine)
}

/// Runs a benchmark on `db` (an empty database of its own: the bench writes cases into it), or
/// on a new SQLite file in a temporary folder.
pub async fn run(
    case: Case,
    n: usize,
    clients: usize,
    workflows: PathBuf,
    sync: Durability,
    db: Option<String>,
) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let db = db.unwrap_or_else(|| tmp.path().join("bench.db").display().to_string());
    let actor = Actor { id: "bench".into(), roles: Vec::new() };
    match case {
        Case::Guard => guard(n),
        Case::Reference => {
            let engine = engine(&workflows, &db, sync).await?;
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
            let (batches, _, micros) = commit_totals(&engine);
            line("reference_commit_mean", micros / batches, "us");
            Ok(())
        }
        Case::Concurrent => {
            let engine = engine(&workflows, &db, sync).await?;
            let cpu_before = thread_cpu();
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
            let mut lat = gather(set).await?;
            let secs = started.elapsed().as_secs_f64();
            lat.sort_by(f64::total_cmp);
            let (batches, commits, micros) = commit_totals(&engine);
            let total = clients.max(1) * per;
            line("concurrent_instances_per_second", total as f64 / secs, "inst/s");
            // Each reference instance passes four steps (script, choice, end, and the case's end) in one transition.
            line("concurrent_step_transitions_per_second", (total * 4) as f64 / secs, "steps/s");
            line("concurrent_commits_per_transaction", commits / batches, "commits");
            line("concurrent_commit_mean", micros / batches, "us");
            line("concurrent_commit_busy_share", micros / 1e6 / secs, "share");
            // CPU time during the run, by thread (Linux schedstat): the SQLite writer thread
            // against the whole process, as cores kept busy.
            let cpu = thread_cpu_since(&cpu_before);
            if !cpu.is_empty() {
                let all: f64 = cpu.values().sum();
                let writer: f64 = cpu.iter().filter(|(k, _)| k.1 == "sqlite-writer").map(|(_, v)| v).sum();
                line("concurrent_process_cpu", all / secs, "cores");
                line("concurrent_writer_thread_cpu", writer / secs, "cores");
                line("concurrent_writer_share_of_cpu", if all > 0.0 { writer / all } else { 0.0 }, "share");
            }
            line("concurrent_latency_p50", percentile(&lat, 0.5), "us");
            line("concurrent_latency_p99", percentile(&lat, 0.99), "us");
            Ok(())
        }
        Case::Reload => reload(n, &workflows, tmp.path(), &db, sync).await,
        Case::Case => full_case(n, clients, &workflows, &db, sync).await,
        Case::Scale => scale(n, &workflows, &db, sync).await,
    }
}

fn guard(n: usize) -> Result<(), String> {
    use yishi_core::script::{Sandbox, ScriptOrigin, to_dynamic};
    let sandbox = Sandbox::default();
    let origin = ScriptOrigin { file: "bench".into(), line: 1, column: 1 };
    let script = sandbox
        .compile(
            "data.proposal.cost > params.assembly_cost || data.proposal.households > params.assembly_households",
            origin,
            yishi_core::kind::SCRIPT_VARS,
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

async fn reload(n: usize, workflows: &Path, dir: &Path, db: &str, sync: Durability) -> Result<(), String> {
    let copy = dir.join("workflows");
    copy_dir(workflows, &copy).map_err(|e| e.to_string())?;
    let engine = engine(&copy, db, sync).await?;
    let reloader = Arc::new(yishi_engine::reload::Reloader::new(copy.clone(), engine.clone()));
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
    let last = engine.last_reload().map(|s| s.took_ms).unwrap_or(0.0);
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

fn act(action: &str, id: &str, roles: &[&str], payload: Value) -> yishi_core::runtime::ActionRequest {
    yishi_core::runtime::ActionRequest {
        action: action.into(),
        step: None,
        token: None,
        payload: payload.as_object().cloned().unwrap_or_default(),
        actor: Actor { id: "staff-desk".into(), roles: vec![] },
        on_behalf_of: Some(Actor { id: id.into(), roles: roles.iter().map(|r| (*r).to_owned()).collect() }),
    }
}

/// The actions of one whole Liuhangli case, in order: [`SUBMITTED`] of them before the case
/// waits for its sitting ([`hold_sitting`]), the rest after the sitting agreed.
fn case_script() -> Vec<yishi_core::runtime::ActionRequest> {
    let staff = &["staff"];
    let mut v = vec![act(
        "submit",
        "zhang",
        &["resident"],
        json!({"title": "chairs on the stairs", "channel": "suggestion_box", "category": "building", "cost": 6000}),
    )];
    for i in 0..50 {
        v.push(act(
            "vote",
            &format!("rep{i}"),
            &["representative"],
            json!({"choice": if i % 5 == 0 { "against" } else { "for" }}),
        ));
    }
    v.push(act("close", "staff1", staff, json!({})));
    v.push(act("approve", "street1", &["street_office"], json!({})));
    v.push(act("close", "staff1", staff, json!({})));
    v.push(act("plan", "staff1", staff, json!({"tasks": [{"id": "install", "title": "install"}]})));
    v.push(act("report", "head1", &["building_head"], json!({"task": "install", "progress": 100})));
    v.push(act("sign_off", "sup1", &["supervisor"], json!({"task": "install"})));
    for i in 0..5 {
        v.push(act("rate", &format!("r{i}"), &["resident"], json!({"score": 5})));
    }
    v.push(act("close", "staff1", staff, json!({})));
    v
}

/// Actions of [`case_script`] before the case waits for a sitting.
const SUBMITTED: usize = 1;

/// The community's sitting that takes one case: scheduled for the hour ahead (past the
/// registration cut-off, so no other case is placed on it), the case put on its agenda by staff,
/// opened with its quorum, the topic agreed with a show of hands, closed with minutes: a start
/// and four commits, the last two of which change the sitting and the case together.
/// Each call's latency goes into `lat`, one list per call (kept apart from the case's own
/// actions: scheduling a sitting reads every running sitting of the unit, 32 at once here).
async fn hold_sitting(engine: &Engine, case: i64, lat: &mut [Vec<f64>; SITTING_CALLS]) -> Result<(), String> {
    let staff = Actor { id: "staff1".into(), roles: vec!["staff".into()] };
    let reps = ["rep1", "rep2", "rep3", "rep4", "rep5"];
    let at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let data = json!({"date": at, "place": "the council hall", "expected": reps});
    let t = Instant::now();
    let sitting = engine
        .start(SITTING, data.as_object().cloned().unwrap_or_default(), &staff, None)
        .await
        .map_err(|e| format!("sitting: {e}"))?;
    lat[0].push(t.elapsed().as_secs_f64() * 1e6);
    let t = Instant::now();
    engine.put_on_agenda(sitting.id, case, &staff).await.map_err(|e| format!("agenda: {e}"))?;
    lat[1].push(t.elapsed().as_secs_f64() * 1e6);
    for (k, (name, payload)) in [
        ("open", json!({"present": reps})),
        ("decide", json!({"case": case, "outcome": "agreed", "for": 4, "against": 1})),
        ("close", json!({"minutes": "agreed"})),
    ]
    .into_iter()
    .enumerate()
    {
        let t = Instant::now();
        engine
            .act(sitting.id, act(name, "staff1", &["staff"], payload), None, None)
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        lat[2 + k].push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(())
}

const SITTING: &str = "pingcheng/yongtai/liuhangli/sitting";
/// Calls of [`hold_sitting`] per case.
const SITTING_CALLS: usize = 5;
const SITTING_CALL_NAMES: [&str; SITTING_CALLS] = ["schedule", "agenda", "open", "decide", "close"];

async fn full_case(n: usize, clients: usize, workflows: &Path, db: &str, sync: Durability) -> Result<(), String> {
    let engine = engine(workflows, db, sync).await?;
    let key = "pingcheng/yongtai/liuhangli/proposal";
    let script = Arc::new(case_script());
    let cases = n.max(1);
    let clients = clients.clamp(1, cases);
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (engine, script) = (engine.clone(), script.clone());
        let mine = cases / clients + usize::from(c < cases % clients);
        set.spawn(async move {
            let (mut lat, mut sitting_lat) = (Vec::new(), <[Vec<f64>; SITTING_CALLS]>::default());
            for _ in 0..mine {
                let v = engine
                    .start(key, Map::new(), &Actor { id: "staff-desk".into(), roles: vec![] }, None)
                    .await
                    .map_err(|e| e.to_string())?;
                for (i, req) in script.iter().enumerate() {
                    if i == SUBMITTED {
                        hold_sitting(&engine, v.id, &mut sitting_lat).await?;
                    }
                    let t = Instant::now();
                    engine.act(v.id, req.clone(), None, None).await.map_err(|e| format!("{}: {e}", req.action))?;
                    lat.push(t.elapsed().as_secs_f64() * 1e6);
                }
                let end = engine.view(v.id).await.map_err(|e| e.to_string())?;
                if end.outcome.as_deref() != Some("closed") {
                    return Err(format!("case {} ended {:?} at {:?}", v.id, end.outcome, end.active_steps));
                }
            }
            Ok::<_, String>((lat, sitting_lat))
        });
    }
    let (mut lat, mut by_call) = (Vec::new(), <[Vec<f64>; SITTING_CALLS]>::default());
    while let Some(r) = set.join_next().await {
        let (a, b) = r.map_err(|e| e.to_string())??;
        lat.extend(a);
        for (all, mine) in by_call.iter_mut().zip(b) {
            all.extend(mine);
        }
    }
    let mut sitting_lat: Vec<f64> = by_call.iter().flatten().copied().collect();
    let secs = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    sitting_lat.sort_by(f64::total_cmp);
    line("case_cases_per_second", cases as f64 / secs, "cases/s");
    line("case_actions_per_case", (script.len() + SITTING_CALLS) as f64, "actions");
    line("case_actions_per_second", (lat.len() + sitting_lat.len()) as f64 / secs, "actions/s");
    let (batches, commits, micros) = commit_totals(&engine);
    line("case_commits_per_transaction", commits / batches, "commits");
    line("case_commit_mean", micros / batches, "us");
    line("case_commit_busy_share", micros / 1e6 / secs, "share");
    line("case_action_latency_p50", percentile(&lat, 0.5), "us");
    line("case_action_latency_p99", percentile(&lat, 0.99), "us");
    line("case_sitting_call_latency_p50", percentile(&sitting_lat, 0.5), "us");
    line("case_sitting_call_latency_p99", percentile(&sitting_lat, 0.99), "us");
    for (name, mut l) in SITTING_CALL_NAMES.into_iter().zip(by_call) {
        l.sort_by(f64::total_cmp);
        line(&format!("case_sitting_{name}_latency_p99"), percentile(&l, 0.99), "us");
    }
    Ok(())
}

/// CPU seconds each thread of this process has run, by (thread id, name), from
/// `/proc/self/task/*/schedstat` (empty where the kernel does not keep it).
fn thread_cpu() -> std::collections::BTreeMap<(u64, String), f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return out };
    for t in tasks.flatten() {
        let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) else { continue };
        let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default().trim().to_owned();
        let ns = std::fs::read_to_string(t.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse::<f64>().ok()));
        if let Some(ns) = ns {
            out.insert((tid, name), ns / 1e9);
        }
    }
    out
}

/// CPU seconds per thread since `before` (threads started since count from zero).
fn thread_cpu_since(
    before: &std::collections::BTreeMap<(u64, String), f64>,
) -> std::collections::BTreeMap<(u64, String), f64> {
    thread_cpu()
        .into_iter()
        .map(|(k, v)| {
            let b = before.get(&k).copied().unwrap_or(0.0);
            (k, v - b)
        })
        .collect()
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn scale(n: usize, workflows: &Path, db: &str, sync: Durability) -> Result<(), String> {
    let instances = n.max(1000) as i64;
    let deadlines = (instances / 10).min(100_000);
    // 1. Versions, through the engine; then rows generated by the database itself.
    let t = Instant::now();
    {
        let engine = engine(workflows, db, Durability::Normal).await?;
        let active = engine.active();
        let fixture = ScaleFixture {
            instances,
            deadlines,
            counter_version: active.current["bench/counter"].0.id,
            timed_version: active.current["bench/timed"].0.id,
            now: chrono::Utc::now().timestamp_millis(),
        };
        engine.fill_scale_fixture(&fixture).await.map_err(|e| e.to_string())?;
        engine.close().await;
    }
    // A file's size (a server database's is its own business).
    let size = std::fs::metadata(db).map(|m| m.len()).unwrap_or(0);
    line("scale_instances", instances as f64, "instances");
    line("scale_events", (instances * 10) as f64, "events");
    line("scale_overdue_deadlines", deadlines as f64, "deadlines");
    line("scale_database_size", size as f64 / 1e6, "MB");
    line("scale_generate_seconds", t.elapsed().as_secs_f64(), "s");

    // 2. Start as `serve` does: open, migrate, load the workflows, ready to answer. (The peak
    // memory counter is reset first, so it measures the engine, not the data generation.)
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let t = Instant::now();
    let engine = engine(workflows, db, sync).await?;
    line("scale_startup", t.elapsed().as_secs_f64() * 1000.0, "ms");

    // 3. The overdue deadlines fire, each once.
    let t = Instant::now();
    let fired = engine.fire_due().await.map_err(|e| e.to_string())?;
    line("scale_deadlines_fired", fired as f64, "deadlines");
    line("scale_deadlines_fire_seconds", t.elapsed().as_secs_f64(), "s");
    if fired as i64 != deadlines {
        return Err(format!("{fired} deadlines fired, {deadlines} were due"));
    }
    // 4. List active cases of one community with a filter; read one case with its history.
    let mut list = Vec::new();
    for i in 0..200 {
        let f = yishi_engine::store::ListFilter {
            units: Some(vec![format!("bench/c{}", i % 100)]),
            status: Some("active".into()),
            step: Some("count".into()),
            limit: 50,
            ..Default::default()
        };
        let t = Instant::now();
        let page = engine.list(&f).await.map_err(|e| e.to_string())?;
        list.push(t.elapsed().as_secs_f64() * 1000.0);
        if page.len() != 50 {
            return Err(format!("a page held {} cases", page.len()));
        }
    }
    let mut read = Vec::new();
    for i in 0..200 {
        let id = deadlines + 1 + (i * 4_999) % (instances - deadlines);
        let t = Instant::now();
        let row = engine.get(id).await.map_err(|e| e.to_string())?;
        let history = engine.history(id).await.map_err(|e| e.to_string())?;
        read.push(t.elapsed().as_secs_f64() * 1000.0);
        if history.len() < 10 || row.id != id {
            return Err(format!("case {id} has {} events", history.len()));
        }
    }
    // 5. The statistics of one street (all 100 communities) for last month.
    let zone = yishi_core::calendar::Zone::default();
    let last = yishi_engine::service::stats::Month::of(chrono::Utc::now().timestamp_millis() - 31 * 86_400_000, zone)
        .ok_or("no month")?;
    let mut stats = Vec::new();
    let mut raised = 0;
    for _ in 0..50 {
        let t = Instant::now();
        let r = engine.stats("bench", last, last, zone).await.map_err(|e| e.to_string())?;
        stats.push(t.elapsed().as_secs_f64() * 1000.0);
        raised = r.totals[0].counts.raised;
    }
    stats.sort_by(f64::total_cmp);
    line("scale_stats_street_month_cases", raised as f64, "cases");
    line("scale_stats_street_month_p50", percentile(&stats, 0.5), "ms");
    line("scale_stats_street_month_p99", percentile(&stats, 0.99), "ms");
    list.sort_by(f64::total_cmp);
    read.sort_by(f64::total_cmp);
    line("scale_list_active_one_community_p50", percentile(&list, 0.5), "ms");
    line("scale_list_active_one_community_p99", percentile(&list, 0.99), "ms");
    line("scale_read_instance_with_history_p50", percentile(&read, 0.5), "ms");
    line("scale_read_instance_with_history_p99", percentile(&read, 0.99), "ms");
    line("scale_peak_rss", peak_rss_mb(), "MB");
    Ok(())
}
