//! `on_change` handlers on file steps, against real sshd hosts with the docker stand-in: a
//! handler fires once per host when (and only when) a file it watches changed, rides in the
//! steps' own session, and is refused where it makes no sense; and the example's nginx config
//! served after a change on the real engine.

use std::path::{Path, PathBuf};

use crate::harness::{Flavor, Fleet, LocalFleet, Run, logins, run_playbook, start_fleet};

crate::on_both_compose_flavors! {
    a_changed_nginx_template_is_served_after_the_handler_restarts_proxy =>
        e2e_a_changed_nginx_template_is_served_after_the_handler_restarts_proxy_v1,
        e2e_a_changed_nginx_template_is_served_after_the_handler_restarts_proxy_v2;
}

const RESTART: &str = "compose -p hx restart -- proxy";
const RELOAD: &str = "compose -p hx exec -T -- proxy nginx -s reload";
const RESTART_STEP: &str = "restart proxy (nginx config or site config changed)";
const RELOAD_STEP: &str = "exec nginx -s reload in proxy (app config changed)";

/// Three watched files (two naming the same restart, one a reload), then `up`.
fn handler_playbook(fleet: &Fleet, extra_steps: &str) -> PathBuf {
    for f in ["nginx.conf", "site.conf", "app.conf"] {
        fleet.write(f, &format!("{f} v1\n"));
    }
    fleet.write_playbook(
        "pb.toml",
        "handlers",
        "hx",
        &format!(
            r#"
[[steps]]
name = "nginx config"
copy = {{ src = "nginx.conf", dest = "{{{{ app_dir }}}}/nginx.conf" }}
on_change = {{ restart = ["proxy"] }}
tags = ["config"]

[[steps]]
name = "site config"
copy = {{ src = "site.conf", dest = "{{{{ app_dir }}}}/site.conf" }}
on_change = {{ restart = ["proxy"] }}

[[steps]]
name = "app config"
copy = {{ src = "app.conf", dest = "{{{{ app_dir }}}}/app.conf" }}
on_change = {{ exec = {{ service = "proxy", command = ["nginx", "-s", "reload"] }} }}
{extra_steps}
[[steps]]
name = "start"
compose = {{ command = "up", dir = "{{{{ app_dir }}}}", project = "hx" }}
"#
        ),
    )
}

fn count(fleet: &Fleet, host: &str, command: &str) -> usize {
    fleet
        .host(host)
        .docker_commands()
        .iter()
        .filter(|c| *c == command)
        .count()
}

fn changed_steps(run: &Run, host: &str) -> usize {
    run.host_text(host)
        .lines()
        .filter(|l| l.starts_with(&format!("[{host}] changed ")))
        .count()
}

fn deploy(fleet: &Fleet, pb: &Path, extra: &[&str]) -> Run {
    fleet.deploy(pb, extra)
}

#[test]
fn a_changed_file_fires_its_handler_once_after_the_steps_and_an_unchanged_redeploy_none() {
    let fleet = start_fleet(2);
    let pb = handler_playbook(&fleet, "");

    // First deploy: three files written, two of them naming the same restart: one restart
    // and one reload per host, after `up` (the last step), in the steps' own session.
    let marks: Vec<usize> = fleet.hosts.iter().map(|h| h.sshd_log().len()).collect();
    let run = deploy(&fleet, &pb, &[]);
    run.assert_code(0);
    for (h, from) in fleet.hosts.iter().zip(&marks) {
        assert_eq!(count(&fleet, &h.name, RESTART), 1, "{}", run.all());
        assert_eq!(count(&fleet, &h.name, RELOAD), 1, "{}", run.all());
        let cmds = h.docker_commands();
        let up = cmds.iter().position(|c| c.contains(" up ")).unwrap();
        let restart = cmds.iter().position(|c| c == RESTART).unwrap();
        assert!(up < restart, "handlers run after the steps: {cmds:?}");
        run.assert_outcome(&h.name, RESTART_STEP, "changed");
        run.assert_outcome(&h.name, RELOAD_STEP, "changed");
        let log = h.sshd_log();
        assert_eq!(logins(&log[*from..]), 1, "{log}");
        assert_eq!(
            log[*from..].matches("Starting session:").count(),
            2,
            "a firing handler rides in the steps' script: lock+probe, then the steps\n{log}"
        );
    }

    // Unchanged redeploy: no handler runs, nothing changed, still two sessions.
    let marks: Vec<usize> = fleet.hosts.iter().map(|h| h.sshd_log().len()).collect();
    let run = deploy(&fleet, &pb, &[]);
    run.assert_code(0);
    for (h, from) in fleet.hosts.iter().zip(&marks) {
        assert_eq!(count(&fleet, &h.name, RESTART), 1, "{}", run.all());
        assert_eq!(count(&fleet, &h.name, RELOAD), 1, "{}", run.all());
        run.assert_outcome(&h.name, RESTART_STEP, "skipped");
        run.assert_outcome(&h.name, RELOAD_STEP, "skipped");
        assert_eq!(changed_steps(&run, &h.name), 0, "{}", run.all());
        let log = h.sshd_log();
        assert_eq!(
            log[*from..].matches("Starting session:").count(),
            2,
            "{log}"
        );
    }

    // Only the app config changes: only the reload fires.
    fleet.write("app.conf", "app.conf v2\n");
    let run = deploy(&fleet, &pb, &[]);
    run.assert_code(0);
    for h in &fleet.hosts {
        assert_eq!(count(&fleet, &h.name, RESTART), 1, "{}", run.all());
        assert_eq!(count(&fleet, &h.name, RELOAD), 2, "{}", run.all());
        run.assert_outcome(&h.name, RESTART_STEP, "skipped");
        run.assert_outcome(&h.name, RELOAD_STEP, "changed");
        assert_eq!(
            changed_steps(&run, &h.name),
            2,
            "the file and the reload\n{}",
            run.all()
        );
    }
}

