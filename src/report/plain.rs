//! The plain line printer (CI, no TTY, `--plain`): one line per event as it happens, then a
//! summary table. Owns the text of each line; the terminal view (`tty`) prints the same.

use std::io::Write;
use std::sync::Mutex;

use super::{Event, HostResult, Outcome, Reporter, RunReport, StepResult};
use crate::output::visible;
use crate::secrets::Redactor;

pub struct PlainReporter {
    /// Human output goes to stderr when stdout carries JSON.
    to_stderr: bool,
    /// Output was masked where it came in; this catches any text that came another way.
    redactor: Redactor,
    lock: Mutex<()>,
}

impl PlainReporter {
    pub fn new(to_stderr: bool, redactor: Redactor) -> Self {
        Self {
            to_stderr,
            redactor,
            lock: Mutex::new(()),
        }
    }

    /// Every line this reporter prints passes here: secrets masked, control characters made
    /// visible (a host's output cannot drive the operator's terminal).
    fn write(&self, text: &str) {
        let text = for_terminal(&self.redactor, text);
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let _ = if self.to_stderr {
            std::io::stderr().lock().write_all(text.as_bytes())
        } else {
            std::io::stdout().lock().write_all(text.as_bytes())
        };
    }
}

impl Reporter for PlainReporter {
    fn event(&self, event: &Event<'_>) {
        if let Some(text) = event_text(event) {
            self.write(&text);
        }
    }

    fn finished(&self, report: &RunReport) {
        self.write(&summary_table(report));
    }
}

/// `text` as a terminal gets it from dropship: secrets masked (output was masked where it came
/// in; this catches any text that came another way), then control characters made visible (a
/// host's output cannot drive the operator's terminal).
pub fn for_terminal(redactor: &Redactor, text: &str) -> String {
    visible(&redactor.redact(text)).into_owned()
}

/// The lines an event prints (each ending with a newline), or `None` for an event that prints
/// nothing: what the plain printer writes and the terminal view prints above its bars. Not
/// yet masked or made visible: the reporter that writes them does both.
pub fn event_text(event: &Event<'_>) -> Option<String> {
    match event {
        Event::HostStarted { .. } | Event::StepStarted { .. } | Event::HostFinished { .. } => None,
        Event::StepFinished { host, step } => Some(step_text(host, step)),
        Event::Output { host, line } => Some(format!("[{host}] {line}\n")),
        Event::BatchStarted {
            number,
            of,
            hosts,
            first,
        } => (*of > 1).then(|| {
            let stage = first.map_or(String::new(), |f| format!(" (first: {f})"));
            format!("== batch {number}/{of}{stage}: {}\n", hosts.join(", "))
        }),
        Event::Note { text } => Some(format!("== {text}\n")),
        Event::HostFailed { host, error } => {
            let mut text = String::new();
            for (i, l) in error.lines().enumerate() {
                let prefix = if i == 0 { "FAILED   " } else { "    " };
                text.push_str(&format!("[{host}] {prefix}{l}\n"));
            }
            Some(text)
        }
    }
}

/// A finished step: `[host] changed  name (detail)`, then its output and the containers' words.
fn step_text(host: &str, step: &StepResult) -> String {
    let mut line = format!("[{host}] {:<8} {}", step.outcome.label(), step.name);
    if let Some(detail) = &step.detail {
        if step.outcome == Outcome::Failed && detail.contains('\n') {
            line.push_str(":\n");
            for l in detail.lines() {
                line.push_str(&format!("[{host}]     {l}\n"));
            }
            line.pop();
        } else {
            line.push_str(&format!(" ({detail})"));
        }
    }
    line.push('\n');
    if let Some(output) = &step.output {
        for l in output.lines() {
            line.push_str(&format!("[{host}]     {l}\n"));
        }
    }
    for l in step.words.lines() {
        line.push_str(&format!("[{host}]     {l}\n"));
    }
    line
}

