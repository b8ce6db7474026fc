//! Host key verification against an OpenSSH known_hosts file, and safe learning of new keys.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use russh::keys::{Algorithm, HashAlg, PublicKey, PublicKeyBase64};

use super::known_hosts_format::{HostEntry, KnownHostsIndex, Marker};
use super::{HostKeyPolicy, TransportError};

/// Serializes learning within this process; the flock below covers other processes.
static LEARNING: Mutex<()> = Mutex::new(());

/// The known_hosts files this process read, each with its content and that content indexed:
/// a fleet's thousands of lookups parse the file once. A lookup reuses them when the file's
/// stamp is unchanged and was already old when it was read (as git's racy-clean check: a
/// change within the file system's timestamp tick could keep the stamp); otherwise it reads
/// the file and compares its bytes. Any change (a key learned, an edit) is seen at once.
static READ: Mutex<Vec<ReadFile>> = Mutex::new(Vec::new());

/// A known_hosts file as read: its path, its stamp and content then, that content indexed.
struct ReadFile {
    path: PathBuf,
    stamp: Stamp,
    /// The stamp was older than `SETTLED` when the file was read.
    settled: bool,
    content: Vec<u8>,
    index: Arc<KnownHostsIndex>,
}

/// How old a modification must be for its stamp alone to vouch for the content: far more
/// than any file system's timestamp granularity.
const SETTLED: Duration = Duration::from_secs(2);

/// What identifies a file's content without reading it: the file, its size and its
/// modification and change times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.size(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Whether both times are more than `SETTLED` before `now`.
    fn settled(&self, now: SystemTime) -> bool {
        let Ok(now) = now.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let horizon = now.saturating_sub(SETTLED);
        let before = |(secs, nanos): (i64, i64)| {
            u64::try_from(secs)
                .is_ok_and(|secs| Duration::new(secs, u32::try_from(nanos).unwrap_or(0)) < horizon)
        };
        before(self.modified) && before(self.changed)
    }
}

/// `path` indexed (from what this process parsed before when the content is the same), or
/// `None` when there is no such file.
fn indexed(path: &Path) -> std::io::Result<Option<Arc<KnownHostsIndex>>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let now = SystemTime::now();
    let stamp = Stamp::of(&file.metadata()?);
    let mut read = READ.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(known) = read
        .iter()
        .find(|r| r.path == path && r.settled && r.stamp == stamp)
    {
        return Ok(Some(Arc::clone(&known.index)));
    }
    let mut content = Vec::new();
    file.read_to_end(&mut content)?;
    if let Some(known) = read
        .iter_mut()
        .find(|r| r.path == path && r.content == content)
    {
        known.stamp = stamp;
        known.settled = stamp.settled(now);
        return Ok(Some(Arc::clone(&known.index)));
    }
    let index = Arc::new(KnownHostsIndex::parse(&content));
    read.retain(|r| r.path != path);
    read.push(ReadFile {
        path: path.to_path_buf(),
        stamp,
        settled: stamp.settled(now),
        content,
        index: Arc::clone(&index),
    });
    Ok(Some(index))
}

/// Where a host's key stands in known_hosts.
#[derive(Debug, PartialEq, Eq)]
enum Lookup {
    Known,
    Unknown,
    Refused(Refusal),
}

/// Why known_hosts refuses a key; each names the 1-based line, as `ssh` reports it.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// Another key is recorded for this host on a plain line (of any key type, as in OpenSSH:
    /// a server offering only a type we have not recorded is not a new host).
    Changed(usize),
    /// The key is on an `@revoked` line that covers this host.
    Revoked(usize),
    /// No plain line knows the host, but a `@cert-authority` line covers it: it is meant to
    /// present certificates, which dropship does not verify, so its plain key is never learned.
    CertAuthority(usize),
}

