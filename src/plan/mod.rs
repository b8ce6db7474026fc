//! Planning: inventory + playbook + secrets + CLI vars → per-host actions, all rendered up front.

use std::sync::Arc;

use indexmap::IndexMap;
use minijinja::Value;
use sha2::{Digest, Sha256};

use crate::diagnostic::InputError;
use crate::inventory::{ComposeChoice, Host, Inventory};
use crate::playbook::Playbook;
use crate::release::{self, ReleaseSite};
use crate::remote::compose::ComposeTool;
use crate::remote::lock::StateDir;
use crate::rollout::{FirstStages, Policy};
use crate::secrets::{Redactor, Secret};
use crate::template::Renderer;
use crate::transport::ConnectSpec;
use crate::vars::Needed;

mod context;
mod exposure;
mod handlers;
mod iterate;
mod order;
mod render;

pub use crate::steps::Action;
pub use context::host_context;
use context::{HostScope, check_tags, names_read};

/// A file to place on a host.
#[derive(Debug, Clone)]
pub struct Upload {
    pub dest: String,
    pub mode: u32,
    pub content: Arc<[u8]>,
    pub sha256: String,
    /// The content carries a secret: never shown, never diffed.
    pub sensitive: bool,
    /// Owner and group the file must have (`chown`), when the step says so.
    pub owner: Option<String>,
    pub group: Option<String>,
}

/// How a step's remote commands run through sudo (`become`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Become {
    /// `None`: root.
    pub user: Option<String>,
    /// Written as the first line of the channel's stdin for `sudo -S`; `None`: `sudo -n`.
    pub password: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct PlannedStep {
    pub name: String,
    pub action: Action,
    /// Run the action's commands through sudo.
    pub become_as: Option<Become>,
    /// Its part in `on_change`: a file step that notifies a handler, or the handler.
    pub notify: Notify,
}

/// A step's part in `on_change` handlers (numbered per host).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Notify {
    #[default]
    None,
    /// A file step: when it reports `changed`, handler N fires.
    Trigger(usize),
    /// Handler N: runs only when one of its triggers changed on this host in this run.
    Handler(usize),
}

