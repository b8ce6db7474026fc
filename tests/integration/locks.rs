//! One lock per app instance per host, whatever the playbook or the SSH user, against real
//! sshd: a `[release]` playbook and a plain one of the same app in the same place exclude each
//! other, as do two SSH users; two instances of the app in different directories do not, and
//! each writes its own audit log. Two inventory names for one instance in one run each write
//! their line and keep the lock to the end (a refused run writes none); without `app_dir`, a
//! refusal says how instances get a lock of their own. The audit log keeps one record per line
//! whatever the step is called.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::harness::{
    Fleet, Run, TestUser, dropship, finish, inventory_with_ssh, run_playbook, spawn, start_fleet,
    toml_path,
};

/// The app `inst`: a marker file, then a step that holds the run (and its lock) for `hold`
/// seconds. With `release`, also a `[release]` rooted at `app_dir` and a file in the release.
fn playbook(fleet: &Fleet, file: &str, release: bool) -> PathBuf {
    let mut text = String::from("[vars]\nhold = 0\n\n");
    if release {
        text.push_str(
            "[release]\nroot = \"{{ app_dir }}\"\n\n[[steps]]\nname = \"version\"\ncopy = { src = \"version.txt\", dest = \"{{ release.dir }}/version.txt\" }\n\n",
        );
    }
    text.push_str(
        "[[steps]]\nname = \"mark\"\nrun = \"touch {{ app_dir }}/ran-by-$(id -un)\"\n\n[[steps]]\nname = \"hold\"\nrun = \"sleep {{ hold }}\"\n",
    );
    fleet.write("version.txt", "1\n");
    fleet.write_playbook(file, "Instance", "inst", &text)
}

fn deploy_args<'a>(inv: &'a Path, pb: &'a Path, app_dir: &'a str, hold: &'a str) -> Vec<String> {
    vec![
        "deploy".into(),
        "-i".into(),
        inv.display().to_string(),
        pb.display().to_string(),
        "--var".into(),
        format!("app_dir={app_dir}"),
        "--var".into(),
        format!("hold={hold}"),
    ]
}

fn run(args: &[String]) -> Run {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    dropship(&args, None)
}

/// Starts a run that holds `app_dir`'s lock for a while; returns once the lock is there (or,
/// as versions before one lock per app instance kept it, in the host's `$HOME`).
fn holding(fleet: &Fleet, args: &[String], app_dir: &Path) -> Child {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = spawn(&refs, None);
    let lock = app_dir.join(".dropship/lock");
    let old_lock = fleet.host("h1").dir.join(".dropship/inst/lock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lock.is_dir() && !old_lock.is_dir() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the holding run ended ({status}) before its lock was seen");
        }
        assert!(Instant::now() < deadline, "no lock at {}", lock.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[track_caller]
fn assert_refused(run: &Run) {
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.all().contains("is locked by"), "{}", run.all());
    assert!(!run.all().contains("ran-by"), "{}", run.all());
}

/// A `[release]` playbook and a plain one deploying the same app to the same place.
#[test]
fn a_release_playbook_and_a_plain_one_share_the_apps_lock() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let with_release = playbook(&fleet, "release.toml", true);
    let plain = playbook(&fleet, "plain.toml", false);
    let app_dir = fleet.host("h1").root.join("inst");
    let dir = app_dir.display().to_string();
    for (first, second) in [(&with_release, &plain), (&plain, &with_release)] {
        let holder = holding(&fleet, &deploy_args(&inv, first, &dir, "3"), &app_dir);
        let refused = run(&deploy_args(&inv, second, &dir, "0"));
        assert_refused(&refused);
        finish(holder).assert_code(0);
    }
    run(&deploy_args(&inv, &plain, &dir, "0")).assert_code(0);
}

/// Two instances of the app in different directories on one host run side by side.
#[test]
fn two_instances_of_an_app_in_different_dirs_do_not_exclude_each_other() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let plain = playbook(&fleet, "plain.toml", false);
    let a = fleet.host("h1").root.join("a");
    let b = fleet.host("h1").root.join("b");
    let holder = holding(
        &fleet,
        &deploy_args(&inv, &plain, &a.display().to_string(), "3"),
        &a,
    );
    let other = run(&deploy_args(&inv, &plain, &b.display().to_string(), "0"));
    other.assert_code(0);
    assert!(b.join("ran-by-root").exists());
    // `a` was still deploying while `b` went through: they ran at the same time.
    assert!(a.join(".dropship/lock").is_dir());
    finish(holder).assert_code(0);
    // Each instance has its own audit log, with its own line.
    for dir in [&a, &b] {
        let audit = fs::read_to_string(dir.join(".dropship/audit.log")).unwrap();
        assert_eq!(audit.lines().count(), 1, "{}: {audit}", dir.display());
        assert!(
            audit.contains("deploy host=h1 playbook=\"Instance\" release=- result=ok"),
            "{audit}"
        );
        assert!(!dir.join(".dropship/lock").exists());
    }
}

