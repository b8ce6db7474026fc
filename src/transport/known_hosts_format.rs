//! Reads an OpenSSH known_hosts file as `ssh` does: markers, host patterns, hashed names, tabs.
//!
//! Not russh's known_hosts helpers: they split on single spaces and compare names literally,
//! so tabs, patterns and `@revoked` / `@cert-authority` lines went unseen. As OpenSSH's
//! `hostfile.c` and `match.c`: fields are separated by runs of spaces or tabs, a line that
//! cannot be read is skipped, and a pattern list matches when some pattern does and no
//! negated one does.

use std::collections::HashMap;

use hmac::{Hmac, KeyInit, Mac};
use russh::keys::PublicKey;
use russh::keys::ssh_key::known_hosts::HostPatterns;
use sha1::Sha1;

use super::ssh_config::pattern_list_matches;

/// What a known_hosts line says about its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    /// A plain line: this is the host's key.
    HostKey,
    /// `@cert-authority`: the host presents certificates signed by this key.
    CertAuthority,
    /// `@revoked`: this key must never be accepted.
    Revoked,
}

/// One line of known_hosts that applies to the host being looked up.
#[derive(Debug, Clone)]
pub(crate) struct HostEntry {
    /// 1-based, counting every line of the file (comments and blanks too), as `ssh` reports.
    pub line: usize,
    pub marker: Marker,
    pub key: PublicKey,
}

/// The entries of a known_hosts file's `content` whose host names match `name` (`host`, or
/// `[host]:port` off port 22), in file order. Lines that cannot be read are skipped, as
/// `ssh` skips them.
#[cfg(test)]
pub(crate) fn entries_for(content: &[u8], name: &str) -> Vec<HostEntry> {
    KnownHostsIndex::parse(content).entries_for(name)
}

/// A known_hosts file read once. A lookup tries the lines naming exactly that host (found by
/// name) and the lines of patterns, lists and hashed names, not every line of the file: a
/// fleet's file of thousands of plain lines is not scanned once per host.
#[derive(Debug, Default)]
pub(crate) struct KnownHostsIndex {
    lines: Vec<Line>,
    /// Lines whose host field is one plain name, by that name lowercased.
    by_name: HashMap<String, Vec<usize>>,
    /// Every other line (patterns, lists, negations, hashed names), in file order.
    others: Vec<usize>,
}

/// A readable line: its marker, host names field and key (`type base64`), not decoded yet.
#[derive(Debug)]
struct Line {
    number: usize,
    marker: Marker,
    hosts: String,
    key: String,
}

impl KnownHostsIndex {
    pub(crate) fn parse(content: &[u8]) -> Self {
        let mut index = KnownHostsIndex::default();
        for (number, line) in content.split(|&b| b == b'\n').enumerate() {
            let Some(line) = read_line(&String::from_utf8_lossy(line), number + 1) else {
                continue;
            };
            let at = index.lines.len();
            if is_plain_name(&line.hosts) {
                index
                    .by_name
                    .entry(line.hosts.to_lowercase())
                    .or_default()
                    .push(at);
            } else {
                index.others.push(at);
            }
            index.lines.push(line);
        }
        index
    }

    /// The entries whose host names match `name` (`host`, or `[host]:port` off port 22), in
    /// file order. Lines whose key cannot be read are skipped, as `ssh` skips them.
    pub(crate) fn entries_for(&self, name: &str) -> Vec<HostEntry> {
        // `ssh` lowercases the name before matching, hashed names included.
        let name = name.to_ascii_lowercase();
        let mut hits = self
            .by_name
            .get(&name.to_lowercase())
            .cloned()
            .unwrap_or_default();
        hits.extend(
            self.others
                .iter()
                .copied()
                .filter(|&at| hosts_match(&self.lines[at].hosts, &name)),
        );
        hits.sort_unstable();
        hits.into_iter()
            .filter_map(|at| {
                let line = &self.lines[at];
                let key = PublicKey::from_openssh(&line.key).ok()?;
                Some(HostEntry {
                    line: line.number,
                    marker: line.marker,
                    key,
                })
            })
            .collect()
    }
}

/// Whether a host names field is one name matched as itself: no list, pattern, negation or
/// hash.
fn is_plain_name(field: &str) -> bool {
    !field.starts_with('|') && !field.contains([',', '*', '?', '!'])
}

/// Line `number` when it is a readable entry: a marker, host names and a key type and blob.
fn read_line(line: &str, number: usize) -> Option<Line> {
    let mut fields = line.split([' ', '\t', '\r']).filter(|f| !f.is_empty());
    let mut first = fields.next()?;
    if first.starts_with('#') {
        return None;
    }
    let marker = match first {
        "@cert-authority" => Marker::CertAuthority,
        "@revoked" => Marker::Revoked,
        // An unknown marker makes the whole line unreadable.
        m if m.starts_with('@') => return None,
        _ => Marker::HostKey,
    };
    if marker != Marker::HostKey {
        first = fields.next()?;
    }
    let (key_type, blob) = (fields.next()?, fields.next()?);
    Some(Line {
        number,
        marker,
        hosts: first.to_string(),
        key: format!("{key_type} {blob}"),
    })
}

/// Whether the host names field of a line covers `name` (case-insensitively): one hashed
/// name, or a comma-separated list of `*`/`?` patterns, `!` negating.
fn hosts_match(field: &str, name: &str) -> bool {
    if field.starts_with('|') {
        return hashed_match(field, name);
    }
    let patterns = field.split(',').map(|p| match p.strip_prefix('!') {
        Some(negated) => (true, negated),
        None => (false, p),
    });
    pattern_list_matches(patterns, name)
}

