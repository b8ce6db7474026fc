//! Uploads under faults and attack, against real sshd: a transfer cut short (dropship killed,
//! the host's sshd session killed), a full disk, and an unprivileged user racing to swap
//! the temporary file for a symlink. The good file is never replaced by a bad one, and root
//! never writes through a planted link.

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::harness::{
    Fleet, TestUser, Tmpfs, all_cmdlines, finish, run_playbook, spawn_playbook, start_fleet,
};

/// A playbook of one `copy` step from `src` to `dest` (both absolute).
fn copy_playbook(fleet: &Fleet, src: &Path, dest: &Path) -> PathBuf {
    fleet.write_playbook(
        "copy.toml",
        "Copy",
        "copy",
        &format!(
            "[[steps]]\nname = \"blob\"\ncopy = {{ src = \"{}\", dest = \"{}\" }}\n",
            src.display(),
            dest.display()
        ),
    )
}

/// `len` bytes that differ from every other run's (no compression or dedup helps anyone).
fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

/// `path` still holds exactly `good`.
#[track_caller]
fn assert_same(path: &Path, good: &[u8], context: &str) {
    let now = fs::read(path).unwrap();
    assert!(
        now == good,
        "the old file was replaced: {} bytes now, {} before\n{context}",
        now.len(),
        good.len()
    );
}

/// Names starting with `.dropship` in `dir`.
fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".dropship"))
                .collect()
        })
        .unwrap_or_default()
}

/// Bytes written so far into a temporary upload in `dir` (a file `.dropship.*`, or the file
/// inside a `.dropship.*/` directory), when one exists.
fn upload_progress(dir: &Path) -> Option<u64> {
    let path = dir.join(leftovers(dir).first()?);
    let meta = fs::symlink_metadata(&path).ok()?;
    if !meta.is_dir() {
        return Some(meta.len());
    }
    fs::read_dir(&path)
        .ok()?
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .max()
}

/// Waits until a temporary upload in `dir` holds more than `min` bytes (of a bigger file).
fn wait_mid_transfer(dir: &Path, min: u64, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if upload_progress(dir).is_some_and(|n| n > min) {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("dropship ended ({status}) before the transfer was seen mid-way");
        }
        assert!(Instant::now() < deadline, "no upload in progress seen");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (up to 10 s) for the host's shell to finish with the temporary upload.
fn wait_no_leftovers(dir: &Path) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !leftovers(dir).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    leftovers(dir)
}

const BIG: usize = 112 * 1024 * 1024;

/// Sets up `dir/blob.bin` holding a good small file and a local 112 MB new version.
fn big_upload_rig(fleet: &Fleet) -> (PathBuf, PathBuf, Vec<u8>) {
    let host_dir = fleet.host("h1").root.join("big");
    fs::create_dir_all(&host_dir).unwrap();
    let good = content(4096, 1);
    fs::write(host_dir.join("blob.bin"), &good).unwrap();
    let src = fleet.dir.path().join("new-blob.bin");
    fs::write(&src, content(BIG, 2)).unwrap();
    let playbook = copy_playbook(fleet, &src, &host_dir.join("blob.bin"));
    (host_dir, playbook, good)
}

/// dropship killed with SIGKILL in the middle of a 112 MB upload: the host's shell sees its
/// stdin end early; the truncated copy fails its check and is removed, the old file stays.
#[test]
fn an_upload_cut_short_by_killing_dropship_leaves_the_old_file() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let (host_dir, playbook, good) = big_upload_rig(&fleet);
    let mut child = spawn_playbook("deploy", &inv, &playbook);
    wait_mid_transfer(&host_dir, 8 * 1024 * 1024, &mut child);
    // SAFETY: kill(2) on the pid of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = finish(child);
    let left = wait_no_leftovers(&host_dir);
    assert_same(&host_dir.join("blob.bin"), &good, "");
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

