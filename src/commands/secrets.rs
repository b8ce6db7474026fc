//! `dropship secrets init|set|get|list|edit`: the encrypted secrets file from the command line.
//! Values come from stdin or a hidden prompt, never argv; only `get` prints one. May import
//! settings, diagnostic and secrets.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use tokio::signal::unix::{SignalKind, signal};

use super::ExitStatus;
use crate::diagnostic::InputError;
use crate::secrets::Secret;
use crate::secrets::vault::{self, Entries, Key, KeySource};
use crate::settings::SecretsAction;

/// Runs one `secrets` subcommand on the vault at `path`.
pub async fn run(path: &Path, action: SecretsAction) -> ExitStatus {
    let result = match action {
        SecretsAction::Init => init(path),
        SecretsAction::Set { name } => set(path, &name),
        SecretsAction::Get { name } => get(path, &name),
        SecretsAction::List => list(path),
        SecretsAction::Edit => return edit(path).await,
    };
    match result {
        Ok(()) => ExitStatus::Success,
        Err(e) => ExitStatus::BadInput(e),
    }
}

fn load_key() -> Result<Key, InputError> {
    Ok(KeySource::from_env().and_then(Key::load)?)
}

/// The key and the vault's entries.
fn open(path: &Path) -> Result<(Key, Entries), InputError> {
    let key = load_key()?;
    let entries = vault::read(path, &key)?;
    Ok((key, entries))
}

fn init(path: &Path) -> Result<(), InputError> {
    if path.symlink_metadata().is_ok() {
        return Err(InputError::plain(format!(
            "the vault `{}` already exists; `secrets init` never overwrites it",
            path.display()
        ))
        .with_hint(
            "`dropship secrets list` shows what it holds; move it away first to start over",
        ));
    }
    let source = KeySource::from_env()?;
    let (key, made) = match &source {
        KeySource::File(key_path) if key_path.symlink_metadata().is_err() => {
            (Key::generate(key_path)?, true)
        }
        _ => (Key::load(source)?, false),
    };
    vault::write(path, &key, &Entries::new())?;
    let mut out = String::new();
    if made {
        out.push_str(&format!(
            "created the identity {} (0600): back it up; without it the vault cannot be opened\n",
            key.source
        ));
    } else {
        out.push_str(&format!("using the identity from {}\n", key.source));
    }
    out.push_str(&format!(
        "created the vault `{}` (empty; encrypted to {}): commit it\n\nnext:\n  dropship secrets set NAME    # its value from stdin, or a hidden prompt\n  and in the playbook: [secrets] NAME = {{ vault = \"NAME\" }}\n",
        path.display(),
        key.recipient()
    ));
    print_stdout(&out);
    Ok(())
}

fn set(path: &Path, name: &str) -> Result<(), InputError> {
    vault::check_name(name)?;
    let (key, mut entries) = open(path)?;
    let value = read_value(name)?;
    let replaced = entries.insert(name.to_string(), value).is_some();
    vault::write(path, &key, &entries)?;
    eprintln!(
        "{} `{name}` in `{}` ({} secret(s))",
        if replaced { "replaced" } else { "added" },
        path.display(),
        entries.len()
    );
    Ok(())
}

/// The value: a hidden prompt on a terminal, else all of stdin less one trailing newline
/// (as `echo` and `file` secrets have it).
fn read_value(name: &str) -> Result<Secret, InputError> {
    let mut value = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("value of `{name}` (not shown): "))
            .map_err(|e| InputError::plain(format!("cannot read the value: {e}")))?
    } else {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| InputError::plain(format!("cannot read the value from stdin: {e}")))?;
        String::from_utf8(bytes).map_err(|_| {
            InputError::plain("the value on stdin is not UTF-8")
                .with_hint("secrets are text; encode binary values (e.g. base64)")
        })?
    };
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    if value.is_empty() {
        return Err(
            InputError::plain(format!("no value given for `{name}`")).with_hint(format!(
                "pipe it in (`pass show x | dropship secrets set {name}`) or type it at the prompt"
            )),
        );
    }
    Ok(Secret::new(value))
}

fn get(path: &Path, name: &str) -> Result<(), InputError> {
    let (_, entries) = open(path)?;
    match entries.get(name) {
        Some(value) => {
            print_stdout(&format!("{}\n", value.expose()));
            Ok(())
        }
        None => Err(no_such_secret(path, name, &entries)),
    }
}

fn no_such_secret(path: &Path, name: &str, entries: &Entries) -> InputError {
    let names: Vec<&str> = entries.keys().map(String::as_str).collect();
    let hint = if names.is_empty() {
        format!("the vault is empty; add it with `dropship secrets set {name}`")
    } else {
        format!("it holds: {}", names.join(", "))
    };
    InputError::plain(format!("the vault `{}` has no `{name}`", path.display())).with_hint(hint)
}

fn list(path: &Path) -> Result<(), InputError> {
    let (_, entries) = open(path)?;
    let names: String = entries.keys().map(|k| format!("{k}\n")).collect();
    print_stdout(&names);
    Ok(())
}

fn print_stdout(text: &str) {
    // A closed pipe (`dropship secrets list | head -1`) is no error worth reporting.
    let _ = std::io::stdout().write_all(text.as_bytes());
}

