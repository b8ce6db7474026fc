//! Running the `dropship` binary: with fresh secrets or none, the fixture playbooks, and
//! reading its plain output. Imports std only.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

pub const BIN: &str = env!("CARGO_BIN_EXE_dropship");

/// Env var names the fixture playbooks read their secrets from.
pub const DB_PASSWORD_VAR: &str = "DROPSHIP_TEST_DB_PASSWORD";
pub const REGISTRY_PASSWORD_VAR: &str = "DROPSHIP_TEST_REGISTRY_PASSWORD";

/// The steps of `playbooks/shop.toml`, in order.
pub const FILE_STEPS: [&str; 3] = ["compose file", "nginx config", "env file"];

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
