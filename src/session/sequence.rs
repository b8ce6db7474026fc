//! A host's step sequence: which consecutive steps share one driver script, running it (and
//! stopping it on Ctrl-C), and one result per step from its output.

use std::time::Instant;

use super::{HostSession, RunContext, step_result};
use crate::plan::{Action, Become, Notify, PlannedStep};
use crate::remote::compose::{self, ComposeFlavor};
use crate::remote::driver::{self, Driver};
use crate::remote::frame::Frame;
use crate::remote::{self, split::StepSplitter};
use crate::report::{ContainerWords, Event, Outcome, Reporter, StepResult};
use crate::steps::{Done, HostView, Learned, Prepared};
use crate::transport::{Connection, ExecOutput, OutputSink, TransportError};

/// Why a sequence of steps runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// The run's own steps: an interrupt skips those not yet started.
    Deploy,
    /// A rollback's steps (named `rollback: STEP`): they run to the end once begun.
    Rollback,
}

impl<T: Connection> HostSession<T> {
    /// Runs `steps` in order and stops at the first failure (the rest are reported skipped).
    /// Consecutive steps with the same `become` share one session, except health checks
    /// (retried over time in sessions of their own) and image pruning (a survey, then a
    /// removal when something may go). `epilogue` runs at the end of the
    /// session that runs the last step, whatever happened in it, when that session needs no
    /// `become`; returns whether it ran to its end.
    pub(super) async fn run_sequence(
        &mut self,
        ctx: &RunContext<'_>,
        steps: &[PlannedStep],
        purpose: Purpose,
        epilogue: Option<&str>,
    ) -> bool {
        let mut epilogue_done = false;
        let first_result = self.result.steps.len();
        let mut start = 0;
        while start < steps.len() {
            let rest = &steps[start..];
            // Checked before every session and health check, whatever ended the last one.
            if self.stopped(purpose, first_result) {
                self.skip_steps(ctx, rest, purpose, "after a failed step");
                break;
            }
            if purpose == Purpose::Deploy && ctx.cancel.is_cancelled() {
                self.skip_steps(ctx, rest, purpose, "interrupted");
                break;
            }
            let len = if rest[0].action.runs_alone() {
                ctx.reporter.event(&Event::StepStarted {
                    host: &self.host_name,
                    step: &step_name(&rest[0], purpose),
                });
                let started = Instant::now();
                let become_as = rest[0].become_as.as_ref();
                let done = match &rest[0].action {
                    Action::Health(check) => self
                        .health(check, become_as, &ctx.cancel)
                        .await
                        .unwrap_or_else(|e| Done::new(Outcome::Failed, Some(e))),
                    Action::PruneImages(prune) => self.prune_images(ctx, prune, become_as).await,
                    // Its failures carry the failed color's own words already.
                    Action::BlueGreen(switch) => {
                        self.blue_green(ctx, switch, become_as, purpose).await
                    }
                    Action::Stack(step) => self.stack(ctx, step, become_as, purpose).await,
                    Action::Swarm(step) => self.swarm(ctx, step, become_as, purpose).await,
                    other => unreachable!("{} does not run alone", other.describe()),
                };
                let elapsed = elapsed_ms(started);
                let words = self.words_after(ctx, &rest[0], &done).await;
                self.record_step_with_words(ctx, &rest[0], purpose, done, elapsed, words);
                1
            } else {
                let become_as = rest[0].become_as.as_ref();
                let len = rest
                    .iter()
                    .position(|s| s.become_as.as_ref() != become_as || s.action.runs_alone())
                    .unwrap_or(rest.len());
                let last = start + len == steps.len();
                let epilogue = epilogue.filter(|_| last && become_as.is_none());
                epilogue_done |= self.run_session(ctx, &rest[..len], purpose, epilogue).await;
                len
            };
            start += len;
        }
        // Steps left out because of an interrupt: the host was not (fully) deployed.
        let interrupted = self.result.steps[first_result..]
            .iter()
            .any(|s| s.outcome == Outcome::Skipped && s.detail.as_deref() == Some("interrupted"));
        if interrupted && self.result.note.is_none() {
            self.result.note = Some("interrupted".into());
        }
        epilogue_done
    }

