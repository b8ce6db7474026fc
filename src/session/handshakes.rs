//! Handshake slots: how many SSH handshakes are in flight at once, across the run and per
//! server. May import nothing of the crate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};

/// Handshakes in flight at once to one server (`address:port`): sshd's default `MaxStartups
/// 10:30:100` starts dropping unauthenticated connections above 10, so a run never sends it
/// more than this, however many inventory names point at it. Distinct servers do not wait for
/// each other: 50 hosts handshake in one wave, not two.
pub const PER_SERVER: usize = 8;

/// The run's handshake slots: at most `total` in flight across the run (this machine's own
/// sockets and CPU), at most `PER_SERVER` to any one server.
pub struct HandshakeSlots {
    total: Semaphore,
    servers: Mutex<HashMap<(String, u16), Arc<Semaphore>>>,
}

/// Leave to handshake with one server; both slots are free again when it is dropped.
pub struct HandshakeSlot<'a> {
    _server: OwnedSemaphorePermit,
    _total: SemaphorePermit<'a>,
}

impl HandshakeSlots {
    pub fn new(total: usize) -> Self {
        Self {
            total: Semaphore::new(total.max(1)),
            servers: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for a slot to the server at `address:port`, then for one of the run's: a host
    /// queued behind others of its own server holds none of the run's slots meanwhile.
    pub async fn acquire(&self, address: &str, port: u16) -> HandshakeSlot<'_> {
        let server = {
            let mut servers = self
                .servers
                .lock()
                .expect("never poisoned: no panic inside");
            servers
                .entry((address.to_string(), port))
                .or_insert_with(|| Arc::new(Semaphore::new(PER_SERVER)))
                .clone()
        };
        let server = server
            .acquire_owned()
            .await
            .expect("handshake semaphores are never closed");
        let total = self
            .total
            .acquire()
            .await
            .expect("handshake semaphores are never closed");
        HandshakeSlot {
            _server: server,
            _total: total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn spec(address: &str, port: u16) -> (String, u16) {
        (address.to_string(), port)
    }

    /// Runs `hosts` handshakes (each 20 ms) through `slots`; the most in flight at once, in
    /// all and to the busiest server.
    async fn peaks(slots: &HandshakeSlots, hosts: &[(String, u16)]) -> (usize, usize) {
        let in_flight = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let per_server: Mutex<HashMap<(String, u16), usize>> = Mutex::default();
        let server_peak = AtomicUsize::new(0);
        futures::future::join_all(hosts.iter().map(|h| async {
            let _slot = slots.acquire(&h.0, h.1).await;
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let key = h.clone();
            let mine = {
                let mut map = per_server.lock().unwrap();
                let n = map.entry(key.clone()).or_default();
                *n += 1;
                *n
            };
            server_peak.fetch_max(mine, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            *per_server.lock().unwrap().get_mut(&key).unwrap() -= 1;
            in_flight.fetch_sub(1, Ordering::SeqCst);
        }))
        .await;
        (peak.into_inner(), server_peak.into_inner())
    }

    #[tokio::test]
    async fn distinct_servers_handshake_in_one_wave_up_to_the_runs_cap() {
        let hosts: Vec<_> = (0..50).map(|i| spec("127.0.0.1", 2000 + i)).collect();
        assert_eq!(peaks(&HandshakeSlots::new(64), &hosts).await, (50, 1));
        assert_eq!(peaks(&HandshakeSlots::new(32), &hosts).await, (32, 1));
    }

    #[tokio::test]
    async fn one_server_never_gets_more_than_its_share_however_many_names_point_at_it() {
        let mut hosts: Vec<_> = (0..40).map(|_| spec("10.0.0.1", 22)).collect();
        hosts.extend((0..20).map(|i| spec("10.0.0.2", 22 + i)));
        let (total, server) = peaks(&HandshakeSlots::new(64), &hosts).await;
        assert_eq!(server, PER_SERVER);
        // The other servers' hosts are not stuck behind the busy one's queue.
        assert_eq!(total, PER_SERVER + 20);
    }
}