/// The parent pid of `pid`, from /proc.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// The host's `sshd: USER@notty` session processes (descendants of its sshd).
fn session_processes(sshd: u32) -> Vec<u32> {
    all_cmdlines()
        .into_iter()
        .filter(|(_, cmd)| cmd.starts_with("sshd: ") && cmd.contains("@notty"))
        .map(|(pid, _)| pid)
        .filter(|&pid| {
            let mut p = pid;
            for _ in 0..10 {
                match parent_of(p) {
                    Some(parent) if parent == sshd => return true,
                    Some(parent) if parent > 1 => p = parent,
                    _ => return false,
                }
            }
            false
        })
        .collect()
}

/// The host's sshd session process killed mid-transfer (the connection dropped on the host's
/// side): the same guarantee, and dropship reports the host failed instead of hanging.
#[test]
fn an_upload_cut_short_by_killing_the_hosts_session_leaves_the_old_file() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let (host_dir, playbook, good) = big_upload_rig(&fleet);
    let sshd = fleet.host("h1").pid().expect("sshd running");
    let mut child = spawn_playbook("deploy", &inv, &playbook);
    wait_mid_transfer(&host_dir, 8 * 1024 * 1024, &mut child);
    let sessions = session_processes(sshd);
    assert!(!sessions.is_empty(), "no sshd session process found");
    for pid in sessions {
        // SAFETY: kill(2) on a session process of the sshd this test started.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    let run = finish(child);
    assert_eq!(run.code, Some(1), "{}", run.all());
    let left = wait_no_leftovers(&host_dir);
    assert_same(&host_dir.join("blob.bin"), &good, &run.all());
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

/// A full filesystem on the host: the step fails saying so, the old file is intact and no
/// temporary file is left.
#[test]
fn an_upload_onto_a_full_disk_fails_clearly_and_keeps_the_old_file() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let mount = Tmpfs::mount(&fleet.host("h1").root.join("full"), "1m");
    let good = content(600 * 1024, 3);
    let dest = mount.dir.join("blob.bin");
    fs::write(&dest, &good).unwrap();
    let src = fleet.dir.path().join("bigger.bin");
    fs::write(&src, content(800 * 1024, 4)).unwrap();
    let playbook = copy_playbook(&fleet, &src, &dest);
    let run = run_playbook("deploy", &inv, &playbook);
    assert_eq!(run.code, Some(1), "{}", run.all());
    run.assert_outcome("h1", "blob", "FAILED");
    assert!(
        run.all().contains("No space left on device"),
        "{}",
        run.all()
    );
    assert_same(&dest, &good, &run.all());
    assert_eq!(leftovers(&mount.dir), Vec::<String>::new());
}

/// Stops and reaps the racer when dropped (also when an assertion fails): its stop file
/// first, so that its loop ends with no `ln`/`mv` of its own still running (one finishing
/// after the area is removed would leave it behind), then a kill if it is still there.
struct Racer {
    child: Child,
    stop: PathBuf,
}

