//! `dropship ps` and `dropship logs` against real sshd hosts whose `docker` is the stand-in
//! (it answers `ps --format`, `ps -q` by project and service labels, and `logs [--tail N]
//! [-f]` from files the test writes): the table and its JSON in inventory order, an
//! unreachable host as an error row, lines prefixed by host and masked, `--grep`, a bad
//! service name refused before any connection, and `-f` ended by Ctrl-C with the remote
//! `docker logs` stopped.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::{Fleet, Secrets, all_cmdlines, command, signal, start_fleet, wait_until};

const WEB1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const WEB2: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const DB: &str = "3333333333333333333333333333333333333333333333333333333333333333";
const GREEN: &str = "4444444444444444444444444444444444444444444444444444444444444444";

/// App `shop`: its compose file (services web and db), compose project `shop` (`up`), a
/// second project `shop-jobs` (`restart worker`), and a secret.
fn playbook(fleet: &Fleet) -> PathBuf {
    fleet.write(
        "docker-compose.yml",
        "services:\n  web:\n    image: shop:1\n  db:\n    image: postgres\n",
    );
    fleet.write_playbook(
        "shop.toml",
        "shop",
        "shop",
        r#"[secrets]
db_password = { env = "DROPSHIP_TEST_DB_PASSWORD" }

[[steps]]
name = "compose file"
copy = { src = "docker-compose.yml", dest = "{{ app_dir }}/docker-compose.yml" }

[[steps]]
name = "start stack"
compose = { command = "up", dir = "{{ app_dir }}" }

[[steps]]
name = "jobs"
compose = { command = "restart", dir = "{{ app_dir }}", project = "shop-jobs", services = ["worker"] }
"#,
    )
}

fn args<'a>(command: &'a str, inventory: &'a str, playbook: &'a str) -> Vec<&'a str> {
    vec![command, "-i", inventory, playbook]
}

#[test]
fn ps_lists_every_hosts_containers_in_inventory_order_and_an_unreachable_host_as_a_row() {
    let mut fleet = start_fleet(3);
    let secrets = Secrets::fresh();
    let (h1, h2) = (fleet.host("h1"), fleet.host("h2"));
    h1.add_service_container(
        "shop",
        "web",
        WEB1,
        "shop:1",
        ("running", "Up 5 minutes"),
        b"",
    );
    h1.add_service_container(
        "shop",
        "db",
        DB,
        "postgres:16",
        ("exited", "Exited (137) 2 hours ago"),
        b"",
    );
    h1.add_service_container(
        "shop-jobs",
        "worker",
        GREEN,
        "shop:1",
        ("restarting", "Restarting (1) 3 seconds ago"),
        b"",
    );
    // Another project on the host is none of the playbook's.
    h1.add_service_container("other", "web", WEB2, "evil:1", ("running", "Up"), b"");
    // A name that would drive a terminal is shown, not interpreted.
    h2.add_service_container(
        "shop",
        "web",
        WEB2,
        "shop:1\\u001b]0;owned\\u0007",
        ("running", "Up 1 second"),
        b"",
    );
    fleet.host_mut("h3").stop();
    let inventory = fleet.write_inventory("");
    let playbook = playbook(&fleet);
    let (inv, pb) = (inventory.to_str().unwrap(), playbook.to_str().unwrap());

    let run = crate::harness::dropship(&args("ps", inv, pb), Some(&secrets));
    run.assert_code(1);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines[0].starts_with("HOST") && lines[0].contains("STATE") && lines[0].contains("IMAGE"),
        "{}",
        run.all()
    );
    let rows: Vec<Vec<&str>> = lines[1..]
        .iter()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 5, "{}", run.all());
    assert_eq!(
        rows[0][..5],
        ["h1", "shop", "db", "exited (137)", "postgres:16"]
    );
    assert_eq!(rows[1][..5], ["h1", "shop", "web", "running", "shop:1"]);
    assert_eq!(rows[1][5], "Up 5 minutes");
    assert_eq!(rows[2][..4], ["h1", "shop-jobs", "worker", "restarting"]);
    assert_eq!(rows[3][..4], ["h2", "shop", "web", "running"]);
    assert!(rows[3][4].contains("\\x1b]0;owned\\x07"), "{:?}", rows[3]);
    assert!(!run.stdout.contains('\x1b') && !run.stdout.contains("evil"));
    assert_eq!(rows[4][0], "h3");
    assert!(rows[4][1].starts_with("error:"), "{:?}", rows[4]);
    // Each reachable host was asked about the playbook's projects only, by their labels.
    let asked: Vec<String> = fleet
        .host("h1")
        .docker_commands()
        .into_iter()
        .filter(|c| c.starts_with("ps "))
        .collect();
    assert_eq!(
        asked,
        [
            "ps -a --no-trunc --filter label=com.docker.compose.project=shop --format {{json .}}",
            "ps -a --no-trunc --filter label=com.docker.compose.project=shop-jobs --format {{json .}}",
        ]
    );

    let run = crate::harness::dropship(
        &[&args("ps", inv, pb)[..], &["--json", "-"]].concat(),
        Some(&secrets),
    );
    run.assert_code(1);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON on stdout");
    assert_eq!(report["ok"], false);
    let hosts = report["hosts"].as_array().unwrap();
    let names: Vec<&str> = hosts.iter().map(|h| h["host"].as_str().unwrap()).collect();
    assert_eq!(names, ["h1", "h2", "h3"]);
    assert_eq!(hosts[0]["containers"][0]["service"], "db");
    assert_eq!(hosts[0]["containers"][0]["exit_code"], 137);
    assert_eq!(hosts[0]["containers"][1]["image"], "shop:1");
    assert!(
        hosts[2]["error"].as_str().unwrap().contains("connect"),
        "{}",
        hosts[2]
    );
    // The table went to stderr.
    assert!(run.stderr.contains("HOST"), "{}", run.stderr);
}

