//! The host session: one host's connection and what this run learned and did there (file
//! cache, compose flavour, lock, failure state), its step sequences, Ctrl-C observed. Its
//! fields are private: the fleet run asks through methods that return outcomes, and every
//! method that talks to the host first takes a turn of the run's fork gate (`RunContext::gate`).
//! May import plan, remote, steps, health, output, report, secrets, transport; never the fleet.

mod blue_green;
mod cancel;
mod compose_preview;
mod diagnose;
mod gate;
mod handshakes;
mod health;
mod images;
mod lock;
mod preview;
mod query;
mod rollback;
mod sequence;
mod stack;
mod sudo_refusal;
mod swarm;
mod swarm_manager;
mod view;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::future::join_all;

pub use gate::{Gate, Turn};
pub use handshakes::{HandshakeSlots, PER_SERVER};
pub use lock::{LockOutcome, ReleaseError};

use crate::plan::{Action, Become, Plan, PlannedStep};
use crate::remote::compose::{ComposeFlavor, ComposeTool};
use crate::remote::frame::Reply;
use crate::remote::probe::RemoteFile;
use crate::remote::script::Script;
use crate::remote::tree::Listing;
use crate::remote::{self, long_script, sudo};
use crate::report::timeline::{Phase, Timeline};
use crate::report::{ContainerWords, Event, HostResult, Outcome, Reporter, StepResult};
use crate::secrets::Redactor;
use crate::transport::{
    Capture, Connection, Connector, Cut, ExecOutput, OutputSink, TransportError,
};

pub use crate::steps::failure_text;
use crate::steps::{Done, HostView, Learned, require_success};
pub use cancel::{Cancel, CancelHandle};
pub use preview::Look;
pub use query::Query;
use sequence::Purpose;
pub use swarm::SwarmRendezvous;
pub use view::ViewEnd;

/// What every host task shares during a run.
pub struct RunContext<'a> {
    pub plan: &'a Plan,
    pub reporter: &'a dyn Reporter,
    /// The run's `--forks` bound: every call that talks to a host goes through it.
    pub gate: Gate,
    pub cancel: Cancel,
    /// Report each line the steps' commands print as it comes (`Event::Output`, `-v`).
    pub stream_output: bool,
    /// The swarm's join ticket, from the run's first manager to the hosts that join after it.
    pub swarm: SwarmRendezvous,
}

impl<'a> RunContext<'a> {
    pub fn new(plan: &'a Plan, reporter: &'a dyn Reporter, forks: usize, cancel: Cancel) -> Self {
        Self {
            plan,
            reporter,
            gate: Gate::new(forks),
            cancel,
            stream_output: false,
            swarm: SwarmRendezvous::new(plan),
        }
    }
}

/// How a host came out of `run_steps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepsOutcome {
    /// Nothing failed on the host (its steps may have been skipped or interrupted).
    Finished,
    /// The host failed, in these steps or before them.
    Failed,
}

/// How a parked host connects again (the run's connector and the host's spec, bound).
pub type Reconnect<T> =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<T, TransportError>> + Send>> + Send + Sync>;

/// One host's connection and what this run learned and did there.
pub struct HostSession<T: Connection> {
    index: usize,
    conn: Option<T>,
    /// Parked: the connection closed while the run waits (the lock stays held on the host);
    /// this opens another when the host is next talked to.
    parked: Option<Reconnect<T>>,
    host_name: String,
    /// Masks secrets in the scripts logged at debug level.
    redactor: Redactor,
    /// What the probe found at each destination; updated after each upload.
    remote_files: HashMap<String, Option<RemoteFile>>,
    /// What the probe found under each directory a step lists; updated after it wrote.
    remote_trees: HashMap<String, Listing>,
    compose: ComposeFlavor,
    /// The flavour the inventory forces on this host (`None`: found there).
    compose_forced: Option<ComposeTool>,
    probed: bool,
    /// The release `current` pointed at before this run's `activate`.
    previous_release: Option<String>,
    activated: bool,
    /// This run holds the host's lock.
    locked: bool,
    /// This run holds the host's lock through another host of the run (see `shares_lock`).
    lock_shared: bool,
    /// Not deployed to by this run, on purpose (a swarm manager other than the one used):
    /// its steps are not recorded, its `note` says why.
    set_aside: bool,
    /// The `on_change` handlers a file step that changed on this host notified in this run.
    notified: HashSet<usize>,
    result: HostResult,
    started: Instant,
}

