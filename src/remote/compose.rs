//! Docker compose on a host: finding how it is invoked (the plugin or the standalone tool),
//! the command for each compose step, and judging whether it changed anything.
//! May import: `remote::{script, frame, vars, compose_build}`, `playbook::ComposeCommand`.

use super::frame::{self, Frame, Kind};
use super::script::Script;
use super::vars;
use crate::playbook::ComposeCommand;
use crate::sh;

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

/// A compose subcommand with its options and operands, every word rendered: each goes on the
/// command line as one quoted word (data, never shell code or an option of compose's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `pull`, `up`, `down`, `restart`, `ps` of these services (all when empty).
    Pull(Vec<String>),
    Up(Vec<String>),
    Down(Vec<String>),
    Restart(Vec<String>),
    Ps(Vec<String>),
    /// `exec -T SERVICE ARGS…`: a command in the running service, no TTY, stdin closed.
    Exec {
        service: String,
        args: Vec<String>,
    },
    /// `run --rm -T [--no-deps] SERVICE [ARGS…]`: a one-off container, removed after.
    Run {
        service: String,
        args: Vec<String>,
        no_deps: bool,
    },
    /// `build [--pull] [--no-cache] [SERVICES…]`, with the images of the built services
    /// compared before and after (`compose_build`).
    Build {
        services: Vec<String>,
        pull: bool,
        no_cache: bool,
    },
    /// `logs --no-color --tail N [SERVICES…]`.
    Logs {
        services: Vec<String>,
        tail: u32,
    },
}

impl Request {
    pub fn command(&self) -> ComposeCommand {
        match self {
            Self::Pull(_) => ComposeCommand::Pull,
            Self::Up(_) => ComposeCommand::Up,
            Self::Down(_) => ComposeCommand::Down,
            Self::Restart(_) => ComposeCommand::Restart,
            Self::Ps(_) => ComposeCommand::Ps,
            Self::Exec { .. } => ComposeCommand::Exec,
            Self::Run { .. } => ComposeCommand::Run,
            Self::Build { .. } => ComposeCommand::Build,
            Self::Logs { .. } => ComposeCommand::Logs,
        }
    }

    /// The subcommand and its options (code), then its operands (words, after `--`).
    fn words(&self) -> (Script, Vec<&str>) {
        fn all(services: &[String]) -> Vec<&str> {
            services.iter().map(String::as_str).collect()
        }
        fn service_then<'a>(service: &'a str, args: &'a [String]) -> Vec<&'a str> {
            std::iter::once(service)
                .chain(args.iter().map(String::as_str))
                .collect()
        }
        match self {
            Self::Pull(s) => (sh!("pull"), all(s)),
            Self::Up(s) => (sh!("up -d --remove-orphans"), all(s)),
            Self::Down(s) => (sh!("down --remove-orphans"), all(s)),
            Self::Restart(s) => (sh!("restart"), all(s)),
            Self::Ps(s) => (sh!("ps"), all(s)),
            // No TTY, stdin closed: the command cannot wait for input.
            Self::Exec { service, args } => (sh!("exec -T"), service_then(service, args)),
            Self::Run {
                service,
                args,
                no_deps,
            } => {
                let mut options = sh!("run --rm -T");
                if *no_deps {
                    options.push(&sh!(" --no-deps"));
                }
                (options, service_then(service, args))
            }
            Self::Build {
                services,
                pull,
                no_cache,
            } => {
                let mut options = sh!("build");
                if *pull {
                    options.push(&sh!(" --pull"));
                }
                if *no_cache {
                    options.push(&sh!(" --no-cache"));
                }
                (options, all(services))
            }
            Self::Logs { services, tail } => {
                (sh!("logs --no-color --tail {}", *tail), all(services))
            }
        }
    }
}

/// A compose command as a chain segment, in `dir`, stdin closed. With the flavour still
/// `Unknown` it follows `$dsf` from `detect`, which must run first in the same script.
pub fn command(flavor: ComposeFlavor, dir: &str, project: &str, request: &Request) -> String {
    script(flavor, dir, project, request).into_string()
}

