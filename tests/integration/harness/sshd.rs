//! One real OpenSSH `sshd` on 127.0.0.1, as every test that needs a server starts it: its own
//! directory (sshd_config, host keys, pid file, log), a port picked free, started, stopped and
//! restarted together with the sessions it serves. Imports `keys`, `ports`, `procs`, `files`.
//!
//! Layout of its directory:
//!
//! ```text
//! sshd_config, sshd.pid
//! sshd.log                         sshd's stderr (-e, LogLevel VERBOSE), appended over restarts
//! ssh_host_<type>_key(.pub)        one per host key type, the first is "the" host key
//! client_key(.pub), authorized_keys   only for `Sshd::alone`
//! ```

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::files::read_or_empty;
use super::keys::{fingerprint, keygen_typed, pub_path, public_key};
use super::ports::free_port;
use super::procs::kill_tree;

const SSHD: &str = "/usr/sbin/sshd";
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// What an sshd is started with beyond the lines every test sshd has (root logs in with a
/// key from `authorized_keys` and nothing else; LogLevel VERBOSE).
pub struct SshdSetup {
    /// Host key types (`ed25519`, `ecdsa`, `rsa`); the first is the one `host_key_line` and
    /// `fingerprint` speak of.
    pub host_key_types: Vec<&'static str>,
    pub authorized_keys: PathBuf,
    /// More sshd_config lines, each ending in a newline.
    pub extra_config: String,
}

pub struct Sshd {
    pub port: u16,
    /// Its private directory (see the module's layout).
    pub dir: PathBuf,
    setup: SshdSetup,
    child: Option<Child>,
    /// "Server listening" lines in sshd.log before the last spawn.
    listen_lines_before: usize,
    /// The temp dir `dir` is, for `Sshd::alone`; removed after the sshd is killed.
    _tmp: Option<tempfile::TempDir>,
}

impl Sshd {
    /// An sshd in `dir` (created), its host keys made, not started yet: call `spawn`, then
    /// `wait_started` (several can be spawned before waiting for them).
    pub fn create(dir: PathBuf, setup: SshdSetup) -> Sshd {
        ensure_privsep_dir();
        fs::create_dir_all(&dir).expect("create sshd dir");
        for kind in &setup.host_key_types {
            keygen_typed(&dir.join(format!("ssh_host_{kind}_key")), kind, "");
        }
        let sshd = Sshd {
            port: free_port(),
            dir,
            setup,
            child: None,
            listen_lines_before: 0,
            _tmp: None,
        };
        sshd.write_config();
        sshd
    }

    /// A running sshd in a temp dir of its own with its own client key (`client_key`, of the
    /// host key's type) authorized. `key_type` ed25519 also gets a second, ecdsa host key.
    pub fn alone(key_type: &'static str) -> Sshd {
        let tmp = tempfile::Builder::new()
            .prefix("dropship-sshd-")
            .tempdir()
            .expect("tempdir");
        let dir = tmp.path().to_path_buf();
        keygen_typed(&dir.join("client_key"), key_type, "");
        let authorized_keys = dir.join("authorized_keys");
        fs::copy(dir.join("client_key.pub"), &authorized_keys).expect("authorized_keys");
        let mut host_key_types = vec![key_type];
        if key_type == "ed25519" {
            host_key_types.push("ecdsa");
        }
        let mut sshd = Sshd::create(
            dir,
            SshdSetup {
                host_key_types,
                authorized_keys,
                extra_config: String::new(),
            },
        );
        sshd._tmp = Some(tmp);
        sshd.spawn();
        sshd.wait_started();
        sshd
    }

    /// `name` in the sshd's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The private key file of the host key of `kind`.
    pub fn host_key(&self, kind: &str) -> PathBuf {
        self.path(&format!("ssh_host_{kind}_key"))
    }

    fn main_host_key(&self) -> PathBuf {
        self.host_key(self.setup.host_key_types[0])
    }

    /// Adds the public key `key.pub` to the authorized keys.
    pub fn authorize(&self, key: &Path) {
        let mut text = fs::read_to_string(&self.setup.authorized_keys).unwrap_or_default();
        text.push_str(&fs::read_to_string(pub_path(key)).expect("read .pub"));
        fs::write(&self.setup.authorized_keys, text).expect("write authorized_keys");
    }

    fn write_config(&self) {
        let mut cfg = format!("Port {}\nListenAddress 127.0.0.1\n", self.port);
        for kind in &self.setup.host_key_types {
            cfg.push_str(&format!("HostKey {}\n", self.host_key(kind).display()));
        }
        cfg.push_str(&format!(
            "PidFile {pid}\n\
             AuthorizedKeysFile {ak}\n\
             StrictModes no\n\
             UsePAM no\n\
             PermitRootLogin yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             LogLevel VERBOSE\n",
            pid = self.path("sshd.pid").display(),
            ak = self.setup.authorized_keys.display(),
        ));
        cfg.push_str(&self.setup.extra_config);
        fs::write(self.path("sshd_config"), cfg).expect("write sshd_config");
    }

