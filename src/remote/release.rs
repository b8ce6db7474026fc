//! Releases on a host: the scripts that point `current` at a release (and prune old ones),
//! list them for rollback and for people, and the parsers of what they print.
//! May import: `remote::{script, lock}`, `release` (ids, `ReleaseSite`).

use super::lock::{self, StateDir};
use super::script::Script;
use crate::release::{ReleaseSite, is_release_id};
use crate::sh;

/// The shell glob matching exactly the release ids (`is_release_id`), to list them with the
/// shell's own sorted pathname expansion: no `ls` output is split or re-read as code.
fn id_glob() -> Script {
    sh!(
        "[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9].[0-9][0-9][0-9]Z-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]"
    )
}

/// Sets the positional parameters to `releases/<id>` of every release, oldest first (none:
/// `$#` is 0), and `$cur` to the current release's id (empty when none or not an id).
pub(super) fn scan() -> Script {
    sh!(
        "cur=$(readlink current 2>/dev/null || true); cur=${cur#releases/}; \
         case $cur in {}) ;; *) cur= ;; esac; \
         set -- releases/{}; [ -d \"$1\" ] || shift $#",
        id_glob(),
        id_glob()
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
        "{}; dsk=$(($# - {})); for r in \"$@\"; do [ $dsk -gt 0 ] || break; dsk=$((dsk - 1)); \
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

/// `dropship releases`: the host's releases (`human_list`), or a note that the playbook has
/// none, then the last 5 lines of the app's audit log, indented.
pub fn show(site: Option<&ReleaseSite>, state: &StateDir) -> Script {
    let list = match site {
        Some(site) => human_list(site),
        None => sh!("echo '(the playbook has no [release] section)'"),
    };
    sh!(
        "{}; echo 'audit (last 5):'; {} | sed 's/^/  /'",
        list,
        lock::audit_tail(state, 5)
    )
}

/// Human-readable release list: one line per release, oldest first, `*` on the current one.
fn human_list(site: &ReleaseSite) -> Script {
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
    use crate::release::release_id;

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
