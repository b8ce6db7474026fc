//! `[rollout] first` over real sshd: the `db` group's hosts are deployed to their last step
//! (health check included) before any other host starts, a failure there halts the rollout
//! whatever `max_failures` says, and an item that names no host is bad input.

use std::fs;
use std::path::{Path, PathBuf};

use crate::harness::{
    Fleet, Run, assert_error_at, dropship, dropship_reporting, location_of, start_fleet,
};

/// The fleet's inventory with `db_hosts` also in the group `db`.
fn inventory_with_db(fleet: &Fleet, db_hosts: &[&str]) -> PathBuf {
    let mut text = fleet.inventory();
    for h in db_hosts {
        let plain = format!("[hosts.{h}]\naddress = \"127.0.0.1\"\ngroups = [\"web\"]\n");
        assert!(text.contains(&plain), "inventory layout changed:\n{text}");
        text = text.replace(
            &plain,
            &format!("[hosts.{h}]\naddress = \"127.0.0.1\"\ngroups = [\"web\", \"db\"]\n"),
        );
    }
    text.push_str("\n[groups.db]\n");
    fleet.write("inventory.toml", &text)
}

/// Every step appends `HOST STEP` to one log shared by all hosts (they are all this machine),
/// so the file's order is the order the steps ran in. `slow` gives a host time to overlap
/// another; the health check fails on a host whose app dir holds `unhealthy`.
fn playbook(fleet: &Fleet, rollout: &str) -> PathBuf {
    let log = fleet.dir.path().join("order.log");
    let body = format!(
        r#"[vars]
log = "{log}"

[rollout]
{rollout}

[[steps]]
name = "start"
run = "echo {{{{ host.name }}}} start >> {{{{ log }}}}"

[[steps]]
name = "slow"
run = "sleep 0.5"

[[steps]]
name = "healthy"
health = {{ command = "echo {{{{ host.name }}}} health >> {{{{ log }}}}; test ! -f {{{{ app_dir }}}}/unhealthy", timeout = "1s", interval = "200ms" }}

[[steps]]
name = "end"
run = "echo {{{{ host.name }}}} end >> {{{{ log }}}}"
"#,
        log = log.display()
    );
    fleet.write_playbook("first.toml", "First", "first", &body)
}

fn deploy(inventory: &Path, playbook: &Path) -> Run {
    dropship_reporting(
        &[
            "deploy",
            "-i",
            inventory.to_str().unwrap(),
            playbook.to_str().unwrap(),
        ],
        None,
    )
}

/// The shared log as `(host, event)` pairs, in the order written.
fn order(fleet: &Fleet) -> Vec<(String, String)> {
    fs::read_to_string(fleet.dir.path().join("order.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let (host, what) = l.split_once(' ').unwrap();
            (host.to_string(), what.to_string())
        })
        .collect()
}

#[test]
fn the_db_group_is_deployed_fully_before_any_other_host_starts() {
    let fleet = start_fleet(4);
    // h3 is the database; the canary is the first of the rest (h1), then the others at once.
    let inventory = inventory_with_db(&fleet, &["h3"]);
    let playbook = playbook(&fleet, "first = \"db\"\ncanary = 1");
    // `check` shows the order before anything runs.
    let check = dropship(
        &[
            "check",
            "-i",
            inventory.to_str().unwrap(),
            playbook.to_str().unwrap(),
        ],
        None,
    );
    check.assert_code(0);
    assert!(
        check.stdout.contains(
            "rollout:\n  batch 1/3 (first: db): h3\n  batch 2/3: h1\n  batch 3/3: h2, h4\n"
        ),
        "{}",
        check.all()
    );
    assert!(order(&fleet).is_empty());
    let run = deploy(&inventory, &playbook);
    run.assert_code(0);
    for line in [
        "== batch 1/3 (first: db): h3\n",
        "== batch 2/3: h1\n",
        "== batch 3/3: h2, h4\n",
    ] {
        assert!(run.stdout.contains(line), "no `{line}`\n{}", run.all());
    }
    let order = order(&fleet);
    let position = |host: &str, what: &str| {
        order
            .iter()
            .position(|(h, w)| h == host && w == what)
            .unwrap_or_else(|| panic!("no `{host} {what}` in {order:?}"))
    };
    let db_end = position("h3", "end");
    assert!(position("h3", "health") < db_end);
    for app in ["h1", "h2", "h4"] {
        assert!(
            db_end < position(app, "start"),
            "{app} started before the db host ended: {order:?}"
        );
        run.assert_status(app, "ok");
    }
    // The canary still goes alone among the rest.
    for later in ["h2", "h4"] {
        assert!(
            position("h1", "end") < position(later, "start"),
            "{order:?}"
        );
    }
    run.assert_status("h3", "ok");
}

#[test]
fn a_failing_first_stage_halts_the_rollout_whatever_max_failures_says() {
    let fleet = start_fleet(3);
    let inventory = inventory_with_db(&fleet, &["h2"]);
    fs::write(fleet.host("h2").root.join("unhealthy"), "").unwrap();
    let playbook = playbook(&fleet, "first = [\"db\"]\nmax_failures = 2");
    let run = deploy(&inventory, &playbook);
    run.assert_code(1);
    run.assert_status("h2", "failed");
    run.assert_outcome("h2", "healthy", "FAILED");
    run.assert_outcome("h2", "end", "skipped");
    for app in ["h1", "h3"] {
        run.assert_status(app, "not deployed");
    }
    assert!(
        run.stdout
            .contains("== rollout halted: 1 of 1 host(s) of `first` stage `db` failed (batch 1/2)"),
        "{}",
        run.all()
    );
    // Nothing ran on the other hosts.
    assert!(
        order(&fleet).iter().all(|(h, _)| h == "h2"),
        "{:?}",
        order(&fleet)
    );
}

#[test]
fn a_first_item_that_names_no_host_is_bad_input_with_a_suggestion() {
    let fleet = start_fleet(1);
    let inventory = inventory_with_db(&fleet, &["h1"]);
    let playbook = playbook(&fleet, "first = [\"dbb\"]");
    let run = deploy(&inventory, &playbook);
    run.assert_code(2);
    let at = location_of(&playbook, "\"dbb\"");
    assert_error_at(
        &run,
        &at,
        "first: `dbb` matches no host, group or glob in the inventory",
    );
    assert!(
        run.stderr.contains("key: `rollout.first.0`"),
        "{}",
        run.all()
    );
    assert!(
        run.stderr.contains("hint: did you mean `db`?"),
        "{}",
        run.all()
    );
    // Nothing was touched: not even a connection's worth of steps.
    assert!(order(&fleet).is_empty());
    assert!(!fleet.host("h1").root.join(".dropship").exists());
}
