//! Whether a host can deploy a swarm playbook: one `docker info` telling whether its engine is
//! an active swarm manager (as the user the playbook's first `stack` step runs docker as).

use super::{HostSession, RunContext};
use crate::plan::Action;
use crate::remote::stack;
use crate::transport::Connection;

impl<T: Connection> HostSession<T> {
    /// `Ok` when this connected host's engine is an active swarm manager, else why it is not
    /// (or why that could not be told).
    pub async fn swarm_manager(&self, ctx: &RunContext<'_>) -> Result<(), String> {
        let become_as = ctx.plan.hosts[self.index]
            .steps
            .iter()
            .find(|s| matches!(s.action, Action::Stack(_)))
            .and_then(|s| s.become_as.as_ref());
        let _turn = ctx.gate.turn().await;
        let out = self
            .exec_as(stack::manager_check().as_str(), &[], become_as)
            .await?;
        let printed = self.redactor.redact(&String::from_utf8_lossy(&out.stdout));
        stack::judge_manager(out.success(), &printed)
    }
}
