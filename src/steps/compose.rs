//! `compose`: a docker compose command in the project's directory, through whichever compose
//! the host has (found once per host by the session's first compose segment): the project's
//! commands (`pull`, `up`, `down`, `restart`, `ps`), a command in a service (`exec`, `run`),
//! `build` and `logs`; each command's keys, and how its outcome is judged.

use serde::Deserialize;
use toml::Spanned;

use std::ops::Range;

use super::{
    Act, Done, Failure, HostView, Kind, ParseCx, PlanCx, Prepared, Templated, output_tail,
    require_success,
};
use crate::diagnostic::{Hinted, InputError, SourceFile};
use crate::remote::compose::{self, ComposeFlavor, ProjectPaths, Request};
use crate::remote::driver::Segment;
use crate::remote::script::quote;
use crate::remote::{compose_build, release_binds};
use crate::report::Outcome;
use crate::transport::ExecOutput;

/// The compose subcommands a step may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComposeCommand {
    Pull,
    Up,
    Down,
    Restart,
    Ps,
    /// A command in a running service (`exec -T`); also what an `on_change` `exec` runs.
    Exec,
    /// A one-off container (`run --rm -T`).
    Run,
    Build,
    Logs,
}

impl ComposeCommand {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::Up => "up",
            Self::Down => "down",
            Self::Restart => "restart",
            Self::Ps => "ps",
            Self::Exec => "exec",
            Self::Run => "run",
            Self::Build => "build",
            Self::Logs => "logs",
        }
    }

    /// The keys besides `command`, `dir` and `project` it takes.
    fn keys(self) -> &'static [&'static str] {
        match self {
            Self::Pull | Self::Up | Self::Down | Self::Restart | Self::Ps => &["services"],
            Self::Exec => &["service", "args"],
            Self::Run => &["service", "args", "no_deps"],
            Self::Build => &["services", "pull", "no_cache"],
            Self::Logs => &["services", "tail"],
        }
    }
}

/// `compose = { command, dir, project, … }`, as written: each command's keys are checked by
/// `Compose::parse`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompose {
    command: Spanned<ComposeCommand>,
    dir: Option<Templated>,
    project: Option<Templated>,
    services: Option<Spanned<Vec<Spanned<String>>>>,
    service: Option<Templated>,
    args: Option<Spanned<Vec<Templated>>>,
    no_deps: Option<Spanned<bool>>,
    pull: Option<Spanned<bool>>,
    no_cache: Option<Spanned<bool>>,
    tail: Option<Spanned<i64>>,
}

/// What a `compose` step asks for, validated: its fields rendered per host by `plan`.
#[derive(Debug, Clone)]
pub enum Operands {
    /// `pull`, `up`, `down`, `restart`, `ps`, `build`, `logs` act on these (all when empty).
    Services(Vec<String>),
    /// `exec` and `run`: a service and the command's words.
    Command {
        service: Templated,
        args: Vec<Templated>,
    },
}

/// A `compose` step, validated.
#[derive(Debug, Clone)]
pub struct Compose {
    pub command: ComposeCommand,
    pub dir: Option<Templated>,
    pub project: Option<Templated>,
    pub operands: Operands,
    /// `run`'s `no_deps`; `build`'s `pull` and `no_cache`.
    pub no_deps: bool,
    pub pull: bool,
    pub no_cache: bool,
    /// `logs`' `tail` (100 when not given).
    pub tail: u32,
}

/// Lines `logs` shows when `tail` is not given.
pub const DEFAULT_TAIL: u32 = 100;

/// A compose command rendered for one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeRun {
    pub dir: String,
    pub project: String,
    pub request: Request,
    /// The release root (`ReleaseSite::clean_root`) when `dir` is its `current` or below it:
    /// relative paths then resolve through `current` on both flavours, and `up` restarts the
    /// containers left on an older release's bind-mounted files (`remote::release_binds`).
    pub release_root: Option<String>,
}

impl ComposeRun {
    pub fn command(&self) -> ComposeCommand {
        self.request.command()
    }
}

