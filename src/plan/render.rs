//! Rendering one host's steps into actions: the keys every step has (`once`, `when`, `tags`,
//! `dir`, `become`) here, each kind through `crate::steps`; and placing the implied `activate`.

use minijinja::Value;

use super::{Action, Become, PlanOptions, PlannedStep};
use crate::diagnostic::InputError;
use crate::playbook::Playbook;
use crate::release::ReleaseSite;
use crate::secrets::Secret;
use crate::steps::activate::Activation;
use crate::steps::{CommandLineValue, PlanCx};
use crate::template::Renderer;

pub(super) struct PlannedSteps {
    pub steps: Vec<PlannedStep>,
    /// docker_login and become passwords, masked in all output like secrets, each with how
    /// to name it in an error.
    pub passwords: Vec<(String, Secret)>,
    /// Every rendered value that goes on a command line, to be checked for secrets.
    pub command_line: Vec<CommandLineValue>,
}

/// Renders every step of `playbook` for the host at `host_index` of the run.
pub(super) fn plan_steps(
    playbook: &Playbook,
    renderer: &Renderer,
    options: &PlanOptions,
    host_index: usize,
    ctx: &Value,
    release: Option<(&ReleaseSite, &str)>,
) -> Result<PlannedSteps, InputError> {
    let mut steps = Vec::with_capacity(playbook.steps.len() + 1);
    let mut passwords = Vec::new();
    let mut command_line = Vec::new();
    for step in &playbook.steps {
        if !options.tags.is_empty() && !step.tags.iter().any(|t| options.tags.contains(t)) {
            continue;
        }
        let skip = |reason: &str| {
            PlannedStep::new(
                step.name.clone(),
                Action::Skip {
                    reason: reason.to_string(),
                },
            )
        };
        if step.once && host_index > 0 {
            steps.push(skip("once: runs on the first host"));
            continue;
        }
        if let Some(when) = &step.when
            && !renderer.eval_when(when, ctx, &playbook.file)?
        {
            steps.push(skip("when is false"));
            continue;
        }
        let mut cx = PlanCx {
            file: &playbook.file,
            renderer,
            ctx,
            app: &playbook.app,
            index: step.index,
            name: &step.name,
            dir: None,
            release,
            command_line: std::mem::take(&mut command_line),
            passwords: std::mem::take(&mut passwords),
        };
        cx.dir = step.dir.as_ref().map(|d| cx.field(d)).transpose()?;
        let action = step.kind.plan(&mut cx)?;
        command_line = cx.command_line;
        passwords = cx.passwords;
        let become_as = match &step.become_as {
            None => None,
            Some(b) => {
                let password = match &b.password {
                    None => None,
                    Some(p) => {
                        let value = renderer.render_field(p, ctx, &playbook.file)?;
                        if value.is_empty() || value.contains('\n') {
                            return Err(playbook
                                .file
                                .error_at(
                                    p.span(),
                                    "the sudo password is empty or spans several lines",
                                )
                                .with_hint("sudo reads one line: check the secret's source"));
                        }
                        let secret = Secret::new(value);
                        passwords.push((
                            format!("the become password of step `{}`", step.name),
                            secret.clone(),
                        ));
                        Some(secret)
                    }
                };
                Some(Become {
                    user: b.user.clone(),
                    password,
                })
            }
        };
        steps.push(PlannedStep {
            name: step.name.clone(),
            action,
            become_as,
        });
    }
    Ok(PlannedSteps {
        steps,
        passwords,
        command_line,
    })
}

/// Puts the `activate` action right after the last file step, unless the playbook placed one
/// itself. Returns the index of the first step after activation.
pub(super) fn insert_activation(
    steps: &mut Vec<PlannedStep>,
    site: &ReleaseSite,
    id: &str,
) -> usize {
    if let Some(i) = steps
        .iter()
        .position(|s| matches!(s.action, Action::Activate(_)))
    {
        return i + 1;
    }
    let at = steps
        .iter()
        .rposition(|s| s.action.upload().is_some())
        .map_or(0, |i| i + 1);
    steps.insert(
        at,
        PlannedStep::new(
            "activate release",
            Action::Activate(Activation {
                site: site.clone(),
                id: id.to_string(),
            }),
        ),
    );
    at + 1
}
