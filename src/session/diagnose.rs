//! The container's own words after a failed step: which compose projects a failed health check
//! or `compose up` concerns, one request on the host (`remote::diagnose`) bounded in time and
//! never made once the run is aborted, and what of its answer the report shows (masked, a few
//! lines per container). Costs nothing while steps succeed.

use std::time::Duration;

use super::sequence::HELPER_WAIT;
use super::{HostSession, RunContext};
use crate::output::human_bytes;
use crate::plan::{Action, Become, PlannedStep};
use crate::playbook::ComposeCommand;
use crate::remote::diagnose::{self, Container, MAX_PROJECTS, ProjectContainers};
use crate::remote::{driver, frame};
use crate::report::{ContainerReport, ContainerWords, Outcome};
use crate::secrets::Redactor;
use crate::steps::Done;
use crate::transport::{Capture, Connection, TransportError};

/// How long the containers may take to answer before the host is given up on: a failed step
/// must not hold its host's session much longer than it already did.
const DIAGNOSE_WAIT: Duration = Duration::from_secs(10);

/// Longest log line shown (characters); the rest of it is cut.
const LINE_CHARS: usize = 500;

impl<T: Connection> HostSession<T> {
    /// What the containers of `projects` say, as the lines the report shows under a failed
    /// step (`None`: nothing to say, or the run was aborted). As the host's compose steps'
    /// user (`sudo` when they have `become`). For steps that run compose projects of their own
    /// (a blue/green color's `P-green`), whose failures the step reports itself.
    pub(super) async fn container_words(
        &self,
        ctx: &RunContext<'_>,
        projects: &[String],
    ) -> Option<String> {
        let become_as = self.compose_become(ctx);
        let words = self.diagnose(ctx, projects, become_as.as_ref()).await;
        (!words.is_empty()).then(|| words.lines().join("\n"))
    }

    /// After `step` ended with `done`: for a failed health check, what the containers of
    /// every compose project of the host's plan say; for a failed `compose up`, those of its
    /// project. Nothing for any other step, or once the run is aborted.
    pub(super) async fn words_after(
        &self,
        ctx: &RunContext<'_>,
        step: &PlannedStep,
        done: &Done,
    ) -> ContainerWords {
        if done.outcome != Outcome::Failed {
            return ContainerWords::default();
        }
        match &step.action {
            Action::Compose(run) if run.command() == ComposeCommand::Up => {
                self.diagnose(
                    ctx,
                    std::slice::from_ref(&run.project),
                    step.become_as.as_ref(),
                )
                .await
            }
            Action::Health(_) => {
                let projects = compose_projects(&ctx.plan.hosts[self.index].steps);
                let become_as = self.compose_become(ctx);
                self.diagnose(ctx, &projects, become_as.as_ref()).await
            }
            _ => ContainerWords::default(),
        }
    }

    /// The user the host's compose steps run as: the first one's.
    fn compose_become(&self, ctx: &RunContext<'_>) -> Option<Become> {
        ctx.plan.hosts[self.index]
            .steps
            .iter()
            .find(|s| matches!(s.action, Action::Compose(_)))
            .and_then(|s| s.become_as.clone())
    }

    /// One request listing the containers of `projects` with their state and last log lines.
    /// Given up after `DIAGNOSE_WAIT` (the script stopped on the host, what came so far kept)
    /// or when the run is aborted; never started after an abort.
    async fn diagnose(
        &self,
        ctx: &RunContext<'_>,
        projects: &[String],
        become_as: Option<&Become>,
    ) -> ContainerWords {
        // A host without compose (or without the flavour the inventory forces) ran no compose
        // command: its step said so already.
        if projects.is_empty()
            || ctx.cancel.is_aborted()
            || !self.is_connected()
            || self.compose.problem().is_some()
        {
            return ContainerWords::default();
        }
        let request = frame::Framed::new(&diagnose::script(projects));
        // Marked so that a kill request finds it: OpenSSH refuses signals for root logins.
        let tag = frame::nonce();
        let script = driver::tagged(&tag, request.script());
        let mut capture = Capture::default();
        let give_up = async {
            tokio::select! {
                () = tokio::time::sleep(DIAGNOSE_WAIT) => {}
                () = ctx.cancel.aborted() => {}
            }
        };
        let run = self.exec_into(&script, &[], become_as, &mut capture, give_up);
        // The transport stops the command when `give_up` resolves; this bounds a host that
        // does not even answer that.
        let ended = tokio::time::timeout(DIAGNOSE_WAIT + HELPER_WAIT, run)
            .await
            .unwrap_or(Err(TransportError::Aborted));
        let given_up = matches!(ended, Err(TransportError::Aborted));
        if given_up {
            // What the transport's stop request may not reach (a root login) goes too.
            let kill = driver::kill_request(&tag);
            let kill = self.exec_cut(&kill, &[], become_as, std::future::pending());
            let _ = tokio::time::timeout(HELPER_WAIT, kill).await;
        }
        // Cut short, what came so far is still worth showing.
        let out = capture.finish(ended).unwrap_or_else(|cut| cut.partial);
        let found = diagnose::parse(&request.reply(&out.stdout), projects);
        let mut words = words_of(found, &self.redactor);
        if given_up && !ctx.cancel.is_aborted() {
            words.container_notes.push(format!(
                "docker did not answer about every container within {}",
                humantime::format_duration(DIAGNOSE_WAIT)
            ));
        }
        if projects.len() > MAX_PROJECTS {
            words.container_notes.push(format!(
                "{} more compose project(s) not looked at",
                projects.len() - MAX_PROJECTS
            ));
        }
        words
    }
}

