//! The stack runner: one `stack` step on one swarm manager. A deploy (one exec: the stack as it
//! was, then `docker stack deploy` with the step's environment on stdin) or, in a rollback,
//! `docker service rollback` of each service; then one survey per poll round (one exec each,
//! about a second apart) until every service has converged, been rolled back, or `timeout`
//! ran out. The engine rolling a service back after a deploy fails the step, naming it. The
//! step's Docker secrets are made (when missing) in the deploy's exec, and after a deploy that
//! did not fail the stack's versions no service names any more are removed (one more exec).

use std::time::{Duration, Instant};

use super::sequence::Purpose;
use super::{HostSession, RunContext, failure_text};
use crate::plan::Become;
use crate::remote::frame::Framed;
use crate::remote::stack::{self, SecretToMake, Service};
use crate::remote::stack_converge::{Change, Verdict, judge_all};
use crate::report::Outcome;
use crate::steps::Done;
use crate::steps::stack::StackDeploy;
use crate::transport::{Connection, TransportError};

/// How long between two surveys of the stack.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

impl<T: Connection> HostSession<T> {
    /// Runs one `stack` step: a deploy, or for a rollback the services' own rollback.
    pub(super) async fn stack(
        &mut self,
        ctx: &RunContext<'_>,
        step: &StackDeploy,
        become_as: Option<&Become>,
        purpose: Purpose,
    ) -> Done {
        let started = match purpose {
            Purpose::Deploy => self.stack_deploy(step, become_as).await,
            Purpose::Rollback => self.stack_rollback(step, become_as).await,
        };
        let started = match started {
            Ok(started) => started,
            Err(error) => return Done::new(Outcome::Failed, Some(error)),
        };
        let done = match self
            .stack_converge(
                ctx,
                step,
                become_as,
                &started.before,
                started.change,
                &started.asked,
            )
            .await
        {
            Ok(done) => done,
            Err(error) => return Done::new(Outcome::Failed, Some(error)),
        };
        if purpose == Purpose::Rollback
            || step.secrets.is_empty()
            || done.outcome == Outcome::Failed
        {
            return done;
        }
        let pruned = self.prune_secrets(step, become_as).await;
        secrets_noted(done, &started.made, pruned)
    }

    /// Removes the stack's secret versions no service names any more; their names.
    async fn prune_secrets(
        &mut self,
        step: &StackDeploy,
        become_as: Option<&Become>,
    ) -> Result<Vec<String>, String> {
        let keep: Vec<&str> = step.secrets.iter().map(|s| s.name.as_str()).collect();
        let request = Framed::new(&stack::prune_secrets(&step.name, &keep));
        let out = self.exec_as(request.script(), &[], become_as).await?;
        if !out.success() {
            return Err(failure_text(&out, &self.redactor));
        }
        Ok(stack::named(&request.reply(&out.stdout), "pruned"))
    }

    /// `docker stack deploy`; the stack's services as they were before it.
    async fn stack_deploy(
        &mut self,
        step: &StackDeploy,
        become_as: Option<&Become>,
    ) -> Result<Started, String> {
        let secrets: Vec<SecretToMake<'_>> = step
            .secrets
            .iter()
            .map(|s| SecretToMake {
                name: &s.name,
                key: &s.key,
                size: s.value.expose().len(),
            })
            .collect();
        let request = Framed::new(&stack::deploy(
            &step.file,
            &step.name,
            step.with_registry_auth,
            &secrets,
        ));
        let stdin = step.stdin();
        let out = self.exec_as(request.script(), &[&stdin], become_as).await?;
        let reply = request.reply(&out.stdout);
        let (deployed, said) = stack::deploy_output(&reply);
        if !out.success() || !deployed {
            let said = self.redactor.redact(&said);
            return Err(format!(
                "docker stack deploy of `{}` failed: {}{}",
                step.name,
                failure_text(&out, &self.redactor),
                if said.is_empty() {
                    String::new()
                } else {
                    format!("\n{said}")
                }
            ));
        }
        let before = stack::parse_survey(&stack::before(&reply, "deploy"));
        Ok(Started {
            before,
            change: Change::Deploy,
            asked: Vec::new(),
            made: stack::named(&reply, "secret"),
        })
    }

    /// `docker service rollback` of each service that has a previous spec.
    async fn stack_rollback(
        &mut self,
        step: &StackDeploy,
        become_as: Option<&Become>,
    ) -> Result<Started, String> {
        let request = Framed::new(&stack::rollback(&step.name));
        let out = self.exec_as(request.script(), &[], become_as).await?;
        let reply = request.reply(&out.stdout);
        if !out.success() {
            return Err(format!(
                "docker service rollback in stack `{}` failed: {}",
                step.name,
                failure_text(&out, &self.redactor)
            ));
        }
        let before = stack::parse_survey(&stack::before(&reply, "rollback"));
        let (asked, _) = stack::rolled_back(&reply);
        Ok(Started {
            before,
            change: Change::Rollback,
            asked,
            made: Vec::new(),
        })
    }

