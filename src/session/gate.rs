//! The fork gate: at most `--forks` hosts talked to at once, whatever the talk (steps, the
//! lock, listing releases, rollback, the audit line). May import nothing of the crate.

use tokio::sync::{Semaphore, SemaphorePermit};

/// The run's one fork semaphore. Every `HostSession` method that sends anything to a host
/// takes a `Turn` from it first and holds it until it is done with the host.
pub struct Gate {
    forks: Semaphore,
    /// How many turns there are.
    size: usize,
}

/// Leave to talk to one host; the fork is free again when it is dropped.
pub struct Turn<'a> {
    _permit: SemaphorePermit<'a>,
}

impl Gate {
    pub fn new(forks: usize) -> Self {
        Self {
            forks: Semaphore::new(forks.max(1)),
            size: forks.max(1),
        }
    }

    /// Whether `hosts` hosts can all hold a turn at once (none waits for another's).
    pub fn admits_all(&self, hosts: usize) -> bool {
        hosts <= self.size
    }

    /// Waits for a free fork. (The semaphore is never closed.)
    pub async fn turn(&self) -> Turn<'_> {
        let permit = self
            .forks
            .acquire()
            .await
            .expect("the fork gate is never closed");
        Turn { _permit: permit }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_gate_of_one_hands_out_one_turn_at_a_time() {
        let gate = Gate::new(1);
        let first = gate.turn().await;
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), gate.turn());
        assert!(
            waiting.await.is_err(),
            "a second turn while the first is held"
        );
        drop(first);
        let _second = gate.turn().await;
    }

    #[test]
    fn zero_forks_still_lets_one_host_through() {
        let gate = Gate::new(0);
        assert_eq!(gate.forks.available_permits(), 1);
    }

    #[test]
    fn a_gate_admits_all_hosts_only_up_to_its_forks() {
        let gate = Gate::new(64);
        assert!(gate.admits_all(50));
        assert!(gate.admits_all(64));
        assert!(!gate.admits_all(65));
        assert!(Gate::new(0).admits_all(1));
        assert!(!Gate::new(0).admits_all(2));
    }
}
