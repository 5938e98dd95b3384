//! The store contract, as tests: one set of checks that every backend must pass. Each check
//! is a function of a fresh, empty store; `conformance!` runs it on every backend.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use yishi_core::runtime::{Event, InstanceState, Status, TimerChange, Token};
use yishi_engine::store::{
    AnyStore, Commit, Counts, ListFilter, NewToken, NewVersion, Store, StoreError, TimerRow, VersionRow,
};

const LEASE: Duration = Duration::from_secs(30);

async fn version(store: &AnyStore, workflow: &str, hash: &str) -> VersionRow {
    let sources = BTreeMap::from([(format!("{workflow}.toml"), format!("# {hash}\n"))]);
    let v = NewVersion { workflow, hash, sources: &sources, effective: &json!({"id": hash}), created_by: "test" };
    store.put_version(&v, 1_000).await.unwrap()
}

fn state(step: &str, data: Value) -> InstanceState {
    InstanceState {
        tokens: vec![Token {
            id: 1,
            step: step.into(),
            scopes: Vec::new(),
            item: None,
            state: Value::Null,
            entered_at: 5,
        }],
        data: data.as_object().cloned().unwrap_or_default(),
        next_token: 2,
        ..InstanceState::default()
    }
}

/// A commit creating instance `id` of `unit`/`workflow` on `version`, active at `step`.
fn create(id: i64, unit: &str, version: i64, step: &str) -> Commit {
    Commit {
        instance_id: id,
        create: Some((unit.into(), format!("{unit}/w"))),
        version,
        base_revision: 0,
        stored: None,
        state: Some(state(step, json!({"n": id}))),
        events: vec![(
            Event::Started { workflow: format!("{unit}/w"), hash: "h".into(), data: Default::default(), urgency: None },
            5,
        )],
        first_seq: 1,
        timers: Vec::new(),
        consumes: None,
        idempotency: None,
        outbox: Vec::new(),
        now: 5,
    }
}

/// A commit moving instance `id` from `base` revision (with `last_seq` events) to `step`,
/// active on `version` before and after.
fn change(id: i64, version: i64, base: i64, last_seq: i64, step: &str) -> Commit {
    Commit {
        instance_id: id,
        create: None,
        version,
        base_revision: base,
        stored: Some((Status::Active, version)),
        state: Some(state(step, json!({"n": id, "step": step}))),
        events: vec![(Event::Left { token: 1, step: "a".into(), outcome: "done".into() }, 9)],
        first_seq: last_seq + 1,
        timers: Vec::new(),
        consumes: None,
        idempotency: None,
        outbox: Vec::new(),
        now: 9,
    }
}

fn set_timer(name: &str, due_at: i64) -> TimerChange {
    TimerChange::Set { token: 1, step: "a".into(), name: name.into(), due_at }
}

async fn versions_are_content_numbered_per_workflow(store: AnyStore) {
    let a1 = version(&store, "u/a", "h1").await;
    let a1_again = version(&store, "u/a", "h1").await;
    assert_eq!(a1, a1_again, "the same content is the same version");
    let a2 = version(&store, "u/a", "h2").await;
    let b1 = version(&store, "u/b", "h1").await;
    assert_eq!((a1.seq, a2.seq, b1.seq), (1, 2, 1));
    assert!(a1.id != a2.id && a2.id != b1.id, "version ids are unique across workflows");
    assert_eq!(a2.created_by, "test");
    let listed = store.versions(Some("u/a")).await.unwrap();
    assert_eq!(listed, vec![a1.clone(), a2.clone()]);
    assert_eq!(store.versions(None).await.unwrap().len(), 3);
    let stored = store.version(a2.id).await.unwrap();
    assert_eq!(stored.row, a2);
    assert_eq!(stored.sources["u/a.toml"], "# h2\n");
    assert_eq!(stored.effective, json!({"id": "h2"}));
    assert!(matches!(store.version(a2.id + 1000).await, Err(StoreError::NotFound(_))));
}

async fn a_commit_round_trips_hostile_text_exactly(store: AnyStore) {
    let v = version(&store, "u/w", "h").await;
    // No text holds NUL: PostgreSQL's cannot, and the API refuses it (`api-body-nul-character`).
    let nasty = "'); DROP TABLE events; -- 引号 \"quotes\" \\ \n \t \u{1} 😀 $1 ? \\u0000";
    let document = format!("{nasty} {{\"json\": [1]}}");
    let mut c = create(1, "u", v.id, nasty);
    let s = c.state.as_mut().unwrap();
    s.data.insert("x".into(), json!(document));
    s.data.insert("big".into(), json!(i64::MAX));
    s.outcome = Some(nasty.to_owned());
    let ev = Event::Cancelled { reason: document.clone() };
    c.events = vec![(ev.clone(), 5)];
    c.timers = vec![TimerChange::Set { token: 1, step: nasty.into(), name: nasty.into(), due_at: 9 }];
    c.idempotency = Some((nasty.into(), "fingerprint".into(), nasty.into()));
    c.outbox = vec![json!({ "n": document })];
    store.commit(&[c]).await.unwrap();
    let row = store.load(1).await.unwrap();
    assert_eq!(row.state.data["x"], json!(document));
    assert_eq!(row.state.data["big"], json!(i64::MAX), "integers stay integers");
    assert_eq!(row.state.outcome.as_deref(), Some(nasty));
    assert_eq!(row.state.tokens[0].step, nasty);
    assert_eq!((row.revision, row.last_seq, row.unit.as_str(), row.version), (1, 1, "u", v.id));
    let listed = store.list(&ListFilter { limit: 5, ..ListFilter::default() }).await.unwrap();
    assert_eq!(listed[0].outcome.as_deref(), Some(nasty));
    assert_eq!(listed[0].active_steps, vec![nasty.to_owned()]);
    let history = store.history(1).await.unwrap();
    assert_eq!((history[0].event.clone(), history[0].seq, history[0].at), (ev, 1, 5));
    assert_eq!(store.timers_of(1).await.unwrap()[0].name, nasty);
    let kept = store.idempotent_response(nasty).await.unwrap().unwrap();
    assert_eq!((kept.response.as_str(), kept.fingerprint.as_str(), kept.created_at), (nasty, "fingerprint", 5));
    store.forget_idempotency(nasty).await.unwrap();
    assert!(store.idempotent_response(nasty).await.unwrap().is_none());
    let out = store.claim_outbox(10, 10, LEASE).await.unwrap();
    assert_eq!(out[0].notice, json!({ "n": document }));
    assert_eq!(store.integrity_check().await.unwrap(), "ok");
}

