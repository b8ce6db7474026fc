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
        let pruned = self.prune_secrets(step, become_as, &started.versions).await;
        secrets_noted(done, &step.name, &started.made, pruned)
    }

    /// Removes the stack's secret versions no service names any more (the deploy's `versions`
    /// kept); their names.
    async fn prune_secrets(
        &mut self,
        step: &StackDeploy,
        become_as: Option<&Become>,
        versions: &[String],
    ) -> Result<Vec<String>, String> {
        let keep: Vec<&str> = versions.iter().map(String::as_str).collect();
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
                key: &s.key,
                name_variable: s.name_variable(),
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
            versions: stack::named(&reply, "version"),
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
            versions: Vec::new(),
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
    /// The keys of the Docker secrets the deploy made.
    made: Vec<String>,
    /// The names of the secrets' versions the deploy used.
    versions: Vec<String>,
}

/// A converged deploy's result with the secrets it made and removed (changed when it did
/// either), by key (the full names are in `docker secret ls`); a failed removal is noted, not
/// failed: the deploy itself went through.
fn secrets_noted(
    done: Done,
    stack: &str,
    made: &[String],
    pruned: Result<Vec<String>, String>,
) -> Done {
    let mut notes = Vec::new();
    if !made.is_empty() {
        let made: Vec<String> = made.iter().map(|k| format!("{k}: new version")).collect();
        notes.push(format!("secrets made: {}", made.join(", ")));
    }
    let mut changed = !made.is_empty();
    match pruned {
        Ok(pruned) if !pruned.is_empty() => {
            changed = true;
            let keys: Vec<&str> = pruned.iter().map(|n| version_key(stack, n)).collect();
            notes.push(format!("old secret versions removed: {}", keys.join(", ")));
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

/// The key of a version `<stack>_<key>_<version>` of the stack's secret (the name itself if it
/// is not of that shape).
fn version_key<'a>(stack: &str, name: &'a str) -> &'a str {
    name.strip_prefix(stack)
        .and_then(|rest| rest.strip_prefix('_'))
        .and_then(|rest| rest.rsplit_once('_'))
        .map_or(name, |(key, _)| key)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_and_removed_secrets_are_named_by_key_not_by_version() {
        let done = Done::new(
            Outcome::Ok,
            Some("stack p-1 (1.0s): p-1_web: unchanged".into()),
        );
        let noted = secrets_noted(
            done,
            "p-1",
            &["django_secret_key".to_string()],
            Ok(vec![
                "p-1_django_secret_key_0123456789ab".to_string(),
                "other".to_string(),
            ]),
        );
        assert_eq!(noted.outcome, Outcome::Changed);
        assert_eq!(
            noted.detail.as_deref(),
            Some(
                "stack p-1 (1.0s): p-1_web: unchanged; secrets made: django_secret_key: new version; old secret versions removed: django_secret_key, other"
            )
        );
    }
}
