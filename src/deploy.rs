//! The locks of a fleet run: who holds them, taking them on every host (the first host alone
//! first), releasing them, and the audit line written as each is released.

use std::time::{Duration, Instant, SystemTime};

use futures::future::join_all;

use crate::fleet::LockOptions;
use crate::plan::Plan;
use crate::release::utc_rfc3339;
use crate::remote::lock::{self, Holder, LockAnswer};
use crate::report::{Event, HostResult};
use crate::session::{HostSession, RunContext, failure_text};
use crate::transport::Connection;

pub(crate) fn holder(command: &str, plan: &Plan, release: Option<&str>) -> Holder {
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

/// Takes the lock on every connected host: the first host alone first, so that of two runs
/// started at once exactly one gets past it; then all the others at once. A lock held by
/// someone else refuses the whole run (after `--wait-lock`, if given) and releases ours.
pub(crate) async fn take_locks<T: Connection>(
    sessions: &mut [HostSession<T>],
    ctx: &RunContext<'_>,
    holder: &Holder,
    options: &LockOptions,
) -> Result<(), String> {
    let deadline = options.wait.map(|w| Instant::now() + w);
    let mut waited = false;
    loop {
        let conflict = try_locks(sessions, ctx, holder).await;
        let Some((host, other)) = conflict else {
            return Ok(());
        };
        release_locks(sessions, ctx, holder).await;
        let message = format!(
            "{host} is locked by {}\n  hint: wait for that run to finish, retry with --wait-lock 5m, or clear a stale lock with `dropship lock release`",
            other.describe()
        );
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
                    _ = ctx.cancel.cancelled() => return Err(message),
                }
            }
            _ => return Err(message),
        }
    }
}

/// One attempt; returns the first conflicting host and its holder.
async fn try_locks<T: Connection>(
    sessions: &mut [HostSession<T>],
    ctx: &RunContext<'_>,
    holder: &Holder,
) -> Option<(String, Holder)> {
    let (first, rest) = match sessions.iter().position(|s| s.is_connected()) {
        Some(i) => {
            let (a, b) = sessions.split_at_mut(i + 1);
            (a.last_mut(), b)
        }
        None => return None,
    };
    let mut conflicts = Vec::new();
    if let Some(first) = first
        && let Some(c) = lock_one(first, ctx, holder).await
    {
        return Some(c);
    }
    let outcomes = join_all(
        rest.iter_mut()
            .filter(|s| s.is_connected())
            .map(|s| lock_one(s, ctx, holder)),
    )
    .await;
    conflicts.extend(outcomes.into_iter().flatten());
    conflicts.into_iter().next()
}

async fn lock_one<T: Connection>(
    session: &mut HostSession<T>,
    ctx: &RunContext<'_>,
    holder: &Holder,
) -> Option<(String, Holder)> {
    let _turn = ctx.gate.turn().await;
    let state = &ctx.plan.hosts[session.index].state;
    // The first step's probe rides along with the lock: one round trip instead of two.
    let probe = session.piggyback_probe(ctx.plan);
    let request = lock::acquire(state, holder, probe.as_ref());
    let out = match session.exec(request.script(), &[]).await {
        Ok(out) => out,
        Err(e) => {
            session.fail(ctx.reporter, &format!("cannot take the lock: {e}"));
            return None;
        }
    };
    let reply = request.reply(&out.stdout);
    let Some(answer) = lock::parse_acquire(&reply) else {
        let error = format!(
            "cannot take the lock: {}",
            failure_text(&out, &ctx.plan.redactor)
        );
        session.fail(ctx.reporter, &error);
        return None;
    };
    if probe.is_some() {
        session.accept_piggybacked_probe(ctx.plan, &reply, &out);
    }
    match answer {
        LockAnswer::Acquired => {
            session.locked = true;
            None
        }
        // Hosts sharing one home directory share the lock: ours already.
        LockAnswer::Held(other) if other.token == holder.token => None,
        LockAnswer::Held(other) => Some((session.name().to_string(), other)),
    }
}

async fn release_locks<T: Connection>(
    sessions: &mut [HostSession<T>],
    ctx: &RunContext<'_>,
    holder: &Holder,
) {
    join_all(
        sessions
            .iter_mut()
            .filter(|s| s.locked)
            .map(|s| async move {
                let _turn = ctx.gate.turn().await;
                let state = &ctx.plan.hosts[s.index].state;
                if s.exec(&lock::release(state, holder), &[]).await.is_ok() {
                    s.locked = false;
                }
            }),
    )
    .await;
}

/// Appends each locked host's audit line, releases its lock; closes every connection.
pub(crate) async fn finish<T: Connection>(
    mut sessions: Vec<HostSession<T>>,
    ctx: &RunContext<'_>,
    holder: &Holder,
) -> Vec<HostResult> {
    join_all(sessions.iter_mut().filter(|s| s.locked).map(|s| async move {
        let _turn = ctx.gate.turn().await;
        let state = &ctx.plan.hosts[s.index].state;
        let script = lock::release_and_audit(state, holder, s.name(), &audit_result(s.result()));
        let release = s.exec(&script, &[]);
        let answer = if ctx.cancel.is_aborted() {
            // An aborted run ends within seconds: a host that does not answer keeps its
            // lock (it names this run; `dropship lock release` clears it).
            tokio::time::timeout(ABORTED_RELEASE_WAIT, release)
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {ABORTED_RELEASE_WAIT:?}")))
        } else {
            release.await
        };
        match answer {
            Ok(out) if out.success() => s.locked = false,
            Ok(out) => tracing::warn!(host = %s.name(), "could not release the lock: {}", failure_text(&out, &ctx.plan.redactor)),
            Err(e) => tracing::warn!(host = %s.name(), "could not release the lock: {e}"),
        }
    }))
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