/// An inventory naming h1 `names` (all the same sshd), in group `web`, with no `app_dir`.
fn inventory_without_app_dir(fleet: &Fleet, names: &[&str]) -> PathBuf {
    let on_h1: Vec<(&str, &str)> = names.iter().map(|n| (*n, "h1")).collect();
    inventory_of_names(fleet, &on_h1)
}

/// An inventory of `(name, test host)` pairs, in group `web`, with no `app_dir`.
fn inventory_of_names(fleet: &Fleet, names: &[(&str, &str)]) -> PathBuf {
    let mut inv = format!(
        "[ssh]\nuser = \"root\"\nidentity_file = {}\nknown_hosts = {}\nhost_key_policy = \"strict\"\n",
        toml_path(&fleet.client_key),
        toml_path(&fleet.known_hosts)
    );
    for (name, host) in names {
        inv.push_str(&format!(
            "\n[hosts.{name}]\naddress = \"127.0.0.1\"\ngroups = [\"web\"]\nssh = {{ port = {} }}\n",
            fleet.host(host).port
        ));
    }
    inv.push_str("\n[groups.web]\n");
    fleet.write("no-app-dir.toml", &inv)
}

/// Two inventory names for one app instance (same machine, same SSH user, no `app_dir`: one
/// lock directory, `~/.dropship/inst`) in one run: both are deployed, each writes its own
/// audit line, and the lock stays until both are done (the first to finish does not take it
/// away from the other).
#[test]
fn two_names_for_one_instance_both_write_their_audit_line_under_one_lock() {
    let fleet = start_fleet(1);
    let h1 = fleet.host("h1");
    let inv = inventory_without_app_dir(&fleet, &["h1", "h1b"]);
    let lock = h1.dir.join(".dropship/inst/lock");
    // h1b checks, a second after h1 is done, that the lock is still there.
    let pb = fleet.write_playbook(
        "shared.toml",
        "Instance",
        "inst",
        &format!(
            "[[steps]]\nname = \"hold\"\nrun = \"if [ {{{{ host.name }}}} = h1b ]; then sleep 1; test -d {} || {{ echo lock gone >&2; exit 1; }}; fi\"\n",
            lock.display()
        ),
    );
    let run = run_playbook("deploy", &inv, &pb);
    run.assert_code(0);
    assert!(!lock.exists(), "the lock was left behind");
    let audit = fs::read_to_string(h1.dir.join(".dropship/inst/audit.log")).unwrap();
    assert_eq!(audit.lines().count(), 2, "{audit}");
    for name in ["h1", "h1b"] {
        assert!(
            audit.contains(&format!(
                "deploy host={name} playbook=\"Instance\" release=- result=ok\n"
            )),
            "{name}: {audit}"
        );
    }
}

/// Root and an unprivileged SSH user deploying the app to the same place: each can deploy when
/// the other is not, and is refused (naming the holder) while the other holds the lock, also
/// when the user cannot read the lock's details.
#[test]
fn two_ssh_users_share_the_apps_lock() {
    let fleet = start_fleet(1);
    // The harness's shared authorized_keys lives in the fleet's 0700 temp dir: let the test
    // user's sshd session read it (the private key stays 0600).
    fs::set_permissions(fleet.dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
    let user = TestUser::create("dslock");
    let as_root = fleet.write_inventory("");
    let as_user = inventory_with_ssh(&fleet, &[("user", format!("\"{}\"", user.name))]);
    let pb = playbook(&fleet, "plain.toml", false);
    let app_dir = fleet.host("h1").root.join("shared");
    fs::create_dir(&app_dir).unwrap();
    user.chown(&app_dir);
    let dir = app_dir.display().to_string();

    // The user alone first: it must be able to make the app's lock.
    run(&deploy_args(&as_user, &pb, &dir, "0")).assert_code(0);
    assert!(app_dir.join(format!("ran-by-{}", user.name)).exists());
    for (first, second) in [(&as_root, &as_user), (&as_user, &as_root)] {
        let holder = holding(&fleet, &deploy_args(first, &pb, &dir, "3"), &app_dir);
        assert_refused(&run(&deploy_args(second, &pb, &dir, "0")));
        finish(holder).assert_code(0);
    }
    // A lock this user cannot read (root's, 0700) still refuses it, naming the owner.
    let lock = app_dir.join(".dropship/lock");
    fs::create_dir(&lock).unwrap();
    fs::write(lock.join("info"), "holder=alice@laptop\n").unwrap();
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o700)).unwrap();
    let refused = run(&deploy_args(&as_user, &pb, &dir, "0"));
    assert_refused(&refused);
    assert!(
        refused.all().contains("is locked by root on this host"),
        "{}",
        refused.all()
    );
    fs::remove_dir_all(&lock).unwrap();
    run(&deploy_args(&as_root, &pb, &dir, "0")).assert_code(0);
    let audit = fs::read_to_string(app_dir.join(".dropship/audit.log")).unwrap();
    // One line per run that held the lock (a refused run takes none).
    assert_eq!(audit.lines().count(), 4, "{audit}");
}