    /// Whether this host may run nothing more: for its own steps, once anything failed on it
    /// (a step, the connection, the probe); for a rollback, once a rollback step failed.
    fn stopped(&self, purpose: Purpose, first_result: usize) -> bool {
        match purpose {
            Purpose::Deploy => self.failed(),
            Purpose::Rollback => self.result.steps[first_result..]
                .iter()
                .any(|s| s.outcome == Outcome::Failed),
        }
    }

    /// Runs `steps` (same `become`, none that runs alone) in one driver script. Returns whether the
    /// epilogue ran to its end.
    async fn run_session(
        &mut self,
        ctx: &RunContext<'_>,
        steps: &[PlannedStep],
        purpose: Purpose,
        epilogue: Option<&str>,
    ) -> bool {
        let started = Instant::now();
        // Each step is decided here (`Local`) or sent as a segment of one script (`Sent`);
        // a step known to fail ends the script before it.
        let mut slots = Vec::new();
        let mut segments = Vec::new();
        // Handlers notified by a file step sent in this script: a sent file step reports
        // `changed` unless it fails, and a failure ends the script before the handler, so
        // the handler rides in the same script.
        let mut notified_here = Vec::new();
        for (tag, step) in steps.iter().enumerate() {
            let prepared = match step.notify {
                Notify::Handler(id)
                    if !self.notified.contains(&id) && !notified_here.contains(&id) =>
                {
                    Prepared::Local(Done::new(
                        Outcome::Skipped,
                        Some("not notified: no file it watches changed".into()),
                    ))
                }
                _ => step.action.prepare(&self.view(), &step.name, tag),
            };
            if let (Notify::Trigger(id), Prepared::Remote(_)) = (step.notify, &prepared) {
                notified_here.push(id);
            }
            match prepared {
                Prepared::Remote(segment) => {
                    segments.push(segment);
                    slots.push(None);
                }
                Prepared::Local(done) => {
                    let fails = done.outcome == Outcome::Failed;
                    slots.push(Some(done));
                    if fails {
                        break;
                    }
                }
            }
        }
        let cut = slots.len();
        // The step each segment belongs to, and what was reported of it while the script ran.
        let sent: Vec<usize> = (0..cut).filter(|&i| slots[i].is_none()).collect();
        let mut live: Vec<Option<Reported>> = (0..sent.len()).map(|_| None).collect();
        let detect = self.compose == ComposeFlavor::Unknown
            && steps[..cut].iter().any(|s| s.action.needs_compose());
        let mut outputs = Vec::new();
        let mut epilogue_done = false;
        let mut cut_short = false;
        let mut stopped = false;
        let mut transport_error = None;
        if !segments.is_empty() {
            let nonce = remote::frame::nonce();
            let preamble = if detect {
                compose::detect(self.compose_forced).into_string()
            } else {
                String::new()
            };
            let driver = Driver::new(&nonce, &preamble, &segments, epilogue);
            let become_as = steps[0].become_as.as_ref();
            // Output is split per step, masked and bounded while it arrives; each step that
            // ends well is judged and reported then, not when the whole script ends.
            let mut splitter = StepSplitter::new(&ctx.plan.redactor, &nonce, segments.len());
            if ctx.stream_output {
                splitter = splitter.stream_lines();
            }
            let (base, known) = (self.view(), self.compose);
            let host = self.host_name.as_str();
            let started = |index: usize| {
                ctx.reporter.event(&Event::StepStarted {
                    host,
                    step: &step_name(&steps[sent[index]], purpose),
                });
            };
            started(0);
            let mut report_live =
                |index: usize, out: &ExecOutput, ms: Option<u64>, results: &[Frame]| {
                    // The driver goes on with the next segment unless this one failed there.
                    let next = index + 1 < sent.len() && out.status == Some(0);
                    let step = &steps[sent[index]];
                    let compose = match known {
                        ComposeFlavor::Unknown => compose::flavor(results).unwrap_or(known),
                        flavor => flavor,
                    };
                    let view = HostView { compose, ..base };
                    let mut done = match step.action.judge(&view, out) {
                        Ok(done) => done,
                        Err(failure) => failure.into(),
                    };
                    // A failure is reported after the script, with what the containers said.
                    if done.outcome == Outcome::Failed {
                        if next {
                            started(index + 1);
                        }
                        return;
                    }
                    let learned = done.learned.take();
                    let outcome = done.outcome;
                    let name = step_name(step, purpose);
                    let result = step_result(ctx, &name, done, ms.unwrap_or(0), Default::default());
                    ctx.reporter.event(&Event::StepFinished {
                        host,
                        step: &result,
                    });
                    live[index] = Some(Reported {
                        learned,
                        outcome,
                        result,
                    });
                    if next {
                        started(index + 1);
                    }
                };
            let mut sink = LiveSteps {
                splitter: &mut splitter,
                on_ended: &mut report_live,
                reporter: ctx.reporter,
                host,
            };
            let status = match self
                .run_driver(ctx, &driver, &nonce, become_as, purpose, &mut sink)
                .await
            {
                Ok(status) => status,
                // What the driver printed before it was cut off still tells which steps
                // finished and which one was running.
                Err(error) => {
                    transport_error = Some(error.to_string());
                    None
                }
            };
            splitter.end_lines();
            for line in splitter.take_lines() {
                ctx.reporter.event(&Event::Output { host, line: &line });
            }
            let split = splitter.finish(status);
            if detect && let Some(flavor) = compose::flavor(&split.results) {
                self.compose = flavor;
            }
            epilogue_done = split.epilogue_done;
            cut_short = split.cut_short;
            stopped = split.stopped;
            outputs = split.outputs.into_iter().zip(split.elapsed_ms).collect();
        }
        let session_ms = elapsed_ms(started);
        let sent = outputs.len();
        // Nothing ran: sudo may have refused the script (its reason, asked of the host, says
        // which sudoers rule is missing).
        let refusal = match (&outputs[..], steps[0].become_as.as_ref()) {
            ([(out, _)], Some(become_as)) if cut_short && transport_error.is_none() => {
                self.sudo_refusal(Some(become_as), &out.stdout, &out.stderr)
                    .await
            }
            _ => None,
        };
        let mut outputs = outputs.into_iter().enumerate();
        let mut failed = false;
        let mut interrupted = false;
        let after_failure = if ctx.cancel.is_aborted() {
            "interrupted"
        } else {
            "after a failed step"
        };
        for (step, slot) in steps.iter().zip(slots) {
            let (done, ms) = if failed {
                (Done::new(Outcome::Skipped, Some(after_failure.into())), 0)
            } else if interrupted {
                (Done::new(Outcome::Skipped, Some("interrupted".into())), 0)
            } else {
                match slot {
                    Some(done) => (done, 0),
                    None if stopped && outputs.len() == 0 => {
                        // The driver stopped before this step: the run was interrupted.
                        interrupted = true;
                        (Done::new(Outcome::Skipped, Some("interrupted".into())), 0)
                    }
                    None => match (outputs.next(), &transport_error) {
                        // The step that was running when the connection failed.
                        (Some((i, (out, _))), Some(e)) if cut_short && i + 1 == sent => (
                            Done::new(Outcome::Failed, Some(cut_failure(e, &out))),
                            session_ms,
                        ),
                        (Some((0, _)), _) if refusal.is_some() => {
                            (Done::new(Outcome::Failed, refusal.clone()), session_ms)
                        }
                        (Some((i, _)), _) if live[i].is_some() => {
                            let Some(reported) = live[i].take() else {
                                unreachable!()
                            };
                            if let Some(learned) = reported.learned {
                                self.learn(learned);
                            }
                            if let Notify::Trigger(id) = step.notify
                                && reported.outcome == Outcome::Changed
                            {
                                self.notified.insert(id);
                            }
                            self.record_reported(reported.result);
                            continue;
                        }
                        (Some((_, (out, ms))), _) => {
                            (self.judge(&step.action, &out), ms.unwrap_or(session_ms))
                        }
                        (None, Some(e)) => {
                            (Done::new(Outcome::Failed, Some(e.clone())), session_ms)
                        }
                        (None, None) => (
                            Done::new(
                                Outcome::Failed,
                                Some("the session ended before this step".into()),
                            ),
                            session_ms,
                        ),
                    },
                }
            };
            // Sticky: every step after a failed one in this session is skipped.
            failed |= done.outcome == Outcome::Failed;
            if let Notify::Trigger(id) = step.notify
                && done.outcome == Outcome::Changed
            {
                self.notified.insert(id);
            }
            // A connection that failed has nothing more to tell.
            let words = match transport_error {
                None => self.words_after(ctx, step, &done).await,
                Some(_) => ContainerWords::default(),
            };
            self.record_step_with_words(ctx, step, purpose, done, ms, words);
        }
        // Steps cut off after a step known to fail.
        self.skip_steps(ctx, &steps[cut..], purpose, after_failure);
        epilogue_done
    }

