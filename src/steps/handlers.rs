//! `on_change` of a file step (a handler): what to do on a host when, and only when, that file
//! changed there in this run — restart compose services, run a command in a service, or run a
//! shell command. Its keys and checks, and its rendering into a `compose` or `run` action.
//! Where it runs and whether it fires is decided by `plan` and `session`.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::compose::{ComposeRun, bad_service, plan_command, valid_service};
use super::run::Command;
use super::{Action, PlanCx, Templated};
use crate::diagnostic::{InputError, SourceFile};
use crate::remote::compose::Request;

/// `on_change = { restart = […] | exec = { service, command } | run = "…", dir, project }`, as
/// written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOnChange {
    restart: Option<Spanned<Vec<Spanned<String>>>>,
    exec: Option<Spanned<RawExec>>,
    run: Option<Templated>,
    dir: Option<Templated>,
    project: Option<Templated>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExec {
    service: Templated,
    command: Spanned<Vec<Templated>>,
}

/// What a handler does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaction {
    /// `compose restart SERVICES`: a restart re-resolves single-file bind mounts.
    Restart(Vec<String>),
    /// `compose exec -T SERVICE COMMAND…` (e.g. `nginx -s reload`), rendered per host as a
    /// `compose` step's `exec` is.
    Exec {
        service: Templated,
        command: Vec<Templated>,
    },
    /// A shell command, in the step's `dir` and with its `become`.
    Run(Templated),
}

/// A file step's `on_change`, validated.
#[derive(Debug, Clone)]
pub struct OnChange {
    pub reaction: Reaction,
    /// The compose project's directory and name (`restart`, `exec`) or the command's directory
    /// (`run`); when not given, taken from the step's `dir`, then the playbook's first
    /// `compose` step.
    pub dir: Option<Templated>,
    pub project: Option<Templated>,
    /// Where `on_change` is written, for errors.
    pub span: Range<usize>,
}

const KEYS_HINT: &str = "write one of on_change = { restart = [\"proxy\"] }, on_change = { exec = { service = \"proxy\", command = [\"nginx\", \"-s\", \"reload\"] } } or on_change = { run = \"systemctl reload foo\" }";

impl OnChange {
    pub fn parse(file: &SourceFile, raw: Spanned<RawOnChange>) -> Result<Self, InputError> {
        let span = raw.span();
        let raw = raw.into_inner();
        let given = [raw.restart.is_some(), raw.exec.is_some(), raw.run.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            let problem = if given.iter().any(|g| *g) {
                "`on_change` names more than one of `restart`, `exec` and `run`"
            } else {
                "`on_change` names nothing to do: give `restart`, `exec` or `run`"
            };
            return Err(file.error_at(span, problem).with_hint(format!(
                "{KEYS_HINT}; several reactions need several file steps"
            )));
        }
        let reaction = if let Some(services) = raw.restart {
            if services.get_ref().is_empty() {
                return Err(file
                    .error_at(services.span(), "`restart` names no service")
                    .with_hint(
                        "name the compose services to restart, e.g. restart = [\"proxy\"]",
                    ));
            }
            let mut names = Vec::new();
            for s in services.into_inner() {
                if !valid_service(s.get_ref()) {
                    return Err(bad_service(file, s.span(), s.get_ref()));
                }
                names.push(s.into_inner());
            }
            Reaction::Restart(names)
        } else if let Some(exec) = raw.exec {
            let exec = exec.into_inner();
            if !exec.service.get_ref().contains("{{") && !valid_service(exec.service.get_ref()) {
                return Err(bad_service(
                    file,
                    exec.service.span(),
                    exec.service.get_ref(),
                ));
            }
            if exec.command.get_ref().is_empty() || exec.command.get_ref()[0].get_ref().is_empty() {
                return Err(file
                    .error_at(exec.command.span(), "`exec` has an empty `command`")
                    .with_hint(
                        "give the command and its arguments as a list, e.g. command = [\"nginx\", \"-s\", \"reload\"]",
                    ));
            }
            Reaction::Exec {
                service: exec.service,
                command: exec.command.into_inner(),
            }
        } else {
            let Some(command) = raw.run else {
                unreachable!("exactly one reaction is given")
            };
            if let Some(p) = &raw.project {
                return Err(file
                    .error_at(p.span(), "`project` applies to `restart` and `exec` only")
                    .with_hint("remove it: `run` is a shell command, in `dir` when given"));
            }
            Reaction::Run(command)
        };
        Ok(OnChange {
            reaction,
            dir: raw.dir,
            project: raw.project,
            span,
        })
    }

    /// Every string field rendered per host.
    pub fn templated_fields(&self) -> Vec<&Templated> {
        let mut fields: Vec<&Templated> = self.dir.iter().chain(self.project.iter()).collect();
        match &self.reaction {
            Reaction::Run(command) => fields.push(command),
            Reaction::Exec { service, command } => {
                fields.push(service);
                fields.extend(command.iter());
            }
            Reaction::Restart(_) => {}
        }
        fields
    }

    /// What it does, for its step's name: `restart proxy`, `exec nginx -s reload in proxy`,
    /// `run systemctl reload foo`.
    pub fn verb(&self) -> String {
        match &self.reaction {
            Reaction::Restart(services) => format!("restart {}", services.join(" ")),
            Reaction::Exec { service, command } => {
                let words: Vec<&str> = command.iter().map(|w| w.get_ref().as_str()).collect();
                format!("exec {} in {}", words.join(" "), service.get_ref())
            }
            Reaction::Run(command) => {
                let first = command.get_ref().lines().next().unwrap_or("");
                format!("run {}", first.chars().take(60).collect::<String>())
            }
        }
    }

    /// Whether it talks to compose (and so may borrow a compose step's directory, project
    /// and `become`).
    pub fn uses_compose(&self) -> bool {
        !matches!(self.reaction, Reaction::Run(_))
    }

    /// Renders the handler for one host. `cx.dir` is the file step's `dir`; `compose` is the
    /// playbook's first `compose` step rendered for this host, if any.
    pub fn plan(
        &self,
        cx: &mut PlanCx<'_>,
        compose: Option<&ComposeRun>,
    ) -> Result<Action, InputError> {
        let dir = match &self.dir {
            Some(d) => Some(cx.field(d)?),
            None => cx.dir.clone(),
        };
        let request = match &self.reaction {
            Reaction::Run(command) => {
                return Ok(Action::Run(Command {
                    command: cx.field(command)?,
                    dir,
                    creates: None,
                    unless: None,
                }));
            }
            Reaction::Restart(services) => Request::Restart(services.clone()),
            Reaction::Exec { service, command } => {
                let (service, args) = plan_command(cx, service, command)?;
                Request::Exec { service, args }
            }
        };
        let Some(dir) = dir.or_else(|| compose.map(|c| c.dir.clone())) else {
            return Err(cx
                .file
                .error_at(
                    self.span.clone(),
                    "`on_change` does not know the compose project's directory",
                )
                .with_hint(
                    "add `dir = \"{{ app_dir }}\"` to on_change (or to the step), or a `compose` step to the playbook",
                ));
        };
        let project = match (&self.project, compose) {
            (Some(p), _) => cx.field(p)?,
            (None, Some(c)) => c.project.clone(),
            (None, None) => cx.app.to_string(),
        };
        // `restart` and `exec` act on running containers: no path to resolve.
        Ok(Action::Compose(ComposeRun {
            dir,
            project,
            request,
            release_root: None,
        }))
    }
}
