//! The one seam between the host session and the network: connect to a host (`ConnectSpec`,
//! resolved in `settings`), run a command with stdin; `TransportError` with hints as data. May
//! import output, paths and diagnostic; nothing above it.

mod auth;
mod connection;
mod known_hosts;
mod known_hosts_format;
pub mod local;
pub mod settings;
pub mod ssh;
pub mod ssh_config;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use crate::diagnostic::Hinted;
use crate::output::Dropped;

/// How to treat a host key that is not yet in known_hosts. A changed or revoked key, or a
/// host covered by a `@cert-authority` line, is always refused.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// Unknown hosts are refused.
    #[default]
    Strict,
    /// Unknown hosts are learned (appended to known_hosts); changed keys are still refused.
    AcceptNew,
}

/// Everything needed to open one authenticated SSH connection to one host.
#[derive(Debug, Clone)]
pub struct ConnectSpec {
    /// The inventory name of the host, used in messages only.
    pub host_name: String,
    /// Address (IP or DNS name) to connect to.
    pub address: String,
    pub port: u16,
    pub user: String,
    /// Key tried first when set; then ssh-agent, then the default keys in `~/.ssh`.
    pub identity_file: Option<PathBuf>,
    pub known_hosts: PathBuf,
    pub host_key_policy: HostKeyPolicy,
    /// The whole connect, retries and the bastion's handshake included.
    pub connect_timeout: Duration,
    /// Reach the host through this bastion (`ProxyJump`), or directly when `None`.
    /// The bastion is verified and authenticated with this spec's identity, known_hosts,
    /// policy and timeout; targets share a bastion connection only when those agree.
    pub jump: Option<JumpSpec>,
    /// Only `identity_file` is offered (no agent, no default keys) when it is set.
    pub identities_only: bool,
}

/// A bastion (jump host) a target is reached through.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JumpSpec {
    pub host: String,
    pub port: u16,
    pub user: String,
}

impl std::fmt::Display for JumpSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}@[{}]:{}", self.user, self.host, self.port)
        } else {
            write!(f, "{}@{}:{}", self.user, self.host, self.port)
        }
    }
}

/// What is wrong with a jump host as written; `text` is what was parsed (without `ssh://`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JumpError {
    #[error("`{text}`: empty user before `@`")]
    EmptyUser { text: String },
    #[error("`{text}`: unclosed `[`")]
    Unclosed { text: String },
    #[error("`{text}`: expected `:PORT` after `]`")]
    AfterBracket { text: String },
    #[error("`{text}`: no host name")]
    NoHost { text: String },
    #[error("`{text}`: `{port}` is not a port number")]
    BadPort { text: String, port: String },
}

/// `[user@]host[:port]` (IPv6 addresses in brackets); `None` for an empty string or `none`.
pub fn parse_jump(text: &str, default_user: &str) -> Result<Option<JumpSpec>, JumpError> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    // Strip an ssh:// scheme, as OpenSSH accepts it in ProxyJump.
    let text = text.strip_prefix("ssh://").unwrap_or(text);
    let owned = || text.to_string();
    let (user, rest) = match text.rsplit_once('@') {
        Some((u, r)) if !u.is_empty() => (u.to_string(), r),
        Some(_) => return Err(JumpError::EmptyUser { text: owned() }),
        None => (default_user.to_string(), text),
    };
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (host, after) = inner
            .split_once(']')
            .ok_or_else(|| JumpError::Unclosed { text: owned() })?;
        match after {
            "" => (host, None),
            p => (
                host,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| JumpError::AfterBracket { text: owned() })?,
                ),
            ),
        }
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(JumpError::NoHost { text: owned() });
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| JumpError::BadPort {
                text: owned(),
                port: p.to_string(),
            })?,
        None => 22,
    };
    Ok(Some(JumpSpec {
        host: host.to_string(),
        port,
        user,
    }))
}

