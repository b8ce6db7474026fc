//! The `ensure` step's scripts (a docker network, or a file or directory with its mode and
//! owner, made only when missing) and what they report.
//! May import: `remote::{script, frame}`, `transport::ExecOutput`.

use super::frame::{self, Kind};
use super::script::Script;
use crate::sh;
use crate::transport::ExecOutput;

/// What a path must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathState {
    Directory,
    File,
}

impl PathState {
    pub fn as_str(self) -> &'static str {
        match self {
            PathState::Directory => "directory",
            PathState::File => "file",
        }
    }
}

/// Options of `docker network create`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkOptions {
    pub driver: Option<String>,
    pub internal: bool,
    pub attachable: bool,
}

/// Creates the docker network `name` only when `docker network inspect` does not find it
/// (the options of an existing network are not compared: docker cannot change them in place).
/// Reports `ensure:ok` or `ensure:changed created`; a segment of a driver (it needs `$dsn`).
pub fn network(name: &str, options: &NetworkOptions) -> String {
    let mut create = sh!("docker network create");
    if let Some(driver) = &options.driver {
        create.push(&sh!(" --driver={}", driver));
    }
    if options.internal {
        create.push(&sh!(" --internal"));
    }
    if options.attachable {
        create.push(&sh!(" --attachable"));
    }
    // The name is validated (it cannot start with `-`), and quoted all the same.
    sh!(
        "set -e\nif docker network inspect {} >/dev/null 2>&1; then {}; exit 0; fi\n{} {} >/dev/null\n{}\n",
        name,
        frame::report(Kind::Ensure, &OK),
        create,
        name,
        frame::report(Kind::Ensure, &CHANGED_CREATED)
    )
    .into_string()
}

/// What a path must have besides existing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    pub mode: Option<u32>,
    pub owner: Option<String>,
    pub group: Option<String>,
}

/// Makes `path` a directory (`mkdir -p`) or an empty file when it is missing, never touching
/// an existing file's content, then sets mode, owner and group where they differ. A symbolic
/// link at `path`, or a path of the other type, is a failure: nothing is written through it.
/// The empty file is made with `set -C` (O_EXCL): a file or link that appears meanwhile is not
/// clobbered or followed. Reports `ensure:ok`, or `ensure:changed` and what changed (`created`,
/// `mode`, `owner`, `group`); a segment of a driver (it needs `$dsn`).
pub fn path(path: &str, state: PathState, attrs: &Attributes) -> String {
    let (test, what, create) = match state {
        PathState::Directory => ("-d", "directory", sh!("mkdir -p -- \"$p\"")),
        PathState::File => (
            "-f",
            "regular file",
            sh!(
                "d=$(dirname -- \"$p\")\n  if [ ! -d \"$d\" ]; then echo \"dropship: cannot create $p: its directory $d does not exist (ensure it first)\" >&2; exit 1; fi\n  (set -C; : >\"$p\")"
            ),
        ),
    };
    let mut script = sh!(
        "set -e\np={}\nchanged=\nif [ -L \"$p\" ]; then echo \"dropship: $p is a symbolic link; ensure does not follow it\" >&2; exit 1; fi\nif [ -e \"$p\" ]; then\n  if [ ! {} \"$p\" ]; then echo \"dropship: $p exists and is not a {}\" >&2; exit 1; fi\nelse\n  {}\n  changed=\"$changed created\"\nfi\n",
        path,
        Script::raw_trusted(test),
        Script::raw_trusted(what),
        create
    );
    if let Some(mode) = attrs.mode {
        // `stat -c %a` prints the mode in octal without leading zeros, as `{:o}` does.
        script.push(&sh!(
            "if [ \"$(stat -c %a -- \"$p\")\" != {} ]; then chmod {} -- \"$p\"; changed=\"$changed mode\"; fi\n",
            format!("{mode:o}"),
            format!("{mode:04o}")
        ));
    }
    for (value, numeric, by_name, command, word) in [
        (&attrs.owner, "%u", "%U", "chown", "owner"),
        (&attrs.group, "%g", "%G", "chgrp", "group"),
    ] {
        let Some(value) = value else { continue };
        // A number is compared with the numeric id, a name with the name.
        let format = if value.chars().all(|c| c.is_ascii_digit()) {
            numeric
        } else {
            by_name
        };
        // `-h`: a link that replaced the path meanwhile is changed itself, never its target.
        script.push(&sh!(
            "if [ \"$(stat -c {} -- \"$p\")\" != {} ]; then {} -h -- {} \"$p\"; changed=\"$changed {}\"; fi\n",
            Script::raw_trusted(format),
            value,
            Script::raw_trusted(command),
            value,
            Script::raw_trusted(word)
        ));
    }
    script.push(&sh!(
        "if [ -z \"$changed\" ]; then {}; else {}; fi\n",
        frame::report(Kind::Ensure, &OK),
        frame::report(Kind::Ensure, &sh!("{}\"$changed\"", CHANGED))
    ));
    script.into_string()
}

const OK: &str = "ok";
const CHANGED: &str = "changed";
const CHANGED_CREATED: &str = "changed created";

