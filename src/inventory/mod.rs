//! The inventory: hosts, groups, SSH settings and variables. The file is parsed and validated
//! on its own (no environment); each host's SSH settings are then resolved by the transport's
//! `settings` (ssh config, `$USER`). May import diagnostic, vars, template and transport's
//! settings types.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::{IndexMap, IndexSet};
use serde::Deserialize;
use toml::Spanned;

use crate::diagnostic::{InputError, SourceFile};
use crate::transport::ConnectSpec;
use crate::transport::settings::{Resolver, SettingsError, SshEnv, SshKeys};
use crate::vars::{self, RawVars, Vars};

mod range;

pub use range::{MAX_HOSTS_PER_NAME, RangeError, expand_range};

/// The most hosts one inventory may define, all names together.
pub const MAX_HOSTS: usize = 100_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    #[serde(default)]
    ssh: SshKeys,
    compose: Option<ComposeChoice>,
    #[serde(default)]
    vars: RawVars,
    #[serde(default)]
    groups: IndexMap<Spanned<String>, RawGroup>,
    #[serde(default)]
    hosts: IndexMap<Spanned<String>, RawHost>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    vars: RawVars,
    #[serde(default)]
    ssh: SshKeys,
    compose: Option<ComposeChoice>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    address: Option<Spanned<String>>,
    #[serde(default)]
    groups: Vec<Spanned<String>>,
    #[serde(default)]
    vars: RawVars,
    #[serde(default)]
    ssh: SshKeys,
    compose: Option<ComposeChoice>,
}

/// How compose is invoked on a host (`compose = "auto" | "plugin" | "standalone"` at the top
/// of the inventory, in a group or in a host; the host's, then its last group's that sets it,
/// then the inventory's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComposeChoice {
    /// Found on the host: the plugin when it is installed, else `docker-compose`.
    #[default]
    Auto,
    /// `docker compose`: the CLI plugin (Compose v2).
    Plugin,
    /// `docker-compose`: the standalone tool (Compose v1, or v2 installed standalone).
    Standalone,
}

impl ComposeChoice {
    const HINT: &str = "write compose = \"auto\" (the plugin when the host has it, else docker-compose), \"plugin\" (`docker compose`) or \"standalone\" (`docker-compose`)";

    /// The value as written in the inventory.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Plugin => "plugin",
            Self::Standalone => "standalone",
        }
    }
}

/// One target host with everything resolved.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub address: String,
    pub groups: Vec<String>,
    /// How to connect: the inventory's `[ssh]` keys, then the ssh config's, then defaults.
    pub ssh: ConnectSpec,
    /// Inventory `[vars]`, then group vars in the order of `groups`, then host vars; as
    /// written (templates are rendered when a playbook's context is known).
    pub vars: Vars,
    /// How compose is invoked there.
    pub compose: ComposeChoice,
    /// Where the inventory set the host's local files, to point errors there.
    pub files_at: LocalFilesAt,
}

/// Spans in the inventory of the `identity_file` and `known_hosts` a host uses, when the
/// inventory sets them.
#[derive(Debug, Clone, Default)]
pub struct LocalFilesAt {
    pub source: Option<Arc<SourceFile>>,
    pub identity_file: Option<Range<usize>>,
    pub known_hosts: Option<Range<usize>>,
}

