//! `ensure`: something that must exist on the host, made only when missing: a docker network
//! (`network`), or a directory or empty file with its mode and owner (`path`). Never changes a
//! file's content; a second run reports `ok`.

use serde::Deserialize;
use toml::Spanned;

use super::{
    Act, Done, Failure, HostView, Kind, ParseCx, PlanCx, Prepared, Templated, require_success,
    valid_user_name,
};
use crate::diagnostic::InputError;
use crate::remote::driver::Segment;
use crate::remote::ensure::{self, Attributes, NetworkOptions, PathState};
use crate::report::Outcome;
use crate::transport::ExecOutput;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnsure {
    network: Option<Templated>,
    driver: Option<Spanned<String>>,
    #[serde(default)]
    internal: bool,
    #[serde(default)]
    attachable: bool,
    path: Option<Templated>,
    state: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
    owner: Option<Templated>,
    group: Option<Templated>,
}

/// `ensure = { network, driver, internal, attachable }` or
/// `ensure = { path, state, mode, owner, group }`.
#[derive(Debug, Clone)]
pub enum Ensure {
    Network {
        name: Templated,
        options: NetworkOptions,
    },
    Path {
        path: Templated,
        state: PathState,
        mode: Option<u32>,
        owner: Option<Templated>,
        group: Option<Templated>,
    },
}

/// What an `ensure` step makes sure of on one host, every field rendered and checked.
#[derive(Debug, Clone)]
pub enum EnsureAction {
    Network {
        name: String,
        options: NetworkOptions,
    },
    Path {
        path: String,
        state: PathState,
        attrs: Attributes,
    },
}

const NETWORK_HINT: &str = "write ensure = { network = \"app_net\" } (optional driver, internal, attachable) or ensure = { path = \"/srv/app/data\", state = \"directory\", mode = \"0750\" }";

/// Docker network names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn valid_network_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

impl Kind for Ensure {
    type Raw = RawEnsure;
    type Action = EnsureAction;

    fn parse(raw: Spanned<RawEnsure>, cx: &ParseCx<'_>) -> Result<Self, InputError> {
        let file = cx.file;
        let (span, raw) = (raw.span(), raw.into_inner());
        match (raw.network, raw.path) {
            (Some(name), None) => {
                let path_keys = [
                    ("state", raw.state.as_ref().map(Spanned::span)),
                    ("mode", raw.mode.as_ref().map(Spanned::span)),
                    ("owner", raw.owner.as_ref().map(Spanned::span)),
                    ("group", raw.group.as_ref().map(Spanned::span)),
                ];
                if let Some((key, Some(at))) = path_keys.into_iter().find(|(_, s)| s.is_some()) {
                    return Err(file
                        .error_at(at, format!("`{key}` applies to `path`, not to `network`"))
                        .with_hint(NETWORK_HINT));
                }
                let driver = match raw.driver {
                    None => None,
                    Some(d) if valid_network_name(d.get_ref()) => Some(d.into_inner()),
                    Some(d) => {
                        return Err(file
                            .error_at(d.span(), format!("bad network driver `{}`", d.get_ref()))
                            .with_hint("write e.g. driver = \"bridge\" or \"overlay\""));
                    }
                };
                Ok(Ensure::Network {
                    name,
                    options: NetworkOptions {
                        driver,
                        internal: raw.internal,
                        attachable: raw.attachable,
                    },
                })
            }
            (None, Some(path)) => {
                if let Some(d) = &raw.driver {
                    return Err(file
                        .error_at(d.span(), "`driver` applies to `network`, not to `path`")
                        .with_hint(NETWORK_HINT));
                }
                if raw.internal || raw.attachable {
                    return Err(file
                        .error_at(
                            span,
                            "`internal` and `attachable` apply to `network`, not to `path`",
                        )
                        .with_hint(NETWORK_HINT));
                }
                let state = match &raw.state {
                    None => PathState::Directory,
                    Some(s) => match s.get_ref().as_str() {
                        "directory" => PathState::Directory,
                        "file" => PathState::File,
                        other => {
                            return Err(file
                                .error_at(s.span(), format!("bad state `{other}`"))
                                .with_hint("write state = \"directory\" (the default) or \"file\" (an empty file, made only when missing)"));
                        }
                    },
                };
                let mode = match &raw.mode {
                    None => None,
                    Some(m) => Some(super::files::parse_mode(m.get_ref()).ok_or_else(|| {
                        file.error_at(m.span(), format!("bad mode `{}`", m.get_ref()))
                            .with_hint("write an octal string such as \"0750\" or \"0644\"")
                    })?),
                };
                for name in [&raw.owner, &raw.group].into_iter().flatten() {
                    let text = name.get_ref();
                    if !text.contains("{{") && !valid_user_name(text) {
                        return Err(file
                            .error_at(name.span(), format!("bad user or group name `{text}`"))
                            .with_hint("use letters, digits, `_`, `-` and `.`"));
                    }
                }
                Ok(Ensure::Path {
                    path,
                    state,
                    mode,
                    owner: raw.owner,
                    group: raw.group,
                })
            }
            (Some(_), Some(_)) | (None, None) => Err(file
                .error_at(
                    span,
                    "an `ensure` step needs exactly one of `network` and `path`",
                )
                .with_hint(NETWORK_HINT)),
        }
    }

