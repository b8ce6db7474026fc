//! Batches of a deploy: run in the rollout policy's order with its pauses, halted when the
//! failures exceed `max_failures`, the failed batch rolled back when the policy says so.

use futures::future::join_all;

use super::Stops;
use crate::remote::lock::{self, Holder};
use crate::report::Event;
use crate::rollout::OnFailure;
use crate::session::{HostSession, RunContext, StepsOutcome};
use crate::transport::Connection;

/// Runs the batches of the rollout policy in order, pausing between them; halts when the
/// failures exceed `max_failures`, rolling the failed batch back when the policy says so.
pub(super) async fn run_batches<T: Connection>(
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
        let outcomes = join_all(
            sessions
                .iter_mut()
                .filter(|s| batch.contains(&s.index()))
                .map(|s| {
                    let host_plan = &plan.hosts[s.index()];
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
        failed += outcomes
            .iter()
            .filter(|o| **o == StepsOutcome::Failed)
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
            .filter(|s| batch.contains(&s.index()))
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
        for s in sessions.iter_mut().filter(|s| batch.contains(&s.index())) {
            let names = ctx.plan.hosts[s.index()]
                .steps
                .iter()
                .map(|st| st.name.as_str());
            s.skip(ctx, names, reason);
            s.note(reason);
        }
    }
}
