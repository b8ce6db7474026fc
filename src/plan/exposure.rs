//! Keeping secrets off command lines: every rendered value bound for a command line is
//! checked against every secret value, whatever way the template reached it.

use crate::diagnostic::{InputError, SourceFile};
use crate::secrets::Secret;
use crate::steps::CommandLineValue;

/// A value that must never reach a command line, with how to name it in an error.
pub(super) struct Guarded<'a> {
    pub label: String,
    pub value: &'a Secret,
}

impl Guarded<'_> {
    fn occurs_in(&self, text: &str) -> bool {
        let value = self.value.expose();
        !value.is_empty() && text.contains(value)
    }
}

const HINT: &str = "write the secret into a file with a `template` step (e.g. an env file, mode = \"0600\") and read it from that file on the host; docker_login's `password` and `become_password` are sent on stdin";

/// Fails at the first value of `host`'s command lines that holds any guarded value.
pub(super) fn check_command_lines(
    playbook: &SourceFile,
    host: &str,
    values: &[CommandLineValue],
    guarded: &[Guarded<'_>],
) -> Result<(), InputError> {
    for value in values {
        if let Some(g) = guarded.iter().find(|g| g.occurs_in(&value.text)) {
            return Err(playbook
                .error_at(
                    value.span.clone(),
                    format!(
                        "this value would put {} on a command line (host `{host}`), where other users of the host can read it",
                        g.label
                    ),
                )
                .with_hint(HINT));
        }
    }
    Ok(())
}

/// Fails when the host's address or SSH user holds a guarded value: both are shown in
/// output and logs.
pub(super) fn check_host_settings(
    host: &str,
    address: &str,
    user: &str,
    guarded: &[Guarded<'_>],
) -> Result<(), InputError> {
    for (what, text) in [("address", address), ("SSH user", user)] {
        if let Some(g) = guarded.iter().find(|g| g.occurs_in(text)) {
            return Err(
                InputError::plain(format!("host `{host}`: its {what} holds {}", g.label))
                    .with_hint("check the inventory: secrets belong in file contents or on stdin"),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_secret_never_its_value() {
        let file = SourceFile {
            path: "pb.toml".into(),
            text: "run = \"x\"\n".into(),
        };
        let secret = Secret::new("hunter2");
        let empty = Secret::new("");
        let guarded = [
            Guarded {
                label: "secret `empty`".into(),
                value: &empty,
            },
            Guarded {
                label: "secret `pw`".into(),
                value: &secret,
            },
        ];
        let ok = CommandLineValue {
            span: 6..9,
            text: "echo hunter".into(),
        };
        assert!(check_command_lines(&file, "h1", std::slice::from_ref(&ok), &guarded).is_ok());
        let leak = CommandLineValue {
            span: 6..9,
            text: "echo {'pw': 'hunter2'}".into(),
        };
        let err = check_command_lines(&file, "h1", &[ok, leak], &guarded).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(
                "pb.toml:1:7: this value would put secret `pw` on a command line (host `h1`)"
            ),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
        assert!(check_host_settings("h1", "10.0.0.1", "hunter2x", &guarded).is_err());
        assert!(check_host_settings("h1", "10.0.0.1", "deploy", &guarded).is_ok());
    }
}
