//! Docker compose on a host: finding how it is invoked (the plugin or the standalone tool),
//! and the project names both flavours take; the command lines are `compose_command`'s.
//! May import: `remote::{script, frame, vars, compose_command}`.

use super::frame::{self, Frame, Kind};
use super::script::Script;
use super::vars;
use crate::sh;

pub use super::compose_command::{ProjectPaths, Request, changed, command, command_with};

/// A way of invoking compose, as the inventory's `compose` setting can force it on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComposeTool {
    /// `docker compose` (the plugin).
    Plugin,
    /// `docker-compose` (the standalone tool).
    Standalone,
}

impl ComposeTool {
    /// The command as a user types it.
    pub fn command(self) -> &'static str {
        match self {
            Self::Plugin => "docker compose",
            Self::Standalone => "docker-compose",
        }
    }

    /// The inventory's value that forces it.
    pub fn setting(self) -> &'static str {
        match self {
            Self::Plugin => "plugin",
            Self::Standalone => "standalone",
        }
    }

    fn other(self) -> Self {
        match self {
            Self::Plugin => Self::Standalone,
            Self::Standalone => Self::Plugin,
        }
    }
}

/// How compose is invoked on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComposeFlavor {
    /// `docker compose` (the plugin).
    Plugin,
    /// `docker-compose` (the standalone tool).
    Standalone,
    Missing,
    /// The inventory forces `wanted`, which the host does not have; `other`: whether the other
    /// flavour is there.
    Unusable {
        wanted: ComposeTool,
        other: bool,
    },
    /// Not known yet: the first compose command finds out.
    Unknown,
}

impl ComposeFlavor {
    /// Why compose commands cannot run on the host, and what to do about it; `None` when they
    /// can (or it is not known yet).
    pub fn problem(self) -> Option<(String, String)> {
        match self {
            Self::Missing => Some((
                "neither `docker compose` nor `docker-compose` works on this host".into(),
                "install the compose plugin (docker-compose-plugin) or docker-compose".into(),
            )),
            Self::Unusable { wanted, other } => {
                let not_here = match wanted {
                    ComposeTool::Plugin => {
                        "`docker compose` (the compose plugin) does not work on this host"
                    }
                    ComposeTool::Standalone => "`docker-compose` is not on this host's PATH",
                };
                let install = match wanted {
                    ComposeTool::Plugin => "install the compose plugin (docker-compose-plugin)",
                    ComposeTool::Standalone => "install docker-compose",
                };
                Some(if other {
                    let has = wanted.other();
                    (
                        format!("{not_here}; it has `{}`", has.command()),
                        format!(
                            "set compose = \"{}\" (or \"auto\") for this host in the inventory, or {install}",
                            has.setting()
                        ),
                    )
                } else {
                    (
                        format!(
                            "{not_here} (the inventory sets compose = \"{}\"), and `{}` does not work either",
                            wanted.setting(),
                            wanted.other().command()
                        ),
                        install.to_string(),
                    )
                })
            }
            Self::Plugin | Self::Standalone | Self::Unknown => None,
        }
    }
}

/// The compose plugin where the docker CLI looks for plugins sets `$dsf` to `plugin`: shell
/// builtins only.
fn plugin_in_plugin_dirs() -> Script {
    sh!(
        "for dsd in \"${{DOCKER_CONFIG:-$HOME/.docker}}/cli-plugins\" /usr/local/lib/docker/cli-plugins /usr/local/libexec/docker/cli-plugins /usr/lib/docker/cli-plugins /usr/libexec/docker/cli-plugins; do [ -x \"$dsd/docker-compose\" ] && {{ {}=plugin; break; }}; done",
        vars::COMPOSE_FLAVOR
    )
}

