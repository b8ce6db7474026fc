//! A "fleet" of test hosts: `Sshd`s on loopback, one per host ("h1".."hN"), each with its
//! own host key, app root and a `docker` stand-in (tests/fixtures/docker-standin.sh) first on
//! the PATH of commands run over SSH; the inventory that reaches them, and deploying with it.
//! Imports `sshd`, `keys`, `files`, `procs`, `cli`.
//!
//! Layout under the fleet's temp dir (`dropship-fleet-XXXX`):
//!
//! ```text
//! client_key, client_key.pub   the fleet's client identity (ed25519)
//! authorized_keys              shared by all hosts (client_key.pub)
//! known_hosts                  "[127.0.0.1]:PORT ssh-ed25519 AAAA..." per host
//! inventory.toml               written by Fleet::write_inventory
//! h1/                          TestHost::dir, the host's sshd dir (see `sshd`)
//!   bin/docker                 the stand-in
//!   .docker/cli-plugins/docker-compose  marks compose as a plugin (the stand-in answers it)
//!   docker.log                 "<epoch.nanos> <argv...>" per docker call
//!   docker.cwd.log             "<epoch.nanos> <cwd>" per docker call
//!   docker.stdin.log           stdin of `docker login --password-stdin`
//!   docker.sleep, docker.fail  knobs (see TestHost::set_docker_sleep/fail)
//!   containers/P/ID.json, ID.logs  what `docker ps/inspect/logs` say of project P's containers
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

use std::fmt::Write as _;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::ops::{Deref, DerefMut};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::cli::{Run, run_playbook_with};
use super::files::{files_in, read_or_empty, toml_path, write};
use super::keys::{keygen, pub_path};
use super::procs::descendants;
use super::sshd::{Sshd, SshdSetup};

/// What a stand-in host has as its compose CLI plugin: only its presence counts.
const COMPOSE_PLUGIN_MARK: &str = "#!/bin/sh\n# dropship test host: `docker compose` is answered by bin/docker (the stand-in).\nexec \"$HOME/bin/docker\" compose \"$@\"\n";
const DOCKER_STANDIN: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/docker-standin.sh"
));
const STD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub hosts: Vec<TestHost>,
    pub client_key: PathBuf,
    pub known_hosts: PathBuf,
}

/// One host of a fleet: its sshd (which it derefs to: `port`, `dir`, `stop`, `sshd_log`...)
/// and its app root.
pub struct TestHost {
    /// "h1".."hN"
    pub name: String,
    /// Writable dir: the host's app root (inventory var `app_dir`).
    pub root: PathBuf,
    sshd: Sshd,
}

impl Deref for TestHost {
    type Target = Sshd;
    fn deref(&self) -> &Sshd {
        &self.sshd
    }
}

impl DerefMut for TestHost {
    fn deref_mut(&mut self) -> &mut Sshd {
        &mut self.sshd
    }
}

impl Fleet {
    /// Starts `n` sshd processes ("h1".."hN"), all accepting connections when
    /// this returns; `known_hosts` lists all their host keys.
    pub fn start(n: usize) -> Fleet {
        let dir = tempfile::Builder::new()
            .prefix("dropship-fleet-")
            .tempdir_in(std::env::temp_dir())
            .expect("create fleet temp dir");
        let base = dir.path().to_path_buf();

        let client_key = base.join("client_key");
        keygen(&client_key);
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
            h.wait_started();
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

    /// Writes `text` as `name` into the fleet's dir; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        write(self.dir.path(), name, text)
    }

    /// Writes the playbook `file` into the fleet's dir: `name = NAME`, `app = APP`,
    /// `hosts = "web"` (every host), then `body` (its `[vars]`, `[[steps]]`...).
    pub fn write_playbook(&self, file: &str, name: &str, app: &str, body: &str) -> PathBuf {
        self.write(
            file,
            &format!("name = \"{name}\"\napp = \"{app}\"\nhosts = \"web\"\n\n{body}"),
        )
    }

