//! The commands: input files loaded and checked, reporters and options wired to the fleet runs,
//! and how each command ended. Take `settings`, never the CLI's types; may import settings,
//! diagnostic, output, inventory, playbook, secrets, plan, fleet, report, remote and transport,
//! never cli.

pub mod check;
pub mod dry_run;
pub mod init;
pub mod inspect;
mod logs;
mod ps;
pub mod secrets;
mod views;

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use crate::diagnostic::InputError;
use crate::fleet::{self, Adhoc, Cancel, ExecOptions, LockOptions};
use crate::inventory::Inventory;
use crate::plan::{self, Action, Plan, PlanOptions};
use crate::playbook::Playbook;
use crate::report::ordered::InHostOrder;
use crate::report::{
    Fanout, Reporter, RunReport, json::JsonReporter, plain::PlainReporter, tty::TtyReporter,
};
use crate::secrets::Redactor;
use crate::session::Query;
use crate::settings::{Command, JsonTarget, PlaybookTarget, RunSettings};
use crate::steps::run;
use crate::transport::ssh::SshConnector;

/// How a command ended, mapped to the process's exit status by `main`.
#[derive(Debug)]
pub enum ExitStatus {
    Success,
    HostsFailed,
    BadInput(InputError),
    /// SIGINT/SIGTERM: running steps finished, locks released.
    Interrupted,
}

impl ExitStatus {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Success => 0,
            Self::HostsFailed => 1,
            Self::BadInput(_) => 2,
            Self::Interrupted => 130,
        }
    }
}

/// Runs one command to its end.
pub async fn run(command: Command) -> ExitStatus {
    if let Command::Secrets { vault, action } = command {
        // Its own statuses: an editor stopped by Ctrl-C is an interrupt, not bad input.
        return secrets::run(&vault, action).await;
    }
    if let Command::Ps { .. } | Command::Logs { .. } = command {
        // Their own statuses: a followed log ended by Ctrl-C is a success.
        return match fleet_view(command).await {
            Ok(status) => status,
            Err(e) => ExitStatus::BadInput(e),
        };
    }
    let command = match command {
        Command::Deploy {
            target,
            run,
            dry_run: true,
        } => return dry_run::deploy(&target, &run).await,
        Command::Rollback {
            target,
            run,
            to,
            dry_run: true,
        } => return dry_run::rollback(&target, &run, to.as_deref()).await,
        other => other,
    };
    match dispatch(command).await {
        Ok(Some(r)) if r.interrupted => ExitStatus::Interrupted,
        Ok(Some(r)) if !r.ok => ExitStatus::HostsFailed,
        Ok(_) => ExitStatus::Success,
        Err(e) => ExitStatus::BadInput(e),
    }
}

async fn dispatch(command: Command) -> Result<Option<RunReport>, InputError> {
    match command {
        Command::Print { text } => {
            // A closed pipe (`dropship man | head`) is no error worth reporting.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
            Ok(None)
        }
        Command::Init { dir } => init::run(&dir).map(|()| None),
        Command::Secrets { .. } => unreachable!("`run` runs the secrets commands"),
        Command::Ps { .. } | Command::Logs { .. } => unreachable!("`run` runs the fleet views"),
        Command::Check { target } => {
            let plan = load_plan(&target)?;
            let described = check::describe_plan(&plan);
            print!("{}", crate::output::visible(&described));
            Ok(None)
        }
        Command::Deploy { target, run, .. } => {
            let plan = load_plan(&target)?;
            preflight(&plan, &run)?;
            Ok(Some(deploy(plan, &run).await))
        }
        Command::Rollback {
            target, run, to, ..
        } => {
            let plan = load_plan(&target)?;
            preflight(&plan, &run)?;
            Ok(Some(rollback(plan, &run, to.as_deref()).await))
        }
        Command::Releases { target, run } => {
            let plan = load_sites(&target)?;
            preflight(&plan, &run)?;
            Ok(Some(inspect::releases(plan, &run).await))
        }
        Command::Lock {
            action,
            target,
            run,
        } => {
            let plan = load_sites(&target)?;
            preflight(&plan, &run)?;
            Ok(Some(inspect::lock(plan, &run, action).await))
        }
        Command::Exec {
            hosts,
            run,
            command,
        } => {
            let inventory = Inventory::load(&hosts.inventory)?;
            let targets = plan::target_hosts(&inventory, "all", hosts.limit.as_deref())?;
            let action = Action::Run(run::Command::plain(command.clone()));
            let plan = plan::adhoc(targets, &command, action);
            preflight(&plan, &run)?;
            Ok(Some(adhoc("exec", plan, &run).await))
        }
        Command::Ping { hosts, run } => {
            let inventory = Inventory::load(&hosts.inventory)?;
            let targets = plan::target_hosts(&inventory, "all", hosts.limit.as_deref())?;
            let plan = plan::inspection(targets);
            preflight(&plan, &run)?;
            Ok(Some(inspect::ping(plan, &run).await))
        }
    }
}

/// `ps` and `logs`: the plan rendered (its projects, and its secrets to mask), then every host.
async fn fleet_view(command: Command) -> Result<ExitStatus, InputError> {
    match command {
        Command::Ps { target, run } => {
            let plan = load_plan(&target)?;
            preflight(&plan, &run)?;
            ps::ps(plan, &run).await
        }
        Command::Logs { target, run, logs } => {
            let plan = load_plan(&target)?;
            preflight(&plan, &run)?;
            logs::logs(plan, &run, &logs).await
        }
        _ => unreachable!("only the fleet views"),
    }
}

