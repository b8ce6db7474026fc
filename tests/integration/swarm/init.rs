//! `playbooks/swarm-init.toml` (the `swarm` step) for real on this machine's engine through
//! two sshd hosts whose `docker` is the real one: the first manager initialises a single-node
//! swarm (changed), the second manager, waiting for its ticket, finds itself in it (ok); again,
//! nothing changes; a host asked to be a worker of the swarm it manages fails and is left as it
//! is. A real join: a second engine in a network namespace of its own (its own dockerd, data
//! and socket, reached by a veth pair) joins as a worker through the Engine API, then is left
//! alone. The join tokens appear on no command line and in no output. The engine's swarm is
//! left as it was found (the lock file makes concurrent runs' swarm tests take turns). Bad
//! input: a role that is neither is refused before any connection.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::{
    ArgvSeen, ArgvWatch, Fleet, Run, assert_error_at, location_of, run_playbook_with,
};

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
pub(super) struct NoSwarm {
    _lock: File,
}

impl NoSwarm {
    pub(super) fn take() -> NoSwarm {
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
    inventory_with(fleet, managers, &[], name)
}

/// `inventory`, with each of `addrs` (host, address) as that host's `swarm_addr`.
fn inventory_with(fleet: &Fleet, managers: &[&str], addrs: &[(&str, &str)], name: &str) -> PathBuf {
    let mut text = String::new();
    let mut host = String::new();
    for line in fleet.inventory().lines() {
        if let Some(h) = line.strip_prefix("[hosts.") {
            host = h.trim_end_matches(']').to_string();
        }
        let addr = addrs.iter().find(|(h, _)| *h == host).map(|(_, a)| *a);
        if line == "groups = [\"web\"]" && managers.contains(&host.as_str()) {
            text.push_str("groups = [\"web\", \"swarm_managers\"]\n");
        } else if let (Some(vars), Some(addr)) = (line.strip_prefix("vars = { "), addr) {
            text.push_str(&format!("vars = {{ swarm_addr = \"{addr}\", {vars}\n"));
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
    real_docker(&fleet);
    let both = inventory(&fleet, &["h1", "h2"], "both.toml");
    let watch = ArgvWatch::start();

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

    assert_tokens_hidden(watch.stop(), &[&first, &again, &worker]);
}

/// Both hosts drive this machine's engine: their `docker` is the real one, with the real
/// compose plugin (the stand-in's plugin shim would call the real docker back forever).
fn real_docker(fleet: &Fleet) {
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
}

/// Neither join token of the engine's swarm is on any of `cmdlines` or in the runs' output
/// and reports.
fn assert_tokens_hidden(cmdlines: ArgvSeen, runs: &[&Run]) {
    for which in ["worker", "manager"] {
        let (ok, token) = docker(&["swarm", "join-token", "-q", which]);
        assert!(ok, "{token}");
        let token = token.trim();
        assert!(token.starts_with("SWMTKN-"), "{token}");
        for run in runs {
            assert!(!run.all().contains(token), "the {which} token in output");
            let report = std::fs::read_to_string(run.report_path.as_ref().unwrap()).unwrap();
            assert!(!report.contains(token), "the {which} token in the report");
        }
        // (The test's own `docker swarm join-token` above ran after the watch stopped.)
        cmdlines.assert_hidden(&[token], &format!("the {which} token"));
    }
    assert!(
        cmdlines.saw_line(|c| c.contains("deploy -i") && c.contains("swarm-init.toml")),
        "the watch saw the run"
    );
}

/// A second Docker engine for the test's duration: its own network namespace joined to this
/// one by a veth pair (this side 10.231.15.1, its side 10.231.15.2), its own data, exec root
/// and unix socket, no bridge and no iptables rules; on drop, stopped and removed.
struct SecondEngine {
    dir: tempfile::TempDir,
    netns: String,
    veth: String,
    dockerd: Option<std::process::Child>,
}

const HERE_ADDR: &str = "10.231.15.1";
const THERE_ADDR: &str = "10.231.15.2";

impl SecondEngine {
    fn start() -> SecondEngine {
        let dir = tempfile::Builder::new()
            .prefix("dropship-engine-")
            .tempdir()
            .unwrap();
        let id = std::process::id();
        let mut engine = SecondEngine {
            dir,
            netns: format!("dsw{id}"),
            veth: format!("dsw{id}h"),
            dockerd: None,
        };
        let peer = format!("dsw{id}n");
        let (ns, veth) = (engine.netns.clone(), engine.veth.clone());
        let here = format!("{HERE_ADDR}/24");
        let there = format!("{THERE_ADDR}/24");
        for args in [
            vec!["netns", "add", &ns],
            vec!["link", "add", &veth, "type", "veth", "peer", "name", &peer],
            vec!["link", "set", &peer, "netns", &ns],
            vec!["addr", "add", &here, "dev", &veth],
            vec!["link", "set", &veth, "up"],
            vec!["-n", &ns, "addr", "add", &there, "dev", &peer],
            vec!["-n", &ns, "link", "set", &peer, "up"],
            vec!["-n", &ns, "link", "set", "lo", "up"],
        ] {
            let out = Command::new("ip")
                .args(&args)
                .output()
                .expect("ip (iproute2)");
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let base = engine.dir.path();
        std::fs::write(base.join("daemon.json"), r#"{"storage-driver":"vfs"}"#).unwrap();
        let log = std::fs::File::create(base.join("dockerd.log")).unwrap();
        // nsenter, not `ip netns exec`: that mounts a /sys without the cgroups dockerd needs.
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{ns}"))
            .arg("dockerd")
            .arg(format!(
                "--config-file={}",
                base.join("daemon.json").display()
            ))
            .arg(format!("--data-root={}", base.join("data").display()))
            .arg(format!("--exec-root={}", base.join("exec").display()))
            .arg(format!("--pidfile={}", base.join("docker.pid").display()))
            .arg(format!("--host={}", engine.host()))
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("nsenter dockerd");
        engine.dockerd = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !engine
            .docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
            .0
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the second engine did not start: {}",
                std::fs::read_to_string(base.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        engine
    }

    /// Its `DOCKER_HOST`.
    fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }

    fn docker(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("docker")
            .env("DOCKER_HOST", self.host())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        if let Some(mut dockerd) = self.dockerd.take() {
            // SAFETY: a signal to the dockerd this guard started (nsenter execs it).
            unsafe { libc::kill(dockerd.id() as i32, libc::SIGTERM) };
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while dockerd.try_wait().ok().flatten().is_none() {
                if std::time::Instant::now() >= deadline {
                    let _ = dockerd.kill();
                    let _ = dockerd.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
    }
}

#[test]
#[ignore = "changes the shared engine's swarm state: run alone with `--ignored swarm::`"]
fn a_worker_on_a_second_engine_joins_through_the_engine_api_and_then_is_left_alone() {
    let _swarm = NoSwarm::take();
    let engine = SecondEngine::start();
    let mut fleet = Fleet::start(2);
    real_docker(&fleet);
    // h2's sessions drive the second engine: DOCKER_HOST in its sshd's environment.
    let h2 = fleet.host_mut("h2");
    let config = h2.path("sshd_config");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace(
        "SetEnv PATH=",
        &format!("SetEnv DOCKER_HOST={} PATH=", engine.host()),
    );
    std::fs::write(&config, text).unwrap();
    h2.stop();
    h2.spawn();
    h2.wait_started();
    let inventory = inventory_with(
        &fleet,
        &["h1"],
        &[("h1", HERE_ADDR), ("h2", THERE_ADDR)],
        "two.toml",
    );
    let watch = ArgvWatch::start();

    let first = run_playbook_with("deploy", &inventory, &playbook(), &[]);
    first.assert_code(0);
    first.assert_outcome("h1", STEP, "changed");
    first.assert_outcome("h2", STEP, "changed");
    let (ok, node) = docker(&[
        "info",
        "--format",
        "{{.Swarm.NodeID}} {{.Swarm.Cluster.ID}}",
    ]);
    assert!(ok, "{node}");
    let (manager, cluster) = node.trim().split_once(' ').unwrap();
    assert_eq!(
        detail(&first, "h2"),
        format!("joined swarm {cluster} as a worker advertising {THERE_ADDR}")
    );
    let (ok, there) = engine.docker(&["info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{range .Swarm.RemoteManagers}}{{.NodeID}}@{{.Addr}}{{end}}"]);
    assert!(ok, "{there}");
    assert_eq!(
        there.trim(),
        format!("active false {manager}@{HERE_ADDR}:2377")
    );

    let again = run_playbook_with("deploy", &inventory, &playbook(), &[]);
    again.assert_code(0);
    again.assert_outcome("h1", STEP, "ok");
    again.assert_outcome("h2", STEP, "ok");
    assert_eq!(detail(&again, "h2"), "already a worker of the swarm");

    assert_tokens_hidden(watch.stop(), &[&first, &again]);
    drop(fleet);
    drop(engine);
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
