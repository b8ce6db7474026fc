//! The locks of a fleet run: who holds them, taking them on every host (the first host alone
//! first, while the others connect), releasing them, and the audit line written as each is
//! released.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use futures::future::join_all;
use tokio::sync::watch;

use crate::fleet::LockOptions;
use crate::plan::Plan;
use crate::release::utc_rfc3339;
use crate::remote::lock::{self, Holder};
use crate::report::{Event, HostResult};
use crate::session::{
    HandshakeSlots, HostSession, LockOutcome, Reconnect, RunContext, connect_paced,
};
use crate::transport::{Connection, Connector};

/// A lock held by someone else refused the run.
#[derive(Debug, thiserror::Error)]
#[error("{host} is locked by {}", holder.describe())]
pub(super) struct LockRefused {
    host: String,
    holder: Holder,
    /// The app, when its lock is the fallback in the SSH user's home (no `app_dir`).
    app_in_home: Option<String>,
}

impl LockRefused {
    pub(super) fn hint(&self) -> String {
        let mut hint = "wait for that run to finish, retry with --wait-lock 5m, or clear a stale lock with `dropship lock release`".to_string();
        if let Some(app) = &self.app_in_home {
            hint.push_str(&format!(
                "; with no `app_dir` (nor `[release]`), every instance of `{app}` this SSH user deploys on that host shares one lock (~/.dropship/{app}): set `app_dir` per instance to give each its own lock and audit log"
            ));
        }
        hint
    }
}

pub(super) fn holder(command: &str, plan: &Plan, release: Option<&str>) -> Holder {
    let now = SystemTime::now();
    let nanos = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    Holder {
        who: lock::local_identity(),
        since: utc_rfc3339(now),
        playbook: plan.playbook_name.clone(),
        command: command.to_string(),
        release: release.unwrap_or("").to_string(),
        token: format!("{}-{nanos}", std::process::id()),
    }
}

/// The first host that holds the others back (`connect_locking`) and what it answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lead {
    /// Not answered yet.
    Waiting,
    /// The lock is ours there (or could not be asked for: that host failed); the others go on.
    Passed,
    /// Someone else holds it: the others stay unlocked.
    Held,
    /// The plan's first host could not be reached: nobody locks while connecting.
    Unreachable,
}

/// How `connect_locking` spends this machine's resources.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pacing {
    /// SSH handshakes in flight at once.
    pub handshakes: usize,
    /// Connections kept once their host's lock is ours; the hosts past this many are parked:
    /// connection closed, lock kept, reconnected at their turn. `None`: all kept.
    pub held: Option<usize>,
}

/// What the locking while connecting came to.
pub(super) enum FirstAttempt {
    /// Every connected host was asked; the first conflicting host and its holder, if any.
    Tried(Option<(usize, Holder)>),
    /// The plan's first host was not reachable: no host was asked (`take_locks` tries then).
    NotTried,
}

/// Connects every host (at most `handshakes` in flight) and takes their locks as they come up:
/// the plan's first host asks for its lock as soon as it is connected, while the others are
/// still connecting, and each other host asks as soon as it is connected and the first host's
/// lock is ours. That is the first-host-alone order of `try_locks` (no host is asked before the
/// first host answered), without waiting for the slowest handshake in between.
pub(super) async fn connect_locking<C: Connector>(
    connector: &C,
    ctx: &RunContext<'_>,
    pacing: Pacing,
    holder: &Holder,
) -> (Vec<HostSession<C::Conn>>, FirstAttempt) {
    let gate = HandshakeSlots::new(pacing.handshakes);
    let (lead_tx, lead_rx) = watch::channel(Lead::Waiting);
    // Hosts connected with their lock ours: past `pacing.held`, the next ones park.
    let held = AtomicUsize::new(1);
    let hosts = (0..ctx.plan.hosts.len()).map(|index| {
        let (gate, lead_tx, mut lead_rx, held) = (&gate, &lead_tx, lead_rx.clone(), &held);
        async move {
            let mut s = connect_paced(connector, ctx.plan, index, gate, ctx.reporter).await;
            if index == 0 {
                let lead = if !s.is_connected() {
                    Lead::Unreachable
                } else if let LockOutcome::Held(other) = s.take_lock(ctx, holder).await {
                    lead_tx.send_replace(Lead::Held);
                    return (s, Some(other));
                } else {
                    Lead::Passed
                };
                lead_tx.send_replace(lead);
                return (s, None);
            }
            // The lock's channel opens while the first host answers.
            s.keep_ready(1);
            let lead = *lead_rx
                .wait_for(|l| *l != Lead::Waiting)
                .await
                .expect("the first host's future answers before it ends");
            if lead != Lead::Passed || !s.is_connected() {
                return (s, None);
            }
            match s.take_lock(ctx, holder).await {
                LockOutcome::Held(other) => return (s, Some(other)),
                LockOutcome::Taken | LockOutcome::OursElsewhere => {
                    if pacing
                        .held
                        .is_some_and(|cap| held.fetch_add(1, Ordering::Relaxed) >= cap)
                    {
                        s.park(reconnect(connector, ctx.plan, index)).await;
                    }
                }
                LockOutcome::Failed => {}
            }
            (s, None)
        }
    });
    let outcomes = join_all(hosts).await;
    let lead = *lead_rx.borrow();
    let mut conflict = None;
    let mut sessions = Vec::with_capacity(outcomes.len());
    for (s, held) in outcomes {
        if let (None, Some(other)) = (&conflict, held) {
            conflict = Some((s.index(), other));
        }
        sessions.push(s);
    }
    let attempt = match lead {
        Lead::Unreachable => FirstAttempt::NotTried,
        _ => FirstAttempt::Tried(conflict),
    };
    (sessions, attempt)
}