    /// Polls until every service is settled or the step's timeout runs out; the step's
    /// result says what became of each service.
    async fn stack_converge(
        &mut self,
        ctx: &RunContext<'_>,
        step: &StackDeploy,
        become_as: Option<&Become>,
        before: &[Service],
        change: Change,
        asked: &[String],
    ) -> Result<Done, String> {
        let started = Instant::now();
        let deadline = started + step.timeout;
        loop {
            tokio::select! {
                () = tokio::time::sleep(POLL_INTERVAL) => {}
                () = ctx.cancel.aborted() => return Err(TransportError::Aborted.to_string()),
            }
            let request = Framed::new(&stack::poll(&step.name));
            let out = self.exec_as(request.script(), &[], become_as).await?;
            if !out.success() {
                return Err(format!(
                    "could not survey stack `{}`: {}",
                    step.name,
                    failure_text(&out, &self.redactor)
                ));
            }
            let now = stack::parse_survey(&request.reply(&out.stdout));
            let verdicts = judge_all(&now, before, change, asked);
            let timed_out = Instant::now() >= deadline;
            if verdicts.iter().all(|(_, v)| v.settled()) || timed_out {
                let done = summary(&verdicts, change, step, started.elapsed());
                return Ok(Done {
                    detail: done.detail.map(|d| self.redactor.redact(&d)),
                    ..done
                });
            }
        }
    }
}

/// What a deploy or rollback started from.
struct Started {
    /// The stack's services as they were before it.
    before: Vec<Service>,
    change: Change,
    /// The services a rollback sent back.
    asked: Vec<String>,
    /// The Docker secrets the deploy made.
    made: Vec<String>,
}

/// A converged deploy's result with the secrets it made and removed (changed when it did
/// either); a failed removal is noted, not failed: the deploy itself went through.
fn secrets_noted(done: Done, made: &[String], pruned: Result<Vec<String>, String>) -> Done {
    let mut notes = Vec::new();
    if !made.is_empty() {
        notes.push(format!("secrets made: {}", made.join(", ")));
    }
    let mut changed = !made.is_empty();
    match pruned {
        Ok(pruned) if !pruned.is_empty() => {
            changed = true;
            notes.push(format!("old secrets removed: {}", pruned.join(", ")));
        }
        Ok(_) => {}
        Err(why) => notes.push(format!("could not remove old secrets: {why}")),
    }
    if notes.is_empty() {
        return done;
    }
    let detail = match done.detail {
        Some(d) => format!("{d}; {}", notes.join("; ")),
        None => notes.join("; "),
    };
    let outcome = if changed && done.outcome == Outcome::Ok {
        Outcome::Changed
    } else {
        done.outcome
    };
    Done::new(outcome, Some(detail))
}

/// The step's result from every service's verdict: failed when one was rolled back by the
/// engine after a deploy, failed or never converged; else changed when one was updated or
/// rolled back as asked; else ok.
pub(super) fn summary(
    verdicts: &[(String, Verdict)],
    change: Change,
    step: &StackDeploy,
    elapsed: Duration,
) -> Done {
    let mut failed = Vec::new();
    let mut lines = Vec::new();
    let mut changed = false;
    for (name, verdict) in verdicts {
        let line = match verdict {
            Verdict::Updated => {
                changed = true;
                format!("{name}: updated")
            }
            Verdict::Unchanged if change == Change::Rollback => {
                format!("{name}: left as it is (no previous spec, or rolled back already)")
            }
            Verdict::Unchanged => format!("{name}: unchanged"),
            Verdict::RolledBack(why) if change == Change::Rollback => {
                changed = true;
                format!("{name}: rolled back ({why})")
            }
            Verdict::RolledBack(why) => {
                failed.push(name.as_str());
                format!("{name}: rolled back by the engine: {why}")
            }
            Verdict::Failed(why) => {
                failed.push(name.as_str());
                format!("{name}: failed: {why}")
            }
            Verdict::Pending(why) => {
                failed.push(name.as_str());
                format!(
                    "{name}: not converged after {}: {why}",
                    humantime::format_duration(step.timeout)
                )
            }
        };
        lines.push(line);
    }
    if verdicts.is_empty() {
        lines.push(format!("stack `{}` has no services", step.name));
    }
    let took = format!("{:.1}s", elapsed.as_secs_f64());
    if failed.is_empty() {
        let outcome = if changed {
            Outcome::Changed
        } else {
            Outcome::Ok
        };
        Done::new(
            outcome,
            Some(format!(
                "stack {} ({took}): {}",
                step.name,
                lines.join("; ")
            )),
        )
    } else {
        Done::new(
            Outcome::Failed,
            Some(format!(
                "stack {}: service(s) {} did not converge ({took}):\n{}",
                step.name,
                failed.join(", "),
                lines.join("\n")
            )),
        )
    }
}