impl PlannedStep {
    pub fn new(name: impl Into<String>, action: Action) -> Self {
        Self {
            name: name.into(),
            action,
            become_as: None,
            notify: Notify::None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct HostPlan {
    pub host: Host,
    pub connect: ConnectSpec,
    pub steps: Vec<PlannedStep>,
    /// Where this host keeps releases, when the playbook has `[release]`.
    pub release: Option<ReleaseSite>,
    /// Where the lock and the audit log live on this host.
    pub state: StateDir,
    /// Steps from this index on run after the new release is active; a rollback re-runs them.
    pub post_activate: usize,
}

impl HostPlan {
    /// The compose flavour the inventory's `compose` setting forces on this host, if any.
    pub fn forced_compose(&self) -> Option<ComposeTool> {
        match self.host.compose {
            ComposeChoice::Auto => None,
            ComposeChoice::Plugin => Some(ComposeTool::Plugin),
            ComposeChoice::Standalone => Some(ComposeTool::Standalone),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub app: String,
    pub playbook_name: String,
    pub hosts: Vec<HostPlan>,
    /// The id of the release this run creates, when the playbook has `[release]`.
    pub release_id: Option<String>,
    pub rollout: Policy,
    /// `[rollout] first`, resolved: the hosts (indices into `hosts`) deployed before the rest.
    pub first: FirstStages,
    /// `[swarm]`: `hosts` are the swarm's managers, in inventory order; a deploy or rollback
    /// goes through the first reachable active one (`fleet::swarm`) and leaves the others.
    pub swarm: bool,
    pub redactor: Redactor,
}

/// Options from the command line that shape the plan.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    pub limit: Option<String>,
    pub vars: Vec<(String, String)>,
    pub tags: Vec<String>,
}

pub fn connect_spec(host: &Host) -> ConnectSpec {
    host.ssh.clone()
}

/// The hosts a run targets: `pattern` (e.g. the playbook's `hosts`) narrowed by `--limit`.
/// Targeting no host is bad input, never a run that does nothing.
pub fn target_hosts(
    inventory: &Inventory,
    pattern: &str,
    limit: Option<&str>,
) -> Result<Vec<Host>, InputError> {
    let mut selected = inventory.select(pattern).map_err(|e| {
        InputError::plain(format!("hosts: {e}"))
            .with_hint("check the playbook's `hosts` against the inventory")
    })?;
    if selected.is_empty() {
        return Err(InputError::plain(format!(
            "hosts: `{pattern}` selects no host of the inventory"
        ))
        .with_hint("check the playbook's `hosts` and the inventory's hosts"));
    }
    if let Some(limit) = limit {
        if limit.split(',').all(|item| item.trim().is_empty()) {
            return Err(InputError::plain(format!(
                "--limit names no host: `{limit}` is empty"
            ))
            .with_hint("give host names, group names or globs, comma-separated (`!x` excludes); leave --limit out to target every host"));
        }
        let limited = inventory.select(limit).map_err(|e| {
            InputError::plain(format!("--limit: {e}")).with_hint(
                "--limit takes host names, group names or globs, comma-separated; `!x` excludes",
            )
        })?;
        selected.retain(|i| limited.contains(i));
        if selected.is_empty() {
            return Err(InputError::plain(format!(
                "--limit `{limit}` leaves no host of `{pattern}`"
            )));
        }
    }
    Ok(selected
        .into_iter()
        .map(|i| inventory.hosts[i].clone())
        .collect())
}

/// Builds the plan of a playbook run. Renders every template for every host, so any bad
/// input is found before the first connection. With `[release]`, templates are rendered twice:
/// once to learn the content the release id hashes, once with that id in scope.
pub fn build(
    inventory: &Inventory,
    playbook: &Playbook,
    secrets: &IndexMap<String, Secret>,
    options: &PlanOptions,
) -> Result<Plan, InputError> {
    let renderer = Renderer::new(playbook)?;
    check_tags(playbook, &options.tags)?;
    let hosts = playbook_targets(inventory, playbook, options)?;
    let first = order::first_stages(inventory, playbook, &hosts)?;
    let needed = Needed::Names(names_read(playbook, &renderer));
    let secrets_value = Value::from_iter(
        secrets
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.expose()))),
    );
    let sites = release_sites(&hosts, playbook, &renderer, options)?;

    let release_id = match &playbook.release {
        None => None,
        Some(_) => {
            let mut rendered: Vec<Arc<[u8]>> = Vec::new();
            for (index, host) in hosts.iter().enumerate() {
                let scope = HostScope {
                    host,
                    playbook,
                    cli_vars: &options.vars,
                    secrets: &secrets_value,
                    release: sites[index].as_ref().map(|s| (s, "pending")),
                };
                let ctx = scope.context(&needed)?.context;
                let planned = render::plan_steps(
                    playbook,
                    &renderer,
                    options,
                    index,
                    &scope,
                    &ctx,
                    &Redactor::default(),
                )?;
                for step in &planned.steps {
                    for u in step.action.uploads() {
                        rendered.push(u.dest.as_bytes().into());
                        rendered.push(u.content.clone());
                    }
                }
            }
            let parts: Vec<&[u8]> = rendered.iter().map(|p| &p[..]).collect();
            Some(release::release_id(std::time::SystemTime::now(), &parts))
        }
    };

    let mut passwords: Vec<(String, Secret)> = Vec::new();
    let mut command_lines = Vec::with_capacity(hosts.len());
    let mut host_plans = Vec::with_capacity(hosts.len());
    for (index, host) in hosts.into_iter().enumerate() {
        let site = sites[index].clone();
        let scope = HostScope {
            host: &host,
            playbook,
            cli_vars: &options.vars,
            secrets: &secrets_value,
            release: site.as_ref().zip(release_id.as_deref()),
        };
        let resolved = scope.context(&needed)?;
        let derived: Vec<(String, Secret)> = resolved
            .derived_secrets
            .into_iter()
            .map(|(name, text)| {
                (
                    format!("variable `{name}` (made from a secret)"),
                    Secret::new(text),
                )
            })
            .collect();
        // What a looped step's iteration names must not show.
        let guard = Redactor::new(secrets.values().chain(derived.iter().map(|(_, s)| s)));
        passwords.extend(derived);
        let ctx = resolved.context;
        let planned =
            render::plan_steps(playbook, &renderer, options, index, &scope, &ctx, &guard)?;
        passwords.extend(planned.passwords);
        command_lines.push(planned.command_line);
        let mut steps = planned.steps;
        let post_activate = match (&site, &release_id) {
            (Some(site), Some(id)) => {
                let at = render::insert_activation(&mut steps, site, id);
                let version = release_version(&ctx, &guard, &steps, &site.dir(id));
                if let Some(Action::Activate(activation)) =
                    steps.get_mut(at - 1).map(|s| &mut s.action)
                {
                    activation.version = version;
                }
                at
            }
            _ => 0,
        };
        if let (Some(site), Some(config)) = (&site, &playbook.release) {
            render::append_release_pruning(&mut steps, site);
            if config.prune_images {
                render::append_image_pruning(&mut steps, site);
            }
        }
        let state = state_dir(playbook, site.as_ref(), &ctx);
        host_plans.push(HostPlan {
            connect: connect_spec(&host),
            host,
            steps,
            release: site,
            state,
            post_activate,
        });
    }
    // Decided from the rendered text, whatever way a template reached a secret: a secret
    // value on a command line is bad input; an upload whose content holds one is sensitive.
    let guarded: Vec<exposure::Guarded> = secrets
        .iter()
        .map(|(name, value)| (format!("secret `{name}`"), value))
        .chain(
            passwords
                .iter()
                .map(|(label, value)| (label.clone(), value)),
        )
        .map(|(label, value)| exposure::Guarded { label, value })
        .collect();
    // One entry per value (the first label kept): a password rendered for each of 2,000
    // hosts is one value to look for, not 2,000 to look for on each host.
    let mut seen = std::collections::HashSet::new();
    let guarded: Vec<exposure::Guarded> = guarded
        .into_iter()
        .filter(|g| seen.insert(g.value.expose()))
        .collect();
    let redactor = Redactor::new(guarded.iter().map(|g| g.value));
    for (hp, values) in host_plans.iter_mut().zip(&command_lines) {
        exposure::check_command_lines(&playbook.file, &hp.host.name, values, &guarded)?;
        exposure::check_host_settings(&hp.host.name, &hp.host.address, &hp.connect.user, &guarded)?;
        for step in &mut hp.steps {
            for u in step.action.uploads_mut() {
                u.sensitive |= redactor.reveals_secret(&u.content);
            }
        }
    }
    Ok(Plan {
        app: playbook.app.clone(),
        playbook_name: playbook.name.clone(),
        hosts: host_plans,
        release_id,
        rollout: playbook.rollout.clone(),
        first,
        swarm: playbook.swarm,
        redactor,
    })
}

/// What the new release records of itself (`release::version_line`): the `version` variable
/// (unless it holds secret content), else the images of the compose files placed in it.
fn release_version(
    ctx: &minijinja::Value,
    guard: &Redactor,
    steps: &[PlannedStep],
    release_dir: &str,
) -> Option<String> {
    let version = ctx
        .get_attr("version")
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_none())
        .map(|v| v.to_string())
        .filter(|v| guard.redact(v) == *v);
    let prefix = format!("{release_dir}/");
    let compose_files: Vec<&[u8]> = steps
        .iter()
        .flat_map(|s| s.action.uploads())
        .filter(|u| {
            u.dest.strip_prefix(&prefix).is_some_and(|rel| {
                let name = rel.rsplit('/').next().unwrap_or(rel);
                matches!(
                    name,
                    "compose.yaml" | "compose.yml" | "docker-compose.yml" | "docker-compose.yaml"
                )
            })
        })
        .map(|u| &u.content[..])
        .collect();
    release::version_line(version.as_deref(), &compose_files)
}