async fn a_stale_revision_aborts_the_whole_unit(store: AnyStore) {
    let v = version(&store, "u/w", "h").await;
    store.commit(&[create(1, "u", v.id, "a"), create(2, "u", v.id, "a")]).await.unwrap();
    let err = store.commit(&[change(1, v.id, 1, 1, "b"), change(2, v.id, 7, 1, "b")]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.load(1).await.unwrap().revision, 1, "nothing of the unit was kept");
    assert_eq!(store.history(1).await.unwrap().len(), 1);
    store.commit(&[change(1, v.id, 1, 1, "b")]).await.unwrap();
    let row = store.load(1).await.unwrap();
    assert_eq!((row.revision, row.last_seq), (2, 2), "the store is usable after the rollback");
    assert_eq!(row.state.data["step"], "b");
    // The same change again is stale now.
    assert!(matches!(store.commit(&[change(1, v.id, 1, 1, "c")]).await, Err(StoreError::Conflict(_))));
    // A second instance with an id already taken is a conflict, not an overwrite.
    assert!(matches!(store.commit(&[create(2, "u", v.id, "z")]).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.load(2).await.unwrap().state.tokens[0].step, "a");
}

/// Listings find a case by its status and version after every kind of change: one that keeps
/// both (written without touching their indexes on SQLite), one that ends the case, one that
/// moves it to another version.
async fn cases_are_listed_by_what_each_change_left(store: AnyStore) {
    let (v1, v2) = (version(&store, "u/w", "h1").await, version(&store, "u/w", "h2").await);
    store.commit(&(1..=3).map(|id| create(id, "u", v1.id, "a")).collect::<Vec<_>>()).await.unwrap();
    let completed = Commit {
        state: Some(InstanceState { status: Status::Completed, ..state("b", json!({})) }),
        ..change(2, v1.id, 1, 1, "b")
    };
    let migrated = Commit { stored: Some((Status::Active, v1.id)), ..change(3, v2.id, 1, 1, "b") };
    store.commit(&[change(1, v1.id, 1, 1, "b"), completed, migrated]).await.unwrap();
    let ids = |filter: ListFilter| {
        let store = &store;
        async move {
            let mut ids: Vec<i64> = store.list(&filter).await.unwrap().iter().map(|r| r.id).collect();
            ids.sort();
            ids
        }
    };
    let status = |s: &str| ListFilter { status: Some(s.into()), limit: 10, ..Default::default() };
    assert_eq!(ids(status("active")).await, vec![1, 3]);
    assert_eq!(ids(status("completed")).await, vec![2]);
    let on =
        |seq: i64| ListFilter { workflow: Some("u/w".into()), version: Some(seq), limit: 10, ..Default::default() };
    assert_eq!((ids(on(1)).await, ids(on(2)).await), (vec![1, 2], vec![3]));
    assert_eq!(store.active_counts().await.unwrap(), BTreeMap::from([(v1.id, 1), (v2.id, 1)]));
    let row = store.load(1).await.unwrap();
    assert_eq!((row.revision, row.last_seq, row.state.data["step"].as_str()), (2, 2, Some("b")));
}

async fn refusals_record_events_without_changing_state(store: AnyStore) {
    let v = version(&store, "u/w", "h").await;
    store.commit(&[create(1, "u", v.id, "a")]).await.unwrap();
    let refusal = Commit {
        state: None,
        events: vec![(
            Event::Refused {
                action: "vote".into(),
                step: Some("a".into()),
                actor: Default::default(),
                on_behalf_of: None,
                reason: yishi_core::i18n::Message::verbatim("no"),
                unrecorded_before: 0,
            },
            7,
        )],
        ..change(1, v.id, 1, 1, "ignored")
    };
    store.commit(&[refusal]).await.unwrap();
    let row = store.load(1).await.unwrap();
    assert_eq!((row.revision, row.last_seq), (1, 2));
    assert_eq!(row.state.tokens[0].step, "a");
    assert_eq!(store.history(1).await.unwrap().len(), 2);
}

async fn timers_fire_once_and_only_when_due(store: AnyStore) {
    let v = version(&store, "u/w", "h").await;
    let mut c = create(1, "u", v.id, "a");
    c.timers = vec![set_timer("deadline", 100), set_timer("remind:0", 50), set_timer("later", 10_000)];
    store.commit(&[c]).await.unwrap();
    assert_eq!(store.next_due().await.unwrap(), Some(50));
    assert!(store.claim_due(49, 10, LEASE).await.unwrap().is_empty(), "never early");
    let due = store.claim_due(100, 10, LEASE).await.unwrap();
    assert_eq!(due.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), vec!["remind:0", "deadline"]);
    // Firing the deadline consumes its row; a second firing of the same timer is a conflict.
    let fire = |base: i64, seq: i64| Commit {
        consumes: Some((1, "deadline".into())),
        timers: vec![TimerChange::Clear { token: 1, name: "deadline".into() }],
        ..change(1, v.id, base, seq, "b")
    };
    store.commit(&[fire(1, 1)]).await.unwrap();
    let again = store.commit(&[fire(2, 2)]).await.unwrap_err();
    assert!(matches!(again, StoreError::Conflict(_)), "{again:?}");
    assert_eq!(store.load(1).await.unwrap().revision, 2, "the second firing left nothing behind");
    let left: Vec<String> = store.timers_of(1).await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(left, vec!["remind:0", "later"]);
    // A void timer is dropped.
    let remind = TimerRow { instance_id: 1, token: 1, name: "remind:0".into(), step: "a".into(), due_at: 50 };
    store.drop_timer(&remind).await.unwrap();
    assert_eq!(store.next_due().await.unwrap(), Some(10_000));
    // Clearing a token's timers, then all of them.
    let mut c = change(1, v.id, 2, 3, "c");
    c.timers = vec![set_timer("x", 20), TimerChange::ClearToken { token: 1 }, set_timer("y", 30)];
    store.commit(&[c]).await.unwrap();
    let left: Vec<String> = store.timers_of(1).await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(left, vec!["y"]);
    // A timer cleared and set again in one change is there afterwards, whichever way it was
    // cleared (the deletes are applied before the new timers).
    let mut c = change(1, v.id, 3, 4, "d");
    c.timers = vec![TimerChange::ClearAll, set_timer("z", 40)];
    store.commit(&[c]).await.unwrap();
    let mut c = change(1, v.id, 4, 5, "e");
    c.timers = vec![TimerChange::Clear { token: 1, name: "z".into() }, set_timer("z", 45)];
    store.commit(&[c]).await.unwrap();
    let left: Vec<(String, i64)> = store.timers_of(1).await.unwrap().into_iter().map(|t| (t.name, t.due_at)).collect();
    assert_eq!(left, vec![("z".to_owned(), 45)]);
    let mut c = change(1, v.id, 5, 6, "f");
    c.timers = vec![TimerChange::ClearAll];
    store.commit(&[c]).await.unwrap();
    assert_eq!(store.next_due().await.unwrap(), None);
}