#[test]
fn logs_prefix_each_hosts_lines_mask_secrets_and_grep_locally() {
    let fleet = start_fleet(2);
    let secrets = Secrets::fresh();
    let (h1, h2) = (fleet.host("h1"), fleet.host("h2"));
    let h1_logs = format!(
        "old line\nGET /a 200\nconnecting with password={}\nGET /b 500\n",
        secrets.db_password
    );
    h1.add_service_container(
        "shop",
        "web",
        WEB1,
        "shop:1",
        ("running", "Up"),
        h1_logs.as_bytes(),
    );
    h1.add_service_container("shop", "db", DB, "pg", ("running", "Up"), b"db says hi\n");
    h2.add_service_container(
        "shop",
        "web",
        WEB2,
        "shop:1",
        ("running", "Up"),
        b"GET /c 200\n\x1b[2Jcleared?\n",
    );
    let inventory = fleet.write_inventory("");
    let playbook = playbook(&fleet);
    let (inv, pb) = (inventory.to_str().unwrap(), playbook.to_str().unwrap());

    let run = crate::harness::dropship(
        &[&args("logs", inv, pb)[..], &["web", "--tail", "3"]].concat(),
        Some(&secrets),
    );
    run.assert_code(0);
    let mut lines: Vec<&str> = run.stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "[h1] GET /a 200",
            "[h1] GET /b 500",
            "[h1] connecting with password=********",
            "[h2] GET /c 200",
            "[h2] \\x1b[2Jcleared?",
        ],
        "{}",
        run.all()
    );
    assert!(!run.all().contains(&secrets.db_password));
    // Only the web containers' logs were asked for, with the tail given.
    assert!(
        h1.docker_commands()
            .contains(&format!("logs --tail 3 {WEB1}")),
        "{:?}",
        h1.docker_commands()
    );
    assert!(!h1.docker_commands().iter().any(|c| c.contains(DB)));

    // `--grep` runs here, on the masked lines: a secret cannot be found by grepping for it.
    let grep = format!("500|{}", secrets.db_password);
    let run = crate::harness::dropship(
        &[&args("logs", inv, pb)[..], &["web", "--grep", &grep]].concat(),
        Some(&secrets),
    );
    run.assert_code(0);
    assert_eq!(run.stdout, "[h1] GET /b 500\n", "{}", run.all());

    // A service no host runs: said per host, and the run fails.
    let run = crate::harness::dropship(
        &[&args("logs", inv, pb)[..], &["cache"]].concat(),
        Some(&secrets),
    );
    run.assert_code(1);
    assert!(
        run.stderr.contains("[h1] no container of service `cache`"),
        "{}",
        run.all()
    );
}

