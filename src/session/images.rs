//! The image-pruning runner: the survey (one round trip: kept releases' images, containers,
//! the engine's images), then, only when something may go, the removal (a second one). What
//! to remove and how it ended are decided by `steps::prune_images`.

use super::{HostSession, RunContext};
use crate::plan::Become;
use crate::remote::compose::{self, ComposeFlavor};
use crate::remote::frame::Framed;
use crate::remote::images;
use crate::report::Outcome;
use crate::steps::prune_images::{self, ImagePrune};
use crate::steps::{Done, failure_text};
use crate::transport::Connection;

impl<T: Connection> HostSession<T> {
    pub(super) async fn prune_images(
        &mut self,
        ctx: &RunContext<'_>,
        prune: &ImagePrune,
        become_as: Option<&Become>,
    ) -> Done {
        let survey = Framed::new(&prune.survey(self.compose, self.compose_forced));
        let out = match self
            .exec_cut(survey.script(), &[], become_as, ctx.cancel.aborted())
            .await
        {
            Ok(out) => out,
            Err(cut) => return Done::new(Outcome::Failed, Some(cut.error.to_string())),
        };
        let reply = survey.reply(&out.stdout);
        if self.compose == ComposeFlavor::Unknown
            && let Some(flavor) = compose::flavor(reply.sections.iter().map(|(f, _)| f))
        {
            self.compose = flavor;
        }
        let failure = failure_text(&out, &ctx.plan.redactor);
        let removals = match prune.choose(&out, &reply, &failure) {
            Ok(removals) => removals,
            Err(why) => return Done::new(Outcome::Ok, Some(why)),
        };
        let removal = Framed::new(&images::remove(&removals));
        let out = match self
            .exec_cut(removal.script(), &[], become_as, ctx.cancel.aborted())
            .await
        {
            Ok(out) => out,
            Err(cut) => return Done::new(Outcome::Failed, Some(cut.error.to_string())),
        };
        let removed = images::parse_removed(&removal.reply(&out.stdout), &removals);
        let failure = (!out.success()).then(|| failure_text(&out, &ctx.plan.redactor));
        prune_images::judge_removal(&removed, failure.as_deref())
    }
}
