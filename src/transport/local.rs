//! A test transport: connections that run `sh -c SCRIPT` on this machine, each host in a
//! directory of its own, with faults a test injects per host (refuse, drop mid-stream, forced
//! exit codes, delays, hooks). The CLI never uses it (it always connects over SSH); it exists
//! so the fleet orchestration is tested in process. May import: the transport's traits and
//! errors, tokio, libc, memchr.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{ConnectSpec, Connection, Connector, ForwardedStream, OutputSink, TransportError};

/// Called when a fault's condition is met (a test interrupts the run there, records, ...),
/// with the host's name (`OnConnect`) or the command's script (`OnExec`).
pub type Hook = Arc<dyn Fn(&str) + Send + Sync>;

/// One fault injected into one host's connections. A host may have many.
#[derive(Clone)]
pub enum Fault {
    /// The connect fails (`TransportError::Unreachable`) with this reason.
    Refuse(String),
    /// The connect takes this long (an abort of the run does not shorten it).
    ConnectDelay(Duration),
    /// `hook` runs when a connect to the host starts.
    OnConnect(Hook),
    /// `hook` runs (with the host's name) when the run closes its connection to the host.
    OnClose(Hook),
    /// The connection drops once its commands sent this many bytes (stdout and stderr,
    /// counted over the connection's life): the running command is killed, it and every
    /// later command fail with "connection lost".
    DropAfterBytes(usize),
    /// The connection drops once a command's stdout contains `marker` (what came up to and
    /// including it reaches the sink first).
    DropOnOutput(String),
    /// `hook` runs (with `marker`) once a command's stdout contains `marker`: a test acts
    /// while a step is known to be running.
    OnOutput { marker: String, hook: Hook },
    /// A command whose script contains `pattern` does not run: it ends with `code` at once,
    /// a line on stderr saying so.
    Exit { pattern: String, code: u32 },
    /// A command whose script contains `pattern` starts only after `delay` (an abort ends the
    /// wait).
    Delay { pattern: String, delay: Duration },
    /// `hook` runs when a command whose script contains `pattern` starts.
    OnExec { pattern: String, hook: Hook },
    /// How `tcp_request` (HTTP health checks) answers; without this fault it fails.
    Tcp(Tcp),
}

/// What `tcp_request` does for a host.
#[derive(Clone)]
pub enum Tcp {
    /// Fails, as a server refusing `direct-tcpip` would.
    Refuse,
    /// Connects from this machine to the host and port asked for, as the host would.
    Connect,
    /// Answers with these bytes whatever was asked (e.g. a canned HTTP response).
    Reply(Vec<u8>),
}

/// Opens `LocalConnection`s: the host named `NAME` in the plan lives in `<root>/NAME`
/// (made at connect), where its scripts run with that directory as `$HOME` and working
/// directory. Playbooks for it name their directories inside that one (`host_dir`).
#[derive(Clone)]
pub struct LocalConnector {
    root: PathBuf,
    faults: Faults,
}

/// Every host's faults, shared by the connector and its connections.
#[derive(Clone, Default)]
struct Faults(Arc<Mutex<HashMap<String, Vec<Fault>>>>);

impl Faults {
    fn of(&self, host: &str) -> Vec<Fault> {
        self.lock().get(host).cloned().unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Fault>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl LocalConnector {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            faults: Faults::default(),
        }
    }

    /// The directory standing for host `host`.
    pub fn host_dir(&self, host: &str) -> PathBuf {
        self.root.join(host)
    }

    /// Adds `fault` to host `host`'s connections (also those already open).
    pub fn inject(&self, host: &str, fault: Fault) {
        self.faults
            .lock()
            .entry(host.to_string())
            .or_default()
            .push(fault);
    }

    /// `inject`, for building a connector in one expression.
    pub fn with(self, host: &str, fault: Fault) -> Self {
        self.inject(host, fault);
        self
    }
}

impl Connector for LocalConnector {
    type Conn = LocalConnection;

    async fn connect(&self, spec: &ConnectSpec) -> Result<LocalConnection, TransportError> {
        let faults = self.faults.of(&spec.host_name);
        for fault in &faults {
            match fault {
                Fault::OnConnect(hook) => hook(&spec.host_name),
                Fault::ConnectDelay(delay) => tokio::time::sleep(*delay).await,
                _ => {}
            }
        }
        if let Some(reason) = faults.iter().find_map(|f| match f {
            Fault::Refuse(reason) => Some(reason.clone()),
            _ => None,
        }) {
            return Err(TransportError::Unreachable {
                address: spec.address.clone(),
                port: spec.port,
                reason,
            });
        }
        let dir = self.host_dir(&spec.host_name);
        std::fs::create_dir_all(&dir).map_err(|e| TransportError::Unreachable {
            address: spec.address.clone(),
            port: spec.port,
            reason: format!("cannot make {}: {e}", dir.display()),
        })?;
        Ok(LocalConnection {
            faults: self.faults.clone(),
            host: spec.host_name.clone(),
            dir,
            sent: AtomicUsize::new(0),
            lost: Mutex::new(None),
        })
    }
}

