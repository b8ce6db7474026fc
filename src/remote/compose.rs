//! Docker compose on a host: finding how it is invoked (the plugin or the standalone tool),
//! the command for each compose step, and judging whether it changed anything.
//! May import: `remote::{script, frame, vars}`, `playbook::ComposeCommand`.

use super::frame::{self, Frame, Kind};
use super::script::Script;
use super::vars;
use crate::playbook::ComposeCommand;
use crate::sh;

/// How compose is invoked on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComposeFlavor {
    /// `docker compose` (the plugin).
    Plugin,
    /// `docker-compose` (the standalone tool).
    Standalone,
    Missing,
    /// Not known yet: the first compose command finds out.
    Unknown,
}

/// Finds how compose is invoked, with shell builtins only: the compose plugin where the docker
/// CLI looks for plugins, else `docker-compose` on the PATH, else (a plugin in a custom place)
/// whether `docker compose version` works. Sets `$dsf` (`vars::COMPOSE_FLAVOR`) and reports
/// `compose:plugin|standalone|none` (`flavor`): a driver's preamble.
pub fn detect() -> Script {
    let f = &vars::COMPOSE_FLAVOR;
    sh!(
        "{}=none
for dsd in \"${{DOCKER_CONFIG:-$HOME/.docker}}/cli-plugins\" /usr/local/lib/docker/cli-plugins /usr/local/libexec/docker/cli-plugins /usr/lib/docker/cli-plugins /usr/libexec/docker/cli-plugins; do [ -x \"$dsd/docker-compose\" ] && {{ {}=plugin; break; }}; done
[ {} != none ] || ! command -v docker-compose >/dev/null 2>&1 || {}=standalone
[ {} != none ] || ! docker compose version >/dev/null 2>&1 || {}=plugin
{}",
        f,
        f,
        f.bare(),
        f,
        f.bare(),
        f,
        frame::report(Kind::Compose, &f.bare())
    )
}

/// The flavour `detect` reported, among a session's results.
pub fn flavor<'a>(results: impl IntoIterator<Item = &'a Frame>) -> Option<ComposeFlavor> {
    results
        .into_iter()
        .find_map(|f| match f.of(Kind::Compose)? {
            "plugin" => Some(ComposeFlavor::Plugin),
            "standalone" => Some(ComposeFlavor::Standalone),
            "none" => Some(ComposeFlavor::Missing),
            _ => None,
        })
}

/// A compose command as a chain segment, in `dir`, stdin closed. With the flavour still
/// `Unknown` it follows `$dsf` from `detect`, which must run first in the same script.
pub fn command(
    flavor: ComposeFlavor,
    command_kind: ComposeCommand,
    dir: &str,
    project: &str,
    services: &[String],
) -> String {
    script(flavor, command_kind, dir, project, services).into_string()
}

fn script(
    flavor: ComposeFlavor,
    command_kind: ComposeCommand,
    dir: &str,
    project: &str,
    services: &[String],
) -> Script {
    if flavor == ComposeFlavor::Unknown {
        return sh!(
            "case {} in plugin) {} ;; standalone) {} ;; *) false ;; esac",
            vars::COMPOSE_FLAVOR.bare(),
            script(ComposeFlavor::Plugin, command_kind, dir, project, services),
            script(
                ComposeFlavor::Standalone,
                command_kind,
                dir,
                project,
                services
            )
        );
    }
    let tool = match flavor {
        ComposeFlavor::Standalone => sh!("docker-compose"),
        _ => sh!("docker compose"),
    };
    let args = match command_kind {
        ComposeCommand::Pull => sh!("pull"),
        ComposeCommand::Up => sh!("up -d --remove-orphans"),
        ComposeCommand::Down => sh!("down --remove-orphans"),
        ComposeCommand::Restart => sh!("restart"),
        ComposeCommand::Ps => sh!("ps"),
    };
    let mut script = sh!("(cd -- {} && exec {} -p {} {}", dir, tool, project, args);
    if !services.is_empty() {
        script.push(&sh!(" --"));
    }
    for service in services {
        script.push(&sh!(" {}", service));
    }
    script.push(&sh!(") </dev/null"));
    script
}

/// Whether a compose command changed anything, judged from what compose printed.
pub fn changed(command: ComposeCommand, output: &str) -> bool {
    match command {
        ComposeCommand::Ps => false,
        ComposeCommand::Pull => {
            output.contains("Downloaded newer image") || output.contains("Pull complete")
        }
        ComposeCommand::Up => ["Creat", "Recreat", "Start", "Remov"]
            .iter()
            .any(|w| output.contains(w)),
        ComposeCommand::Down | ComposeCommand::Restart => true,
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
            ComposeCommand::Pull,
            "/srv",
            "p",
            &[],
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
        let detect = detect().into_string();
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

    #[test]
    fn compose_commands_name_the_project() {
        let s = command(
            ComposeFlavor::Plugin,
            ComposeCommand::Up,
            "/srv/x y",
            "pixel",
            &["web".into()],
        );
        assert_eq!(
            s,
            "(cd -- '/srv/x y' && exec docker compose -p pixel up -d --remove-orphans -- web) </dev/null"
        );
        let s = command(
            ComposeFlavor::Standalone,
            ComposeCommand::Pull,
            "/srv",
            "p",
            &[],
        );
        assert_eq!(
            s,
            "(cd -- /srv && exec docker-compose -p p pull) </dev/null"
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
