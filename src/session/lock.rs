//! A host's part in the fleet's lock: taking it (the files probe riding along), giving it
//! back, and the audit line written as it is given back. The scripts are `remote::lock`'s.

use std::time::{Duration, Instant};

use super::{HostSession, RunContext, failure_text};
use crate::remote::lock::{self, Holder, LockAnswer};
use crate::report::timeline::Phase;
use crate::transport::{Connection, TransportError};

/// What `take_lock` found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockOutcome {
    /// The lock is this session's now.
    Taken,
    /// This run holds it already, through another host sharing the same directory.
    OursElsewhere,
    /// Someone else holds it.
    Held(Holder),
    /// The lock could not be asked for (the host failed: see its error).
    Failed,
}

/// Why a host's lock was not given back.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("{0}")]
    Transport(#[from] TransportError),
    /// The release script failed: its exit status and last lines.
    #[error("{0}")]
    Refused(String),
    #[error("no answer within {0:?}")]
    NoAnswer(Duration),
}

impl<T: Connection> HostSession<T> {
    /// Whether this run holds the host's lock (taken, and not given back yet).
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// Whether this host's lock is held by this run through another host of the run (two
    /// inventory names for one app instance: one lock directory), its audit line not written
    /// yet.
    pub fn shares_lock(&self) -> bool {
        self.lock_shared
    }

    /// Takes the host's lock for `holder`. The files probe rides along when it can: one round
    /// trip instead of two. A host that cannot be asked fails.
    pub async fn take_lock(&mut self, ctx: &RunContext<'_>, holder: &Holder) -> LockOutcome {
        let _turn = ctx.gate.turn().await;
        let started = Instant::now();
        // Boxed: allocated for the hosts holding a turn only (see `run_step_range`).
        let outcome = Box::pin(self.ask_for_lock(ctx, holder)).await;
        self.result.timeline.record(Phase::Lock, started);
        outcome
    }

    async fn ask_for_lock(&mut self, ctx: &RunContext<'_>, holder: &Holder) -> LockOutcome {
        self.lock_shared = false;
        let state = &ctx.plan.hosts[self.index].state;
        let probe = self.piggyback_probe(ctx.plan);
        let request = lock::acquire(state, holder, probe.as_ref());
        // One channel for the lock, and one for what follows it whatever it answers (the
        // steps, or giving the lock back), opening while the lock script runs. Not when hosts
        // will wait for a turn after the lock: thousands of idle channels cost memory and
        // save those hosts nothing.
        let next = usize::from(ctx.gate.admits_all(ctx.plan.hosts.len()));
        self.keep_ready(1 + next);
        let out = match self.exec(request.script(), &[]).await {
            Ok(out) => out,
            Err(e) => {
                self.fail(ctx.reporter, &format!("cannot take the lock: {e}"));
                return LockOutcome::Failed;
            }
        };
        let reply = request.reply(&out.stdout);
        let Some(answer) = lock::parse_acquire(&reply) else {
            let error = format!(
                "cannot take the lock: {}",
                failure_text(&out, &ctx.plan.redactor)
            );
            self.fail(ctx.reporter, &error);
            return LockOutcome::Failed;
        };
        if probe.is_some() {
            self.accept_piggybacked_probe(ctx.plan, &reply, &out);
        }
        match answer {
            LockAnswer::Acquired => {
                self.locked = true;
                LockOutcome::Taken
            }
            // Hosts sharing one lock directory share the lock: ours already.
            LockAnswer::Held(other) if other.token == holder.token => {
                self.lock_shared = true;
                LockOutcome::OursElsewhere
            }
            LockAnswer::Held(other) => LockOutcome::Held(other),
        }
    }

    /// Gives back a lock this session took, writing no audit line (a run refused elsewhere).
    /// A host that does not answer keeps it (still `is_locked`). A host sharing the lock
    /// through another has nothing to give back, nor a line to write.
    pub async fn release_lock(&mut self, ctx: &RunContext<'_>, holder: &Holder) {
        self.lock_shared = false;
        if !self.locked {
            return;
        }
        let _turn = ctx.gate.turn().await;
        let started = Instant::now();
        let state = &ctx.plan.hosts[self.index].state;
        if self.unpark(ctx.reporter).await
            && self.exec(&lock::release(state, holder), &[]).await.is_ok()
        {
            self.locked = false;
        }
        self.result.timeline.record(Phase::Release, started);
    }

    /// Appends the audit line (`result`) and gives the lock back, waiting at most `wait` for
    /// the host's answer when given. A host sharing the lock through another host writes its
    /// line only. Does nothing when this session holds no lock.
    pub async fn release_lock_with_audit(
        &mut self,
        ctx: &RunContext<'_>,
        holder: &Holder,
        result: &str,
        wait: Option<Duration>,
    ) -> Result<(), ReleaseError> {
        if !self.locked && !self.lock_shared {
            return Ok(());
        }
        let _turn = ctx.gate.turn().await;
        let started = Instant::now();
        let released = Box::pin(self.release_and_audit(ctx, holder, result, wait)).await;
        self.result.timeline.record(Phase::Release, started);
        released
    }

    async fn release_and_audit(
        &mut self,
        ctx: &RunContext<'_>,
        holder: &Holder,
        result: &str,
        wait: Option<Duration>,
    ) -> Result<(), ReleaseError> {
        // A parked host is connected again first (given at most `wait` too).
        if !within(wait, self.unpark(ctx.reporter)).await? {
            return Err(ReleaseError::Refused("not connected".into()));
        }
        let state = &ctx.plan.hosts[self.index].state;
        let script = if self.locked {
            lock::release_and_audit(state, holder, self.name(), result)
        } else {
            lock::audit(state, holder, self.name(), result)
        };
        let release = self.exec_cut(&script, &[], None, std::future::pending());
        let answer = within(wait, release).await?;
        let out = answer.map_err(|cut| ReleaseError::Transport(cut.error))?;
        if !out.success() {
            return Err(ReleaseError::Refused(failure_text(
                &out,
                &ctx.plan.redactor,
            )));
        }
        self.locked = false;
        self.lock_shared = false;
        Ok(())
    }
}

/// `work`'s output, or `NoAnswer` once `wait` (when given) has passed.
async fn within<F: std::future::Future>(
    wait: Option<Duration>,
    work: F,
) -> Result<F::Output, ReleaseError> {
    match wait {
        Some(wait) => tokio::time::timeout(wait, work)
            .await
            .map_err(|_| ReleaseError::NoAnswer(wait)),
        None => Ok(work.await),
    }
}