/// What a remote command produced.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    /// Exit status; `None` when the command was killed by a signal or the channel closed without one.
    pub status: Option<u32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Where the middle of `stdout` was left out to keep it bounded, and how much (a step's
    /// output, see `output::Kept`); `None` when it is whole.
    pub stdout_dropped: Option<Dropped>,
    pub stderr_dropped: Option<Dropped>,
    /// What a step's script reported in result frames (`KIND:FIELDS` each, see
    /// `remote::frame`), taken out of its stdout by the driver's splitter; empty otherwise.
    pub results: Vec<String>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
}

/// Why a connection or a command failed at the transport level (not a non-zero exit).
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("cannot reach {address}:{port}: {reason}")]
    Unreachable {
        address: String,
        port: u16,
        reason: String,
    },
    #[error("connection to {address}:{port} timed out after {}", humantime::format_duration(*.after))]
    Timeout {
        address: String,
        port: u16,
        after: Duration,
    },
    #[error("{}", Hinted(&format_args!("host key for {host} is not known ({fingerprint}); it is not in {known_hosts}"), self.hint()))]
    UnknownHostKey {
        host: String,
        fingerprint: String,
        known_hosts: String,
    },
    #[error("{}", Hinted(&format_args!("HOST KEY CHANGED for {host} (now {fingerprint}); it does not match {known_hosts} line {line}"), self.hint()))]
    ChangedHostKey {
        host: String,
        fingerprint: String,
        known_hosts: String,
        line: usize,
    },
    #[error("{}", Hinted(&format_args!("host key for {host} ({fingerprint}) is REVOKED in {known_hosts} line {line}"), self.hint()))]
    RevokedHostKey {
        host: String,
        fingerprint: String,
        known_hosts: String,
        line: usize,
    },
    #[error("{}", Hinted(&format_args!("host key for {host} ({fingerprint}) is not trusted: {known_hosts} line {line} is a @cert-authority for it, and dropship does not verify host certificates"), self.hint()))]
    CertAuthorityHostKey {
        host: String,
        fingerprint: String,
        known_hosts: String,
        line: usize,
    },
    #[error("permission denied for {user}@{host} (publickey); keys tried: {}", if .tried.is_empty() { "none found".to_string() } else { .tried.join(", ") })]
    AuthRefused {
        user: String,
        host: String,
        tried: Vec<String>,
    },
    #[error("ssh: {0}")]
    Protocol(String),
    /// One of dropship's own scripts printed more than `CAPTURE_LIMIT` on a stream.
    #[error(
        "the host printed more than {} on {stream} for one of dropship's own commands; it is not read further",
        crate::output::human_bytes(*.limit as u64)
    )]
    OutputTooLarge { stream: &'static str, limit: usize },
    /// The run was aborted (a second Ctrl-C, SIGTERM): the command's processes on the host
    /// were sent SIGTERM, then SIGKILL.
    #[error("aborted: the command was stopped on the host")]
    Aborted,
    /// The bastion in front of the host failed (unreachable, host key, auth, ...).
    #[error("via bastion {bastion}: {error}")]
    Bastion {
        bastion: String,
        error: Box<TransportError>,
    },
}

impl TransportError {
    /// What the user can do about it, when there is something to say; shown after the message
    /// (`diagnostic::render`). A bastion's error keeps its own hint.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::UnknownHostKey { .. } => Some(
                "verify the fingerprint, then add it with `ssh-keyscan` or set host_key_policy = \"accept-new\"",
            ),
            Self::ChangedHostKey { .. } => Some(
                "if the server was really re-installed, remove that line; otherwise someone may be intercepting the connection",
            ),
            Self::RevokedHostKey { .. } => Some(
                "a revoked key may be a stolen one used to impersonate the host; do not connect until the host has a new key",
            ),
            Self::CertAuthorityHostKey { .. } => Some(
                "verify the fingerprint, then add the host's own key to known_hosts (`ssh-keyscan`)",
            ),
            _ => None,
        }
    }
}

/// Opens connections. Shared by every host task, so it must be cheap to share.
pub trait Connector: Clone + Send + Sync + 'static {
    type Conn: Connection;
    fn connect(
        &self,
        spec: &ConnectSpec,
    ) -> impl Future<Output = Result<Self::Conn, TransportError>> + Send;
}