/// One host's "connection": every command a fresh `sh -c` in the host's directory, in a
/// process group of its own (what an abort or a drop kills).
pub struct LocalConnection {
    faults: Faults,
    host: String,
    dir: PathBuf,
    /// Bytes the connection's commands sent (for `Fault::DropAfterBytes`).
    sent: AtomicUsize,
    /// Why the connection is gone (dropped by a fault, or closed).
    lost: Mutex<Option<String>>,
}

/// How long an aborted command has after SIGTERM before SIGKILL, and after SIGKILL before it
/// is given up (shorter than SSH's: tests wait for it).
const ABORT_GRACE: Duration = Duration::from_millis(300);

impl LocalConnection {
    fn check_alive(&self) -> Result<(), TransportError> {
        match &*self.lost.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(reason) => Err(TransportError::Protocol(format!(
                "connection lost: {reason}"
            ))),
            None => Ok(()),
        }
    }

    fn lose(&self, reason: &str) -> TransportError {
        let mut lost = self.lost.lock().unwrap_or_else(|e| e.into_inner());
        lost.get_or_insert_with(|| reason.to_string());
        TransportError::Protocol(format!("connection lost: {reason}"))
    }

    /// Hands `bytes` to the sink, or the part before the connection drops; `true` when it
    /// dropped. Calls the hooks of the markers `bytes` completes.
    fn deliver(
        &self,
        bytes: &[u8],
        stderr: bool,
        seen: &mut Vec<u8>,
        faults: &[Fault],
        sink: &mut dyn OutputSink,
    ) -> bool {
        let mut cut = bytes.len();
        let mut dropped = false;
        let before = self.sent.load(Ordering::SeqCst);
        let mut hooks = Vec::new();
        for fault in faults {
            match fault {
                Fault::DropAfterBytes(limit) if before + bytes.len() >= *limit => {
                    cut = cut.min(limit.saturating_sub(before));
                    dropped = true;
                }
                Fault::DropOnOutput(marker) if !stderr => {
                    if let Some(end) = marker_end(seen, bytes, marker) {
                        cut = cut.min(end);
                        dropped = true;
                    }
                }
                Fault::OnOutput { marker, hook }
                    if !stderr && marker_end(seen, bytes, marker).is_some() =>
                {
                    hooks.push((hook, marker));
                }
                _ => {}
            }
        }
        let kept = &bytes[..cut];
        if stderr {
            sink.stderr(kept);
        } else {
            sink.stdout(kept);
            seen.extend_from_slice(kept);
        }
        self.sent.fetch_add(kept.len(), Ordering::SeqCst);
        for (hook, marker) in hooks {
            hook(marker);
        }
        dropped
    }

    async fn run(
        &self,
        command: &str,
        stdin: &[&[u8]],
        sink: &mut dyn OutputSink,
        abort: impl Future<Output = ()>,
        faults: &[Fault],
    ) -> Result<Option<u32>, TransportError> {
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(&self.dir)
            .env("HOME", &self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: what an abort, a drop or the driver's kill request stops.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| TransportError::Protocol(format!("cannot run sh: {e}")))?;
        let group = Group(child.id().map(|pid| pid as libc::pid_t));
        let (Some(mut input), Some(mut out), Some(mut err)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(TransportError::Protocol("sh without pipes".into()));
        };
        // Stdin is written while output is read, as over SSH; a command may exit without
        // reading it all.
        let write = async move {
            for piece in stdin {
                if input.write_all(piece).await.is_err() {
                    break;
                }
            }
        };
        let mut write = std::pin::pin!(write);
        let mut abort = std::pin::pin!(abort);
        let timer = tokio::time::sleep(Duration::ZERO);
        let mut timer = std::pin::pin!(timer);
        let (mut out_buf, mut err_buf) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
        let (mut out_open, mut err_open, mut writing) = (true, true, true);
        let mut status = None;
        let mut seen = Vec::new();
        let mut aborting = 0u8;
        loop {
            if !out_open && !err_open && status.is_some() {
                break;
            }
            tokio::select! {
                n = out.read(&mut out_buf), if out_open => match n {
                    Ok(0) | Err(_) => out_open = false,
                    Ok(n) => if self.deliver(&out_buf[..n], false, &mut seen, faults, sink) {
                        group.kill(libc::SIGKILL);
                        return Err(self.lose("dropped by the test transport"));
                    },
                },
                n = err.read(&mut err_buf), if err_open => match n {
                    Ok(0) | Err(_) => err_open = false,
                    Ok(n) => if self.deliver(&err_buf[..n], true, &mut seen, faults, sink) {
                        group.kill(libc::SIGKILL);
                        return Err(self.lose("dropped by the test transport"));
                    },
                },
                () = &mut write, if writing => writing = false,
                exited = child.wait(), if status.is_none() => {
                    let exited = exited.map_err(|e| TransportError::Protocol(format!("wait: {e}")))?;
                    // Killed by a signal: no status, as SSH reports it.
                    status = Some(exited.code().map(|c| c as u32));
                }
                () = &mut abort, if aborting == 0 => {
                    aborting = 1;
                    group.kill(libc::SIGTERM);
                    timer.as_mut().reset(tokio::time::Instant::now() + ABORT_GRACE);
                }
                () = &mut timer, if aborting > 0 => {
                    if aborting == 2 {
                        break;
                    }
                    aborting = 2;
                    group.kill(libc::SIGKILL);
                    timer.as_mut().reset(tokio::time::Instant::now() + ABORT_GRACE);
                }
            }
        }
        if aborting > 0 {
            group.kill(libc::SIGKILL);
            return Err(TransportError::Aborted);
        }
        Ok(status.flatten())
    }
}

