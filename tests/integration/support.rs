//! Integration-test harness: a "fleet" of real OpenSSH `sshd` processes on
//! loopback, one per test host, each with its own host key, app root and a
//! `docker` stand-in (tests/fixtures/docker-standin.sh) first on the PATH of
//! commands run over SSH.
//!
//! Layout under the fleet's temp dir (`dropship-fleet-XXXX`):
//!
//! ```text
//! client_key, client_key.pub   the fleet's client identity (ed25519)
//! authorized_keys              shared by all hosts (client_key.pub)
//! known_hosts                  "[127.0.0.1]:PORT ssh-ed25519 AAAA..." per host
//! inventory.toml               written by Fleet::write_inventory
//! h1/                          TestHost::dir
//!   ssh_host_ed25519_key(.pub) host key
//!   sshd_config, sshd.pid
//!   sshd.log                   sshd stderr (-e, LogLevel VERBOSE), appended
//!   bin/docker                 the stand-in
//!   .docker/cli-plugins/docker-compose  marks compose as a plugin (the stand-in answers it)
//!   docker.log                 "<epoch.nanos> <argv...>" per docker call
//!   docker.cwd.log             "<epoch.nanos> <cwd>" per docker call
//!   docker.stdin.log           stdin of `docker login --password-stdin`
//!   docker.sleep, docker.fail  knobs (see TestHost::set_docker_sleep/fail)
//!   root/                      TestHost::root, the host's app_dir
//! h2/ ...
//! ```
//!
//! The stand-in reaches exec'd commands through `SetEnv PATH=<dir>/bin:...`
//! in each host's sshd_config (sshd applies SetEnv after its default
//! environment, so it overrides PATH; verified by the self-test below).
//! `SetEnv ... SHLVL=1` keeps root's login shell (bash) from sourcing the
//! machine's ~/.bashrc for ssh commands (bash only does that when SHLVL < 2),
//! so a local .bashrc can neither prepend to PATH nor slow every session.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// What a stand-in host has as its compose CLI plugin: only its presence counts.
const COMPOSE_PLUGIN_MARK: &str = "#!/bin/sh\n# dropship test host: `docker compose` is answered by bin/docker (the stand-in).\nexec \"$HOME/bin/docker\" compose \"$@\"\n";
const SSHD: &str = "/usr/sbin/sshd";
const DOCKER_STANDIN: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/docker-standin.sh"
));
const STD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const START_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub hosts: Vec<TestHost>,
    pub client_key: PathBuf,
    pub known_hosts: PathBuf,
}

pub struct TestHost {
    /// "h1".."hN"
    pub name: String,
    pub port: u16,
    /// Writable dir: the host's app root (inventory var `app_dir`).
    pub root: PathBuf,
    /// The host's private dir: keys, config, logs, bin/docker.
    pub dir: PathBuf,
    config: PathBuf,
    host_key: PathBuf,
    child: Option<Child>,
    /// "Server listening" lines in sshd.log before the last spawn.
    listen_lines_before: usize,
}

impl Fleet {
    /// Starts `n` sshd processes ("h1".."hN"), all accepting connections when
    /// this returns; `known_hosts` lists all their host keys.
    pub fn start(n: usize) -> Fleet {
        ensure_privsep_dir();
        let dir = tempfile::Builder::new()
            .prefix("dropship-fleet-")
            .tempdir_in(std::env::temp_dir())
            .expect("create fleet temp dir");
        let base = dir.path().to_path_buf();

        let client_key = base.join("client_key");
        keygen(&client_key, "dropship-test-client");
        let authorized_keys = base.join("authorized_keys");
        fs::copy(pub_path(&client_key), &authorized_keys).expect("write authorized_keys");

        let mut hosts: Vec<TestHost> = (1..=n)
            .map(|i| TestHost::create(&base, &format!("h{i}"), &authorized_keys))
            .collect();
        // Spawn all, then wait for all: faster than one at a time.
        for h in &mut hosts {
            h.spawn();
        }
        for h in &mut hosts {
            h.wait_ready_retrying_port();
        }

        let known_hosts = base.join("known_hosts");
        let mut kh = String::new();
        for h in &hosts {
            kh.push_str(&h.host_key_line());
            kh.push('\n');
        }
        fs::write(&known_hosts, kh).expect("write known_hosts");

        Fleet {
            dir,
            hosts,
            client_key,
            known_hosts,
        }
    }

