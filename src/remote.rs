//! What runs on a host: the shell scripts for every action, quoted in one place, and their parsing.

use std::borrow::Cow;

use crate::plan::Upload;
use crate::playbook::{AptState, ComposeCommand};

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

/// The current sha256, mode, owner and group of a remote file, if it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    pub sha256: String,
    pub mode: u32,
    pub owner: String,
    pub group: String,
}

impl RemoteFile {
    /// Whether this file already is what `upload` would write (owner and group only count when
    /// the step asks for them).
    pub fn matches(&self, upload: &Upload) -> bool {
        self.sha256 == upload.sha256
            && self.mode == upload.mode
            && upload.owner.as_ref().is_none_or(|o| *o == self.owner)
            && upload.group.as_ref().is_none_or(|g| *g == self.group)
    }
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
        Some(u) => format!(" -u {}", quote(u)),
        None => String::new(),
    };
    let inner = format!("sh -c {}", quote_always(script));
    let skip_line = if with_password {
        "IFS= read -r _; "
    } else {
        ""
    };
    let via_sudo = if with_password {
        format!(
            "if sudo -k -n{target} true 2>/dev/null; then IFS= read -r _; exec sudo -n{target} -- {inner}; else exec sudo -k -S -p ''{target} -- {inner}; fi"
        )
    } else {
        format!("exec sudo -n{target} -- {inner}")
    };
    match user {
        Some(_) => via_sudo,
        None => {
            format!("if [ \"$(id -u)\" = 0 ]; then {skip_line}exec {inner}; else {via_sudo}; fi")
        }
    }
}