fn script(flavor: ComposeFlavor, dir: &str, project: &str, request: &Request) -> Script {
    if flavor == ComposeFlavor::Unknown {
        return sh!(
            "case {} in plugin) {} ;; standalone) {} ;; *) false ;; esac",
            vars::COMPOSE_FLAVOR.bare(),
            script(ComposeFlavor::Plugin, dir, project, request),
            script(ComposeFlavor::Standalone, dir, project, request)
        );
    }
    let (tool, tool_kind) = match flavor {
        ComposeFlavor::Standalone => (sh!("docker-compose"), ComposeTool::Standalone),
        ComposeFlavor::Plugin => (sh!("docker compose"), ComposeTool::Plugin),
        // Steps check `problem` first; this keeps a step that did not from running anything.
        ComposeFlavor::Missing | ComposeFlavor::Unusable { .. } | ComposeFlavor::Unknown => {
            return sh!("{{ echo 'compose does not work on this host' >&2; false; }}");
        }
    };
    let (options, operands) = request.words();
    let mut line = sh!("{} -p {} {}", tool, project, options);
    if !operands.is_empty() {
        line.push(&sh!(" --"));
    }
    for word in operands {
        line.push(&sh!(" {}", word));
    }
    match request {
        Request::Build { services, .. } => sh!(
            "(cd -- {} || exit 1\n{}\n) </dev/null",
            dir,
            super::compose_build::around(&tool, tool_kind, project, services, &line)
        ),
        _ => sh!("(cd -- {} && exec {}) </dev/null", dir, line),
    }
}

