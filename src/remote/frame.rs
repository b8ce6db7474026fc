//! The one framing of results from a host, and its one parser. A script reports a result as a
//! frame, the line `@@dropship:NONCE:KIND[:FIELDS]@@` printed with a newline before and after
//! it; NONCE is the session's (64 random bits, `nonce`), so no command's output can pass for a
//! frame by accident. The driver's step markers (`driver.rs`) are frames too: their kinds are
//! a step's index, `stop` and `end`.
//! May import: `remote::{script, vars}`, `transport::ExecOutput`.

use std::ops::Range;

use memchr::memmem;

use super::script::{Script, ShellArg};
use super::vars;
use crate::sh;
use crate::transport::ExecOutput;

/// Longest FIELDS believed (the text between the nonce and the closing `@@`): more is output.
pub const MAX_FIELDS: usize = 16 * 1024;

/// A fresh nonce, so no command's output can pass for a frame by accident: 64 random bits
/// from fastrand. It is not a secret (it shows in the host's process list); it only has to be
/// unpredictable to the commands whose output is framed.
pub fn nonce() -> String {
    format!("{:016x}", fastrand::u64(..))
}

/// What starts every frame of the session `nonce` in a stream: `\n@@dropship:NONCE:`.
pub fn prefix(nonce: &str) -> Vec<u8> {
    format!("\n@@dropship:{nonce}:").into_bytes()
}

/// The results dropship's scripts report (a frame's KIND).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `lock:acquired`, or `lock:held` followed by the holder's lines (`lock.rs`).
    Lock,
    /// `files:sums`, `files:stats` (each followed by its lines) and `files:end` (`files.rs`).
    Files,
    /// `compose:plugin|standalone|none|unusable:WANTED:OTHER` (`compose.rs`).
    Compose,
    /// `apt:ok` or `apt:changed PKG...` (`apt.rs`).
    Apt,
    /// `guard:holds`: a guarded `run` did not run its command (`run.rs`).
    Guard,
    /// `diagnose:project:I`, `diagnose:container:ID`, `diagnose:logs`, ... each followed by
    /// what docker printed (`diagnose.rs`).
    Diagnose,
    /// `images:release ID`, `images:containers`, `images:untagged REF`, … (`images.rs`).
    Images,
    /// `bluegreen:target|upstream|containers`, each followed by its lines (`blue_green.rs`).
    BlueGreen,
    /// `facts:docker|plugin|standalone`, each followed by that version (`facts.rs`).
    Facts,
    /// `ensure:ok` or `ensure:changed WHAT...` (`ensure.rs`).
    Ensure,
    /// `sudo:user`, `sudo:missing`, `sudo:list:STATUS`, `sudo:shell:STATUS`, each followed
    /// by what was asked (`sudo.rs`).
    Sudo,
    /// `preview:read:I` (followed by a file's bytes), `preview:exists:I:yes|no`,
    /// `preview:end` (`preview.rs`).
    Preview,
    /// `build:ok` or `build:changed REF...` (`compose_build.rs`).
    Build,
    /// `stack:service`, `stack:tasks`, `stack:deploy`, `stack:deployed`, `stack:rollback`,
    /// `stack:kept`, each followed by what docker printed (`stack.rs`).
    Stack,
    /// `swarm:info`, `swarm:worker`, `swarm:manager`, `swarm:response`, each followed by what
    /// docker (or the Engine API) printed (`swarm.rs`).
    Swarm,
    /// `binds:restarted SERVICE...`: containers restarted onto the current release's
    /// bind-mounted files (`release_binds.rs`).
    Binds,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Lock => "lock",
            Kind::Files => "files",
            Kind::Compose => "compose",
            Kind::Apt => "apt",
            Kind::Guard => "guard",
            Kind::Diagnose => "diagnose",
            Kind::Images => "images",
            Kind::BlueGreen => "bluegreen",
            Kind::Facts => "facts",
            Kind::Ensure => "ensure",
            Kind::Sudo => "sudo",
            Kind::Preview => "preview",
            Kind::Build => "build",
            Kind::Stack => "stack",
            Kind::Binds => "binds",
            Kind::Swarm => "swarm",
        }
    }
}