impl Host {
    /// Checks what the SSH connection will read locally, before any connection: an identity
    /// file the inventory names must exist, and `known_hosts` must not be a directory (a
    /// missing one is empty). An `IdentityFile` from the ssh config that does not exist is
    /// skipped, as OpenSSH does.
    pub fn check_local_files(&self) -> Result<(), InputError> {
        let at = |span: &Option<Range<usize>>, message: String| match (&self.files_at.source, span)
        {
            (Some(file), Some(span)) => file.error_at(span.clone(), message),
            _ => InputError::plain(format!("host `{}`: {message}", self.name)),
        };
        if let (Some(path), Some(_)) = (&self.ssh.identity_file, &self.files_at.identity_file)
            && !path.is_file()
        {
            let problem = if path.exists() {
                "is not a file"
            } else {
                "does not exist"
            };
            return Err(at(
                &self.files_at.identity_file,
                format!("identity file `{}` {problem}", path.display()),
            )
            .with_hint("fix `identity_file`, or leave it out to use ssh-agent, then ~/.ssh/id_ed25519, id_ecdsa, id_rsa"));
        }
        if self.ssh.known_hosts.is_dir() {
            return Err(at(
                &self.files_at.known_hosts,
                format!(
                    "known_hosts `{}` is a directory",
                    self.ssh.known_hosts.display()
                ),
            )
            .with_hint(
                "`known_hosts` is a file in OpenSSH's format (a missing one counts as empty)",
            ));
        }
        Ok(())
    }
}

/// Why a host pattern (`hosts`, `--limit`) selects nothing.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("`{pattern}` names no host")]
    Empty { pattern: String },
    #[error("`{item}` matches no host, group or glob in the inventory")]
    NoMatch { item: String },
    #[error("bad glob `{item}`: {source}")]
    BadGlob {
        item: String,
        source: globset::Error,
    },
}

#[derive(Debug, Clone)]
pub struct Inventory {
    pub path: PathBuf,
    /// In file order, ranges expanded in place.
    pub hosts: Vec<Host>,
    pub groups: IndexSet<String>,
}

impl Inventory {
    pub fn load(path: &Path) -> Result<Self, InputError> {
        let file = SourceFile::read(path, "inventory")?;
        Self::parse(&file)
    }

    /// Parses the file, then resolves each host's SSH settings in this process's environment.
    pub fn parse(file: &SourceFile) -> Result<Self, InputError> {
        Self::parse_in(file, SshEnv::from_process())
    }

    /// Parses what the file says, then resolves each host's SSH settings in `env`: the ssh
    /// config is read, and `$USER` used, only in this second step.
    pub fn parse_in(file: &SourceFile, env: SshEnv) -> Result<Self, InputError> {
        let (entries, groups) = parse_entries(file)?;
        let source = Arc::new(file.clone());
        let base_dir = file
            .path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let mut resolver = Resolver::new(env);
        let hosts = entries
            .into_iter()
            .map(|entry| {
                let ssh = resolver
                    .resolve(&entry.ssh, &entry.name, &entry.address, &base_dir)
                    .map_err(|e| settings_error(file, &e))?;
                Ok(Host {
                    name: entry.name,
                    address: ssh.address.clone(),
                    groups: entry.groups,
                    ssh,
                    vars: entry.vars,
                    compose: entry.compose,
                    files_at: LocalFilesAt {
                        source: Some(source.clone()),
                        identity_file: entry.ssh.identity_file.as_ref().map(Spanned::span),
                        known_hosts: entry.ssh.known_hosts.as_ref().map(Spanned::span),
                    },
                })
            })
            .collect::<Result<Vec<Host>, InputError>>()?;
        Ok(Self {
            path: file.path.clone(),
            hosts,
            groups,
        })
    }

