//! A host's SSH settings from every source, in order of precedence: the inventory's `[ssh]`
//! tables as written (host, then its groups, then the inventory), then the ssh config
//! (`~/.ssh/config`), then defaults (`$USER`, port 22, `~/.ssh/known_hosts`) — resolved into
//! the `ConnectSpec` the transport connects with. The environment is read here, when settings
//! are resolved, never while the inventory is parsed. May import the transport's types,
//! `paths` and `toml`'s spans; nothing above the transport.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::ssh_config::{SshConfig, SshConfigError};
use super::{ConnectSpec, HostKeyPolicy, JumpError, JumpSpec, parse_jump};
use crate::paths::expand_home;

/// One `[ssh]` table as written; every key optional so groups and hosts can override one at a
/// time. Spans point errors at the value in the inventory.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshKeys {
    pub user: Option<String>,
    pub port: Option<Spanned<u16>>,
    pub identity_file: Option<Spanned<String>>,
    pub known_hosts: Option<Spanned<String>>,
    pub host_key_policy: Option<HostKeyPolicy>,
    pub jump: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub ssh_config: Option<Spanned<String>>,
}

impl SshKeys {
    /// The keys of `layers` (lowest precedence first), each from the last layer that sets it.
    pub fn layered(layers: &[&SshKeys]) -> SshKeys {
        fn last<T: Clone>(layers: &[&SshKeys], key: impl Fn(&SshKeys) -> &Option<T>) -> Option<T> {
            layers.iter().rev().find_map(|l| key(l).clone())
        }
        SshKeys {
            user: last(layers, |l| &l.user),
            port: last(layers, |l| &l.port),
            identity_file: last(layers, |l| &l.identity_file),
            known_hosts: last(layers, |l| &l.known_hosts),
            host_key_policy: last(layers, |l| &l.host_key_policy),
            jump: last(layers, |l| &l.jump),
            connect_timeout: last(layers, |l| &l.connect_timeout),
            ssh_config: last(layers, |l| &l.ssh_config),
        }
    }

    /// Checks the values that need more than serde's types, as written (no environment).
    pub fn check(&self) -> Result<(), SettingsError> {
        if let Some(port) = &self.port
            && *port.get_ref() == 0
        {
            return Err(SettingsError::PortZero { at: port.span() });
        }
        if let Some(t) = &self.connect_timeout {
            parse_timeout(t)?;
        }
        if let Some(j) = &self.jump {
            parse_jump_at(j, "user")?;
        }
        Ok(())
    }
}

/// Why a host's SSH settings cannot be used. `at` is the value's span in the inventory.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("port 0 is not a port sshd can listen on")]
    PortZero { at: Range<usize> },
    #[error("bad duration `{text}`: {reason}")]
    Duration {
        at: Range<usize>,
        text: String,
        reason: humantime::DurationError,
    },
    #[error("bad jump host {error}")]
    Jump { at: Range<usize>, error: JumpError },
    /// The ssh config exists but cannot be read; `at` when the inventory names it.
    #[error("{error}")]
    SshConfig {
        at: Option<Range<usize>>,
        error: SshConfigError,
    },
    #[error("host `{host}`: port 0 (from the ssh config) is not a port sshd can listen on")]
    ConfigPortZero { host: String },
    #[error("host `{host}`: ProxyJump in the ssh config: bad jump host {error}")]
    ConfigJump { host: String, error: JumpError },
}

impl SettingsError {
    /// Where in the inventory the value at fault is written, if it is written there.
    pub fn span(&self) -> Option<Range<usize>> {
        match self {
            Self::PortZero { at } | Self::Duration { at, .. } | Self::Jump { at, .. } => {
                Some(at.clone())
            }
            Self::SshConfig { at, .. } => at.clone(),
            Self::ConfigPortZero { .. } | Self::ConfigJump { .. } => None,
        }
    }

    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Self::PortZero { .. } => Some("write the host's SSH port, 1-65535 (22 when left out)"),
            Self::Duration { .. } => Some("write e.g. \"10s\", \"1m\" or \"500ms\""),
            Self::Jump { .. } => Some(
                "write `user@host:port` (user and port optional), or \"\" for a direct connection",
            ),
            Self::ConfigPortZero { .. } => {
                Some("fix `Port` in the ssh config, or set `port` in the inventory")
            }
            Self::SshConfig { .. } | Self::ConfigJump { .. } => None,
        }
    }
}