/// Shell code that reports a result of `kind`: `fields` is one shell word (a quoted text, or
/// a `Script` such as `"changed$todo"`). The nonce is the session's, from
/// `$dsn` (`vars::NONCE`). One builtin (`printf`): no process.
pub fn report(kind: Kind, fields: &dyn ShellArg) -> Script {
    sh!(
        "printf '\\n@@dropship:%s:%s@@\\n' {} {}:{}",
        vars::NONCE.get(),
        kind.as_str(),
        fields
    )
}

/// One frame's text after the nonce: its kind and its fields (empty when it has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: String,
    pub fields: String,
}

impl Frame {
    /// `KIND[:FIELDS]`, as it stands between the nonce and the closing `@@`.
    pub fn parse(text: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(text).ok()?;
        let (kind, fields) = text.split_once(':').unwrap_or((text, ""));
        Some(Self {
            kind: kind.to_string(),
            fields: fields.to_string(),
        })
    }

    /// The fields, when this frame is of `kind`.
    pub fn of(&self, kind: Kind) -> Option<&str> {
        (self.kind == kind.as_str()).then_some(self.fields.as_str())
    }
}

/// The results a driver's segment reported (its output's `results`, see `split.rs`).
pub fn results(out: &ExecOutput) -> impl Iterator<Item = Frame> + '_ {
    out.results
        .iter()
        .filter_map(|r| Frame::parse(r.as_bytes()))
}

/// A script run on its own (not a segment of a driver) that reports results: it sets
/// `$dsn` to a nonce of its own first, and its output is read back with `reply`.
#[derive(Debug, Clone)]
pub struct Framed {
    script: String,
    nonce: String,
}

impl Framed {
    pub fn new(script: &Script) -> Self {
        let nonce = nonce();
        let script = sh!("{}={}\n{}", vars::NONCE, nonce.as_str(), script).into_string();
        Self { script, nonce }
    }

    pub fn script(&self) -> &str {
        &self.script
    }

    /// The script's stdout, taken apart at its frames.
    pub fn reply(&self, stdout: &[u8]) -> Reply {
        Reply::parse(stdout, &self.nonce)
    }
}

/// What a framed script printed: the output before its first frame, then each frame with the
/// output that followed it (up to the next frame).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    pub head: Vec<u8>,
    pub sections: Vec<(Frame, Vec<u8>)>,
}

impl Reply {
    pub fn parse(stdout: &[u8], nonce: &str) -> Self {
        let mut scanner = Scanner::default();
        let pieces = scanner.feed(stdout, &prefix(nonce), true);
        let mut reply = Reply::default();
        for piece in pieces {
            match piece {
                Piece::Data(range) => {
                    let data = &scanner.pending[range];
                    match reply.sections.last_mut() {
                        Some((_, section)) => section.extend_from_slice(data),
                        None => reply.head.extend_from_slice(data),
                    }
                }
                Piece::Frame(range) => {
                    if let Some(frame) = Frame::parse(&scanner.pending[range]) {
                        reply.sections.push((frame, Vec::new()));
                    }
                }
            }
        }
        reply
    }

    /// The first frame of `kind`: its fields and the output that followed it.
    pub fn find(&self, kind: Kind) -> Option<(&str, &[u8])> {
        self.sections
            .iter()
            .find_map(|(frame, data)| Some((frame.of(kind)?, &data[..])))
    }
}

/// A piece of one stream: output, or a frame's text after the nonce (ranges into
/// `Scanner::pending`).
pub(super) enum Piece {
    Data(Range<usize>),
    Frame(Range<usize>),
}

/// Finds frames (`prefix` + text + `@@\n`) in a stream that arrives in pieces, holding back
/// only what could still be the start of one.
#[derive(Default)]
pub(super) struct Scanner {
    pub(super) pending: Vec<u8>,
    /// Bytes of `pending` already handed out as pieces.
    consumed: usize,
}

