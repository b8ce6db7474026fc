//! `activate`: `current` switched to the new release (placed by the plan right after the last
//! file step when the playbook has no `activate` step).

use toml::Spanned;

use super::{
    Act, Done, Failure, HostView, Kind, Learned, ParseCx, PlanCx, Prepared, Templated,
    require_success,
};
use crate::diagnostic::InputError;
use crate::release::ReleaseSite;
use crate::remote::driver::Segment;
use crate::remote::release;
use crate::report::Outcome;
use crate::transport::ExecOutput;

/// `activate = true`.
#[derive(Debug, Clone)]
pub struct Activate;

/// Point `current` at release `id` (and prune old releases).
#[derive(Debug, Clone)]
pub struct Activation {
    pub site: ReleaseSite,
    pub id: String,
    /// What the release records of itself (`release::version_line`), set by the plan.
    pub version: Option<String>,
}

impl Kind for Activate {
    type Raw = bool;
    type Action = Activation;

    fn parse(raw: Spanned<bool>, cx: &ParseCx<'_>) -> Result<Self, InputError> {
        if !*raw.get_ref() {
            return Err(cx
                .file
                .error_at(raw.span(), "`activate = false` does nothing")
                .with_hint("write `activate = true` where `current` should switch to the new release, or remove the step"));
        }
        Ok(Activate)
    }

    fn default_name(&self) -> String {
        "activate release".to_string()
    }

    fn templated_fields(&self) -> Vec<&Templated> {
        Vec::new()
    }

    fn plan(&self, cx: &mut PlanCx<'_>) -> Result<Activation, InputError> {
        match cx.release {
            Some((site, id)) => Ok(Activation {
                site: site.clone(),
                id: id.to_string(),
                version: None,
            }),
            None => Err(cx
                .step_error("`activate` needs a `[release]` section", "activate")
                .with_hint("add [release] with `root`, or remove the step")),
        }
    }
}

impl Act for Activation {
    fn describe(&self) -> String {
        format!("point {}/current at releases/{}", self.site.root, self.id)
    }

    fn prepare(&self, _host: &HostView<'_>, label: &str, _tag: usize) -> Prepared {
        Prepared::Remote(Segment::isolated(
            &release::activate_recording(&self.site, &self.id, self.version.as_deref()),
            label,
        ))
    }

    fn judge(&self, host: &HostView<'_>, out: &ExecOutput) -> Result<Done, Failure> {
        require_success(out, host.redactor)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        Ok(Done {
            learned: Some(Learned::Activated {
                previous: release::parse_previous(&stdout),
            }),
            ..Done::new(Outcome::Changed, Some(format!("current → {}", self.id)))
        })
    }
}