    pub fn host(&self, name: &str) -> &TestHost {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no test host named {name:?}"))
    }

    pub fn host_mut(&mut self, name: &str) -> &mut TestHost {
        self.hosts
            .iter_mut()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no test host named {name:?}"))
    }

    /// Inventory TOML in dropship's format: `[ssh]` settings for this fleet,
    /// one `[hosts.hN]` per host (group "web", `vars.app_dir` = its root), and
    /// `[groups.web]` as the LAST table.
    pub fn inventory(&self) -> String {
        let mut s = String::new();
        s.push_str("[ssh]\n");
        s.push_str("user = \"root\"\n");
        writeln!(s, "identity_file = {}", toml_path(&self.client_key)).unwrap();
        writeln!(s, "known_hosts = {}", toml_path(&self.known_hosts)).unwrap();
        s.push_str("host_key_policy = \"strict\"\n");
        s.push_str("connect_timeout = \"5s\"\n");
        for h in &self.hosts {
            writeln!(s, "\n[hosts.{}]", h.name).unwrap();
            s.push_str("address = \"127.0.0.1\"\n");
            s.push_str("groups = [\"web\"]\n");
            writeln!(s, "ssh = {{ port = {} }}", h.port).unwrap();
            writeln!(s, "vars = {{ app_dir = {} }}", toml_path(&h.root)).unwrap();
        }
        s.push_str("\n[groups.web]\n");
        s
    }

    /// Writes `inventory() + extra` to `<dir>/inventory.toml`.
    ///
    /// NB: `extra` is appended right after the `[groups.web]` header, so bare
    /// `key = value` lines at its start land in `[groups.web]`; start `extra`
    /// with a table header to put things elsewhere.
    pub fn write_inventory(&self, extra: &str) -> PathBuf {
        let path = self.dir.path().join("inventory.toml");
        let mut text = self.inventory();
        text.push_str(extra);
        if !text.ends_with('\n') {
            text.push('\n');
        }
        fs::write(&path, text).expect("write inventory.toml");
        path
    }

    /// A real OpenSSH client command to run `remote` on host `name`, strict
    /// host key checking against the fleet's known_hosts, batch mode.
    pub fn ssh_command(&self, name: &str, remote: &str) -> Command {
        let h = self.host(name);
        let mut cmd = Command::new("ssh");
        cmd.arg("-F")
            .arg("none")
            .arg("-o")
            .arg("BatchMode=yes")
            .arg("-o")
            .arg("StrictHostKeyChecking=yes")
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .arg("-o")
            .arg("GlobalKnownHostsFile=/dev/null")
            .arg("-o")
            .arg("IdentitiesOnly=yes")
            .arg("-o")
            .arg("ConnectTimeout=5")
            .arg("-i")
            .arg(&self.client_key)
            .arg("-p")
            .arg(h.port.to_string())
            .arg("root@127.0.0.1")
            .arg(remote)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `ssh_command(name, remote)` and returns its output.
    pub fn ssh(&self, name: &str, remote: &str) -> Output {
        self.ssh_command(name, remote)
            .output()
            .expect("run ssh client")
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Runs before the fields are dropped: kill every sshd (and its
        // sessions) before the TempDir is removed.
        for h in &mut self.hosts {
            h.kill();
        }
    }
}

impl TestHost {
    fn create(base: &Path, name: &str, authorized_keys: &Path) -> TestHost {
        let dir = base.join(name);
        let root = dir.join("root");
        let bin = dir.join("bin");
        fs::create_dir_all(&root).expect("create host root");
        fs::create_dir_all(&bin).expect("create host bin");

        let docker = bin.join("docker");
        fs::write(&docker, DOCKER_STANDIN).expect("write docker stand-in");
        fs::set_permissions(&docker, fs::Permissions::from_mode(0o755)).expect("chmod docker");
        // The stand-in answers `docker compose`: mark compose as an installed CLI plugin, where
        // dropship (like the docker CLI) looks for it ($HOME/.docker/cli-plugins).
        let plugins = dir.join(".docker/cli-plugins");
        fs::create_dir_all(&plugins).expect("create cli-plugins");
        let plugin = plugins.join("docker-compose");
        fs::write(&plugin, COMPOSE_PLUGIN_MARK).expect("write compose plugin mark");
        fs::set_permissions(&plugin, fs::Permissions::from_mode(0o755)).expect("chmod plugin");

        let host_key = dir.join("ssh_host_ed25519_key");
        keygen(&host_key, &format!("dropship-test-{name}"));

        let config = dir.join("sshd_config");
        let mut h = TestHost {
            name: name.to_string(),
            port: 0,
            root,
            dir,
            config,
            host_key,
            child: None,
            listen_lines_before: 0,
        };
        h.port = free_port();
        h.write_config(authorized_keys);
        h
    }

    fn authorized_keys(&self) -> PathBuf {
        self.dir.parent().unwrap().join("authorized_keys")
    }

    fn write_config(&self, authorized_keys: &Path) {
        let bin = self.dir.join("bin");
        let cfg = format!(
            "Port {port}\n\
             ListenAddress 127.0.0.1\n\
             HostKey {key}\n\
             PidFile {pid}\n\
             AuthorizedKeysFile {ak}\n\
             StrictModes no\n\
             UsePAM no\n\
             PermitRootLogin yes\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             LogLevel VERBOSE\n\
             MaxStartups 100:30:200\n\
             MaxSessions 100\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             X11Forwarding no\n\
             Subsystem sftp internal-sftp\n\
             SetEnv PATH={bin}:{std} SHLVL=1 HOME={home}\n",
            port = self.port,
            key = self.host_key.display(),
            pid = self.dir.join("sshd.pid").display(),
            ak = authorized_keys.display(),
            bin = bin.display(),
            home = self.dir.display(),
            std = STD_PATH,
        );
        fs::write(&self.config, cfg).expect("write sshd_config");
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "{}: sshd already running", self.name);
        self.listen_lines_before = self.listen_lines();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("sshd.log"))
            .expect("open sshd.log");
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup sshd.log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: spawn {SSHD}: {e}", self.name));
        self.child = Some(child);
    }

