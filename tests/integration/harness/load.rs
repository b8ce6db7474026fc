//! A load loop for the zero-downtime tests: `clients` threads per target looping `GET /` on
//! 127.0.0.1:PORT while a deploy runs, counting the requests that failed and the `version=`
//! each answer carried, over time. benches/zero-downtime/load.py is the same loop for the
//! shell. Imports std only.
//!
//! One connection per request (HTTP/1.0, `Connection: close`: no keep-alive), so every request
//! goes through the proxy's accept and its upstream choice afresh. A request failed when the
//! answer is not `200`, the connection fails, or the whole answer takes longer than
//! [`REQUEST_TIMEOUT`]; after a failure its client waits [`BACKOFF`] (a refused connection
//! would otherwise spin). The demo app answers `GET /` with 200 even when its database does
//! not answer (its `db=` line says `error: …`): such answers are counted apart, as db errors.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longer than this for the whole answer counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A client's pause after a failed request.
pub const BACKOFF: Duration = Duration::from_millis(10);
/// How many failures a host keeps the reasons of (the counts are exact).
const FAILURES_KEPT: usize = 20;

/// One answer (or failure), `at` when it ended, from the load's start.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Duration,
    /// A 200's contents, or why the request failed.
    pub result: Result<Answer, String>,
}

/// What a 200 answer said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Its `version=` line (`None`: there was none).
    pub version: Option<String>,
    /// Its `db=` line, when that is not `ok`.
    pub db_error: Option<String>,
}

/// Running clients; [`Load::stop`] ends them and tallies what they saw.
pub struct Load {
    started: Instant,
    stop: Arc<AtomicBool>,
    targets: Vec<(String, Arc<AtomicUsize>)>,
    clients: Vec<(usize, JoinHandle<Vec<Sample>>)>,
}

impl Load {
    /// `clients` threads for each `(name, port)`, each looping `GET path` on 127.0.0.1:port.
    pub fn start(targets: &[(String, u16)], clients: usize, path: &str) -> Load {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let mut load = Load {
            started,
            stop: stop.clone(),
            targets: Vec::new(),
            clients: Vec::new(),
        };
        for (index, (name, port)) in targets.iter().enumerate() {
            let answered = Arc::new(AtomicUsize::new(0));
            load.targets.push((name.clone(), answered.clone()));
            let addr = SocketAddr::from(([127, 0, 0, 1], *port));
            for _ in 0..clients {
                let (stop, answered, path) = (stop.clone(), answered.clone(), path.to_string());
                let client = std::thread::spawn(move || {
                    let mut samples = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let result = request(addr, &path);
                        let failed = result.is_err();
                        if !failed {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        samples.push(Sample {
                            at: started.elapsed(),
                            result,
                        });
                        if failed {
                            std::thread::sleep(BACKOFF);
                        }
                    }
                    samples
                });
                load.clients.push((index, client));
            }
        }
        load
    }

    /// Time since the load started (the clock of every [`Sample::at`]).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits (up to `limit`) until every target answered at least `n` requests with 200; false
    /// when the limit passed first.
    pub fn wait_answered(&self, n: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self
                .targets
                .iter()
                .all(|(_, answered)| answered.load(Ordering::Relaxed) >= n)
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops every client (each finishes the request it is in) and tallies per target.
    pub fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); self.targets.len()];
        for (index, client) in self.clients {
            samples[index].extend(client.join().expect("a load client panicked"));
        }
        let elapsed = self.started.elapsed();
        let hosts = self
            .targets
            .iter()
            .zip(samples)
            .map(|((name, _), samples)| HostLoad::tally(name, samples))
            .collect();
        LoadReport { hosts, elapsed }
    }
}

