//! Image retention after a release deploy (`prune images`), on sshd hosts whose `docker` is the
//! stand-in (its engine is a few files: images, containers, sizes, refusals): which tags go,
//! that `image rm` is never called for an image a container or a kept release uses, nor for
//! another app's, and `[release] prune_images = false`.

use std::fs;

use crate::harness::{Fleet, start_fleet};

fn id(n: u8) -> String {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
}

fn write_playbook(fleet: &Fleet, release_extra: &str) -> std::path::PathBuf {
    fs::create_dir_all(fleet.dir.path().join("templates")).unwrap();
    fs::write(
        fleet.dir.path().join("templates/compose.yml.j2"),
        "services:\n  app:\n    image: reg.test/shop/app:{{ version }}\n  db:\n    image: reg.test/shop/db:1\n",
    )
    .unwrap();
    let body = format!(
        r#"[vars]
version = "B"

[release]
root = "{{{{ app_dir }}}}"
keep = 1
{release_extra}

[[steps]]
name = "compose file"
template = {{ src = "templates/compose.yml.j2", dest = "{{{{ release.dir }}}}/docker-compose.yml" }}

[[steps]]
name = "start"
compose = {{ command = "up", dir = "{{{{ app_dir }}}}/current" }}
"#
    );
    fleet.write_playbook("shop.toml", "Shop", "shop", &body)
}

/// The `docker image rm` references the stand-in was asked for.
fn removed(commands: &[String]) -> Vec<String> {
    commands
        .iter()
        .filter_map(|c| c.strip_prefix("image rm "))
        .map(str::to_string)
        .collect()
}

#[test]
fn unused_images_of_the_release_s_repositories_are_removed_and_used_ones_never_asked_for() {
    let fleet = start_fleet(1);
    let h = fleet.host("h1");
    let engine = |name: &str, text: String| fs::write(h.dir.join(name), text).unwrap();
    engine(
        "docker.images",
        [
            ("reg.test/shop/app", "A", 1),
            ("reg.test/shop/app", "B", 2),
            // A stopped container uses C.
            ("reg.test/shop/app", "C", 3),
            // Another app's image on the same engine.
            ("reg.test/other", "x", 4),
            // A container starts using E between the survey and the removal: refused.
            ("reg.test/shop/app", "E", 5),
            ("reg.test/shop/db", "1", 6),
            ("reg.test/shop/db", "0", 7),
        ]
        .iter()
        .map(|(repo, tag, n)| format!("{repo} {tag} <none> {}\n", id(*n)))
        .collect(),
    );
    engine("docker.containers", "c1\nc2\n".into());
    engine("docker.used", format!("{}\n{}\n", id(2), id(3)));
    engine(
        "docker.sizes",
        format!("{} 1000000\n{} 5\n{} 2000\n", id(1), id(5), id(7)),
    );
    engine("docker.refuse", "reg.test/shop/app:E\n".into());

    let playbook = write_playbook(&fleet, "");
    let run = fleet.deploy(&playbook, &[]);
    run.assert_code(0);
    run.assert_outcome("h1", "prune images", "changed");
    let commands = h.docker_commands();
    let mut asked = removed(&commands);
    asked.sort();
    assert_eq!(
        asked,
        [
            "reg.test/shop/app:A",
            "reg.test/shop/app:E",
            "reg.test/shop/db:0"
        ],
        "{commands:#?}"
    );
    assert!(
        !commands
            .iter()
            .any(|c| c.contains(" -f") || c.contains("--force")),
        "never forced: {commands:#?}"
    );
    let report = run.report();
    let step = report.host("h1")["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "prune images")
        .unwrap()
        .clone();
    let detail = step["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(
            "removed 2 image(s) (reg.test/shop/app:A, reg.test/shop/db:0), 1.0 MB freed (1002000 bytes); kept 1 in use (reg.test/shop/app:E: Error response from daemon: conflict"
        ),
        "{detail}"
    );
    // It ran after every other step.
    let names: Vec<&str> = report.host("h1")["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.last(), Some(&"prune images"), "{names:?}");

    // Again: nothing left to remove but E, which is still refused: `ok`, nothing removed.
    let run = fleet.deploy(&playbook, &[]);
    run.assert_code(0);
    run.assert_outcome("h1", "prune images", "ok");
    let again = removed(&h.docker_commands()[commands.len()..]);
    assert_eq!(again, ["reg.test/shop/app:E"]);

    // A rollback re-runs it after the steps it re-runs.
    let before = h.docker_commands().len();
    let run = crate::harness::run_playbook("rollback", &fleet.write_inventory(""), &playbook);
    run.assert_code(0);
    assert_eq!(
        run.outcome("h1", "rollback: prune images").as_deref(),
        Some("ok"),
        "{}",
        run.all()
    );
    assert_eq!(
        removed(&h.docker_commands()[before..]),
        ["reg.test/shop/app:E"]
    );

    // Turned off: the engine is not even asked.
    let before = h.docker_commands().len();
    let playbook = write_playbook(&fleet, "prune_images = false");
    let run = fleet.deploy(&playbook, &[]);
    run.assert_code(0);
    assert_eq!(run.outcome("h1", "prune images"), None, "{}", run.all());
    let after = &h.docker_commands()[before..];
    assert!(
        !after
            .iter()
            .any(|c| c.starts_with("image") || c.starts_with("ps -a") || c.contains("config")),
        "{after:#?}"
    );
}
