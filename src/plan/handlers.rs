//! Placing one host's `on_change` handlers among its steps: one handler step per distinct
//! reaction (several file steps naming the same one share it), right before the first `health`
//! step after its last trigger (so a restarted service is what the health check sees), else
//! after the last step. Whether it fires is the session's call (a trigger reported `changed`).

use minijinja::Value;

use super::render::{Trigger, become_of};
use super::{Action, Become, Notify, PlannedStep};
use crate::diagnostic::InputError;
use crate::playbook::{Playbook, Step};
use crate::steps::PlanCx;
use crate::steps::compose::ComposeRun;

/// A handler being gathered: its action, `become`, and the steps that trigger it.
struct Gathered {
    verb: String,
    action: Action,
    become_as: Option<Become>,
    /// Indices in the host's steps, and names, of its triggers.
    triggers: Vec<(usize, String)>,
}

/// Adds the handlers of `triggers` (file steps with `on_change` that run on this host) to
/// `steps`, and marks each trigger with its handler. `first_compose` is the playbook's first
/// `compose` step with the context of its first run on this host, if any.
pub(super) fn add_handlers<'a>(
    steps: &mut Vec<PlannedStep>,
    triggers: &[Trigger<'a>],
    first_compose: Option<(&'a Step, Value)>,
    playbook: &'a Playbook,
    cx: &mut PlanCx<'a>,
) -> Result<(), InputError> {
    if triggers.is_empty() {
        return Ok(());
    }
    let compose = match &first_compose {
        Some((step, ctx)) => Some(plan_compose(step, ctx, playbook, cx)?),
        None => None,
    };
    let mut gathered: Vec<Gathered> = Vec::new();
    for trigger in triggers {
        let (at, step) = (trigger.at, trigger.step);
        let Some(on_change) = &step.on_change else {
            continue;
        };
        let mut tcx = with_ctx(cx, &trigger.ctx, step);
        tcx.dir = step.dir.as_ref().map(|d| tcx.field(d)).transpose()?;
        let action = on_change.plan(&mut tcx, compose.as_ref().map(|(run, _)| run));
        give_back(cx, tcx);
        let action = action?;
        // Compose reactions talk to docker as the compose step does, unless the file step
        // itself says how (`become`); `run` is the file step's own.
        let become_as = match (
            &compose,
            on_change.uses_compose() && step.become_as.is_none(),
        ) {
            (Some((_, compose_become)), true) => compose_become.clone(),
            _ => steps[at].become_as.clone(),
        };
        // The same command, every word: `restart proxy` and `restart web` are two handlers.
        let same = |g: &Gathered| {
            let same_action = match (&g.action, &action) {
                (Action::Compose(a), Action::Compose(b)) => a == b,
                (a, b) => a.describe() == b.describe(),
            };
            same_action && g.become_as == become_as
        };
        let handler = match gathered.iter().position(same) {
            Some(h) => h,
            None => {
                gathered.push(Gathered {
                    verb: on_change.verb(),
                    action,
                    become_as,
                    triggers: Vec::new(),
                });
                gathered.len() - 1
            }
        };
        gathered[handler].triggers.push((at, step.name.clone()));
        steps[at].notify = Notify::Trigger(handler);
    }
    // Where each goes, by the indices before any insertion; inserted last first so that
    // handlers placed at the same index keep their order.
    let placed: Vec<usize> = gathered
        .iter()
        .map(|g| {
            let last = g.triggers.iter().map(|(i, _)| *i).max().unwrap_or(0);
            steps
                .iter()
                .enumerate()
                .skip(last + 1)
                .find(|(_, s)| matches!(s.action, Action::Health(_)))
                .map_or(steps.len(), |(i, _)| i)
        })
        .collect();
    for (id, (g, at)) in gathered.into_iter().zip(placed).enumerate().rev() {
        // A looped step's iterations are one name.
        let mut names: Vec<String> = Vec::new();
        for (_, name) in g.triggers {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        steps.insert(
            at,
            PlannedStep {
                name: format!("{} ({} changed)", g.verb, names.join(" or ")),
                action: g.action,
                become_as: g.become_as,
                notify: Notify::Handler(id),
            },
        );
    }
    Ok(())
}

/// A planning context for `step` rendered with `ctx`, carrying `cx`'s collections (handed back
/// with [`give_back`]).
fn with_ctx<'a: 't, 't>(cx: &mut PlanCx<'a>, ctx: &'t Value, step: &'t Step) -> PlanCx<'t> {
    PlanCx {
        file: cx.file,
        renderer: cx.renderer,
        ctx,
        app: cx.app,
        index: step.index,
        name: &step.name,
        dir: None,
        release: cx.release,
        command_line: std::mem::take(&mut cx.command_line),
        passwords: std::mem::take(&mut cx.passwords),
    }
}

