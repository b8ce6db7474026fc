//! `examples/swarm` deployed as its README says, on the local fleet's host (sshd on 127.0.0.1
//! driving this machine's engine, the fleet's private registry): `playbooks/swarm-init.toml`
//! makes a one-node swarm, then the example's stack deploys the app and its database (A),
//! updates the app (B), and each replica answers with the version and `db=ok` (asked from
//! inside its container: the routing mesh needs IPVS, which a test machine may not have). The stack, its
//! volume and the swarm are removed after.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::init::NoSwarm;
use crate::harness::{Flavor, LocalFleet, copy_dir, dropship_reporting, free_range, read, write};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker").args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Removes the stack and then its volume (once no container holds it).
struct StackGone(String);

impl Drop for StackGone {
    fn drop(&mut self) {
        let _ = docker(&["stack", "rm", &self.0]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !docker(&["volume", "rm", &format!("{}_db", self.0)]).0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// What every running replica of `service` answers on `/`, from inside its container.
fn answers(service: &str) -> Vec<String> {
    let (ok, ids) = docker(&[
        "ps",
        "--filter",
        &format!("label=com.docker.swarm.service.name={service}"),
        "--format",
        "{{.ID}}",
    ]);
    assert!(ok, "{ids}");
    ids.lines()
        .map(|id| {
            docker(&[
                "exec",
                id,
                "python3",
                "-c",
                "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8000/', timeout=10).read().decode())",
            ])
            .1
        })
        .collect()
}

/// Waits up to 90 s until `replicas` replicas of `service` answer with `version` and `db=ok`.
fn assert_serves(service: &str, replicas: usize, version: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let now = answers(service);
        if now.len() == replicas
            && now
                .iter()
                .all(|b| b.contains(&format!("version={version}\n")) && b.contains("db=ok"))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{service} does not serve {version} with db=ok: {now:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
#[ignore = "changes the shared engine's swarm state: run alone with `--ignored swarm::`"]
fn the_swarm_example_makes_a_swarm_then_deploys_and_updates_its_stack() {
    let _swarm = NoSwarm::take();
    let fleet = LocalFleet::start("swarmex", 1, Flavor::V2);
    let host = fleet.host(1);
    let stack = format!("pixel-{host}");
    let _gone = StackGone(stack.clone());
    copy_dir(
        &Path::new(REPO).join("examples/swarm"),
        &fleet.project().join("examples/swarm"),
    );
    // The fleet's inventory, its host a swarm manager, the stack on a free port.
    let port = free_range(1);
    let text = read(&fleet.inventory())
        .replace("[groups.web]", "[groups.web]\n[groups.swarm_managers]")
        .replace(
            "groups = [\"web\"]",
            "groups = [\"web\", \"swarm_managers\"]",
        )
        .replace(
            "vars = { ",
            &format!("vars = {{ swarm_http_port = {port}, "),
        );
    let inventory = write(
        fleet.inventory().parent().unwrap(),
        "inventory-swarm.toml",
        &text,
    );
    let run = |playbook: &Path, extra: &[&str]| {
        let mut args = vec![
            "deploy",
            "-i",
            inventory.to_str().unwrap(),
            playbook.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        dropship_reporting(&args, None)
    };
    let init = fleet.project().join("playbooks/swarm-init.toml");
    let deploy = fleet.project().join("examples/swarm/playbooks/deploy.toml");

    let made = run(&init, &[]);
    made.assert_code(0);
    made.assert_outcome(&host, "swarm membership", "changed");

    let first = run(&deploy, &["--var", "version=A"]);
    first.assert_code(0);
    first.assert_outcome(&host, "deploy stack", "changed");
    assert_serves(&format!("{stack}_web"), 2, "A");

    let update = run(&deploy, &["--var", "version=B"]);
    update.assert_code(0);
    update.assert_outcome(&host, "deploy stack", "changed");
    assert_serves(&format!("{stack}_web"), 2, "B");

    // (The published port goes through the routing mesh, which needs the kernel's IPVS: the
    // machines this runs on may have none, so the replicas are asked from inside.)
}
