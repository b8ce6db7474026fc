//! The fleet orchestration (batches, pauses, `max_failures`, rollback, locks, interrupts) in
//! process, through the local transport: each host is a directory, each command a local
//! `sh -c`, faults injected per host. No sshd: these run in milliseconds.

use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dropship::diagnostic::SourceFile;
use dropship::fleet::{self, Cancel, CancelHandle, ExecOptions, LockOptions};
use dropship::inventory::Inventory;
use dropship::plan::{self, Plan, PlanOptions};
use dropship::playbook::Playbook;
use dropship::report::{Event, HostResult, HostStatus, Outcome, Reporter, RunReport};
use dropship::transport::local::{Fault, Hook, LocalConnector, Tcp};

mod parking;

/// Rollout policies.
const ONE_BY_ONE_PAUSED: &str = "[rollout]\ncanary = 1\nbatch = 1\npause = \"50ms\"\n";
const CANARY_BATCH_2_ROLLBACK: &str =
    "[rollout]\ncanary = 1\nbatch = 2\nmax_failures = 0\non_failure = \"rollback\"\n";
const ONE_BY_ONE_HALT: &str = "[rollout]\ncanary = 1\nbatch = 1\nmax_failures = 0\n";
const ONE_BY_ONE_TOLERANT: &str = "[rollout]\ncanary = 1\nbatch = 1\nmax_failures = 1\n";
const ALL_AT_ONCE: &str = "";

/// A `[release]` playbook: the version file, a `start` command that logs the version it
/// finds in `current`, a health check failing while `<app_dir>/unhealthy-<version>` exists,
/// then a `done` command.
fn release_playbook(rollout: &str) -> String {
    format!(
        r#"name = "Local"
app = "loc"
hosts = "web"

[vars]
version = "A"

{rollout}
[release]
root = "{{{{ app_dir }}}}"
keep = 3

[[steps]]
name = "version"
template = {{ src = "version.txt.j2", dest = "{{{{ release.dir }}}}/version.txt" }}

[[steps]]
name = "start"
run = "echo start-$(cat {{{{ app_dir }}}}/current/version.txt) >> {{{{ app_dir }}}}/log"

[[steps]]
name = "healthy"
health = {{ command = "test ! -f {{{{ app_dir }}}}/unhealthy-$(cat {{{{ app_dir }}}}/current/version.txt)", timeout = "200ms", interval = "100ms" }}

[[steps]]
name = "done"
run = "echo done >> {{{{ app_dir }}}}/log"
"#
    )
}

/// A playbook without `[release]`: `first`, then `second` (whose command is `second`), then
/// `third`, `first` and `third` appending their name to `<app_dir>/log`.
fn plain_playbook(second: &str) -> String {
    format!(
        r#"name = "Plain"
app = "plain"
hosts = "web"

[[steps]]
name = "first"
run = "echo first >> {{{{ app_dir }}}}/log"

[[steps]]
name = "second"
run = '''{second}'''

[[steps]]
name = "third"
run = "echo third >> {{{{ app_dir }}}}/log"
"#
    )
}

/// Hosts `h1`..`hN`, each a directory of the connector's; the app lives in `<host>/app`.
struct Rig {
    dir: tempfile::TempDir,
    connector: LocalConnector,
    hosts: Vec<String>,
}

impl Rig {
    fn new(count: usize) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let connector = LocalConnector::new(dir.path().join("hosts"));
        let hosts = (1..=count).map(|i| format!("h{i}")).collect();
        fs::write(dir.path().join("version.txt.j2"), "{{ version }}\n").unwrap();
        Rig {
            dir,
            connector,
            hosts,
        }
    }

    /// The app directory on `host`.
    fn app(&self, host: &str) -> PathBuf {
        self.connector.host_dir(host).join("app")
    }

    fn inventory(&self) -> Inventory {
        let mut text = String::from("[ssh]\nuser = \"deploy\"\n");
        for h in &self.hosts {
            text.push_str(&format!(
                "\n[hosts.{h}]\naddress = \"{h}.local\"\ngroups = [\"web\"]\nvars = {{ app_dir = \"{}\" }}\n",
                self.app(h).display()
            ));
        }
        text.push_str("\n[groups.web]\n");
        let file = SourceFile {
            path: self.dir.path().join("inventory.toml"),
            text,
        };
        Inventory::parse(&file).unwrap_or_else(|e| panic!("inventory: {e}"))
    }

    /// The plan of `playbook` (its text) with `--var` `vars`, as `dropship deploy` builds it.
    fn plan(&self, playbook: &str, vars: &[(&str, &str)]) -> Plan {
        let file = SourceFile {
            path: self.dir.path().join("playbook.toml"),
            text: playbook.to_string(),
        };
        let playbook = Playbook::parse(file).unwrap_or_else(|e| panic!("playbook: {e}"));
        let options = PlanOptions {
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..PlanOptions::default()
        };
        plan::build(&self.inventory(), &playbook, &Default::default(), &options)
            .unwrap_or_else(|e| panic!("plan: {e}"))
    }

    async fn deploy(&self, plan: &Plan, events: &Events, cancel: Cancel) -> RunReport {
        self.deploy_waiting(plan, events, cancel, None).await
    }

    async fn deploy_waiting(
        &self,
        plan: &Plan,
        events: &Events,
        cancel: Cancel,
        wait: Option<Duration>,
    ) -> RunReport {
        let lock = LockOptions { wait };
        fleet::deploy(
            &self.connector,
            plan,
            ExecOptions::default(),
            &lock,
            events,
            cancel,
        )
        .await
    }

    /// `deploy` with at most `handshakes` connects in flight at once.
    async fn deploy_with_handshakes(&self, plan: &Plan, handshakes: usize) -> RunReport {
        let exec = ExecOptions {
            handshakes,
            ..ExecOptions::default()
        };
        let lock = LockOptions { wait: None };
        let events = Events::default();
        fleet::deploy(&self.connector, plan, exec, &lock, &events, Cancel::never()).await
    }

    /// Appends `<what> <host>` to `log` whenever a command containing `pattern` starts on
    /// `host`.
    fn log_exec(&self, host: &str, pattern: &str, what: &str, log: &Log) {
        let (log, line) = (Arc::clone(log), format!("{what} {host}"));
        let hook = Arc::new(move |_: &str| log.lock().unwrap().push(line.clone()));
        self.connector.inject(
            host,
            Fault::OnExec {
                pattern: pattern.into(),
                hook,
            },
        );
    }

    /// Deploys `version` of the release playbook with `rollout`, asserting every host ends ok.
    async fn deployed(&self, rollout: &str, version: &str) -> RunReport {
        let plan = self.plan(&release_playbook(rollout), &[("version", version)]);
        let report = self
            .deploy(&plan, &Events::default(), Cancel::never())
            .await;
        assert!(report.ok, "{report:#?}");
        report
    }

    fn read(&self, host: &str, file: &str) -> String {
        fs::read_to_string(self.app(host).join(file)).unwrap_or_default()
    }

    /// The version `current` holds on `host` (empty when none).
    fn current(&self, host: &str) -> String {
        self.read(host, "current/version.txt").trim().to_string()
    }

    fn locked(&self, host: &str) -> bool {
        self.app(host).join(".dropship/lock").exists()
    }

    fn audit(&self, host: &str) -> String {
        self.read(host, ".dropship/audit.log")
    }

    #[track_caller]
    fn assert_audit(&self, host: &str, wanted: &str) {
        let audit = self.audit(host);
        assert!(audit.contains(wanted), "{host}: no `{wanted}` in {audit}");
    }

    /// Puts a lock held by another run (token `other`) on `host`; returns its directory.
    fn hold_lock(&self, host: &str, holder: &str) -> PathBuf {
        let lock = self.app(host).join(".dropship/lock");
        fs::create_dir_all(&lock).unwrap();
        let info = format!(
            "holder={holder}\nsince=2026-01-01T00:00:00Z\nplaybook=Other\ncommand=deploy\nrelease=\ntoken=other\n"
        );
        fs::write(lock.join("info"), info).unwrap();
        lock
    }

    fn releases(&self, host: &str) -> usize {
        fs::read_dir(self.app(host).join("releases")).map_or(0, |rd| rd.count())
    }
}

