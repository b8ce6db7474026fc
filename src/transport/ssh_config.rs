//! A small OpenSSH client config (`~/.ssh/config`) reader: the keys dropship can use, per host.
//!
//! Understood: `Host` (several patterns per line, `*` and `?` globs, `!negation`), `HostName`,
//! `User`, `Port`, `IdentityFile` (the first one; `~` and `%h`/`%r`/`%u`/`%p`/`%%` expanded),
//! `ProxyJump` (the first hop; `none`) and `IdentitiesOnly`. As in OpenSSH the first value
//! obtained for a key wins. `Match` blocks never match; `Include` and every other key are
//! ignored.

use std::path::{Path, PathBuf};

use crate::paths::expand_home;

/// The parsed file: `Host` blocks in order; lines before the first `Host` apply to all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SshConfig {
    blocks: Vec<Block>,
}

#[derive(Debug, Clone, PartialEq)]
struct Block {
    /// `(negated, pattern)`; `None` for a `Match` block, which never applies.
    patterns: Option<Vec<(bool, String)>>,
    /// Lowercased key and raw value, in file order.
    options: Vec<(String, String)>,
}

/// An ssh config that exists but cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read ssh config {}: {source}", path.display())]
pub struct SshConfigError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// What the config says about one host; `None` where it says nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    pub host_name: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<PathBuf>,
    /// The first hop of `ProxyJump` as written (`none` kept, meaning "direct").
    pub proxy_jump: Option<String>,
    pub identities_only: Option<bool>,
}

impl SshConfig {
    /// Reads `path`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Self, SshConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Self::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(SshConfigError {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    pub fn parse(text: &str) -> Self {
        let mut blocks = vec![Block {
            patterns: Some(vec![(false, "*".into())]),
            options: Vec::new(),
        }];
        for line in text.lines() {
            let Some((key, value)) = split_line(line) else {
                continue;
            };
            match key.as_str() {
                "host" => blocks.push(Block {
                    patterns: Some(
                        value
                            .split_whitespace()
                            .map(|p| match p.strip_prefix('!') {
                                Some(rest) => (true, rest.to_string()),
                                None => (false, p.to_string()),
                            })
                            .collect(),
                    ),
                    options: Vec::new(),
                }),
                "match" => blocks.push(Block {
                    patterns: None,
                    options: Vec::new(),
                }),
                _ => blocks
                    .last_mut()
                    .expect("there is always a block")
                    .options
                    .push((key, value)),
            }
        }
        Self { blocks }
    }

    /// The settings for `host` (what you would type after `ssh`); `local_user` is `%u`.
    pub fn lookup(&self, host: &str, local_user: &str) -> HostConfig {
        let mut raw = HostConfig::default();
        let mut identity: Option<String> = None;
        for block in &self.blocks {
            if !block.matches(host) {
                continue;
            }
            for (key, value) in &block.options {
                let first_word = || value.split_whitespace().next().map(str::to_string);
                match key.as_str() {
                    "hostname" if raw.host_name.is_none() => raw.host_name = first_word(),
                    "user" if raw.user.is_none() => raw.user = first_word(),
                    "port" if raw.port.is_none() => raw.port = value.trim().parse().ok(),
                    "identityfile" if identity.is_none() => identity = Some(value.clone()),
                    "proxyjump" if raw.proxy_jump.is_none() => {
                        raw.proxy_jump = value.split(',').next().map(|s| s.trim().to_string())
                    }
                    "identitiesonly" if raw.identities_only.is_none() => {
                        raw.identities_only = Some(value.trim().eq_ignore_ascii_case("yes"))
                    }
                    _ => {}
                }
            }
        }
        // Tokens see the final host name, as in OpenSSH.
        let host_name = raw
            .host_name
            .as_deref()
            .map(|h| h.replace("%h", host).replace("%%", "%"));
        let real_host = host_name.as_deref().unwrap_or(host);
        let expand = |s: &str| {
            let mut out = String::new();
            let mut chars = s.chars();
            while let Some(c) = chars.next() {
                if c != '%' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('h') => out.push_str(real_host),
                    Some('n') => out.push_str(host),
                    Some('r') => out.push_str(raw.user.as_deref().unwrap_or(local_user)),
                    Some('u') => out.push_str(local_user),
                    Some('p') => out.push_str(&raw.port.unwrap_or(22).to_string()),
                    Some('%') => out.push('%'),
                    Some(other) => {
                        out.push('%');
                        out.push(other);
                    }
                    None => out.push('%'),
                }
            }
            out
        };
        HostConfig {
            identity_file: identity.map(|i| expand_home(&expand(&i))),
            host_name,
            ..raw
        }
    }
}

