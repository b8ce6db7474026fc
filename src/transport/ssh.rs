//! The russh implementation of the transport: key auth, known_hosts verification, exec with stdin.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PublicKeyOrCertificate};
use russh::{Preferred, cipher, compression, kex};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};

use super::auth::{AgentSource, KeySources, authenticate};
use super::known_hosts::HostKeyCheck;
use super::{ConnectSpec, Connector, TransportError};

mod bastion;

pub(super) use bastion::Bastion;
use bastion::Bastions;

/// Stdin is handed to russh in pieces this big; it splits them further by packet size and window.
pub(super) const STDIN_CHUNK: usize = 256 * 1024;

/// OpenSSH's default `MaxSessions` is 10; more concurrent session channels would be refused.
pub(super) const MAX_SESSIONS: usize = 10;

/// Retries of a refused session open when none of our other commands could be holding a slot.
pub(super) const OPEN_RETRIES: u32 = 6;

/// Handshake attempts when the server drops the connection before or during the handshake
/// (sshd's MaxStartups under a burst of connections): the first try and this many retries.
const HANDSHAKE_RETRIES: u32 = 4;

/// The first retry waits this long (plus up to half again as jitter); each next one twice that.
const RETRY_BASE_DELAY: Duration = Duration::from_millis(200);

/// Fast and modern first; the rest only so older servers still work.
const KEX: &[kex::Name] = &[
    kex::CURVE25519,
    kex::CURVE25519_PRE_RFC_8731,
    kex::MLKEM768X25519_SHA256,
    kex::ECDH_SHA2_NISTP256,
    kex::DH_GEX_SHA256,
    kex::DH_G16_SHA512,
    kex::DH_G14_SHA256,
    kex::EXTENSION_SUPPORT_AS_CLIENT,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
];

/// AES-GCM first: with AES-NI (via aws-lc) it outruns chacha20 for bulk stdin.
const CIPHERS: &[cipher::Name] = &[
    cipher::AES_256_GCM,
    cipher::CHACHA20_POLY1305,
    cipher::AES_128_GCM,
    cipher::AES_256_CTR,
    cipher::AES_128_CTR,
];

const HOST_KEYS: &[Algorithm] = &[
    Algorithm::Ed25519,
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP256,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP384,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP521,
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha512),
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha256),
    },
];

/// Opens SSH connections with russh. Cheap to share between host tasks; clones share the
/// bastion connections.
#[derive(Clone)]
pub struct SshConnector {
    sources: KeySources,
    bastions: Bastions,
}

impl std::fmt::Debug for SshConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshConnector")
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

impl Default for SshConnector {
    fn default() -> Self {
        Self::new()
    }
}

impl SshConnector {
    /// Uses `identity_file`, then ssh-agent, then the default keys in `~/.ssh`.
    pub fn new() -> Self {
        Self {
            sources: KeySources {
                agent: AgentSource::FromEnv,
                default_keys: true,
            },
            bastions: Arc::default(),
        }
    }

    /// Whether to offer the keys held by the agent at `SSH_AUTH_SOCK`.
    pub fn with_agent(mut self, enabled: bool) -> Self {
        self.sources.agent = if enabled {
            AgentSource::FromEnv
        } else {
            AgentSource::Off
        };
        self
    }

    /// Uses the agent listening at `socket` instead of `SSH_AUTH_SOCK`.
    pub fn with_agent_socket(mut self, socket: impl Into<PathBuf>) -> Self {
        self.sources.agent = AgentSource::Socket(socket.into());
        self
    }

    /// Whether to offer `~/.ssh/id_ed25519`, `id_ecdsa` and `id_rsa`.
    pub fn with_default_keys(mut self, enabled: bool) -> Self {
        self.sources.default_keys = enabled;
        self
    }

    async fn connect_inner(
        &self,
        spec: &ConnectSpec,
        bastion: Option<Arc<Bastion>>,
    ) -> Result<SshConnection, TransportError> {
        let (mut handle, state) = match &bastion {
            None => with_retries(spec, || direct_handshake(spec)).await?,
            Some(b) => {
                with_retries(spec, || async {
                    let stream = b.open_stream(spec).await?;
                    handshake(spec, stream).await
                })
                .await?
            }
        };
        authenticate(&mut handle, spec, &self.sources).await?;
        Ok(SshConnection {
            handle: Arc::new(handle),
            state,
            sessions: Arc::new(Semaphore::new(MAX_SESSIONS)),
            ready: Mutex::default(),
            session_ended: Notify::new(),
            _bastion: bastion,
        })
    }
}

/// A failed connect attempt, and whether trying again may help.
struct Failure {
    error: TransportError,
    retry: bool,
}

impl Failure {
    fn fatal(error: TransportError) -> Self {
        Failure {
            error,
            retry: false,
        }
    }
}

impl From<TransportError> for Failure {
    fn from(error: TransportError) -> Self {
        Failure::fatal(error)
    }
}

