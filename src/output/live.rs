//! A command's output shown as it comes (`-v`): masked over the raw bytes first, then cut into
//! lines per stream (a partial line held until its newline or the step's end), each step's
//! share bounded so a flood costs no memory.

use super::bound::human_bytes;
use super::redact::{RedactingStream, Redactor};

/// Bytes of one stream shown per step; past it, lines are dropped and counted.
pub const LIVE_LIMIT: usize = 256 * 1024;
/// A line longer than this is shown in pieces of this length.
pub const LINE_MAX: usize = 4 * 1024;

/// Which of a command's streams bytes came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Both streams of the running step, made into whole lines (masked, bounded) that wait in
/// `lines` until taken.
pub struct LiveLines<'r> {
    stdout: Lane<'r>,
    stderr: Lane<'r>,
    lines: Vec<String>,
}

struct Lane<'r> {
    mask: RedactingStream<'r>,
    lines: LineState,
}

/// One stream's masked bytes on their way into lines.
#[derive(Default)]
struct LineState {
    /// The line not yet ended (masked bytes).
    partial: Vec<u8>,
    /// Bytes this step let through, and those it dropped past `LIVE_LIMIT`.
    shown: usize,
    dropped: u64,
    /// The line was shown before its newline arrived (`line_may_end`): that newline ends
    /// nothing more.
    newline_owed: bool,
}

impl<'r> LiveLines<'r> {
    pub fn new(redactor: &'r Redactor) -> Self {
        let lane = || Lane {
            mask: redactor.stream(),
            lines: LineState::default(),
        };
        Self {
            stdout: lane(),
            stderr: lane(),
            lines: Vec::new(),
        }
    }

    fn lane(&mut self, stream: Stream) -> (&mut Lane<'r>, &mut Vec<String>) {
        match stream {
            Stream::Stdout => (&mut self.stdout, &mut self.lines),
            Stream::Stderr => (&mut self.stderr, &mut self.lines),
        }
    }

    /// Takes raw bytes of the running step's `stream`.
    pub fn push(&mut self, stream: Stream, bytes: &[u8]) {
        let (Lane { mask, lines: state }, lines) = self.lane(stream);
        mask.push(bytes, &mut |masked| state.take(masked, lines));
    }

    /// The stream's next byte is a newline not yet known to be output (it may begin the
    /// driver's marker, which ends the step): the line so far is shown now, and that newline,
    /// if it turns out to be output, ends nothing more.
    pub fn line_may_end(&mut self, stream: Stream) {
        let (Lane { lines: state, .. }, lines) = self.lane(stream);
        if !state.partial.is_empty() {
            lines.push(line_text(&state.partial));
            state.partial.clear();
            state.newline_owed = true;
        }
    }

    /// The step ended on `stream`: what was held back goes out (a last line without newline
    /// too), then how much was dropped; the next step starts afresh.
    pub fn end_step(&mut self, stream: Stream) {
        let (Lane { mask, lines: state }, lines) = self.lane(stream);
        mask.finish(&mut |masked| state.take(masked, lines));
        if !state.partial.is_empty() {
            lines.push(line_text(&state.partial));
        }
        if state.dropped > 0 {
            let which = match stream {
                Stream::Stdout => "stdout",
                Stream::Stderr => "stderr",
            };
            lines.push(format!(
                "… {} more on {which} not shown (see the step's result) …",
                human_bytes(state.dropped)
            ));
        }
        *state = LineState::default();
    }

    /// The lines made since the last call, oldest first.
    pub fn take(&mut self) -> Vec<String> {
        std::mem::take(&mut self.lines)
    }
}

impl LineState {
    /// Masked bytes into lines: at most `LIVE_LIMIT` per step, the rest counted.
    fn take(&mut self, mut masked: &[u8], lines: &mut Vec<String>) {
        if masked.is_empty() {
            return;
        }
        if std::mem::take(&mut self.newline_owed) && masked[0] == b'\n' {
            masked = &masked[1..];
        }
        let room = LIVE_LIMIT.saturating_sub(self.shown);
        let (kept, over) = masked.split_at(masked.len().min(room));
        self.shown += kept.len();
        self.dropped += over.len() as u64;
        let partial = &mut self.partial;
        for piece in kept.split_inclusive(|b| *b == b'\n') {
            let (text, ended) = match piece.strip_suffix(b"\n") {
                Some(text) => (text, true),
                None => (piece, false),
            };
            for chunk in text.chunks(LINE_MAX) {
                let room = LINE_MAX - partial.len();
                let (now, later) = chunk.split_at(chunk.len().min(room));
                partial.extend_from_slice(now);
                if partial.len() == LINE_MAX {
                    lines.push(line_text(partial));
                    partial.clear();
                    partial.extend_from_slice(later);
                }
            }
            if ended {
                lines.push(line_text(partial));
                partial.clear();
            }
        }
    }
}

/// A line's text without its CR (CRLF line ends); invalid UTF-8 replaced.
fn line_text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Secret;

    #[test]
    fn lines_come_whole_and_a_secret_split_across_pieces_is_masked() {
        let secret = Secret::new("hunter2-live");
        let redactor = Redactor::new([&secret]);
        let mut live = LiveLines::new(&redactor);
        live.push(Stream::Stdout, b"first line\nsecond ");
        assert_eq!(live.take(), ["first line"], "a whole line goes out at once");
        live.push(Stream::Stdout, b"pw: hunter");
        live.push(Stream::Stderr, b"warning\r\n");
        assert_eq!(live.take(), ["warning"]);
        live.push(Stream::Stdout, b"2-live end");
        assert!(live.take().is_empty(), "a partial line waits");
        live.end_step(Stream::Stdout);
        assert_eq!(live.take(), ["second pw: ******** end"]);
        // Each byte on its own: still masked.
        for b in b"x hunter2-live y\n" {
            live.push(Stream::Stdout, &[*b]);
        }
        assert_eq!(live.take(), ["x ******** y"]);
        // A line shown before its newline is known to be output: that newline adds no line.
        live.push(Stream::Stdout, b"early");
        live.line_may_end(Stream::Stdout);
        assert_eq!(live.take(), ["early"]);
        live.push(Stream::Stdout, b"\nnext\n\n");
        assert_eq!(live.take(), ["next", ""]);
    }

    #[test]
    fn a_flood_is_bounded_per_step_and_long_lines_come_in_pieces() {
        let redactor = Redactor::default();
        let mut live = LiveLines::new(&redactor);
        let line = vec![b'y'; LINE_MAX * 2 + 10];
        live.push(Stream::Stdout, &line);
        let mut shown: Vec<String> = live.take();
        assert_eq!(shown.len(), 2, "two full pieces; 10 bytes wait");
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..1000 {
            live.push(Stream::Stdout, &chunk);
            shown.extend(live.take());
            assert!(live.stdout.lines.partial.len() < LINE_MAX);
        }
        live.end_step(Stream::Stdout);
        shown.extend(live.take());
        let note = shown.pop().unwrap();
        assert!(note.contains("65.3 MB more on stdout not shown"), "{note}");
        assert_eq!(shown.iter().map(String::len).sum::<usize>(), LIVE_LIMIT);
        assert!(shown.iter().all(|l| l.len() <= LINE_MAX));
        // The next step shows its output again.
        live.push(Stream::Stdout, b"next\n");
        assert_eq!(live.take(), ["next"]);
    }
}
