//! Secrets: the `Secret` type that never prints, resolving `[secrets]` sources, and redaction;
//! vault.rs: the age-encrypted secrets file. May import diagnostic, output and paths.

pub mod vault;

use std::fmt;
use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
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
    /// A name in the age-encrypted secrets file (`[secrets_vault]`, default `secrets.age`).
    pub vault: Option<String>,
}

/// A playbook's `[secrets_vault]`: where its `{ vault = "NAME" }` secrets are read from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSettings {
    /// The vault file, relative to the playbook's directory, else its parent (the project
    /// root); default `secrets.age` there.
    pub file: toml::Spanned<String>,
}

/// A vault error with no place in a file (the `secrets` commands).
impl From<vault::VaultError> for InputError {
    fn from(e: vault::VaultError) -> Self {
        let error = InputError::plain(e.message);
        match e.hint {
            Some(hint) => error.with_hint(hint),
            None => error,
        }
    }
}

/// How long a secret's `command` may run when its entry sets no `timeout`.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Resolves every secret once, locally, before any connection. Errors point at the playbook.
/// The vault is opened once, and only when a secret reads from it.
pub fn resolve_all(
    sources: &IndexMap<toml::Spanned<String>, toml::Spanned<SecretSource>>,
    vault: Option<&toml::Spanned<VaultSettings>>,
    playbook: &SourceFile,
    base_dirs: &[&Path],
) -> Result<IndexMap<String, Secret>, InputError> {
    let mut out = IndexMap::new();
    let mut opened: Option<(PathBuf, vault::Entries)> = None;
    for (name, source) in sources {
        if let Some(wanted) = &source.get_ref().vault {
            let value = vault_secret(
                name.get_ref(),
                source,
                wanted,
                vault,
                &mut opened,
                playbook,
                base_dirs,
            )?;
            out.insert(name.get_ref().clone(), value);
            continue;
        }
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

/// Where the vault is: `[secrets_vault] file`, else `secrets.age` next to the playbook,
/// else in the project root (the playbook directory's parent), where `dropship secrets init` is run.
pub fn vault_path(vault: Option<&toml::Spanned<VaultSettings>>, base_dirs: &[&Path]) -> PathBuf {
    match vault {
        Some(settings) => {
            crate::paths::resolve_existing(settings.get_ref().file.get_ref(), base_dirs)
        }
        None => {
            let found = crate::paths::resolve_existing(vault::DEFAULT_FILE, base_dirs);
            if found.exists() {
                found
            } else {
                let root = base_dirs.last().copied().unwrap_or(Path::new("."));
                crate::paths::normalize(&root.join(vault::DEFAULT_FILE))
            }
        }
    }
}

/// One `{ vault = "NAME" }` secret. Errors about the vault itself point at `[secrets_vault]`
/// when the playbook has one, else at the secret's entry.
fn vault_secret(
    name: &str,
    source: &toml::Spanned<SecretSource>,
    wanted: &str,
    settings: Option<&toml::Spanned<VaultSettings>>,
    opened: &mut Option<(PathBuf, vault::Entries)>,
    playbook: &SourceFile,
    base_dirs: &[&Path],
) -> Result<Secret, InputError> {
    let at_entry = |message: String, hint: Option<String>| {
        let e = playbook
            .error_at(source.span(), message)
            .with_key(format!("secrets.{name}"));
        match hint {
            Some(h) => e.with_hint(h),
            None => e,
        }
    };
    let s = source.get_ref();
    if s.env.is_some() || s.file.is_some() || s.command.is_some() {
        // The one-source rule, with its usual message.
        let (message, hint) = resolve_one(name, s, base_dirs, DEFAULT_COMMAND_TIMEOUT)
            .expect_err("more than one source is refused");
        return Err(at_entry(message, hint));
    }
    if opened.is_none() {
        let path = vault_path(settings, base_dirs);
        let entries = vault::KeySource::from_env()
            .and_then(vault::Key::load)
            .and_then(|key| vault::read(&path, &key))
            .map_err(|e| match settings {
                Some(settings) => {
                    let err = playbook
                        .error_at(settings.get_ref().file.span(), e.message)
                        .with_key("secrets_vault.file");
                    match e.hint {
                        Some(h) => err.with_hint(h),
                        None => err,
                    }
                }
                None => at_entry(e.message, e.hint),
            })?;
        *opened = Some((path, entries));
    }
    let (path, entries) = opened.as_ref().expect("opened above");
    match entries.get(wanted) {
        Some(value) => Ok(value.clone()),
        None => {
            let known: Vec<&str> = entries.keys().map(String::as_str).collect();
            let close = known
                .iter()
                .filter(|k| strsim::jaro_winkler(k, wanted) > 0.8)
                .max_by(|a, b| {
                    strsim::jaro_winkler(a, wanted).total_cmp(&strsim::jaro_winkler(b, wanted))
                });
            let hint = match close {
                Some(k) => {
                    format!("did you mean `{k}`? Or add it: `dropship secrets set {wanted}`")
                }
                None => format!(
                    "add it: `dropship secrets set {wanted}`{}",
                    if path.as_os_str() == vault::DEFAULT_FILE {
                        String::new()
                    } else {
                        format!(" --vault {}", path.display())
                    }
                ),
            };
            Err(at_entry(
                format!(
                    "secret `{name}`: the vault `{}` has no `{wanted}`",
                    path.display()
                ),
                Some(hint),
            ))
        }
    }
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
            Some("write e.g. `{ env = \"VAR\" }`, `{ file = \"path\" }`, `{ command = \"pass show x\" }` or `{ vault = \"NAME\" }`".into()),
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
    unreachable!("`vault` sources are resolved by `vault_secret`")
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
    fn the_vault_is_next_to_the_playbook_else_in_the_project_root() {
        let root = tempfile::tempdir().unwrap();
        let playbooks = root.path().join("playbooks");
        std::fs::create_dir(&playbooks).unwrap();
        let bases = crate::paths::playbook_bases(&playbooks.join("app.toml"));
        let bases: Vec<&Path> = bases.iter().map(PathBuf::as_path).collect();
        // Neither exists: the project root, where `dropship secrets init` makes it.
        let in_root = crate::paths::normalize(&root.path().join("secrets.age"));
        assert_eq!(vault_path(None, &bases), in_root);
        std::fs::write(root.path().join("secrets.age"), "").unwrap();
        assert_eq!(vault_path(None, &bases), in_root);
        std::fs::write(playbooks.join("secrets.age"), "").unwrap();
        assert_eq!(vault_path(None, &bases), playbooks.join("secrets.age"));
        #[derive(Deserialize)]
        struct Playbook {
            secrets_vault: toml::Spanned<VaultSettings>,
        }
        let set = toml::from_str::<Playbook>("[secrets_vault]\nfile = \"../vaults/prod.age\"\n")
            .unwrap()
            .secrets_vault;
        assert_eq!(
            vault_path(Some(&set), &bases),
            crate::paths::normalize(&root.path().join("vaults/prod.age"))
        );
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
