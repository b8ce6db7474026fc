//! The fleet run: connect every host, take their locks (as hosts come up), deploy batch by batch under the
//! rollout policy (halting, rolling a failed batch back), then write the audit log, release the
//! locks and report. Talks to a host only through `HostSession`'s methods, each of which waits
//! for the run's fork gate. May import session, plan, rollout, remote::lock (the holder, the
//! unlock epilogue), release (timestamps), report, transport's traits; never the CLI.

mod batches;
mod locks;
mod swarm;
mod views;

use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::diagnostic::Hinted;
use crate::plan::Plan;
use crate::remote::lock::Holder;
use crate::report::preview::{HostPreview, Silent};
use crate::report::{Counts, Event, HostResult, Reporter, RunReport};
use crate::session::{HostSession, Look, Query, RunContext, connect_all};
use crate::transport::{Connection, Connector};
use locks::{FirstAttempt, LockRefused, Pacing, connect_locking, finish, holder, take_locks};

pub use crate::session::{Cancel, CancelHandle, ViewEnd};
pub use views::{ViewScript, view};

/// How many hosts a run talks to at once.
#[derive(Debug, Clone, Copy)]
pub struct ExecOptions {
    /// Hosts talked to at once (`--forks`): steps, locks, listing releases, rollback, audit.
    pub forks: usize,
    /// SSH handshakes in flight at once (sshd's MaxStartups drops bursts).
    pub handshakes: usize,
    /// Report each line the steps' commands print as it comes (`-v`).
    pub stream_output: bool,
    /// Connections a deploy holds at once while it waits for every host's lock; past this, a
    /// host that took its lock closes its connection and opens another at its turn.
    pub held_connections: usize,
}

/// ~100 KiB each inside russh: a 2,000-host deploy stays near 100 MiB of connections.
pub const HELD_CONNECTIONS: usize = 1000;

impl Default for ExecOptions {
    fn default() -> Self {
        Self {
            forks: 64,
            handshakes: 64,
            stream_output: false,
            held_connections: HELD_CONNECTIONS,
        }
    }
}

/// How a run that changes hosts takes their locks.
#[derive(Debug, Clone)]
pub struct LockOptions {
    /// Keep retrying a held lock this long (`--wait-lock`).
    pub wait: Option<Duration>,
}

/// Why a run did not finish normally, for the report.
#[derive(Default)]
struct Stops {
    halted: Option<String>,
    lock_conflict: Option<String>,
}

/// Which hosts of the plan a run connects to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Every host, at once.
    Every,
    /// A swarm playbook's deploy or rollback (or its dry run): the first usable manager
    /// (`swarm`).
    OneManager,
}

impl Reach {
    /// What a deploy or rollback of `plan` reaches.
    fn changing(plan: &Plan) -> Reach {
        if plan.swarm {
            Reach::OneManager
        } else {
            Reach::Every
        }
    }
}

/// Every run starts alike: its clock, the context its hosts share, a session per host.
async fn open<'a, C: Connector>(
    connector: &C,
    plan: &'a Plan,
    exec: ExecOptions,
    reach: Reach,
    reporter: &'a dyn Reporter,
    cancel: Cancel,
) -> (Instant, RunContext<'a>, Vec<HostSession<C::Conn>>) {
    let (started, ctx) = begin(plan, exec, reporter, cancel);
    let sessions = match reach {
        Reach::Every => connect_all(connector, plan, exec.handshakes, reporter).await,
        Reach::OneManager => swarm::connect_first_manager(connector, &ctx, reporter).await,
    };
    (started, ctx, sessions)
}

/// The run's clock and the context its hosts share.
fn begin<'a>(
    plan: &'a Plan,
    exec: ExecOptions,
    reporter: &'a dyn Reporter,
    cancel: Cancel,
) -> (Instant, RunContext<'a>) {
    let started = Instant::now();
    let mut ctx = RunContext::new(plan, reporter, exec.forks, cancel);
    ctx.stream_output = exec.stream_output;
    (started, ctx)
}

/// `dropship deploy`: locks, batches, rollback on failure, audit.
pub async fn deploy<C: Connector>(
    connector: &C,
    plan: &Plan,
    exec: ExecOptions,
    lock_options: &LockOptions,
    reporter: &dyn Reporter,
    cancel: Cancel,
) -> RunReport {
    let (started, ctx) = begin(plan, exec, reporter, cancel);
    let holder = holder("deploy", plan, plan.release_id.as_deref());
    let run = Locked {
        command: "deploy",
        holder: &holder,
        refused: "not deployed",
        started,
        reach: Reach::changing(plan),
        handshakes: exec.handshakes,
        held: Some(exec.held_connections),
    };
    let work = async |sessions: &mut [HostSession<C::Conn>], stops: &mut Stops| {
        batches::run_batches(sessions, &ctx, &holder, stops).await
    };
    let release = plan.release_id.clone();
    let report = run.run(connector, &ctx, lock_options, release, work);
    report.await
}

/// What an ad-hoc run does on each host.
#[derive(Clone, Copy)]
pub enum Adhoc<'a> {
    /// The plan's steps (`exec`).
    Steps,
    /// One query per host, in the plan's host order (`releases`, `lock`, `ping`).
    Queries(&'a [Query]),
}

