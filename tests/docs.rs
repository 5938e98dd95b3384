//! The walkthroughs run as written: every ```sh block of `docs/api.md`, the README's tour and
//! the Chinese tour (`docs/zh/教程.md`) is run, in order, by bash against a fresh server on a
//! copy of the shipped workflows, and every `# => ...` line under a command is checked
//! against what that command's last HTTP request answered.
//!
//! An expectation is `# => STATUS`, `# => STATUS {json}` (the answer contains this JSON: every
//! key given, with the value given; arrays whole) or `# => STATUS text: words` (the answer's
//! text contains the words); `"…"` stands for any value. Inside the blocks, `cargo run --release --` runs the yishi built
//! for the tests, `http://127.0.0.1:8080` is the fresh server, `$TOKEN` its first admin token;
//! the line that starts the server and the one that exports the token are the harness's job.
//! Blocks marked `shell` instead of `sh` are shown, not run (the README's `cargo test`).

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// One `# =>` line: where it is, and what it expects.
struct Expectation {
    line: usize,
    status: u16,
    body: Option<Body>,
}

enum Body {
    Json(Value),
    Text(String),
}

/// The doc's blocks as one bash script, and the expectations it will check.
fn script(doc: &str, base: &str) -> (String, Vec<Expectation>) {
    let mut out = String::new();
    let mut expectations = Vec::new();
    let mut in_block = false;
    for (n, line) in doc.lines().enumerate() {
        let trimmed = line.trim();
        if !in_block {
            in_block = trimmed == "```sh";
            continue;
        }
        if trimmed == "```" {
            in_block = false;
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("# => ") {
            let (status, body) = rest.split_once(' ').unwrap_or((rest, ""));
            let status: u16 = status.parse().unwrap_or_else(|_| panic!("line {}: `# => STATUS ...`", n + 1));
            let body = if body.is_empty() {
                None
            } else if let Some(words) = body.strip_prefix("text: ") {
                Some(Body::Text(words.to_owned()))
            } else {
                Some(Body::Json(
                    serde_json::from_str(body).unwrap_or_else(|e| panic!("line {}: the expected JSON: {e}", n + 1)),
                ))
            };
            out.push_str(&format!("__expect {}\n", expectations.len()));
            expectations.push(Expectation { line: n + 1, status, body });
            continue;
        }
        if trimmed.starts_with("cargo run --release -- serve") || trimmed.starts_with("export TOKEN=") {
            continue; // the harness started the server and knows its token
        }
        out.push_str(&line.replace("cargo run --release --", "\"$YISHI_BIN\"").replace("http://127.0.0.1:8080", base));
        out.push('\n');
    }
    (out, expectations)
}

const PRELUDE: &str = r#"set -eo pipefail
# Every curl keeps its last answer (status and body) for the `# =>` checks, and prints the body.
curl() {
  command curl -sS -o "$CHECKS/last.body" -w '%{http_code}' "$@" > "$CHECKS/last.status"
  cat "$CHECKS/last.body"
  echo
}
__expect() {
  cp "$CHECKS/last.status" "$CHECKS/$1.status"
  cp "$CHECKS/last.body" "$CHECKS/$1.body"
}
"#;

/// Whether `got` has everything `want` has.
fn contains(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => w.iter().all(|(k, v)| g.get(k).is_some_and(|x| contains(x, v))),
        (Value::Array(g), Value::Array(w)) => g.len() == w.len() && g.iter().zip(w).all(|(x, y)| contains(x, y)),
        (_, Value::String(s)) if s == "…" => true,
        _ => got == want,
    }
}

/// Where the fresh server keeps its cases.
enum Backend {
    /// The embedded default: a SQLite file in the server's folder.
    Sqlite,
    /// A database of the test's own on the PostgreSQL test server; the doc's commands get it
    /// through `YISHI_DB`, as a deployment's would.
    Postgres,
}

