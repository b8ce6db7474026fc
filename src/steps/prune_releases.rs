//! `prune releases`: with `[release]`, after every step before it succeeded, the releases
//! beyond `[release] keep` (and those a run rolled back from) are removed. Never written in a
//! playbook: the plan appends it after the last step, before image pruning (which then sees
//! only the kept releases). Pruning waits for success so a deploy that fails keeps every
//! release a rollback may need.

use toml::Spanned;

use super::{
    Act, Done, Failure, HostView, Kind, ParseCx, PlanCx, Prepared, Templated, require_success,
};
use crate::diagnostic::InputError;
use crate::release::ReleaseSite;
use crate::remote::driver::Segment;
use crate::remote::release;
use crate::report::Outcome;
use crate::transport::ExecOutput;

/// `prune_releases` as a step key: refused (the step is implied).
#[derive(Debug, Clone)]
pub struct PruneReleases;

/// Release retention on one host.
#[derive(Debug, Clone)]
pub struct ReleasePrune {
    pub site: ReleaseSite,
}

impl Kind for PruneReleases {
    type Raw = toml::Value;
    type Action = ReleasePrune;

    fn parse(raw: Spanned<toml::Value>, cx: &ParseCx<'_>) -> Result<Self, InputError> {
        Err(cx
            .file
            .error_at(raw.span(), "`prune_releases` is not a step")
            .with_hint("with [release], releases beyond `keep` are pruned after the last step succeeded; set how many with `keep` in [release]"))
    }

    fn default_name(&self) -> String {
        "prune releases".to_string()
    }

    fn templated_fields(&self) -> Vec<&Templated> {
        Vec::new()
    }

    fn plan(&self, _cx: &mut PlanCx<'_>) -> Result<ReleasePrune, InputError> {
        unreachable!("never parsed from a playbook")
    }
}

impl Act for ReleasePrune {
    fn describe(&self) -> String {
        format!(
            "remove failed releases and all but the newest {} others under {}/releases (never the current one nor the one before it)",
            self.site.keep.max(1),
            self.site.root.trim_end_matches('/')
        )
    }

    fn prepare(&self, _host: &HostView<'_>, label: &str, _tag: usize) -> Prepared {
        Prepared::Remote(Segment::isolated(&release::prune(&self.site), label))
    }

    fn judge(&self, host: &HostView<'_>, out: &ExecOutput) -> Result<Done, Failure> {
        require_success(out, host.redactor)?;
        let pruned = release::parse_pruned(&String::from_utf8_lossy(&out.stdout));
        Ok(if pruned.is_empty() {
            Done::new(Outcome::Ok, None)
        } else {
            Done::new(
                Outcome::Changed,
                Some(format!(
                    "removed {} release(s): {}",
                    pruned.len(),
                    pruned.join(", ")
                )),
            )
        })
    }
}