    fn default_name(&self) -> String {
        match self {
            Ensure::Network { name, .. } => format!("ensure network {}", name.get_ref()),
            Ensure::Path { path, state, .. } => {
                format!("ensure {} {}", state.as_str(), path.get_ref())
            }
        }
    }

    fn templated_fields(&self) -> Vec<&Templated> {
        match self {
            Ensure::Network { name, .. } => vec![name],
            Ensure::Path {
                path, owner, group, ..
            } => std::iter::once(path)
                .chain(owner.iter())
                .chain(group.iter())
                .collect(),
        }
    }

    fn plan(&self, cx: &mut PlanCx<'_>) -> Result<EnsureAction, InputError> {
        match self {
            Ensure::Network { name, options } => {
                let rendered = cx.field(name)?;
                if !valid_network_name(&rendered) {
                    return Err(cx
                        .file
                        .error_at(name.span(), format!("bad docker network name `{rendered}`"))
                        .with_hint("docker network names are letters, digits, `_`, `.` and `-`, starting with a letter or digit"));
                }
                Ok(EnsureAction::Network {
                    name: rendered,
                    options: options.clone(),
                })
            }
            Ensure::Path {
                path,
                state,
                mode,
                owner,
                group,
            } => {
                let rendered = cx.field(path)?;
                let last = rendered.rsplit('/').next().unwrap_or("");
                if !rendered.starts_with('/')
                    || rendered.contains('\n')
                    || last == "."
                    || last == ".."
                    || rendered.split('/').any(|c| c == "..")
                {
                    return Err(cx
                        .file
                        .error_at(
                            path.span(),
                            format!("`{rendered}` is not an absolute path without `..`"),
                        )
                        .with_hint(
                            "write the full path on the host, e.g. path = \"/srv/app/data\"",
                        ));
                }
                let mut name = |field: &Option<Templated>| -> Result<Option<String>, InputError> {
                    let Some(field) = field else { return Ok(None) };
                    let text = cx.field(field)?;
                    if !valid_user_name(&text) {
                        return Err(cx
                            .file
                            .error_at(field.span(), format!("bad user or group name `{text}`"))
                            .with_hint("use letters, digits, `_`, `-` and `.`"));
                    }
                    Ok(Some(text))
                };
                let attrs = Attributes {
                    mode: *mode,
                    owner: name(owner)?,
                    group: name(group)?,
                };
                let trimmed = rendered.trim_end_matches('/');
                Ok(EnsureAction::Path {
                    path: if trimmed.is_empty() { "/" } else { trimmed }.to_string(),
                    state: *state,
                    attrs,
                })
            }
        }
    }
}

impl Act for EnsureAction {
    fn describe(&self) -> String {
        match self {
            EnsureAction::Network { name, options } => {
                let mut extra = Vec::new();
                if let Some(d) = &options.driver {
                    extra.push(format!("driver {d}"));
                }
                if options.internal {
                    extra.push("internal".to_string());
                }
                if options.attachable {
                    extra.push("attachable".to_string());
                }
                let extra = if extra.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", extra.join(", "))
                };
                format!("ensure docker network {name} exists{extra}, created only when missing")
            }
            EnsureAction::Path { path, state, attrs } => {
                let mut with = Vec::new();
                if let Some(m) = attrs.mode {
                    with.push(format!("mode {m:04o}"));
                }
                if let Some(o) = &attrs.owner {
                    with.push(format!("owner {o}"));
                }
                if let Some(g) = &attrs.group {
                    with.push(format!("group {g}"));
                }
                let with = if with.is_empty() {
                    String::new()
                } else {
                    format!(" with {}", with.join(", "))
                };
                format!("ensure {} {path} exists{with}", state.as_str())
            }
        }
    }

    fn prepare(&self, _host: &HostView<'_>, label: &str, _tag: usize) -> Prepared {
        let script = match self {
            EnsureAction::Network { name, options } => ensure::network(name, options),
            EnsureAction::Path { path, state, attrs } => ensure::path(path, *state, attrs),
        };
        Prepared::Remote(Segment::isolated(&script, label))
    }

    fn judge(&self, host: &HostView<'_>, out: &ExecOutput) -> Result<Done, Failure> {
        require_success(out, host.redactor)?;
        match ensure::parse(out) {
            None => Ok(Done::new(Outcome::Ok, None)),
            Some(what) => Ok(Done::new(Outcome::Changed, Some(what.join(", ")))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_names_follow_docker() {
        for ok in ["app_net", "a", "pixel-1.front"] {
            assert!(valid_network_name(ok), "{ok}");
        }
        for bad in ["", "-x", "_x", "a b", "a;b", "net/1"] {
            assert!(!valid_network_name(bad), "{bad}");
        }
    }

    #[test]
    fn describe_says_what_is_made_sure_of() {
        let net = EnsureAction::Network {
            name: "app_net".into(),
            options: NetworkOptions {
                driver: Some("bridge".into()),
                internal: true,
                attachable: false,
            },
        };
        assert_eq!(
            net.describe(),
            "ensure docker network app_net exists (driver bridge, internal), created only when missing"
        );
        let dir = EnsureAction::Path {
            path: "/srv/app/data".into(),
            state: PathState::Directory,
            attrs: Attributes {
                mode: Some(0o750),
                owner: Some("deploy".into()),
                group: None,
            },
        };
        assert_eq!(
            dir.describe(),
            "ensure directory /srv/app/data exists with mode 0750, owner deploy"
        );
    }
}