/// Every compose project of a host's steps, once each, in step order.
fn compose_projects(steps: &[PlannedStep]) -> Vec<String> {
    let mut projects: Vec<String> = Vec::new();
    for step in steps {
        let named = match &step.action {
            Action::Compose(run) => vec![run.project.clone()],
            // A blue/green switch's proxy and both its colors.
            Action::BlueGreen(switch) => vec![
                switch.proxy.project.clone(),
                format!("{}-blue", switch.project),
                format!("{}-green", switch.project),
            ],
            _ => Vec::new(),
        };
        for project in named {
            if !projects.contains(&project) {
                projects.push(project);
            }
        }
    }
    projects
}

/// What the report shows of what the host answered: per project, the containers that stand
/// out, or all of them when none does; a note for a project that could not be looked at.
fn words_of(found: Vec<ProjectContainers>, redactor: &Redactor) -> ContainerWords {
    let mut words = ContainerWords::default();
    for p in found {
        if let Some(error) = &p.error {
            let error = shorten(error.lines().next().unwrap_or(""), LINE_CHARS);
            words.container_notes.push(format!(
                "cannot list the containers of compose project {}: {error}",
                p.project
            ));
            continue;
        }
        if p.containers.is_empty() {
            words
                .container_notes
                .push(format!("compose project {} has no containers", p.project));
            continue;
        }
        let any_stands_out = p.containers.iter().any(Container::stands_out);
        for c in p
            .containers
            .iter()
            .filter(|c| !any_stands_out || c.stands_out())
        {
            words.containers.push(report_of(&p.project, c, redactor));
        }
        if p.more {
            words.container_notes.push(format!(
                "compose project {} has more than {} containers: the rest not looked at",
                p.project,
                diagnose::MAX_CONTAINERS
            ));
        }
    }
    words
}

fn report_of(project: &str, c: &Container, redactor: &Redactor) -> ContainerReport {
    let state = c.state.as_ref();
    let stopped =
        state.is_some_and(|s| matches!(s.status.as_str(), "exited" | "restarting" | "dead"));
    ContainerReport {
        project: project.to_string(),
        name: c.name(),
        service: state.map(|s| s.service.clone()).unwrap_or_default(),
        state: state.map_or_else(|| "unknown".to_string(), |s| s.status.clone()),
        exit_code: state.filter(|_| stopped).map(|s| s.exit_code),
        health: state.and_then(|s| s.health.clone()),
        status: shorten(&c.status_text(), LINE_CHARS),
        logs: log_tail(&c.logs, redactor),
    }
}

/// The last `diagnose::LOG_LINES` lines of what a container logged, secrets masked, each line
/// at most `LINE_CHARS` long. Logs cut on the host (`LOG_BYTES`) lose their last, partial
/// line: a secret cut in two there would not be recognised.
fn log_tail(logs: &[u8], redactor: &Redactor) -> String {
    let cut = logs.len() >= diagnose::LOG_BYTES;
    let whole = if cut {
        logs.iter()
            .rposition(|&b| b == b'\n')
            .map_or(&logs[..0], |at| &logs[..at + 1])
    } else {
        logs
    };
    let masked = redactor.redact_bytes(whole);
    let text = String::from_utf8_lossy(&masked);
    let lines: Vec<&str> = text.lines().collect();
    let mut shown: Vec<String> = lines[lines.len().saturating_sub(diagnose::LOG_LINES as usize)..]
        .iter()
        .map(|l| shorten(l, LINE_CHARS))
        .collect();
    if cut {
        shown.push(format!(
            "… (log output cut at {})",
            human_bytes(diagnose::LOG_BYTES as u64)
        ));
    }
    shown.join("\n")
}

