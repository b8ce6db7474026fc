//! Fleet views (`ps`, `logs`): one read-only script per targeted host, every host at once
//! (bounded by `--forks`), one SSH connection each; each host's output streamed into its own
//! sink. No lock, no audit, no step results: the caller makes its own table or lines.

use futures::future::join_all;

use super::{Cancel, ExecOptions};
use crate::plan::{Become, Plan};
use crate::report::Fanout;
use crate::session::{RunContext, ViewEnd, connect_all};
use crate::transport::{Connector, OutputSink};

/// What one host runs for a view.
#[derive(Debug, Clone)]
pub struct ViewScript {
    pub script: String,
    /// Through sudo, as the playbook's compose steps run (`None`: as the SSH user).
    pub become_as: Option<Become>,
}

/// Runs `scripts[i]` on the plan's host `i`, its output into `sinks[i]`; how each ended, in
/// the plan's host order.
pub async fn view<C: Connector, S: OutputSink>(
    connector: &C,
    plan: &Plan,
    scripts: &[ViewScript],
    sinks: &mut [S],
    exec: ExecOptions,
    cancel: Cancel,
) -> Vec<ViewEnd> {
    // Nothing is reported as it happens: the views print what the sinks made of the output.
    let silent = Fanout(Vec::new());
    let ctx = RunContext::new(plan, &silent, exec.forks, cancel);
    let sessions = connect_all(connector, plan, exec.handshakes, &silent).await;
    let ends = join_all(sessions.iter().zip(sinks.iter_mut()).map(|(s, sink)| {
        let wanted = &scripts[s.index()];
        s.run_view(&ctx, &wanted.script, wanted.become_as.as_ref(), sink)
    }))
    .await;
    join_all(sessions.into_iter().map(|s| s.finish(&silent))).await;
    ends
}