/// How a host's run ended, in a few words: `ok`, `failed at `STEP``, `failed: ERROR`, its note
/// (`interrupted`, ...), and `, rolled back to RELEASE`.
pub fn host_outcome(h: &HostResult) -> String {
    let mut result = match (&h.error, h.failed(), &h.note) {
        (Some(e), _, _) => format!("failed: {}", e.lines().next().unwrap_or("")),
        (None, true, _) => {
            let step = h.steps.iter().find(|s| s.outcome == Outcome::Failed);
            format!("failed at `{}`", step.map_or("?", |s| s.name.as_str()))
        }
        (None, false, Some(note)) => note.clone(),
        (None, false, None) => "ok".to_string(),
    };
    if let Some(to) = &h.rolled_back {
        result.push_str(&format!(", rolled back to {to}"));
    }
    result
}

/// The table printed at the end of every run.
pub fn summary_table(report: &RunReport) -> String {
    let header = [
        "HOST", "CHANGED", "OK", "FAILED", "SKIPPED", "TIME", "RESULT",
    ];
    let mut rows: Vec<[String; 7]> = Vec::new();
    for h in &report.hosts {
        let result = host_outcome(h);
        rows.push([
            h.host.clone(),
            h.count(Outcome::Changed).to_string(),
            h.count(Outcome::Ok).to_string(),
            h.count(Outcome::Failed).to_string(),
            h.count(Outcome::Skipped).to_string(),
            format!("{:.1}s", h.elapsed_ms as f64 / 1000.0),
            result,
        ]);
    }
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let format_row = |cells: &[&str]| {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        line.trim_end().to_string() + "\n"
    };
    let mut out = String::from("\n");
    out.push_str(&format_row(&header));
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        out.push_str(&format_row(&cells));
    }
    let counts = &report.counts;
    out.push_str(&format!(
        "{} host(s): {} ok, {} failed",
        report.hosts.len(),
        counts.ok,
        counts.failed,
    ));
    if counts.not_deployed > 0 {
        out.push_str(&format!(", {} not deployed", counts.not_deployed));
    }
    out.push_str(&format!(" in {:.1}s\n", report.elapsed_ms as f64 / 1000.0));
    if let Some(reason) = &report.halted {
        out.push_str(&format!("rollout halted: {reason}\n"));
    }
    if let Some(conflict) = &report.lock_conflict {
        out.push_str(&format!("lock conflict: {conflict}\n"));
    }
    if report.interrupted {
        out.push_str("interrupted: no new work was started after the signal; locks released\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::timeline::Timeline;
    use super::super::{Counts, HostResult, StepResult};
    use super::*;
    use std::time::Instant;

    #[test]
    fn table_lists_each_host_with_counts() {
        let step = |outcome| StepResult {
            name: "s".into(),
            outcome,
            detail: None,
            output: None,
            words: Default::default(),
            elapsed_ms: 1,
        };
        let mut report = RunReport {
            command: "deploy".into(),
            ok: false,
            release: None,
            halted: None,
            lock_conflict: None,
            counts: Counts::default(),
            interrupted: false,
            elapsed_ms: 1500,
            hosts: vec![
                HostResult {
                    host: "web-1".into(),
                    address: "a".into(),
                    error: None,
                    steps: vec![step(Outcome::Changed), step(Outcome::Ok)],
                    rolled_back: None,
                    note: None,
                    elapsed_ms: 1200,
                    timeline: Timeline::new(Instant::now()),
                },
                HostResult {
                    host: "web-2".into(),
                    address: "b".into(),
                    error: Some("cannot reach b:22: connection refused".into()),
                    steps: vec![step(Outcome::Skipped)],
                    rolled_back: None,
                    note: None,
                    elapsed_ms: 10,
                    timeline: Timeline::new(Instant::now()),
                },
            ],
        };
        report.counts = Counts::of(&report.hosts);
        assert_eq!(
            summary_table(&report),
            "\nHOST   CHANGED  OK  FAILED  SKIPPED  TIME  RESULT\n\
             web-1  1        1   0       0        1.2s  ok\n\
             web-2  0        0   0       1        0.0s  failed: cannot reach b:22: connection refused\n\
             2 host(s): 1 ok, 1 failed in 1.5s\n"
        );
    }
}
