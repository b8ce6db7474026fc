//! A run across the fleet: connect, take every host's lock, deploy batch by batch under the
//! rollout policy (halting and rolling back), then write the audit log and release the locks.

use std::time::{Duration, Instant, SystemTime};

use futures::future::join_all;

use crate::lock::{self, Holder};
use crate::plan::Plan;
use crate::release::utc_rfc3339;
use crate::report::{Counts, Event, HostResult, Reporter, RunReport};
use crate::rollout::OnFailure;
use crate::session::{Cancel, ExecOptions, HostSession, RunContext, connect_all, failure_text};
use crate::transport::{Connection, Connector};

/// How a run that changes hosts takes their locks.
#[derive(Debug, Clone)]
pub struct LockOptions {
    /// Keep retrying a held lock this long (`--wait-lock`).
    pub wait: Option<Duration>,
}

/// Why a run did not finish normally, for the report.
#[derive(Default)]
struct Stops {
    halted: Option<String>,
    lock_conflict: Option<String>,
}

/// `dropship deploy`: locks, batches, rollback on failure, audit.
pub async fn deploy<C: Connector>(
    connector: &C,
    plan: &Plan,
    exec: ExecOptions,
    lock_options: &LockOptions,
    reporter: &dyn Reporter,
    cancel: Cancel,
) -> RunReport {
    let started = Instant::now();
    let ctx = RunContext::new(plan, reporter, exec.forks, cancel);
    let mut sessions = connect_all(connector, plan, exec.handshakes, reporter).await;
    let holder = holder("deploy", plan, plan.release_id.as_deref());
    let mut stops = Stops::default();

    match take_locks(&mut sessions, &ctx, &holder, lock_options).await {
        Err(refusal) => refuse(&mut sessions, &ctx, &mut stops, refusal, "not deployed"),
        Ok(()) => run_batches(&mut sessions, &ctx, &holder, &mut stops).await,
    }
    let results = finish(sessions, &ctx, &holder).await;
    report(
        "deploy",
        plan.release_id.clone(),
        results,
        stops,
        &ctx,
        started,
    )
}

/// `dropship exec` and `ping`: every host at once, no lock, no audit.
pub async fn adhoc<C: Connector>(
    command: &str,
    connector: &C,
    plan: &Plan,
    exec: ExecOptions,
    reporter: &dyn Reporter,
    cancel: Cancel,
) -> RunReport {
    let started = Instant::now();
    let ctx = RunContext::new(plan, reporter, exec.forks, cancel);
    let mut sessions = connect_all(connector, plan, exec.handshakes, reporter).await;
    join_all(sessions.iter_mut().map(|s| {
        let len = plan.hosts[s.index].steps.len();
        s.run_steps(&ctx, 0..len, None)
    }))
    .await;
    let holder = holder(command, plan, None);
    let results = finish(sessions, &ctx, &holder).await;
    report(command, None, results, Stops::default(), &ctx, started)
}

/// `dropship rollback`: on every host, `current` back to `to` (or the previous release), then
/// the steps after activation again.
pub async fn rollback<C: Connector>(
    connector: &C,
    plan: &Plan,
    to: Option<&str>,
    exec: ExecOptions,
    lock_options: &LockOptions,
    reporter: &dyn Reporter,
    cancel: Cancel,
) -> RunReport {
    let started = Instant::now();
    let ctx = RunContext::new(plan, reporter, exec.forks, cancel);
    let mut sessions = connect_all(connector, plan, exec.handshakes, reporter).await;
    let holder = holder("rollback", plan, Some(to.unwrap_or("previous")));
    let mut stops = Stops::default();
    match take_locks(&mut sessions, &ctx, &holder, lock_options).await {
        Err(refusal) => refuse(&mut sessions, &ctx, &mut stops, refusal, "not rolled back"),
        Ok(()) => {
            join_all(sessions.iter_mut().map(|s| s.roll_back_to(&ctx, to))).await;
        }
    }
    let results = finish(sessions, &ctx, &holder).await;
    let release = to.map(str::to_string);
    report("rollback", release, results, stops, &ctx, started)
}

