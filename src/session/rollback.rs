//! Putting a host back on an earlier release: the one `dropship rollback` asks for, or the one
//! this run's `activate` replaced when the fleet rolls a failed batch back.

use super::{HostSession, RunContext, failure_text};
use crate::release::ReleaseSite;
use crate::remote::release;
use crate::transport::Connection;

impl<T: Connection> HostSession<T> {
    /// `dropship rollback` on this host: lists its releases, then points `current` back at
    /// `to` (or the release before the current one) and re-runs the steps after activation.
    /// A host without that release, or failing on the way, fails.
    pub async fn roll_back_to(&mut self, ctx: &RunContext<'_>, to: Option<&str>) {
        if !self.is_connected() || ctx.cancel.is_cancelled() {
            return;
        }
        let Some(site) = &ctx.plan.hosts[self.index].release else {
            self.fail(
                ctx.reporter,
                "the playbook has no [release] section: nothing to roll back to",
            );
            return;
        };
        let _turn = ctx.gate.turn().await;
        match self.rollback_target(ctx, site, to).await {
            Ok(target) => self.roll_back(ctx, &target, None).await,
            Err(error) => self.fail(ctx.reporter, &error),
        }
    }

    /// The release `dropship rollback` would point `current` at on this host: `to`, which must
    /// be there, or the one before the current. Reads the host's releases only.
    /// (The caller holds a turn of the gate.)
    pub(super) async fn rollback_target(
        &self,
        ctx: &RunContext<'_>,
        site: &ReleaseSite,
        to: Option<&str>,
    ) -> Result<String, String> {
        let listing = match self.exec(&release::list(site), &[]).await {
            Ok(out) if out.success() => release::parse_list(&String::from_utf8_lossy(&out.stdout)),
            Ok(out) => {
                return Err(format!(
                    "cannot list releases: {}",
                    failure_text(&out, &ctx.plan.redactor)
                ));
            }
            Err(e) => return Err(e),
        };
        match to {
            Some(id) if listing.releases.iter().any(|r| r == id) => Ok(id.to_string()),
            Some(id) => Err(format!(
                "release {id} is not on this host (it has: {})",
                if listing.releases.is_empty() {
                    "none".to_string()
                } else {
                    listing.releases.join(", ")
                }
            )),
            None => listing
                .previous
                .ok_or_else(|| "no previous release on this host".to_string()),
        }
    }

    /// Undoes this run's `activate` on a host of a failed batch: `current` back to the release
    /// it replaced, this run's release marked failed there (it no longer counts against
    /// `[release] keep`). A host this run did not activate is left as it is; one that had no
    /// release before gets a note saying so.
    pub async fn undo_activation(&mut self, ctx: &RunContext<'_>) {
        if !self.activated || !self.is_connected() {
            return;
        }
        match self.previous_release.clone() {
            Some(previous) => {
                let _turn = ctx.gate.turn().await;
                let failed = ctx.plan.release_id.clone();
                self.roll_back(ctx, &previous, failed.as_deref()).await;
            }
            None => self.note("no previous release to roll back to"),
        }
    }
}
