//! Bad input, unreachable hosts and failing steps: what `dropship deploy` reports and what it
//! leaves alone.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::harness::{
    Fleet, Secrets, assert_error_at, assert_untouched, deploy_shop, dropship, files_in, fixture,
    location_of, run_playbook, run_playbook_secrets, shop_playbook, start_fleet, toml_str,
};

const PULL: &str = "compose -p shop pull";
const UP: &str = "compose -p shop up -d --remove-orphans";

#[test]
fn bad_playbook_exits_2_before_touching_any_host() {
    let fleet = start_fleet(2);
    let inv = fleet.write_inventory("");
    let inv_s = inv.to_str().unwrap();
    let secrets = Secrets::fresh();

    let cases = [
        // (playbook, where the error points, what it says)
        (
            fixture("playbooks/bad_unknown_key.toml"),
            location_of(&fixture("playbooks/bad_unknown_key.toml"), "retries = 3"),
            "unknown field `retries`",
        ),
        (
            fixture("playbooks/bad_undefined_var.toml"),
            location_of(
                &fixture("templates/undefined_var.j2"),
                "nginx_upstream_port",
            ),
            "undefined variable `nginx_upstream_port` in template `templates/undefined_var.j2`",
        ),
        (
            fixture("playbooks/bad_missing_secret.toml"),
            location_of(
                &fixture("playbooks/bad_missing_secret.toml"),
                "{ env = \"DROPSHIP_TEST_UNSET_SECRET\" }",
            ),
            "secret `db_password`: environment variable `DROPSHIP_TEST_UNSET_SECRET` is not set",
        ),
    ];
    for (playbook, location, message) in &cases {
        for sub in ["deploy", "check"] {
            let run = dropship(
                &[sub, "-i", inv_s, playbook.to_str().unwrap()],
                Some(&secrets),
            );
            run.assert_code(2);
            assert_error_at(&run, location, message);
            assert!(run.stderr.contains("\n  hint: "), "{}", run.all());
            assert_eq!(run.stdout, "", "{}", run.all());
        }
    }
    // The undefined variable's hint says where variables come from.
    let run = dropship(
        &[
            "deploy",
            "-i",
            inv_s,
            fixture("playbooks/bad_undefined_var.toml")
                .to_str()
                .unwrap(),
        ],
        None,
    );
    assert!(run.stderr.contains("--var NAME=VALUE"), "{}", run.all());
    // The missing secret's hint says what to export.
    let run = dropship(
        &[
            "deploy",
            "-i",
            inv_s,
            fixture("playbooks/bad_missing_secret.toml")
                .to_str()
                .unwrap(),
        ],
        None,
    );
    assert!(
        run.stderr
            .contains("hint: export DROPSHIP_TEST_UNSET_SECRET=..."),
        "{}",
        run.all()
    );
    // The main playbook without its secrets is refused the same way.
    let run = dropship(
        &["deploy", "-i", inv_s, shop_playbook().to_str().unwrap()],
        None,
    );
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("environment variable `DROPSHIP_TEST_DB_PASSWORD` is not set"),
        "{}",
        run.all()
    );

    assert_untouched(&fleet);
}

