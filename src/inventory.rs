//! The inventory: hosts, groups, SSH settings and variables, parsed, validated and resolved.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::{IndexMap, IndexSet};
use serde::Deserialize;
use toml::Spanned;

use crate::diagnostic::{InputError, SourceFile};
use crate::paths::expand_home;
use crate::transport::ssh_config::SshConfig;
use crate::transport::{HostKeyPolicy, JumpSpec, parse_jump};

pub type Vars = IndexMap<String, toml::Value>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    #[serde(default)]
    ssh: RawSsh,
    #[serde(default)]
    vars: Vars,
    #[serde(default)]
    groups: IndexMap<Spanned<String>, RawGroup>,
    #[serde(default)]
    hosts: IndexMap<Spanned<String>, RawHost>,
}

/// SSH settings as written; every key optional so groups and hosts can override one at a time.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSsh {
    user: Option<String>,
    port: Option<u16>,
    identity_file: Option<String>,
    known_hosts: Option<String>,
    host_key_policy: Option<HostKeyPolicy>,
    jump: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    ssh_config: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    vars: Vars,
    #[serde(default)]
    ssh: RawSsh,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    address: Option<Spanned<String>>,
    #[serde(default)]
    groups: Vec<Spanned<String>>,
    #[serde(default)]
    vars: Vars,
    #[serde(default)]
    ssh: RawSsh,
}

/// Resolved SSH settings of one host: the inventory's values, then the ssh config's for the
/// keys the inventory leaves unset, then defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SshSettings {
    pub user: String,
    pub port: u16,
    pub identity_file: Option<PathBuf>,
    pub known_hosts: PathBuf,
    pub host_key_policy: HostKeyPolicy,
    pub connect_timeout: Duration,
    /// The bastion to go through (`jump`, else the ssh config's `ProxyJump`); `None`: direct.
    pub jump: Option<JumpSpec>,
    /// The ssh config's `IdentitiesOnly yes`: offer only `identity_file` when it is set.
    pub identities_only: bool,
}

