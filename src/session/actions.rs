//! What each action does on a host: the segment it sends (uploads, commands, logins, compose,
//! release activation), how its output is judged, health checks; how failures are summarised.

use std::time::{Duration, Instant};

use super::{Cancel, HostSession};
use crate::health::{self, HealthCheck, Probe};
use crate::output::KeptOutput;
use crate::plan::{Action, Become};
use crate::remote::compose::{self, ComposeFlavor};
use crate::remote::driver::Segment;
use crate::remote::files::{self, RemoteFile};
use crate::remote::{self, apt, facts, login, run};
use crate::report::Outcome;
use crate::secrets::Redactor;
use crate::transport::{Connection, ExecOutput, TransportError};

/// How one step will run in its session.
pub(super) enum Prepared {
    /// Decided without asking the host (an unchanged file, a skipped step, a known failure).
    Local(Done),
    /// This segment of the session's driver script.
    Remote(Segment),
}

const COMPOSE_MISSING: &str = "neither `docker compose` nor `docker-compose` works on this host\n  hint: install the compose plugin (docker-compose-plugin) or docker-compose";

impl<T: Connection> HostSession<T> {
    /// What `action` needs from the host; `tag` tells this step's temporary files apart from
    /// the others' in the same script.
    pub(super) fn prepare(&self, action: &Action, name: &str, tag: usize) -> Prepared {
        let isolated = |script: &str| Prepared::Remote(Segment::isolated(script, name));
        match action {
            Action::Skip { reason } => {
                Prepared::Local(Done::new(Outcome::Skipped, Some(reason.clone())))
            }
            Action::Health(_) => unreachable!("health checks run alone (run_sequence)"),
            Action::Upload(upload) => {
                if let Some(Some(remote)) = self.remote_files.get(&upload.dest)
                    && remote.matches(upload)
                {
                    return Prepared::Local(Done::new(Outcome::Ok, Some(upload.dest.clone())));
                }
                Prepared::Remote(Segment {
                    script: files::upload(upload, tag),
                    stdin: Some(upload.content.clone()),
                    label: name.to_string(),
                    cleanup: Some(files::upload_cleanup(upload)),
                })
            }
            Action::Run {
                command,
                dir,
                creates,
                unless,
            } => isolated(&if creates.is_none() && unless.is_none() {
                run::command(command, dir.as_deref())
            } else {
                run::guarded(
                    command,
                    dir.as_deref(),
                    creates.as_deref(),
                    unless.as_deref(),
                )
            }),
            Action::Show { command } => isolated(command),
            Action::Apt {
                packages,
                update,
                state,
            } => isolated(&apt::script(packages, *update, *state)),
            Action::DockerLogin {
                registry,
                username,
                password,
            } => Prepared::Remote(Segment {
                label: name.to_string(),
                ..login::docker(registry, username, password.expose())
            }),
            Action::Compose {
                command,
                dir,
                project,
                services,
            } => {
                if self.compose == ComposeFlavor::Missing {
                    return Prepared::Local(Done::new(
                        Outcome::Failed,
                        Some(COMPOSE_MISSING.into()),
                    ));
                }
                Prepared::Remote(Segment {
                    script: compose::command(self.compose, *command, dir, project, services),
                    stdin: None,
                    label: name.to_string(),
                    cleanup: None,
                })
            }
            Action::Activate { site, id } => isolated(&remote::release::activate(site, id)),
            Action::Facts => isolated(&facts::script()),
        }
    }

