//! Inspection queries (`releases`, `lock status|release`, `ping`): one script per host, run on
//! its own channel outside any plan, its result reported like a step's.

use std::sync::Arc;
use std::time::Instant;

use super::{HostSession, RunContext};
use crate::output::KeptOutput;
use crate::remote;
use crate::report::{Event, Outcome};
use crate::steps::{Done, output_tail, require_success};
use crate::transport::Connection;

/// A script an inspection command runs on one host: read-only (or clearing the lock).
#[derive(Clone)]
pub struct Query {
    /// The name its result is reported under.
    pub name: String,
    pub script: String,
    /// On success, the result's note made from stdout (or why the host failed after all);
    /// `None`: the output's last lines are the result.
    pub summary: Option<Summary>,
}

/// Reads a query's stdout into its result's note, or the host's failure.
pub type Summary = Arc<dyn Fn(&[u8]) -> Result<String, String> + Send + Sync>;

impl std::fmt::Debug for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Query")
            .field("name", &self.name)
            .field("script", &self.script)
            .field("summary", &self.summary.is_some())
            .finish()
    }
}

impl<T: Connection> HostSession<T> {
    /// Runs `query` (within the fork cap) and records its result: `ok` with what it printed,
    /// or `failed` with the exit status and the last lines of its output.
    pub async fn query(&mut self, ctx: &RunContext<'_>, query: &Query) {
        let name = std::iter::once(query.name.as_str());
        if !self.is_connected() || self.failed() {
            self.skip(ctx, name, "host failed");
            return;
        }
        let _turn = ctx.gate.turn().await;
        if ctx.cancel.is_cancelled() {
            self.skip(ctx, name, "interrupted");
            self.result.note.get_or_insert_with(|| "interrupted".into());
            return;
        }
        ctx.reporter.event(&Event::StepStarted {
            host: &self.host_name,
            step: &query.name,
        });
        let started = Instant::now();
        // Aborted, the script is stopped on the host: the kill request finds it by its nonce.
        let nonce = remote::frame::nonce();
        let script = remote::driver::tagged(&nonce, &query.script);
        let mut kept = KeptOutput::new(&self.redactor);
        let ran = self
            .exec_killable(&script, &[], None, &mut kept, &nonce, &ctx.cancel)
            .await;
        let done = match ran {
            Err(e) => Done::new(Outcome::Failed, Some(e.to_string())),
            Ok(status) => {
                let out = kept.finish(status);
                match (require_success(&out, &self.redactor), &query.summary) {
                    (Err(failure), _) => failure.into(),
                    (Ok(()), Some(summarize)) => match summarize(&out.stdout) {
                        Ok(note) => Done::new(Outcome::Ok, Some(note)),
                        Err(failure) => Done::new(Outcome::Failed, Some(failure)),
                    },
                    (Ok(()), None) => Done {
                        output: output_tail(&out),
                        ..Done::new(Outcome::Ok, None)
                    },
                }
            }
        };
        let elapsed = started.elapsed().as_millis() as u64;
        self.record(ctx, &query.name, done, elapsed);
    }
}
