//! The encrypted secrets file (the vault): an age file (x25519, ASCII-armored) holding
//! `NAME = "value"` lines; where its identity comes from; reading it, and writing it atomically.
//! Imports only `secrets::Secret`: errors are a message and a hint, placed by the caller.

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret as _;
use age::x25519;
use indexmap::IndexMap;

use super::Secret;

/// The vault's file name when nothing else is set: next to the playbook, else in the project root.
pub const DEFAULT_FILE: &str = "secrets.age";
/// A file holding the identity (age-keygen format).
pub const KEY_FILE_VAR: &str = "DROPSHIP_AGE_KEY_FILE";
/// The identity itself (`AGE-SECRET-KEY-1…`), e.g. from a CI secret.
pub const KEY_VAR: &str = "DROPSHIP_AGE_KEY";

/// Why the vault or its identity could not be used: always bad input (exit 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultError {
    pub message: String,
    pub hint: Option<String>,
}

impl VaultError {
    fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }
}

impl fmt::Display for VaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Where the identity is taken from, in this order: `$DROPSHIP_AGE_KEY_FILE`,
/// `$DROPSHIP_AGE_KEY`, `~/.config/dropship/age.key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Env,
}

impl KeySource {
    pub fn from_env() -> Result<Self, VaultError> {
        if let Some(path) = std::env::var_os(KEY_FILE_VAR).filter(|p| !p.is_empty()) {
            return Ok(Self::File(PathBuf::from(path)));
        }
        if std::env::var_os(KEY_VAR).is_some_and(|k| !k.is_empty()) {
            return Ok(Self::Env);
        }
        match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            Some(home) => Ok(Self::File(
                Path::new(&home).join(".config/dropship/age.key"),
            )),
            None => Err(VaultError::new(
                "no age identity: HOME is not set",
                format!("set {KEY_FILE_VAR} to the identity file, or {KEY_VAR} to the key"),
            )),
        }
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "`{}`", path.display()),
            Self::Env => write!(f, "${KEY_VAR}"),
        }
    }
}

/// The identity that opens the vault, and the recipient new vaults are encrypted to.
pub struct Key {
    identities: Vec<x25519::Identity>,
    pub source: KeySource,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.source)
    }
}

impl Key {
    /// Loads the identity from where `source` says.
    pub fn load(source: KeySource) -> Result<Self, VaultError> {
        let text = match &source {
            KeySource::Env => std::env::var(KEY_VAR).map_err(|_| {
                VaultError::new(
                    format!("${KEY_VAR} is not valid UTF-8"),
                    "it holds one line: AGE-SECRET-KEY-1…",
                )
            })?,
            KeySource::File(path) => read_key_file(path)?,
        };
        let identities = parse_identities(&text).map_err(|message| {
            VaultError::new(
                format!("{source}: {message}"),
                "an identity is a line `AGE-SECRET-KEY-1…` (as `dropship secrets init` or age-keygen write it)",
            )
        })?;
        Ok(Self { identities, source })
    }

    /// Makes a new identity in the file `path` (0600, its directory 0700 when created);
    /// never overwrites an existing file.
    pub fn generate(path: &Path) -> Result<Self, VaultError> {
        let identity = x25519::Identity::generate();
        let public = identity.to_public();
        let text = format!(
            "# dropship vault identity: keep it secret, back it up (without it the vault cannot be opened)\n# public key: {public}\n{}\n",
            identity.to_string().expose_secret()
        );
        let cannot = |e: std::io::Error| {
            VaultError::new(
                format!("cannot write the identity `{}`: {e}", path.display()),
                format!("set {KEY_FILE_VAR} to a file in a writable directory"),
            )
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(cannot)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(cannot)?;
        if let Err(e) = file
            .write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
        {
            let _ = std::fs::remove_file(path);
            return Err(cannot(e));
        }
        Ok(Self {
            identities: vec![identity],
            source: KeySource::File(path.to_path_buf()),
        })
    }

    /// The public key the vault is encrypted to (the first identity's).
    pub fn recipient(&self) -> x25519::Recipient {
        self.identities[0].to_public()
    }
}

/// Reads an identity file, refusing one that others may read (as ssh refuses such a key).
fn read_key_file(path: &Path) -> Result<String, VaultError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "create one with `dropship secrets init`, or point {KEY_FILE_VAR} (a file) or {KEY_VAR} (the key) at the vault's identity"
            )
        } else {
            format!("set {KEY_FILE_VAR} to a readable identity file")
        };
        VaultError::new(
            format!("cannot read the age identity `{}`: {e}", path.display()),
            hint,
        )
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(VaultError::new(
            format!(
                "the age identity `{}` is readable by others (mode {mode:04o})",
                path.display()
            ),
            format!("chmod 600 {}", path.display()),
        ));
    }
    std::fs::read_to_string(path).map_err(|e| {
        VaultError::new(
            format!("cannot read the age identity `{}`: {e}", path.display()),
            format!("set {KEY_FILE_VAR} to a readable identity file"),
        )
    })
}

