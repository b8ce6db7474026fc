//! A directory placed on a host (`copy`/`template` of a directory): the probe's listing of
//! what is under it, the script that makes its subdirectories, and the one that removes what
//! the source no longer has. Every name is data; nothing is done through a symlink inside the
//! directory (each directory is entered with `cd -P` and must be where it was expected).
//! Files themselves are written by `files::upload`.
//! May import: `remote::{script, frame}`.

use super::script::{Octal, Script};
use crate::sh;

/// What is under a directory on the host, relative to it: directories, and every other entry
/// (files, symlinks, …). Names that are not UTF-8 are left out (never removed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub dirs: Vec<String>,
    pub others: Vec<String>,
}

/// Prints every entry under `root` (not following symlinks) as `TYPE PATH` followed by a NUL
/// (`find`'s `%y %P`), nothing when `root` is missing. One `find`.
pub fn listing(root: &str) -> Script {
    sh!(
        "(cd -P -- {} 2>/dev/null && exec find . -mindepth 1 -printf '%y %P\\0' 2>/dev/null); :",
        root
    )
}

/// Parses what `listing` printed.
pub fn parse_listing(data: &[u8]) -> Listing {
    let mut listing = Listing::default();
    for record in data.split(|b| *b == 0) {
        let Ok(record) = std::str::from_utf8(record) else {
            continue;
        };
        match record.split_once(' ') {
            Some(("d", path)) if !path.is_empty() => listing.dirs.push(path.to_string()),
            Some((_, path)) if !path.is_empty() => listing.others.push(path.to_string()),
            _ => {}
        }
    }
    listing
}

/// How the directories a tree step creates are made: their mode, and `chown`'s `OWNER:GROUP`
/// spec when the step gives one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSpec {
    pub mode: u32,
    pub chown: Option<String>,
}

/// Makes `root` (when missing) and each of `dirs` (relative to it, parents first) that is
/// missing, with `spec`'s mode and owner. A symlink where a directory must be fails the step:
/// nothing is written through it. Runs in a subshell (a driver segment must not `cd`).
pub fn make_dirs(root: &str, dirs: &[String], spec: &DirSpec) -> Script {
    let chown = |target: Script| match &spec.chown {
        Some(owner) => sh!(" && chown -h -- {} {}", owner, target),
        None => Script::default(),
    };
    let mut body = Script::default();
    for dir in dirs {
        body.push(&sh!(
            "if [ -L {} ]; then printf 'dropship: %s/%s is a symlink: not written through\\n' {} {} >&2; exit 1; fi; \
             [ -d {} ] || {{ mkdir -m {} -- {}{}; }} || exit 1\n",
            dir,
            root,
            dir,
            dir,
            Octal(spec.mode),
            dir,
            chown(sh!("{}", dir))
        ));
    }
    sh!(
        "([ -d {} ] || {{ mkdir -p -- \"$(dirname -- {})\" && mkdir -m {} -- {}{}; }} || [ -d {} ] || exit 1\ncd -P -- {} || exit 1\n{}:)",
        root,
        root,
        Octal(spec.mode),
        root,
        chown(sh!("{}", root)),
        root,
        root,
        body
    )
}

/// Removes `others` (files, symlinks: never followed) and then, deepest first, those of `dirs`
/// that are empty by then, all relative to `root`. Each directory is entered with `cd -P` from
/// `root`'s physical path and must be that path plus its name: a directory swapped for a
/// symlink since the probe fails the step, nothing removed outside `root`. An entry already
/// gone is fine. Runs in a subshell.
pub fn remove(root: &str, others: &[String], dirs: &[String]) -> Script {
    // Entries grouped by their directory: one `cd` and one `rm` per directory.
    let mut by_dir: Vec<(&str, Vec<&str>)> = Vec::new();
    for path in others {
        let (dir, name) = split(path);
        match by_dir.iter_mut().find(|(d, _)| *d == dir) {
            Some((_, names)) => names.push(name),
            None => by_dir.push((dir, vec![name])),
        }
    }
    let mut body = Script::default();
    for (dir, names) in &by_dir {
        let mut words = Script::default();
        for name in names {
            words.push(&sh!(" {}", *name));
        }
        body.push(&sh!(
            "if {}; then {} || exit 1; rm -f --{} || exit 1; fi\n",
            enter(dir),
            same_place(root, dir),
            words
        ));
    }
    let mut deepest_first: Vec<&String> = dirs.iter().collect();
    deepest_first.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
    for path in deepest_first {
        let (dir, name) = split(path);
        body.push(&sh!(
            "if {}; then {} || exit 1; rmdir -- {} 2>/dev/null; fi\n",
            enter(dir),
            same_place(root, dir),
            name
        ));
    }
    sh!("(cd -P -- {} || exit 1; dsp=$PWD\n{}:)", root, body)
}