    /// How often sshd.log says this host's sshd listens on its current port.
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
                    self.name,
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
                    self.name, self.port, START_TIMEOUT
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// First start: if the port got taken between picking and binding, pick
    /// another one (the port is only fixed once the fleet is up).
    fn wait_ready_retrying_port(&mut self) {
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
                    self.write_config(&self.authorized_keys());
                    self.spawn();
                }
            }
        }
    }

    /// Kills this host's sshd together with all its live sessions (and what
    /// they run, e.g. a sleeping docker stand-in): the host "goes down" and
    /// its port refuses connections. No-op if already stopped.
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

    /// Replaces the host key with a fresh one and restarts sshd. The fleet's
    /// known_hosts is left alone (it still has the old key).
    pub fn regenerate_host_key(&mut self) {
        self.stop();
        let _ = fs::remove_file(&self.host_key);
        let _ = fs::remove_file(pub_path(&self.host_key));
        keygen(
            &self.host_key,
            &format!("dropship-test-{}-regen", self.name),
        );
        self.start();
    }

    /// The stand-in's argv log: "<epoch.nanos> <arg> <arg>...\n" per call.
    pub fn docker_log(&self) -> String {
        read_or_empty(&self.dir.join("docker.log"))
    }

    /// The docker invocations without timestamps, e.g. "compose version".
    pub fn docker_commands(&self) -> Vec<String> {
        self.docker_log()
            .lines()
            .map(|l| l.split_once(' ').map_or("", |(_, rest)| rest).to_string())
            .collect()
    }

    /// "<epoch.nanos> <cwd>\n" per docker call (same order as docker_log).
    pub fn docker_cwd_log(&self) -> String {
        read_or_empty(&self.dir.join("docker.cwd.log"))
    }

    /// Everything `docker login --password-stdin` read on stdin.
    pub fn docker_stdin_log(&self) -> String {
        read_or_empty(&self.dir.join("docker.stdin.log"))
    }

    /// Make compose subcommands (other than `version`) sleep this many
    /// seconds; `None` removes the knob.
    pub fn set_docker_sleep(&self, secs: Option<f64>) {
        let p = self.dir.join("docker.sleep");
        match secs {
            Some(s) => fs::write(p, format!("{s}\n")).expect("write docker.sleep"),
            None => {
                let _ = fs::remove_file(p);
            }
        }
    }

    /// Make the docker subcommand `word` (e.g. "login", "pull", "up") fail
    /// with "error: simulated failure of <word>" and exit 1; `None` clears.
    pub fn set_docker_fail(&self, word: Option<&str>) {
        let p = self.dir.join("docker.fail");
        match word {
            Some(w) => fs::write(p, format!("{w}\n")).expect("write docker.fail"),
            None => {
                let _ = fs::remove_file(p);
            }
        }
    }

    /// sshd's stderr (all starts of this host, appended).
    pub fn sshd_log(&self) -> String {
        read_or_empty(&self.dir.join("sshd.log"))
    }

    /// "[127.0.0.1]:PORT ssh-ed25519 AAAA..." for the current host key.
    pub fn host_key_line(&self) -> String {
        let pubkey = fs::read_to_string(pub_path(&self.host_key)).expect("read host .pub");
        let mut fields = pubkey.split_whitespace();
        let kind = fields.next().expect("host key type");
        let blob = fields.next().expect("host key blob");
        format!("[127.0.0.1]:{} {kind} {blob}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        // Freeze the tree (so nothing forks/reparents behind our back), then
        // kill it all. sshd session processes call setsid(), so a process
        // group kill would miss them; walk /proc instead.
        let mut frozen: HashSet<u32> = HashSet::new();
        frozen.insert(pid);
        signal(&[pid], "STOP");
        for _ in 0..10 {
            let new: Vec<u32> = descendants(pid)
                .into_iter()
                .filter(|p| !frozen.contains(p))
                .collect();
            if new.is_empty() {
                break;
            }
            signal(&new, "STOP");
            frozen.extend(new);
        }
        let all: Vec<u32> = frozen.into_iter().filter(|p| *p != pid).collect();
        signal(&all, "KILL");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        self.kill();
    }
}

