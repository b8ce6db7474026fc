//! `swarm`: a host's Docker Swarm membership, as a manager or a worker: its keys, their checks
//! and planning. It runs alone (the host session's `swarm` runner): the run's first manager
//! initialises the swarm (or finds it) and hands its join tokens to the hosts after it, which
//! join through the Engine API with the token on stdin.

use serde::Deserialize;
use toml::Spanned;

use super::{Act, Done, Failure, HostView, Kind, ParseCx, PlanCx, Prepared, Templated};
use crate::diagnostic::InputError;
use crate::transport::ExecOutput;

/// `swarm = { role, advertise_addr }`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSwarm {
    role: Templated,
    advertise_addr: Templated,
}

/// The step as written.
#[derive(Debug, Clone)]
pub struct Swarm {
    role: Templated,
    advertise_addr: Templated,
}

/// What the host is to be in the swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Manager,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Worker => "worker",
        }
    }
}

/// The step rendered for one host.
#[derive(Debug, Clone)]
pub struct SwarmMember {
    pub role: Role,
    /// The address the other nodes reach this one at (`--advertise-addr`).
    pub advertise_addr: String,
}

/// An address `--advertise-addr` may take: an IP address or an interface name, optionally with
/// a port; nothing that could read as an option or break a line.
fn valid_advertise_addr(addr: &str) -> bool {
    !addr.is_empty()
        && addr.len() <= 255
        && !addr.starts_with('-')
        && addr
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".:-_[]%".contains(&b))
}

impl Kind for Swarm {
    type Raw = RawSwarm;
    type Action = SwarmMember;

    fn parse(raw: Spanned<RawSwarm>, _cx: &ParseCx<'_>) -> Result<Self, InputError> {
        let raw = raw.into_inner();
        Ok(Swarm {
            role: raw.role,
            advertise_addr: raw.advertise_addr,
        })
    }

    fn default_name(&self) -> String {
        format!("swarm {}", self.role.get_ref())
    }

    fn templated_fields(&self) -> Vec<&Templated> {
        vec![&self.role, &self.advertise_addr]
    }

    fn plan(&self, cx: &mut PlanCx<'_>) -> Result<SwarmMember, InputError> {
        let role = match cx
            .renderer
            .render_field(&self.role, cx.ctx, cx.file)?
            .as_str()
        {
            "manager" => Role::Manager,
            "worker" => Role::Worker,
            other => {
                return Err(cx
                    .file
                    .error_at(self.role.span(), format!("bad swarm role `{other}`"))
                    .with_hint("write \"manager\" or \"worker\""));
            }
        };
        let advertise_addr = cx.field(&self.advertise_addr)?;
        if !valid_advertise_addr(&advertise_addr) {
            return Err(cx
                .file
                .error_at(
                    self.advertise_addr.span(),
                    format!("bad advertise address `{advertise_addr}`"),
                )
                .with_hint("an IP address the other nodes reach this host at (e.g. \"{{ host.address }}\"), or an interface name; optionally `:PORT`"));
        }
        Ok(SwarmMember {
            role,
            advertise_addr,
        })
    }
}

impl Act for SwarmMember {
    fn describe(&self) -> String {
        match self.role {
            Role::Manager => format!(
                "swarm manager advertising {}: docker swarm init on the run's first manager (nothing when it is in the swarm already), the others join with the manager token (Engine API, token on stdin)",
                self.advertise_addr
            ),
            Role::Worker => format!(
                "swarm worker advertising {}: join with the worker token from the run's first manager (Engine API, token on stdin; nothing when it is in the swarm already)",
                self.advertise_addr
            ),
        }
    }

    fn prepare(&self, _host: &HostView<'_>, _label: &str, _tag: usize) -> Prepared {
        unreachable!("swarm steps run alone (the session's swarm runner)")
    }

    fn judge(&self, _host: &HostView<'_>, _out: &ExecOutput) -> Result<Done, Failure> {
        unreachable!("swarm steps run alone (the session's swarm runner)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertise_addresses_that_could_be_options_or_code_are_bad() {
        for good in [
            "10.0.0.5",
            "10.0.0.5:2377",
            "eth0",
            "[fe80::1%eth0]",
            "fe80::1",
        ] {
            assert!(valid_advertise_addr(good), "{good}");
        }
        for bad in ["", "-h", "a b", "$(x)", "a\nb", "a;b", "a'b"] {
            assert!(!valid_advertise_addr(bad), "{bad:?}");
        }
    }
}
