//! `dropship releases` and `dropship lock status|release`: read-only (or lock-clearing) scripts
//! run on every host, their output shown per host.

use crate::plan::{Action, Plan, PlannedStep};
use crate::remote::{lock, release};
use crate::report::RunReport;
use crate::settings::{LockAction, RunSettings};

/// Lists each host's releases (marking the current one) and the tail of its audit log.
pub async fn releases(mut plan: Plan, run: &RunSettings) -> RunReport {
    for hp in &mut plan.hosts {
        let script = release::show(hp.release.as_ref(), &hp.state);
        hp.steps = vec![PlannedStep::new(
            "releases",
            Action::Show {
                command: script.into_string(),
            },
        )];
    }
    super::adhoc("releases", plan, run).await
}

/// Shows who holds each host's lock, or clears it.
pub async fn lock(mut plan: Plan, run: &RunSettings, action: LockAction) -> RunReport {
    for hp in &mut plan.hosts {
        let (name, script) = match action {
            LockAction::Status => ("lock status", lock::show_status(&hp.state)),
            LockAction::Release => ("lock release", lock::show_force_release(&hp.state)),
        };
        hp.steps = vec![PlannedStep::new(
            name,
            Action::Show {
                command: script.into_string(),
            },
        )];
    }
    super::adhoc("lock", plan, run).await
}