    /// Starts the process (not waiting for it to listen).
    pub fn spawn(&mut self) {
        assert!(
            self.child.is_none(),
            "{}: sshd already running",
            self.name()
        );
        self.listen_lines_before = self.listen_lines();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("sshd.log"))
            .expect("open sshd.log");
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(self.path("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup sshd.log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: spawn {SSHD}: {e}", self.name()));
        self.child = Some(child);
    }

    /// The directory's name, for messages ("h1").
    fn name(&self) -> String {
        self.dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    }

    /// How often sshd.log says this sshd listens on its current port.
    fn listen_lines(&self) -> usize {
        self.sshd_log()
            .matches(&format!(
                "Server listening on 127.0.0.1 port {}.",
                self.port
            ))
            .count()
    }

    /// Waits until the port accepts; Ok(()) or Err(sshd log) if sshd exited.
    fn wait_ready(&mut self) -> Result<(), String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("sshd spawned");
            if let Some(status) = child.try_wait().expect("poll sshd") {
                self.child = None;
                return Err(format!(
                    "{}: sshd on port {} exited ({status}); log:\n{}",
                    self.name(),
                    self.port,
                    self.sshd_log()
                ));
            }
            // Our sshd must say it listens: a TCP connect alone could reach another test's
            // sshd that grabbed the port between picking it and binding.
            if self.listen_lines() > self.listen_lines_before
                && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = self.sshd_log();
                self.kill();
                panic!(
                    "{}: sshd did not accept on port {} within {:?}; log:\n{log}",
                    self.name(),
                    self.port,
                    START_TIMEOUT
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// First start: if the port got taken between picking and binding, pick another one (the
    /// port is only fixed once the sshd is up).
    pub fn wait_started(&mut self) {
        let mut attempts = 0;
        loop {
            match self.wait_ready() {
                Ok(()) => return,
                Err(log) => {
                    attempts += 1;
                    let port_taken = log.contains("Address already in use")
                        || log.contains("Cannot bind any address");
                    if !port_taken || attempts >= 5 {
                        panic!("{log}");
                    }
                    self.port = free_port();
                    self.write_config();
                    self.spawn();
                }
            }
        }
    }

    /// Kills this sshd together with all its live sessions (and what they run, e.g. a
    /// sleeping docker stand-in): the host "goes down" and its port refuses connections.
    /// No-op if already stopped.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts sshd again: same port, same host key (as now on disk).
    pub fn start(&mut self) {
        if self.child.is_some() {
            return;
        }
        self.spawn();
        if let Err(log) = self.wait_ready() {
            panic!("{log}");
        }
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(c) => c.try_wait().map(|s| s.is_none()).unwrap_or(false),
        }
    }

    /// Replaces the host key with a fresh one and restarts sshd. Nobody's known_hosts is
    /// touched (they still have the old key).
    pub fn regenerate_host_key(&mut self) {
        self.stop();
        let key = self.main_host_key();
        let _ = fs::remove_file(&key);
        let _ = fs::remove_file(pub_path(&key));
        keygen_typed(&key, self.setup.host_key_types[0], "");
        self.start();
    }

    /// sshd's stderr (all starts, appended).
    pub fn sshd_log(&self) -> String {
        read_or_empty(&self.path("sshd.log"))
    }

    /// `[127.0.0.1]:PORT ssh-ed25519 AAAA...`: the host key as OpenSSH writes it in
    /// known_hosts.
    pub fn host_key_line(&self) -> String {
        self.host_key_line_of(self.setup.host_key_types[0])
    }

    /// `host_key_line` of the host key of `kind`.
    pub fn host_key_line_of(&self, kind: &str) -> String {
        format!(
            "[127.0.0.1]:{} {}",
            self.port,
            public_key(&self.host_key(kind))
        )
    }

    /// `SHA256:...` of the host key, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.main_host_key())
    }

    /// A known_hosts file in this sshd's dir that trusts it (and nothing else).
    pub fn trusted_known_hosts(&self) -> PathBuf {
        let path = self.path("known_hosts");
        fs::write(&path, format!("{}\n", self.host_key_line())).expect("known_hosts");
        path
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn kill(&mut self) {
        if let Some(child) = self.child.take() {
            kill_tree(child);
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Before the temp dir goes: kill the sshd and its sessions.
        self.kill();
        if std::env::var_os("KEEP_SSHD_LOG").is_some() {
            let _ = fs::copy(
                self.path("sshd.log"),
                format!("/tmp/sshd-{}.log", self.port),
            );
        }
    }
}

/// sshd's privilege separation directory.
fn ensure_privsep_dir() {
    let p = Path::new("/run/sshd");
    if !p.is_dir() {
        // Several tests may race here; create_dir_all tolerates that.
        fs::create_dir_all(p).expect("create /run/sshd (sshd privilege separation dir)");
        let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o755));
    }
}
