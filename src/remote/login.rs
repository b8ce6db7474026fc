//! `docker login` on a host, the password fed on stdin.
//! May import: `remote::{script, vars, driver}`.

use super::driver::Segment;
use super::vars;
use crate::sh;

/// `docker login` as a chain segment: the password is the segment's stdin, never on a
/// command line. A one-line password is read by the shell's `read` and handed over by the
/// `printf` builtin (no extra process); one with a newline goes through `head -c`.
pub fn docker(registry: &str, username: &str, password: &str) -> Segment {
    // `--username=VALUE` and `-- REGISTRY`: no value can become an option of docker's.
    let login = sh!(
        "docker login --username={} --password-stdin -- {}",
        username,
        registry
    );
    let (script, stdin) = if password.contains(['\n', '\0']) {
        (
            sh!("head -c {} | {}", password.len(), login),
            password.as_bytes().into(),
        )
    } else {
        // The status goes through the driver's own status variable (set again right after).
        (
            sh!(
                "IFS= read -r dsp && printf '%s' \"$dsp\" | {}; {}=$?; dsp=; [ {} = 0 ]",
                login,
                vars::STATUS,
                vars::STATUS.bare()
            ),
            format!("{password}\n").as_bytes().into(),
        )
    };
    Segment {
        script: script.into_string(),
        stdin: vec![stdin],
        label: String::new(),
        cleanup: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_reads_exactly_the_password_from_stdin() {
        let one_line = docker("registry.example.com:5000", "deploy", "pa ss");
        assert_eq!(
            one_line.script,
            r#"IFS= read -r dsp && printf '%s' "$dsp" | docker login --username=deploy --password-stdin -- 'registry.example.com:5000'; dss=$?; dsp=; [ $dss = 0 ]"#
        );
        assert_eq!(one_line.stdin.concat(), b"pa ss\n");
        let two_lines = docker("r", "u", "a\nb");
        assert_eq!(
            two_lines.script,
            "head -c 3 | docker login --username=u --password-stdin -- r"
        );
        assert_eq!(two_lines.stdin.concat(), b"a\nb");
    }
}