/// The process group of a running command: killed (SIGKILL) when the command's future is
/// dropped before it ended, so nothing a test started outlives it.
struct Group(Option<libc::pid_t>);

impl Group {
    fn kill(&self, signal: libc::c_int) {
        if let Some(pid) = self.0 {
            // SAFETY: kill(2) on the process group this transport made for its own child.
            unsafe {
                libc::kill(-pid, signal);
            }
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill(libc::SIGKILL);
    }
}

/// Where in `bytes` the first `marker` that ends in them ends, `seen` being the output before
/// them (a marker may straddle the two; one wholly in `seen` was found before).
fn marker_end(seen: &[u8], bytes: &[u8], marker: &str) -> Option<usize> {
    let marker = marker.as_bytes();
    let tail = &seen[seen.len().saturating_sub(marker.len().saturating_sub(1))..];
    let mut window = tail.to_vec();
    window.extend_from_slice(bytes);
    memchr::memmem::find(&window, marker).map(|at| at + marker.len() - tail.len())
}

fn matching<'f>(faults: &'f [Fault], command: &str) -> impl Iterator<Item = &'f Fault> {
    faults.iter().filter(move |f| match f {
        Fault::Exit { pattern, .. }
        | Fault::Delay { pattern, .. }
        | Fault::OnExec { pattern, .. } => command.contains(pattern.as_str()),
        _ => false,
    })
}

impl Connection for LocalConnection {
    async fn exec_streamed_until(
        &self,
        command: &str,
        stdin: &[&[u8]],
        sink: &mut dyn OutputSink,
        abort: impl Future<Output = ()> + Send,
    ) -> Result<Option<u32>, TransportError> {
        self.check_alive()?;
        let faults = self.faults.of(&self.host);
        let mut abort = std::pin::pin!(abort);
        for fault in matching(&faults, command) {
            match fault {
                Fault::OnExec { hook, .. } => hook(command),
                Fault::Delay { delay, .. } => {
                    tokio::select! {
                        () = tokio::time::sleep(*delay) => {}
                        () = &mut abort => return Err(TransportError::Aborted),
                    }
                }
                _ => {}
            }
        }
        if let Some(code) = matching(&faults, command).find_map(|f| match f {
            Fault::Exit { code, .. } => Some(*code),
            _ => None,
        }) {
            sink.stderr(format!("exit {code} forced by the test transport\n").as_bytes());
            return Ok(Some(code));
        }
        self.run(command, stdin, sink, abort, &faults).await
    }

    async fn tcp_request(
        &self,
        host: &str,
        port: u16,
        request: &[u8],
        limit: usize,
    ) -> Result<Vec<u8>, TransportError> {
        self.check_alive()?;
        let tcp = self
            .faults
            .of(&self.host)
            .into_iter()
            .rev()
            .find_map(|f| match f {
                Fault::Tcp(tcp) => Some(tcp),
                _ => None,
            })
            .unwrap_or(Tcp::Refuse);
        match tcp {
            Tcp::Refuse => Err(TransportError::Protocol(
                "server refused to open a channel: the local transport forwards no TCP".into(),
            )),
            Tcp::Reply(mut bytes) => {
                bytes.truncate(limit);
                Ok(bytes)
            }
            Tcp::Connect => {
                let failed = |e: std::io::Error| {
                    TransportError::Protocol(format!("forwarded connection: {e}"))
                };
                let mut stream = tokio::net::TcpStream::connect((host, port))
                    .await
                    .map_err(failed)?;
                stream.write_all(request).await.map_err(failed)?;
                let mut response = Vec::new();
                (&mut stream)
                    .take(limit as u64)
                    .read_to_end(&mut response)
                    .await
                    .map_err(failed)?;
                Ok(response)
            }
        }
    }