/// What a run needs locally, checked before the first connection: each host's identity file
/// and known_hosts, and the `--json` file.
fn preflight(plan: &Plan, run: &RunSettings) -> Result<(), InputError> {
    for host in &plan.hosts {
        host.host.check_local_files()?;
    }
    match &run.json {
        Some(JsonTarget::File(path)) => check_json_target(path),
        _ => Ok(()),
    }
}

/// The JSON report is written when the run ends: a path it cannot be written to must refuse
/// the run before it starts, not after hosts were changed. The check leaves no file behind: an
/// existing file is opened for writing without truncating it, a new one is created and removed.
fn check_json_target(path: &Path) -> Result<(), InputError> {
    let hint = "give a file in an existing, writable directory, or `-` for stdout";
    if path.is_dir() {
        return Err(
            InputError::plain(format!("--json `{}` is a directory", path.display()))
                .with_hint(hint),
        );
    }
    let mut open = std::fs::OpenOptions::new();
    open.write(true);
    let result = if path.exists() {
        open.open(path).map(drop)
    } else {
        open.create_new(true)
            .open(path)
            .and_then(|_| std::fs::remove_file(path))
    };
    result.map_err(|e| {
        InputError::plain(format!(
            "--json `{}`: cannot write the JSON report: {e}",
            path.display()
        ))
        .with_hint(hint)
    })
}

fn plan_options(target: &PlaybookTarget) -> PlanOptions {
    PlanOptions {
        limit: target.limit.clone(),
        vars: target.vars.clone(),
        tags: target.tags.clone(),
    }
}

/// Everything that can be checked without a network: parse, resolve secrets, render all.
fn load_plan(target: &PlaybookTarget) -> Result<Plan, InputError> {
    let inventory = Inventory::load(&target.inventory)?;
    let playbook = Playbook::load(&target.playbook)?;
    let bases: Vec<&Path> = playbook.bases.iter().map(PathBuf::as_path).collect();
    let secrets = crate::secrets::resolve_all(
        &playbook.secrets,
        playbook.secrets_vault.as_ref(),
        &playbook.file,
        &bases,
    )?;
    plan::build(&inventory, &playbook, &secrets, &plan_options(target))
}

/// The hosts and where they keep releases and locks; no secrets needed.
fn load_sites(target: &PlaybookTarget) -> Result<Plan, InputError> {
    let inventory = Inventory::load(&target.inventory)?;
    let playbook = Playbook::load(&target.playbook)?;
    plan::sites(&inventory, &playbook, &plan_options(target))
}

/// The reporters a run's settings ask for: the live terminal view when stdout is a terminal
/// (unless `--plain` or `--json -`), else plain lines (to stderr when JSON goes to stdout);
/// and JSON. All mask the plan's secrets.
pub fn reporters(run: &RunSettings, redactor: &Redactor) -> Fanout {
    let json_to_stdout = run.json == Some(JsonTarget::Stdout);
    let live = !run.plain && !json_to_stdout && std::io::stdout().is_terminal();
    let human: Box<dyn Reporter> = if live {
        Box::new(TtyReporter::new(redactor.clone()))
    } else {
        Box::new(PlainReporter::new(json_to_stdout, redactor.clone()))
    };
    let mut reporters = vec![human];
    if let Some(target) = &run.json {
        let path = match target {
            JsonTarget::Stdout => None,
            JsonTarget::File(path) => Some(path.clone()),
        };
        reporters.push(Box::new(JsonReporter::new(path, redactor.clone())));
    }
    Fanout(reporters)
}

pub fn exec_options(run: &RunSettings) -> ExecOptions {
    ExecOptions {
        forks: run.forks,
        handshakes: run.handshakes,
        stream_output: run.verbose,
        ..ExecOptions::default()
    }
}

fn lock_options(run: &RunSettings) -> LockOptions {
    LockOptions {
        wait: run.wait_lock,
    }
}

pub async fn deploy(plan: Plan, run: &RunSettings) -> RunReport {
    fleet::deploy(
        &SshConnector::new(),
        &plan,
        exec_options(run),
        &lock_options(run),
        &reporters(run, &plan.redactor),
        Cancel::on_signals(),
    )
    .await
}

pub async fn rollback(plan: Plan, run: &RunSettings, to: Option<&str>) -> RunReport {
    fleet::rollback(
        &SshConnector::new(),
        &plan,
        to,
        exec_options(run),
        &lock_options(run),
        &reporters(run, &plan.redactor),
        Cancel::on_signals(),
    )
    .await
}

pub async fn adhoc(command: &str, plan: Plan, run: &RunSettings) -> RunReport {
    adhoc_run(command, Adhoc::Steps, plan, run).await
}

/// Runs one query per host for an inspection command; hosts are shown in the plan's (the
/// inventory's) order, whatever order they answer in.
pub async fn query(command: &str, plan: Plan, queries: &[Query], run: &RunSettings) -> RunReport {
    let reporters = reporters(run, &plan.redactor);
    let names = plan.hosts.iter().map(|h| h.host.name.clone()).collect();
    let ordered = InHostOrder::new(&reporters, names);
    fleet::adhoc(
        command,
        Adhoc::Queries(queries),
        &SshConnector::new(),
        &plan,
        exec_options(run),
        &ordered,
        Cancel::on_signals(),
    )
    .await
}

async fn adhoc_run(command: &str, work: Adhoc<'_>, plan: Plan, run: &RunSettings) -> RunReport {
    fleet::adhoc(
        command,
        work,
        &SshConnector::new(),
        &plan,
        exec_options(run),
        &reporters(run, &plan.redactor),
        Cancel::on_signals(),
    )
    .await
}
