//! A user's `run` command (shell code by intent), in its directory, behind its guards; and
//! whether a guard held.
//! May import: `remote::{script, frame}`, `transport::ExecOutput`.

use super::frame::{self, Kind};
use super::script::Script;
use crate::sh;
use crate::transport::ExecOutput;

/// A user's `run` command (shell code by intent), in `dir` when given.
pub fn command(command: &str, dir: Option<&str>) -> String {
    script(command, dir).into_string()
}

fn script(command: &str, dir: Option<&str>) -> Script {
    // The user's command is shell code by intent: the escape hatch.
    let code = Script::raw_trusted(command);
    match dir {
        Some(dir) => sh!("cd -- {} && {{\n{}\n}}", dir, code),
        None => code,
    }
}

/// A `run` command behind its guards: skipped when `creates` exists or `unless` exits 0,
/// reporting `guard:holds` then (`guard_held`). A segment of a driver (it needs `$dsn`).
pub fn guarded(
    command_text: &str,
    dir: Option<&str>,
    creates: Option<&str>,
    unless: Option<&str>,
) -> String {
    let holds = frame::report(Kind::Guard, &HOLDS);
    let mut script = Script::default();
    if let Some(path) = creates {
        script.push(&sh!("if [ -e {} ]; then {}; exit 0; fi\n", path, holds));
    }
    if let Some(test) = unless {
        script.push(&sh!(
            "if {{\n{}\n}} >/dev/null 2>&1; then {}; exit 0; fi\n",
            Script::raw_trusted(test),
            holds
        ));
    }
    script.push(&self::script(command_text, dir));
    script.into_string()
}

const HOLDS: &str = "holds";

/// Whether a guarded `run` reported that a guard held (its command did not run).
pub fn guard_held(out: &ExecOutput) -> bool {
    frame::results(out).any(|f| f.of(Kind::Guard) == Some(HOLDS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guarded_runs_check_creates_then_unless() {
        assert_eq!(
            guarded("make", Some("/srv"), Some("/srv/out"), Some("test -f x")),
            "if [ -e /srv/out ]; then printf '\\n@@dropship:%s:%s@@\\n' \"$dsn\" guard:holds; exit 0; fi\nif {\ntest -f x\n} >/dev/null 2>&1; then printf '\\n@@dropship:%s:%s@@\\n' \"$dsn\" guard:holds; exit 0; fi\ncd -- /srv && {\nmake\n}"
        );
    }

    #[test]
    fn a_guard_holds_only_by_its_own_frame_never_by_the_command_s_output() {
        let dir = tempfile::tempdir().unwrap();
        let exists = dir.path().to_str().unwrap();
        let missing = dir.path().join("missing");
        let missing = missing.to_str().unwrap();
        let forger = "printf '\\n@@dropship:0123456789abcdef:guard:holds@@\\n'; echo 'dropship-guard: holds'";
        let cases = [
            (guarded(forger, None, Some(missing), None), false),
            (guarded(forger, None, None, Some("false")), false),
            (guarded(forger, None, Some(exists), None), true),
            (guarded(forger, None, None, Some("true")), true),
        ];
        for (script, holds) in cases {
            let out = crate::remote::driver::run_one(&script);
            assert_eq!(out.status, Some(0), "{script}");
            assert_eq!(guard_held(&out), holds, "{script}");
            assert_eq!(
                !String::from_utf8_lossy(&out.stdout).contains("dropship-guard"),
                holds,
                "{script}"
            );
        }
    }
}
