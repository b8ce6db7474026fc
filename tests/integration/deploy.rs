//! `dropship deploy`, `exec` and `ping` end to end against a fleet of real sshd hosts.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::time::Duration;

use crate::harness::{
    ArgvWatch, FILE_STEPS, Fleet, Secrets, command, deploy_shop, dropship, dropship_cmd,
    dropship_reporting, files_in, finish_within, logins, mode, read, shop_playbook, spawn,
    start_fleet,
};

const LOGIN: &str = "login --username=deployer --password-stdin -- registry.test:5000";
const PULL: &str = "compose -p shop pull";
const UP: &str = "compose -p shop up -d --remove-orphans";
const MIGRATE: &str = "compose -p shop exec -T web migrate --noinput";

/// Position of the first `want` in `list`, panicking with the list when absent.
#[track_caller]
fn position(list: &[String], want: &str) -> usize {
    list.iter()
        .position(|c| c == want)
        .unwrap_or_else(|| panic!("no `{want}` in {list:#?}"))
}

#[test]
fn deploys_to_five_hosts() {
    let fleet = start_fleet(5);
    let inv = fleet.write_inventory("");
    let secrets = Secrets::fresh();

    let run = deploy_shop(&inv, &secrets, &[]);
    run.assert_code(0);

    for h in &fleet.hosts {
        let compose = read(&h.root.join("docker-compose.yml"));
        assert!(
            compose.starts_with(&format!("# Rendered by dropship for {}.\n", h.name)),
            "{compose}"
        );
        assert!(
            compose.contains("image: \"registry.test:5000/shop/web:1.2.3\"\n"),
            "{compose}"
        );
        assert!(compose.contains("name: shop-db\n"), "{compose}");

        let nginx = read(&h.root.join("nginx.conf"));
        assert!(nginx.contains("server web:8000;\n"), "{nginx}");
        assert!(nginx.contains("server_name shop.test;\n"), "{nginx}");
        assert!(
            nginx.contains("proxy_set_header Host $host;\n"),
            "nginx's $host must survive templating:\n{nginx}"
        );
        assert!(
            nginx.contains("X-Forwarded-For $proxy_add_x_forwarded_for;\n"),
            "{nginx}"
        );

        let env = read(&h.root.join(".env"));
        assert!(
            env.contains(&format!("\nPOSTGRES_PASSWORD={}\n", secrets.db_password)),
            "{env}"
        );
        assert!(env.contains(&format!("\nINSTANCE={}\n", h.name)), "{env}");
        assert!(env.ends_with("\n"), "final newline kept");

        // Login, then pull, then up, all with the app as compose project.
        let cmds = h.docker_commands();
        let (login, pull, up) = (
            position(&cmds, LOGIN),
            position(&cmds, PULL),
            position(&cmds, UP),
        );
        assert!(login < pull && pull < up, "{}: order {cmds:#?}", h.name);
        assert_eq!(h.docker_stdin_log(), secrets.registry_password);
        // Compose ran in the app dir (where docker-compose.yml is).
        let cwds: Vec<String> = h
            .docker_cwd_log()
            .lines()
            .map(|l| l.split_once(' ').map_or("", |(_, c)| c).to_string())
            .collect();
        assert_eq!(cwds[pull], h.root.to_str().unwrap(), "{}", h.name);
        assert_eq!(cwds[up], h.root.to_str().unwrap(), "{}", h.name);

        for step in FILE_STEPS {
            run.assert_outcome(&h.name, step, "changed");
        }
        let row = run.summary_row(&h.name).expect("summary row");
        assert!(row.ends_with("  ok"), "{row}");
        run.assert_status(&h.name, "ok");
    }

    // The `once` step ran on exactly one host: the first.
    let migrated: Vec<&str> = fleet
        .hosts
        .iter()
        .filter(|h| h.docker_commands().iter().any(|c| c == MIGRATE))
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(migrated, ["h1"], "{}", run.all());
    run.assert_outcome("h1", "migrate database", "changed");
    for h in ["h2", "h3", "h4", "h5"] {
        run.assert_outcome(h, "migrate database", "skipped");
    }
    run.assert_counts(5, 5, 0);
}

/// (inode, mtime in ns) of each file the playbook writes.
fn file_stamps(fleet: &Fleet) -> HashMap<String, (u64, i128)> {
    let mut out = HashMap::new();
    for h in &fleet.hosts {
        for f in ["docker-compose.yml", "nginx.conf", ".env"] {
            let m = fs::metadata(h.root.join(f)).expect("stat deployed file");
            let mtime = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
            out.insert(format!("{}/{f}", h.name), (m.ino(), mtime));
        }
    }
    out
}