#[test]
fn a_handler_does_not_run_after_a_failed_step_nor_when_tags_skip_its_trigger() {
    let fleet = start_fleet(1);
    let pb = handler_playbook(&fleet, "");
    for h in &fleet.hosts {
        h.set_docker_fail(Some("up"));
    }
    let run = deploy(&fleet, &pb, &[]);
    run.assert_code(1);
    run.assert_outcome("h1", "nginx config", "changed");
    run.assert_outcome("h1", "start", "FAILED");
    run.assert_outcome("h1", RESTART_STEP, "skipped");
    assert_eq!(count(&fleet, "h1", RESTART), 0, "{}", run.all());
    assert_eq!(count(&fleet, "h1", RELOAD), 0, "{}", run.all());

    // --tags config: only the nginx config runs; its change fires the restart, which
    // names only the steps that run.
    fleet.host("h1").set_docker_fail(None);
    fleet.write("nginx.conf", "nginx.conf v2\n");
    fleet.write("app.conf", "app.conf v2\n");
    let run = deploy(&fleet, &pb, &["--tags", "config"]);
    run.assert_code(0);
    run.assert_outcome("h1", "restart proxy (nginx config changed)", "changed");
    assert_eq!(count(&fleet, "h1", RESTART), 1, "{}", run.all());
    assert_eq!(count(&fleet, "h1", RELOAD), 0, "{}", run.all());

    // The app config changed but its step is left out by the tags: no reload.
    let untagged = fleet.write_playbook(
        "only.toml",
        "handlers",
        "hx",
        r#"
[[steps]]
name = "app config"
copy = { src = "app.conf", dest = "{{ app_dir }}/app.conf" }
on_change = { run = "echo reloaded >> reloads.log", dir = "{{ app_dir }}" }
tags = ["app"]

[[steps]]
name = "other"
run = "true"
tags = ["other"]
"#,
    );
    let run = deploy(&fleet, &untagged, &["--tags", "other"]);
    run.assert_code(0);
    assert!(!fleet.host("h1").root.join("reloads.log").exists());
    // `run` reacts in `dir` when its trigger does change.
    let run = deploy(&fleet, &untagged, &[]);
    run.assert_code(0);
    run.assert_outcome(
        "h1",
        "run echo reloaded >> reloads.log (app config changed)",
        "changed",
    );
    let log = std::fs::read_to_string(fleet.host("h1").root.join("reloads.log")).unwrap();
    assert_eq!(log, "reloaded\n");
}

