//! Secrets: the `Secret` type that never prints, resolving `[secrets]` sources, and redaction.

use std::fmt;
use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;

use crate::diagnostic::{InputError, SourceFile};
/// Redaction works on output bytes and lives with the rest of the output path.
pub use crate::output::Redactor;

/// What every secret looks like in output.
pub const MASK: &str = "********";

/// A secret value. `Debug` and `Display` print `********`; only `expose` gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The real value: use it only to write file contents or a channel's stdin.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// Where a secret comes from, as written in a playbook's `[secrets]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// An environment variable of the dropship process.
    pub env: Option<String>,
    /// A local file (relative to the playbook's directory, else its parent); one trailing newline trimmed.
    pub file: Option<String>,
    /// A local shell command; its stdout, trailing newline trimmed.
    pub command: Option<String>,
    /// How long `command` may run (humantime, e.g. "10s"); default [`DEFAULT_COMMAND_TIMEOUT`].
    pub timeout: Option<toml::Spanned<String>>,
    /// A key of the age-encrypted secrets file (not supported yet).
    pub vault: Option<String>,
}

/// How long a secret's `command` may run when its entry sets no `timeout`.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Resolves every secret once, locally, before any connection. Errors point at the playbook.
pub fn resolve_all(
    sources: &IndexMap<toml::Spanned<String>, toml::Spanned<SecretSource>>,
    playbook: &SourceFile,
    base_dirs: &[&Path],
) -> Result<IndexMap<String, Secret>, InputError> {
    let mut out = IndexMap::new();
    for (name, source) in sources {
        let span = source.span();
        let err = |message: String| {
            playbook
                .error_at(span.clone(), message)
                .with_key(format!("secrets.{}", name.get_ref()))
        };
        let timeout = command_timeout(name.get_ref(), source.get_ref(), playbook)?;
        let value = resolve_one(name.get_ref(), source.get_ref(), base_dirs, timeout).map_err(
            |(message, hint)| {
                let e = err(message);
                match hint {
                    Some(h) => e.with_hint(h),
                    None => e,
                }
            },
        )?;
        out.insert(name.get_ref().clone(), value);
    }
    Ok(out)
}

type SourceError = (String, Option<String>);

/// The entry's `timeout`, parsed; only a `command` source takes one.
fn command_timeout(
    name: &str,
    source: &SecretSource,
    playbook: &SourceFile,
) -> Result<Duration, InputError> {
    let Some(timeout) = &source.timeout else {
        return Ok(DEFAULT_COMMAND_TIMEOUT);
    };
    let err = |message: String, hint: &str| {
        playbook
            .error_at(timeout.span(), message)
            .with_key(format!("secrets.{name}.timeout"))
            .with_hint(hint)
    };
    if source.command.is_none() {
        return Err(err(
            format!("secret `{name}`: `timeout` applies only to a `command` source"),
            "remove `timeout`, or read the secret with `command`",
        ));
    }
    match humantime::parse_duration(timeout.get_ref()) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(err(
            format!("secret `{name}`: `timeout` must be longer than zero"),
            "write e.g. \"10s\" or \"2m\"",
        )),
        Err(e) => Err(err(
            format!("bad duration `{}`: {e}", timeout.get_ref()),
            "write e.g. \"10s\" or \"2m\"",
        )),
    }
}