/// The targeted hosts with where each keeps releases and its lock, without rendering any step
/// (and without secrets): for `releases`, `lock` and `rollback`'s bookkeeping.
pub fn sites(
    inventory: &Inventory,
    playbook: &Playbook,
    options: &PlanOptions,
) -> Result<Plan, InputError> {
    let renderer = Renderer::new(playbook)?;
    let hosts = playbook_targets(inventory, playbook, options)?;
    let sites = release_sites(&hosts, playbook, &renderer, options)?;
    // The lock's place needs `app_dir` (see `state_dir`).
    let needed = Needed::Names(std::iter::once("app_dir".to_string()).collect());
    let mut host_plans = Vec::with_capacity(hosts.len());
    for (host, site) in hosts.into_iter().zip(sites) {
        let ctx = host_context(
            &host,
            playbook,
            &options.vars,
            &Value::UNDEFINED,
            None,
            &needed,
        )?
        .context;
        host_plans.push(HostPlan {
            connect: connect_spec(&host),
            state: state_dir(playbook, site.as_ref(), &ctx),
            host,
            steps: Vec::new(),
            release: site,
            post_activate: 0,
        });
    }
    Ok(Plan {
        app: playbook.app.clone(),
        playbook_name: playbook.name.clone(),
        hosts: host_plans,
        release_id: None,
        rollout: playbook.rollout.clone(),
        first: FirstStages::default(),
        swarm: false,
        redactor: Redactor::default(),
    })
}

