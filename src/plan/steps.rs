//! Rendering one host's steps into actions (noting every value bound for a command line) and
//! placing the implied `activate`.

use std::cell::RefCell;

use minijinja::Value;

use super::exposure::CommandLineValue;
use super::{Action, Become, PlanOptions, PlannedStep, upload};
use crate::diagnostic::InputError;
use crate::health::{self, HealthCheck, Probe};
use crate::playbook::{FileStep, Playbook, StepKind, valid_user_name};
use crate::release::ReleaseSite;
use crate::secrets::Secret;
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
    let command_line = RefCell::new(Vec::new());
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
        // Every field rendered through `field` ends up on a command line; the passwords
        // (sent on stdin) are rendered with `renderer.render_field` directly.
        let field = |f: &crate::playbook::Templated| {
            let text = renderer.render_field(f, &ctx, &playbook.file)?;
            command_line.borrow_mut().push(CommandLineValue {
                span: f.span(),
                text: text.clone(),
            });
            Ok::<_, InputError>(text)
        };
        let dir = step.dir.as_ref().map(field).transpose()?;
        let file_upload = |f: &FileStep, content, sensitive| -> Result<Action, InputError> {
            let dest = field(&f.dest)?;
            crate::playbook::check_dest(&playbook.file, &f.dest, &dest)?;
            let mut u = upload(dest, f.mode, content, sensitive);
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
                let password =
                    Secret::new(renderer.render_field(&l.password, &ctx, &playbook.file)?);
                passwords.push((
                    format!("the docker_login password of step `{}`", step.name),
                    password.clone(),
                ));
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
                        let value = renderer.render_field(p, &ctx, &playbook.file)?;
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
        command_line: command_line.into_inner(),
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
