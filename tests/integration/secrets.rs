//! Secrets against every way out: secret `command` sources that hang, templates that reach a
//! secret indirectly (`debug()`, `{% include %}`) on a command line, and debug logging.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{
    ArgvSeen, ArgvWatch, Run, Secrets, all_cmdlines, assert_error_at, assert_untouched, command,
    dropship, dropship_cmd, finish_within, location_of, run_playbook, run_playbook_secrets,
    shop_playbook, start_fleet, unique, write,
};

/// Writes `playbook.toml` (and `templates`, by name) into `dir`; returns the playbook's path.
fn write_playbook(dir: &Path, playbook: &str, templates: &[(&str, &str)]) -> PathBuf {
    for (name, text) in templates {
        write(dir, name, text);
    }
    write(dir, "playbook.toml", playbook)
}

#[test]
fn hanging_secret_command_is_stopped_at_its_timeout() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let dir = tempfile::tempdir().unwrap();
    // A background `sleep` as well: killing only the shell would leave it running.
    let marker = unique("sleep 60.");
    let playbook = write_playbook(
        dir.path(),
        &format!(
            "name = \"t\"\napp = \"shop\"\nhosts = \"web\"\n\n[secrets]\nslow = {{ command = \"{marker} & wait\", timeout = \"1s\" }}\n\n[[steps]]\nname = \"x\"\nrun = \"true\"\n"
        ),
        &[],
    );

    for sub in ["check", "deploy"] {
        let started = Instant::now();
        let run = dropship(
            &[sub, "-i", inv.to_str().unwrap(), playbook.to_str().unwrap()],
            None,
        );
        let took = started.elapsed();
        run.assert_code(2);
        assert_error_at(
            &run,
            &location_of(&playbook, "{ command = "),
            "secret `slow`: its command did not finish within 1s; it was stopped",
        );
        assert!(
            run.stderr.contains("hint: ") && run.stderr.contains("timeout = \"60s\""),
            "{}",
            run.all()
        );
        assert!(
            took < Duration::from_secs(10),
            "took {took:?}\n{}",
            run.all()
        );
        let left: Vec<_> = all_cmdlines()
            .into_iter()
            .filter(|(_, c)| c.contains(&marker))
            .collect();
        assert!(
            left.is_empty(),
            "the command's processes survived: {left:?}"
        );
    }
    assert_untouched(&fleet);
}

#[test]
fn secret_timeout_is_checked_as_input() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let cases = [
        (
            "{ command = \"true\", timeout = \"soon\" }",
            "\"soon\"",
            "bad duration `soon`",
        ),
        (
            "{ env = \"HOME\", timeout = \"5s\" }",
            "\"5s\"",
            "secret `x`: `timeout` applies only to a `command` source",
        ),
    ];
    for (entry, at, message) in cases {
        let playbook = write_playbook(
            dir.path(),
            &format!(
                "name = \"t\"\napp = \"shop\"\nhosts = \"web\"\n\n[secrets]\nx = {entry}\n\n[[steps]]\nname = \"x\"\nrun = \"true\"\n"
            ),
            &[],
        );
        let run = run_playbook("check", &inv, &playbook);
        run.assert_code(2);
        assert_error_at(&run, &location_of(&playbook, at), message);
        assert!(
            run.stderr.contains("key: `secrets.x.timeout`"),
            "{}",
            run.all()
        );
    }
    assert_untouched(&fleet);
}

/// A playbook reaching the secret through `body` (one step's TOML), with an env template that
/// holds it, as the example playbooks do.
fn secret_reaching_playbook(dir: &Path, body: &str) -> PathBuf {
    write_playbook(
        dir,
        &format!(
            "name = \"t\"\napp = \"shop\"\nhosts = \"web\"\n\n[secrets]\ndb_password = {{ env = \"DROPSHIP_TEST_DB_PASSWORD\" }}\n\n[[steps]]\nname = \"env file\"\ntemplate = {{ src = \"secret.j2\", dest = \"{{{{ app_dir }}}}/.env\", mode = \"0600\" }}\n\n[[steps]]\nname = \"sneaky\"\n{body}\n"
        ),
        &[("secret.j2", "POSTGRES_PASSWORD={{ secrets.db_password }}\n")],
    )
}