/// Where this app instance's lock and audit log live on the host: one place whatever the
/// playbook or SSH user (see `StateDir::for_app`): the `app_dir` variable, else the release root.
fn state_dir(playbook: &Playbook, site: Option<&ReleaseSite>, ctx: &Value) -> StateDir {
    let app_dir = ctx
        .get_attr("app_dir")
        .ok()
        .and_then(|v| v.as_str().map(str::to_string));
    StateDir::for_app(
        &playbook.app,
        app_dir.as_deref().or(site.map(|s| s.root.as_str())),
    )
}

fn playbook_targets(
    inventory: &Inventory,
    playbook: &Playbook,
    options: &PlanOptions,
) -> Result<Vec<Host>, InputError> {
    target_hosts(inventory, &playbook.hosts, options.limit.as_deref()).map_err(|e| match &playbook
        .hosts_span
    {
        Some(span) if playbook.swarm && !e.message.starts_with("--limit") => {
            let message = e.message.replacen("hosts: ", "[swarm] managers: ", 1);
            playbook.file.error_at(span.clone(), message).with_hint(
                "name the inventory group of the swarm's managers (tried in inventory order)",
            )
        }
        Some(span) if !e.message.starts_with("--limit") => {
            let mut located = playbook.file.error_at(span.clone(), e.message.clone());
            located.hint = e.hint.clone();
            located
        }
        _ => e,
    })
}

/// `[release] root` rendered for each host (secrets are not in scope there).
fn release_sites(
    hosts: &[Host],
    playbook: &Playbook,
    renderer: &Renderer,
    options: &PlanOptions,
) -> Result<Vec<Option<ReleaseSite>>, InputError> {
    let Some(config) = &playbook.release else {
        return Ok(vec![None; hosts.len()]);
    };
    let needed = Needed::Names(renderer.names_read(&config.root));
    hosts
        .iter()
        .map(|host| {
            let ctx = host_context(
                host,
                playbook,
                &options.vars,
                &Value::UNDEFINED,
                None,
                &needed,
            )?
            .context;
            let root = renderer.render_field(&config.root, &ctx, &playbook.file)?;
            if !root.starts_with('/') {
                return Err(playbook
                    .file
                    .error_at(
                        config.root.span(),
                        format!("release root `{root}` is not an absolute path"),
                    )
                    .with_hint("write e.g. root = \"/srv/pixel\" or \"{{ app_dir }}\""));
            }
            Ok(Some(ReleaseSite {
                root,
                keep: config.keep,
                maker: release::maker_line(&playbook.name),
            }))
        })
        .collect()
}

/// A plan running the same action on every host (for `exec`).
pub fn adhoc(hosts: Vec<Host>, name: &str, action: Action) -> Plan {
    let mut plan = inspection(hosts);
    for hp in &mut plan.hosts {
        hp.steps = vec![PlannedStep::new(name, action.clone())];
    }
    plan
}

/// The hosts alone, no step (for `ping`, whose query is not a step).
pub fn inspection(hosts: Vec<Host>) -> Plan {
    Plan {
        app: String::new(),
        playbook_name: String::new(),
        hosts: hosts
            .into_iter()
            .map(|host| HostPlan {
                connect: connect_spec(&host),
                host,
                steps: Vec::new(),
                release: None,
                state: StateDir::in_home("adhoc"),
                post_activate: 0,
            })
            .collect(),
        release_id: None,
        rollout: Policy::default(),
        first: FirstStages::default(),
        swarm: false,
        redactor: Redactor::default(),
    }
}

