//! The command line: arguments, and each command wired from input files to the executor.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::diagnostic::InputError;
use crate::executor::{self, ExecOptions};
use crate::inventory::Inventory;
use crate::plan::{self, Action, Plan, PlanOptions};
use crate::playbook::Playbook;
use crate::report::{Fanout, Reporter, RunReport, json::JsonReporter, plain::PlainReporter};
use crate::secrets;
use crate::transport::ssh::SshConnector;

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
}

impl Outcome {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Success => 0,
            Self::HostsFailed => 1,
            Self::BadInput(_) => 2,
        }
    }
}

pub async fn run(cli: Cli) -> Outcome {
    match dispatch(cli).await {
        Ok(report) => match report {
            Some(r) if !r.ok => Outcome::HostsFailed,
            _ => Outcome::Success,
        },
        Err(e) => Outcome::BadInput(e),
    }
}

async fn dispatch(cli: Cli) -> Result<Option<RunReport>, InputError> {
    match cli.command {
        Command::Check { target } => {
            let plan = load_plan(&target)?;
            print!("{}", describe_plan(&plan));
            Ok(None)
        }
        Command::Deploy { target, run } => {
            let plan = load_plan(&target)?;
            Ok(Some(execute("deploy", plan, &run).await))
        }
        Command::Exec {
            hosts,
            run,
            command,
        } => {
            let inventory = Inventory::load(&hosts.inventory)?;
            let targets = plan::target_hosts(&inventory, "all", hosts.limit.as_deref())?;
            let command = command.join(" ");
            let plan = plan::adhoc(
                targets,
                &command,
                Action::Run {
                    command: command.clone(),
                    dir: None,
                },
            );
            Ok(Some(execute("exec", plan, &run).await))
        }
        Command::Ping { hosts, run } => {
            let inventory = Inventory::load(&hosts.inventory)?;
            let targets = plan::target_hosts(&inventory, "all", hosts.limit.as_deref())?;
            let plan = plan::adhoc(targets, "ping", Action::Facts);
            Ok(Some(execute("ping", plan, &run).await))
        }
    }
}

/// Everything that can be checked without a network: parse, resolve secrets, render all.
fn load_plan(target: &PlaybookArgs) -> Result<Plan, InputError> {
    let inventory = Inventory::load(&target.inventory)?;
    let playbook = Playbook::load(&target.playbook)?;
    let bases: Vec<&std::path::Path> = playbook.bases.iter().map(PathBuf::as_path).collect();
    let secrets = secrets::resolve_all(&playbook.secrets, &playbook.file, &bases)?;
    let options = PlanOptions {
        limit: target.limit.clone(),
        vars: target.vars.clone(),
        tags: target.tags.clone(),
    };
    plan::build(&inventory, &playbook, &secrets, &options)
}

async fn execute(command: &str, plan: Plan, run: &RunArgs) -> RunReport {
    let json_to_stdout = run.json.as_deref() == Some("-");
    // Live per-host lines are planned for terminals; until then every output is plain lines.
    let _interactive = !run.plain && std::io::stdout().is_terminal();
    let mut reporters: Vec<Box<dyn Reporter>> = vec![Box::new(PlainReporter::new(json_to_stdout))];
    if let Some(target) = &run.json {
        reporters.push(Box::new(JsonReporter::new(target)));
    }
    let options = ExecOptions {
        forks: run.forks,
        handshakes: run.handshakes,
    };
    executor::run(
        command,
        Arc::new(SshConnector::new()),
        Arc::new(plan),
        options,
        Arc::new(Fanout(reporters)),
    )
    .await
}

/// What `check` prints: every host and what each step would do, secrets masked.
pub fn describe_plan(plan: &Plan) -> String {
    let mut out = String::new();
    for hp in &plan.hosts {
        out.push_str(&format!(
            "{} ({}@{}:{})\n",
            hp.host.name, hp.connect.user, hp.host.address, hp.connect.port
        ));
        for step in &hp.steps {
            let what = match &step.action {
                Action::Upload(u) => format!(
                    "file {} ({:04o}, {} bytes, sha256 {}{})",
                    u.dest,
                    u.mode,
                    u.content.len(),
                    &u.sha256[..12],
                    if u.sensitive { ", holds secrets" } else { "" }
                ),
                Action::Run { command, dir } => match dir {
                    Some(d) => format!("run in {d}: {}", plan.redactor.redact(command)),
                    None => format!("run: {}", plan.redactor.redact(command)),
                },
                Action::DockerLogin {
                    registry, username, ..
                } => {
                    format!("docker login {registry} as {username} (password on stdin)")
                }
                Action::Compose {
                    command,
                    dir,
                    project,
                    ..
                } => {
                    format!("compose {} in {dir} (project {project})", command.as_str())
                }
                Action::Health(check) => match &check.probe {
                    crate::health::Probe::Http(t) => format!(
                        "GET http://{}:{}{} from the host until HTTP {} (timeout {})",
                        t.host,
                        t.port,
                        t.path,
                        check.expect,
                        humantime::format_duration(check.timeout)
                    ),
                    crate::health::Probe::Command { command, .. } => format!(
                        "run `{command}` until it exits 0 (timeout {})",
                        humantime::format_duration(check.timeout)
                    ),
                },
                Action::Facts => "report versions".to_string(),
                Action::Skip { reason } => format!("skip ({reason})"),
            };
            out.push_str(&format!("  - {}: {what}\n", step.name));
        }
    }
    let steps = plan.hosts.first().map_or(0, |h| h.steps.len());
    out.push_str(&format!(
        "ok: {} host(s), {steps} step(s) each; every template rendered\n",
        plan.hosts.len()
    ));
    out
}