    /// Judges what a step's segment did on the host.
    pub(super) fn interpret(&mut self, action: &Action, out: &ExecOutput) -> Result<Done, String> {
        match action {
            Action::Skip { .. } | Action::Health(_) => {
                unreachable!("decided without a segment")
            }
            Action::Show { .. } => {
                require_success(out, &self.redactor)?;
                Ok(Done {
                    output: output_tail(out),
                    ..Done::new(Outcome::Ok, None)
                })
            }
            Action::Upload(upload) => {
                require_success(out, &self.redactor)?;
                self.remote_files
                    .insert(upload.dest.clone(), Some(RemoteFile::written_by(upload)));
                Ok(Done::new(Outcome::Changed, Some(upload.dest.clone())))
            }
            Action::Run {
                creates, unless, ..
            } => {
                require_success(out, &self.redactor)?;
                if (creates.is_some() || unless.is_some()) && run::guard_held(out) {
                    let why = match creates {
                        Some(c) => format!("{c} exists"),
                        None => "`unless` passed".to_string(),
                    };
                    return Ok(Done::new(Outcome::Ok, Some(why)));
                }
                Ok(Done {
                    output: output_tail(out),
                    ..Done::new(Outcome::Changed, None)
                })
            }
            Action::Apt { state, .. } => {
                require_success(out, &self.redactor)?;
                match apt::parse(out) {
                    None => Ok(Done::new(Outcome::Ok, None)),
                    Some(acted) => {
                        let verb = match state {
                            crate::playbook::AptState::Present => "installed",
                            crate::playbook::AptState::Absent => "removed",
                        };
                        Ok(Done::new(
                            Outcome::Changed,
                            Some(format!("{verb} {}", acted.join(" "))),
                        ))
                    }
                }
            }
            Action::DockerLogin { registry, .. } => {
                require_success(out, &self.redactor)?;
                Ok(Done::new(
                    Outcome::Ok,
                    Some(format!("logged in to {registry}")),
                ))
            }
            Action::Compose { command, .. } => {
                if self.compose == ComposeFlavor::Missing {
                    return Err(COMPOSE_MISSING.into());
                }
                require_success(out, &self.redactor)?;
                let text = String::from_utf8_lossy(&out.stderr).into_owned()
                    + &String::from_utf8_lossy(&out.stdout);
                let outcome = if compose::changed(*command, &text) {
                    Outcome::Changed
                } else {
                    Outcome::Ok
                };
                Ok(Done::new(outcome, None))
            }
            Action::Activate { id, .. } => {
                require_success(out, &self.redactor)?;
                let stdout = String::from_utf8_lossy(&out.stdout);
                self.previous_release = remote::release::parse_previous(&stdout);
                self.activated = true;
                Ok(Done::new(Outcome::Changed, Some(format!("current → {id}"))))
            }
            Action::Facts => {
                require_success(out, &self.redactor)?;
                Ok(Done::new(
                    Outcome::Ok,
                    Some(facts::summarize(&String::from_utf8_lossy(&out.stdout))),
                ))
            }
        }
    }

    /// Retries the check every `interval` until it passes or `timeout` runs out; the failure
    /// names the last status (and a body excerpt) seen.
    pub(super) async fn health(
        &self,
        check: &HealthCheck,
        become_as: Option<&Become>,
        cancel: &Cancel,
    ) -> Result<Done, String> {
        let started = Instant::now();
        let deadline = started + check.timeout;
        let mut attempts = 0u32;
        let aborted = || Err(TransportError::Aborted.to_string());
        loop {
            attempts += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let attempt = tokio::time::timeout(
                remaining.max(Duration::from_millis(100)),
                self.health_attempt(check, become_as, cancel),
            );
            // Not raced against the abort here: an attempt stops itself (a command is
            // killed on the host first), and then the run is aborted.
            let attempt = attempt.await;
            if cancel.is_aborted() {
                return aborted();
            }
            let last = match attempt {
                Ok(Ok(summary)) => {
                    return Ok(Done::new(
                        Outcome::Ok,
                        Some(format!(
                            "{summary} after {attempts} attempt(s), {:.1}s",
                            started.elapsed().as_secs_f64()
                        )),
                    ));
                }
                Ok(Err(last)) => last,
                Err(_) => "no answer before the timeout".to_string(),
            };
            let interval = check.interval.max(health::MIN_INTERVAL);
            if Instant::now() + interval >= deadline {
                return Err(format!(
                    "unhealthy after {} ({attempts} attempt(s)); last: {last}",
                    humantime::format_duration(check.timeout)
                ));
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = cancel.aborted() => return aborted(),
            }
        }
    }

