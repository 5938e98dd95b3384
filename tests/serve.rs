//! End-to-end tests of the `yishi` binary: hot reload from the file system, deadlines across a
//! SIGKILL, graceful shutdown. Each test runs its own server on a free port in a temp folder,
//! and waits by polling with a deadline.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, TIMED, copy_dir, poll};
use serde_json::json;

/// Writes like an editor that saves through a temporary file and a rename.
fn save(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn hot_reload_activates_good_saves_and_keeps_the_last_good_version() {
    let tmp = tempfile::tempdir().unwrap();
    let wf = tmp.path().join("workflows");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows/chengguan"), &wf.join("chengguan"));
    let s = Server::start(tmp.path(), None).await;
    let key = "chengguan/tianshuinanlu/garden";
    let file = wf.join("chengguan/tianshuinanlu/garden.toml");
    let original = std::fs::read_to_string(&file).unwrap();
    let (st, case) = s.call("POST", "/api/v1/instances", Some(json!({"workflow": key}))).await;
    assert_eq!(st, 201, "{case}");
    let v1 = case["version"].as_i64().unwrap();
    let versions = async |s: &Server| {
        s.call("GET", &format!("/api/v1/workflows/{key}/versions"), None).await.1["items"].as_array().unwrap().len()
    };
    let generation = async |s: &Server| s.call("GET", "/api/v1/reload", None).await.1["generation"].as_i64().unwrap();

    // A good save becomes version 2; the running case stays on version 1.
    let g0 = generation(&s).await;
    save(&file, &original.replace("value = 10", "value = 12"));
    poll("version 2", Duration::from_secs(30), async || (versions(&s).await == 2).then_some(())).await;
    let (_, one) = s.call("GET", &format!("/api/v1/instances/{}", case["id"]), None).await;
    assert_eq!(one["instance"]["version"].as_i64(), Some(v1));
    let (_, diff) = s.call("GET", &format!("/api/v1/workflows/{key}/diff?from=1&to=2"), None).await;
    assert_eq!(diff["changes"][0]["text"], "param `min_attendance` changed from 10 to 12", "{diff}");

    // A broken save (truncate, then write) changes nothing that runs; the diagnostics are reported.
    let g1 = poll("the reload", Duration::from_secs(30), async || {
        let g = generation(&s).await;
        (g > g0).then_some(g)
    })
    .await;
    std::fs::write(&file, "").unwrap();
    std::fs::write(&file, original.replace("kind = \"vote\"", "kind = \"vot\"")).unwrap();
    let status = poll("a failed reload", Duration::from_secs(30), async || {
        let (_, r) = s.call("GET", "/api/v1/reload", None).await;
        (r["generation"].as_i64().unwrap() > g1 && r["last"]["ok"] == false).then_some(r)
    })
    .await;
    let d = &status["diagnostics"][0];
    assert_eq!(
        (d["code"].as_str(), d["file"].as_str()),
        (Some("Y0105"), Some("chengguan/tianshuinanlu/garden.toml")),
        "{status}"
    );
    assert!(d["line"].as_u64().unwrap() > 0);
    assert_eq!(versions(&s).await, 2);
    let (st, _) = s.call("POST", "/api/v1/instances", Some(json!({"workflow": key}))).await;
    assert_eq!(st, 201, "the last good version still starts cases");

    // A save whose scenario fails (the 25-person meeting would not reach 30) is not activated.
    save(&file, &original.replace("value = 10", "value = 30"));
    let status = poll("the scenario gate", Duration::from_secs(30), async || {
        let (_, r) = s.call("GET", "/api/v1/reload", None).await;
        (r["last"]["scenarios_failed"].as_i64() == Some(1)).then_some(r)
    })
    .await;
    assert!(status["diagnostics"].as_array().unwrap().iter().any(|d| d["code"] == "Y0601"), "{status}");
    assert_eq!(versions(&s).await, 2);

    // Fixing it activates version 3.
    save(&file, &original.replace("value = 10", "value = 11"));
    poll("version 3", Duration::from_secs(30), async || (versions(&s).await == 3).then_some(())).await;

    // Deleting the file does not orphan running cases.
    std::fs::remove_file(&file).unwrap();
    poll("the removal", Duration::from_secs(30), async || {
        let (_, w) = s.call("GET", "/api/v1/workflows", None).await;
        (!w["items"].as_array().unwrap().iter().any(|i| i["key"] == key)).then_some(())
    })
    .await;
    let (st, v) = s.call("POST", &format!("/api/v1/instances/{}/actions", case["id"]), Some(json!({"action": "submit", "payload": {"title": "garden", "channel": "visit"}, "on_behalf_of": {"id": "res-1", "roles": ["resident"]}}))).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["active_steps"], json!(["small_stool"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn deadlines_that_pass_while_the_server_is_down_fire_once_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("workflows/t")).unwrap();
    std::fs::write(tmp.path().join("workflows/t/timed.toml"), TIMED).unwrap();
    let s = Server::start(tmp.path(), None).await;
    let token = s.token.clone();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (st, c) = s.call("POST", "/api/v1/instances", Some(json!({"workflow": "t/timed"}))).await;
        assert_eq!(st, 201);
        ids.push(c["id"].as_i64().unwrap());
    }
    let started = Instant::now();
    let dir = s.kill();
    poll("the deadline to pass while the server is down", Duration::from_secs(10), async || {
        (started.elapsed() > Duration::from_millis(1500)).then_some(())
    })
    .await;
    let s = Server::start(&dir, Some(token)).await;
    for id in &ids {
        let case = poll("the late deadline to fire", Duration::from_secs(20), async || {
            let (_, c) = s.call("GET", &format!("/api/v1/instances/{id}"), None).await;
            (c["instance"]["status"] == "completed").then_some(c)
        })
        .await;
        assert_eq!(case["instance"]["outcome"], "expired");
        let fired = case["history"].as_array().unwrap().iter().filter(|e| e["type"] == "timer_fired").count();
        assert_eq!(fired, 1, "fires exactly once");
        assert!(case["timers"].as_array().unwrap().is_empty());
    }
    let (_, versions) = s.call("GET", "/api/v1/workflows/t/timed/versions", None).await;
    assert_eq!(versions["items"].as_array().unwrap().len(), 1, "a restart makes no new version: {versions}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_files_copied_in() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("workflows/t")).unwrap();
    std::fs::write(tmp.path().join("workflows/t/timed.toml"), TIMED).unwrap();
    let s = Server::start_with(tmp.path(), None, &["--no-watch"]).await;
    std::fs::write(tmp.path().join("workflows/t/second.toml"), TIMED.replace("id = \"timed\"", "id = \"second\""))
        .unwrap();
    assert_eq!(s.call("POST", "/api/v1/instances", Some(json!({"workflow": "t/second"}))).await.0, 404, "not watched");
    assert!(Command::new("kill").args(["-HUP", &s.child.id().to_string()]).status().unwrap().success());
    poll("the SIGHUP reload", Duration::from_secs(20), async || {
        (s.call("POST", "/api/v1/instances", Some(json!({"workflow": "t/second"}))).await.0 == 201).then_some(())
    })
    .await;
    let (_, r) = s.call("GET", "/api/v1/reload", None).await;
    assert_eq!(r["last"]["trigger"], "SIGHUP");
}

/// A token made with the CLI beside a running server works at once; one revoked with the CLI
/// is refused within the server's token bound (1 s), and one revoked through the server at once.
#[tokio::test(flavor = "multi_thread")]
async fn tokens_made_and_revoked_beside_a_running_server() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("workflows/t")).unwrap();
    std::fs::write(tmp.path().join("workflows/t/timed.toml"), TIMED).unwrap();
    let s = Server::start(tmp.path(), None).await;
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_yishi"))
            .args(args)
            .current_dir(tmp.path())
            .env("YISHI_LANG", "en")
            .output();
        let out = out.unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned() + &*String::from_utf8_lossy(&out.stderr)
    };
    let make = |name: &str| {
        let out = run(&["token", "create", "--name", name, "--role", "viewer"]);
        out.split_whitespace().find(|w| w.starts_with("yishi_")).unwrap().to_owned()
    };
    let whoami = async |secret: &str| common::http(&s.base, secret, "GET", "/api/v1/whoami", None).await.unwrap().0;
    let (zhao, qian) = (make("zhao"), make("qian"));
    assert_eq!((whoami(&zhao).await, whoami(&qian).await), (200, 200), "new tokens work at once");
    let listed = run(&["token", "list"]);
    let id = |name: &str| {
        listed.lines().find(|l| l.contains(name)).and_then(|l| l.split_whitespace().next()).unwrap().to_owned()
    };
    let said = run(&["token", "revoke", &id("zhao")]);
    assert!(said.contains("a running server refuses it within a second"), "{said}");
    let revoked = Instant::now();
    poll("the token revoked with the CLI refused", Duration::from_secs(30), async || {
        (whoami(&zhao).await == 401).then_some(())
    })
    .await;
    eprintln!("refused {} ms after `yishi token revoke`", revoked.elapsed().as_millis());
    let (st, _) = s.call("POST", &format!("/api/v1/tokens/{}/revoke", id("qian")), None).await;
    assert_eq!(st, 200);
    assert_eq!(whoami(&qian).await, 401, "revoked through the server: refused at once");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_server_gracefully() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("workflows/t")).unwrap();
    std::fs::write(tmp.path().join("workflows/t/timed.toml"), TIMED).unwrap();
    let mut s = Server::start(tmp.path(), None).await;
    assert_eq!(s.call("GET", "/api/v1/whoami", None).await.0, 200);
    let ok = Command::new("kill").args(["-TERM", &s.child.id().to_string()]).status().unwrap();
    assert!(ok.success());
    let status = poll("the server to exit", Duration::from_secs(20), async || s.child.try_wait().unwrap()).await;
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(tmp.path().join("out.log")).unwrap();
    assert!(log.contains("stopped"), "{log}");
    // Log times are in the deployment's zone (Asia/Shanghai unless --tz says otherwise).
    assert!(log.lines().all(|l| l.get(23..29) == Some("+08:00")), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_client_is_cut_off_and_others_are_served_meanwhile() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("workflows/t")).unwrap();
    std::fs::write(tmp.path().join("workflows/t/timed.toml"), TIMED).unwrap();
    let s = Server::start_with(tmp.path(), None, &["--header-timeout", "1"]).await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap(); // and never finishes
    assert_eq!(s.call("GET", "/api/v1/whoami", None).await.0, 200, "others are served meanwhile");
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the slow connection was not closed");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"), "the slow request was not served");
}