/// Lines a test's hooks append, in the order things happened.
type Log = Arc<Mutex<Vec<String>>>;

/// What a lock request's script contains (and no other script does).
const LOCK_SCRIPT: &str = "lock:acquired";

/// A reporter keeping every event as a line (`batch 1/3 h1`, `step h1 start changed`,
/// `failed h2 ...`, `note ...`), calling `on_event` with each.
#[derive(Default)]
struct Events {
    lines: Mutex<Vec<String>>,
    on_event: Option<OnEvent>,
}

type OnEvent = Box<dyn Fn(&str) + Send + Sync>;

impl Events {
    fn calling(on_event: impl Fn(&str) + Send + Sync + 'static) -> Events {
        Events {
            lines: Mutex::default(),
            on_event: Some(Box::new(on_event)),
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Index of the first line starting with `prefix`.
    #[track_caller]
    fn position(&self, prefix: &str) -> usize {
        let lines = self.lines();
        lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no event `{prefix}...` in {lines:#?}"))
    }
}

impl Reporter for Events {
    fn event(&self, event: &Event<'_>) {
        let line = match event {
            Event::HostStarted { host } => format!("started {host}"),
            Event::StepStarted { host, step } => format!("begin {host} {step}"),
            Event::Output { host, line } => format!("output {host} {line}"),
            Event::StepFinished { host, step } => {
                format!("step {host} {} {}", step.name, step.outcome.label())
            }
            Event::HostFailed { host, error } => format!("failed {host} {error}"),
            Event::HostFinished { result } => format!("finished {}", result.host),
            Event::BatchStarted {
                number, of, hosts, ..
            } => {
                format!("batch {number}/{of} {}", hosts.join(","))
            }
            Event::Note { text } => format!("note {text}"),
        };
        if let Some(on_event) = &self.on_event {
            on_event(&line);
        }
        self.lines.lock().unwrap().push(line);
    }

    fn finished(&self, _report: &RunReport) {}
}

fn host<'r>(report: &'r RunReport, name: &str) -> &'r HostResult {
    report
        .hosts
        .iter()
        .find(|h| h.host == name)
        .unwrap_or_else(|| panic!("no host {name} in {report:#?}"))
}

/// `(name, outcome)` of each step of `name` in the report.
fn steps(report: &RunReport, name: &str) -> Vec<(String, Outcome)> {
    host(report, name)
        .steps
        .iter()
        .map(|s| (s.name.clone(), s.outcome))
        .collect()
}

#[track_caller]
fn outcome_of(report: &RunReport, name: &str, step: &str) -> Outcome {
    steps(report, name)
        .into_iter()
        .find(|(n, _)| n == step)
        .unwrap_or_else(|| panic!("{name} has no step {step}: {report:#?}"))
        .1
}

#[track_caller]
fn detail_of(report: &RunReport, name: &str, step: &str) -> String {
    host(report, name)
        .steps
        .iter()
        .find(|s| s.name == step)
        .and_then(|s| s.detail.clone())
        .unwrap_or_default()
}

/// A `Cancel` interrupted (the first Ctrl-C) by the hook of the fault `fault` makes, injected
/// into `host`.
fn interrupt_on(rig: &Rig, host: &str, fault: impl FnOnce(Hook) -> Fault) -> Cancel {
    let (cancel, handle) = Cancel::manual();
    rig.connector
        .inject(host, fault(Arc::new(move |_: &str| handle.interrupt())));
    cancel
}

/// A `Cancel` aborted (both Ctrl-Cs) `after` the hook of the fault `fault` makes, injected
/// into `host`, was called.
fn abort_on(rig: &Rig, host: &str, after: Duration, fault: impl FnOnce(Hook) -> Fault) -> Cancel {
    let (cancel, handle) = Cancel::manual();
    let handle = Arc::new(handle);
    let hook = move |_: &str| {
        let handle = Arc::clone(&handle);
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            handle.interrupt();
            handle.abort();
        });
    };
    rig.connector.inject(host, fault(Arc::new(hook)));
    cancel
}

/// A `Cancel` and its handle, the handle also reachable from hooks.
fn cancel() -> (Cancel, Arc<CancelHandle>) {
    let (cancel, handle) = Cancel::manual();
    (cancel, Arc::new(handle))
}

#[tokio::test]
async fn deploys_batch_by_batch_with_pauses_between() {
    let rig = Rig::new(3);
    let plan = rig.plan(&release_playbook(ONE_BY_ONE_PAUSED), &[]);
    let events = Events::default();
    let started = Instant::now();
    let report = rig.deploy(&plan, &events, Cancel::never()).await;
    assert!(report.ok, "{report:#?}");
    assert_eq!(report.counts.ok, 3);
    // Three batches, two pauses of 50ms between them.
    assert!(started.elapsed() >= Duration::from_millis(100));
    let b1 = events.position("batch 1/3 h1");
    let p2 = events.position("note pausing 50ms before batch 2");
    let b2 = events.position("batch 2/3 h2");
    let b3 = events.position("batch 3/3 h3");
    assert!(b1 < p2 && p2 < b2 && b2 < b3, "{:#?}", events.lines());
    // The canary's steps all finished before the second batch started.
    assert!(events.position("step h1 done") < b2);
    for h in &rig.hosts {
        assert_eq!(host(&report, h).status(), HostStatus::Ok);
        assert_eq!(rig.current(h), "A");
        assert_eq!(rig.read(h, "log"), "start-A\ndone\n");
        assert!(!rig.locked(h), "{h} still locked");
        assert!(rig.audit(h).contains("result=ok"), "{h}: {}", rig.audit(h));
    }
}

