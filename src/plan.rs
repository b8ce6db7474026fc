//! Planning: inventory + playbook + secrets + CLI vars → per-host actions, all rendered up front.

use std::sync::Arc;

use indexmap::IndexMap;
use minijinja::Value;
use sha2::{Digest, Sha256};

use crate::diagnostic::InputError;
use crate::health::{self, HealthCheck, Probe};
use crate::inventory::{Host, Inventory};
use crate::playbook::{ComposeCommand, Playbook, StepKind};
use crate::secrets::{Redactor, Secret};
use crate::template::Renderer;
use crate::transport::ConnectSpec;

/// A file to place on a host.
#[derive(Debug, Clone)]
pub struct Upload {
    pub dest: String,
    pub mode: u32,
    pub content: Arc<[u8]>,
    pub sha256: String,
    /// The content carries a secret: never shown, never diffed.
    pub sensitive: bool,
}

/// What one step does on one host. Everything is rendered; nothing is left to decide remotely.
#[derive(Debug, Clone)]
pub enum Action {
    Upload(Upload),
    Run {
        command: String,
        dir: Option<String>,
    },
    DockerLogin {
        registry: String,
        username: String,
        password: Secret,
    },
    Compose {
        command: ComposeCommand,
        dir: String,
        project: String,
        services: Vec<String>,
    },
    /// Wait until the host is healthy, or fail at the timeout.
    Health(HealthCheck),
    /// Report docker and compose versions (`ping`).
    Facts,
    /// `when` was false, or the step is `once` and runs on another host.
    Skip {
        reason: String,
    },
}

#[derive(Debug, Clone)]
pub struct PlannedStep {
    pub name: String,
    pub action: Action,
}

#[derive(Debug, Clone)]
pub struct HostPlan {
    pub host: Host,
    pub connect: ConnectSpec,
    pub steps: Vec<PlannedStep>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub app: String,
    pub hosts: Vec<HostPlan>,
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
    ConnectSpec {
        host_name: host.name.clone(),
        address: host.address.clone(),
        port: host.ssh.port,
        user: host.ssh.user.clone(),
        identity_file: host.ssh.identity_file.clone(),
        known_hosts: host.ssh.known_hosts.clone(),
        host_key_policy: host.ssh.host_key_policy,
        connect_timeout: host.ssh.connect_timeout,
    }
}

/// The hosts a run targets: `pattern` (e.g. the playbook's `hosts`) narrowed by `--limit`.
pub fn target_hosts(
    inventory: &Inventory,
    pattern: &str,
    limit: Option<&str>,
) -> Result<Vec<Host>, InputError> {
    let mut selected = inventory.select(pattern).map_err(|e| {
        InputError::plain(format!("hosts: {e}"))
            .with_hint("check the playbook's `hosts` against the inventory")
    })?;
    if let Some(limit) = limit {
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
/// input is found before the first connection.
pub fn build(
    inventory: &Inventory,
    playbook: &Playbook,
    secrets: &IndexMap<String, Secret>,
    options: &PlanOptions,
) -> Result<Plan, InputError> {
    let renderer = Renderer::new(playbook)?;
    check_no_secrets_on_command_lines(playbook, &renderer)?;
    let hosts =
        target_hosts(inventory, &playbook.hosts, options.limit.as_deref()).map_err(|e| {
            match &playbook.hosts_span {
                Some(span) if !e.message.starts_with("--limit") => {
                    let mut located = playbook.file.error_at(span.clone(), e.message.clone());
                    located.hint = e.hint.clone();
                    located
                }
                _ => e,
            }
        })?;

    let secrets_value = Value::from_iter(
        secrets
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.expose()))),
    );
    let mut all_secrets: Vec<Secret> = secrets.values().cloned().collect();
    let mut host_plans = Vec::with_capacity(hosts.len());
    for (host_index, host) in hosts.into_iter().enumerate() {
        let ctx = host_context(&host, playbook, &options.vars, &secrets_value);
        let mut steps = Vec::with_capacity(playbook.steps.len());
        for step in &playbook.steps {
            if !options.tags.is_empty() && !step.tags.iter().any(|t| options.tags.contains(t)) {
                continue;
            }
            let skip = |reason: &str| PlannedStep {
                name: step.name.clone(),
                action: Action::Skip {
                    reason: reason.to_string(),
                },
            };
            if step.once && host_index > 0 {
                steps.push(skip("once: runs on the first host"));
                continue;
            }
            if let Some(when) = &step.when
                && !renderer.eval_when(when, &ctx, &playbook.file)?
            {
                steps.push(skip("when is false"));
                continue;
            }
            let field = |f| renderer.render_field(f, &ctx, &playbook.file);
            let dir = step.dir.as_ref().map(field).transpose()?;
            let action = match &step.kind {
                StepKind::Copy(f) => {
                    Action::Upload(upload(field(&f.dest)?, f.mode, f.content.clone(), false))
                }
                StepKind::Template(f) => {
                    let text = renderer.render_file(&f.src_name, &ctx)?;
                    let content: Arc<[u8]> = text.into_bytes().into();
                    let sensitive = renderer.file_uses_secrets(&f.src_name);
                    Action::Upload(upload(field(&f.dest)?, f.mode, content, sensitive))
                }
                StepKind::Run(command) => Action::Run {
                    command: field(command)?,
                    dir,
                },
                StepKind::DockerLogin(l) => {
                    let password = Secret::new(field(&l.password)?);
                    all_secrets.push(password.clone());
                    Action::DockerLogin {
                        registry: field(&l.registry)?,
                        username: field(&l.username)?,
                        password,
                    }
                }
                StepKind::Health(h) => {
                    let probe = match (&h.url, &h.command) {
                        (Some(url), _) => {
                            let rendered = field(url)?;
                            Probe::Http(health::parse_url(&rendered).map_err(|e| {
                                playbook
                                    .file
                                    .error_at(url.span(), format!("bad health URL: {e}"))
                                    .with_hint("write e.g. http://127.0.0.1:8080/healthz; it is fetched from the host's side")
                            })?)
                        }
                        (None, Some(command)) => Probe::Command {
                            command: field(command)?,
                            dir,
                        },
                        (None, None) => unreachable!("playbook validation requires url or command"),
                    };
                    Action::Health(HealthCheck {
                        probe,
                        expect: h.expect,
                        contains: h.contains.clone(),
                        timeout: h.timeout,
                        interval: h.interval,
                    })
                }
                StepKind::Compose(c) => {
                    let compose_dir = match (&c.dir, dir) {
                        (Some(d), _) => field(d)?,
                        (None, Some(d)) => d,
                        (None, None) => {
                            return Err(InputError::plain(format!(
                                "{}: step {} (`{}`): a compose step needs `dir`, the directory holding docker-compose.yml",
                                playbook.file.path.display(),
                                step.index + 1,
                                step.name
                            ))
                            .with_key(format!("steps.{}.compose.dir", step.index))
                            .with_hint("write e.g. compose = { command = \"up\", dir = \"{{ app_dir }}\" }"));
                        }
                    };
                    let project = match &c.project {
                        Some(p) => field(p)?,
                        None => playbook.app.clone(),
                    };
                    Action::Compose {
                        command: c.command,
                        dir: compose_dir,
                        project,
                        services: c.services.clone(),
                    }
                }
            };
            steps.push(PlannedStep {
                name: step.name.clone(),
                action,
            });
        }
        host_plans.push(HostPlan {
            connect: connect_spec(&host),
            host,
            steps,
        });
    }
    Ok(Plan {
        app: playbook.app.clone(),
        hosts: host_plans,
        redactor: Redactor::new(all_secrets.iter()),
    })
}

