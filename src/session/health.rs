//! The health runner: a `health` step retried in sessions of its own (an HTTP request through
//! the connection, or a killable command) until it passes or its timeout runs out.

use std::time::{Duration, Instant};

use super::{Cancel, HostSession};
use crate::health::{self, HealthCheck, Probe};
use crate::output::KeptOutput;
use crate::plan::Become;
use crate::remote::{self, run};
use crate::report::Outcome;
use crate::steps::{Done, require_success};
use crate::transport::{Connection, TransportError};

impl<T: Connection> HostSession<T> {
    /// Retries the check every `interval` until it passes or `timeout` runs out; the failure
    /// names the last status (and a body excerpt) seen.
    pub(super) async fn health(
        &self,
        check: &HealthCheck,
        become_as: Option<&Become>,
        cancel: &Cancel,
    ) -> Result<Done, String> {
        let started = Instant::now();
        let deadline = started + check.timeout;
        let mut attempts = 0u32;
        // The last answer seen: when the final attempt is cut by the deadline (a busy host),
        // the failure still names what the check kept answering.
        let mut answered: Option<String> = None;
        let aborted = || Err(TransportError::Aborted.to_string());
        loop {
            attempts += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let attempt = tokio::time::timeout(
                remaining.max(Duration::from_millis(100)),
                self.health_attempt(check, become_as, cancel),
            );
            // Not raced against the abort here: an attempt stops itself (a command is
            // killed on the host first), and then the run is aborted.
            let attempt = attempt.await;
            if cancel.is_aborted() {
                return aborted();
            }
            let last = match attempt {
                Ok(Ok(summary)) => {
                    return Ok(Done::new(
                        Outcome::Ok,
                        Some(format!(
                            "{summary} after {attempts} attempt(s), {:.1}s",
                            started.elapsed().as_secs_f64()
                        )),
                    ));
                }
                Ok(Err(last)) => {
                    answered = Some(last.clone());
                    last
                }
                Err(_) => match &answered {
                    Some(seen) => {
                        format!("{seen} (the attempt after it had no answer before the timeout)")
                    }
                    None => "no answer before the timeout".to_string(),
                },
            };
            let interval = check.interval.max(health::MIN_INTERVAL);
            if Instant::now() + interval >= deadline {
                return Err(format!(
                    "unhealthy after {} ({attempts} attempt(s)); last: {last}",
                    humantime::format_duration(check.timeout)
                ));
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = cancel.aborted() => return aborted(),
            }
        }
    }

    async fn health_attempt(
        &self,
        check: &HealthCheck,
        become_as: Option<&Become>,
        cancel: &Cancel,
    ) -> Result<String, String> {
        match &check.probe {
            Probe::Http {
                target,
                headers,
                tls,
            } => {
                let bytes = health::request(target, headers);
                let conn = self.conn()?;
                let cannot_connect = |e: TransportError| {
                    format!(
                        "cannot connect to {}:{} from the host: {e}",
                        target.host, target.port
                    )
                };
                let exchange = async {
                    match tls {
                        None => conn
                            .tcp_request(&target.host, target.port, &bytes, 64 * 1024)
                            .await
                            .map_err(cannot_connect),
                        Some(tls) => {
                            let stream = conn
                                .tcp_stream(&target.host, target.port)
                                .await
                                .map_err(cannot_connect)?;
                            health::tls::exchange(stream, tls, &bytes, 64 * 1024).await
                        }
                    }
                };
                // Nothing runs on the host for a request: dropping it is stopping it.
                let raw = tokio::select! {
                    raw = exchange => raw,
                    () = cancel.aborted() => Err(TransportError::Aborted.to_string()),
                }?;
                let (status, body) =
                    health::parse_response(&raw, &self.redactor).map_err(|e| e.to_string())?;
                health::judge(check, status, body, &self.redactor).map_err(|e| e.to_string())?;
                Ok(format!("HTTP {status}"))
            }
            Probe::Command { command, dir } => {
                // Aborted, the command is stopped on the host, not just left behind.
                let nonce = remote::frame::nonce();
                let script = remote::driver::tagged(&nonce, &run::command(command, dir.as_deref()));
                let mut kept = KeptOutput::new(&self.redactor);
                let status = self
                    .exec_killable(&script, &[], become_as, &mut kept, &nonce, cancel)
                    .await
                    .map_err(|e| e.to_string())?;
                require_success(&kept.finish(status), &self.redactor).map_err(|f| f.0)?;
                Ok("command passed".to_string())
            }
        }
    }
}