/// Every `AGE-SECRET-KEY-1…` line of an identity file; `#` lines and blank lines skipped.
fn parse_identities(text: &str) -> Result<Vec<x25519::Identity>, String> {
    let mut identities = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The line is key material: the message names its number, never its text.
        let identity = line
            .parse::<x25519::Identity>()
            .map_err(|e| format!("line {} is not an age x25519 identity ({e})", number + 1))?;
        identities.push(identity);
    }
    if identities.is_empty() {
        return Err("holds no identity".into());
    }
    Ok(identities)
}

/// The vault's names and values, in file order.
pub type Entries = IndexMap<String, Secret>;

/// What to tell a user whose vault cannot be used as it is.
fn restore_hint(path: &Path) -> String {
    format!(
        "restore it from version control (`git checkout -- {}`), or start a new one with `dropship secrets init`",
        path.display()
    )
}

/// Decrypts and parses the vault at `path`.
pub fn read(path: &Path, key: &Key) -> Result<Entries, VaultError> {
    let ciphertext = std::fs::read(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            "create it with `dropship secrets init` (in the project root), or set its path: `[secrets_vault] file = \"…\"` in the playbook, `--vault` or $DROPSHIP_VAULT for `dropship secrets`".to_string()
        } else {
            "check the file's permissions".to_string()
        };
        VaultError::new(
            format!("cannot read the vault `{}`: {e}", path.display()),
            hint,
        )
    })?;
    let plaintext = decrypt(path, key, &ciphertext)?;
    let text = String::from_utf8(plaintext).map_err(|_| {
        VaultError::new(
            format!("the vault `{}` decrypts to non-UTF-8 bytes", path.display()),
            restore_hint(path),
        )
    })?;
    parse(&text).map_err(|message| {
        VaultError::new(
            format!(
                "the vault `{}` decrypts, but its content is not `NAME = \"value\"` lines: {message}",
                path.display()
            ),
            "fix it with `dropship secrets edit`",
        )
    })
}

fn decrypt(path: &Path, key: &Key, ciphertext: &[u8]) -> Result<Vec<u8>, VaultError> {
    use age::DecryptError as E;
    let start = ciphertext.trim_ascii_start();
    if !(start.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
        || start.starts_with(b"age-encryption.org/"))
    {
        return Err(VaultError::new(
            format!(
                "`{}` is not an age-encrypted vault (corrupted, or not a vault)",
                path.display()
            ),
            restore_hint(path),
        ));
    }
    let decryptor = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(ciphertext));
    let result = decryptor.and_then(|d| {
        let mut reader = d.decrypt(key.identities.iter().map(|i| i as &dyn age::Identity))?;
        let mut plaintext = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut plaintext)?;
        Ok(plaintext)
    });
    let shown = path.display();
    result.map_err(|e| match e {
        E::NoMatchingKeys => VaultError::new(
            format!(
                "the vault `{shown}` was not encrypted for the identity from {}",
                key.source
            ),
            format!(
                "use the identity this vault was made with: {KEY_FILE_VAR}=FILE or {KEY_VAR}=AGE-SECRET-KEY-1…"
            ),
        ),
        E::ExcessiveWork { .. } | E::KeyDecryptionFailed => VaultError::new(
            format!(
                "the vault `{shown}` is encrypted with a passphrase; dropship opens vaults made for an x25519 identity"
            ),
            "re-encrypt it: `age -d` it, then `dropship secrets init` and `dropship secrets set`",
        ),
        // It starts as an age file (checked above): whatever else fails, it was changed.
        E::InvalidHeader
        | E::UnknownFormat
        | E::InvalidMac
        | E::DecryptionFailed
        | E::Io(_) => VaultError::new(
            format!("the vault `{shown}` is corrupted or was tampered with: it does not decrypt"),
            restore_hint(path),
        ),
    })
}

/// A name a vault entry may have: it is written as `{ vault = "NAME" }` and as a TOML key.
pub fn check_name(name: &str) -> Result<(), VaultError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(VaultError::new(
            format!("bad secret name `{name}`"),
            "use letters, digits, `_`, `-` and `.`",
        ))
    }
}

/// Parses the vault's plaintext: a TOML table of string values. Messages hold line and
/// column, never a value.
pub fn parse(text: &str) -> Result<Entries, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let at = e
            .span()
            .map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("line {line}, column {column}: ")
            })
            .unwrap_or_default();
        // toml's message may quote the line (a value): only its first line is kept, which
        // names the problem.
        let what = e.message().lines().next().unwrap_or("").trim().to_string();
        format!("{at}{what}")
    })?;
    let mut entries = Entries::new();
    for (name, value) in table {
        check_name(&name).map_err(|e| e.message)?;
        match value {
            toml::Value::String(s) => {
                entries.insert(name, Secret::new(s));
            }
            other => {
                return Err(format!("`{name}` is a {}, not a string", other.type_str()));
            }
        }
    }
    Ok(entries)
}

