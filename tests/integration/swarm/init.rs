//! `playbooks/swarm-init.toml` (the `swarm` step) for real on this machine's engine through
//! two sshd hosts whose `docker` is the real one: the first manager initialises a single-node
//! swarm (changed), the second manager, waiting for its ticket, finds itself in it (ok); again,
//! nothing changes; a host asked to be a worker of the swarm it manages fails and is left as it
//! is. The join tokens appear on no command line and in no output. The engine's swarm is left
//! as it was found (the lock file makes concurrent runs' swarm tests take turns). Bad input:
//! a role that is neither is refused before any connection.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::harness::{Fleet, Run, all_cmdlines, assert_error_at, location_of, run_playbook_with};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const STEP: &str = "swarm membership";

fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker").args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The swarm tests' lock held, the engine in no swarm; on drop, the swarm this test made left.
struct NoSwarm {
    _lock: File,
}

impl NoSwarm {
    fn take() -> NoSwarm {
        let lock = File::create("/tmp/dropship-swarm-tests.lock").unwrap();
        // SAFETY: flock on a file descriptor this function owns.
        assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
        let (ok, state) = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
        assert!(ok, "{state}");
        assert_eq!(
            state.trim(),
            "inactive",
            "this test initialises a swarm: the engine must be in none"
        );
        NoSwarm { _lock: lock }
    }
}

impl Drop for NoSwarm {
    fn drop(&mut self) {
        let _ = docker(&["swarm", "leave", "--force"]);
    }
}

/// The fleet's inventory with `managers` in `swarm_managers`.
fn inventory(fleet: &Fleet, managers: &[&str], name: &str) -> PathBuf {
    let mut text = String::new();
    let mut host = String::new();
    for line in fleet.inventory().lines() {
        if let Some(h) = line.strip_prefix("[hosts.") {
            host = h.trim_end_matches(']').to_string();
        }
        if line == "groups = [\"web\"]" && managers.contains(&host.as_str()) {
            text.push_str("groups = [\"web\", \"swarm_managers\"]\n");
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    text.push_str("\n[groups.swarm_managers]\n");
    fleet.write(name, &text)
}

fn detail(run: &Run, host: &str) -> String {
    let report = run.report();
    report.host(host)["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == STEP)
        .unwrap_or_else(|| panic!("no step `{STEP}` on {host}\n{}", run.all()))["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn playbook() -> PathBuf {
    Path::new(REPO).join("playbooks/swarm-init.toml")
}

#[test]
#[ignore = "changes the shared engine's swarm state: run alone with `--ignored swarm::`"]
fn the_first_manager_initialises_the_swarm_once_and_hands_its_ticket_to_the_next() {
    let _swarm = NoSwarm::take();
    let fleet = Fleet::start(2);
    // Both hosts drive this machine's engine: their `docker` is the real one, with the real
    // compose plugin (the stand-in's plugin shim would call the real docker back forever).
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v docker"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for h in &fleet.hosts {
        let standin = h.dir.join("bin/docker");
        std::fs::remove_file(&standin).unwrap();
        std::os::unix::fs::symlink(real.trim(), &standin).unwrap();
        std::fs::remove_file(h.dir.join(".docker/cli-plugins/docker-compose")).unwrap();
    }
    let both = inventory(&fleet, &["h1", "h2"], "both.toml");

    // Every command line on the machine while dropship runs, to look for the tokens after.
    let stop = Arc::new(AtomicBool::new(false));
    let watch = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seen = std::collections::BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                seen.extend(all_cmdlines().into_iter().map(|(_, c)| c));
                std::thread::sleep(Duration::from_millis(10));
            }
            seen
        })
    };

    // The first manager (h1) initialises; h2 waits for its ticket and finds it manages it.
    let first = run_playbook_with("deploy", &both, &playbook(), &[]);
    first.assert_code(0);
    first.assert_outcome("h1", STEP, "changed");
    first.assert_outcome("h2", STEP, "ok");
    let (ok, cluster) = docker(&["info", "--format", "{{.Swarm.Cluster.ID}}"]);
    assert!(ok, "{cluster}");
    let cluster = cluster.trim();
    assert!(
        detail(&first, "h1").starts_with(&format!(
            "initialised swarm {cluster} advertising 127.0.0.1"
        )),
        "{}",
        first.all()
    );
    assert_eq!(detail(&first, "h2"), "already a manager of the swarm");

    // Again: nothing to do anywhere.
    let again = run_playbook_with("deploy", &both, &playbook(), &[]);
    again.assert_code(0);
    again.assert_outcome("h1", STEP, "ok");
    again.assert_outcome("h2", STEP, "ok");
    assert!(
        detail(&again, "h1").starts_with(&format!("already a manager of swarm {cluster}")),
        "{}",
        again.all()
    );

    // h2 asked to be a worker of the swarm it manages: refused, nothing changed.
    let one = inventory(&fleet, &["h1"], "one.toml");
    let worker = run_playbook_with("deploy", &one, &playbook(), &[]);
    worker.assert_code(1);
    worker.assert_outcome("h1", STEP, "ok");
    worker.assert_outcome("h2", STEP, "FAILED");
    let why = detail(&worker, "h2");
    assert!(
        why.starts_with("already a manager of the swarm, not a worker: nothing changed"),
        "{}",
        worker.all()
    );
    let (_, managers) = docker(&[
        "info",
        "--format",
        "{{.Swarm.Managers}} {{.Swarm.ControlAvailable}}",
    ]);
    assert_eq!(managers.trim(), "1 true");

    stop.store(true, Ordering::Relaxed);
    let cmdlines = watch.join().unwrap();
    for which in ["worker", "manager"] {
        let (ok, token) = docker(&["swarm", "join-token", "-q", which]);
        assert!(ok, "{token}");
        let token = token.trim();
        assert!(token.starts_with("SWMTKN-"), "{token}");
        for run in [&first, &again, &worker] {
            assert!(!run.all().contains(token), "the {which} token in output");
            let report = std::fs::read_to_string(run.report_path.as_ref().unwrap()).unwrap();
            assert!(!report.contains(token), "the {which} token in the report");
        }
        // (The test's own `docker swarm join-token` above ran after the watch stopped.)
        let leaks: Vec<&String> = cmdlines.iter().filter(|c| c.contains(token)).collect();
        assert!(
            leaks.is_empty(),
            "the {which} token on a command line: {leaks:?}"
        );
    }
    assert!(
        cmdlines.iter().any(|c| c.contains("docker swarm init")),
        "the watch saw the run"
    );
}

#[test]
fn a_swarm_role_that_is_neither_is_refused_before_any_connection() {
    let fleet = Fleet::start(1);
    let pb = fleet.write(
        "bad.toml",
        "name = \"bad\"\napp = \"x\"\nhosts = \"web\"\n\n[[steps]]\nswarm = { role = \"{{ 'leader' }}\", advertise_addr = \"127.0.0.1\" }\n",
    );
    let run = run_playbook_with("deploy", &fleet.write_inventory(""), &pb, &[]);
    run.assert_code(2);
    assert_error_at(
        &run,
        &location_of(&pb, "\"{{ 'leader' }}\""),
        "bad swarm role `leader`",
    );
    assert!(
        run.stderr.contains("write \"manager\" or \"worker\""),
        "{}",
        run.all()
    );
    assert_eq!(
        fleet.host("h1").sshd_log().matches("Accepted").count(),
        0,
        "{}",
        run.all()
    );
}