/// Finds how compose is invoked and sets `$dsf` (`vars::COMPOSE_FLAVOR`) to `plugin`,
/// `standalone` or `none`, reported as `compose:plugin|standalone|none` (`flavor`): a
/// driver's preamble. `forced: None` (the inventory's `auto`), with shell builtins first: the
/// compose plugin where the docker CLI looks for plugins, else `docker-compose` on the PATH,
/// else (a plugin in a custom place) whether `docker compose version` works. Forced, only that
/// flavour is looked for; when it is not there, `$dsf` is `none` and the report
/// `compose:unusable:WANTED:OTHER` says whether the other one is (`OTHER` is its name or
/// `none`).
pub fn detect(forced: Option<ComposeTool>) -> Script {
    let f = &vars::COMPOSE_FLAVOR;
    let has_plugin = sh!("docker compose version >/dev/null 2>&1");
    let has_standalone = sh!("command -v docker-compose >/dev/null 2>&1");
    let Some(wanted) = forced else {
        return sh!(
            "{}=none
{}
[ {} != none ] || ! {} || {}=standalone
[ {} != none ] || ! {} || {}=plugin
{}",
            f,
            plugin_in_plugin_dirs(),
            f.bare(),
            has_standalone,
            f,
            f.bare(),
            has_plugin,
            f,
            frame::report(Kind::Compose, &f.bare())
        );
    };
    let (find, other_found) = match wanted {
        ComposeTool::Plugin => (
            sh!(
                "{}\n[ {} != none ] || ! {} || {}=plugin",
                plugin_in_plugin_dirs(),
                f.bare(),
                has_plugin,
                f
            ),
            has_standalone,
        ),
        ComposeTool::Standalone => (sh!("! {} || {}=standalone", has_standalone, f), has_plugin),
    };
    let other = wanted.other().setting();
    sh!(
        "{}=none
{}
if [ {} != none ]; then {}
elif {}; then {}
else {}
fi",
        f,
        find,
        f.bare(),
        frame::report(Kind::Compose, &f.bare()),
        other_found,
        frame::report(
            Kind::Compose,
            &format!("unusable:{}:{other}", wanted.setting())
        ),
        frame::report(
            Kind::Compose,
            &format!("unusable:{}:none", wanted.setting())
        )
    )
}

/// The flavour `detect` reported, among a session's results.
pub fn flavor<'a>(results: impl IntoIterator<Item = &'a Frame>) -> Option<ComposeFlavor> {
    results
        .into_iter()
        .find_map(|f| parse_flavor(f.of(Kind::Compose)?))
}

/// A `compose:` frame's fields.
fn parse_flavor(fields: &str) -> Option<ComposeFlavor> {
    let tool = |name: &str| match name {
        "plugin" => Some(ComposeTool::Plugin),
        "standalone" => Some(ComposeTool::Standalone),
        _ => None,
    };
    match fields {
        "plugin" => Some(ComposeFlavor::Plugin),
        "standalone" => Some(ComposeFlavor::Standalone),
        "none" => Some(ComposeFlavor::Missing),
        _ => {
            let (wanted, other) = fields.strip_prefix("unusable:")?.split_once(':')?;
            let wanted = tool(wanted)?;
            let other = match other {
                "none" => false,
                o if tool(o) == Some(wanted.other()) => true,
                _ => return None,
            };
            Some(ComposeFlavor::Unusable { wanted, other })
        }
    }
}

