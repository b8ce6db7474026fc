//! A compose command line for each compose step and handler (`Request`: the subcommand, its
//! options and its operands, every word quoted), in the project's directory through the host's
//! flavour, and judging from what it printed whether it changed anything.
//! May import: `remote::{script, vars, compose, compose_build}`, `playbook::ComposeCommand`.

use super::compose::{ComposeFlavor, ComposeTool};
use super::script::Script;
use super::vars;
use crate::playbook::ComposeCommand;
use crate::sh;

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

/// Where compose resolves a project's relative paths (`./nginx.conf`, `build: .`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectPaths {
    /// Each flavour's own way: v1 against the physical working directory (symlinks
    /// resolved), v2 against `$PWD` (the directory as `cd` was given it).
    Default,
    /// Against `dir` as written, on both flavours (`--project-directory "$PWD"` after `cd`):
    /// a path through a symlink, such as a release's `current`, stays the same path from one
    /// release to the next, so compose does not see a changed bind mount in every release.
    AsWritten,
}

/// A compose command as a chain segment, in `dir`, stdin closed. With the flavour still
/// `Unknown` it follows `$dsf` from `detect`, which must run first in the same script.
pub fn command(flavor: ComposeFlavor, dir: &str, project: &str, request: &Request) -> String {
    command_with(flavor, dir, project, request, ProjectPaths::Default)
}

/// `command`, with relative paths resolved as `paths` says.
pub fn command_with(
    flavor: ComposeFlavor,
    dir: &str,
    project: &str,
    request: &Request,
    paths: ProjectPaths,
) -> String {
    script(flavor, dir, project, request, paths).into_string()
}

/// `command_with`, as a script to build on (`release_binds`).
pub(super) fn script(
    flavor: ComposeFlavor,
    dir: &str,
    project: &str,
    request: &Request,
    paths: ProjectPaths,
) -> Script {
    if flavor == ComposeFlavor::Unknown {
        return sh!(
            "case {} in plugin) {} ;; standalone) {} ;; *) false ;; esac",
            vars::COMPOSE_FLAVOR.bare(),
            script(ComposeFlavor::Plugin, dir, project, request, paths),
            script(ComposeFlavor::Standalone, dir, project, request, paths)
        );
    }
    let (mut tool, tool_kind) = match flavor {
        ComposeFlavor::Standalone => (sh!("docker-compose"), ComposeTool::Standalone),
        ComposeFlavor::Plugin => (sh!("docker compose"), ComposeTool::Plugin),
        // Steps check `problem` first; this keeps a step that did not from running anything.
        ComposeFlavor::Missing | ComposeFlavor::Unusable { .. } | ComposeFlavor::Unknown => {
            return sh!("{{ echo 'compose does not work on this host' >&2; false; }}");
        }
    };
    if paths == ProjectPaths::AsWritten {
        // Expanded after the `cd`: the directory as written, made absolute by the shell.
        tool.push(&sh!(" --project-directory \"$PWD\""));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
        // Through a release's `current`: relative paths resolve against the directory as
        // written (`$PWD` after `cd`), not the release it points at, on both flavours.
        for (flavor, tool) in [
            (ComposeFlavor::Standalone, "docker-compose"),
            (ComposeFlavor::Plugin, "docker compose"),
        ] {
            let s = command_with(
                flavor,
                "/srv/app/current",
                "p",
                &Request::Pull(Vec::new()),
                ProjectPaths::AsWritten,
            );
            assert_eq!(
                s,
                format!(
                    "(cd -- /srv/app/current && exec {tool} --project-directory \"$PWD\" -p p pull) </dev/null"
                )
            );
        }
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
}