/// Single-quotes `word` even when it would not need it (a script for `sh -c`).
fn quote_always(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// One script that reports every destination file's sha256 and mode/owner/group: one round
/// trip, and two processes for all files (`sha256sum` and `stat` each get every path).
pub fn probe(dests: &[&str]) -> String {
    let mut script = String::new();
    if !dests.is_empty() {
        let mut files = String::new();
        for d in dests {
            files.push(' ');
            files.push_str(&quote(d));
        }
        script.push_str(&format!(
            "sha256sum --{files} 2>/dev/null; echo '{PROBE_SPLIT}'; stat -c '%F|%a|%U|%G|%n' --{files} 2>/dev/null; echo '{PROBE_SPLIT}'\n"
        ));
    }
    script
}

const PROBE_SPLIT: &str = "--dropship--";

/// Parses `probe`'s output: one entry per destination (`None`: no regular file there), then
/// the compose flavour.
pub fn parse_probe(stdout: &str, dests: &[&str]) -> Option<Vec<Option<RemoteFile>>> {
    let mut files = vec![None; dests.len()];
    if !dests.is_empty() {
        let (sums, after) = stdout.split_once(&format!("{PROBE_SPLIT}\n"))?;
        let (stats, _) = after.split_once(&format!("{PROBE_SPLIT}\n"))?;
        let mut sha_of = std::collections::HashMap::new();
        for line in sums.lines() {
            // `HASH  PATH`; sha256sum escapes odd paths with a leading `\`: those stay unknown
            // and are simply rewritten.
            if let Some((hash, path)) = line.split_once("  ") {
                sha_of.insert(path, hash);
            }
        }
        for line in stats.lines() {
            let mut parts = line.splitn(5, '|');
            let (kind, mode, owner, group, path) = (
                parts.next()?,
                parts.next()?,
                parts.next()?,
                parts.next()?,
                parts.next()?,
            );
            if kind != "regular file" && kind != "regular empty file" {
                continue;
            }
            let (Some(index), Some(hash)) =
                (dests.iter().position(|d| *d == path), sha_of.get(path))
            else {
                continue;
            };
            files[index] = Some(RemoteFile {
                sha256: (*hash).to_string(),
                mode: u32::from_str_radix(mode, 8).ok()?,
                owner: owner.to_string(),
                group: group.to_string(),
            });
        }
    }
    Some(files)
}

/// Writes stdin to `dest` atomically: a temporary file in the same directory (created 0600 by
/// mktemp, so secrets are never world-readable), chown (when asked), chmod, then rename over
/// the old file.
pub fn upload(upload: &Upload) -> String {
    let dest = quote(&upload.dest);
    let chown = match (&upload.owner, &upload.group) {
        (None, None) => String::new(),
        (owner, group) => format!(
            " chown {}{} \"$t\";",
            owner.as_deref().map(quote).unwrap_or_default(),
            group
                .as_deref()
                .map(|g| format!(":{}", quote(g)))
                .unwrap_or_default()
        ),
    };
    format!(
        "set -e; d=$(dirname -- {dest}); mkdir -p -- \"$d\"; t=$(mktemp \"$d/.dropship.XXXXXX\"); trap 'rm -f -- \"$t\"' EXIT; cat > \"$t\";{chown} chmod {mode:04o} \"$t\"; mv -f -- \"$t\" {dest}; trap - EXIT",
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

/// What a guarded `run` prints (first line) when a guard holds and the command did not run.
pub const GUARD_HOLDS: &str = "dropship-guard: holds";

/// A `run` command behind its guards: skipped when `creates` exists or `unless` exits 0.
pub fn guarded_run(
    command: &str,
    dir: Option<&str>,
    creates: Option<&str>,
    unless: Option<&str>,
) -> String {
    let mut script = String::new();
    if let Some(path) = creates {
        script.push_str(&format!(
            "if [ -e {} ]; then echo '{GUARD_HOLDS}'; exit 0; fi\n",
            quote(path)
        ));
    }
    if let Some(test) = unless {
        script.push_str(&format!(
            "if {{\n{test}\n}} >/dev/null 2>&1; then echo '{GUARD_HOLDS}'; exit 0; fi\n"
        ));
    }
    script.push_str(&run(command, dir));
    script
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
        script.push(' ');
        script.push_str(p);
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

/// `docker login`; the password goes on stdin, never on the command line.
pub fn docker_login(registry: &str, username: &str) -> String {
    format!(
        "docker login {} --username {} --password-stdin",
        quote(registry),
        quote(username)
    )
}

/// A compose command. With the flavour still `Unknown`, the script finds it first (the plugin,
/// else the standalone tool) and prints `compose=plugin|standalone|none` as its first line.
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
            "if docker compose version >/dev/null 2>&1; then echo compose=plugin; {plugin}; \
             elif command -v docker-compose >/dev/null 2>&1; then echo compose=standalone; {standalone}; \
             else echo compose=none; exit 127; fi"
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
    let mut script = format!("cd {} && {tool} -p {} {args}", quote(dir), quote(project));
    for service in services {
        script.push(' ');
        script.push_str(&quote(service));
    }
    script
}

/// The flavour line an `Unknown`-flavour compose script printed first, and the rest.
pub fn split_compose_flavor(stdout: &str) -> (Option<ComposeFlavor>, &str) {
    let (first, rest) = stdout.split_once('\n').unwrap_or((stdout, ""));
    let flavor = match first {
        "compose=plugin" => ComposeFlavor::Plugin,
        "compose=standalone" => ComposeFlavor::Standalone,
        "compose=none" => ComposeFlavor::Missing,
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
    fn probe_reports_each_file_in_a_real_shell() {
        let dir = tempfile::tempdir().unwrap();
        let present = dir.path().join("a b.txt");
        std::fs::write(&present, "hello\n").unwrap();
        std::fs::set_permissions(
            &present,
            std::os::unix::fs::PermissionsExt::from_mode(0o640),
        )
        .unwrap();
        let missing = dir.path().join("missing");
        let a_dir = dir.path().join("sub");
        std::fs::create_dir(&a_dir).unwrap();
        let dests = [
            present.to_str().unwrap(),
            missing.to_str().unwrap(),
            a_dir.to_str().unwrap(),
        ];
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(probe(&dests))
            .output()
            .unwrap();
        assert!(out.status.success());
        let files = parse_probe(&String::from_utf8_lossy(&out.stdout), &dests).unwrap();
        let file = files[0].clone().unwrap();
        // sha256 of "hello\n"
        assert_eq!(
            file.sha256,
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
        assert_eq!(file.mode, 0o640);
        assert_eq!(files[1], None);
        assert_eq!(files[2], None, "a directory is not a file to compare");
        assert!(
            parse_probe("abc  /x\n", &["/x"]).is_none(),
            "truncated output is an error"
        );
    }

    #[test]
    fn unknown_compose_flavor_is_found_by_the_first_command() {
        let s = compose(
            ComposeFlavor::Unknown,
            ComposeCommand::Pull,
            "/srv",
            "p",
            &[],
        );
        assert!(s.starts_with("if docker compose version >/dev/null 2>&1; then echo compose=plugin; cd /srv && docker compose -p p pull;"), "{s}");
        assert!(
            s.contains("echo compose=standalone; cd /srv && docker-compose -p p pull;"),
            "{s}"
        );
        assert_eq!(
            split_compose_flavor("compose=standalone\nPulling\n"),
            (Some(ComposeFlavor::Standalone), "Pulling\n")
        );
        assert_eq!(split_compose_flavor("other\n"), (None, "other\n"));
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
    fn uploads_chown_before_chmod_and_rename() {
        let mut u = crate::plan::upload("/etc/app/x y".into(), 0o600, b"hi"[..].into(), false);
        assert!(!upload(&u).contains("chown"));
        u.owner = Some("root".into());
        u.group = Some("adm".into());
        assert_eq!(
            upload(&u),
            r#"set -e; d=$(dirname -- '/etc/app/x y'); mkdir -p -- "$d"; t=$(mktemp "$d/.dropship.XXXXXX"); trap 'rm -f -- "$t"' EXIT; cat > "$t"; chown root:adm "$t"; chmod 0600 "$t"; mv -f -- "$t" '/etc/app/x y'; trap - EXIT"#
        );
        u.owner = None;
        assert!(upload(&u).contains(r#"; chown :adm "$t"; chmod 0600"#));
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
            "if [ -e /srv/out ]; then echo 'dropship-guard: holds'; exit 0; fi\nif {\ntest -f x\n} >/dev/null 2>&1; then echo 'dropship-guard: holds'; exit 0; fi\ncd /srv && {\nmake\n}"
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
