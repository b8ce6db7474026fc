//! `prune images`: with `[release]`, after every step before it succeeded, the images of the
//! kept releases' repositories that no kept release and no container uses are untagged (so
//! the engine deletes them). Never written in a playbook: the plan appends it after the last
//! step (`[release] prune_images = false` leaves it out). It runs alone, through the session
//! (`session::images`): a survey, then a removal only when something may go; what to remove
//! and how it ended are decided here.

use toml::Spanned;

use super::{Act, Done, Failure, HostView, Kind, ParseCx, PlanCx, Prepared, Templated};
use crate::diagnostic::InputError;
use crate::remote::compose::{ComposeFlavor, ComposeTool};
use crate::remote::frame::Reply;
use crate::remote::images::{self, Removal, Removed};
use crate::remote::script::Script;
use crate::report::Outcome;
use crate::transport::ExecOutput;

/// `prune_images` as a step key: refused (the step is implied).
#[derive(Debug, Clone)]
pub struct PruneImages;

/// Image retention on one host, for the releases under `root`.
#[derive(Debug, Clone)]
pub struct ImagePrune {
    pub root: String,
}

impl Kind for PruneImages {
    type Raw = toml::Value;
    type Action = ImagePrune;

    fn parse(raw: Spanned<toml::Value>, cx: &ParseCx<'_>) -> Result<Self, InputError> {
        Err(cx
            .file
            .error_at(raw.span(), "`prune_images` is not a step")
            .with_hint("with [release], images no kept release uses are pruned after the last step; `prune_images = false` in [release] turns that off"))
    }

    fn default_name(&self) -> String {
        "prune images".to_string()
    }

    fn templated_fields(&self) -> Vec<&Templated> {
        Vec::new()
    }

    fn plan(&self, _cx: &mut PlanCx<'_>) -> Result<ImagePrune, InputError> {
        unreachable!("never parsed from a playbook")
    }
}

impl Act for ImagePrune {
    fn describe(&self) -> String {
        format!(
            "remove the images of the kept releases' repositories ({}/releases/*) that no kept release and no container uses",
            self.root.trim_end_matches('/')
        )
    }

    fn prepare(&self, _host: &HostView<'_>, _label: &str, _tag: usize) -> Prepared {
        unreachable!("image pruning runs alone (the session's prune_images)")
    }

    fn judge(&self, _host: &HostView<'_>, _out: &ExecOutput) -> Result<Done, Failure> {
        unreachable!("image pruning runs alone (the session's prune_images)")
    }
}

impl ImagePrune {
    /// The survey's script (`remote::images::survey`).
    /// `forced`: the flavour the inventory forces, looked for when `flavor` is not known yet.
    pub fn survey(&self, flavor: ComposeFlavor, forced: Option<ComposeTool>) -> Script {
        images::survey(&self.root, flavor, forced)
    }

    /// What to remove after the survey, or (`Err`) why nothing is: the step is then `ok`
    /// with that text. A survey that failed or cannot be trusted removes nothing: the deploy
    /// has succeeded, so that is said, not failed.
    pub fn choose(
        &self,
        out: &ExecOutput,
        reply: &Reply,
        failure: &str,
    ) -> Result<Vec<Removal>, String> {
        let nothing = |why: String| format!("nothing removed: {why}");
        if !out.success() {
            return Err(nothing(format!("the survey failed: {failure}")));
        }
        let survey = images::parse_survey(reply).map_err(nothing)?;
        let kept = survey.kept().map_err(nothing)?;
        let removals = images::select(&kept, &survey.in_use, &survey.images);
        if removals.is_empty() {
            return Err(format!(
                "nothing to remove ({} kept release(s), {} image reference(s))",
                survey.releases.len(),
                kept.len()
            ));
        }
        Ok(removals)
    }
}

/// How the removal ended: `changed` when a tag was removed, with the space freed by the
/// images now gone; a reference the engine refused (a container started using it) is kept.
pub fn judge_removal(removed: &Removed, failure: Option<&str>) -> Done {
    let mut parts = Vec::new();
    if !removed.untagged.is_empty() {
        parts.push(format!(
            "removed {} image(s) ({}), {} freed ({} bytes)",
            removed.untagged.len(),
            removed.untagged.join(", "),
            human_size(removed.freed),
            removed.freed
        ));
    }
    if !removed.kept.is_empty() {
        let kept: Vec<String> = removed
            .kept
            .iter()
            .map(|(r, why)| format!("{r}: {why}"))
            .collect();
        parts.push(format!("kept {} in use ({})", kept.len(), kept.join("; ")));
    }
    if !removed.complete {
        parts.push(format!(
            "the removal did not finish{}",
            failure.map(|f| format!(": {f}")).unwrap_or_default()
        ));
    }
    let outcome = if removed.untagged.is_empty() {
        parts.insert(0, "nothing removed".to_string());
        Outcome::Ok
    } else {
        Outcome::Changed
    };
    Done::new(outcome, Some(parts.join("; ")))
}

/// Bytes as `docker image ls` counts them (powers of 1000).
fn human_size(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e7 {
        format!("{:.0} MB", b / 1e6)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.0} kB", b / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removal_is_changed_with_the_space_freed_and_what_was_kept() {
        let done = judge_removal(
            &Removed {
                untagged: vec!["reg/pixel/app:A".into(), "reg/pixel/app:B".into()],
                kept: vec![("reg/pixel/app:C".into(), "conflict: in use".into())],
                freed: 152_300_000,
                images_gone: 1,
                complete: true,
            },
            None,
        );
        assert_eq!(done.outcome, Outcome::Changed);
        assert_eq!(
            done.detail.as_deref(),
            Some(
                "removed 2 image(s) (reg/pixel/app:A, reg/pixel/app:B), 152 MB freed (152300000 bytes); kept 1 in use (reg/pixel/app:C: conflict: in use)"
            )
        );
        // Refused everywhere, cut short: nothing removed is not a failure of the deploy.
        let done = judge_removal(
            &Removed {
                kept: vec![("r:A".into(), "in use".into())],
                ..Removed::default()
            },
            Some("exit status 1"),
        );
        assert_eq!(done.outcome, Outcome::Ok);
        assert_eq!(
            done.detail.as_deref(),
            Some(
                "nothing removed; kept 1 in use (r:A: in use); the removal did not finish: exit status 1"
            )
        );
        assert_eq!(human_size(999), "1 kB");
        assert_eq!(human_size(2_500_000), "2.5 MB");
        assert_eq!(human_size(3_200_000_000), "3.2 GB");
    }

    #[test]
    fn a_survey_that_failed_or_is_unfinished_removes_nothing() {
        let prune = ImagePrune {
            root: "/srv".into(),
        };
        let failed = ExecOutput {
            status: Some(1),
            ..Default::default()
        };
        assert_eq!(
            prune.choose(&failed, &Reply::default(), "exit status 1\nno docker"),
            Err("nothing removed: the survey failed: exit status 1\nno docker".to_string())
        );
        let ok = ExecOutput {
            status: Some(0),
            ..Default::default()
        };
        assert_eq!(
            prune.choose(&ok, &Reply::default(), ""),
            Err("nothing removed: the survey did not finish".to_string())
        );
        assert!(
            prune.describe().starts_with(
                "remove the images of the kept releases' repositories (/srv/releases/*)"
            )
        );
    }
}
