//! Real clients generated from the served OpenAPI document work: openapi-python-client
//! generates a Python client that drives a whole case (start, act, read with history),
//! openapi-typescript generates types that a strict TypeScript check accepts, and the
//! schemathesis fuzzer finds no server error and no answer the document does not describe.
//!
//! The tools come from PyPI and npm (`tools/clients/setup.sh`, which CI runs). Without them
//! these tests say they skip; under CI (`CI` set) they fail instead.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn tools() -> Option<PathBuf> {
    let dir = std::env::var_os("YISHI_TOOLS")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools"), PathBuf::from);
    let ready = dir.join("venv/bin/schemathesis").exists() && dir.join("node/node_modules/.bin/tsc").exists();
    if ready {
        return Some(dir);
    }
    assert!(std::env::var_os("CI").is_none(), "CI must run tools/clients/setup.sh first");
    eprintln!("SKIPPED: no client tools in {} (run tools/clients/setup.sh)", dir.display());
    None
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// A fresh server on a copy of the shipped workflows, and the document it serves.
async fn server() -> (tempfile::TempDir, common::Server, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    common::copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows"), &tmp.path().join("workflows"));
    let server = common::Server::start_with(tmp.path(), None, &["--lang", "en"]).await;
    let (status, doc) = server.call("GET", "/api/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    let path = tmp.path().join("openapi.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    (tmp, server, path)
}

#[tokio::test]
async fn a_generated_python_client_drives_a_whole_case() {
    let Some(tools) = tools() else { return };
    let (tmp, server, doc) = server().await;
    let config = tmp.path().join("config.yml");
    std::fs::write(
        &config,
        "project_name_override: yishi-client\npackage_name_override: yishi_client\npost_hooks: []\n",
    )
    .unwrap();
    let generated = tmp.path().join("py");
    run(Command::new(tools.join("venv/bin/openapi-python-client"))
        .args(["generate", "--meta", "none", "--path"])
        .arg(&doc)
        .arg("--config")
        .arg(&config)
        .arg("--output-path")
        .arg(generated.join("yishi_client")));
    let drive = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/drive.py");
    let out = run(Command::new(tools.join("venv/bin/python"))
        .arg(drive)
        .arg(&generated)
        .arg(&server.base)
        .arg(&server.token));
    assert!(out.contains("ok: case 1"), "{out}");
}

#[tokio::test]
async fn generated_typescript_types_check() {
    let Some(tools) = tools() else { return };
    let (tmp, _server, doc) = server().await;
    let bin = tools.join("node/node_modules/.bin");
    run(Command::new(bin.join("openapi-typescript")).arg(&doc).arg("-o").arg(tmp.path().join("schema.d.ts")));
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/check.ts"), tmp.path().join("check.ts"))
        .unwrap();
    run(Command::new(bin.join("tsc"))
        .args(["--strict", "--noEmit", "--target", "es2020", "--module", "es2020", "check.ts"])
        .current_dir(tmp.path()));
}

#[tokio::test]
async fn the_fuzzer_finds_no_server_error_and_no_undocumented_answer() {
    let Some(tools) = tools() else { return };
    let (tmp, server, _) = server().await;
    let url = format!("{}/api/v1/openapi.json", server.base);
    // Every check but "a schema-valid request is accepted": some valid-looking requests are
    // rightly refused (a reused Idempotency-Key with another body, If-Match disagreeing with
    // expected_revision), which the document cannot express.
    let out = Command::new(tools.join("venv/bin/schemathesis"))
        .args(["run", &url, "--checks", "all", "--exclude-checks", "positive_data_acceptance"])
        .args(["--max-examples", "25", "--workers", "2", "--seed", "7", "--no-color"])
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", server.token))
        .current_dir(tmp.path())
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = text.lines().filter(|l| l.contains("generated") || l.contains("Failures")).collect();
    println!("schemathesis: {}", summary.join(" | "));
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
}
