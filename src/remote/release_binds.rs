//! `compose up` in a release's `current`, and the containers it leaves on an older release's
//! files: a bind mount through `current` (`./nginx.conf`) is resolved when its container
//! starts, so after a switch a container `up` did not recreate still sees the files of the
//! release it started on. Those whose mounted files differ between that release (recorded at
//! each `up`, `.dropship-up.PROJECT` in the release root) and the current one are restarted,
//! in the same segment as the `up`.
//! May import: `remote::{script, frame, compose, compose_command, release}`, `transport::ExecOutput`.

use super::compose::{ComposeFlavor, ProjectPaths, Request};
use super::compose_command;
use super::frame::{self, Kind};
use super::release::id_glob;
use crate::sh;
use crate::transport::ExecOutput;

/// The file, in the release root, holding the id of the release `current` pointed at when
/// `up` last brought up every service of a project: what its running containers mount.
pub const RECORD_PREFIX: &str = ".dropship-up.";

/// One line per bind mount of the inspected containers: `ID SERVICE SOURCE` (`-` for a
/// container without a service label). SOURCE is last: it may hold spaces.
const MOUNTS_FORMAT: &str = "{{range .Mounts}}{{if eq .Type \"bind\"}}{{$.Id}} {{with index $.Config.Labels \"com.docker.compose.service\"}}{{.}}{{else}}-{{end}} {{.Source}}{{println}}{{end}}{{end}}";