/// `text` cut to `max` characters, `…` marking the cut.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// `words` with every text passed through `redact` (the step result's one redaction pass).
pub(super) fn redacted(words: ContainerWords, redact: &dyn Fn(&str) -> String) -> ContainerWords {
    ContainerWords {
        containers: words
            .containers
            .into_iter()
            .map(|c| ContainerReport {
                project: redact(&c.project),
                name: redact(&c.name),
                service: redact(&c.service),
                state: redact(&c.state),
                exit_code: c.exit_code,
                health: c.health.map(|h| redact(&h)),
                status: redact(&c.status),
                logs: redact(&c.logs),
            })
            .collect(),
        container_notes: words.container_notes.iter().map(|n| redact(n)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::diagnose::State;
    use crate::secrets::Secret;

    fn container(status: &str, exit_code: i64, logs: &[u8]) -> Container {
        Container {
            id: "ab".repeat(32),
            state: Some(State {
                name: format!("/p-{status}-1"),
                service: status.to_string(),
                status: status.to_string(),
                exit_code,
                ..Default::default()
            }),
            unreadable: String::new(),
            logs: logs.to_vec(),
        }
    }

    fn redactor() -> Redactor {
        Redactor::new(&[Secret::new("hunter2-secret".to_string())])
    }

    #[test]
    fn those_that_stand_out_are_shown_else_all_of_them() {
        let p = |containers| ProjectContainers {
            project: "p".into(),
            containers,
            ..Default::default()
        };
        let broken = p(vec![
            container("running", 0, b"GET / 200\n"),
            container(
                "exited",
                3,
                b"Traceback (most recent call last):\nboom hunter2-secret\n",
            ),
        ]);
        let quiet = p(vec![
            container("running", 0, b"GET /healthz 503\n"),
            container("exited", 0, b""),
        ]);
        let words = words_of(vec![broken], &redactor());
        assert_eq!(words.containers.len(), 1);
        let web = &words.containers[0];
        assert_eq!(
            (
                web.name.as_str(),
                web.state.as_str(),
                web.exit_code,
                web.status.as_str()
            ),
            ("p-exited-1", "exited", Some(3), "exited (3)")
        );
        assert_eq!(
            words.lines(),
            [
                "container p-exited-1 (exited): exited (3)",
                "  | Traceback (most recent call last):",
                "  | boom ********",
            ]
        );
        let words = words_of(vec![quiet], &redactor());
        assert_eq!(
            words.lines(),
            [
                "container p-running-1 (running): running",
                "  | GET /healthz 503",
                "container p-exited-1 (exited): exited (0)",
                "  (no log output)",
            ]
        );
        assert_eq!(words.containers[0].exit_code, None);
        // A project that could not be looked at says why.
        let words = words_of(
            vec![
                ProjectContainers {
                    project: "a".into(),
                    error: Some("permission denied\nmore".into()),
                    ..Default::default()
                },
                p(Vec::new()),
            ],
            &redactor(),
        );
        assert_eq!(
            words.lines(),
            [
                "cannot list the containers of compose project a: permission denied",
                "compose project p has no containers",
            ]
        );
    }

    #[test]
    fn logs_are_bounded_and_masked_even_when_cut() {
        let many: Vec<u8> = (0..100)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let text = log_tail(&many, &redactor());
        assert_eq!(text.lines().count(), 30);
        assert!(
            text.starts_with("line 70\n") && text.ends_with("line 99"),
            "{text}"
        );
        // A huge line is shortened; escape codes are kept as data (the reporters show them).
        let long = format!("\x1b[31m{}\n", "y".repeat(5000));
        let text = log_tail(long.as_bytes(), &redactor());
        assert_eq!(text.chars().count(), LINE_CHARS + 1);
        assert!(text.starts_with('\x1b') && text.ends_with('…'));
        // Cut on the host in the middle of a secret: the partial last line is dropped.
        let mut cut = b"hunter2-secret said hello\n".to_vec();
        cut.resize(diagnose::LOG_BYTES - 6, b'z');
        cut.extend_from_slice(b"hunter");
        let text = log_tail(&cut, &redactor());
        assert!(!text.contains("hunter"), "{text}");
        assert_eq!(text, "******** said hello\n… (log output cut at 8.2 kB)");
    }

    #[test]
    fn the_projects_are_those_of_the_compose_steps_once_each() {
        use crate::remote::compose::Request;
        use crate::steps::compose::ComposeRun;
        let compose = |project: &str, request| {
            PlannedStep::new(
                "c",
                Action::Compose(ComposeRun {
                    dir: "/srv".into(),
                    project: project.into(),
                    request,
                    release_root: None,
                }),
            )
        };
        let steps = [
            compose("a", Request::Pull(Vec::new())),
            compose("a", Request::Up(Vec::new())),
            compose("b-green", Request::Up(Vec::new())),
            PlannedStep::new("s", Action::Skip { reason: "x".into() }),
        ];
        assert_eq!(compose_projects(&steps), ["a", "b-green"]);
    }

    #[test]
    fn a_blue_green_step_names_its_proxy_and_both_colors() {
        use crate::steps::blue_green::{DirectHealth, Proxy, Switch};
        let switch = Switch {
            dir: "/srv/current".into(),
            project: "p".into(),
            service: "web".into(),
            port: 80,
            health: DirectHealth {
                path: "/".into(),
                expect: 200,
                contains: None,
                timeout: std::time::Duration::from_secs(1),
                interval: std::time::Duration::from_secs(1),
            },
            upstream: "/srv/shared/app.upstream".into(),
            proxy: Proxy {
                dir: "/srv/shared".into(),
                project: "p".into(),
                service: "proxy".into(),
                test: Vec::new(),
                reload: Vec::new(),
            },
            drain: std::time::Duration::ZERO,
            keep_previous: true,
        };
        let steps = [PlannedStep::new("bg", Action::BlueGreen(Box::new(switch)))];
        assert_eq!(compose_projects(&steps), ["p", "p-blue", "p-green"]);
    }
}