const EDIT_HEADER: &str = "# dropship vault: one `NAME = \"value\"` line per secret (TOML strings;
# '''literal''' and \"\"\"multi-line\"\"\" strings work too). This file is private (0600)
# and removed when the editor exits; the vault is encrypted again from it.
";

/// Decrypts into a private temp file, runs the editor on it, encrypts again. The temp file is
/// removed on every way out: success, bad edits, a failing editor, Ctrl-C, SIGTERM, SIGHUP.
async fn edit(path: &Path) -> ExitStatus {
    let (key, entries) = match open(path) {
        Ok(opened) => opened,
        Err(e) => return ExitStatus::BadInput(e),
    };
    // Caught from here on (before the plaintext exists), so no signal ends dropship
    // before it removes the file.
    let signals = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    );
    let (Ok(mut sigint), Ok(mut sigterm), Ok(mut sighup)) = signals else {
        return ExitStatus::BadInput(InputError::plain("cannot catch signals for the editor"));
    };
    let dir = match private_dir() {
        Ok(dir) => dir,
        Err(e) => {
            return ExitStatus::BadInput(
                InputError::plain(format!("cannot make a private temp directory: {e}"))
                    .with_hint("set TMPDIR to a writable directory"),
            );
        }
    };
    let file = dir.path().join("secrets.toml");
    let original = format!("{EDIT_HEADER}\n{}", vault::render(&entries));
    if let Err(e) = write_private(&file, &original) {
        return ExitStatus::BadInput(InputError::plain(format!(
            "cannot write the temp file `{}`: {e}",
            file.display()
        )));
    }
    let editor = editor();
    let spawned = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&file)
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            return ExitStatus::BadInput(InputError::plain(format!(
                "cannot run the editor `{editor}`: {e}"
            )));
        }
    };
    let mut interrupted = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            // Ctrl-C reached the editor too (one process group): it decides whether to end.
            _ = sigint.recv() => interrupted = true,
            _ = sigterm.recv() => { interrupted = true; let _ = child.start_kill(); }
            _ = sighup.recv() => { interrupted = true; let _ = child.start_kill(); }
        }
    };
    // The editor may end from the signal before its arrival is polled above: an editor that
    // died of one (or whose shell says so, 128 + N) was interrupted too.
    if let Ok(s) = &status {
        use std::os::unix::process::ExitStatusExt as _;
        let stopping = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];
        interrupted |= s.signal().is_some_and(|n| stopping.contains(&n))
            || s.code()
                .is_some_and(|c| stopping.iter().any(|n| c == 128 + n));
    }
    let edited = std::fs::read_to_string(&file);
    // The plaintext goes now, whatever happened; the drop would remove it too.
    let removed = dir.close();
    let unchanged = "the vault is unchanged";
    match status {
        Ok(s) if s.success() => {}
        Ok(_) | Err(_) if interrupted => {
            eprintln!("interrupted: {unchanged}");
            return ExitStatus::Interrupted;
        }
        Ok(s) => {
            return ExitStatus::BadInput(
                InputError::plain(format!("the editor `{editor}` failed ({s}); {unchanged}"))
                    .with_hint("set VISUAL or EDITOR to an editor that waits until the file is closed (e.g. `code --wait`)"),
            );
        }
        Err(e) => {
            return ExitStatus::BadInput(InputError::plain(format!(
                "the editor `{editor}` did not run: {e}; {unchanged}"
            )));
        }
    }
    if let Err(e) = removed {
        eprintln!("warning: could not remove the temp directory: {e}");
    }
    let edited = match edited {
        Ok(text) => text,
        Err(e) => {
            return ExitStatus::BadInput(InputError::plain(format!(
                "cannot read the edited file back: {e}; {unchanged}"
            )));
        }
    };
    if edited == original {
        eprintln!("no changes; {unchanged}");
        return ExitStatus::Success;
    }
    let new_entries = match vault::parse(&edited) {
        Ok(entries) => entries,
        Err(message) => {
            return ExitStatus::BadInput(
                InputError::plain(format!("the edited vault: {message}; {unchanged}"))
                    .with_hint("write `NAME = \"value\"` lines; run `dropship secrets edit` again"),
            );
        }
    };
    if let Err(e) = vault::write(path, &key, &new_entries) {
        return ExitStatus::BadInput(e.into());
    }
    eprintln!(
        "saved `{}` ({} secret(s))",
        path.display(),
        new_entries.len()
    );
    ExitStatus::Success
}

/// `$VISUAL`, else `$EDITOR`, else `vi`: a shell command, given the file as its last word.
fn editor() -> String {
    ["VISUAL", "EDITOR"]
        .into_iter()
        .filter_map(|var| std::env::var(var).ok())
        .find(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".to_string())
}

/// A 0700 directory only this user can enter, in memory when the system offers it
/// ($XDG_RUNTIME_DIR, /dev/shm), so the plaintext need never reach a disk.
fn private_dir() -> std::io::Result<tempfile::TempDir> {
    let candidates = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("/dev/shm"), std::env::temp_dir()]);
    let mut last = None;
    for base in candidates {
        // 0700 set at creation: tempfile leaves the mode to the umask otherwise.
        match tempfile::Builder::new()
            .prefix("dropship-vault-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(&base)
        {
            Ok(dir) => return Ok(dir),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no temp directory")))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}