#[tokio::test]
async fn unreachable_host_fails_and_the_others_finish() {
    let rig = Rig::new(3);
    rig.connector
        .inject("h2", Fault::Refuse("connection refused".into()));
    let plan = rig.plan(&release_playbook(ALL_AT_ONCE), &[]);
    let report = rig.deploy(&plan, &Events::default(), Cancel::never()).await;
    assert!(!report.ok);
    let h2 = host(&report, "h2");
    assert_eq!(h2.status(), HostStatus::Failed);
    let error = h2.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("cannot reach h2.local") && error.contains("connection refused"),
        "{error}"
    );
    assert!(!rig.app("h2").exists());
    for h in ["h1", "h3"] {
        assert_eq!(host(&report, h).status(), HostStatus::Ok, "{report:#?}");
        assert_eq!(rig.read(h, "log"), "start-A\ndone\n");
    }
    assert_eq!((report.counts.ok, report.counts.failed), (2, 1));
}

#[tokio::test]
async fn lock_held_elsewhere_refuses_the_whole_run() {
    let rig = Rig::new(3);
    let lock = rig.hold_lock("h2", "alice@laptop");
    let plan = rig.plan(&release_playbook(ALL_AT_ONCE), &[]);
    let report = rig.deploy(&plan, &Events::default(), Cancel::never()).await;
    assert!(!report.ok);
    let conflict = report.lock_conflict.as_deref().unwrap_or_default();
    assert!(
        conflict.contains("h2 is locked by alice@laptop"),
        "{conflict}"
    );
    for h in &rig.hosts {
        let result = host(&report, h);
        assert_eq!(result.status(), HostStatus::NotDeployed, "{report:#?}");
        assert_eq!(
            result.note.as_deref(),
            Some("not deployed: lock held elsewhere")
        );
        assert!(result.steps.is_empty());
        assert_eq!(rig.releases(h), 0, "{h} was changed");
        assert_eq!(rig.read(h, "log"), "");
    }
    // Ours were given back; theirs is untouched.
    assert!(!rig.locked("h1") && !rig.locked("h3"));
    assert!(
        fs::read_to_string(lock.join("info"))
            .unwrap()
            .contains("token=other")
    );
}

#[tokio::test]
async fn the_first_host_takes_its_lock_while_the_others_still_connect() {
    let rig = Rig::new(3);
    let log = Log::default();
    for h in ["h2", "h3"] {
        rig.connector
            .inject(h, Fault::ConnectDelay(Duration::from_millis(300)));
    }
    for h in &rig.hosts {
        rig.log_exec(h, LOCK_SCRIPT, "lock", &log);
    }
    let connected = Arc::clone(&log);
    let events = Events::calling(move |line| {
        if let Some(host) = line.strip_prefix("started ") {
            connected.lock().unwrap().push(format!("connected {host}"));
        }
    });
    let plan = rig.plan(&release_playbook(ALL_AT_ONCE), &[]);
    let report = rig.deploy(&plan, &events, Cancel::never()).await;
    assert!(report.ok, "{report:#?}");
    let log = log.lock().unwrap().clone();
    let at = |line: &str| {
        log.iter()
            .position(|l| l == line)
            .unwrap_or_else(|| panic!("no {line} in {log:?}"))
    };
    assert!(at("lock h1") < at("connected h2"), "{log:?}");
    assert!(at("lock h1") < at("connected h3"), "{log:?}");
    // Each other host asks once it is connected.
    assert!(at("connected h2") < at("lock h2"), "{log:?}");
    assert!(at("connected h3") < at("lock h3"), "{log:?}");
}

#[tokio::test]
async fn no_host_is_asked_for_its_lock_when_the_first_host_is_locked_elsewhere() {
    let rig = Rig::new(3);
    let log = Log::default();
    rig.hold_lock("h1", "alice@laptop");
    // h1's answer comes late: the others, connected long before, still wait for it.
    rig.connector.inject(
        "h1",
        Fault::Delay {
            pattern: LOCK_SCRIPT.into(),
            delay: Duration::from_millis(200),
        },
    );
    for h in ["h2", "h3"] {
        rig.log_exec(h, LOCK_SCRIPT, "lock", &log);
    }
    let plan = rig.plan(&release_playbook(ALL_AT_ONCE), &[]);
    let report = rig.deploy(&plan, &Events::default(), Cancel::never()).await;
    assert!(!report.ok);
    let conflict = report.lock_conflict.as_deref().unwrap_or_default();
    assert!(
        conflict.contains("h1 is locked by alice@laptop"),
        "{conflict}"
    );
    assert_eq!(*log.lock().unwrap(), Vec::<String>::new());
    for h in ["h2", "h3"] {
        assert!(!rig.locked(h), "{h} locked");
        assert_eq!(rig.releases(h), 0, "{h} was changed");
    }
}

#[tokio::test]
async fn an_unreachable_first_host_leaves_the_lock_to_the_next_one() {
    let rig = Rig::new(3);
    let log = Log::default();
    rig.connector
        .inject("h1", Fault::Refuse("connection refused".into()));
    rig.log_exec("h2", LOCK_SCRIPT, "lock", &log);
    rig.log_exec("h3", LOCK_SCRIPT, "lock", &log);
    // h2 now goes first and alone: h3 is asked only after h2 answered.
    rig.connector.inject(
        "h2",
        Fault::Delay {
            pattern: LOCK_SCRIPT.into(),
            delay: Duration::from_millis(200),
        },
    );
    let (h3_log, h2_dir) = (Arc::clone(&log), rig.app("h2").join(".dropship/lock"));
    let hook = Arc::new(move |_: &str| {
        let h2_locked = h2_dir.exists();
        h3_log
            .lock()
            .unwrap()
            .push(format!("h2 locked: {h2_locked}"));
    });
    rig.connector.inject(
        "h3",
        Fault::OnExec {
            pattern: LOCK_SCRIPT.into(),
            hook,
        },
    );
    let plan = rig.plan(&release_playbook(ALL_AT_ONCE), &[]);
    let report = rig.deploy(&plan, &Events::default(), Cancel::never()).await;
    assert_eq!(host(&report, "h1").status(), HostStatus::Failed);
    for h in ["h2", "h3"] {
        assert_eq!(host(&report, h).status(), HostStatus::Ok, "{report:#?}");
        assert!(!rig.locked(h), "{h} still locked");
    }
    let log = log.lock().unwrap().clone();
    assert_eq!(log, ["lock h2", "lock h3", "h2 locked: true"], "{log:?}");
}