async fn run_doc(doc_path: &str, lang: &str, backend: Backend) {
    if Command::new("curl").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI must have curl (the docs use it)");
        eprintln!("SKIPPED: {doc_path} needs curl, which this machine lacks");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join(doc_path)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    common::copy_dir(&root.join("workflows"), &tmp.path().join("workflows"));
    let checks = tmp.path().join("checks");
    std::fs::create_dir(&checks).unwrap();
    let pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => match common::backends::PgDatabase::create(&format!("docs_{lang}")).await {
            Some(db) => Some(db),
            None => return,
        },
    };
    let mut args = vec!["--lang", lang];
    if let Some(db) = &pg {
        args.extend(["--db", db.url.as_str()]);
    }
    let server = common::Server::start_with(tmp.path(), None, &args).await;
    let (body, expectations) = script(&doc, &server.base);
    assert!(!expectations.is_empty(), "{doc_path} checks something");
    std::fs::write(tmp.path().join("doc.sh"), format!("{PRELUDE}{body}")).unwrap();
    // The server is another process: blocking here while bash runs is fine.
    let out = Command::new("bash")
        .arg("doc.sh")
        .current_dir(tmp.path())
        .env("TOKEN", &server.token)
        .env("YISHI_BIN", env!("CARGO_BIN_EXE_yishi"))
        .env("CHECKS", &checks)
        .env("NO_COLOR", "1")
        .env_remove("YISHI_LANG")
        .env_remove("YISHI_DB")
        .envs(pg.as_ref().map(|db| ("YISHI_DB", db.url.as_str())))
        .env_remove("YISHI_WORKFLOWS")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{doc_path}: the commands failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    let mut failures = Vec::new();
    for (i, e) in expectations.iter().enumerate() {
        let status: u16 = std::fs::read_to_string(checks.join(format!("{i}.status"))).unwrap().trim().parse().unwrap();
        let text = std::fs::read_to_string(checks.join(format!("{i}.body"))).unwrap();
        let ok = status == e.status
            && match &e.body {
                None => true,
                Some(Body::Text(words)) => text.contains(words.as_str()),
                Some(Body::Json(want)) => serde_json::from_str(&text).is_ok_and(|got: Value| contains(&got, want)),
            };
        if !ok {
            let shown: String = text.chars().take(800).collect();
            failures.push(format!("{doc_path}:{}: got {status} {shown}", e.line));
        }
    }
    assert!(failures.is_empty(), "the docs say otherwise:\n{}", failures.join("\n"));
    drop(server);
    if let Some(db) = pg {
        db.drop_now().await;
    }
}

#[tokio::test]
async fn the_api_walkthrough_runs_as_written() {
    run_doc("docs/api.md", "en", Backend::Sqlite).await;
}

/// The same walkthrough on PostgreSQL, CLI commands included: the answers are the same.
#[tokio::test]
async fn the_api_walkthrough_runs_as_written_on_postgres() {
    run_doc("docs/api.md", "en", Backend::Postgres).await;
}

#[tokio::test]
async fn the_readme_tour_runs_as_written() {
    run_doc("README.md", "en", Backend::Sqlite).await;
}

#[tokio::test]
async fn the_chinese_tour_runs_as_written() {
    run_doc("docs/zh/教程.md", "zh-CN", Backend::Sqlite).await;
}

#[test]
fn the_harness_checks_what_it_says() {
    let doc = "text\n```sh\ncurl -s http://127.0.0.1:8080/x\n# => 200 {\"a\": 1}\ncargo run --release -- serve\ncargo run --release -- check\n```\n";
    let (s, e) = script(doc, "http://h:1");
    assert_eq!(s, "curl -s http://h:1/x\n__expect 0\n\"$YISHI_BIN\" check\n");
    assert_eq!((e[0].line, e[0].status), (4, 200));
    let j = |s: &str| serde_json::from_str::<Value>(s).unwrap();
    assert!(contains(&j(r#"{"a": 1, "b": [1, {"c": 2, "d": 3}]}"#), &j(r#"{"b": [1, {"c": 2}]}"#)));
    assert!(!contains(&j(r#"{"b": [1, 2]}"#), &j(r#"{"b": [1]}"#)));
    assert!(!contains(&j(r#"{"a": 1}"#), &j(r#"{"a": 2}"#)));
    assert!(contains(&j(r#"{"a": [1, 2]}"#), &j(r#"{"a": "…"}"#)));
    assert!(!contains(&j(r#"{"b": 1}"#), &j(r#"{"a": "…"}"#)));
}
