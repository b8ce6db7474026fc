//! One host's template context: its variables merged by precedence and resolved (see
//! `crate::vars`), the built-ins, and which names a playbook reads.

use std::collections::HashSet;

use indexmap::{IndexMap, IndexSet};
use minijinja::Value;

use crate::diagnostic::InputError;
use crate::inventory::Host;
use crate::playbook::{Playbook, StepKind};
use crate::release::ReleaseSite;
use crate::template::Renderer;
use crate::vars::{self, Needed, Origin, VarDef, Vars};

/// Every top-level name the playbook reads: in its templated fields, `when` expressions,
/// template files and release root. Only these variables (and what they read) must resolve.
pub(super) fn names_read(playbook: &Playbook, renderer: &Renderer) -> HashSet<String> {
    let mut names = HashSet::new();
    for step in &playbook.steps {
        for field in step.templated_fields() {
            names.extend(renderer.names_read(field));
        }
        if let Some(when) = &step.when {
            names.extend(renderer.expression_names_read(when));
        }
        if let StepKind::Template(f) = &step.kind {
            names.extend(renderer.file_names_read(&f.src_name));
        }
    }
    if let Some(release) = &playbook.release {
        names.extend(renderer.names_read(&release.root));
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
    let mut defs: Vars = host.vars.clone();
    defs.extend(playbook.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
    for (k, v) in cli_vars {
        let def = VarDef {
            value: vars::cli_value(v),
            origin: Origin::CommandLine,
        };
        defs.insert(k.clone(), def);
    }
    let mut map: IndexMap<String, Value> = IndexMap::new();
    map.insert(
        "host".into(),
        minijinja::context! { name => host.name, address => host.address, groups => host.groups },
    );
    map.insert("app".into(), Value::from(playbook.app.clone()));
    if !secrets.is_undefined() {
        map.insert("secrets".into(), secrets.clone());
    }
    if let Some((site, id)) = release {
        map.insert(
            "release".into(),
            minijinja::context! { id => id, dir => site.dir(id), root => site.root },
        );
    }
    vars::resolve(&defs, map, needed)
}
