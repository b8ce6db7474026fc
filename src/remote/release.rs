//! Releases on a host: the scripts that point `current` at a release (and prune old ones),
//! list them for rollback and for people, and the parsers of what they print.
//! May import: `remote::{script, lock}`, `release` (ids, `ReleaseSite`).

use super::lock::{self, StateDir};
use super::script::Script;
use crate::release::{ReleaseSite, is_release_id};
use crate::sh;

/// The shell glob matching exactly the release ids (`is_release_id`), to list them with the
/// shell's own sorted pathname expansion: no `ls` output is split or re-read as code.
pub(super) fn id_glob() -> Script {
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

/// The marker a release carries once a run has rolled a host back from it: such a release
/// never counts against `[release] keep`, is pruned first, and is never the default target of
/// `dropship rollback`. A file inside the release, so pruning the release removes it too.
const FAILED_MARK: &str = ".dropship-failed";

/// Points `current` at `releases/<id>` atomically (a new symlink renamed over the old one),
/// clears a failed mark `id` may carry (it is chosen again), and prints `previous=<id>` (empty
/// when there was none). Nothing is pruned here: `prune` runs once the host's steps succeeded.
pub fn activate(site: &ReleaseSite, id: &str) -> String {
    switch(site, id, None, None)
}

/// Where a release keeps its `release::version_line`, written at activation.
const VERSION_FILE: &str = ".dropship-version";

/// Where a release keeps the playbook that made it (`ReleaseSite::maker`), written at activation.
const MAKER_FILE: &str = ".dropship-playbook";

/// `activate` for a deploy's new release, recording `version` (a `release::version_line`:
/// one printable line) and the playbook that made it (`site.maker`) in it first, in the same
/// round trip. A release that cannot take the files is activated all the same.
pub fn activate_recording(site: &ReleaseSite, id: &str, version: Option<&str>) -> String {
    switch(site, id, None, Some(version))
}

/// Puts a host of a failed batch back on `to` like `activate`, and marks `failed` (the release
/// this run activated there) as failed, in the same round trip.
pub fn undo(site: &ReleaseSite, to: &str, failed: &str) -> String {
    switch(site, to, Some(failed), None)
}

/// `record`: `Some(version)` for a new release, whose version (when known) and maker are
/// written into it; `None` to switch without writing anything in the release.
fn switch(
    site: &ReleaseSite,
    id: &str,
    failed: Option<&str>,
    record: Option<Option<&str>>,
) -> String {
    let link = format!("releases/{id}");
    let mark = match failed.filter(|f| is_release_id(f) && *f != id) {
        Some(failed) => sh!(
            "if [ -d {} ]; then : > {}; fi; ",
            format!("releases/{failed}"),
            format!("releases/{failed}/{FAILED_MARK}")
        ),
        None => sh!(""),
    };
    let version = match record.flatten() {
        Some(line) => sh!(
            "{{ printf '%s\\n' {} > {}; }} 2>/dev/null || true; ",
            line,
            format!("{link}/{VERSION_FILE}")
        ),
        None => sh!(""),
    };
    let maker = match record {
        Some(_) if !site.maker.is_empty() => sh!(
            "{{ printf '%s\\n' {} > {}; }} 2>/dev/null || true; ",
            site.maker.as_str(),
            format!("{link}/{MAKER_FILE}")
        ),
        _ => sh!(""),
    };
    sh!(
        "set -e; cd -- {}; test -d {} || {{ printf 'release %s is not on this host\\n' {} >&2; exit 1; }}; \
         {}prev=$(readlink current 2>/dev/null || true); prev=${prev#releases/}; rm -f -- {}; \
         ln -sfn -- {} .current.dropship && mv -Tf -- .current.dropship current; \
         {}printf 'previous=%s\\n' \"$prev\"",
        site.root,
        link,
        id,
        sh!("{}{}", version, maker),
        format!("{link}/{FAILED_MARK}"),
        link,
        mark
    )
    .into_string()
}

/// After a host's steps succeeded: removes failed releases, then all but the newest `keep`
/// others, never the current one nor the one `rollback` would go back to (the newest release
/// before it that did not fail). Failed releases do not count against `keep`, so failed
/// deploys never push out the last good release. Prints `pruned=<id>` per release removed.
pub fn prune(site: &ReleaseSite) -> String {
    sh!(
        "set -e; cd -- {} 2>/dev/null || exit 0; {}; prev=; for r in \"$@\"; do id=${r#releases/}; \
         [ \"$id\" != \"$cur\" ] || break; [ -e \"$r\"/{} ] || prev=$id; done; {}",
        site.root,
        scan(),
        FAILED_MARK,
        prune_body(site.keep)
    )
    .into_string()
}

/// The removal itself, with `$@` (the releases, oldest first), `$cur` and `$prev` set.
fn prune_body(keep: usize) -> Script {
    sh!(
        "dsn=0; for r in \"$@\"; do id=${r#releases/}; \
         if [ -e \"$r\"/{} ] && [ \"$id\" != \"$cur\" ] && [ \"$id\" != \"$prev\" ]; then rm -rf -- \"$r\"; printf 'pruned=%s\\n' \"$id\"; \
         elif [ ! -e \"$r\"/{} ]; then dsn=$((dsn + 1)); fi; done; \
         dsk=$((dsn - {})); for r in \"$@\"; do [ $dsk -gt 0 ] || break; [ -d \"$r\" ] || continue; \
         [ ! -e \"$r\"/{} ] || continue; dsk=$((dsk - 1)); \
         id=${r#releases/}; if [ \"$id\" != \"$cur\" ] && [ \"$id\" != \"$prev\" ]; then rm -rf -- \"$r\"; printf 'pruned=%s\\n' \"$id\"; fi; done",
        FAILED_MARK,
        FAILED_MARK,
        keep.max(1),
        FAILED_MARK
    )
}

/// The ids `prune` printed as removed.
pub fn parse_pruned(stdout: &str) -> Vec<String> {
    printed_ids(stdout, "pruned=").collect()
}

/// The values of the `KEY<id>` lines a script printed that are release ids, in order.
fn printed_ids<'a>(stdout: &'a str, key: &'a str) -> impl Iterator<Item = String> + 'a {
    stdout
        .lines()
        .filter_map(move |l| l.strip_prefix(key))
        .filter(|id| is_release_id(id))
        .map(str::to_string)
}

/// Lists releases (one `release=<id>` line each, oldest first, `failed=<id>` after a failed
/// one, `maker=<id> <playbook>` after one that recorded its playbook) and `current=<id>`.
pub fn list(site: &ReleaseSite) -> String {
    sh!(
        "cd -- {} 2>/dev/null || exit 0; {}; for r in \"$@\"; do printf 'release=%s\\n' \"${r#releases/}\"; \
         if [ -e \"$r\"/{} ]; then printf 'failed=%s\\n' \"${r#releases/}\"; fi; \
         if [ -f \"$r\"/{} ]; then printf 'maker=%s %s\\n' \"${r#releases/}\" \"$(head -n 1 -- \"$r\"/{} | head -c {} | LC_ALL=C tr -cd '\\040-\\176')\"; fi; done; \
         printf 'current=%s\\n' \"$cur\"",
        site.root,
        scan(),
        FAILED_MARK,
        MAKER_FILE,
        MAKER_FILE,
        crate::release::VERSION_MAX.to_string()
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

/// Human-readable release list: one line per release, oldest first, `*` on the current one,
/// each with what it recorded at activation (`VERSION_FILE`: its first line, printable
/// characters only however it was written).
fn human_list(site: &ReleaseSite) -> Script {
    sh!(
        "if cd -- {} 2>/dev/null && [ -d releases ]; then {}; for r in \"$@\"; do r=${r#releases/}; \
         if [ -e \"releases/$r\"/{} ]; then f=' (failed)'; else f=; fi; \
         v=; if [ -f \"releases/$r\"/{} ]; then v=$(head -n 1 -- \"releases/$r\"/{} | head -c {} | LC_ALL=C tr -cd '\\040-\\176'); fi; [ -z \"$v\" ] || v=\"  $v\"; \
         if [ \"$r\" = \"$cur\" ]; then printf '* %s (current)%s%s\\n' \"$r\" \"$f\" \"$v\"; else printf '  %s%s%s\\n' \"$r\" \"$f\" \"$v\"; fi; done; \
         else echo '(no releases yet)'; fi",
        site.root,
        scan(),
        FAILED_MARK,
        VERSION_FILE,
        VERSION_FILE,
        crate::release::VERSION_MAX.to_string()
    )
}

/// What `list` found on a host.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Listing {
    pub releases: Vec<String>,
    pub current: Option<String>,
    /// Releases a run rolled a host back from.
    pub failed: Vec<String>,
    /// The newest release older than the current one that did not fail and was not made by
    /// another playbook: `rollback`'s target.
    pub previous: Option<String>,
    /// The playbook each release recorded (`ReleaseSite::maker`); older releases have none.
    pub makers: Vec<(String, String)>,
}

impl Listing {
    /// The playbook `release` recorded, when it recorded one.
    pub fn maker_of(&self, release: &str) -> Option<&str> {
        self.makers
            .iter()
            .find(|(r, _)| r == release)
            .map(|(_, m)| m.as_str())
    }

    /// Whether `release` was made by another playbook than `maker` (releases that recorded
    /// none, made before dropship recorded it, belong to every playbook).
    pub fn made_by_other(&self, release: &str, maker: &str) -> bool {
        self.maker_of(release).is_some_and(|m| m != maker)
    }
}

/// Parses `list`'s output; only names with the form of a release id count. `previous` is the
/// newest release older than the current one that is not marked failed and was not made by
/// another playbook than `maker`.
pub fn parse_list(stdout: &str, maker: &str) -> Listing {
    let mut listing = Listing::default();
    for line in stdout.lines() {
        if let Some((r, m)) = line.strip_prefix("maker=").and_then(|l| l.split_once(' ')) {
            if is_release_id(r) {
                listing.makers.push((r.to_string(), m.to_string()));
            }
            continue;
        }
        if let Some(r) = line.strip_prefix("release=") {
            if is_release_id(r) {
                listing.releases.push(r.to_string());
            }
        } else if let Some(f) = line.strip_prefix("failed=") {
            if is_release_id(f) {
                listing.failed.push(f.to_string());
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
            .rfind(|r| {
                r.as_str() < cur.as_str()
                    && !listing.failed.contains(r)
                    && !listing.made_by_other(r, maker)
            })
            .cloned()
    });
    listing
}

/// The `previous=` value printed by `activate`, when it is a release id.
pub fn parse_previous(stdout: &str) -> Option<String> {
    let first = stdout.lines().find(|l| l.starts_with("previous="))?;
    printed_ids(first, "previous=").next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::release_id;

    /// Runs `script` in a real `sh`, which must succeed; its stdout.
    fn sh(script: &str) -> String {
        let out = crate::remote::run_in_sh(script, b"");
        assert_eq!(
            out.status,
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    const R1: &str = "20261122T175512.042Z-3f9a1c2e";
    const R2: &str = "20261122T175613.000Z-00000000";
    const R3: &str = "20261123T010203.999Z-abcdef01";

    #[test]
    fn listing_is_parsed_and_only_release_ids_count() {
        let l = parse_list(
            &format!(
                "release={R1}\nrelease=$(touch pwned)\nrelease=-rf\nrelease={R2}\ncurrent={R2}\n"
            ),
            "",
        );
        assert_eq!(l.releases, [R1, R2]);
        assert_eq!(l.current.as_deref(), Some(R2));
        assert_eq!(l.previous.as_deref(), Some(R1));
        assert_eq!(parse_list("current=\n", ""), Listing::default());
        assert_eq!(parse_list("current=$(x)\n", "").current, None);
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
            maker: "p".into(),
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
            // Activation alone prunes nothing: a deploy that fails later keeps them all.
            assert!(parse_pruned(&out).is_empty(), "{out}");
        }
        assert_eq!(parse_list(&sh(&list(&site)), "p").releases, [R1, R2, R3]);
        // keep = 2, after success: R1 pruned; R2 (previous) and R3 (current) remain.
        assert_eq!(parse_pruned(&sh(&prune(&site))), [R1]);
        let listing = parse_list(&sh(&list(&site)), "p");
        assert_eq!(listing.releases, [R2, R3]);
        assert_eq!(listing.current.as_deref(), Some(R3));
        assert_eq!(listing.previous.as_deref(), Some(R2));
        // Rolling back to R2 keeps R3 (newest) and R2 (current).
        sh(&activate(&site, R2));
        assert!(parse_pruned(&sh(&prune(&site))).is_empty());
        let listing = parse_list(&sh(&list(&site)), "p");
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

    #[test]
    fn rollback_never_goes_back_to_a_release_another_playbook_made() {
        let dir = tempfile::tempdir().unwrap();
        let site = |maker: &str| ReleaseSite {
            root: dir.path().to_str().unwrap().to_string(),
            keep: 5,
            maker: crate::release::maker_line(maker),
        };
        // R1 by "Deploy Pixel", R2 by the zero-downtime playbook (a hostile name: one line,
        // printable), R3 by "Deploy Pixel" again.
        let hostile = "Zero-downtime\nmaker=x y\x1b[2J";
        for (id, maker) in [(R1, "Deploy Pixel"), (R2, hostile), (R3, "Deploy Pixel")] {
            std::fs::create_dir_all(dir.path().join("releases").join(id)).unwrap();
            sh(&activate_recording(&site(maker), id, Some("version A")));
        }
        let listing = parse_list(
            &sh(&list(&site("Deploy Pixel"))),
            &site("Deploy Pixel").maker,
        );
        assert_eq!(listing.current.as_deref(), Some(R3));
        // R2 is newer but another playbook's: rollback goes to R1.
        assert_eq!(listing.previous.as_deref(), Some(R1));
        assert!(listing.made_by_other(R2, "Deploy Pixel"));
        assert_eq!(
            listing.maker_of(R2),
            Some("Zero-downtime\\x0amaker=x y\\x1b[2J")
        );
        // Releases that recorded no playbook (older dropship) belong to every playbook.
        std::fs::remove_file(dir.path().join("releases").join(R1).join(MAKER_FILE)).unwrap();
        let listing = parse_list(&sh(&list(&site("Other"))), "Other");
        assert_eq!(listing.previous.as_deref(), Some(R1));
        // Switching back without recording (a rollback) leaves what the release recorded.
        sh(&activate(&site("Somebody else"), R2));
        let listing = parse_list(&sh(&list(&site("x"))), "x");
        assert_eq!(listing.maker_of(R3), Some("Deploy Pixel"));
        assert_eq!(listing.current.as_deref(), Some(R2));
    }

    #[test]
    fn failed_releases_never_push_out_the_last_good_one() {
        const R4: &str = "20261124T000000.000Z-00000004";
        const R5: &str = "20261125T000000.000Z-00000005";
        let dir = tempfile::tempdir().unwrap();
        let site = ReleaseSite {
            root: dir.path().to_str().unwrap().to_string(),
            keep: 2,
            maker: "p".into(),
        };
        let stage =
            |id: &str| std::fs::create_dir_all(dir.path().join("releases").join(id)).unwrap();
        // R1 and R2 deployed fine (R2 current).
        for id in [R1, R2] {
            stage(id);
            sh(&activate(&site, id));
            sh(&prune(&site));
        }
        // R3 and then R4 fail after activation: each run puts the host back on R2.
        for failed in [R3, R4] {
            stage(failed);
            assert_eq!(
                parse_previous(&sh(&activate(&site, failed))).as_deref(),
                Some(R2)
            );
            assert_eq!(
                parse_previous(&sh(&undo(&site, R2, failed))).as_deref(),
                Some(failed)
            );
        }
        let listing = parse_list(&sh(&list(&site)), "p");
        assert_eq!(listing.releases, [R1, R2, R3, R4]);
        assert_eq!(listing.failed, [R3, R4]);
        assert_eq!(listing.current.as_deref(), Some(R2));
        // Rollback still has somewhere to go: R1, the good release before R2.
        assert_eq!(listing.previous.as_deref(), Some(R1));
        assert_eq!(
            sh(human_list(&site).as_str()),
            format!("  {R1}\n* {R2} (current)\n  {R3} (failed)\n  {R4} (failed)\n")
        );
        // The next good deploy prunes the failed ones first; keep = 2 good ones remain.
        stage(R5);
        sh(&activate(&site, R5));
        assert_eq!(parse_pruned(&sh(&prune(&site))), [R3, R4, R1]);
        let listing = parse_list(&sh(&list(&site)), "p");
        assert_eq!(listing.releases, [R2, R5]);
        assert_eq!(listing.previous.as_deref(), Some(R2));
        // Choosing a failed release again (rollback --to) clears its mark.
        stage(R3);
        std::fs::write(dir.path().join("releases").join(R3).join(FAILED_MARK), "").unwrap();
        sh(&activate(&site, R3));
        assert!(parse_list(&sh(&list(&site)), "p").failed.is_empty());
        // A hostile id is never marked or pasted: only release ids are.
        let out = sh(&undo(&site, R5, "$(touch pwned)"));
        assert_eq!(parse_previous(&out).as_deref(), Some(R3));
        assert!(!dir.path().join("pwned").exists());
    }
}
