//! The shipped examples deployed for real: `examples/ratemymodule` on two local hosts (the real
//! Docker engine, the demo's registry and images), both instances checked over HTTP through the
//! one nginx by Host name, then a tag promoted from latest to stable in two deploys.

use std::path::Path;
use std::process::Command;

use crate::harness::{
    Flavor, LocalFleet, copy_dir, dropship_reporting, free_range, http_get_for, project_containers,
    read, write,
};

crate::on_both_compose_flavors! {
    ratemymodule_serves_latest_and_stable_and_promotes_a_tag => ratemymodule_example_v1, ratemymodule_example_v2;
}

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Removes the docker networks the example's `ensure` step made (compose leaves external
/// networks alone); declared before the fleet, so it runs after the fleet's stacks are down.
struct Networks(Vec<String>);

impl Drop for Networks {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("docker")
                .args(["network", "rm", name])
                .output();
        }
    }
}

/// The fleet's inventory with `var = base + k` added to host k's vars, written beside it.
fn inventory_with_port(fleet: &LocalFleet, var: &str, base: u16) -> std::path::PathBuf {
    let text = read(&fleet.inventory());
    let mut k: u16 = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|line| match line.strip_prefix("vars = { ") {
            Some(rest) => {
                k += 1;
                format!("vars = {{ {var} = {}, {rest}", base + k)
            }
            None => line.to_string(),
        })
        .collect();
    assert_eq!(usize::from(k), fleet.hosts, "{text}");
    write(
        fleet.inventory().parent().unwrap(),
        "inventory-ratemymodule.toml",
        &(lines.join("\n") + "\n"),
    )
}

fn ratemymodule_serves_latest_and_stable_and_promotes_a_tag(flavor: Flavor) {
    let mut networks = Networks(Vec::new());
    let fleet = LocalFleet::start("rmm", 2, flavor);
    networks.0 = (1..=fleet.hosts)
        .map(|k| format!("rmm-{}", fleet.host(k)))
        .collect();
    for name in &networks.0 {
        let _ = Command::new("docker")
            .args(["network", "rm", name])
            .output();
    }
    // The example as shipped, where its `../../.fleet/secrets` finds the fleet's secrets.
    copy_dir(
        &Path::new(REPO).join("examples/ratemymodule"),
        &fleet.project().join("examples/ratemymodule"),
    );
    let front = free_range(fleet.hosts as u16 + 1);
    let inventory = inventory_with_port(&fleet, "rmm_http_port", front);
    let playbook = fleet
        .project()
        .join("examples/ratemymodule/playbooks/deploy.toml");
    let deploy = |extra: &[&str]| {
        let mut args = vec![
            "deploy",
            "-i",
            inventory.to_str().unwrap(),
            playbook.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        dropship_reporting(&args, None)
    };
    let get = |k: usize, site: &str| http_get_for(front + k as u16, "/", site);
    let assert_serves = |k: usize, instance: &str, tag: &str, run: &str| {
        let (status, body) = get(k, &format!("{instance}.localhost"));
        assert_eq!(status, 200, "host {k} {instance}: {body}\n{run}");
        assert!(
            body.contains(&format!("version={tag}\n")) && body.contains(&format!("image={tag}\n")),
            "host {k} {instance} should run {tag}: {body}"
        );
        assert!(
            body.contains(&format!("instance={instance}@{}\n", fleet.host(k))),
            "host {k}: {body}"
        );
        assert!(body.contains("db=ok"), "host {k} {instance}: {body}");
    };

    // 1. Both instances on A, each with its own database, behind one nginx per host.
    let run = deploy(&[]);
    run.assert_code(0);
    for k in 1..=fleet.hosts {
        let host = fleet.host(k);
        assert_serves(k, "latest", "A", &run.all());
        assert_serves(k, "stable", "A", &run.all());
        // Any other name: the default site's 404, never an instance.
        let (status, body) = get(k, "other.localhost");
        assert_eq!(status, 404, "host {k}: {body}");
        run.assert_outcome(&host, "front network", "changed");
        run.assert_outcome(&host, "compose file (latest)", "changed");
        run.assert_outcome(&host, "compose file (stable)", "changed");
    }

    // 2. Nothing changed: no file, no container, no reload.
    let stable_before: Vec<Vec<String>> = (1..=fleet.hosts)
        .map(|k| project_containers(&format!("rmm-{}-stable", fleet.host(k)), true))
        .collect();
    let run = deploy(&[]);
    run.assert_code(0);
    for k in 1..=fleet.hosts {
        let host = fleet.host(k);
        for step in [
            "front network",
            "compose file (latest)",
            "secrets (.env) (stable)",
            "up (latest)",
            "up (stable)",
            "nginx site (latest)",
            "nginx site (stable)",
            "proxy up",
        ] {
            run.assert_outcome(&host, step, "ok");
        }
        run.assert_outcome(
            &host,
            "exec sh -c nginx -t -q && nginx -s reload in proxy (nginx site or nginx default site changed)",
            "skipped",
        );
    }

    // 3. B on latest only: stable's files are unchanged and its containers keep running.
    let run = deploy(&["--var", "latest_tag=B", "--var", "stable_tag=A"]);
    run.assert_code(0);
    for k in 1..=fleet.hosts {
        let host = fleet.host(k);
        run.assert_outcome(&host, "up (latest)", "changed");
        run.assert_outcome(&host, "compose file (stable)", "ok");
        run.assert_outcome(&host, "up (stable)", "ok");
        assert_serves(k, "latest", "B", &run.all());
        assert_serves(k, "stable", "A", &run.all());
        assert_eq!(
            project_containers(&format!("rmm-{host}-stable"), true),
            stable_before[k - 1],
            "host {k}: stable was recreated\n{}",
            run.all()
        );
    }

    // 4. B promoted to stable; latest is left as it was.
    let run = deploy(&["--var", "latest_tag=B", "--var", "stable_tag=B"]);
    run.assert_code(0);
    for k in 1..=fleet.hosts {
        let host = fleet.host(k);
        run.assert_outcome(&host, "up (stable)", "changed");
        run.assert_outcome(&host, "up (latest)", "ok");
        assert_serves(k, "latest", "B", &run.all());
        assert_serves(k, "stable", "B", &run.all());
    }
    drop(fleet);
    drop(networks);
}
