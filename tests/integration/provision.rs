//! Provisioning: the `apt` step (against an apt-get stand-in), `become` through a real sudo
//! with a password (which must appear in no process's argv and no output), and a fresh Debian
//! container bootstrapped with `playbooks/bootstrap.toml`.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::harness::{
    Fleet, Run, all_cmdlines, command, dropship_cmd, finish, free_port, keygen, start_fleet,
};

/// An `apt-get` that only logs its argv and DEBIAN_FRONTEND, first on the host's PATH.
const APT_GET_STANDIN: &str = "#!/bin/sh\nprintf 'DEBIAN_FRONTEND=%s %s\\n' \"$DEBIAN_FRONTEND\" \"$*\" >> \"$(dirname \"$0\")/../apt-get.log\"\n";

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}{}{}", std::process::id(), nanos % 1_000_000)
}

fn write_playbook(fleet: &Fleet, name: &str, text: &str) -> PathBuf {
    let path = fleet.dir.path().join(name);
    fs::write(&path, text).expect("write playbook");
    path
}

fn deploy(inv: &Path, pb: &Path) -> Run {
    dropship_cmd(command(
        &["deploy", "-i", inv.to_str().unwrap(), pb.to_str().unwrap()],
        None,
    ))
}

#[test]
fn apt_installs_only_missing_packages() {
    let fleet = start_fleet(1);
    let h = fleet.host("h1");
    let standin = h.dir.join("bin/apt-get");
    fs::write(&standin, APT_GET_STANDIN).unwrap();
    fs::set_permissions(&standin, fs::Permissions::from_mode(0o755)).unwrap();
    let log = h.dir.join("apt-get.log");
    let inv = fleet.write_inventory("");

    let pb = write_playbook(
        &fleet,
        "apt-present.toml",
        "name = \"apt\"\napp = \"apt\"\n[[steps]]\nname = \"coreutils\"\napt = { packages = [\"coreutils\"], update = true }\n",
    );
    let run = deploy(&inv, &pb);
    run.assert_code(0);
    run.assert_outcome("h1", "coreutils", "ok");
    assert!(!log.exists(), "apt-get ran: {:?}", fs::read_to_string(&log));

    let pb = write_playbook(
        &fleet,
        "apt-missing.toml",
        "name = \"apt\"\napp = \"apt\"\n[[steps]]\nname = \"missing\"\napt = { packages = [\"coreutils\", \"dropship-test-missing\"], update = true }\n",
    );
    let run = deploy(&inv, &pb);
    run.assert_code(0);
    run.assert_outcome("h1", "missing", "changed");
    assert!(
        run.all().contains("installed dropship-test-missing"),
        "{}",
        run.all()
    );
    let calls = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = calls.lines().collect();
    assert_eq!(lines.len(), 2, "{calls}");
    assert_eq!(
        lines[0],
        "DEBIAN_FRONTEND=noninteractive -o DPkg::Lock::Timeout=600 update -q"
    );
    assert_eq!(
        lines[1],
        "DEBIAN_FRONTEND=noninteractive -o DPkg::Lock::Timeout=600 install -y --no-install-recommends dropship-test-missing"
    );
}

/// A real unprivileged user whose sudo needs a password; removed (with its sudoers file and
/// scratch dir) on drop.
pub(crate) struct SudoUser {
    pub(crate) name: String,
    pub(crate) password: String,
    sudoers: PathBuf,
    pub(crate) scratch: PathBuf,
}

