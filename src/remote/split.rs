//! A driver's output split per step as it arrives: the step markers found in the raw streams,
//! each step's share of stdout and stderr masked for secrets and bounded to its head and tail.
//! May import: `remote::frame`, `output`, `transport::{ExecOutput, OutputSink}`.

use super::frame::{self, Frame, Piece, Scanner};
use crate::output::{Kept, LiveLines, Redactor, Stream};
use crate::transport::{ExecOutput, OutputSink};

/// Results (frames other than the driver's markers) kept per session: more are output lost.
const MAX_RESULTS: usize = 64;
/// What is kept of the epilogue's stdout (the audit and unlock lines), for tests and debugging.
const MAX_EPILOGUE: usize = 16 * 1024;

/// What came back from a driver: per segment that started, its own output and status (a
/// segment cut short has `status: None` unless the driver's own exit status tells more) and
/// how long it took when the shell could tell; whether the epilogue finished.
pub struct Split {
    pub outputs: Vec<ExecOutput>,
    pub elapsed_ms: Vec<Option<u64>>,
    /// The last output has no marker: its segment was running when the driver ended.
    pub cut_short: bool,
    /// The driver stopped before the next segment because the run was interrupted.
    pub stopped: bool,
    pub epilogue_done: bool,
    /// Every result the preamble and the segments reported (`frame::report`), in order; each
    /// segment's own are also in its output's `results`.
    pub results: Vec<Frame>,
    /// The start of what the epilogue printed on stdout.
    pub epilogue: Vec<u8>,
}

/// Splits a driver's streams per step while they arrive (see `chain::driver` for the
/// markers). Markers are found in the raw bytes, so neither masking nor bounding can hide
/// one; each step's output is masked before it is bounded, so no cut can split a secret.
/// Memory stays bounded whatever the steps print.
pub struct StepSplitter<'r> {
    redactor: &'r Redactor,
    count: usize,
    prefix: Vec<u8>,
    end_marker: Vec<u8>,
    stop_marker: Vec<u8>,
    stdout: Scanner,
    stderr: Scanner,
    steps: Vec<StepCapture<'r>>,
    out_at: usize,
    err_at: usize,
    /// A marker with a failing status ended the steps on this stream: the rest is epilogue.
    out_stopped: bool,
    err_stopped: bool,
    results: Vec<Frame>,
    epilogue: Vec<u8>,
    epilogue_done: bool,
    stopped: bool,
    /// Steps before this one were handed out by `take_ended`.
    handed_out: usize,
    /// The steps' output as lines while it comes, when asked for (`stream_lines`).
    live: Option<LiveLines<'r>>,
}

struct StepCapture<'r> {
    stdout: Kept<'r>,
    stderr: Kept<'r>,
    /// Set by the step's stdout marker: its status and duration.
    marked: Option<(Option<u32>, Option<u64>)>,
    /// What the step reported in frames, `KIND:FIELDS` each.
    results: Vec<String>,
    /// Its output, made once it ended on both streams (`take_ended`).
    ended: Option<ExecOutput>,
}

impl<'r> StepSplitter<'r> {
    /// For a driver of `count` segments made with `nonce`.
    pub fn new(redactor: &'r Redactor, nonce: &str, count: usize) -> Self {
        Self {
            redactor,
            count,
            prefix: frame::prefix(nonce),
            end_marker: b"end".to_vec(),
            stop_marker: b"stop".to_vec(),
            stdout: Scanner::default(),
            stderr: Scanner::default(),
            steps: Vec::new(),
            out_at: 0,
            err_at: 0,
            out_stopped: false,
            err_stopped: false,
            results: Vec::new(),
            epilogue: Vec::new(),
            epilogue_done: false,
            stopped: false,
            handed_out: 0,
            live: None,
        }
    }

    /// Also makes the steps' output into lines as it arrives (masked, bounded per step), to
    /// be taken with `take_lines`. The epilogue's (dropship's own) is never among them.
    pub fn stream_lines(mut self) -> Self {
        self.live = Some(LiveLines::new(self.redactor));
        self
    }

    /// The driver ended: the running step's last line, if it had no newline, is made.
    pub fn end_lines(&mut self) {
        if let Some(live) = &mut self.live {
            live.end_step(Stream::Stdout);
            live.end_step(Stream::Stderr);
        }
    }

    /// The lines the steps printed since the last call (none unless `stream_lines`).
    pub fn take_lines(&mut self) -> Vec<String> {
        self.live.as_mut().map(LiveLines::take).unwrap_or_default()
    }

