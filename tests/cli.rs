//! The command line: `yishi check` exit codes and JSON output, `yishi test`.

use std::process::Command;

fn yishi(args: &[&str]) -> (i32, String, String) {
    let out =
        Command::new(env!("CARGO_BIN_EXE_yishi")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap();
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
    assert!(
        out.contains("u/w.toml:11:8: error[Y0105]: no plugin provides step kind `tsak`\n  hint: did you mean `task`?"),
        "{out}"
    );
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