/// A plan running the same action on every host (for `exec` and `ping`).
pub fn adhoc(hosts: Vec<Host>, name: &str, action: Action) -> Plan {
    Plan {
        app: String::new(),
        hosts: hosts
            .into_iter()
            .map(|host| HostPlan {
                connect: connect_spec(&host),
                host,
                steps: vec![PlannedStep {
                    name: name.to_string(),
                    action: action.clone(),
                }],
            })
            .collect(),
        redactor: Redactor::default(),
    }
}

fn upload(dest: String, mode: u32, content: Arc<[u8]>, sensitive: bool) -> Upload {
    Upload {
        sha256: hex::encode(Sha256::digest(&content)),
        dest,
        mode,
        content,
        sensitive,
    }
}

/// Variables, lowest precedence first: inventory vars, group vars, host vars (already merged
/// into `host.vars`), playbook vars, `--var`; then the built-ins `host`, `app` and `secrets`.
pub fn host_context(
    host: &Host,
    playbook: &Playbook,
    cli_vars: &[(String, String)],
    secrets: &Value,
) -> Value {
    let mut map: IndexMap<String, Value> = IndexMap::new();
    for (k, v) in host.vars.iter().chain(playbook.vars.iter()) {
        map.insert(k.clone(), Value::from_serialize(v));
    }
    for (k, v) in cli_vars {
        map.insert(k.clone(), Value::from(v.clone()));
    }
    map.insert(
        "host".into(),
        minijinja::context! { name => host.name, address => host.address, groups => host.groups },
    );
    map.insert("app".into(), Value::from(playbook.app.clone()));
    map.insert("secrets".into(), secrets.clone());
    Value::from_iter(map)
}

/// Secrets may reach a host only in file contents or on stdin: a templated field that ends up
/// on a command line (`run`, `dir`, `dest`, registry, username, compose dir/project) must not read them.
fn check_no_secrets_on_command_lines(
    playbook: &Playbook,
    renderer: &Renderer,
) -> Result<(), InputError> {
    for step in &playbook.steps {
        let mut fields = Vec::new();
        fields.extend(step.dir.iter());
        fields.extend(step.when.iter());
        match &step.kind {
            StepKind::Copy(f) | StepKind::Template(f) => fields.push(&f.dest),
            StepKind::Run(r) => fields.push(r),
            StepKind::DockerLogin(l) => {
                fields.push(&l.registry);
                fields.push(&l.username);
            }
            StepKind::Compose(c) => {
                fields.extend(c.dir.iter());
                fields.extend(c.project.iter());
            }
            StepKind::Health(h) => {
                fields.extend(h.url.iter());
                fields.extend(h.command.iter());
            }
        }
        for field in fields {
            if renderer.uses_secrets(field) {
                return Err(playbook
                    .file
                    .error_at(field.span(), "`secrets` cannot be used here: this value ends up on a command line, where other users of the host can read it")
                    .with_hint("write the secret into a file with a `template` step (mode = \"0600\") and read it from there; docker_login's `password` is sent on stdin"));
            }
        }
    }
    Ok(())
}
