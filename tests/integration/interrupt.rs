//! Ctrl-C and SIGTERM against real sshd hosts: the first SIGINT lets running steps finish and
//! starts nothing more (not even the later steps of a session already sent), the second (or a
//! SIGTERM) stops the running steps on the hosts; either way the locks are released and
//! dropship exits 130.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{
    Fleet, Report, SudoUser, TestHost, all_cmdlines, command, descendants, finish_within,
    start_fleet, wait_until,
};

/// Writes a playbook of app `intr` with `steps` into the fleet's dir.
fn write_playbook(fleet: &Fleet, steps: &str) -> PathBuf {
    fleet.write_playbook("intr.toml", "interrupted", "intr", steps)
}

/// `dropship deploy`, its JSON report written to `report.json` in the fleet's dir.
fn spawn_deploy(fleet: &Fleet, playbook: &Path) -> Child {
    let inventory = fleet.write_inventory("");
    let json = fleet.dir.path().join("report.json");
    command(
        &[
            "deploy",
            "-i",
            inventory.to_str().unwrap(),
            playbook.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ],
        None,
    )
    .spawn()
    .expect("spawn dropship")
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on the pid of the child this test spawned and has not waited for.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill -{sig} {}", child.id());
}

#[track_caller]
fn wait_for_file(path: &Path) {
    wait_until(Duration::from_secs(20), &path.display().to_string(), || {
        path.exists()
    });
}

/// The host's state dir for app `intr` (in its `app_dir`).
fn state_dir(h: &TestHost) -> PathBuf {
    h.root.join(".dropship")
}

#[track_caller]
fn assert_unlocked_and_audited(h: &TestHost, result: &str) {
    assert!(
        !state_dir(h).join("lock").exists(),
        "{}: lock left behind",
        h.name
    );
    let audit = fs::read_to_string(state_dir(h).join("audit.log")).unwrap_or_default();
    assert!(
        audit.lines().last().is_some_and(|l| l.contains(result)),
        "{}: audit {audit:?}",
        h.name
    );
}

#[test]
fn first_ctrl_c_finishes_the_running_step_and_starts_no_later_one() {
    let fleet = start_fleet(2);
    // Three steps: the first two share one session (one driver script), the third is a
    // `become` session of its own.
    let playbook = write_playbook(
        &fleet,
        r#"[[steps]]
name = "slow"
run = "touch {{ app_dir }}/slow-started; sleep 2; touch {{ app_dir }}/slow-done"

[[steps]]
name = "after"
run = "touch {{ app_dir }}/after-ran"

[[steps]]
name = "as root"
become = true
run = "touch {{ app_dir }}/become-ran"
"#,
    );
    let child = spawn_deploy(&fleet, &playbook);
    for h in &fleet.hosts {
        wait_for_file(&h.root.join("slow-started"));
        assert!(state_dir(h).join("lock").is_dir(), "{} not locked", h.name);
    }
    signal(&child, libc::SIGINT);
    let run = finish_within(child, Duration::from_secs(20));
    run.assert_code(130);
    for h in &fleet.hosts {
        let name = h.name.as_str();
        assert!(
            h.root.join("slow-done").exists(),
            "{name}: slow step cut\n{}",
            run.all()
        );
        assert!(
            !h.root.join("after-ran").exists(),
            "{name}: later step ran\n{}",
            run.all()
        );
        assert!(
            !h.root.join("become-ran").exists(),
            "{name}: become step ran"
        );
        run.assert_outcome(name, "slow", "changed");
        for step in ["after", "as root"] {
            run.assert_outcome(name, step, "skipped");
        }
        let row = run.summary_row(name).unwrap();
        assert!(row.ends_with("interrupted"), "{row}\n{}", run.all());
        assert_unlocked_and_audited(h, "result=interrupted");
    }
    assert!(
        run.stdout
            .contains("2 host(s): 0 ok, 0 failed, 2 not deployed"),
        "{}",
        run.all()
    );
    Report::read(&fleet.dir.path().join("report.json")).assert_counts_of(2, 0, 0, 2);
    let report: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(fleet.dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["interrupted"], true, "{report:#}");
    assert_eq!(report["counts"]["ok"], 0, "{report:#}");
    assert_eq!(report["counts"]["not_deployed"], 2, "{report:#}");
    for h in report["hosts"].as_array().unwrap() {
        assert_eq!(h["note"], "interrupted", "{report:#}");
    }
}