async fn numbers_and_ids_are_never_handed_out_twice(store: AnyStore) {
    let mut ids = Vec::new();
    for _ in 0..50 {
        ids.push(store.next_instance_id().await.unwrap());
    }
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 50, "{ids:?}");
    assert!(ids.iter().all(|&i| i > 0));
    let asked = (0..20).map(|_| {
        let store = store.clone();
        async move { store.next_number("reg:2026").await }
    });
    let numbers: Vec<i64> = spawned(asked.collect()).await.into_iter().map(Result::unwrap).collect();
    let mut n = numbers.clone();
    n.sort();
    assert_eq!(n, (1..=20).collect::<Vec<_>>(), "a counter counts 1, 2, 3 ... with no number twice");
    assert_eq!(store.next_number("reg:2027").await.unwrap(), 1, "counters are separate");
}

/// Runs each future as a task of its own, as a server runs its requests, all started before any
/// is awaited; their outputs in order.
async fn spawned<F>(fs: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = fs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.expect("the task ran to its end"));
    }
    out
}

/// Commits each unit on a task of its own (see [`spawned`]).
async fn commit_each(store: &AnyStore, units: Vec<Vec<Commit>>) -> Vec<Result<(), StoreError>> {
    spawned(
        units
            .into_iter()
            .map(|u| {
                let store = store.clone();
                async move { store.commit(&u).await }
            })
            .collect(),
    )
    .await
}

async fn tokens_are_found_by_key_and_revoked_once(store: AnyStore) {
    let acts = vec!["street_office".to_owned()];
    let t = NewToken { name: "li", key_id: "k1", secret_hash: "h1", role: "operator", scope: "u", acts_as: &acts };
    let id = store.add_token(&t, 10).await.unwrap();
    let row = store.token_by_key("k1").await.unwrap().unwrap();
    assert_eq!((row.id, row.name.as_str(), row.role.as_str(), row.scope.as_str()), (id, "li", "operator", "u"));
    assert_eq!((row.acts_as, row.secret_hash.as_str(), row.revoked_at), (acts.clone(), "h1", None));
    assert!(store.token_by_key("k2").await.unwrap().is_none());
    let dup = NewToken { key_id: "k1", ..t.clone() };
    assert!(store.add_token(&dup, 11).await.is_err(), "key ids are unique");
    assert!(store.revoke_token(id, 20).await.unwrap());
    assert!(!store.revoke_token(id, 21).await.unwrap(), "a revoked token is revoked once");
    assert_eq!(store.tokens().await.unwrap()[0].revoked_at, Some(20));
}