/// `|1|salt|hash`: HMAC-SHA1 of the name keyed with the salt, as `HashKnownHosts` writes.
fn hashed_match(field: &str, name: &str) -> bool {
    let Ok(HostPatterns::HashedName { salt, hash }) = field.parse::<HostPatterns>() else {
        return false;
    };
    let Ok(mac) = Hmac::<Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.chain_update(name.as_bytes())
        .verify_slice(&hash)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILIG2T/B0l0gaqj3puu510tu9N1OkQ4znY3LYuEm5zCF";

    fn lines_for(content: &str, name: &str) -> Vec<(usize, Marker)> {
        entries_for(content.as_bytes(), name)
            .into_iter()
            .map(|e| (e.line, e.marker))
            .collect()
    }

    #[test]
    fn pattern_lists_honour_negation_and_case() {
        assert!(hosts_match("Web.Example.COM", "web.example.com"));
        assert!(hosts_match("db,*.example.com", "web.example.com"));
        assert!(!hosts_match(
            "*.example.com,!web.example.com",
            "web.example.com"
        ));
        assert!(!hosts_match("!web.example.com,*", "web.example.com"));
        // Only negations: nothing matched positively.
        assert!(!hosts_match("!db", "web"));
        assert!(hosts_match("[10.0.0.1]:*", "[10.0.0.1]:2222"));
        assert!(hosts_match("[10.0.0.?]:22*", "[10.0.0.1]:2222"));
        assert!(!hosts_match("[10.0.0.?]:22*", "[10.0.0.12]:2222"));
        assert!(!hosts_match("10.0.0.1", "[10.0.0.1]:2222"));
    }

    #[test]
    fn hashed_names_match_their_host_only() {
        // Written by OpenSSH 9.2's `ssh-keygen -H` for "[127.0.0.1]:2222".
        let field = "|1|T9Rzbzc6+3HYoG8C+wWC8Lo9REc=|Eg5zqI5jHT9Q0fO7UVTjyXeUjNQ=";
        assert!(hashed_match(field, "[127.0.0.1]:2222"));
        assert!(!hashed_match(field, "[127.0.0.1]:2223"));
        assert!(!hashed_match(field, "127.0.0.1"));
        let line = format!("{field} {KEY_A}");
        assert_eq!(lines_for(&line, "[127.0.0.1]:2222"), [(1, Marker::HostKey)]);
        assert!(!hashed_match("|1|garbage", "[127.0.0.1]:2222"));
        assert!(!hashed_match(
            "|2|T9Rzbzc6+3HYoG8C+wWC8Lo9REc=|Eg5zqI5jHT9Q0fO7UVTjyXeUjNQ=",
            "[127.0.0.1]:2222"
        ));
        let line = format!("{field}\t{KEY_A}");
        assert_eq!(lines_for(&line, "[127.0.0.1]:2222"), [(1, Marker::HostKey)]);
    }

    #[test]
    fn reads_markers_tabs_and_skips_what_ssh_skips() {
        let content = format!(
            "# comment\n\n  \t# indented comment\n\
             host-a\t{tabbed}\tcomment\n\
             @revoked *  {KEY_B}\n\
             @cert-authority\thost-*\t{tabbed}\n\
             @unknown host-a {KEY_A}\n\
             host-a\n\
             host-a ssh-ed25519\n\
             host-a ssh-ed25519 not-base64\n\
             host-a ssh-rsa {blob_a}\n\
             \thost-a,host-b   {KEY_B}   # trailing\r\n",
            tabbed = KEY_A.replace(' ', "\t"),
            blob_a = KEY_A.split(' ').nth(1).unwrap(),
        );
        assert_eq!(
            lines_for(&content, "HOST-A"),
            [
                (4, Marker::HostKey),
                (5, Marker::Revoked),
                (6, Marker::CertAuthority),
                (12, Marker::HostKey),
            ]
        );
        assert_eq!(
            lines_for(&content, "host-c"),
            [(5, Marker::Revoked), (6, Marker::CertAuthority)]
        );
        assert_eq!(lines_for(&content, "other"), [(5, Marker::Revoked)]);
        let keys: Vec<String> = entries_for(content.as_bytes(), "host-b")
            .into_iter()
            .map(|e| e.key.to_openssh().unwrap())
            .collect();
        assert_eq!(keys, [KEY_B, KEY_A, KEY_B]);
    }

    #[test]
    fn a_plain_name_is_found_by_itself_whatever_its_case_among_thousands() {
        let mut content = String::new();
        for k in 1..=2000 {
            content.push_str(&format!("[127.0.0.1]:{k} {KEY_A}\n"));
        }
        content.push_str(&format!(
            "WEB-7 {KEY_B}\n*.internal {KEY_A}\nweb-7x {KEY_A}\n"
        ));
        let index = KnownHostsIndex::parse(content.as_bytes());
        let lines = |name: &str| -> Vec<usize> {
            index
                .entries_for(name)
                .into_iter()
                .map(|e| e.line)
                .collect()
        };
        assert_eq!(lines("[127.0.0.1]:1234"), [1234]);
        assert_eq!(lines("web-7"), [2001]);
        assert_eq!(lines("db.internal"), [2002]);
        assert_eq!(lines("web-7x"), [2003]);
        assert!(lines("[127.0.0.1]:2001").is_empty());
    }
}
