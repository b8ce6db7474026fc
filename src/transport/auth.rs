//! Public-key authentication: the configured identity file, then ssh-agent, then `~/.ssh` defaults.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::{Handle, Handler};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, load_secret_key};

use super::{ConnectSpec, TransportError};

/// Which key sources beyond `identity_file` may be used.
#[derive(Debug, Clone)]
pub(crate) struct KeySources {
    pub agent: AgentSource,
    pub default_keys: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum AgentSource {
    Off,
    /// Whatever `SSH_AUTH_SOCK` names, if set.
    FromEnv,
    Socket(PathBuf),
}

impl AgentSource {
    fn socket(&self) -> Option<PathBuf> {
        match self {
            AgentSource::Off => None,
            AgentSource::FromEnv => std::env::var_os("SSH_AUTH_SOCK")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            AgentSource::Socket(path) => Some(path.clone()),
        }
    }
}

/// Tries each key in order until the server accepts one.
pub(crate) async fn authenticate<H: Handler>(
    handle: &mut Handle<H>,
    spec: &ConnectSpec,
    sources: &KeySources,
) -> Result<(), TransportError> {
    // IdentitiesOnly: with an identity file, offer nothing else.
    let only_identity = spec.identities_only && spec.identity_file.is_some();
    let agent_socket = if only_identity {
        None
    } else {
        sources.agent.socket()
    };
    let mut attempt = Attempt {
        handle,
        spec,
        tried: Vec::new(),
        rsa_hash: None,
    };

    if let Some(path) = &spec.identity_file {
        match load_secret_key(path, None) {
            Ok(key) => {
                if attempt.with_key(key, path.display().to_string()).await? {
                    return Ok(());
                }
            }
            // No passphrase prompt here: an encrypted key can only be used through the agent.
            Err(russh::keys::Error::KeyIsEncrypted) if agent_socket.is_some() => {
                attempt
                    .tried
                    .push(format!("{} (encrypted; left to ssh-agent)", path.display()));
            }
            Err(e) => return Err(identity_error(path, e)),
        }
    }

    if let Some(socket) = &agent_socket
        && attempt.with_agent(socket).await?
    {
        return Ok(());
    }

    if sources.default_keys && !only_identity {
        for path in default_keys() {
            if spec.identity_file.as_deref() == Some(path.as_path()) {
                continue;
            }
            match load_secret_key(&path, None) {
                Ok(key) => {
                    if attempt.with_key(key, path.display().to_string()).await? {
                        return Ok(());
                    }
                }
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "skipping default key")
                }
            }
        }
    }

    Err(attempt.refused(None))
}

struct Attempt<'a, H: Handler> {
    handle: &'a mut Handle<H>,
    spec: &'a ConnectSpec,
    tried: Vec<String>,
    /// Looked up once, on the first RSA key.
    rsa_hash: Option<Option<HashAlg>>,
}

impl<H: Handler> Attempt<'_, H> {
    /// Ok(true) when accepted; Err only when the connection is gone.
    async fn with_key(&mut self, key: PrivateKey, label: String) -> Result<bool, TransportError> {
        let hash = if key.algorithm().is_rsa() {
            self.rsa_hash().await
        } else {
            None
        };
        let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
        let result = self
            .handle
            .authenticate_publickey(&self.spec.user, key)
            .await
            .map_err(|e| {
                TransportError::Protocol(format!("connection lost during authentication: {e}"))
            })?;
        self.tried.push(label);
        self.check_alive()?;
        Ok(result.success())
    }

    /// Offers each key the agent holds; a missing or broken agent is not fatal.
    async fn with_agent(&mut self, socket: &Path) -> Result<bool, TransportError> {
        let mut agent = match AgentClient::connect_uds(socket).await {
            Ok(agent) => agent,
            Err(e) => {
                tracing::debug!(error = %e, "ssh-agent unavailable");
                return Ok(false);
            }
        };
        let identities = match agent.request_identities().await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::debug!(error = %e, "ssh-agent did not list identities");
                return Ok(false);
            }
        };
        for identity in identities {
            // Certificates would need the matching cert auth flow; plain keys cover the common case.
            let AgentIdentity::PublicKey { key, comment } = identity else {
                continue;
            };
            let name = if comment.is_empty() {
                super::known_hosts::fingerprint(&key)
            } else {
                comment
            };
            let hash = if key.algorithm().is_rsa() {
                self.rsa_hash().await
            } else {
                None
            };
            match self
                .handle
                .authenticate_publickey_with(&self.spec.user, key, hash, &mut agent)
                .await
            {
                Ok(result) => {
                    self.tried.push(format!("agent: {name}"));
                    if result.success() {
                        return Ok(true);
                    }
                }
                Err(e) => self
                    .tried
                    .push(format!("agent: {name} (agent could not sign: {e})")),
            }
            self.check_alive()?;
        }
        Ok(false)
    }

    /// rsa-sha2-512/256 as the server announces; SHA-1 `ssh-rsa` only if it announces nothing better.
    async fn rsa_hash(&mut self) -> Option<HashAlg> {
        if let Some(hash) = self.rsa_hash {
            return hash;
        }
        let hash = match self.handle.best_supported_rsa_hash().await {
            Ok(Some(hash)) => hash,
            // No server-sig-algs: modern servers still take SHA-256.
            Ok(None) | Err(_) => Some(HashAlg::Sha256),
        };
        self.rsa_hash = Some(hash);
        hash
    }

    /// Servers hang up after MaxAuthTries failures; stop there instead of "trying" dead air.
    fn check_alive(&self) -> Result<(), TransportError> {
        if self.handle.is_closed() {
            return Err(self.refused(Some(
                "(server closed the connection: too many authentication failures?)",
            )));
        }
        Ok(())
    }

    fn refused(&self, note: Option<&str>) -> TransportError {
        let mut tried = self.tried.clone();
        tried.extend(note.map(str::to_string));
        TransportError::AuthRefused {
            user: self.spec.user.clone(),
            host: self.spec.host_name.clone(),
            tried,
        }
    }
}

fn default_keys() -> Vec<PathBuf> {
    let Some(home) = std::env::home_dir() else {
        return Vec::new();
    };
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|name| home.join(".ssh").join(name))
        .filter(|path| path.exists())
        .collect()
}

fn identity_error(path: &Path, e: russh::keys::Error) -> TransportError {
    let why = match e {
        russh::keys::Error::IO(io) if io.kind() == std::io::ErrorKind::NotFound => "file not found".to_string(),
        russh::keys::Error::IO(io) => format!("cannot read it: {io}"),
        russh::keys::Error::KeyIsEncrypted => {
            "the key is passphrase-protected; load it into ssh-agent (`ssh-add`) so dropship can use it".to_string()
        }
        other => format!("not a usable private key: {other}"),
    };
    TransportError::Protocol(format!("identity file {}: {why}", path.display()))
}
