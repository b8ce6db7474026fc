//! Rendering one host's steps into actions: the keys every step has (`once`, `when`, `tags`,
//! `dir`, `become`, `vars`, `loop`: a looped step is one planned step per item) here, each kind
//! through `crate::steps`; and placing the implied `activate` and `prune images`.

use minijinja::Value;

use super::context::{HostScope, Iteration};
use super::iterate;
use super::{Action, Become, PlanOptions, PlannedStep};
use crate::diagnostic::InputError;
use crate::playbook::{Playbook, Step, StepKind};
use crate::release::ReleaseSite;
use crate::secrets::{Redactor, Secret};
use crate::steps::activate::Activation;
use crate::steps::prune_images::ImagePrune;
use crate::steps::prune_releases::ReleasePrune;
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

/// Renders every step of `playbook` for the host at `host_index` of the run (a looped step
/// once per item). `guard` holds the host's secret values, kept out of iterations' names.
pub(super) fn plan_steps(
    playbook: &Playbook,
    renderer: &Renderer,
    options: &PlanOptions,
    host_index: usize,
    scope: &HostScope<'_>,
    ctx: &Value,
    guard: &Redactor,
) -> Result<PlannedSteps, InputError> {
    let release = scope.release;
    let mut steps = Vec::with_capacity(playbook.steps.len() + 1);
    let mut passwords = Vec::new();
    let mut command_line = Vec::new();
    // File steps with `on_change` that run on this host: index in `steps`, the step and the
    // context it was rendered with.
    let mut triggers: Vec<Trigger<'_>> = Vec::new();
    for step in &playbook.steps {
        if !options.tags.is_empty() && !step.tags.iter().any(|t| options.tags.contains(t)) {
            continue;
        }
        for run in runs_of(step, scope, renderer, ctx, guard, &mut passwords)? {
            let skip = |reason: &str| {
                PlannedStep::new(
                    run.name.clone(),
                    Action::Skip {
                        reason: reason.to_string(),
                    },
                )
            };
            let Some(step_ctx) = run.ctx else {
                steps.push(skip("loop is empty"));
                continue;
            };
            // A swarm playbook deploys on one manager, whichever answers first: `once` there
            // would skip the step on a fallback manager.
            if step.once && host_index > 0 && !playbook.swarm {
                steps.push(skip("once: runs on the first host"));
                continue;
            }
            if let Some(when) = &step.when
                && !renderer.eval_when(when, &step_ctx, &playbook.file)?
            {
                steps.push(skip("when is false"));
                continue;
            }
            let mut cx = PlanCx {
                file: &playbook.file,
                renderer,
                ctx: &step_ctx,
                app: &playbook.app,
                index: step.index,
                name: &run.name,
                dir: None,
                release,
                command_line: std::mem::take(&mut command_line),
                passwords: std::mem::take(&mut passwords),
            };
            cx.dir = step.dir.as_ref().map(|d| cx.field(d)).transpose()?;
            let action = step.kind.plan(&mut cx)?;
            command_line = cx.command_line;
            passwords = cx.passwords;
            let become_as = become_of(step, playbook, renderer, &step_ctx, &mut passwords)?;
            if step.on_change.is_some() && !matches!(action, Action::Skip { .. }) {
                triggers.push(Trigger {
                    at: steps.len(),
                    step,
                    ctx: step_ctx.clone(),
                });
            }
            steps.push(PlannedStep {
                name: run.name,
                action,
                become_as,
                notify: Default::default(),
            });
        }
    }
    let first_compose = match playbook
        .steps
        .iter()
        .find(|s| matches!(s.kind, StepKind::Compose(_)))
    {
        Some(step) if !triggers.is_empty() => {
            runs_of(step, scope, renderer, ctx, guard, &mut passwords)?
                .into_iter()
                .find_map(|run| run.ctx.map(|c| (step, c)))
        }
        _ => None,
    };
    let mut cx = PlanCx {
        file: &playbook.file,
        renderer,
        ctx,
        app: &playbook.app,
        index: 0,
        name: "",
        dir: None,
        release,
        command_line,
        passwords,
    };
    super::handlers::add_handlers(&mut steps, &triggers, first_compose, playbook, &mut cx)?;
    let PlanCx {
        command_line,
        passwords,
        ..
    } = cx;
    Ok(PlannedSteps {
        steps,
        passwords,
        command_line,
    })
}

