//! `run`: a shell command (in `dir` when set), skipped when its guard `creates` or `unless`
//! holds; also what `dropship exec` runs.

use toml::Spanned;

use super::{
    Act, Done, Failure, HostView, Kind, ParseCx, PlanCx, Prepared, Templated, output_tail,
    require_success,
};
use crate::diagnostic::InputError;
use crate::remote::driver::Segment;
use crate::remote::run;
use crate::report::Outcome;
use crate::transport::ExecOutput;

/// `run = "…"` with its step-level guards: skipped (reported `ok`) when `creates` exists or
/// `unless` exits 0.
#[derive(Debug, Clone)]
pub struct Run {
    pub command: Templated,
    pub creates: Option<Templated>,
    pub unless: Option<Templated>,
}

/// A command rendered for one host.
#[derive(Debug, Clone)]
pub struct Command {
    pub command: String,
    pub dir: Option<String>,
    /// Skip (report `ok`) when this path exists.
    pub creates: Option<String>,
    /// Skip (report `ok`) when this shell command exits 0.
    pub unless: Option<String>,
}

impl Command {
    /// A command with no directory and no guard (`dropship exec`).
    pub fn plain(command: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            dir: None,
            creates: None,
            unless: None,
        }
    }
}

impl Kind for Run {
    type Raw = String;
    type Action = Command;
    const GUARDED: bool = true;

    fn parse(raw: Spanned<String>, cx: &ParseCx<'_>) -> Result<Self, InputError> {
        Ok(Run {
            command: raw,
            creates: cx.creates.clone(),
            unless: cx.unless.clone(),
        })
    }

    fn default_name(&self) -> String {
        let first = self.command.get_ref().lines().next().unwrap_or("");
        let short: String = first.chars().take(60).collect();
        format!("run {short}")
    }

    fn templated_fields(&self) -> Vec<&Templated> {
        let mut fields = vec![&self.command];
        fields.extend(self.creates.iter());
        fields.extend(self.unless.iter());
        fields
    }

    fn plan(&self, cx: &mut PlanCx<'_>) -> Result<Command, InputError> {
        Ok(Command {
            command: cx.field(&self.command)?,
            dir: cx.dir.clone(),
            creates: self.creates.as_ref().map(|f| cx.field(f)).transpose()?,
            unless: self.unless.as_ref().map(|f| cx.field(f)).transpose()?,
        })
    }
}

impl Act for Command {
    fn describe(&self) -> String {
        let mut text = match &self.dir {
            Some(d) => format!("run in {d}: {}", self.command),
            None => format!("run: {}", self.command),
        };
        if let Some(c) = &self.creates {
            text.push_str(&format!(" (unless {c} exists)"));
        }
        if let Some(u) = &self.unless {
            text.push_str(&format!(" (unless `{}` passes)", u));
        }
        text
    }

    fn prepare(&self, _host: &HostView<'_>, label: &str, _tag: usize) -> Prepared {
        let script = if self.creates.is_none() && self.unless.is_none() {
            run::command(&self.command, self.dir.as_deref())
        } else {
            run::guarded(
                &self.command,
                self.dir.as_deref(),
                self.creates.as_deref(),
                self.unless.as_deref(),
            )
        };
        Prepared::Remote(Segment::isolated(&script, label))
    }

    fn judge(&self, host: &HostView<'_>, out: &ExecOutput) -> Result<Done, Failure> {
        require_success(out, host.redactor)?;
        if (self.creates.is_some() || self.unless.is_some()) && run::guard_held(out) {
            let why = match &self.creates {
                Some(c) => format!("{c} exists"),
                None => "`unless` passed".to_string(),
            };
            return Ok(Done::new(Outcome::Ok, Some(why)));
        }
        Ok(Done {
            output: output_tail(out),
            ..Done::new(Outcome::Changed, None)
        })
    }
}
