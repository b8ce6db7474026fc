//! Masking secret values in raw output bytes, in one pass or as a stream.

use aho_corasick::AhoCorasick;

use crate::secrets::{MASK, Secret};

/// Replaces every secret value in bytes meant for people or machines with `********`.
///
/// Matching is over raw bytes, before anything cuts, trims, re-wraps or collapses them. Every
/// byte covered by any occurrence of any secret is masked (overlapping and adjacent
/// occurrences become one `********`), so no part of any secret shows. A secret with a
/// newline is also masked as it arrives with CRLF line ends (an HTTP body, a file edited on
/// Windows, a pty's output), and one with CRLF also with plain newlines.
#[derive(Clone, Default)]
pub struct Redactor {
    /// `None` when there is no secret: output passes through untouched.
    matcher: Option<AhoCorasick>,
    /// The longest pattern: a stream keeps this many bytes minus one of context.
    max_len: usize,
    /// The patterns, for what a stream must hold back: only a tail that could still grow
    /// into one of them (so a quiet stream's last line is not held back).
    patterns: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the automaton: it holds the secrets' bytes.
        f.debug_struct("Redactor")
            .field(
                "patterns",
                &self.matcher.as_ref().map_or(0, |m| m.patterns_len()),
            )
            .finish()
    }
}

impl Redactor {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Self {
        let mut patterns: Vec<String> = Vec::new();
        for value in secrets.into_iter().map(Secret::expose) {
            if value.is_empty() {
                continue;
            }
            patterns.push(value.to_string());
            if value.contains("\r\n") {
                patterns.push(value.replace("\r\n", "\n"));
            }
            let crlf = value.replace("\r\n", "\n").replace('\n', "\r\n");
            if crlf != value {
                patterns.push(crlf);
            }
        }
        patterns.sort();
        patterns.dedup();
        let max_len = patterns.iter().map(String::len).max().unwrap_or(0);
        let matcher = (!patterns.is_empty())
            .then(|| AhoCorasick::new(&patterns).expect("secret patterns are plain byte strings"));
        let patterns = patterns.into_iter().map(String::into_bytes).collect();
        Self {
            matcher,
            max_len,
            patterns,
        }
    }

    /// This redactor with `more` secrets learned during a run (a swarm's join tokens read on a
    /// manager) masked too.
    pub fn with<'a>(&self, more: impl IntoIterator<Item = &'a Secret>) -> Self {
        let mut known: Vec<Secret> = self
            .patterns
            .iter()
            .map(|p| Secret::new(String::from_utf8_lossy(p).into_owned()))
            .collect();
        known.extend(more.into_iter().cloned());
        Self::new(&known)
    }

    /// How many of the last bytes of `buf` are the start of a secret that bytes still to
    /// come could complete (the longest such tail).
    fn unfinished_tail(&self, buf: &[u8]) -> usize {
        let longest = self.max_len.saturating_sub(1).min(buf.len());
        (1..=longest)
            .rev()
            .find(|&k| {
                let tail = &buf[buf.len() - k..];
                self.patterns
                    .iter()
                    .any(|p| p.len() > k && p.starts_with(tail))
            })
            .unwrap_or(0)
    }

    /// `text` with every secret masked.
    pub fn redact(&self, text: &str) -> String {
        match self.redact_bytes(text.as_bytes()) {
            std::borrow::Cow::Borrowed(_) => text.to_string(),
            // Matches of UTF-8 patterns in UTF-8 text start and end on character boundaries.
            std::borrow::Cow::Owned(bytes) => String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        }
    }

    /// `bytes` with every secret masked (borrowed when there is nothing to mask).
    pub fn redact_bytes<'b>(&self, bytes: &'b [u8]) -> std::borrow::Cow<'b, [u8]> {
        if !self.reveals_secret(bytes) {
            return std::borrow::Cow::Borrowed(bytes);
        }
        let mut out = Vec::with_capacity(bytes.len());
        self.emit(bytes, 0, bytes.len(), &mut false, &mut |b| {
            out.extend_from_slice(b)
        });
        std::borrow::Cow::Owned(out)
    }

    /// True when `bytes` contain any secret value.
    pub fn reveals_secret(&self, bytes: &[u8]) -> bool {
        self.matcher.as_ref().is_some_and(|m| m.is_match(bytes))
    }

    /// A stream that masks secrets split across any pieces of output.
    pub fn stream(&self) -> RedactingStream<'_> {
        RedactingStream {
            redactor: self,
            pending: Vec::new(),
            emitted: 0,
            in_mask: false,
        }
    }

    /// Emits `buf[from..to]` with the bytes covered by a match in `buf` masked: one `MASK` per
    /// run of covered bytes. `in_mask` says whether the byte before `from` was covered (its
    /// run's `MASK` is already out) and is updated for the next call.
    fn emit(
        &self,
        buf: &[u8],
        from: usize,
        to: usize,
        in_mask: &mut bool,
        out: &mut dyn FnMut(&[u8]),
    ) {
        let Some(matcher) = &self.matcher else {
            if from < to {
                out(&buf[from..to]);
                *in_mask = false;
            }
            return;
        };
        let mut covered: Vec<(usize, usize)> = matcher
            .find_overlapping_iter(buf)
            .map(|m| (m.start().max(from), m.end().min(to)))
            .filter(|(start, end)| start < end)
            .collect();
        covered.sort_unstable();
        let mut pos = from;
        for (start, end) in covered {
            if end <= pos {
                continue;
            }
            if start > pos {
                out(&buf[pos..start]);
                *in_mask = false;
            }
            if !*in_mask {
                out(MASK.as_bytes());
                *in_mask = true;
            }
            pos = end;
        }
        if pos < to {
            out(&buf[pos..to]);
            *in_mask = false;
        }
    }
}

