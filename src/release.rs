//! Releases on a host: ids, `releases/<id>/` directories, the `current` symlink, pruning, listing.

use sha2::{Digest, Sha256};

use crate::remote::Script;
use crate::sh;

/// The `[release]` section, rendered for one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseSite {
    /// `releases/<id>/` and the `current` symlink live here.
    pub root: String,
    pub keep: usize,
}

impl ReleaseSite {
    pub fn dir(&self, id: &str) -> String {
        format!("{}/releases/{id}", self.root.trim_end_matches('/'))
    }
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

/// The shell glob matching exactly the release ids (`is_release_id`), to list them with the
/// shell's own sorted pathname expansion: no `ls` output is split or re-read as code.
const ID_GLOB: &str = "[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9].[0-9][0-9][0-9]Z-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]";

/// Sets the positional parameters to `releases/<id>` of every release, oldest first (none:
/// `$#` is 0), and `$cur` to the current release's id (empty when none or not an id).
fn scan() -> Script {
    sh!(
        "cur=$(readlink current 2>/dev/null || true); cur=${cur#releases/}; \
         case $cur in {}) ;; *) cur= ;; esac; \
         set -- releases/{}; [ -d \"$1\" ] || shift $#",
        Script::trusted(ID_GLOB),
        Script::trusted(ID_GLOB)
    )
}

/// Points `current` at `releases/<id>` atomically (a new symlink renamed over the old one) and
/// prints `previous=<id>` (empty when there was none). Then prunes old releases.
pub fn activate(site: &ReleaseSite, id: &str) -> String {
    let link = format!("releases/{id}");
    sh!(
        "set -e; cd -- {}; test -d {} || {{ printf 'release %s is not on this host\\n' {} >&2; exit 1; }}; \
         prev=$(readlink current 2>/dev/null || true); prev=${prev#releases/}; \
         ln -sfn -- {} .current.dropship && mv -Tf -- .current.dropship current; \
         printf 'previous=%s\\n' \"$prev\"; {}",
        site.root,
        link,
        id,
        link,
        prune_script(site.keep)
    )
    .into_string()
}

/// Removes all but the newest `keep` releases, never the current one nor `$prev`.
fn prune_script(keep: usize) -> Script {
    sh!(
        "{}; dsn=$(($# - {})); for r in \"$@\"; do [ $dsn -gt 0 ] || break; dsn=$((dsn - 1)); \
         id=${r#releases/}; if [ \"$id\" != \"$cur\" ] && [ \"$id\" != \"$prev\" ]; then rm -rf -- \"$r\"; printf 'pruned=%s\\n' \"$id\"; fi; done",
        scan(),
        keep.max(1)
    )
}

/// Lists releases (one `release=<id>` line each, oldest first) and `current=<id>`.
pub fn list(site: &ReleaseSite) -> String {
    sh!(
        "cd -- {} 2>/dev/null || exit 0; {}; for r in \"$@\"; do printf 'release=%s\\n' \"${r#releases/}\"; done; \
         printf 'current=%s\\n' \"$cur\"",
        site.root,
        scan()
    )
    .into_string()
}

/// Human-readable release list: one line per release, oldest first, `*` on the current one.
pub fn human_list(site: &ReleaseSite) -> Script {
    sh!(
        "if cd -- {} 2>/dev/null && [ -d releases ]; then {}; for r in \"$@\"; do r=${r#releases/}; \
         if [ \"$r\" = \"$cur\" ]; then printf '* %s (current)\\n' \"$r\"; else printf '  %s\\n' \"$r\"; fi; done; \
         else echo '(no releases yet)'; fi",
        site.root,
        scan()
    )
}

/// What `list` found on a host.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Listing {
    pub releases: Vec<String>,
    pub current: Option<String>,
    pub previous: Option<String>,
}

/// Parses `list`'s output; only names with the form of a release id count. `previous` is the
/// newest release older than the current one.
pub fn parse_list(stdout: &str) -> Listing {
    let mut listing = Listing::default();
    for line in stdout.lines() {
        if let Some(r) = line.strip_prefix("release=") {
            if is_release_id(r) {
                listing.releases.push(r.to_string());
            }
        } else if let Some(c) = line.strip_prefix("current=") {
            listing.current = Some(c.to_string()).filter(|c| is_release_id(c));
        }
    }
    listing.releases.sort();
    listing.previous = listing.current.as_ref().and_then(|cur| {
        listing
            .releases
            .iter()
            .rfind(|r| r.as_str() < cur.as_str())
            .cloned()
    });
    listing
}