async fn accounts_and_sessions_round_trip_and_end_together(store: AnyStore) {
    use yishi_engine::store::{AccountRow, SessionRow, SessionsOf};
    let mut a = AccountRow {
        id: 0,
        name: "张三".into(),
        password_hash: "$argon2id$x".into(),
        role: "operator".into(),
        scope: "pingcheng".into(),
        acts_as: vec!["staff".into()],
        must_change: true,
        failures: 0,
        locked_until: None,
        disabled_at: None,
        created_at: 10,
        changed_at: 10,
    };
    a.id = store.add_account(&a).await.unwrap();
    assert_eq!(store.account_by_name("张三").await.unwrap(), Some(a.clone()));
    assert!(matches!(store.add_account(&a).await, Err(StoreError::Conflict(_))), "names are unique");
    a.failures = 3;
    a.locked_until = Some(99);
    a.must_change = false;
    a.changed_at = 20;
    store.update_account(&a).await.unwrap();
    assert_eq!(store.account(a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.accounts().await.unwrap(), vec![a.clone()]);
    let session = |h: &str, account: Option<i64>, token: Option<i64>, expires: i64| SessionRow {
        id_hash: h.into(),
        account_id: account,
        token_id: token,
        csrf: format!("csrf-{h}"),
        created_at: 1,
        expires_at: expires,
    };
    for s in [
        session("s1", Some(a.id), None, 100),
        session("s2", Some(a.id), None, 100),
        session("s3", None, Some(7), 100),
        session("s4", None, Some(8), 5),
    ] {
        store.add_session(&s).await.unwrap();
    }
    assert_eq!(store.session("s3").await.unwrap(), Some(session("s3", None, Some(7), 100)));
    assert_eq!(store.end_sessions(SessionsOf::ExpiredBefore(50)).await.unwrap(), 1);
    assert_eq!(store.end_sessions(SessionsOf::Account(a.id)).await.unwrap(), 2);
    assert!(store.session("s1").await.unwrap().is_none());
    assert_eq!(store.end_sessions(SessionsOf::Token(7)).await.unwrap(), 1);
    assert_eq!(store.end_sessions(SessionsOf::One("s3")).await.unwrap(), 0);
}

async fn the_outbox_hands_out_due_items_until_delivered(store: AnyStore) {
    let v = version(&store, "u/w", "h").await;
    let mut c = create(1, "u", v.id, "a");
    c.outbox = vec![json!({"kind": "webhook", "n": 1}), json!({"kind": "webhook", "n": 2})];
    store.commit(&[c]).await.unwrap();
    let items = store.claim_outbox(5, 10, LEASE).await.unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!((items[0].instance_id, items[0].attempts), (1, 0));
    store.outbox_result(items[0].id, true, None, 0, 6).await.unwrap();
    store.outbox_result(items[1].id, false, Some("refused"), 1_000, 6).await.unwrap();
    assert!(store.claim_outbox(999, 10, LEASE).await.unwrap().is_empty(), "delivered, or waiting for its retry");
    let retry = store.claim_outbox(1_000, 10, LEASE).await.unwrap();
    assert_eq!((retry.len(), retry[0].attempts, retry[0].notice["n"].as_i64()), (1, 1, Some(2)));
}

async fn dead_letters_are_listed_retried_and_discarded(store: AnyStore) {
    use yishi_engine::store::GIVEN_UP;
    let v = version(&store, "u/w", "h").await;
    let mut c = create(1, "u", v.id, "a");
    c.outbox = (1..=3).map(|n| json!({"kind": "webhook", "n": n})).collect();
    store.commit(&[c]).await.unwrap();
    let items = store.claim_outbox(5, 10, LEASE).await.unwrap();
    for it in &items {
        store.outbox_result(it.id, false, Some("connection refused"), GIVEN_UP, 6).await.unwrap();
    }
    assert!(store.claim_outbox(i64::MAX - 1, 10, LEASE).await.unwrap().is_empty(), "given up: never due");
    let dead = store.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 3);
    assert_eq!((dead[0].instance, dead[0].attempts, dead[0].last_error.as_deref()), (1, 1, Some("connection refused")));
    assert_eq!(store.retry_dead(Some(dead[0].id), 100).await.unwrap(), 1);
    let again = store.claim_outbox(100, 10, LEASE).await.unwrap();
    assert_eq!((again.len(), again[0].attempts, again[0].notice["n"].as_i64()), (1, 0, Some(1)));
    assert_eq!(store.discard_dead(None).await.unwrap(), 2);
    assert!(store.dead_letters().await.unwrap().is_empty());
    assert_eq!(store.retry_dead(None, 200).await.unwrap(), 0);
}

async fn gauges_count_active_cases_timers_and_outbox(store: AnyStore) {
    use yishi_engine::store::{GIVEN_UP, Gauges};
    assert_eq!(store.gauges(0).await.unwrap(), Gauges::default(), "an empty database");
    let v = version(&store, "u/w", "h").await;
    let mut a = create(1, "u", v.id, "a");
    a.timers = vec![set_timer("soon", 10), set_timer("later", 100)];
    a.outbox = vec![json!({"kind": "webhook", "n": 1}), json!({"kind": "webhook", "n": 2})];
    store.commit(&[a, create(2, "u", v.id, "a"), create(3, "u", v.id, "b")]).await.unwrap();
    store
        .commit(&[Commit {
            state: Some(InstanceState { status: Status::Completed, ..InstanceState::default() }),
            ..change(3, v.id, 1, 1, "x")
        }])
        .await
        .unwrap();
    let items = store.claim_outbox(5, 1, LEASE).await.unwrap();
    store.outbox_result(items[0].id, false, Some("refused"), GIVEN_UP, 6).await.unwrap();
    let g = store.gauges(50).await.unwrap();
    assert_eq!(g.active, vec![("u/w".to_owned(), "a".to_owned(), 2)], "closed cases are not active");
    assert_eq!((g.timers_pending, g.timers_overdue), (2, 1));
    assert_eq!((g.outbox_pending, g.outbox_dead), (1, 1));
}

