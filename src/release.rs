//! Releases: their ids (UTC time stamps and a content hash) and where they live on a host
//! (`[release]`). The scripts that activate, list and prune them are in `remote::release`.
//! May import: nothing of the crate.

use sha2::{Digest, Sha256};

/// The `[release]` section, rendered for one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseSite {
    /// `releases/<id>/` and the `current` symlink live here.
    pub root: String,
    pub keep: usize,
    /// Which playbook deploys here, as one printable line (`maker_line`): recorded in each
    /// release it activates, so `rollback` never goes back to another playbook's release.
    pub maker: String,
}

impl ReleaseSite {
    pub fn dir(&self, id: &str) -> String {
        format!("{}/releases/{id}", self.root.trim_end_matches('/'))
    }

    /// The root written as compose and docker write the paths below it (`clean_path`):
    /// a bind mount's source through the `current` link starts with this and `/current`.
    pub fn clean_root(&self) -> String {
        clean_path(&self.root)
    }

    /// Whether `dir` is the `current` link or a directory below it, compared as paths
    /// (`//`, `.`, `..` and a trailing `/` do not matter): where a compose project reaches the
    /// active release's files by a path that stays the same from one release to the next.
    pub fn through_current(&self, dir: &str) -> bool {
        let current = format!("{}/current", self.clean_root().trim_end_matches('/'));
        let dir = clean_path(dir);
        dir == current
            || dir
                .strip_prefix(&current)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// An absolute path made lexically clean, as Go's `filepath.Clean` and Python's `normpath`
/// (compose v2 and v1) make the paths they hand to docker: no `//`, `.` or trailing `/`, and
/// `x/..` removed (without looking at the file system). A relative path is returned as is.
pub fn clean_path(path: &str) -> String {
    if !path.starts_with('/') {
        return path.to_string();
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// A release id: UTC time of the run (to the millisecond), then a short hash of everything
/// rendered for it, e.g. `20261122T175512.042Z-3f9a1c2e`. Ids have a fixed width and sort in
/// time order, which pruning and `previous` rely on.
pub fn release_id(now: std::time::SystemTime, rendered: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in rendered {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let hash = hex::encode(hasher.finalize());
    let stamp = humantime::format_rfc3339_millis(not_before_epoch(now)).to_string();
    format!("{}-{}", compact(&stamp), &hash[..8])
}

/// `YYYYMMDDTHHMMSSZ`.
pub fn utc_stamp(now: std::time::SystemTime) -> String {
    compact(&humantime::format_rfc3339_seconds(not_before_epoch(now)).to_string())
}

/// `YYYY-MM-DDTHH:MM:SSZ`, for audit lines and lock info.
pub fn utc_rfc3339(now: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(not_before_epoch(now)).to_string()
}

/// An RFC 3339 stamp without its `-` and `:` separators: fixed width, and safe in file names.
fn compact(rfc3339: &str) -> String {
    rfc3339
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect()
}

/// A clock set before 1970 reads as the epoch (humantime formats only times after it).
fn not_before_epoch(now: std::time::SystemTime) -> std::time::SystemTime {
    now.max(std::time::UNIX_EPOCH)
}

/// What a release records of itself at activation (`remote::release::activate`) and
/// `dropship releases` shows beside it: the deploy's `version` variable, else the image
/// references of the release's compose files, as one line of printable ASCII (anything else
/// escaped as `\xNN`, a backslash as `\\`), at most `VERSION_MAX` bytes: a hostile value cannot
/// forge a line of the listing or send escape codes to a terminal.
pub const VERSION_MAX: usize = 200;

pub fn version_line(version: Option<&str>, compose_files: &[&[u8]]) -> Option<String> {
    let text = match version.filter(|v| !v.trim().is_empty()) {
        Some(version) => format!("version {version}"),
        None => {
            let mut images: Vec<String> = Vec::new();
            for file in compose_files {
                for image in image_references(&String::from_utf8_lossy(file)) {
                    if !images.contains(&image) {
                        images.push(image);
                    }
                }
            }
            if images.is_empty() {
                return None;
            }
            format!("images {}", images.join(" "))
        }
    };
    Some(printable_line(&text))
}

/// The playbook a release was made by, as a release records it (`ReleaseSite::maker`): its
/// `name`, one printable line like `version_line`.
pub fn maker_line(playbook_name: &str) -> String {
    printable_line(playbook_name)
}

/// `text` as one line of printable ASCII: anything else escaped as `\xNN`, a backslash as
/// `\\`, at most `VERSION_MAX` bytes.
fn printable_line(text: &str) -> String {
    let mut line = String::new();
    for c in text.chars() {
        let escaped = match c {
            '\\' => "\\\\".to_string(),
            ' '..='~' => c.to_string(),
            _ => {
                let mut buf = [0; 4];
                c.encode_utf8(&mut buf)
                    .bytes()
                    .map(|b| format!("\\x{b:02x}"))
                    .collect()
            }
        };
        if line.len() + escaped.len() > VERSION_MAX {
            break;
        }
        line.push_str(&escaped);
    }
    line
}

/// The values of a compose file's `image:` keys, read line by line (quotes removed).
fn image_references(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.trim_start().strip_prefix("image:"))
        .map(|value| {
            let value = value.split(" #").next().unwrap_or("").trim();
            value.trim_matches(|c| c == '"' || c == '\'').to_string()
        })
        .filter(|value| !value.is_empty())
        .collect()
}

/// Whether `text` has the form of a release id (`20261122T175512.042Z-3f9a1c2e`). Names read
/// back from a host (directories under `releases/`, the `current` link) are data: anything
/// else there is ignored, never pasted into a script or taken as a rollback target.
pub fn is_release_id(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 29
        && digits(0..8)
        && b[8] == b'T'
        && digits(9..15)
        && b[15] == b'.'
        && digits(16..19)
        && &b[19..21] == b"Z-"
        && b[21..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn a_version_line_is_the_version_variable_else_the_images_and_always_one_printable_line() {
        let compose = b"services:\n  web:\n    image: \"reg/app:B\"  # the app\n  db:\n    image: postgres:15\n  other:\n    image: reg/app:B\n";
        assert_eq!(
            version_line(None, &[compose]).as_deref(),
            Some("images reg/app:B postgres:15")
        );
        assert_eq!(
            version_line(Some("B"), &[compose]).as_deref(),
            Some("version B")
        );
        assert_eq!(version_line(Some(""), &[b"services: {}\n"]), None);
        let hostile = version_line(Some("1\n* 2026 (current)\x1b[2J\\ é"), &[]).unwrap();
        assert_eq!(
            hostile,
            "version 1\\x0a* 2026 (current)\\x1b[2J\\\\ \\xc3\\xa9"
        );
        let long = version_line(Some(&"x".repeat(500)), &[]).unwrap();
        assert_eq!(long.len(), VERSION_MAX);
    }

    #[test]
    fn a_dir_is_through_current_when_it_is_the_link_or_below_it_as_paths() {
        let site = ReleaseSite {
            root: "/srv//app/".into(),
            keep: 1,
            maker: String::new(),
        };
        assert_eq!(site.clean_root(), "/srv/app");
        for dir in [
            "/srv/app/current",
            "/srv/app/current/",
            "/srv//app/./current/stable",
            "/srv/app/x/../current",
        ] {
            assert!(site.through_current(dir), "{dir}");
        }
        for dir in [
            "/srv/app",
            "/srv/app/currently",
            "/srv/app/releases/x",
            "/srv/app/current/..",
            "srv/app/current",
            "",
        ] {
            assert!(!site.through_current(dir), "{dir}");
        }
        assert_eq!(clean_path("/"), "/");
        assert_eq!(clean_path("/.."), "/");
        assert_eq!(clean_path("/a/b/../../.."), "/");
    }

    #[test]
    fn ids_start_with_the_utc_time_and_hash_the_content() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_369_512);
        let a = release_id(t, &[b"compose", b"env"]);
        let b = release_id(t, &[b"compose", b"env2"]);
        assert!(a.starts_with("20261122T"), "{a}");
        assert!(a.contains(".000Z-"), "{a}");
        assert_eq!(a.len(), "20261122T175512.000Z-".len() + 8);
        assert_ne!(a, b);
        assert_eq!(utc_rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            utc_stamp(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "20000229T000000Z"
        );
    }

    #[test]
    fn ids_carry_the_milliseconds_and_a_clock_before_1970_reads_as_the_epoch() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_370_112_042);
        let id = release_id(t, &[b"x"]);
        assert!(id.starts_with("20261122T175512.042Z-"), "{id}");
        assert!(is_release_id(&id), "{id}");
        let early = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(utc_rfc3339(early), "1970-01-01T00:00:00Z");
        assert_eq!(utc_stamp(early), "19700101T000000Z");
    }
}
