//! `apt`: Debian packages installed or removed, only those not already in the wanted state.

use serde::Deserialize;
use toml::Spanned;

use super::{
    Act, Done, Failure, HostView, Kind, ParseCx, PlanCx, Prepared, Templated, require_success,
};
use crate::diagnostic::InputError;
use crate::remote::apt;
use crate::remote::driver::Segment;
use crate::report::Outcome;
use crate::transport::ExecOutput;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApt {
    packages: Vec<Spanned<String>>,
    #[serde(default)]
    update: bool,
    #[serde(default)]
    state: AptState,
}

/// Whether an `apt` step installs or removes its packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AptState {
    #[default]
    Present,
    Absent,
}

/// `apt = { packages, update, state }`; nothing in it is rendered, so it is also its action.
#[derive(Debug, Clone)]
pub struct Apt {
    /// Validated Debian package names (optionally `name:arch`).
    pub packages: Vec<String>,
    pub update: bool,
    pub state: AptState,
}

impl Kind for Apt {
    type Raw = RawApt;
    type Action = Apt;

    fn parse(raw: Spanned<RawApt>, cx: &ParseCx<'_>) -> Result<Self, InputError> {
        let (span, raw) = (raw.span(), raw.into_inner());
        if raw.packages.is_empty() {
            return Err(cx
                .file
                .error_at(span, "an `apt` step needs at least one package")
                .with_hint("write apt = { packages = [\"docker.io\"] }"));
        }
        let mut packages = Vec::with_capacity(raw.packages.len());
        for p in raw.packages {
            if !valid_package_name(p.get_ref()) {
                return Err(cx
                    .file
                    .error_at(p.span(), format!("bad package name `{}`", p.get_ref()))
                    .with_hint("Debian package names use lowercase letters, digits, `+`, `-` and `.` (optionally `:arch`); versions and globs are not accepted"));
            }
            packages.push(p.into_inner());
        }
        Ok(Apt {
            packages,
            update: raw.update,
            state: raw.state,
        })
    }

    fn default_name(&self) -> String {
        match self.state {
            AptState::Present => format!("apt install {}", self.packages.join(" ")),
            AptState::Absent => format!("apt remove {}", self.packages.join(" ")),
        }
    }

    fn templated_fields(&self) -> Vec<&Templated> {
        Vec::new()
    }

    fn plan(&self, _cx: &mut PlanCx<'_>) -> Result<Apt, InputError> {
        Ok(self.clone())
    }
}

impl Act for Apt {
    fn describe(&self) -> String {
        format!(
            "apt {} {}{}",
            match self.state {
                AptState::Present => "install",
                AptState::Absent => "remove",
            },
            self.packages.join(" "),
            if self.update {
                " (after apt-get update)"
            } else {
                ""
            }
        )
    }

    fn prepare(&self, _host: &HostView<'_>, label: &str, _tag: usize) -> Prepared {
        let script = apt::script(&self.packages, self.update, self.state);
        Prepared::Remote(Segment::isolated(&script, label))
    }

    fn judge(&self, host: &HostView<'_>, out: &ExecOutput) -> Result<Done, Failure> {
        require_success(out, host.redactor)?;
        match apt::parse(out) {
            None => Ok(Done::new(Outcome::Ok, None)),
            Some(acted) => {
                let verb = match self.state {
                    AptState::Present => "installed",
                    AptState::Absent => "removed",
                };
                Ok(Done::new(
                    Outcome::Changed,
                    Some(format!("{verb} {}", acted.join(" "))),
                ))
            }
        }
    }
}

/// Debian package names: lowercase letters, digits, `+`, `-`, `.`, at least two characters,
/// starting with a letter or digit; optionally `:arch`.
pub fn valid_package_name(name: &str) -> bool {
    let (pkg, arch) = match name.split_once(':') {
        Some((p, a)) => (p, Some(a)),
        None => (name, None),
    };
    let pkg_ok = pkg.len() >= 2
        && pkg.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && pkg
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    let arch_ok = arch.is_none_or(|a| {
        !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    });
    pkg_ok && arch_ok
}