/// What the local environment contributes: the defaults OpenSSH would use.
#[derive(Debug, Clone)]
pub struct SshEnv {
    /// The local user (`$USER`): `%u` in the ssh config, and the default remote user (`root`
    /// when unknown).
    pub local_user: Option<String>,
    /// `~/.ssh/config`, read when the inventory names no `ssh_config`.
    pub ssh_config: PathBuf,
    /// `~/.ssh/known_hosts`, used when the inventory names no `known_hosts`.
    pub known_hosts: PathBuf,
}

impl SshEnv {
    /// Read from this process's environment.
    pub fn from_process() -> Self {
        Self {
            local_user: std::env::var("USER").ok(),
            ssh_config: expand_home("~/.ssh/config"),
            known_hosts: expand_home("~/.ssh/known_hosts"),
        }
    }
}

/// Resolves hosts' SSH settings against one environment, reading each ssh config once.
#[derive(Debug)]
pub struct Resolver {
    env: SshEnv,
    configs: HashMap<PathBuf, SshConfig>,
}

impl Resolver {
    pub fn new(env: SshEnv) -> Self {
        Self {
            env,
            configs: HashMap::new(),
        }
    }

    /// The connect spec of host `name` at `address` with the inventory's `keys` (already
    /// layered); relative paths in `keys` are relative to `base_dir`. The ssh config is asked
    /// like `ssh ADDRESS` would be; the inventory's values win over it.
    pub fn resolve(
        &mut self,
        keys: &SshKeys,
        name: &str,
        address: &str,
        base_dir: &Path,
    ) -> Result<ConnectSpec, SettingsError> {
        let config = self.config(keys.ssh_config.as_ref(), base_dir)?;
        let local_user = self.env.local_user.as_deref();
        let from_config = config.lookup(address, local_user.unwrap_or_default());

        let user = keys
            .user
            .clone()
            .or(from_config.user)
            .unwrap_or_else(|| local_user.unwrap_or("root").to_string());
        let port = keys
            .port
            .as_ref()
            .map(|p| *p.get_ref())
            .or(from_config.port)
            .unwrap_or(22);
        if port == 0 {
            return Err(SettingsError::ConfigPortZero {
                host: name.to_string(),
            });
        }
        let identity_file = keys
            .identity_file
            .as_ref()
            .map(|p| local_path(base_dir, p.get_ref()))
            .or(from_config.identity_file);
        let jump = match &keys.jump {
            Some(text) => parse_jump_at(text, &user)?,
            None => match &from_config.proxy_jump {
                Some(text) => {
                    parse_jump(text, &user).map_err(|error| SettingsError::ConfigJump {
                        host: name.to_string(),
                        error,
                    })?
                }
                None => None,
            },
        };
        // The bastion may itself be an alias in the ssh config.
        let jump = jump.map(|j| {
            let alias = config.lookup(&j.host, local_user.unwrap_or_default());
            JumpSpec {
                host: alias.host_name.unwrap_or(j.host),
                ..j
            }
        });
        let known_hosts = keys.known_hosts.as_ref().map_or_else(
            || self.env.known_hosts.clone(),
            |p| local_path(base_dir, p.get_ref()),
        );
        let connect_timeout = match &keys.connect_timeout {
            Some(t) => parse_timeout(t)?,
            None => Duration::from_secs(10),
        };
        Ok(ConnectSpec {
            host_name: name.to_string(),
            address: from_config.host_name.unwrap_or_else(|| address.to_string()),
            port,
            user,
            identity_file,
            known_hosts,
            host_key_policy: keys.host_key_policy.unwrap_or_default(),
            connect_timeout,
            jump,
            identities_only: from_config.identities_only.unwrap_or(false),
        })
    }

    /// The ssh config the inventory names (`""`: none), else `~/.ssh/config`; read once.
    fn config(
        &mut self,
        named: Option<&Spanned<String>>,
        base_dir: &Path,
    ) -> Result<SshConfig, SettingsError> {
        let path = match named {
            Some(p) if p.get_ref().is_empty() => return Ok(SshConfig::default()),
            Some(p) => local_path(base_dir, p.get_ref()),
            None => self.env.ssh_config.clone(),
        };
        if !self.configs.contains_key(&path) {
            let loaded = SshConfig::load(&path).map_err(|error| SettingsError::SshConfig {
                at: named.map(Spanned::span),
                error,
            })?;
            self.configs.insert(path.clone(), loaded);
        }
        Ok(self.configs[&path].clone())
    }
}