/// One target host with everything resolved.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub address: String,
    pub groups: Vec<String>,
    pub ssh: SshSettings,
    /// Inventory `[vars]`, then group vars in the order of `groups`, then host vars.
    pub vars: Vars,
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

    pub fn parse(file: &SourceFile) -> Result<Self, InputError> {
        let raw: RawInventory = toml::from_str(&file.text).map_err(|e| file.toml_error(&e))?;
        let base_dir = file
            .path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
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

        let mut hosts: Vec<Host> = Vec::new();
        let mut seen: IndexSet<String> = IndexSet::new();
        let mut configs: HashMap<PathBuf, SshConfig> = HashMap::new();
        for (pattern, raw_host) in &raw.hosts {
            check_ssh(file, &raw_host.ssh)?;
            let names = expand_range(pattern.get_ref())
                .map_err(|msg| file.error_at(pattern.span(), msg).with_hint(RANGE_HINT))?;
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
                let host = resolve_host(file, &raw, &base_dir, &mut configs, &name, raw_host)?;
                hosts.push(host);
            }
        }
        Ok(Self {
            path: file.path.clone(),
            hosts,
            groups,
        })
    }

    /// Indices of the hosts matched by a pattern: comma-separated host names, group names,
    /// globs over host names (`web-*`), or `all`; an item starting with `!` excludes.
    pub fn select(&self, pattern: &str) -> Result<Vec<usize>, String> {
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
                return Err(format!(
                    "`{item}` matches no host, group or glob in the inventory"
                ));
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

    fn match_item(&self, item: &str) -> Result<Vec<usize>, String> {
        if item == "all" || item == "*" {
            return Ok((0..self.hosts.len()).collect());
        }
        if self.groups.contains(item) {
            return Ok(self.indices(|h| h.groups.iter().any(|g| g == item)));
        }
        if item.contains(['*', '?', '[']) {
            let glob = globset::Glob::new(item)
                .map_err(|e| format!("bad glob `{item}`: {e}"))?
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

/// Checks values that need more than serde's types.
fn check_ssh(file: &SourceFile, ssh: &RawSsh) -> Result<(), InputError> {
    if let Some(t) = &ssh.connect_timeout {
        parse_timeout(file, t)?;
    }
    if let Some(j) = &ssh.jump {
        parse_jump_at(file, j, "user")?;
    }
    Ok(())
}

fn parse_jump_at(
    file: &SourceFile,
    text: &Spanned<String>,
    default_user: &str,
) -> Result<Option<JumpSpec>, InputError> {
    parse_jump(text.get_ref(), default_user).map_err(|e| {
        file.error_at(text.span(), format!("bad jump host {e}"))
            .with_hint(
                "write `user@host:port` (user and port optional), or \"\" for a direct connection",
            )
    })
}

fn resolve_host(
    file: &SourceFile,
    raw: &RawInventory,
    base_dir: &Path,
    configs: &mut HashMap<PathBuf, SshConfig>,
    name: &str,
    raw_host: &RawHost,
) -> Result<Host, InputError> {
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

    let mut vars = raw.vars.clone();
    let mut layers: Vec<&RawSsh> = vec![&raw.ssh];
    for g in &group_names {
        if let Some(group) = group_of(g) {
            vars.extend(group.vars.clone());
            layers.push(&group.ssh);
        }
    }
    vars.extend(raw_host.vars.clone());
    layers.push(&raw_host.ssh);

    let address = match &raw_host.address {
        Some(a) if a.get_ref().contains("{{") => {
            let env = minijinja::Environment::new();
            env.render_str(a.get_ref(), minijinja::context! { name => name })
                .map_err(|e| file.error_at(a.span(), format!("bad address template: {e}")))?
        }
        Some(a) => a.get_ref().clone(),
        None => name.to_string(),
    };

    let pick = |f: &dyn Fn(&RawSsh) -> Option<&Spanned<String>>| {
        layers.iter().rev().find_map(|l| f(l)).cloned()
    };
    // The ssh config is asked like `ssh ADDRESS` would; the inventory's values win.
    let config_path = pick(&|l| l.ssh_config.as_ref());
    let config = match &config_path {
        Some(p) if p.get_ref().is_empty() => SshConfig::default(),
        _ => {
            let path = config_path.as_ref().map_or_else(
                || expand_home("~/.ssh/config"),
                |p| local_path(base_dir, p.get_ref()),
            );
            if !configs.contains_key(&path) {
                let loaded = SshConfig::load(&path).map_err(|e| match &config_path {
                    Some(p) => file.error_at(p.span(), e),
                    None => InputError::plain(e),
                })?;
                configs.insert(path.clone(), loaded);
            }
            configs[&path].clone()
        }
    };
    let from_config = config.lookup(&address);

    let user = layers
        .iter()
        .rev()
        .find_map(|l| l.user.clone())
        .or(from_config.user)
        .unwrap_or_else(default_user);
    let port = layers
        .iter()
        .rev()
        .find_map(|l| l.port)
        .or(from_config.port)
        .unwrap_or(22);
    let identity_file = layers
        .iter()
        .rev()
        .find_map(|l| l.identity_file.clone())
        .map(|p| local_path(base_dir, &p))
        .or(from_config.identity_file);
    let jump = match pick(&|l| l.jump.as_ref()) {
        Some(text) => parse_jump_at(file, &text, &user)?,
        None => match &from_config.proxy_jump {
            Some(text) => parse_jump(text, &user).map_err(|e| {
                InputError::plain(format!(
                    "host `{name}`: ProxyJump in the ssh config: bad jump host {e}"
                ))
            })?,
            None => None,
        },
    };
    // The bastion may itself be an alias in the ssh config.
    let jump = jump.map(|j| {
        let alias = config.lookup(&j.host);
        JumpSpec {
            host: alias.host_name.unwrap_or(j.host),
            ..j
        }
    });
    let address = from_config.host_name.unwrap_or(address);
    let identities_only = from_config.identities_only.unwrap_or(false);
    let known_hosts = layers
        .iter()
        .rev()
        .find_map(|l| l.known_hosts.clone())
        .map_or_else(
            || expand_home("~/.ssh/known_hosts"),
            |p| local_path(base_dir, &p),
        );
    let host_key_policy = layers
        .iter()
        .rev()
        .find_map(|l| l.host_key_policy)
        .unwrap_or_default();
    let connect_timeout = match pick(&|l| l.connect_timeout.as_ref()) {
        Some(t) => parse_timeout(file, &t)?,
        None => Duration::from_secs(10),
    };
    Ok(Host {
        name: name.to_string(),
        address,
        groups: group_names,
        ssh: SshSettings {
            user,
            port,
            identity_file,
            known_hosts,
            host_key_policy,
            connect_timeout,
            jump,
            identities_only,
        },
        vars,
    })
}

fn parse_timeout(file: &SourceFile, text: &Spanned<String>) -> Result<Duration, InputError> {
    humantime::parse_duration(text.get_ref()).map_err(|e| {
        file.error_at(
            text.span(),
            format!("bad duration `{}`: {e}", text.get_ref()),
        )
        .with_hint("write e.g. \"10s\", \"1m\" or \"500ms\"")
    })
}

fn default_user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "root".to_string())
}

/// `~` expanded; relative paths are relative to the inventory's directory.
fn local_path(base_dir: &Path, path: &str) -> PathBuf {
    let p = expand_home(path);
    if p.is_absolute() { p } else { base_dir.join(p) }
}

const RANGE_HINT: &str = "a range looks like `web-[01:20]`: two numbers, the first not larger; leading zeros set the width";

/// Expands numeric ranges in a host name: `web-[01:03]` → web-01, web-02, web-03.
pub fn expand_range(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('[') else {
        if pattern.contains(']') {
            return Err(format!("unbalanced `]` in host name `{pattern}`"));
        }
        return Ok(vec![pattern.to_string()]);
    };
    let close = pattern[open..]
        .find(']')
        .map(|i| i + open)
        .ok_or_else(|| format!("unclosed `[` in host name `{pattern}`"))?;
    let inner = &pattern[open + 1..close];
    let (start, end) = inner
        .split_once(':')
        .ok_or_else(|| format!("range `[{inner}]` in `{pattern}` has no `:`"))?;
    let parse = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| format!("range `[{inner}]` in `{pattern}`: `{s}` is not a number"))
    };
    let (a, b) = (parse(start)?, parse(end)?);
    if a > b {
        return Err(format!("range `[{inner}]` in `{pattern}` goes backwards"));
    }
    if b - a >= 100_000 {
        return Err(format!("range `[{inner}]` in `{pattern}` is too large"));
    }
    let width = if start.len() > 1 && start.starts_with('0') {
        start.len()
    } else {
        0
    };
    let prefix = &pattern[..open];
    let rest = expand_range(&pattern[close + 1..])?;
    let mut out = Vec::new();
    for n in a..=b {
        for suffix in &rest {
            out.push(format!("{prefix}{n:0width$}{suffix}"));
        }
    }
    Ok(out)
}

