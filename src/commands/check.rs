//! `dropship check`: what each step would do on each host, from the plan alone.

use crate::plan::{Action, Plan};

/// What `check` prints: every host and what each step would do, secrets masked.
pub fn describe_plan(plan: &Plan) -> String {
    // Planning refuses a secret on a command line; masking the whole text keeps any other
    // way (a host name, a release root) from printing one.
    plan.redactor.redact(&describe_steps(plan))
}

fn describe_steps(plan: &Plan) -> String {
    let mut out = String::new();
    for hp in &plan.hosts {
        out.push_str(&format!(
            "{} ({}@{}:{})\n",
            hp.host.name, hp.connect.user, hp.host.address, hp.connect.port
        ));
        for step in &hp.steps {
            let what = match &step.action {
                Action::Upload(u) => format!(
                    "file {} ({:04o}{}, {} bytes, sha256 {}{})",
                    u.dest,
                    u.mode,
                    match (&u.owner, &u.group) {
                        (None, None) => String::new(),
                        (o, g) => format!(
                            ", {}:{}",
                            o.as_deref().unwrap_or("-"),
                            g.as_deref().unwrap_or("-")
                        ),
                    },
                    u.content.len(),
                    &u.sha256[..12],
                    if u.sensitive { ", holds secrets" } else { "" }
                ),
                Action::Show { command } => format!("show: {}", command),
                Action::Run {
                    command,
                    dir,
                    creates,
                    unless,
                } => {
                    let mut text = match dir {
                        Some(d) => format!("run in {d}: {}", command),
                        None => format!("run: {}", command),
                    };
                    if let Some(c) = creates {
                        text.push_str(&format!(" (unless {c} exists)"));
                    }
                    if let Some(u) = unless {
                        text.push_str(&format!(" (unless `{}` passes)", u));
                    }
                    text
                }
                Action::Apt {
                    packages,
                    update,
                    state,
                } => format!(
                    "apt {} {}{}",
                    match state {
                        crate::playbook::AptState::Present => "install",
                        crate::playbook::AptState::Absent => "remove",
                    },
                    packages.join(" "),
                    if *update {
                        " (after apt-get update)"
                    } else {
                        ""
                    }
                ),
                Action::DockerLogin {
                    registry, username, ..
                } => {
                    format!("docker login {registry} as {username} (password on stdin)")
                }
                Action::Compose {
                    command,
                    dir,
                    project,
                    ..
                } => {
                    format!("compose {} in {dir} (project {project})", command.as_str())
                }
                Action::Health(check) => match &check.probe {
                    crate::health::Probe::Http(t) => format!(
                        "GET http://{}:{}{} from the host until HTTP {} (timeout {})",
                        t.host,
                        t.port,
                        t.path,
                        check.expect,
                        humantime::format_duration(check.timeout)
                    ),
                    crate::health::Probe::Command { command, .. } => format!(
                        "run `{command}` until it exits 0 (timeout {})",
                        humantime::format_duration(check.timeout)
                    ),
                },
                Action::Activate { site, id } => {
                    format!("point {}/current at releases/{id}", site.root)
                }
                Action::Facts => "report versions".to_string(),
                Action::Skip { reason } => format!("skip ({reason})"),
            };
            let via = match &step.become_as {
                None => String::new(),
                Some(b) => format!(
                    " [sudo{}{}]",
                    b.user
                        .as_deref()
                        .map(|u| format!(" -u {u}"))
                        .unwrap_or_default(),
                    if b.password.is_some() {
                        " with password"
                    } else {
                        ""
                    }
                ),
            };
            out.push_str(&format!("  - {}: {what}{via}\n", step.name));
        }
    }
    let steps = plan.hosts.first().map_or(0, |h| h.steps.len());
    out.push_str(&format!(
        "ok: {} host(s), {steps} step(s) each; every template rendered\n",
        plan.hosts.len()
    ));
    out
}