impl Drop for Racer {
    fn drop(&mut self) {
        let _ = fs::write(&self.stop, "");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Root uploads (mode 0755, so a `chmod` follows the write) into a sticky world-writable
/// directory and into a directory owned by an unprivileged user, while that user races:
/// every `.dropship*` name that appears is swapped for a symlink to a root-only file (and a
/// link planted inside it), and every destination name for a symlink to a root-only
/// directory. After many uploads the root-only file and directory are untouched, and every
/// destination is a regular file or absent (an upload the racer made fail), never a link.
#[test]
fn uploads_as_root_never_follow_a_symlink_a_racing_user_plants() {
    const FILES: usize = 8;
    const ROUNDS: usize = 8;
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let user = TestUser::create("dsrace");
    // Root-only targets, in the fleet's 0700 temp dir.
    let secret = fleet.dir.path().join("secret");
    fs::write(&secret, "root only\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let secret_dir = fleet.dir.path().join("secret-dir");
    fs::create_dir(&secret_dir).unwrap();
    fs::set_permissions(&secret_dir, fs::Permissions::from_mode(0o700)).unwrap();
    // The racer's playground must be reachable by it: outside the fleet's private dir.
    let area = tempfile::Builder::new()
        .prefix("dropship-race-")
        .tempdir()
        .unwrap();
    fs::set_permissions(area.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let sticky = area.path().join("sticky");
    let owned = area.path().join("owned");
    fs::create_dir(&sticky).unwrap();
    fs::set_permissions(&sticky, fs::Permissions::from_mode(0o1777)).unwrap();
    fs::create_dir(&owned).unwrap();
    user.chown(&owned);

    let mut steps = String::new();
    for dir in [&sticky, &owned] {
        for i in 0..FILES {
            steps.push_str(&format!(
                "[[steps]]\nname = \"{name} {i}\"\ncopy = {{ src = \"payload\", dest = \"{dir}/f{i}\", mode = \"0755\" }}\n\n",
                name = dir.file_name().unwrap().to_string_lossy(),
                dir = dir.display()
            ));
        }
    }
    let playbook = fleet.dir.path().join("race.toml");
    fs::write(
        &playbook,
        format!("name = \"Race\"\napp = \"race\"\nhosts = \"web\"\n\n{steps}"),
    )
    .unwrap();

    let stop = area.path().join("stop");
    let racer_script = format!(
        "while [ ! -e {stop} ]; do for d in {sticky} {owned}; do \
           for f in \"$d\"/.dropship*; do \
             case \"$f\" in *.moved) continue ;; esac; \
             [ -L \"$f\" ] && continue; [ -e \"$f\" ] || continue; \
             ln -s {secret} \"$f/f\" 2>/dev/null; \
             mv -f \"$f\" \"$f.moved\" 2>/dev/null && ln -s {secret} \"$f\" 2>/dev/null; \
           done; \
           for i in {files}; do [ -L \"$d/f$i\" ] || {{ rm -f \"$d/f$i\" 2>/dev/null && ln -s {secret_dir} \"$d/f$i\" 2>/dev/null; }}; done; \
         done; done",
        stop = stop.display(),
        sticky = sticky.display(),
        owned = owned.display(),
        secret = secret.display(),
        secret_dir = secret_dir.display(),
        files = (0..FILES)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(" "),
    );
    let racer = Racer {
        child: user.sh(&racer_script).spawn().expect("start the racer"),
        stop: stop.clone(),
    };

    let mut uploads_done = 0;
    for round in 0..ROUNDS {
        fs::write(fleet.dir.path().join("payload"), format!("round {round}\n")).unwrap();
        let run = run_playbook("deploy", &inv, &playbook);
        uploads_done += run.stdout.matches("] changed ").count();
        for dir in [&sticky, &owned] {
            for i in 0..FILES {
                let dest = dir.join(format!("f{i}"));
                if let Ok(meta) = fs::symlink_metadata(&dest)
                    && meta.uid() == 0
                {
                    assert!(
                        meta.is_file(),
                        "{} is not a regular file written by root\n{}",
                        dest.display(),
                        run.all()
                    );
                }
            }
        }
    }
    drop(racer);

    assert!(
        uploads_done >= ROUNDS,
        "too few uploads got through: {uploads_done}"
    );
    let meta = fs::metadata(&secret).unwrap();
    assert_eq!(fs::read_to_string(&secret).unwrap(), "root only\n");
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o600,
        "mode of the root-only file changed"
    );
    assert_eq!(
        (meta.uid(), meta.gid()),
        (0, 0),
        "owner of the root-only file changed"
    );
    let planted: Vec<_> = fs::read_dir(&secret_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        planted.is_empty(),
        "root wrote into the root-only dir: {planted:?}"
    );
}