/// Runs `attempt` until it succeeds, fails for good, or the retries are used up. Only drops
/// by the server around the handshake are retried, never host key or authentication errors.
/// The caller's `connect_timeout` bounds all attempts together.
async fn with_retries<T, F, Fut>(spec: &ConnectSpec, mut attempt: F) -> Result<T, TransportError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut delay = RETRY_BASE_DELAY;
    let mut retries = 0;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(Failure { error, retry: true }) if retries < HANDSHAKE_RETRIES => {
                retries += 1;
                let wait = delay + jitter(delay / 2);
                tracing::debug!(
                    host = %spec.host_name,
                    %error,
                    retry = retries,
                    wait = ?wait,
                    "handshake dropped by the server; retrying"
                );
                tokio::time::sleep(wait).await;
                delay *= 2;
            }
            Err(failure) => return Err(failure.error),
        }
    }
}

/// A random duration up to `max`, so retrying clients do not come back in lockstep.
fn jitter(max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

fn timeout_error(spec: &ConnectSpec) -> TransportError {
    TransportError::Timeout {
        address: spec.address.clone(),
        port: spec.port,
        after: spec.connect_timeout,
    }
}

async fn direct_handshake(
    spec: &ConnectSpec,
) -> Result<(Handle<ClientHandler>, Arc<SessionState>), Failure> {
    let stream = tcp_connect(spec).await?;
    handshake(spec, stream).await
}

/// The SSH handshake (host key verified) over `stream`, not yet authenticated.
async fn handshake<S>(
    spec: &ConnectSpec,
    stream: S,
) -> Result<(Handle<ClientHandler>, Arc<SessionState>), Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = Arc::new(SessionState::default());
    let handler = ClientHandler {
        spec: spec.clone(),
        state: Arc::clone(&state),
    };
    let owned = spec.clone();
    // known_hosts may be large; read it off the async workers like the key check does.
    let known = tokio::task::spawn_blocking(move || host_key_check(&owned).known_algorithms())
        .await
        .unwrap_or_default();
    let config = Arc::new(client_config(&known));
    let handle = client::connect_stream(config, stream, handler)
        .await
        .map_err(|e| handshake_error(spec, e))?;
    Ok((handle, state))
}

impl Connector for SshConnector {
    type Conn = SshConnection;

    async fn connect(&self, spec: &ConnectSpec) -> Result<SshConnection, TransportError> {
        // The bastion has its own connect_timeout (shared by all targets waiting for it);
        // the target's connect through it gets a full one of its own.
        let bastion =
            match &spec.jump {
                Some(jump) => Some(self.bastion(spec, jump).await.map_err(|error| {
                    TransportError::Bastion {
                        bastion: jump.to_string(),
                        error: Box::new(error),
                    }
                })?),
                None => None,
            };
        tokio::time::timeout(spec.connect_timeout, self.connect_inner(spec, bastion))
            .await
            .map_err(|_| timeout_error(spec))?
    }
}

pub use super::connection::SshConnection;

/// What the session task learned that the caller needs later.
#[derive(Default)]
pub(super) struct SessionState {
    disconnect: Mutex<Option<String>>,
}

impl SessionState {
    pub(super) fn disconnect_reason(&self) -> Option<String> {
        self.disconnect
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Carries a host key refusal out of the handshake as the precise transport error.
#[derive(Debug)]
pub(super) enum HandlerError {
    Ssh(russh::Error),
    Refused(TransportError),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Ssh(e)
    }
}

pub(super) struct ClientHandler {
    spec: ConnectSpec,
    state: Arc<SessionState>,
}

impl client::Handler for ClientHandler {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, HandlerError> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            // We never advertise certificate host-key types, so this is a misbehaving server.
            return Err(HandlerError::Refused(TransportError::Protocol(
                "server presented a host certificate, which dropship does not verify".into(),
            )));
        };
        let (spec, key) = (self.spec.clone(), key.clone());
        // File I/O and a possibly contended flock: keep them off the async workers.
        tokio::task::spawn_blocking(move || host_key_check(&spec).verify(&key))
            .await
            .map_err(|e| {
                HandlerError::Refused(TransportError::Protocol(format!(
                    "host key check failed: {e}"
                )))
            })?
            .map_err(HandlerError::Refused)?;
        Ok(true)
    }

    async fn kex_done(
        &mut self,
        _shared_secret: Option<&[u8]>,
        names: &russh::Names,
        _session: &mut client::Session,
    ) -> Result<(), HandlerError> {
        tracing::debug!(
            host = %self.spec.host_name,
            kex = ?names.kex,
            host_key = %names.key,
            cipher = ?names.cipher,
            "ssh algorithms negotiated"
        );
        Ok(())
    }

    async fn disconnected(
        &mut self,
        reason: client::DisconnectReason<HandlerError>,
    ) -> Result<(), HandlerError> {
        let text = match &reason {
            client::DisconnectReason::ReceivedDisconnect(info) if info.message.is_empty() => {
                format!("server disconnected ({:?})", info.reason_code)
            }
            client::DisconnectReason::ReceivedDisconnect(info) => {
                format!("server disconnected: {}", info.message)
            }
            client::DisconnectReason::Error(HandlerError::Ssh(e)) => e.to_string(),
            client::DisconnectReason::Error(HandlerError::Refused(e)) => e.to_string(),
        };
        *self
            .state
            .disconnect
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(text);
        match reason {
            client::DisconnectReason::ReceivedDisconnect(_) => Ok(()),
            client::DisconnectReason::Error(e) => Err(e),
        }
    }
}

