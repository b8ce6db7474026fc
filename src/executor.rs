//! Runs a plan: every host at once within the fork and handshake caps, steps in order per host,
//! one connection per host, one host's failure never stopping the others.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::health::{self, HealthCheck, Probe};
use crate::plan::{Action, HostPlan, Plan, PlannedStep, Upload};
use crate::remote::{self, ComposeFlavor, RemoteFile};
use crate::report::{Event, HostResult, Outcome, Reporter, RunReport, StepResult};
use crate::secrets::Redactor;
use crate::transport::{Connection, Connector, ExecOutput};

#[derive(Debug, Clone, Copy)]
pub struct ExecOptions {
    /// Hosts worked on at once.
    pub forks: usize,
    /// SSH handshakes in flight at once (sshd's MaxStartups drops bursts).
    pub handshakes: usize,
}

impl Default for ExecOptions {
    fn default() -> Self {
        Self {
            forks: 64,
            handshakes: 32,
        }
    }
}

struct Shared<C> {
    connector: Arc<C>,
    plan: Arc<Plan>,
    reporter: Arc<dyn Reporter>,
    forks: Semaphore,
    handshakes: Semaphore,
}

/// Runs `plan` on all its hosts and returns every host's result, in plan order.
pub async fn run<C: Connector>(
    command: &str,
    connector: Arc<C>,
    plan: Arc<Plan>,
    options: ExecOptions,
    reporter: Arc<dyn Reporter>,
) -> RunReport {
    let started = Instant::now();
    let shared = Arc::new(Shared {
        connector,
        plan: plan.clone(),
        reporter: reporter.clone(),
        forks: Semaphore::new(options.forks.max(1)),
        handshakes: Semaphore::new(options.handshakes.max(1)),
    });
    let mut tasks = JoinSet::new();
    for index in 0..plan.hosts.len() {
        let shared = shared.clone();
        tasks.spawn(async move { (index, run_host(&shared, index).await) });
    }
    let mut results: Vec<Option<HostResult>> = vec![None; plan.hosts.len()];
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, result)) => results[index] = Some(result),
            Err(e) => tracing::error!("a host task panicked: {e}"),
        }
    }
    let hosts: Vec<HostResult> = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| {
                host_failure(
                    &plan.hosts[i],
                    "internal error: the host's task panicked".into(),
                    0,
                )
            })
        })
        .collect();
    let report = RunReport {
        command: command.to_string(),
        ok: !hosts.iter().any(HostResult::failed),
        hosts,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    reporter.finished(&report);
    report
}

async fn run_host<C: Connector>(shared: &Shared<C>, index: usize) -> HostResult {
    let host_plan = &shared.plan.hosts[index];
    let Ok(_fork) = shared.forks.acquire().await else {
        return host_failure(host_plan, "internal error: fork semaphore closed".into(), 0);
    };
    let started = Instant::now();
    shared.reporter.event(&Event::HostStarted {
        host: &host_plan.host.name,
    });
    let connected = {
        let _handshake = shared.handshakes.acquire().await;
        shared.connector.connect(&host_plan.connect).await
    };
    let result = match connected {
        Err(e) => host_failure(
            host_plan,
            e.to_string(),
            started.elapsed().as_millis() as u64,
        ),
        Ok(conn) => {
            let mut worker = HostWorker {
                conn: &conn,
                host_plan,
                redactor: &shared.plan.redactor,
                reporter: shared.reporter.as_ref(),
                remote_files: HashMap::new(),
                compose: ComposeFlavor::Missing,
            };
            let (steps, error) = worker.run_steps().await;
            let error = error.map(|e| shared.plan.redactor.redact(&e));
            conn.close().await;
            HostResult {
                host: host_plan.host.name.clone(),
                address: host_plan.host.address.clone(),
                error,
                steps,
                elapsed_ms: started.elapsed().as_millis() as u64,
            }
        }
    };
    shared
        .reporter
        .event(&Event::HostFinished { result: &result });
    result
}

fn host_failure(host_plan: &HostPlan, error: String, elapsed_ms: u64) -> HostResult {
    HostResult {
        host: host_plan.host.name.clone(),
        address: host_plan.host.address.clone(),
        error: Some(error),
        steps: host_plan
            .steps
            .iter()
            .map(|s| StepResult {
                name: s.name.clone(),
                outcome: Outcome::Skipped,
                detail: Some("host failed".into()),
                output: None,
                elapsed_ms: 0,
            })
            .collect(),
        elapsed_ms,
    }
}

