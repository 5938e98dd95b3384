//! `yishi db copy`: a database moves between backends whole, proved by counts and a checksum
//! of the histories, and a copy never writes into a database that holds anything.

mod common;

use std::collections::BTreeMap;

use serde_json::json;
use yishi_core::runtime::{Event, InstanceState, TimerChange, Token};
use yishi_engine::copy::{CopyError, copy_database, events_checksum};
use yishi_engine::store::{
    AnyStore, Commit, GIVEN_UP, ListFilter, MonthFigures, NewToken, NewVersion, Purge, Store, StoreOptions,
};

use common::backends::PgDatabase;

/// A SQLite deployment with something in every table.
async fn filled(path: &std::path::Path) -> AnyStore {
    let store = yishi_engine::store::open(&StoreOptions::new(path.display().to_string())).await.unwrap();
    let sources = BTreeMap::from([("u/w.toml".to_owned(), "# 居民议事\nid = \"w\"\n".to_owned())]);
    let effective = json!({"id": "w", "title": "议事", "steps": [{"id": "b"}, {"id": "a"}]});
    let v = store
        .put_version(
            &NewVersion { workflow: "u/w", hash: "h1", sources: &sources, effective: &effective, created_by: "start" },
            1_000,
        )
        .await
        .unwrap();
    for id in 1..=30 {
        let state = InstanceState {
            tokens: vec![Token {
                id: 1,
                step: "a".into(),
                scopes: Vec::new(),
                item: None,
                state: json!(null),
                entered_at: 5,
            }],
            data: json!({"标题": format!("路灯坏了 {id}"), "z": 1, "a": [1.5, "x"]}).as_object().cloned().unwrap(),
            next_token: 2,
            ..InstanceState::default()
        };
        let mut c = Commit {
            instance_id: id,
            create: Some(("u".into(), "u/w".into())),
            version: v.id,
            base_revision: 0,
            stored: None,
            state: Some(state),
            events: (0..3)
                .map(|n| (Event::Cancelled { reason: format!("第 {n} 条 \"引号\" \\ {id}") }, 1_700_000_000_000 + n))
                .collect(),
            first_seq: 1,
            timers: vec![TimerChange::Set { token: 1, step: "a".into(), name: "deadline".into(), due_at: 9_000 + id }],
            consumes: None,
            idempotency: Some((format!("key-{id}"), "fp".into(), "{\"id\":1}".into())),
            outbox: vec![json!({"kind": "webhook", "n": id})],
            now: 1_700_000_000_000 + id,
        };
        if id > 25 {
            let s = c.state.as_mut().unwrap();
            s.status = yishi_core::runtime::Status::Completed;
            s.tokens.clear();
            c.timers.clear();
            c.outbox.clear();
            c.idempotency = None;
        }
        store.commit(&[c]).await.unwrap();
    }
    let items = store.claim_outbox(i64::MAX - 1, 2, std::time::Duration::from_secs(30)).await.unwrap();
    store.outbox_result(items[0].id, true, None, 0, 2_000).await.unwrap();
    store.outbox_result(items[1].id, false, Some("connection refused"), GIVEN_UP, 2_000).await.unwrap();
    let acts = vec!["street_office".to_owned()];
    let t = NewToken { name: "李", key_id: "k1", secret_hash: "h", role: "operator", scope: "u", acts_as: &acts };
    let token = store.add_token(&t, 10).await.unwrap();
    store.revoke_token(token, 20).await.unwrap();
    store.next_number("reg:2026").await.unwrap();
    store
        .purge(&Purge {
            ids: vec![29, 30],
            figures: vec![MonthFigures {
                unit: "u".into(),
                workflow: "u/w".into(),
                month: "2023-11".into(),
                started: 2,
                completed: 2,
                ..MonthFigures::default()
            }],
            closed_before: 1_800_000_000_000,
            archive: "archive.jsonl".into(),
            actor: "admin".into(),
            at: 3_000,
            record: None,
        })
        .await
        .unwrap();
    store
}

