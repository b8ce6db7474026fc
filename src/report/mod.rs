//! Results of a run and the `Reporter` trait through which the executor tells the world.

pub mod json;
pub mod ordered;
pub mod plain;
pub mod preview;
pub mod timeline;
pub mod tty;

use serde::Serialize;

use timeline::Timeline;

/// How one step ended on one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Changed,
    Ok,
    Failed,
    Skipped,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Self::Changed => "changed",
            Self::Ok => "ok",
            Self::Failed => "FAILED",
            Self::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    pub name: String,
    pub outcome: Outcome,
    /// A short note (file path, versions, skip reason) or, on failure, the error with the
    /// tail of the command's stderr. Secrets are already masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// What a `run` command printed on stdout (its last lines), secrets masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// After a failed health check or `compose up`: what the compose containers involved say.
    #[serde(flatten)]
    pub words: ContainerWords,
    pub elapsed_ms: u64,
}

/// What the containers of the compose projects a failed step concerns say: those that stand
/// out (exited with an error, restarting, unhealthy), or every one when none does, each with
/// its last log lines; and why a project could not be looked at. Secrets are already masked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContainerWords {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainerReport>,
    /// A project without containers, one whose containers could not be listed, ones left out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub container_notes: Vec<String>,
}

/// One container and its last words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerReport {
    /// The compose project it belongs to, as the playbook names it.
    pub project: String,
    pub name: String,
    /// Its compose service (empty when docker did not say).
    pub service: String,
    /// Docker's state: `running`, `exited`, `restarting`, `created`, ... (`unknown` when it
    /// could not be read).
    pub state: String,
    /// The exit code of its last run, once it ran and stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// `starting`, `healthy` or `unhealthy`, when it has a health check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// In a few words: `exited (1)`, `running (unhealthy)`, `restarting (last exit 3)`.
    pub status: String,
    /// Its last log lines (stdout and stderr), at most 30.
    pub logs: String,
}

impl ContainerWords {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.container_notes.is_empty()
    }

    /// As text, one line each: the notes, then each container's status line followed by its
    /// log lines (`  | `).
    pub fn lines(&self) -> Vec<String> {
        let mut lines = self.container_notes.clone();
        for c in &self.containers {
            let service = if c.service.is_empty() || c.service == c.name {
                String::new()
            } else {
                format!(" ({})", c.service)
            };
            lines.push(format!("container {}{service}: {}", c.name, c.status));
            if c.logs.is_empty() {
                lines.push("  (no log output)".to_string());
            }
            lines.extend(c.logs.lines().map(|l| format!("  | {l}")));
        }
        lines
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HostResult {
    pub host: String,
    pub address: String,
    /// Why the host failed before or outside a step (unreachable, host key, auth), if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub steps: Vec<StepResult>,
    /// The release this host was rolled back to after its batch failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<String>,
    /// Why the host was not deployed although nothing failed on it (rollout halted, interrupted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub elapsed_ms: u64,
    /// When each phase of the host's run started and how long it took.
    #[serde(skip_serializing_if = "Timeline::is_empty")]
    pub timeline: Timeline,
}

impl HostResult {
    pub fn new(host: &str, address: &str) -> Self {
        Self {
            host: host.to_string(),
            address: address.to_string(),
            error: None,
            steps: Vec::new(),
            rolled_back: None,
            note: None,
            elapsed_ms: 0,
            timeline: Timeline::new(std::time::Instant::now()),
        }
    }

    pub fn failed(&self) -> bool {
        self.error.is_some() || self.steps.iter().any(|s| s.outcome == Outcome::Failed)
    }

    pub fn count(&self, outcome: Outcome) -> usize {
        self.steps.iter().filter(|s| s.outcome == outcome).count()
    }

    /// How the host's run ended, as the summary counts it: a host with a note (interrupted,
    /// rollout halted, lock held elsewhere) and nothing failed was not deployed, never ok.
    pub fn status(&self) -> HostStatus {
        if self.failed() {
            HostStatus::Failed
        } else if self.note.is_some() {
            HostStatus::NotDeployed
        } else {
            HostStatus::Ok
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostStatus {
    Ok,
    Failed,
    NotDeployed,
}

/// How many hosts ended each way; the summary line and the JSON report say the same.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub ok: usize,
    pub failed: usize,
    pub not_deployed: usize,
}

impl Counts {
    pub fn of(hosts: &[HostResult]) -> Self {
        let mut counts = Self::default();
        for h in hosts {
            match h.status() {
                HostStatus::Ok => counts.ok += 1,
                HostStatus::Failed => counts.failed += 1,
                HostStatus::NotDeployed => counts.not_deployed += 1,
            }
        }
        counts
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    pub command: String,
    pub ok: bool,
    /// The release this run created or rolled back to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// Why the rollout stopped before its last batch (or rolled the failed batch back), if it
    /// did. Never set without a `[rollout]` that had something to halt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub halted: Option<String>,
    /// A lock held by another run refused this one (no host was changed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_conflict: Option<String>,
    pub counts: Counts,
    pub interrupted: bool,
    pub hosts: Vec<HostResult>,
    pub elapsed_ms: u64,
}

/// What the executor reports while it works.
pub enum Event<'a> {
    HostStarted {
        host: &'a str,
    },
    /// A step begins on a host (in a driver script: when the step before it ended).
    StepStarted {
        host: &'a str,
        step: &'a str,
    },
    /// One line a remote command printed (`-v`), secrets masked as it arrived, without its
    /// newline; not yet made visible.
    Output {
        host: &'a str,
        line: &'a str,
    },
    StepFinished {
        host: &'a str,
        step: &'a StepResult,
    },
    /// A host failed outside a step (unreachable, host key, authentication, lock, probe): said
    /// when it happens, before its steps are reported skipped.
    HostFailed {
        host: &'a str,
        error: &'a str,
    },
    HostFinished {
        result: &'a HostResult,
    },
    /// A rollout batch starts (1-based `number` of `of`).
    BatchStarted {
        number: usize,
        of: usize,
        hosts: &'a [String],
        /// The `[rollout] first` item this batch deploys, if it is one.
        first: Option<&'a str>,
    },
    /// Something about the whole run (pause, halt, lock).
    Note {
        text: &'a str,
    },
}

/// Receives events from many host tasks at once; implementations serialise their own output.
pub trait Reporter: Send + Sync {
    fn event(&self, event: &Event<'_>);
    /// Called once with the whole report after every host finished.
    fn finished(&self, report: &RunReport);
}

/// Sends every event to several reporters (e.g. the plain printer and the JSON writer).
pub struct Fanout(pub Vec<Box<dyn Reporter>>);

impl Reporter for Fanout {
    fn event(&self, event: &Event<'_>) {
        for r in &self.0 {
            r.event(event);
        }
    }

    fn finished(&self, report: &RunReport) {
        for r in &self.0 {
            r.finished(report);
        }
    }
}
