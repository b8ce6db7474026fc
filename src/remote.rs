//! What runs on a host: the shell scripts for every action, quoted in one place, and their parsing.

use std::borrow::Cow;

use crate::plan::Upload;
use crate::playbook::ComposeCommand;

/// Quotes one word for a POSIX shell.
pub fn quote(word: &str) -> Cow<'_, str> {
    shell_escape::unix::escape(Cow::Borrowed(word))
}

/// How compose is invoked on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComposeFlavor {
    /// `docker compose` (the plugin).
    Plugin,
    /// `docker-compose` (the standalone tool).
    Standalone,
    Missing,
}

/// The current sha256 and mode of a remote file, if it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    pub sha256: String,
    pub mode: u32,
}

/// One script that reports every destination file's sha256 and mode (one line each, `- -` when
/// missing) and, when asked, which compose flavour the host has: one round trip per host.
pub fn probe(dests: &[&str], want_compose: bool) -> String {
    let mut script = String::new();
    if !dests.is_empty() {
        script.push_str("for f in");
        for d in dests {
            script.push(' ');
            script.push_str(&quote(d));
        }
        script.push_str(
            "; do if [ -f \"$f\" ] && s=$(sha256sum < \"$f\") && m=$(stat -c %a \"$f\"); then printf '%s %s\\n' \"${s%% *}\" \"$m\"; else echo '- -'; fi; done\n",
        );
    }
    if want_compose {
        script.push_str(
            "if docker compose version >/dev/null 2>&1; then echo compose=plugin; elif command -v docker-compose >/dev/null 2>&1; then echo compose=standalone; else echo compose=none; fi\n",
        );
    }
    script
}

/// Parses `probe`'s output: one entry per destination, then the compose flavour.
pub fn parse_probe(stdout: &str, count: usize) -> Option<(Vec<Option<RemoteFile>>, ComposeFlavor)> {
    let mut lines = stdout.lines();
    let mut files = Vec::with_capacity(count);
    for _ in 0..count {
        let (sha, mode) = lines.next()?.split_once(' ')?;
        files.push(if sha == "-" {
            None
        } else {
            Some(RemoteFile {
                sha256: sha.to_string(),
                mode: u32::from_str_radix(mode, 8).ok()?,
            })
        });
    }
    let flavor = match lines.next() {
        Some("compose=plugin") => ComposeFlavor::Plugin,
        Some("compose=standalone") => ComposeFlavor::Standalone,
        _ => ComposeFlavor::Missing,
    };
    Some((files, flavor))
}

/// Writes stdin to `dest` atomically: a temporary file in the same directory (created 0600 by
/// mktemp, so secrets are never world-readable), chmod, then rename over the old file.
pub fn upload(upload: &Upload) -> String {
    let dest = quote(&upload.dest);
    format!(
        "set -e; d=$(dirname -- {dest}); mkdir -p -- \"$d\"; t=$(mktemp \"$d/.dropship.XXXXXX\"); trap 'rm -f -- \"$t\"' EXIT; cat > \"$t\"; chmod {mode:04o} \"$t\"; mv -f -- \"$t\" {dest}; trap - EXIT",
        mode = upload.mode
    )
}

/// A user's `run` command, in `dir` when given.
pub fn run(command: &str, dir: Option<&str>) -> String {
    match dir {
        Some(dir) => format!("cd {} && {{\n{command}\n}}", quote(dir)),
        None => command.to_string(),
    }
}

/// `docker login`; the password goes on stdin, never on the command line.
pub fn docker_login(registry: &str, username: &str) -> String {
    format!(
        "docker login {} --username {} --password-stdin",
        quote(registry),
        quote(username)
    )
}

pub fn compose(
    flavor: ComposeFlavor,
    command: ComposeCommand,
    dir: &str,
    project: &str,
    services: &[String],
) -> String {
    let tool = match flavor {
        ComposeFlavor::Standalone => "docker-compose",
        _ => "docker compose",
    };
    let args = match command {
        ComposeCommand::Pull => "pull",
        ComposeCommand::Up => "up -d --remove-orphans",
        ComposeCommand::Down => "down --remove-orphans",
        ComposeCommand::Restart => "restart",
        ComposeCommand::Ps => "ps",
    };
    let mut script = format!("cd {} && {tool} -p {} {args}", quote(dir), quote(project));
    for service in services {
        script.push(' ');
        script.push_str(&quote(service));
    }
    script
}

/// Whether a compose command changed anything, judged from what compose printed.
pub fn compose_changed(command: ComposeCommand, output: &str) -> bool {
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

/// Reports the docker engine's and compose's versions.
pub fn facts() -> &'static str {
    "printf 'docker=%s\\n' \"$(docker version --format '{{.Server.Version}}' 2>/dev/null || echo none)\"; \
     printf 'compose=%s\\n' \"$(docker compose version --short 2>/dev/null || docker-compose version --short 2>/dev/null || echo none)\""
}

/// Turns `facts()` output into one line such as `docker 28.2.2, compose 2.30.0`.
pub fn summarize_facts(stdout: &str) -> String {
    let get = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .unwrap_or("none")
            .to_string()
    };
    format!("docker {}, compose {}", get("docker="), get("compose="))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_hostile_paths() {
        assert_eq!(quote("/srv/app"), "/srv/app");
        assert_eq!(quote("a b'c"), "'a b'\\''c'");
    }

    #[test]
    fn probe_output_is_parsed_per_file() {
        let out = "abc 600\n- -\ncompose=standalone\n";
        let (files, flavor) = parse_probe(out, 2).unwrap();
        assert_eq!(
            files[0],
            Some(RemoteFile {
                sha256: "abc".into(),
                mode: 0o600
            })
        );
        assert_eq!(files[1], None);
        assert_eq!(flavor, ComposeFlavor::Standalone);
        assert!(parse_probe("abc 600\n", 2).is_none());
    }

    #[test]
    fn compose_commands_name_the_project() {
        let s = compose(
            ComposeFlavor::Plugin,
            ComposeCommand::Up,
            "/srv/x y",
            "pixel",
            &["web".into()],
        );
        assert_eq!(
            s,
            "cd '/srv/x y' && docker compose -p pixel up -d --remove-orphans web"
        );
        let s = compose(
            ComposeFlavor::Standalone,
            ComposeCommand::Pull,
            "/srv",
            "p",
            &[],
        );
        assert_eq!(s, "cd /srv && docker-compose -p p pull");
    }

    #[test]
    fn login_reads_the_password_from_stdin() {
        assert_eq!(
            docker_login("registry.example.com:5000", "deploy"),
            "docker login 'registry.example.com:5000' --username deploy --password-stdin"
        );
    }

    #[test]
    fn facts_are_summarized() {
        assert_eq!(
            summarize_facts("docker=28.2.2\ncompose=2.30.0\n"),
            "docker 28.2.2, compose 2.30.0"
        );
        assert_eq!(summarize_facts("docker=\n"), "docker none, compose none");
    }
}