    async fn tcp_stream(&self, host: &str, port: u16) -> Result<ForwardedStream, TransportError> {
        self.check_alive()?;
        let connect = self
            .faults
            .of(&self.host)
            .into_iter()
            .rev()
            .find_map(|f| match f {
                Fault::Tcp(tcp) => Some(matches!(tcp, Tcp::Connect)),
                _ => None,
            })
            .unwrap_or(false);
        if !connect {
            return Err(TransportError::Protocol(
                "server refused to open a channel: the local transport forwards streams only with `Tcp::Connect`".into(),
            ));
        }
        let stream = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| TransportError::Protocol(format!("forwarded connection: {e}")))?;
        Ok(Box::new(stream))
    }

    async fn close(&self) {
        for fault in &self.faults.of(&self.host) {
            if let Fault::OnClose(hook) = fault {
                hook(&self.host);
            }
        }
        let _ = self.lose("closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{Capture, Cut};

    fn spec(host: &str) -> ConnectSpec {
        ConnectSpec {
            host_name: host.into(),
            address: format!("{host}.local"),
            port: 22,
            user: "deploy".into(),
            identity_file: None,
            known_hosts: PathBuf::from("/dev/null"),
            host_key_policy: Default::default(),
            connect_timeout: Duration::from_secs(1),
            jump: None,
            identities_only: false,
        }
    }

    #[test]
    fn markers_are_found_across_pieces_once() {
        assert_eq!(marker_end(b"", b"xx-mark-yy", "mark"), Some(7));
        assert_eq!(marker_end(b"aa-ma", b"rk-b", "mark"), Some(2));
        // A marker wholly in what was seen before is not found again.
        assert_eq!(marker_end(b"aa-mark", b"more", "mark"), None);
        assert_eq!(marker_end(b"", b"nothing", "mark"), None);
    }

    #[tokio::test]
    async fn runs_in_the_host_directory_with_stdin() {
        let root = tempfile::tempdir().unwrap();
        let connector = LocalConnector::new(root.path());
        let conn = connector.connect(&spec("h1")).await.unwrap();
        let out = conn
            .exec_pieces("cat > got; pwd; echo \"$HOME\"", &[b"one ", b"two"])
            .await
            .unwrap();
        let dir = connector.host_dir("h1");
        assert!(out.success());
        let expected = format!("{}\n{}\n", dir.display(), dir.display());
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
        assert_eq!(std::fs::read_to_string(dir.join("got")).unwrap(), "one two");
    }

    #[tokio::test]
    async fn faults_refuse_force_exit_codes_and_drop() {
        let root = tempfile::tempdir().unwrap();
        let connector = LocalConnector::new(root.path())
            .with("down", Fault::Refuse("no route".into()))
            .with(
                "h1",
                Fault::Exit {
                    pattern: "forced".into(),
                    code: 7,
                },
            )
            .with("h1", Fault::DropAfterBytes(10));
        let refused = connector.connect(&spec("down")).await.err().unwrap();
        assert!(refused.to_string().contains("no route"), "{refused}");
        let conn = connector.connect(&spec("h1")).await.unwrap();
        let forced = conn.exec("echo forced; touch ran", b"").await.unwrap();
        assert_eq!(forced.status, Some(7));
        assert!(!connector.host_dir("h1").join("ran").exists());
        let mut capture = Capture::default();
        let cut = conn
            .exec_streamed("echo 0123456789abcdef", &[], &mut capture)
            .await
            .unwrap_err();
        assert!(cut.to_string().contains("connection lost"), "{cut}");
        let partial = capture.finish(Ok(None)).unwrap();
        assert_eq!(partial.stdout, b"0123456789");
        // The connection stays lost.
        assert!(conn.exec("true", b"").await.is_err());
    }

    #[tokio::test]
    async fn an_abort_stops_the_command_and_what_it_started() {
        let root = tempfile::tempdir().unwrap();
        let connector = LocalConnector::new(root.path());
        let conn = connector.connect(&spec("h1")).await.unwrap();
        let started = std::time::Instant::now();
        let abort = tokio::time::sleep(Duration::from_millis(100));
        let result = conn
            .exec_until("sleep 5 & sleep 5; touch late", &[], abort)
            .await;
        assert!(matches!(
            result,
            Err(Cut {
                error: TransportError::Aborted,
                ..
            })
        ));
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(!connector.host_dir("h1").join("late").exists());
    }
}
