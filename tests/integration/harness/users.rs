//! Real local users and tmpfs mounts for the safety tests, removed again in `Drop` (also when
//! a test fails). Imports std and `unique`.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::unique;

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

/// A real unprivileged user whose sudo needs a password; removed (with its sudoers file and
/// scratch dir) on drop.
pub struct SudoUser {
    pub name: String,
    pub password: String,
    sudoers: PathBuf,
    pub scratch: PathBuf,
}

impl SudoUser {
    pub fn create() -> SudoUser {
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

    /// Replaces the user's sudoers rules with `rules` (whole lines, checked by `visudo -c`).
    pub fn set_sudoers(&self, rules: &str) {
        fs::write(&self.sudoers, rules).unwrap();
        fs::set_permissions(&self.sudoers, fs::Permissions::from_mode(0o440)).unwrap();
        let check = Command::new("visudo")
            .arg("-cf")
            .arg(&self.sudoers)
            .output()
            .expect("visudo");
        assert!(
            check.status.success(),
            "sudoers rules refused by visudo: {rules:?}: {}",
            String::from_utf8_lossy(&check.stdout)
        );
    }

    /// Playbook tables for `become` through this user's sudo: `vars.out` (its scratch dir),
    /// the secret `sudo_pw` (from `DROPSHIP_TEST_SUDO_PW`) and `[become]` with that password.
    pub fn become_vars(&self) -> String {
        format!(
            "[vars]\nout = \"{}\"\n\n[secrets]\nsudo_pw = {{ env = \"DROPSHIP_TEST_SUDO_PW\" }}\n\n\
             [become]\npassword = \"{{{{ secrets.sudo_pw }}}}\"\n\n",
            self.scratch.display()
        )
    }

    pub fn uid(&self) -> u32 {
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