async fn purges_remove_closed_cases_whole_and_keep_their_figures(store: AnyStore) {
    use yishi_engine::store::{MonthFigures, Purge};
    let v = version(&store, "u/w", "h").await;
    let mut active = create(1, "u", v.id, "a");
    active.timers = vec![set_timer("t", 100)];
    store.commit(&[active, create(2, "u", v.id, "a"), create(3, "u", v.id, "a")]).await.unwrap();
    for id in [2, 3] {
        store
            .commit(&[Commit {
                state: Some(InstanceState { status: Status::Completed, ..InstanceState::default() }),
                ..change(id, v.id, 1, 1, "x")
            }])
            .await
            .unwrap();
    }
    let closed: Vec<i64> = store.closed_before(10, 0, 10).await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(closed, vec![2, 3], "closed cases changed before the cutoff");
    assert!(store.closed_before(9, 0, 10).await.unwrap().is_empty(), "changed at 9: not before 9");
    assert_eq!(store.closed_before(10, 2, 10).await.unwrap()[0].id, 3, "paged by id");
    assert_eq!(store.count_closed_before(10).await.unwrap(), [("u/w".to_owned(), 2)].into_iter().collect());

    let figures = vec![MonthFigures {
        unit: "u".into(),
        workflow: "u/w".into(),
        month: "2026-01".into(),
        started: 1,
        completed: 1,
        counts: Counts {
            raised: 1,
            responded: 1,
            rated: 1,
            resolved: 1,
            overdue: 1,
            answers: 2,
            score_sum: 6.5,
            satisfied: 0,
        },
        ..MonthFigures::default()
    }];
    let batch = |ids: Vec<i64>, record| Purge {
        ids,
        figures: figures.clone(),
        closed_before: 10,
        archive: "a.jsonl".into(),
        actor: "ops".into(),
        at: 20,
        record,
    };
    // An active case in the batch: nothing happens at all.
    assert!(matches!(store.purge(&batch(vec![1, 2], None)).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.load(2).await.unwrap().id, 2);
    assert!(store.kept_figures().await.unwrap().is_empty() && store.purges().await.unwrap().is_empty());

    let record = store.purge(&batch(vec![2], None)).await.unwrap();
    assert!(matches!(store.load(2).await, Err(StoreError::NotFound(_))));
    assert!(store.history(2).await.unwrap().is_empty(), "history goes with the case");
    assert_eq!(store.purge(&batch(vec![3], Some(record))).await.unwrap(), record, "a run adds to its record");
    let kept = store.kept_figures().await.unwrap();
    assert_eq!((kept.len(), kept[0].started, kept[0].completed), (1, 2, 2), "figures add up");
    let purges = store.purges().await.unwrap();
    assert_eq!((purges.len(), purges[0].cases, purges[0].actor.as_str()), (1, 2, "ops"));
    assert_eq!(store.load(1).await.unwrap().id, 1, "the active case stays");
    assert_eq!(store.timers_of(1).await.unwrap().len(), 1);
    let dates = store.case_dates().await.unwrap();
    assert_eq!(dates.len(), 1);
}

async fn listings_filter_and_page(store: AnyStore) {
    let v1 = version(&store, "s/c1/w", "h").await;
    let v2 = version(&store, "s/c2/w", "h").await;
    let mut unit = Vec::new();
    for id in 1..=30 {
        let (u, v) = if id % 3 == 0 { ("s/c2", v2.id) } else { ("s/c1", v1.id) };
        let mut c = create(id, u, v, if id % 2 == 0 { "even" } else { "odd" });
        c.state.as_mut().unwrap().data.insert("building".into(), json!(id % 5));
        let title = if id % 10 == 7 { format!("楼道灯 Lamp_{id}%") } else { format!("case {id}") };
        c.state.as_mut().unwrap().data.insert("title".into(), json!(title));
        if id == 11 {
            c.state.as_mut().unwrap().figures.overdue = true;
        }
        if id == 7 {
            c.state.as_mut().unwrap().data.insert("reviewed".into(), Value::Null);
        }
        unit.push(c);
    }
    store.commit(&unit).await.unwrap();
    store
        .commit(&[Commit {
            state: Some(InstanceState { status: Status::Completed, ..InstanceState::default() }),
            ..change(4, v1.id, 1, 1, "x")
        }])
        .await
        .unwrap();
    let ids = |f: ListFilter| {
        let store = store.clone();
        async move {
            store.list(&ListFilter { limit: 100, ..f }).await.unwrap().into_iter().map(|s| s.id).collect::<Vec<_>>()
        }
    };
    let all = ids(ListFilter::default()).await;
    assert_eq!(all, (1..=30).rev().collect::<Vec<_>>(), "newest first");
    assert_eq!(ids(ListFilter { units: Some(vec!["s/c2".into()]), ..Default::default() }).await.len(), 10);
    assert_eq!(ids(ListFilter { units: Some(vec!["s/".into()]), ..Default::default() }).await.len(), 30);
    assert_eq!(ids(ListFilter { units: Some(vec!["s/c".into()]), ..Default::default() }).await.len(), 0);
    assert_eq!(ids(ListFilter { workflow: Some("s/c2/w".into()), ..Default::default() }).await.len(), 10);
    let on = |w: &str, v: i64| ListFilter { workflow: Some(w.into()), version: Some(v), ..Default::default() };
    assert_eq!(ids(on("s/c2/w", v2.seq)).await.len(), 10);
    assert_eq!(ids(on("s/c2/w", v2.seq + 1)).await.len(), 0);
    assert_eq!(ids(ListFilter { version: Some(1), ..Default::default() }).await.len(), 30, "version 1 of each");
    assert_eq!(ids(ListFilter { status: Some("completed".into()), ..Default::default() }).await, vec![4]);
    let evens = ids(ListFilter { step: Some("even".into()), status: Some("active".into()), ..Default::default() });
    assert_eq!(evens.await.len(), 14);
    let b3 = ids(ListFilter { data: Some(("building".into(), json!(3))), ..Default::default() }).await;
    assert_eq!(b3, vec![28, 23, 18, 13, 8, 3]);
    // Null matches a missing field and a JSON null, and only within the other filters.
    let unset = |field: &str, units: Option<Vec<String>>| ListFilter {
        data: Some((field.into(), Value::Null)),
        units,
        ..Default::default()
    };
    assert_eq!(ids(unset("building", None)).await, vec![4], "the change left case 4 without one");
    assert_eq!(ids(unset("reviewed", None)).await.len(), 30);
    assert_eq!(ids(unset("reviewed", Some(vec!["s/c2".into()]))).await.len(), 10, "case 7's null stays in its unit");
    let created = ids(ListFilter { created_from: Some(5), created_to: Some(6), ..Default::default() }).await;
    assert_eq!(created.len(), 30);
    assert_eq!(ids(ListFilter { updated_from: Some(9), ..Default::default() }).await, vec![4]);
    let text = |t: &str| ListFilter { title_contains: Some(t.into()), ..Default::default() };
    assert_eq!(ids(text("楼道灯")).await, vec![27, 17, 7]);
    assert_eq!(ids(text("lamp_1")).await, vec![17], "Latin letters in any case");
    assert_eq!(ids(text("%")).await, vec![27, 17, 7], "a percent sign is just text");
    assert_eq!(ids(text("_2")).await, vec![27], "so is an underscore");
    assert_eq!(ids(ListFilter { overdue: true, ..Default::default() }).await, vec![11]);
    // Pages by cursor.
    let page = store.list(&ListFilter { limit: 7, ..Default::default() }).await.unwrap();
    assert_eq!(page.len(), 7);
    let next = store.list(&ListFilter { limit: 7, before: Some(page[6].id), ..Default::default() }).await.unwrap();
    assert_eq!(next[0].id, page[6].id - 1);
    let counts = store.active_counts().await.unwrap();
    assert_eq!((counts[&v1.id], counts[&v2.id]), (19, 10));
}

async fn the_active_set_and_nodes_are_kept(store: AnyStore) {
    use yishi_engine::store::NodeRow;
    assert_eq!(store.active_epoch().await.unwrap(), 0, "nothing activated yet");
    assert_eq!(store.active_set().await.unwrap().versions.len(), 0);
    let a = version(&store, "u/a", "h1").await;
    let b = version(&store, "u/b", "h1").await;
    let set = BTreeMap::from([("u/a".to_owned(), a.id), ("u/b".to_owned(), b.id)]);
    assert_eq!(store.set_active(&set, "start", r#"{"ok":true}"#, 100).await.unwrap(), 1);
    let a2 = version(&store, "u/a", "h2").await;
    let set2 = BTreeMap::from([("u/a".to_owned(), a2.id)]);
    assert_eq!(store.set_active(&set2, "file save", r#"{"ok":false}"#, 200).await.unwrap(), 2);
    assert_eq!(store.active_epoch().await.unwrap(), 2);
    let got = store.active_set().await.unwrap();
    assert_eq!((got.epoch, got.versions, got.changed_at), (2, set2, 200));
    assert_eq!(
        (got.changed_by.as_str(), serde_json::from_str::<Value>(&got.status).unwrap()),
        ("file save", json!({"ok": false}))
    );
    assert!(store.try_lead().await.unwrap(), "a lone node leads");
    let node = NodeRow {
        id: "n1".into(),
        build: "0.1.0".into(),
        address: "127.0.0.1:8080".into(),
        started_at: chrono::Utc::now().timestamp_millis(),
        heartbeat_at: 0,
        silent_ms: 0,
        alive: true,
        leader: true,
        doing: "serving".into(),
    };
    let now = chrono::Utc::now().timestamp_millis();
    store.heartbeat(&node, now).await.unwrap();
    store.heartbeat(&NodeRow { doing: "stopped".into(), ..node.clone() }, now).await.unwrap();
    let nodes = store.nodes(now).await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!((nodes[0].id.as_str(), nodes[0].leader, nodes[0].doing.as_str()), ("n1", true, "stopped"));
    assert!(nodes[0].silent_ms < 60_000, "{:?}", nodes[0]);
}

async fn commits_that_wait_together_share_transactions_and_fail_alone(store: AnyStore) {
    let v = version(&store, "u/w", "h").await;
    let before = store.commit_stats().transactions.load(std::sync::atomic::Ordering::Relaxed);
    let units: Vec<Vec<Commit>> = (1..=60).map(|id| vec![create(id, "u", v.id, "a")]).collect();
    for r in commit_each(&store, units).await {
        r.unwrap();
    }
    let transactions = store.commit_stats().transactions.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!(transactions < 40, "60 commits that waited together took {transactions} transactions");
    // 20 changes waiting at once, one of them stale: that one fails, alone.
    let mut units: Vec<Vec<Commit>> = (1..=20).map(|id| vec![change(id, v.id, 1, 1, "b")]).collect();
    units.insert(10, vec![change(30, v.id, 7, 1, "b")]);
    let results = commit_each(&store, units).await;
    for (i, r) in results.iter().enumerate() {
        if i == 10 {
            assert!(matches!(r, Err(StoreError::Conflict(_))), "the stale change fails: {r:?}");
        } else {
            assert!(r.is_ok(), "unit {i} fails with the stale one: {r:?}");
        }
    }
    assert_eq!(store.load(30).await.unwrap().revision, 1, "the stale change left nothing");
    assert_eq!(store.load(20).await.unwrap().revision, 2);
    store.barrier().await.unwrap();
}

/// Histories of every length land whole and in order, alone or with others in one unit; a
/// unit that fails after thousands of its events were written leaves none of them, and the
/// store goes on (SQLite writes events in statements of a few sizes, several for a long one).
async fn histories_of_any_length_land_whole_and_in_order(store: AnyStore) {
    let v = version(&store, "u/w", "h").await;
    let with_events = |id: i64, n: usize| {
        let mut c = create(id, "u", v.id, "a");
        c.events = (0..n).map(|i| (Event::Cancelled { reason: format!("第{i}条 \"{id}\"") }, i as i64)).collect();
        c
    };
    let lengths = [1, 2, 3, 16, 17, 64, 65, 1023, 1024, 1025, 2500];
    for (i, n) in lengths.into_iter().enumerate() {
        store.commit(&[with_events(i as i64 + 1, n)]).await.unwrap();
    }
    let together: Vec<Commit> = lengths.into_iter().enumerate().map(|(i, n)| with_events(i as i64 + 101, n)).collect();
    store.commit(&together).await.unwrap();
    for (i, n) in lengths.into_iter().enumerate() {
        for id in [i as i64 + 1, i as i64 + 101] {
            let history = store.history(id).await.unwrap();
            let seqs: Vec<i64> = history.iter().map(|e| e.seq).collect();
            assert_eq!(seqs, (1..=n as i64).collect::<Vec<_>>(), "case {id}");
            let last = Event::Cancelled { reason: format!("第{}条 \"{id}\"", n - 1) };
            assert_eq!((&history[n - 1].event, history[n - 1].at), (&last, n as i64 - 1), "case {id}");
            assert_eq!(store.load(id).await.unwrap().last_seq, n as i64);
        }
    }
    // 3,000 events of a new case, then in the same unit an event numbered as one case 1 has
    // (the last rows written): nothing of the unit is kept.
    let mut numbered_twice = change(1, v.id, 1, 1, "b");
    (numbered_twice.state, numbered_twice.first_seq) = (None, 1);
    let err = store.commit(&[with_events(500, 3000), numbered_twice]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.load(1).await.unwrap().last_seq, 1);
    assert!(matches!(store.load(500).await, Err(StoreError::NotFound(_))));
    assert!(store.history(500).await.unwrap().is_empty());
    store.commit(&[with_events(500, 1100)]).await.unwrap();
    assert_eq!(store.history(500).await.unwrap().len(), 1100, "the store goes on after the rollback");
    assert_eq!(store.integrity_check().await.unwrap(), "ok");
}

async fn the_database_answers(store: AnyStore) {
    store.ping().await.unwrap();
    assert_eq!(store.integrity_check().await.unwrap(), "ok");
    assert!(!store.describe().contains("***") || store.describe().contains("://"));
    assert!(matches!(store.load(42).await, Err(StoreError::NotFound(_))));
    assert!(store.history(42).await.unwrap().is_empty());
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::common::backends::sqlite().await).await;
                }
            )*
        }
        mod sqlite_file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _dir) = crate::common::backends::sqlite_file().await;
                    super::$name(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = crate::common::backends::PgDatabase::create(stringify!($name)).await else { return };
                    super::$name(db.store().await).await;
                    db.drop_now().await;
                }
            )*
        }
    };
}

