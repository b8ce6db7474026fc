//! The compose steps real apps use — `exec`, `run`, `build`, `logs` — against sshd hosts with
//! the docker stand-in (command lines, outcomes, bad input) and, on both compose flavours, the
//! real engine: a command writes into the running service, a one-off container leaves nothing
//! behind, `build` from a context uploaded to the host is `changed` only when the image is new
//! and the following `up` recreates the service exactly then, `logs` shows the service's lines.

use std::process::Command;

use crate::harness::{
    Flavor, LocalFleet, Run, logins, project_containers, run_playbook, start_fleet,
};

crate::on_both_compose_flavors! {
    compose_steps_on_the_real_engine =>
        e2e_compose_steps_exec_run_build_logs_v1,
        e2e_compose_steps_exec_run_build_logs_v2;
}

const STANDIN_STEPS: &str = r#"
[[steps]]
name = "migrate"
compose = { command = "exec", dir = "{{ app_dir }}", service = "web", args = ["./manage.py", "migrate", "--noinput"] }

[[steps]]
name = "one-off"
compose = { command = "run", dir = "{{ app_dir }}", service = "web", args = ["greet", "{{ host.name }}"], no_deps = true }

[[steps]]
name = "build"
compose = { command = "build", dir = "{{ app_dir }}", services = ["web"], pull = true }

[[steps]]
name = "web logs"
compose = { command = "logs", dir = "{{ app_dir }}", services = ["web"] }
"#;

#[test]
fn exec_run_build_and_logs_send_one_command_line_each_in_the_steps_session() {
    let fleet = start_fleet(2);
    let pb = fleet.write_playbook("pb.toml", "cs", "cs", STANDIN_STEPS);
    let marks: Vec<usize> = fleet.hosts.iter().map(|h| h.sshd_log().len()).collect();
    let run = fleet.deploy(&pb, &[]);
    run.assert_code(0);
    for (h, from) in fleet.hosts.iter().zip(&marks) {
        let cmds = h.docker_commands();
        let compose: Vec<&String> = cmds
            .iter()
            .filter(|c| c.starts_with("compose -p cs "))
            .collect();
        let expected = [
            "compose -p cs exec -T -- web ./manage.py migrate --noinput".to_string(),
            format!(
                "compose -p cs run --rm -T --no-deps -- web greet {}",
                h.name
            ),
            "compose -p cs config".to_string(),
            "compose -p cs build --pull -- web".to_string(),
            "compose -p cs logs --no-color --tail 100 -- web".to_string(),
        ];
        // `build` reads its services' images from `compose config` before and after (none
        // here: the stand-in prints no `build` section).
        assert_eq!(
            compose,
            expected.iter().collect::<Vec<_>>(),
            "{}",
            run.all()
        );
        run.assert_outcome(&h.name, "migrate", "changed");
        run.assert_outcome(&h.name, "one-off", "changed");
        run.assert_outcome(&h.name, "build", "ok");
        run.assert_outcome(&h.name, "web logs", "ok");
        let log = h.sshd_log();
        assert_eq!(logins(&log[*from..]), 1, "{log}");
        assert_eq!(
            log[*from..].matches("Starting session:").count(),
            2,
            "lock+probe, then every step in one script\n{log}"
        );
    }

    // A failing command fails its step with what it printed, and stops the host.
    for h in &fleet.hosts {
        h.set_docker_fail(Some("exec"));
    }
    let run = fleet.deploy(&pb, &[]);
    run.assert_code(1);
    for h in &fleet.hosts {
        run.assert_outcome(&h.name, "migrate", "FAILED");
        assert!(
            run.host_text(&h.name)
                .contains("error: simulated failure of exec"),
            "{}",
            run.all()
        );
    }
}