/// A lock held elsewhere refuses the whole run: say why once, note it on every host.
fn refuse<T: Connection>(
    sessions: &mut [HostSession<T>],
    ctx: &RunContext<'_>,
    stops: &mut Stops,
    refusal: String,
    what: &str,
) {
    ctx.reporter.event(&Event::Note { text: &refusal });
    for s in sessions.iter_mut() {
        s.note(&format!("{what}: lock held elsewhere"));
    }
    stops.lock_conflict = Some(refusal);
}

/// Runs the batches of the rollout policy in order, pausing between them; halts when the
/// failures exceed `max_failures`, rolling the failed batch back when the policy says so.
async fn run_batches<T: Connection>(
    sessions: &mut [HostSession<T>],
    ctx: &RunContext<'_>,
    holder: &Holder,
    stops: &mut Stops,
) {
    let plan = ctx.plan;
    let policy = &plan.rollout;
    let batches = policy.batches(sessions.len());
    let total = sessions.len();
    let mut failed = 0usize;
    for (number, batch) in batches.iter().enumerate() {
        if ctx.cancel.is_cancelled() {
            skip_batches(sessions, ctx, &batches[number..], "interrupted");
            return;
        }
        if number > 0 && !policy.pause.is_zero() {
            let text = format!(
                "pausing {} before batch {}",
                humantime::format_duration(policy.pause),
                number + 1
            );
            ctx.reporter.event(&Event::Note { text: &text });
            tokio::select! {
                _ = tokio::time::sleep(policy.pause) => {}
                _ = ctx.cancel.cancelled() => {
                    skip_batches(sessions, ctx, &batches[number..], "interrupted");
                    return;
                }
            }
        }
        let names: Vec<String> = batch
            .iter()
            .map(|&i| plan.hosts[i].host.name.clone())
            .collect();
        ctx.reporter.event(&Event::BatchStarted {
            number: number + 1,
            of: batches.len(),
            hosts: &names,
        });
        join_all(
            sessions
                .iter_mut()
                .filter(|s| batch.contains(&s.index))
                .map(|s| {
                    let host_plan = &plan.hosts[s.index];
                    // A host that might still be rolled back keeps its lock until the end.
                    let unlock = (policy.on_failure != OnFailure::Rollback
                        || host_plan.release.is_none())
                    .then(|| lock::release_and_audit_epilogue(&host_plan.state, holder, s.name()));
                    async move {
                        s.run_steps(ctx, 0..host_plan.steps.len(), unlock.as_deref())
                            .await
                    }
                }),
        )
        .await;
        failed += sessions
            .iter()
            .filter(|s| batch.contains(&s.index) && s.failed())
            .count();
        // Halting means something only when later batches would have started or the failed
        // batch goes back: a single batch (no `[rollout]`) just failed.
        let later = &batches[number + 1..];
        let rolls_back = policy.on_failure == OnFailure::Rollback;
        if policy.exceeded(failed, total) && (!later.is_empty() || rolls_back) {
            let reason = format!(
                "{failed} of {total} host(s) failed by batch {}/{}, more than max_failures allows",
                number + 1,
                batches.len()
            );
            ctx.reporter.event(&Event::Note {
                text: &format!("rollout halted: {reason}"),
            });
            if rolls_back {
                roll_back_batch(sessions, ctx, batch).await;
            }
            skip_batches(sessions, ctx, later, "not deployed: rollout halted");
            stops.halted = Some(reason);
            return;
        }
    }
}

async fn roll_back_batch<T: Connection>(
    sessions: &mut [HostSession<T>],
    ctx: &RunContext<'_>,
    batch: &[usize],
) {
    join_all(
        sessions
            .iter_mut()
            .filter(|s| batch.contains(&s.index))
            .map(|s| s.undo_activation(ctx)),
    )
    .await;
}

