//! Fleet views (`ps`, `logs`): a read-only script of the caller's on the host, its output
//! streamed into the caller's sink as it arrives, stopped on the host when the run is aborted.
//! Nothing is recorded as a step.

use super::{HostSession, RunContext};
use crate::plan::Become;
use crate::remote;
use crate::transport::{Connection, OutputSink, TransportError};

/// How a view's script ended on one host.
#[derive(Debug)]
pub enum ViewEnd {
    /// The script exited (`None`: killed by a signal).
    Exited(Option<u32>),
    /// Stopped on the host: the run was aborted (Ctrl-C).
    Stopped,
    /// The host was not reached, or the connection failed: why.
    Failed(String),
}

impl<T: Connection> HostSession<T> {
    /// Runs `script` (within the fork cap) as `become_as`, its output into `sink`.
    pub async fn run_view(
        &self,
        ctx: &RunContext<'_>,
        script: &str,
        become_as: Option<&Become>,
        sink: &mut dyn OutputSink,
    ) -> ViewEnd {
        if let Some(error) = &self.result.error {
            return ViewEnd::Failed(error.clone());
        }
        let _turn = ctx.gate.turn().await;
        if ctx.cancel.is_aborted() {
            return ViewEnd::Stopped;
        }
        // Aborted, the script is stopped on the host: the kill request finds it by its nonce.
        let nonce = remote::frame::nonce();
        let script = remote::driver::tagged(&nonce, script);
        let ran = self
            .exec_killable(&script, &[], become_as, sink, &nonce, &ctx.cancel)
            .await;
        match ran {
            Ok(status) => ViewEnd::Exited(status),
            Err(TransportError::Aborted) => ViewEnd::Stopped,
            Err(e) => ViewEnd::Failed(self.redactor.redact(&e.to_string())),
        }
    }
}
