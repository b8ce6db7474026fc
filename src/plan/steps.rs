//! Rendering one host's steps into actions, placing the implied `activate`, and keeping
//! secrets off command lines.

use minijinja::Value;

use super::{Action, Become, PlanOptions, PlannedStep, upload};
use crate::diagnostic::InputError;
use crate::health::{self, HealthCheck, Probe};
use crate::playbook::{FileStep, Playbook, StepKind, valid_user_name};
use crate::release::ReleaseSite;
use crate::secrets::Secret;
use crate::template::Renderer;

pub(super) struct PlannedSteps {
    pub steps: Vec<PlannedStep>,
    /// docker_login passwords, masked in all output like secrets.
    pub passwords: Vec<Secret>,
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
    let ctx = ctx.clone();
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
            && !renderer.eval_when(when, &ctx, &playbook.file)?
        {
            steps.push(skip("when is false"));
            continue;
        }
        let field = |f: &crate::playbook::Templated| renderer.render_field(f, &ctx, &playbook.file);
        let dir = step.dir.as_ref().map(field).transpose()?;
        let file_upload = |f: &FileStep, content, sensitive| -> Result<Action, InputError> {
            let mut u = upload(field(&f.dest)?, f.mode, content, sensitive);
            let name =
                |n: &Option<crate::playbook::Templated>| -> Result<Option<String>, InputError> {
                    let Some(n) = n else { return Ok(None) };
                    let text = field(n)?;
                    if !valid_user_name(&text) {
                        return Err(playbook
                            .file
                            .error_at(n.span(), format!("bad user or group name `{text}`"))
                            .with_hint("use letters, digits, `_`, `-` and `.`"));
                    }
                    Ok(Some(text))
                };
            u.owner = name(&f.owner)?;
            u.group = name(&f.group)?;
            Ok(Action::Upload(u))
        };
        let action = match &step.kind {
            StepKind::Copy(f) => file_upload(f, f.content.clone(), false)?,
            StepKind::Template(f) => {
                let text = renderer.render_file(&f.src_name, &ctx)?;
                let content: std::sync::Arc<[u8]> = text.into_bytes().into();
                let sensitive = renderer.file_uses_secrets(&f.src_name);
                file_upload(f, content, sensitive)?
            }
            StepKind::Run(command) => Action::Run {
                command: field(command)?,
                dir,
                creates: step.guards.creates.as_ref().map(field).transpose()?,
                unless: step.guards.unless.as_ref().map(field).transpose()?,
            },
            StepKind::Apt(a) => Action::Apt {
                packages: a.packages.clone(),
                update: a.update,
                state: a.state,
            },
            StepKind::DockerLogin(l) => {
                let password = Secret::new(field(&l.password)?);
                passwords.push(password.clone());
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
            StepKind::Activate => match release {
                Some((site, id)) => Action::Activate {
                    site: site.clone(),
                    id: id.to_string(),
                },
                None => {
                    return Err(InputError::plain(format!(
                        "{}: step {} (`{}`): `activate` needs a `[release]` section",
                        playbook.file.path.display(),
                        step.index + 1,
                        step.name
                    ))
                    .with_key(format!("steps.{}.activate", step.index))
                    .with_hint("add [release] with `root`, or remove the step"));
                }
            },
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
        let become_as = match &step.become_as {
            None => None,
            Some(b) => {
                let password = match &b.password {
                    None => None,
                    Some(p) => {
                        let value = field(p)?;
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
                        passwords.push(secret.clone());
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
    Ok(PlannedSteps { steps, passwords })
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
        .position(|s| matches!(s.action, Action::Activate { .. }))
    {
        return i + 1;
    }
    let at = steps
        .iter()
        .rposition(|s| matches!(s.action, Action::Upload(_)))
        .map_or(0, |i| i + 1);
    steps.insert(
        at,
        PlannedStep::new(
            "activate release",
            Action::Activate {
                site: site.clone(),
                id: id.to_string(),
            },
        ),
    );
    at + 1
}

/// Secrets may reach a host only in file contents or on stdin: a templated field that ends up
/// on a command line (`run`, `creates`, `unless`, `dir`, `dest`, `owner`, `group`, registry,
/// username, compose dir/project) must not read them. (`become_password` goes on stdin.)
pub(super) fn check_no_secrets_on_command_lines(
    playbook: &Playbook,
    renderer: &Renderer,
) -> Result<(), InputError> {
    for step in &playbook.steps {
        let mut fields = Vec::new();
        fields.extend(step.dir.iter());
        fields.extend(step.when.iter());
        fields.extend(step.guards.creates.iter());
        fields.extend(step.guards.unless.iter());
        match &step.kind {
            StepKind::Copy(f) | StepKind::Template(f) => {
                fields.push(&f.dest);
                fields.extend(f.owner.iter());
                fields.extend(f.group.iter());
            }
            StepKind::Run(r) => fields.push(r),
            StepKind::Apt(_) => {}
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
            StepKind::Activate => {}
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
