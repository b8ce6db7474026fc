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
            Ok(out) if out.success() => {
                release::parse_list(&String::from_utf8_lossy(&out.stdout), &site.maker)
            }
            Ok(out) => {
                return Err(format!(
                    "cannot list releases: {}",
                    failure_text(&out, &ctx.plan.redactor)
                ));
            }
            Err(e) => return Err(e),
        };
        // Another playbook's release has other files and steps: re-running this playbook's
        // steps after activation on it would start a stack neither playbook deploys.
        let other = |id: &str| {
            format!(
                "release {id} was made by playbook \"{}\", not \"{}\": roll it back with that playbook",
                listing.maker_of(id).unwrap_or_default(),
                site.maker
            )
        };
        match to {
            Some(id) if listing.made_by_other(id, &site.maker) => Err(other(id)),
            Some(id) if listing.releases.iter().any(|r| r == id) => Ok(id.to_string()),
            Some(id) => Err(format!(
                "release {id} is not on this host (it has: {})",
                if listing.releases.is_empty() {
                    "none".to_string()
                } else {
                    listing.releases.join(", ")
                }
            )),
            None => listing.previous.clone().ok_or_else(|| {
                let before = listing.current.as_ref().and_then(|cur| {
                    listing
                        .releases
                        .iter()
                        .rfind(|r| r.as_str() < cur.as_str() && !listing.failed.contains(r))
                });
                match before {
                    Some(id) if listing.made_by_other(id, &site.maker) => format!(
                        "no earlier release of playbook \"{}\" on this host; the one before, {}",
                        site.maker,
                        other(id)
                    ),
                    _ => "no previous release on this host".to_string(),
                }
            }),
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