/// The `previous=` value printed by `activate`, when it is a release id.
pub fn parse_previous(stdout: &str) -> Option<String> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("previous="))
        .filter(|p| is_release_id(p))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

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

    const R1: &str = "20261122T175512.042Z-3f9a1c2e";
    const R2: &str = "20261122T175613.000Z-00000000";
    const R3: &str = "20261123T010203.999Z-abcdef01";

    #[test]
    fn listing_is_parsed_and_only_release_ids_count() {
        let l = parse_list(&format!(
            "release={R1}\nrelease=$(touch pwned)\nrelease=-rf\nrelease={R2}\ncurrent={R2}\n"
        ));
        assert_eq!(l.releases, [R1, R2]);
        assert_eq!(l.current.as_deref(), Some(R2));
        assert_eq!(l.previous.as_deref(), Some(R1));
        assert_eq!(parse_list("current=\n"), Listing::default());
        assert_eq!(parse_list("current=$(x)\n").current, None);
        assert_eq!(
            parse_previous(&format!("previous={R1}\npruned=y\n")).as_deref(),
            Some(R1)
        );
        assert_eq!(parse_previous("previous=\n"), None);
        assert_eq!(parse_previous("previous=`id`\n"), None);
        assert!(is_release_id(&release_id(
            std::time::SystemTime::now(),
            &[b"x"]
        )));
        assert!(!is_release_id("20261122T175512.042Z-3f9a1c2"));
        assert!(!is_release_id("20261122T175512.042Z-3f9a1c2E"));
    }

    #[test]
    fn activate_and_prune_work_in_a_real_shell() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap().to_string();
        let site = ReleaseSite {
            root: root.clone(),
            keep: 2,
        };
        let sh = |script: &str| {
            let out = crate::remote::run_in_sh(script, b"");
            assert_eq!(
                out.status,
                Some(0),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        // Hostile names beside the releases are data: never listed, pruned or run.
        for hostile in ["$(touch pwned)", "-rf", "a b", "x\ny"] {
            std::fs::create_dir_all(dir.path().join("releases").join(hostile)).unwrap();
        }
        for id in [R1, R2, R3] {
            std::fs::create_dir_all(dir.path().join("releases").join(id)).unwrap();
            let out = sh(&activate(&site, id));
            let expected_prev = match id {
                R1 => None,
                R2 => Some(R1),
                _ => Some(R2),
            };
            assert_eq!(parse_previous(&out).as_deref(), expected_prev);
        }
        // keep = 2: R1 pruned; R2 (previous) and R3 (current) remain.
        let listing = parse_list(&sh(&list(&site)));
        assert_eq!(listing.releases, [R2, R3]);
        assert_eq!(listing.current.as_deref(), Some(R3));
        assert_eq!(listing.previous.as_deref(), Some(R2));
        // Rolling back to R2 keeps R3 (newest) and R2 (current).
        sh(&activate(&site, R2));
        let listing = parse_list(&sh(&list(&site)));
        assert_eq!(listing.current.as_deref(), Some(R2));
        assert_eq!(listing.releases, [R2, R3]);
        assert!(
            std::fs::read_link(dir.path().join("current"))
                .unwrap()
                .ends_with(format!("releases/{R2}"))
        );
        let human = sh(human_list(&site).as_str());
        assert_eq!(human, format!("* {R2} (current)\n  {R3}\n"));
        let mut left: Vec<_> = std::fs::read_dir(dir.path().join("releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["$(touch pwned)", "-rf", R2, R3, "a b", "x\ny"]);
        assert!(!dir.path().join("pwned").exists());
        assert!(!std::path::Path::new("pwned").exists());
        // A release that is not there: refused, the hostile id shown as text.
        let out = crate::remote::run_in_sh(&activate(&site, "$(touch pwned2) x"), b"");
        assert_ne!(out.status, Some(0));
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("release $(touch pwned2) x is not on this host")
        );
        assert!(!dir.path().join("pwned2").exists());
    }
}
