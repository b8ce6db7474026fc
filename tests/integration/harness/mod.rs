//! The one test harness every integration test uses: one configurable OpenSSH `sshd` (`sshd`),
//! a fleet of them with a docker stand-in and its inventory (`fleet`), the docker-based servers
//! (`fresh_server`, `localfleet`) and a load loop through their proxies (`load`), keys, ports
//! and an ssh-agent, running the `dropship` binary and reading its plain output (`cli`) and
//! JSON report (`report`), an HTTP server, local users, processes and files. Test files import from here only (`crate::harness::{...}`);
//! the harness imports nothing from the tests.
#![allow(dead_code)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub mod agent;
pub mod cli;
pub mod files;
pub mod fleet;
pub mod fresh_server;
pub mod http;
pub mod keys;
pub mod load;
pub mod localfleet;
pub mod ports;
pub mod procs;
pub mod report;
pub mod sshd;
pub mod users;

pub use agent::*;
pub use cli::*;
pub use files::*;
pub use fleet::*;
pub use fresh_server::*;
pub use http::*;
pub use keys::*;
pub use load::*;
pub use localfleet::*;
pub use ports::*;
pub use procs::*;
pub use report::*;
pub use sshd::*;
pub use users::*;

/// `prefix` and a value no other test (or test run) uses at the same time.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}{}{}", std::process::id(), nanos % 1_000_000)
}

/// Polls `cond` every 20 ms until it holds, failing the test after `limit`.
#[track_caller]
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