    /// `dropship deploy -i INVENTORY PLAYBOOK EXTRA...` with the fleet's inventory (written
    /// again), its JSON report written too.
    pub fn deploy(&self, playbook: &Path, extra: &[&str]) -> Run {
        run_playbook_with("deploy", &self.write_inventory(""), playbook, extra)
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
            h.stop();
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

        let extra_config = format!(
            "PubkeyAuthentication yes\n\
             MaxStartups 100:30:200\n\
             MaxSessions 100\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             X11Forwarding no\n\
             Subsystem sftp internal-sftp\n\
             SetEnv PATH={bin}:{std} SHLVL=1 HOME={home}\n",
            bin = bin.display(),
            home = dir.display(),
            std = STD_PATH,
        );
        let sshd = Sshd::create(
            dir,
            SshdSetup {
                host_key_types: vec!["ed25519"],
                authorized_keys: authorized_keys.to_path_buf(),
                extra_config,
            },
        );
        TestHost {
            name: name.to_string(),
            root,
            sshd,
        }
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

    /// A container of compose project `project` as the stand-in tells it: `docker ps -a -q
    /// --filter label=com.docker.compose.project=PROJECT` lists `id`, `docker inspect` prints
    /// `state` (the JSON line dropship's format asks for), `docker logs` prints `logs`.
    pub fn add_container(&self, project: &str, id: &str, state: &str, logs: &[u8]) {
        let dir = self.dir.join("containers").join(project);
        fs::create_dir_all(&dir).expect("create the containers dir");
        fs::write(dir.join(format!("{id}.json")), state).expect("write a container's state");
        fs::write(dir.join(format!("{id}.logs")), logs).expect("write a container's logs");
    }

    /// A container of compose project `project`'s service `service` as `docker ps --format
    /// '{{json .}}'` describes it (`state` as docker's `State`, `status` as its `Status`),
    /// with `logs` as its logs; `docker inspect` says it runs.
    #[allow(clippy::too_many_arguments)]
    pub fn add_service_container(
        &self,
        project: &str,
        service: &str,
        id: &str,
        image: &str,
        (state, status): (&str, &str),
        logs: &[u8],
    ) {
        let name = format!("{project}-{service}-{}", &id[..4]);
        self.add_container(project, id, "{}", logs);
        let line = format!(
            "{{\"ID\":\"{id}\",\"Names\":\"{name}\",\"Image\":\"{image}\",\"State\":\"{state}\",\"Status\":\"{status}\",\"Labels\":\"com.docker.compose.project={project},com.docker.compose.service={service}\"}}\n"
        );
        let file = self
            .dir
            .join("containers")
            .join(project)
            .join(format!("{id}.ps"));
        fs::write(file, line).expect("write a container's ps line");
    }

    /// Appends to the logs of container `id` of `project` (a followed `docker logs` sees it).
    pub fn append_logs(&self, project: &str, id: &str, more: &[u8]) {
        use std::io::Write as _;
        let file = self
            .dir
            .join("containers")
            .join(project)
            .join(format!("{id}.logs"));
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(file)
            .expect("open a container's logs");
        f.write_all(more).expect("append to a container's logs");
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
}

/// `Fleet::start(n)`, making sure every host's port is served by that host's own sshd.
///
/// The harness picks a free port, releases it and starts sshd on it, then waits until the
/// port accepts a connection. When a concurrently starting test's sshd grabbed the same port
/// first, our sshd fails to bind, yet the connect may reach the other test's sshd before ours
/// has exited: the host then silently has someone else's sshd (and host key). Such a fleet
/// is thrown away and started again.
pub fn start_fleet(n: usize) -> Fleet {
    for _ in 0..3 {
        let fleet = Fleet::start(n);
        if fleet.hosts.iter().all(|h| listening_count(h) > 0) {
            return fleet;
        }
    }
    panic!("could not start a fleet of {n} sshd with their own ports");
}

/// How many times this host's sshd logged that it listens on its port, waiting up to 3 s
/// for the first time (sshd logs it right after listen(), so a connect can come first).
pub fn listening_count(h: &TestHost) -> usize {
    let want = format!("Server listening on 127.0.0.1 port {}.", h.port);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let n = h.sshd_log().matches(&want).count();
        if n > 0 || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The fleet's inventory with `[ssh]` lines replaced: each `(key, value)` replaces the line
/// starting with `key = ` (value is TOML, e.g. `"\"accept-new\""`).
pub fn inventory_with_ssh(fleet: &Fleet, replace: &[(&str, String)]) -> PathBuf {
    let mut text = String::new();
    for line in fleet.inventory().lines() {
        match replace
            .iter()
            .find(|(k, _)| line.starts_with(&format!("{k} = ")))
        {
            Some((k, v)) => text.push_str(&format!("{k} = {v}\n")),
            None => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    for (k, _) in replace {
        assert!(
            text.contains(&format!("\n{k} = ")),
            "inventory has no `{k}` line to replace"
        );
    }
    let path = fleet.dir.path().join("inventory-custom.toml");
    fs::write(&path, text).expect("write inventory");
    path
}

impl Fleet {
    /// The fleet's inventory with `user` as the SSH user, and h1 made ready for that
    /// unprivileged user: its sshd session can read the fleet's shared authorized_keys (in the
    /// fleet's 0700 temp dir; the private key stays 0600), and it can make the lock and audit
    /// log in the app's directory (h1's root-owned root).
    pub fn inventory_for_user(&self, user: &str) -> PathBuf {
        fs::set_permissions(self.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let state = self.host("h1").root.join(".dropship");
        fs::create_dir_all(&state).unwrap();
        fs::set_permissions(&state, fs::Permissions::from_mode(0o1777)).unwrap();
        inventory_with_ssh(self, &[("user", format!("\"{user}\""))])
    }
}

/// The number of times sshd accepted a login.
pub fn logins(sshd_log: &str) -> usize {
    sshd_log.matches("Accepted publickey").count()
}

#[track_caller]
/// No host of the fleet got a login, a file or a docker call.
pub fn assert_untouched(fleet: &Fleet) {
    for h in &fleet.hosts {
        assert_eq!(
            logins(&h.sshd_log()),
            0,
            "{} got a login:\n{}",
            h.name,
            h.sshd_log()
        );
        assert!(files_in(&h.root).is_empty(), "{} has files", h.name);
        assert_eq!(h.docker_log(), "", "{} ran docker", h.name);
    }
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