    /// Runs a driver to its end. Interrupted while it runs (the first Ctrl-C), a deploy's
    /// driver is asked to start no further segment, the running one going on to its end;
    /// aborted (the second Ctrl-C, SIGTERM), it is stopped on the host. Both requests go on
    /// channels of their own, as the driver's user: round trips paid only by a stopped run.
    async fn run_driver(
        &self,
        ctx: &RunContext<'_>,
        driver: &Driver,
        nonce: &str,
        become_as: Option<&Become>,
        purpose: Purpose,
        sink: &mut dyn OutputSink,
    ) -> Result<Option<u32>, TransportError> {
        let stdin = driver.stdin_pieces();
        // The driver's markers carry its nonce: the kill request finds it by them.
        let killable =
            self.exec_killable(&driver.script, &stdin, become_as, sink, nonce, &ctx.cancel);
        let mut killable = std::pin::pin!(killable);
        let stop_wanted = async {
            match purpose {
                Purpose::Deploy => ctx.cancel.cancelled().await,
                Purpose::Rollback => std::future::pending().await,
            }
        };
        let result = tokio::select! {
            result = &mut killable => return result,
            () = stop_wanted => {
                let stop = driver::stop_request(nonce);
                let request = self.exec_helper(&stop, become_as);
                tokio::join!(&mut killable, request).0
            }
        };
        let cleanup = driver::stop_cleanup(nonce);
        self.exec_helper(&cleanup, become_as).await;
        result
    }

