//! Many steps in one session: the driver script that runs each step's segment in order on one
//! shell, feeds each its own bytes of the shared stdin, stops at the first failure, and marks
//! where each step's output ends (split back per step by `split.rs`); the requests that stop
//! or kill a running driver. Its markers are frames (`frame.rs`) of its own kinds.
//! May import: `remote::{script, frame, vars, lock}`.

use std::sync::Arc;

use super::lock::audit_field;
use super::script::Script;
use super::vars;
use crate::sh;

/// One step's part of a driver script.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Runs in the driver's shell: it must not `exit`, `cd` or change options there (commands
    /// that might run in a subshell), and must read exactly `stdin` from stdin, or nothing. It
    /// may set variables named `dsu_*` for later segments (uploads share a directory so).
    pub script: String,
    /// Its stdin, in pieces sent back to back (a directory's files). Shared, not copied: one
    /// file's content goes to every host's script as is.
    pub stdin: Vec<Arc<[u8]>>,
    /// The step's name, for the audit line of a failure (`failed at NAME`).
    pub label: String,
    /// Runs once at the driver's end, after the last segment that ran, whatever happened
    /// (a failure, a stop); the same line from several segments runs once. It must not fail
    /// the driver (its status is ignored).
    pub cleanup: Option<String>,
}

impl Segment {
    /// A script that may do anything (exit, cd, read stdin): run in a subshell, stdin closed.
    pub fn isolated(script: &str, label: &str) -> Self {
        Self {
            script: sh!("(\n{}\n) </dev/null", Script::raw_trusted(script)).into_string(),
            stdin: Vec::new(),
            label: label.to_string(),
            cleanup: None,
        }
    }
}

/// A driver script and the stdin it expects: the segments' pieces, back to back.
pub struct Driver {
    pub script: String,
    pub stdin: Vec<Arc<[u8]>>,
}

impl Driver {
    pub fn stdin_pieces(&self) -> Vec<&[u8]> {
        self.stdin.iter().map(|piece| &piece[..]).collect()
    }
}

/// Where a driver looks, before each segment, for the sign to stop: a directory its own user
/// made (`-O`: nobody else can plant it), named after the driver's unguessable nonce.
fn stop_sign(nonce: &str) -> String {
    format!("/tmp/dropship-stop-{nonce}")
}

/// Asks the running driver `nonce` to start no further segment (the run was interrupted). Run
/// as the driver's user; the segment running goes on to its end.
pub fn stop_request(nonce: &str) -> String {
    sh!("mkdir -m 700 {}", stop_sign(nonce)).into_string()
}

/// Removes the sign left by `stop_request`, once the driver has ended.
pub fn stop_cleanup(nonce: &str) -> String {
    sh!("rmdir {} 2>/dev/null; true", stop_sign(nonce)).into_string()
}

/// `script` marked with `nonce` the way a driver is (in a comment), so that `kill_request`
/// finds it too.
pub fn tagged(nonce: &str, script: &str) -> String {
    format!("# @@dropship:{nonce}:\n{script}")
}

/// Stops the running driver `nonce` on the host (the run was aborted): SIGTERM to the process
/// group of every process running it (its shell and what that started, a sudo in between),
/// SIGKILL two seconds later to what is left. Run as the driver's user. Needed because
/// OpenSSH refuses SSH `signal` requests for root logins (no privilege separation after
/// authentication); found by the driver's marker text in `/proc/*/cmdline` (this script's own
/// process group, which holds that text too, is spared).
pub fn kill_request(nonce: &str) -> String {
    format!(
        "read -r _ _ _ _ dsme _ < /proc/$$/stat; dsg=\n\
         for f in $(grep -l -F -e '@@dropship:{nonce}:' /proc/[0-9]*/cmdline 2>/dev/null); do\n\
         p=${{f#/proc/}}; p=${{p%/cmdline}}\n\
         read -r _ _ _ _ g _ 2>/dev/null < /proc/$p/stat || continue\n\
         [ \"$g\" = \"$dsme\" ] || dsg=\"$dsg $g\"\n\
         done\n\
         [ -n \"$dsg\" ] || exit 0\n\
         for g in $dsg; do kill -TERM -$g 2>/dev/null; done\n\
         ( sleep 2; for g in $dsg; do kill -KILL -$g 2>/dev/null; done ) </dev/null >/dev/null 2>&1 &\n"
    )
}

impl Driver {
    /// Builds the driver: see `driver`.
    pub fn new(nonce: &str, preamble: &str, segments: &[Segment], epilogue: Option<&str>) -> Self {
        driver(nonce, preamble, segments, epilogue)
    }
}

