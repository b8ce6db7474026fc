//! Running the `dropship` binary: with fresh secrets or none, the fixture playbooks, reading
//! its plain output and its JSON report. Imports `report`.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::report::Report;

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
    /// The `--json` file the run was told to write, if any.
    pub report_path: Option<PathBuf>,
    /// Where `dropship_reporting` put the report; removed with the run.
    report_dir: Option<tempfile::TempDir>,
}

impl Run {
    pub fn from_output(out: Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            report_path: None,
            report_dir: None,
        }
    }

    /// The JSON report the run wrote (it was given `--json FILE`).
    #[track_caller]
    pub fn report(&self) -> Report {
        let path = self
            .report_path
            .as_deref()
            .unwrap_or_else(|| panic!("this run wrote no JSON report\n{}", self.all()));
        Report::read(path)
    }

    /// Asserts the outcome label (`changed`, `ok`, `FAILED`, `skipped`) of `step` on `host`
    /// in the plain lines and, when the run wrote one, in the JSON report.
    #[track_caller]
    pub fn assert_outcome(&self, host: &str, step: &str, label: &str) {
        assert_eq!(
            self.outcome(host, step).as_deref(),
            Some(label),
            "`{step}` on {host}\n{}",
            self.all()
        );
        if self.report_path.is_some() {
            self.report().assert_outcome(host, step, label);
        }
    }

    /// Asserts that `host`'s summary row ends in `ok` and, when the run wrote one, that the
    /// JSON report has it ok.
    #[track_caller]
    pub fn assert_host_ok(&self, host: &str) {
        let row = self.summary_row(host);
        assert!(
            row.as_deref().is_some_and(|r| r.ends_with("  ok")),
            "{host}: summary row {row:?}\n{}",
            self.all()
        );
        self.assert_status(host, "ok");
    }

    /// When the run wrote a JSON report, asserts how `host` ended there (`ok`, `failed`,
    /// `not deployed`).
    #[track_caller]
    pub fn assert_status(&self, host: &str, status: &str) {
        if self.report_path.is_some() {
            self.report().assert_status(host, status);
        }
    }

    /// Asserts the summary's `N host(s): OK ok, FAILED failed` and, when the run wrote one,
    /// the JSON report's counts.
    #[track_caller]
    pub fn assert_counts(&self, hosts: usize, ok: u64, failed: u64) {
        assert!(
            self.stdout
                .contains(&format!("{hosts} host(s): {ok} ok, {failed} failed")),
            "{}",
            self.all()
        );
        if self.report_path.is_some() {
            self.report().assert_counts(hosts, ok, failed);
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
    run_playbook_with(command, inventory, playbook, &[])
}

/// `dropship COMMAND -i INVENTORY PLAYBOOK` with `secrets` in its environment; deploy writes
/// its JSON report too.
pub fn run_playbook_secrets(
    command: &str,
    inventory: &Path,
    playbook: &Path,
    secrets: &Secrets,
) -> Run {
    let args = [
        command,
        "-i",
        inventory.to_str().unwrap(),
        playbook.to_str().unwrap(),
    ];
    dropship_reporting(&args, Some(secrets))
}

/// Spawns `dropship COMMAND -i INVENTORY PLAYBOOK` with no secrets (stdout/stderr piped).
pub fn spawn_playbook(command: &str, inventory: &Path, playbook: &Path) -> Child {
    let args = [
        command,
        "-i",
        inventory.to_str().unwrap(),
        playbook.to_str().unwrap(),
    ];
    spawn(&args, None)
}

/// `dropship COMMAND -i INVENTORY PLAYBOOK EXTRA...` with no secrets in its environment;
/// deploy and rollback write their JSON report too (`Run::report`).
pub fn run_playbook_with(command: &str, inventory: &Path, playbook: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        command,
        "-i",
        inventory.to_str().unwrap(),
        playbook.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    dropship_reporting(&args, None)
}

/// Runs `cmd` to completion; a `--json FILE` among its arguments is the run's report.
pub fn dropship_cmd(mut cmd: Command) -> Run {
    let mut run = Run::from_output(cmd.output().expect("run dropship"));
    let mut args = cmd.get_args();
    while let Some(arg) = args.next() {
        if arg == "--json" {
            run.report_path = args.next().filter(|p| *p != "-").map(PathBuf::from);
        }
    }
    run
}

/// `dropship ARGS`, writing its JSON report too when the command writes one (deploy,
/// rollback, exec, ping) and ARGS name no `--json` target: into a temp dir of the run's,
/// before a `--` among ARGS. What a test reads from the plain output can then be checked
/// against the report (`Run::report`, `Run::assert_outcome`, `Run::assert_counts`).
pub fn dropship_reporting(args: &[&str], secrets: Option<&Secrets>) -> Run {
    let reports = matches!(
        args.first(),
        Some(&("deploy" | "rollback" | "exec" | "ping"))
    );
    if !reports || args.contains(&"--json") {
        return dropship(args, secrets);
    }
    let dir = tempfile::Builder::new()
        .prefix("dropship-report-")
        .tempdir()
        .expect("report temp dir");
    let path = dir.path().join("report.json");
    let json = ["--json", path.to_str().expect("utf-8 path")];
    let at = args.iter().position(|a| *a == "--").unwrap_or(args.len());
    let args: Vec<&str> = [&args[..at], &json, &args[at..]].concat();
    let mut run = dropship(&args, secrets);
    run.report_dir = Some(dir);
    run
}

/// Spawns `dropship ARGS` and returns the child (stdout/stderr piped).
pub fn spawn(args: &[&str], secrets: Option<&Secrets>) -> Child {
    command(args, secrets).spawn().expect("spawn dropship")
}

/// Waits for a spawned run, reading both pipes.
pub fn finish(child: Child) -> Run {
    Watched::start(child).finish()
}

/// A spawned run whose pipes are read on threads (so a chatty child never blocks on a full
/// pipe) while the test watches it.
pub struct Watched {
    pub child: Child,
    readers: [std::thread::JoinHandle<String>; 2],
}

impl Watched {
    pub fn start(mut child: Child) -> Watched {
        let out = child.stdout.take().expect("stdout piped");
        let err = child.stderr.take().expect("stderr piped");
        Watched {
            child,
            readers: [pipe_reader(out), pipe_reader(err)],
        }
    }

    /// Whether the run has ended.
    pub fn ended(&mut self) -> bool {
        self.child.try_wait().expect("poll dropship").is_some()
    }

    pub fn finish(mut self) -> Run {
        let status = self.child.wait().expect("wait dropship");
        let [stdout, stderr] = self.readers.map(|r| r.join().unwrap());
        Run {
            code: status.code(),
            stdout,
            stderr,
            report_path: None,
            report_dir: None,
        }
    }
}

fn pipe_reader(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for a spawned run, killing it (and failing the test) after `limit`.
pub fn finish_within(child: Child, limit: Duration) -> Run {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(finish(child));
    });
    match rx.recv_timeout(limit) {
        Ok(run) => run,
        Err(_) => {
            // SAFETY: kill(2) on the pid of the child this test spawned.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            panic!("dropship did not finish within {limit:?}");
        }
    }
}

