//! Free TCP ports on 127.0.0.1 for the servers the tests start. Imports std only.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// Every port handed out in this test process: tests run in parallel threads of one process,
/// and a port free when one test checks it may be taken by another test's server (a docker
/// `ports:` binding, an sshd) before the first binds it. Never handing a port out twice closes
/// that race within the process.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Reserves `ports` for this process when none was handed out before.
fn reserve(ports: impl IntoIterator<Item = u16> + Clone) -> bool {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed_out = guard.get_or_insert_with(HashSet::new);
    if ports.clone().into_iter().any(|p| handed_out.contains(&p)) {
        return false;
    }
    handed_out.extend(ports);
    true
}

/// A port nothing listens on right now (bound to :0 and released: another process may take
/// it before the caller binds it, so starters retry on "Address already in use"), never one
/// handed out before in this process.
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind 127.0.0.1:0")
            .local_addr()
            .expect("local_addr")
            .port();
        if reserve([port]) {
            return port;
        }
    }
}

/// A base port B with B+1..B+n all free on 127.0.0.1 (scripts/localfleet numbers from B+1).
pub fn free_range(n: u16) -> u16 {
    let seed = std::process::id() as u16
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u16);
    for attempt in 0..200u16 {
        let base = 20_000 + (seed.wrapping_add(attempt.wrapping_mul(97)) % 20_000);
        let listeners: Vec<_> = (1..=n)
            .map(|i| TcpListener::bind(("127.0.0.1", base + i)))
            .collect();
        if listeners.iter().all(Result::is_ok) && reserve((1..=n).map(|i| base + i)) {
            return base;
        }
    }
    panic!("no free port range");
}
