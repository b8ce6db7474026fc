//! Remote output on its way to people: secrets masked over the raw bytes as they arrive, each
//! step's output bounded to its head and tail, streamed live as lines (`-v`), control
//! characters made visible for terminals.

mod bound;
pub mod diff;
mod live;
mod redact;
mod visible;

pub use bound::{Dropped, HEAD, HeadTail, TAIL, human_bytes};
pub use live::{LIVE_LIMIT, LiveLines, Stream};
pub use redact::{RedactingStream, Redactor};
pub use visible::{is_bidi_control, visible};

use crate::transport::{ExecOutput, OutputSink};

/// One stream of a command's output as dropship keeps it: secrets masked first, then bounded.
/// Nothing after the mask can split a secret, since the bound only ever sees masked bytes.
pub struct Kept<'r> {
    redact: RedactingStream<'r>,
    kept: HeadTail,
}

impl<'r> Kept<'r> {
    pub fn new(redactor: &'r Redactor) -> Self {
        Self {
            redact: redactor.stream(),
            kept: HeadTail::default(),
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        let kept = &mut self.kept;
        self.redact.push(bytes, &mut |b| kept.push(b));
    }

    pub fn finish(mut self) -> (Vec<u8>, Option<Dropped>) {
        let kept = &mut self.kept;
        self.redact.finish(&mut |b| kept.push(b));
        self.kept.finish()
    }
}

/// A command's stdout and stderr as dropship keeps them (`Kept` each), as an `OutputSink`.
pub struct KeptOutput<'r> {
    stdout: Kept<'r>,
    stderr: Kept<'r>,
}

impl<'r> KeptOutput<'r> {
    pub fn new(redactor: &'r Redactor) -> Self {
        Self {
            stdout: Kept::new(redactor),
            stderr: Kept::new(redactor),
        }
    }

    pub fn finish(self, status: Option<u32>) -> ExecOutput {
        let (stdout, stdout_dropped) = self.stdout.finish();
        let (stderr, stderr_dropped) = self.stderr.finish();
        ExecOutput {
            status,
            stdout,
            stderr,
            stdout_dropped,
            stderr_dropped,
            results: Vec::new(),
        }
    }
}

impl OutputSink for KeptOutput<'_> {
    fn stdout(&mut self, bytes: &[u8]) {
        self.stdout.push(bytes);
    }

    fn stderr(&mut self, bytes: &[u8]) {
        self.stderr.push(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Secret;

    #[test]
    fn a_secret_across_the_head_tail_cut_is_masked_before_the_cut() {
        let secret = Secret::new("SECRET-across-the-cut");
        let redactor = Redactor::new([&secret]);
        let mut text = vec![b'x'; HEAD - 5];
        text.extend_from_slice(secret.expose().as_bytes());
        text.extend(vec![b'y'; 3 * TAIL]);
        text.extend_from_slice(secret.expose().as_bytes());
        text.extend(vec![b'z'; TAIL - 7]);
        for piece in [1, 7, 4096, 65536] {
            let mut kept = Kept::new(&redactor);
            for chunk in text.chunks(piece) {
                kept.push(chunk);
            }
            let (bytes, dropped) = kept.finish();
            assert!(dropped.is_some());
            let shown = String::from_utf8_lossy(&bytes);
            for part in ["SECRET", "across", "the-cut", "-cut"] {
                assert!(!shown.contains(part), "piece {piece}: `{part}` shown");
            }
        }
    }
}
