//! What runs on a host, one file per concern: every shell script dropship sends and the parser
//! of what it reports. Scripts are built with `sh!` (`script.rs`), which quotes every value;
//! results come back in one framing (`frame.rs`); shell variables shared between scripts are
//! named once (`vars.rs`).
//! May import: `playbook` (step enums), `release` (ids), `output`, `transport::ExecOutput`.

pub mod apt;
pub mod blue_green;
pub mod compose;
pub mod compose_build;
pub mod compose_command;
pub mod compose_preview;
pub mod diagnose;
pub mod driver;
pub mod ensure;
pub mod facts;
pub mod files;
pub mod frame;
pub mod images;
pub mod lock;
pub mod login;
pub mod long_script;
pub mod preview;
pub mod probe;
pub mod release;
pub mod release_binds;
pub mod run;
pub mod script;
pub mod split;
pub mod stack;
pub mod stack_converge;
pub mod sudo;
pub mod swarm;
pub mod tree;
pub mod vars;
pub mod views;

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

#[cfg(test)]
mod tests {
    use super::compose::{self, ComposeFlavor};
    use super::script::quote;

    #[test]
    fn quoting_survives_hostile_paths() {
        assert_eq!(quote("/srv/app"), "/srv/app");
        assert_eq!(quote("a b'c"), "'a b'\\''c'");
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
        for (i, value) in super::script::tests::HOSTILE.iter().enumerate() {
            if value.is_empty() {
                continue;
            }
            let login = super::login::docker(value, value, "pw");
            sh(&login.script, &login.stdin.concat());
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
                &compose::command(
                    ComposeFlavor::Plugin,
                    app,
                    value,
                    &compose::Request::Up(vec![value.to_string()]),
                ),
                b"",
            );
            assert_eq!(
                args(),
                format!(
                    "[compose]\n[-p]\n[{value}]\n[up]\n[-d]\n[--remove-orphans]\n[--]\n[{value}]\n{app}\n"
                )
            );
            // A command in a service: the service and every word of the command are data,
            // an empty word included.
            sh(
                &compose::command(
                    ComposeFlavor::Plugin,
                    app,
                    "p",
                    &compose::Request::Exec {
                        service: value.to_string(),
                        args: vec![value.to_string(), "--x".into(), String::new()],
                    },
                ),
                b"",
            );
            assert_eq!(
                args(),
                format!(
                    "[compose]\n[-p]\n[p]\n[exec]\n[-T]\n[--]\n[{value}]\n[{value}]\n[--x]\n[]\n{app}\n"
                )
            );
            sh(
                &compose::command(
                    ComposeFlavor::Plugin,
                    app,
                    "p",
                    &compose::Request::Run {
                        service: "web".into(),
                        args: vec![value.to_string()],
                        no_deps: true,
                    },
                ),
                b"",
            );
            assert_eq!(
                args(),
                format!(
                    "[compose]\n[-p]\n[p]\n[run]\n[--rm]\n[-T]\n[--no-deps]\n[--]\n[web]\n[{value}]\n{app}\n"
                )
            );
            assert_eq!(
                sh(&super::run::command("pwd", Some(app)), b""),
                format!("{app}\n")
            );
            assert_eq!(
                sh(
                    &super::run::guarded("echo ran", None, Some(value), None),
                    b""
                ),
                "ran\n"
            );
            let as_root = super::sudo::wrap(
                &super::run::command("printf '%s' ok", Some(app)),
                None,
                false,
            );
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
