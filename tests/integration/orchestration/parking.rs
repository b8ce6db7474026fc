//! Parked hosts: past `held_connections`, a host that took its lock closes its connection
//! (the lock stays on the host) and connects again at its turn, or to give its lock back.

use super::*;

/// `deploy` holding at most `held` connections while it waits for every lock; counts each
/// host's connects in `connects`.
async fn deploy_holding(rig: &Rig, plan: &Plan, rollout_events: &Events, held: usize) -> RunReport {
    let exec = ExecOptions {
        held_connections: held,
        ..ExecOptions::default()
    };
    let lock = LockOptions { wait: None };
    fleet::deploy(
        &rig.connector,
        plan,
        exec,
        &lock,
        rollout_events,
        Cancel::never(),
    )
    .await
}

/// Counts every connect to each host of the rig.
fn count_connects(rig: &Rig) -> Arc<Mutex<Vec<String>>> {
    let connects: Log = Arc::default();
    for h in &rig.hosts {
        let log = Arc::clone(&connects);
        rig.connector.inject(
            h,
            Fault::OnConnect(Arc::new(move |host: &str| {
                log.lock().unwrap().push(host.to_string())
            })),
        );
    }
    connects
}

fn connects_of(connects: &Log, host: &str) -> usize {
    connects
        .lock()
        .unwrap()
        .iter()
        .filter(|h| *h == host)
        .count()
}

#[tokio::test]
async fn hosts_past_the_held_connections_park_with_their_lock_and_still_deploy() {
    let rig = Rig::new(6);
    let connects = count_connects(&rig);
    let plan = rig.plan(&plain_playbook("echo second >> {{ app_dir }}/log"), &[]);
    let report = deploy_holding(&rig, &plan, &Events::default(), 2).await;
    assert!(report.ok, "{:#?}", report.hosts);
    // The first host and the next to take its lock keep their connection; the four others
    // (whichever locked last) connect again at their turn.
    assert_eq!(connects_of(&connects, "h1"), 1);
    let mut counts: Vec<usize> = rig
        .hosts
        .iter()
        .map(|h| connects_of(&connects, h))
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, [1, 1, 2, 2, 2, 2], "{:?}", connects.lock().unwrap());
    for h in &rig.hosts {
        assert_eq!(rig.read(h, "log"), "first\nsecond\nthird\n", "{h}");
        assert!(!rig.locked(h), "{h} still locked");
        rig.assert_audit(h, "result=ok");
    }
}

#[tokio::test]
async fn a_parked_host_whose_batch_never_comes_gives_its_lock_back() {
    let rig = Rig::new(4);
    let connects = count_connects(&rig);
    fs::create_dir_all(rig.app("h1")).unwrap();
    fs::write(rig.app("h1").join("unhealthy-A"), "").unwrap();
    let plan = rig.plan(&release_playbook(ONE_BY_ONE_HALT), &[]);
    let report = deploy_holding(&rig, &plan, &Events::default(), 1).await;
    assert!(!report.ok);
    assert!(report.halted.is_some());
    for h in ["h2", "h3", "h4"] {
        // Parked after locking, connected again only to give the lock back.
        assert_eq!(connects_of(&connects, h), 2, "{h}");
        assert_eq!(host(&report, h).status(), HostStatus::NotDeployed);
        assert!(!rig.locked(h), "{h} still locked");
        rig.assert_audit(h, "not deployed: rollout halted");
    }
    rig.assert_audit("h1", "failed at healthy");
}

#[tokio::test]
async fn a_parked_host_that_cannot_be_reached_again_fails_alone() {
    let rig = Rig::new(3);
    let plan = rig.plan(&plain_playbook("echo second >> {{ app_dir }}/log"), &[]);
    // h3 answers its first connect, not the second.
    let refuse_later = {
        let connector = rig.connector.clone();
        Arc::new(move |_: &str| {
            connector.inject("h3", Fault::Refuse("gone after locking".into()));
        })
    };
    rig.connector.inject(
        "h3",
        Fault::OnExec {
            pattern: LOCK_SCRIPT.into(),
            hook: refuse_later,
        },
    );
    // Only the first host keeps its connection: h3 parks for sure.
    let report = deploy_holding(&rig, &plan, &Events::default(), 1).await;
    assert_eq!(host(&report, "h1").status(), HostStatus::Ok);
    assert_eq!(host(&report, "h2").status(), HostStatus::Ok);
    let h3 = host(&report, "h3");
    assert_eq!(h3.status(), HostStatus::Failed);
    let error = h3.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("cannot connect again") && error.contains("gone after locking"),
        "{error}"
    );
    // It keeps the lock that names this run (`dropship lock release` clears it).
    assert!(rig.locked("h3"));
}