impl SudoUser {
    pub(crate) fn create() -> SudoUser {
        let name = unique("dsb");
        let password = unique("pw-sudo-");
        let scratch = PathBuf::from(format!("/tmp/dropship-become-{name}"));
        let user = SudoUser {
            sudoers: PathBuf::from(format!("/etc/sudoers.d/dropship-test-{name}")),
            name,
            password,
            scratch,
        };
        // /etc/passwd is locked while another test's useradd/userdel runs: retry a little.
        let ok = (0..25).any(|_| {
            let ok = Command::new("useradd")
                .args(["-m", "-s", "/bin/sh", &user.name])
                .status()
                .expect("useradd")
                .success();
            if !ok {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            ok
        });
        assert!(ok, "useradd {}", user.name);
        let mut chpasswd = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .expect("chpasswd");
        chpasswd
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{}:{}\n", user.name, user.password).as_bytes())
            .unwrap();
        assert!(chpasswd.wait().unwrap().success(), "chpasswd");
        fs::write(&user.sudoers, format!("{} ALL=(ALL:ALL) ALL\n", user.name)).unwrap();
        fs::set_permissions(&user.sudoers, fs::Permissions::from_mode(0o440)).unwrap();
        fs::create_dir_all(&user.scratch).unwrap();
        let ok = Command::new("chown")
            .arg(&user.name)
            .arg(&user.scratch)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        user
    }

    fn uid(&self) -> u32 {
        let out = Command::new("id")
            .args(["-u", &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }
}

impl Drop for SudoUser {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.sudoers);
        let _ = fs::remove_dir_all(&self.scratch);
        // userdel refuses while a process of the user still runs (an sshd session ending, a
        // killed sudo) or while another test's useradd holds /etc/passwd: retry a little.
        for _ in 0..25 {
            match Command::new("userdel")
                .args(["-r", &self.name])
                .stderr(Stdio::null())
                .status()
            {
                // 6: the user is gone already.
                Ok(s) if s.success() || s.code() == Some(6) => return,
                _ => std::thread::sleep(std::time::Duration::from_millis(200)),
            }
        }
    }
}

#[test]
fn become_with_a_sudo_password_keeps_it_off_argv_and_output() {
    if !Path::new("/usr/bin/sudo").exists() {
        panic!("sudo is not installed: run scripts/install-deps.sh");
    }
    let fleet = start_fleet(1);
    // The harness's shared authorized_keys lives in the fleet's 0700 temp dir: let the test
    // user's sshd session read it (the private key stays 0600).
    fs::set_permissions(fleet.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let user = SudoUser::create();
    // The lock and audit log go to the app's directory (the root-owned host root): let the
    // test user make them there.
    let state = fleet.host("h1").root.join(".dropship");
    fs::create_dir_all(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o1777)).unwrap();
    let inv = crate::harness::inventory_with_ssh(&fleet, &[("user", format!("\"{}\"", user.name))]);
    let out = user.scratch.display().to_string();
    fs::write(fleet.dir.path().join("secret.conf.j2"), "for root only\n").unwrap();
    let pb = write_playbook(
        &fleet,
        "become.toml",
        &format!(
            r#"name = "become"
app = "become"

[vars]
out = "{out}"

[secrets]
sudo_pw = {{ env = "DROPSHIP_TEST_SUDO_PW" }}

[become]
password = "{{{{ secrets.sudo_pw }}}}"

[[steps]]
name = "as the user"
run = "id -u > {{{{ out }}}}/plain-uid"

[[steps]]
name = "as root"
run = "id -u > {{{{ out }}}}/root-uid"
become = true

[[steps]]
name = "slow"
run = "sleep 2"
become = true

[[steps]]
name = "root file"
template = {{ src = "secret.conf.j2", dest = "{{{{ out }}}}/secret.conf", owner = "root", group = "root", mode = "0600" }}
become = true
become_password = "{{{{ secrets.sudo_pw }}}}"
"#
        ),
    );
    let mut cmd = command(
        &["deploy", "-i", inv.to_str().unwrap(), pb.to_str().unwrap()],
        None,
    );
    cmd.env("DROPSHIP_TEST_SUDO_PW", &user.password);
    let child = cmd.spawn().expect("spawn dropship");
    let pid = child.id();
    let started = Instant::now();
    let mut scans = 0;
    while Path::new(&format!("/proc/{pid}")).exists()
        && fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
        && started.elapsed() < Duration::from_secs(60)
    {
        for (p, line) in all_cmdlines() {
            assert!(
                !line.contains(&user.password),
                "the sudo password is in the argv of pid {p}: {line}"
            );
        }
        scans += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let run = finish(child);
    run.assert_code(0);
    assert!(scans > 10, "only {scans} scans of /proc during the run");
    assert!(!run.all().contains(&user.password), "{}", run.all());
    for step in ["as the user", "as root", "slow", "root file"] {
        run.assert_outcome("h1", step, "changed");
    }
    let read = |f: &str| fs::read_to_string(user.scratch.join(f)).unwrap();
    assert_eq!(read("plain-uid").trim(), user.uid().to_string());
    assert_eq!(read("root-uid").trim(), "0");
    let meta = fs::metadata(user.scratch.join("secret.conf")).unwrap();
    assert_eq!(meta.uid(), 0);
    assert_eq!(meta.gid(), 0);
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_eq!(read("secret.conf"), "for root only\n");

    // Again: the root-only file is probed through sudo, so it is found unchanged.
    let mut cmd = command(
        &["deploy", "-i", inv.to_str().unwrap(), pb.to_str().unwrap()],
        None,
    );
    cmd.env("DROPSHIP_TEST_SUDO_PW", &user.password);
    let run = dropship_cmd(cmd);
    run.assert_code(0);
    run.assert_outcome("h1", "root file", "ok");
    assert!(!run.all().contains(&user.password), "{}", run.all());

    // A wrong password fails the step, and is not printed either.
    let mut cmd = command(
        &["deploy", "-i", inv.to_str().unwrap(), pb.to_str().unwrap()],
        None,
    );
    cmd.env("DROPSHIP_TEST_SUDO_PW", "wrong-password-xyz");
    let run = dropship_cmd(cmd);
    assert_ne!(run.code, Some(0), "{}", run.all());
    assert!(!run.all().contains("wrong-password-xyz"), "{}", run.all());
}

/// A container from a minimal Debian rootfs (scripts/localfleet/fresh-image.sh) running only
/// sshd on a free 127.0.0.1 port (host network, so its apt reaches this machine's mirror);
/// root logs in with `root_key`. Removed on drop.
struct FreshServer {
    name: String,
    dir: tempfile::TempDir,
    port: u16,
    root_key: PathBuf,
    known_hosts: PathBuf,
}

impl FreshServer {
    fn start() -> FreshServer {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/localfleet/fresh-image.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .expect("run fresh-image.sh");
        assert!(out.status.success(), "fresh-image.sh failed");
        let image = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let dir = tempfile::Builder::new()
            .prefix("dropship-fresh-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("root_key"));
        fs::copy(d.join("root_key.pub"), d.join("root_authorized_keys")).unwrap();
        let port = free_port();
        fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey /dropship-test/host_key\n\
                 StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nPrintMotd no\n\
                 Subsystem sftp internal-sftp\n\
                 Match User root\n  AuthorizedKeysFile /dropship-test/root_authorized_keys\n"
            ),
        )
        .unwrap();
        let host_pub = fs::read_to_string(d.join("host_key.pub")).unwrap();
        let host_pub: Vec<&str> = host_pub.split_whitespace().take(2).collect();
        let known_hosts = d.join("known_hosts");
        fs::write(
            &known_hosts,
            format!("[127.0.0.1]:{port} {}\n", host_pub.join(" ")),
        )
        .unwrap();
        let name = unique("dropship-fresh-");
        let ok = Command::new("docker")
            .args(["run", "-d", "--name", &name, "--network", "host", "-v"])
            .arg(format!("{}:/dropship-test:ro", d.display()))
            .args([
                &image,
                "sh",
                "-c",
                "mkdir -p /run/sshd && exec /usr/sbin/sshd -D -e -f /dropship-test/sshd_config",
            ])
            .stdout(Stdio::null())
            .status()
            .expect("docker run")
            .success();
        let server = FreshServer {
            name,
            port,
            root_key: d.join("root_key"),
            known_hosts,
            dir,
        };
        assert!(ok, "docker run failed");
        // Ready when our sshd (not another test's) answers with a banner.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let banner = std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .and_then(|mut s| {
                    use std::io::Read as _;
                    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                    let mut b = [0u8; 4];
                    s.read_exact(&mut b).ok()?;
                    Some(b)
                });
            if banner == Some(*b"SSH-") && server.logs().contains("Server listening") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sshd in {} not up: {}",
                server.name,
                server.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        server
    }

    fn logs(&self) -> String {
        let out = Command::new("docker")
            .args(["logs", &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    fn inventory(&self, user: &str, key: &Path) -> PathBuf {
        let path = self.dir.path().join(format!("inventory-{user}.toml"));
        fs::write(
            &path,
            format!(
                "[ssh]\nuser = \"{user}\"\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\n\
                 host_key_policy = \"strict\"\nconnect_timeout = \"10s\"\n\n\
                 [hosts.fresh]\naddress = \"127.0.0.1\"\nssh = {{ port = {} }}\n",
                key.display(),
                self.known_hosts.display(),
                self.port
            ),
        )
        .unwrap();
        path
    }
}

impl Drop for FreshServer {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn bootstrap_provisions_a_fresh_debian_server() {
    let t0 = Instant::now();
    let server = FreshServer::start();
    eprintln!("fresh server up in {:.1}s", t0.elapsed().as_secs_f64());
    let root_inv = server.inventory("root", &server.root_key);
    let deploy_key = server.dir.path().join("deploy_key");
    keygen(&deploy_key);
    let deploy_pub = fs::read_to_string(deploy_key.with_extension("pub")).unwrap();
    let pb = Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/bootstrap.toml");
    let key_var = format!("deploy_public_key={}", deploy_pub.trim());
    let bootstrap = || {
        dropship_cmd(command(
            &[
                "deploy",
                "-i",
                root_inv.to_str().unwrap(),
                pb.to_str().unwrap(),
                "--var",
                "docker_source=distro",
                "--var",
                &key_var,
                "--var",
                "app_dir=/srv/pixel",
            ],
            None,
        ))
    };
    let run = bootstrap();
    eprintln!("first bootstrap done at {:.1}s", t0.elapsed().as_secs_f64());
    run.assert_code(0);
    for step in [
        "base packages",
        "docker engine (distro)",
        "deploy user",
        "deploy user's authorized key",
        "passwordless sudo for the deploy user",
        "app dir",
    ] {
        run.assert_outcome("fresh", step, "changed");
    }

    // The deploy user logs in with its own key (root's key is not in its authorized_keys).
    let deploy_inv = server.inventory("deploy", &deploy_key);
    let run = dropship_cmd(command(
        &[
            "exec",
            "-i",
            deploy_inv.to_str().unwrap(),
            "--",
            "id -un && sudo -n true && echo sudo-ok && command -v docker && stat -c %U:%G /srv/pixel && id -nG",
        ],
        None,
    ));
    run.assert_code(0);
    let text = run.all();
    for want in [
        "deploy",
        "sudo-ok",
        "/usr/bin/docker",
        "deploy:deploy",
        "docker",
    ] {
        assert!(text.contains(want), "no `{want}` in {text}");
    }

    // Twice: nothing changes.
    let run = bootstrap();
    eprintln!(
        "second bootstrap done at {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    run.assert_code(0);
    assert!(!run.stdout.contains("[fresh] changed"), "{}", run.all());
    assert!(run.stdout.contains("[fresh] ok"), "{}", run.all());

    // A small deploy as the deploy user into the app dir.
    fs::write(server.dir.path().join("hello.txt"), "hello from dropship\n").unwrap();
    let app_pb = server.dir.path().join("app.toml");
    fs::write(
        &app_pb,
        "name = \"app\"\napp = \"pixel\"\n[[steps]]\nname = \"hello\"\ncopy = { src = \"hello.txt\", dest = \"/srv/pixel/hello.txt\" }\n[[steps]]\nname = \"check\"\nrun = \"cat /srv/pixel/hello.txt && stat -c %U /srv/pixel/hello.txt\"\n",
    )
    .unwrap();
    let run = dropship_cmd(command(
        &[
            "deploy",
            "-i",
            deploy_inv.to_str().unwrap(),
            app_pb.to_str().unwrap(),
        ],
        None,
    ));
    run.assert_code(0);
    run.assert_outcome("fresh", "hello", "changed");
    assert!(run.all().contains("hello from dropship"), "{}", run.all());
    eprintln!(
        "fresh-server test done in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
}
