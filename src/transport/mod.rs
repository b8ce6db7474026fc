//! The one seam between the executor and the network: connect to a host, run a command with stdin.

mod auth;
mod known_hosts;
pub mod ssh;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

/// How to treat a host key that is not yet in known_hosts. A changed key is always refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
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
    pub connect_timeout: Duration,
}

/// What a remote command produced.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    /// Exit status; `None` when the command was killed by a signal or the channel closed without one.
    pub status: Option<u32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
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
    #[error(
        "host key for {host} is not known ({fingerprint}); it is not in {known_hosts}\n  hint: verify the fingerprint, then add it with `ssh-keyscan` or set host_key_policy = \"accept-new\""
    )]
    UnknownHostKey {
        host: String,
        fingerprint: String,
        known_hosts: String,
    },
    #[error(
        "HOST KEY CHANGED for {host} (now {fingerprint}); it does not match {known_hosts} line {line}\n  hint: if the server was really re-installed, remove that line; otherwise someone may be intercepting the connection"
    )]
    ChangedHostKey {
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
}

/// Opens connections. Shared by every host task, so it must be cheap to share.
pub trait Connector: Send + Sync + 'static {
    type Conn: Connection;
    fn connect(
        &self,
        spec: &ConnectSpec,
    ) -> impl Future<Output = Result<Self::Conn, TransportError>> + Send;
}

/// One open, authenticated connection; every step of a host runs over it.
pub trait Connection: Send + Sync + 'static {
    /// Runs `command` through the remote user's shell, writes `stdin` to it and closes stdin,
    /// then collects stdout, stderr and the exit status.
    fn exec(
        &self,
        command: &str,
        stdin: &[u8],
    ) -> impl Future<Output = Result<ExecOutput, TransportError>> + Send;
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
    /// Closes the connection politely.
    fn close(&self) -> impl Future<Output = ()> + Send;
}