/// How a parked host connects again: the run's connector, the host's connect spec.
fn reconnect<C: Connector>(connector: &C, plan: &Plan, index: usize) -> Reconnect<C::Conn> {
    let (connector, spec) = (connector.clone(), plan.hosts[index].connect.clone());
    Arc::new(move || {
        let (connector, spec) = (connector.clone(), spec.clone());
        Box::pin(async move { connector.connect(&spec).await })
    })
}

/// Takes the lock on every connected host: the first host alone first, so that of two runs
/// started at once exactly one gets past it; then all the others at once (`first`: that
/// attempt already made while connecting). A lock held by someone else refuses the whole run
/// (after `--wait-lock`, if given) and releases ours.
pub(super) async fn take_locks<T: Connection>(
    sessions: &mut [HostSession<T>],
    ctx: &RunContext<'_>,
    holder: &Holder,
    options: &LockOptions,
    first: FirstAttempt,
) -> Result<(), LockRefused> {
    let deadline = options.wait.map(|w| Instant::now() + w);
    let mut waited = false;
    let mut conflict = match first {
        FirstAttempt::Tried(conflict) => conflict,
        FirstAttempt::NotTried => try_locks(sessions, ctx, holder).await,
    };
    loop {
        let Some((index, other)) = conflict else {
            return Ok(());
        };
        let host = ctx.plan.hosts[index].host.name.clone();
        let app_in_home = ctx.plan.hosts[index]
            .state
            .is_in_home()
            .then(|| ctx.plan.app.clone());
        release_locks(sessions, ctx, holder).await;
        match deadline {
            Some(d) if Instant::now() < d && !ctx.cancel.is_cancelled() => {
                if !waited {
                    ctx.reporter.event(&Event::Note {
                        text: &format!(
                            "waiting for the lock: {host} is locked by {}",
                            other.describe()
                        ),
                    });
                    waited = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = ctx.cancel.cancelled() => return Err(LockRefused { host, holder: other, app_in_home }),
                }
            }
            _ => {
                return Err(LockRefused {
                    host,
                    holder: other,
                    app_in_home,
                });
            }
        }
        conflict = try_locks(sessions, ctx, holder).await;
    }
}

/// One attempt; returns the first conflicting host (its index in the plan) and its holder.
async fn try_locks<T: Connection>(
    sessions: &mut [HostSession<T>],
    ctx: &RunContext<'_>,
    holder: &Holder,
) -> Option<(usize, Holder)> {
    let (first, rest) = match sessions.iter().position(|s| s.is_connected()) {
        Some(i) => {
            let (a, b) = sessions.split_at_mut(i + 1);
            (a.last_mut(), b)
        }
        None => return None,
    };
    if let Some(first) = first
        && let LockOutcome::Held(other) = first.take_lock(ctx, holder).await
    {
        return Some((first.index(), other));
    }
    let outcomes = join_all(rest.iter_mut().filter(|s| s.is_connected()).map(|s| async {
        match s.take_lock(ctx, holder).await {
            LockOutcome::Held(other) => Some((s.index(), other)),
            LockOutcome::Taken | LockOutcome::OursElsewhere | LockOutcome::Failed => None,
        }
    }))
    .await;
    outcomes.into_iter().flatten().next()
}

async fn release_locks<T: Connection>(
    sessions: &mut [HostSession<T>],
    ctx: &RunContext<'_>,
    holder: &Holder,
) {
    join_all(
        sessions
            .iter_mut()
            .filter(|s| s.is_locked() || s.shares_lock())
            .map(|s| s.release_lock(ctx, holder)),
    )
    .await;
}

/// Appends each locked host's audit line (also of hosts sharing a lock through another host),
/// releases its lock; closes every connection.
pub(super) async fn finish<T: Connection>(
    mut sessions: Vec<HostSession<T>>,
    ctx: &RunContext<'_>,
    holder: &Holder,
) -> Vec<HostResult> {
    // An aborted run ends within seconds: a host that does not answer keeps its lock (it
    // names this run; `dropship lock release` clears it).
    let wait = ctx.cancel.is_aborted().then_some(ABORTED_RELEASE_WAIT);
    join_all(
        sessions
            .iter_mut()
            .filter(|s| s.is_locked() || s.shares_lock())
            .map(|s| async move {
                let audit = audit_result(s.result());
                if let Err(e) = s.release_lock_with_audit(ctx, holder, &audit, wait).await {
                    tracing::warn!(host = %s.name(), "could not release the lock: {e}");
                }
            }),
    )
    .await;
    join_all(sessions.into_iter().map(|s| s.finish(ctx.reporter))).await
}

/// How long an aborted run waits for a host to release its lock.
const ABORTED_RELEASE_WAIT: Duration = Duration::from_secs(3);

fn audit_result(result: &HostResult) -> String {
    let mut text = if let Some(e) = &result.error {
        format!("failed: {}", e.lines().next().unwrap_or(""))
    } else if let Some(step) = result
        .steps
        .iter()
        .find(|s| s.outcome == crate::report::Outcome::Failed)
    {
        format!("failed at {}", step.name)
    } else if let Some(note) = &result.note {
        note.clone()
    } else {
        "ok".to_string()
    };
    if let Some(to) = &result.rolled_back {
        text.push_str(&format!(", rolled back to {to}"));
    }
    text
}