/// Connects to every host of the plan at once, at most `handshakes` handshakes in flight
/// (and `handshakes::PER_SERVER` to one server).
pub async fn connect_all<C: Connector>(
    connector: &C,
    plan: &Plan,
    handshakes: usize,
    reporter: &dyn Reporter,
) -> Vec<HostSession<C::Conn>> {
    let gate = HandshakeSlots::new(handshakes);
    join_all(
        (0..plan.hosts.len()).map(|index| connect_paced(connector, plan, index, &gate, reporter)),
    )
    .await
}

/// Connects to host `index` of the plan once a handshake slot to its server is free; a host
/// that cannot be reached comes back failed, not connected. Its timeline starts before the
/// wait for the slot.
pub async fn connect_paced<C: Connector>(
    connector: &C,
    plan: &Plan,
    index: usize,
    handshakes: &HandshakeSlots,
    reporter: &dyn Reporter,
) -> HostSession<C::Conn> {
    let queued = Instant::now();
    let (mut session, connected) = {
        let spec = &plan.hosts[index].connect;
        let _slot = handshakes.acquire(&spec.address, spec.port).await;
        // Boxed: the handshake's state exists for the hosts holding a slot only.
        Box::pin(connect_host_since(connector, plan, index, reporter, queued)).await
    };
    if let Err(e) = connected {
        session.fail(reporter, &e);
    }
    session
}

/// Connects to host `index` of the plan; the session, and the connection's error when there
/// is none (not recorded as the host's failure: the caller decides).
pub async fn connect_host<C: Connector>(
    connector: &C,
    plan: &Plan,
    index: usize,
    reporter: &dyn Reporter,
) -> (HostSession<C::Conn>, Result<(), String>) {
    connect_host_since(connector, plan, index, reporter, Instant::now()).await
}

/// `connect_host` for a host whose run (and timeline) began at `started`.
async fn connect_host_since<C: Connector>(
    connector: &C,
    plan: &Plan,
    index: usize,
    reporter: &dyn Reporter,
    started: Instant,
) -> (HostSession<C::Conn>, Result<(), String>) {
    let connecting = Instant::now();
    let connected = connector.connect(&plan.hosts[index].connect).await;
    let mut session = unconnected(plan, index, reporter, started);
    session.result.timeline.record(Phase::Connect, connecting);
    match connected {
        Ok(conn) => {
            session.conn = Some(conn);
            (session, Ok(()))
        }
        Err(e) => (session, Err(e.to_string())),
    }
}

/// A session for host `index` that is not connected (yet); the reporter hears it started.
pub fn unconnected<T: Connection>(
    plan: &Plan,
    index: usize,
    reporter: &dyn Reporter,
    started: Instant,
) -> HostSession<T> {
    let hp = &plan.hosts[index];
    reporter.event(&Event::HostStarted {
        host: &hp.host.name,
    });
    HostSession {
        index,
        conn: None,
        parked: None,
        host_name: hp.host.name.clone(),
        redactor: plan.redactor.clone(),
        remote_files: HashMap::new(),
        remote_trees: HashMap::new(),
        compose: ComposeFlavor::Unknown,
        compose_forced: hp.forced_compose(),
        probed: false,
        previous_release: None,
        activated: false,
        locked: false,
        lock_shared: false,
        set_aside: false,
        notified: HashSet::new(),
        result: HostResult {
            timeline: Timeline::new(started),
            ..HostResult::new(&hp.host.name, &hp.host.address)
        },
        started,
    }
}