#[tokio::test]
async fn a_hundred_hosts_with_eight_handshakes_each_connect_and_lock_once() {
    let rig = Rig::new(100);
    let connects = Log::default();
    let locks = Log::default();
    for h in &rig.hosts {
        let (log, host) = (Arc::clone(&connects), h.clone());
        let hook = Arc::new(move |_: &str| log.lock().unwrap().push(host.clone()));
        rig.connector.inject(h, Fault::OnConnect(hook));
        rig.connector
            .inject(h, Fault::ConnectDelay(Duration::from_millis(5)));
        rig.log_exec(h, LOCK_SCRIPT, "lock", &locks);
    }
    let plan = rig.plan(&plain_playbook("echo second >> {{ app_dir }}/log"), &[]);
    let report = rig.deploy_with_handshakes(&plan, 8).await;
    assert!(report.ok, "{report:#?}");
    assert_eq!(report.counts.ok, 100);
    let mut connected = connects.lock().unwrap().clone();
    connected.sort();
    let mut hosts = rig.hosts.clone();
    hosts.sort();
    assert_eq!(connected, hosts, "every host connected exactly once");
    let mut locked = locks.lock().unwrap().clone();
    locked.sort();
    let mut wanted: Vec<String> = hosts.iter().map(|h| format!("lock {h}")).collect();
    wanted.sort();
    assert_eq!(locked, wanted, "every host asked for its lock exactly once");
    // The first host asked before any other.
    assert_eq!(locks.lock().unwrap()[0], "lock h1");
    for h in &rig.hosts {
        assert_eq!(rig.read(h, "log"), "first\nsecond\nthird\n", "{h}");
        assert!(!rig.locked(h), "{h} still locked");
    }
}

#[tokio::test]
async fn halts_later_batches_when_failures_exceed_max_failures() {
    let rig = Rig::new(3);
    fs::create_dir_all(rig.app("h1")).unwrap();
    fs::write(rig.app("h1").join("unhealthy-A"), "").unwrap();
    let plan = rig.plan(&release_playbook(ONE_BY_ONE_HALT), &[]);
    let events = Events::default();
    let report = rig.deploy(&plan, &events, Cancel::never()).await;
    assert!(!report.ok);
    let halted = report.halted.as_deref().unwrap_or_default();
    assert!(
        halted.contains("1 of 3 host(s) failed by batch 1/3"),
        "{halted}"
    );
    assert_eq!(outcome_of(&report, "h1", "healthy"), Outcome::Failed);
    assert_eq!(outcome_of(&report, "h1", "done"), Outcome::Skipped);
    assert_eq!(rig.read("h1", "log"), "start-A\n");
    for h in ["h2", "h3"] {
        let result = host(&report, h);
        assert_eq!(result.status(), HostStatus::NotDeployed);
        assert_eq!(result.note.as_deref(), Some("not deployed: rollout halted"));
        assert!(result.steps.iter().all(|s| s.outcome == Outcome::Skipped));
        assert_eq!(rig.releases(h), 0);
        assert!(!rig.locked(h));
    }
    assert!(!events.lines().iter().any(|l| l.starts_with("batch 2/")));
    // The halt policy leaves the failed canary as it is (no rollback).
    assert_eq!(host(&report, "h1").rolled_back, None);
    rig.assert_audit("h1", "failed at healthy");
}

#[tokio::test]
async fn failures_within_max_failures_do_not_halt() {
    let rig = Rig::new(3);
    fs::create_dir_all(rig.app("h2")).unwrap();
    fs::write(rig.app("h2").join("unhealthy-A"), "").unwrap();
    let plan = rig.plan(&release_playbook(ONE_BY_ONE_TOLERANT), &[]);
    let events = Events::default();
    let report = rig.deploy(&plan, &events, Cancel::never()).await;
    assert!(!report.ok, "a failed host fails the run");
    assert_eq!(report.halted, None);
    assert_eq!(host(&report, "h2").status(), HostStatus::Failed);
    for h in ["h1", "h3"] {
        assert_eq!(host(&report, h).status(), HostStatus::Ok, "{report:#?}");
        assert_eq!(rig.read(h, "log"), "start-A\ndone\n");
    }
    events.position("batch 3/3 h3");
}

/// A host whose step fails on it: `second` fails where `<app_dir>/fail` exists.
const FAILS_WHERE_MARKED: &str = "if [ -f {{ app_dir }}/fail ]; then echo nope >&2; exit 3; fi; echo second >> {{ app_dir }}/log";

#[tokio::test]
async fn a_failed_host_runs_nothing_more() {
    let rig = Rig::new(2);
    fs::create_dir_all(rig.app("h1")).unwrap();
    fs::write(rig.app("h1").join("fail"), "").unwrap();
    let plan = rig.plan(&plain_playbook(FAILS_WHERE_MARKED), &[]);
    let report = rig.deploy(&plan, &Events::default(), Cancel::never()).await;
    assert_eq!(
        steps(&report, "h1"),
        [
            ("first".to_string(), Outcome::Changed),
            ("second".to_string(), Outcome::Failed),
            ("third".to_string(), Outcome::Skipped),
        ]
    );
    assert!(detail_of(&report, "h1", "second").contains("nope"));
    assert_eq!(detail_of(&report, "h1", "third"), "after a failed step");
    assert_eq!(rig.read("h1", "log"), "first\n");
    assert_eq!(host(&report, "h2").status(), HostStatus::Ok);
    assert_eq!(rig.read("h2", "log"), "first\nsecond\nthird\n");
    rig.assert_audit("h1", "result=failed at second");
    assert!(!rig.locked("h1") && !rig.locked("h2"));
}

/// Records every script run on the host.
fn record_scripts(rig: &Rig, host: &str) -> Arc<Mutex<Vec<String>>> {
    let scripts = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&scripts);
    rig.connector.inject(
        host,
        Fault::OnExec {
            pattern: String::new(),
            hook: Arc::new(move |script: &str| kept.lock().unwrap().push(script.to_string())),
        },
    );
    scripts
}

#[tokio::test]
async fn the_last_session_releases_the_lock_in_its_epilogue() {
    let rig = Rig::new(2);
    fs::create_dir_all(rig.app("h2")).unwrap();
    fs::write(rig.app("h2").join("fail"), "").unwrap();
    let recorded = [record_scripts(&rig, "h1"), record_scripts(&rig, "h2")];
    let plan = rig.plan(&plain_playbook(FAILS_WHERE_MARKED), &[]);
    let report = rig.deploy(&plan, &Events::default(), Cancel::never()).await;
    assert_eq!(host(&report, "h1").status(), HostStatus::Ok);
    assert_eq!(host(&report, "h2").status(), HostStatus::Failed);
    // Two commands per host, failed or not: the lock, then one driver running every step
    // and, at its end, the audit line and the unlock. No release command after it.
    for (h, scripts) in ["h1", "h2"].iter().zip(&recorded) {
        let scripts = scripts.lock().unwrap().clone();
        assert_eq!(scripts.len(), 2, "{h}: {scripts:#?}");
        assert!(scripts[0].contains("lock:acquired"), "{h}: {}", scripts[0]);
        assert!(
            scripts[1].contains("@@dropship:") && scripts[1].contains("audit.log"),
            "{h}: {}",
            scripts[1]
        );
        assert!(!rig.locked(h), "{h} still locked");
    }
    rig.assert_audit("h1", "result=ok");
    rig.assert_audit("h2", "result=failed at second");
}

