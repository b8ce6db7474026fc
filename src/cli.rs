//! The command line: clap's arguments, resolved into `settings` and handed to `commands`.
//! The only module (with main.rs) that knows clap; may import settings and commands.

use std::path::PathBuf;

use clap::{Args, CommandFactory as _, Parser, Subcommand};

use crate::commands::{self, ExitStatus};
use crate::settings::{self, HostTarget, JsonTarget, PlaybookTarget, RunSettings, SecretsAction};

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
        /// Connect and show what would change on each host (file diffs, secrets masked; the
        /// commands that would run); take no lock, write nothing.
        #[arg(long)]
        dry_run: bool,
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
        /// Say which release each host would go back to and which steps would re-run; change
        /// nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Each host's releases, which one is current, and the tail of its audit log.
    Releases {
        #[command(flatten)]
        target: PlaybookArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// A table of each host's containers of the playbook's compose projects: state, image, status.
    Ps {
        #[command(flatten)]
        target: PlaybookArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// One service's logs from every host, each line prefixed `[host] `; `-f` follows them all.
    Logs {
        #[command(flatten)]
        target: PlaybookArgs,
        #[command(flatten)]
        run: RunArgs,
        /// The compose service.
        service: String,
        /// Keep following every host's logs until Ctrl-C (which ends with status 0).
        #[arg(short, long)]
        follow: bool,
        /// Lines per container from the end of its logs, or `all`.
        #[arg(long, value_name = "N|all", default_value = "100", value_parser = parse_tail)]
        tail: Tail,
        /// Only lines at most this old (e.g. 10m, 2h) or since this time (e.g. 2026-11-29T10:00:00Z).
        #[arg(long, value_name = "DURATION|TIME", value_parser = parse_since)]
        since: Option<u64>,
        /// Only lines matching this regular expression (matched here, on the masked line).
        #[arg(long, value_name = "RE", value_parser = parse_grep)]
        grep: Option<regex::Regex>,
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
    /// Scaffold a project: inventories, the example playbook and its templates, a .gitignore.
    Init {
        /// Where (created if missing); no file there is ever overwritten.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// The encrypted secrets file (age): `{ vault = "NAME" }` in a playbook's [secrets].
    Secrets {
        /// The vault file.
        #[arg(
            long,
            env = "DROPSHIP_VAULT",
            default_value = "secrets.age",
            global = true
        )]
        vault: PathBuf,
        #[command(subcommand)]
        action: SecretsCommand,
    },
    /// Print a shell completion script (e.g. `dropship completions bash > ~/.local/share/bash-completion/completions/dropship`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout: `dropship man | man -l -`; `dropship man deploy`
    /// for a command's own page.
    Man {
        #[arg(value_parser = parse_command_name)]
        command: Option<String>,
    },
}

/// The identity is read from $DROPSHIP_AGE_KEY_FILE, $DROPSHIP_AGE_KEY or
/// ~/.config/dropship/age.key, in that order.
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Create an identity (unless one exists; never overwritten) and an empty vault.
    Init,
    /// Set a secret; its value is read from stdin, or a hidden prompt on a terminal.
    Set { name: String },
    /// Print a secret's value.
    Get { name: String },
    /// List the secrets' names.
    List,
    /// Edit the vault in $VISUAL/$EDITOR (a private temp file, removed afterwards).
    Edit,
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
    /// SSH handshakes in flight at once across the run (and at most 8 to any one server).
    #[arg(long, default_value_t = 64)]
    pub handshakes: usize,
    /// Write a JSON report to this file (`-` for stdout; human output then goes to stderr).
    #[arg(long, value_name = "PATH")]
    pub json: Option<String>,
    /// If a host is locked by another run, keep trying this long (e.g. 5m) instead of failing.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub wait_lock: Option<std::time::Duration>,
    /// One line per event as it happens, even on a terminal (no live per-host lines).
    #[arg(long)]
    pub plain: bool,
    /// Stream each remote command's output as it comes, each line prefixed by its host.
    #[arg(short, long)]
    pub verbose: bool,
}

/// A name of one of dropship's commands (for `man COMMAND`).
fn parse_command_name(name: &str) -> Result<String, String> {
    let cli = Cli::command();
    if cli.find_subcommand(name).is_some() {
        Ok(name.to_string())
    } else {
        let names: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
        Err(format!("no command `{name}`; one of: {}", names.join(", ")))
    }
}

/// `--tail`: a number of lines, or `all` (`Tail(None)`).
#[derive(Debug, Clone, Copy)]
pub struct Tail(Option<u32>);