/// A file step with `on_change` planned on this host: where it is among the host's steps, and
/// the context it was rendered with (its handler's fields are rendered with it too).
pub(super) struct Trigger<'a> {
    pub at: usize,
    pub step: &'a Step,
    pub ctx: Value,
}

/// One planned run of a step: its name in the report and its context (`None`: an empty loop,
/// reported as one skipped step).
struct Run {
    name: String,
    ctx: Option<Value>,
}

/// The runs of `step` on this host: one, with the host's context (or the step's own when it
/// has `vars`), or one per item of its loop.
fn runs_of(
    step: &Step,
    scope: &HostScope<'_>,
    renderer: &Renderer,
    ctx: &Value,
    guard: &Redactor,
    passwords: &mut Vec<(String, Secret)>,
) -> Result<Vec<Run>, InputError> {
    let file = &scope.playbook.file;
    let mut contexts = |iteration: Option<&Iteration>| -> Result<Value, InputError> {
        let resolved = scope.step_context(step, iteration, renderer)?;
        passwords.extend(resolved.derived_secrets.into_iter().map(|(name, text)| {
            (
                format!("variable `{name}` (made from a secret)"),
                Secret::new(text),
            )
        }));
        Ok(resolved.context)
    };
    let Some(looped) = &step.loop_over else {
        let ctx = if step.vars.is_empty() {
            ctx.clone()
        } else {
            contexts(None)?
        };
        return Ok(vec![Run {
            name: step.name.clone(),
            ctx: Some(ctx),
        }]);
    };
    let items = iterate::items(looped, renderer, ctx, file)?;
    if items.is_empty() {
        return Ok(vec![Run {
            name: step.name.clone(),
            ctx: None,
        }]);
    }
    let hide = looped.names_read().contains("secrets");
    let no_secrets = Redactor::default();
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let name = if hide {
                iterate::iteration_name(&step.name, &Value::from(()), index, &no_secrets)
            } else {
                iterate::iteration_name(&step.name, &item, index, guard)
            };
            let ctx = contexts(Some(&Iteration { item, index }))?;
            Ok(Run {
                name,
                ctx: Some(ctx),
            })
        })
        .collect()
}

/// A step's `become`, its password rendered (and kept to be masked).
pub(super) fn become_of(
    step: &Step,
    playbook: &Playbook,
    renderer: &Renderer,
    ctx: &Value,
    passwords: &mut Vec<(String, Secret)>,
) -> Result<Option<Become>, InputError> {
    let Some(b) = &step.become_as else {
        return Ok(None);
    };
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
    Ok(Some(Become {
        user: b.user.clone(),
        password,
    }))
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
        .rposition(|s| s.action.places_files())
        .map_or(0, |i| i + 1);
    steps.insert(
        at,
        PlannedStep::new(
            "activate release",
            Action::Activate(Activation {
                site: site.clone(),
                id: id.to_string(),
                version: None,
            }),
        ),
    );
    at + 1
}

/// Appends release pruning after the last step: it runs only when every step before it
/// succeeded (a failed deploy keeps every release a rollback may need), and after a rollback's
/// re-run steps too. Image pruning, when on, follows it and sees only the kept releases.
pub(super) fn append_release_pruning(steps: &mut Vec<PlannedStep>, site: &ReleaseSite) {
    steps.push(PlannedStep::new(
        "prune releases",
        Action::PruneReleases(ReleasePrune { site: site.clone() }),
    ));
}

/// Appends image pruning after the last step: it runs only when every step before it
/// succeeded, and after a rollback's re-run steps too. It talks to docker as the last compose
/// step does (its `become`, if any).
pub(super) fn append_image_pruning(steps: &mut Vec<PlannedStep>, site: &ReleaseSite) {
    let become_as = steps
        .iter()
        .rfind(|s| matches!(s.action, Action::Compose(_)))
        .and_then(|s| s.become_as.clone());
    steps.push(PlannedStep {
        become_as,
        ..PlannedStep::new(
            "prune images",
            Action::PruneImages(ImagePrune {
                root: site.root.clone(),
            }),
        )
    });
}

#[cfg(test)]
mod tests {
    use indexmap::IndexMap;

    use super::super::{PlanOptions, build};
    use crate::diagnostic::SourceFile;
    use crate::inventory::Inventory;
    use crate::plan::Action;
    use crate::playbook::Playbook;