conformance!(
    versions_are_content_numbered_per_workflow,
    a_commit_round_trips_hostile_text_exactly,
    a_stale_revision_aborts_the_whole_unit,
    cases_are_listed_by_what_each_change_left,
    refusals_record_events_without_changing_state,
    timers_fire_once_and_only_when_due,
    numbers_and_ids_are_never_handed_out_twice,
    tokens_are_found_by_key_and_revoked_once,
    accounts_and_sessions_round_trip_and_end_together,
    the_outbox_hands_out_due_items_until_delivered,
    dead_letters_are_listed_retried_and_discarded,
    gauges_count_active_cases_timers_and_outbox,
    purges_remove_closed_cases_whole_and_keep_their_figures,
    listings_filter_and_page,
    the_active_set_and_nodes_are_kept,
    commits_that_wait_together_share_transactions_and_fail_alone,
    histories_of_any_length_land_whole_and_in_order,
    the_database_answers,
);

/// SQLite's own promises: group commit, and one serving process per file.
mod sqlite_only {
    use super::*;
    use yishi_engine::store::StoreOptions;

    #[tokio::test(flavor = "current_thread")]
    async fn commits_that_wait_together_share_a_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            yishi_engine::store::open(&StoreOptions::new(dir.path().join("y.db").display().to_string())).await.unwrap();
        let v = version(&store, "u/w", "h").await;
        let before = store.commit_stats().transactions.load(std::sync::atomic::Ordering::Relaxed);
        let units: Vec<Vec<Commit>> = (1..=50).map(|id| vec![create(id, "u", v.id, "a")]).collect();
        for r in commit_each(&store, units).await {
            r.unwrap();
        }
        let stats = store.commit_stats();
        let transactions = stats.transactions.load(std::sync::atomic::Ordering::Relaxed) - before;
        assert!(transactions < 10, "50 commits that waited together took {transactions} transactions");
        assert_eq!(store.list(&ListFilter { limit: 100, ..Default::default() }).await.unwrap().len(), 50);
    }

    /// A change that says it keeps the stored status and version is written without them; if
    /// the claim is wrong, the commit is a conflict and nothing of it is kept (PostgreSQL
    /// reads every change whole and needs no claim).
    #[tokio::test]
    async fn a_wrong_claim_about_the_stored_row_is_a_conflict() {
        let store = crate::common::backends::sqlite().await;
        let (v1, v2) = (version(&store, "u/w", "h1").await, version(&store, "u/w", "h2").await);
        store.commit(&[create(1, "u", v1.id, "a")]).await.unwrap();
        let claims_v2 = change(1, v2.id, 1, 1, "b"); // stored: v1
        let err = store.commit(&[claims_v2]).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        let row = store.load(1).await.unwrap();
        assert_eq!((row.version, row.revision, row.last_seq), (v1.id, 1, 1));
        assert_eq!(row.state.tokens[0].step, "a");
    }

    #[tokio::test]
    async fn one_server_holds_a_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions::new(dir.path().join("y.db").display().to_string());
        let first = yishi_engine::store::open(&options).await.unwrap();
        let second = yishi_engine::store::open(&options).await.unwrap();
        first.hold().unwrap();
        let err = second.hold().unwrap_err().to_string();
        assert!(err.contains("another yishi server") && err.contains("y.db"), "{err}");
        drop(first);
        second.hold().unwrap();
    }

    #[tokio::test]
    async fn the_durability_asked_for_is_the_one_the_database_has() {
        use yishi_engine::store::Durability;
        let dir = tempfile::tempdir().unwrap();
        for (i, sync) in [Durability::Full, Durability::Normal].into_iter().enumerate() {
            let path = dir.path().join(format!("{i}.db")).display().to_string();
            let store = yishi_engine::store::open(&StoreOptions { sync, ..StoreOptions::new(path) }).await.unwrap();
            assert_eq!(store.durability().await.unwrap(), sync);
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_new_database_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("y.db");
        let store = yishi_engine::store::open(&StoreOptions::new(path.display().to_string())).await.unwrap();
        let v = version(&store, "u/w", "h").await;
        store.commit(&[create(1, "u", v.id, "a")]).await.unwrap();
        for name in ["y.db", "y.db-wal"] {
            let mode = std::fs::metadata(dir.path().join(name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}: {mode:o}");
        }
    }

    #[tokio::test]
    async fn commands_do_not_create_a_database_that_is_not_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.db");
        let options = StoreOptions { create: false, ..StoreOptions::new(path.display().to_string()) };
        assert!(matches!(yishi_engine::store::open(&options).await, Err(StoreError::NotFound(_))));
        assert!(!path.exists());
    }
}