fn parse_tail(text: &str) -> Result<Tail, String> {
    if text == "all" {
        return Ok(Tail(None));
    }
    text.parse()
        .map(|n| Tail(Some(n)))
        .map_err(|_| format!("`{text}` is not a number of lines or `all`"))
}

/// `--since`: a duration back from now (`10m`), or a time (RFC 3339, UTC), as seconds ago.
fn parse_since(text: &str) -> Result<u64, String> {
    if let Ok(ago) = humantime::parse_duration(text) {
        return Ok(ago.as_secs().max(1));
    }
    let at = humantime::parse_rfc3339_weak(text).map_err(|_| {
        format!(
            "`{text}` is neither a duration (e.g. 10m, 2h) nor a time (e.g. 2026-11-29T10:00:00Z)"
        )
    })?;
    let ago = std::time::SystemTime::now()
        .duration_since(at)
        .map_err(|_| format!("`{text}` is in the future"))?;
    Ok(ago.as_secs().max(1))
}

fn parse_grep(text: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(text)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("not a regular expression: {e}"))
}

fn parse_var(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

impl From<LockAction> for settings::LockAction {
    fn from(action: LockAction) -> Self {
        match action {
            LockAction::Status => Self::Status,
            LockAction::Release => Self::Release,
        }
    }
}

impl From<HostArgs> for HostTarget {
    fn from(args: HostArgs) -> Self {
        Self {
            inventory: args.inventory,
            limit: args.limit,
        }
    }
}

impl From<PlaybookArgs> for PlaybookTarget {
    fn from(args: PlaybookArgs) -> Self {
        Self {
            inventory: args.inventory,
            playbook: args.playbook,
            limit: args.limit,
            vars: args.vars,
            tags: args.tags,
        }
    }
}

impl From<RunArgs> for RunSettings {
    fn from(args: RunArgs) -> Self {
        Self {
            forks: args.forks,
            handshakes: args.handshakes,
            wait_lock: args.wait_lock,
            json: args.json.as_deref().map(JsonTarget::from_arg),
            plain: args.plain,
            verbose: args.verbose,
        }
    }
}

impl From<Command> for settings::Command {
    fn from(command: Command) -> Self {
        match command {
            Command::Check { target } => Self::Check {
                target: target.into(),
            },
            Command::Deploy {
                target,
                run,
                dry_run,
            } => Self::Deploy {
                target: target.into(),
                run: run.into(),
                dry_run,
            },
            Command::Exec {
                hosts,
                run,
                command,
            } => Self::Exec {
                hosts: hosts.into(),
                run: run.into(),
                command: command.join(" "),
            },
            Command::Ping { hosts, run } => Self::Ping {
                hosts: hosts.into(),
                run: run.into(),
            },
            Command::Rollback {
                target,
                run,
                to,
                dry_run,
            } => Self::Rollback {
                target: target.into(),
                run: run.into(),
                to,
                dry_run,
            },
            Command::Releases { target, run } => Self::Releases {
                target: target.into(),
                run: run.into(),
            },
            Command::Ps { target, run } => Self::Ps {
                target: target.into(),
                run: run.into(),
            },
            Command::Logs {
                target,
                run,
                service,
                follow,
                tail,
                since,
                grep,
            } => Self::Logs {
                target: target.into(),
                run: run.into(),
                logs: settings::LogsSettings {
                    service,
                    follow,
                    tail: tail.0,
                    since_secs: since,
                    grep,
                },
            },
            Command::Lock {
                action,
                target,
                run,
            } => Self::Lock {
                action: action.into(),
                target: target.into(),
                run: run.into(),
            },
            Command::Init { dir } => Self::Init { dir },
            Command::Secrets { vault, action } => Self::Secrets {
                vault,
                action: match action {
                    SecretsCommand::Init => SecretsAction::Init,
                    SecretsCommand::Set { name } => SecretsAction::Set { name },
                    SecretsCommand::Get { name } => SecretsAction::Get { name },
                    SecretsCommand::List => SecretsAction::List,
                    SecretsCommand::Edit => SecretsAction::Edit,
                },
            },
            Command::Completions { shell } => Self::Print {
                text: completions(shell),
            },
            Command::Man { command } => Self::Print {
                text: man_page(command.as_deref()),
            },
        }
    }
}

/// The completion script for `shell`, from the argument definitions.
fn completions(shell: clap_complete::Shell) -> String {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "dropship", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The man page (roff), from the argument definitions. `.TH` comes first, as man(7) and the
/// tools that sniff a page's type expect; clap_mangen puts its string definitions before it.
fn man_page(command: Option<&str>) -> String {
    let mut out = Vec::new();
    let mut page = Cli::command();
    if let Some(name) = command {
        // The page the main one refers to as dropship-NAME(1).
        page = page
            .find_subcommand(name)
            .expect("checked by parse_command_name")
            .clone()
            .display_name(format!("dropship-{name}"))
            .bin_name(format!("dropship {name}"));
    }
    clap_mangen::Man::new(page)
        .render(&mut out)
        .expect("rendering into memory does not fail");
    let page = String::from_utf8_lossy(&out).into_owned();
    let mut lines: Vec<&str> = page.lines().collect();
    if let Some(at) = lines.iter().position(|l| l.starts_with(".TH ")) {
        let title = lines.remove(at);
        lines.insert(0, title);
    }
    lines.join("\n") + "\n"
}

/// Runs the command the arguments name.
pub async fn run(cli: Cli) -> ExitStatus {
    commands::run(cli.command.into()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> settings::Command {
        let cli = Cli::try_parse_from(std::iter::once("dropship").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        cli.command.into()
    }

    #[test]
    fn run_flags_resolve_into_plain_settings() {
        let settings::Command::Deploy {
            target,
            run,
            dry_run,
        } = settings(&[
            "deploy",
            "-i",
            "inv.toml",
            "app.toml",
            "--limit",
            "web",
            "--var",
            "a=b=c",
            "--tags",
            "x,y",
            "--forks",
            "3",
            "--handshakes",
            "2",
            "--wait-lock",
            "5m",
            "--json",
            "-",
            "--dry-run",
            "--plain",
            "-v",
        ])
        else {
            panic!("not a deploy");
        };
        assert!(dry_run);
        assert_eq!(target.inventory, PathBuf::from("inv.toml"));
        assert_eq!(target.playbook, PathBuf::from("app.toml"));
        assert_eq!(target.limit.as_deref(), Some("web"));
        assert_eq!(target.vars, [("a".to_string(), "b=c".to_string())]);
        assert_eq!(target.tags, ["x", "y"]);
        assert_eq!((run.forks, run.handshakes), (3, 2));
        assert_eq!(run.wait_lock, Some(std::time::Duration::from_secs(300)));
        assert_eq!(run.json, Some(JsonTarget::Stdout));
        assert!(run.plain && run.verbose);
    }

    #[test]
    fn defaults_json_files_exec_words_and_lock_actions() {
        let settings::Command::Exec {
            hosts,
            run,
            command,
        } = settings(&[
            "exec", "-i", "inv.toml", "--json", "r.json", "--", "uname", "-a",
        ])
        else {
            panic!("not an exec");
        };
        assert_eq!(
            (hosts.inventory, hosts.limit),
            (PathBuf::from("inv.toml"), None)
        );
        assert_eq!((run.forks, run.handshakes, run.wait_lock), (64, 64, None));
        assert_eq!(run.json, Some(JsonTarget::File("r.json".into())));
        assert!(!run.plain && !run.verbose);
        assert_eq!(command, "uname -a");
        let settings::Command::Lock { action, .. } =
            settings(&["lock", "release", "-i", "inv.toml", "app.toml"])
        else {
            panic!("not a lock");
        };
        assert_eq!(action, settings::LockAction::Release);
    }

    #[test]
    fn init_secrets_and_generated_text_resolve_into_settings() {
        let settings::Command::Init { dir } = settings(&["init"]) else {
            panic!("not an init");
        };
        assert_eq!(dir, PathBuf::from("."));
        let settings::Command::Secrets { vault, action } =
            settings(&["secrets", "set", "db", "--vault", "v/prod.age"])
        else {
            panic!("not a secrets command");
        };
        assert_eq!(vault, PathBuf::from("v/prod.age"));
        assert_eq!(action, SecretsAction::Set { name: "db".into() });
        // A value is never an argument of `set`.
        assert!(Cli::try_parse_from(["dropship", "secrets", "set", "db", "hunter2"]).is_err());
        let settings::Command::Print { text } = settings(&["completions", "fish"]) else {
            panic!("not printed text");
        };
        assert!(text.contains("complete -c dropship"));
    }

    #[test]
    fn bad_vars_are_refused_by_the_parser() {
        let err =
            Cli::try_parse_from(["dropship", "check", "-i", "i", "p", "--var", "=x"]).unwrap_err();
        assert!(err.to_string().contains("`=x` is not KEY=VALUE"), "{err}");
    }
}
