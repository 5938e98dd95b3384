//! Backup and restore as an operator runs them: a consistent copy of a live database, checked
//! and counted; a restore refused while a server holds the database, done once it has stopped.

mod common;

use std::path::Path;
use std::process::Command;

fn yishi(dir: &Path, args: &[&str]) -> (bool, String) {
    let out =
        Command::new(env!("CARGO_BIN_EXE_yishi")).args(args).args(["--lang", "en"]).current_dir(dir).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn a_live_database_is_copied_checked_and_restored_only_when_no_server_holds_it() {
    let tmp = tempfile::tempdir().unwrap();
    common::copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows"), &tmp.path().join("workflows"));
    let server = common::Server::start(tmp.path(), None).await;
    for _ in 0..2 {
        let body = serde_json::json!({"workflow": "chengguan/tianshuinanlu/garden"});
        assert_eq!(server.call("POST", "/api/v1/instances", Some(body)).await.0, 201);
    }
    let (ok, out) = yishi(tmp.path(), &["backup", "--to", "copy.db"]);
    assert!(ok && out.contains("2 cases"), "{out}");
    let (ok, out) = yishi(tmp.path(), &["backup", "--to", "copy.db"]);
    assert!(!ok && out.contains("already exists"), "{out}");

    // A third case after the backup: the restore will take it away again.
    let body = serde_json::json!({"workflow": "chengguan/tianshuinanlu/garden"});
    assert_eq!(server.call("POST", "/api/v1/instances", Some(body)).await.0, 201);
    let (ok, out) = yishi(tmp.path(), &["restore", "--from", "copy.db"]);
    assert!(!ok && out.contains("another yishi server"), "{out}");
    server.kill();

    let (ok, out) = yishi(tmp.path(), &["restore", "--from", "copy.db"]);
    assert!(ok, "{out}");
    let (ok, out) = yishi(tmp.path(), &["backup", "--to", "again.db"]);
    assert!(ok && out.contains("2 cases"), "the restored database is the backup: {out}");
    let (ok, out) = yishi(tmp.path(), &["restore", "--from", "not-there.db"]);
    assert!(!ok && out.contains("not-there.db"), "{out}");
}