/// Builds the driver: `preamble` first (its stdout comes before the first segment's), then
/// each segment while all before it succeeded and no stop was asked (`stop_request`: a stop
/// marker is printed instead), each followed by a marker on stdout and stderr with its exit
/// status; the segments' cleanup lines (each distinct one once) and `epilogue` last, whatever happened (`$dsr` holds `ok`, `failed at NAME` or
/// `interrupted` there), followed by an end marker. The driver exits with the status of the
/// last segment that ran (130 when stopped).
fn driver(nonce: &str, preamble: &str, segments: &[Segment], epilogue: Option<&str>) -> Driver {
    // `$dsn`: the segments report their results in frames of this driver's nonce.
    let mut script = sh!(
        "{}=0; {}=ok; {}={}\n",
        vars::STATUS,
        vars::RESULT,
        vars::NONCE,
        nonce
    )
    .into_string();
    if !preamble.is_empty() {
        script.push_str(preamble);
        script.push('\n');
    }
    let mut stdin = Vec::new();
    let (status, result, started) = (&vars::STATUS, &vars::RESULT, &vars::STEP_START);
    for (i, segment) in segments.iter().enumerate() {
        // The marker carries the exit status and, where the shell has it (bash), the times
        // before and after: a step's own duration in a shared session.
        let marker = format!("\\n@@dropship:{nonce}:{i}:%s:%s:%s@@\\n");
        // Escaped: a step's name cannot end the audit line and forge another.
        let label = format!("failed at {}", audit_field(&segment.label));
        // The stop check is a builtin `test`: nothing more runs per segment.
        script.push_str(
            sh!(
                "if [ {} = 0 ] && [ -O {} ]; then {}=130; {}=interrupted; printf {}; fi\n\
                 if [ {} = 0 ]; then\n{}=${{EPOCHREALTIME:-}}\n{}\n{}=$?; \
                 printf {} {} {} \"${{EPOCHREALTIME:-}}\"; printf {} {} {} \"${{EPOCHREALTIME:-}}\" >&2; \
                 [ {} = 0 ] || {}={}\nfi\n",
                status.bare(),
                stop_sign(nonce),
                status,
                result,
                format!("\\n@@dropship:{nonce}:stop@@\\n"),
                status.bare(),
                started,
                Script::raw_trusted(segment.script.as_str()),
                status,
                marker,
                status.get(),
                started.get(),
                marker,
                status.get(),
                started.get(),
                status.bare(),
                result,
                label
            )
            .as_str(),
        );
        stdin.extend(segment.stdin.iter().cloned());
    }
    let mut cleanups: Vec<&str> = Vec::new();
    for cleanup in segments.iter().filter_map(|s| s.cleanup.as_deref()) {
        if !cleanups.contains(&cleanup) {
            cleanups.push(cleanup);
            script.push_str(cleanup);
            script.push('\n');
        }
    }
    if let Some(epilogue) = epilogue {
        script.push_str(epilogue);
        script.push_str(sh!("\nprintf {}\n", format!("\\n@@dropship:{nonce}:end@@\\n")).as_str());
    }
    script.push_str(sh!("exit {}\n", status.bare()).as_str());
    Driver { script, stdin }
}