/// `compose up -d --remove-orphans [SERVICES]` in `dir` (which is `current` of the release
/// root `root`, or below it, `root` as `ReleaseSite::clean_root` gives it), relative paths
/// resolved through `current` on both flavours; then the containers that were running before
/// and that `up` left alone (same id) whose bind mounts below `root/current` differ (`diff
/// -r`) between the recorded release and the current one are restarted, reported as
/// `binds:restarted SERVICE…`. Without a record (first run, pruned release, an `up` that
/// failed half-way) every such container counts as changed. With `services`, only theirs are
/// looked at and the record is left as it is (the others were not brought up).
pub fn up(
    flavor: ComposeFlavor,
    dir: &str,
    project: &str,
    services: &[String],
    root: &str,
) -> String {
    let base = root.trim_end_matches('/');
    let up = compose_command::script(
        flavor,
        dir,
        project,
        &Request::Up(services.to_vec()),
        ProjectPaths::AsWritten,
    );
    let only_named = if services.is_empty() {
        sh!("")
    } else {
        sh!(
            "case {} in *\" $dspv \"*) ;; *) continue ;; esac\n",
            format!(" {} ", services.join(" "))
        )
    };
    let record = if services.is_empty() {
        sh!(
            "if [ -n \"$dspc\" ]; then {{ printf '%s\\n' \"$dspc\" > \"$dspk.new\" && mv -f -- \"$dspk.new\" \"$dspk\"; }} 2>/dev/null || rm -f -- \"$dspk.new\"; fi\n"
        )
    } else {
        sh!("")
    };
    sh!(
        "(set -f
dspr={}; dspk={}
dspc=$(readlink -- \"$dspr/current\" 2>/dev/null) || dspc=
dspc=${{dspc#releases/}}; case $dspc in {}) ;; *) dspc= ;; esac
dspo=$(cat -- \"$dspk\" 2>/dev/null) || dspo=
case $dspo in {}) ;; *) dspo= ;; esac
[ \"$dspo\" = \"$dspc\" ] || rm -f -- \"$dspk\"
dspi=$(docker ps -q --no-trunc --filter {} 2>/dev/null) || dspi=
{} || exit $?
dsps=
if [ -n \"$dspi\" ] && [ -n \"$dspc\" ]; then
dsps=$(docker inspect --format {} $dspi 2>/dev/null | while read -r dspx dspv dspm; do
case $dspm in \"$dspr/current\") dspl= ;; \"$dspr/current/\"*) dspl=/${{dspm#\"$dspr/current/\"}} ;; *) continue ;; esac
{}if [ -n \"$dspo\" ] && diff -rq -- \"$dspr/releases/$dspo$dspl\" \"$dspr/releases/$dspc$dspl\" >/dev/null 2>&1; then continue; fi
printf '%s %s\\n' \"$dspx\" \"$dspv\"
done | sort -u)
fi
if [ -n \"$dsps\" ]; then
docker restart -- $(printf '%s\\n' \"$dsps\" | cut -d' ' -f1 | sort -u) >/dev/null || exit $?
{}
fi
{}:) </dev/null",
        base,
        format!("{base}/{RECORD_PREFIX}{project}"),
        id_glob(),
        id_glob(),
        format!("label=com.docker.compose.project={project}"),
        up,
        MOUNTS_FORMAT,
        only_named,
        frame::report(
            Kind::Binds,
            &sh!("\"restarted $(printf '%s\\n' \"$dsps\" | cut -d' ' -f2 | sort -u | tr '\\n' ' ')\"")
        ),
        record,
    )
    .into_string()
}

/// The services `up` restarted onto the current release's files (none when it restarted
/// nothing). Only names compose takes count (`-`, a container without one, does not).
pub fn restarted(out: &ExecOutput) -> Vec<String> {
    let Some(fields) = frame::results(out)
        .filter_map(|f| f.of(Kind::Binds).map(str::to_string))
        .last()
    else {
        return Vec::new();
    };
    fields
        .trim()
        .strip_prefix("restarted")
        .unwrap_or("")
        .split_whitespace()
        .filter(|s| {
            !s.starts_with('-')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        })
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::driver::run_one;
    use crate::remote::script::quote;
    use std::fs;
    use std::path::{Path, PathBuf};

    const A: &str = "20261122T175512.042Z-0000000a";
    const B: &str = "20261122T175613.000Z-0000000b";
    const C: &str = "20261123T010203.999Z-0000000c";
    const D: &str = "20261124T000000.000Z-0000000d";

    /// A docker stand-in over `$STATE`: `ps` prints `running`, `compose … up` logs its words
    /// to `up.log` then runs `hook` (which recreates containers: removes their `mounts/ID`),
    /// `inspect` prints each `mounts/ID` (failing, as docker does, for one that is gone),
    /// `restart` logs its ids to `restarted`.
    const DOCKER: &str = r#"#!/bin/sh
case "$1" in
  ps) cat "$STATE/running" 2>/dev/null ;;
  compose) shift; printf '[%s]' "$@" >> "$STATE/up.log"; echo >> "$STATE/up.log"; . "$STATE/hook" ;;
  inspect)
    shift 3; rc=0
    for id in "$@"; do
      if [ -f "$STATE/mounts/$id" ]; then cat "$STATE/mounts/$id"; else echo "Error: No such object: $id" >&2; rc=1; fi
    done
    exit $rc ;;
  restart) shift 2; printf '%s\n' "$@" >> "$STATE/restarted" ;;
esac
"#;

    struct Rig {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        state: PathBuf,
        bin: PathBuf,
    }

    impl Rig {
        fn new() -> Rig {
            let tmp = tempfile::tempdir().unwrap();
            // Spaces and shell syntax in the root are data.
            let root = tmp.path().join("app $(touch pwned) 'x'");
            let (state, bin) = (tmp.path().join("state"), tmp.path().join("bin"));
            for d in [&root.join("releases"), &state.join("mounts"), &bin] {
                fs::create_dir_all(d).unwrap();
            }
            fs::write(bin.join("docker"), DOCKER).unwrap();
            fs::set_permissions(
                bin.join("docker"),
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .unwrap();
            fs::write(state.join("hook"), "true\n").unwrap();
            Rig {
                _tmp: tmp,
                root,
                state,
                bin,
            }
        }

        /// Release `id` with these files (`conf.d/a` makes the directory), made current.
        fn release(&self, id: &str, files: &[(&str, &str)]) {
            let dir = self.root.join("releases").join(id);
            for (name, content) in files {
                let path = dir.join(name);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(path, content).unwrap();
            }
            let link = self.root.join("current");
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink(format!("releases/{id}"), link).unwrap();
        }

        /// Containers running before `up`: `(id, service, bind sources)`.
        fn running(&self, containers: &[(&str, &str, &[&str])]) {
            let mut ids = String::new();
            let _ = fs::remove_dir_all(self.state.join("mounts"));
            fs::create_dir_all(self.state.join("mounts")).unwrap();
            for (id, service, sources) in containers {
                ids.push_str(&format!("{id}\n"));
                let lines: String = sources
                    .iter()
                    .map(|s| format!("{id} {service} {s}\n"))
                    .collect();
                fs::write(self.state.join("mounts").join(id), lines).unwrap();
            }
            fs::write(self.state.join("running"), ids).unwrap();
        }

        fn source(&self, rel: &str) -> String {
            format!("{}/current/{rel}", self.root.display())
        }

        fn up(&self, services: &[&str]) -> (crate::transport::ExecOutput, Vec<String>) {
            let _ = fs::remove_file(self.state.join("restarted"));
            let services: Vec<String> = services.iter().map(|s| s.to_string()).collect();
            let script = up(
                ComposeFlavor::Plugin,
                &self.root.join("current").display().to_string(),
                "p",
                &services,
                &self.root.display().to_string(),
            );
            let env = format!(
                "PATH={}:$PATH STATE={}; export PATH STATE\n",
                quote(self.bin.to_str().unwrap()),
                quote(self.state.to_str().unwrap())
            );
            let out = run_one(&format!("{env}{script}"));
            let restarted = fs::read_to_string(self.state.join("restarted"))
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect();
            (out, restarted)
        }

        fn record(&self) -> Option<String> {
            fs::read_to_string(self.root.join(format!("{RECORD_PREFIX}p"))).ok()
        }
    }

    fn ok(out: &crate::transport::ExecOutput) {
        assert_eq!(out.status, Some(0), "{out:?}");
    }

    #[test]
    fn only_containers_whose_mounted_release_files_changed_are_restarted() {
        let rig = Rig::new();
        // Each release: nginx.conf, a file in conf.d/ and its own compose file.
        let put = |id: &str, nginx: &str, dir: &str| {
            rig.release(
                id,
                &[
                    ("nginx.conf", nginx),
                    ("conf.d/a", dir),
                    ("compose.yml", id),
                ],
            )
        };

        // First deploy: nothing ran before; the record says A afterwards.
        put(A, "1", "x");
        let (out, restarted) = rig.up(&[]);
        ok(&out);
        assert!(restarted.is_empty());
        assert_eq!(restarted_of(&out), Vec::<String>::new());
        assert_eq!(rig.record().as_deref(), Some(format!("{A}\n").as_str()));
        let log = fs::read_to_string(rig.state.join("up.log")).unwrap();
        assert!(
            log.starts_with(&format!(
                "[--project-directory][{}/current][-p][p][up][-d][--remove-orphans]",
                rig.root.display()
            )),
            "relative paths resolve through `current`: {log}"
        );

        // B changes only the app (its compose entry): `up` recreates the app; the proxy's
        // nginx.conf and the shared file are the same as A's: nothing restarted.
        put(B, "1", "x");
        let shared = format!("{}/shared/data", rig.root.display());
        rig.running(&[
            ("app1", "app", &[]),
            ("proxy1", "proxy", &[&rig.source("nginx.conf"), &shared]),
        ]);
        fs::write(rig.state.join("hook"), "rm -f \"$STATE/mounts/app1\"\n").unwrap();
        let (out, restarted) = rig.up(&[]);
        ok(&out);
        assert!(restarted.is_empty(), "{restarted:?}");
        assert_eq!(rig.record().as_deref(), Some(format!("{B}\n").as_str()));

        // C changes nginx.conf: the proxy (left alone by `up`) is restarted, and said so.
        put(C, "2", "x");
        rig.running(&[
            ("app2", "app", &[]),
            ("proxy1", "proxy", &[&rig.source("nginx.conf")]),
        ]);
        fs::write(rig.state.join("hook"), "true\n").unwrap();
        let (out, restarted) = rig.up(&[]);
        ok(&out);
        assert_eq!(restarted, ["proxy1"]);
        assert_eq!(restarted_of(&out), ["proxy"]);

        // D changes a file in a mounted directory; a container `up` recreated anyway is not
        // restarted again.
        put(D, "2", "y");
        rig.running(&[
            ("proxy1", "proxy", &[&rig.source("conf.d")]),
            ("web1", "web", &[&rig.source("conf.d")]),
        ]);
        fs::write(rig.state.join("hook"), "rm -f \"$STATE/mounts/web1\"\n").unwrap();
        let (out, restarted) = rig.up(&[]);
        ok(&out);
        assert_eq!(restarted, ["proxy1"]);

        // Rolling back to B (nginx.conf "1", conf.d "x"): both differ from D's: restarted.
        rig.release(B, &[]);
        rig.running(&[(
            "proxy1",
            "proxy",
            &[&rig.source("nginx.conf"), &rig.source("conf.d")],
        )]);
        fs::write(rig.state.join("hook"), "true\n").unwrap();
        let (_, restarted) = rig.up(&[]);
        assert_eq!(restarted, ["proxy1"]);
        // Unchanged since: nothing.
        let (out, restarted) = rig.up(&[]);
        ok(&out);
        assert!(restarted.is_empty());
        assert_eq!(restarted_of(&out), Vec::<String>::new());
        assert!(!rig.root.join("pwned").exists() && !Path::new("pwned").exists());
    }

    #[test]
    fn without_a_trusted_record_every_container_on_release_files_is_restarted() {
        let rig = Rig::new();
        rig.release(A, &[("nginx.conf", "1")]);
        rig.running(&[
            ("proxy1", "proxy", &[&rig.source("nginx.conf")]),
            ("db1", "db", &[&format!("{}/data", rig.root.display())]),
        ]);
        // No record (an engine dropship never brought up, a pruned release): the proxy may
        // hold any release's file.
        let (out, restarted) = rig.up(&[]);
        ok(&out);
        assert_eq!(
            restarted,
            ["proxy1"],
            "a mount outside `current` is not a release's"
        );
        // A record that is not a release id is no record.
        fs::write(rig.root.join(format!("{RECORD_PREFIX}p")), "../../etc\n").unwrap();
        let (_, restarted) = rig.up(&[]);
        assert_eq!(restarted, ["proxy1"]);
        assert_eq!(rig.record().as_deref(), Some(format!("{A}\n").as_str()));

        // `up` of some services while the record is another release's: the record goes
        // (containers of either release may run after this), only the named services are
        // looked at, and no record is written.
        rig.release(B, &[("nginx.conf", "2")]);
        rig.running(&[
            ("proxy1", "proxy", &[&rig.source("nginx.conf")]),
            ("side1", "side", &[&rig.source("nginx.conf")]),
        ]);
        let (out, restarted) = rig.up(&["proxy"]);
        ok(&out);
        assert_eq!(restarted, ["proxy1"]);
        assert_eq!(rig.record(), None);
        let log = fs::read_to_string(rig.state.join("up.log")).unwrap();
        assert!(
            log.lines()
                .last()
                .unwrap()
                .ends_with("[--remove-orphans][--][proxy]"),
            "{log}"
        );

        // A failing `up` fails the segment; nothing is restarted; the record stays gone.
        fs::write(
            rig.state.join("hook"),
            "echo 'pull access denied' >&2; exit 3\n",
        )
        .unwrap();
        let (out, restarted) = rig.up(&[]);
        assert_eq!(out.status, Some(3), "{out:?}");
        assert!(restarted.is_empty());
        assert_eq!(rig.record(), None);
    }

    fn restarted_of(out: &crate::transport::ExecOutput) -> Vec<String> {
        restarted(out)
    }
}