fn give_back(cx: &mut PlanCx<'_>, used: PlanCx<'_>) {
    cx.command_line = used.command_line;
    cx.passwords = used.passwords;
}

/// The playbook's first `compose` step rendered for this host, with its `become`: where a
/// handler's compose commands run when `on_change` does not say.
fn plan_compose<'a>(
    step: &'a Step,
    ctx: &Value,
    playbook: &'a Playbook,
    cx: &mut PlanCx<'a>,
) -> Result<(ComposeRun, Option<Become>), InputError> {
    let mut ccx = with_ctx(cx, ctx, step);
    let planned = (|| {
        ccx.dir = step.dir.as_ref().map(|d| ccx.field(d)).transpose()?;
        let Action::Compose(run) = step.kind.plan(&mut ccx)? else {
            unreachable!("a compose step plans a compose action")
        };
        let become_as = become_of(step, playbook, ccx.renderer, ctx, &mut ccx.passwords)?;
        Ok((run, become_as))
    })();
    give_back(cx, ccx);
    planned
}

#[cfg(test)]
mod tests {
    use indexmap::IndexMap;

    use super::super::{Notify, PlanOptions, build};
    use crate::diagnostic::SourceFile;
    use crate::inventory::Inventory;
    use crate::playbook::Playbook;

    fn plan_of(steps: &str, tags: &[&str]) -> Vec<(String, Notify)> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.conf"), "a").unwrap();
        let pb = Playbook::parse(SourceFile {
            path: dir.path().join("pb.toml"),
            text: format!("name = \"t\"\napp = \"a\"\n{steps}"),
        })
        .unwrap();
        let inventory = Inventory::parse(&SourceFile {
            path: "inv.toml".into(),
            text: "[ssh]\nssh_config = \"\"\n[hosts.h1]\n".into(),
        })
        .unwrap();
        let options = PlanOptions {
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        };
        let plan = build(&inventory, &pb, &IndexMap::new(), &options).unwrap();
        plan.hosts[0]
            .steps
            .iter()
            .map(|s| (s.name.clone(), s.notify))
            .collect()
    }

    const STEPS: &str = "
[[steps]]
name = \"one\"
copy = { src = \"a.conf\", dest = \"/srv/one\" }
on_change = { restart = [\"proxy\"] }
tags = [\"one\"]
[[steps]]
name = \"up\"
compose = { command = \"up\", dir = \"/srv\" }
[[steps]]
name = \"two\"
copy = { src = \"a.conf\", dest = \"/srv/two\" }
on_change = { restart = [\"proxy\"] }
[[steps]]
name = \"healthy\"
health = { url = \"http://127.0.0.1/\" }
[[steps]]
name = \"last\"
run = \"true\"
";

    #[test]
    fn reactions_that_differ_only_in_their_services_or_words_are_two_handlers() {
        let steps = plan_of(
            "
[[steps]]
name = \"a\"
copy = { src = \"a.conf\", dest = \"/srv/a\" }
on_change = { restart = [\"proxy\"], dir = \"/srv\" }
[[steps]]
name = \"b\"
copy = { src = \"a.conf\", dest = \"/srv/b\" }
on_change = { restart = [\"web\"], dir = \"/srv\" }
[[steps]]
name = \"c\"
copy = { src = \"a.conf\", dest = \"/srv/c\" }
on_change = { exec = { service = \"proxy\", command = [\"nginx\", \"-s\", \"reload\"] }, dir = \"/srv\" }
[[steps]]
name = \"d\"
copy = { src = \"a.conf\", dest = \"/srv/d\" }
on_change = { exec = { service = \"proxy\", command = [\"nginx\", \"-t\"] }, dir = \"/srv\" }
[[steps]]
name = \"e\"
copy = { src = \"a.conf\", dest = \"/srv/e\" }
on_change = { restart = [\"web\"], dir = \"/srv\" }
",
            &[],
        );
        let names: Vec<&str> = steps.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names[5..],
            [
                "restart proxy (a changed)",
                "restart web (b or e changed)",
                "exec nginx -s reload in proxy (c changed)",
                "exec nginx -t in proxy (d changed)",
            ]
        );
    }

    #[test]
    fn one_handler_per_reaction_right_before_the_health_check_after_its_last_trigger() {
        let steps = plan_of(STEPS, &[]);
        let names: Vec<&str> = steps.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "one",
                "up",
                "two",
                "restart proxy (one or two changed)",
                "healthy",
                "last"
            ]
        );
        assert_eq!(steps[0].1, Notify::Trigger(0));
        assert_eq!(steps[2].1, Notify::Trigger(0));
        assert_eq!(steps[3].1, Notify::Handler(0));
        // A trigger left out by --tags names no handler; with no health step after it, the
        // handler comes last.
        let steps = plan_of(STEPS, &["one"]);
        let names: Vec<&str> = steps.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["one", "restart proxy (one changed)"]);
    }
}
