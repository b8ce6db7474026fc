//! What a run says about itself: the summary table, its last lines and the JSON report name
//! what happened (a failure without a rollout is no halted rollout, a held lock is a lock
//! conflict, an unreachable host failed).

use std::fs;
use std::path::{Path, PathBuf};

use crate::harness::{Fleet, Run, TestHost, start_fleet};

/// A playbook of app `rep` (no `[rollout]`): one step that fails on hosts with a `broken`
/// file in their root.
fn write_playbook(fleet: &Fleet) -> PathBuf {
    fleet.write_playbook(
        "rep.toml",
        "reports",
        "rep",
        "[[steps]]\nname = \"check\"\nrun = \"test ! -f {{ app_dir }}/broken\"\n\n[[steps]]\nname = \"mark\"\nrun = \"touch {{ app_dir }}/marked\"\n",
    )
}

fn deploy(fleet: &Fleet, json: &Path) -> Run {
    fleet.deploy(&write_playbook(fleet), &["--json", json.to_str().unwrap()])
}

fn break_host(h: &TestHost) {
    fs::write(h.root.join("broken"), "").unwrap();
}

#[test]
fn a_failure_without_rollout_is_no_halted_rollout() {
    let fleet = start_fleet(2);
    break_host(fleet.host("h1"));
    let path = fleet.dir.path().join("report.json");
    let run = deploy(&fleet, &path);
    run.assert_code(1);
    assert!(!run.all().contains("halted"), "{}", run.all());
    assert!(!run.all().contains("max_failures"), "{}", run.all());
    run.assert_counts(2, 1, 1);
    let report = run.report();
    assert!(report.get("halted").is_none(), "{report:#}");
    assert_eq!(report["counts"]["failed"], 1, "{report:#}");
    assert_eq!(report["counts"]["ok"], 1, "{report:#}");
}

#[test]
fn a_held_lock_is_reported_as_a_lock_conflict() {
    let fleet = start_fleet(2);
    let lock = fleet.host("h2").root.join(".dropship/lock");
    fs::create_dir_all(&lock).unwrap();
    fs::write(
        lock.join("info"),
        "holder=ghost@old-ci\nsince=2020-01-01T00:00:00Z\nplaybook=reports\ncommand=deploy\nrelease=\ntoken=ghost-1\n",
    )
    .unwrap();
    let path = fleet.dir.path().join("report.json");
    let run = deploy(&fleet, &path);
    run.assert_code(1);
    assert!(!run.all().contains("halted"), "{}", run.all());
    assert!(
        run.stdout
            .contains("lock conflict: h2 is locked by ghost@old-ci since 2020-01-01T00:00:00Z"),
        "{}",
        run.all()
    );
    for h in &fleet.hosts {
        assert!(!h.root.join("marked").exists(), "{} deployed", h.name);
    }
    let report = run.report();
    assert!(report.get("halted").is_none(), "{report:#}");
    assert!(
        report["lock_conflict"]
            .as_str()
            .is_some_and(|t| t.starts_with("h2 is locked by ghost@old-ci")),
        "{report:#}"
    );
    assert_eq!(report["counts"]["ok"], 0, "{report:#}");
    assert_eq!(report["counts"]["not_deployed"], 2, "{report:#}");
}

#[test]
fn an_unreachable_host_is_failed_not_skipped() {
    let mut fleet = start_fleet(2);
    fleet.host_mut("h2").stop();
    let path = fleet.dir.path().join("report.json");
    let run = deploy(&fleet, &path);
    run.assert_code(1);
    let port = fleet.host("h2").port;
    // Said first, when it happens, before its steps are listed as not run.
    let first = run.host_text("h2").lines().next().unwrap_or("").to_string();
    assert_eq!(
        first,
        format!("[h2] FAILED   cannot reach 127.0.0.1:{port}: connection refused"),
        "{}",
        run.all()
    );
    let row = run.summary_row("h2").unwrap();
    assert!(
        row.ends_with("connection refused") && row.contains("failed: cannot reach"),
        "{row}"
    );
    run.assert_counts(2, 1, 1);
    let report = run.report();
    assert_eq!(report["counts"]["failed"], 1, "{report:#}");
    assert!(
        report.host("h2")["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("cannot reach")),
        "{report:#}"
    );
}
