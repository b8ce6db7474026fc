//! The terminal view (stdout is a TTY, no `--plain`): one line per host that updates in place
//! (spinner, host, current step, how long that step has run) and collapses to the host's final
//! status; the plain printer's lines printed above the bars as they happen; the summary table
//! at the end. May import: `report::plain` (the text of every line), `output`, `secrets`.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::plain::{event_text, for_terminal, host_outcome, summary_table};
use super::{Event, Reporter, RunReport};
use crate::secrets::Redactor;

/// How often a running host's spinner turns (and its elapsed time is redrawn).
const TICK: Duration = Duration::from_millis(120);

pub struct TtyReporter {
    bars: MultiProgress,
    /// Each host's line, by host name, in the order the hosts started.
    hosts: Mutex<HashMap<String, ProgressBar>>,
    redactor: Redactor,
    running: ProgressStyle,
    done: ProgressStyle,
}

impl TtyReporter {
    /// Draws on stdout (the caller saw it is a terminal).
    pub fn new(redactor: Redactor) -> Self {
        Self::with_target(redactor, ProgressDrawTarget::stdout())
    }

    fn with_target(redactor: Redactor, target: ProgressDrawTarget) -> Self {
        let running = ProgressStyle::with_template("{spinner} [{prefix}] {elapsed:>4} {wide_msg}")
            .expect("a valid template");
        let done =
            ProgressStyle::with_template("  [{prefix}] {wide_msg}").expect("a valid template");
        Self {
            bars: MultiProgress::with_draw_target(target),
            hosts: Mutex::default(),
            redactor,
            running,
            done,
        }
    }

    /// The host's line, made when the host is first heard of.
    fn bar(&self, host: &str) -> ProgressBar {
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bar) = hosts.get(host) {
            return bar.clone();
        }
        let bar = self.bars.add(
            ProgressBar::new_spinner()
                .with_style(self.running.clone())
                .with_prefix(self.shown(host))
                .with_message("connected"),
        );
        hosts.insert(host.to_string(), bar.clone());
        bar
    }

    /// `text` as every line of this view shows it: secrets masked, controls made visible.
    fn shown(&self, text: &str) -> String {
        for_terminal(&self.redactor, text)
    }

    /// Lines printed above the bars (they scroll away like plain output).
    fn print_above(&self, text: &str) {
        let text = self.shown(text);
        let _ = self.bars.println(text.strip_suffix('\n').unwrap_or(&text));
    }
}

impl Reporter for TtyReporter {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::HostStarted { host } => {
                self.bar(host);
            }
            Event::StepStarted { host, step } => {
                let bar = self.bar(host);
                bar.set_message(self.shown(step));
                bar.reset_elapsed();
                // Long steps (pull, build) show they are alive; ends when the bar finishes.
                bar.enable_steady_tick(TICK);
            }
            Event::HostFinished { result } => {
                let bar = self.bar(&result.host);
                bar.set_style(self.done.clone());
                bar.finish_with_message(self.shown(&host_outcome(result)));
            }
            other => {
                if let Some(text) = event_text(other) {
                    self.print_above(&text);
                }
            }
        }
    }

    fn finished(&self, report: &RunReport) {
        {
            let hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
            for bar in hosts.values().filter(|b| !b.is_finished()) {
                bar.set_style(self.done.clone());
                bar.finish();
            }
        }
        // The bars stay as they were last drawn; nothing redraws (or clears) them now, so the
        // table goes below them.
        self.bars.set_draw_target(ProgressDrawTarget::hidden());
        let table = self.shown(&summary_table(report));
        let _ = std::io::stdout().lock().write_all(table.as_bytes());
    }
}
