//! Free TCP ports on 127.0.0.1 for the servers the tests start. Imports std only.

use std::net::TcpListener;

/// A port nothing listens on right now (bound to :0 and released: another process may take
/// it before the caller binds it, so starters retry on "Address already in use").
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local_addr")
        .port()
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
        if listeners.iter().all(Result::is_ok) {
            return base;
        }
    }
    panic!("no free port range");
}