    /// The steps that ended on both streams (their markers seen) since the last call, with
    /// their status and output, oldest first: a caller may judge and report them before the
    /// driver ends. Each step is handed out once; `finish` still returns it.
    pub fn take_ended(&mut self) -> Vec<(usize, ExecOutput, Option<u64>)> {
        let ended = self.out_at.min(self.err_at).min(self.steps.len());
        let redactor = self.redactor;
        let mut taken = Vec::new();
        while self.handed_out < ended {
            let index = self.handed_out;
            self.handed_out += 1;
            let capture = &mut self.steps[index];
            let Some((status, elapsed)) = capture.marked else {
                continue;
            };
            let (stdout, stdout_dropped) =
                std::mem::replace(&mut capture.stdout, Kept::new(redactor)).finish();
            let (stderr, stderr_dropped) =
                std::mem::replace(&mut capture.stderr, Kept::new(redactor)).finish();
            let out = ExecOutput {
                status,
                stdout,
                stderr,
                stdout_dropped,
                stderr_dropped,
                results: capture.results.clone(),
            };
            capture.ended = Some(out.clone());
            taken.push((index, out, elapsed));
        }
        taken
    }

    /// Every result the preamble and the segments reported so far.
    pub fn results(&self) -> &[Frame] {
        &self.results
    }

    fn step(&mut self, index: usize) -> &mut StepCapture<'r> {
        while self.steps.len() <= index {
            self.steps.push(StepCapture {
                stdout: Kept::new(self.redactor),
                stderr: Kept::new(self.redactor),
                marked: None,
                results: Vec::new(),
                ended: None,
            });
        }
        &mut self.steps[index]
    }

    fn on_stdout(&mut self, bytes: &[u8], end: bool) {
        let pieces = self.stdout.feed(bytes, &self.prefix, end);
        let buffer = std::mem::take(&mut self.stdout.pending);
        for piece in &pieces {
            match piece {
                Piece::Data(range) => self.stdout_data(&buffer[range.clone()]),
                Piece::Frame(range) => self.stdout_marker(&buffer[range.clone()]),
            }
        }
        self.stdout.pending = buffer;
        self.stdout.consume();
        self.show_held_line(Stream::Stdout);
    }

    /// The scanner holds back a newline that may begin a marker: the line before it ended
    /// either way, so it is shown now (`-v`), not when more output comes.
    fn show_held_line(&mut self, stream: Stream) {
        let (scanner, at, stopped) = match stream {
            Stream::Stdout => (&self.stdout, self.out_at, self.out_stopped),
            Stream::Stderr => (&self.stderr, self.err_at, self.err_stopped),
        };
        if let Some(live) = &mut self.live
            && at < self.count
            && !stopped
            && scanner.pending.first() == Some(&b'\n')
        {
            live.line_may_end(stream);
        }
    }

    fn stdout_data(&mut self, bytes: &[u8]) {
        if self.out_at < self.count && !self.out_stopped {
            self.step(self.out_at).stdout.push(bytes);
            if let Some(live) = &mut self.live {
                live.push(Stream::Stdout, bytes);
            }
        } else {
            let room = MAX_EPILOGUE.saturating_sub(self.epilogue.len());
            self.epilogue
                .extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
    }

    fn stdout_marker(&mut self, fields: &[u8]) {
        if fields == self.end_marker.as_slice() {
            self.epilogue_done = true;
            return;
        }
        // Printed instead of the next segment when a stop was asked (`chain::stop_request`).
        if fields == self.stop_marker.as_slice() {
            if !self.out_stopped {
                self.stopped = true;
                self.out_stopped = true;
            }
            return;
        }
        let Some((index, status, elapsed)) = parse_fields(fields) else {
            self.result(fields);
            return;
        };
        if index != self.out_at || self.out_stopped || index >= self.count {
            return;
        }
        self.step(index).marked = Some((status, elapsed));
        self.out_at += 1;
        if let Some(live) = &mut self.live {
            live.end_step(Stream::Stdout);
        }
        self.out_stopped = status != Some(0);
    }

    /// A frame that is no marker of the driver's: a result of the preamble or of the running
    /// segment.
    fn result(&mut self, text: &[u8]) {
        let Some(frame) = Frame::parse(text) else {
            return;
        };
        if self.results.len() >= MAX_RESULTS {
            return;
        }
        if self.out_at < self.count && !self.out_stopped {
            let own = String::from_utf8_lossy(text).into_owned();
            self.step(self.out_at).results.push(own);
        }
        self.results.push(frame);
    }

    fn on_stderr(&mut self, bytes: &[u8], end: bool) {
        let pieces = self.stderr.feed(bytes, &self.prefix, end);
        let buffer = std::mem::take(&mut self.stderr.pending);
        for piece in &pieces {
            match piece {
                Piece::Data(range) => {
                    if self.err_at < self.count && !self.err_stopped {
                        self.step(self.err_at).stderr.push(&buffer[range.clone()]);
                        if let Some(live) = &mut self.live {
                            live.push(Stream::Stderr, &buffer[range.clone()]);
                        }
                    }
                }
                Piece::Frame(range) => {
                    if let Some((index, status, _)) = parse_fields(&buffer[range.clone()])
                        && index == self.err_at
                        && !self.err_stopped
                    {
                        self.err_at += 1;
                        self.err_stopped = status != Some(0);
                        if let Some(live) = &mut self.live {
                            live.end_step(Stream::Stderr);
                        }
                    }
                }
            }
        }
        self.stderr.pending = buffer;
        self.stderr.consume();
        self.show_held_line(Stream::Stderr);
    }

    /// Ends both streams: `status` is the driver's own exit status.
    pub fn finish(mut self, status: Option<u32>) -> Split {
        self.on_stdout(&[], true);
        self.on_stderr(&[], true);
        // Steps that ended with a marker, then the one that was running when the driver
        // stopped (the shell died, sudo refused, the connection dropped), if any.
        let cut_short = !self.out_stopped && self.out_at < self.count;
        let started = self.out_at + usize::from(cut_short);
        self.step(started.saturating_sub(1));
        let mut outputs = Vec::new();
        let mut elapsed_ms = Vec::new();
        for capture in self.steps.into_iter().take(started) {
            let (status, elapsed) = capture.marked.unwrap_or((status.filter(|s| *s != 0), None));
            if let Some(out) = capture.ended {
                outputs.push(out);
                elapsed_ms.push(elapsed);
                continue;
            }
            let (stdout, stdout_dropped) = capture.stdout.finish();
            let (stderr, stderr_dropped) = capture.stderr.finish();
            outputs.push(ExecOutput {
                status,
                stdout,
                stderr,
                stdout_dropped,
                stderr_dropped,
                results: capture.results,
            });
            elapsed_ms.push(elapsed);
        }
        Split {
            outputs,
            elapsed_ms,
            cut_short,
            stopped: self.stopped,
            epilogue_done: self.epilogue_done,
            results: self.results,
            epilogue: self.epilogue,
        }
    }
}