/// `cd` into `dir` (relative to the root's physical path `$dsp`; empty: the root itself).
fn enter(dir: &str) -> Script {
    if dir.is_empty() {
        sh!("cd -P -- \"$dsp\"")
    } else {
        sh!("cd -P -- \"$dsp\"/{} 2>/dev/null", dir)
    }
}

/// Fails unless the current directory is `dir` under the root's physical path.
fn same_place(root: &str, dir: &str) -> Script {
    let expected = if dir.is_empty() {
        sh!("\"$dsp\"")
    } else {
        sh!("\"$dsp\"/{}", dir)
    };
    sh!(
        "{{ [ \"$PWD\" = {} ] || {{ printf 'dropship: %s/%s is not a directory inside %s (a symlink?): nothing removed there\\n' {} {} {} >&2; false; }}; }}",
        expected,
        root,
        dir,
        root
    )
}

/// `a/b/c` → (`a/b`, `c`); `c` → (``, `c`).
fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn run(script: &Script) -> crate::transport::ExecOutput {
        crate::remote::run_in_sh(script.as_str(), b"")
    }

    fn mode_of(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn listing_names_every_entry_without_following_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        std::fs::create_dir_all(root.join("a/-b c")).unwrap();
        std::fs::write(root.join("a/-b c/x\ny"), "").unwrap();
        std::fs::write(root.join(".hidden"), "").unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
        let out = run(&listing(root.to_str().unwrap()));
        let mut got = parse_listing(&out.stdout);
        got.dirs.sort();
        got.others.sort();
        assert_eq!(got.dirs, ["a", "a/-b c"]);
        assert_eq!(got.others, [".hidden", "a/-b c/x\ny", "link"]);
        let missing = run(&listing(dir.path().join("nope").to_str().unwrap()));
        assert_eq!(missing.status, Some(0));
        assert_eq!(parse_listing(&missing.stdout), Listing::default());
    }

    #[test]
    fn make_dirs_creates_what_is_missing_with_its_mode_and_refuses_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("new/root $(x)");
        let spec = DirSpec {
            mode: 0o750,
            chown: None,
        };
        let dirs = ["a".to_string(), "a/-b".to_string(), "c\nd".to_string()];
        let out = run(&make_dirs(root.to_str().unwrap(), &dirs, &spec));
        assert_eq!(
            out.status,
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for d in ["", "a", "a/-b", "c\nd"] {
            assert_eq!(mode_of(&root.join(d)), 0o750, "{d:?}");
        }
        // Again: nothing to do, existing modes left alone.
        std::fs::set_permissions(root.join("a"), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(
            run(&make_dirs(root.to_str().unwrap(), &dirs, &spec)).status,
            Some(0)
        );
        assert_eq!(mode_of(&root.join("a")), 0o700);
        // A symlink where a directory must be: refused, nothing made through it.
        let outside = tempfile::tempdir().unwrap();
        std::fs::remove_dir(root.join("a/-b")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("a/-b")).unwrap();
        let dirs = ["a".to_string(), "a/-b".to_string(), "a/-b/x".to_string()];
        let out = run(&make_dirs(root.to_str().unwrap(), &dirs, &spec));
        assert_eq!(out.status, Some(1));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("a/-b is a symlink: not written through"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn remove_takes_only_what_it_names_and_nothing_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        std::fs::create_dir_all(root.join("gone/deeper")).unwrap();
        std::fs::create_dir_all(root.join("kept")).unwrap();
        for f in ["old", "-rf", "gone/deeper/x", "kept/y", "kept/z"] {
            std::fs::write(root.join(f), "").unwrap();
        }
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("victim"), "").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
        let others: Vec<String> = ["old", "-rf", "gone/deeper/x", "kept/y", "link", "vanished"]
            .map(String::from)
            .into();
        let dirs: Vec<String> = ["gone", "gone/deeper"].map(String::from).into();
        let out = run(&remove(root.to_str().unwrap(), &others, &dirs));
        assert_eq!(
            out.status,
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut left: Vec<String> = walk(&root);
        left.sort();
        assert_eq!(left, ["kept", "kept/z"]);
        assert!(outside.path().join("victim").exists());

        // A directory swapped for a symlink (to somewhere holding the same name): refused.
        std::fs::remove_dir_all(root.join("kept")).unwrap();
        std::fs::write(outside.path().join("z"), "").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("kept")).unwrap();
        let out = run(&remove(
            root.to_str().unwrap(),
            &["kept/z".to_string()],
            &[],
        ));
        assert_eq!(out.status, Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("(a symlink?)"));
        assert!(outside.path().join("z").exists());
    }

    fn walk(root: &std::path::Path) -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(root).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            found.push(name.clone());
            if entry.file_type().unwrap().is_dir() {
                found.extend(
                    walk(&entry.path())
                        .into_iter()
                        .map(|n| format!("{name}/{n}")),
                );
            }
        }
        found
    }
}
