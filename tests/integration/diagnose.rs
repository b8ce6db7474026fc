//! The containers' own words after a failed health check or `compose up`, against real sshd
//! hosts whose `docker` is the stand-in (it answers `ps`, `inspect` and `logs` from files the
//! test writes): which container stands out, its last log lines masked, in the plain lines
//! and the JSON report; nothing asked of docker while steps succeed.

use std::time::{Duration, Instant};

use crate::harness::{
    Fleet, Secrets, all_cmdlines, command, finish_within, run_playbook_secrets, signal,
    start_fleet, wait_until,
};

const WEB: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const DB: &str = "2222222222222222222222222222222222222222222222222222222222222222";

fn state(name: &str, service: &str, status: &str, exit_code: i64) -> String {
    format!(
        r#"{{"name":"/{name}","service":"{service}","status":"{status}","exit_code":{exit_code},"error":"","oom_killed":false,"health":null,"restarts":0}}"#
    )
}

/// A playbook of app `shop` (compose project `shop`): a secret, `compose up`, then a health
/// check that passes only when `{{ app_dir }}/healthy` exists.
fn playbook(fleet: &Fleet) -> std::path::PathBuf {
    fleet.write_playbook(
        "shop.toml",
        "shop",
        "shop",
        r#"[secrets]
db_password = { env = "DROPSHIP_TEST_DB_PASSWORD" }

[[steps]]
name = "start stack"
compose = { command = "up", dir = "{{ app_dir }}" }

[[steps]]
name = "healthy"
health = { command = "test -e {{ app_dir }}/healthy", timeout = "1s", interval = "200ms" }
"#,
    )
}

fn diagnosis_calls(fleet: &Fleet) -> Vec<String> {
    fleet
        .host("h1")
        .docker_commands()
        .into_iter()
        .filter(|c| {
            ["ps ", "inspect ", "logs "]
                .iter()
                .any(|w| c.starts_with(w))
        })
        .collect()
}