impl Block {
    fn matches(&self, host: &str) -> bool {
        self.patterns.as_ref().is_some_and(|patterns| {
            pattern_list_matches(patterns.iter().map(|(n, p)| (*n, p.as_str())), host)
        })
    }
}

/// OpenSSH's `match_pattern_list` over `(negated, pattern)` pairs: some positive pattern
/// matches and no negated one does.
pub(super) fn pattern_list_matches<'a>(
    patterns: impl IntoIterator<Item = (bool, &'a str)>,
    host: &str,
) -> bool {
    let mut matched = false;
    for (negated, pattern) in patterns {
        if glob(pattern, host) {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

/// `Key value`, `Key=value` or `Key = value`; comments and blank lines give `None`.
/// Quotes around the value are removed.
fn split_line(line: &str) -> Option<(String, String)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let end = line.find(|c: char| c.is_whitespace() || c == '=')?;
    let key = line[..end].to_ascii_lowercase();
    let rest = line[end..].trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim();
    let value = if key == "host" {
        rest.replace('"', "")
    } else {
        rest.strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .unwrap_or(rest)
            .to_string()
    };
    Some((key, value))
}

/// Case-insensitive `*`/`?` glob, like OpenSSH's `match_pattern` for host names.
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
# global defaults come first in OpenSSH order
IdentitiesOnly no

Host web-? !web-9 db*.internal
    HostName %h.example.com
    User deploy
    Port 2201
    IdentityFile ~/.ssh/fleet_%h
    IdentityFile ~/.ssh/second

Host=alias
    HostName=10.0.0.5
    Port = 2222
    ProxyJump admin@bastion:2200,other-hop
    IdentitiesOnly yes
    IdentityFile "/keys/%r@%h %%"

Match host web-1
    User never

Host *
    User fallback
    Port 22
    ProxyJump none
"#;

    fn home() -> PathBuf {
        expand_home("~")
    }

    #[test]
    fn globs_match_like_openssh() {
        assert!(glob("web-?", "web-1"));
        assert!(!glob("web-?", "web-10"));
        assert!(glob("db*.internal", "db.internal"));
        assert!(glob("DB*", "db-3"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
    }

    #[test]
    fn first_obtained_value_wins_across_blocks() {
        let config = SshConfig::parse(CONFIG);
        assert_eq!(
            config.lookup("web-1", "me"),
            HostConfig {
                host_name: Some("web-1.example.com".into()),
                user: Some("deploy".into()),
                port: Some(2201),
                identity_file: Some(home().join(".ssh/fleet_web-1.example.com")),
                proxy_jump: Some("none".into()),
                identities_only: Some(false),
            }
        );
    }

    #[test]
    fn negated_pattern_excludes_the_block() {
        let config = SshConfig::parse(CONFIG);
        assert_eq!(
            config.lookup("web-9", "me"),
            HostConfig {
                host_name: None,
                user: Some("fallback".into()),
                port: Some(22),
                identity_file: None,
                proxy_jump: Some("none".into()),
                identities_only: Some(false),
            }
        );
    }

    #[test]
    fn equals_signs_quotes_tokens_and_first_jump_hop() {
        let config = SshConfig::parse(CONFIG);
        assert_eq!(
            config.lookup("ALIAS", "me"),
            HostConfig {
                host_name: Some("10.0.0.5".into()),
                user: Some("fallback".into()),
                port: Some(2222),
                identity_file: Some(PathBuf::from("/keys/fallback@10.0.0.5 %")),
                proxy_jump: Some("admin@bastion:2200".into()),
                // The global `IdentitiesOnly no` came first.
                identities_only: Some(false),
            }
        );
    }

    #[test]
    fn empty_and_missing_configs_say_nothing() {
        assert_eq!(
            SshConfig::parse("").lookup("x", "me"),
            HostConfig::default()
        );
        let missing = SshConfig::load(Path::new("/nonexistent/ssh/config")).unwrap();
        assert_eq!(missing.lookup("x", "me"), HostConfig::default());
    }
}