#[tokio::test]
async fn a_host_done_with_its_lock_given_back_is_disconnected_while_the_others_still_work() {
    let rig = Rig::new(2);
    let log: Log = Arc::default();
    let closed = Arc::clone(&log);
    rig.connector.inject(
        "h1",
        Fault::OnClose(Arc::new(move |host: &str| {
            closed.lock().unwrap().push(format!("closed {host}"))
        })),
    );
    // h2's last step starts only well after h1 is done.
    rig.connector.inject(
        "h2",
        Fault::Delay {
            pattern: "@@dropship:".into(),
            delay: Duration::from_millis(300),
        },
    );
    let events_log = Arc::clone(&log);
    let events = Events::calling(move |line| {
        if line.starts_with("step h2 third") {
            events_log.lock().unwrap().push(line.to_string());
        }
    });
    let plan = rig.plan(&plain_playbook("true"), &[]);
    let report = rig.deploy(&plan, &events, Cancel::never()).await;
    assert!(report.ok, "{:#?}", report.hosts);
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log.first().map(String::as_str),
        Some("closed h1"),
        "h1 was not disconnected before h2 finished: {log:#?}"
    );
    assert!(!rig.locked("h1") && !rig.locked("h2"));
}

#[tokio::test]
async fn a_connection_dropped_mid_step_fails_the_host() {
    let rig = Rig::new(2);
    rig.connector
        .inject("h1", Fault::DropOnOutput("half-way".into()));
    let second = "echo half-way; sleep 0.2; echo second >> {{ app_dir }}/log";
    let plan = rig.plan(&plain_playbook(second), &[]);
    let report = rig.deploy(&plan, &Events::default(), Cancel::never()).await;
    assert_eq!(host(&report, "h1").status(), HostStatus::Failed);
    assert_eq!(outcome_of(&report, "h1", "first"), Outcome::Changed);
    assert_eq!(outcome_of(&report, "h1", "second"), Outcome::Failed);
    assert_ne!(outcome_of(&report, "h1", "third"), Outcome::Changed);
    let detail = detail_of(&report, "h1", "second");
    assert!(detail.contains("connection lost"), "{detail}");
    // The command was stopped with the connection; nothing after it ran.
    assert_eq!(rig.read("h1", "log"), "first\n");
    // Nobody could release h1's lock: it stays, naming this run.
    assert!(rig.locked("h1"));
    assert_eq!(host(&report, "h2").status(), HostStatus::Ok);
    assert!(!rig.locked("h2"));
}

#[tokio::test]
async fn a_lock_that_cannot_be_taken_fails_that_host_only() {
    let rig = Rig::new(3);
    rig.connector.inject(
        "h2",
        Fault::Exit {
            pattern: "lock:acquired".into(),
            code: 1,
        },
    );
    let plan = rig.plan(&release_playbook(ALL_AT_ONCE), &[]);
    let report = rig.deploy(&plan, &Events::default(), Cancel::never()).await;
    let h2 = host(&report, "h2");
    assert_eq!(h2.status(), HostStatus::Failed);
    let error = h2.error.as_deref().unwrap_or_default();
    assert!(error.contains("cannot take the lock"), "{error}");
    assert!(h2.steps.iter().all(|s| s.outcome == Outcome::Skipped));
    assert_eq!(rig.releases("h2"), 0);
    for h in ["h1", "h3"] {
        assert_eq!(host(&report, h).status(), HostStatus::Ok, "{report:#?}");
        assert_eq!(rig.current(h), "A");
    }
}

#[tokio::test]
async fn a_failing_batch_is_rolled_back_to_its_previous_release() {
    let rig = Rig::new(3);
    let first = rig.deployed(CANARY_BATCH_2_ROLLBACK, "A").await;
    let a = first.release.clone().unwrap();
    fs::write(rig.app("h3").join("unhealthy-B"), "").unwrap();
    let plan = rig.plan(
        &release_playbook(CANARY_BATCH_2_ROLLBACK),
        &[("version", "B")],
    );
    let report = rig.deploy(&plan, &Events::default(), Cancel::never()).await;
    assert!(!report.ok);
    assert!(report.halted.is_some());
    // The canary passed and keeps B; the second batch (h2 and h3) goes back to A, h2 too.
    assert_eq!(host(&report, "h1").status(), HostStatus::Ok);
    assert_eq!(rig.current("h1"), "B");
    assert_eq!(host(&report, "h3").status(), HostStatus::Failed);
    for h in ["h2", "h3"] {
        assert_eq!(host(&report, h).rolled_back.as_deref(), Some(a.as_str()));
        assert_eq!(rig.current(h), "A", "{h}");
        assert_eq!(
            outcome_of(&report, h, &format!("rollback: activate {a}")),
            Outcome::Changed
        );
        assert!(!rig.locked(h));
    }
    assert_eq!(
        rig.read("h2", "log"),
        "start-A\ndone\nstart-B\ndone\nstart-A\ndone\n"
    );
    assert_eq!(
        rig.read("h3", "log"),
        "start-A\ndone\nstart-B\nstart-A\ndone\n"
    );
    rig.assert_audit("h3", "rolled back to");
}

#[tokio::test]
async fn interrupted_while_connecting_nothing_is_deployed() {
    let rig = Rig::new(3);
    let cancel = interrupt_on(&rig, "h2", Fault::OnConnect);
    let plan = rig.plan(&release_playbook(ALL_AT_ONCE), &[]);
    let report = rig.deploy(&plan, &Events::default(), cancel).await;
    assert_interrupted_before_any_step(&rig, &report);
}

#[tokio::test]
async fn interrupted_while_taking_locks_nothing_is_deployed() {
    let rig = Rig::new(3);
    let cancel = interrupt_on(&rig, "h1", |hook| Fault::OnExec {
        pattern: "lock:acquired".into(),
        hook,
    });
    let plan = rig.plan(&release_playbook(ALL_AT_ONCE), &[]);
    let report = rig.deploy(&plan, &Events::default(), cancel).await;
    assert_interrupted_before_any_step(&rig, &report);
}

#[track_caller]
fn assert_interrupted_before_any_step(rig: &Rig, report: &RunReport) {
    assert!(report.interrupted && !report.ok);
    for h in &rig.hosts {
        let result = host(report, h);
        assert_eq!(result.status(), HostStatus::NotDeployed, "{report:#?}");
        assert_eq!(result.note.as_deref(), Some("interrupted"));
        assert!(result.steps.iter().all(|s| s.outcome == Outcome::Skipped));
        assert_eq!(rig.releases(h), 0);
        assert!(!rig.locked(h), "{h} still locked");
        rig.assert_audit(h, "result=interrupted");
    }
}

