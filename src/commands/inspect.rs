//! `dropship releases`, `lock status|release` and `ping`: a read-only (or lock-clearing)
//! script run on every host as a query, its output shown per host. Not steps of a plan.

use std::sync::Arc;

use crate::diagnostic::Hinted;
use crate::plan::Plan;
use crate::remote::{facts, lock, release};
use crate::report::RunReport;
use crate::session::Query;
use crate::settings::{LockAction, RunSettings};

/// Lists each host's releases (marking the current one) and the tail of its audit log.
pub async fn releases(plan: Plan, run: &RunSettings) -> RunReport {
    let queries: Vec<Query> = plan
        .hosts
        .iter()
        .map(|hp| {
            let script = release::show(hp.release.as_ref(), &hp.state);
            shown("releases", script.into_string())
        })
        .collect();
    super::query("releases", plan, &queries, run).await
}

/// Shows who holds each host's lock, or clears it.
pub async fn lock(plan: Plan, run: &RunSettings, action: LockAction) -> RunReport {
    let queries: Vec<Query> = plan
        .hosts
        .iter()
        .map(|hp| match action {
            LockAction::Status => shown("lock status", lock::show_status(&hp.state).into_string()),
            LockAction::Release => shown(
                "lock release",
                lock::show_force_release(&hp.state).into_string(),
            ),
        })
        .collect();
    super::query("lock", plan, &queries, run).await
}

/// Reports each host's docker version, how compose is invoked there (found as a deploy finds
/// it, or as the inventory's `compose` forces it) and the version of each compose flavour it
/// has. A forced flavour the host does not have fails the host, as a deploy would.
pub async fn ping(plan: Plan, run: &RunSettings) -> RunReport {
    let queries: Vec<Query> = plan
        .hosts
        .iter()
        .map(|hp| {
            let forced = hp.forced_compose();
            let request = facts::request(forced);
            Query {
                name: "ping".into(),
                script: request.script().to_string(),
                summary: Some(Arc::new(move |stdout: &[u8]| {
                    facts::Facts::parse(&request.reply(stdout))
                        .summarize(forced.is_some())
                        .map_err(|flavor| {
                            let (message, hint) = flavor.problem().unwrap_or_default();
                            Hinted(&message, Some(&hint)).to_string()
                        })
                })),
            }
        })
        .collect();
    super::query("ping", plan, &queries, run).await
}

/// A query whose result is what the script printed.
fn shown(name: &str, script: String) -> Query {
    Query {
        name: name.to_string(),
        script,
        summary: None,
    }
}
