//! The commands that talk to hosts: reporters and options wired to the fleet runs.

pub mod check;
pub mod inspect;

use crate::cli::RunArgs;
use crate::deploy::{self, LockOptions};
use crate::plan::Plan;
use crate::report::{Fanout, Reporter, RunReport, json::JsonReporter, plain::PlainReporter};
use crate::secrets::Redactor;
use crate::session::{Cancel, ExecOptions};
use crate::transport::ssh::SshConnector;

/// The reporters a run's flags ask for: plain lines (to stderr when JSON goes to stdout) and
/// JSON, both masking the plan's secrets.
pub fn reporters(run: &RunArgs, redactor: &Redactor) -> Fanout {
    let json_to_stdout = run.json.as_deref() == Some("-");
    let mut reporters: Vec<Box<dyn Reporter>> = vec![Box::new(PlainReporter::new(
        json_to_stdout,
        redactor.clone(),
    ))];
    if let Some(target) = &run.json {
        reporters.push(Box::new(JsonReporter::new(target, redactor.clone())));
    }
    Fanout(reporters)
}

pub fn exec_options(run: &RunArgs) -> ExecOptions {
    ExecOptions {
        forks: run.forks,
        handshakes: run.handshakes,
    }
}

pub async fn deploy(plan: Plan, run: &RunArgs) -> RunReport {
    let lock = LockOptions {
        wait: run.wait_lock,
    };
    deploy::deploy(
        &SshConnector::new(),
        &plan,
        exec_options(run),
        &lock,
        &reporters(run, &plan.redactor),
        Cancel::on_signals(),
    )
    .await
}

pub async fn rollback(plan: Plan, run: &RunArgs, to: Option<&str>) -> RunReport {
    let lock = LockOptions {
        wait: run.wait_lock,
    };
    deploy::rollback(
        &SshConnector::new(),
        &plan,
        to,
        exec_options(run),
        &lock,
        &reporters(run, &plan.redactor),
        Cancel::on_signals(),
    )
    .await
}

pub async fn adhoc(command: &str, plan: Plan, run: &RunArgs) -> RunReport {
    deploy::adhoc(
        command,
        &SshConnector::new(),
        &plan,
        exec_options(run),
        &reporters(run, &plan.redactor),
        Cancel::on_signals(),
    )
    .await
}