fn parse_jump_at(
    text: &Spanned<String>,
    default_user: &str,
) -> Result<Option<JumpSpec>, SettingsError> {
    parse_jump(text.get_ref(), default_user).map_err(|error| SettingsError::Jump {
        at: text.span(),
        error,
    })
}

fn parse_timeout(text: &Spanned<String>) -> Result<Duration, SettingsError> {
    humantime::parse_duration(text.get_ref()).map_err(|reason| SettingsError::Duration {
        at: text.span(),
        text: text.get_ref().clone(),
        reason,
    })
}

/// `~` expanded; relative paths are relative to the inventory's directory.
pub fn local_path(base_dir: &Path, path: &str) -> PathBuf {
    let p = expand_home(path);
    if p.is_absolute() { p } else { base_dir.join(p) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(dir: &Path) -> SshEnv {
        SshEnv {
            local_user: Some("alice".into()),
            ssh_config: dir.join("config"),
            known_hosts: dir.join("known_hosts"),
        }
    }

    fn keys(toml_text: &str) -> SshKeys {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn defaults_come_from_the_given_environment_not_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let mut resolver = Resolver::new(env(dir.path()));
        let spec = resolver
            .resolve(&SshKeys::default(), "web-1", "10.0.0.1", dir.path())
            .unwrap();
        assert_eq!((spec.user.as_str(), spec.port), ("alice", 22));
        assert_eq!(
            (spec.host_name.as_str(), spec.address.as_str()),
            ("web-1", "10.0.0.1")
        );
        assert_eq!(spec.known_hosts, dir.path().join("known_hosts"));
        assert_eq!(spec.connect_timeout, Duration::from_secs(10));
        assert_eq!(spec.host_key_policy, HostKeyPolicy::Strict);
        assert_eq!(
            (spec.identity_file, spec.jump, spec.identities_only),
            (None, None, false)
        );
    }

    #[test]
    fn the_default_ssh_config_fills_in_and_its_tokens_see_the_local_user() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config"),
            "Host web-1\n  HostName 10.9.9.9\n  Port 2200\n  IdentityFile /keys/%u-%r\n  ProxyJump web-1\n",
        )
        .unwrap();
        let mut resolver = Resolver::new(env(dir.path()));
        let spec = resolver
            .resolve(&keys("known_hosts = \"kh\""), "w", "web-1", dir.path())
            .unwrap();
        assert_eq!((spec.address.as_str(), spec.port), ("10.9.9.9", 2200));
        assert_eq!(spec.identity_file, Some(PathBuf::from("/keys/alice-alice")));
        assert_eq!(spec.known_hosts, dir.path().join("kh"));
        // The bastion's own alias is looked up too.
        assert_eq!(spec.jump.unwrap().to_string(), "alice@10.9.9.9:22");
    }

    #[test]
    fn without_a_local_user_the_remote_user_is_root() {
        let dir = tempfile::tempdir().unwrap();
        let env = SshEnv {
            local_user: None,
            ..env(dir.path())
        };
        let spec = Resolver::new(env)
            .resolve(&SshKeys::default(), "h", "h", dir.path())
            .unwrap();
        assert_eq!(spec.user, "root");
    }

    #[test]
    fn layers_take_each_key_from_the_last_that_sets_it() {
        let all = keys("user = \"deploy\"\nport = 22\nconnect_timeout = \"3s\"");
        let group = keys("port = 2200");
        let host = keys("user = \"admin\"");
        let merged = SshKeys::layered(&[&all, &group, &host]);
        assert_eq!(merged.user.as_deref(), Some("admin"));
        assert_eq!(merged.port.map(|p| p.into_inner()), Some(2200));
        assert_eq!(
            merged.connect_timeout.map(|t| t.into_inner()).as_deref(),
            Some("3s")
        );
    }

    #[test]
    fn errors_carry_the_span_and_hint_as_data() {
        let err = keys("port = 0").check().unwrap_err();
        assert_eq!(err.to_string(), "port 0 is not a port sshd can listen on");
        assert_eq!(err.span(), Some(7..8));
        assert!(err.hint().unwrap().starts_with("write the host's SSH port"));
        let err = keys("jump = \"b:x\"").check().unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad jump host `b:x`: `x` is not a port number"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config"), "Host *\n  Port 0\n").unwrap();
        let err = Resolver::new(env(dir.path()))
            .resolve(&SshKeys::default(), "h", "h", dir.path())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "host `h`: port 0 (from the ssh config) is not a port sshd can listen on"
        );
        assert_eq!(err.span(), None);
    }
}
