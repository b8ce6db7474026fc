//! The command line: arguments, and each command wired from input files to the executor.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::commands;
use crate::diagnostic::InputError;
use crate::inventory::Inventory;
use crate::plan::{self, Action, PlanOptions};
use crate::playbook::Playbook;
use crate::report::RunReport;
use crate::secrets;

#[derive(Debug, Parser)]
#[command(
    name = "dropship",
    version,
    about = "Agentless fleet deployer: compose apps to many hosts over SSH"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate, resolve secrets and render every template for every host; no connection.
    Check {
        #[command(flatten)]
        target: PlaybookArgs,
    },
    /// Run a playbook on its hosts.
    Deploy {
        #[command(flatten)]
        target: PlaybookArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Run an ad-hoc shell command on many hosts.
    Exec {
        #[command(flatten)]
        hosts: HostArgs,
        #[command(flatten)]
        run: RunArgs,
        /// The command, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Connect, authenticate, verify host keys and report docker/compose versions.
    Ping {
        #[command(flatten)]
        hosts: HostArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Point `current` back at the previous release (or --to ID), then re-run the steps after activation.
    Rollback {
        #[command(flatten)]
        target: PlaybookArgs,
        #[command(flatten)]
        run: RunArgs,
        /// The release to go back to (default: the one before the current).
        #[arg(long, value_name = "RELEASE")]
        to: Option<String>,
    },
    /// Each host's releases, which one is current, and the tail of its audit log.
    Releases {
        #[command(flatten)]
        target: PlaybookArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Show or clear the deploy lock on each host.
    Lock {
        #[arg(value_enum)]
        action: LockAction,
        #[command(flatten)]
        target: PlaybookArgs,
        #[command(flatten)]
        run: RunArgs,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LockAction {
    /// Who holds the lock on each host.
    Status,
    /// Remove the lock whoever holds it (a stale lock after a crash).
    Release,
}

#[derive(Debug, Args)]
pub struct HostArgs {
    /// Inventory file (TOML).
    #[arg(short, long)]
    pub inventory: PathBuf,
    /// Only these hosts: names, groups or globs, comma-separated; `!x` excludes.
    #[arg(short, long)]
    pub limit: Option<String>,
}

#[derive(Debug, Args)]
pub struct PlaybookArgs {
    /// Inventory file (TOML).
    #[arg(short, long)]
    pub inventory: PathBuf,
    /// Playbook file (TOML).
    pub playbook: PathBuf,
    /// Only these hosts: names, groups or globs, comma-separated; `!x` excludes.
    #[arg(short, long)]
    pub limit: Option<String>,
    /// Set a variable (highest precedence); repeatable.
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Only steps carrying one of these tags; comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub tags: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Hosts worked on at once.
    #[arg(long, default_value_t = 64)]
    pub forks: usize,
    /// SSH handshakes in flight at once.
    #[arg(long, default_value_t = 32)]
    pub handshakes: usize,
    /// Write a JSON report to this file (`-` for stdout; human output then goes to stderr).
    #[arg(long, value_name = "PATH")]
    pub json: Option<String>,
    /// Plain lines even on a terminal.
    #[arg(long)]
    pub plain: bool,
    /// If a host is locked by another run, keep trying this long (e.g. 5m) instead of failing.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub wait_lock: Option<std::time::Duration>,
}

fn parse_var(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

/// How a command ended, mapped to the process's exit status by `main`.
#[derive(Debug)]
pub enum Outcome {
    Success,
    HostsFailed,
    BadInput(InputError),
    /// SIGINT/SIGTERM: running steps finished, locks released.
    Interrupted,
}

impl Outcome {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Success => 0,
            Self::HostsFailed => 1,
            Self::BadInput(_) => 2,
            Self::Interrupted => 130,
        }
    }
}

pub async fn run(cli: Cli) -> Outcome {
    match dispatch(cli).await {
        Ok(Some(r)) if r.interrupted => Outcome::Interrupted,
        Ok(Some(r)) if !r.ok => Outcome::HostsFailed,
        Ok(_) => Outcome::Success,
        Err(e) => Outcome::BadInput(e),
    }
}

async fn dispatch(cli: Cli) -> Result<Option<RunReport>, InputError> {
    match cli.command {
        Command::Check { target } => {
            let plan = load_plan(&target)?;
            let described = commands::check::describe_plan(&plan);
            print!("{}", crate::output::visible(&described));
            Ok(None)
        }
        Command::Deploy { target, run } => {
            let plan = load_plan(&target)?;
            preflight(&plan, &run)?;
            Ok(Some(commands::deploy(plan, &run).await))
        }
        Command::Rollback { target, run, to } => {
            let plan = load_plan(&target)?;
            preflight(&plan, &run)?;
            Ok(Some(commands::rollback(plan, &run, to.as_deref()).await))
        }
        Command::Releases { target, run } => {
            let plan = load_sites(&target)?;
            preflight(&plan, &run)?;
            Ok(Some(commands::inspect::releases(plan, &run).await))
        }
        Command::Lock {
            action,
            target,
            run,
        } => {
            let plan = load_sites(&target)?;
            preflight(&plan, &run)?;
            Ok(Some(commands::inspect::lock(plan, &run, action).await))
        }
        Command::Exec {
            hosts,
            run,
            command,
        } => {
            let inventory = Inventory::load(&hosts.inventory)?;
            let targets = plan::target_hosts(&inventory, "all", hosts.limit.as_deref())?;
            let command = command.join(" ");
            let action = Action::Run {
                command: command.clone(),
                dir: None,
                creates: None,
                unless: None,
            };
            let plan = plan::adhoc(targets, &command, action);
            preflight(&plan, &run)?;
            Ok(Some(commands::adhoc("exec", plan, &run).await))
        }
        Command::Ping { hosts, run } => {
            let inventory = Inventory::load(&hosts.inventory)?;
            let targets = plan::target_hosts(&inventory, "all", hosts.limit.as_deref())?;
            let plan = plan::adhoc(targets, "ping", Action::Facts);
            preflight(&plan, &run)?;
            Ok(Some(commands::adhoc("ping", plan, &run).await))
        }
    }
}

/// What a run needs locally, checked before the first connection: each host's identity file
/// and known_hosts, and the `--json` file.
fn preflight(plan: &plan::Plan, run: &RunArgs) -> Result<(), InputError> {
    for host in &plan.hosts {
        host.host.check_local_files()?;
    }
    match run.json.as_deref() {
        Some(target) if target != "-" => check_json_target(std::path::Path::new(target)),
        _ => Ok(()),
    }
}

/// The JSON report is written when the run ends: a path it cannot be written to must refuse
/// the run before it starts, not after hosts were changed. The check leaves no file behind: an
/// existing file is opened for writing without truncating it, a new one is created and removed.
fn check_json_target(path: &std::path::Path) -> Result<(), InputError> {
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

fn plan_options(target: &PlaybookArgs) -> PlanOptions {
    PlanOptions {
        limit: target.limit.clone(),
        vars: target.vars.clone(),
        tags: target.tags.clone(),
    }
}

/// Everything that can be checked without a network: parse, resolve secrets, render all.
fn load_plan(target: &PlaybookArgs) -> Result<plan::Plan, InputError> {
    let inventory = Inventory::load(&target.inventory)?;
    let playbook = Playbook::load(&target.playbook)?;
    let bases: Vec<&std::path::Path> = playbook.bases.iter().map(PathBuf::as_path).collect();
    let secrets = secrets::resolve_all(&playbook.secrets, &playbook.file, &bases)?;
    plan::build(&inventory, &playbook, &secrets, &plan_options(target))
}

/// The hosts and where they keep releases and locks; no secrets needed.
fn load_sites(target: &PlaybookArgs) -> Result<plan::Plan, InputError> {
    let inventory = Inventory::load(&target.inventory)?;
    let playbook = Playbook::load(&target.playbook)?;
    plan::sites(&inventory, &playbook, &plan_options(target))
}