/// Bad `on_change` input: refused with file:line:col, exit 2, before any connection.
#[test]
fn bad_on_change_is_refused_with_its_place_and_a_hint() {
    let fleet = start_fleet(1);
    fleet.write("a.conf", "x\n");
    let inv = fleet.write_inventory("");
    let cases: &[(&str, &str, &str)] = &[
        (
            "copy = { src = \"a.conf\", dest = \"/tmp/a\" }\non_change = { }\n",
            "names nothing to do",
            "pb.toml:8:13",
        ),
        (
            "copy = { src = \"a.conf\", dest = \"/tmp/a\" }\non_change = { restart = [\"p\"], run = \"x\" }\n",
            "more than one of",
            "pb.toml:8:13",
        ),
        (
            "copy = { src = \"a.conf\", dest = \"/tmp/a\" }\non_change = { restart = [] }\n",
            "names no service",
            "pb.toml:8:25",
        ),
        (
            "copy = { src = \"a.conf\", dest = \"/tmp/a\" }\non_change = { restart = [\"-x\"] }\n",
            "bad compose service name `-x`",
            "pb.toml:8:26",
        ),
        (
            "copy = { src = \"a.conf\", dest = \"/tmp/a\" }\non_change = { exec = { service = \"p\", command = [] } }\n",
            "empty `command`",
            "pb.toml:8:",
        ),
        (
            "copy = { src = \"a.conf\", dest = \"/tmp/a\" }\non_change = { run = \"x\", project = \"p\" }\n",
            "`project` applies to `restart` and `exec` only",
            "pb.toml:8:",
        ),
        (
            "copy = { src = \"a.conf\", dest = \"/tmp/a\" }\non_change = { restart = [\"p\"], sevices = [] }\n",
            "unknown field `sevices`",
            "pb.toml:8:",
        ),
        (
            "run = \"true\"\non_change = { restart = [\"p\"] }\n",
            "`on_change` applies to `copy` and `template` steps only",
            "pb.toml:8:13",
        ),
        (
            "copy = { src = \"a.conf\", dest = \"/tmp/a\" }\non_change = { restart = [\"p\"] }\n",
            "does not know the compose project's directory",
            "pb.toml:8:13",
        ),
    ];
    for (step, message, place) in cases {
        let pb = fleet.write_playbook(
            "pb.toml",
            "bad",
            "hx",
            &format!("[[steps]]\nname = \"s\"\n{step}"),
        );
        let run = run_playbook("deploy", &inv, &pb);
        run.assert_code(2);
        assert!(run.stderr.contains(message), "{message}\n{}", run.all());
        assert!(run.stderr.contains(place), "{place}\n{}", run.all());
        assert!(run.stderr.contains("hint"), "{}", run.all());
        assert_eq!(logins(&fleet.host("h1").sshd_log()), 0, "{}", run.all());
    }
}

/// Status and raw headers of a GET through host `k`'s nginx.
fn headers_of(fleet: &LocalFleet, k: usize, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let port = fleet.http_base + k as u16;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut raw = String::new();
    let _ = stream.read_to_string(&mut raw);
    raw.split_once("\r\n\r\n")
        .map_or(raw.clone(), |(h, _)| h.to_string())
}

/// The example's nginx mounts `./nginx.conf` as a single file. dropship replaces files
/// atomically (a new inode), so a running container keeps the content it started with: without
/// the handler a changed template is written but not served; with `on_change = { restart =
/// ["proxy"] }` it is, and an unchanged redeploy changes nothing and restarts nothing.
fn a_changed_nginx_template_is_served_after_the_handler_restarts_proxy(flavor: Flavor) {
    let fleet = LocalFleet::start("e2eh", 1, flavor);
    let host = fleet.host(1);
    let playbook = fleet.playbook("deploy.toml");
    let with_handler = std::fs::read_to_string(&playbook).unwrap();
    let handler_line = "on_change = { restart = [\"proxy\"] }\n";
    assert!(with_handler.contains(handler_line), "{with_handler}");
    let template = fleet.project().join("templates/nginx.conf.j2");
    let original = std::fs::read_to_string(&template).unwrap();
    let with_header = |value: &str| {
        original.replace(
            "        proxy_pass http://app;\n",
            &format!("        proxy_pass http://app;\n        add_header X-Test {value} always;\n"),
        )
    };

    // Without the handler: the new config is written, the running nginx keeps the old one.
    std::fs::write(&playbook, with_handler.replace(handler_line, "")).unwrap();
    fleet.deploy("deploy.toml", &[]).assert_code(0);
    std::fs::write(&template, with_header("1")).unwrap();
    let run = fleet.deploy("deploy.toml", &[]);
    run.assert_code(0);
    run.assert_outcome(&host, "nginx config", "changed");
    let headers = headers_of(&fleet, 1, "/");
    assert!(headers.starts_with("HTTP/1.1 200"), "{headers}");
    assert!(
        !headers.contains("X-Test"),
        "without a restart the single-file mount keeps the old config:\n{headers}"
    );

    // With the handler: the changed template is served after the redeploy.
    std::fs::write(&playbook, &with_handler).unwrap();
    std::fs::write(&template, with_header("2")).unwrap();
    let run = fleet.deploy("deploy.toml", &[]);
    run.assert_code(0);
    run.assert_outcome(&host, "nginx config", "changed");
    run.assert_outcome(&host, "restart proxy (nginx config changed)", "changed");
    let headers = headers_of(&fleet, 1, "/");
    assert!(headers.contains("X-Test: 2"), "{headers}\n{}", run.all());

    // Unchanged: nothing changed, no restart.
    let run = fleet.deploy("deploy.toml", &[]);
    run.assert_code(0);
    run.assert_outcome(&host, "restart proxy (nginx config changed)", "skipped");
    let changed = run
        .host_text(&host)
        .lines()
        .filter(|l| l.starts_with(&format!("[{host}] changed ")))
        .count();
    assert_eq!(changed, 0, "{}", run.all());
    assert!(headers_of(&fleet, 1, "/").contains("X-Test: 2"));
}