#[tokio::test]
async fn json_logs_carry_the_request_id_and_text_logs_in_a_file_have_no_colour() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("workflows/t")).unwrap();
    std::fs::write(tmp.path().join("workflows/t/timed.toml"), TIMED).unwrap();
    let s = common::Server::start_with(tmp.path(), None, &["--log-format", "json"]).await;
    // A reload asked for over HTTP logs its result inside the request's span.
    let (status, _) = s.call("POST", "/api/v1/reload", None).await;
    assert_eq!(status, 200);
    drop(s);
    let log = std::fs::read_to_string(tmp.path().join("out.log")).unwrap();
    let lines: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}"))).collect();
    assert!(
        lines.iter().any(|l| l["fields"]["message"].as_str().is_some_and(|m| m.starts_with("serving http://"))),
        "{log}"
    );
    assert!(lines.iter().all(|l| l["timestamp"].as_str().is_some_and(|t| t.ends_with("+08:00"))), "{log}");
    assert!(
        lines.iter().any(|l| l["span"]["request_id"].as_str().is_some_and(|id| id.len() >= 16)),
        "a line caused by a request names it: {log}"
    );

    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("workflows/t")).unwrap();
    std::fs::write(tmp.path().join("workflows/t/timed.toml"), TIMED).unwrap();
    let s = common::Server::start(tmp.path(), None).await;
    drop(s);
    let log = std::fs::read_to_string(tmp.path().join("out.log")).unwrap();
    assert!(!log.contains('\u{1b}'), "no colour codes in a file: {log}");
}