fn host_key_check(spec: &ConnectSpec) -> HostKeyCheck<'_> {
    HostKeyCheck {
        known_hosts: &spec.known_hosts,
        address: &spec.address,
        port: spec.port,
        policy: spec.host_key_policy,
    }
}

fn client_config(known: &[Algorithm]) -> client::Config {
    // Ask first for key types known_hosts has for this host, so a recorded ecdsa key is
    // checked as ecdsa instead of the server's ed25519 looking "unknown".
    let rsa = |a: &Algorithm| matches!(a, Algorithm::Rsa { .. });
    let is_known = |alg: &Algorithm| known.iter().any(|k| k == alg || (rsa(k) && rsa(alg)));
    let (mut key, rest): (Vec<_>, Vec<_>) = HOST_KEYS.iter().cloned().partition(is_known);
    key.extend(rest);
    client::Config {
        preferred: Preferred {
            kex: Cow::Borrowed(KEX),
            key: Cow::Owned(key),
            cipher: Cow::Borrowed(CIPHERS),
            compression: Cow::Borrowed(&[compression::NONE]),
            ..Preferred::DEFAULT
        },
        // Steps can be silent for minutes (image pulls); never drop a connection for quiet.
        inactivity_timeout: None,
        keepalive_interval: None,
        ..Default::default()
    }
}

async fn tcp_connect(spec: &ConnectSpec) -> Result<TcpStream, Failure> {
    let unreachable = |reason: String| TransportError::Unreachable {
        address: spec.address.clone(),
        port: spec.port,
        reason,
    };
    let addrs: Vec<_> = tokio::net::lookup_host((spec.address.as_str(), spec.port))
        .await
        .map_err(|e| unreachable(format!("cannot resolve host name ({e})")))?
        .collect();
    if addrs.is_empty() {
        return Err(unreachable("cannot resolve host name (no addresses)".into()).into());
    }
    let mut last = String::new();
    let mut retry = false;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // Many small request/response packets: Nagle would add latency to each.
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "set_nodelay failed");
                }
                return Ok(stream);
            }
            Err(e) => {
                last = io_reason(&e);
                retry = dropped(&e);
            }
        }
    }
    Err(Failure {
        error: unreachable(last),
        retry,
    })
}

/// The server (or something in front of it) accepted and then dropped the connection: what
/// sshd does above MaxStartups. A refused connection (nobody listening) is not retried.
fn dropped(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
    )
}

fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.raw_os_error() {
        // Every host of a run holds a socket until the end: a big fleet can exhaust dropship's
        // own descriptors (its soft limit is raised to the hard one at start, not past it).
        Some(libc::EMFILE) => {
            return format!(
                "dropship has no file descriptor left for this host's socket ({e}); \
                 each host of a run holds one: raise the hard limit (`ulimit -Hn`, \
                 LimitNOFILE=, /etc/security/limits.conf) or deploy fewer hosts at once"
            );
        }
        Some(libc::ENFILE) => {
            return format!(
                "the system has no file descriptor left for this host's socket ({e}); \
                 raise fs.file-max or deploy fewer hosts at once"
            );
        }
        _ => {}
    }
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
            format!("connection closed by the server during the handshake ({e})")
        }
        _ => e.to_string(),
    }
}

fn handshake_error(spec: &ConnectSpec, e: HandlerError) -> Failure {
    let unreachable = |reason: String| TransportError::Unreachable {
        address: spec.address.clone(),
        port: spec.port,
        reason,
    };
    match e {
        HandlerError::Refused(e) => Failure::fatal(e),
        HandlerError::Ssh(russh::Error::IO(io)) => Failure {
            error: unreachable(io_reason(&io)),
            retry: dropped(&io),
        },
        HandlerError::Ssh(russh::Error::Disconnect | russh::Error::HUP) => Failure {
            error: unreachable("connection closed by the server during the handshake".into()),
            retry: true,
        },
        HandlerError::Ssh(e) => Failure::fatal(TransportError::Protocol(format!(
            "handshake with {}:{} failed: {e}",
            spec.address, spec.port
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::io_reason;

    #[test]
    fn running_out_of_descriptors_says_which_limit_to_raise() {
        let ours = io_reason(&std::io::Error::from_raw_os_error(libc::EMFILE));
        assert!(
            ours.contains("dropship has no file descriptor left"),
            "{ours}"
        );
        assert!(ours.contains("ulimit -Hn"), "{ours}");
        let system = io_reason(&std::io::Error::from_raw_os_error(libc::ENFILE));
        assert!(
            system.contains("the system has no file descriptor left"),
            "{system}"
        );
        let refused = io_reason(&std::io::Error::from_raw_os_error(libc::ECONNREFUSED));
        assert_eq!(refused, "connection refused");
    }
}