#[tokio::test]
async fn interrupted_while_waiting_for_a_lock_the_run_ends_at_once() {
    let rig = Rig::new(2);
    let lock = rig.hold_lock("h2", "bob@ci");
    let (cancel, handle) = cancel();
    let events = Events::calling(move |line| {
        if line.starts_with("note waiting for the lock") {
            handle.interrupt();
        }
    });
    let plan = rig.plan(&release_playbook(ALL_AT_ONCE), &[]);
    let started = Instant::now();
    let report = rig
        .deploy_waiting(&plan, &events, cancel, Some(Duration::from_secs(30)))
        .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(report.interrupted);
    assert!(report.lock_conflict.is_some());
    for h in &rig.hosts {
        assert!(host(&report, h).steps.is_empty());
        assert_eq!(rig.releases(h), 0);
    }
    assert!(!rig.locked("h1"));
    assert!(lock.join("info").exists());
}

#[tokio::test]
async fn interrupted_during_a_step_it_finishes_and_the_rest_is_skipped() {
    let rig = Rig::new(2);
    let cancel = interrupt_on(&rig, "h1", |hook| Fault::OnOutput {
        marker: "in-second".into(),
        hook,
    });
    // The stop request reaches the host while the step sleeps.
    let second = "echo in-second; sleep 0.3; echo second >> {{ app_dir }}/log";
    let plan = rig.plan(&plain_playbook(second), &[]);
    let report = rig.deploy(&plan, &Events::default(), cancel).await;
    assert!(report.interrupted);
    // The running step went on to its end; the next one never started.
    assert_eq!(rig.read("h1", "log"), "first\nsecond\n");
    assert_eq!(outcome_of(&report, "h1", "second"), Outcome::Changed);
    assert_eq!(outcome_of(&report, "h1", "third"), Outcome::Skipped);
    assert_eq!(detail_of(&report, "h1", "third"), "interrupted");
    // h2 had not started its steps (or was running one of them): it ran no step after.
    assert!(!rig.read("h2", "log").contains("third"));
    for h in &rig.hosts {
        assert_eq!(host(&report, h).status(), HostStatus::NotDeployed);
        assert!(!rig.locked(h));
        rig.assert_audit(h, "result=interrupted");
    }
}

#[tokio::test]
async fn aborted_during_a_step_it_is_stopped_on_the_host() {
    let rig = Rig::new(1);
    let cancel = abort_on(&rig, "h1", Duration::ZERO, |hook| Fault::OnOutput {
        marker: "in-second".into(),
        hook,
    });
    let second = "echo in-second; sleep 5; echo second >> {{ app_dir }}/log";
    let plan = rig.plan(&plain_playbook(second), &[]);
    let started = Instant::now();
    let report = rig.deploy(&plan, &Events::default(), cancel).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(report.interrupted);
    assert_eq!(rig.read("h1", "log"), "first\n");
    assert_eq!(outcome_of(&report, "h1", "second"), Outcome::Failed);
    assert_eq!(outcome_of(&report, "h1", "third"), Outcome::Skipped);
    assert!(!rig.locked("h1"));
}

#[tokio::test]
async fn interrupted_during_the_health_check_it_ends_and_the_rest_is_skipped() {
    let rig = Rig::new(2);
    let cancel = interrupt_on(&rig, "h1", |hook| Fault::OnExec {
        pattern: "unhealthy-".into(),
        hook,
    });
    let plan = rig.plan(&release_playbook(ALL_AT_ONCE), &[]);
    let report = rig.deploy(&plan, &Events::default(), cancel).await;
    assert!(report.interrupted);
    let h1 = host(&report, "h1");
    assert_eq!(outcome_of(&report, "h1", "healthy"), Outcome::Ok);
    assert_eq!(outcome_of(&report, "h1", "done"), Outcome::Skipped);
    assert_eq!(h1.note.as_deref(), Some("interrupted"));
    assert_eq!(rig.read("h1", "log"), "start-A\n");
    // Activated before the interrupt: the new release stays current.
    assert_eq!(rig.current("h1"), "A");
    assert!(!rig.locked("h1") && !rig.locked("h2"));
}

#[tokio::test]
async fn interrupted_during_a_rollout_pause_later_batches_are_skipped() {
    let rig = Rig::new(3);
    let (cancel, handle) = cancel();
    let events = Events::calling(move |line| {
        if line.starts_with("note pausing") {
            handle.interrupt();
        }
    });
    let plan = rig.plan(&release_playbook(ONE_BY_ONE_PAUSED), &[]);
    let report = rig.deploy(&plan, &events, cancel).await;
    assert!(report.interrupted);
    assert_eq!(host(&report, "h1").status(), HostStatus::Ok);
    assert_eq!(rig.current("h1"), "A");
    for h in ["h2", "h3"] {
        let result = host(&report, h);
        assert_eq!(result.status(), HostStatus::NotDeployed);
        assert_eq!(result.note.as_deref(), Some("interrupted"));
        assert_eq!(rig.releases(h), 0);
        assert!(!rig.locked(h));
    }
    assert!(!events.lines().iter().any(|l| l.starts_with("batch 2/")));
}

#[tokio::test]
async fn interrupted_during_a_rollback_the_rollback_still_finishes() {
    let rig = Rig::new(3);
    let a = rig
        .deployed(CANARY_BATCH_2_ROLLBACK, "A")
        .await
        .release
        .unwrap();
    fs::write(rig.app("h3").join("unhealthy-B"), "").unwrap();
    let (cancel, handle) = cancel();
    // The rollback's own activation names release A; the deploy's names B.
    rig.connector.inject(
        "h2",
        Fault::OnExec {
            pattern: format!("releases/{a}"),
            hook: Arc::new(move |_: &str| handle.interrupt()),
        },
    );
    let plan = rig.plan(
        &release_playbook(CANARY_BATCH_2_ROLLBACK),
        &[("version", "B")],
    );
    let report = rig.deploy(&plan, &Events::default(), cancel).await;
    assert!(report.interrupted);
    for h in ["h2", "h3"] {
        assert_eq!(host(&report, h).rolled_back.as_deref(), Some(a.as_str()));
        assert_eq!(rig.current(h), "A");
        assert_eq!(outcome_of(&report, h, "rollback: done"), Outcome::Changed);
        assert!(rig.read(h, "log").ends_with("start-A\ndone\n"), "{h}");
        assert!(!rig.locked(h));
    }
}

