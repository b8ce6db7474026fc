//! Writing files on a host: the upload script that writes one file atomically from the shared
//! stdin, verified by its sha256 (what is there already is `probe`'s).
//! May import: `remote::{script, vars}`, `plan::Upload`.

use super::script::{Octal, Script, Umask, Var};
use super::vars;
use crate::plan::Upload;
use crate::sh;

/// How old a leftover temporary directory of ours must be before an upload into the same
/// directory removes it (one a killed shell could not clean up).
pub const STALE_TEMP_MINUTES: u32 = 60;

/// Writes the next `content.len()` bytes of stdin to `dest` atomically, leaving the rest of
/// stdin to whatever follows in the same script. The file is never written through a path
/// another user could swap, and never replaces `dest` unless it is complete:
///
/// - `cd -P` into the destination directory: every later name is relative to that directory
///   itself, whatever happens to the path.
/// - A private (0700, ours, unpredictable name) `mktemp -d` directory there, made by the first
///   upload into that directory in a driver and shared by every later one: the driver's shell
///   keeps its physical path in a variable named after the directory (`session_dir_var`), and
///   `upload_cleanup`, run once at the driver's end, removes it. Each upload enters it by its
///   relative name from the destination directory and checks `[ -O . ]` (ours) and that `$PWD`
///   is still the path it was made at (not a symlink or a directory moved in since). Nobody
///   else can plant or swap anything inside it, so `head -c N` (GNU head never reads past N
///   bytes), `chown -h` and `chmod` act on our file.
/// - `sha256sum` of the written file must equal the planned one (which also proves its size:
///   a transfer cut short, a full disk or a dropped connection fail here) before
///   `mv -T ../NAME` renames it over `dest` (`-T`: a directory or a symlink planted at `dest`
///   is replaced, never followed). On any failure the temporary file and the private directory
///   are removed (the driver stops there) and `dest` is left as it was.
/// - Leftovers of ours older than `STALE_TEMP_MINUTES` (a shell killed mid-upload) are removed
///   when a driver makes its private directory; `find` only runs when a `.dropship.*` name
///   exists.
///
/// Processes per changed file: a subshell, `head`, `sha256sum`, `mv` (plus `chown`/`chmod` when
/// the mode or owner need them); per directory and driver: `mktemp` (and `mkdir` when the
/// directory is missing) in a command substitution, and the cleanup's `rmdir`.
pub fn upload(upload: &Upload, _tag: usize) -> String {
    let (dir, name) = dir_and_name(&upload.dest);
    let var = session_dir_var(dir);
    let chown = match chown_spec(upload.owner.as_deref(), upload.group.as_deref()) {
        None => Script::default(),
        Some(spec) => sh!(" && chown -h -- {} f", spec),
    };
    // A umask can only produce modes without execute or special bits: others need chmod.
    let umask_gives_mode = upload.mode & !0o666 == 0;
    let (umask, chmod) = if umask_gives_mode && chown.is_empty() {
        (0o777 & !upload.mode, Script::default())
    } else {
        (0o077, sh!(" && chmod {} f", Octal(upload.mode)))
    };
    // `${PWD%/}`: in `/`, the path is `/.dropship.X`, as `cd -P` will report it.
    sh!(
        "[ -n \"${{{}:-}}\" ] || {}=$({{ [ -d {} ] || mkdir -p -- {}; }} && cd -P -- {} && {{ set -- .dropship.*; [ ! -e \"$1\" ] || find . -maxdepth 1 -name '.dropship.*' -user \"$(id -u)\" -mmin +{} -exec rm -rf -- {{}} + 2>/dev/null; }} && exec mktemp -d \"${{PWD%/}}/.dropship.XXXXXXXXXX\") || {}=
(dst={}; cd -P -- {} && [ -n \"$dst\" ] && [ \"${{PWD%/}}/${{dst##*/}}\" = \"$dst\" ] && cd -P -- \"${{dst##*/}}\" && [ -O . ] && [ \"$PWD\" = \"$dst\" ] || {{ echo 'dropship: cannot make a private temporary directory in '{} >&2; exit 1; }}
if (umask {} && set -C && exec head -c {} >f) && [ \"$(exec sha256sum <f)\" = {} ]{}{} && mv -Tf -- f ../{}; then :
else got=$(wc -c <f 2>/dev/null); rm -f -- f; cd .. && rmdir -- \"${{dst##*/}}\"; printf 'dropship: %s was not replaced (%s of %s bytes arrived intact); the previous file is untouched\\n' {} \"${{got:-0}}\" {} >&2; exit 1; fi)",
        var,
        var,
        dir,
        dir,
        dir,
        STALE_TEMP_MINUTES,
        var,
        var.bare(),
        dir,
        dir,
        Umask(umask),
        upload.content.len(),
        format!("{}  -", upload.sha256),
        chown,
        chmod,
        name,
        upload.dest,
        upload.content.len()
    )
    .into_string()
}

/// `chown`'s `OWNER[:GROUP]` (or `:GROUP`) for what a step asks, `None` when it asks neither.
pub fn chown_spec(owner: Option<&str>, group: Option<&str>) -> Option<String> {
    if owner.is_none() && group.is_none() {
        return None;
    }
    Some(format!(
        "{}{}",
        owner.unwrap_or(""),
        group.map(|g| format!(":{g}")).unwrap_or_default()
    ))
}

/// Removes the private directory `upload` shares with the other uploads into its directory:
/// once per driver, at its end (see `Segment::cleanup`), whatever happened before.
pub fn upload_cleanup(upload: &Upload) -> String {
    let var = session_dir_var(dir_and_name(&upload.dest).0);
    sh!(
        "[ -z \"${{{}:-}}\" ] || rmdir -- {} 2>/dev/null || :",
        var,
        var.get()
    )
    .into_string()
}

fn dir_and_name(dest: &str) -> (&str, &str) {
    match dest.rsplit_once('/') {
        Some(("", name)) => ("/", name),
        Some((dir, name)) => (dir, name),
        None => (".", dest),
    }
}

/// The driver's shell variable holding the private directory made in `dir`: one per
/// directory as written in the plan (two spellings of one directory just get one each).
fn session_dir_var(dir: &str) -> Var {
    use sha2::{Digest, Sha256};
    let hash = hex::encode(Sha256::digest(dir.as_bytes()));
    Var::tagged(vars::UPLOAD_DIR_PREFIX, &hash[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::probe::RemoteFile;

    /// Runs `script` under sh with `stdin`; returns (status, stdout).
    fn sh(script: &str, stdin: &[u8]) -> (Option<u32>, String) {
        let out = crate::remote::run_in_sh(script, stdin);
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    fn mode_of(path: &std::path::Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn uploads_take_exactly_their_bytes_and_leave_the_rest_of_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let a = crate::plan::upload(
            format!("{root}/new dir/a"),
            0o600,
            b"first"[..].into(),
            true,
        );
        let b = crate::plan::upload(format!("{root}/b"), 0o755, b"#!/bin/sh\n"[..].into(), false);
        let empty = crate::plan::upload(format!("{root}/e"), 0o644, b""[..].into(), false);
        std::fs::write(format!("{root}/b"), "old").unwrap();
        let script = format!(
            "{} && {} && {} && cat; s=$?; {}; {}; exit $s",
            upload(&a, 0),
            upload(&b, 1),
            upload(&empty, 2),
            upload_cleanup(&a),
            upload_cleanup(&b)
        );
        let (status, rest) = sh(&script, b"first#!/bin/sh\nthe rest\n");
        assert_eq!(status, Some(0));
        assert_eq!(rest, "the rest\n", "what follows the files is left alone");
        assert_eq!(
            std::fs::read(format!("{root}/new dir/a")).unwrap(),
            b"first"
        );
        assert_eq!(mode_of(&dir.path().join("new dir/a")), 0o600);
        assert_eq!(std::fs::read(format!("{root}/b")).unwrap(), b"#!/bin/sh\n");
        assert_eq!(mode_of(&dir.path().join("b")), 0o755);
        assert_eq!(std::fs::read(format!("{root}/e")).unwrap(), b"");
        assert_eq!(mode_of(&dir.path().join("e")), 0o644);
        for d in [dir.path().to_path_buf(), dir.path().join("new dir")] {
            assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
        }
        // A destination that cannot be written fails, and leaves no temporary file behind.
        let blocked = crate::plan::upload(format!("{root}/b/x"), 0o644, b"x"[..].into(), false);
        assert_ne!(sh(&alone(&blocked), b"x").0, Some(0));
        assert!(
            leftovers(dir.path()).is_empty(),
            "{:?}",
            leftovers(dir.path())
        );
    }

    #[test]
    fn uploads_chown_before_chmod_and_rename() {
        let mut u = crate::plan::upload("/etc/app/x y".into(), 0o600, b"hi"[..].into(), false);
        assert!(!upload(&u, 0).contains("chown"));
        assert!(upload(&u, 0).contains("(umask 177 "), "{}", upload(&u, 0));
        u.owner = Some("root".into());
        u.group = Some("adm".into());
        let script = upload(&u, 4);
        assert!(
            script.contains(&format!(
                "(umask 077 && set -C && exec head -c 2 >f) && [ \"$(exec sha256sum <f)\" = '{}  -' ] && chown -h -- 'root:adm' f && chmod 0600 f && mv -Tf -- f ../'x y'; then",
                u.sha256
            )),
            "{script}"
        );
        u.owner = None;
        assert!(upload(&u, 0).contains(" && chown -h -- ':adm' f && chmod 0600 f"));
        let remote = RemoteFile {
            sha256: u.sha256.clone(),
            mode: 0o600,
            owner: "deploy".into(),
            group: "adm".into(),
        };
        assert!(remote.matches(&u));
        u.owner = Some("root".into());
        assert!(!remote.matches(&u));
    }

    /// `upload` followed by its cleanup, as a driver with it alone would run it.
    fn alone(u: &Upload) -> String {
        format!("{}\ns=$?; {}\nexit $s", upload(u, 0), upload_cleanup(u))
    }

    fn upload_segment(u: &Upload) -> crate::remote::driver::Segment {
        crate::remote::driver::Segment {
            script: upload(u, 0),
            stdin: vec![u.content.clone()],
            label: "up".into(),
            cleanup: Some(upload_cleanup(u)),
        }
    }

    fn leftovers(dir: &std::path::Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(".dropship"))
            .collect()
    }

    #[test]
    fn a_transfer_cut_short_never_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("app.conf");
        std::fs::write(&dest, "good\n").unwrap();
        let u = crate::plan::upload(
            dest.to_str().unwrap().into(),
            0o644,
            b"the new version"[..].into(),
            false,
        );
        // stdin ends early, as when dropship dies or the connection drops mid-transfer.
        let out = crate::remote::run_in_sh(&alone(&u), b"the new");
        assert_ne!(out.status, Some(0));
        assert_eq!(std::fs::read(&dest).unwrap(), b"good\n");
        assert!(
            leftovers(dir.path()).is_empty(),
            "{:?}",
            leftovers(dir.path())
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("was not replaced (7 of 15 bytes arrived intact)"),
            "{stderr}"
        );
        // The same length but other bytes: the checksum catches it.
        let out = crate::remote::run_in_sh(&alone(&u), b"the NEW version");
        assert_ne!(out.status, Some(0));
        assert_eq!(std::fs::read(&dest).unwrap(), b"good\n");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_symlink_planted_at_the_destination_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let victim = elsewhere.path().join("victim");
        std::fs::write(&victim, "root only\n").unwrap();
        let dest = dir.path().join("f");
        std::os::unix::fs::symlink(&victim, &dest).unwrap();
        let into_dir = dir.path().join("d");
        std::os::unix::fs::symlink(elsewhere.path(), &into_dir).unwrap();
        for (path, content) in [(&dest, &b"one"[..]), (&into_dir, &b"two"[..])] {
            let u =
                crate::plan::upload(path.to_str().unwrap().into(), 0o755, content.into(), false);
            let out = crate::remote::run_in_sh(&alone(&u), content);
            assert_eq!(
                out.status,
                Some(0),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(std::fs::symlink_metadata(path).unwrap().is_file());
            assert_eq!(std::fs::read(path).unwrap(), content);
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"root only\n");
        assert_eq!(mode_of(&victim), 0o644 & mode_of(&victim));
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_leftovers_of_a_killed_upload_are_swept_fresh_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(".dropship.oldoldoldo");
        let fresh = dir.path().join(".dropship.newnewnewn");
        for d in [&stale, &fresh] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("f"), "partial").unwrap();
        }
        let old = std::time::SystemTime::now()
            - std::time::Duration::from_secs(u64::from(STALE_TEMP_MINUTES) * 60 + 120);
        let times = std::fs::FileTimes::new().set_modified(old);
        std::fs::File::open(&stale)
            .unwrap()
            .set_times(times)
            .unwrap();
        let u = crate::plan::upload(
            dir.path().join("x").to_str().unwrap().into(),
            0o644,
            b"x"[..].into(),
            false,
        );
        assert_eq!(crate::remote::run_in_sh(&alone(&u), b"x").status, Some(0));
        assert_eq!(leftovers(dir.path()), [".dropship.newnewnewn"]);
    }

    #[test]
    fn hostile_destination_names_are_data() {
        let dir = tempfile::tempdir().unwrap();
        for (i, name) in crate::remote::script::tests::HOSTILE.iter().enumerate() {
            if name.is_empty() {
                continue;
            }
            let sub = dir.path().join(format!("{i}"));
            let dest = format!("{}/{name}/{name}", sub.display());
            let u = crate::plan::upload(dest.clone(), 0o640, b"data"[..].into(), false);
            let out = crate::remote::run_in_sh(
                &format!("cd {} && {}", dir.path().display(), alone(&u)),
                b"data",
            );
            assert_eq!(
                out.status,
                Some(0),
                "{name:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(std::fs::read(&dest).unwrap(), b"data", "{name:?}");
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names.len(),
            crate::remote::script::tests::HOSTILE.len() - 1,
            "{names:?}"
        );
    }

    /// The `.dropship.*` entries of `dir` each segment sees, printed by a listing segment.
    fn listing(dir: &std::path::Path) -> crate::remote::driver::Segment {
        crate::remote::driver::Segment::isolated(
            sh!(
                "cd {} && ls -d .dropship.* 2>/dev/null; :",
                dir.to_str().unwrap()
            )
            .as_str(),
            "ls",
        )
    }

    #[test]
    fn uploads_into_one_directory_share_one_private_directory_per_driver() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str, content: &[u8]| {
            crate::plan::upload(
                dir.path().join(name).to_str().unwrap().into(),
                0o644,
                content.into(),
                false,
            )
        };
        let (a, b, c) = (at("a", b"one"), at("b", b"two"), at("c", b"three"));
        let segments = [
            upload_segment(&a),
            listing(dir.path()),
            upload_segment(&b),
            listing(dir.path()),
        ];
        let d = crate::remote::driver::Driver::new("u1", "", &segments, None);
        let out = crate::remote::run_in_sh(&d.script, &d.stdin.concat());
        assert_eq!(
            out.status,
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let split =
            crate::remote::split::split_all(&crate::output::Redactor::default(), &out, "u1", 4);
        let seen: Vec<String> = [1, 3]
            .iter()
            .map(|&i| String::from_utf8_lossy(&split.outputs[i].stdout).into_owned())
            .collect();
        assert!(
            seen[0].starts_with(".dropship.") && seen[0].lines().count() == 1,
            "{seen:?}"
        );
        assert_eq!(
            seen[0], seen[1],
            "the second upload used the first one's directory"
        );
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"one");
        assert_eq!(std::fs::read(dir.path().join("b")).unwrap(), b"two");
        assert!(
            leftovers(dir.path()).is_empty(),
            "{:?}",
            leftovers(dir.path())
        );
        // A second upload that fails (its bytes arrive short): the first file stays, and no
        // temporary file or directory is left.
        let segments = [upload_segment(&c), upload_segment(&at("d", b"four"))];
        let d = crate::remote::driver::Driver::new("u2", "", &segments, None);
        let out = crate::remote::run_in_sh(&d.script, b"threefo");
        assert_ne!(out.status, Some(0));
        assert_eq!(std::fs::read(dir.path().join("c")).unwrap(), b"three");
        assert!(!dir.path().join("d").exists());
        assert!(
            leftovers(dir.path()).is_empty(),
            "{:?}",
            leftovers(dir.path())
        );
    }
}