/// `dropship deploy -i INV shop.toml EXTRA...` with `secrets`, writing its JSON report too
/// unless EXTRA names a `--json` target.
pub fn deploy_shop(inventory: &Path, secrets: &Secrets, extra: &[&str]) -> Run {
    let inv = inventory.to_str().expect("utf-8 path");
    let pb = shop_playbook();
    let mut args = vec!["deploy", "-i", inv, pb.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    dropship_reporting(&args, Some(secrets))
}

/// Where the first `needle` is in the file at `path`: the canonical path, line and column
/// (1-based, as dropship prints them).
pub fn location_of(path: &Path, needle: &str) -> (PathBuf, usize, usize) {
    let text = fs::read_to_string(path).unwrap();
    let offset = text
        .find(needle)
        .unwrap_or_else(|| panic!("`{needle}` not in {}", path.display()));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = offset - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (path.canonicalize().unwrap(), line, col)
}

/// Asserts that stderr starts with `error: FILE:LINE:COL: MESSAGE`, FILE naming the file
/// of `at` (in whatever spelling, e.g. `playbooks/../templates/x.j2`).
#[track_caller]
pub fn assert_error_at(run: &Run, at: &(PathBuf, usize, usize), message: &str) {
    let first = run.stderr.lines().next().unwrap_or("");
    let located = first
        .strip_prefix("error: ")
        .and_then(|rest| rest.split_once(&format!(": {message}")))
        .map(|(location, _)| location)
        .unwrap_or_else(|| panic!("expected `error: FILE:LINE:COL: {message}`\n{}", run.all()));
    let mut parts = located.rsplitn(3, ':');
    let (col, line, file) = (parts.next(), parts.next(), parts.next());
    let file = file.map(|f| Path::new(f).canonicalize().unwrap_or_else(|_| f.into()));
    let got = (
        file,
        line.and_then(|l| l.parse().ok()),
        col.and_then(|c| c.parse().ok()),
    );
    assert_eq!(
        got,
        (Some(at.0.clone()), Some(at.1), Some(at.2)),
        "wrong location `{located}`\n{}",
        run.all()
    );
}
