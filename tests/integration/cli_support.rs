//! Helpers for the end-to-end tests of the `dropship` binary: running it with fresh secrets,
//! the fixture playbooks, and reading its plain output.
#![allow(dead_code)]

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::{Fleet, TestHost};

pub const BIN: &str = env!("CARGO_BIN_EXE_dropship");

/// Env var names the fixture playbooks read their secrets from.
pub const DB_PASSWORD_VAR: &str = "DROPSHIP_TEST_DB_PASSWORD";
pub const REGISTRY_PASSWORD_VAR: &str = "DROPSHIP_TEST_REGISTRY_PASSWORD";

/// The steps of `playbooks/shop.toml`, in order.
pub const FILE_STEPS: [&str; 3] = ["compose file", "nginx config", "env file"];

/// `Fleet::start(n)`, making sure every host's port is served by that host's own sshd.
///
/// The harness picks a free port, releases it and starts sshd on it, then waits until the
/// port accepts a connection. When a concurrently starting test's sshd grabbed the same port
/// first, our sshd fails to bind, yet the connect may reach the other test's sshd before ours
/// has exited: the host then silently has someone else's sshd (and host key). Such a fleet
/// is thrown away and started again.
pub fn start_fleet(n: usize) -> Fleet {
    for _ in 0..3 {
        let fleet = Fleet::start(n);
        if fleet.hosts.iter().all(|h| listening_count(h) > 0) {
            return fleet;
        }
    }
    panic!("could not start a fleet of {n} sshd with their own ports");
}

/// How many times this host's sshd logged that it listens on its port, waiting up to 3 s
/// for the first time (sshd logs it right after listen(), so a connect can come first).
pub fn listening_count(h: &TestHost) -> usize {
    let want = format!("Server listening on 127.0.0.1 port {}.", h.port);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let n = h.sshd_log().matches(&want).count();
        if n > 0 || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `tests/fixtures/<rel>`.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// The main playbook: 3 templates, docker_login, compose pull + up, a `once` run step.
pub fn shop_playbook() -> PathBuf {
    fixture("playbooks/shop.toml")
}

/// Secret values unique to one run, so finding one anywhere means it leaked from that run.
#[derive(Debug, Clone)]
pub struct Secrets {
    pub db_password: String,
    pub registry_password: String,
}

impl Secrets {
    pub fn fresh() -> Secrets {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos();
        let pid = std::process::id();
        Secrets {
            db_password: format!("s3cr3t-db-{pid}-{nanos}"),
            registry_password: format!("s3cr3t-reg-{pid}-{nanos}"),
        }
    }

    pub fn values(&self) -> [&str; 2] {
        [&self.db_password, &self.registry_password]
    }
}

/// `dropship ARGS` with `secrets` in the environment (and nothing of the developer's SSH
/// agent or log settings), stdin closed.
pub fn command(args: &[&str], secrets: Option<&Secrets>) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("DROPSHIP_LOG")
        .env_remove(DB_PASSWORD_VAR)
        .env_remove(REGISTRY_PASSWORD_VAR)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(s) = secrets {
        cmd.env(DB_PASSWORD_VAR, &s.db_password)
            .env(REGISTRY_PASSWORD_VAR, &s.registry_password);
    }
    cmd
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(out: Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Both streams, for searching and for assertion messages.
    pub fn all(&self) -> String {
        format!(
            "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit {code}\n{}",
            self.all()
        );
        self
    }

    /// The outcome label (`changed`, `ok`, `FAILED`, `skipped`) of `step` on `host`, from
    /// the plain lines `[host] <label> <step>[ (detail)|:]`.
    pub fn outcome(&self, host: &str, step: &str) -> Option<String> {
        step_lines(&self.stdout, host)
            .into_iter()
            .chain(step_lines(&self.stderr, host))
            .find(|(_, name)| {
                name == step
                    || name.starts_with(&format!("{step} ("))
                    || name.starts_with(&format!("{step}:"))
            })
            .map(|(label, _)| label)
    }

    /// The lines of `host`: its step lines, failure details and error lines.
    pub fn host_text(&self, host: &str) -> String {
        let prefix = format!("[{host}] ");
        self.stdout
            .lines()
            .chain(self.stderr.lines())
            .filter(|l| l.starts_with(&prefix))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The summary table's row of `host` (its first column is the host name).
    pub fn summary_row(&self, host: &str) -> Option<String> {
        let text = if self.stdout.contains("HOST  ") {
            &self.stdout
        } else {
            &self.stderr
        };
        let table = &text[text.find("\nHOST ")?..];
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(host))
            .map(str::to_string)
    }
}

/// `(label, rest)` of every `[host] label rest` line, `rest` being the step name and detail.
fn step_lines(text: &str, host: &str) -> Vec<(String, String)> {
    let prefix = format!("[{host}] ");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (label, name) = rest.split_once(' ')?;
            matches!(label, "changed" | "ok" | "FAILED" | "skipped")
                .then(|| (label.to_string(), name.trim_start().to_string()))
        })
        .collect()
}

