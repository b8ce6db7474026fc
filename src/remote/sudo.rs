//! Becoming another user: a script wrapped so it runs through sudo (or directly, as root).
//! May import: `remote::script`.

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
}