/// One `GET path` on its own connection: what a 200 said, else why it failed.
fn request(addr: SocketAddr, path: &str) -> Result<Answer, String> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut stream = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT)
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = stream.set_nodelay(true);
    stream
        .set_write_timeout(Some(REQUEST_TIMEOUT))
        .map_err(|e| e.to_string())?;
    // One write: a server reading the request in one go sees all of it.
    let ask = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream
        .write_all(ask.as_bytes())
        .map_err(|e| format!("send: {}", e.kind()))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("timeout after {}s", REQUEST_TIMEOUT.as_secs()));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("timeout after {}s", REQUEST_TIMEOUT.as_secs()));
            }
            Err(e) => return Err(format!("receive: {}", e.kind())),
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("incomplete answer ({} bytes)", raw.len()))?;
    let status = head.split_whitespace().nth(1).unwrap_or("none");
    if status != "200" {
        return Err(format!("HTTP {status}"));
    }
    Ok(Answer {
        version: version_of(body),
        db_error: field(body, "db").filter(|db| db != "ok"),
    })
}

/// The value of the body's `version=` line (the demo app's plain answer).
pub fn version_of(body: &str) -> Option<String> {
    field(body, "version")
}

/// The value of the body's `KEY=` line.
fn field(body: &str, key: &str) -> Option<String> {
    body.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim().to_string())
}

/// What the load saw on one target.
#[derive(Debug)]
pub struct HostLoad {
    pub name: String,
    pub ok: usize,
    pub failed: usize,
    /// The first failures, `(when, why)`.
    pub failures: Vec<(Duration, String)>,
    /// Failure reasons and how often each happened.
    pub reasons: BTreeMap<String, usize>,
    /// 200 answers whose `db=` line was not `ok`, and the first few of them `(when, db=)`.
    pub db_errors: usize,
    pub first_db_errors: Vec<(Duration, String)>,
    /// Every answer's version in the order the answers ended ("?" for none).
    pub versions: Vec<(Duration, String)>,
}

impl HostLoad {
    fn tally(name: &str, mut samples: Vec<Sample>) -> HostLoad {
        samples.sort_by_key(|s| s.at);
        let mut host = HostLoad {
            name: name.to_string(),
            ok: 0,
            failed: 0,
            failures: Vec::new(),
            reasons: BTreeMap::new(),
            db_errors: 0,
            first_db_errors: Vec::new(),
            versions: Vec::new(),
        };
        for sample in samples {
            match sample.result {
                Ok(answer) => {
                    host.ok += 1;
                    if let Some(db) = answer.db_error {
                        host.db_errors += 1;
                        if host.first_db_errors.len() < FAILURES_KEPT {
                            host.first_db_errors.push((sample.at, db));
                        }
                    }
                    let version = answer.version.unwrap_or_else(|| "?".into());
                    host.versions.push((sample.at, version));
                }
                Err(reason) => {
                    host.failed += 1;
                    *host.reasons.entry(reason.clone()).or_default() += 1;
                    if host.failures.len() < FAILURES_KEPT {
                        host.failures.push((sample.at, reason));
                    }
                }
            }
        }
        host
    }

    /// The version of the last answer.
    pub fn last_version(&self) -> Option<&str> {
        self.versions.last().map(|(_, v)| v.as_str())
    }

    /// When `version` was first / last seen.
    pub fn first_seen(&self, version: &str) -> Option<Duration> {
        self.versions
            .iter()
            .find(|(_, v)| v == version)
            .map(|p| p.0)
    }

    pub fn last_seen(&self, version: &str) -> Option<Duration> {
        self.versions
            .iter()
            .rev()
            .find(|(_, v)| v == version)
            .map(|p| p.0)
    }

    /// Each change of the version served, `(when, version)`, starting with the first answer's.
    pub fn flips(&self) -> Vec<(Duration, &str)> {
        let mut flips: Vec<(Duration, &str)> = Vec::new();
        for (at, version) in &self.versions {
            if flips.last().is_none_or(|(_, v)| *v != version) {
                flips.push((*at, version));
            }
        }
        flips
    }
}

impl fmt::Display for HostLoad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ok, {} failed", self.name, self.ok, self.failed)?;
        if !self.reasons.is_empty() {
            write!(f, " {:?}", self.reasons)?;
        }
        let flips: Vec<String> = self
            .flips()
            .iter()
            .map(|(at, v)| format!("{v}@{:.2}s", at.as_secs_f64()))
            .collect();
        write!(f, "; versions {}", flips.join(" → "))?;
        if let Some((at, why)) = self.failures.first() {
            write!(f, "; first failure at {:.2}s: {why}", at.as_secs_f64())?;
        }
        if let Some((at, db)) = self.first_db_errors.first() {
            write!(
                f,
                "; {} db error(s), the first at {:.2}s: db={db}",
                self.db_errors,
                at.as_secs_f64()
            )?;
        }
        Ok(())
    }
}