#[tokio::test]
async fn rollback_returns_every_host_to_the_previous_release() {
    let rig = Rig::new(2);
    let a = rig.deployed(ALL_AT_ONCE, "A").await.release.unwrap();
    rig.deployed(ALL_AT_ONCE, "B").await;
    let plan = rig.plan(&release_playbook(ALL_AT_ONCE), &[("version", "B")]);
    let report = fleet::rollback(
        &rig.connector,
        &plan,
        None,
        ExecOptions::default(),
        &LockOptions { wait: None },
        &Events::default(),
        Cancel::never(),
    )
    .await;
    assert!(report.ok, "{report:#?}");
    for h in &rig.hosts {
        assert_eq!(rig.current(h), "A");
        assert_eq!(host(&report, h).rolled_back.as_deref(), Some(a.as_str()));
        assert_eq!(
            steps(&report, h),
            [
                (format!("rollback: activate {a}"), Outcome::Changed),
                ("rollback: start".to_string(), Outcome::Changed),
                ("rollback: healthy".to_string(), Outcome::Ok),
                ("rollback: done".to_string(), Outcome::Changed),
                // Implied by [release]: A and B are within keep.
                ("rollback: prune releases".to_string(), Outcome::Ok),
                // Implied by [release]: nothing to remove (the releases name no image).
                ("rollback: prune images".to_string(), Outcome::Ok),
            ]
        );
        assert_eq!(
            rig.read(h, "log"),
            "start-A\ndone\nstart-B\ndone\nstart-A\ndone\n"
        );
        assert!(!rig.locked(h));
        rig.assert_audit(h, "rollback");
    }
}

#[tokio::test]
async fn rollback_to_a_release_a_host_lacks_fails_that_host() {
    let rig = Rig::new(2);
    let a = rig.deployed(ALL_AT_ONCE, "A").await.release.unwrap();
    rig.deployed(ALL_AT_ONCE, "B").await;
    // h2 lost release A.
    let on_h2 = rig.app("h2").join("releases").join(&a);
    fs::remove_dir_all(on_h2).unwrap();
    let plan = rig.plan(&release_playbook(ALL_AT_ONCE), &[("version", "B")]);
    let report = fleet::rollback(
        &rig.connector,
        &plan,
        Some(&a),
        ExecOptions::default(),
        &LockOptions { wait: None },
        &Events::default(),
        Cancel::never(),
    )
    .await;
    assert!(!report.ok);
    assert_eq!(host(&report, "h1").status(), HostStatus::Ok);
    assert_eq!(rig.current("h1"), "A");
    let h2 = host(&report, "h2");
    assert_eq!(h2.status(), HostStatus::Failed);
    let error = h2.error.as_deref().unwrap_or_default();
    assert!(
        error.contains(&format!("release {a} is not on this host")),
        "{error}"
    );
    assert_eq!(rig.current("h2"), "B");
    assert!(!rig.locked("h1") && !rig.locked("h2"));
}

#[tokio::test]
async fn adhoc_commands_run_on_every_reachable_host_without_a_lock() {
    let rig = Rig::new(3);
    rig.connector
        .inject("h3", Fault::Refuse("no route to host".into()));
    let targets = plan::target_hosts(&rig.inventory(), "all", None).unwrap();
    let command = "echo hello > greeting; echo said-hello";
    let action = dropship::plan::Action::Run(dropship::steps::run::Command::plain(command));
    let plan = plan::adhoc(targets, command, action);
    let report = fleet::adhoc(
        "exec",
        fleet::Adhoc::Steps,
        &rig.connector,
        &plan,
        ExecOptions::default(),
        &Events::default(),
        Cancel::never(),
    )
    .await;
    for h in ["h1", "h2"] {
        assert_eq!(host(&report, h).status(), HostStatus::Ok, "{report:#?}");
        let output = host(&report, h).steps[0].output.clone().unwrap_or_default();
        assert!(output.contains("said-hello"), "{output}");
        // In the host's home, and no lock or audit log was made there.
        let home = rig.connector.host_dir(h);
        assert_eq!(
            fs::read_to_string(home.join("greeting")).unwrap(),
            "hello\n"
        );
        assert!(!home.join(".dropship").exists());
    }
    assert_eq!(host(&report, "h3").status(), HostStatus::Failed);
    assert_eq!((report.counts.ok, report.counts.failed), (2, 1));
}

/// A plain playbook whose health check asks `http://127.0.0.1:8080/health` from the host.
const URL_CHECKED: &str = r#"name = "Web"
app = "web"
hosts = "web"

[[steps]]
name = "start"
run = "echo start >> {{ app_dir }}/log"

[[steps]]
name = "healthy"
health = { url = "http://127.0.0.1:8080/health", contains = "ok", timeout = "200ms", interval = "100ms" }

[[steps]]
name = "done"
run = "echo done >> {{ app_dir }}/log"
"#;

#[tokio::test]
async fn url_health_checks_go_through_the_transport() {
    let rig = Rig::new(3);
    let answer = |body: &str| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    rig.connector
        .inject("h1", Fault::Tcp(Tcp::Reply(answer("all ok").into_bytes())));
    rig.connector.inject(
        "h2",
        Fault::Tcp(Tcp::Reply(answer("starting").into_bytes())),
    );
    // h3 forwards nothing.
    let plan = rig.plan(URL_CHECKED, &[]);
    let report = rig.deploy(&plan, &Events::default(), Cancel::never()).await;
    assert_eq!(host(&report, "h1").status(), HostStatus::Ok, "{report:#?}");
    assert_eq!(rig.read("h1", "log"), "start\ndone\n");
    for h in ["h2", "h3"] {
        assert_eq!(outcome_of(&report, h, "healthy"), Outcome::Failed);
        assert_eq!(outcome_of(&report, h, "done"), Outcome::Skipped);
        assert_eq!(rig.read(h, "log"), "start\n");
    }
    let refused = detail_of(&report, "h3", "healthy");
    assert!(
        refused.contains("cannot connect to 127.0.0.1:8080 from the host"),
        "{refused}"
    );
}

#[tokio::test]
async fn aborted_during_the_health_check_it_fails_and_nothing_follows() {
    let rig = Rig::new(1);
    // The check's command is slow to start; the run is aborted meanwhile.
    let cancel = abort_on(&rig, "h1", Duration::ZERO, |hook| Fault::OnExec {
        pattern: "unhealthy-".into(),
        hook,
    });
    rig.connector.inject(
        "h1",
        Fault::Delay {
            pattern: "unhealthy-".into(),
            delay: Duration::from_secs(5),
        },
    );
    let plan = rig.plan(&release_playbook(ALL_AT_ONCE), &[]);
    let started = Instant::now();
    let report = rig.deploy(&plan, &Events::default(), cancel).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(report.interrupted);
    assert_eq!(outcome_of(&report, "h1", "healthy"), Outcome::Failed);
    assert!(detail_of(&report, "h1", "healthy").contains("aborted"));
    assert_eq!(outcome_of(&report, "h1", "done"), Outcome::Skipped);
    assert_eq!(rig.read("h1", "log"), "start-A\n");
    assert!(!rig.locked("h1"));
}

