//! The working-day calendar as an admin meets it: deadlines skip the holidays and keep the
//! make-up working days of the shipped calendar; counting into a year the calendar does not
//! cover is a check warning and, at run time, a note on the case's history; a district's own
//! closures layer over the national calendar.

mod common;

use std::path::Path;
use std::sync::Arc;

use chrono::TimeZone;
use serde_json::Map;
use yishi_core::FileSet;
use yishi_core::kind::Actor;
use yishi_core::runtime::Event;
use yishi_core::script::Sandbox;

fn china() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows/calendars/china.toml")).unwrap()
}

/// Noon in Beijing on the given day, in Unix milliseconds.
fn beijing(y: i32, m: u32, d: u32) -> i64 {
    chrono::FixedOffset::east_opt(8 * 3600).unwrap().with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap().timestamp_millis()
}

fn files(deadline: &str) -> FileSet {
    let mut f = FileSet::new();
    f.insert("calendars/china.toml", china());
    f.insert(
        "u/w.toml",
        format!(
            "id = \"w\"\ncalendar = \"../calendars/china.toml\"\n[[steps]]\nid = \"reply\"\nkind = \"task\"\nroles = [\"*\"]\nactions.reply = {{}}\ndeadline = {{ after = \"{deadline}\", outcome = \"reply\" }}\nnext = \"end\"\n[[steps]]\nid = \"end\"\nkind = \"end\"\n"
        ),
    );
    f
}

#[test]
fn a_deadline_that_would_run_past_the_covered_years_is_a_check_warning() {
    let catalog = yishi_core::check(&files("10wd"), &yishi::registry(), &Arc::new(Sandbox::default()));
    assert!(!catalog.has_errors(), "{:?}", catalog.diagnostics);
    let quiet = yishi_core::check::calendar_warnings(&catalog, beijing(2026, 6, 1));
    assert!(quiet.is_empty(), "{quiet:?}");
    let warned = yishi_core::check::calendar_warnings(&catalog, beijing(2026, 12, 24));
    assert_eq!(warned.len(), 1, "{warned:?}");
    let d = &warned[0];
    assert_eq!((d.code.as_str(), d.is_error()), ("Y0114", false));
    let en = d.render_line(yishi_core::i18n::Lang::En);
    assert!(en.contains("10wd") && en.contains("2027") && en.contains("calendars/china.toml"), "{en}");
    let zh = d.render_line(yishi_core::i18n::Lang::ZhCn);
    assert!(zh.contains("2027 年") && zh.contains("calendars/china.toml"), "{zh}");
}

#[tokio::test]
async fn counting_into_an_uncovered_year_is_noted_on_the_case_and_national_day_is_skipped() {
    let (engine, clock) = common::quiet_engine().await;
    assert!(engine.activate_files(&files("5wd"), "test").await.unwrap().ok);
    let staff = Actor { id: "staff".into(), roles: vec![] };

    // Monday 28 September 2026: five working days are the 29th and 30th, then (skipping the
    // National Day holidays, 1-7 October) Thursday 8, Friday 9 and the make-up Saturday 10.
    clock.set(beijing(2026, 9, 28));
    let a = engine.start("u/w", Map::new(), &staff, None).await.unwrap();
    let due = engine.timers(a.id).await.unwrap()[0].due_at;
    assert_eq!(due, beijing(2026, 10, 10));
    assert!(!engine.history(a.id).await.unwrap().iter().any(|e| matches!(e.event, Event::Noted { .. })));

    // Monday 28 December 2026: five working days reach into 2027, which the calendar does not know.
    clock.set(beijing(2026, 12, 28));
    let b = engine.start("u/w", Map::new(), &staff, None).await.unwrap();
    let notes: Vec<String> = engine
        .history(b.id)
        .await
        .unwrap()
        .iter()
        .filter_map(|e| match &e.event {
            Event::Noted { step, note } => Some(format!("{step}: {}", note.render(yishi_core::i18n::Lang::En))),
            _ => None,
        })
        .collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].starts_with("reply: ") && notes[0].contains("2027"), "{notes:?}");
}

#[test]
fn a_district_calendar_adds_its_closures_to_the_national_one() {
    let mut f = files("3wd");
    f.insert(
        "u/calendars/local.toml",
        "extends = \"../../calendars/china.toml\"\nholidays = [2026-06-02]\n".to_owned(),
    );
    let w = f
        .get("u/w.toml")
        .unwrap()
        .replace("calendar = \"../calendars/china.toml\"", "calendar = \"calendars/local.toml\"");
    f.insert("u/w.toml", w);
    let catalog = yishi_core::check(&f, &yishi::registry(), &Arc::new(Sandbox::default()));
    assert!(!catalog.has_errors(), "{:?}", catalog.diagnostics);
    let cal = &catalog.definitions["u/w"].calendar;
    // Monday 1 June 2026 + 3 working days: the local closure on Tuesday 2 June is skipped.
    assert_eq!(cal.add(beijing(2026, 6, 1), yishi_core::duration::Duration::WorkingDays(3)), beijing(2026, 6, 5));
    // The national holidays are still there (Dragon Boat Festival, 19 June 2026).
    assert!(!cal.is_working_day(chrono::NaiveDate::from_ymd_opt(2026, 6, 19).unwrap()));
}

#[tokio::test]
async fn the_api_shows_a_month_of_the_calendar_a_workflow_counts_by() {
    let api = common::api::Api::new().await;
    let t = api.token("viewer", "*", &[]).await;
    let uri = "/api/v1/workflows/pingcheng/yongtai/liuhangli/proposal/calendar?month=2026-10";
    let (s, v) = api.call("GET", uri, Some(&t), None).await;
    assert_eq!(s, axum::http::StatusCode::OK, "{v}");
    assert_eq!(v["covered"], true);
    assert!(v["notice"].as_str().unwrap().contains("2026"), "{v}");
    let days = v["days"].as_array().unwrap();
    assert_eq!(days.len(), 31);
    let kind = |d: usize| days[d - 1]["kind"].as_str().unwrap().to_owned();
    assert_eq!(
        (kind(1), kind(7), kind(8), kind(10), kind(11)),
        ("holiday".into(), "holiday".into(), "working".into(), "make_up".into(), "weekend".into())
    );
    assert_eq!(days[0]["name"], "国庆节");
    let (s, v) = api.call("GET", &uri.replace("2026-10", "2026-13"), Some(&t), None).await;
    assert_eq!((s, v["field"].as_str()), (axum::http::StatusCode::BAD_REQUEST, Some("month")));
}