/// Masks secrets in output that arrives in pieces: holds back the last bytes that could still
/// be the start of a secret (at most the longest secret's length minus one) until more arrive
/// or the stream ends. What it emits is exactly what `redact_bytes` gives for the whole stream.
pub struct RedactingStream<'r> {
    redactor: &'r Redactor,
    /// Bytes not yet emitted, after context already emitted (`..emitted`) that a secret
    /// starting there and reaching into the new bytes needs to be recognised.
    pending: Vec<u8>,
    emitted: usize,
    in_mask: bool,
}

impl RedactingStream<'_> {
    pub fn push(&mut self, bytes: &[u8], out: &mut dyn FnMut(&[u8])) {
        if self.redactor.matcher.is_none() {
            out(bytes);
            return;
        }
        self.pending.extend_from_slice(bytes);
        let hold = self.redactor.max_len - 1;
        // A byte before `upto` is covered by a match in `pending` or by none at all: a match
        // still to be completed by later bytes starts in the unfinished tail.
        let upto = self.pending.len() - self.redactor.unfinished_tail(&self.pending);
        if upto <= self.emitted {
            return;
        }
        self.redactor
            .emit(&self.pending, self.emitted, upto, &mut self.in_mask, out);
        // Keep `hold` bytes of context before the first byte not yet emitted.
        let drop = upto.saturating_sub(hold);
        self.pending.drain(..drop);
        self.emitted = upto - drop;
    }

    /// Emits what was held back: the stream has ended.
    pub fn finish(&mut self, out: &mut dyn FnMut(&[u8])) {
        let len = self.pending.len();
        if self.emitted < len {
            self.redactor
                .emit(&self.pending, self.emitted, len, &mut self.in_mask, out);
        }
        self.pending.clear();
        self.emitted = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(values: &[&str]) -> Redactor {
        let secrets: Vec<Secret> = values.iter().map(|v| Secret::new(*v)).collect();
        Redactor::new(secrets.iter())
    }

    fn streamed(r: &Redactor, text: &[u8], piece: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut stream = r.stream();
        for chunk in text.chunks(piece) {
            stream.push(chunk, &mut |b| out.extend_from_slice(b));
        }
        stream.finish(&mut |b| out.extend_from_slice(b));
        out
    }

    #[test]
    fn masks_longest_and_overlapping_secrets_whole() {
        let r = redactor(&["abc", "abcdef", "cdxy"]);
        assert_eq!(r.redact("x abcdef y abc"), "x ******** y ********");
        // `abc` and `cdxy` overlap: neither shows in part.
        assert_eq!(r.redact("1abcdxy2"), "1********2");
        // Adjacent occurrences are one run.
        assert_eq!(r.redact("abcabc."), "********.");
        assert!(r.reveals_secret(b"..abc.."));
        assert!(!r.reveals_secret(b"..ab.."));
        let repeated = redactor(&["aa"]);
        assert_eq!(repeated.redact("baaab"), "b********b");
    }

    #[test]
    fn a_secret_learned_during_a_run_is_masked_beside_the_known_ones() {
        let r = redactor(&["known"]).with([&Secret::new("SWMTKN-1-learned")]);
        assert_eq!(r.redact("known SWMTKN-1-learned x"), "******** ******** x");
        assert_eq!(Redactor::default().with([]).redact("plain"), "plain");
    }

    #[test]
    fn masks_multi_line_secrets_with_lf_or_crlf() {
        let r = redactor(&["line one\nline two"]);
        assert_eq!(r.redact("a line one\nline two b"), "a ******** b");
        assert_eq!(r.redact("a line one\r\nline two b"), "a ******** b");
        let crlf = redactor(&["p\r\nq"]);
        assert_eq!(crlf.redact("p\nq|p\r\nq"), "********|********");
    }

    #[test]
    fn a_stream_masks_a_secret_split_at_any_piece_size() {
        let r = redactor(&["s3cr3t-value", "s3cr3t", "alpha\nbeta", "tail-XY"]);
        let text = b"head s3cr3t-value mid s3cr3ts3cr3t alpha\r\nbeta \
                     s3cr3 s3cr3t-valu end alpha\nbeta tail-XY";
        let whole = r.redact_bytes(text).into_owned();
        assert!(!r.reveals_secret(&whole));
        for piece in 1..=text.len() {
            assert_eq!(
                streamed(&r, text, piece),
                whole,
                "piece size {piece}: {}",
                String::from_utf8_lossy(&streamed(&r, text, piece))
            );
        }
    }

    #[test]
    fn a_stream_holds_back_only_a_tail_that_could_become_a_secret() {
        // A followed log must show its last line before more output comes.
        let r = redactor(&["hunter2hunter2", "line\nnext"]);
        let mut out = Vec::new();
        let mut stream = r.stream();
        stream.push(b"before\n", &mut |b| out.extend_from_slice(b));
        assert_eq!(out, b"before\n");
        stream.push(b"pass=hunter", &mut |b| out.extend_from_slice(b));
        assert_eq!(out, b"before\npass=");
        stream.push(b"2hunter2 line", &mut |b| out.extend_from_slice(b));
        assert_eq!(out, b"before\npass=******** ");
        stream.push(b"\nnext!", &mut |b| out.extend_from_slice(b));
        assert_eq!(out, b"before\npass=******** ********!");
    }

    #[test]
    fn a_stream_without_secrets_passes_bytes_through() {
        let r = Redactor::default();
        assert_eq!(streamed(&r, b"plain \x1b text", 3), b"plain \x1b text");
        assert_eq!(format!("{r:?}"), "Redactor { patterns: 0 }");
        let secret = redactor(&["hunter2"]);
        assert!(!format!("{secret:?}").contains("hunter2"));
    }
}
