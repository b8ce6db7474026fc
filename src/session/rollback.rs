//! Putting a host back on an earlier release: the one `dropship rollback` asks for, or the one
//! this run's `activate` replaced when the fleet rolls a failed batch back.

use super::{HostSession, RunContext, failure_text};
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
        let listing = match self.exec(&release::list(site), &[]).await {
            Ok(out) if out.success() => release::parse_list(&String::from_utf8_lossy(&out.stdout)),
            Ok(out) => {
                let error = format!(
                    "cannot list releases: {}",
                    failure_text(&out, &ctx.plan.redactor)
                );
                self.fail(ctx.reporter, &error);
                return;
            }
            Err(e) => {
                self.fail(ctx.reporter, &e);
                return;
            }
        };
        let target = match to {
            Some(id) if listing.releases.iter().any(|r| r == id) => id.to_string(),
            Some(id) => {
                let error = format!(
                    "release {id} is not on this host (it has: {})",
                    if listing.releases.is_empty() {
                        "none".to_string()
                    } else {
                        listing.releases.join(", ")
                    }
                );
                self.fail(ctx.reporter, &error);
                return;
            }
            None => match listing.previous {
                Some(p) => p,
                None => {
                    self.fail(ctx.reporter, "no previous release on this host");
                    return;
                }
            },
        };
        self.roll_back(ctx, &target, None).await;
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
