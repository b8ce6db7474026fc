//! The shipped example (playbooks/deploy.toml + templates/) deployed for real: the Docker engine,
//! a private registry with htpasswd auth and locally built images (scripts/localfleet/), sshd
//! hosts on 127.0.0.1 whose `docker` is the real one. Checked over HTTP through each host's nginx.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::harness::{Run, dropship_reporting, free_range};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Registry + images + `n` hosts from scripts/localfleet, in a private state dir and on ports
/// of their own, so it can run beside the demo and other tests. Torn down on drop.
pub struct LocalFleet {
    pub dir: tempfile::TempDir,
    /// Host `k` is `{name}-{k}`.
    pub name: String,
    env: Vec<(String, String)>,
    pub hosts: usize,
    pub http_base: u16,
    pub registry_port: u16,
}

impl LocalFleet {
    /// `base` (plus this process's id) prefixes the hosts (`base-PID-1`, …), their compose
    /// projects and volumes: distinct per test and per test run, since all share one engine.
    pub fn start(base: &str, hosts: usize) -> LocalFleet {
        let name = format!("{base}-{}", std::process::id());
        let name = name.as_str();
        let dir = tempfile::Builder::new()
            .prefix("dropship-e2e-")
            .tempdir()
            .unwrap();
        // The example, copied verbatim: playbooks/ and templates/ side by side, secrets in
        // .fleet/secrets/ as the playbook expects.
        let project = dir.path().join("project");
        copy_dir(
            &Path::new(REPO).join("playbooks"),
            &project.join("playbooks"),
        );
        copy_dir(
            &Path::new(REPO).join("templates"),
            &project.join("templates"),
        );
        let ssh_base = free_range(hosts as u16 + 1);
        let http_base = free_range(hosts as u16 + 1);
        let registry_port = free_range(1);
        let mut fleet = LocalFleet {
            env: vec![
                (
                    "DROPSHIP_STATE".into(),
                    project.join(".fleet").display().to_string(),
                ),
                ("REGISTRY_PORT".into(), registry_port.to_string()),
                ("FLEET_BASE_PORT".into(), ssh_base.to_string()),
                ("FLEET_HTTP_BASE_PORT".into(), http_base.to_string()),
                ("FLEET_NAME".into(), name.into()),
            ],
            dir,
            name: name.to_string(),
            hosts,
            http_base,
            registry_port,
        };
        remove_leftover_stacks(name, hosts);
        fleet.script("registry.sh", &["start"]);
        fleet.script("images.sh", &[]);
        fleet.script("hosts.sh", &["start", &hosts.to_string()]);
        fleet
    }