fn skip_batches<T: Connection>(
    sessions: &mut [HostSession<T>],
    ctx: &RunContext<'_>,
    batches: &[Vec<usize>],
    reason: &str,
) {
    for batch in batches {
        for s in sessions.iter_mut().filter(|s| batch.contains(&s.index)) {
            let names = ctx.plan.hosts[s.index]
                .steps
                .iter()
                .map(|st| st.name.as_str());
            s.skip(ctx, names, reason);
            s.note(reason);
        }
    }
}

fn holder(command: &str, plan: &Plan, release: Option<&str>) -> Holder {
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
async fn take_locks<T: Connection>(
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
    let state = &ctx.plan.hosts[session.index].state;
    // The first step's probe rides along with the lock: one round trip instead of two.
    let probe = session.piggyback_probe(ctx.plan);
    let script = match &probe {
        Some(p) => format!("{}\necho {PROBE_MARKER}\n{p}", lock::acquire(state, holder)),
        None => lock::acquire(state, holder),
    };
    match session.exec(&script, &[]).await {
        Ok(out) if lock_answered(&out.stdout) => {
            let whole = String::from_utf8_lossy(&out.stdout).into_owned();
            let (stdout, probed) = match whole.split_once(&format!("{PROBE_MARKER}\n")) {
                Some((lock_part, probe_part)) => {
                    (lock_part.to_string(), Some(probe_part.to_string()))
                }
                None => (whole.clone(), None),
            };
            if let (Some(_), Some(probe_out)) = (&probe, probed) {
                session.accept_piggybacked_probe(ctx.plan, &probe_out, &out);
            }
            if stdout.starts_with("acquired") {
                session.locked = true;
                return None;
            }
            match Holder::parse(&stdout) {
                // Hosts sharing one home directory share the lock: ours already.
                Some(other) if other.token == holder.token => None,
                Some(other) => Some((session.name().to_string(), other)),
                None => Some((
                    session.name().to_string(),
                    Holder {
                        who: "an unknown holder (the lock has no info)".into(),
                        since: "?".into(),
                        playbook: String::new(),
                        command: "?".into(),
                        release: String::new(),
                        token: String::new(),
                    },
                )),
            }
        }
        Ok(out) => {
            let error = format!(
                "cannot take the lock: {}",
                failure_text(&out, &ctx.plan.redactor)
            );
            session.fail(ctx.reporter, &error);
            None
        }
        Err(e) => {
            session.fail(ctx.reporter, &format!("cannot take the lock: {e}"));
            None
        }
    }
}

const PROBE_MARKER: &str = "@@dropship-probe@@";

/// The lock script printed its verdict (`acquired`, or `held` and the holder).
fn lock_answered(stdout: &[u8]) -> bool {
    stdout.starts_with(b"acquired") || stdout.starts_with(b"held")
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
                let state = &ctx.plan.hosts[s.index].state;
                if s.exec(&lock::release(state, holder), &[]).await.is_ok() {
                    s.locked = false;
                }
            }),
    )
    .await;
}

/// Appends each locked host's audit line, releases its lock; closes every connection.
async fn finish<T: Connection>(
    mut sessions: Vec<HostSession<T>>,
    ctx: &RunContext<'_>,
    holder: &Holder,
) -> Vec<HostResult> {
    join_all(sessions.iter_mut().filter(|s| s.locked).map(|s| async move {
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

fn report(
    command: &str,
    release: Option<String>,
    hosts: Vec<HostResult>,
    stops: Stops,
    ctx: &RunContext<'_>,
    started: Instant,
) -> RunReport {
    let interrupted = ctx.cancel.is_cancelled();
    let report = RunReport {
        command: command.to_string(),
        ok: !hosts.iter().any(HostResult::failed)
            && stops.halted.is_none()
            && stops.lock_conflict.is_none()
            && !interrupted,
        release,
        halted: stops.halted,
        lock_conflict: stops.lock_conflict,
        counts: Counts::of(&hosts),
        interrupted,
        hosts,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    ctx.reporter.finished(&report);
    report
}
