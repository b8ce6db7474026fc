//! Staged rollouts end to end: canary and batches with pauses, halting under `max_failures`,
//! rolling a failed batch back, releases and `rollback`, the per-host deploy lock (concurrent
//! runs, Ctrl-C, stale locks, `--wait-lock`) and the audit log.
//!
//! Every test writes the same small playbook (a `[release]`-rooted version file, compose `up`
//! in `current`, a command health check) into its fleet's temp dir, with its own `[rollout]`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{
    Fleet, Run, TestHost, command, dropship, dropship_cmd, dropship_reporting, finish_within, read,
    start_fleet, wait_until,
};

/// The docker call of the playbook's `start` step.
/// `compose up` in `current`: relative paths resolved there (`--project-directory`, the
/// host's `current`), whichever release it points at.
fn is_up(command: &str) -> bool {
    command.starts_with("compose --project-directory ")
        && command.ends_with("/current -p roll up -d --remove-orphans")
}

/// The rollout policies the tests use.
const CANARY_30_PERCENT: &str = "[rollout]\ncanary = 1\nbatch = \"30%\"\npause = \"1s\"\nmax_failures = 0\non_failure = \"rollback\"\n";
const CANARY_BATCH_2_ROLLBACK: &str =
    "[rollout]\ncanary = 1\nbatch = 2\nmax_failures = 0\non_failure = \"rollback\"\n";
const ONE_BY_ONE: &str = "[rollout]\ncanary = 1\nbatch = 1\n";
const ALL_AT_ONCE: &str = "";

/// Writes the playbook (with `rollout` as its `[rollout]` section, possibly empty) and its
/// template into the fleet's dir; returns the playbook's path.
///
/// The health check fails while the running release's version has an `unhealthy-<version>`
/// marker in the host's root: a version can be "broken" on one host, and going back to the
/// previous version makes the host healthy again.
fn write_playbook(fleet: &Fleet, rollout: &str) -> PathBuf {
    let dir = fleet.dir.path();
    fs::create_dir_all(dir.join("templates")).unwrap();
    fs::write(dir.join("templates/version.txt.j2"), "{{ version }}\n").unwrap();
    let body = format!(
        r#"[vars]
version = "A"

{rollout}
[release]
root = "{{{{ app_dir }}}}"
keep = 2

[[steps]]
name = "version file"
template = {{ src = "templates/version.txt.j2", dest = "{{{{ release.dir }}}}/version.txt" }}

[[steps]]
name = "start"
compose = {{ command = "up", dir = "{{{{ app_dir }}}}/current" }}

[[steps]]
name = "healthy"
health = {{ command = "test ! -f {{{{ app_dir }}}}/unhealthy-$(cat {{{{ app_dir }}}}/current/version.txt)", timeout = "1s", interval = "200ms" }}
"#
    );
    fleet.write_playbook("rolling.toml", "Rolling", "roll", &body)
}

/// A fleet with its inventory and the playbook.
struct Rig {
    fleet: Fleet,
    inventory: PathBuf,
    playbook: PathBuf,
}

impl Rig {
    fn new(hosts: usize, rollout: &str) -> Rig {
        let fleet = start_fleet(hosts);
        let inventory = fleet.write_inventory("");
        let playbook = write_playbook(&fleet, rollout);
        Rig {
            fleet,
            inventory,
            playbook,
        }
    }

    /// `dropship <cmd> -i INV PLAYBOOK EXTRA...`.
    fn args<'a>(&'a self, cmd: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            cmd,
            "-i",
            self.inventory.to_str().unwrap(),
            self.playbook.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args
    }

    fn run(&self, cmd: &str, extra: &[&str]) -> Run {
        dropship_reporting(&self.args(cmd, extra), None)
    }

    /// `dropship lock ACTION -i INV PLAYBOOK`.
    fn lock(&self, action: &str) -> Run {
        let args = [
            "lock",
            action,
            "-i",
            self.inventory.to_str().unwrap(),
            self.playbook.to_str().unwrap(),
        ];
        dropship(&args, None)
    }

    fn spawn(&self, cmd: &str, extra: &[&str]) -> Child {
        command(&self.args(cmd, extra), None)
            .env("USER", "root")
            .spawn()
            .expect("spawn dropship")
    }

    fn host(&self, name: &str) -> &TestHost {
        self.fleet.host(name)
    }
}