/// Everything a user sees of a database, to compare two.
async fn seen(store: &AnyStore) -> String {
    let mut out = Vec::new();
    let all = ListFilter { limit: 1_000, ..ListFilter::default() };
    for s in store.list(&all).await.unwrap() {
        let row = store.load(s.id).await.unwrap();
        out.push(format!(
            "{s:?}\n{row:?}\n{:?}\n{:?}",
            store.history(s.id).await.unwrap(),
            store.timers_of(s.id).await.unwrap()
        ));
        out.push(format!("{:?}", store.idempotent_response(&format!("key-{}", s.id)).await.unwrap()));
    }
    for v in store.versions(None).await.unwrap() {
        let stored = store.version(v.id).await.unwrap();
        out.push(format!("{v:?} {:?} {}", stored.sources, stored.effective));
    }
    out.push(format!("{:?}", store.tokens().await.unwrap()));
    out.push(format!("{:?}", store.token_by_key("k1").await.unwrap()));
    out.push(format!("{:?}", store.dead_letters().await.unwrap()));
    out.push(format!("{:?} {:?}", store.kept_figures().await.unwrap(), store.purges().await.unwrap()));
    out.push(format!("{:?}", store.gauges(10_000).await.unwrap()));
    out.join("\n")
}

#[tokio::test]
async fn a_deployment_moves_to_postgres_and_back_whole() {
    let Some(db) = PgDatabase::create("copy_round_trip").await else { return };
    let dir = tempfile::tempdir().unwrap();
    let source_path = dir.path().join("yishi.db");
    let source = filled(&source_path).await;
    let before = seen(&source).await;
    let sum = events_checksum(&source).await.unwrap();
    source.close().await;
    drop(source);

    let mut steps = Vec::new();
    let report =
        copy_database(&StoreOptions::new(source_path.display().to_string()), &StoreOptions::new(&db.url), &mut |p| {
            steps.push((p.table, p.done, p.total))
        })
        .await
        .unwrap();
    assert_eq!(report.checksum, sum);
    let counts: BTreeMap<_, _> = report.tables.iter().copied().collect();
    assert_eq!((counts["instances"], counts["events"], counts["timers"]), (28, 84, 25));
    assert_eq!((counts["definitions"], counts["api_tokens"], counts["outbox"], counts["purges"]), (1, 1, 25, 1));
    let total = steps.last().unwrap().2;
    assert_eq!(steps.last().unwrap().1, total, "progress reaches the end");
    assert!(steps.windows(2).all(|w| w[0].1 <= w[1].1), "progress only goes forward");

    let pg = db.store().await;
    assert_eq!(seen(&pg).await, before, "PostgreSQL shows what SQLite showed");
    assert!(pg.next_instance_id().await.unwrap() > 30, "ids of copied and purged cases are not handed out again");

    // And back, into a new SQLite file: the same again.
    let back_path = dir.path().join("back.db");
    copy_database(&StoreOptions::new(&db.url), &StoreOptions::new(back_path.display().to_string()), &mut |_| {})
        .await
        .unwrap();
    let back = yishi_engine::store::open(&StoreOptions::new(back_path.display().to_string())).await.unwrap();
    assert_eq!(seen(&back).await, before);
    assert_eq!(events_checksum(&back).await.unwrap(), sum);
    back.close().await;
    pg.close().await;
    db.drop_now().await;
}

#[tokio::test]
async fn a_copy_refuses_a_target_that_holds_anything_or_a_source_being_served() {
    let dir = tempfile::tempdir().unwrap();
    let source_path = dir.path().join("yishi.db");
    let source = filled(&source_path).await;
    let from = StoreOptions::new(source_path.display().to_string());
    // A server holds the source.
    source.hold().unwrap();
    let target = StoreOptions::new(dir.path().join("new.db").display().to_string());
    let err = copy_database(&from, &target, &mut |_| {}).await.unwrap_err();
    assert!(matches!(err, CopyError::Source(_)) && err.to_string().contains("another yishi server"), "{err}");
    source.close().await;
    drop(source);
    // Not into itself, not into a database with cases.
    let err = copy_database(&from, &from, &mut |_| {}).await.unwrap_err();
    assert!(matches!(err, CopyError::Same), "{err}");
    let other = dir.path().join("other.db");
    filled(&other).await.close().await;
    let err = copy_database(&from, &StoreOptions::new(other.display().to_string()), &mut |_| {}).await.unwrap_err();
    assert!(matches!(err, CopyError::NotEmpty { table: "definitions", rows: 1 }), "{err}");
}