/// Bad `compose` input: refused with file:line:col, key and hint, exit 2, before any
/// connection.
#[test]
fn bad_compose_steps_are_refused_with_their_place_and_a_hint() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "compose = { command = \"frobnicate\", dir = \"/srv\" }",
            "unknown variant `frobnicate`",
            "pb.toml:7:23",
            "steps.0.compose.command",
        ),
        (
            "compose = { command = \"exec\", dir = \"/srv\", args = [\"ls\"] }",
            "`compose exec` needs `service`",
            "pb.toml:7:11",
            "steps.0.compose",
        ),
        (
            "compose = { command = \"exec\", dir = \"/srv\", service = \"web\" }",
            "`compose exec` needs `args`, the command to run",
            "pb.toml:7:11",
            "steps.0.compose",
        ),
        (
            "compose = { command = \"exec\", dir = \"/srv\", service = \"web\", args = \"./manage.py migrate\" }",
            "invalid type: string \"./manage.py migrate\", expected a sequence",
            "pb.toml:7:",
            "steps.0.compose.args",
        ),
        (
            "compose = { command = \"run\", dir = \"/srv\", service = \"web\", args = [\"ls\", 3] }",
            "invalid type: integer `3`, expected a string",
            "pb.toml:7:",
            "steps.0.compose.args",
        ),
        (
            "compose = { command = \"exec\", dir = \"/srv\", service = \"web\", args = [\"\", \"x\"] }",
            "the command's name is empty",
            "pb.toml:7:",
            "steps.0.compose.args",
        ),
        (
            "compose = { command = \"pull\", dir = \"/srv\", args = [\"x\"] }",
            "`args` does not apply to `compose pull`",
            "pb.toml:7:52",
            "steps.0.compose.args",
        ),
        (
            "compose = { command = \"up\", dir = \"/srv\", tail = 5 }",
            "`tail` does not apply to `compose up`",
            "pb.toml:7:",
            "steps.0.compose.tail",
        ),
        (
            "compose = { command = \"logs\", dir = \"/srv\", service = \"web\" }",
            "`service` does not apply to `compose logs`",
            "pb.toml:7:",
            "steps.0.compose.service",
        ),
        (
            "compose = { command = \"exec\", dir = \"/srv\", service = \"-d\", args = [\"ls\"] }",
            "bad compose service name `-d`",
            "pb.toml:7:",
            "steps.0.compose.service",
        ),
        (
            "compose = { command = \"exec\", dir = \"/srv\", service = \"{{ app }} x\", args = [\"ls\"] }",
            "bad compose service name `cs x`",
            "pb.toml:7:",
            "steps.0.compose.service",
        ),
        (
            "compose = { command = \"logs\", dir = \"/srv\", tail = -1 }",
            "bad `tail` -1",
            "pb.toml:7:",
            "steps.0.compose.tail",
        ),
        (
            "compose = { command = \"build\", dir = \"/srv\", services = [\"--pull\"] }",
            "bad compose service name `--pull`",
            "pb.toml:7:",
            "steps.0.compose.services",
        ),
    ];
    for (step, message, place, key) in cases {
        let pb = fleet.write_playbook(
            "pb.toml",
            "bad",
            "cs",
            &format!("[[steps]]\nname = \"s\"\n{step}\n"),
        );
        let run = run_playbook("deploy", &inv, &pb);
        run.assert_code(2);
        assert!(run.stderr.contains(message), "{message}\n{}", run.all());
        assert!(run.stderr.contains(place), "{place}\n{}", run.all());
        assert!(
            run.stderr.contains(&format!("key: `{key}")),
            "{key}\n{}",
            run.all()
        );
        assert!(run.stderr.contains("hint: "), "{}", run.all());
        assert_eq!(logins(&fleet.host("h1").sshd_log()), 0, "{}", run.all());
    }
}

/// The real engine's view: ids of the project's containers, and a command's output inside one.
fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes what the test's compose project left on the shared engine: its containers, its
/// network and its built image (named by v2 or v1).
struct Leftovers(String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        let project = &self.0;
        let ids = project_containers(project, false);
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &format!("{project}_default")])
            .output();
        let _ = Command::new("docker")
            .args(["rmi", &format!("{project}-web"), &format!("{project}_web")])
            .output();
    }
}

const DOCKERFILE: &str = "FROM dropship-localfleet/pixel-app:A\nCOPY stamp.txt /stamp.txt\n";

/// `web` is built from `build/` (uploaded by `copy` steps) and says which stamp it was built
/// with when it starts.
const COMPOSE_FILE: &str = r#"services:
  web:
    build: ./build
    command: ["sh", "-c", "echo started-$$(cat /stamp.txt); exec sleep infinity"]
    stop_signal: SIGKILL
    volumes:
      - ./token:/run/token:ro
"#;

const PLAYBOOK: &str = r#"name = "compose steps"
app = "cs"
hosts = "web"

[vars]
stack = "{{ app_dir }}/cs"
project = "cs-{{ host.name }}"

[secrets]
token = { file = "cs/token.secret" }

[[steps]]
name = "compose file"
copy = { src = "cs/docker-compose.yml", dest = "{{ stack }}/docker-compose.yml" }

[[steps]]
name = "Dockerfile"
copy = { src = "cs/Dockerfile", dest = "{{ stack }}/build/Dockerfile" }

[[steps]]
name = "stamp"
copy = { src = "cs/stamp.txt", dest = "{{ stack }}/build/stamp.txt" }

[[steps]]
name = "token"
template = { src = "cs/token.j2", dest = "{{ stack }}/token", mode = "0644" }

[[steps]]
name = "build web"
compose = { command = "build", dir = "{{ stack }}", project = "{{ project }}", services = ["web"] }

[[steps]]
name = "start"
compose = { command = "up", dir = "{{ stack }}", project = "{{ project }}" }

[[steps]]
name = "write in web"
compose = { command = "exec", dir = "{{ stack }}", project = "{{ project }}", service = "web", args = ["sh", "-c", "printf '%s' \"$1\" > /tmp/out; echo wrote", "sh", "{{ host.name }} $(not run) 'q'"] }

