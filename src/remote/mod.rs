//! What runs on a host: the shell scripts for every action, quoted in one place, and their parsing.

use std::borrow::Cow;

use crate::playbook::{AptState, ComposeCommand};
use crate::sh;

mod chain;
pub mod files;
pub mod frame;
pub mod lock;
pub(crate) mod script;
mod split;
pub mod vars;

pub use chain::{Driver, Segment, driver, kill_request, stop_cleanup, stop_request, tagged};
pub use files::{RemoteFile, STALE_TEMP_MINUTES, upload, upload_cleanup};
pub use script::{Octal, Script, ShellArg, Var};
pub use split::{Split, StepSplitter};

/// Runs `script` under `sh -c` with `stdin`, as a host would: for the scripts' own tests.
#[cfg(test)]
pub(crate) fn run_in_sh(script: &str, stdin: &[u8]) -> crate::transport::ExecOutput {
    use std::io::Write;
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    crate::transport::ExecOutput {
        status: out.status.code().map(|c| c as u32),
        stdout: out.stdout,
        stderr: out.stderr,
        ..Default::default()
    }
}

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
    /// Not known yet: the first compose command finds out.
    Unknown,
}

/// Wraps `script` so it runs through sudo as root (or `user`), under `sh -c`.
///
/// Without a password: `sudo -n` (fails instead of prompting). With one, the channel's stdin
/// starts with the password line: when sudo needs no password for this user anyway (`-k -n`
/// succeeds), the shell reads that line away; otherwise `sudo -k -S -p ''` reads it (`-k`: a
/// cached credential never lets the line through to the command). The rest of stdin goes to
/// the command. The password is never on a command line. Becoming root when already root
/// runs the script directly (a fresh server may have no sudo yet).
pub fn sudo(script: &str, user: Option<&str>, with_password: bool) -> String {
    let target = match user {
        Some(u) => sh!(" -u {}", u),
        None => Script::default(),
    };
    let inner = sh!("sh -c {}", Script::trusted(quote_always(script)));
    let skip_line = if with_password {
        sh!("IFS= read -r _; ")
    } else {
        Script::default()
    };
    let via_sudo = if with_password {
        sh!(
            "if sudo -k -n{} true 2>/dev/null; then IFS= read -r _; exec sudo -n{} -- {}; else exec sudo -k -S -p ''{} -- {}; fi",
            target,
            target,
            inner,
            target,
            inner
        )
    } else {
        sh!("exec sudo -n{} -- {}", target, inner)
    };
    match user {
        Some(_) => via_sudo,
        None => sh!(
            "if [ \"$(id -u)\" = 0 ]; then {}exec {}; else {}; fi",
            skip_line,
            inner,
            via_sudo
        ),
    }
    .into_string()
}