    /// Indices of the hosts matched by a pattern: comma-separated host names, group names,
    /// globs over host names (`web-*`), or `all`; an item starting with `!` excludes. A
    /// pattern without any item is an error, never "every host".
    pub fn select(&self, pattern: &str) -> Result<Vec<usize>, SelectError> {
        if pattern.split(',').all(|item| item.trim().is_empty()) {
            return Err(SelectError::Empty {
                pattern: pattern.to_string(),
            });
        }
        let mut included: IndexSet<usize> = IndexSet::new();
        let mut excluded: IndexSet<usize> = IndexSet::new();
        let mut any_include = false;
        for item in pattern.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (negate, item) = match item.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, item),
            };
            let matched = self.match_item(item)?;
            if matched.is_empty() {
                return Err(SelectError::NoMatch {
                    item: item.to_string(),
                });
            }
            if negate {
                excluded.extend(matched);
            } else {
                any_include = true;
                included.extend(matched);
            }
        }
        if !any_include {
            included.extend(0..self.hosts.len());
        }
        let mut out: Vec<usize> = included.difference(&excluded).copied().collect();
        out.sort_unstable();
        Ok(out)
    }

    fn match_item(&self, item: &str) -> Result<Vec<usize>, SelectError> {
        if item == "all" || item == "*" {
            return Ok((0..self.hosts.len()).collect());
        }
        if self.groups.contains(item) {
            return Ok(self.indices(|h| h.groups.iter().any(|g| g == item)));
        }
        if item.contains(['*', '?', '[']) {
            let glob = globset::Glob::new(item)
                .map_err(|source| SelectError::BadGlob {
                    item: item.to_string(),
                    source,
                })?
                .compile_matcher();
            return Ok(self.indices(|h| glob.is_match(&h.name)));
        }
        Ok(self.indices(|h| h.name == item))
    }

    fn indices(&self, pred: impl Fn(&Host) -> bool) -> Vec<usize> {
        self.hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| pred(h))
            .map(|(i, _)| i)
            .collect()
    }
}

/// One host as the file describes it: its SSH keys layered but not yet resolved.
struct Entry {
    name: String,
    /// As written (rendered with the host's name); the ssh config's `HostName` may replace it.
    address: String,
    groups: Vec<String>,
    vars: Vars,
    ssh: SshKeys,
    compose: ComposeChoice,
}

/// Everything the file says, validated; reads nothing else.
fn parse_entries(file: &SourceFile) -> Result<(Vec<Entry>, IndexSet<String>), InputError> {
    let raw: RawInventory = toml::from_str(&file.text).map_err(|e| {
        let error = file.toml_error(&e);
        match error.key.as_deref() {
            Some(key) if key == "compose" || key.ends_with(".compose") => {
                error.with_hint(ComposeChoice::HINT)
            }
            _ => error,
        }
    })?;
    let source = Arc::new(file.clone());
    check_ssh(file, &raw.ssh)?;
    for group in raw.groups.values() {
        check_ssh(file, &group.ssh)?;
    }
    let groups: IndexSet<String> = raw.groups.keys().map(|k| k.get_ref().clone()).collect();
    for name in raw.groups.keys() {
        if name.get_ref() == "all" {
            return Err(file
                .error_at(
                    name.span(),
                    "`all` is a built-in group and cannot be declared",
                )
                .with_hint("every host is in `all`; remove this table"));
        }
    }

    let mut hosts: Vec<Entry> = Vec::new();
    let mut seen: IndexSet<String> = IndexSet::new();
    for (pattern, raw_host) in &raw.hosts {
        check_ssh(file, &raw_host.ssh)?;
        let names = expand_range(pattern.get_ref()).map_err(|e| {
            file.error_at(pattern.span(), e.to_string())
                .with_hint(e.hint())
        })?;
        if hosts.len() + names.len() > MAX_HOSTS {
            return Err(file
                .error_at(
                    pattern.span(),
                    format!("the inventory defines more than {MAX_HOSTS} hosts"),
                )
                .with_hint("split the fleet into several inventories"));
        }
        for group in &raw_host.groups {
            if group.get_ref() != "all" && !groups.contains(group.get_ref()) {
                let hint = match closest(group.get_ref(), groups.iter()) {
                    Some(g) => {
                        format!("did you mean `{g}`? Groups are declared as `[groups.NAME]`")
                    }
                    None => format!(
                        "declare it with `[groups.{}]` or remove it from the list",
                        group.get_ref()
                    ),
                };
                return Err(file
                    .error_at(
                        group.span(),
                        format!("undefined group `{}`", group.get_ref()),
                    )
                    .with_hint(hint));
            }
        }
        for name in names {
            if !seen.insert(name.clone()) {
                return Err(file
                    .error_at(pattern.span(), format!("host `{name}` is defined twice"))
                    .with_hint("each host may appear in one `[hosts.…]` table only"));
            }
            hosts.push(entry(&source, &raw, &name, raw_host)?);
        }
    }
    Ok((hosts, groups))
}