fn ensure_privsep_dir() {
    let p = Path::new("/run/sshd");
    if !p.is_dir() {
        // Several tests may race here; create_dir_all tolerates that.
        fs::create_dir_all(p).expect("create /run/sshd (sshd privilege separation dir)");
        let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o755));
    }
}

fn keygen(path: &Path, comment: &str) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-t", "ed25519", "-C", comment, "-f"])
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

fn pub_path(key: &Path) -> PathBuf {
    let mut s = key.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

fn read_or_empty(p: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = fs::File::open(p) {
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        s = String::from_utf8_lossy(&buf).into_owned();
    }
    s
}

/// TOML basic string for a path.
fn toml_path(p: &Path) -> String {
    toml_str(&p.to_string_lossy())
}

/// TOML basic string: quotes, escapes `"`, `\` and control characters.
pub fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                write!(out, "\\u{:04X}", c as u32).unwrap();
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// All descendants of `root` (not `root` itself), from /proc.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // "pid (comm) state ppid ..." — comm may contain spaces/parens.
            let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            let mut f = after.split_whitespace();
            let _state = f.next();
            if let Some(ppid) = f.next().and_then(|s| s.parse::<u32>().ok()) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        if let Some(cs) = children.get(&p) {
            for &c in cs {
                out.push(c);
                stack.push(c);
            }
        }
    }
    out
}

