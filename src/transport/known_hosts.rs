//! Host key verification against an OpenSSH known_hosts file, and safe learning of new keys.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Mutex;

use russh::keys::known_hosts::{check_known_hosts_path, known_host_keys_path};
use russh::keys::{Algorithm, HashAlg, PublicKey, PublicKeyBase64};

use super::{HostKeyPolicy, TransportError};

/// Serializes learning within this process; the flock below covers other processes.
static LEARNING: Mutex<()> = Mutex::new(());

/// Where a host's key stands in known_hosts.
enum Lookup {
    Known,
    Unknown,
    /// A key of the same type is recorded for this host, but a different one (1-based line).
    Changed(usize),
}

/// Who is being verified: the known_hosts file and the name the host is recorded under.
pub(crate) struct HostKeyCheck<'a> {
    pub known_hosts: &'a Path,
    pub address: &'a str,
    pub port: u16,
    pub policy: HostKeyPolicy,
}

impl HostKeyCheck<'_> {
    /// The name OpenSSH records the host under: `host`, or `[host]:port` off port 22.
    pub fn entry_name(&self) -> String {
        if self.port == 22 {
            self.address.to_string()
        } else {
            format!("[{}]:{}", self.address, self.port)
        }
    }

    /// Accepts a known key, learns an unknown one under accept-new, refuses everything else.
    /// Blocking file I/O: call from a blocking-friendly context.
    pub fn verify(&self, key: &PublicKey) -> Result<(), TransportError> {
        match self.lookup(key)? {
            Lookup::Known => Ok(()),
            Lookup::Changed(line) => Err(self.changed(key, line)),
            Lookup::Unknown => match self.policy {
                HostKeyPolicy::Strict => Err(TransportError::UnknownHostKey {
                    host: self.entry_name(),
                    fingerprint: fingerprint(key),
                    known_hosts: self.known_hosts.display().to_string(),
                }),
                HostKeyPolicy::AcceptNew => self.learn(key),
            },
        }
    }

    /// Key types recorded for this host, so the handshake can ask for one we can verify.
    pub fn known_algorithms(&self) -> Vec<Algorithm> {
        known_host_keys_path(self.address, self.port, self.known_hosts)
            .map(|keys| keys.into_iter().map(|(_, key)| key.algorithm()).collect())
            .unwrap_or_default()
    }

    fn lookup(&self, key: &PublicKey) -> Result<Lookup, TransportError> {
        match check_known_hosts_path(self.address, self.port, key, self.known_hosts) {
            Ok(true) => Ok(Lookup::Known),
            Ok(false) => Ok(Lookup::Unknown),
            Err(russh::keys::Error::KeyChanged { line }) => {
                Ok(Lookup::Changed(physical_line(self.known_hosts, line)))
            }
            Err(e) => Err(TransportError::Protocol(format!(
                "cannot read known_hosts {}: {e}",
                self.known_hosts.display()
            ))),
        }
    }

    fn changed(&self, key: &PublicKey, line: usize) -> TransportError {
        TransportError::ChangedHostKey {
            host: self.entry_name(),
            fingerprint: fingerprint(key),
            known_hosts: self.known_hosts.display().to_string(),
            line,
        }
    }

    /// Appends the key, holding the process lock and an flock so concurrent learners
    /// (tasks here, or other dropship processes) record each host once.
    fn learn(&self, key: &PublicKey) -> Result<(), TransportError> {
        let io_err = |what: &str, e: std::io::Error| {
            TransportError::Protocol(format!(
                "cannot {what} known_hosts {}: {e}",
                self.known_hosts.display()
            ))
        };
        let _guard = LEARNING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(parent) = self
            .known_hosts
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| io_err("create the directory of", e))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(self.known_hosts)
            .map_err(|e| io_err("open", e))?;
        let _flock = Flock::exclusive(&file).map_err(|e| io_err("lock", e))?;

        // Someone may have learned this host while we waited for the lock.
        match self.lookup(key)? {
            Lookup::Known => return Ok(()),
            Lookup::Changed(line) => return Err(self.changed(key, line)),
            Lookup::Unknown => {}
        }
        let mut line = String::new();
        if !ends_with_newline(&file).map_err(|e| io_err("read", e))? {
            line.push('\n');
        }
        line.push_str(&format!(
            "{} {} {}\n",
            self.entry_name(),
            key.algorithm().as_str(),
            key.public_key_base64()
        ));
        // One write of the whole line, so a crash never leaves half a line.
        (&file)
            .write_all(line.as_bytes())
            .map_err(|e| io_err("append to", e))?;
        tracing::info!(host = %self.entry_name(), fingerprint = %fingerprint(key), "learned new host key");
        Ok(())
    }
}

/// OpenSSH's `SHA256:...` form, which is what `ssh-keygen -lf` shows.
pub(crate) fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

fn ends_with_newline(mut file: &File) -> std::io::Result<bool> {
    if file.seek(SeekFrom::End(0))? == 0 {
        return Ok(true);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

/// russh numbers known_hosts lines without counting `#` comment lines; map its number
/// back to the line a human (or `ssh-keygen -R`) sees.
fn physical_line(path: &Path, russh_line: usize) -> usize {
    let Ok(content) = std::fs::read(path) else {
        return russh_line;
    };
    let mut counted = 0;
    for (index, line) in content.split(|&b| b == b'\n').enumerate() {
        if line.first() != Some(&b'#') {
            counted += 1;
            if counted == russh_line {
                return index + 1;
            }
        }
    }
    russh_line
}

/// An exclusive advisory lock, released when dropped (closing the file would too).
struct Flock<'a>(&'a File);

impl<'a> Flock<'a> {
    fn exclusive(file: &'a File) -> std::io::Result<Self> {
        loop {
            // SAFETY: flock on a valid, open descriptor owned by `file`.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Flock(file));
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

impl Drop for Flock<'_> {
    fn drop(&mut self) {
        // SAFETY: as above; unlocking cannot fail in a way we could act on.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_russh_line_numbers_past_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, "# one\nhost-a k\n# two\n\nhost-b k\n").unwrap();
        // russh counts "host-a" as 1, the blank line as 2 and "host-b" as 3.
        assert_eq!(physical_line(&path, 1), 2);
        assert_eq!(physical_line(&path, 3), 5);
    }

    #[test]
    fn concurrent_learners_record_a_host_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/known_hosts");
        let key = russh::keys::parse_public_key_base64(
            "AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ",
        )
        .unwrap();
        let barrier = std::sync::Barrier::new(32);
        std::thread::scope(|scope| {
            for _ in 0..32 {
                scope.spawn(|| {
                    let check = HostKeyCheck {
                        known_hosts: &path,
                        address: "10.0.0.1",
                        port: 2222,
                        policy: HostKeyPolicy::AcceptNew,
                    };
                    barrier.wait();
                    // Straight to learning, as if every thread had just seen the host as unknown.
                    check.learn(&key).unwrap();
                });
            }
        });
        let content = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            content,
            "[10.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ\n"
        );
    }
}