/// `(timestamp, argv)` of each docker call on `h`.
fn docker_calls(h: &TestHost) -> Vec<(f64, String)> {
    h.docker_log()
        .lines()
        .map(|l| {
            let (ts, argv) = l.split_once(' ').unwrap_or((l, ""));
            let ts = ts
                .parse()
                .unwrap_or_else(|_| panic!("{}: bad docker.log line {l:?}", h.name));
            (ts, argv.to_string())
        })
        .collect()
}

fn ups(h: &TestHost) -> usize {
    h.docker_commands().iter().filter(|c| is_up(c)).count()
}

/// The release `current` points at (`releases/<id>` → `<id>`).
fn current_release(h: &TestHost) -> String {
    let link = fs::read_link(h.root.join("current"))
        .unwrap_or_else(|e| panic!("{}: readlink current: {e}", h.name));
    link.to_str()
        .and_then(|l| l.strip_prefix("releases/"))
        .unwrap_or_else(|| panic!("{}: current → {}", h.name, link.display()))
        .to_string()
}

/// The release ids in `<root>/releases`, sorted (oldest first).
fn releases_on(h: &TestHost) -> Vec<String> {
    let dir = h.root.join("releases");
    let mut ids: Vec<String> = match fs::read_dir(&dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    ids.sort();
    ids
}

fn lock_dir(h: &TestHost) -> PathBuf {
    h.root.join(".dropship/lock")
}

fn audit_lines(h: &TestHost) -> Vec<String> {
    let text = fs::read_to_string(h.root.join(".dropship/audit.log")).unwrap_or_default();
    text.lines().map(str::to_string).collect()
}

/// The version the host runs: `current/version.txt`.
fn running_version(h: &TestHost) -> String {
    read(&h.root.join("current/version.txt"))
}

#[track_caller]
fn assert_row(run: &Run, host: &str, want: &str) {
    let row = run
        .summary_row(host)
        .unwrap_or_else(|| panic!("no summary row for {host}\n{}", run.all()));
    assert!(
        row.contains(want),
        "{host}: summary row should contain `{want}`: {row}\n{}",
        run.all()
    );
    // The JSON report says the same, where the row says it in so many words.
    let want = want.trim();
    for status in ["ok", "failed", "not deployed"] {
        if want == status
            || want.starts_with(&format!("{status}:"))
            || want.starts_with(&format!("{status},"))
        {
            run.assert_status(host, status);
        }
    }
    if let Some(release) = want.split("rolled back to ").nth(1) {
        assert_eq!(
            run.report().host(host)["rolled_back"],
            release,
            "JSON report: {host} rolled back\n{}",
            run.report()
        );
    }
}

#[track_caller]
fn assert_no_locks(fleet: &Fleet) {
    for h in &fleet.hosts {
        assert!(
            !lock_dir(h).exists(),
            "{}: lock left behind: {:?}",
            h.name,
            fs::read_to_string(lock_dir(h).join("info"))
        );
    }
}

/// `user@machine` as dropship should name this test process (running as root).
fn root_identity() -> String {
    let machine = read(Path::new("/proc/sys/kernel/hostname"));
    format!("root@{}", machine.trim())
}

#[test]
fn rollout_goes_canary_then_batches_with_pauses() {
    let rig = Rig::new(10, CANARY_30_PERCENT);
    let run = rig.run("deploy", &[]);
    run.assert_code(0);

    let expected: [&[&str]; 4] = [
        &["h1"],
        &["h2", "h3", "h4"],
        &["h5", "h6", "h7"],
        &["h8", "h9", "h10"],
    ];
    for (i, batch) in expected.iter().enumerate() {
        let line = format!("== batch {}/4: {}\n", i + 1, batch.join(", "));
        assert!(run.stdout.contains(&line), "no `{line}`\n{}", run.all());
    }
    assert!(
        run.stdout.contains("== pausing 1s before batch 2\n"),
        "{}",
        run.all()
    );

    // (first call, last call) of every host, from the stand-in's timestamps.
    let span = |name: &str| {
        let calls = docker_calls(rig.host(name));
        assert!(
            calls.iter().any(|(_, c)| is_up(c)),
            "{name} was not deployed\n{}",
            run.all()
        );
        (calls[0].0, calls[calls.len() - 1].0)
    };
    for pair in expected.windows(2) {
        let (prev, next) = (pair[0], pair[1]);
        let prev_last = prev.iter().map(|h| span(h).1).fold(f64::MIN, f64::max);
        let prev_first = prev.iter().map(|h| span(h).0).fold(f64::MIN, f64::max);
        let firsts: Vec<f64> = next.iter().map(|h| span(h).0).collect();
        let earliest = firsts.iter().copied().fold(f64::MAX, f64::min);
        let latest = firsts.iter().copied().fold(f64::MIN, f64::max);
        assert!(
            earliest > prev_first,
            "{next:?} started before {prev:?} did"
        );
        assert!(
            earliest - prev_last >= 0.9,
            "{next:?} started {:.3}s after the last call of {prev:?}: no 1s pause",
            earliest - prev_last
        );
        // The hosts of a batch go together, not one after the other.
        assert!(
            latest - earliest < 0.9,
            "{next:?} started {:.3}s apart",
            latest - earliest
        );
    }
    for h in &rig.fleet.hosts {
        assert_eq!(running_version(h), "A\n", "{}", h.name);
        assert_row(&run, &h.name, "ok");
    }
}

#[test]
fn failing_canary_halts_and_rolls_back() {
    let rig = Rig::new(4, CANARY_BATCH_2_ROLLBACK);
    rig.run("deploy", &[]).assert_code(0);
    let a = current_release(rig.host("h1"));
    let calls_after_a: Vec<usize> = rig
        .fleet
        .hosts
        .iter()
        .map(|h| h.docker_commands().len())
        .collect();
    for h in &rig.fleet.hosts {
        assert_eq!(releases_on(h), std::slice::from_ref(&a), "{}", h.name);
    }

    // Version B is broken on the canary.
    let h1 = rig.host("h1");
    fs::write(h1.root.join("unhealthy-B"), "").unwrap();
    let run = rig.run("deploy", &["--var", "version=B"]);
    run.assert_code(1);

    // h1 got B, failed its health check, and went back to A.
    run.assert_outcome("h1", "healthy", "FAILED");
    assert!(run.stdout.contains("== rollout halted: "), "{}", run.all());
    assert_eq!(current_release(h1), a, "{}", run.all());
    assert_eq!(running_version(h1), "A\n");
    let b: Vec<String> = releases_on(h1).into_iter().filter(|r| *r != a).collect();
    assert_eq!(b.len(), 1, "B's release on h1: {b:?}");
    assert_eq!(
        read(&h1.root.join("releases").join(&b[0]).join("version.txt")),
        "B\n"
    );
    run.assert_outcome("h1", &format!("rollback: activate {a}"), "changed");
    run.assert_outcome("h1", "rollback: healthy", "ok");
    // The rollback started the stack again, after B's health check had given up.
    let new_calls = &docker_calls(h1)[calls_after_a[0]..];
    let up_times: Vec<f64> = new_calls
        .iter()
        .filter(|(_, c)| is_up(c))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(up_times.len(), 2, "h1's calls for B: {new_calls:?}");
    assert!(
        up_times[1] - up_times[0] >= 0.7,
        "second `up` only {:.3}s after the first: not after the 1s health check",
        up_times[1] - up_times[0]
    );
    assert_row(&run, "h1", &format!("rolled back to {a}"));

    // Nobody else was touched.
    for (i, h) in rig.fleet.hosts.iter().enumerate().skip(1) {
        assert_eq!(
            h.docker_commands().len(),
            calls_after_a[i],
            "{} ran docker for B: {:?}",
            h.name,
            h.docker_commands()
        );
        assert_eq!(releases_on(h), std::slice::from_ref(&a), "{}", h.name);
        assert_eq!(running_version(h), "A\n", "{}", h.name);
        assert_row(&run, &h.name, "not deployed: rollout halted");
    }
    let audit = audit_lines(h1);
    assert!(
        audit
            .last()
            .is_some_and(|l| l.contains(&format!("rolled back to {a}"))),
        "{audit:#?}"
    );
    assert_no_locks(&rig.fleet);
}

/// 7 hosts in batches [h1], [h2, h3], [h4, h5], [h6, h7]; h3's sshd dies in the middle of
/// its (slow) `up`.
fn kill_h3_mid_batch_two(max_failures: usize) -> (Rig, Run) {
    let rollout = format!(
        "[rollout]\ncanary = 1\nbatch = 2\npause = \"0s\"\nmax_failures = {max_failures}\non_failure = \"halt\"\n"
    );
    let mut rig = Rig::new(7, &rollout);
    rig.host("h3").set_docker_sleep(Some(3.0));
    let child = rig.spawn("deploy", &[]);
    wait_until(Duration::from_secs(15), "h3's `up`", || {
        ups(rig.host("h3")) > 0
    });
    rig.fleet.host_mut("h3").stop();
    let run = finish_within(child, Duration::from_secs(20));
    run.assert_code(1);
    assert!(
        run.stdout.contains("== batch 2/4: h2, h3\n"),
        "{}",
        run.all()
    );
    run.assert_outcome("h3", "start", "FAILED");
    assert_row(&run, "h3", "failed");
    for name in ["h1", "h2"] {
        assert_eq!(running_version(rig.host(name)), "A\n", "{name}");
        assert_row(&run, name, "  ok");
    }
    (rig, run)
}

#[test]
fn killed_host_in_batch_two_is_tolerated_by_max_failures() {
    let (rig, run) = kill_h3_mid_batch_two(1);
    assert!(!run.stdout.contains("rollout halted"), "{}", run.all());
    for name in ["h4", "h5", "h6", "h7"] {
        let h = rig.host(name);
        assert_eq!(ups(h), 1, "{name} was not deployed\n{}", run.all());
        assert_eq!(running_version(h), "A\n", "{name}");
        run.assert_outcome(name, "healthy", "ok");
        assert_row(&run, name, "  ok");
    }
    run.assert_counts(7, 6, 1);
}

#[test]
fn killed_host_in_batch_two_halts_with_max_failures_zero() {
    let (rig, run) = kill_h3_mid_batch_two(0);
    assert!(
        run.stdout
            .contains("== rollout halted: 1 of 7 host(s) failed by batch 2/4"),
        "{}",
        run.all()
    );
    assert!(!run.stdout.contains("== batch 3/4"), "{}", run.all());
    for name in ["h4", "h5", "h6", "h7"] {
        let h = rig.host(name);
        assert_eq!(h.docker_log(), "", "{name} ran docker\n{}", run.all());
        assert!(releases_on(h).is_empty(), "{name} got a release");
        assert_row(&run, name, "not deployed: rollout halted");
        assert!(!lock_dir(h).exists(), "{name} still locked");
    }
    // on_failure = "halt": h2, in the failed batch, keeps the new release.
    run.assert_host_ok("h2");
}

/// Deploys version A, then B, to every host of `rig`; returns their release ids.
fn deploy_a_then_b(rig: &Rig) -> (String, String) {
    rig.run("deploy", &[]).assert_code(0);
    let a = current_release(rig.host("h1"));
    let run = rig.run("deploy", &["--var", "version=B"]);
    run.assert_code(0);
    let b = current_release(rig.host("h1"));
    assert_ne!(a, b);
    assert!(
        run.stdout
            .contains(&format!("[h1] changed  activate release (current → {b})")),
        "{}",
        run.all()
    );
    for h in &rig.fleet.hosts {
        assert_eq!(current_release(h), b, "{}", h.name);
        assert_eq!(running_version(h), "B\n");
        assert_eq!(releases_on(h), [a.clone(), b.clone()], "{}", h.name);
        assert_eq!(ups(h), 2, "{}", h.name);
    }
    (a, b)
}

/// `rollback --to` a release no host has: every host fails, naming the releases it has;
/// nothing changes.
fn rollback_to_unknown_release_fails(rig: &Rig, has: &[&str], current: &str) {
    let ups_before: Vec<usize> = rig.fleet.hosts.iter().map(ups).collect();
    let run = rig.run("rollback", &["--to", "20000101T000000.000Z-deadbeef"]);
    run.assert_code(1);
    for (i, h) in rig.fleet.hosts.iter().enumerate() {
        let text = run.host_text(&h.name);
        assert!(
            text.contains("release 20000101T000000.000Z-deadbeef is not on this host")
                && text.contains(&format!("(it has: {})", has.join(", "))),
            "{}\n{}",
            h.name,
            run.all()
        );
        assert_row(&run, &h.name, "failed");
        assert_eq!(current_release(h), current, "{}", h.name);
        assert_eq!(ups(h), ups_before[i], "{}", h.name);
    }
}

/// keep = 2: after deploying C and D, only those two remain.
fn deploy_c_and_d_prunes_to_two(rig: &Rig, gone: &[&str]) {
    rig.run("deploy", &["--var", "version=C"]).assert_code(0);
    rig.run("deploy", &["--var", "version=D"]).assert_code(0);
    let d = current_release(rig.host("h1"));
    for h in &rig.fleet.hosts {
        let left = releases_on(h);
        assert_eq!(left.len(), 2, "{}: {left:?}", h.name);
        assert_eq!(left[1], d, "{}", h.name);
        assert_eq!(
            read(&h.root.join("releases").join(&left[0]).join("version.txt")),
            "C\n",
            "{}",
            h.name
        );
        for id in gone {
            assert!(
                !h.root.join("releases").join(id).exists(),
                "{}: {id} not pruned",
                h.name
            );
        }
        assert_eq!(running_version(h), "D\n");
    }
    assert_no_locks(&rig.fleet);
}

/// `host`'s lines of a `releases` run, asserted to mark `current` (label, release id) as
/// current and to list `other`; and its two audited deploys.
#[track_caller]
fn listed(
    run: &Run,
    host: &str,
    current: (&str, &str),
    other: (&str, &str),
) -> (String, Vec<String>) {
    let text = run.host_text(host);
    assert!(
        text.lines()
            .any(|l| l.contains(&format!("* {} (current)", current.1))),
        "{host}: {} not marked current\n{}",
        current.0,
        run.all()
    );
    assert!(
        text.lines()
            .any(|l| l.contains(&format!("  {}", other.1)) && !l.contains("(current)")),
        "{host}: {} not listed\n{}",
        other.0,
        run.all()
    );
    let deploys: Vec<String> = text
        .lines()
        .filter(|l| l.contains(&format!(" deploy host={host} ")))
        .map(str::to_string)
        .collect();
    assert_eq!(deploys.len(), 2, "{host}: audit\n{}", run.all());
    (text, deploys)
}

#[test]
fn releases_are_listed_with_the_audit_and_pruned_to_keep() {
    let rig = Rig::new(2, ALL_AT_ONCE);
    let (a, b) = deploy_a_then_b(&rig);

    let run = rig.run("releases", &[]);
    // Listing releases changes nothing: reported `ok`, not `changed`.
    run.assert_outcome("h1", "releases", "ok");
    run.assert_code(0);
    for h in &rig.fleet.hosts {
        let (text, deploys) = listed(&run, &h.name, ("B", &b), ("A", &a));
        assert!(text.find(&a) < text.find(&b), "oldest first\n{}", run.all());
        assert!(
            deploys[0].contains(&format!("playbook=\"Rolling\" release={a} result=ok")),
            "{deploys:?}"
        );
        assert!(
            deploys[1].contains(&format!("release={b} result=ok")),
            "{deploys:?}"
        );
    }

    rollback_to_unknown_release_fails(&rig, &[&a, &b], &b);
    deploy_c_and_d_prunes_to_two(&rig, &[&a, &b]);
}

#[test]
fn deploy_deploy_rollback_and_releases() {
    let rig = Rig::new(2, ALL_AT_ONCE);
    let (a, b) = deploy_a_then_b(&rig);

    // Back to the previous release, and the stack started again there.
    let run = rig.run("rollback", &[]);
    run.assert_code(0);
    for h in &rig.fleet.hosts {
        assert_eq!(current_release(h), a, "{}\n{}", h.name, run.all());
        assert_eq!(running_version(h), "A\n");
        assert_eq!(ups(h), 3, "{}: no `up` after the rollback", h.name);
        run.assert_outcome(&h.name, "rollback: healthy", "ok");
        assert_row(&run, &h.name, &format!("ok, rolled back to {a}"));
    }

    let run = rig.run("releases", &[]);
    run.assert_code(0);
    for h in &rig.fleet.hosts {
        let (text, deploys) = listed(&run, &h.name, ("A", &a), ("B", &b));
        assert!(!text.contains(&format!("* {b}")), "{text}");
        assert!(
            deploys[1].contains(&format!("release={b} result=ok")),
            "{deploys:?}"
        );
        assert!(
            text.lines()
                .any(|l| l.contains(&format!(" rollback host={} ", h.name))
                    && l.contains(&format!("result=ok, rolled back to {a}"))),
            "{}: no rollback audit line\n{}",
            h.name,
            run.all()
        );
    }

    // --to a named release.
    let run = rig.run("rollback", &["--to", &b]);
    run.assert_code(0);
    for h in &rig.fleet.hosts {
        assert_eq!(current_release(h), b, "{}", h.name);
        assert_eq!(running_version(h), "B\n");
        assert_eq!(ups(h), 4, "{}", h.name);
    }
    rollback_to_unknown_release_fails(&rig, &[&a, &b], &b);
    deploy_c_and_d_prunes_to_two(&rig, &[&a, &b]);
}

#[test]
fn concurrent_deploys_exactly_one_runs() {
    let rig = Rig::new(3, ALL_AT_ONCE);
    for h in &rig.fleet.hosts {
        h.set_docker_sleep(Some(1.5));
    }
    let first = rig.spawn("deploy", &[]);
    let second = rig.spawn("deploy", &[]);
    let runs = [
        finish_within(first, Duration::from_secs(20)),
        finish_within(second, Duration::from_secs(20)),
    ];
    let codes: Vec<Option<i32>> = runs.iter().map(|r| r.code).collect();
    let (winner, loser) = match codes.as_slice() {
        [Some(0), Some(1)] => (&runs[0], &runs[1]),
        [Some(1), Some(0)] => (&runs[1], &runs[0]),
        _ => panic!(
            "want one exit 0 and one exit 1, got {codes:?}\n{}\n{}",
            runs[0].all(),
            runs[1].all()
        ),
    };
    let holder = root_identity();
    assert!(
        loser.all().contains("is locked by ") && loser.all().contains(&holder),
        "loser should name the lock holder {holder}\n{}",
        loser.all()
    );
    for h in &rig.fleet.hosts {
        assert_eq!(ups(h), 1, "{}: `up` ran {} times", h.name, ups(h));
        assert_row(winner, &h.name, "ok");
        assert_row(loser, &h.name, "not deployed: lock held elsewhere");
        assert_eq!(loser.outcome(&h.name, "start"), None, "{}", loser.all());
        // One audit line: the winner's.
        assert_eq!(audit_lines(h).len(), 1, "{}: {:#?}", h.name, audit_lines(h));
    }
    assert_no_locks(&rig.fleet);
}

#[test]
fn sigint_mid_deploy_releases_every_lock() {
    let rig = Rig::new(3, ONE_BY_ONE);
    for h in &rig.fleet.hosts {
        h.set_docker_sleep(Some(3.0));
    }
    let child = rig.spawn("deploy", &[]);
    let pid = child.id();
    wait_until(Duration::from_secs(15), "h1's `up`", || {
        ups(rig.host("h1")) > 0
    });
    // The canary's lock and the others' are all held while it runs.
    for h in &rig.fleet.hosts {
        assert!(lock_dir(h).join("info").is_file(), "{} not locked", h.name);
    }
    // SAFETY: kill(2) on the pid of the child this test spawned.
    let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0, "kill -INT {pid}");
    let run = finish_within(child, Duration::from_secs(15));
    run.assert_code(130);
    assert!(run.stderr.contains("interrupted"), "{}", run.all());

    // The running step finished; nothing new started.
    let h1 = rig.host("h1");
    run.assert_outcome("h1", "start", "ok");
    run.assert_outcome("h1", "healthy", "skipped");
    assert_eq!(ups(h1), 1);
    assert!(!run.stdout.contains("== batch 2/3"), "{}", run.all());
    for name in ["h2", "h3"] {
        assert_eq!(rig.host(name).docker_log(), "", "{name} was deployed");
        assert_row(&run, name, "interrupted");
    }
    assert_no_locks(&rig.fleet);
    for h in &rig.fleet.hosts {
        let audit = audit_lines(h);
        assert_eq!(audit.len(), 1, "{}: {audit:#?}", h.name);
        assert!(
            audit[0].contains(&format!(" deploy host={} ", h.name)),
            "{audit:?}"
        );
    }
}