/// Runs `script` as the one isolated segment of a driver in a real `sh`, as a host would, and
/// returns that segment's output (its frames in `results`): for the scripts' own tests.
#[cfg(test)]
pub(crate) fn run_one(script: &str) -> crate::transport::ExecOutput {
    let nonce = super::frame::nonce();
    let driver = Driver::new(&nonce, "", &[Segment::isolated(script, "test")], None);
    let out = super::run_in_sh(&driver.script, b"");
    let split = super::split::split_all(&crate::output::Redactor::default(), &out, &nonce, 1);
    split.outputs.into_iter().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Redactor;
    use crate::remote::frame::nonce;
    use crate::remote::split::split_all;
    use crate::transport::ExecOutput;

    fn run(driver: &Driver) -> ExecOutput {
        crate::remote::run_in_sh(&driver.script, &driver.stdin.concat())
    }

    fn segment(script: &str, stdin: &[u8], label: &str) -> Segment {
        Segment {
            script: script.into(),
            stdin: if stdin.is_empty() {
                Vec::new()
            } else {
                vec![stdin.into()]
            },
            label: label.into(),
            cleanup: None,
        }
    }

    #[test]
    fn each_segment_gets_its_own_output_stdin_and_status() {
        let segments = [
            segment("IFS= read -r x && printf 'got %s' \"$x\"", b"one\n", "a"),
            Segment::isolated("echo warn >&2; cat; cd /; exit 0", "b"),
            segment("head -c 3", b"two", "c"),
        ];
        let pre = crate::remote::frame::report(crate::remote::frame::Kind::Compose, &"plugin");
        let d = driver("n1", pre.as_str(), &segments, Some("echo \"audit=$dsr\""));
        let out = run(&d);
        assert_eq!(out.status, Some(0));
        let split = split_all(&Redactor::default(), &out, "n1", 3);
        assert_eq!(
            crate::remote::compose::flavor(&split.results),
            Some(crate::remote::compose::ComposeFlavor::Plugin)
        );
        let texts: Vec<(String, String, Option<u32>)> = split
            .outputs
            .iter()
            .map(|o| {
                (
                    String::from_utf8_lossy(&o.stdout).into(),
                    String::from_utf8_lossy(&o.stderr).into(),
                    o.status,
                )
            })
            .collect();
        assert_eq!(
            texts,
            [
                ("got one".into(), "".into(), Some(0)),
                ("".into(), "warn\n".into(), Some(0)),
                ("two".into(), "".into(), Some(0)),
            ]
        );
        assert!(split.epilogue_done);
        assert_eq!(split.epilogue, b"audit=ok\n");
    }

    #[test]
    fn the_first_failure_stops_the_rest_but_not_the_epilogue() {
        let segments = [
            segment("echo fine", b"", "a"),
            Segment::isolated("echo broken >&2; exit 3", "step b"),
            segment("echo never", b"", "c"),
        ];
        let d = driver("n2", "", &segments, Some("echo \"audit=$dsr\""));
        let out = run(&d);
        assert_eq!(out.status, Some(3));
        let split = split_all(&Redactor::default(), &out, "n2", 3);
        assert_eq!(split.outputs.len(), 2);
        assert!(!split.cut_short, "a failed step has its marker");
        assert_eq!(split.outputs[1].status, Some(3));
        assert_eq!(split.outputs[1].stderr, b"broken\n");
        assert!(split.epilogue_done);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("audit=failed at step b\n"), "{text}");
        assert!(!text.contains("never"), "{text}");
    }

    #[test]
    fn a_stop_request_ends_the_driver_before_its_next_segment() {
        let nonce = format!("t{}", nonce());
        let request = crate::remote::run_in_sh(&stop_request(&nonce), b"");
        assert_eq!(request.status, Some(0), "{request:?}");
        // Cleanup lines still run, each distinct one once, before the epilogue.
        let cleanup = |s: Segment| Segment {
            cleanup: Some("echo cleaned".into()),
            ..s
        };
        let segments = [
            cleanup(segment("echo first", b"", "a")),
            cleanup(segment("echo never", b"", "b")),
        ];
        let d = driver(&nonce, "", &segments, Some("echo \"audit=$dsr\""));
        let out = run(&d);
        crate::remote::run_in_sh(&stop_cleanup(&nonce), b"");
        assert!(!std::path::Path::new(&stop_sign(&nonce)).exists());
        assert_eq!(out.status, Some(130));
        let split = split_all(&Redactor::default(), &out, &nonce, 2);
        assert!(split.stopped && !split.cut_short);
        assert!(split.outputs.is_empty());
        assert!(split.epilogue_done);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("first") && !text.contains("never"), "{text}");
        assert!(text.contains("audit=interrupted\n"), "{text}");
        assert_eq!(text.matches("cleaned\naudit=").count(), 1, "{text}");
        assert_eq!(text.matches("cleaned").count(), 1, "{text}");
    }

    #[test]
    fn a_kill_request_stops_the_driver_and_what_it_started() {
        use std::os::unix::process::CommandExt as _;
        let nonce = format!("k{}", nonce());
        let segments = [Segment::isolated("sleep 30", "slow")];
        let d = driver(&nonce, "", &segments, None);
        // Its own process group, as sshd gives each session.
        let mut child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&d.script)
            .process_group(0)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let started = std::time::Instant::now();
        let kill = crate::remote::run_in_sh(&kill_request(&nonce), b"");
        assert_eq!(kill.status, Some(0), "{kill:?}");
        let status = child.wait().unwrap();
        assert!(!status.success());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn a_driver_cut_short_gives_its_status_to_the_segment_that_was_running() {
        let out = ExecOutput {
            status: Some(1),
            stdout: b"x\n@@dropship:n3:0:0:10.5:10.75@@\npartial".to_vec(),
            stderr: b"\n@@dropship:n3:0:0::@@\nsudo: a password is required\n".to_vec(),
            ..Default::default()
        };
        let split = split_all(&Redactor::default(), &out, "n3", 3);
        assert_eq!(split.outputs.len(), 2);
        assert_eq!(split.outputs[0].stdout, b"x");
        assert_eq!(split.elapsed_ms, [Some(250), None]);
        assert_eq!(split.outputs[1].status, Some(1));
        assert!(split.cut_short);
        assert_eq!(split.outputs[1].stdout, b"partial");
        assert_eq!(
            split.outputs[1].stderr,
            b"sudo: a password is required\n".to_vec()
        );
        assert!(!split.epilogue_done);
        let marker_lookalike = ExecOutput {
            status: Some(0),
            stdout: b"\n@@dropship:other:0:0::@@\n".to_vec(),
            ..Default::default()
        };
        let split = split_all(&Redactor::default(), &marker_lookalike, "n3", 1);
        assert_eq!(split.outputs[0].status, None, "another nonce is no marker");
    }
}