impl OutputSink for StepSplitter<'_> {
    fn stdout(&mut self, bytes: &[u8]) {
        self.on_stdout(bytes, false);
    }

    fn stderr(&mut self, bytes: &[u8]) {
        self.on_stderr(bytes, false);
    }
}

/// `INDEX:STATUS:BEFORE:AFTER` (times in seconds, possibly empty) → index, status, milliseconds.
fn parse_fields(fields: &[u8]) -> Option<(usize, Option<u32>, Option<u64>)> {
    let fields = std::str::from_utf8(fields).ok()?;
    let mut parts = fields.split(':');
    let index = parts.next()?.parse().ok()?;
    let status = parts.next().and_then(|s| s.parse().ok());
    let mut time = || -> Option<f64> { parts.next()?.replace(',', ".").parse().ok() };
    let elapsed = match (time(), time()) {
        (Some(before), Some(after)) if after >= before => {
            Some(((after - before) * 1000.0).round() as u64)
        }
        _ => None,
    };
    Some((index, status, elapsed))
}

/// Splits a whole driver output at once.
#[cfg(test)]
pub fn split_all(redactor: &Redactor, out: &ExecOutput, nonce: &str, count: usize) -> Split {
    let mut splitter = StepSplitter::new(redactor, nonce, count);
    splitter.stdout(&out.stdout);
    splitter.stderr(&out.stderr);
    splitter.finish(out.status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::HEAD;
    use crate::secrets::Secret;

    fn feed_in_pieces(redactor: &Redactor, out: &ExecOutput, piece: usize) -> Split {
        let mut splitter = StepSplitter::new(redactor, "n5", 3);
        let (mut o, mut e) = (out.stdout.chunks(piece), out.stderr.chunks(piece));
        loop {
            let (a, b) = (o.next(), e.next());
            if a.is_none() && b.is_none() {
                break;
            }
            a.into_iter().for_each(|c| splitter.stdout(c));
            b.into_iter().for_each(|c| splitter.stderr(c));
        }
        splitter.finish(out.status)
    }

    #[test]
    fn markers_and_secrets_survive_any_piece_size() {
        let secret = Secret::new("pa$$\nword");
        let redactor = Redactor::new([&secret]);
        let out = ExecOutput {
            status: Some(4),
            stdout:
                b"\n@@dropship:n5:compose:plugin@@\none pa$$\r\nword\n@@dropship:n5:0:0:1.0:1.5@@\n\
                      two pa$$\nword\n@@dropship:n5:1:4::@@\naudit\n@@dropship:n5:end@@\n"
                    .to_vec(),
            stderr: b"e1\n@@dropship:n5:0:0::@@\npa$$\nword e2\n@@dropship:n5:1:4::@@\n".to_vec(),
            ..Default::default()
        };
        let whole = split_all(&redactor, &out, "n5", 3);
        for piece in 1..=out.stdout.len() {
            let split = feed_in_pieces(&redactor, &out, piece);
            assert_eq!(
                crate::remote::compose::flavor(&split.results),
                Some(crate::remote::compose::ComposeFlavor::Plugin)
            );
            let texts: Vec<(&[u8], &[u8], Option<u32>)> = split
                .outputs
                .iter()
                .map(|o| (&o.stdout[..], &o.stderr[..], o.status))
                .collect();
            assert_eq!(
                texts,
                [
                    (&b"one ********"[..], &b"e1"[..], Some(0)),
                    (&b"two ********"[..], &b"******** e2"[..], Some(4)),
                ],
                "piece size {piece}"
            );
            assert_eq!(split.elapsed_ms, [Some(500), None]);
            assert!(split.epilogue_done, "piece size {piece}");
            assert_eq!(split.epilogue, whole.epilogue);
            assert_eq!(split.epilogue, b"audit");
        }
    }

    #[test]
    fn a_flood_is_bounded_per_step_and_no_marker_is_lost() {
        let redactor = Redactor::default();
        let mut splitter = StepSplitter::new(&redactor, "n6", 2);
        let chunk = vec![b'x'; 32 * 1024];
        splitter.stdout(b"start\n");
        for _ in 0..200 {
            splitter.stdout(&chunk);
            splitter.stderr(&chunk);
        }
        splitter.stdout(b"\nend-of-0\n@@dropship:n6:0:0::@@\nsecond");
        splitter.stderr(b"\n@@dropship:n6:0:0::@@\n");
        let split = splitter.finish(Some(0));
        assert_eq!(split.outputs.len(), 2);
        let first = &split.outputs[0];
        assert!(first.stdout.starts_with(b"start\nxxx"));
        assert!(first.stdout.ends_with(b"xxx\nend-of-0"));
        let dropped = first.stdout_dropped.expect("stdout was cut");
        assert_eq!(dropped.at, HEAD);
        assert_eq!(
            dropped.bytes as usize + first.stdout.len(),
            6 + 200 * chunk.len() + 9
        );
        assert!(first.stderr_dropped.is_some());
        // The second step was running when the driver ended: it keeps its output.
        assert_eq!(split.outputs[1].stdout, b"second");
        assert_eq!(split.outputs[1].status, None);
        assert!(split.cut_short);
    }

    #[test]
    fn a_step_is_handed_out_once_when_it_ended_on_both_streams() {
        let redactor = Redactor::default();
        let mut splitter = StepSplitter::new(&redactor, "n7", 3);
        splitter.stdout(b"one\n@@dropship:n7:0:0:1.0:1.25@@\n");
        // Its stderr marker has not come yet: not ended.
        assert!(splitter.take_ended().is_empty());
        splitter.stderr(b"warn\n@@dropship:n7:0:0::@@\n");
        let ended = splitter.take_ended();
        assert_eq!(ended.len(), 1);
        let (index, out, ms) = &ended[0];
        assert_eq!((*index, out.status, *ms), (0, Some(0), Some(250)));
        assert_eq!(
            (&out.stdout[..], &out.stderr[..]),
            (&b"one"[..], &b"warn"[..])
        );
        assert!(splitter.take_ended().is_empty(), "handed out twice");
        // The second step is still running when the driver is cut off.
        splitter.stdout(b"two\n@@dropship:n7:1:");
        splitter.stderr(b"@@dropship:n7:1:0::@@\n");
        assert!(splitter.take_ended().is_empty());
        let split = splitter.finish(None);
        assert!(split.cut_short);
        assert_eq!(split.outputs.len(), 2);
        assert_eq!(&split.outputs[0].stdout[..], b"one");
        assert_eq!(split.elapsed_ms[0], Some(250));
    }
}