/// A lock left behind by a run that no longer exists.
fn plant_stale_lock(h: &TestHost) {
    fs::create_dir_all(lock_dir(h)).unwrap();
    fs::write(
        lock_dir(h).join("info"),
        "holder=ghost@old-ci\nsince=2020-01-01T00:00:00Z\nplaybook=Rolling\ncommand=deploy\nrelease=20200101T000000.000Z-0badc0de\ntoken=ghost-1\n",
    )
    .unwrap();
}

#[test]
fn stale_lock_is_reported_and_cleared() {
    let rig = Rig::new(3, ALL_AT_ONCE);
    plant_stale_lock(rig.host("h2"));

    let run = rig.run("deploy", &[]);
    run.assert_code(1);
    assert!(
        run.all()
            .contains("h2 is locked by ghost@old-ci since 2020-01-01T00:00:00Z"),
        "{}",
        run.all()
    );
    for h in &rig.fleet.hosts {
        assert_eq!(h.docker_log(), "", "{} ran docker", h.name);
        assert!(releases_on(h).is_empty(), "{} got a release", h.name);
        assert_row(&run, &h.name, "not deployed: lock held elsewhere");
    }
    for name in ["h1", "h3"] {
        assert!(!lock_dir(rig.host(name)).exists(), "{name} still locked");
    }
    assert!(
        read(&lock_dir(rig.host("h2")).join("info")).contains("holder=ghost@old-ci"),
        "the ghost's lock must stay until released"
    );

    let status = rig.lock("status");
    status.assert_code(0);
    let h2 = status.host_text("h2");
    assert!(
        h2.contains("locked:") && h2.contains("holder=ghost@old-ci"),
        "{}",
        status.all()
    );
    for name in ["h1", "h3"] {
        let text = status.host_text(name);
        assert!(
            text.lines().any(|l| l.trim_end().ends_with(" unlocked")),
            "{}",
            status.all()
        );
        assert!(!text.contains("ghost"), "{}", status.all());
    }

    let release = rig.lock("release");
    release.assert_code(0);
    assert!(
        release.host_text("h2").contains("released the lock of:")
            && release.host_text("h2").contains("holder=ghost@old-ci"),
        "{}",
        release.all()
    );
    assert!(release.host_text("h1").contains("was not locked"));
    assert_no_locks(&rig.fleet);

    let run = rig.run("deploy", &[]);
    run.assert_code(0);
    for h in &rig.fleet.hosts {
        assert_eq!(running_version(h), "A\n", "{}", h.name);
    }
    assert_no_locks(&rig.fleet);
}

