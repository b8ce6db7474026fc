//! Real local users and tmpfs mounts for the safety tests, removed again in `Drop` (also when
//! a test fails). Imports std only.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A Unix user made with `useradd` (no home, `/bin/sh`, password `*`: key login works, no
/// password login), deleted with its group when dropped.
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl TestUser {
    /// `prefix` + this process's id, so parallel test binaries never share a user.
    pub fn create(prefix: &str) -> TestUser {
        let name = format!("{prefix}{}", std::process::id());
        // /etc/passwd is locked while another useradd runs: retry a few times.
        let mut last = String::new();
        for _ in 0..20 {
            let out = Command::new("useradd")
                .args(["-M", "-s", "/bin/sh", "-p", "*", &name])
                .output()
                .expect("run useradd");
            if out.status.success() {
                let id = |flag: &str| -> u32 {
                    let out = Command::new("id").args([flag, &name]).output().unwrap();
                    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
                };
                return TestUser {
                    uid: id("-u"),
                    gid: id("-g"),
                    name,
                };
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            if last.contains("already exists") {
                let _ = Command::new("userdel").arg(&name).status();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("useradd {name}: {last}");
    }

    /// `sh -c script` as this user (no supplementary groups).
    pub fn sh(&self, script: &str) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--clear-groups")
            .args(["sh", "-c", script]);
        cmd
    }

    pub fn chown(&self, path: &Path) {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).expect("chown to test user");
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // A process still running as the user (the tests end theirs by pid first) makes
        // userdel refuse: retry a little.
        for _ in 0..20 {
            match Command::new("userdel").arg(&self.name).status() {
                Ok(s) if s.success() => return,
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

/// A tmpfs of `size` (e.g. "1m") mounted on a fresh directory `at`; unmounted when dropped.
pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    pub fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("create mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount tmpfs on {}", at.display());
        Tmpfs {
            dir: at.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}