/// The state of one host's run over its one connection.
struct HostWorker<'a, T: Connection> {
    conn: &'a T,
    host_plan: &'a HostPlan,
    redactor: &'a Redactor,
    reporter: &'a dyn Reporter,
    /// What the probe found at each destination; updated after each upload.
    remote_files: HashMap<String, Option<RemoteFile>>,
    compose: ComposeFlavor,
}

impl<T: Connection> HostWorker<'_, T> {
    async fn run_steps(&mut self) -> (Vec<StepResult>, Option<String>) {
        if let Err(e) = self.probe().await {
            let skipped = self
                .host_plan
                .steps
                .iter()
                .map(|s| StepResult {
                    name: s.name.clone(),
                    outcome: Outcome::Skipped,
                    detail: Some("host failed".into()),
                    output: None,
                    elapsed_ms: 0,
                })
                .collect();
            return (skipped, Some(e));
        }
        let mut results = Vec::with_capacity(self.host_plan.steps.len());
        let mut failed = false;
        for step in &self.host_plan.steps {
            let started = Instant::now();
            let (outcome, detail, output) = if failed {
                (
                    Outcome::Skipped,
                    Some("after a failed step".to_string()),
                    None,
                )
            } else {
                self.run_step(step).await
            };
            failed |= outcome == Outcome::Failed;
            let result = StepResult {
                name: step.name.clone(),
                outcome,
                detail: detail.map(|d| self.redactor.redact(&d)),
                output: output.map(|o| self.redactor.redact(&o)),
                elapsed_ms: started.elapsed().as_millis() as u64,
            };
            self.reporter.event(&Event::StepFinished {
                host: &self.host_plan.host.name,
                step: &result,
            });
            results.push(result);
        }
        (results, None)
    }

    /// One round trip that learns every destination's checksum and the compose flavour.
    async fn probe(&mut self) -> Result<(), String> {
        let dests: Vec<&str> = self
            .host_plan
            .steps
            .iter()
            .filter_map(|s| match &s.action {
                Action::Upload(u) => Some(u.dest.as_str()),
                _ => None,
            })
            .collect();
        let want_compose = self
            .host_plan
            .steps
            .iter()
            .any(|s| matches!(s.action, Action::Compose { .. }));
        if dests.is_empty() && !want_compose {
            return Ok(());
        }
        let script = remote::probe(&dests, want_compose);
        let out = self.exec(&script, &[]).await?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let Some((files, flavor)) =
            remote::parse_probe(&stdout, dests.len()).filter(|_| out.success())
        else {
            return Err(format!(
                "could not inspect the host's files: {}",
                failure_text(&out)
            ));
        };
        for (dest, file) in dests.iter().zip(files) {
            self.remote_files.insert((*dest).to_string(), file);
        }
        self.compose = flavor;
        Ok(())
    }

    async fn run_step(&mut self, step: &PlannedStep) -> (Outcome, Option<String>, Option<String>) {
        match self.step_action(&step.action).await {
            Ok(done) => (done.outcome, done.detail, done.output),
            Err(e) => (Outcome::Failed, Some(e), None),
        }
    }

    async fn step_action(&mut self, action: &Action) -> Result<Done, String> {
        match action {
            Action::Skip { reason } => Ok(Done::new(Outcome::Skipped, Some(reason.clone()))),
            Action::Upload(upload) => self.upload(upload).await,
            Action::Run { command, dir } => {
                let out = self
                    .exec(&remote::run(command, dir.as_deref()), &[])
                    .await?;
                require_success(&out)?;
                Ok(Done {
                    output: output_tail(&out.stdout),
                    ..Done::new(Outcome::Changed, None)
                })
            }
            Action::DockerLogin {
                registry,
                username,
                password,
            } => {
                let script = remote::docker_login(registry, username);
                let out = self.exec(&script, password.expose().as_bytes()).await?;
                require_success(&out)?;
                Ok(Done::new(
                    Outcome::Ok,
                    Some(format!("logged in to {registry}")),
                ))
            }
            Action::Compose {
                command,
                dir,
                project,
                services,
            } => {
                if self.compose == ComposeFlavor::Missing {
                    return Err("neither `docker compose` nor `docker-compose` works on this host\n  hint: install the compose plugin (docker-compose-plugin) or docker-compose".into());
                }
                let script = remote::compose(self.compose, *command, dir, project, services);
                let out = self.exec(&script, &[]).await?;
                require_success(&out)?;
                let text = String::from_utf8_lossy(&out.stderr).into_owned()
                    + &String::from_utf8_lossy(&out.stdout);
                let outcome = if remote::compose_changed(*command, &text) {
                    Outcome::Changed
                } else {
                    Outcome::Ok
                };
                Ok(Done::new(outcome, None))
            }
            Action::Health(check) => self.health(check).await,
            Action::Facts => {
                let out = self.exec(remote::facts(), &[]).await?;
                require_success(&out)?;
                Ok(Done::new(
                    Outcome::Ok,
                    Some(remote::summarize_facts(&String::from_utf8_lossy(
                        &out.stdout,
                    ))),
                ))
            }
        }
    }

    /// Retries the check every `interval` until it passes or `timeout` runs out; the failure
    /// names the last status (and a body excerpt) seen.
    async fn health(&self, check: &HealthCheck) -> Result<Done, String> {
        let started = Instant::now();
        let deadline = started + check.timeout;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let attempt = tokio::time::timeout(
                remaining.max(Duration::from_millis(100)),
                self.health_attempt(check),
            )
            .await;
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
            if Instant::now() + check.interval >= deadline {
                return Err(format!(
                    "unhealthy after {} ({attempts} attempt(s)); last: {last}",
                    humantime::format_duration(check.timeout)
                ));
            }
            tokio::time::sleep(check.interval).await;
        }
    }

    async fn health_attempt(&self, check: &HealthCheck) -> Result<String, String> {
        match &check.probe {
            Probe::Http(target) => {
                let raw = self
                    .conn
                    .tcp_request(
                        &target.host,
                        target.port,
                        &health::request(target),
                        64 * 1024,
                    )
                    .await
                    .map_err(|e| {
                        format!(
                            "cannot connect to {}:{} from the host: {e}",
                            target.host, target.port
                        )
                    })?;
                let (status, body) = health::parse_response(&raw)?;
                health::judge(check, status, &body)?;
                Ok(format!("HTTP {status}"))
            }
            Probe::Command { command, dir } => {
                let out = self
                    .exec(&remote::run(command, dir.as_deref()), &[])
                    .await?;
                require_success(&out)?;
                Ok("command passed".to_string())
            }
        }
    }

    async fn upload(&mut self, upload: &Upload) -> Result<Done, String> {
        let wanted = RemoteFile {
            sha256: upload.sha256.clone(),
            mode: upload.mode,
        };
        if self.remote_files.get(&upload.dest) == Some(&Some(wanted.clone())) {
            return Ok(Done::new(Outcome::Ok, Some(upload.dest.clone())));
        }
        let out = self.exec(&remote::upload(upload), &upload.content).await?;
        require_success(&out)?;
        self.remote_files.insert(upload.dest.clone(), Some(wanted));
        Ok(Done::new(Outcome::Changed, Some(upload.dest.clone())))
    }

    async fn exec(&self, script: &str, stdin: &[u8]) -> Result<ExecOutput, String> {
        tracing::debug!(host = %self.host_plan.host.name, script = %script, "exec");
        self.conn
            .exec(script, stdin)
            .await
            .map_err(|e| e.to_string())
    }
}

/// How a step ended: outcome, a short note, and (for `run`) what the command printed.
struct Done {
    outcome: Outcome,
    detail: Option<String>,
    output: Option<String>,
}

impl Done {
    fn new(outcome: Outcome, detail: Option<String>) -> Self {
        Self {
            outcome,
            detail,
            output: None,
        }
    }
}

/// The last 50 non-empty lines of a command's stdout, if it printed anything.
fn output_tail(stdout: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stdout);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(50)..].join("\n");
    if tail.trim().is_empty() {
        None
    } else {
        Some(tail)
    }
}

fn require_success(out: &ExecOutput) -> Result<(), String> {
    if out.success() {
        Ok(())
    } else {
        Err(failure_text(out))
    }
}

/// The exit status and the last lines of stderr (or stdout when stderr is empty).
fn failure_text(out: &ExecOutput) -> String {
    let status = match out.status {
        Some(s) => format!("exit status {s}"),
        None => "killed or disconnected without an exit status".to_string(),
    };
    let stream = if out.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        &out.stderr
    } else {
        &out.stdout
    };
    let text = String::from_utf8_lossy(stream);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(8)..];
    if tail.is_empty() {
        status
    } else {
        format!("{status}\n{}", tail.join("\n"))
    }
}