#[test]
fn a_bad_service_name_is_refused_before_connecting_with_the_playbooks_services() {
    let fleet = start_fleet(1);
    let secrets = Secrets::fresh();
    let inventory = fleet.write_inventory("");
    let playbook = playbook(&fleet);
    let (inv, pb) = (inventory.to_str().unwrap(), playbook.to_str().unwrap());
    for bad in ["$(touch pwned)", "-f", "web;id", "a b"] {
        let run = crate::harness::dropship(
            &[&args("logs", inv, pb)[..], &["--", bad]].concat(),
            Some(&secrets),
        );
        run.assert_code(2);
        assert!(
            run.stderr.contains("bad compose service name"),
            "{bad}: {}",
            run.all()
        );
        assert!(
            run.stderr
                .contains("the playbook's services: db, web, worker"),
            "{}",
            run.stderr
        );
    }
    assert!(fleet.host("h1").docker_log().is_empty(), "a host was asked");
    assert_eq!(crate::harness::logins(&fleet.host("h1").sshd_log()), 0);
}

#[test]
fn logs_follow_streams_every_host_and_ctrl_c_stops_the_remote_logs_with_status_0() {
    let fleet = start_fleet(2);
    let secrets = Secrets::fresh();
    for (h, id) in [(fleet.host("h1"), WEB1), (fleet.host("h2"), WEB2)] {
        h.add_service_container("shop", "web", id, "shop:1", ("running", "Up"), b"before\n");
    }
    let inventory = fleet.write_inventory("");
    let playbook = playbook(&fleet);
    let (inv, pb) = (inventory.to_str().unwrap(), playbook.to_str().unwrap());
    let mut child = command(
        &[&args("logs", inv, pb)[..], &["web", "-f", "--tail", "1"]].concat(),
        Some(&secrets),
    )
    .spawn()
    .expect("spawn dropship");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut { stderr }, &mut text);
        text
    });
    let pid = child.id();
    let next = |what: &str| {
        lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| {
                signal(&[pid], "KILL");
                panic!("no line {what}")
            })
    };
    let mut first = [next("first"), next("second")];
    first.sort();
    assert_eq!(first, ["[h1] before", "[h2] before"]);

    // A line written after the follow started arrives, masked.
    let line = format!("late news {}\n", secrets.db_password);
    fleet.host("h2").append_logs("shop", WEB2, line.as_bytes());
    assert_eq!(next("appended"), "[h2] late news ********");

    let followers = || {
        let dir = fleet.dir.path().to_string_lossy().into_owned();
        all_cmdlines()
            .into_iter()
            .filter(|(_, c)| c.starts_with("tail ") && c.contains(&dir))
            .count()
    };
    assert_eq!(followers(), 2, "a `docker logs -f` per host runs");
    let interrupted = Instant::now();
    signal(&[child.id()], "INT");
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll dropship") {
            break status;
        }
        if interrupted.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("dropship logs -f did not end after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = interrupted.elapsed();
    let stderr = stderr.join().unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(took < Duration::from_secs(2), "Ctrl-C took {took:?}");
    wait_until(
        Duration::from_secs(5),
        "the remote followers stopped",
        || followers() == 0,
    );
}