#[test]
fn down_host_fails_alone() {
    let mut fleet = start_fleet(5);
    let inv = fleet.write_inventory("");
    let secrets = Secrets::fresh();
    fleet.host_mut("h3").stop();
    let port = fleet.host("h3").port;

    let run = deploy_shop(&inv, &secrets, &[]);
    run.assert_code(1);
    let h3 = run.host_text("h3");
    assert!(
        h3.contains(&format!(
            "[h3] FAILED   cannot reach 127.0.0.1:{port}: connection refused"
        )),
        "{}",
        run.all()
    );
    let row = run.summary_row("h3").unwrap();
    assert!(row.contains("failed: cannot reach 127.0.0.1:"), "{row}");
    assert!(
        run.report().host("h3")["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("cannot reach 127.0.0.1:")),
        "{}",
        run.report()
    );
    assert!(files_in(&fleet.host("h3").root).is_empty());
    assert_eq!(fleet.host("h3").docker_log(), "");

    for name in ["h1", "h2", "h4", "h5"] {
        let h = fleet.host(name);
        assert_eq!(
            files_in(&h.root),
            [".dropship", ".env", "docker-compose.yml", "nginx.conf"],
            "{name}"
        );
        let cmds = h.docker_commands();
        assert!(
            cmds.iter().any(|c| c == PULL),
            "{name}: {cmds:?}\n{}",
            run.all()
        );
        assert!(
            cmds.iter().any(|c| c == UP),
            "{name}: {cmds:?}\n{}",
            run.all()
        );
        run.assert_host_ok(name);
    }
    run.assert_counts(5, 4, 1);
}

#[test]
fn failing_step_reports_stderr_tail_and_skips_the_rest_on_that_host() {
    let fleet = start_fleet(3);
    let inv = fleet.write_inventory("");
    let secrets = Secrets::fresh();
    fleet.host("h2").set_docker_fail(Some("pull"));

    let run = deploy_shop(&inv, &secrets, &[]);
    run.assert_code(1);
    run.assert_outcome("h2", "pull images", "FAILED");
    let h2 = run.host_text("h2");
    assert!(
        h2.contains("[h2] FAILED   pull images:\n[h2]     exit status 1\n[h2]     error: simulated failure of pull"),
        "{}",
        run.all()
    );
    run.assert_outcome("h2", "start stack", "skipped");
    assert!(
        h2.contains("[h2] skipped  start stack (after a failed step)"),
        "{h2}"
    );
    // Steps before the failure did their work.
    run.assert_outcome("h2", "env file", "changed");
    assert!(fleet.host("h2").root.join(".env").is_file());
    let cmds = fleet.host("h2").docker_commands();
    assert!(cmds.iter().any(|c| c == PULL), "{cmds:?}");
    assert!(
        !cmds.iter().any(|c| c == UP),
        "up ran after pull failed: {cmds:?}"
    );
    assert!(
        run.summary_row("h2")
            .unwrap()
            .ends_with("failed at `pull images`"),
        "{}",
        run.all()
    );
    // The failing host's last session still wrote its audit line and released its lock.
    let state = fleet.host("h2").root.join(".dropship");
    let audit = fs::read_to_string(state.join("audit.log")).unwrap_or_default();
    assert!(
        audit.trim_end().ends_with("result=failed at pull images"),
        "{audit}"
    );
    assert!(!state.join("lock").exists(), "h2's lock left behind");

    for name in ["h1", "h3"] {
        let cmds = fleet.host(name).docker_commands();
        assert!(
            cmds.iter().any(|c| c == UP),
            "{name}: {cmds:?}\n{}",
            run.all()
        );
        run.assert_host_ok(name);
    }
    run.assert_counts(3, 2, 1);
}

/// Replaces a host's docker with a wrapper whose `login` fails echoing the password it read,
/// as a careless registry client might; everything else goes to the stand-in.
fn install_echoing_login(dir: &Path) {
    let bin = dir.join("bin");
    fs::rename(bin.join("docker"), bin.join("docker-standin")).unwrap();
    let script = "#!/bin/sh\n\
        if [ \"$1\" = login ]; then\n\
        \x20   pw=$(cat)\n\
        \x20   echo \"Error response from daemon: login attempt with password '$pw' failed: unauthorized\" >&2\n\
        \x20   exit 1\n\
        fi\n\
        exec \"$(dirname \"$0\")/docker-standin\" \"$@\"\n";
    fs::write(bin.join("docker"), script).unwrap();
    fs::set_permissions(bin.join("docker"), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn wrong_registry_password_is_masked() {
    let fleet = start_fleet(2);
    let inv = fleet.write_inventory("");
    let secrets = Secrets::fresh();
    let json = fleet.dir.path().join("report.json");
    fleet.host("h1").set_docker_fail(Some("login"));
    install_echoing_login(&fleet.host("h2").dir);

    let run = deploy_shop(&inv, &secrets, &["--json", json.to_str().unwrap()]);
    run.assert_code(1);
    for h in ["h1", "h2"] {
        run.assert_outcome(h, "registry login", "FAILED");
        run.assert_outcome(h, "pull images", "skipped");
    }
    assert!(
        run.host_text("h1")
            .contains("error: simulated failure of login"),
        "{}",
        run.all()
    );
    // h2's registry echoed the password: it is shown masked.
    assert!(
        run.host_text("h2")
            .contains("login attempt with password '********' failed"),
        "{}",
        run.all()
    );
    let report = fs::read_to_string(&json).unwrap();
    assert!(report.contains("password '********' failed"), "{report}");
    for s in secrets.values() {
        assert!(!run.all().contains(s), "secret in output:\n{}", run.all());
        assert!(!report.contains(s), "secret in JSON report:\n{report}");
    }
    // It did reach the stand-in on h1, on stdin.
    assert_eq!(
        fleet.host("h1").docker_stdin_log(),
        secrets.registry_password
    );
}

#[test]
fn failing_command_output_with_a_secret_is_masked() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let secrets = Secrets::fresh();
    // A run step that prints the rendered .env (holding the db password) and fails.
    let playbook = fleet.dir.path().join("leaky.toml");
    let text = format!(
        r#"name = "leaky"
app = "shop"

[vars]
version = "1"

[secrets]
db_password = {{ env = "DROPSHIP_TEST_DB_PASSWORD" }}

[[steps]]
name = "env file"
template = {{ src = {src}, dest = "{{{{ app_dir }}}}/.env", mode = "0600" }}

[[steps]]
name = "show env"
dir = "{{{{ app_dir }}}}"
run = "cat .env >&2; exit 7"
"#,
        src = toml_str(fixture("templates/env.j2").to_str().unwrap())
    );
    fs::write(&playbook, text).unwrap();
    let run = run_playbook_secrets("deploy", &inv, &playbook, &secrets);
    run.assert_code(1);
    let h1 = run.host_text("h1");
    assert!(h1.contains("[h1] FAILED   show env:"), "{}", run.all());
    assert!(h1.contains("exit status 7"), "{}", run.all());
    assert!(
        h1.contains("[h1]     POSTGRES_PASSWORD=********"),
        "{}",
        run.all()
    );
    assert!(!run.all().contains(&secrets.db_password), "{}", run.all());
}

#[test]
fn secret_in_run_command_is_refused() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let secrets = Secrets::fresh();
    let playbook = fixture("playbooks/bad_secret_in_run.toml");

    for sub in ["deploy", "check"] {
        let run = dropship(
            &[sub, "-i", inv.to_str().unwrap(), playbook.to_str().unwrap()],
            Some(&secrets),
        );
        run.assert_code(2);
        assert_error_at(
            &run,
            &location_of(&playbook, "\"createuser"),
            "this value would put secret `db_password` on a command line (host `h1`), where other users of the host can read it",
        );
        assert!(run.stderr.contains("key: `steps.0.run`"), "{}", run.all());
        assert!(
            run.stderr.contains("hint: write the secret into a file"),
            "{}",
            run.all()
        );
        assert!(!run.all().contains(&secrets.db_password), "{}", run.all());
    }
    assert_untouched(&fleet);
}

/// Writes `steps` (TOML `[[steps]]` tables) as a playbook of app `stops` into the fleet's dir.
fn steps_playbook(fleet: &Fleet, file: &str, steps: &str) -> PathBuf {
    fleet.write_playbook(file, "stops", "stops", steps)
}

#[test]
fn a_failed_step_stops_the_host_across_sessions() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    // The failing step, one more step in its session, then a `become` step (a session of
    // its own) and a health check: none of the later ones may run.
    let playbook = steps_playbook(
        &fleet,
        "stops.toml",
        r#"[[steps]]
name = "fails"
run = "false"

[[steps]]
name = "plain"
run = "touch {{ app_dir }}/plain-ran"

[[steps]]
name = "as root"
become = true
run = "touch {{ app_dir }}/become-ran"

[[steps]]
name = "healthy"
health = { command = "touch {{ app_dir }}/health-ran", timeout = "2s" }
"#,
    );
    let run = run_playbook("deploy", &inv, &playbook);
    run.assert_code(1);
    let root = &fleet.host("h1").root;
    for file in ["plain-ran", "become-ran", "health-ran"] {
        assert!(!root.join(file).exists(), "{file} exists\n{}", run.all());
    }
    run.assert_outcome("h1", "fails", "FAILED");
    for step in ["plain", "as root", "healthy"] {
        run.assert_outcome("h1", step, "skipped");
    }
    let row = run.summary_row("h1").unwrap();
    assert!(row.ends_with("failed at `fails`"), "{row}");
    run.assert_status("h1", "failed");
    run.assert_counts(1, 0, 1);
}