    /// A stop, cleanup or kill request: a host that does not answer within
    /// `HELPER_WAIT` is not waited for (an interrupted run must end).
    async fn exec_helper(&self, script: &str, become_as: Option<&Become>) {
        let request = self.exec_cut(script, &[], become_as, std::future::pending());
        if tokio::time::timeout(HELPER_WAIT, request).await.is_err() {
            tracing::warn!(host = %self.name(), "no answer to a stop request within {HELPER_WAIT:?}");
        }
    }

    /// `exec_into` stopped on the host when the run is aborted. The transport sends SIGTERM
    /// through the channel, but OpenSSH refuses that for root logins: a kill request on a
    /// channel of its own also finds the script by `nonce`, which its text must contain
    /// (a driver's markers, or `remote::driver::tagged`).
    pub(super) async fn exec_killable(
        &self,
        script: &str,
        stdin: &[&[u8]],
        become_as: Option<&Become>,
        sink: &mut dyn OutputSink,
        nonce: &str,
        cancel: &super::Cancel,
    ) -> Result<Option<u32>, TransportError> {
        let run = self.exec_into(script, stdin, become_as, sink, cancel.aborted());
        let mut run = std::pin::pin!(run);
        tokio::select! {
            result = &mut run => result,
            () = cancel.aborted() => {
                let kill = driver::kill_request(nonce);
                let killed = self.exec_helper(&kill, become_as);
                tokio::join!(&mut run, killed).0
            }
        }
    }