/// Whether a compose command changed anything, judged from what compose printed: v1 and v2
/// word it differently (`fixtures` in the tests hold what each printed for real).
pub fn changed(command: ComposeCommand, output: &str) -> bool {
    match command {
        ComposeCommand::Ps | ComposeCommand::Logs => false,
        // A layer downloaded (`Pull complete`, both), or a tag moved to an image whose layers
        // the host had: v1 says so in lower case (`status: downloaded newer image for …`); v2
        // prints only `Pulling`/`Pulled` then, as it does when nothing changed.
        ComposeCommand::Pull => {
            let output = output.to_ascii_lowercase();
            output.contains("pull complete") || output.contains("downloaded newer image")
        }
        // v1 starts a line with what it does (`Creating pixel_web_1 ... done`; unchanged:
        // `pixel_web_1 is up-to-date`), v2 ends it with the state (`Container pixel-web-1
        // Started`; unchanged: `Running`). Only those words count: a service or project name
        // elsewhere on the line (`Container startup-1  Running`) does not.
        ComposeCommand::Up => output.lines().any(|line| {
            let mut words = line.split_whitespace();
            let first = words.next().unwrap_or("");
            let last = words.next_back().unwrap_or("");
            matches!(first, "Creating" | "Recreating" | "Starting" | "Removing")
                || matches!(
                    last,
                    "Creating"
                        | "Created"
                        | "Recreate"
                        | "Recreated"
                        | "Starting"
                        | "Started"
                        | "Removing"
                        | "Removed"
                )
        }),
        ComposeCommand::Down
        | ComposeCommand::Restart
        | ComposeCommand::Exec
        | ComposeCommand::Run => true,
        // Judged from the images before and after (`compose_build::changes`).
        ComposeCommand::Build => false,
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

    /// What each flavour printed for real (`docker-compose` 1.29.2, `docker compose` 2.40.3,
    /// stdout and stderr as the step judges them), and whether it changed anything.
    const PRINTED: &[(&str, ComposeCommand, &str, bool)] = &[
        (
            "v1 up, new",
            ComposeCommand::Up,
            "Creating network \"flvexp1_default\" with the default driver\nCreating flvexp1_s_1 ... \nCreating flvexp1_s_1 ... done\n",
            true,
        ),
        (
            "v1 up, unchanged",
            ComposeCommand::Up,
            "flvexp1_s_1 is up-to-date\n",
            false,
        ),
        (
            "v1 up, recreated",
            ComposeCommand::Up,
            "Recreating pixel_web_1 ... \nRecreating pixel_web_1 ... done\n",
            true,
        ),
        (
            "v2 up, new",
            ComposeCommand::Up,
            " Network flvexp2_default  Creating\n Network flvexp2_default  Created\n Container flvexp2-s-1  Creating\n Container flvexp2-s-1  Created\n Container flvexp2-s-1  Starting\n Container flvexp2-s-1  Started\n",
            true,
        ),
        (
            "v2 up, unchanged",
            ComposeCommand::Up,
            " Container flvexp2-s-1  Running\n",
            false,
        ),
        (
            "v2 up, unchanged, names that hold the words",
            ComposeCommand::Up,
            " Container starting-Created-1  Running\n Container Removing-x-1  Running\n",
            false,
        ),
        (
            "v1 pull, a tag moved to layers the host had",
            ComposeCommand::Pull,
            "Pulling s ... \nPulling s ... pulling from pixel/app\nPulling s ... digest: sha256:f7ac81361ab13ff1b5...\nPulling s ... status: downloaded newer image fo...\nPulling s ... done\n",
            true,
        ),
        (
            "v1 pull, unchanged",
            ComposeCommand::Pull,
            "Pulling s ... \nPulling s ... pulling from pixel/app\nPulling s ... digest: sha256:f7ac81361ab13ff1b5...\nPulling s ... status: image is up to date for 1...\nPulling s ... done\n",
            false,
        ),
        (
            "v2 pull, layers downloaded",
            ComposeCommand::Pull,
            " s Pulling \n 4f4fb700ef54 Pulling fs layer \n 4f4fb700ef54 Pull complete \n s Pulled \n",
            true,
        ),
        // v2 prints the same when a tag moved to layers the host had: judged unchanged.
        (
            "v2 pull, unchanged",
            ComposeCommand::Pull,
            " s Pulling \n s Pulled \n",
            false,
        ),
    ];

    #[test]
    fn what_each_flavour_prints_is_judged_changed_or_ok() {
        for (what, command, printed, changed_) in PRINTED {
            assert_eq!(changed(*command, printed), *changed_, "{what}");
        }
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
    fn compose_commands_name_the_project() {
        let s = command(
            ComposeFlavor::Plugin,
            "/srv/x y",
            "pixel",
            &Request::Up(vec!["web".into()]),
        );
        assert_eq!(
            s,
            "(cd -- '/srv/x y' && exec docker compose -p pixel up -d --remove-orphans -- web) </dev/null"
        );
        let s = command(
            ComposeFlavor::Standalone,
            "/srv",
            "p",
            &Request::Pull(Vec::new()),
        );
        assert_eq!(
            s,
            "(cd -- /srv && exec docker-compose -p p pull) </dev/null"
        );
    }

    #[test]
    fn each_request_is_one_command_line_with_its_operands_after_the_options() {
        let line = |request: Request| command(ComposeFlavor::Plugin, "/srv", "p", &request);
        let words = |w: &[&str]| w.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        assert_eq!(
            line(Request::Exec {
                service: "web".into(),
                args: words(&["./manage.py", "migrate", "--noinput"]),
            }),
            "(cd -- /srv && exec docker compose -p p exec -T -- web ./manage.py migrate --noinput) </dev/null"
        );
        assert_eq!(
            line(Request::Run {
                service: "web".into(),
                args: Vec::new(),
                no_deps: false,
            }),
            "(cd -- /srv && exec docker compose -p p run --rm -T -- web) </dev/null"
        );
        assert_eq!(
            line(Request::Run {
                service: "web".into(),
                args: words(&["sh", "-c", "echo $HOME"]),
                no_deps: true,
            }),
            "(cd -- /srv && exec docker compose -p p run --rm -T --no-deps -- web sh -c 'echo $HOME') </dev/null"
        );
        assert_eq!(
            line(Request::Logs {
                services: words(&["web", "db"]),
                tail: 100,
            }),
            "(cd -- /srv && exec docker compose -p p logs --no-color --tail 100 -- web db) </dev/null"
        );
        let build = line(Request::Build {
            services: words(&["web"]),
            pull: true,
            no_cache: true,
        });
        assert!(
            build.starts_with("(cd -- /srv || exit 1\n")
                && build
                    .contains("\ndocker compose -p p build --pull --no-cache -- web || exit $?\n"),
            "{build}"
        );
        let standalone = command(
            ComposeFlavor::Standalone,
            "/srv",
            "p",
            &Request::Logs {
                services: Vec::new(),
                tail: 0,
            },
        );
        assert_eq!(
            standalone,
            "(cd -- /srv && exec docker-compose -p p logs --no-color --tail 0) </dev/null"
        );
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
