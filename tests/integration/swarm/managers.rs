//! `[swarm] managers`: the shipped swarm example deployed and rolled back through the first
//! manager that connects (the first in inventory order has nothing listening on its port),
//! the last one never touched.

use super::{PLAYBOOK, STEP, Swarm, detail};
use crate::harness::{Flavor, Fleet, LocalFleet, free_port, logins, read_or_empty, start_fleet};

#[test]
#[ignore = "changes the shared engine's swarm state: run alone with `--ignored swarm::`"]
fn a_swarm_deploys_and_rolls_back_through_the_first_reachable_manager_only() {
    let fleet = LocalFleet::start("swarm-managers", 3, Flavor::V2);
    let (unreachable, used, spare) = (fleet.host(1), fleet.host(2), fleet.host(3));
    let stack = format!("pixel-{used}");
    let _swarm = Swarm::join(&stack);
    // The first manager's sshd is gone: its port has nothing listening.
    let inventory = read_or_empty(&fleet.inventory());
    let first_port = inventory
        .lines()
        .skip_while(|l| *l != format!("[hosts.{unreachable}]"))
        .find_map(|l| l.strip_prefix("ssh = { port = "))
        .unwrap()
        .trim_end_matches(" }")
        .to_string();
    let dead = free_port().to_string();
    std::fs::write(
        fleet.inventory(),
        inventory.replacen(
            &format!("ssh = {{ port = {first_port} }}"),
            &format!("ssh = {{ port = {dead} }}"),
            1,
        ),
    )
    .unwrap();
    let sshd_log = |host: &str| {
        read_or_empty(
            &fleet
                .project()
                .join(".fleet/hosts")
                .join(host)
                .join("sshd.log"),
        )
    };
    let spare_logins = logins(&sshd_log(&spare));

    for (command, version) in [("deploy", "A"), ("deploy", "B"), ("rollback", "")] {
        let run = if command == "deploy" {
            fleet.deploy(PLAYBOOK, &["--var", &format!("version={version}")])
        } else {
            fleet.rollback(PLAYBOOK, &[])
        };
        run.assert_code(0);
        let step = if command == "deploy" {
            STEP.to_string()
        } else {
            format!("rollback: {STEP}")
        };
        run.assert_outcome(&used, &step, "changed");
        assert!(
            detail(&run, &used, &step).contains(&format!("{stack}_web:")),
            "{}",
            run.all()
        );
        let report = run.report();
        let note = |host: &str| report.host(host)["note"].as_str().unwrap_or("").to_string();
        assert!(
            note(&unreachable).starts_with("skipped: unreachable: "),
            "{command}: {}",
            run.all()
        );
        assert_eq!(
            note(&spare),
            format!("not used: the swarm is deployed through {used}"),
            "{}",
            run.all()
        );
        assert!(
            run.all().contains(&format!(
                "swarm: deploying through manager {used}; skipped {unreachable} (unreachable: "
            )),
            "{}",
            run.all()
        );
        for host in [&unreachable, &spare] {
            assert!(report.host(host)["steps"].as_array().unwrap().is_empty());
            assert!(report.host(host).get("error").is_none(), "{}", run.all());
        }
    }

    // Lock and audit only on the manager used; the spare never even logged in.
    let audit = read_or_empty(&fleet.app_dir(2).join(".dropship/audit.log"));
    assert_eq!(audit.lines().count(), 3, "{audit}");
    assert!(audit.contains("rollback"), "{audit}");
    for k in [1, 3] {
        assert!(!fleet.app_dir(k).join(".dropship").exists(), "host {k}");
    }
    assert_eq!(logins(&sshd_log(&spare)), spare_logins);
}

/// Fleet hosts h1..hN whose docker stand-in says `states[i]` to `docker info`, and a swarm
/// playbook with one `stack` step over them.
fn stand_in_swarm(states: &[&str]) -> (Fleet, std::path::PathBuf) {
    let fleet = start_fleet(states.len());
    for (i, state) in states.iter().enumerate() {
        std::fs::write(
            fleet.host(&format!("h{}", i + 1)).dir.join("docker.swarm"),
            state,
        )
        .unwrap();
    }
    let playbook = fleet.write(
        "swarm.toml",
        "name = \"s\"\napp = \"s\"\n\n[swarm]\nmanagers = \"web\"\n\n[[steps]]\nname = \"deploy stack\"\nonce = true\nstack = { file = \"/srv/stack.yml\", name = \"s\" }\n",
    );
    (fleet, playbook)
}

#[test]
fn a_swarm_run_skips_hosts_in_no_swarm_and_workers_and_deploys_on_the_first_manager() {
    let (fleet, playbook) = stand_in_swarm(&[
        "inactive false",
        "active false",
        "active true",
        "active true",
    ]);
    // A dry run looks at the manager it would use only.
    let dry = fleet.deploy(&playbook, &["--dry-run"]);
    dry.assert_code(0);
    assert!(
        dry.stdout.contains("h2\n  left alone: skipped: a swarm worker, not a manager\nh3\n  - deploy stack: would run: ")
            && dry.stdout.contains("h4\n  left alone: not used: the swarm is deployed through h3\n")
            && dry.stdout.contains("would run on 1 host(s)"),
        "{}",
        dry.all()
    );
    let run = fleet.deploy(&playbook, &[]);
    run.assert_code(0);
    // `once` does not keep the step from the third host: there it is the first to deploy.
    run.assert_outcome("h3", "deploy stack", "ok");
    let report = run.report();
    let note = |host: &str| report.host(host)["note"].as_str().unwrap_or("").to_string();
    assert_eq!(note("h1"), "skipped: in no swarm");
    assert_eq!(note("h2"), "skipped: a swarm worker, not a manager");
    assert_eq!(note("h4"), "not used: the swarm is deployed through h3");
    assert!(
        run.all().contains("swarm: deploying through manager h3; skipped h1 (in no swarm), h2 (a swarm worker, not a manager)"),
        "{}",
        run.all()
    );
    for host in ["h1", "h2"] {
        // Asked once by the dry run, once by the deploy: nothing else.
        let commands = fleet.host(host).docker_commands();
        assert!(
            commands.len() == 2 && commands.iter().all(|c| c.starts_with("info --format")),
            "{host}: {commands:?}"
        );
    }
    assert!(
        fleet
            .host("h3")
            .docker_commands()
            .iter()
            .any(|c| c.starts_with("stack deploy"))
    );
    assert!(fleet.host("h4").docker_log().is_empty());
    assert_eq!(
        logins(&read_or_empty(&fleet.host("h4").dir.join("sshd.log"))),
        0
    );
    // Lock and audit on h3 only.
    assert!(fleet.host("h3").root.join(".dropship/audit.log").exists());
    for host in ["h1", "h2", "h4"] {
        assert!(!fleet.host(host).root.join(".dropship").exists(), "{host}");
    }
}

#[test]
fn a_swarm_run_with_no_usable_manager_fails_each_saying_why() {
    let (fleet, playbook) = stand_in_swarm(&["active false", "pending false"]);
    let run = fleet.deploy(&playbook, &[]);
    run.assert_code(1);
    let report = run.report();
    let error = |host: &str| {
        report.host(host)["error"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(
        error("h1"),
        "not usable as the swarm's manager: a swarm worker, not a manager"
    );
    assert_eq!(
        error("h2"),
        "not usable as the swarm's manager: its swarm node state is `pending`, not active"
    );
    for host in ["h1", "h2"] {
        assert!(!fleet.host(host).root.join(".dropship").exists(), "{host}");
    }
}
