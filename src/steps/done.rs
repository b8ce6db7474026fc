//! How a step ended (`Done`), how a kind's segment is sent (`Prepared`), and the summaries of
//! a command's output every kind judges with.

use crate::remote::driver::Segment;
use crate::remote::probe::RemoteFile;
use crate::remote::tree::Listing;
use crate::report::Outcome;
use crate::secrets::Redactor;
use crate::transport::ExecOutput;

/// How one step will run in its session.
pub enum Prepared {
    /// Decided without asking the host (an unchanged file, a skipped step, a known failure).
    Local(Done),
    /// This segment of the session's driver script.
    Remote(Segment),
}

/// How a step ended: outcome, a short note, (for `run`) what the command printed, and what
/// the session learned about the host.
pub struct Done {
    pub outcome: Outcome,
    pub detail: Option<String>,
    pub output: Option<String>,
    pub learned: Option<Learned>,
}

impl Done {
    pub fn new(outcome: Outcome, detail: Option<String>) -> Self {
        Self {
            outcome,
            detail,
            output: None,
            learned: None,
        }
    }
}

/// What a step's success tells the session about its host.
pub enum Learned {
    /// The file at each destination is now the one written; with `listing`, that directory
    /// now holds exactly these entries (a directory step that removed what its source lacks).
    Wrote {
        files: Vec<(String, RemoteFile)>,
        listing: Option<(String, Listing)>,
    },
    /// `current` points at the new release; it pointed at `previous` before.
    Activated { previous: Option<String> },
}

/// Why a step failed on the host: the text shown for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Failure(pub String);

impl From<Failure> for Done {
    fn from(failure: Failure) -> Self {
        Done::new(Outcome::Failed, Some(failure.0))
    }
}

/// Lines of a command's stdout shown: the last 50, or when its middle was dropped (see
/// `output::HeadTail`) the first 20 of its head, how much was dropped, and the last 30 of its
/// tail. `None` when it printed nothing but blanks. The output was masked before it was cut.
pub fn output_tail(out: &ExecOutput) -> Option<String> {
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

/// A failure (with `failure_text`) unless the command exited 0.
pub fn require_success(out: &ExecOutput, redactor: &Redactor) -> Result<(), Failure> {
    if out.success() {
        Ok(())
    } else {
        Err(Failure(failure_text(out, redactor)))
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