impl<T: Connection> HostSession<T> {
    /// The host failed outside a step: it runs nothing more, and the reporter hears it now
    /// (the first error only: what followed from it adds nothing).
    pub fn fail(&mut self, reporter: &dyn Reporter, error: &str) {
        if self.result.error.is_some() {
            return;
        }
        let error = self.redactor.redact(error);
        reporter.event(&Event::HostFailed {
            host: &self.host_name,
            error: &error,
        });
        self.result.error = Some(error);
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    pub fn failed(&self) -> bool {
        self.result.failed()
    }

    pub fn name(&self) -> &str {
        &self.host_name
    }

    /// The host's place in the plan (`plan.hosts[index]`).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Why the host was not (fully) deployed although nothing failed on it; replaces an
    /// earlier note.
    pub fn note(&mut self, text: &str) {
        self.result.note = Some(text.to_string());
    }

    /// This run leaves the host alone (`why` is its note): its connection, if any, is closed
    /// now, and it runs no step, takes no lock and gets no audit line.
    pub async fn set_aside(&mut self, why: &str) {
        if let Some(conn) = self.conn.take() {
            conn.close().await;
        }
        self.set_aside = true;
        self.note(why);
    }

    /// Closes the connection while the run waits for other hosts (its memory is what a run of
    /// thousands of hosts cannot hold at once); `reconnect` opens another when the host is
    /// next talked to. What the run holds on the host (its lock) stays held.
    pub async fn park(&mut self, reconnect: Reconnect<T>) {
        if let Some(conn) = self.conn.take() {
            conn.close().await;
            self.parked = Some(reconnect);
        }
    }

    /// Whether the connection was closed to be opened again (`park`).
    pub fn is_parked(&self) -> bool {
        self.parked.is_some()
    }

    /// Connects a parked host again (a host that cannot be reached then fails); whether the
    /// host is connected.
    async fn unpark(&mut self, reporter: &dyn Reporter) -> bool {
        if let Some(reconnect) = self.parked.take() {
            match reconnect().await {
                Ok(conn) => self.conn = Some(conn),
                Err(e) => self.fail(reporter, &format!("cannot connect again: {e}")),
            }
        }
        self.conn.is_some()
    }

    /// Closes the connection now, when this run will send the host nothing more: what it
    /// held (sockets, buffers, the server's session) is freed while other hosts still work.
    pub async fn disconnect(&mut self) {
        if let Some(conn) = self.conn.take() {
            let closing = Instant::now();
            conn.close().await;
            self.result.timeline.record(Phase::Disconnect, closing);
        }
    }

    /// What the run did on this host so far.
    pub fn result(&self) -> &HostResult {
        &self.result
    }

    /// Starts opening channels for the next `channels` commands this run will surely send the
    /// host, so that their round trips overlap the wait before them. Not a turn of the fork
    /// gate: nothing runs on the host until a command takes the channel.
    pub fn keep_ready(&self, channels: usize) {
        if let Some(conn) = &self.conn {
            conn.keep_ready(channels);
        }
    }

    fn conn(&self) -> Result<&T, String> {
        self.conn
            .as_ref()
            .ok_or_else(|| "not connected".to_string())
    }

    /// Runs a script on the host, `stdin` written as the pieces given, back to back.
    async fn exec(&self, script: &str, stdin: &[&[u8]]) -> Result<ExecOutput, String> {
        self.exec_cut(script, stdin, None, std::future::pending())
            .await
            .map_err(|cut| cut.error.to_string())
    }

    /// Runs a script on the host through sudo when `become_as` says so: the sudo password (if
    /// any) goes first on stdin, then `stdin`; never on the command line.
    async fn exec_as(
        &self,
        script: &str,
        stdin: &[&[u8]],
        become_as: Option<&Become>,
    ) -> Result<ExecOutput, String> {
        self.exec_cut(script, stdin, become_as, std::future::pending())
            .await
            .map_err(|cut| cut.error.to_string())
    }

    /// `exec_as` that stops the script on the host when `abort` resolves; a script cut short
    /// keeps the output it sent. (Dropship's own scripts: their output is kept whole, up to
    /// `transport::CAPTURE_LIMIT`.)
    async fn exec_cut(
        &self,
        script: &str,
        stdin: &[&[u8]],
        become_as: Option<&Become>,
        abort: impl Future<Output = ()> + Send,
    ) -> Result<ExecOutput, Cut> {
        let mut capture = Capture::default();
        let ended = self
            .exec_into(script, stdin, become_as, &mut capture, abort)
            .await;
        let mut out = capture.finish(ended)?;
        if !out.success()
            && let Some(refusal) = self.sudo_refusal(become_as, &out.stdout, &out.stderr).await
        {
            out.stderr = refusal.into_bytes();
        }
        Ok(out)
    }

    /// The one way a script reaches the host: through sudo when `become_as` says so (the sudo
    /// password, if any, first on stdin, then `stdin`; never on the command line), its output
    /// streamed into `sink` as it arrives, stopped on the host when `abort` resolves.
    async fn exec_into(
        &self,
        script: &str,
        stdin: &[&[u8]],
        become_as: Option<&Become>,
        sink: &mut dyn OutputSink,
        abort: impl Future<Output = ()> + Send,
    ) -> Result<Option<u32>, TransportError> {
        let conn = self.conn().map_err(TransportError::Protocol)?;
        tracing::debug!(host = %self.host_name, script = %self.redactor.redact(script), "exec");
        // A script too long for a command line goes on stdin, behind a loader (first after the
        // sudo password line, which sudo reads before the loader runs).
        let sendable = long_script::sendable(script, as_user(script, become_as).0.len());
        let (command, password_line) = as_user(&sendable.command, become_as);
        let first: Vec<&[u8]> = password_line
            .as_deref()
            .map(str::as_bytes)
            .into_iter()
            .chain(sendable.stdin_first.as_deref())
            .collect();
        let stdin: Vec<&[u8]> = first.into_iter().chain(stdin.iter().copied()).collect();
        conn.exec_streamed_until(&command, &stdin, sink, abort)
            .await
    }

    /// Runs the plan's steps `range` in order, as few sessions as possible. A failed step ends
    /// the host's run: the rest are reported skipped. After cancellation, steps not yet started
    /// are skipped. `unlock` (the lock's audit-and-release script, `lock::release_and_audit_epilogue`)
    /// rides at the end of the last session when it can; then the host is no longer `locked`.
    pub async fn run_steps(
        &mut self,
        ctx: &RunContext<'_>,
        range: Range<usize>,
        unlock: Option<&str>,
    ) -> StepsOutcome {
        self.run_step_range(ctx, range, unlock).await;
        ctx.swarm.host_finished(self.index, &self.host_name);
        if self.failed() {
            StepsOutcome::Failed
        } else {
            StepsOutcome::Finished
        }
    }

    async fn run_step_range(
        &mut self,
        ctx: &RunContext<'_>,
        range: Range<usize>,
        unlock: Option<&str>,
    ) {
        let steps = &ctx.plan.hosts[self.index].steps[range];
        if steps.is_empty() || self.set_aside {
            return;
        }
        if (!self.is_connected() && !self.is_parked()) || self.failed() {
            self.skip(ctx, steps.iter().map(|s| s.name.as_str()), "host failed");
            return;
        }
        let _turn = ctx.gate.turn().await;
        if !self.unpark(ctx.reporter).await {
            self.skip(ctx, steps.iter().map(|s| s.name.as_str()), "host failed");
            return;
        }
        // Boxed: the steps' state is allocated for the hosts holding a turn only, not for
        // each of the thousands of hosts that wait for one.
        Box::pin(self.run_step_range_now(ctx, steps, unlock)).await;
    }

    async fn run_step_range_now(
        &mut self,
        ctx: &RunContext<'_>,
        steps: &[PlannedStep],
        unlock: Option<&str>,
    ) {
        let started = Instant::now();
        if !self.probed {
            self.probed = true;
            if let Err(e) = self.probe(ctx.plan).await {
                self.fail(ctx.reporter, &e);
                self.skip(ctx, steps.iter().map(|s| s.name.as_str()), "host failed");
                self.result.timeline.record(Phase::Steps, started);
                return;
            }
        }
        if self
            .run_sequence(ctx, steps, Purpose::Deploy, unlock.filter(|_| self.locked))
            .await
        {
            self.locked = false;
        }
        self.result.timeline.record(Phase::Steps, started);
    }

    /// Points `current` back at `to` and re-runs the steps that follow activation; `failed`
    /// is the release to mark failed on the way (this run's, when a failed batch is undone).
    /// (The caller holds a turn of the gate.)
    async fn roll_back(&mut self, ctx: &RunContext<'_>, to: &str, failed: Option<&str>) {
        let host_plan = &ctx.plan.hosts[self.index];
        let Some(site) = &host_plan.release else {
            return;
        };
        if !self.probed {
            // `dropship rollback` runs no deploy steps first: learn the remote files here.
            self.probed = true;
            if let Err(e) = self.probe(ctx.plan).await {
                self.fail(ctx.reporter, &e);
                return;
            }
        }
        let name = format!("rollback: activate {to}");
        ctx.reporter.event(&Event::StepStarted {
            host: &self.host_name,
            step: &name,
        });
        let started = Instant::now();
        let script = match failed {
            Some(failed) => remote::release::undo(site, to, failed),
            None => remote::release::activate(site, to),
        };
        let switched = match self.exec(&script, &[]).await {
            Ok(out) => require_success(&out, &self.redactor).map_err(|f| f.0),
            Err(e) => Err(e),
        };
        let elapsed = started.elapsed().as_millis() as u64;
        if let Err(e) = switched {
            self.record(ctx, &name, Done::new(Outcome::Failed, Some(e)), elapsed);
            return;
        }
        self.record(
            ctx,
            &name,
            Done::new(Outcome::Changed, Some(format!("current → {to}"))),
            elapsed,
        );
        // `current` has moved back, whatever the steps below do: say so in the result.
        self.result.rolled_back = Some(to.to_string());
        let after = &host_plan.steps[host_plan.post_activate.min(host_plan.steps.len())..];
        if failed.is_some() {
            // Undoing a failed deploy prunes no release: the failed one stays for inspection
            // until the next good deploy removes it.
            let after: Vec<PlannedStep> = after
                .iter()
                .filter(|s| !matches!(s.action, Action::PruneReleases(_)))
                .cloned()
                .collect();
            self.run_sequence(ctx, &after, Purpose::Rollback, None)
                .await;
        } else {
            self.run_sequence(ctx, after, Purpose::Rollback, None).await;
        }
    }

    /// Marks steps as skipped without running them.
    pub fn skip<'s>(
        &mut self,
        ctx: &RunContext<'_>,
        names: impl Iterator<Item = &'s str>,
        reason: &str,
    ) {
        for name in names {
            self.record(
                ctx,
                name,
                Done::new(Outcome::Skipped, Some(reason.to_string())),
                0,
            );
        }
    }

