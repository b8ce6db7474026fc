//! What a dry run found per host (`deploy --dry-run`, `rollback --dry-run`): each step's
//! would-be outcome with its files' masked diffs, as text and as JSON. Data only: the session
//! fills it in, the command prints it.

use serde::Serialize;

pub use crate::remote::compose_preview::ServicePreview;

use super::{Event, Reporter, RunReport};

/// What a step would do on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Would {
    /// Write, change or remove files.
    Change,
    /// Nothing: the host already is as the step wants.
    Ok,
    /// Run its commands.
    Run,
    /// Not run (`when`, `once`, a guard that holds, a handler nothing notifies).
    Skip,
}

/// One file a file step would place, compared with the host's.
#[derive(Debug, Clone, Serialize)]
pub struct FilePreview {
    pub dest: String,
    /// `new`, `changed`, `unchanged` or `removed` (a directory step's `delete`).
    pub change: &'static str,
    /// `0644 → 0600`, `deploy:deploy → www-data:deploy` when those differ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The unified diff, secrets masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// Why there is no diff (binary, too large, unreadable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepPreview {
    pub name: String,
    pub would: Would,
    /// What the step does (`check`'s text).
    pub describe: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FilePreview>,
    /// A compose `up` step: what it would do to each service.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServicePreview>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostPreview {
    pub host: String,
    /// The host could not be looked at (unreachable, a probe that failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `rollback --dry-run`: the release `current` would point at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_to: Option<String>,
    /// With `[release]`: the release (`current`) the new release's files were compared with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compared_with: Option<String>,
    /// Why the run would leave the host alone (a swarm manager other than the one used).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub steps: Vec<StepPreview>,
}

impl HostPreview {
    pub fn new(host: &str) -> Self {
        Self {
            host: host.to_string(),
            error: None,
            rollback_to: None,
            compared_with: None,
            note: None,
            steps: Vec::new(),
        }
    }

    /// Files that would be written, changed or removed.
    pub fn files_changing(&self) -> usize {
        self.steps
            .iter()
            .flat_map(|s| &s.files)
            .filter(|f| f.change != "unchanged")
            .count()
    }

    /// Steps that would run commands.
    pub fn commands_running(&self) -> usize {
        self.steps.iter().filter(|s| s.would == Would::Run).count()
    }
}

/// The whole dry run, for `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    pub command: String,
    pub dry_run: bool,
    pub ok: bool,
    pub files_changing: usize,
    pub commands_running: usize,
    pub hosts: Vec<HostPreview>,
    /// The rollout's batches (host names), as a deploy would take them.
    pub batches: Vec<Vec<String>>,
}

impl DryRun {
    pub fn new(command: &str, hosts: Vec<HostPreview>, batches: Vec<Vec<String>>) -> Self {
        Self {
            command: command.to_string(),
            dry_run: true,
            ok: hosts.iter().all(|h| h.error.is_none()),
            files_changing: hosts.iter().map(HostPreview::files_changing).sum(),
            commands_running: hosts.iter().map(HostPreview::commands_running).sum(),
            hosts,
            batches,
        }
    }

    /// The per-host text, without the rollout block and summary (the command adds them).
    pub fn hosts_text(&self) -> String {
        let mut out = String::new();
        for host in &self.hosts {
            out.push_str(&format!("{}\n", host.host));
            if let Some(error) = &host.error {
                out.push_str(&format!("  FAILED: {}\n", indent_rest(error, "    ")));
                continue;
            }
            if let Some(note) = &host.note {
                out.push_str(&format!("  left alone: {note}\n"));
                continue;
            }
            if let Some(to) = &host.rollback_to {
                out.push_str(&format!("  would roll back: current → {to}\n"));
            }
            if let Some(id) = &host.compared_with {
                out.push_str(&format!(
                    "  the new release's files compared with release {id} (current)\n"
                ));
            }
            for step in &host.steps {
                let label = match step.would {
                    Would::Change => "would change",
                    Would::Ok => "ok",
                    Would::Run => "would run",
                    Would::Skip => "would skip",
                };
                out.push_str(&format!("  - {}: {label}: {}", step.name, step.describe));
                if let Some(note) = &step.note {
                    out.push_str(&format!(" ({note})"));
                }
                out.push('\n');
                for file in step.files.iter().filter(|f| f.change != "unchanged") {
                    file_text(file, &mut out);
                }
                for service in &step.services {
                    let would = match service.would_be {
                        "unchanged" => "unchanged",
                        "unknown" => "may be recreated",
                        "created" => "would be created",
                        "removed" => "would be removed",
                        _ => "would be recreated",
                    };
                    out.push_str(&format!("      {}: {would}", service.service));
                    if let Some(why) = &service.why {
                        out.push_str(&format!(" ({why})"));
                    }
                    out.push('\n');
                }
            }
        }
        out
    }

    pub fn summary(&self) -> String {
        let failed = self.hosts.iter().filter(|h| h.error.is_some()).count();
        let aside = self
            .hosts
            .iter()
            .filter(|h| h.error.is_none() && h.note.is_some())
            .count();
        let mut line = format!(
            "dry run: {} file(s) would change, {} command(s) would run on {} host(s); nothing was changed",
            self.files_changing,
            self.commands_running,
            self.hosts.len() - failed - aside
        );
        if failed > 0 {
            line.push_str(&format!("; {failed} host(s) could not be looked at"));
        }
        line + "\n"
    }
}

fn file_text(file: &FilePreview, out: &mut String) {
    let mut what = vec![file.change.to_string()];
    what.extend(file.mode.iter().map(|m| format!("mode {m}")));
    what.extend(file.owner.iter().map(|o| format!("owner {o}")));
    what.extend(file.note.clone());
    out.push_str(&format!("      {} ({})\n", file.dest, what.join(", ")));
    if let Some(diff) = &file.diff {
        for line in diff.lines() {
            out.push_str(&format!("        {line}\n"));
        }
    }
}

fn indent_rest(text: &str, indent: &str) -> String {
    text.replace('\n', &format!("\n{indent}"))
}

/// A reporter that keeps nothing: a dry run reports its own way, after looking.
pub struct Silent;

impl Reporter for Silent {
    fn event(&self, _: &Event<'_>) {}
    fn finished(&self, _: &RunReport) {}
}
