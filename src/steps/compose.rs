//! `compose`: a docker compose command in the project's directory, through whichever compose
//! the host has (found once per host by the session's first compose segment).

use serde::Deserialize;
use toml::Spanned;

use super::{
    Act, Done, Failure, HostView, Kind, ParseCx, PlanCx, Prepared, Templated, require_success,
};
use crate::diagnostic::{Hinted, InputError};
use crate::remote::compose::{self, ComposeFlavor};
use crate::remote::driver::Segment;
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
    /// `exec -T SERVICE COMMAND…`: only a step's `on_change` runs it (a `compose` step may not
    /// name it); its `services` hold the service, then the command's words.
    #[serde(skip)]
    Exec,
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
        }
    }
}

/// `compose = { command, dir, project, services }`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compose {
    pub command: ComposeCommand,
    pub dir: Option<Templated>,
    pub project: Option<Templated>,
    #[serde(default)]
    pub services: Vec<String>,
}

/// A compose command rendered for one host.
#[derive(Debug, Clone)]
pub struct ComposeRun {
    pub command: ComposeCommand,
    pub dir: String,
    pub project: String,
    pub services: Vec<String>,
}

/// Why compose commands cannot run on the host (none there, or not the one the inventory
/// forces): the failure's text, its hint rendered the one way hints are.
pub fn compose_unavailable(flavor: ComposeFlavor) -> Option<String> {
    let (message, hint) = flavor.problem()?;
    Some(Hinted(&message, Some(&hint)).to_string())
}

impl Kind for Compose {
    type Raw = Compose;
    type Action = ComposeRun;

    fn parse(raw: Spanned<Compose>, _cx: &ParseCx<'_>) -> Result<Self, InputError> {
        Ok(raw.into_inner())
    }

    fn default_name(&self) -> String {
        format!("compose {}", self.command.as_str())
    }

    fn templated_fields(&self) -> Vec<&Templated> {
        let mut fields: Vec<&Templated> = self.dir.iter().collect();
        fields.extend(self.project.iter());
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
        Ok(ComposeRun {
            command: self.command,
            dir,
            project,
            services: self.services.clone(),
        })
    }
}

impl Act for ComposeRun {
    fn describe(&self) -> String {
        format!(
            "compose {} in {} (project {})",
            self.command.as_str(),
            self.dir,
            self.project
        )
    }

    fn prepare(&self, host: &HostView<'_>, label: &str, _tag: usize) -> Prepared {
        if let Some(problem) = compose_unavailable(host.compose) {
            return Prepared::Local(Done::new(Outcome::Failed, Some(problem)));
        }
        Prepared::Remote(Segment {
            script: compose::command(
                host.compose,
                self.command,
                &self.dir,
                &self.project,
                &self.services,
            ),
            stdin: None,
            label: label.to_string(),
            cleanup: None,
        })
    }

    fn judge(&self, host: &HostView<'_>, out: &ExecOutput) -> Result<Done, Failure> {
        if let Some(problem) = compose_unavailable(host.compose) {
            return Err(Failure(problem));
        }
        require_success(out, host.redactor)?;
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        let outcome = if compose::changed(self.command, &text) {
            Outcome::Changed
        } else {
            Outcome::Ok
        };
        Ok(Done::new(outcome, None))
    }

    fn needs_compose(&self) -> bool {
        true
    }
}