    fn record(&mut self, ctx: &RunContext<'_>, name: &str, done: Done, elapsed_ms: u64) {
        self.record_with_words(ctx, name, done, elapsed_ms, ContainerWords::default());
    }

    /// `record` with what the containers said after the step failed (`diagnose`). Everything
    /// a step result holds passes the run's redactor here.
    fn record_with_words(
        &mut self,
        ctx: &RunContext<'_>,
        name: &str,
        done: Done,
        elapsed_ms: u64,
        words: ContainerWords,
    ) {
        let result = step_result(ctx, name, done, elapsed_ms, words);
        ctx.reporter.event(&Event::StepFinished {
            host: &self.host_name,
            step: &result,
        });
        self.result.steps.push(result);
    }

    /// Keeps a step's result that was reported when the step ended (`report_live`).
    fn record_reported(&mut self, result: StepResult) {
        self.result.steps.push(result);
    }

    /// What the step kinds may read of what this session knows about its host.
    fn view(&self) -> HostView<'_> {
        HostView {
            files: &self.remote_files,
            trees: &self.remote_trees,
            compose: self.compose,
            redactor: &self.redactor,
        }
    }

    /// Takes in what a step's success told about the host.
    fn learn(&mut self, learned: Learned) {
        match learned {
            Learned::Wrote { files, listing } => {
                for (dest, file) in files {
                    self.remote_files.insert(dest, Some(file));
                }
                if let Some((root, listing)) = listing {
                    self.remote_trees.insert(root, listing);
                }
            }
            Learned::Activated { previous } => {
                self.previous_release = previous;
                self.activated = true;
            }
        }
    }

    /// One round trip that learns every destination's checksum, mode and owner.
    async fn probe(&mut self, plan: &Plan) -> Result<(), String> {
        let Some((script, probe_as)) = self.probe_request(plan) else {
            return Ok(());
        };
        let request = remote::frame::Framed::new(&script);
        let out = self
            .exec_as(request.script(), &[], probe_as.as_ref())
            .await?;
        self.accept_probe(plan, &request.reply(&out.stdout), &out)
    }

    /// The probe this host needs (every destination's checksum) and the user to run it as, or
    /// `None` when the plan has no file step.
    fn probe_request(&self, plan: &Plan) -> Option<(Script, Option<Become>)> {
        let dests = upload_dests(plan, self.index);
        let trees = tree_roots(plan, self.index);
        if dests.is_empty() && trees.is_empty() {
            return None;
        }
        Some((remote::probe::probe(&dests, &trees), self.file_reader(plan)))
    }

    /// Who reads the host's destination files. Files written as root may be readable by root
    /// only: through sudo when a file step uses `become` (as root when one does, else as the
    /// first such step's user).
    fn file_reader(&self, plan: &Plan) -> Option<Become> {
        let file_becomes: Vec<&Become> = plan.hosts[self.index]
            .steps
            .iter()
            .filter(|s| s.action.places_files())
            .filter_map(|s| s.become_as.as_ref())
            .collect();
        file_becomes
            .iter()
            .find(|b| b.user.is_none())
            .or(file_becomes.first())
            .map(|b| (*b).clone())
    }

    fn accept_probe(&mut self, plan: &Plan, reply: &Reply, out: &ExecOutput) -> Result<(), String> {
        let dests = upload_dests(plan, self.index);
        let trees = tree_roots(plan, self.index);
        let Some(probed) = remote::probe::parse_probe(reply, &dests, &trees) else {
            return Err(format!(
                "could not inspect the host's files: {}",
                failure_text(out, &self.redactor)
            ));
        };
        for (dest, file) in dests.iter().zip(probed.files) {
            self.remote_files.insert((*dest).to_string(), file);
        }
        for (root, listing) in trees.iter().zip(probed.trees) {
            self.remote_trees.insert((*root).to_string(), listing);
        }
        self.probed = true;
        Ok(())
    }

    /// The probe script, when it can ride along with another command this run sends anyway
    /// (the lock): it needs no `become`. Saves one round trip and one remote shell per host.
    fn piggyback_probe(&self, plan: &Plan) -> Option<Script> {
        if self.probed {
            return None;
        }
        match self.probe_request(plan) {
            Some((script, None)) => Some(script),
            _ => None,
        }
    }

    /// Takes the output of a probe sent with `piggyback_probe`.
    fn accept_piggybacked_probe(&mut self, plan: &Plan, reply: &Reply, out: &ExecOutput) {
        // A failure here is not fatal: the regular probe runs again before the first step.
        if self.accept_probe(plan, reply, out).is_err() {
            self.probed = false;
        }
    }

    /// Closes the connection and hands back the host's result.
    pub async fn finish(mut self, reporter: &dyn Reporter) -> HostResult {
        self.disconnect().await;
        self.result.elapsed_ms = self.started.elapsed().as_millis() as u64;
        reporter.event(&Event::HostFinished {
            result: &self.result,
        });
        self.result
    }
}

