//! Releases on a host: ids, `releases/<id>/` directories, the `current` symlink, pruning, listing.

use sha2::{Digest, Sha256};

use crate::remote::quote;

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
    let stamp = utc_stamp(now);
    let millis = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_millis());
    format!(
        "{}.{millis:03}Z-{}",
        stamp.trim_end_matches('Z'),
        &hash[..8]
    )
}

/// `YYYYMMDDTHHMMSSZ`.
pub fn utc_stamp(now: std::time::SystemTime) -> String {
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, mo, d, h, mi, s) = civil_from_unix(secs);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// `YYYY-MM-DDTHH:MM:SSZ`, for audit lines and lock info.
pub fn utc_rfc3339(now: std::time::SystemTime) -> String {
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, mo, d, h, mi, s) = civil_from_unix(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Days-from-civil inverse (Howard Hinnant's algorithm): no date crate needed for UTC stamps.
fn civil_from_unix(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

/// Points `current` at `releases/<id>` atomically (a new symlink renamed over the old one) and
/// prints `previous=<id>` (empty when there was none). Then prunes old releases.
pub fn activate(site: &ReleaseSite, id: &str) -> String {
    let root = quote(&site.root);
    let id_q = quote(id);
    format!(
        "set -e; cd {root}; test -d releases/{id_q} || {{ echo \"release {id} is not on this host\" >&2; exit 1; }}; \
         prev=$(readlink current 2>/dev/null || true); prev=${{prev#releases/}}; \
         ln -sfn releases/{id_q} .current.dropship && mv -Tf .current.dropship current; \
         printf 'previous=%s\\n' \"$prev\"; {prune}",
        prune = prune_script(site.keep, "$prev")
    )
}

/// Removes all but the newest `keep` releases, never the current one nor `previous`.
fn prune_script(keep: usize, previous: &str) -> String {
    format!(
        "cur=$(readlink current 2>/dev/null || true); cur=${{cur#releases/}}; \
         ls -1 releases | sort -r | tail -n +{start} | while read -r old; do \
         if [ \"$old\" != \"$cur\" ] && [ \"$old\" != \"{previous}\" ]; then rm -rf -- \"releases/$old\"; echo \"pruned=$old\"; fi; done",
        start = keep.max(1) + 1
    )
}

/// Lists releases (one `release=<id>` line each, oldest first), `current=<id>`, and the
/// newest release older than the current one as `previous=<id>`.
pub fn list(site: &ReleaseSite) -> String {
    let root = quote(&site.root);
    format!(
        "cd {root} 2>/dev/null || exit 0; cur=$(readlink current 2>/dev/null || true); cur=${{cur#releases/}}; \
         [ -d releases ] && ls -1 releases | sort | while read -r r; do echo \"release=$r\"; done; \
         echo \"current=$cur\"; \
         prev=''; [ -d releases ] && for r in $(ls -1 releases | sort); do if [ -n \"$cur\" ] && [ \"$r\" \\< \"$cur\" ]; then prev=$r; fi; done; \
         echo \"previous=$prev\""
    )
}

/// Human-readable release list: one line per release, oldest first, `*` on the current one.
pub fn human_list(site: &ReleaseSite) -> String {
    let root = quote(&site.root);
    format!(
        "if cd {root} 2>/dev/null && [ -d releases ]; then cur=$(readlink current 2>/dev/null || true); cur=${{cur#releases/}}; \
         for r in $(ls -1 releases | sort); do if [ \"$r\" = \"$cur\" ]; then echo \"* $r (current)\"; else echo \"  $r\"; fi; done; \
         else echo '(no releases yet)'; fi"
    )
}

/// What `list` found on a host.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Listing {
    pub releases: Vec<String>,
    pub current: Option<String>,
    pub previous: Option<String>,
}

pub fn parse_list(stdout: &str) -> Listing {
    let mut listing = Listing::default();
    for line in stdout.lines() {
        if let Some(r) = line.strip_prefix("release=") {
            listing.releases.push(r.to_string());
        } else if let Some(c) = line.strip_prefix("current=") {
            listing.current = Some(c.to_string()).filter(|c| !c.is_empty());
        } else if let Some(p) = line.strip_prefix("previous=") {
            listing.previous = Some(p.to_string()).filter(|p| !p.is_empty());
        }
    }
    listing
}

/// The `previous=` value printed by `activate`.
pub fn parse_previous(stdout: &str) -> Option<String> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("previous="))
        .map(str::to_string)
        .filter(|p| !p.is_empty())
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
    fn listing_is_parsed() {
        let l = parse_list("release=a\nrelease=b\ncurrent=b\nprevious=a\n");
        assert_eq!(l.releases, ["a", "b"]);
        assert_eq!(l.current.as_deref(), Some("b"));
        assert_eq!(l.previous.as_deref(), Some("a"));
        assert_eq!(parse_list("current=\nprevious=\n"), Listing::default());
        assert_eq!(
            parse_previous("previous=x\npruned=y\n").as_deref(),
            Some("x")
        );
        assert_eq!(parse_previous("previous=\n"), None);
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
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        for id in ["r1", "r2", "r3"] {
            std::fs::create_dir_all(dir.path().join("releases").join(id)).unwrap();
            let out = sh(&activate(&site, id));
            let expected_prev = match id {
                "r1" => None,
                "r2" => Some("r1"),
                _ => Some("r2"),
            };
            assert_eq!(parse_previous(&out).as_deref(), expected_prev);
        }
        // keep = 2: r1 pruned; r2 (previous) and r3 (current) remain.
        let listing = parse_list(&sh(&list(&site)));
        assert_eq!(listing.releases, ["r2", "r3"]);
        assert_eq!(listing.current.as_deref(), Some("r3"));
        assert_eq!(listing.previous.as_deref(), Some("r2"));
        // Rolling back to r2 keeps r3 (newest) and r2 (current).
        sh(&activate(&site, "r2"));
        let listing = parse_list(&sh(&list(&site)));
        assert_eq!(listing.current.as_deref(), Some("r2"));
        assert_eq!(listing.releases, ["r2", "r3"]);
        assert!(
            std::fs::read_link(dir.path().join("current"))
                .unwrap()
                .ends_with("releases/r2")
        );
    }
}
