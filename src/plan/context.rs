//! One host's template context: its variables merged by precedence and resolved (see
//! `crate::vars`), the built-ins, and which names a playbook reads.

use std::collections::HashSet;

use indexmap::{IndexMap, IndexSet};
use minijinja::Value;

use crate::diagnostic::InputError;
use crate::inventory::Host;
use crate::playbook::{Playbook, Step, StepKind};
use crate::release::ReleaseSite;
use crate::template::{LOOP_NAMES, Renderer};
use crate::vars::{self, Needed, Origin, VarDef, Vars};

/// Every top-level name the playbook reads: in its templated fields, `when` expressions,
/// template files, loops and release root. Only these variables (and what they read) must
/// resolve.
pub(super) fn names_read(playbook: &Playbook, renderer: &Renderer) -> HashSet<String> {
    let mut names = HashSet::new();
    for step in &playbook.steps {
        // A step with its own context checks what it reads there (a playbook variable may
        // read one of the step's).
        if step.vars.is_empty() && step.loop_over.is_none() {
            names.extend(step_names_read(step, renderer));
        }
        if let Some(l) = &step.loop_over {
            names.extend(l.names_read());
        }
    }
    if let Some(release) = &playbook.release {
        names.extend(renderer.names_read(&release.root));
    }
    names
}

/// The top-level names one step reads (its own variables among them, so that an error in one
/// is reported): in its templated fields, `when` and template file.
fn step_names_read(step: &Step, renderer: &Renderer) -> HashSet<String> {
    let mut names: HashSet<String> = step.vars.keys().cloned().collect();
    for field in step.templated_fields() {
        names.extend(renderer.names_read(field));
    }
    if let Some(when) = &step.when {
        names.extend(renderer.expression_names_read(when));
    }
    if let StepKind::Template(f) = &step.kind {
        for (name, _, _) in f.template_sources() {
            names.extend(renderer.file_names_read(&name));
        }
    }
    names
}

/// `--tags` must select at least one step: a typo would otherwise deploy nothing, "successfully".
pub(super) fn check_tags(playbook: &Playbook, tags: &[String]) -> Result<(), InputError> {
    if tags.is_empty()
        || playbook
            .steps
            .iter()
            .any(|s| s.tags.iter().any(|t| tags.contains(t)))
    {
        return Ok(());
    }
    let known: IndexSet<String> = playbook
        .steps
        .iter()
        .flat_map(|s| s.tags.iter().map(|t| format!("`{t}`")))
        .collect();
    let hint = if known.is_empty() {
        "the playbook's steps have no tags: leave --tags out".to_string()
    } else {
        format!(
            "the playbook's tags: {}",
            known.into_iter().collect::<Vec<_>>().join(", ")
        )
    };
    Err(InputError::plain(format!("--tags `{}` selects no step", tags.join(","))).with_hint(hint))
}

/// One host's template context. Variables, lowest precedence first: inventory vars, group
/// vars, host vars (already merged into `host.vars`), playbook vars, `--var` (data, never
/// rendered); a value may refer to other variables (rendered with their final values) and to
/// the built-ins `host`, `app`, `secrets` and, with `[release]`, `release` (`id`, `dir`,
/// `root`), which win over variables of the same name.
pub fn host_context(
    host: &Host,
    playbook: &Playbook,
    cli_vars: &[(String, String)],
    secrets: &Value,
    release: Option<(&ReleaseSite, &str)>,
    needed: &Needed,
) -> Result<vars::Resolved, InputError> {
    let scope = HostScope {
        host,
        playbook,
        cli_vars,
        secrets,
        release,
    };
    scope.context(needed)
}

/// What one host's contexts are made of: for the host as a whole, and for each step with
/// `vars` or `loop` (its variables over the playbook's, `item` and `loop_index` built-ins).
pub(super) struct HostScope<'a> {
    pub host: &'a Host,
    pub playbook: &'a Playbook,
    pub cli_vars: &'a [(String, String)],
    pub secrets: &'a Value,
    pub release: Option<(&'a ReleaseSite, &'a str)>,
}

/// One run of a looped step: its item and position (from 0).
pub(super) struct Iteration {
    pub item: Value,
    pub index: usize,
}

impl HostScope<'_> {
    /// The host's context: its variables and the playbook's, `--var`, the built-ins.
    pub fn context(&self, needed: &Needed) -> Result<vars::Resolved, InputError> {
        self.resolve(None, None, needed)
    }

    /// The context of `step` (of one `iteration` when it loops). Variables, lowest precedence
    /// first: inventory, groups, host, playbook, the step's `vars`, `--var`; a playbook
    /// variable that reads one of the step's sees the step's value.
    pub fn step_context(
        &self,
        step: &Step,
        iteration: Option<&Iteration>,
        renderer: &Renderer,
    ) -> Result<vars::Resolved, InputError> {
        let needed = Needed::Names(step_names_read(step, renderer));
        self.resolve(Some(&step.vars), iteration, &needed)
    }

    fn resolve(
        &self,
        step_vars: Option<&Vars>,
        iteration: Option<&Iteration>,
        needed: &Needed,
    ) -> Result<vars::Resolved, InputError> {
        let (host, playbook) = (self.host, self.playbook);
        let mut defs: Vars = host.vars.clone();
        defs.extend(playbook.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(step_vars) = step_vars {
            defs.extend(step_vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        self.layer_cli(&mut defs);
        let mut map = self.built_ins();
        if let Some(it) = iteration {
            map.insert(LOOP_NAMES[0].into(), it.item.clone());
            map.insert(LOOP_NAMES[1].into(), Value::from(it.index));
        }
        vars::resolve(&defs, map, needed)
    }

    fn layer_cli(&self, defs: &mut Vars) {
        for (k, v) in self.cli_vars {
            let def = VarDef {
                value: vars::cli_value(v),
                origin: Origin::CommandLine,
            };
            defs.insert(k.clone(), def);
        }
    }

    fn built_ins(&self) -> IndexMap<String, Value> {
        let host = self.host;
        let mut map: IndexMap<String, Value> = IndexMap::new();
        map.insert(
            "host".into(),
            minijinja::context! { name => host.name, address => host.address, groups => host.groups },
        );
        map.insert("app".into(), Value::from(self.playbook.app.clone()));
        if !self.secrets.is_undefined() {
            map.insert("secrets".into(), self.secrets.clone());
        }
        if let Some((site, id)) = self.release {
            map.insert(
                "release".into(),
                minijinja::context! { id => id, dir => site.dir(id), root => site.root },
            );
        }
        map
    }
}