/// `dropship exec` and the inspection commands: every host at once, no lock, no audit.
pub async fn adhoc<C: Connector>(
    command: &str,
    work: Adhoc<'_>,
    connector: &C,
    plan: &Plan,
    exec: ExecOptions,
    reporter: &dyn Reporter,
    cancel: Cancel,
) -> RunReport {
    let reach = Reach::Every;
    let (started, ctx, mut sessions) = open(connector, plan, exec, reach, reporter, cancel).await;
    join_all(sessions.iter_mut().map(|s| {
        let ctx = &ctx;
        async move {
            match work {
                Adhoc::Steps => {
                    let len = plan.hosts[s.index()].steps.len();
                    s.run_steps(ctx, 0..len, None).await;
                }
                Adhoc::Queries(queries) => s.query(ctx, &queries[s.index()]).await,
            }
        }
    }))
    .await;
    let holder = holder(command, plan, None);
    let results = finish(sessions, &ctx, &holder).await;
    report(command, None, results, Stops::default(), &ctx, started)
}

/// `dropship rollback`: on every host, `current` back to `to` (or the previous release), then
/// the steps after activation again.
pub async fn rollback<C: Connector>(
    connector: &C,
    plan: &Plan,
    to: Option<&str>,
    exec: ExecOptions,
    lock_options: &LockOptions,
    reporter: &dyn Reporter,
    cancel: Cancel,
) -> RunReport {
    let (started, ctx) = begin(plan, exec, reporter, cancel);
    let holder = holder("rollback", plan, Some(to.unwrap_or("previous")));
    let run = Locked {
        command: "rollback",
        holder: &holder,
        refused: "not rolled back",
        started,
        reach: Reach::changing(plan),
        handshakes: exec.handshakes,
        held: None,
    };
    let work = async |sessions: &mut [HostSession<C::Conn>], _: &mut Stops| {
        join_all(sessions.iter_mut().map(|s| s.roll_back_to(&ctx, to))).await;
    };
    let release = to.map(str::to_string);
    let report = run.run(connector, &ctx, lock_options, release, work);
    report.await
}

/// `--dry-run` of `deploy` and `rollback`: every host connected at once (within the fork cap),
/// looked at read-only: no lock, no audit line, nothing written.
pub async fn preview<C: Connector>(
    connector: &C,
    plan: &Plan,
    look: Look<'_>,
    exec: ExecOptions,
    cancel: Cancel,
) -> Vec<HostPreview> {
    let reach = Reach::changing(plan);
    let (_, ctx, mut sessions) = open(connector, plan, exec, reach, &Silent, cancel).await;
    let previews = join_all(sessions.iter_mut().map(|s| s.preview(&ctx, look))).await;
    join_all(sessions.into_iter().map(|s| s.finish(&Silent))).await;
    previews
}

/// A run that changes hosts: every host connected and its lock taken (or the whole run
/// refused), its work done, then the audit, the unlock and the report.
struct Locked<'h> {
    command: &'static str,
    holder: &'h Holder,
    /// What each host is noted as when a lock held elsewhere refuses the run.
    refused: &'static str,
    started: Instant,
    reach: Reach,
    /// SSH handshakes in flight at once.
    handshakes: usize,
    /// Connections held at once while waiting for every lock (the rest parked), if any cap.
    held: Option<usize>,
}

impl Locked<'_> {
    async fn run<C: Connector>(
        self,
        connector: &C,
        ctx: &RunContext<'_>,
        lock_options: &LockOptions,
        release: Option<String>,
        work: impl AsyncFnOnce(&mut [HostSession<C::Conn>], &mut Stops),
    ) -> RunReport {
        let mut stops = Stops::default();
        let (mut sessions, first) = match self.reach {
            Reach::Every => {
                let pacing = Pacing {
                    handshakes: self.handshakes,
                    held: self.held,
                };
                connect_locking(connector, ctx, pacing, self.holder).await
            }
            Reach::OneManager => {
                let manager = swarm::connect_first_manager(connector, ctx, ctx.reporter).await;
                (manager, FirstAttempt::NotTried)
            }
        };
        match take_locks(&mut sessions, ctx, self.holder, lock_options, first).await {
            Err(refusal) => refuse(&mut sessions, ctx, &mut stops, refusal, self.refused),
            Ok(()) => work(&mut sessions, &mut stops).await,
        }
        let results = finish(sessions, ctx, self.holder).await;
        report(self.command, release, results, stops, ctx, self.started)
    }
}

/// A lock held elsewhere refuses the whole run: say why once, note it on every host.
fn refuse<T: Connection>(
    sessions: &mut [HostSession<T>],
    ctx: &RunContext<'_>,
    stops: &mut Stops,
    refusal: LockRefused,
    what: &str,
) {
    let refusal = Hinted(&refusal, Some(&refusal.hint())).to_string();
    ctx.reporter.event(&Event::Note { text: &refusal });
    for s in sessions.iter_mut() {
        s.note(&format!("{what}: lock held elsewhere"));
    }
    stops.lock_conflict = Some(refusal);
}

fn report(
    command: &str,
    release: Option<String>,
    hosts: Vec<HostResult>,
    stops: Stops,
    ctx: &RunContext<'_>,
    started: Instant,
) -> RunReport {
    let interrupted = ctx.cancel.is_cancelled();
    let report = RunReport {
        command: command.to_string(),
        ok: !hosts.iter().any(HostResult::failed)
            && stops.halted.is_none()
            && stops.lock_conflict.is_none()
            && !interrupted,
        release,
        halted: stops.halted,
        lock_conflict: stops.lock_conflict,
        counts: Counts::of(&hosts),
        interrupted,
        hosts,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    ctx.reporter.finished(&report);
    report
}