impl Scanner {
    /// Drops the bytes handed out by the last `feed`.
    pub(super) fn consume(&mut self) {
        self.pending.drain(..self.consumed);
        self.consumed = 0;
    }

    /// Takes `bytes`, returns the pieces now known; `end`: nothing more will come.
    pub(super) fn feed(&mut self, bytes: &[u8], prefix: &[u8], end: bool) -> Vec<Piece> {
        self.pending.extend_from_slice(bytes);
        let buf = &self.pending;
        let mut pieces = Vec::new();
        let mut pos = 0;
        let finder = memmem::Finder::new(prefix);
        loop {
            let Some(found) = finder.find(&buf[pos..]) else {
                // Hold back a tail that may be the start of a frame.
                let keep = if end {
                    0
                } else {
                    partial_prefix_len(&buf[pos..], prefix)
                };
                let data_end = buf.len() - keep;
                if data_end > pos {
                    pieces.push(Piece::Data(pos..data_end));
                }
                pos = data_end;
                break;
            };
            let at = pos + found;
            if at > pos {
                pieces.push(Piece::Data(pos..at));
            }
            let fields = at + prefix.len();
            let window = &buf[fields..buf.len().min(fields + MAX_FIELDS + 3)];
            match memmem::find(window, b"@@\n") {
                Some(close) => {
                    pieces.push(Piece::Frame(fields..fields + close));
                    pos = fields + close + 3;
                }
                None if end || window.len() >= MAX_FIELDS + 3 => {
                    // Not a frame after all: its first byte is output.
                    pieces.push(Piece::Data(at..at + 1));
                    pos = at + 1;
                }
                None => {
                    pos = at;
                    break;
                }
            }
        }
        self.consumed = pos;
        pieces
    }
}

/// The length of the longest end of `text` that is a proper start of `prefix`.
fn partial_prefix_len(text: &[u8], prefix: &[u8]) -> usize {
    let longest = text.len().min(prefix.len() - 1);
    (1..=longest)
        .rev()
        .find(|&n| text[text.len() - n..] == prefix[..n])
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_printed_by_a_script_come_back_in_sections() {
        let script = sh!(
            "echo before; {}; echo one; echo two; {}; printf 'no newline'; {}",
            report(Kind::Lock, &"held"),
            report(Kind::Apt, &sh!("\"changed$x\"")),
            report(Kind::Guard, &"")
        );
        let request = Framed::new(&sh!("x=' a b'; {}", script));
        let out = crate::remote::run_in_sh(request.script(), b"");
        assert_eq!(out.status, Some(0));
        let reply = request.reply(&out.stdout);
        assert_eq!(reply.head, b"before\n");
        assert_eq!(reply.find(Kind::Lock), Some(("held", &b"one\ntwo\n"[..])));
        assert_eq!(
            reply.find(Kind::Apt),
            Some(("changed a b", &b"no newline"[..]))
        );
        assert_eq!(reply.find(Kind::Guard), Some(("", &b""[..])));
        assert_eq!(reply.find(Kind::Files), None);
    }

    #[test]
    fn a_forged_frame_in_output_is_output() {
        // Another nonce, no nonce, a frame cut short: all plain output.
        let request = Framed::new(&sh!(
            "printf '\\n@@dropship:0123456789abcdef:lock:acquired@@\\n'; \
             printf '@@dropship:lock:acquired@@\\n'; printf '\\n@@dropship:%s:lock:acq' \"$dsn\""
        ));
        let out = crate::remote::run_in_sh(request.script(), b"");
        let reply = request.reply(&out.stdout);
        assert!(reply.sections.is_empty(), "{reply:?}");
        assert_eq!(reply.head, out.stdout);
        // A frame far longer than any result is output too.
        let long = format!("\n@@dropship:n:apt:{}@@\n", "x".repeat(MAX_FIELDS + 1));
        assert!(Reply::parse(long.as_bytes(), "n").sections.is_empty());
    }
}