pub(crate) fn upload(dest: String, mode: u32, content: Arc<[u8]>, sensitive: bool) -> Upload {
    Upload {
        sha256: hex::encode(Sha256::digest(&content)),
        dest,
        mode,
        content,
        sensitive,
        owner: None,
        group: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::SourceFile;

    #[test]
    fn variables_resolve_by_precedence_then_render_per_host() {
        let inventory = Inventory::parse(&SourceFile {
            path: "inv.toml".into(),
            text: r#"
[ssh]
ssh_config = ""

[vars]
base = "/srv"
layer = "inventory"
dir = "{{ base }}/{{ layer }}/{{ host.name }}"

[groups.web]
vars = { layer = "group", base = "{{ root }}" }

[groups.db]

[hosts.w1]
groups = ["web"]
vars = { root = "/data" }

[hosts.d1]
groups = ["db"]
"#
            .into(),
        })
        .unwrap();
        let playbook = Playbook::parse(SourceFile {
            path: "/nonexistent/pb.toml".into(),
            text: "name = \"t\"\napp = \"a\"\n[vars]\nroot = \"/pb\"\n".into(),
        })
        .unwrap();
        let dir = |host: usize, cli: &[(String, String)]| {
            let ctx = host_context(
                &inventory.hosts[host],
                &playbook,
                cli,
                &Value::UNDEFINED,
                None,
                &Needed::All,
            )
            .unwrap()
            .context;
            ctx.get_attr("dir").unwrap().to_string()
        };
        // w1: the group's `layer` and `base`; `base` reads `root`, whose playbook value wins
        // over the host's.
        assert_eq!(dir(0, &[]), "/pb/group/w1");
        assert_eq!(dir(1, &[]), "/srv/inventory/d1");
        let cli = [("layer".to_string(), "cli".to_string())];
        assert_eq!(dir(0, &cli), "/pb/cli/w1");
        assert_eq!(dir(1, &cli), "/srv/cli/d1");
    }

    #[test]
    fn a_variable_rendered_from_a_secret_is_masked_like_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.j2"), "DB={{ db_url }}\n").unwrap();
        let inventory = Inventory::parse(&SourceFile {
            path: dir.path().join("inv.toml"),
            text: "[ssh]\nssh_config = \"\"\n[hosts.h1]\n".into(),
        })
        .unwrap();
        let playbook = Playbook::parse(SourceFile {
            path: dir.path().join("pb.toml"),
            text: "name = \"t\"\napp = \"a\"\n[vars]\ndb_url = \"postgres://app:{{ secrets.pw | upper }}@db\"\n[[steps]]\ntemplate = { src = \"t.j2\", dest = \"/srv/.env\" }\n".into(),
        })
        .unwrap();
        let mut secrets = IndexMap::new();
        secrets.insert("pw".to_string(), Secret::new("hunter2"));
        let plan = build(&inventory, &playbook, &secrets, &PlanOptions::default()).unwrap();
        let Action::Template(crate::steps::files::Placement::File(u)) =
            &plan.hosts[0].steps[0].action
        else {
            panic!("{:?}", plan.hosts[0].steps[0].action)
        };
        assert_eq!(&u.content[..], b"DB=postgres://app:HUNTER2@db\n");
        // The upper-cased form is not the secret's text, yet it is masked: it came from it.
        let shown = plan.redactor.redact("cat: DB=postgres://app:HUNTER2@db");
        assert!(!shown.contains("HUNTER2"), "{shown}");

        // And it is kept off command lines like the secret itself.
        let playbook = Playbook::parse(SourceFile {
            path: dir.path().join("pb.toml"),
            text: "name = \"t\"\napp = \"a\"\n[vars]\ntoken = \"{{ secrets.pw | replace('u', 'U') }}\"\n[[steps]]\nrun = \"curl -H 'X-Token: {{ token }}' localhost\"\n".into(),
        })
        .unwrap();
        let err = build(&inventory, &playbook, &secrets, &PlanOptions::default()).unwrap_err();
        assert!(
            err.message
                .contains("would put variable `token` (made from a secret) on a command line"),
            "{err}"
        );
        assert!(!err.to_string().contains("hUnter2"), "{err}");
    }

    #[test]
    fn a_compose_project_one_flavour_would_rename_is_refused_where_it_is_written() {
        let inventory = Inventory::parse(&SourceFile {
            path: "inv.toml".into(),
            text: "[ssh]\nssh_config = \"\"\n[hosts.Web-1]\n[hosts.web-2]\n".into(),
        })
        .unwrap();
        let playbook = |project: &str| {
            Playbook::parse(SourceFile {
                path: "/nonexistent/pb.toml".into(),
                text: format!(
                    "name = \"t\"\napp = \"a\"\n[[steps]]\ncompose = {{ command = \"up\", dir = \"/srv\", project = \"{project}\" }}\n"
                ),
            })
            .unwrap()
        };
        let build = |project: &str| {
            build(
                &inventory,
                &playbook(project),
                &IndexMap::new(),
                &PlanOptions::default(),
            )
        };
        // `Web-1` would be `web-1` to v1 and refused by v2.
        let err = build("{{ app }}-{{ host.name }}").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/nonexistent/pb.toml:4:53: `project` renders to a name compose does not take as it is: it has upper-case letters\n  key: `steps.0.compose.project`\n  |\n4 | compose = { command = \"up\", dir = \"/srv\", project = \"{{ app }}-{{ host.name }}\" }\n  |                                                     ^^^^^^^^^^^^^^^^^^^^^^^^^^^\n  hint: use lower-case letters, digits, `-` and `_`, starting with a letter or digit (e.g. \"{{ app }}-{{ stage | lower }}\"): compose v2 refuses other names, v1 silently changes them"
        );
        let plan = build("{{ app }}-{{ host.name | lower }}").unwrap();
        let Action::Compose(run) = &plan.hosts[0].steps[0].action else {
            panic!("{:?}", plan.hosts[0].steps[0].action)
        };
        assert_eq!(run.project, "a-web-1");
        for (project, problem) in [
            (
                "my.app",
                "it has characters other than lower-case letters, digits, `-` and `_`",
            ),
            ("-a", "it starts with `-` or `_`"),
            ("{{ '' }}", "it is empty"),
        ] {
            let err = build(project).unwrap_err();
            assert!(err.message.ends_with(problem), "{project}: {err}");
        }
    }

    #[test]
    fn a_health_checks_contains_is_rendered_per_host_and_a_secret_in_it_refused() {
        let inventory = Inventory::parse(&SourceFile {
            path: "inv.toml".into(),
            text: "[ssh]\nssh_config = \"\"\n[hosts.w1]\nvars = { version = \"A\" }\n[hosts.w2]\nvars = { version = \"B\" }\n".into(),
        })
        .unwrap();
        let build_with = |contains: &str| {
            let playbook = Playbook::parse(SourceFile {
                path: "/nonexistent/pb.toml".into(),
                text: format!(
                    "name = \"t\"\napp = \"a\"\n[secrets]\nkey = {{ command = \"printf s3cr3t\" }}\n[[steps]]\nhealth = {{ url = \"http://127.0.0.1:8080/\", contains = \"{contains}\" }}\n"
                ),
            })
            .unwrap();
            build(
                &inventory,
                &playbook,
                &IndexMap::new(),
                &PlanOptions::default(),
            )
        };
        let plan = build_with("version={{ version }}").unwrap();
        let contains: Vec<_> = plan
            .hosts
            .iter()
            .map(|hp| match &hp.steps[0].action {
                Action::Health(check) => check.contains.clone().unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(contains, ["version=A", "version=B"]);
        let err = build_with("{{ secrets.key }}").unwrap_err();
        assert!(err.to_string().contains("pb.toml:"), "{err}");
    }

    /// Found by fuzzing (fuzz/ template target, crash-3d97b2a7): a syntax error just before a
    /// multi-byte character panicked while the error's excerpt was cut.
    #[test]
    fn a_template_syntax_error_next_to_a_multibyte_character_is_an_input_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("t.j2"),
            "conf={{ conf }}\nfirst={{ files.lis\u{FFFD}[0] }}\n",
        )
        .unwrap();
        let playbook = Playbook::parse(SourceFile {
            path: dir.path().join("pb.toml"),
            text: "name = \"t\"\napp = \"a\"\n[vars]\nconf = \"/srv\"\n[[steps]]\ntemplate = { src = \"t.j2\", dest = \"/srv/x\" }\n".into(),
        })
        .unwrap();
        let err = Renderer::new(&playbook).err().unwrap();
        assert!(err.to_string().contains("t.j2:2:"), "{err}");
        assert!(err.message.contains("syntax error"), "{err}");
    }

    #[test]
    fn tags_that_select_no_step_are_an_error() {
        let playbook = Playbook::parse(SourceFile {
            path: "/nonexistent/pb.toml".into(),
            text: "name = \"t\"\napp = \"a\"\n[[steps]]\nrun = \"x\"\ntags = [\"b\", \"a\"]\n[[steps]]\nrun = \"y\"\ntags = [\"a\"]\n".into(),
        })
        .unwrap();
        assert!(check_tags(&playbook, &[]).is_ok());
        assert!(check_tags(&playbook, &["a".into(), "zz".into()]).is_ok());
        let err = check_tags(&playbook, &["zz".into()]).unwrap_err();
        assert_eq!(err.message, "--tags `zz` selects no step");
        assert_eq!(err.hint.as_deref(), Some("the playbook's tags: `b`, `a`"));
    }
}
