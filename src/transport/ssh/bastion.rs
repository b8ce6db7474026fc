//! Bastion (`ProxyJump`) connections, shared by the targets behind them that trust them alike.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use russh::client::{Handle, Msg};
use tokio::sync::OnceCell;

use super::{
    ClientHandler, Failure, SessionState, SshConnector, direct_handshake, timeout_error,
    with_retries,
};
use crate::transport::auth::authenticate;
use crate::transport::{ConnectSpec, HostKeyPolicy, JumpSpec, TransportError};

/// One authenticated connection to a bastion, shared by every target behind it.
pub(in crate::transport) struct Bastion {
    jump: JumpSpec,
    handle: Handle<ClientHandler>,
    state: Arc<SessionState>,
}

impl Drop for Bastion {
    fn drop(&mut self) {
        tracing::debug!(bastion = %self.jump, "closing the bastion connection");
    }
}

/// The one connection per bastion of a run, or why it could not be opened. The cell makes
/// concurrent targets wait for the single handshake instead of opening their own.
type BastionCell = Arc<OnceCell<Result<Arc<Bastion>, TransportError>>>;

/// The bastion connections of one connector (and its clones).
pub(super) type Bastions = Arc<tokio::sync::Mutex<HashMap<BastionKey, BastionCell>>>;

/// Everything a bastion connection was verified and authenticated with. Targets share one
/// only when all of it is equal, so a target never rides on a connection that its own
/// known_hosts, policy or identity would have refused. (`connect_timeout` is left out: it
/// bounds the wait, not what is trusted.)
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct BastionKey {
    jump: JumpSpec,
    known_hosts: PathBuf,
    host_key_policy: HostKeyPolicy,
    identity_file: Option<PathBuf>,
    identities_only: bool,
}

impl BastionKey {
    fn new(spec: &ConnectSpec, jump: &JumpSpec) -> Self {
        BastionKey {
            jump: jump.clone(),
            known_hosts: spec.known_hosts.clone(),
            host_key_policy: spec.host_key_policy,
            identity_file: spec.identity_file.clone(),
            identities_only: spec.identities_only,
        }
    }
}

impl SshConnector {
    /// How many bastion connections are open (or failed) in this connector: one per bastion
    /// and set of settings it is verified and authenticated with.
    pub async fn bastion_connections(&self) -> usize {
        self.bastions.lock().await.len()
    }

    /// The connection to `jump` shared by targets with `spec`'s verification and auth
    /// settings, opened on first use. A failure is remembered too, so every such target
    /// behind a broken bastion reports the same error without hammering it.
    pub(super) async fn bastion(
        &self,
        spec: &ConnectSpec,
        jump: &JumpSpec,
    ) -> Result<Arc<Bastion>, TransportError> {
        let cell = {
            let mut map = self.bastions.lock().await;
            let cell = map.entry(BastionKey::new(spec, jump)).or_default();
            // A bastion that went away since is dialled again.
            if let Some(Ok(b)) = cell.get()
                && b.handle.is_closed()
            {
                *cell = BastionCell::default();
            }
            Arc::clone(cell)
        };
        let bastion_spec = ConnectSpec {
            host_name: jump.host.clone(),
            address: jump.host.clone(),
            port: jump.port,
            user: jump.user.clone(),
            jump: None,
            ..spec.clone()
        };
        cell.get_or_init(|| async {
            let opened = tokio::time::timeout(spec.connect_timeout, async {
                let (mut handle, state) = with_retries(&bastion_spec, || async {
                    direct_handshake(&bastion_spec).await
                })
                .await?;
                authenticate(&mut handle, &bastion_spec, &self.sources).await?;
                Ok(Arc::new(Bastion {
                    jump: jump.clone(),
                    handle,
                    state,
                }))
            })
            .await
            .unwrap_or_else(|_| Err(timeout_error(&bastion_spec)));
            if opened.is_ok() {
                tracing::debug!(bastion = %jump, "bastion connected");
            }
            opened
        })
        .await
        .clone()
    }
}

impl Bastion {
    /// A `direct-tcpip` channel from the bastion to the target's SSH port, as a byte stream.
    pub(super) async fn open_stream(
        &self,
        spec: &ConnectSpec,
    ) -> Result<russh::ChannelStream<Msg>, Failure> {
        let via = |error: TransportError| TransportError::Bastion {
            bastion: self.jump.to_string(),
            error: Box::new(error),
        };
        match self
            .handle
            .channel_open_direct_tcpip(spec.address.as_str(), u32::from(spec.port), "127.0.0.1", 0)
            .await
        {
            Ok(channel) => Ok(channel.into_stream()),
            Err(russh::Error::ChannelOpenFailure(reason)) => {
                Err(Failure::fatal(TransportError::Unreachable {
                    address: spec.address.clone(),
                    port: spec.port,
                    reason: format!(
                        "bastion {} could not connect to it ({reason:?}: name not resolvable there, port closed or forwarding refused)",
                        self.jump
                    ),
                }))
            }
            Err(e) => {
                let reason = self
                    .state
                    .disconnect_reason()
                    .unwrap_or_else(|| e.to_string());
                Err(Failure::fatal(via(TransportError::Protocol(format!(
                    "connection lost: {reason}"
                )))))
            }
        }
    }
}
