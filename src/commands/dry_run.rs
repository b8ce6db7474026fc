//! `deploy --dry-run` and `rollback --dry-run`: the plan loaded as for the real command, every
//! host looked at read-only (`fleet::preview`), what would change printed per host (and as
//! JSON with `--json`), the rollout's batches and a summary. Exit 0, 1 when a host could not
//! be looked at, 2 for bad input.

use super::{ExitStatus, check, exec_options, load_plan, preflight};
use crate::fleet::{self, Cancel};
use crate::plan::Plan;
use crate::report::preview::DryRun;
use crate::session::Look;
use crate::settings::{JsonTarget, PlaybookTarget, RunSettings};
use crate::transport::ssh::SshConnector;

/// `deploy --dry-run`.
pub async fn deploy(target: &PlaybookTarget, run: &RunSettings) -> ExitStatus {
    look("deploy", target, run, Look::Deploy).await
}

/// `rollback --dry-run [--to RELEASE]`.
pub async fn rollback(target: &PlaybookTarget, run: &RunSettings, to: Option<&str>) -> ExitStatus {
    look("rollback", target, run, Look::Rollback(to)).await
}

async fn look(
    command: &str,
    target: &PlaybookTarget,
    run: &RunSettings,
    look: Look<'_>,
) -> ExitStatus {
    let plan = match load_plan(target).and_then(|plan| preflight(&plan, run).map(|()| plan)) {
        Ok(plan) => plan,
        Err(e) => return ExitStatus::BadInput(e),
    };
    let hosts = fleet::preview(
        &SshConnector::new(),
        &plan,
        look,
        exec_options(run),
        Cancel::on_signals(),
    )
    .await;
    let batches = match look {
        Look::Deploy => batches(&plan),
        Look::Rollback(_) => Vec::new(),
    };
    let dry_run = DryRun::new(command, hosts, batches);
    let mut text = dry_run.hosts_text();
    if matches!(look, Look::Deploy) {
        text.push_str(&check::describe_rollout(&plan));
    }
    text.push_str(&dry_run.summary());
    // Every text was masked where it was made; masking the whole again keeps any other way
    // (a host name, a release id) from printing a secret.
    let masked = plan.redactor.redact(&text);
    let text = crate::output::visible(&masked);
    let json = serde_json::to_string_pretty(&dry_run).expect("plain data serializes");
    let json = plan.redactor.redact(&json) + "\n";
    match &run.json {
        None => print!("{text}"),
        Some(JsonTarget::Stdout) => {
            eprint!("{text}");
            print!("{json}");
        }
        Some(JsonTarget::File(path)) => {
            print!("{text}");
            if let Err(e) = std::fs::write(path, json) {
                eprintln!("error: --json `{}`: {e}", path.display());
                return ExitStatus::HostsFailed;
            }
        }
    }
    if dry_run.ok {
        ExitStatus::Success
    } else {
        ExitStatus::HostsFailed
    }
}

/// The rollout's batches by host name, as a deploy would take them.
fn batches(plan: &Plan) -> Vec<Vec<String>> {
    plan.rollout
        .batches(plan.hosts.len(), &plan.first)
        .iter()
        .map(|b| {
            b.hosts
                .iter()
                .map(|&i| plan.hosts[i].host.name.clone())
                .collect()
        })
        .collect()
}
