//! The shipped example's fleet for the end-to-end tests: the Docker engine, a private registry
//! and locally built images (scripts/localfleet/), sshd hosts on 127.0.0.1 whose `docker` is
//! the real one, reached over HTTP through each host's nginx. Imports `cli`, `files`, `ports`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::cli::{Run, dropship_reporting};
use super::files::copy_dir;
use super::ports::free_range;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Which compose the fleet's hosts run, through the inventory's `compose` setting: both are
/// installed on this machine (scripts/install-deps.sh), and `auto` would always find the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `docker-compose` 1.29 (Debian's), `compose = "standalone"`.
    V1,
    /// `docker compose`, the v2 plugin, `compose = "plugin"`.
    V2,
}

impl Flavor {
    /// The inventory's `compose` value that chooses it.
    pub fn setting(self) -> &'static str {
        match self {
            Flavor::V1 => "standalone",
            Flavor::V2 => "plugin",
        }
    }

    /// `_v1` / `_v2`: test names and fleet names carry it, so both can run at once.
    pub fn suffix(self) -> &'static str {
        match self {
            Flavor::V1 => "v1",
            Flavor::V2 => "v2",
        }
    }
}

/// Runs an end-to-end test body (a `fn(Flavor)`) once per compose flavour: `name_v1` and
/// `name_v2`, so a test is written once and either flavour can be run or skipped by name.
#[macro_export]
macro_rules! on_both_compose_flavors {
    ($($body:ident => $v1:ident, $v2:ident;)*) => {$(
        #[test]
        fn $v1() {
            $body($crate::harness::Flavor::V1)
        }
        #[test]
        fn $v2() {
            $body($crate::harness::Flavor::V2)
        }
    )*};
}

/// Registry + images + `n` hosts from scripts/localfleet, in a private state dir and on ports
/// of their own, so it can run beside the demo and other tests. Torn down on drop.
pub struct LocalFleet {
    pub dir: tempfile::TempDir,
    /// Host `k` is `{name}-{k}`.
    pub name: String,
    /// The compose its hosts run.
    pub flavor: Flavor,
    env: Vec<(String, String)>,
    pub hosts: usize,
    pub http_base: u16,
    pub registry_port: u16,
}

impl LocalFleet {
    /// `base` (plus the flavour and this process's id) prefixes the hosts (`base-v1-PID-1`,
    /// …), their compose projects and volumes: distinct per test and per test run, since all
    /// share one engine. The hosts run `flavor`'s compose; the registry has the app image as
    /// `A` and `B`.
    pub fn start(base: &str, hosts: usize, flavor: Flavor) -> LocalFleet {
        LocalFleet::start_with_app_tags(base, hosts, flavor, &["A", "B"])
    }

    /// `start`, with the app image in the registry under each of `tags` (built once, then
    /// cached by scripts/localfleet/images.sh like A and B).
    pub fn start_with_app_tags(
        base: &str,
        hosts: usize,
        flavor: Flavor,
        tags: &[&str],
    ) -> LocalFleet {
        let name = format!("{base}-{}-{}", flavor.suffix(), std::process::id());
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
                ("FLEET_COMPOSE".into(), flavor.setting().into()),
            ],
            dir,
            name: name.to_string(),
            flavor,
            hosts,
            http_base,
            registry_port,
        };
        remove_leftover_stacks(name, hosts);
        fleet.script("registry.sh", &["start"]);
        fleet
            .env
            .push(("LOCALFLEET_APP_TAGS".into(), tags.join(" ")));
        fleet.script("images.sh", &[]);
        fleet.script("hosts.sh", &["start", &hosts.to_string()]);
        fleet
    }

    /// The environment scripts/localfleet/ runs with for this fleet (its state dir, registry
    /// port, names): scripts built on common.sh (an example's image build) use its registry.
    pub fn script_env(&self) -> impl Iterator<Item = (&str, &str)> {
        self.env.iter().map(|(k, v)| (k.as_str(), v.as_str()))
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

    /// Every host's name and its nginx's port on 127.0.0.1 (for `Load::start`).
    pub fn http_targets(&self) -> Vec<(String, u16)> {
        (1..=self.hosts)
            .map(|k| (self.host(k), self.http_base + k as u16))
            .collect()
    }

    /// `dropship rollback` of `playbook` on this fleet.
    pub fn rollback(&self, playbook: &str, extra: &[&str]) -> Run {
        let inventory = self.inventory();
        let playbook = self.playbook(playbook);
        let mut args = vec![
            "rollback",
            "-i",
            inventory.to_str().unwrap(),
            playbook.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        dropship_reporting(&args, None)
    }

    /// Host `k`'s app dir (1-based), as the inventory gives it (`app_dir`).
    pub fn app_dir(&self, k: usize) -> PathBuf {
        self.project().join(".fleet/apps").join(self.host(k))
    }

    /// The compose version that made each container of host `k`'s stack (compose labels
    /// every container it creates with its version): `1.29.2`, `2.40.3`, ….
    pub fn stack_compose_versions(&self, k: usize) -> Vec<String> {
        let label = format!("label=com.docker.compose.project=pixel-{}", self.host(k));
        let out = Command::new("docker")
            .args(["ps", "-a", "--filter", &label])
            .args(["--format", "{{ .Label \"com.docker.compose.version\" }}"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Asserts that host `k`'s stack has containers, all made by this fleet's flavour.
    #[track_caller]
    pub fn assert_stack_made_by_flavor(&self, k: usize) {
        let versions = self.stack_compose_versions(k);
        let major = match self.flavor {
            Flavor::V1 => "1.",
            Flavor::V2 => "2.",
        };
        assert!(
            !versions.is_empty() && versions.iter().all(|v| v.starts_with(major)),
            "host {k}: {:?} wanted compose {major}x, the stack's containers were made by {versions:?}",
            self.flavor
        );
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
        let shared = format!("pixel-{name}-{k}");
        // playbooks/zero-downtime.toml's colors first: they sit on the shared stack's network.
        for project in [
            format!("{shared}-blue"),
            format!("{shared}-green"),
            shared.clone(),
        ] {
            remove_containers(&project);
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &shared])
            .output();
        for volume in ["db", "static"] {
            let _ = Command::new("docker")
                .args(["volume", "rm", &format!("{shared}-{volume}")])
                .output();
        }
    }
}

/// Removes every container of a compose project.
fn remove_containers(project: &str) {
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
}

/// A plain HTTP/1.0 GET on 127.0.0.1; status and body.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    http_get_for(port, path, "localhost")
}

/// `http_get` naming the site `host` (the `Host` header): name-based virtual hosts.
pub fn http_get_for(port: u16, path: &str, host: &str) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
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

/// The ids of compose project `project`'s containers on the engine: every one, or only the
/// running ones.
pub fn project_containers(project: &str, running_only: bool) -> Vec<String> {
    let label = format!("label=com.docker.compose.project={project}");
    let mut args = vec!["ps", "-q", "--no-trunc", "--filter", &label];
    if !running_only {
        args.push("-a");
    }
    let out = Command::new("docker").args(&args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {out:?}");
    let mut ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    ids.sort();
    ids
}