    /// Judges what a step's segment did on the host, and keeps what it learned.
    fn judge(&mut self, action: &Action, out: &ExecOutput) -> Done {
        match action.judge(&self.view(), out) {
            Ok(mut done) => {
                if let Some(learned) = done.learned.take() {
                    self.learn(learned);
                }
                done
            }
            Err(failure) => failure.into(),
        }
    }

    fn record_step(
        &mut self,
        ctx: &RunContext<'_>,
        step: &PlannedStep,
        purpose: Purpose,
        done: Done,
        elapsed_ms: u64,
    ) {
        self.record_step_with_words(ctx, step, purpose, done, elapsed_ms, Default::default());
    }

    /// `record_step` with what the containers said after the step failed.
    fn record_step_with_words(
        &mut self,
        ctx: &RunContext<'_>,
        step: &PlannedStep,
        purpose: Purpose,
        done: Done,
        elapsed_ms: u64,
        words: ContainerWords,
    ) {
        self.record_with_words(ctx, &step_name(step, purpose), done, elapsed_ms, words);
    }

    fn skip_steps(
        &mut self,
        ctx: &RunContext<'_>,
        steps: &[PlannedStep],
        purpose: Purpose,
        reason: &str,
    ) {
        for step in steps {
            let done = Done::new(Outcome::Skipped, Some(reason.to_string()));
            self.record_step(ctx, step, purpose, done, 0);
        }
    }
}

/// A step's name in the report: a rollback's steps are `rollback: STEP`.
fn step_name(step: &PlannedStep, purpose: Purpose) -> String {
    match purpose {
        Purpose::Deploy => step.name.clone(),
        Purpose::Rollback => format!("rollback: {}", step.name),
    }
}

/// A step that ended well while its script still ran: reported then, kept for the result.
struct Reported {
    learned: Option<Learned>,
    outcome: Outcome,
    result: StepResult,
}

/// The driver's output sink: the splitter, each line the steps printed reported (`-v`), and
/// each step that ended on both streams handed to `on_ended` at once (with the results
/// reported so far, which tell the compose flavour).
struct LiveSteps<'s, 'r, 'f> {
    splitter: &'s mut StepSplitter<'r>,
    on_ended: &'f mut StepEnded<'f>,
    reporter: &'f dyn Reporter,
    host: &'f str,
}

/// What `LiveSteps` calls with a step that ended: its index among the script's segments, its
/// output, how long it took, and the results reported so far.
type StepEnded<'f> = dyn FnMut(usize, &ExecOutput, Option<u64>, &[Frame]) + Send + 'f;

impl LiveSteps<'_, '_, '_> {
    fn hand_out(&mut self) {
        for line in self.splitter.take_lines() {
            self.reporter.event(&Event::Output {
                host: self.host,
                line: &line,
            });
        }
        for (index, out, ms) in self.splitter.take_ended() {
            (self.on_ended)(index, &out, ms, self.splitter.results());
        }
    }
}

impl OutputSink for LiveSteps<'_, '_, '_> {
    fn stdout(&mut self, bytes: &[u8]) {
        self.splitter.stdout(bytes);
        self.hand_out();
    }

    fn stderr(&mut self, bytes: &[u8]) {
        self.splitter.stderr(bytes);
        self.hand_out();
    }
}

/// Why a step cut short by the transport failed: the transport's reason, then the last lines
/// the step wrote to stderr.
fn cut_failure(error: &str, out: &ExecOutput) -> String {
    let text = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(8)..];
    if tail.is_empty() {
        error.to_string()
    } else {
        format!("{error}\n{}", tail.join("\n"))
    }
}

/// How long a request that stops a script may take before the host is given up on.
pub(super) const HELPER_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

fn elapsed_ms(started: Instant) -> u64 {
    started.elapsed().as_millis() as u64
}