    fn script(&mut self, name: &str, args: &[&str]) {
        let out = Command::new("bash")
            .arg(Path::new(REPO).join("scripts/localfleet").join(name))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name} {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The inventory name of host `k` (1-based).
    pub fn host(&self, k: usize) -> String {
        format!("{}-{k}", self.name)
    }

    pub fn project(&self) -> PathBuf {
        self.dir.path().join("project")
    }

    pub fn inventory(&self) -> PathBuf {
        self.project().join(".fleet/inventory.toml")
    }

    pub fn playbook(&self, name: &str) -> PathBuf {
        self.project().join("playbooks").join(name)
    }

    pub fn secret(&self, name: &str) -> String {
        std::fs::read_to_string(self.project().join(".fleet/secrets").join(name)).unwrap()
    }

    pub fn set_secret(&self, name: &str, value: &str) {
        std::fs::write(self.project().join(".fleet/secrets").join(name), value).unwrap();
    }

    pub fn deploy(&self, playbook: &str, extra: &[&str]) -> Run {
        let inventory = self.inventory();
        let playbook = self.playbook(playbook);
        let mut args = vec![
            "deploy",
            "-i",
            inventory.to_str().unwrap(),
            playbook.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        dropship_reporting(&args, None)
    }

    /// GET through host `k`'s nginx (1-based).
    pub fn get(&self, k: usize, path: &str) -> (u16, String) {
        http_get(self.http_base + k as u16, path)
    }
}

impl Drop for LocalFleet {
    fn drop(&mut self) {
        for (script, args) in [
            ("hosts.sh", &["clean"][..]),
            ("hosts.sh", &["stop"]),
            ("registry.sh", &["stop"]),
        ] {
            let _ = Command::new("bash")
                .arg(Path::new(REPO).join("scripts/localfleet").join(script))
                .args(args)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .output();
        }
    }
}

/// A test run killed half-way (CI timeout, Ctrl-C) leaves its stacks behind, and a database
/// volume initialised with other secrets would break the next run: remove them first.
fn remove_leftover_stacks(name: &str, hosts: usize) {
    for k in 1..=hosts {
        let project = format!("pixel-{name}-{k}");
        let label = format!("label=com.docker.compose.project={project}");
        let ids = Command::new("docker")
            .args(["ps", "-aq", "--filter", &label])
            .output()
            .unwrap();
        let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
        for volume in ["db", "static"] {
            let _ = Command::new("docker")
                .args(["volume", "rm", &format!("{project}-{volume}")])
                .output();
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// A plain HTTP/1.0 GET on 127.0.0.1; status and body.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut raw = String::new();
    let _ = stream.read_to_string(&mut raw);
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn fingerprint(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.trim_end_matches('\n').as_bytes()))[..12].to_string()
}

#[test]
fn example_app_deploys_for_real_and_rolls_forward() {
    let fleet = LocalFleet::start("e2ea", 2);
    let secret_fp = fingerprint(&fleet.secret("django_secret_key"));

    // The registry refuses anonymous pulls: the docker_login step is what lets hosts pull.
    let (status, _) = http_get(fleet.registry_port, "/v2/pixel/app/manifests/A");
    assert_eq!(status, 401, "the registry must require auth");

    let run = fleet.deploy("deploy.toml", &["--var", "version=A"]);
    run.assert_code(0);
    for k in 1..=fleet.hosts {
        let (status, body) = fleet.get(k, "/");
        assert_eq!(status, 200, "host {k}: {body}\n{}", run.all());
        assert!(body.contains("version=A\n"), "host {k}: {body}");
        assert!(body.contains("image=A\n"), "host {k}: {body}");
        assert!(
            body.contains(&format!("instance={}\n", fleet.host(k))),
            "host {k}: {body}"
        );
        // Only the rendered .env carries the secret key: the app reports its fingerprint.
        assert!(
            body.contains(&format!("secret_fingerprint={secret_fp}\n")),
            "host {k}: {body}"
        );
        assert!(body.contains("db=ok"), "host {k}: {body}");
        // nginx serves /static/ itself.
        let (status, text) = fleet.get(k, "/static/hello.txt");
        assert_eq!(status, 200, "host {k}: {text}");
    }
    // No secret value anywhere in dropship's output.
    for name in [
        "django_secret_key",
        "postgres_password",
        "registry_password",
    ] {
        let value = fleet.secret(name);
        assert!(
            !run.all().contains(value.trim()),
            "{name} leaked:\n{}",
            run.all()
        );
    }

    let run = fleet.deploy("deploy.toml", &["--var", "version=B"]);
    run.assert_code(0);
    for k in 1..=fleet.hosts {
        let (_, body) = fleet.get(k, "/");
        assert!(
            body.contains("version=B\n") && body.contains("image=B\n"),
            "host {k}: {body}"
        );
        assert!(body.contains("db=ok"), "host {k}: {body}");
    }

    // Unchanged: a third run rewrites no file.
    let run = fleet.deploy("deploy.toml", &["--var", "version=B"]);
    run.assert_code(0);
    for step in ["compose file", "nginx config", "secrets (.env)"] {
        run.assert_outcome(&fleet.host(1), step, "ok");
    }
}

#[test]
fn real_failures_are_reported_per_step() {
    let fleet = LocalFleet::start("e2eb", 1);
    // A fast-failing copy of the example's health check.
    let pb = fleet.playbook("deploy.toml");
    let text = std::fs::read_to_string(&pb)
        .unwrap()
        .replace("timeout = \"60s\"", "timeout = \"6s\"");
    std::fs::write(fleet.playbook("fast.toml"), text).unwrap();

    // 1. A wrong registry password: login fails with the registry's message, masked; no compose.
    let real = fleet.secret("registry_password");
    let wrong = "wrong-Pa55word-e2e";
    fleet.set_secret("registry_password", wrong);
    let run = fleet.deploy("fast.toml", &[]);
    run.assert_code(1);
    run.assert_outcome(&fleet.host(1), "registry login", "FAILED");
    run.assert_outcome(&fleet.host(1), "pull images", "skipped");
    let text = run.host_text(&fleet.host(1));
    assert!(
        text.to_lowercase().contains("unauthorized")
            || text.contains("incorrect username or password"),
        "{text}"
    );
    assert!(
        !run.all().contains(wrong),
        "the password leaked:\n{}",
        run.all()
    );
    fleet.set_secret("registry_password", &real);

    // 2. A tag that is not in the registry: pull fails with docker's stderr tail.
    let run = fleet.deploy("fast.toml", &["--var", "version=no-such-tag"]);
    run.assert_code(1);
    run.assert_outcome(&fleet.host(1), "pull images", "FAILED");
    let text = run.host_text(&fleet.host(1));
    assert!(
        text.contains("no-such-tag")
            && (text.contains("not found") || text.contains("manifest unknown")),
        "{text}"
    );

    // 3. A health check that never passes: the database password changed after the database
    //    was initialised, so the app answers /healthz with 503 until the timeout.
    //    The healthy baseline uses the example's own 60s timeout: it is the stack's first start
    //    on this host (PostgreSQL initialises its database), which can take longer than the
    //    fast copy's 6s when the machine is busy.
    fleet.deploy("deploy.toml", &[]).assert_code(0);
    fleet.set_secret("postgres_password", "changed-after-init");
    let run = fleet.deploy("fast.toml", &[]);
    run.assert_code(1);
    run.assert_outcome(&fleet.host(1), "healthy through nginx", "FAILED");
    let text = run.host_text(&fleet.host(1));
    assert!(text.contains("last: HTTP 503"), "{text}");
}

#[test]
fn broken_release_is_rolled_back_on_the_canary_and_reaches_no_other_host() {
    let fleet = LocalFleet::start("e2ec", 3);
    let pb = fleet.playbook("release.toml");
    let text = std::fs::read_to_string(&pb)
        .unwrap()
        .replace("timeout = \"60s\"", "timeout = \"20s\"")
        .replace("pause = \"2s\"", "pause = \"0s\"");
    std::fs::write(fleet.playbook("release-fast.toml"), text).unwrap();

    let run = fleet.deploy("release-fast.toml", &["--var", "version=A"]);
    run.assert_code(0);
    let releases_of = |k: usize| -> Vec<String> {
        let dir = fleet
            .project()
            .join(format!(".fleet/apps/{}/releases", fleet.host(k)));
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let release_a = releases_of(1);
    assert_eq!(release_a.len(), 1);
    for k in 1..=3 {
        let (_, body) = fleet.get(k, "/");
        assert!(
            body.contains("version=A\n") && body.contains("db=ok"),
            "host {k}: {body}"
        );
    }

    // B is broken: the database password it renders differs from the one the database was
    // initialised with, so the app's /healthz answers 503 on the canary.
    fleet.set_secret("postgres_password", "rotated-without-migrating");
    let run = fleet.deploy("release-fast.toml", &["--var", "version=B"]);
    run.assert_code(1);
    assert!(run.all().contains("rollout halted"), "{}", run.all());
    assert!(
        run.summary_row(&fleet.host(1))
            .unwrap_or_default()
            .contains("rolled back to"),
        "{}",
        run.all()
    );
    assert!(
        run.report().host(&fleet.host(1))["rolled_back"].is_string(),
        "{}",
        run.report()
    );
    // The canary serves A again, healthy.
    let (status, body) = fleet.get(1, "/");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("version=A\n") && body.contains("image=A\n") && body.contains("db=ok"),
        "{body}"
    );
    // The other hosts never saw B: no new release directory, still serving A.
    for k in 2..=3 {
        assert_eq!(releases_of(k), release_a, "host {k}");
        let (_, body) = fleet.get(k, "/");
        assert!(body.contains("version=A\n"), "host {k}: {body}");
        assert!(
            run.summary_row(&fleet.host(k))
                .unwrap_or_default()
                .contains("not deployed"),
            "{}",
            run.all()
        );
        run.assert_status(&fleet.host(k), "not deployed");
    }
}
