//! Operating Yishi as a service: `/metrics` passes `promtool check metrics` and carries the
//! families an operator graphs, and every query of the shipped Grafana dashboard names a metric
//! the server exports.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::Server;
use serde_json::{Value, json};

const GARDEN: &str = "chengguan/tianshuinanlu/garden";

/// A server on a copy of the shipped workflows, with one case started and acted on so that
/// the labelled families have series.
async fn busy_server() -> (Server, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    common::copy_dir(Path::new("workflows"), &tmp.path().join("workflows"));
    let server = Server::start(tmp.path(), None).await;
    let (s, case) = server
        .call("POST", "/api/v1/instances", Some(json!({ "workflow": GARDEN, "data": { "title": "修补花坛" } })))
        .await;
    assert_eq!(s, 201, "{case}");
    // A refused action counts too.
    let id = case["id"].as_i64().unwrap();
    let (s, _) =
        server.call("POST", &format!("/api/v1/instances/{id}/actions"), Some(json!({ "action": "nope" }))).await;
    assert!((400..500).contains(&s));
    (server, tmp)
}

async fn scrape(server: &Server) -> String {
    let client = reqwest::Client::new();
    let resp = client.get(format!("{}/metrics", server.base)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let kind = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(kind.starts_with("text/plain"), "{kind}");
    resp.text().await.unwrap()
}

/// Metric families with their TYPE, from the text format.
fn families(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let mut it = l.split_whitespace();
            (it.next().unwrap().to_owned(), it.next().unwrap().to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_pass_promtool_and_carry_what_an_operator_graphs() {
    let (server, _tmp) = busy_server().await;
    let text = scrape(&server).await;

    // Every family has HELP and TYPE.
    let fams = families(&text);
    for (name, _) in &fams {
        assert!(text.contains(&format!("# HELP {name} ")), "no HELP for {name}");
    }
    let kind = |n: &str| fams.iter().find(|(f, _)| f == n).map(|(_, k)| k.as_str());
    assert_eq!(kind("yishi_http_request_duration_seconds"), Some("histogram"));
    assert_eq!(kind("yishi_transition_duration_seconds"), Some("histogram"));
    assert_eq!(kind("yishi_db_commit_duration_seconds"), Some("histogram"));
    assert_eq!(kind("yishi_transitions_total"), Some("counter"));
    assert_eq!(kind("yishi_active_cases"), Some("gauge"));
    for family in [
        "yishi_timers_pending",
        "yishi_timers_overdue",
        "yishi_outbox_pending",
        "yishi_outbox_dead",
        "yishi_workflows_active",
        "yishi_build_info",
        "yishi_reloads_total",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(kind(family).is_some(), "{family} is missing from:\n{text}");
    }
    // Requests by route template and status class, never by raw path.
    assert!(
        text.contains(r#"yishi_http_requests_total{method="POST",route="/api/v1/instances",status="2xx"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"route="/api/v1/instances/{id}/actions",status="4xx""#), "{text}");
    // The case started is active at its first step; the transition is counted by step kind.
    assert!(text.contains(&format!(r#"yishi_active_cases{{workflow="{GARDEN}",step="#)), "{text}");
    assert!(text.contains(&format!(r#"yishi_transitions_total{{workflow="{GARDEN}",kind="#)), "{text}");
    assert!(text.contains(&format!(r#"yishi_build_info{{version="{}"}} 1"#, env!("CARGO_PKG_VERSION"))), "{text}");
    assert!(text.contains("yishi_workflows_active "), "{text}");

    // promtool, Prometheus's own linter, accepts the page.
    let Some(promtool) = tool("promtool") else { return };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn active_cases_fall_when_a_case_closes() {
    let (server, _tmp) = busy_server().await;
    let before = scrape(&server).await;
    let line = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with(&format!(r#"yishi_active_cases{{workflow="{GARDEN}""#)))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum::<f64>()
    };
    assert_eq!(line(&before), 1.0, "{before}");
    let (s, list) = server.call("GET", "/api/v1/instances", None).await;
    assert_eq!(s, 200);
    let id = list["items"][0]["id"].as_i64().unwrap();
    let (s, v) =
        server.call("POST", &format!("/api/v1/instances/{id}/cancel"), Some(json!({ "reason": "重复登记" }))).await;
    assert_eq!(s, 200, "{v}");
    let after = scrape(&server).await;
    assert_eq!(line(&after), 0.0, "{after}");
}

/// Metric names a PromQL expression refers to (identifiers followed by `{`, `[` or `)` that
/// are not functions or keywords).
fn metric_names(expr: &str) -> BTreeSet<String> {
    const WORDS: &[&str] = &[
        "sum",
        "max",
        "min",
        "avg",
        "count",
        "rate",
        "irate",
        "increase",
        "histogram_quantile",
        "by",
        "without",
        "on",
        "and",
        "or",
        "unless",
        "topk",
        "bottomk",
        "label_values",
        "le",
        "ignoring",
        "group_left",
        "offset",
        "clamp_min",
        "clamp_max",
        "time",
        "vector",
        "delta",
        "deriv",
        "abs",
    ];
    let mut names = BTreeSet::new();
    let mut chars = expr.char_indices().peekable();
    let bytes = expr.as_bytes();
    while let Some((i, c)) = chars.next() {
        if c == '"' {
            // Skip a string literal.
            for (_, d) in chars.by_ref() {
                if d == '"' {
                    break;
                }
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            let mut end = i + 1;
            while let Some(&(j, d)) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '_' || d == ':' {
                    end = j + 1;
                    chars.next();
                } else {
                    break;
                }
            }
            let word = &expr[start..end];
            let prev = expr[..start].trim_end().chars().last();
            let next = expr[end..].trim_start().chars().next();
            let is_label = matches!(prev, Some('{') | Some(',')) && matches!(next, Some('=') | Some('!') | Some('~'));
            let in_by = expr[..start].trim_end().ends_with('(') && {
                let before = expr[..start].trim_end().trim_end_matches('(').trim_end();
                before.ends_with("by") || before.ends_with("without") || before.ends_with("on")
            };
            let grouping = in_by || (prev == Some(',') && !is_label && next != Some('{') && next != Some('['));
            if !WORDS.contains(&word) && !word.starts_with('$') && !is_label && !grouping && bytes[start] != b'$' {
                let prev_dollar = start > 0 && bytes[start - 1] == b'$';
                if !prev_dollar && (word.starts_with("yishi_") || word.starts_with("process_")) {
                    names.insert(word.to_owned());
                }
            }
        }
    }
    names
}

fn dashboard_queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    ("query", Value::String(s)) if s.contains('(') => out.push(s.clone()),
                    ("definition", Value::String(s)) => out.push(s.clone()),
                    _ => dashboard_queries(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| dashboard_queries(x, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_query_names_an_exported_metric() {
    let dash: Value = serde_json::from_str(&std::fs::read_to_string("deploy/grafana/yishi.json").unwrap()).unwrap();
    let mut queries = Vec::new();
    dashboard_queries(&dash, &mut queries);
    assert!(queries.len() >= 10, "the dashboard has queries: {queries:?}");

    let (server, _tmp) = busy_server().await;
    let text = scrape(&server).await;
    let mut exported: BTreeSet<String> = families(&text).into_iter().map(|(n, _)| n).collect();
    for (name, kind) in families(&text) {
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                exported.insert(format!("{name}{suffix}"));
            }
        }
    }
    let mut used = BTreeSet::new();
    for q in &queries {
        let names = metric_names(q);
        assert!(!names.is_empty(), "no metric in query {q}");
        for n in names {
            assert!(exported.contains(&n), "the dashboard asks for `{n}` ({q}), which the server does not export");
            used.insert(n);
        }
    }
    assert!(used.len() >= 15, "the dashboard covers the families: {used:?}");
}

/// An outside tool: its path, or `None` with a note when it is missing on a developer's machine.
/// In CI (`CI` set) a missing tool is a failure: `.ci/run` installs it.
fn tool(name: &str) -> Option<&'static str> {
    let path: &'static str = Box::leak(format!("/usr/bin/{name}").into_boxed_str());
    if Path::new(path).exists() {
        return Some(path);
    }
    assert!(std::env::var_os("CI").is_none(), "{name} is missing; .ci/run installs it (Debian package `prometheus`)");
    eprintln!("SKIPPED: {name} is not installed (apt-get install prometheus); the check against it did not run");
    None
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le, route) (rate(yishi_http_request_duration_seconds_bucket{status=~"5xx"}[$__rate_interval])))"#,
    );
    assert_eq!(names, BTreeSet::from(["yishi_http_request_duration_seconds_bucket".to_owned()]));
    let names = metric_names("max(yishi_timers_overdue) and on (instance, job) yishi_build_info");
    assert_eq!(names, BTreeSet::from(["yishi_timers_overdue".to_owned(), "yishi_build_info".to_owned()]));
    let _ = Duration::ZERO;
}

fn yishi(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_yishi"));
    cmd.args(args).current_dir(dir).env("YISHI_LANG", "en");
    for var in
        ["YISHI_CONFIG", "YISHI_DB", "YISHI_LISTEN", "YISHI_SYNC", "YISHI_WORKFLOWS", "YISHI_WEBHOOK_SIGNING_SECRET"]
    {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn a_configuration_file_fills_what_flags_and_environment_leave_and_hides_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("etc")).unwrap();
    std::fs::write(
        tmp.path().join("etc/yishi.toml"),
        "db = \"data/yishi.db\"\nlisten = \"0.0.0.0:9000\"\nsync = \"normal\"\nwatch = false\n\
         [webhooks]\nsigning_secret = \"hunter2\"\ntimeout = 20\n[webhooks.robot_secrets]\njiedao = \"SECxyz\"\n",
    )
    .unwrap();
    let out = yishi(tmp.path(), &["serve", "--config", "etc/yishi.toml", "--print-config"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown: toml::Table = toml::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(shown["db"].as_str(), Some("etc/data/yishi.db"), "relative to the file");
    assert_eq!(shown["listen"].as_str(), Some("0.0.0.0:9000"));
    assert_eq!(shown["sync"].as_str(), Some("normal"));
    assert_eq!(shown["watch"].as_bool(), Some(false));
    assert_eq!(shown["tz"].as_str(), Some("Asia/Shanghai"), "defaults shown too");
    assert_eq!(shown["webhooks"]["timeout"].as_integer(), Some(20));
    let text = toml::to_string(&shown).unwrap();
    assert!(!text.contains("hunter2") && !text.contains("SECxyz"), "secrets are masked: {text}");
    assert_eq!(shown["webhooks"]["robot_secrets"]["jiedao"].as_str(), Some("********"));

    // The environment overrides the file; a flag overrides both.
    let out = yishi(
        tmp.path(),
        &["serve", "--print-config", "--sync", "full"],
        &[("YISHI_CONFIG", "etc/yishi.toml"), ("YISHI_LISTEN", "127.0.0.1:7000"), ("YISHI_SYNC", "normal")],
    );
    let shown: toml::Table = toml::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(shown["listen"].as_str(), Some("127.0.0.1:7000"));
    assert_eq!(shown["sync"].as_str(), Some("full"));
    assert_eq!(shown["db"].as_str(), Some("etc/data/yishi.db"));
}

#[test]
fn unknown_or_wrong_configuration_keys_are_errors_that_say_what_was_meant() {
    let tmp = tempfile::tempdir().unwrap();
    for (text, expect) in [
        (
            "lisen = \"0.0.0.0:80\"\n",
            "unknown key `lisen` in the configuration file yishi.toml; did you mean `listen`?",
        ),
        ("[webhooks]\ntimeuot = 3\n", "did you mean `webhooks.timeout`?"),
        ("sync = \"fast\"\n", "unknown variant `fast`"),
        ("db = \n", "not valid TOML"),
    ] {
        std::fs::write(tmp.path().join("yishi.toml"), text).unwrap();
        let out = yishi(tmp.path(), &["serve", "--config", "yishi.toml"], &[]);
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(expect), "{text} gave {err}");
        assert!(!tmp.path().join("yishi.db").exists(), "nothing was created");
    }
    // In Chinese by default.
    std::fs::write(tmp.path().join("yishi.toml"), "lisen = 1\n").unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_yishi"));
    let out = cmd
        .args(["serve", "--config", "yishi.toml"])
        .current_dir(tmp.path())
        .env("YISHI_LANG", "zh-CN")
        .output()
        .unwrap();
    assert!(String::from_utf8(out.stderr).unwrap().contains("你是不是想写 `listen`"));
}

#[tokio::test]
async fn ready_only_with_a_database_and_an_active_workflow() {
    let empty = tempfile::tempdir().unwrap();
    let (api, _) = common::api::Api::loading(empty.path()).await;
    assert_eq!(api.call("GET", "/healthz", None, None).await.0, axum::http::StatusCode::OK, "alive");
    let (status, body) = api.call("GET", "/readyz", None, None).await;
    assert_eq!(status, axum::http::StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let api = common::api::Api::new().await;
    assert_eq!(api.call("GET", "/readyz", None, None).await.0, axum::http::StatusCode::OK);
}

#[test]
fn commands_on_a_database_refuse_to_create_one_and_say_where_they_looked() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [
        &["token", "list"][..],
        &["versions"],
        &["outbox", "dead"],
        &["archive", "--closed-before", "2026-01-01", "--dry-run"],
        &["backup", "--to", "copy.db"],
        &["import", "--workflow", "x/y", "--from", "none.jsonl"],
    ] {
        let out = yishi(tmp.path(), args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        if args[0] != "import" {
            assert!(err.contains(&tmp.path().join("yishi.db").display().to_string()), "{args:?} names the path: {err}");
        }
        assert!(!tmp.path().join("yishi.db").exists(), "{args:?} created a database");
    }
}