    async fn health_attempt(
        &self,
        check: &HealthCheck,
        become_as: Option<&Become>,
        cancel: &Cancel,
    ) -> Result<String, String> {
        match &check.probe {
            Probe::Http(target) => {
                let bytes = health::request(target);
                let request =
                    self.conn()?
                        .tcp_request(&target.host, target.port, &bytes, 64 * 1024);
                // Nothing runs on the host for a request: dropping it is stopping it.
                let raw = tokio::select! {
                    raw = request => raw,
                    () = cancel.aborted() => Err(TransportError::Aborted),
                };
                let raw = raw.map_err(|e| {
                    format!(
                        "cannot connect to {}:{} from the host: {e}",
                        target.host, target.port
                    )
                })?;
                let (status, body) = health::parse_response(&raw, &self.redactor)?;
                health::judge(check, status, body, &self.redactor)?;
                Ok(format!("HTTP {status}"))
            }
            Probe::Command { command, dir } => {
                // Aborted, the command is stopped on the host, not just left behind.
                let nonce = remote::frame::nonce();
                let script = remote::driver::tagged(&nonce, &run::command(command, dir.as_deref()));
                let mut kept = KeptOutput::new(&self.redactor);
                let status = self
                    .exec_killable(&script, &[], become_as, &mut kept, &nonce, cancel)
                    .await
                    .map_err(|e| e.to_string())?;
                require_success(&kept.finish(status), &self.redactor)?;
                Ok("command passed".to_string())
            }
        }
    }
}

/// How a step ended: outcome, a short note, and (for `run`) what the command printed.
pub(super) struct Done {
    pub outcome: Outcome,
    pub detail: Option<String>,
    pub output: Option<String>,
}

impl Done {
    pub fn new(outcome: Outcome, detail: Option<String>) -> Self {
        Self {
            outcome,
            detail,
            output: None,
        }
    }
}

/// Lines of a command's stdout shown: the last 50, or when its middle was dropped (see
/// `output::HeadTail`) the first 20 of its head, how much was dropped, and the last 30 of its
/// tail. `None` when it printed nothing but blanks. The output was masked before it was cut.
fn output_tail(out: &ExecOutput) -> Option<String> {
    let last_lines = |bytes: &[u8], n: usize| {
        let text = String::from_utf8_lossy(bytes);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    };
    let shown = match out.stdout_dropped {
        None => last_lines(&out.stdout, 50),
        Some(dropped) => {
            let head = String::from_utf8_lossy(&out.stdout[..dropped.at]);
            let first: Vec<&str> = head.lines().take(20).collect();
            format!(
                "{}\n{}\n{}",
                first.join("\n"),
                dropped.note(),
                last_lines(&out.stdout[dropped.at..], 30)
            )
        }
    };
    if shown.trim().is_empty() {
        None
    } else {
        Some(shown)
    }
}

pub(super) fn require_success(out: &ExecOutput, redactor: &Redactor) -> Result<(), String> {
    if out.success() {
        Ok(())
    } else {
        Err(failure_text(out, redactor))
    }
}

/// The exit status and the last lines of stderr (or stdout when stderr is empty), secrets
/// masked over the whole stream before it is cut into lines.
pub fn failure_text(out: &ExecOutput, redactor: &Redactor) -> String {
    let status = match out.status {
        Some(s) => format!("exit status {s}"),
        None => "killed or disconnected without an exit status".to_string(),
    };
    let (stream, dropped) = if out.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        (&out.stderr, out.stderr_dropped)
    } else {
        (&out.stdout, out.stdout_dropped)
    };
    let lines_of = |bytes: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(&redactor.redact_bytes(bytes))
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect()
    };
    let mut lines = match dropped {
        None => lines_of(stream),
        Some(d) => {
            let mut lines = lines_of(&stream[..d.at]);
            lines.push(d.note());
            lines.extend(lines_of(&stream[d.at..]));
            lines
        }
    };
    let mut tail = lines.split_off(lines.len().saturating_sub(8));
    // Say so when the lines shown come after output that was dropped.
    if let Some(d) = dropped
        && !tail.contains(&d.note())
    {
        tail.insert(0, d.note());
    }
    if tail.is_empty() {
        status
    } else {
        format!("{status}\n{}", tail.join("\n"))
    }
}
