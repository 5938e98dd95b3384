//! A broken save never takes away what runs: a workflow file saved in the wrong encoding, an
//! unknown key at the top of a file, a copy of a file with the same id: each is reported, and
//! the version that ran before keeps running.

mod common;

use yishi_core::FileSet;

const W: &str = "id = \"garden\"\n[[steps]]\nid = \"raise\"\nkind = \"task\"\nroles = [\"*\"]\nactions.go = {}\nnext = \"end\"\n[[steps]]\nid = \"end\"\nkind = \"end\"\n";

async fn reload(engine: &yishi_engine::service::Engine, dir: &std::path::Path) -> yishi_engine::service::ReloadStatus {
    engine.activate_files(&FileSet::load_dir(dir).unwrap(), "save").await.unwrap()
}

#[tokio::test]
async fn broken_saves_keep_the_running_version() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("u")).unwrap();
    std::fs::write(dir.path().join("u/garden.toml"), W).unwrap();
    let (engine, _) = common::quiet_engine().await;
    assert!(reload(&engine, dir.path()).await.ok);
    let running = engine.active().current["u/garden"].0.seq;

    // Saved as GBK (Notepad's "ANSI"): the file cannot be read as UTF-8.
    let gbk: Vec<u8> = [W.as_bytes(), b"# \xd6\xd0\xce\xc4\n"].concat();
    std::fs::write(dir.path().join("u/garden.toml"), gbk).unwrap();
    let s = reload(&engine, dir.path()).await;
    assert!(!s.ok && s.removed.is_empty(), "{s:?}");
    assert_eq!(engine.active().current["u/garden"].0.seq, running);

    // An unknown key at the top (a typo of `title`): an error, and the edit does not run.
    std::fs::write(dir.path().join("u/garden.toml"), format!("titel = \"花园\"\n{W}")).unwrap();
    let s = reload(&engine, dir.path()).await;
    assert!(!s.ok && s.activated.is_empty(), "{s:?}");
    assert_eq!(engine.active().current["u/garden"].0.seq, running);

    // A copy with the same id beside the original: neither is guessed at.
    std::fs::write(dir.path().join("u/garden.toml"), W).unwrap();
    std::fs::write(dir.path().join("u/garden - 副本.toml"), W.replace("go = {}", "went = {}")).unwrap();
    let s = reload(&engine, dir.path()).await;
    assert!(!s.ok && s.activated.is_empty() && s.removed.is_empty(), "{s:?}");
    assert!(s.diagnostics.iter().any(|d| d.code.as_str() == "Y0104"), "{s:?}");
    assert_eq!(engine.active().current["u/garden"].0.seq, running);

    // The copy removed, the original runs on, unchanged.
    std::fs::remove_file(dir.path().join("u/garden - 副本.toml")).unwrap();
    let s = reload(&engine, dir.path()).await;
    assert!(s.ok, "{s:?}");
    assert_eq!(engine.active().current["u/garden"].0.seq, running);
}