#[test]
fn a_failed_health_check_shows_the_exited_container_and_its_masked_logs() {
    let fleet = start_fleet(1);
    let secrets = Secrets::fresh();
    let inventory = fleet.write_inventory("");
    let playbook = playbook(&fleet);
    let h1 = fleet.host("h1");
    let logs = format!(
        "booting\nTraceback (most recent call last):\n  connect(password={})\nValueError: \x1b[31mboom\n",
        secrets.db_password
    );
    h1.add_container(
        "shop",
        WEB,
        &state("shop-web-1", "web", "exited", 3),
        logs.as_bytes(),
    );
    h1.add_container(
        "shop",
        DB,
        &state("shop-db-1", "db", "running", 0),
        b"ready\n",
    );
    // Another project of the host is not asked about.
    h1.add_container(
        "other",
        &"3".repeat(64),
        &state("o-1", "o", "exited", 1),
        b"",
    );

    let run = run_playbook_secrets("deploy", &inventory, &playbook, &secrets);
    run.assert_code(1);
    run.assert_outcome("h1", "healthy", "FAILED");
    let text = run.host_text("h1");
    let expected = [
        "[h1]     container shop-web-1 (web): exited (3)",
        "[h1]       | booting",
        "[h1]       | Traceback (most recent call last):",
        "[h1]       |   connect(password=********)",
        // The escape code is shown, not sent to the terminal.
        "[h1]       | ValueError: \\x1b[31mboom",
    ];
    assert!(text.contains(&expected.join("\n")), "{}", run.all());
    // Only the container that stands out: the running database is left out.
    assert!(
        !text.contains("shop-db-1") && !text.contains("o-1"),
        "{text}"
    );
    assert!(!run.all().contains(&secrets.db_password), "{}", run.all());

    let report = run.report();
    let step = report.host("h1")["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "healthy")
        .unwrap()
        .clone();
    let containers = step["containers"].as_array().expect("containers").clone();
    assert_eq!(containers.len(), 1, "{step:#}");
    let web = &containers[0];
    assert_eq!(web["project"], "shop");
    assert_eq!(web["name"], "shop-web-1");
    assert_eq!(web["service"], "web");
    assert_eq!(web["state"], "exited");
    assert_eq!(web["exit_code"], 3);
    assert_eq!(web["status"], "exited (3)");
    let logs = web["logs"].as_str().unwrap();
    assert!(
        logs.ends_with("  connect(password=********)\nValueError: \u{1b}[31mboom"),
        "{logs:?}"
    );
    assert!(!report.to_string().contains(&secrets.db_password));
    let calls: Vec<String> = diagnosis_calls(&fleet)
        .iter()
        .map(|c| without_format(c))
        .collect();
    assert_eq!(
        calls,
        [
            "ps -a -q --no-trunc --filter label=com.docker.compose.project=shop".to_string(),
            format!("inspect --format <format> {WEB}"),
            format!("logs --tail 30 {WEB}"),
            format!("inspect --format <format> {DB}"),
            format!("logs --tail 30 {DB}"),
        ]
    );
}

/// A logged `inspect` call with its `--format` value (the unit tests' business) as `<format>`.
fn without_format(call: &str) -> String {
    match call.strip_prefix("inspect --format ") {
        Some(rest) => format!(
            "inspect --format <format>{}",
            &rest[rest.rfind(' ').unwrap()..]
        ),
        None => call.to_string(),
    }
}

#[test]
fn when_nothing_stands_out_every_container_speaks() {
    let fleet = start_fleet(1);
    let secrets = Secrets::fresh();
    let inventory = fleet.write_inventory("");
    let playbook = playbook(&fleet);
    let h1 = fleet.host("h1");
    h1.add_container(
        "shop",
        WEB,
        &state("shop-web-1", "web", "running", 0),
        b"GET /healthz 503\n",
    );
    h1.add_container("shop", DB, &state("shop-db-1", "db", "running", 0), b"");
    let run = run_playbook_secrets("deploy", &inventory, &playbook, &secrets);
    run.assert_code(1);
    let text = run.host_text("h1");
    let expected = [
        "[h1]     container shop-web-1 (web): running",
        "[h1]       | GET /healthz 503",
        "[h1]     container shop-db-1 (db): running",
        "[h1]       (no log output)",
    ];
    assert!(text.contains(&expected.join("\n")), "{}", run.all());
}

#[test]
fn a_failed_compose_up_shows_its_project_s_containers() {
    let fleet = start_fleet(1);
    let secrets = Secrets::fresh();
    let inventory = fleet.write_inventory("");
    let playbook = playbook(&fleet);
    let h1 = fleet.host("h1");
    h1.set_docker_fail(Some("up"));
    let created = r#"{"name":"/shop-web-1","service":"web","status":"created","exit_code":127,"error":"exec: \"/app\": not found","oom_killed":false,"health":null,"restarts":0}"#;
    h1.add_container("shop", WEB, created, b"");
    let run = run_playbook_secrets("deploy", &inventory, &playbook, &secrets);
    run.assert_code(1);
    run.assert_outcome("h1", "start stack", "FAILED");
    let text = run.host_text("h1");
    assert!(
        text.contains(
            "[h1]     container shop-web-1 (web): created: exec: \"/app\": not found\n[h1]       (no log output)"
        ),
        "{}",
        run.all()
    );
}

#[test]
fn a_project_without_containers_is_said_and_success_asks_docker_nothing() {
    let fleet = start_fleet(1);
    let secrets = Secrets::fresh();
    let inventory = fleet.write_inventory("");
    let playbook = playbook(&fleet);
    let run = run_playbook_secrets("deploy", &inventory, &playbook, &secrets);
    run.assert_code(1);
    assert!(
        run.host_text("h1")
            .contains("[h1]     compose project shop has no containers"),
        "{}",
        run.all()
    );
    assert_eq!(
        run.report().host("h1")["steps"][1]["container_notes"][0],
        "compose project shop has no containers"
    );

    // Healthy: no step failed, nothing is asked of docker but compose.
    fleet
        .host("h1")
        .add_container("shop", WEB, &state("shop-web-1", "web", "exited", 1), b"");
    std::fs::write(fleet.host("h1").root.join("healthy"), "").unwrap();
    let before = diagnosis_calls(&fleet).len();
    let run = run_playbook_secrets("deploy", &inventory, &playbook, &secrets);
    run.assert_code(0);
    assert_eq!(diagnosis_calls(&fleet).len(), before);
    assert!(!run.all().contains("container"), "{}", run.all());
}

#[test]
fn docker_that_does_not_answer_is_given_up_on_and_stopped() {
    let fleet = start_fleet(1);
    let secrets = Secrets::fresh();
    let inventory = fleet.write_inventory("");
    let playbook = playbook(&fleet);
    let h1 = fleet.host("h1");
    h1.add_container("shop", WEB, &state("shop-web-1", "web", "exited", 3), b"");
    // `docker logs` hangs (a `sleep` with an argument of this test's own).
    let hang = format!("{}.{}", 300 + std::process::id() % 100, std::process::id());
    std::fs::write(h1.dir.join("docker.sleep.logs"), &hang).unwrap();
    let sleeps = || {
        all_cmdlines()
            .into_iter()
            .filter(|(_, c)| c.trim_end() == format!("sleep {hang}"))
            .map(|(pid, _)| pid)
            .collect::<Vec<_>>()
    };
    let started = Instant::now();
    let run = run_playbook_secrets("deploy", &inventory, &playbook, &secrets);
    let took = started.elapsed();
    // The script was stopped on the host: its `sleep` killed (at most 2s after the TERM).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sleeps().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = sleeps();
    signal(&left, "KILL");
    assert!(left.is_empty(), "docker logs still runs on the host");
    run.assert_code(1);
    // Given up after 10s; what came before is shown.
    assert!(took < Duration::from_secs(25), "{took:?}");
    let text = run.host_text("h1");
    assert!(
        text.contains("[h1]     docker did not answer about every container within 10s"),
        "{}",
        run.all()
    );
    assert!(
        text.contains("[h1]     container shop-web-1 (web): exited (3)"),
        "{}",
        run.all()
    );
}

#[test]
fn after_the_run_is_aborted_docker_is_not_asked() {
    let fleet = start_fleet(1);
    let inventory = fleet.write_inventory("");
    let h1 = fleet.host("h1");
    h1.add_container("shop", WEB, &state("shop-web-1", "web", "exited", 3), b"");
    let playbook = fleet.write_playbook(
        "slow.toml",
        "shop",
        "shop",
        r#"[[steps]]
name = "start stack"
compose = { command = "up", dir = "{{ app_dir }}" }

[[steps]]
name = "healthy"
health = { command = "touch {{ app_dir }}/checking; sleep 30", timeout = "60s" }
"#,
    );
    let child = command(
        &[
            "deploy",
            "-i",
            inventory.to_str().unwrap(),
            playbook.to_str().unwrap(),
        ],
        None,
    )
    .spawn()
    .expect("spawn dropship");
    wait_until(Duration::from_secs(20), "the health check", || {
        h1.root.join("checking").exists()
    });
    // Both Ctrl-Cs: the check is stopped and fails, and nothing more runs on the host.
    signal(&[child.id()], "INT");
    std::thread::sleep(Duration::from_millis(200));
    signal(&[child.id()], "INT");
    let run = finish_within(child, Duration::from_secs(20));
    run.assert_code(130);
    assert!(run.all().contains("FAILED   healthy"), "{}", run.all());
    assert_eq!(diagnosis_calls(&fleet), Vec::<String>::new());
    assert!(!run.all().contains("container shop-web-1"), "{}", run.all());
}