/// A command that did not run to its end: what it printed until then, and why it ended.
#[derive(Debug)]
pub struct Cut {
    pub partial: ExecOutput,
    pub error: TransportError,
}

/// Receives a remote command's output as it arrives, piece by piece.
pub trait OutputSink: Send {
    fn stdout(&mut self, bytes: &[u8]);
    fn stderr(&mut self, bytes: &[u8]);
}

/// Most of a command's output `exec_until` keeps per stream: dropship's own scripts print
/// little (the probe a line per file), so more is an error rather than memory spent. Commands
/// of the user go through `exec_streamed_until` into a bounded sink instead.
pub const CAPTURE_LIMIT: usize = 4 * 1024 * 1024;

/// Keeps a command's output whole, up to `CAPTURE_LIMIT` per stream.
#[derive(Default)]
pub struct Capture {
    out: ExecOutput,
    overflow: Option<&'static str>,
}

impl Capture {
    fn keep(
        stream: &mut Vec<u8>,
        overflow: &mut Option<&'static str>,
        name: &'static str,
        bytes: &[u8],
    ) {
        if stream.len() + bytes.len() > CAPTURE_LIMIT {
            overflow.get_or_insert(name);
        } else {
            stream.extend_from_slice(bytes);
        }
    }

    /// The whole output once the command ended with `ended` (its status, or why it was cut
    /// short); past the limit, an error.
    // The shape of `Connection::exec_until`, whose `Cut` carries the partial output.
    #[allow(clippy::result_large_err)]
    pub fn finish(mut self, ended: Result<Option<u32>, TransportError>) -> Result<ExecOutput, Cut> {
        match ended {
            Ok(status) => {
                self.out.status = status;
                match self.overflow {
                    None => Ok(self.out),
                    Some(stream) => Err(Cut {
                        partial: self.out,
                        error: TransportError::OutputTooLarge {
                            stream,
                            limit: CAPTURE_LIMIT,
                        },
                    }),
                }
            }
            Err(error) => Err(Cut {
                partial: self.out,
                error,
            }),
        }
    }
}

impl OutputSink for Capture {
    fn stdout(&mut self, bytes: &[u8]) {
        Self::keep(&mut self.out.stdout, &mut self.overflow, "stdout", bytes);
    }

    fn stderr(&mut self, bytes: &[u8]) {
        Self::keep(&mut self.out.stderr, &mut self.overflow, "stderr", bytes);
    }
}