#[test]
fn secret_reached_indirectly_is_refused_before_any_connection() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let secrets = Secrets::fresh();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // `debug()` dumps the whole context, secrets included.
        (
            "run = \"echo {{ debug() }}\"",
            "\"echo {{ debug()",
            "steps.1.run",
        ),
        // An included template that reads the secret.
        (
            "run = \"true\"\ncreates = \"/tmp/{% include 'secret.j2' %}\"",
            "\"/tmp/{% include",
            "steps.1.creates",
        ),
        // A variable holding a secret's value, via a `set` block.
        (
            "run = \"true\"\ndir = \"{% set p = secrets.db_password %}/srv/{{ p }}\"",
            "\"{% set p",
            "steps.1.dir",
        ),
        // A word of a command in a compose service.
        (
            "compose = { command = \"exec\", dir = \"/srv\", service = \"web\", args = [\"login\", \"--password={{ secrets.db_password }}\"] }",
            "\"--password={{",
            "steps.1.compose.args.1",
        ),
        // A handler's command in a service.
        (
            "copy = { src = \"secret.j2\", dest = \"/srv/x\" }\non_change = { exec = { service = \"web\", command = [\"reload\", \"{{ secrets.db_password }}\"] }, dir = \"/srv\" }",
            "\"{{ secrets.db_password }}\"]",
            "steps.1.on_change.exec.command.1",
        ),
    ];
    for (body, at, key) in cases {
        let playbook = secret_reaching_playbook(dir.path(), body);
        for sub in ["check", "deploy"] {
            let mut cmd = command(
                &[sub, "-i", inv.to_str().unwrap(), playbook.to_str().unwrap()],
                Some(&secrets),
            );
            cmd.env("DROPSHIP_LOG", "debug");
            let run = dropship_cmd(cmd);
            run.assert_code(2);
            assert_error_at(
                &run,
                &location_of(&playbook, at),
                "this value would put secret `db_password` on a command line (host `h1`), where other users of the host can read it",
            );
            assert!(
                run.stderr.contains(&format!("key: `{key}`")),
                "{}",
                run.all()
            );
            assert!(
                run.stderr.contains("hint: write the secret into a file"),
                "{}",
                run.all()
            );
            assert!(!run.all().contains(&secrets.db_password), "{}", run.all());
        }
    }
    assert_untouched(&fleet);
}

#[test]
fn secrets_in_conditions_and_file_contents_are_fine() {
    // Reading a secret where its value stays local (`when`, a test in `{% if %}`) or goes into
    // a file's contents is allowed: only what reaches a command line counts.
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let secrets = Secrets::fresh();
    let dir = tempfile::tempdir().unwrap();
    let playbook = secret_reaching_playbook(
        dir.path(),
        "run = \"echo {% if secrets.db_password %}set{% else %}unset{% endif %}\"\nwhen = \"secrets.db_password != ''\"",
    );
    let run = run_playbook_secrets("check", &inv, &playbook, &secrets);
    run.assert_code(0);
    assert!(run.stdout.contains("run: echo set"), "{}", run.all());
    assert!(run.stdout.contains("holds secrets"), "{}", run.all());
    assert!(!run.all().contains(&secrets.db_password), "{}", run.all());
}

/// Deploys the main playbook with `DROPSHIP_LOG=level` while watching every command line on
/// the machine; returns the run and what the watch saw.
fn watched_deploy(level: &str) -> (Run, ArgvSeen, Secrets) {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let secrets = Secrets::fresh();
    // Slow docker calls, so the watch sees the remote side while steps run.
    fleet.hosts[0].set_docker_sleep(Some(1.0));
    let mut cmd = command(
        &[
            "deploy",
            "-i",
            inv.to_str().unwrap(),
            shop_playbook().to_str().unwrap(),
        ],
        Some(&secrets),
    );
    cmd.env("DROPSHIP_LOG", level);
    let watch = ArgvWatch::start();
    // The pipes are read while it runs: a chatty log must not block the child.
    let run = finish_within(
        cmd.spawn().expect("spawn dropship"),
        Duration::from_secs(60),
    );
    let seen = watch.stop();
    seen.assert_saw("compose -p shop ");
    let h = &fleet.hosts[0];
    assert_eq!(h.docker_stdin_log(), secrets.registry_password);
    (run, seen, secrets)
}

#[test]
fn debug_log_and_host_command_lines_never_show_a_secret() {
    for level in ["debug", "trace"] {
        let (run, seen, secrets) = watched_deploy(level);
        run.assert_code(0);
        seen.assert_hidden(&secrets.values(), "a secret");
        // The log did show the scripts run on the hosts (the upload and the login among them).
        assert!(
            run.stderr.contains("DEBUG") && run.stderr.contains("--password-stdin"),
            "DROPSHIP_LOG={level} had no effect:\n{}",
            run.stderr
        );
        for s in secrets.values() {
            assert!(
                !run.all().contains(s),
                "DROPSHIP_LOG={level}: a secret in the output:\n{}",
                run.all()
            );
        }
    }
}
