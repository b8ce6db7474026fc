//! Image retention on the real engine and registry (the shipped example, `playbooks/release.toml`
//! with `keep = 1`): after the third deploy the first release's app image is gone from the
//! engine (no container uses it any more), while an image a stopped container uses and another
//! app's image on the same engine stay; the JSON report's step says what was freed.
//! The app images here are built for this test (a label of their own on the example's app),
//! tagged under this fleet's registry port: no other test's image is touched.

use std::process::{Command, Stdio};

use crate::harness::{Flavor, LocalFleet};

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).output().unwrap()
}

fn exists(reference: &str) -> bool {
    docker(&["image", "inspect", "--format", ".", reference])
        .status
        .success()
}

/// The engine's leftovers of this test, removed however it ends: after the fleet, whose
/// containers use some of the images.
struct Cleanup {
    fleet: Option<LocalFleet>,
    images: Vec<String>,
    container: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        drop(self.fleet.take());
        docker(&["rm", "-f", &self.container]);
        for image in &self.images {
            docker(&["image", "rm", image]);
        }
    }
}

#[test]
fn images_no_kept_release_or_container_uses_are_removed_after_a_release_deploy() {
    let started = LocalFleet::start("e2ei", 1, Flavor::V2);
    let registry = format!("127.0.0.1:{}", started.registry_port);
    let app = |tag: &str| format!("{registry}/pixel/app:{tag}");
    let container = format!("{}-holder", started.name);
    let cleanup = Cleanup {
        fleet: Some(started),
        images: vec![
            app("prune1"),
            app("prune2"),
            app("inuse"),
            format!("{registry}/other/app:x"),
        ],
        container,
    };
    let fleet = cleanup.fleet.as_ref().unwrap();
    // An image of its own per tag: a label unique to this fleet on the example's app.
    let build = |tag: &str| {
        let mut child = Command::new("docker")
            .args(["build", "-q", "-t", &app(tag), "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        write!(
            child.stdin.take().unwrap(),
            "FROM dropship-localfleet/pixel-app:A\nLABEL org.dropship.test={}-{tag}\n",
            fleet.name
        )
        .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let push = |tag: &str| {
        let out = Command::new("docker")
            .args(["push", &app(tag)])
            .env("DOCKER_CONFIG", fleet.project().join(".fleet/.docker-push"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // A stopped container of the app's repository, and another app's image.
    build("inuse");
    let created = docker(&["create", "--name", &cleanup.container, &app("inuse")]);
    assert!(created.status.success(), "{created:?}");
    let tagged = docker(&["tag", "dropship-localfleet/pixel-app:A", &cleanup.images[3]]);
    assert!(tagged.status.success(), "{tagged:?}");

    let text = std::fs::read_to_string(fleet.playbook("release.toml"))
        .unwrap()
        .replace("keep = 3", "keep = 1")
        .replace("pause = \"2s\"", "pause = \"0s\"");
    assert!(text.contains("keep = 1"), "{text}");
    std::fs::write(fleet.playbook("release-keep1.toml"), text).unwrap();
    let host = fleet.host(1);

    build("prune1");
    push("prune1");
    let run = fleet.deploy("release-keep1.toml", &["--var", "version=prune1"]);
    run.assert_code(0);
    run.assert_outcome(&host, "prune images", "ok");

    build("prune2");
    push("prune2");
    // prune1's release is the previous one: kept, and so is its image.
    let run = fleet.deploy("release-keep1.toml", &["--var", "version=prune2"]);
    run.assert_code(0);
    run.assert_outcome(&host, "prune images", "ok");
    assert!(exists(&app("prune1")));

    // The third release prunes the first: its image goes (the app's container now runs prune2).
    let size = String::from_utf8(
        docker(&["image", "inspect", "--format", "{{.Size}}", &app("prune1")]).stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let run = fleet.deploy("release-keep1.toml", &["--var", "version=prune2"]);
    run.assert_code(0);
    run.assert_outcome(&host, "prune images", "changed");
    let report = run.report();
    let step = report.host(&host)["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "prune images")
        .unwrap()
        .clone();
    let detail = step["detail"].as_str().unwrap().to_string();
    assert!(
        detail.starts_with(&format!("removed 1 image(s) ({}), ", app("prune1"))),
        "{detail}"
    );
    assert!(
        detail.contains(&format!(" freed ({size} bytes)")),
        "{detail} / {size}"
    );
    assert!(!exists(&app("prune1")), "{detail}");
    for kept in [app("prune2"), app("inuse"), cleanup.images[3].clone()] {
        assert!(exists(&kept), "{kept} was removed: {detail}");
    }
    let (status, body) = fleet.get(1, "/");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("version=prune2\n"), "{body}");
    drop(cleanup);
}