/// `script` as it runs for `become_as` (wrapped in sudo) and the line that must go first on
/// its stdin (the sudo password), if any.
fn as_user(script: &str, become_as: Option<&Become>) -> (String, Option<String>) {
    match become_as {
        None => (script.to_string(), None),
        Some(b) => (
            sudo::wrap(script, b.user.as_deref(), b.password.is_some()),
            b.password.as_ref().map(|p| format!("{}\n", p.expose())),
        ),
    }
}

/// Every upload destination of a host's plan, in step order.
fn upload_dests(plan: &Plan, index: usize) -> Vec<&str> {
    plan.hosts[index]
        .steps
        .iter()
        .flat_map(|s| s.action.uploads().iter().map(|u| u.dest.as_str()))
        .collect()
}

/// Every directory of a host's plan whose entries the probe lists (`Act::tree_root`).
fn tree_roots(plan: &Plan, index: usize) -> Vec<&str> {
    plan.hosts[index]
        .steps
        .iter()
        .filter_map(|s| s.action.tree_root())
        .collect()
}

/// A step's result as reported and kept: every text it holds masked by the run's redactor.
fn step_result(
    ctx: &RunContext<'_>,
    name: &str,
    done: Done,
    elapsed_ms: u64,
    words: ContainerWords,
) -> StepResult {
    let redact = |text: &str| ctx.plan.redactor.redact(text);
    StepResult {
        name: name.to_string(),
        outcome: done.outcome,
        detail: done.detail.map(|d| redact(&d)),
        output: done.output.map(|o| redact(&o)),
        words: diagnose::redacted(words, &redact),
        elapsed_ms,
    }
}