/// Compose service names: letters, digits, `_`, `-`, `.`, not starting with `-`.
pub fn valid_service(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// The error for a service name compose does not take.
pub fn bad_service(file: &SourceFile, span: Range<usize>, name: &str) -> InputError {
    file.error_at(span, format!("bad compose service name `{name}`"))
        .with_hint("name a service of the compose file: letters, digits, `_`, `-` and `.`")
}

/// Renders `service` and `args` for one host (each noted as a command-line value, so a secret
/// in them is refused) and checks the service's name: the one place a command in a service
/// (a step's `exec` or `run`, a handler's `exec`) is rendered.
pub fn plan_command(
    cx: &mut PlanCx<'_>,
    service: &Templated,
    args: &[Templated],
) -> Result<(String, Vec<String>), InputError> {
    let name = cx.field(service)?;
    if !valid_service(&name) {
        return Err(bad_service(cx.file, service.span(), &name));
    }
    let mut words = Vec::with_capacity(args.len());
    for arg in args {
        words.push(cx.field(arg)?);
    }
    Ok((name, words))
}

const EXAMPLES: &str = "e.g. compose = { command = \"exec\", service = \"web\", args = [\"./manage.py\", \"migrate\", \"--noinput\"] }, { command = \"build\", pull = true } or { command = \"logs\", services = [\"web\"], tail = 50 }";

/// Why compose commands cannot run on the host (none there, or not the one the inventory
/// forces): the failure's text, its hint rendered the one way hints are.
pub fn compose_unavailable(flavor: ComposeFlavor) -> Option<String> {
    let (message, hint) = flavor.problem()?;
    Some(Hinted(&message, Some(&hint)).to_string())
}

impl Kind for Compose {
    type Raw = RawCompose;
    type Action = ComposeRun;

    fn parse(raw: Spanned<RawCompose>, cx: &ParseCx<'_>) -> Result<Self, InputError> {
        let file = cx.file;
        let (span, raw) = (raw.span(), raw.into_inner());
        let command = *raw.command.get_ref();
        let given = [
            ("services", raw.services.as_ref().map(Spanned::span)),
            ("service", raw.service.as_ref().map(Spanned::span)),
            ("args", raw.args.as_ref().map(Spanned::span)),
            ("no_deps", raw.no_deps.as_ref().map(Spanned::span)),
            ("pull", raw.pull.as_ref().map(Spanned::span)),
            ("no_cache", raw.no_cache.as_ref().map(Spanned::span)),
            ("tail", raw.tail.as_ref().map(Spanned::span)),
        ];
        let takes = command.keys();
        if let Some((key, Some(at))) = given
            .iter()
            .find(|(key, at)| at.is_some() && !takes.contains(key))
        {
            let takes: Vec<String> = takes.iter().map(|k| format!("`{k}`")).collect();
            return Err(file
                .error_at(
                    at.clone(),
                    format!("`{key}` does not apply to `compose {}`", command.as_str()),
                )
                .with_hint(format!(
                    "`{}` takes `dir`, `project` and {}; {EXAMPLES}",
                    command.as_str(),
                    takes.join(", ")
                )));
        }
        let operands = match command {
            ComposeCommand::Exec | ComposeCommand::Run => {
                let Some(service) = raw.service else {
                    return Err(file
                        .error_at(
                            span,
                            format!("`compose {}` needs `service`", command.as_str()),
                        )
                        .with_hint(format!("name the service the command runs in; {EXAMPLES}")));
                };
                if !service.get_ref().contains("{{") && !valid_service(service.get_ref()) {
                    return Err(bad_service(file, service.span(), service.get_ref()));
                }
                let args = raw.args.map(Spanned::into_inner);
                let needs_args = command == ComposeCommand::Exec;
                match &args {
                    Some(a) if a.first().is_some_and(|w| w.get_ref().is_empty()) => {
                        return Err(file
                            .error_at(a[0].span(), "the command's name is empty")
                            .with_hint("give the command and its arguments as a list of strings, e.g. args = [\"./manage.py\", \"migrate\"]"));
                    }
                    Some(a) if a.is_empty() && needs_args => {
                        return Err(file
                            .error_at(span, "`compose exec` has an empty `args`")
                            .with_hint("give the command and its arguments as a list of strings, e.g. args = [\"./manage.py\", \"migrate\"]"));
                    }
                    None if needs_args => {
                        return Err(file
                            .error_at(span, "`compose exec` needs `args`, the command to run")
                            .with_hint("give the command and its arguments as a list of strings, e.g. args = [\"./manage.py\", \"migrate\"]"));
                    }
                    _ => {}
                }
                Operands::Command {
                    service,
                    args: args.unwrap_or_default(),
                }
            }
            _ => {
                let mut names = Vec::new();
                for s in raw.services.map(Spanned::into_inner).unwrap_or_default() {
                    if !valid_service(s.get_ref()) {
                        return Err(bad_service(file, s.span(), s.get_ref()));
                    }
                    names.push(s.into_inner());
                }
                Operands::Services(names)
            }
        };
        let tail = match raw.tail {
            None => DEFAULT_TAIL,
            Some(t) => u32::try_from(*t.get_ref()).map_err(|_| {
                file.error_at(t.span(), format!("bad `tail` {}", t.get_ref()))
                    .with_hint("give the number of lines to show from the end of each service's log, e.g. tail = 100 (0: none)")
            })?,
        };
        let flag = |f: Option<Spanned<bool>>| f.is_some_and(|f| *f.get_ref());
        Ok(Compose {
            command,
            dir: raw.dir,
            project: raw.project,
            operands,
            no_deps: flag(raw.no_deps),
            pull: flag(raw.pull),
            no_cache: flag(raw.no_cache),
            tail,
        })
    }

    fn default_name(&self) -> String {
        match &self.operands {
            Operands::Command { service, .. } => {
                format!("compose {} {}", self.command.as_str(), service.get_ref())
            }
            Operands::Services(_) => format!("compose {}", self.command.as_str()),
        }
    }

    fn templated_fields(&self) -> Vec<&Templated> {
        let mut fields: Vec<&Templated> = self.dir.iter().collect();
        fields.extend(self.project.iter());
        if let Operands::Command { service, args } = &self.operands {
            fields.push(service);
            fields.extend(args.iter());
        }
        fields
    }

    fn plan(&self, cx: &mut PlanCx<'_>) -> Result<ComposeRun, InputError> {
        let dir = cx.compose_dir(
            &self.dir,
            "a compose step needs `dir`, the directory holding docker-compose.yml",
            "compose.dir",
            "write e.g. compose = { command = \"up\", dir = \"{{ app_dir }}\" }",
        )?;
        let project = match &self.project {
            Some(p) => {
                let project = cx.field(p)?;
                // The value is not shown: it may hold a secret (refused later, with its name).
                if let Some(problem) = compose::project_name_problem(&project) {
                    return Err(cx
                        .file
                        .error_at(
                            p.span(),
                            format!(
                                "`project` renders to a name compose does not take as it is: {problem}"
                            ),
                        )
                        .with_hint(
                            "use lower-case letters, digits, `-` and `_`, starting with a letter or digit (e.g. \"{{ app }}-{{ stage | lower }}\"): compose v2 refuses other names, v1 silently changes them",
                        ));
                }
                project
            }
            None => cx.app.to_string(),
        };
        let request = match (&self.operands, self.command) {
            (Operands::Command { service, args }, command) => {
                let (service, args) = plan_command(cx, service, args)?;
                if command == ComposeCommand::Exec {
                    Request::Exec { service, args }
                } else {
                    Request::Run {
                        service,
                        args,
                        no_deps: self.no_deps,
                    }
                }
            }
            (Operands::Services(services), command) => {
                let services = services.clone();
                match command {
                    ComposeCommand::Pull => Request::Pull(services),
                    ComposeCommand::Up => Request::Up(services),
                    ComposeCommand::Down => Request::Down(services),
                    ComposeCommand::Restart => Request::Restart(services),
                    ComposeCommand::Ps => Request::Ps(services),
                    ComposeCommand::Build => Request::Build {
                        services,
                        pull: self.pull,
                        no_cache: self.no_cache,
                    },
                    ComposeCommand::Logs => Request::Logs {
                        services,
                        tail: self.tail,
                    },
                    ComposeCommand::Exec | ComposeCommand::Run => {
                        unreachable!("`parse` gives exec and run a command")
                    }
                }
            }
        };
        let release_root = cx
            .release
            .filter(|(site, _)| site.through_current(&dir))
            .map(|(site, _)| site.clean_root());
        Ok(ComposeRun {
            dir,
            project,
            request,
            release_root,
        })
    }
}

impl Act for ComposeRun {
    fn describe(&self) -> String {
        let what = match &self.request {
            Request::Exec { service, args } | Request::Run { service, args, .. } => {
                let words: Vec<String> = args.iter().map(|w| quote(w).into_owned()).collect();
                format!(
                    "compose {} {service} {}",
                    self.command().as_str(),
                    words.join(" ")
                )
                .trim_end()
                .to_string()
            }
            Request::Build {
                services,
                pull,
                no_cache,
            } => {
                let mut words = vec!["compose build"];
                words.extend(pull.then_some("--pull"));
                words.extend(no_cache.then_some("--no-cache"));
                words.extend(services.iter().map(String::as_str));
                words.join(" ")
            }
            Request::Logs { services, tail } => {
                let mut text = format!("compose logs --tail {tail}");
                for s in services {
                    text.push(' ');
                    text.push_str(s);
                }
                text
            }
            _ => format!("compose {}", self.command().as_str()),
        };
        let through_current = match (&self.request, &self.release_root) {
            (Request::Up(_), Some(_)) => {
                "; relative paths through `current`, containers whose mounted release files changed restarted"
            }
            (_, Some(_)) => "; relative paths through `current`",
            (_, None) => "",
        };
        format!(
            "{what} in {} (project {}{through_current})",
            self.dir, self.project
        )
    }

    fn prepare(&self, host: &HostView<'_>, label: &str, _tag: usize) -> Prepared {
        if let Some(problem) = compose_unavailable(host.compose) {
            return Prepared::Local(Done::new(Outcome::Failed, Some(problem)));
        }
        let script = match (&self.request, &self.release_root) {
            (Request::Up(services), Some(root)) => {
                release_binds::up(host.compose, &self.dir, &self.project, services, root)
            }
            (request, Some(_)) => compose::command_with(
                host.compose,
                &self.dir,
                &self.project,
                request,
                ProjectPaths::AsWritten,
            ),
            (request, None) => compose::command(host.compose, &self.dir, &self.project, request),
        };
        Prepared::Remote(Segment {
            script,
            stdin: Vec::new(),
            label: label.to_string(),
            cleanup: None,
        })
    }

    fn judge(&self, host: &HostView<'_>, out: &ExecOutput) -> Result<Done, Failure> {
        if let Some(problem) = compose_unavailable(host.compose) {
            return Err(Failure(problem));
        }
        require_success(out, host.redactor)?;
        let command = self.command();
        let done = match command {
            // What the command printed is what the user asked for.
            ComposeCommand::Exec | ComposeCommand::Run => Done {
                output: output_tail(out),
                ..Done::new(Outcome::Changed, None)
            },
            ComposeCommand::Logs => Done {
                output: output_tail(out),
                ..Done::new(Outcome::Ok, None)
            },
            ComposeCommand::Build => match compose_build::changes(out) {
                None => Done::new(Outcome::Ok, None),
                Some(refs) if refs.is_empty() => {
                    Done::new(Outcome::Changed, Some("an image changed".into()))
                }
                Some(refs) => Done::new(
                    Outcome::Changed,
                    Some(format!("new image for {}", refs.join(", "))),
                ),
            },
            _ => {
                let text = String::from_utf8_lossy(&out.stderr).into_owned()
                    + &String::from_utf8_lossy(&out.stdout);
                let restarted = release_binds::restarted(out);
                if !restarted.is_empty() {
                    Done::new(
                        Outcome::Changed,
                        Some(format!(
                            "restarted {}: files it mounts changed with the release",
                            restarted.join(", ")
                        )),
                    )
                } else if compose::changed(command, &text) {
                    Done::new(Outcome::Changed, None)
                } else {
                    Done::new(Outcome::Ok, None)
                }
            }
        };
        Ok(done)
    }

    fn needs_compose(&self) -> bool {
        true
    }
}