[[steps]]
name = "read token"
compose = { command = "exec", dir = "{{ stack }}", project = "{{ project }}", service = "web", args = ["sh", "-c", "echo token=$(cat /run/token)"] }

[[steps]]
name = "one-off"
compose = { command = "run", dir = "{{ stack }}", project = "{{ project }}", service = "web", args = ["cat", "/stamp.txt"] }

[[steps]]
name = "web logs"
compose = { command = "logs", dir = "{{ stack }}", project = "{{ project }}", services = ["web"], tail = 5 }
"#;

/// The id of the running `web` container of `project`, once there is exactly one container.
fn web_container(project: &str) -> String {
    let all = project_containers(project, false);
    assert_eq!(all.len(), 1, "only web, no one-off left behind: {all:?}");
    all[0].clone()
}

fn compose_steps_on_the_real_engine(flavor: Flavor) {
    let fleet = LocalFleet::start("e2ecs", 1, flavor);
    let host = fleet.host(1);
    let project = format!("cs-{host}");
    let _leftovers = Leftovers(project.clone());
    let sources = fleet.project().join("playbooks/cs");
    std::fs::create_dir_all(&sources).unwrap();
    std::fs::write(sources.join("docker-compose.yml"), COMPOSE_FILE).unwrap();
    std::fs::write(sources.join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(sources.join("stamp.txt"), "one\n").unwrap();
    let token = format!("tok-{}-{}", std::process::id(), host.len());
    std::fs::write(sources.join("token.secret"), &token).unwrap();
    std::fs::write(sources.join("token.j2"), "{{ secrets.token }}\n").unwrap();
    std::fs::write(fleet.playbook("cs.toml"), PLAYBOOK).unwrap();
    let outcomes = |run: &Run, expected: &[(&str, &str)]| {
        for (step, label) in expected {
            run.assert_outcome(&host, step, label);
        }
    };

    // First deploy: built (a new image), started, the command ran in the service with every
    // word as data, the one-off container printed the stamp and is gone, logs shown.
    let run = fleet.deploy("cs.toml", &[]);
    run.assert_code(0);
    outcomes(
        &run,
        &[
            ("build web", "changed"),
            ("start", "changed"),
            ("write in web", "changed"),
            ("one-off", "changed"),
            ("web logs", "ok"),
        ],
    );
    let text = run.host_text(&host);
    assert!(
        text.contains(&format!("[{host}]     wrote")),
        "{}",
        run.all()
    );
    assert!(text.contains(&format!("[{host}]     one")), "{}", run.all());
    assert!(text.contains("started-one"), "{}", run.all());
    // What a command printed is masked like every output.
    run.assert_outcome(&host, "read token", "changed");
    assert!(
        text.contains(&format!("[{host}]     token=********")),
        "{}",
        run.all()
    );
    assert!(!run.all().contains(&token), "{}", run.all());
    let first = web_container(&project);
    assert_eq!(
        docker(&["exec", &first, "cat", "/tmp/out"]),
        format!("{host} $(not run) 'q'")
    );
    let made_by = docker(&[
        "inspect",
        "--format",
        "{{ index .Config.Labels \"com.docker.compose.version\" }}",
        &first,
    ]);
    let major = match flavor {
        Flavor::V1 => "1.",
        Flavor::V2 => "2.",
    };
    assert!(made_by.starts_with(major), "{flavor:?}: made by {made_by}");

    // Nothing changed: the build finds the same image, `up` keeps the container.
    let run = fleet.deploy("cs.toml", &[]);
    run.assert_code(0);
    outcomes(
        &run,
        &[("build web", "ok"), ("start", "ok"), ("web logs", "ok")],
    );
    assert_eq!(web_container(&project), first);

    // A changed build context: a new image, and `up` recreates web from it.
    std::fs::write(sources.join("stamp.txt"), "two\n").unwrap();
    let run = fleet.deploy("cs.toml", &[]);
    run.assert_code(0);
    outcomes(
        &run,
        &[
            ("stamp", "changed"),
            ("build web", "changed"),
            ("start", "changed"),
            ("one-off", "changed"),
        ],
    );
    let second = web_container(&project);
    assert_ne!(second, first, "{}", run.all());
    let text = run.host_text(&host);
    assert!(text.contains(&format!("[{host}]     two")), "{}", run.all());
    assert!(text.contains("started-two"), "{}", run.all());
    assert_eq!(
        docker(&["inspect", "--format", "{{.Image}}", &second]).trim(),
        docker(&[
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            &built_image(flavor, &project)
        ])
        .trim(),
        "web runs the image just built"
    );
}

/// The name compose gives the image of a service built without `image`: v2 joins project and
/// service with `-`, v1 with `_`.
fn built_image(flavor: Flavor, project: &str) -> String {
    match flavor {
        Flavor::V1 => format!("{project}_web"),
        Flavor::V2 => format!("{project}-web"),
    }
}