#[test]
fn second_deploy_rewrites_nothing() {
    let fleet = start_fleet(2);
    let inv = fleet.write_inventory("");
    let secrets = Secrets::fresh();

    deploy_shop(&inv, &secrets, &[]).assert_code(0);
    let before = file_stamps(&fleet);
    let contents: Vec<String> = fleet
        .hosts
        .iter()
        .map(|h| read(&h.root.join(".env")))
        .collect();

    let again = deploy_shop(&inv, &secrets, &[]);
    again.assert_code(0);
    for h in &fleet.hosts {
        for step in FILE_STEPS {
            again.assert_outcome(&h.name, step, "ok");
        }
        let row = again.summary_row(&h.name).expect("summary row");
        assert!(row.ends_with("  ok"), "{row}");
        again.assert_status(&h.name, "ok");
    }
    assert_eq!(file_stamps(&fleet), before, "files were rewritten");
    let after: Vec<String> = fleet
        .hosts
        .iter()
        .map(|h| read(&h.root.join(".env")))
        .collect();
    assert_eq!(after, contents);

    // A changed input changes exactly the files that render it.
    let bumped = deploy_shop(&inv, &secrets, &["--var", "version=1.2.4"]);
    bumped.assert_code(0);
    let stamps = file_stamps(&fleet);
    for h in &fleet.hosts {
        bumped.assert_outcome(&h.name, "compose file", "changed");
        bumped.assert_outcome(&h.name, "env file", "changed");
        bumped.assert_outcome(&h.name, "nginx config", "ok");
        let nginx = format!("{}/nginx.conf", h.name);
        assert_eq!(stamps[&nginx], before[&nginx]);
        assert!(read(&h.root.join("docker-compose.yml")).contains("/shop/web:1.2.4\""));
        assert!(read(&h.root.join(".env")).contains("\nVERSION=1.2.4\n"));
    }
}

