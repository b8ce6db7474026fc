//! `dropship ps` and `dropship logs` against the shipped example deployed for real (the Docker
//! engine, sshd hosts on 127.0.0.1 whose `docker` is the real one; see `LocalFleet`), with
//! compose v1 and v2: the services listed running with their images, each host's log lines
//! prefixed, a secret a container prints masked, and `logs -f` streaming a line made after it
//! started until Ctrl-C ends it within 2 s, its `docker logs -f` gone from the hosts.

use std::io::{BufRead as _, BufReader};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::{Flavor, LocalFleet, all_cmdlines, command, dropship, signal, wait_until};

crate::on_both_compose_flavors! {
    ps_and_logs_show_the_deployed_fleet =>
        ps_and_logs_show_the_deployed_fleet_v1,
        ps_and_logs_show_the_deployed_fleet_v2;
}

/// The id of host `k`'s container of `service` (the shared engine runs every host's stack).
fn container(fleet: &LocalFleet, k: usize, service: &str) -> String {
    let out = Command::new("docker")
        .args(["ps", "-q", "--no-trunc"])
        .args([
            "--filter",
            &format!("label=com.docker.compose.project=pixel-{}", fleet.host(k)),
        ])
        .args([
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ])
        .output()
        .unwrap();
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!id.is_empty() && !id.contains('\n'), "{out:?}");
    id
}

/// Makes `id`'s main process print `line`: it lands in `docker logs` as the app's own output.
fn print_in(id: &str, line: &str) {
    let out = Command::new("docker")
        .args([
            "exec",
            "-u",
            "0",
            id,
            "sh",
            "-c",
            "printf '%s\\n' \"$1\" >/proc/1/fd/1",
            "sh",
            line,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// A spawned run that a failing test does not leave behind.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ps_and_logs_show_the_deployed_fleet(flavor: Flavor) {
    let fleet = LocalFleet::start("e2ev", 2, flavor);
    fleet
        .deploy("deploy.toml", &["--var", "version=A"])
        .assert_code(0);
    let inventory = fleet.inventory();
    let playbook = fleet.playbook("deploy.toml");
    let (inv, pb) = (inventory.to_str().unwrap(), playbook.to_str().unwrap());

    let run = dropship(&["ps", "-i", inv, pb], None);
    run.assert_code(0);
    for k in 1..=2 {
        let host = fleet.host(k);
        let rows: Vec<Vec<&str>> = run
            .stdout
            .lines()
            .filter(|l| l.starts_with(&format!("{host} ")))
            .map(|l| {
                l.split("  ")
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .collect();
        let services: Vec<&str> = rows.iter().map(|r| r[2]).collect();
        assert_eq!(services, ["db", "proxy", "web"], "{}", run.all());
        for row in &rows {
            assert_eq!(row[1], format!("pixel-{host}"), "{row:?}");
            assert_eq!(row[3], "running", "{row:?}");
            assert!(row[5].starts_with("Up "), "{row:?}");
        }
        assert!(rows[2][4].ends_with("/pixel/app:A"), "{:?}", rows[2]);
        assert!(rows[0][4].ends_with("/pixel/postgres:15"), "{:?}", rows[0]);
    }

    // A secret the app prints is masked.
    let secret = fleet.secret("django_secret_key").trim_end().to_string();
    print_in(
        &container(&fleet, 1, "web"),
        &format!("leaked key={secret}"),
    );
    let run = dropship(&["logs", "-i", inv, pb, "web", "--tail", "5"], None);
    run.assert_code(0);
    for k in 1..=2 {
        let prefix = format!("[{}] ", fleet.host(k));
        assert!(
            run.stdout.lines().any(|l| l.starts_with(&prefix)),
            "no line of host {k}: {}",
            run.all()
        );
    }
    assert!(
        run.stdout.lines().all(|l| l.starts_with('[')),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(&format!("[{}] leaked key=********", fleet.host(1))),
        "{}",
        run.all()
    );
    assert!(!run.all().contains(&secret));

    // `-f`: a line made after the follow started arrives; Ctrl-C ends it.
    let mut child = KillOnDrop(
        command(&["logs", "-i", inv, pb, "web", "-f", "--tail", "0"], None)
            .spawn()
            .expect("spawn dropship"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let web2 = container(&fleet, 2, "web");
    let wanted = format!("[{}] made after the follow started", fleet.host(2));
    let started = Instant::now();
    // Printed until seen: the follow may not have reached the host when the first one goes.
    'seen: loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the followed line never came"
        );
        print_in(&web2, "made after the follow started");
        while let Ok(line) = lines.recv_timeout(Duration::from_millis(500)) {
            if line == wanted {
                break 'seen;
            }
        }
    }
    let followers = || {
        all_cmdlines()
            .into_iter()
            .filter(|(_, c)| c.starts_with("docker logs -f") && c.contains(&web2))
            .count()
    };
    assert_eq!(followers(), 1, "the host's `docker logs -f` runs");
    let interrupted = Instant::now();
    signal(&[child.0.id()], "INT");
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            interrupted.elapsed() < Duration::from_secs(10),
            "logs -f did not end after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = interrupted.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(2), "Ctrl-C took {took:?}");
    wait_until(
        Duration::from_secs(5),
        "the hosts' docker logs -f stopped",
        || followers() == 0,
    );
}