#[test]
fn wait_lock_outlasts_a_lock_that_goes_away() {
    let rig = Rig::new(3, ALL_AT_ONCE);
    plant_stale_lock(rig.host("h2"));

    // The lock stays: --wait-lock gives up after its time.
    let started = Instant::now();
    let run = rig.run("deploy", &["--wait-lock", "1s"]);
    run.assert_code(1);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(
        run.all().contains("is locked by ghost@old-ci"),
        "{}",
        run.all()
    );
    for h in &rig.fleet.hosts {
        assert_eq!(h.docker_log(), "", "{} ran docker", h.name);
    }

    // The lock goes away after 1 s: the run waits for it, then deploys.
    let lock = lock_dir(rig.host("h2"));
    let remover = thread::spawn(move || {
        thread::sleep(Duration::from_secs(1));
        fs::remove_dir_all(lock).unwrap();
    });
    let started = Instant::now();
    let run = rig.run("deploy", &["--wait-lock", "3s"]);
    remover.join().unwrap();
    run.assert_code(0);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(
        run.stdout
            .contains("== waiting for the lock: h2 is locked by ghost@old-ci"),
        "{}",
        run.all()
    );
    for h in &rig.fleet.hosts {
        assert_eq!(running_version(h), "A\n", "{}", h.name);
        assert_eq!(ups(h), 1, "{}", h.name);
    }
    assert_no_locks(&rig.fleet);
}