#[test]
fn env_file_is_mode_0600() {
    let fleet = start_fleet(2);
    let inv = fleet.write_inventory("");
    let secrets = Secrets::fresh();

    deploy_shop(&inv, &secrets, &[]).assert_code(0);
    for h in &fleet.hosts {
        assert_eq!(mode(&h.root.join(".env")), 0o600, "{}: .env", h.name);
        assert_eq!(
            mode(&h.root.join("docker-compose.yml")),
            0o644,
            "{}",
            h.name
        );
        assert_eq!(mode(&h.root.join("nginx.conf")), 0o644, "{}", h.name);
        // No temporary upload files are left behind.
        assert_eq!(
            files_in(&h.root),
            [".dropship", ".env", "docker-compose.yml", "nginx.conf"],
            "{}",
            h.name
        );
    }

    // Someone loosened the mode on h1: the next deploy puts it back (same content).
    let env = fleet.host("h1").root.join(".env");
    fs::set_permissions(&env, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let run = deploy_shop(&inv, &secrets, &[]);
    run.assert_code(0);
    assert_eq!(mode(&env), 0o600);
    run.assert_outcome("h1", "env file", "changed");
    run.assert_outcome("h2", "env file", "ok");
}

#[test]
fn registry_password_travels_on_stdin_only() {
    let fleet = start_fleet(2);
    let inv = fleet.write_inventory("");
    let secrets = Secrets::fresh();
    for h in &fleet.hosts {
        h.set_docker_sleep(Some(2.0));
    }

    // While the (slow) deploy runs, watch every command line on the machine: the local
    // dropship, the sshd sessions and the shells and docker stand-ins they run.
    let inv_s = inv.to_str().unwrap();
    let pb = shop_playbook();
    let watch = ArgvWatch::start();
    let child = spawn(
        &["deploy", "-i", inv_s, pb.to_str().unwrap()],
        Some(&secrets),
    );
    let run = finish_within(child, Duration::from_secs(60));
    let seen = watch.stop();
    run.assert_code(0);
    seen.assert_hidden(&secrets.values(), "a secret");
    // The watch did see the remote side (the sleeping compose calls), so it could have
    // seen a leak.
    seen.assert_saw("compose -p shop ");

    for h in &fleet.hosts {
        assert_eq!(
            h.docker_stdin_log(),
            secrets.registry_password,
            "{}",
            h.name
        );
        let argv = h.docker_log();
        for s in secrets.values() {
            assert!(
                !argv.contains(s),
                "{}: secret in docker argv:\n{argv}",
                h.name
            );
        }
        assert!(read(&h.root.join(".env")).contains(&secrets.db_password));
    }
    for s in secrets.values() {
        assert!(!run.all().contains(s), "secret in output:\n{}", run.all());
    }

    // Debug logging and the JSON report do not reveal them either. New secret values, so
    // .env is uploaded again and the login sends the new password.
    for h in &fleet.hosts {
        h.set_docker_sleep(None);
    }
    let secrets2 = Secrets::fresh();
    let mut cmd = command(
        &["deploy", "-i", inv_s, pb.to_str().unwrap(), "--json", "-"],
        Some(&secrets2),
    );
    cmd.env("DROPSHIP_LOG", "debug");
    let run = dropship_cmd(cmd);
    run.assert_code(0);
    let report: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", run.all()));
    assert_eq!(report["ok"], true);
    // Debug logging was on, down to the scripts run on the hosts (the login among them).
    assert!(
        run.stderr.contains("DEBUG") && run.stderr.contains("--password-stdin"),
        "DROPSHIP_LOG=debug had no effect:\n{}",
        run.stderr
    );
    run.assert_outcome("h1", "env file", "changed");
    for s in secrets2.values() {
        assert!(!run.stdout.contains(s), "secret in JSON:\n{}", run.stdout);
        assert!(
            !run.stderr.contains(s),
            "secret in debug log:\n{}",
            run.stderr
        );
    }
    for h in &fleet.hosts {
        assert!(
            h.docker_stdin_log().ends_with(&secrets2.registry_password),
            "{}",
            h.name
        );
        assert!(read(&h.root.join(".env")).contains(&secrets2.db_password));
    }
}

#[test]
fn limit_restricts_hosts() {
    let fleet = start_fleet(4);
    let inv = fleet.write_inventory("");
    let secrets = Secrets::fresh();

    let run = deploy_shop(&inv, &secrets, &["--limit", "h2,h4"]);
    run.assert_code(0);
    for name in ["h2", "h4"] {
        let h = fleet.host(name);
        assert!(h.root.join(".env").is_file(), "{name}");
        assert!(
            h.docker_commands().iter().any(|c| c == UP),
            "{name}\n{}",
            run.all()
        );
    }
    for name in ["h1", "h3"] {
        let h = fleet.host(name);
        assert!(files_in(&h.root).is_empty(), "{name} was touched");
        assert_eq!(h.docker_log(), "", "{name}");
        assert_eq!(logins(&h.sshd_log()), 0, "{name} got a login");
        assert_eq!(run.host_text(name), "", "{name} in output");
        assert_eq!(run.summary_row(name), None, "{name} in the summary");
        assert!(
            run.report()["hosts"]
                .as_array()
                .is_some_and(|hosts| hosts.iter().all(|h| h["host"] != name)),
            "{name} in the JSON report"
        );
    }
    // `once` means the first host of the run: h2 here.
    assert!(
        fleet
            .host("h2")
            .docker_commands()
            .iter()
            .any(|c| c == MIGRATE)
    );
    assert!(
        !fleet
            .host("h4")
            .docker_commands()
            .iter()
            .any(|c| c == MIGRATE)
    );

    // A glob.
    let run = deploy_shop(&inv, &secrets, &["--limit", "h[13]"]);
    run.assert_code(0);
    for name in ["h1", "h3"] {
        assert!(fleet.host(name).root.join(".env").is_file(), "{name}");
        assert_eq!(logins(&fleet.host(name).sshd_log()), 1, "{name}");
    }
    for name in ["h2", "h4"] {
        assert_eq!(run.host_text(name), "", "{name} in output");
        assert_eq!(logins(&fleet.host(name).sshd_log()), 1, "{name}");
    }

    // A limit that matches nothing is bad input: exit 2, no host contacted.
    let run = deploy_shop(&inv, &secrets, &["--limit", "nope"]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("--limit") && run.stderr.contains("`nope`"),
        "{}",
        run.all()
    );
    assert!(run.stderr.contains("hint:"), "{}", run.all());
    for name in ["h1", "h2", "h3", "h4"] {
        assert_eq!(logins(&fleet.host(name).sshd_log()), 1, "{name}");
    }
}

#[test]
fn exec_and_ping_report_per_host() {
    let fleet = start_fleet(3);
    let inv = fleet.write_inventory("");
    let inv_s = inv.to_str().unwrap();

    let run = dropship_reporting(
        &[
            "exec",
            "-i",
            inv_s,
            "--",
            "docker info >/dev/null && echo hi-$(hostname)",
        ],
        None,
    );
    run.assert_code(0);
    for h in &fleet.hosts {
        run.assert_outcome(
            &h.name,
            "docker info >/dev/null && echo hi-$(hostname)",
            "changed",
        );
        // The command really ran there: through that host's PATH, on its stand-in.
        assert_eq!(h.docker_commands(), ["info"], "{}", h.name);
    }
    run.assert_counts(3, 3, 0);

    // A command failing on one host fails that host only, with its stderr.
    let run = dropship_reporting(
        &[
            "exec",
            "-i",
            inv_s,
            "--",
            "case $PATH in */h2/bin:*) echo broken-on-h2 >&2; exit 4;; esac",
        ],
        None,
    );
    run.assert_code(1);
    let h2 = run.host_text("h2");
    assert!(h2.contains("FAILED"), "{}", run.all());
    assert!(h2.contains("exit status 4"), "{}", run.all());
    assert!(h2.contains("broken-on-h2"), "{}", run.all());
    for h in ["h1", "h3"] {
        run.assert_host_ok(h);
    }

    // The stand-in is the plugin (found in $HOME/.docker/cli-plugins, one round trip); what
    // else the machine has (docker-compose on the PATH) may follow.
    let run = dropship_reporting(&["ping", "-i", inv_s], None);
    run.assert_code(0);
    for h in &fleet.hosts {
        assert!(
            run.stdout.contains(&format!(
                "[{}] ok       ping (docker 99.0.0-standin, compose plugin 2.99.0-standin",
                h.name
            )),
            "{}",
            run.all()
        );
    }
    let run = dropship_reporting(&["ping", "-i", inv_s, "--limit", "h3"], None);
    run.assert_code(0);
    assert_eq!(run.host_text("h1"), "");
    assert!(run.host_text("h3").contains("docker 99.0.0-standin"));
}

#[test]
fn exec_shows_each_hosts_output() {
    let fleet = start_fleet(2);
    let inv = fleet.write_inventory("");
    let run = dropship(
        &[
            "exec",
            "-i",
            inv.to_str().unwrap(),
            "--",
            "echo out-of-$(basename $(dirname $(dirname $(command -v docker))))",
        ],
        None,
    );
    run.assert_code(0);
    for h in &fleet.hosts {
        assert!(
            run.host_text(&h.name)
                .contains(&format!("out-of-{}", h.name)),
            "{}",
            run.all()
        );
    }
}

#[test]
fn json_report_lists_hosts_and_steps() {
    let fleet = start_fleet(2);
    let inv = fleet.write_inventory("");
    let secrets = Secrets::fresh();
    let json_path = fleet.dir.path().join("report.json");

    let run = deploy_shop(&inv, &secrets, &["--json", json_path.to_str().unwrap()]);
    run.assert_code(0);
    // Human output still goes to stdout when the report goes to a file.
    assert!(
        run.stdout.contains("[h1] changed  compose file"),
        "{}",
        run.all()
    );

    let text = read(&json_path);
    for s in secrets.values() {
        assert!(!text.contains(s), "secret in JSON report");
    }
    let report: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(report["command"], "deploy");
    assert_eq!(report["ok"], true);
    assert!(report["elapsed_ms"].is_u64());
    let hosts = report["hosts"].as_array().expect("hosts array");
    let names: Vec<&str> = hosts.iter().map(|h| h["host"].as_str().unwrap()).collect();
    assert_eq!(names, ["h1", "h2"]);
    for h in hosts {
        let name = h["host"].as_str().unwrap();
        assert_eq!(h["address"], "127.0.0.1");
        assert!(h.get("error").is_none(), "{name}: {h}");
        let steps = h["steps"].as_array().expect("steps array");
        let got: Vec<(&str, &str)> = steps
            .iter()
            .map(|s| (s["name"].as_str().unwrap(), s["outcome"].as_str().unwrap()))
            .collect();
        let migrate = if name == "h1" { "changed" } else { "skipped" };
        assert_eq!(
            got,
            [
                ("compose file", "changed"),
                ("nginx config", "changed"),
                ("env file", "changed"),
                ("registry login", "ok"),
                ("pull images", "ok"),
                ("start stack", "ok"),
                ("migrate database", migrate),
            ],
            "{name}"
        );
        let root = fleet.host(name).root.join(".env");
        assert_eq!(steps[2]["detail"], root.to_str().unwrap());
        assert_eq!(steps[3]["detail"], "logged in to registry.test:5000");
        if name == "h2" {
            assert_eq!(steps[6]["detail"], "once: runs on the first host");
        }
        assert!(steps.iter().all(|s| s["elapsed_ms"].is_u64()));
        // The timeline: each phase a deploy goes through, one after the other (serde_json's
        // map sorts the keys: order them by start), none longer than the host's run.
        let timeline = h["timeline"].as_object().expect("timeline");
        let host_ms = h["elapsed_ms"].as_f64().unwrap();
        let mut spans: Vec<(&str, f64, f64)> = timeline
            .iter()
            .map(|(phase, span)| {
                let start = span["start_ms"].as_f64().unwrap();
                (phase.as_str(), start, span["ms"].as_f64().unwrap())
            })
            .collect();
        spans.sort_by(|a, b| a.1.total_cmp(&b.1));
        let phases: Vec<&str> = spans.iter().map(|s| s.0).collect();
        assert_eq!(phases, ["connect", "lock", "steps", "disconnect"], "{name}");
        for pair in spans.windows(2) {
            let (_, start, ms) = pair[0];
            assert!(start + ms <= pair[1].1 + 0.2, "{name}: {spans:?}");
        }
        let (_, start, ms) = spans[3];
        assert!(
            start + ms <= host_ms + 1.0,
            "{name}: {spans:?} in {host_ms} ms"
        );
        assert!(timeline["connect"]["ms"].as_f64().unwrap() > 0.0);
    }

    // A failed run says so.
    fleet.host("h2").set_docker_fail(Some("up"));
    let run = deploy_shop(&inv, &secrets, &["--json", json_path.to_str().unwrap()]);
    run.assert_code(1);
    let report: serde_json::Value = serde_json::from_str(&read(&json_path)).unwrap();
    assert_eq!(report["ok"], false);
    let h2 = &report["hosts"][1];
    assert_eq!(h2["steps"][5]["outcome"], "failed");
    assert!(
        h2["steps"][5]["detail"]
            .as_str()
            .unwrap()
            .contains("simulated failure of up"),
        "{h2}"
    );
    assert_eq!(h2["steps"][6]["outcome"], "skipped");
    assert_eq!(report["hosts"][0]["steps"][5]["outcome"], "ok");
}

/// Sessions sshd started for this host since `from` bytes of its log.
fn sessions_since(log: &str, from: usize) -> usize {
    log[from..].matches("Starting session:").count()
}

/// A whole deploy is two sessions per host on one connection: the lock with the file probe,
/// then every step (uploads, login, pull, up, the migration) in one script that ends by
/// writing the audit line and releasing the lock. Nothing is left behind on the host.
#[test]
fn a_deploy_is_two_sessions_per_host_cold_and_steady() {
    let fleet = start_fleet(2);
    let inv = fleet.write_inventory("");
    let secrets = Secrets::fresh();
    for (round, changed) in [("cold", true), ("steady", false)] {
        let marks: Vec<usize> = fleet.hosts.iter().map(|h| h.sshd_log().len()).collect();
        let run = deploy_shop(&inv, &secrets, &[]);
        run.assert_code(0);
        for (h, from) in fleet.hosts.iter().zip(&marks) {
            let log = h.sshd_log();
            assert_eq!(logins(&log[*from..]), 1, "{round} {}: {log}", h.name);
            assert_eq!(sessions_since(&log, *from), 2, "{round} {}: {log}", h.name);
            let want = if changed { "changed" } else { "ok" };
            for step in FILE_STEPS {
                run.assert_outcome(&h.name, step, want);
            }
            let cmds = h.docker_commands();
            assert!(
                cmds.iter().rev().take(2).any(|c| c == UP),
                "{round}: {cmds:?}"
            );
            let state = h.root.join(".dropship");
            assert!(!state.join("lock").exists(), "{round}: lock left behind");
            let audit = read(&state.join("audit.log"));
            let last = audit.lines().last().unwrap_or_default();
            assert!(
                last.contains(&format!(" deploy host={} ", h.name)) && last.ends_with(" result=ok"),
                "{round}: {audit}"
            );
            let leftovers: Vec<String> = files_in(&h.root)
                .into_iter()
                .filter(|n| n.starts_with(".dropship."))
                .collect();
            assert!(leftovers.is_empty(), "{round}: {leftovers:?}");
        }
    }
}
