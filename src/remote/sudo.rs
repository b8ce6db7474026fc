//! Becoming another user: a script wrapped so it runs through sudo (or directly, as root),
//! and, when sudo refused such a script, what the host's sudo rules allow and the rule the
//! step needs.
//! May import: `remote::{script, frame}`.

use super::frame::{self, Framed, Kind, Reply};
use super::script::{Script, SingleQuoted};
use crate::sh;

/// Wraps `script` so it runs through sudo as root (or `user`), under `sh -c`.
///
/// Without a password: `sudo -n` (fails instead of prompting). With one, the channel's stdin
/// starts with the password line: when sudo needs no password for this user anyway (`-k -n`
/// succeeds), the shell reads that line away; otherwise `sudo -k -S -p ''` reads it (`-k`: a
/// cached credential never lets the line through to the command). The rest of stdin goes to
/// the command. The password is never on a command line. Becoming root when already root
/// runs the script directly (a fresh server may have no sudo yet).
pub fn wrap(script: &str, user: Option<&str>, with_password: bool) -> String {
    let target = match user {
        Some(u) => sh!(" -u {}", u),
        None => Script::default(),
    };
    let inner = sh!("sh -c {}", SingleQuoted(script));
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

/// Whether a wrapped script's failure may be sudo refusing it: it printed nothing to stdout
/// (it never started: every script dropship sends through sudo reports something) and sudo
/// spoke on stderr (`sudo: a password is required`, `Sorry, user … is not allowed …`,
/// `sudo: not found`). Only a reason to ask the host with `rules`: that answer decides.
pub fn maybe_refused(stdout: &[u8], stderr: &[u8]) -> bool {
    stdout.is_empty()
        && String::from_utf8_lossy(stderr).lines().any(|l| {
            l.starts_with("sudo: ")
                || l.starts_with("Sorry, user ")
                || l.ends_with("sudo: not found")
        })
}

/// Asks the host, as the SSH user and without a password, what its sudo allows: who the user
/// is, whether sudo is installed, `sudo -n -l` (its rules; fails when sudo wants a password
/// even for that), `sudo -n -l [-u USER] sh` (whether `sh` may run as the step's user at all)
/// and whether `sudo -n [-u USER] -- sh -c :` runs now (then sudo refused nothing). Run only
/// after a refusal: it costs a round trip. Read the answer with `parse_rules`.
pub fn rules(user: Option<&str>) -> Framed {
    let target = match user {
        Some(u) => sh!(" -u {}", u),
        None => Script::default(),
    };
    Framed::new(&sh!(
        "{}; id -un; if ! command -v sudo >/dev/null 2>&1; then {}; exit 0; fi; \
         dso=$(LC_ALL=C sudo -n -l 2>&1); dss=$?; {}; printf '%s\\n' \"$dso\"; \
         dso=$(LC_ALL=C sudo -n -l{} -- sh 2>&1); dss=$?; {}; printf '%s\\n' \"$dso\"; \
         sudo -n{} -- sh -c : >/dev/null 2>&1 </dev/null; dss=$?; {}",
        frame::report(Kind::Sudo, &USER),
        frame::report(Kind::Sudo, &MISSING),
        frame::report(Kind::Sudo, &sh!("\"{}:$dss\"", LIST)),
        target,
        frame::report(Kind::Sudo, &sh!("\"{}:$dss\"", SHELL)),
        target,
        frame::report(Kind::Sudo, &sh!("\"{}:$dss\"", RUNS)),
    ))
}

const USER: &str = "user";
const MISSING: &str = "missing";
const LIST: &str = "list";
const SHELL: &str = "shell";
const RUNS: &str = "runs";

/// What the host's sudo said about the SSH user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SudoRules {
    /// The SSH user's name on the host.
    pub user: String,
    /// `None`: sudo is not installed.
    pub sudo: Option<Listing>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// `sudo -n -l` succeeded: the user's rules, as sudo prints them; `None`: sudo wants a
    /// password even to list them (no rule of the user is NOPASSWD).
    pub rules: Option<String>,
    /// `sudo -n -l sh` succeeded: `sh` is allowed (with or without a password).
    pub shell_allowed: bool,
    /// `sudo -n -- sh -c :` ran: no password is needed for `sh`.
    pub shell_runs: bool,
}