/// PostgreSQL's own promises: several nodes on one database.
mod postgres_only {
    use super::*;
    use crate::common::backends::PgDatabase;
    use yishi_engine::store::{Durability, StoreOptions};

    /// Two stores on one fresh database, as two nodes would have.
    async fn two_nodes(test: &str) -> Option<(PgDatabase, AnyStore, AnyStore)> {
        let db = PgDatabase::create(test).await?;
        let (a, b) = (db.store().await, db.store().await);
        Some((db, a, b))
    }

    #[tokio::test]
    async fn ids_versions_and_numbers_are_unique_across_nodes() {
        let Some((db, a, b)) = two_nodes("ids_across_nodes").await else { return };
        let (va, vb) = tokio::join!(version(&a, "u/w", "h"), version(&b, "u/w", "h"));
        assert_eq!(va, vb, "the same content started on two nodes at once is one version");
        let (vc, vd) = tokio::join!(version(&a, "u/w", "h2"), version(&b, "u/w", "h3"));
        let mut seqs = vec![vc.seq, vd.seq];
        seqs.sort();
        assert_eq!(seqs, vec![2, 3], "numbers run on without a gap or a repeat");
        let mut ids = Vec::new();
        for _ in 0..20 {
            let (x, y) = tokio::join!(a.next_instance_id(), b.next_instance_id());
            ids.extend([x.unwrap(), y.unwrap()]);
        }
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "{ids:?}");
        let (x, y) = tokio::join!(a.next_number("reg"), b.next_number("reg"));
        let mut n = vec![x.unwrap(), y.unwrap()];
        n.sort();
        assert_eq!(n, vec![1, 2]);
        db.drop_now().await;
    }

    #[tokio::test]
    async fn two_nodes_changing_one_case_at_once_one_wins() {
        let Some((db, a, b)) = two_nodes("one_wins").await else { return };
        let v = version(&a, "u/w", "h").await;
        a.commit(&[create(1, "u", v.id, "a")]).await.unwrap();
        for round in 0..20 {
            let base = a.load(1).await.unwrap();
            let (x, y) = (
                change(1, v.id, base.revision, base.last_seq, "x"),
                change(1, v.id, base.revision, base.last_seq, "y"),
            );
            let (ra, rb) = tokio::join!(a.commit(std::slice::from_ref(&x)), b.commit(std::slice::from_ref(&y)));
            let won = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
            assert_eq!(won, 1, "round {round}: {ra:?} {rb:?}");
            let lost = if ra.is_err() { ra } else { rb };
            assert!(matches!(lost, Err(StoreError::Conflict(_))), "round {round}: {lost:?}");
            let after = b.load(1).await.unwrap();
            assert_eq!((after.revision, after.last_seq), (base.revision + 1, base.last_seq + 1), "round {round}");
            assert_eq!(b.history(1).await.unwrap().len() as i64, after.last_seq, "no event of the loser is kept");
        }
        db.drop_now().await;
    }

    #[tokio::test]
    async fn a_claimed_timer_or_delivery_is_leased_to_one_node() {
        let Some((db, a, b)) = two_nodes("leases").await else { return };
        let v = version(&a, "u/w", "h").await;
        let mut c = create(1, "u", v.id, "a");
        c.timers = vec![set_timer("deadline", 100)];
        c.outbox = vec![json!({"kind": "webhook"})];
        a.commit(&[c]).await.unwrap();
        assert_eq!(a.claim_due(1_000, 10, LEASE).await.unwrap().len(), 1);
        assert!(b.claim_due(1_000, 10, LEASE).await.unwrap().is_empty(), "leased to the first node");
        assert_eq!(a.claim_outbox(1_000, 10, LEASE).await.unwrap().len(), 1);
        assert!(b.claim_outbox(1_000, 10, LEASE).await.unwrap().is_empty(), "leased to the first node");
        // A node that dies holding a lease: once it runs out, another node takes the work over.
        let c2 = {
            let mut c = create(2, "u", v.id, "a");
            c.timers = vec![set_timer("deadline", 100)];
            c.outbox = vec![json!({"kind": "webhook"})];
            c
        };
        a.commit(&[c2]).await.unwrap();
        let short = Duration::from_millis(50);
        assert_eq!(a.claim_due(1_000, 10, short).await.unwrap()[0].instance_id, 2);
        assert_eq!(a.claim_outbox(1_000, 10, short).await.unwrap()[0].instance_id, 2);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        // Each is taken over once its own lease runs out (the two may run out in different rounds).
        let (mut timers, mut deliveries) = (Vec::new(), Vec::new());
        while timers.is_empty() || deliveries.is_empty() {
            timers.extend(b.claim_due(1_000, 10, LEASE).await.unwrap());
            deliveries.extend(b.claim_outbox(1_000, 10, LEASE).await.unwrap());
            assert!(std::time::Instant::now() < deadline, "the lease never ran out");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!((timers.len(), timers[0].instance_id), (1, 2));
        assert_eq!((deliveries.len(), deliveries[0].instance_id), (1, 2));
        db.drop_now().await;
    }

    #[tokio::test]
    async fn one_node_leads_and_another_takes_over_when_it_ends() {
        let Some((db, a, b)) = two_nodes("lead").await else { return };
        assert!(a.try_lead().await.unwrap());
        assert!(a.try_lead().await.unwrap(), "the leader keeps the lead");
        assert!(!b.try_lead().await.unwrap(), "one leader at a time");
        a.close().await;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !b.try_lead().await.unwrap() {
            assert!(std::time::Instant::now() < deadline, "the lead was never free again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        db.drop_now().await;
    }

    #[tokio::test]
    async fn timers_are_due_by_the_database_clock_too() {
        let Some(db) = PgDatabase::create("db_clock").await else { return };
        let store = db.store().await;
        let v = version(&store, "u/w", "h").await;
        let in_an_hour = chrono::Utc::now().timestamp_millis() + 3_600_000;
        let mut c = create(1, "u", v.id, "a");
        c.timers = vec![set_timer("deadline", in_an_hour)];
        store.commit(&[c]).await.unwrap();
        let fast_clock = in_an_hour + 1;
        assert!(store.claim_due(fast_clock, 10, LEASE).await.unwrap().is_empty(), "a node whose clock runs fast");
        db.drop_now().await;
    }

    #[tokio::test]
    async fn the_durability_asked_for_is_the_one_the_database_has() {
        let Some(db) = PgDatabase::create("durability").await else { return };
        for sync in [Durability::Full, Durability::Normal] {
            let store = yishi_engine::store::open(&StoreOptions { sync, ..StoreOptions::new(&db.url) }).await.unwrap();
            assert_eq!(store.durability().await.unwrap(), sync);
            store.close().await;
        }
        db.drop_now().await;
    }

    #[tokio::test]
    async fn a_server_that_does_not_answer_is_unavailable_and_named_without_its_password() {
        // A port nothing listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url = format!("postgres://yishi:s3cret@127.0.0.1:{port}/yishi");
        let options = StoreOptions { connect_timeout: Duration::from_secs(2), ..StoreOptions::new(&url) };
        let err = yishi_engine::store::open(&options).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&format!("127.0.0.1:{port}")) && !text.contains("s3cret"), "{text}");
    }

    #[tokio::test]
    async fn commands_do_not_set_up_a_database_yishi_never_used() {
        let Some(db) = PgDatabase::create("not_set_up").await else { return };
        let options = StoreOptions { create: false, ..StoreOptions::new(&db.url) };
        let err = yishi_engine::store::open(&options).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
        db.drop_now().await;
    }
}