#[tokio::test]
async fn a_connection_dropped_while_locking_fails_that_host_only() {
    let rig = Rig::new(3);
    // The lock script's first output ends the connection.
    rig.connector.inject("h2", Fault::DropAfterBytes(3));
    let plan = rig.plan(&release_playbook(ALL_AT_ONCE), &[]);
    let report = rig.deploy(&plan, &Events::default(), Cancel::never()).await;
    let h2 = host(&report, "h2");
    assert_eq!(h2.status(), HostStatus::Failed);
    let error = h2.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("cannot take the lock") && error.contains("connection lost"),
        "{error}"
    );
    assert_eq!(rig.releases("h2"), 0);
    // The lock was made before the connection went: it stays, naming this run.
    assert!(rig.locked("h2"));
    for h in ["h1", "h3"] {
        assert_eq!(host(&report, h).status(), HostStatus::Ok);
        assert_eq!(rig.current(h), "A");
        assert!(!rig.locked(h));
    }
}

// The fork gate: `--forks` bounds every call that talks to a host, not only the steps.

/// How long every command on a timed host is held back before it runs: with one fork, no two
/// commands may start closer together than this.
const HELD: Duration = Duration::from_millis(20);

/// Records when each command starts on every host of `rig` (and which), then holds it back
/// `HELD`.
fn time_every_command(rig: &Rig) -> Arc<Mutex<Vec<(Instant, String)>>> {
    let starts = Arc::new(Mutex::new(Vec::new()));
    for h in &rig.hosts {
        let kept = Arc::clone(&starts);
        let name = h.clone();
        rig.connector.inject(
            h,
            Fault::OnExec {
                pattern: String::new(),
                hook: Arc::new(move |script: &str| {
                    let what = format!("{name}: {}", script.lines().next().unwrap_or(""));
                    kept.lock().unwrap().push((Instant::now(), what));
                }),
            },
        );
        rig.connector.inject(
            h,
            Fault::Delay {
                pattern: String::new(),
                delay: HELD,
            },
        );
    }
    starts
}

/// The starts closer together than `HELD`: two commands were in flight at once.
fn overlapping(starts: &Mutex<Vec<(Instant, String)>>) -> Vec<(String, String)> {
    let mut starts = starts.lock().unwrap().clone();
    starts.sort_by_key(|(at, _)| *at);
    starts
        .windows(2)
        .filter(|w| w[1].0 - w[0].0 < HELD)
        .map(|w| (w[0].1.clone(), w[1].1.clone()))
        .collect()
}

/// `release_playbook` with a `check` command in place of the health check (timed commands
/// make health checks' timeouts a matter of the machine's load): it fails while
/// `<app_dir>/unhealthy-<version>` exists.
fn release_playbook_checked(rollout: &str) -> String {
    let playbook = release_playbook(rollout);
    let health = playbook
        .lines()
        .find(|l| l.starts_with("health = "))
        .unwrap();
    playbook.replace(
        health,
        "run = \"test ! -f {{ app_dir }}/unhealthy-$(cat {{ app_dir }}/current/version.txt)\"",
    )
}

/// Deploys `version` of `release_playbook_checked(rollout)` with `forks` forks.
async fn deploy_checked(rig: &Rig, rollout: &str, version: &str, forks: usize) -> RunReport {
    let plan = rig.plan(&release_playbook_checked(rollout), &[("version", version)]);
    let options = ExecOptions {
        forks,
        ..ExecOptions::default()
    };
    let lock = LockOptions { wait: None };
    fleet::deploy(
        &rig.connector,
        &plan,
        options,
        &lock,
        &Events::default(),
        Cancel::never(),
    )
    .await
}

fn forks(forks: usize) -> ExecOptions {
    ExecOptions {
        forks,
        ..ExecOptions::default()
    }
}

#[tokio::test]
async fn with_one_fork_taking_and_releasing_locks_talks_to_one_host_at_a_time() {
    let rig = Rig::new(4);
    rig.hold_lock("h4", "alice@laptop");
    let starts = time_every_command(&rig);
    let plan = rig.plan(&plain_playbook("echo second"), &[]);
    let lock = LockOptions { wait: None };
    let events = Events::default();
    let report = fleet::deploy(
        &rig.connector,
        &plan,
        forks(1),
        &lock,
        &events,
        Cancel::never(),
    )
    .await;
    assert!(report.lock_conflict.is_some(), "{report:#?}");
    // The lock taken on h1, tried on h2..h4, given back on h1..h3: seven commands, one by one.
    assert_eq!(
        starts.lock().unwrap().len(),
        7,
        "{:#?}",
        starts.lock().unwrap()
    );
    assert_eq!(overlapping(&starts), vec![]);
    assert!(!rig.locked("h1") && !rig.locked("h2") && !rig.locked("h3"));

    // The same run with forks to spare tries h2..h4 at once.
    let rig = Rig::new(4);
    rig.hold_lock("h4", "alice@laptop");
    let starts = time_every_command(&rig);
    let plan = rig.plan(&plain_playbook("echo second"), &[]);
    fleet::deploy(
        &rig.connector,
        &plan,
        forks(4),
        &lock,
        &events,
        Cancel::never(),
    )
    .await;
    assert!(!overlapping(&starts).is_empty());
}

#[tokio::test]
async fn with_one_fork_a_rolled_back_batch_and_its_audit_go_one_host_at_a_time() {
    let rig = Rig::new(3);
    let rollout = "[rollout]\nmax_failures = 0\non_failure = \"rollback\"\n";
    let first = deploy_checked(&rig, rollout, "A", 64).await;
    assert!(first.ok, "{first:#?}");
    fs::write(rig.app("h3").join("unhealthy-B"), "").unwrap();
    let starts = time_every_command(&rig);
    let report = deploy_checked(&rig, rollout, "B", 1).await;
    assert!(report.halted.is_some(), "{report:#?}");
    for h in &rig.hosts {
        assert_eq!(rig.current(h), "A", "{h}");
        assert!(host(&report, h).rolled_back.is_some(), "{h}");
        assert!(!rig.locked(h), "{h}");
        rig.assert_audit(h, "rolled back to");
    }
    assert_eq!(overlapping(&starts), vec![]);
}

#[tokio::test]
async fn with_one_fork_dropship_rollback_lists_and_rolls_back_one_host_at_a_time() {
    let rig = Rig::new(3);
    for version in ["A", "B"] {
        let report = deploy_checked(&rig, ALL_AT_ONCE, version, 64).await;
        assert!(report.ok, "{report:#?}");
    }
    let starts = time_every_command(&rig);
    let plan = rig.plan(&release_playbook_checked(ALL_AT_ONCE), &[]);
    let lock = LockOptions { wait: None };
    let report = fleet::rollback(
        &rig.connector,
        &plan,
        None,
        forks(1),
        &lock,
        &Events::default(),
        Cancel::never(),
    )
    .await;
    assert!(report.ok, "{report:#?}");
    for h in &rig.hosts {
        assert_eq!(rig.current(h), "A", "{h}");
    }
    assert_eq!(overlapping(&starts), vec![]);
}
