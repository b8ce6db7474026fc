//! `dropship releases` and `dropship lock status|release`: read-only (or lock-clearing) scripts
//! run on every host, their output shown per host.

use crate::plan::{Action, Plan, PlannedStep};
use crate::release;
use crate::remote::lock;
use crate::report::RunReport;
use crate::settings::{LockAction, RunSettings};
use crate::sh;

/// Lists each host's releases (marking the current one) and the tail of its audit log.
pub async fn releases(mut plan: Plan, run: &RunSettings) -> RunReport {
    for hp in &mut plan.hosts {
        let list = match &hp.release {
            Some(site) => release::human_list(site),
            None => sh!("echo '(the playbook has no [release] section)'"),
        };
        let script = sh!(
            "{}; echo 'audit (last 5):'; {} | sed 's/^/  /'",
            list,
            lock::audit_tail(&hp.state, 5)
        );
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
            LockAction::Status => (
                "lock status",
                sh!(
                    "info=$({}); if [ -n \"$info\" ]; then echo \"locked:\"; printf '%s\\n' \"$info\" | sed 's/^/  /'; else echo unlocked; fi",
                    lock::status(&hp.state)
                ),
            ),
            LockAction::Release => (
                "lock release",
                sh!(
                    "out=$({}) || exit 1; case $out in released*) echo \"released the lock of:\"; printf '%s\\n' \"$out\" | sed '1d; /^token=/d; s/^/  /' ;; *) echo 'was not locked' ;; esac",
                    lock::force_release(&hp.state)
                ),
            ),
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
