//! Secrets against every way out: secret `command` sources that hang, templates that reach a
//! secret indirectly (`debug()`, `{% include %}`) on a command line, and debug logging.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cli_support::{all_cmdlines, dropship, start_fleet};
use crate::failures::{assert_error_at, assert_untouched, location_of};

/// Writes `playbook.toml` (and `templates`, by name) into `dir`; returns the playbook's path.
fn write_playbook(dir: &Path, playbook: &str, templates: &[(&str, &str)]) -> PathBuf {
    for (name, text) in templates {
        fs::write(dir.join(name), text).unwrap();
    }
    let path = dir.join("playbook.toml");
    fs::write(&path, playbook).unwrap();
    path
}

fn unique() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000
}

#[test]
fn hanging_secret_command_is_stopped_at_its_timeout() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let dir = tempfile::tempdir().unwrap();
    // A background `sleep` as well: killing only the shell would leave it running.
    let marker = format!("sleep 60.{}", unique());
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
        let run = dropship(
            &[
                "check",
                "-i",
                inv.to_str().unwrap(),
                playbook.to_str().unwrap(),
            ],
            None,
        );
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
