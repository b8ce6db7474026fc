//! Scripts too long for a command line: Linux takes at most 128 KiB in one argument
//! (`MAX_ARG_STRLEN`), and sshd hands the command to the shell as one (`sh -c COMMAND`), sudo
//! as another. A longer script (a directory of many files, a probe of thousands of paths)
//! goes first on stdin instead, behind a short loader that reads exactly its bytes (`head -c`
//! never reads past its count), checks their sha256 (a transfer cut short runs nothing) and
//! `eval`s them in the same shell, the rest of stdin left to the script as before.
//! May import: `remote::{script, vars}`.

use sha2::{Digest, Sha256};

use super::vars;
use crate::sh;

/// The longest command sent as it is, with room below the kernel's 128 KiB for sudo's
/// wrapping (which repeats and re-quotes the script) and the environment.
pub const COMMAND_LINE_LIMIT: usize = 100 * 1024;

/// A script ready to send: the command line and, when the script travels on stdin, the bytes
/// that must go first there (after a sudo password line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sendable {
    pub command: String,
    pub stdin_first: Option<Vec<u8>>,
}

/// `script` as it is when `command_len` (its length once wrapped for sudo, if it is) fits on a
/// command line; else a loader that reads it from stdin. The loader keeps the script's first
/// driver marker (`@@dropship:NONCE:`) in a comment: `driver::kill_request` finds a running
/// driver by that text in the process list.
pub fn sendable(script: &str, command_len: usize) -> Sendable {
    if command_len <= COMMAND_LINE_LIMIT {
        return Sendable {
            command: script.to_string(),
            stdin_first: None,
        };
    }
    // `$(…)` drops trailing newlines: what is sent, counted and hashed has none.
    let body = script.trim_end_matches('\n');
    let hash = hex::encode(Sha256::digest(body.as_bytes()));
    let tag = marker(script)
        .map(|m| format!("# {m}\n"))
        .unwrap_or_default();
    let load = sh!(
        "if {}=$(exec head -c {}) && [ \"$(printf %s \"${}\" | sha256sum)\" = {} ]; then eval \"${}\"; \
         else echo 'dropship: the script sent on stdin did not arrive whole' >&2; exit 1; fi",
        vars::LOADED_SCRIPT,
        body.len(),
        vars::LOADED_SCRIPT,
        format!("{hash}  -"),
        vars::LOADED_SCRIPT
    );
    Sendable {
        command: format!("{tag}{}", load.as_str()),
        stdin_first: Some(body.as_bytes().to_vec()),
    }
}

/// The first `@@dropship:NONCE:` in `script` (NONCE: 16 hex digits), if any.
fn marker(script: &str) -> Option<&str> {
    const START: &str = "@@dropship:";
    script.match_indices(START).find_map(|(at, _)| {
        let end = at + START.len() + 17;
        let candidate = script.get(at..end)?;
        let nonce = &candidate[START.len()..candidate.len() - 1];
        (nonce.bytes().all(|b| b.is_ascii_hexdigit()) && candidate.ends_with(':'))
            .then_some(candidate)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a sendable in a real `sh` with `rest` after it on stdin.
    fn run(sendable: &Sendable, rest: &[u8]) -> crate::transport::ExecOutput {
        let mut stdin = sendable.stdin_first.clone().unwrap_or_default();
        stdin.extend_from_slice(rest);
        crate::remote::run_in_sh(&sendable.command, &stdin)
    }

    #[test]
    fn a_long_script_runs_from_stdin_and_leaves_the_rest_of_stdin_to_itself() {
        let padding = format!("# {}\n", "x".repeat(COMMAND_LINE_LIMIT));
        let script = format!(
            "a='it'\\''s'; echo \"$a\"\n{padding}printf '%s|' \"$(head -c 3)\"; cat; exit 7\n\n"
        );
        let short = sendable("echo hi", 7);
        assert_eq!(short.command, "echo hi");
        assert_eq!(short.stdin_first, None);
        let long = sendable(&script, script.len());
        assert!(long.command.len() < 400, "{}", long.command);
        let out = run(&long, b"abcdef");
        assert_eq!(out.status, Some(7));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "it's\nabc|def");
        // Cut short or altered on the way: nothing of it runs.
        let mut cut = long.clone();
        cut.stdin_first.as_mut().unwrap().truncate(script.len() / 2);
        let out = crate::remote::run_in_sh(&cut.command, cut.stdin_first.as_ref().unwrap());
        assert_eq!(out.status, Some(1));
        assert!(out.stdout.is_empty(), "{:?}", out.stdout);
        assert!(String::from_utf8_lossy(&out.stderr).contains("did not arrive whole"));
        let mut altered = long.clone();
        altered.stdin_first.as_mut().unwrap()[0] = b'b';
        let out = run(&altered, b"");
        assert_eq!(out.status, Some(1));
        assert!(out.stdout.is_empty());
    }

    #[test]
    fn the_loader_keeps_the_driver_marker_for_kill_requests() {
        let script = format!(
            "dsn=x; printf '\\n@@dropship:0123456789abcdef:0:%s@@\\n' 0\n#{}",
            "y".repeat(COMMAND_LINE_LIMIT)
        );
        let long = sendable(&script, script.len());
        assert!(
            long.command.starts_with("# @@dropship:0123456789abcdef:\n"),
            "{}",
            long.command
        );
        assert_eq!(marker("@@dropship:xyz: @@dropship:0123"), None);
    }
}
