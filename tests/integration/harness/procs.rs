//! Processes on this machine as the tests see them, from /proc: descendants, command lines,
//! signals, and killing a whole process tree. Imports std only.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::process::{Child, Command, Stdio};

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