/// The answer to `rules`; `None` when it gave none (the script failed).
pub fn parse_rules(reply: &Reply) -> Option<SudoRules> {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().to_string();
    let (_, user) = reply.find(Kind::Sudo).filter(|(f, _)| *f == USER)?;
    let user = text(user);
    let mut listed = None;
    let mut shell = None;
    let mut runs = None;
    for (frame, data) in &reply.sections {
        match frame.of(Kind::Sudo).and_then(|f| f.split_once(':')) {
            Some((LIST, status)) => listed = Some((status == "0").then(|| text(data))),
            Some((SHELL, status)) => shell = Some(status == "0"),
            Some((RUNS, status)) => runs = Some(status == "0"),
            _ => {}
        }
    }
    let missing = reply
        .sections
        .iter()
        .any(|(f, _)| f.of(Kind::Sudo) == Some(MISSING));
    let sudo = match (missing, listed, shell, runs) {
        (true, ..) => None,
        (false, Some(rules), Some(shell_allowed), Some(shell_runs)) => Some(Listing {
            rules,
            shell_allowed,
            shell_runs,
        }),
        _ => return None,
    };
    Some(SudoRules { user, sudo })
}

/// Why sudo refused a `become` script, and the sudoers rule that lets it run: dropship sends a
/// step's commands as one script, `sudo -n [-u USER] -- sh -c SCRIPT`, so a rule for the
/// commands alone (`NOPASSWD: /usr/bin/docker`) is not enough. `target`: `become_user`, or
/// `None` for root; `with_password`: a `become_password` was given. `None` when sudo refuses
/// nothing (the failure was something else).
pub fn explain(rules: &SudoRules, target: Option<&str>, with_password: bool) -> Option<String> {
    let user = &rules.user;
    let runas = target.unwrap_or("root");
    let how = format!(
        "dropship runs a `become` step's commands as one script, `sudo{} -- sh -c SCRIPT`",
        if with_password { " -S" } else { " -n" }
    );
    let rule = |nopasswd: bool| {
        format!(
            "`{user} ALL=({runas}) {}/bin/sh`",
            if nopasswd { "NOPASSWD: " } else { "" }
        )
    };
    let Some(listing) = &rules.sudo else {
        return Some(format!(
            "sudo is not installed on this host: {how}; install it (the bootstrap playbook does) and give {user} the sudoers rule {}",
            rule(!with_password)
        ));
    };
    if listing.shell_runs && !with_password {
        return None;
    }
    let Some(rules_text) = &listing.rules else {
        // sudo wants a password even to list the rules: none of them is NOPASSWD.
        return Some(if with_password {
            format!(
                "sudo refused the become password of {user}, or its rules do not let it run `sh` as {runas} ({how}): check `become_password`; the sudoers rule it needs is {}",
                rule(false)
            )
        } else {
            format!(
                "sudo asks {user} for a password (none of its sudo rules is NOPASSWD) and {how}: give `become_password` (or `[become] password`) with a rule that allows `sh` as {runas}, or the sudoers rule it needs is {}",
                rule(true)
            )
        });
    };
    let allowed: Vec<&str> = rules_text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('('))
        .collect();
    let shown = if allowed.is_empty() {
        format!("{user} may run nothing through sudo here")
    } else {
        format!("{user} may run only: {}", allowed.join("; "))
    };
    Some(match (listing.shell_allowed, with_password) {
        (true, false) => format!(
            "sudo wants a password for {user} to run `sh` as {runas} ({how}): give `become_password` (or `[become] password`), or the sudoers rule it needs is {}",
            rule(true)
        ),
        (true, true) => format!(
            "sudo refused the become password of {user} (its rules let it run `sh` as {runas}): check `become_password`"
        ),
        (false, _) => format!(
            "sudo does not let {user} run `sh` as {runas} ({shown}): {how}, so a rule for the commands alone is not enough; the sudoers rule it needs is {} (which allows any command as {runas}), or drop `become` from this step",
            rule(!with_password)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sudo_wraps_the_script_once_and_keeps_the_password_off_the_command_line() {
        assert_eq!(
            wrap("id -u > '/tmp/x'", None, false),
            r#"if [ "$(id -u)" = 0 ]; then exec sh -c 'id -u > '\''/tmp/x'\'''; else exec sudo -n -- sh -c 'id -u > '\''/tmp/x'\'''; fi"#
        );
        assert_eq!(
            wrap("whoami", Some("postgres"), false),
            "exec sudo -n -u postgres -- sh -c 'whoami'"
        );
        assert_eq!(
            wrap("cat > f", Some("app"), true),
            "if sudo -k -n -u app true 2>/dev/null; then IFS= read -r _; exec sudo -n -u app -- sh -c 'cat > f'; else exec sudo -k -S -p '' -u app -- sh -c 'cat > f'; fi"
        );
        assert_eq!(
            wrap("cat > f", None, true),
            r#"if [ "$(id -u)" = 0 ]; then IFS= read -r _; exec sh -c 'cat > f'; else if sudo -k -n true 2>/dev/null; then IFS= read -r _; exec sudo -n -- sh -c 'cat > f'; else exec sudo -k -S -p '' -- sh -c 'cat > f'; fi; fi"#
        );
    }

    fn answer(text: &str) -> Option<SudoRules> {
        // The script's frames, as `rules` prints them for the session's nonce.
        let request = rules(None);
        let nonce = request
            .script()
            .split_once('=')
            .map(|(_, rest)| rest.lines().next().unwrap().to_string())
            .unwrap();
        let stdout = text.replace("NONCE", &nonce);
        parse_rules(&request.reply(stdout.as_bytes()))
    }

    #[test]
    fn the_answer_is_read_whatever_sudo_printed() {
        let narrow = answer(
            "\n@@dropship:NONCE:sudo:user@@\ndeploy\n\n@@dropship:NONCE:sudo:list:0@@\nUser deploy may run the following commands on h:\n    (root) NOPASSWD: /usr/bin/docker\n\n@@dropship:NONCE:sudo:shell:1@@\n\n\n@@dropship:NONCE:sudo:runs:1@@\n",
        )
        .unwrap();
        assert_eq!(narrow.user, "deploy");
        let listing = narrow.sudo.clone().unwrap();
        assert!(!listing.shell_allowed);
        assert!(listing.rules.unwrap().contains("/usr/bin/docker"));
        let text = explain(&narrow, None, false).unwrap();
        assert!(
            text.starts_with("sudo does not let deploy run `sh` as root (deploy may run only: (root) NOPASSWD: /usr/bin/docker): "),
            "{text}"
        );
        assert!(
            text.contains("the sudoers rule it needs is `deploy ALL=(root) NOPASSWD: /bin/sh`"),
            "{text}"
        );
        assert!(
            explain(&narrow, Some("postgres"), true)
                .unwrap()
                .contains("`deploy ALL=(postgres) /bin/sh`")
        );

        let locked = answer(
            "\n@@dropship:NONCE:sudo:user@@\nbob\n\n@@dropship:NONCE:sudo:list:1@@\nsudo: a password is required\n\n@@dropship:NONCE:sudo:shell:1@@\nsudo: a password is required\n\n@@dropship:NONCE:sudo:runs:1@@\n",
        )
        .unwrap();
        assert_eq!(locked.sudo.as_ref().unwrap().rules, None);
        assert!(
            explain(&locked, None, false)
                .unwrap()
                .starts_with("sudo asks bob for a password (none of its sudo rules is NOPASSWD)")
        );
        assert!(
            explain(&locked, None, true)
                .unwrap()
                .ends_with("the sudoers rule it needs is `bob ALL=(root) /bin/sh`")
        );

        let missing =
            answer("\n@@dropship:NONCE:sudo:user@@\nbob\n\n@@dropship:NONCE:sudo:missing@@\n")
                .unwrap();
        assert_eq!(missing.sudo, None);
        assert!(
            explain(&missing, None, false)
                .unwrap()
                .starts_with("sudo is not installed on this host")
        );

        let mut needs_password = SudoRules {
            user: "bob".into(),
            sudo: Some(Listing {
                rules: Some("    (ALL : ALL) ALL".into()),
                shell_allowed: true,
                shell_runs: false,
            }),
        };
        assert!(
            explain(&needs_password, None, false)
                .unwrap()
                .starts_with("sudo wants a password for bob")
        );
        assert!(
            explain(&needs_password, None, true)
                .unwrap()
                .starts_with("sudo refused the become password")
        );
        // sudo runs `sh` without a password: whatever failed, it was not sudo.
        needs_password.sudo.as_mut().unwrap().shell_runs = true;
        assert_eq!(explain(&needs_password, None, false), None);

        // A frame missing: no answer, never a guess.
        assert_eq!(answer("\n@@dropship:NONCE:sudo:user@@\nbob\n"), None);
        assert_eq!(answer("sudo: a password is required\n"), None);
    }

    #[test]
    fn the_rules_script_runs_in_a_real_shell() {
        let request = rules(Some("-x; rm -rf /"));
        let out = crate::remote::run_in_sh(request.script(), b"");
        let answer = parse_rules(&request.reply(&out.stdout)).unwrap();
        assert!(!answer.user.is_empty());
        // Whatever this machine's sudo says, running as a user that does not exist (the
        // hostile name reached sudo as one argument) is never allowed.
        if let Some(listing) = answer.sudo {
            assert!(!listing.shell_allowed, "{out:?}");
        }
        assert!(maybe_refused(b"", b"sudo: a password is required\n"));
        assert!(!maybe_refused(b"x", b"sudo: a password is required\n"));
    }
}