fn signal(pids: &[u32], sig: &str) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .args(pids.iter().map(|p| p.to_string()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[test]
fn fleet_hosts_accept_ssh_and_use_the_docker_standin() {
    let mut fleet = Fleet::start(2);
    assert_eq!(fleet.hosts.len(), 2);
    assert_ne!(fleet.host("h1").port, fleet.host("h2").port);

    let kh = fs::read_to_string(&fleet.known_hosts).unwrap();
    for h in &fleet.hosts {
        let line = h.host_key_line();
        assert!(line.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 AAAA", h.port)));
        assert!(kh.lines().any(|l| l == line), "known_hosts lacks {line}");
        assert!(h.root.is_dir());
    }

    for name in ["h1", "h2"] {
        let h = fleet.host(name);
        let out = fleet.ssh(name, "command -v docker");
        assert!(
            out.status.success(),
            "ssh to {name} failed: {}\nsshd log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            h.sshd_log()
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            h.dir.join("bin/docker").to_str().unwrap()
        );
        let out = fleet.ssh(name, "echo $PATH");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{}:{STD_PATH}", h.dir.join("bin").display())
        );

        let out = fleet.ssh(name, "docker compose version");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "Docker Compose version v2.99.0-standin\n"
        );
        let out = fleet.ssh(name, "docker version --format '{{.Server.Version}}'");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "99.0.0-standin\n");

        let log = h.docker_log();
        let first = log.lines().next().expect("docker.log line");
        let (ts, args) = first.split_once(' ').unwrap();
        assert!(
            ts.parse::<f64>().is_ok() && ts.contains('.'),
            "timestamp {ts:?}"
        );
        assert_eq!(args, "compose version");
        assert_eq!(
            h.docker_commands(),
            vec!["compose version", "version --format {{.Server.Version}}"]
        );
    }
    // h2's stand-in logs only h2's calls.
    assert_eq!(fleet.host("h2").docker_commands().len(), 2);

    // login reads the password from stdin.
    let mut login = fleet.ssh_command(
        "h1",
        "cd / && docker login -u bob --password-stdin registry.test:5000",
    );
    login.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = login.spawn().unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"s3cret\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Login Succeeded\n");
    assert_eq!(fleet.host("h1").docker_stdin_log(), "s3cret\n");
    assert!(
        fleet
            .host("h1")
            .docker_cwd_log()
            .lines()
            .last()
            .unwrap()
            .ends_with(" /")
    );

    // Simulated failures match the subcommand only.
    fleet.host("h1").set_docker_fail(Some("pull"));
    let out = fleet.ssh("h1", "docker compose -f x.yml pull");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error: simulated failure of pull"));
    assert!(fleet.ssh("h1", "docker compose up -d").status.success());
    fleet.host("h1").set_docker_fail(None);
    assert!(fleet.ssh("h1", "docker compose pull").status.success());

    // stop(): the port refuses; start(): same port, same key, back again.
    let port = fleet.host("h1").port;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    fleet.host_mut("h1").stop();
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
    assert!(!fleet.ssh("h1", "true").status.success());
    assert!(fleet.ssh("h2", "true").status.success(), "h2 unaffected");
    fleet.host_mut("h1").start();
    assert_eq!(fleet.host("h1").port, port);
    let out = fleet.ssh("h1", "echo back");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "back\n");

    // stop() also kills in-flight sessions (a sleeping compose call).
    fleet.host("h1").set_docker_sleep(Some(30.0));
    let calls_before = fleet.host("h1").docker_commands().len();
    let mut slow = fleet.ssh_command("h1", "docker compose up -d");
    slow.stdout(Stdio::null()).stderr(Stdio::null());
    let mut slow = slow.spawn().unwrap();
    let t0 = Instant::now();
    while fleet.host("h1").docker_commands().len() == calls_before {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "slow call never started"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let sshd_pid = fleet.host("h1").pid().unwrap();
    assert!(!descendants(sshd_pid).is_empty(), "session should be live");
    fleet.host_mut("h1").stop();
    let status = slow.wait().unwrap();
    assert!(!status.success());
    assert!(t0.elapsed() < Duration::from_secs(20));
    fleet.host("h1").set_docker_sleep(None);
    fleet.host_mut("h1").start();

    // A new host key: strict ssh refuses, and host_key_line() changes.
    let old_line = fleet.host("h1").host_key_line();
    fleet.host_mut("h1").regenerate_host_key();
    assert_ne!(fleet.host("h1").host_key_line(), old_line);
    let out = fleet.ssh("h1", "true");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || err.contains("Host key verification failed"),
        "{err}"
    );
    assert!(fleet.ssh("h2", "true").status.success());

    // Inventory text.
    let inv = fleet.inventory();
    assert!(inv.contains("host_key_policy = \"strict\""));
    assert!(inv.contains(&format!("ssh = {{ port = {} }}", fleet.host("h2").port)));
    assert!(inv.trim_end().ends_with("[groups.web]"));
    let path = fleet.write_inventory("# extra\n");
    assert!(fs::read_to_string(path).unwrap().starts_with(&inv));
    assert!(
        fleet
            .host("h1")
            .sshd_log()
            .contains("Accepted publickey for root")
    );
}

#[test]
fn toml_strings_are_escaped() {
    assert_eq!(toml_str(r#"a"b\c"#), r#""a\"b\\c""#);
    assert_eq!(toml_str("x\ny\u{1}"), "\"x\\ny\\u0001\"");
}