/// Single-quotes `word` even when it would not need it (a script for `sh -c`).
fn quote_always(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// A user's `run` command (shell code by intent), in `dir` when given.
pub fn run(command: &str, dir: Option<&str>) -> String {
    match dir {
        Some(dir) => sh!("cd -- {} && {{\n{}\n}}", dir, Script::trusted(command)).into_string(),
        None => command.to_string(),
    }
}

/// What a guarded `run` prints (first line) when a guard holds and the command did not run.
pub const GUARD_HOLDS: &str = "dropship-guard: holds";

/// A `run` command behind its guards: skipped when `creates` exists or `unless` exits 0.
pub fn guarded_run(
    command: &str,
    dir: Option<&str>,
    creates: Option<&str>,
    unless: Option<&str>,
) -> String {
    let mut script = Script::default();
    if let Some(path) = creates {
        script.push(&sh!(
            "if [ -e {} ]; then echo {}; exit 0; fi\n",
            path,
            GUARD_HOLDS
        ));
    }
    if let Some(test) = unless {
        script.push(&sh!(
            "if {{\n{}\n}} >/dev/null 2>&1; then echo {}; exit 0; fi\n",
            Script::trusted(test),
            GUARD_HOLDS
        ));
    }
    script.push(&Script::trusted(run(command, dir)));
    script.into_string()
}

/// What the `apt` script prints last: `dropship-apt: ok` or `dropship-apt: changed PKG...`.
pub const APT_MARKER: &str = "dropship-apt:";

/// Installs (or removes) the packages not yet in the wanted state, in one script: `dpkg-query`
/// finds them; when there are none nothing else runs (no `apt-get update` either). apt-get
/// waits for the dpkg lock (`DPkg::Lock::Timeout`); `update` also retries while another apt
/// (e.g. unattended-upgrades at first boot) holds the lists lock. Package names are validated
/// when the playbook is read, so they need no quoting.
pub fn apt(packages: &[String], update: bool, state: AptState) -> String {
    let (wanted_installed, verb) = match state {
        AptState::Present => (false, "install -y --no-install-recommends"),
        AptState::Absent => (true, "remove -y"),
    };
    // `todo` collects the packages to act on: not installed (present) or installed (absent).
    let (on_installed, on_other) = if wanted_installed {
        ("todo=\"$todo $p\"", ":")
    } else {
        (":", "todo=\"$todo $p\"")
    };
    let mut script = String::from("set -e\nexport DEBIAN_FRONTEND=noninteractive\ntodo=\nfor p in");
    for p in packages {
        // Names are checked when the playbook is read; quoted all the same.
        script.push_str(sh!(" {}", p).as_str());
    }
    script.push_str(&format!(
        "; do\n  case \"$(dpkg-query -W -f='${{Status}}' \"$p\" 2>/dev/null || true)\" in\n    *' ok installed') {on_installed} ;;\n    *) {on_other} ;;\n  esac\ndone\nif [ -z \"$todo\" ]; then echo '{APT_MARKER} ok'; exit 0; fi\n"
    ));
    if update {
        script.push_str(
            "n=0\nuntil out=$(apt-get -o DPkg::Lock::Timeout=600 update -q 2>&1); do\n  case \"$out\" in\n    *'Could not get lock'*|*'Unable to lock'*) n=$((n+1)); if [ \"$n\" -ge 120 ]; then printf '%s\\n' \"$out\" >&2; exit 1; fi; sleep 5 ;;\n    *) printf '%s\\n' \"$out\" >&2; exit 1 ;;\n  esac\ndone\n",
        );
    }
    script.push_str(&format!(
        "apt-get -o DPkg::Lock::Timeout=600 {verb} $todo </dev/null\necho \"{APT_MARKER} changed$todo\"\n"
    ));
    script
}

/// Parses the `apt` script's last marker line: `None` when nothing changed, else the packages.
pub fn parse_apt(stdout: &str) -> Option<Vec<String>> {
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(APT_MARKER))?;
    let rest = line.trim().strip_prefix("changed")?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// `docker login` as a chain segment: the password is the segment's stdin, never on a
/// command line. A one-line password is read by the shell's `read` and handed over by the
/// `printf` builtin (no extra process); one with a newline goes through `head -c`.
pub fn docker_login(registry: &str, username: &str, password: &str) -> Segment {
    // `--username=VALUE` and `-- REGISTRY`: no value can become an option of docker's.
    let login = sh!(
        "docker login --username={} --password-stdin -- {}",
        username,
        registry
    );
    let (script, stdin) = if password.contains(['\n', '\0']) {
        (
            format!("head -c {} | {login}", password.len()),
            password.as_bytes().into(),
        )
    } else {
        (
            format!(
                "IFS= read -r dsp && printf '%s' \"$dsp\" | {login}; dss=$?; dsp=; [ $dss = 0 ]"
            ),
            format!("{password}\n").as_bytes().into(),
        )
    };
    Segment {
        script,
        stdin: Some(stdin),
        label: String::new(),
        cleanup: None,
    }
}

/// Finds how compose is invoked, with shell builtins only: the compose plugin where the docker
/// CLI looks for plugins, else `docker-compose` on the PATH, else (a plugin in a custom place)
/// whether `docker compose version` works. Sets `$dsf`; prints `compose=plugin|standalone|none`
/// as the first line.
pub const COMPOSE_DETECT: &str = "dsf=none
for dsd in \"${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins\" /usr/local/lib/docker/cli-plugins /usr/local/libexec/docker/cli-plugins /usr/lib/docker/cli-plugins /usr/libexec/docker/cli-plugins; do [ -x \"$dsd/docker-compose\" ] && { dsf=plugin; break; }; done
[ $dsf != none ] || ! command -v docker-compose >/dev/null 2>&1 || dsf=standalone
[ $dsf != none ] || ! docker compose version >/dev/null 2>&1 || dsf=plugin
echo compose=$dsf";

/// A compose command as a chain segment, in `dir`, stdin closed. With the flavour still
/// `Unknown` it follows `$dsf` from `COMPOSE_DETECT`, which must run first in the same script.
pub fn compose(
    flavor: ComposeFlavor,
    command: ComposeCommand,
    dir: &str,
    project: &str,
    services: &[String],
) -> String {
    if flavor == ComposeFlavor::Unknown {
        let plugin = compose(ComposeFlavor::Plugin, command, dir, project, services);
        let standalone = compose(ComposeFlavor::Standalone, command, dir, project, services);
        return format!(
            "case $dsf in plugin) {plugin} ;; standalone) {standalone} ;; *) false ;; esac"
        );
    }
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
    let mut script = sh!(
        "(cd -- {} && exec {} -p {} {}",
        dir,
        Script::trusted(tool),
        project,
        Script::trusted(args)
    );
    if !services.is_empty() {
        script.push(&sh!(" --"));
    }
    for service in services {
        script.push(&sh!(" {}", service));
    }
    script.push(&sh!(") </dev/null"));
    script.into_string()
}

/// The flavour line `COMPOSE_DETECT` printed first, and the rest.
pub fn split_compose_flavor(stdout: &[u8]) -> (Option<ComposeFlavor>, &[u8]) {
    let (first, rest) = match stdout.iter().position(|b| *b == b'\n') {
        Some(i) => (&stdout[..i], &stdout[i + 1..]),
        None => (stdout, &stdout[stdout.len()..]),
    };
    let flavor = match first {
        b"compose=plugin" => ComposeFlavor::Plugin,
        b"compose=standalone" => ComposeFlavor::Standalone,
        b"compose=none" => ComposeFlavor::Missing,
        _ => return (None, stdout),
    };
    (Some(flavor), rest)
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
    fn unknown_compose_flavor_is_found_with_builtins_first() {
        let s = compose(
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
        assert_eq!(
            split_compose_flavor(b"compose=standalone\nPulling\n"),
            (Some(ComposeFlavor::Standalone), &b"Pulling\n"[..])
        );
        assert_eq!(split_compose_flavor(b"other\n"), (None, &b"other\n"[..]));
        // In a real shell: a plugin in $DOCKER_CONFIG wins over docker-compose on the PATH.
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("cli-plugins");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&plugins).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        // The system's plugin directories moved into the test's dir: what this machine has
        // installed must not decide the outcome.
        let isolated = COMPOSE_DETECT.replace(" /usr/", &format!(" {}/usr/", dir.path().display()));
        assert_ne!(isolated, COMPOSE_DETECT);
        let detect = |path: &str| {
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(&isolated)
                .env("DOCKER_CONFIG", dir.path())
                .env("PATH", path)
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        let executable = |p: &std::path::Path| {
            std::fs::write(p, "#!/bin/sh\nexit 1\n").unwrap();
            std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        };
        // Only this test's bin on the PATH (sh finds its builtins without one).
        let path = bin.display().to_string();
        assert_eq!(detect(&path), "compose=none\n");
        executable(&bin.join("docker-compose"));
        assert_eq!(detect(&path), "compose=standalone\n");
        executable(&plugins.join("docker-compose"));
        assert_eq!(detect(&path), "compose=plugin\n");
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
            "(cd -- '/srv/x y' && exec docker compose -p pixel up -d --remove-orphans -- web) </dev/null"
        );
        let s = compose(
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
    fn login_reads_exactly_the_password_from_stdin() {
        let one_line = docker_login("registry.example.com:5000", "deploy", "pa ss");
        assert_eq!(
            one_line.script,
            r#"IFS= read -r dsp && printf '%s' "$dsp" | docker login --username=deploy --password-stdin -- 'registry.example.com:5000'; dss=$?; dsp=; [ $dss = 0 ]"#
        );
        assert_eq!(one_line.stdin.as_deref(), Some(&b"pa ss\n"[..]));
        let two_lines = docker_login("r", "u", "a\nb");
        assert_eq!(
            two_lines.script,
            "head -c 3 | docker login --username=u --password-stdin -- r"
        );
        assert_eq!(two_lines.stdin.as_deref(), Some(&b"a\nb"[..]));
    }

    #[test]
    fn sudo_wraps_the_script_once_and_keeps_the_password_off_the_command_line() {
        assert_eq!(
            sudo("id -u > '/tmp/x'", None, false),
            r#"if [ "$(id -u)" = 0 ]; then exec sh -c 'id -u > '\''/tmp/x'\'''; else exec sudo -n -- sh -c 'id -u > '\''/tmp/x'\'''; fi"#
        );
        assert_eq!(
            sudo("whoami", Some("postgres"), false),
            "exec sudo -n -u postgres -- sh -c 'whoami'"
        );
        assert_eq!(
            sudo("cat > f", Some("app"), true),
            "if sudo -k -n -u app true 2>/dev/null; then IFS= read -r _; exec sudo -n -u app -- sh -c 'cat > f'; else exec sudo -k -S -p '' -u app -- sh -c 'cat > f'; fi"
        );
        assert_eq!(
            sudo("cat > f", None, true),
            r#"if [ "$(id -u)" = 0 ]; then IFS= read -r _; exec sh -c 'cat > f'; else if sudo -k -n true 2>/dev/null; then IFS= read -r _; exec sudo -n -- sh -c 'cat > f'; else exec sudo -k -S -p '' -- sh -c 'cat > f'; fi; fi"#
        );
    }

    #[test]
    fn apt_acts_only_on_packages_not_in_the_wanted_state() {
        let s = apt(
            &["docker.io".into(), "curl".into()],
            true,
            AptState::Present,
        );
        let head = r#"set -e
export DEBIAN_FRONTEND=noninteractive
todo=
for p in docker.io curl; do
  case "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" in
    *' ok installed') : ;;
    *) todo="$todo $p" ;;
  esac
done
if [ -z "$todo" ]; then echo 'dropship-apt: ok'; exit 0; fi
"#;
        assert!(s.starts_with(head), "{s}");
        assert!(s.contains("until out=$(apt-get -o DPkg::Lock::Timeout=600 update -q 2>&1); do"));
        assert!(s.ends_with("apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends $todo </dev/null\necho \"dropship-apt: changed$todo\"\n"), "{s}");
        let s = apt(&["ufw".into()], false, AptState::Absent);
        assert!(s.contains("*' ok installed') todo=\"$todo $p\" ;;\n    *) : ;;"));
        assert!(!s.contains("update"));
        assert!(s.contains("apt-get -o DPkg::Lock::Timeout=600 remove -y $todo"));
        assert_eq!(parse_apt("Reading...\ndropship-apt: ok\n"), None);
        assert_eq!(
            parse_apt("x\ndropship-apt: changed curl jq\n"),
            Some(vec!["curl".to_string(), "jq".to_string()])
        );
    }

    #[test]
    fn guarded_runs_check_creates_then_unless() {
        assert_eq!(
            guarded_run("make", Some("/srv"), Some("/srv/out"), Some("test -f x")),
            "if [ -e /srv/out ]; then echo 'dropship-guard: holds'; exit 0; fi\nif {\ntest -f x\n} >/dev/null 2>&1; then echo 'dropship-guard: holds'; exit 0; fi\ncd -- /srv && {\nmake\n}"
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

    #[test]
    fn hostile_values_reach_commands_as_single_arguments_never_as_code_or_options() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        // A docker that records its arguments, one per line in brackets, and where it ran.
        std::fs::write(
            bin.join("docker"),
            "#!/bin/sh\nprintf '[%s]\\n' \"$@\" > \"$ARGV\"; pwd >> \"$ARGV\"; cat >/dev/null\n",
        )
        .unwrap();
        std::fs::set_permissions(
            bin.join("docker"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let argv = dir.path().join("argv");
        let sh = |script: &str, stdin: &[u8]| {
            use std::io::Write;
            let mut child = std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .current_dir(&work)
                .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
                .env("ARGV", &argv)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(stdin).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{script}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        let args = || std::fs::read_to_string(&argv).unwrap();
        for (i, value) in script::tests::HOSTILE.iter().enumerate() {
            if value.is_empty() {
                continue;
            }
            let login = docker_login(value, value, "pw");
            sh(&login.script, &login.stdin.unwrap());
            assert_eq!(
                args(),
                format!(
                    "[login]\n[--username={value}]\n[--password-stdin]\n[--]\n[{value}]\n{}\n",
                    work.display()
                )
            );
            let app = work.join(format!("{i}")).join(value);
            std::fs::create_dir_all(&app).unwrap();
            let app = app.to_str().unwrap();
            sh(
                &compose(
                    ComposeFlavor::Plugin,
                    ComposeCommand::Up,
                    app,
                    value,
                    &[value.to_string()],
                ),
                b"",
            );
            assert_eq!(
                args(),
                format!(
                    "[compose]\n[-p]\n[{value}]\n[up]\n[-d]\n[--remove-orphans]\n[--]\n[{value}]\n{app}\n"
                )
            );
            assert_eq!(sh(&run("pwd", Some(app)), b""), format!("{app}\n"));
            assert_eq!(
                sh(&guarded_run("echo ran", None, Some(value), None), b""),
                "ran\n"
            );
            let as_root = sudo(&run("printf '%s' ok", Some(app)), None, false);
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } == 0 {
                assert_eq!(sh(&as_root, b""), "ok");
            }
        }
        let names: Vec<_> = std::fs::read_dir(&work)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            names.iter().all(|n| n.parse::<usize>().is_ok()),
            "{names:?}"
        );
    }
}