#[test]
fn a_failed_pull_skips_up_and_the_health_check() {
    let fleet = start_fleet(2);
    let inv = fleet.write_inventory("");
    fleet.host("h1").set_docker_fail(Some("pull"));
    let playbook = steps_playbook(
        &fleet,
        "pull.toml",
        r#"[[steps]]
name = "pull images"
compose = { command = "pull", dir = "{{ app_dir }}" }

[[steps]]
name = "start stack"
compose = { command = "up", dir = "{{ app_dir }}" }

[[steps]]
name = "healthy"
health = { command = "touch {{ app_dir }}/health-ran", timeout = "2s" }
"#,
    );
    let run = run_playbook("deploy", &inv, &playbook);
    run.assert_code(1);
    run.assert_outcome("h1", "pull images", "FAILED");
    for step in ["start stack", "healthy"] {
        run.assert_outcome("h1", step, "skipped");
    }
    assert!(!fleet.host("h1").root.join("health-ran").exists());
    assert!(
        !fleet
            .host("h1")
            .docker_commands()
            .iter()
            .any(|c| c.contains(" up ")),
        "{:?}",
        fleet.host("h1").docker_commands()
    );
    assert!(
        run.summary_row("h1")
            .unwrap()
            .ends_with("failed at `pull images`"),
        "{}",
        run.all()
    );
    // The healthy host ran everything.
    run.assert_outcome("h2", "healthy", "ok");
    assert!(fleet.host("h2").root.join("health-ran").exists());
    run.assert_counts(2, 1, 1);
}