/// Runs `dropship ARGS` to completion.
pub fn dropship(args: &[&str], secrets: Option<&Secrets>) -> Run {
    dropship_cmd(command(args, secrets))
}

/// `dropship COMMAND -i INVENTORY PLAYBOOK` with no secrets in its environment.
pub fn run_playbook(command: &str, inventory: &Path, playbook: &Path) -> Run {
    dropship(
        &[
            command,
            "-i",
            inventory.to_str().unwrap(),
            playbook.to_str().unwrap(),
        ],
        None,
    )
}

pub fn dropship_cmd(mut cmd: Command) -> Run {
    Run::from_output(cmd.output().expect("run dropship"))
}

/// Spawns `dropship ARGS` and returns the child (stdout/stderr piped).
pub fn spawn(args: &[&str], secrets: Option<&Secrets>) -> Child {
    command(args, secrets).spawn().expect("spawn dropship")
}

/// Waits for a spawned run, reading both pipes.
pub fn finish(mut child: Child) -> Run {
    // Read both pipes on threads so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take().expect("stdout piped");
    let mut err = child.stderr.take().expect("stderr piped");
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let status = child.wait().expect("wait dropship");
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&t_out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap()).into_owned(),
    }
}

/// `dropship deploy -i INV shop.toml EXTRA...` with `secrets`.
pub fn deploy_shop(inventory: &Path, secrets: &Secrets, extra: &[&str]) -> Run {
    let inv = inventory.to_str().expect("utf-8 path");
    let pb = shop_playbook();
    let mut args = vec!["deploy", "-i", inv, pb.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    dropship(&args, Some(secrets))
}

/// The fleet's inventory with `[ssh]` lines replaced: each `(key, value)` replaces the line
/// starting with `key = ` (value is TOML, e.g. `"\"accept-new\""`).
pub fn inventory_with_ssh(fleet: &Fleet, replace: &[(&str, String)]) -> PathBuf {
    let mut text = String::new();
    for line in fleet.inventory().lines() {
        match replace
            .iter()
            .find(|(k, _)| line.starts_with(&format!("{k} = ")))
        {
            Some((k, v)) => text.push_str(&format!("{k} = {v}\n")),
            None => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    for (k, _) in replace {
        assert!(
            text.contains(&format!("\n{k} = ")),
            "inventory has no `{k}` line to replace"
        );
    }
    let path = fleet.dir.path().join("inventory-custom.toml");
    fs::write(&path, text).expect("write inventory");
    path
}

/// Unix mode bits (e.g. 0o600) of a file.
pub fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Names of the files in a host root (hidden ones included), sorted.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// The number of times sshd accepted a login.
pub fn logins(sshd_log: &str) -> usize {
    sshd_log.matches("Accepted publickey").count()
}

/// Every process's command line on this machine (NULs shown as spaces), read from /proc.
pub fn all_cmdlines() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // Processes come and go while we look: a vanished one is simply skipped.
        if let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) {
            let text = String::from_utf8_lossy(&raw).replace('\0', " ");
            out.push((pid, text));
        }
    }
    out
}