impl Lookup {
    /// OpenSSH's verdict over the known_hosts entries that apply to the host.
    fn judge(entries: &[HostEntry], key: &PublicKey) -> Lookup {
        let same = |e: &&HostEntry| e.key.key_data() == key.key_data();
        let marked = |marker: Marker| entries.iter().filter(move |e| e.marker == marker);
        // A revocation wins over every other line.
        if let Some(e) = marked(Marker::Revoked).find(same) {
            return Lookup::Refused(Refusal::Revoked(e.line));
        }
        if marked(Marker::HostKey).any(|e| same(&e)) {
            return Lookup::Known;
        }
        if let Some(e) = marked(Marker::HostKey).next() {
            return Lookup::Refused(Refusal::Changed(e.line));
        }
        match marked(Marker::CertAuthority).next() {
            Some(e) => Lookup::Refused(Refusal::CertAuthority(e.line)),
            None => Lookup::Unknown,
        }
    }
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
            Lookup::Unknown => match self.policy {
                HostKeyPolicy::Strict => Err(TransportError::UnknownHostKey {
                    host: self.entry_name(),
                    fingerprint: fingerprint(key),
                    known_hosts: self.known_hosts.display().to_string(),
                }),
                HostKeyPolicy::AcceptNew => self.learn(key),
            },
            Lookup::Refused(why) => Err(self.refused(key, why)),
        }
    }

    /// Key types recorded for this host, so the handshake can ask for one we can verify.
    pub fn known_algorithms(&self) -> Vec<Algorithm> {
        self.entries()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.marker == Marker::HostKey)
            .map(|e| e.key.algorithm())
            .collect()
    }

    /// The lines of known_hosts that apply to this host; none when the file does not exist.
    fn entries(&self) -> Result<Vec<HostEntry>, TransportError> {
        match indexed(self.known_hosts) {
            Ok(Some(index)) => Ok(index.entries_for(&self.entry_name())),
            Ok(None) => Ok(Vec::new()),
            Err(e) => Err(TransportError::Protocol(format!(
                "cannot read known_hosts {}: {e}",
                self.known_hosts.display()
            ))),
        }
    }

    fn lookup(&self, key: &PublicKey) -> Result<Lookup, TransportError> {
        Ok(Lookup::judge(&self.entries()?, key))
    }

    fn refused(&self, key: &PublicKey, why: Refusal) -> TransportError {
        let (host, fingerprint) = (self.entry_name(), fingerprint(key));
        let known_hosts = self.known_hosts.display().to_string();
        match why {
            Refusal::Revoked(line) => TransportError::RevokedHostKey {
                host,
                fingerprint,
                known_hosts,
                line,
            },
            Refusal::CertAuthority(line) => TransportError::CertAuthorityHostKey {
                host,
                fingerprint,
                known_hosts,
                line,
            },
            Refusal::Changed(line) => TransportError::ChangedHostKey {
                host,
                fingerprint,
                known_hosts,
                line,
            },
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
        // As `ssh`: a name known_hosts would read back as patterns is never recorded.
        if self
            .address
            .contains(|c: char| "@?*#[]|'\"\\,!".contains(c) || c.is_whitespace())
        {
            return Err(TransportError::Protocol(format!(
                "will not learn the host key of `{}`: known_hosts would read that name as a pattern",
                self.address
            )));
        }
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
            Lookup::Unknown => {}
            Lookup::Refused(why) => return Err(self.refused(key, why)),
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

/// An exclusive advisory lock (`flock`), released when dropped (closing the file would too).
struct Flock<'a>(&'a File);

impl<'a> Flock<'a> {
    fn exclusive(file: &'a File) -> std::io::Result<Self> {
        loop {
            // std's `File::lock` is `flock(LOCK_EX)` on Unix and does not retry a signal.
            match file.lock() {
                Ok(()) => return Ok(Flock(file)),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for Flock<'_> {
    fn drop(&mut self) {
        // Unlocking cannot fail in a way we could act on.
        let _ = self.0.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::known_hosts_format::entries_for;

    const ED_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const ED_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILIG2T/B0l0gaqj3puu510tu9N1OkQ4znY3LYuEm5zCF";
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMJPmeuxPLskshKeH7YBsqV+8QO81JoqLyKmTwY0IyA8cVYOcpDveuAevNts7M3NXR2xumXSEaE9AtKNWjukPPQ=";

    /// The verdict on `presented` for host `web` given known_hosts `content`.
    fn judge(content: &str, presented: &str) -> Lookup {
        let key = PublicKey::from_openssh(presented).unwrap();
        Lookup::judge(&entries_for(content.as_bytes(), "web"), &key)
    }

    #[test]
    fn judges_keys_as_openssh_does() {
        use Lookup::{Known, Refused, Unknown};
        assert_eq!(judge("", ED_A), Unknown);
        assert_eq!(judge(&format!("other {ED_B}\n"), ED_A), Unknown);
        assert_eq!(judge(&format!("web {ED_B}\nw* {ED_A}\n"), ED_A), Known);
        // Another key on a plain line, of the same type or not, is a changed key.
        assert_eq!(
            judge(&format!("#\nw?b {ED_B}\n"), ED_A),
            Refused(Refusal::Changed(2))
        );
        assert_eq!(
            judge(&format!("web {ECDSA}\n"), ED_A),
            Refused(Refusal::Changed(1))
        );
        // Revocation wins over a plain line that trusts the key; it needs the same key.
        assert_eq!(
            judge(&format!("web {ED_A}\n@revoked * {ED_A}\n"), ED_A),
            Refused(Refusal::Revoked(2))
        );
        assert_eq!(
            judge(&format!("web {ED_A}\n@revoked * {ED_B}\n"), ED_A),
            Known
        );
        // A host under a CA is never unknown; its own plain line still decides.
        assert_eq!(
            judge(&format!("@cert-authority * {ED_B}\n"), ED_A),
            Refused(Refusal::CertAuthority(1))
        );
        assert_eq!(
            judge(&format!("@cert-authority * {ED_B}\nweb {ED_A}\n"), ED_A),
            Known
        );
        assert_eq!(
            judge(&format!("@cert-authority * {ED_A}\nweb {ED_B}\n"), ED_A),
            Refused(Refusal::Changed(2))
        );
    }

    #[test]
    fn never_learns_a_name_that_reads_back_as_a_pattern() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let key = PublicKey::from_openssh(ED_A).unwrap();
        for address in ["*", "web?", "a,b", "!x", "|1|x", "a b"] {
            let check = HostKeyCheck {
                known_hosts: &path,
                address,
                port: 22,
                policy: HostKeyPolicy::AcceptNew,
            };
            let err = check.verify(&key).unwrap_err().to_string();
            assert!(
                err.contains("would read that name as a pattern"),
                "{address}: {err}"
            );
        }
        assert!(!path.exists());
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

    #[test]
    fn a_file_changed_between_lookups_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let check = HostKeyCheck {
            known_hosts: &path,
            address: "web",
            port: 22,
            policy: HostKeyPolicy::Strict,
        };
        let (a, b) = (
            PublicKey::from_openssh(ED_A).unwrap(),
            PublicKey::from_openssh(ED_B).unwrap(),
        );
        std::fs::write(&path, format!("web {ED_A}\n")).unwrap();
        assert!(check.verify(&a).is_ok());
        // Same length, rewritten in place (maybe within the file system's timestamp tick).
        std::fs::write(&path, format!("web {ED_B}\n")).unwrap();
        assert!(check.verify(&b).is_ok());
        assert!(matches!(
            check.verify(&a),
            Err(TransportError::ChangedHostKey { line: 1, .. })
        ));
        // Settled (written an hour ago): its stamp alone vouches for it, until anything
        // changes, even a rewrite that puts the old modification time back.
        let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
        let set_mtime = |at| {
            File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(at)
                .unwrap()
        };
        set_mtime(an_hour_ago);
        assert!(check.verify(&b).is_ok());
        assert!(check.verify(&b).is_ok());
        std::fs::write(&path, format!("web {ED_A}\n")).unwrap();
        set_mtime(an_hour_ago);
        assert!(check.verify(&a).is_ok());
        assert!(matches!(
            check.verify(&b),
            Err(TransportError::ChangedHostKey { line: 1, .. })
        ));
        // Replaced by another file (a rename over it, as editors do).
        let other = dir.path().join("known_hosts.new");
        std::fs::write(&other, format!("# moved\nweb {ED_A}\n")).unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert!(check.verify(&a).is_ok());
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            check.verify(&a),
            Err(TransportError::UnknownHostKey { .. })
        ));
    }
}
