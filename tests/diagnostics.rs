//! The checker's specification: every folder under `tests/diagnostics/` is a small workflows
//! folder with deliberate mistakes, and `diagnostics.snap` beside it holds exactly what
//! `yishi check` must report for it: each diagnostic as a person sees it (code, file, line,
//! column, the source line with a marker under the span, labels, hint), in English, then the
//! same messages in Chinese.
//!
//! To accept a changed output after review: `INSTA_UPDATE=always cargo test --test diagnostics`.

use std::path::Path;
use std::sync::Arc;

use yishi::cli::report::{self, Style};
use yishi_core::i18n::Lang;
use yishi_core::script::Sandbox;
use yishi_core::{FileSet, check};

fn render(dir: &Path) -> String {
    let files = FileSet::load_dir(dir).expect("case folder");
    let catalog = check(&files, &yishi::registry(), &Arc::new(Sandbox::default()));
    let mut out = String::new();
    let style = Style { color: false, lang: Lang::En };
    for d in &catalog.diagnostics {
        out.push_str(&report::render(d, &files, &style));
        out.push_str("\n\n");
    }
    out.push_str("---- zh-CN ----\n");
    for d in &catalog.diagnostics {
        out.push_str(&d.render_line(Lang::ZhCn));
        out.push('\n');
    }
    out.push_str(&format!(
        "ok: {:?}\nfailed: {:?}\n",
        catalog.definitions.keys().collect::<Vec<_>>(),
        catalog.failed.keys().collect::<Vec<_>>()
    ));
    out
}

#[test]
fn each_broken_folder_reports_exactly_its_diagnostics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/diagnostics");
    let mut cases: Vec<_> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    cases.sort();
    assert!(cases.len() >= 15, "the specification has {} cases", cases.len());
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let output = render(&case);
        assert!(
            output.lines().any(|l| l.contains("error[")),
            "case `{name}` must report at least one error:\n{output}"
        );
        insta::with_settings!({ snapshot_path => case.clone(), prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!("diagnostics", output);
        });
    }
}

#[test]
fn symlinks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("u");
    std::fs::create_dir_all(unit.join("lists")).unwrap();
    std::fs::write(dir.path().join("outside.toml"), "[[categories]]\nid = \"x\"\n").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir.path().join("outside.toml"), unit.join("lists/enc.toml")).unwrap();
    std::fs::write(
        unit.join("w.toml"),
        "id = \"w\"\n[roles]\nstaff = \"s\"\n[[steps]]\nid = \"s\"\nkind = \"screen\"\nencouraged = \"lists/enc.toml\"\nactors = { decide = [\"staff\"], appeal = [\"staff\"] }\non = { accepted = \"e\", rejected = \"e\" }\n[[steps]]\nid = \"e\"\nkind = \"end\"\n",
    )
    .unwrap();
    let out = render(dir.path());
    assert!(
        out.contains("error[Y0001]: cannot read the file: symbolic links are not followed\n--> u/lists/enc.toml"),
        "{out}"
    );
    assert!(out.contains("u/lists/enc.toml: 错误[Y0001]: 无法读取这个文件：不跟随符号链接"), "{out}");
    assert!(out.contains("error[Y0109]"), "{out}");
}

#[test]
fn the_shipped_workflows_check_clean() {
    let out = render(&Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows"));
    assert!(!out.contains("error[") && !out.contains("warning["), "{out}");
    assert!(out.contains("failed: []"), "{out}");
}
