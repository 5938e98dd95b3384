//! Drives a case through every control-flow pattern in `docs/patterns/`, and checks after
//! each that the stored state equals the replay of its history.

mod common;

use common::*;
use serde_json::json;
use yishi_core::runtime::{Event, Status};
use yishi_engine::service::EngineError;

#[tokio::test]
async fn sequence_runs_step_after_step() {
    let h = patterns().await;
    let staff = actor("li", &["staff"]);
    let c = h.start("wcp/sequence", json!({})).await;
    assert_eq!(steps(&c), ["register"]);
    let c = h.act(c.id, "register", &staff, json!({})).await.unwrap();
    assert_eq!(steps(&c), ["study"]);
    let c = h.act(c.id, "done", &staff, json!({})).await.unwrap();
    assert_eq!(c.status, Status::Completed);
    assert!(c.active_steps.is_empty());
    h.assert_replays(c.id).await;
}

#[tokio::test]
async fn refused_actions_change_nothing_and_are_recorded() {
    let h = patterns().await;
    let c = h.start("wcp/sequence", json!({})).await;
    let err = h.act(c.id, "register", &actor("wang", &["resident"]), json!({})).await.unwrap_err();
    assert!(matches!(err, EngineError::Forbidden(_)), "{err:?}");
    let err = h.act(c.id, "done", &actor("li", &["staff"]), json!({})).await.unwrap_err();
    assert!(matches!(err, EngineError::Refused { .. }), "{err:?}");
    let err = h.act(c.id, "register", &actor("li", &["staff"]), json!({"extra": 1})).await.unwrap_err();
    assert!(matches!(&err, EngineError::Refused { field: Some(f), .. } if f == "extra"), "{err:?}");
    let now = h.engine.view(c.id).await.unwrap();
    assert_eq!(now.revision, c.revision);
    assert_eq!(steps(&now), ["register"]);
    let refused = h.events(c.id).await.iter().filter(|e| matches!(e, Event::Refused { .. })).count();
    assert_eq!(refused, 3);
    h.assert_replays(c.id).await;
}

#[tokio::test]
async fn parallel_split_waits_for_both_branches() {
    let h = patterns().await;
    let c = h.start("wcp/parallel", json!({})).await;
    assert_eq!(steps(&c), ["property_opinion", "committee_opinion"]);
    let c = h.act(c.id, "submit", &actor("c1", &["committee"]), json!({"opinion": "yes"})).await.unwrap();
    assert_eq!(steps(&c), ["property_opinion"]);
    let c = h.act(c.id, "submit", &actor("p1", &["property"]), json!({"opinion": "ok"})).await.unwrap();
    assert_eq!(c.status, Status::Completed);
    h.assert_replays(c.id).await;
}

#[tokio::test]
async fn exclusive_choice_routes_by_rule_and_paths_merge() {
    let h = patterns().await;
    let staff = actor("li", &["staff"]);
    let big = h.start("wcp/choice", json!({"cost": 80_000})).await;
    assert_eq!(steps(&big), ["assembly"]);
    let small = h.start("wcp/choice", json!({"cost": 300})).await;
    assert_eq!(steps(&small), ["representatives"]);
    for id in [big.id, small.id] {
        let c = h.act(id, "decided", &staff, json!({})).await.unwrap();
        assert_eq!(steps(&c), ["record"]);
        h.assert_replays(id).await;
    }
}

#[tokio::test]
async fn multi_choice_joins_only_the_branches_taken() {
    let h = patterns().await;
    let staff = actor("li", &["staff"]);
    let c = h.start("wcp/multichoice", json!({"kinds": ["safety", "dispute"]})).await;
    assert_eq!(steps(&c), ["police", "legal"]);
    let c = h.act_at(c.id, "legal", "answered", &staff, json!({})).await.unwrap();
    assert_eq!(steps(&c), ["police"]);
    let c = h.act(c.id, "answered", &staff, json!({})).await.unwrap();
    assert_eq!(c.status, Status::Completed);
    h.assert_replays(c.id).await;
    // No branch taken: the join fires at once.
    let none = h.start("wcp/multichoice", json!({"kinds": []})).await;
    assert_eq!(none.status, Status::Completed);
    h.assert_replays(none.id).await;
}

#[tokio::test]
async fn structured_loop_revotes_until_the_limit() {
    let h = patterns().await;
    let staff = actor("li", &["staff"]);
    let c = h.start("wcp/loop", json!({})).await;
    let mut id = c.id;
    for round in 1..=3 {
        let c = h.act(id, "failed", &staff, json!({})).await.unwrap();
        if round < 3 {
            assert_eq!(steps(&c), ["revise"], "round {round}");
            let c = h.act(c.id, "revised", &staff, json!({})).await.unwrap();
            assert_eq!(steps(&c), ["vote"]);
        } else {
            assert_eq!(c.status, Status::Completed);
            assert_eq!(c.outcome.as_deref(), Some("dropped"));
        }
        id = c.id;
    }
    h.assert_replays(id).await;
    let c = h.start("wcp/loop", json!({})).await;
    let c = h.act(c.id, "passed", &staff, json!({})).await.unwrap();
    assert_eq!(c.outcome.as_deref(), Some("adopted"));
}

