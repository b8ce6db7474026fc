//! What the user asked for, resolved from the command line into plain values: the commands
//! take these, never the CLI's (clap) types. Imports nothing from the crate.

use std::path::PathBuf;
use std::time::Duration;

/// One command and its settings.
#[derive(Debug, Clone)]
pub enum Command {
    /// Validate, resolve secrets and render every template; no connection.
    Check {
        target: PlaybookTarget,
    },
    Deploy {
        target: PlaybookTarget,
        run: RunSettings,
        /// Look at the hosts and say what would change; change nothing.
        dry_run: bool,
    },
    /// An ad-hoc shell command (its words joined with spaces) on many hosts.
    Exec {
        hosts: HostTarget,
        run: RunSettings,
        command: String,
    },
    Ping {
        hosts: HostTarget,
        run: RunSettings,
    },
    Rollback {
        target: PlaybookTarget,
        run: RunSettings,
        /// The release to go back to; `None`: the one before the current.
        to: Option<String>,
        /// Say which release and which steps; change nothing.
        dry_run: bool,
    },
    Releases {
        target: PlaybookTarget,
        run: RunSettings,
    },
    Lock {
        action: LockAction,
        target: PlaybookTarget,
        run: RunSettings,
    },
    /// Each targeted host's containers of the playbook's compose projects.
    Ps {
        target: PlaybookTarget,
        run: RunSettings,
    },
    /// One service's logs from every targeted host, each line prefixed by its host.
    Logs {
        target: PlaybookTarget,
        run: RunSettings,
        logs: LogsSettings,
    },
    /// Scaffold a project (the example app) into `dir`.
    Init {
        dir: PathBuf,
    },
    /// Manage the encrypted secrets file at `vault`.
    Secrets {
        vault: PathBuf,
        action: SecretsAction,
    },
    /// Text the command line made itself (shell completions, the man page), printed as is.
    Print {
        text: String,
    },
}

/// What `dropship logs` shows.
#[derive(Debug, Clone)]
pub struct LogsSettings {
    /// The compose service (checked against compose's name grammar before any connection).
    pub service: String,
    /// `-f`: keep following every host until Ctrl-C.
    pub follow: bool,
    /// `--tail`: lines per container (`None`: `--tail all`).
    pub tail: Option<u32>,
    /// `--since`: only lines this many seconds old or newer.
    pub since_secs: Option<u64>,
    /// `--grep`: only lines matching this (matched locally, on the masked line).
    pub grep: Option<regex::Regex>,
}

/// `dropship secrets init|set|get|list|edit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretsAction {
    /// A new identity (unless one exists) and an empty vault.
    Init,
    /// Set NAME from stdin or a hidden prompt.
    Set { name: String },
    /// Print NAME's value.
    Get { name: String },
    /// Print the names.
    List,
    /// Decrypt into a private temp file, run the editor, encrypt again.
    Edit,
}

/// Hosts of an inventory, without a playbook (`exec`, `ping`).
#[derive(Debug, Clone)]
pub struct HostTarget {
    pub inventory: PathBuf,
    /// `--limit`: names, groups or globs, comma-separated; `!x` excludes.
    pub limit: Option<String>,
}

/// A playbook on the hosts of an inventory.
#[derive(Debug, Clone)]
pub struct PlaybookTarget {
    pub inventory: PathBuf,
    pub playbook: PathBuf,
    pub limit: Option<String>,
    /// `--var KEY=VALUE`, in the order given (highest precedence).
    pub vars: Vec<(String, String)>,
    /// `--tags`: only steps carrying one of these.
    pub tags: Vec<String>,
}

/// How a command that talks to hosts runs and reports.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Hosts worked on at once.
    pub forks: usize,
    /// SSH handshakes in flight at once.
    pub handshakes: usize,
    /// Keep retrying a lock held by another run this long instead of failing.
    pub wait_lock: Option<Duration>,
    /// Where the JSON report goes, if one is asked for.
    pub json: Option<JsonTarget>,
    /// `--plain`: one line per event even on a terminal (no live view).
    pub plain: bool,
    /// `-v`: each remote command's output streamed live, line by line, prefixed by host.
    pub verbose: bool,
}

/// Where `--json` writes the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonTarget {
    /// `--json -`: the report on stdout, human output on stderr.
    Stdout,
    File(PathBuf),
}

impl JsonTarget {
    /// `-` is stdout, anything else a file.
    pub fn from_arg(arg: &str) -> Self {
        if arg == "-" {
            Self::Stdout
        } else {
            Self::File(PathBuf::from(arg))
        }
    }
}

/// `dropship lock status|release`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockAction {
    /// Who holds the lock on each host.
    Status,
    /// Remove the lock whoever holds it.
    Release,
}
