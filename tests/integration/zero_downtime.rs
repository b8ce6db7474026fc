//! The shipped zero-downtime example (playbooks/zero-downtime.toml + templates/zero-downtime/)
//! deployed for real: blue/green colors as compose projects behind the host's nginx, on the
//! real Docker engine and registry (scripts/localfleet/). Checked over HTTP through nginx and
//! with `docker` itself; the cases under load (below) also count every request that failed
//! meanwhile (harness::Load, as benches/zero-downtime/ does).

use std::process::Command;
use std::time::Duration;

use crate::harness::{Flavor, Load, LoadReport, LocalFleet, Run, project_containers};

const PLAYBOOK: &str = "zero-downtime.toml";
const STEP: &str = "switch to the new release";

/// The live color as the upstream file's header says (`blue`, `green`).
fn live_color(fleet: &LocalFleet, k: usize) -> String {
    let path = fleet.app_dir(k).join("shared/nginx/app.upstream");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header = text.lines().next().unwrap_or_default();
    header
        .split_whitespace()
        .find_map(|w| w.strip_prefix("live="))
        .unwrap_or_else(|| panic!("no live color in {header:?}"))
        .to_string()
}

/// `docker ps` of a compose project: each running container's id and name, sorted.
fn containers(project: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
            "--format",
            "{{.ID}} {{.Names}}",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

fn step_detail(run: &crate::harness::Run, host: &str, step: &str) -> (String, u64) {
    let report = run.report();
    let entry = report.host(host)["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == step)
        .unwrap_or_else(|| panic!("no step `{step}` on {host}\n{}", run.all()))
        .clone();
    (
        entry["detail"].as_str().unwrap_or_default().to_string(),
        entry["elapsed_ms"].as_u64().unwrap(),
    )
}

#[test]
fn blue_green_deploys_switch_colors_and_a_rollback_only_switches_back() {
    let fleet = LocalFleet::start("zdt", 1, Flavor::V2);
    let host = fleet.host(1);
    let project = format!("pixel-{host}");
    let version = |k: usize| {
        let (status, body) = fleet.get(k, "/");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("db=ok"), "{body}");
        body.lines()
            .find_map(|l| l.strip_prefix("version="))
            .unwrap()
            .to_string()
    };

    // A: the first deploy starts blue and nginx.
    let run = fleet.deploy(PLAYBOOK, &["--var", "version=A"]);
    run.assert_code(0);
    run.assert_outcome(&host, STEP, "changed");
    assert_eq!(version(1), "A");
    assert_eq!(live_color(&fleet, 1), "blue");
    let (detail, _) = step_detail(&run, &host, STEP);
    assert!(detail.starts_with("blue live (release "), "{detail}");

    // B starts in green; blue stays up, idle, for the rollback.
    let run = fleet.deploy(PLAYBOOK, &["--var", "version=B"]);
    run.assert_code(0);
    assert_eq!(version(1), "B");
    assert_eq!(live_color(&fleet, 1), "green");
    let (detail, _) = step_detail(&run, &host, STEP);
    assert!(detail.contains("blue kept idle for rollback"), "{detail}");
    let blue = containers(&format!("{project}-blue"));
    let green = containers(&format!("{project}-green"));
    assert_eq!(blue.len(), 1, "{blue:?}");
    assert_eq!(green.len(), 1, "{green:?}");
    let shared = containers(&project);

    // Rollback: blue still runs A, so the proxy only switches back: no container starts.
    let run = fleet.rollback(PLAYBOOK, &[]);
    run.assert_code(0);
    let rollback_step = format!("rollback: {STEP}");
    run.assert_outcome(&host, &rollback_step, "changed");
    assert_eq!(version(1), "A");
    assert_eq!(live_color(&fleet, 1), "blue");
    let (detail, elapsed_ms) = step_detail(&run, &host, &rollback_step);
    assert!(detail.contains("no container started"), "{detail}");
    assert_eq!(
        containers(&format!("{project}-blue")),
        blue,
        "blue untouched"
    );
    assert_eq!(
        containers(&format!("{project}-green")),
        green,
        "green untouched"
    );
    assert_eq!(containers(&project), shared, "db and nginx untouched");
    // One inspection, direct checks and one exec in nginx: under a second on an idle machine.
    // The bound is looser here: these tests share two cores with the rest of the suite.
    eprintln!("rollback switch step: {elapsed_ms} ms ({detail})");
    assert!(
        elapsed_ms < 5_000,
        "rollback took {elapsed_ms} ms: {detail}"
    );

    // The live release's content again (a new release id, the same hash): nothing to do,
    // nothing restarted.
    let run = fleet.deploy(PLAYBOOK, &["--var", "version=A"]);
    run.assert_code(0);
    run.assert_outcome(&host, STEP, "ok");
    assert_eq!(containers(&format!("{project}-blue")), blue);
    assert_eq!(containers(&format!("{project}-green")), green);
    assert_eq!(live_color(&fleet, 1), "blue");
    assert_eq!(version(1), "A");
}

/// A `blue_green` step as the example writes it, with `edit` applied to the playbook text.
fn playbook_with(dir: &std::path::Path, edit: impl Fn(&str) -> String) -> std::path::PathBuf {
    let text = r#"name = "bg"
app = "pixel"

[release]
root = "{{ app_dir }}"

[[steps]]
template = { src = "app.yml", dest = "{{ release.dir }}/docker-compose.yml" }

[[steps]]
name = "switch"
[steps.blue_green]
dir = "{{ app_dir }}/current"
project = "pixel-one"
service = "web"
port = 8000
health = { path = "/healthz", expect = 200, timeout = "60s", interval = "1s" }
upstream = "{{ app_dir }}/shared/nginx/app.upstream"
proxy = { dir = "{{ app_dir }}/shared", service = "proxy" }
drain = "2s"
"#;
    std::fs::write(dir.join("app.yml"), "services: {}\n").unwrap();
    let path = dir.join("bg.toml");
    std::fs::write(&path, edit(text)).unwrap();
    path
}

#[test]
fn bad_blue_green_steps_are_refused_with_their_place_before_any_connection() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: a run that got as far as connecting would exit 1, not 2.
    let inventory = dir.path().join("inventory.toml");
    std::fs::write(
        &inventory,
        "[hosts.one]\naddress = \"127.0.0.1\"\nssh = { port = 1 }\nvars = { app_dir = \"/srv/one\" }\n",
    )
    .unwrap();
    let inv = inventory.to_str().unwrap();
    // The example itself is fine.
    let good = playbook_with(dir.path(), str::to_string);
    crate::harness::dropship(&["check", "-i", inv, good.to_str().unwrap()], None).assert_code(0);

    let cases: [(&str, &str, &str, &str); 7] = [
        // (replace, with, where the error points, what it says)
        (
            "drain = \"2s\"",
            "drain = \"2s\"\nretries = 3",
            "retries = 3",
            "unknown field `retries`",
        ),
        (
            "[release]\nroot = \"{{ app_dir }}\"\n",
            "",
            "service = \"web\"",
            "`blue_green` needs a `[release]` section",
        ),
        (
            "drain = \"2s\"",
            "drain = \"2 parsecs\"",
            "\"2 parsecs\"",
            "bad duration `2 parsecs`",
        ),
        ("port = 8000", "port = 0", "0\n", "bad port `0`"),
        (
            "service = \"web\"",
            "service = \"\"",
            "\"\"",
            "bad service ``",
        ),
        (
            "project = \"pixel-one\"",
            "project = \"Pixel One\"",
            "\"Pixel One\"",
            "bad compose project name `Pixel One`",
        ),
        (
            "app.upstream\"",
            "app.conf\"",
            "\"{{ app_dir }}/shared/nginx/app.conf\"",
            "the upstream file `{{ app_dir }}/shared/nginx/app.conf` ends in `.conf`",
        ),
    ];
    for (from, to, needle, message) in cases {
        let playbook = playbook_with(dir.path(), |text| {
            assert!(text.contains(from), "{from}");
            text.replacen(from, to, 1)
        });
        let mut at = crate::harness::location_of(&playbook, needle);
        if needle == "service = \"web\"" {
            // The whole `blue_green` table is at fault: its place is where it starts.
            at = crate::harness::location_of(&playbook, "[steps.blue_green]");
        }
        for command in ["check", "deploy"] {
            let run =
                crate::harness::dropship(&[command, "-i", inv, playbook.to_str().unwrap()], None);
            run.assert_code(2);
            crate::harness::assert_error_at(&run, &at, message);
            assert!(run.stderr.contains("hint: "), "{}", run.all());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Under load: clients loop `GET /` through each host's nginx from before a run starts until
// after it ended (harness::Load); not one request may fail, and every host must serve the
// expected version at the end.

/// Load clients per host (the benchmark uses 6; the suite shares the machine's cores).
const LOAD_CLIENTS: usize = 4;

/// A copy of the example that fails faster (health timeout 20 s, no pause after the canary)
/// and keeps `keep` releases, written next to it; its name.
fn fast_copy(fleet: &LocalFleet, keep: usize) -> &'static str {
    let text = std::fs::read_to_string(fleet.playbook("zero-downtime.toml")).unwrap();
    let fast = text
        .replace("timeout = \"60s\"", "timeout = \"20s\"")
        .replace("pause = \"2s\"", "pause = \"0s\"")
        .replace("keep = 3", &format!("keep = {keep}"));
    assert_ne!(
        fast, text,
        "the example's timeout, pause or keep changed: update fast_copy"
    );
    std::fs::write(fleet.playbook("zero-downtime-fast.toml"), fast).unwrap();
    "zero-downtime-fast.toml"
}

/// `run` with the load going from when every host answered until half a second after it.
fn under_load(fleet: &LocalFleet, run: impl FnOnce() -> Run) -> (Run, LoadReport) {
    let load = Load::start(&fleet.http_targets(), LOAD_CLIENTS, "/");
    assert!(
        load.wait_answered(3, Duration::from_secs(60)),
        "some host does not answer GET / before the run"
    );
    let run = run();
    std::thread::sleep(Duration::from_millis(500));
    (run, load.stop())
}

#[test]
fn deploy_and_rollback_under_load_drop_no_request() {
    let fleet = LocalFleet::start("zdla", 2, Flavor::V2);
    let pb = fast_copy(&fleet, 3);
    fleet.deploy(pb, &["--var", "version=A"]).assert_code(0);

    let (run, load) = under_load(&fleet, || fleet.deploy(pb, &["--var", "version=B"]));
    run.assert_code(0);
    load.assert_clean("B", &run.all());
    for k in 1..=fleet.hosts {
        let (status, body) = fleet.get(k, "/");
        assert!(
            status == 200 && body.contains("version=B\n"),
            "host {k}: {body}"
        );
    }

    let (run, load) = under_load(&fleet, || fleet.rollback(pb, &[]));
    run.assert_code(0);
    load.assert_clean("A", &run.all());
}

#[test]
fn broken_releases_under_load_drop_no_request_and_the_live_color_keeps_serving() {
    let fleet = LocalFleet::start("zdlb", 2, Flavor::V2);
    let pb = fast_copy(&fleet, 3);
    fleet.deploy(pb, &["--var", "version=A"]).assert_code(0);

    // An image the registry does not have: the canary fails, the other host is not touched.
    let (run, load) = under_load(&fleet, || fleet.deploy(pb, &["--var", "version=nope"]));
    run.assert_code(1);
    load.assert_clean("A", &run.all());
    run.assert_status(&fleet.host(1), "failed");
    run.assert_status(&fleet.host(2), "not deployed");
    assert!(
        run.host_text(&fleet.host(1)).contains("nope"),
        "{}",
        run.all()
    );

    // A release whose app never becomes healthy: its own .env (only the release's: the shared
    // stack's database is not touched, so it does not restart) has a database password the
    // database does not know, so its /healthz answers 503 until the timeout, while the live
    // color keeps serving A.
    let env = std::fs::read_to_string(fleet.project().join("templates/env.j2")).unwrap();
    let broken = env.replace(
        "POSTGRES_PASSWORD={{ secrets.postgres_password }}",
        "POSTGRES_PASSWORD=not-the-database-password",
    );
    assert_ne!(broken, env, "templates/env.j2 changed: update this test");
    std::fs::write(fleet.project().join("templates/env-broken.j2"), broken).unwrap();
    let text = std::fs::read_to_string(fleet.playbook(pb)).unwrap();
    let unhealthy = text.replace(
        "src = \"templates/env.j2\", dest = \"{{ release.dir }}/.env\"",
        "src = \"templates/env-broken.j2\", dest = \"{{ release.dir }}/.env\"",
    );
    assert_ne!(
        unhealthy, text,
        "the example's release .env step changed: update this test"
    );
    std::fs::write(fleet.playbook("zero-downtime-unhealthy.toml"), unhealthy).unwrap();
    let (run, load) = under_load(&fleet, || {
        fleet.deploy("zero-downtime-unhealthy.toml", &["--var", "version=B"])
    });
    run.assert_code(1);
    load.assert_clean("A", &run.all());
    run.assert_status(&fleet.host(1), "failed");
    run.assert_status(&fleet.host(2), "not deployed");
    let text = run.host_text(&fleet.host(1));
    assert!(text.contains("not healthy"), "{}", run.all());
}

#[test]
fn the_color_of_the_deploy_before_last_is_replaced_by_the_next_one() {
    let fleet = LocalFleet::start_with_app_tags("zdlc", 1, Flavor::V2, &["A", "B", "C"]);
    let pb = fast_copy(&fleet, 1);
    let project = format!("pixel-{}", fleet.host(1));
    let colors = || ["blue", "green"].map(|c| project_containers(&format!("{project}-{c}"), false));

    fleet.deploy(pb, &["--var", "version=A"]).assert_code(0);
    let first: Vec<String> = colors().concat();
    assert!(!first.is_empty(), "no color runs after the first deploy");

    // B in the other color; A's stays, idle, for an instant rollback.
    fleet.deploy(pb, &["--var", "version=B"]).assert_code(0);
    let [blue, green] = colors();
    assert!(!blue.is_empty() && !green.is_empty(), "{blue:?} {green:?}");
    for id in &first {
        assert!(colors().concat().contains(id), "A's container {id} is gone");
    }

    // C replaces A's color; B's stays idle.
    let (run, load) = under_load(&fleet, || fleet.deploy(pb, &["--var", "version=C"]));
    run.assert_code(0);
    load.assert_clean("C", &run.all());
    let now = colors().concat();
    for id in &first {
        assert!(
            !now.contains(id),
            "A's container {id} still exists\n{}",
            run.all()
        );
    }
    let [blue, green] = colors();
    assert!(!blue.is_empty() && !green.is_empty(), "{blue:?} {green:?}");

    // Retention (`[release] keep = 1`: C and B, the previous, are kept): B's and C's tags stay.
    // A's tag goes only when no container on the engine uses A's image. The engine is shared
    // with every other test and session, and A is the same image (same id: the registry keeps
    // its content address) in every fleet's registry, so another fleet's container running A
    // rightly keeps it; the prune then says "nothing to remove". Whichever it found, the
    // engine must agree with what it said. (A's image itself never leaves the engine here:
    // scripts/localfleet/images.sh's cache tag holds it.)
    let app = format!("127.0.0.1:{}/pixel/app", fleet.registry_port);
    let tags = app_tags(&app);
    let all = run.all();
    let prune = all
        .lines()
        .find(|l| l.contains("prune images ("))
        .unwrap_or_else(|| panic!("no prune images line\n{all}"));
    assert!(
        tags.contains(&"B".to_string()) && tags.contains(&"C".to_string()),
        "a kept release's image was removed: {tags:?}\n{prune}"
    );
    if tags.contains(&"A".to_string()) {
        assert!(
            prune.contains("nothing to remove (2 kept release(s), 2 image reference(s))"),
            "A's tag is still there: {prune}"
        );
    } else {
        assert!(
            prune.contains(" changed ") && prune.contains(&format!("removed 1 image(s) ({app}:A)")),
            "A's tag is gone, not said: {prune}"
        );
    }
}

/// The tags of `repository` in the engine, sorted.
fn app_tags(repository: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["image", "ls", repository, "--format", "{{.Tag}}"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut tags: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    tags.sort();
    tags
}
