//! One `[[steps]]` table: the keys every step has (`name`, `dir`, `once`, `when`, `tags`,
//! `become`), converted here; its kind is validated by `crate::steps`.

use std::path::Path;
use std::sync::Arc;

use toml::Spanned;

use super::reuse::{self, Loop};
use crate::diagnostic::{InputError, SourceFile};
use crate::steps::handlers::OnChange;
use crate::steps::{self, ParseCx, RawStep, StepKind, Templated, valid_user_name};
use crate::vars::Vars;

/// `become`, `become_user`, `become_password` of a step (the password falls back to
/// `[become] password`).
#[derive(Debug, Clone)]
pub struct BecomeSpec {
    /// `None`: root.
    pub user: Option<String>,
    /// A templated field, normally `{{ secrets.NAME }}`; `None`: `sudo -n` (passwordless).
    pub password: Option<Templated>,
}

#[derive(Debug, Clone)]
pub struct Step {
    /// Position in `[[steps]]`, from 0.
    pub index: usize,
    pub name: String,
    pub dir: Option<Templated>,
    pub once: bool,
    pub when: Option<Templated>,
    pub tags: Vec<String>,
    pub kind: StepKind,
    /// Run the step's remote commands through sudo.
    pub become_as: Option<BecomeSpec>,
    /// What to do when this (file) step changed its file on a host.
    pub on_change: Option<OnChange>,
    /// Its own variables: over the host's and the playbook's, under `--var`.
    pub vars: Vars,
    /// Run once per item, `item` in scope.
    pub loop_over: Option<Loop>,
}

impl Step {
    /// Every string field of the step rendered per host (`when`, an expression, aside).
    pub fn templated_fields(&self) -> Vec<&Templated> {
        let mut fields: Vec<&Templated> = Vec::new();
        fields.extend(self.dir.iter());
        if let Some(b) = &self.become_as {
            fields.extend(b.password.iter());
        }
        fields.extend(self.kind.templated_fields());
        if let Some(on_change) = &self.on_change {
            fields.extend(on_change.templated_fields());
        }
        fields
    }
}

pub(super) fn convert_step(
    shared_file: &Arc<SourceFile>,
    bases: &[&Path],
    index: usize,
    raw: Spanned<RawStep>,
    default_password: Option<&Templated>,
    has_release: bool,
) -> Result<Step, InputError> {
    let file: &SourceFile = shared_file;
    let span = raw.span();
    let mut raw = raw.into_inner();
    let vars = reuse::step_vars(shared_file, raw.vars.take())?;
    let loop_over = raw
        .loop_over
        .take()
        .map(|l| Loop::parse(file, l))
        .transpose()?;
    let become_as = convert_become(file, &raw, default_password)?;
    if !raw.takes_guards()
        && let Some(g) = raw.creates.as_ref().or(raw.unless.as_ref())
    {
        return Err(file
            .error_at(g.span(), "`creates` and `unless` apply to `run` steps only")
            .with_hint("remove it, or guard the step with `when`"));
    }
    let cx = ParseCx {
        file,
        bases,
        creates: raw.creates.clone(),
        unless: raw.unless.clone(),
        has_release,
    };
    let mut kinds = raw.take_kinds(&cx)?;
    let kind = match kinds.len() {
        1 => kinds.pop().map(|(_, k)| k),
        0 => None,
        _ => {
            let names: Vec<String> = kinds.iter().map(|(n, _)| format!("`{n}`")).collect();
            return Err(file
                .error_at(
                    span,
                    format!(
                        "step {} has more than one kind: {}",
                        index + 1,
                        names.join(" and ")
                    ),
                )
                .with_key(format!("steps.{index}"))
                .with_hint("split it into one `[[steps]]` table per action"));
        }
    };
    let Some(kind) = kind else {
        return Err(file
            .error_at(span, format!("step {} does nothing", index + 1))
            .with_key(format!("steps.{index}"))
            .with_hint(format!("give it one of {}", steps::kinds_list())));
    };
    let on_change = match raw.on_change.take() {
        None => None,
        Some(raw_on_change) => {
            if !matches!(kind, StepKind::Copy(_) | StepKind::Template(_)) {
                return Err(file
                    .error_at(raw_on_change.span(), "`on_change` applies to `copy` and `template` steps only")
                    .with_hint("a handler reacts to a file that changed: move it to the file step whose change needs it"));
            }
            Some(OnChange::parse(file, raw_on_change)?)
        }
    };
    let name = raw.name.unwrap_or_else(|| kind.default_name());
    let step = Step {
        index,
        name,
        dir: raw.dir,
        once: raw.once,
        when: raw.when,
        tags: raw.tags,
        kind,
        become_as,
        on_change,
        vars,
        loop_over,
    };
    if step.loop_over.is_none() {
        reuse::check_loop_names_outside_a_loop(
            file,
            &step.vars,
            &step.templated_fields(),
            step.when.as_ref(),
        )?;
    }
    Ok(step)
}

fn convert_become(
    file: &SourceFile,
    raw: &RawStep,
    default_password: Option<&Templated>,
) -> Result<Option<BecomeSpec>, InputError> {
    if let Some(u) = &raw.become_user
        && !valid_user_name(u.get_ref())
    {
        return Err(file
            .error_at(u.span(), format!("bad user name `{}`", u.get_ref()))
            .with_hint("use letters, digits, `_`, `-` and `.`"));
    }
    let wanted = match (&raw.become_root, &raw.become_user) {
        (Some(b), Some(_)) if !*b.get_ref() => {
            return Err(file
                .error_at(b.span(), "`become = false` contradicts `become_user`")
                .with_hint("remove one of them"));
        }
        (Some(b), _) => *b.get_ref() || raw.become_user.is_some(),
        (None, user) => user.is_some(),
    };
    if !wanted {
        if let Some(p) = &raw.become_password {
            return Err(file
                .error_at(p.span(), "`become_password` without `become`")
                .with_hint("add `become = true`, or remove it"));
        }
        return Ok(None);
    }
    Ok(Some(BecomeSpec {
        user: raw.become_user.as_ref().map(|u| u.get_ref().clone()),
        password: raw
            .become_password
            .clone()
            .or_else(|| default_password.cloned()),
    }))
}
