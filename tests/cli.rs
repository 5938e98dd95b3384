//! The command line: `yishi check` exit codes and JSON output, `yishi test`.

use std::process::Command;

fn yishi(args: &[&str]) -> (i32, String, String) {
    yishi_env(args, &[("LANG", "en_US.UTF-8")])
}

fn yishi_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_yishi"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    for k in ["LANG", "LC_ALL", "LC_MESSAGES", "YISHI_LANG", "YISHI_WORKFLOWS", "NO_COLOR"] {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_exits_0_when_clean_1_on_problems_2_when_it_cannot_run() {
    let (code, out, _) = yishi(&["check", "workflows"]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = yishi(&["check", "tests/diagnostics/references"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error[Y0105]: no plugin provides step kind `tsak`\n  --> u/w.toml:11:8\n"), "{out}");
    assert!(out.contains("kind = \"tsak\"\n   |        ^^^^^^\n"), "a marker under the span: {out}");
    assert!(out.contains("hint: did you mean `task`?"), "{out}");
    assert!(!out.contains('\u{1b}'), "no colour codes when stdout is not a terminal");
    let (code, _, err) = yishi(&["check", "no/such/folder"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read no/such/folder"), "{err}");
}

#[test]
fn check_speaks_json_for_tools() {
    let (code, out, _) = yishi(&["check", "tests/diagnostics/params", "--format", "json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let d = &v["diagnostics"][0];
    assert_eq!(
        (d["code"].as_str(), d["file"].as_str(), d["line"].as_u64(), d["column"].as_u64()),
        (Some("Y0108"), Some("u/base.toml"), Some(6), Some(9))
    );
    assert!(d["message"].as_str().unwrap().contains("a share is a number between 0 and 1"));
    assert!(d["span"].is_array() && d["end_line"].as_u64() == Some(6), "snippet data for editors: {d}");
    let (_, out, _) = yishi(&["check", "tests/diagnostics/params", "--format", "json", "--lang", "zh-CN"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let d = &v["diagnostics"][0];
    assert_eq!(d["code"].as_str(), Some("Y0108"), "codes are the same in every language");
    assert!(d["message"].as_str().unwrap().contains("比例应是 0 到 1 之间的数"), "{d}");
}

#[test]
fn the_language_follows_the_flag_then_yishi_lang_then_the_locale() {
    let msg = |out: &str| out.lines().last().unwrap_or_default().to_owned();
    let en = "16 workflow(s) ok, 0 with errors; 0 error(s), 0 warning(s)";
    let zh = "16 个流程正常，0 个有错误；共 0 个错误、0 个警告";
    assert_eq!(msg(&yishi_env(&["check"], &[("LANG", "zh_CN.UTF-8")]).1), zh);
    assert_eq!(msg(&yishi_env(&["check"], &[("LANG", "zh_CN.UTF-8"), ("LC_ALL", "en_US.UTF-8")]).1), en);
    assert_eq!(msg(&yishi_env(&["check"], &[("LC_ALL", "en_US.UTF-8"), ("YISHI_LANG", "zh-CN")]).1), zh);
    assert_eq!(msg(&yishi_env(&["check", "--lang", "en"], &[("YISHI_LANG", "zh-CN")]).1), en);
    assert_eq!(msg(&yishi_env(&["check"], &[]).1), zh, "Chinese when nothing says");
    let (_, help, _) = yishi_env(&["check", "--help"], &[("LANG", "zh_CN.UTF-8")]);
    assert!(help.contains("用法："), "{help}");
}

#[test]
fn check_and_test_honour_yishi_workflows() {
    let (code, out, _) = yishi_env(&["check"], &[("YISHI_WORKFLOWS", "tests/diagnostics/references"), ("LANG", "C")]);
    assert_eq!(code, 1, "{out}");
    let (code, out, _) = yishi_env(&["test"], &[("YISHI_WORKFLOWS", "docs/patterns"), ("LANG", "C")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("17 passed, 0 failed"), "{out}");
}

#[test]
fn a_calendar_month_shows_its_holidays_and_make_up_days() {
    let (code, out, err) = yishi_env(&["calendar", "show", "2026-10"], &[("LANG", "zh_CN.UTF-8")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("国务院办公厅关于2026年部分节假日安排的通知"), "{out}");
    assert!(out.contains("2026-10-01 休息 国庆节"), "{out}");
    assert!(out.contains("2026-10-10 调休上班"), "{out}");
    assert!(out.contains("  1* ") && out.contains(" 10+"), "{out}");
    let (code, _, err) = yishi_env(&["calendar", "show", "2026-13"], &[("LANG", "C")]);
    assert_eq!(code, 2);
    assert!(err.contains("is not a month"), "{err}");
}

#[test]
fn test_runs_the_scenarios() {
    let (code, out, _) = yishi(&["test", "workflows"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.lines().last().unwrap().ends_with("passed, 0 failed"), "{out}");
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_yishi"))
        .arg("schema")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap(); // then the reader goes away
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(matches!(out.status.code(), Some(0 | 141)), "{:?}", out.status);
}

#[test]
fn bench_outside_the_repository_says_where_to_point_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_yishi"))
        .args(["bench", "reference", "--n", "1", "--lang", "en"])
        .current_dir(tmp.path())
        .env_remove("YISHI_WORKFLOWS")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("has no `bench/` folder") && err.contains("--workflows"), "{err}");
}

#[tokio::test]
async fn outbox_commands_list_and_need_an_id_or_all() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("y.db").display().to_string();
    let store = yishi_engine::store::open(&yishi_engine::store::StoreOptions::new(&db)).await.unwrap();
    yishi_engine::store::Store::close(&store).await;
    let (code, out, _) = yishi(&["outbox", "dead", "--db", &db, "--lang", "en"]);
    assert_eq!((code, out.trim()), (0, "no delivery has been given up on"));
    let (code, _, err) = yishi(&["outbox", "retry", "--db", &db, "--lang", "en"]);
    assert_eq!(code, 2, "{err}");
    let (code, out, _) = yishi(&["outbox", "discard", "--all", "--db", &db, "--lang", "en"]);
    assert_eq!((code, out.trim()), (0, "0 dropped"));
}
