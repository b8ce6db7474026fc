//! Why sudo refused a `become` script: the host's sudo asked (only after a refusal, so a run
//! that works pays nothing) and its answer turned into the sudoers rule the step needs.

use super::HostSession;
use crate::plan::Become;
use crate::remote::sudo;
use crate::transport::{Capture, Connection};

impl<T: Connection> HostSession<T> {
    /// What to say instead of sudo's own words when a script sent for `become_as` failed
    /// because sudo refused to run it (`sudo: a password is required` says nothing of the rule
    /// that is missing); `None` when it was not sudo's doing or the host cannot tell.
    pub(super) async fn sudo_refusal(
        &self,
        become_as: Option<&Become>,
        stdout: &[u8],
        stderr: &[u8],
    ) -> Option<String> {
        let become_as = become_as?;
        if !sudo::maybe_refused(stdout, stderr) {
            return None;
        }
        let request = sudo::rules(become_as.user.as_deref());
        // Not `exec`: that path asks this very question after a failure.
        let mut capture = Capture::default();
        let ended = self
            .exec_into(
                request.script(),
                &[],
                None,
                &mut capture,
                std::future::pending(),
            )
            .await;
        let out = capture.finish(ended).ok()?;
        let rules = sudo::parse_rules(&request.reply(&out.stdout))?;
        // Root becoming root runs the script without sudo: sudo refused nothing.
        if rules.user == "root" && become_as.user.is_none() {
            return None;
        }
        sudo::explain(
            &rules,
            become_as.user.as_deref(),
            become_as.password.is_some(),
        )
    }
}
