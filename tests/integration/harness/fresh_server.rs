//! A fresh Debian server for the provisioning test: a container from a minimal rootfs
//! (scripts/localfleet/fresh-image.sh) running only sshd. Imports `keys`, `ports`, `unique`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::keys::{keygen, public_key};
use super::ports::free_port;
use super::unique;

/// A container from a minimal Debian rootfs (scripts/localfleet/fresh-image.sh) running only
/// sshd on a free 127.0.0.1 port (host network, so its apt reaches this machine's mirror);
/// root logs in with `root_key`. Removed on drop.
pub struct FreshServer {
    name: String,
    pub dir: tempfile::TempDir,
    port: u16,
    pub root_key: PathBuf,
    known_hosts: PathBuf,
}

impl FreshServer {
    pub fn start() -> FreshServer {
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
        let known_hosts = d.join("known_hosts");
        fs::write(
            &known_hosts,
            format!("[127.0.0.1]:{port} {}\n", public_key(&d.join("host_key"))),
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

    pub fn logs(&self) -> String {
        let out = Command::new("docker")
            .args(["logs", &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    pub fn inventory(&self, user: &str, key: &Path) -> PathBuf {
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