/// Why `name` is not a project name both flavours take as it is, if it is not: v2 refuses
/// such a name (`invalid project name`), v1 silently uses another (`My.App` → `myapp`), so a
/// stack could be deployed under a name nothing else looks for.
pub fn project_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.starts_with(['-', '_']) {
        Some("it starts with `-` or `_`")
    } else if name.chars().any(|c| c.is_ascii_uppercase()) {
        Some("it has upper-case letters")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        Some("it has characters other than lower-case letters, digits, `-` and `_`")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::frame::Framed;

    #[test]
    fn unknown_compose_flavor_is_found_with_builtins_first() {
        let s = command(
            ComposeFlavor::Unknown,
            "/srv",
            "p",
            &Request::Pull(Vec::new()),
        );
        assert_eq!(
            s,
            "case $dsf in plugin) (cd -- /srv && exec docker compose -p p pull) </dev/null ;; standalone) (cd -- /srv && exec docker-compose -p p pull) </dev/null ;; *) false ;; esac"
        );
        let frames = |text: &[u8]| frame::Reply::parse(text, "n").sections;
        let flavor_of = |text: &[u8]| flavor(frames(text).iter().map(|(f, _)| f));
        assert_eq!(
            flavor_of(b"\n@@dropship:n:compose:standalone@@\nPulling\n"),
            Some(ComposeFlavor::Standalone)
        );
        assert_eq!(flavor_of(b"other\n"), None);
        // In a real shell: a plugin in $DOCKER_CONFIG wins over docker-compose on the PATH.
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("cli-plugins");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&plugins).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        // The system's plugin directories moved into the test's dir: what this machine has
        // installed must not decide the outcome.
        let detect = detect(None).into_string();
        let isolated = detect.replace(" /usr/", &format!(" {}/usr/", dir.path().display()));
        assert_ne!(isolated, detect);
        let request = Framed::new(&Script::raw_trusted(isolated));
        let detect = |path: &str| {
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(request.script())
                .env("DOCKER_CONFIG", dir.path())
                .env("PATH", path)
                .output()
                .unwrap();
            let reply = request.reply(&out.stdout);
            assert!(reply.head.is_empty(), "{reply:?}");
            flavor(reply.sections.iter().map(|(f, _)| f))
        };
        let executable = |p: &std::path::Path| {
            std::fs::write(p, "#!/bin/sh\nexit 1\n").unwrap();
            std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        };
        // Only this test's bin on the PATH (sh finds its builtins without one).
        let path = bin.display().to_string();
        assert_eq!(detect(&path), Some(ComposeFlavor::Missing));
        executable(&bin.join("docker-compose"));
        assert_eq!(detect(&path), Some(ComposeFlavor::Standalone));
        executable(&plugins.join("docker-compose"));
        assert_eq!(detect(&path), Some(ComposeFlavor::Plugin));
    }

    /// `detect(forced)` run in a real shell whose plugin directories are all inside `dir`
    /// (what this machine has installed must not decide the outcome), PATH only `dir/bin`.
    fn detect_in(dir: &std::path::Path, forced: Option<ComposeTool>) -> Option<ComposeFlavor> {
        let script = detect(forced).into_string();
        let isolated = script.replace(" /usr/", &format!(" {}/usr/", dir.display()));
        let request = Framed::new(&Script::raw_trusted(isolated));
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("{}\necho \"dsf=$dsf\"", request.script()))
            .env("DOCKER_CONFIG", dir)
            .env("PATH", dir.join("bin"))
            .output()
            .unwrap();
        let reply = request.reply(&out.stdout);
        assert!(reply.head.is_empty(), "{reply:?}");
        let flavor = flavor(reply.sections.iter().map(|(f, _)| f));
        // What compose segments follow: the flavour itself, or `none` (they run nothing).
        let dsf = String::from_utf8_lossy(&reply.sections[0].1).into_owned();
        let expected = match flavor {
            Some(ComposeFlavor::Plugin) => "plugin",
            Some(ComposeFlavor::Standalone) => "standalone",
            _ => "none",
        };
        assert_eq!(dsf, format!("dsf={expected}\n"));
        flavor
    }

    #[test]
    fn a_forced_flavor_is_the_only_one_looked_for() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        let plugins = dir.path().join("cli-plugins");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&plugins).unwrap();
        let executable = |p: &std::path::Path, text: &str| {
            std::fs::write(p, text).unwrap();
            std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        };
        let plugin = Some(ComposeTool::Plugin);
        let standalone = Some(ComposeTool::Standalone);
        let unusable = |wanted, other| Some(ComposeFlavor::Unusable { wanted, other });

        // Nothing installed.
        assert_eq!(
            detect_in(dir.path(), plugin),
            unusable(ComposeTool::Plugin, false)
        );
        assert_eq!(
            detect_in(dir.path(), standalone),
            unusable(ComposeTool::Standalone, false)
        );
        // docker-compose only.
        executable(&bin.join("docker-compose"), "#!/bin/sh\nexit 0\n");
        assert_eq!(
            detect_in(dir.path(), plugin),
            unusable(ComposeTool::Plugin, true)
        );
        assert_eq!(
            detect_in(dir.path(), standalone),
            Some(ComposeFlavor::Standalone)
        );
        // Both: each forced flavour is taken, though auto prefers the plugin.
        executable(&plugins.join("docker-compose"), "#!/bin/sh\nexit 0\n");
        assert_eq!(detect_in(dir.path(), None), Some(ComposeFlavor::Plugin));
        assert_eq!(detect_in(dir.path(), plugin), Some(ComposeFlavor::Plugin));
        assert_eq!(
            detect_in(dir.path(), standalone),
            Some(ComposeFlavor::Standalone)
        );
        // A plugin in a custom place (only `docker compose version` finds it).
        std::fs::remove_file(plugins.join("docker-compose")).unwrap();
        std::fs::remove_file(bin.join("docker-compose")).unwrap();
        executable(
            &bin.join("docker"),
            "#!/bin/sh\n[ \"$1 $2\" = 'compose version' ]\n",
        );
        assert_eq!(detect_in(dir.path(), plugin), Some(ComposeFlavor::Plugin));
        assert_eq!(
            detect_in(dir.path(), standalone),
            unusable(ComposeTool::Standalone, true)
        );
    }

    #[test]
    fn a_forced_flavor_the_host_lacks_says_what_to_set() {
        let problem = |wanted, other| ComposeFlavor::Unusable { wanted, other }.problem().unwrap();
        assert_eq!(
            problem(ComposeTool::Plugin, true),
            (
                "`docker compose` (the compose plugin) does not work on this host; it has `docker-compose`".to_string(),
                "set compose = \"standalone\" (or \"auto\") for this host in the inventory, or install the compose plugin (docker-compose-plugin)".to_string()
            )
        );
        assert_eq!(
            problem(ComposeTool::Standalone, false).0,
            "`docker-compose` is not on this host's PATH (the inventory sets compose = \"standalone\"), and `docker compose` does not work either"
        );
        assert_eq!(ComposeFlavor::Plugin.problem(), None);
        // Frames a host could forge into nonsense are no flavour at all.
        for fields in [
            "unusable:plugin:plugin",
            "unusable:x:none",
            "unusable:plugin",
            "Plugin",
        ] {
            assert_eq!(parse_flavor(fields), None, "{fields}");
        }
        // No command runs without a flavour that works.
        assert_eq!(
            command(
                ComposeFlavor::Unusable {
                    wanted: ComposeTool::Plugin,
                    other: true
                },
                "/srv",
                "p",
                &Request::Up(Vec::new())
            ),
            "{ echo 'compose does not work on this host' >&2; false; }"
        );
    }

    #[test]
    fn project_names_are_those_v2_takes_and_v1_keeps() {
        for ok in ["pixel", "pixel-web-1", "a_b", "0x"] {
            assert_eq!(project_name_problem(ok), None, "{ok}");
        }
        for bad in ["", "-x", "_x", "My", "my.app", "a b", "ünï"] {
            assert!(project_name_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn a_forged_flavor_in_a_step_s_output_is_not_taken_for_one() {
        // The detection runs first in the driver; a step printing a flavour of its own
        // (another nonce, the old first-line form) changes nothing.
        let segment = crate::remote::driver::Segment::isolated(
            "printf '\\n@@dropship:0123456789abcdef:compose:standalone@@\\n'; echo compose=standalone",
            "forger",
        );
        let nonce = frame::nonce();
        let preamble = sh!(
            "{}=none; {}",
            vars::COMPOSE_FLAVOR,
            frame::report(Kind::Compose, &vars::COMPOSE_FLAVOR.bare())
        );
        let driver =
            crate::remote::driver::Driver::new(&nonce, preamble.as_str(), &[segment], None);
        let out = crate::remote::run_in_sh(&driver.script, b"");
        let split =
            crate::remote::split::split_all(&crate::output::Redactor::default(), &out, &nonce, 1);
        assert_eq!(flavor(&split.results), Some(ComposeFlavor::Missing));
        assert_eq!(split.results.len(), 1);
    }
}