/// What the load saw on every target.
#[derive(Debug)]
pub struct LoadReport {
    pub hosts: Vec<HostLoad>,
    pub elapsed: Duration,
}

impl LoadReport {
    #[track_caller]
    pub fn host(&self, name: &str) -> &HostLoad {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no load target `{name}`"))
    }

    pub fn failed(&self) -> usize {
        self.hosts.iter().map(|h| h.failed).sum()
    }

    pub fn ok(&self) -> usize {
        self.hosts.iter().map(|h| h.ok).sum()
    }

    pub fn db_errors(&self) -> usize {
        self.hosts.iter().map(|h| h.db_errors).sum()
    }

    /// Asserts no request failed, no answer said its database did not answer, every target
    /// answered, and each one's last answer carried `version`; `context` (the run's output)
    /// goes into the message.
    #[track_caller]
    pub fn assert_clean(&self, version: &str, context: &str) {
        assert!(
            self.failed() == 0
                && self.db_errors() == 0
                && self
                    .hosts
                    .iter()
                    .all(|h| h.ok > 0 && h.last_version() == Some(version)),
            "expected 0 failed requests, 0 db errors and every host on version={version} at the end:\n{self}\n{context}"
        );
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "load over {:.1}s: {} ok ({} with a db error), {} failed",
            self.elapsed.as_secs_f64(),
            self.ok(),
            self.db_errors(),
            self.failed()
        )?;
        for host in &self.hosts {
            writeln!(f, "  {host}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::{free_port, http_server, wait_until};

    #[test]
    fn load_counts_failures_and_the_version_flip() {
        // 20 answers of A, 5 of 502, then B; a second target where nothing listens.
        let (port, served) = http_server(|n, _| match n {
            0..20 => (200, "version=A\nimage=A\ndb=ok\n".into()),
            20..25 => (502, "bad gateway\n".into()),
            25..28 => (200, "version=B\ndb=error: connection refused\n".into()),
            _ => (200, "version=B\ndb=ok\n".into()),
        });
        let refused = free_port();
        let load = Load::start(&[("up".into(), port), ("down".into(), refused)], 2, "/");
        wait_until(Duration::from_secs(20), "40 answers", || {
            served.load(Ordering::SeqCst) > 40
        });
        assert!(!load.wait_answered(1, Duration::ZERO), "`down` answered");
        let report = load.stop();

        let up = report.host("up");
        // Every request the server took was finished and counted by a client.
        assert_eq!(up.ok + up.failed, served.load(Ordering::SeqCst), "{report}");
        assert_eq!(up.failed, 5, "{report}");
        assert_eq!(up.reasons.get("HTTP 502"), Some(&5), "{report}");
        assert_eq!(up.db_errors, 3, "{report}");
        assert_eq!(
            up.first_db_errors[0].1, "error: connection refused",
            "{report}"
        );
        assert_eq!(up.last_version(), Some("B"));
        let flips: Vec<&str> = up.flips().iter().map(|(_, v)| *v).collect();
        assert_eq!(flips, ["A", "B"], "{report}");
        assert!(up.last_seen("A") < up.first_seen("B"), "{report}");

        let down = report.host("down");
        assert_eq!(down.ok, 0);
        assert!(down.failed > 0, "{report}");
        assert!(
            down.failures
                .iter()
                .all(|(_, why)| why.starts_with("connect:")),
            "{report}"
        );
        assert_eq!(report.failed(), up.failed + down.failed);
    }

    #[test]
    fn version_and_db_are_read_from_the_plain_answer() {
        assert_eq!(version_of("version=B\nimage=B\n").as_deref(), Some("B"));
        assert_eq!(version_of("image=B\nversions=C\n"), None);
        assert_eq!(field("db=ok\n", "db").as_deref(), Some("ok"));
    }
}