/// The plaintext of `entries`, as `parse` reads it.
pub fn render(entries: &Entries) -> String {
    let table: toml::Table = entries
        .iter()
        .map(|(k, v)| (k.clone(), toml::Value::String(v.expose().to_string())))
        .collect();
    toml::to_string(&table).expect("a table of strings serializes")
}

/// Encrypts `entries` to `key`'s recipient and replaces the vault at `path` atomically: a
/// temporary file beside it, synced, then renamed over it (a crash leaves the old vault).
pub fn write(path: &Path, key: &Key, entries: &Entries) -> Result<(), VaultError> {
    let armored = age::encrypt_and_armor(&key.recipient(), render(entries).as_bytes())
        .map_err(|e| VaultError::new(format!("cannot encrypt the vault: {e}"), "report this"))?;
    write_atomically(path, armored.as_bytes()).map_err(|e| {
        VaultError::new(
            format!("cannot write the vault `{}`: {e}", path.display()),
            "check the directory exists and is writable; the old vault is unchanged",
        )
    })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| DEFAULT_FILE.into(), |n| n.to_string_lossy().into_owned());
    // An existing vault keeps its mode; a new one is 0644 (it holds only ciphertext).
    let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o777);
    let temp = dir.join(format!(
        ".{name}.{}.{:x}.tmp",
        std::process::id(),
        fastrand::u64(..)
    ));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written?;
    // The rename is durable once the directory is synced; failing that is not worth failing for.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key {
            identities: vec![x25519::Identity::generate()],
            source: KeySource::Env,
        }
    }

    fn entries(pairs: &[(&str, &str)]) -> Entries {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Secret::new(*v)))
            .collect()
    }

    #[test]
    fn a_vault_round_trips_through_age_and_reads_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.age");
        let key = key();
        let written = entries(&[("zeta", "z\n\"quoted\" = x"), ("alpha", "")]);
        write(&path, &key, &written).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
            "{text}"
        );
        assert!(!text.contains("quoted"));
        let read_back = read(&path, &key).unwrap();
        assert_eq!(read_back, written);
        assert_eq!(read_back.keys().collect::<Vec<_>>(), ["zeta", "alpha"]);
        // No temporary file left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn another_identity_or_a_flipped_byte_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.age");
        let key = key();
        write(&path, &key, &entries(&[("a", "b")])).unwrap();

        let other = read(&path, &self::key()).unwrap_err();
        assert!(
            other
                .message
                .contains("was not encrypted for the identity from $DROPSHIP_AGE_KEY"),
            "{other:?}"
        );

        // Flip one base64 character in the payload (the last full line before the footer).
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let at = lines.len() - 2;
        let flipped: String = lines[at]
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i == 3 {
                    if c == 'A' { 'B' } else { 'A' }
                } else {
                    c
                }
            })
            .collect();
        lines[at] = flipped;
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let tampered = read(&path, &key).unwrap_err();
        assert!(
            tampered.message.contains("corrupted or was tampered with"),
            "{tampered:?}"
        );
        assert!(tampered.hint.as_deref().unwrap().contains("git checkout"));

        std::fs::write(&path, "NAME = \"plaintext\"\n").unwrap();
        let plain = read(&path, &key).unwrap_err();
        assert!(
            plain.message.contains("is not an age-encrypted vault"),
            "{plain:?}"
        );
    }

    #[test]
    fn plaintext_errors_name_the_place_never_the_value() {
        let err = parse("a = \"ok\"\nb = 12345\n").unwrap_err();
        assert_eq!(err, "`b` is a integer, not a string");
        let err = parse("a = \"ok\"\nb = hunter2\n").unwrap_err();
        assert!(err.starts_with("line 2, column 5: "), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = parse("\"a b\" = \"x\"\n").unwrap_err();
        assert_eq!(err, "bad secret name `a b`");
    }

    #[test]
    fn identity_files_take_comments_and_refuse_garbage_without_quoting_it() {
        let identity = x25519::Identity::generate();
        let text = format!("# created\n\n{}\n", identity.to_string().expose_secret());
        assert_eq!(parse_identities(&text).unwrap().len(), 1);
        let err = parse_identities("# c\nAGE-SECRET-KEY-1NOTAKEY\n")
            .err()
            .unwrap();
        assert!(
            err.starts_with("line 2 is not an age x25519 identity"),
            "{err}"
        );
        assert!(!err.contains("NOTAKEY"));
        assert_eq!(
            parse_identities("# only\n").err().unwrap(),
            "holds no identity"
        );
    }

    #[test]
    fn a_generated_identity_is_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conf/dropship/age.key");
        let key = Key::generate(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let loaded = Key::load(KeySource::File(path.clone())).unwrap();
        assert_eq!(loaded.recipient().to_string(), key.recipient().to_string());
        let before = std::fs::read(&path).unwrap();
        assert!(Key::generate(&path).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Key::load(KeySource::File(path.clone())).unwrap_err();
        assert!(
            err.message.contains("readable by others (mode 0644)"),
            "{err:?}"
        );
    }
}