/// `sleep` processes with this argument on the machine (the hosts are local).
fn sleeps(arg: &str) -> Vec<(u32, String)> {
    all_cmdlines()
        .into_iter()
        .filter(|(_, c)| c.trim_end() == format!("sleep {arg}"))
        .collect()
}

/// Kills the test's remote `sleep` if the test fails before dropship stopped it.
struct SleepReaper(String);

impl Drop for SleepReaper {
    fn drop(&mut self) {
        for (pid, _) in sleeps(&self.0) {
            // SAFETY: kill(2) on a `sleep` this test's host started (its unique argument).
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

/// Starts a run whose first step sleeps long, sends `signals` once it started (200 ms apart),
/// and checks that the run ends within a few seconds, stopping the sleep on the host.
fn abort_with(signals: &[libc::c_int], sleep_arg: &str) {
    let step = format!(
        "run = \"touch {{{{ app_dir }}}}/long-started; sleep {sleep_arg}; touch {{{{ app_dir }}}}/long-done\""
    );
    abort_step_with(signals, sleep_arg, &step);
}

/// `abort_with` for a step `long` of any kind (`step`: its TOML lines but the name).
fn abort_step_with(signals: &[libc::c_int], sleep_arg: &str, step: &str) {
    let fleet = start_fleet(1);
    let playbook = write_playbook(
        &fleet,
        &format!(
            r#"[[steps]]
name = "long"
{step}

[[steps]]
name = "after"
run = "touch {{{{ app_dir }}}}/after-ran"
"#
        ),
    );
    let h = fleet.host("h1");
    let _reaper = SleepReaper(sleep_arg.to_string());
    let child = spawn_deploy(&fleet, &playbook);
    wait_for_file(&h.root.join("long-started"));
    assert!(state_dir(h).join("lock").is_dir(), "not locked");
    let deadline = Instant::now() + Duration::from_secs(10);
    while sleeps(sleep_arg).is_empty() {
        assert!(Instant::now() < deadline, "the remote sleep never started");
        thread::sleep(Duration::from_millis(20));
    }
    for (i, sig) in signals.iter().enumerate() {
        if i > 0 {
            thread::sleep(Duration::from_millis(200));
        }
        signal(&child, *sig);
    }
    let signalled = Instant::now();
    let run = finish_within(child, Duration::from_secs(20));
    let took = signalled.elapsed();
    eprintln!("dropship exited {took:?} after the last signal");
    run.assert_code(130);
    assert!(
        took < Duration::from_secs(5),
        "took {took:?}\n{}",
        run.all()
    );
    // The remote command was stopped, not left running.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !sleeps(sleep_arg).is_empty() {
        assert!(
            Instant::now() < deadline,
            "remote sleep left running: {:?}\n{}\nsshd log:\n{}",
            sleeps(sleep_arg),
            run.all(),
            h.sshd_log()
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert!(!h.root.join("long-done").exists());
    assert!(!h.root.join("after-ran").exists());
    run.assert_outcome("h1", "long", "FAILED");
    assert!(run.host_text("h1").contains("aborted"), "{}", run.all());
    run.assert_outcome("h1", "after", "skipped");
    assert!(
        !state_dir(h).join("lock").exists(),
        "lock left behind\n{}",
        run.all()
    );
    assert!(run.stderr.contains("aborting"), "{}", run.all());
}

#[test]
fn second_ctrl_c_aborts_running_steps_and_releases_the_lock() {
    abort_with(&[libc::SIGINT, libc::SIGINT], "617");
}

#[test]
fn sigterm_aborts_running_steps_and_releases_the_lock() {
    abort_with(&[libc::SIGTERM], "619");
}

#[test]
fn second_ctrl_c_stops_a_running_health_command_on_the_host() {
    let step = "health = { command = \"touch {{ app_dir }}/long-started; sleep 629; touch {{ app_dir }}/long-done\", timeout = \"60s\" }";
    abort_step_with(&[libc::SIGINT, libc::SIGINT], "629", step);
}

/// Through a real sudo with a password, as an unprivileged SSH user: the stop sign and the
/// abort reach the root processes of a `become` session too.
#[test]
fn ctrl_c_stops_and_aborts_become_sessions_through_sudo() {
    let fleet = start_fleet(1);
    let user = SudoUser::create();
    let h = fleet.host("h1");
    let inventory = fleet.inventory_for_user(&user.name);
    let playbook = |first: &str| {
        write_playbook(
            &fleet,
            &format!(
                r#"{}[[steps]]
name = "first"
become = true
run = "{first}"

[[steps]]
name = "after"
become = true
run = "touch {{{{ out }}}}/after-ran"
"#,
                user.become_vars()
            ),
        )
    };
    let spawn = |playbook: &Path| {
        let mut cmd = command(
            &[
                "deploy",
                "-i",
                inventory.to_str().unwrap(),
                playbook.to_str().unwrap(),
            ],
            None,
        );
        cmd.env("DROPSHIP_TEST_SUDO_PW", &user.password);
        cmd.spawn().expect("spawn dropship")
    };
    let scratch = |f: &str| user.scratch.join(f);

    // One Ctrl-C: the running root step ends, the next one never starts.
    let pb = playbook("touch {{ out }}/slow-started; sleep 2; touch {{ out }}/slow-done");
    let child = spawn(&pb);
    wait_for_file(&scratch("slow-started"));
    signal(&child, libc::SIGINT);
    let run = finish_within(child, Duration::from_secs(20));
    run.assert_code(130);
    assert!(scratch("slow-done").exists(), "{}", run.all());
    assert!(!scratch("after-ran").exists(), "{}", run.all());
    run.assert_outcome("h1", "after", "skipped");
    assert!(
        !state_dir(h).join("lock").exists(),
        "lock left\n{}",
        run.all()
    );

    // Two: the root `sleep` is stopped on the host within seconds.
    let _reaper = SleepReaper("623".into());
    let pb = playbook("touch {{ out }}/long-started; sleep 623; touch {{ out }}/long-done");
    let child = spawn(&pb);
    wait_for_file(&scratch("long-started"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while sleeps("623").is_empty() {
        assert!(Instant::now() < deadline, "the remote sleep never started");
        thread::sleep(Duration::from_millis(20));
    }
    signal(&child, libc::SIGINT);
    thread::sleep(Duration::from_millis(200));
    signal(&child, libc::SIGINT);
    let signalled = Instant::now();
    let run = finish_within(child, Duration::from_secs(20));
    run.assert_code(130);
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "{}",
        run.all()
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while !sleeps("623").is_empty() {
        assert!(
            Instant::now() < deadline,
            "root sleep left running\n{}",
            run.all()
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert!(!scratch("long-done").exists());
    assert!(!scratch("after-ran").exists(), "{}", run.all());
    assert!(
        !state_dir(h).join("lock").exists(),
        "lock left\n{}",
        run.all()
    );
    assert!(!run.all().contains(&user.password), "{}", run.all());
}

/// A host that stops answering (its sshd and sessions frozen) does not keep an aborted run
/// waiting: dropship still exits 130 within seconds, having unlocked the other host, and says
/// which lock it could not release.
#[test]
fn an_aborted_run_does_not_wait_for_a_frozen_host() {
    let fleet = start_fleet(2);
    let _reaper = SleepReaper("631".into());
    let playbook = write_playbook(
        &fleet,
        r#"[[steps]]
name = "long"
run = "touch {{ app_dir }}/long-started; sleep 631"
"#,
    );
    let child = spawn_deploy(&fleet, &playbook);
    for h in &fleet.hosts {
        wait_for_file(&h.root.join("long-started"));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while sleeps("631").len() < 2 {
        assert!(Instant::now() < deadline, "the remote sleeps never started");
        thread::sleep(Duration::from_millis(20));
    }
    let sshd = fleet.host("h2").pid().expect("h2's sshd");
    let mut frozen = vec![sshd];
    frozen.extend(descendants(sshd));
    for pid in &frozen {
        // SAFETY: kill(2) on h2's sshd and its sessions, started by this test's fleet (its
        // drop kills them, stopped or not).
        unsafe {
            libc::kill(*pid as libc::pid_t, libc::SIGSTOP);
        }
    }
    signal(&child, libc::SIGINT);
    thread::sleep(Duration::from_millis(200));
    signal(&child, libc::SIGINT);
    let signalled = Instant::now();
    let run = finish_within(child, Duration::from_secs(30));
    let took = signalled.elapsed();
    run.assert_code(130);
    assert!(
        took < Duration::from_secs(10),
        "took {took:?}\n{}",
        run.all()
    );
    assert!(
        !state_dir(fleet.host("h1")).join("lock").exists(),
        "{}",
        run.all()
    );
    assert!(
        run.stderr.contains("could not release the lock"),
        "{}",
        run.all()
    );
    for pid in &frozen {
        // SAFETY: as above.
        unsafe {
            libc::kill(*pid as libc::pid_t, libc::SIGCONT);
        }
    }
}
