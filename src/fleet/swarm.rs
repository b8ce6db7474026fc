//! Swarm playbooks (`[swarm] managers`): the managers tried one after the other in inventory
//! order, the run going through the first that connects and is an active manager; the others
//! are set aside (never connected after that one), each with a note saying why.

use std::time::Instant;

use crate::report::{Event, Reporter};
use crate::session::{self, HostSession, RunContext};
use crate::transport::Connector;

/// A session per manager of the plan: the one deployed through connected, every other set
/// aside. When none is usable, each fails with why it was skipped (so the run exits 1).
pub(super) async fn connect_first_manager<C: Connector>(
    connector: &C,
    ctx: &RunContext<'_>,
    reporter: &dyn Reporter,
) -> Vec<HostSession<C::Conn>> {
    let plan = ctx.plan;
    let mut sessions = Vec::with_capacity(plan.hosts.len());
    let mut skipped: Vec<(usize, String)> = Vec::new();
    let mut used: Option<String> = None;
    for index in 0..plan.hosts.len() {
        if let Some(used) = &used {
            let mut s = session::unconnected(plan, index, reporter, Instant::now());
            s.set_aside(&format!("not used: the swarm is deployed through {used}"))
                .await;
            sessions.push(s);
            continue;
        }
        let (mut s, connected) = session::connect_host(connector, plan, index, reporter).await;
        let unusable = match connected {
            Err(e) => Some(format!("unreachable: {e}")),
            Ok(()) if ctx.cancel.is_cancelled() => Some("interrupted".to_string()),
            Ok(()) => s.swarm_manager(ctx).await.err(),
        };
        match unusable {
            None => used = Some(s.name().to_string()),
            Some(why) => {
                s.set_aside(&format!("skipped: {why}")).await;
                skipped.push((index, why));
            }
        }
        sessions.push(s);
    }
    let skipped_text = skipped
        .iter()
        .map(|(i, why)| format!("{} ({why})", plan.hosts[*i].host.name))
        .collect::<Vec<_>>()
        .join(", ");
    match &used {
        Some(used) => {
            let mut text = format!("swarm: deploying through manager {used}");
            if !skipped.is_empty() {
                text.push_str(&format!("; skipped {skipped_text}"));
            }
            reporter.event(&Event::Note { text: &text });
        }
        None => {
            for (index, why) in skipped {
                sessions[index].fail(
                    reporter,
                    &format!("not usable as the swarm's manager: {why}"),
                );
            }
            reporter.event(&Event::Note {
                text: "swarm: no manager of `[swarm] managers` is reachable and an active manager",
            });
        }
    }
    sessions
}