/// The candidate nearest to `word` by edit distance, if it is close enough to be a typo.
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a String>) -> Option<&'a String> {
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Inventory, InputError> {
        Inventory::parse(&SourceFile {
            path: "inv.toml".into(),
            text: text.into(),
        })
    }

    #[test]
    fn expands_zero_padded_ranges() {
        assert_eq!(
            expand_range("web-[01:03]").unwrap(),
            ["web-01", "web-02", "web-03"]
        );
        assert_eq!(
            expand_range("db[8:10].x").unwrap(),
            ["db8.x", "db9.x", "db10.x"]
        );
        assert_eq!(
            expand_range("r[1:2]-[a:b]").unwrap_err(),
            "range `[a:b]` in `-[a:b]`: `a` is not a number"
        );
        assert!(
            expand_range("web-[3:1]")
                .unwrap_err()
                .contains("goes backwards")
        );
    }

    #[test]
    fn ssh_settings_override_by_group_then_host() {
        let inv = parse(
            r#"
[ssh]
user = "deploy"
port = 22
connect_timeout = "3s"

[groups.web]
ssh = { port = 2200 }

[hosts."web-[1:2]"]
groups = ["web"]

[hosts.db]
ssh = { user = "admin" }
"#,
        )
        .unwrap();
        let names: Vec<_> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["web-1", "web-2", "db"]);
        assert_eq!(inv.hosts[0].ssh.port, 2200);
        assert_eq!(inv.hosts[0].ssh.user, "deploy");
        assert_eq!(inv.hosts[2].ssh.port, 22);
        assert_eq!(inv.hosts[2].ssh.user, "admin");
        assert_eq!(inv.hosts[2].ssh.connect_timeout, Duration::from_secs(3));
        assert_eq!(inv.hosts[0].address, "web-1");
    }

    #[test]
    fn vars_follow_group_order_then_host() {
        let inv = parse(
            r#"
[vars]
a = "inv"
b = "inv"
c = "inv"

[groups.one]
vars = { b = "one", c = "one" }

[groups.two]
vars = { c = "two" }

[hosts.h]
groups = ["one", "two"]
vars = { d = "host" }
"#,
        )
        .unwrap();
        let v = &inv.hosts[0].vars;
        assert_eq!(v["a"].as_str(), Some("inv"));
        assert_eq!(v["b"].as_str(), Some("one"));
        assert_eq!(v["c"].as_str(), Some("two"));
        assert_eq!(v["d"].as_str(), Some("host"));
    }

    #[test]
    fn address_template_uses_host_name() {
        let inv = parse("[hosts.\"w[1:1]\"]\naddress = \"{{ name }}.internal\"\n").unwrap();
        assert_eq!(inv.hosts[0].address, "w1.internal");
    }

    #[test]
    fn unknown_key_names_file_line_column_and_key() {
        let err = parse("[hosts.web-1]\nadress = \"10.0.0.1\"\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("inv.toml:2:1: unknown field `adress`, expected one of `address`, `groups`, `vars`, `ssh`"),
            "{text}"
        );
        assert_eq!(err.key.as_deref(), Some("hosts.web-1.adress"));
        assert!(
            text.contains("2 | adress = \"10.0.0.1\"\n  | ^^^^^^"),
            "{text}"
        );
        assert!(text.contains("hint:"), "{text}");
    }

    #[test]
    fn undefined_group_is_an_error_with_suggestion() {
        let err = parse("[groups.web]\n[hosts.a]\ngroups = [\"wbe\"]\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "inv.toml:3:11: undefined group `wbe`\n  key: `hosts.a.groups.0`\n  |\n3 | groups = [\"wbe\"]\n  |           ^^^^^\n  hint: did you mean `web`? Groups are declared as `[groups.NAME]`"
        );
    }

    #[test]
    fn bad_policy_and_duration_are_errors() {
        let err = parse("[ssh]\nhost_key_policy = \"yolo\"\n").unwrap_err();
        assert!(
            err.to_string().starts_with(
                "inv.toml:2:19: unknown variant `yolo`, expected `strict` or `accept-new`"
            ),
            "{err}"
        );
        let err = parse("[ssh]\nconnect_timeout = \"ten\"\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("inv.toml:2:19: bad duration `ten`"),
            "{err}"
        );
    }

    #[test]
    fn limit_patterns_select_names_groups_globs_and_exclusions() {
        let inv = parse(
            "[groups.web]\n[groups.db]\n[hosts.\"web-[1:3]\"]\ngroups=[\"web\"]\n[hosts.db-1]\ngroups=[\"db\"]\n",
        )
        .unwrap();
        assert_eq!(inv.select("web").unwrap(), [0, 1, 2]);
        assert_eq!(inv.select("db-1,web-2").unwrap(), [1, 3]);
        assert_eq!(inv.select("web-*").unwrap(), [0, 1, 2]);
        assert_eq!(inv.select("all,!web-2").unwrap(), [0, 2, 3]);
        assert_eq!(inv.select("!web").unwrap(), [3]);
        assert!(
            inv.select("nope")
                .unwrap_err()
                .contains("`nope` matches no host")
        );
    }

    #[test]
    fn jump_resolves_per_group_and_host() {
        let inv = parse(
            r#"
[ssh]
user = "deploy"
jump = "bastion:2222"
ssh_config = ""

[groups.dmz]
ssh = { jump = "" }

[hosts.a]
[hosts.b]
groups = ["dmz"]
[hosts.c]
ssh = { jump = "ops@[::1]" }
"#,
        )
        .unwrap();
        let jumps: Vec<_> = inv
            .hosts
            .iter()
            .map(|h| h.ssh.jump.as_ref().map(ToString::to_string))
            .collect();
        assert_eq!(
            jumps,
            [
                Some("deploy@bastion:2222".to_string()),
                None,
                Some("ops@[::1]:22".to_string())
            ]
        );
        let err = parse("[ssh]\njump = \"b:x\"\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("inv.toml:2:8: bad jump host `b:x`: `x` is not a port number"),
            "{err}"
        );
    }

    #[test]
    fn ssh_config_fills_what_the_inventory_leaves_unset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ssh_config"),
            "Host myalias\n  HostName 10.1.2.3\n  User cfguser\n  Port 2200\n  IdentityFile /keys/cfg\n  ProxyJump jumper\n  IdentitiesOnly yes\nHost jumper\n  HostName 10.9.9.9\n",
        )
        .unwrap();
        let text = r#"