#[tokio::test]
async fn deferred_choice_response_wins_before_the_deadline() {
    let h = patterns().await;
    let c = h.start("wcp/deferred", json!({})).await;
    let c = h.act(c.id, "respond", &actor("police", &["department"]), json!({"answer": "on our way"})).await.unwrap();
    assert_eq!(c.outcome.as_deref(), Some("responded"));
    // The deadline of the step left is void: it never fires.
    h.advance(30 * DAY);
    assert_eq!(h.engine.fire_due().await.unwrap(), 0);
    assert_eq!(h.engine.view(c.id).await.unwrap().revision, c.revision);
    h.assert_replays(c.id).await;
}

#[tokio::test]
async fn deferred_choice_deadline_wins_in_working_days_never_early() {
    let h = patterns().await;
    // Friday 10:00 + 3 working days = Wednesday 10:00; the reminder is a day before.
    let c = h.start("wcp/deferred", json!({})).await;
    h.advance(4 * DAY); // Tuesday 10:00
    assert_eq!(h.engine.fire_due().await.unwrap(), 1, "the reminder is due");
    let v = h.engine.view(c.id).await.unwrap();
    assert_eq!(steps(&v), ["await_response"], "not overdue yet");
    assert!(h.events(c.id).await.iter().any(|e| matches!(e, Event::Notified { notice } if notice.topic == "reminder")));
    h.advance(DAY - 1); // one millisecond before the deadline
    assert_eq!(h.engine.fire_due().await.unwrap(), 0, "never early");
    h.advance(1);
    assert_eq!(h.engine.fire_due().await.unwrap(), 1);
    let v = h.engine.view(c.id).await.unwrap();
    assert_eq!(v.outcome.as_deref(), Some("escalated"));
    assert_eq!(h.engine.fire_due().await.unwrap(), 0, "fires once");
    h.assert_replays(c.id).await;
}

#[tokio::test]
async fn foreach_opens_one_branch_per_item() {
    let h = patterns().await;
    let dept = actor("d", &["department"]);
    let c = h.start("wcp/foreach", json!({"departments": ["police", "judicial", "legal"]})).await;
    assert_eq!(steps(&c), ["report", "report", "report"]);
    let err = h.act(c.id, "report", &dept, json!({})).await.unwrap_err();
    assert!(matches!(&err, EngineError::Refused { field: Some(f), .. } if f == "token"), "{err:?}");
    let row = h.engine.get(c.id).await.unwrap();
    let items: Vec<_> = row.state.tokens.iter().map(|t| t.item.clone().unwrap()).collect();
    assert_eq!(items, [json!("police"), json!("judicial"), json!("legal")]);
    let ids: Vec<u32> = row.state.tokens.iter().map(|t| t.id).collect();
    for (i, t) in ids.iter().enumerate() {
        let v = h.act_token(c.id, *t, "report", &dept).await.unwrap();
        assert_eq!(v.status == Status::Completed, i == 2);
    }
    h.assert_replays(c.id).await;
    let empty = h.start("wcp/foreach", json!({"departments": []})).await;
    assert_eq!(empty.status, Status::Completed);
}

#[tokio::test]
async fn partial_join_goes_on_after_two_of_three_and_cancels_the_third() {
    let h = patterns().await;
    let r = actor("r", &["reviewer"]);
    let c = h.start("wcp/partial", json!({})).await;
    h.act_at(c.id, "review_c", "sign", &r, json!({})).await.unwrap();
    let v = h.act_at(c.id, "review_a", "sign", &r, json!({})).await.unwrap();
    assert_eq!(v.status, Status::Completed);
    assert!(h.events(c.id).await.iter().any(|e| matches!(e, Event::TokenCancelled { step, .. } if step == "review_b")));
    h.assert_replays(c.id).await;
}

#[tokio::test]
async fn explicit_termination_ends_every_branch() {
    let h = patterns().await;
    let c = h.start("wcp/terminate", json!({})).await;
    let v = h.act(c.id, "withdraw", &actor("zhang", &["resident"]), json!({})).await.unwrap();
    assert_eq!(v.status, Status::Completed);
    assert_eq!(v.outcome.as_deref(), Some("withdrawn"));
    assert!(
        h.events(c.id).await.iter().any(|e| matches!(e, Event::TokenCancelled { step, .. } if step == "deliberate"))
    );
    h.assert_replays(c.id).await;
}

#[tokio::test]
async fn cancelling_a_step_lets_the_join_fire_with_the_rest() {
    let h = patterns().await;
    let c = h.start("wcp/parallel", json!({})).await;
    let admin = actor("admin", &["staff"]);
    let v =
        h.engine.cancel(c.id, Some("property_opinion"), "the property company has no manager", &admin).await.unwrap();
    assert_eq!(steps(&v), ["committee_opinion"]);
    let v = h.act(c.id, "submit", &actor("c1", &["committee"]), json!({"opinion": "yes"})).await.unwrap();
    assert_eq!(v.status, Status::Completed);
    h.assert_replays(c.id).await;
}

#[tokio::test]
async fn cancelling_a_case_closes_it_for_good() {
    let h = patterns().await;
    let c = h.start("wcp/deferred", json!({})).await;
    let v = h.engine.cancel(c.id, None, "duplicate of case 7", &actor("admin", &["staff"])).await.unwrap();
    assert_eq!(v.status, Status::Cancelled);
    let err = h.act(c.id, "respond", &actor("p", &["department"]), json!({"answer": "x"})).await.unwrap_err();
    assert!(matches!(err, EngineError::Closed(_)), "{err:?}");
    h.advance(30 * DAY);
    assert_eq!(h.engine.fire_due().await.unwrap(), 0, "a cancelled case's deadlines are void");
    h.assert_replays(c.id).await;
}
