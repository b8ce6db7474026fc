//! The one test harness every integration test uses: real OpenSSH `sshd` servers (`sshd`), a
//! fleet of them with a docker stand-in and its inventory (`fleet`), keys and ports, running
//! the `dropship` binary and reading what it printed (`cli`), local users, processes and files.
//! Test files import from here only; the harness imports nothing from the tests.
#![allow(dead_code)]

pub mod agent;
pub mod cli;
pub mod files;
pub mod fleet;
pub mod keys;
pub mod ports;
pub mod procs;
pub mod report;
pub mod sshd;
pub mod users;

pub use agent::*;
pub use cli::*;
pub use files::*;
pub use fleet::*;
pub use keys::*;
pub use ports::*;
pub use procs::*;
pub use report::*;
pub use sshd::*;
pub use users::*;