/// Without `$USER`/`$LOGNAME` (cron, systemd units, `docker exec`, many CI runners) the lock
/// and the audit log should still name the user the run acts as.
#[test]
fn lock_holder_names_the_user_without_user_env() {
    let rig = Rig::new(1, ALL_AT_ONCE);
    let mut cmd = command(&rig.args("deploy", &[]), None);
    cmd.env_remove("USER").env_remove("LOGNAME");
    dropship_cmd(cmd).assert_code(0);
    let audit = audit_lines(rig.host("h1"));
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert!(
        audit[0].contains(&format!(" {} deploy host=h1 ", root_identity())),
        "{audit:#?}"
    );
}

/// keep = 2, A and B deployed; C and then D fail their health check and are rolled back. Before
/// releases were pruned only after success, C's activation pruned A and D's left nothing to roll
/// back to from B. Now the failed ones are marked, listed as failed, skipped by `rollback`, and
/// the next good deploy removes them first.
#[test]
fn failed_deploys_keep_the_last_good_releases_for_rollback() {
    let rig = Rig::new(1, CANARY_BATCH_2_ROLLBACK);
    let (a, b) = deploy_a_then_b(&rig);
    let h1 = rig.host("h1");
    let mut failed = Vec::new();
    for version in ["C", "D"] {
        fs::write(h1.root.join(format!("unhealthy-{version}")), "").unwrap();
        let run = rig.run("deploy", &["--var", &format!("version={version}")]);
        run.assert_code(1);
        run.assert_outcome("h1", "healthy", "FAILED");
        // Undoing a failed deploy prunes nothing (no `prune releases` in the rollback).
        assert_eq!(
            run.outcome("h1", "rollback: prune releases"),
            None,
            "{}",
            run.all()
        );
        assert_eq!(current_release(h1), b, "{}", run.all());
        let new: Vec<String> = releases_on(h1)
            .into_iter()
            .filter(|r| ![&a, &b].contains(&r) && !failed.contains(r))
            .collect();
        assert_eq!(new.len(), 1, "{version}'s release: {new:?}");
        failed.extend(new);
    }
    assert_eq!(
        releases_on(h1),
        [a.clone(), b.clone(), failed[0].clone(), failed[1].clone()]
    );
    let run = rig.run("releases", &[]);
    run.assert_code(0);
    for id in &failed {
        assert!(
            run.stdout.contains(&format!("  {id} (failed)")),
            "{}",
            run.all()
        );
    }
    assert!(
        run.stdout
            .lines()
            .any(|l| l.contains(&format!("* {b} (current)")) && !l.contains("(failed)")),
        "{}",
        run.all()
    );

    // `rollback` goes to A, the good release before B, not to a failed one.
    let run = rig.run("rollback", &[]);
    run.assert_code(0);
    assert_eq!(current_release(h1), a, "{}", run.all());
    assert_eq!(running_version(h1), "A\n");

    // The next good deploy removes the failed releases first, then keeps 2 good ones.
    let run = rig.run("deploy", &["--var", "version=E"]);
    run.assert_code(0);
    run.assert_outcome("h1", "prune releases", "changed");
    let left = releases_on(h1);
    assert_eq!(left.len(), 2, "{left:?}\n{}", run.all());
    assert!(left.iter().all(|r| !failed.contains(r)), "{left:?}");
    // B, the newest good release before E, is where `rollback` would go: it is kept.
    assert_eq!(left[0], b, "{left:?}");
    assert_eq!(running_version(h1), "E\n");
}