[ssh]
ssh_config = "ssh_config"

[hosts.plain]
address = "myalias"

[hosts.overridden]
address = "myalias"
ssh = { user = "inv", port = 22, identity_file = "/keys/inv", jump = "" }

[hosts.other]
address = "elsewhere"
"#;
        let inv = Inventory::parse(&SourceFile {
            path: dir.path().join("inv.toml"),
            text: text.into(),
        })
        .unwrap();
        let plain = &inv.hosts[0];
        assert_eq!(plain.address, "10.1.2.3");
        assert_eq!((plain.ssh.user.as_str(), plain.ssh.port), ("cfguser", 2200));
        assert_eq!(plain.ssh.identity_file, Some(PathBuf::from("/keys/cfg")));
        assert_eq!(
            plain.ssh.jump,
            Some(JumpSpec {
                host: "10.9.9.9".into(),
                port: 22,
                user: "cfguser".into()
            })
        );
        assert!(plain.ssh.identities_only);

        let over = &inv.hosts[1];
        assert_eq!(over.address, "10.1.2.3");
        assert_eq!((over.ssh.user.as_str(), over.ssh.port), ("inv", 22));
        assert_eq!(over.ssh.identity_file, Some(PathBuf::from("/keys/inv")));
        assert_eq!(over.ssh.jump, None);

        let other = &inv.hosts[2];
        assert_eq!(other.address, "elsewhere");
        assert_eq!(other.ssh.port, 22);
        assert_eq!(other.ssh.jump, None);
        assert!(!other.ssh.identities_only);
    }
}