/// A step named to look like a second audit record: the audit log still has one line per run.
#[test]
fn a_step_name_cannot_forge_an_audit_line() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let pb = fleet.dir.path().join("forge.toml");
    fs::write(
        &pb,
        "name = \"Forge\"\napp = \"forge\"\nhosts = \"web\"\n\n[[steps]]\nname = \"x\\nforged result=ok\"\nrun = \"false\"\n",
    )
    .unwrap();
    let run = run_playbook("deploy", &inv, &pb);
    assert_eq!(run.code, Some(1), "{}", run.all());
    let h = fleet.host("h1");
    // Where this version keeps it, or where the one before kept it.
    let audit = [
        h.root.join(".dropship/audit.log"),
        h.dir.join(".dropship/forge/audit.log"),
    ]
    .iter()
    .find_map(|p| fs::read_to_string(p).ok())
    .expect("an audit log");
    assert_eq!(audit.lines().count(), 1, "{audit}");
    assert!(
        audit.ends_with(" result=failed at x\\nforged result=ok\n"),
        "{audit}"
    );
}

/// A run refused by a lock held elsewhere writes no audit line, also not for a name that
/// shared another name's lock, and leaves no lock of its own.
#[test]
fn a_refused_run_writes_no_audit_line_for_names_sharing_a_lock() {
    let fleet = start_fleet(2);
    let inv = inventory_of_names(&fleet, &[("h1", "h1"), ("h1b", "h1"), ("h2", "h2")]);
    let theirs = fleet.host("h2").dir.join(".dropship/inst/lock");
    fs::create_dir_all(&theirs).unwrap();
    fs::write(
        theirs.join("info"),
        "holder=ghost@old-ci\nsince=2020-01-01T00:00:00Z\ncommand=deploy\ntoken=other\n",
    )
    .unwrap();
    let pb = fleet.write_playbook(
        "refused.toml",
        "Instance",
        "inst",
        "[[steps]]\nname = \"hold\"\nrun = \"true\"\n",
    );
    let run = run_playbook("deploy", &inv, &pb);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(
        run.all().contains("h2 is locked by ghost@old-ci"),
        "{}",
        run.all()
    );
    let home = fleet.host("h1").dir.join(".dropship/inst");
    assert!(!home.join("lock").exists(), "our lock was left behind");
    let audit = fs::read_to_string(home.join("audit.log")).unwrap_or_default();
    assert_eq!(audit, "", "a refused run wrote an audit line");
    assert!(theirs.join("info").is_file(), "their lock was touched");
}

/// Without `app_dir` (nor `[release]`), the lock is the SSH user's `~/.dropship/APP`: another
/// instance of the app deploying meanwhile is refused, and told how to get a lock of its own.
#[test]
fn without_app_dir_a_refusal_says_how_instances_get_their_own_lock() {
    let fleet = start_fleet(1);
    let inv = inventory_without_app_dir(&fleet, &["h1"]);
    let pb = fleet.write_playbook(
        "home.toml",
        "Instance",
        "inst",
        "[vars]\nhold = 0\n\n[[steps]]\nname = \"hold\"\nrun = \"sleep {{ hold }}\"\n",
    );
    let args = |hold: &str| {
        vec![
            "deploy".to_string(),
            "-i".into(),
            inv.display().to_string(),
            pb.display().to_string(),
            "--var".into(),
            format!("hold={hold}"),
        ]
    };
    // `holding` also watches the home's lock, `~/.dropship/inst/lock` (h1's dir is its HOME).
    let holder = holding(&fleet, &args("3"), &fleet.host("h1").dir);
    let refused = run(&args("0"));
    assert_eq!(refused.code, Some(1), "{}", refused.all());
    assert!(
        refused.all().contains(
            "every instance of `inst` this SSH user deploys on that host shares one lock (~/.dropship/inst): set `app_dir` per instance"
        ),
        "{}",
        refused.all()
    );
    finish(holder).assert_code(0);
}
