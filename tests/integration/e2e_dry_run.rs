//! `deploy --dry-run` against the real engine, on both compose flavours: after a real deploy of
//! the shipped example, a change to one service's configuration (nginx's published port) is
//! shown as that service would be recreated and the others unchanged — computed on the host
//! from the new compose file (on stdin) and the running containers' config hashes, with the
//! stack left exactly as it was.

use std::process::Command;

use crate::harness::{Flavor, LocalFleet, dropship};

crate::on_both_compose_flavors! {
    a_dry_run_names_the_services_up_would_recreate =>
        a_dry_run_names_the_services_up_would_recreate_v1,
        a_dry_run_names_the_services_up_would_recreate_v2;
}

/// Each container of host 1's stack: its id and config hash.
fn containers(fleet: &LocalFleet) -> Vec<String> {
    let label = format!("label=com.docker.compose.project=pixel-{}", fleet.host(1));
    let out = Command::new("docker")
        .args(["ps", "-a", "--filter", &label, "--format"])
        .arg("{{.ID}} {{.Label \"com.docker.compose.config-hash\"}}")
        .output()
        .unwrap();
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

fn a_dry_run_names_the_services_up_would_recreate(flavor: Flavor) {
    let fleet = LocalFleet::start("e2edry", 1, flavor);
    fleet
        .deploy("deploy.toml", &["--var", "version=A"])
        .assert_code(0);
    let before = containers(&fleet);
    assert_eq!(before.len(), 3, "{before:?}");

    let inventory = fleet.inventory();
    let playbook = fleet.playbook("deploy.toml");
    let report = fleet.dir.path().join("dry.json");
    let other_port = (fleet.http_base + 90).to_string();
    let dry = dropship(
        &[
            "deploy",
            "--dry-run",
            "-i",
            inventory.to_str().unwrap(),
            playbook.to_str().unwrap(),
            "--var",
            "version=A",
            "--var",
            &format!("http_port={other_port}"),
            "--json",
            report.to_str().unwrap(),
        ],
        None,
    );
    dry.assert_code(0);
    let out = &dry.stdout;
    assert!(
        out.contains("      proxy: would be recreated (its configuration changed)\n"),
        "{}",
        dry.all()
    );
    for unchanged in ["web", "db"] {
        assert!(
            out.contains(&format!("      {unchanged}: unchanged (")),
            "{}",
            dry.all()
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let up = json["hosts"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "start stack")
        .unwrap();
    let verdicts: Vec<(String, String)> = up["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["service"].as_str().unwrap().to_string(),
                s["would_be"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = |s: &str, w: &str| (s.to_string(), w.to_string());
    assert_eq!(
        verdicts,
        [
            want("db", "unchanged"),
            want("web", "unchanged"),
            want("proxy", "recreated")
        ],
        "{}",
        dry.all()
    );
    for secret in ["django_secret_key", "postgres_password"] {
        let value = fleet.secret(secret);
        assert!(!dry.all().contains(value.trim()), "{secret} leaked");
    }
    // Nothing moved: the same containers with the same hashes.
    assert_eq!(containers(&fleet), before);
}
