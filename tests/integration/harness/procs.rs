//! Processes on this machine as the tests see them, from /proc: descendants, command lines
//! and a watch over them while a run goes on (`ArgvWatch`), signals, and killing a whole
//! process tree. Imports std only.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// All descendants of `root` (not `root` itself), from /proc.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // "pid (comm) state ppid ..." — comm may contain spaces/parens.
            let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            let mut f = after.split_whitespace();
            let _state = f.next();
            if let Some(ppid) = f.next().and_then(|s| s.parse::<u32>().ok()) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        if let Some(cs) = children.get(&p) {
            for &c in cs {
                out.push(c);
                stack.push(c);
            }
        }
    }
    out
}

/// `kill -SIG PIDS...`, ignoring processes already gone.
pub fn signal(pids: &[u32], sig: &str) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .args(pids.iter().map(|p| p.to_string()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Kills `child` and every process below it, and reaps `child`.
///
/// Freezes the tree first (so nothing forks or reparents behind our back), then kills it
/// all. sshd session processes call setsid(), so a process group kill would miss them.
pub fn kill_tree(mut child: Child) {
    let pid = child.id();
    let mut frozen: HashSet<u32> = HashSet::new();
    frozen.insert(pid);
    signal(&[pid], "STOP");
    for _ in 0..10 {
        let new: Vec<u32> = descendants(pid)
            .into_iter()
            .filter(|p| !frozen.contains(p))
            .collect();
        if new.is_empty() {
            break;
        }
        signal(&new, "STOP");
        frozen.extend(new);
    }
    let all: Vec<u32> = frozen.into_iter().filter(|p| *p != pid).collect();
    signal(&all, "KILL");
    let _ = child.kill();
    let _ = child.wait();
}

/// Every process's command line on this machine (NULs shown as spaces), read from /proc.
pub fn all_cmdlines() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // Processes come and go while we look: a vanished one is simply skipped.
        if let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) {
            let text = String::from_utf8_lossy(&raw).replace('\0', " ");
            out.push((pid, text));
        }
    }
    out
}

/// Every process's command line on this machine, read from a thread every 10 ms until
/// stopped, so a test can say afterwards what no command line ever held (a secret) and what
/// one did (a marker proving the watch saw the run at all).
pub struct ArgvWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<ArgvSeen>>,
}

impl ArgvWatch {
    pub fn start() -> ArgvWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = ArgvSeen {
                    lines: BTreeSet::new(),
                    scans: 0,
                };
                // One scan more after the stop is asked for: the last moments count too.
                loop {
                    let stopping = stop.load(Ordering::Relaxed);
                    seen.lines.extend(all_cmdlines());
                    seen.scans += 1;
                    if stopping {
                        return seen;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        ArgvWatch {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the watch and returns what it saw.
    pub fn stop(mut self) -> ArgvSeen {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("the watch runs until stopped");
        thread.join().expect("the argv watch thread")
    }
}

impl Drop for ArgvWatch {
    /// A test that fails while watching does not leave the thread scanning.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What an `ArgvWatch` saw: every distinct (pid, command line) and how many scans it made.
pub struct ArgvSeen {
    lines: BTreeSet<(u32, String)>,
    pub scans: usize,
}

impl ArgvSeen {
    /// The (pid, command line) pairs seen holding any of `needles`.
    pub fn containing(&self, needles: &[impl AsRef<str>]) -> Vec<&(u32, String)> {
        self.lines
            .iter()
            .filter(|(_, line)| needles.iter().any(|n| line.contains(n.as_ref())))
            .collect()
    }

    /// Whether some command line held `marker`.
    pub fn saw(&self, marker: &str) -> bool {
        self.saw_line(|line| line.contains(marker))
    }

    /// Whether some command line met `wanted`.
    pub fn saw_line(&self, wanted: impl Fn(&str) -> bool) -> bool {
        self.lines.iter().any(|(_, line)| wanted(line))
    }

    /// Whether process `pid`'s command line held `marker`.
    pub fn saw_in(&self, pid: u32, marker: &str) -> bool {
        self.lines
            .iter()
            .any(|(p, line)| *p == pid && line.contains(marker))
    }

    /// Fails the test, listing them, if any command line held any of `needles` (`what` they
    /// are, e.g. "a secret").
    #[track_caller]
    pub fn assert_hidden(&self, needles: &[impl AsRef<str>], what: &str) {
        let leaks = self.containing(needles);
        assert!(leaks.is_empty(), "{what} on a command line: {leaks:#?}");
    }

    /// Fails the test unless some command line held `marker`: else the watch may have missed
    /// the run altogether, and its silence about secrets means nothing.
    #[track_caller]
    pub fn assert_saw(&self, marker: &str) {
        assert!(
            self.saw(marker),
            "the watch never saw `{marker}` on a command line in {} scans",
            self.scans
        );
    }
}
