//! SSH keys for the tests, made and read with OpenSSH's own `ssh-keygen`. Imports std only.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A new ed25519 key pair without a passphrase: `path` and `path.pub`.
pub fn keygen(path: &Path) {
    keygen_typed(path, "ed25519", "");
}

/// A new key pair of `key_type` (`ed25519`, `ecdsa`, `rsa`), locked with `passphrase` unless
/// it is empty.
pub fn keygen_typed(path: &Path, key_type: &str, passphrase: &str) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", key_type, "-C", "", "-N", passphrase, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `key.pub`.
pub fn pub_path(key: &Path) -> PathBuf {
    let mut s = key.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// `ssh-ed25519 AAAA...`: the public half of `key` without its comment, as known_hosts and
/// authorized_keys lines hold it.
pub fn public_key(key: &Path) -> String {
    let text = fs::read_to_string(pub_path(key))
        .unwrap_or_else(|e| panic!("read {}: {e}", pub_path(key).display()));
    let mut fields = text.split_whitespace();
    let kind = fields.next().expect("key type");
    let blob = fields.next().expect("key blob");
    format!("{kind} {blob}")
}

/// `SHA256:...` of `key`'s public half, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(pub_path(key))
        .output()
        .expect("ssh-keygen -l");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("fingerprint field")
        .to_string()
}