/// Checks values that need more than serde's types.
fn check_ssh(file: &SourceFile, ssh: &SshKeys) -> Result<(), InputError> {
    ssh.check().map_err(|e| settings_error(file, &e))
}

/// A settings error shown like every input error: at its value in the file when it has one.
fn settings_error(file: &SourceFile, e: &SettingsError) -> InputError {
    let error = match e.span() {
        Some(span) => file.error_at(span, e.to_string()),
        None => InputError::plain(e.to_string()),
    };
    match e.hint() {
        Some(hint) => error.with_hint(hint),
        None => error,
    }
}

/// One host of a `[hosts.…]` table: vars and SSH keys layered inventory, groups (in the
/// order of `groups`), host; the address rendered.
fn entry(
    file: &Arc<SourceFile>,
    raw: &RawInventory,
    name: &str,
    raw_host: &RawHost,
) -> Result<Entry, InputError> {
    let group_names: Vec<String> = raw_host
        .groups
        .iter()
        .map(|g| g.get_ref().clone())
        .collect();
    let group_of = |g: &String| {
        raw.groups
            .iter()
            .find(|(k, _)| k.get_ref() == g)
            .map(|(_, v)| v)
    };

    let mut vars: Vars = vars::from_raw(raw.vars.clone(), file);
    let mut layers: Vec<&SshKeys> = vec![&raw.ssh];
    let mut compose = raw.compose;
    for g in &group_names {
        if let Some(group) = group_of(g) {
            vars.extend(vars::from_raw(group.vars.clone(), file));
            layers.push(&group.ssh);
            compose = group.compose.or(compose);
        }
    }
    vars.extend(vars::from_raw(raw_host.vars.clone(), file));
    layers.push(&raw_host.ssh);
    let compose = raw_host.compose.or(compose).unwrap_or_default();

    let address = match &raw_host.address {
        Some(a) => render_address(file, a, name)?,
        None => name.to_string(),
    };
    Ok(Entry {
        name: name.to_string(),
        address,
        groups: group_names,
        vars,
        ssh: SshKeys::layered(&layers),
        compose,
    })
}

/// A host's `address`: `{{ name }}` (the host's name) is the only variable known there, and
/// what is rendered must be a plain address.
fn render_address(
    file: &SourceFile,
    address: &Spanned<String>,
    name: &str,
) -> Result<String, InputError> {
    let text = address.get_ref();
    let hint = "only `{{ name }}`, the host's name, is known in `address`, e.g. \"{{ name }}.internal.example.com\"";
    let rendered = if crate::template::has_template_syntax(text) {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        let ctx = minijinja::context! { name => name };
        let tmpl = env.template_from_str(text).map_err(|e| {
            file.error_at(address.span(), format!("bad address template: {e}"))
                .with_hint(hint)
        })?;
        tmpl.render(&ctx).map_err(|e| {
            let message = match crate::template::undefined_variable(
                &tmpl.undeclared_variables(true),
                &ctx,
                &e,
                text,
            ) {
                Some(var) => format!("undefined variable `{var}` in `address`"),
                None => format!("bad address template: {e}"),
            };
            file.error_at(address.span(), message).with_hint(hint)
        })?
    } else {
        text.clone()
    };
    let problem = if rendered.trim().is_empty() {
        Some("is empty".to_string())
    } else {
        crate::template::leftover_delimiter(&rendered)
            .map(|d| format!("still contains `{d}` after rendering"))
    };
    match problem {
        Some(problem) => Err(file
            .error_at(address.span(), format!("the address {problem}"))
            .with_hint(hint)),
        None => Ok(rendered),
    }
}

/// The candidate nearest to `word` by edit distance, if it is close enough to be a typo.
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a String>) -> Option<&'a String> {
    candidates
        .map(|c| (strsim::levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests;