fn resolve_one(
    name: &str,
    source: &SecretSource,
    base_dirs: &[&Path],
    timeout: Duration,
) -> Result<Secret, SourceError> {
    let given: Vec<&str> = [
        source.env.as_ref().map(|_| "env"),
        source.file.as_ref().map(|_| "file"),
        source.command.as_ref().map(|_| "command"),
        source.vault.as_ref().map(|_| "vault"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.len() != 1 {
        return Err((
            format!(
                "secret `{name}` needs exactly one source, found {}",
                if given.is_empty() { "none".to_string() } else { given.join(" and ") }
            ),
            Some("write e.g. `{ env = \"VAR\" }`, `{ file = \"path\" }` or `{ command = \"pass show x\" }`".into()),
        ));
    }
    if let Some(var) = &source.env {
        return match std::env::var(var) {
            Ok(v) => Ok(Secret::new(v)),
            Err(_) => Err((
                format!("secret `{name}`: environment variable `{var}` is not set"),
                Some(format!("export {var}=... before running dropship")),
            )),
        };
    }
    if let Some(file) = &source.file {
        let path = crate::paths::resolve_existing(file, base_dirs);
        return match std::fs::read_to_string(&path) {
            Ok(mut v) => {
                trim_one_newline(&mut v);
                Ok(Secret::new(v))
            }
            Err(e) => Err((
                format!("secret `{name}`: cannot read `{}`: {e}", path.display()),
                None,
            )),
        };
    }
    if let Some(command) = &source.command {
        return run_secret_command(name, command, timeout);
    }
    Err((
        format!("secret `{name}`: `vault` sources are not supported yet"),
        Some("use `env`, `file` or `command` for now".into()),
    ))
}

/// Runs a `command` source in its own process group, so that on `timeout` the whole group
/// (the shell and whatever it started) is killed, not only the shell.
fn run_secret_command(name: &str, command: &str, timeout: Duration) -> Result<Secret, SourceError> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // The command's own stderr may echo part of a secret; it is not shown.
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| {
            (
                format!("secret `{name}`: cannot run its command: {e}"),
                None,
            )
        })?;
    let group = child.id() as libc::pid_t;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let read = stdout.read_to_end(&mut bytes);
        let status = child.wait();
        let _ = done_tx.send(read.and(status).map(|status| (status, bytes)));
    });
    let (status, stdout) = match done_rx.recv_timeout(timeout) {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            return Err((
                format!("secret `{name}`: cannot read its command's output: {e}"),
                None,
            ));
        }
        Err(_) => {
            // SAFETY: kill(2) with a negative pid signals that process group; no memory is shared.
            unsafe { libc::kill(-group, libc::SIGKILL) };
            // Reap the shell; a process that left the group could keep stdout open: don't wait on it.
            let _ = done_rx.recv_timeout(Duration::from_secs(2));
            return Err((
                format!(
                    "secret `{name}`: its command did not finish within {}; it was stopped",
                    humantime::format_duration(timeout)
                ),
                Some(format!(
                    "check that the command runs without a prompt, or give it longer: `timeout = \"60s\"` in `[secrets] {name}`"
                )),
            ));
        }
    };
    if !status.success() {
        return Err((
            format!("secret `{name}`: its command failed ({status}); its output is not shown"),
            Some("run the command yourself to see why".into()),
        ));
    }
    let mut value = String::from_utf8(stdout).map_err(|_| {
        (
            format!("secret `{name}`: its command printed non-UTF-8 bytes"),
            None,
        )
    })?;
    while value.ends_with('\n') || value.ends_with('\r') {
        value.pop();
    }
    Ok(Secret::new(value))
}

fn trim_one_newline(value: &mut String) {
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_prints_masked() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "******** ********");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn command_source_trims_trailing_newline() {
        let s = run_secret_command("k", "printf 'v1\\n'", DEFAULT_COMMAND_TIMEOUT).unwrap();
        assert_eq!(s.expose(), "v1");
        let err = run_secret_command("k", "echo leaked >&2; exit 3", DEFAULT_COMMAND_TIMEOUT)
            .unwrap_err();
        assert!(err.0.contains("secret `k`: its command failed"));
        assert!(!err.0.contains("leaked"));
    }

    #[test]
    fn command_source_is_killed_with_its_children_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let started = std::time::Instant::now();
        let err = run_secret_command(
            "slow",
            &format!("sleep 60 & echo $! > {}; wait", pid_file.display()),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            err.0,
            "secret `slow`: its command did not finish within 300ms; it was stopped"
        );
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        // SIGKILL is delivered asynchronously: give the process a moment to die. Gone, or a
        // zombie waiting for init: either way no longer running.
        let state_of = || {
            let stat =
                std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .chars()
                .next();
            (state, stat)
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        let (mut state, mut stat) = state_of();
        while !matches!(state, None | Some('Z') | Some('X')) && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
            (state, stat) = state_of();
        }
        assert!(matches!(state, None | Some('Z') | Some('X')), "{stat}");
    }
}