    fn playbook(release: &str, steps: &str) -> Result<Playbook, crate::diagnostic::InputError> {
        Playbook::parse(SourceFile {
            path: "/nonexistent/pb.toml".into(),
            text: format!("name = \"t\"\napp = \"a\"\n{release}\n{steps}"),
        })
    }

    fn plan_of(pb: &Playbook) -> crate::plan::HostPlan {
        let inventory = Inventory::parse(&SourceFile {
            path: "inv.toml".into(),
            text: "[ssh]\nssh_config = \"\"\n[hosts.h1]\n".into(),
        })
        .unwrap();
        let plan = build(&inventory, pb, &IndexMap::new(), &PlanOptions::default()).unwrap();
        plan.hosts[0].clone()
    }

    /// Each step's name, and whether a rollback re-runs it.
    fn step_names(pb: &Playbook) -> Vec<(String, bool)> {
        let host = plan_of(pb);
        host.steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i >= host.post_activate))
            .collect()
    }

    const STEPS: &str = "[[steps]]\nrun = \"true\"\nname = \"before\"\n[[steps]]\ncompose = { command = \"up\", dir = \"/srv/a/current\" }\nbecome = true\n";

    #[test]
    fn image_pruning_is_implied_after_the_last_step_of_a_release_and_can_be_turned_off() {
        let on = playbook("[release]\nroot = \"/srv/a\"\n", STEPS).unwrap();
        let names = step_names(&on);
        assert_eq!(
            names.last(),
            Some(&("prune images".to_string(), true)),
            "last, and re-run by a rollback: {names:?}"
        );
        let host = plan_of(&on);
        let last = host.steps.last().unwrap();
        assert!(matches!(&last.action, Action::PruneImages(p) if p.root == "/srv/a"));
        assert!(
            last.become_as.is_some(),
            "it talks to docker as the last compose step does"
        );
        assert!(last.action.describe().contains("/srv/a/releases/*"));

        let off = playbook(
            "[release]\nroot = \"/srv/a\"\nprune_images = false\n",
            STEPS,
        )
        .unwrap();
        assert!(!step_names(&off).iter().any(|(n, _)| n == "prune images"));
        // Without [release] there are no releases to keep images for.
        let plain = playbook("", STEPS).unwrap();
        assert!(!step_names(&plain).iter().any(|(n, _)| n == "prune images"));
    }

    #[test]
    fn compose_steps_through_current_resolve_paths_there_and_up_refreshes_mounts() {
        let steps = "[[steps]]\ncompose = { command = \"pull\", dir = \"/srv/a//current/\" }\n\
            [[steps]]\ncompose = { command = \"up\", dir = \"/srv/a/current/stable\" }\n\
            [[steps]]\ncompose = { command = \"up\", dir = \"{{ release.dir }}\" }\n\
            [[steps]]\ncompose = { command = \"up\", dir = \"/srv/a/currently\" }\n";
        let roots = |pb: &Playbook| -> Vec<Option<String>> {
            plan_of(pb)
                .steps
                .iter()
                .filter_map(|s| match &s.action {
                    Action::Compose(c) => Some(c.release_root.clone()),
                    _ => None,
                })
                .collect()
        };
        let root = Some("/srv/a".to_string());
        let released = playbook("[release]\nroot = \"/srv/a/\"\n", steps).unwrap();
        assert_eq!(roots(&released), [root.clone(), root, None, None]);
        let up = plan_of(&released).steps[2].action.describe();
        assert!(
            up.contains("containers whose mounted release files changed restarted"),
            "{up}"
        );
        // Without [release] there is no `current` to go through.
        let plain = playbook("", &steps.replace("{{ release.dir }}", "/srv/r")).unwrap();
        assert_eq!(roots(&plain), [None, None, None, None]);
    }

    #[test]
    fn prune_images_must_be_a_bool_and_is_not_a_step() {
        let err = playbook(
            "[release]\nroot = \"/srv/a\"\nprune_images = \"no\"\n",
            STEPS,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("pb.toml:5:"), "{text}");
        assert!(text.contains("bool"), "{text}");

        let err = playbook(
            "[release]\nroot = \"/srv/a\"\n",
            "[[steps]]\nprune_images = true\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`prune_images` is not a step"), "{text}");
        assert!(text.contains("pb.toml:7:16"), "{text}");
        assert!(
            err.hint
                .as_deref()
                .unwrap_or("")
                .contains("prune_images = false"),
            "{err:?}"
        );
    }
}