/// What an `ensure` script reported last: `None` when nothing changed (or nothing was
/// reported), else what changed (`created`, `mode`, `owner`, `group`).
pub fn parse(out: &ExecOutput) -> Option<Vec<String>> {
    let fields = frame::results(out)
        .filter_map(|f| f.of(Kind::Ensure).map(str::to_string))
        .last()?;
    let rest = fields.trim().strip_prefix(CHANGED)?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::driver::run_one;

    fn attrs(mode: Option<u32>) -> Attributes {
        Attributes {
            mode,
            ..Default::default()
        }
    }

    #[test]
    fn a_missing_directory_is_made_with_its_mode_then_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a b/data").display().to_string();
        let script = path(&dir, PathState::Directory, &attrs(Some(0o750)));
        let out = run_one(&script);
        assert_eq!(
            out.status,
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(parse(&out), Some(vec!["created".into(), "mode".into()]));
        let meta = std::fs::metadata(&dir).unwrap();
        assert!(meta.is_dir());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o7777, 0o750);
        assert_eq!(
            parse(&run_one(&script)),
            None,
            "a second run changes nothing"
        );
        let other = path(&dir, PathState::Directory, &attrs(Some(0o700)));
        assert_eq!(parse(&run_one(&other)), Some(vec!["mode".into()]));
    }

    #[test]
    fn a_file_is_made_empty_and_an_existing_one_keeps_its_content() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("app.log");
        let script = path(&file.display().to_string(), PathState::File, &attrs(None));
        assert_eq!(parse(&run_one(&script)), Some(vec!["created".into()]));
        assert_eq!(std::fs::read(&file).unwrap(), b"");
        std::fs::write(&file, "kept").unwrap();
        let out = run_one(&script);
        assert_eq!(out.status, Some(0));
        assert_eq!(parse(&out), None);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "kept");
        let missing_dir = tmp.path().join("nope/x").display().to_string();
        let out = run_one(&path(&missing_dir, PathState::File, &attrs(None)));
        assert_eq!(out.status, Some(1));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("does not exist (ensure it first)"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn a_symlink_or_the_other_type_in_the_way_fails_and_nothing_is_written_through_it() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        std::fs::write(&target, "x").unwrap();
        std::os::unix::fs::symlink(&target, tmp.path().join("link")).unwrap();
        let link = tmp.path().join("link").display().to_string();
        for state in [PathState::File, PathState::Directory] {
            let out = run_one(&path(&link, state, &attrs(Some(0o600))));
            assert_eq!(out.status, Some(1));
            assert!(String::from_utf8_lossy(&out.stderr).contains("is a symbolic link"));
        }
        use std::os::unix::fs::PermissionsExt;
        assert_ne!(
            std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o600,
            "the link's target is untouched"
        );
        let out = run_one(&path(
            &target.display().to_string(),
            PathState::Directory,
            &attrs(None),
        ));
        assert_eq!(out.status, Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("exists and is not a directory"));
    }

    #[test]
    fn owner_and_group_are_compared_by_name_or_number() {
        let s = path(
            "/srv/x",
            PathState::Directory,
            &Attributes {
                mode: None,
                owner: Some("deploy".into()),
                group: Some("1000".into()),
            },
        );
        assert!(s.contains("if [ \"$(stat -c %U -- \"$p\")\" != deploy ]; then chown -h -- deploy \"$p\"; changed=\"$changed owner\"; fi"), "{s}");
        assert!(
            s.contains("if [ \"$(stat -c %g -- \"$p\")\" != 1000 ]; then chgrp -h -- 1000 \"$p\""),
            "{s}"
        );
        // The current user owns what it makes: asking for it is `ok`.
        let tmp = tempfile::tempdir().unwrap();
        let me = unsafe { libc::getuid() }.to_string();
        let dir = tmp.path().join("d").display().to_string();
        let mine = Attributes {
            owner: Some(me),
            ..Default::default()
        };
        assert_eq!(
            parse(&run_one(&path(&dir, PathState::Directory, &mine))),
            Some(vec!["created".into()])
        );
    }

    #[test]
    fn a_network_is_created_only_when_inspect_fails() {
        let s = network(
            "app_net",
            &NetworkOptions {
                driver: Some("bridge".into()),
                internal: true,
                attachable: true,
            },
        );
        assert!(
            s.contains("if docker network inspect app_net >/dev/null 2>&1; then printf"),
            "{s}"
        );
        assert!(
            s.contains(
                "docker network create --driver=bridge --internal --attachable app_net >/dev/null\n"
            ),
            "{s}"
        );
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().display().to_string();
        // A stand-in `docker` whose `inspect` fails until `create` ran.
        std::fs::write(
            tmp.path().join("docker"),
            format!(
                "#!/bin/sh\ncase \"$2\" in inspect) [ -e {bin}/made ] ;; create) touch {bin}/made ;; esac\n"
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            tmp.path().join("docker"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let script = format!(
            "PATH={bin}:$PATH\n{}",
            network("n1", &NetworkOptions::default())
        );
        assert_eq!(parse(&run_one(&script)), Some(vec!["created".into()]));
        assert_eq!(parse(&run_one(&script)), None);
    }
}