/// One open, authenticated connection; every step of a host runs over it.
pub trait Connection: Send + Sync + 'static {
    /// Runs `command` through the remote user's shell, writes the `stdin` pieces to it back to
    /// back and closes stdin, and hands stdout and stderr to `sink` as they arrive (keeping
    /// nothing itself); returns the exit status. (Pieces, so many files go to one command
    /// without being copied into one buffer first.) When `abort` resolves first, the command
    /// is stopped on the host (`TransportError::Aborted`). Either way the sink has what the
    /// command sent until it ended.
    fn exec_streamed_until(
        &self,
        command: &str,
        stdin: &[&[u8]],
        sink: &mut dyn OutputSink,
        abort: impl Future<Output = ()> + Send,
    ) -> impl Future<Output = Result<Option<u32>, TransportError>> + Send;
    /// Starts opening session channels for the execs to come, until `channels` are open or
    /// opening, so that their round trips overlap what happens meanwhile (another host's
    /// answer, this host's previous command). Each next exec takes the oldest. Never waits,
    /// and never takes a slot an exec is waiting for. A no-op where there are no channels.
    fn keep_ready(&self, channels: usize) {
        let _ = channels;
    }
    /// `exec_streamed_until` that is never aborted.
    fn exec_streamed(
        &self,
        command: &str,
        stdin: &[&[u8]],
        sink: &mut dyn OutputSink,
    ) -> impl Future<Output = Result<Option<u32>, TransportError>> + Send {
        self.exec_streamed_until(command, stdin, sink, std::future::pending())
    }
    /// `exec_streamed_until` collecting stdout, stderr and the exit status, each stream kept
    /// whole up to `CAPTURE_LIMIT` (past it the command fails). A command cut short keeps the
    /// output it sent.
    fn exec_until(
        &self,
        command: &str,
        stdin: &[&[u8]],
        abort: impl Future<Output = ()> + Send,
    ) -> impl Future<Output = Result<ExecOutput, Cut>> + Send {
        async move {
            let mut capture = Capture::default();
            let ended = self
                .exec_streamed_until(command, stdin, &mut capture, abort)
                .await;
            capture.finish(ended)
        }
    }
    /// `exec_until` that is never aborted, without the partial output.
    fn exec_pieces(
        &self,
        command: &str,
        stdin: &[&[u8]],
    ) -> impl Future<Output = Result<ExecOutput, TransportError>> + Send {
        async move {
            self.exec_until(command, stdin, std::future::pending())
                .await
                .map_err(|cut| cut.error)
        }
    }
    /// `exec_pieces` with one piece.
    fn exec(
        &self,
        command: &str,
        stdin: &[u8],
    ) -> impl Future<Output = Result<ExecOutput, TransportError>> + Send {
        async move { self.exec_pieces(command, &[stdin]).await }
    }
    /// Opens a TCP connection from the remote host's side (SSH `direct-tcpip`) to `host:port`,
    /// sends `request`, and returns everything the peer sent until it closed (at most `limit`
    /// bytes). Used for HTTP health checks without curl on the host.
    fn tcp_request(
        &self,
        host: &str,
        port: u16,
        request: &[u8],
        limit: usize,
    ) -> impl Future<Output = Result<Vec<u8>, TransportError>> + Send;
    /// A byte stream from the remote host's side (SSH `direct-tcpip`) to `host:port`, both
    /// ways: for https health checks, whose TLS runs on top of it.
    fn tcp_stream(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = Result<ForwardedStream, TransportError>> + Send;
    /// Closes the connection politely.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// A forwarded TCP connection as a byte stream (`Connection::tcp_stream`).
pub type ForwardedStream = Box<dyn ForwardedIo>;

/// What a forwarded stream is: readable and writable from any task.
pub trait ForwardedIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> ForwardedIo for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_specs_parse_with_defaults() {
        let j = |s: &str| parse_jump(s, "deploy");
        assert_eq!(
            j("admin@bastion:2222").unwrap(),
            Some(JumpSpec {
                host: "bastion".into(),
                port: 2222,
                user: "admin".into()
            })
        );
        let plain = j("bastion").unwrap().unwrap();
        assert_eq!((plain.user.as_str(), plain.port), ("deploy", 22));
        assert_eq!(plain.to_string(), "deploy@bastion:22");
        let v6 = j("root@[::1]:2200").unwrap().unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 2200));
        assert_eq!(v6.to_string(), "root@[::1]:2200");
        assert_eq!(j("").unwrap(), None);
        assert_eq!(j("none").unwrap(), None);
        assert!(
            j("b:http")
                .unwrap_err()
                .to_string()
                .contains("not a port number")
        );
        assert!(j("@b").unwrap_err().to_string().contains("empty user"));
    }

    #[test]
    fn host_key_errors_show_their_hint_on_a_line_of_its_own() {
        let unknown = TransportError::UnknownHostKey {
            host: "web-1".into(),
            fingerprint: "SHA256:abc".into(),
            known_hosts: "/k".into(),
        };
        assert_eq!(
            unknown.to_string(),
            "host key for web-1 is not known (SHA256:abc); it is not in /k\n  hint: verify the fingerprint, then add it with `ssh-keyscan` or set host_key_policy = \"accept-new\""
        );
        let via = TransportError::Bastion {
            bastion: "b@h:22".into(),
            error: Box::new(unknown),
        };
        assert!(
            via.to_string()
                .starts_with("via bastion b@h:22: host key for web-1")
        );
        assert!(via.to_string().ends_with("\n  hint: verify the fingerprint, then add it with `ssh-keyscan` or set host_key_policy = \"accept-new\""));
        let timeout = TransportError::Timeout {
            address: "a".into(),
            port: 22,
            after: Duration::from_secs(3),
        };
        assert_eq!(timeout.hint(), None);
        assert_eq!(timeout.to_string(), "connection to a:22 timed out after 3s");
    }
}
