//! Batches of a deploy: run in the rollout policy's order with its pauses, halted when the
//! failures exceed `max_failures`, the failed batch rolled back when the policy says so.

use futures::future::join_all;

use super::Stops;
use crate::remote::lock::{self, Holder};
use crate::report::Event;
use crate::rollout::{Batch, OnFailure};
use crate::session::{HostSession, RunContext, StepsOutcome};
use crate::transport::Connection;

/// Runs the batches of the rollout policy in order, pausing between them: the `first` stages,
/// then the rest. A failure in a `first` stage halts the rollout whatever `max_failures` says
/// (the rest depend on those hosts); after the rest's batches, failures beyond `max_failures`
/// (of the rest) halt it. A halt rolls the failed batch back when the policy says so.
pub(super) async fn run_batches<T: Connection>(
    sessions: &mut [HostSession<T>],
    ctx: &RunContext<'_>,
    holder: &Holder,
    stops: &mut Stops,
) {
    let plan = ctx.plan;
    let policy = &plan.rollout;
    let batches: Vec<Batch> = policy.batches(sessions.len(), &plan.first);
    let rest_total = batches
        .iter()
        .filter(|b| b.first.is_none())
        .map(|b| b.hosts.len())
        .sum();
    // Hosts sharing one lock directory (two inventory names for one app instance): the lock
    // goes at the end of the run, when none of them can still be deploying.
    let shared_lock = sessions.iter().any(|s| s.shares_lock());
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
            .hosts
            .iter()
            .map(|&i| plan.hosts[i].host.name.clone())
            .collect();
        ctx.reporter.event(&Event::BatchStarted {
            number: number + 1,
            of: batches.len(),
            hosts: &names,
            first: batch.first.as_deref(),
        });
        let outcomes = join_all(
            sessions
                .iter_mut()
                .filter(|s| batch.hosts.contains(&s.index()))
                .map(|s| {
                    let host_plan = &plan.hosts[s.index()];
                    // A host that might still be rolled back keeps its lock until the end.
                    let unlock = (!shared_lock
                        && (policy.on_failure != OnFailure::Rollback
                            || host_plan.release.is_none()))
                    .then(|| lock::release_and_audit_epilogue(&host_plan.state, holder, s.name()));
                    async move {
                        let outcome = s
                            .run_steps(ctx, 0..host_plan.steps.len(), unlock.as_deref())
                            .await;
                        // Its lock given back with its audit line, nothing later in the run
                        // (a halt, a rollback of another batch) concerns this host again.
                        if !s.is_locked() && !s.shares_lock() {
                            s.disconnect().await;
                        }
                        outcome
                    }
                }),
        )
        .await;
        let failed_here = outcomes
            .iter()
            .filter(|o| **o == StepsOutcome::Failed)
            .count();
        // Halting means something only when later batches would have started or the failed
        // batch goes back: a single batch (no `[rollout]`) just failed.
        let later = &batches[number + 1..];
        let rolls_back = policy.on_failure == OnFailure::Rollback;
        let reason = match &batch.first {
            Some(item) if failed_here > 0 => Some(format!(
                "{failed_here} of {} host(s) of `first` stage `{item}` failed (batch {}/{}): the other hosts wait for it",
                batch.hosts.len(),
                number + 1,
                batches.len()
            )),
            Some(_) => None,
            None => {
                failed += failed_here;
                policy.exceeded(failed, rest_total).then(|| {
                    format!(
                        "{failed} of {rest_total} host(s) failed by batch {}/{}, more than max_failures allows",
                        number + 1,
                        batches.len()
                    )
                })
            }
        };
        if let Some(reason) = reason
            && (!later.is_empty() || rolls_back)
        {
            ctx.reporter.event(&Event::Note {
                text: &format!("rollout halted: {reason}"),
            });
            if rolls_back {
                roll_back_batch(sessions, ctx, &batch.hosts).await;
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
            .filter(|s| batch.contains(&s.index()))
            .map(|s| s.undo_activation(ctx)),
    )
    .await;
}

fn skip_batches<T: Connection>(
    sessions: &mut [HostSession<T>],
    ctx: &RunContext<'_>,
    batches: &[Batch],
    reason: &str,
) {
    for batch in batches {
        for s in sessions
            .iter_mut()
            .filter(|s| batch.hosts.contains(&s.index()))
        {
            let names = ctx.plan.hosts[s.index()]
                .steps
                .iter()
                .map(|st| st.name.as_str());
            s.skip(ctx, names, reason);
            s.note(reason);
        }
    }
}
