//! The blue/green runner: one `blue_green` step on one host. Inspect (one exec), decide
//! (`steps::blue_green::decide`), start the idle color and check each new container directly
//! (the health runner, HTTP through the connection), switch the proxy's upstream and reload it,
//! drain, then leave the old color idle or stop it. The live color keeps serving whatever fails
//! before the switch; the upstream file is written only after the new color passed its checks.

use std::time::{Duration, Instant};

use super::sequence::Purpose;
use super::{HostSession, RunContext, failure_text};
use crate::health::{HealthCheck, HttpTarget, Probe};
use crate::output::KeptOutput;
use crate::plan::Become;
use crate::remote::blue_green::{self as bg, Color, Container, HostState, ProxyTarget};
use crate::remote::compose::{self, ComposeFlavor};
use crate::remote::frame::Framed;
use crate::report::Outcome;
use crate::steps::Done;
use crate::steps::blue_green::{Decision, Switch, after_pull, decide};
use crate::steps::compose::{ComposeCommand, compose_unavailable};
use crate::transport::Connection;

/// How long a color that already runs the target gets to answer before a switch back to it
/// (it was healthy when it last served; a rollback must not wait a full start timeout).
const IDLE_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

impl<T: Connection> HostSession<T> {
    /// Runs one `blue_green` step; a failure's text says what happened and that the live
    /// color still serves.
    pub(super) async fn blue_green(
        &mut self,
        ctx: &RunContext<'_>,
        switch: &Switch,
        become_as: Option<&Become>,
        purpose: Purpose,
    ) -> Done {
        match self.blue_green_run(ctx, switch, become_as, purpose).await {
            Ok(done) => done,
            Err(error) => Done::new(Outcome::Failed, Some(error)),
        }
    }

    async fn blue_green_run(
        &mut self,
        ctx: &RunContext<'_>,
        switch: &Switch,
        become_as: Option<&Become>,
        purpose: Purpose,
    ) -> Result<Done, String> {
        let state = self.bg_inspect(switch, become_as).await?;
        let flavor = self.compose;
        let target = state.target.clone().ok_or_else(|| {
            format!(
                "`{}` is not a release directory (it resolves to {}): point `dir` at the release, e.g. …/current",
                switch.dir,
                state.target_dir.as_deref().unwrap_or("nothing")
            )
        })?;
        let mut decision = decide(&state, &target, &switch.service);
        // A rollback takes no round trip it can spare: the live color running the target is
        // kept as it is (its images were current when it started).
        if let (Decision::KeepLive(live), Purpose::Deploy) = (decision, purpose) {
            let pull = bg::pull(flavor, &switch.dir, &live.project(&switch.project));
            let out = self.exec_as(pull.as_str(), &[], become_as).await?;
            if !out.success() {
                return Err(format!(
                    "compose pull in the live color ({}) failed; it still serves: {}",
                    live.as_str(),
                    failure_text(&out, &self.redactor)
                ));
            }
            let text = String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout);
            decision = after_pull(live, compose::changed(ComposeCommand::Pull, &text));
        }
        let color = match decision {
            Decision::KeepLive(live) => {
                return Ok(Done::new(
                    Outcome::Ok,
                    Some(format!(
                        "{} live, already on release {target}",
                        live.as_str()
                    )),
                ));
            }
            Decision::SwitchOnly(color) => {
                let routed = routed(state.containers(color), &switch.service);
                match self
                    .bg_check(ctx, switch, &routed, Some(IDLE_CHECK_TIMEOUT))
                    .await
                {
                    Ok(()) => {
                        return self
                            .bg_switch(
                                ctx, switch, become_as, &state, color, &target, routed, false,
                            )
                            .await;
                    }
                    // Not answering: started again below, like a color that was gone.
                    Err(e) => {
                        tracing::info!(host = %self.name(), "idle {} does not answer ({e}): starting it again", color.as_str());
                        color
                    }
                }
            }
            Decision::StartThenSwitch(color) => color,
        };
        let routed = self.bg_start(ctx, switch, become_as, color).await?;
        if let Err(e) = self.bg_check(ctx, switch, &routed, None).await {
            let words = self.bg_give_up(ctx, switch, become_as, color).await;
            return Err(with_words(
                format!(
                    "{} (release {target}) is not healthy, removed; the live color still serves: {e}",
                    color.as_str()
                ),
                words,
            ));
        }
        self.bg_switch(ctx, switch, become_as, &state, color, &target, routed, true)
            .await
    }

    /// The inspection, one exec; learns compose's flavour when it was unknown.
    async fn bg_inspect(
        &mut self,
        switch: &Switch,
        become_as: Option<&Become>,
    ) -> Result<HostState, String> {
        let request = Framed::new(&bg::inspect(
            self.compose,
            self.compose_forced,
            &switch.dir,
            &switch.project,
            &switch.upstream,
        ));
        let out = self.exec_as(request.script(), &[], become_as).await?;
        if !out.success() {
            return Err(format!(
                "could not inspect the colors: {}",
                failure_text(&out, &self.redactor)
            ));
        }
        let state = bg::parse_inspect(&request.reply(&out.stdout), &switch.project);
        if let Some(flavor) = state.flavor {
            self.compose = flavor;
        }
        if let Some(problem) = compose_unavailable(self.compose) {
            return Err(problem);
        }
        match self.compose {
            ComposeFlavor::Unknown => {
                Err("could not tell how compose is invoked on this host".into())
            }
            _ => Ok(state),
        }
    }

    /// Pulls and starts `color` from the release; its containers of the routed service, each
    /// running with an address. A color that fails to start is removed.
    async fn bg_start(
        &mut self,
        ctx: &RunContext<'_>,
        switch: &Switch,
        become_as: Option<&Become>,
        color: Color,
    ) -> Result<Vec<Container>, String> {
        let project = color.project(&switch.project);
        let request = Framed::new(&bg::start(self.compose, &switch.dir, &project));
        // Aborted, the pull or start is stopped on the host: the kill request finds it by
        // its nonce.
        let nonce = crate::remote::frame::nonce();
        let script = crate::remote::driver::tagged(&nonce, request.script());
        let mut kept = KeptOutput::new(&self.redactor);
        let status = self
            .exec_killable(&script, &[], become_as, &mut kept, &nonce, &ctx.cancel)
            .await
            .map_err(|e| e.to_string())?;
        let out = kept.finish(status);
        let failed = |why: String| {
            format!(
                "{} could not start, removed; the live color still serves: {why}",
                color.as_str()
            )
        };
        let reply = request.reply(&out.stdout);
        if !out.success() {
            let why = failure_text(&out, &self.redactor);
            if !bg::pulled(&reply) {
                // The pull failed: the idle color was not touched (it may still hold the
                // release before the live one, for a rollback), so it stays.
                return Err(format!(
                    "could not pull {}'s images; the live color still serves: {why}",
                    color.as_str()
                ));
            }
            let words = self.bg_give_up(ctx, switch, become_as, color).await;
            return Err(with_words(failed(why), words));
        }
        let listed = bg::containers_section(&reply);
        let containers: Vec<Container> = bg::parse_containers(&listed, &switch.project)
            .into_iter()
            .filter(|(c, _)| *c == color)
            .map(|(_, container)| container)
            .collect();
        let routed = routed(&containers, &switch.service);
        let why = if routed.is_empty() {
            Some(format!(
                "its compose file in {} has no running `{}` service",
                switch.dir, switch.service
            ))
        } else {
            routed
                .iter()
                .find(|c| !c.running || c.ip.is_none())
                .map(|c| format!("container {} is not running", c.name))
        };
        if let Some(why) = why {
            let words = self.bg_give_up(ctx, switch, become_as, color).await;
            return Err(with_words(failed(why), words));
        }
        Ok(routed)
    }

    /// Each container answers its health check directly (not through the proxy), in turn.
    async fn bg_check(
        &self,
        ctx: &RunContext<'_>,
        switch: &Switch,
        containers: &[Container],
        timeout: Option<Duration>,
    ) -> Result<(), String> {
        for container in containers {
            let Some(ip) = container.ip else {
                return Err(format!("container {} has no address", container.name));
            };
            let check = HealthCheck {
                probe: Probe::Http {
                    target: HttpTarget {
                        https: false,
                        host: ip.to_string(),
                        port: switch.port,
                        path: switch.health.path.clone(),
                    },
                    headers: Vec::new(),
                    tls: None,
                },
                expect: switch.health.expect,
                contains: switch.health.contains.clone(),
                timeout: timeout.map_or(switch.health.timeout, |t| t.min(switch.health.timeout)),
                interval: switch.health.interval,
            };
            self.health(&check, None, &ctx.cancel)
                .await
                .map_err(|e| format!("container {}: {e}", container.name))?;
        }
        Ok(())
    }

    /// Points the proxy at `color`, drains, then leaves the other color idle or stops it.
    #[allow(clippy::too_many_arguments)]
    async fn bg_switch(
        &mut self,
        ctx: &RunContext<'_>,
        switch: &Switch,
        become_as: Option<&Become>,
        state: &HostState,
        color: Color,
        target: &str,
        routed: Vec<Container>,
        started: bool,
    ) -> Result<Done, String> {
        let mut names: Vec<String> = routed.into_iter().map(|c| c.name).collect();
        names.sort();
        let content = bg::render_upstream(color, target, &names, switch.port);
        // A deploy brings the proxy up to date (a no-op when it runs unchanged) and tests its
        // config before the reload. A switch back to a color that still runs (a rollback) only
        // makes sure the proxy runs and reloads it: the upstream it goes back to passed the
        // test when it was live, nginx's reload parses the config again (and refuses a bad
        // one), and every exec in the proxy costs time the rollback should not take.
        let proxy = ProxyTarget {
            dir: &switch.proxy.dir,
            project: &switch.proxy.project,
            service: &switch.proxy.service,
            test: if started { &switch.proxy.test } else { &[] },
            reload: &switch.proxy.reload,
        };
        let script = bg::switch(self.compose, &switch.upstream, &content, &proxy, started);
        let switching = Instant::now();
        let out = self.exec_as(script.as_str(), &[], become_as).await;
        let switch_time = switching.elapsed();
        let out = match out {
            Ok(out) if out.success() => out,
            failed => {
                let why = match failed {
                    Ok(out) => failure_text(&out, &self.redactor),
                    Err(e) => e,
                };
                if started && !ctx.cancel.is_aborted() {
                    self.bg_remove(switch, become_as, color).await;
                }
                return Err(format!(
                    "the switch to {} failed{}; the live color still serves: {why}",
                    color.as_str(),
                    if started { " (new color removed)" } else { "" }
                ));
            }
        };
        drop(out);
        let old = color.other();
        let old_release = state
            .containers(old)
            .iter()
            .find(|c| c.service == switch.service)
            .and_then(|c| c.release.clone());
        let had_old = state.containers(old).iter().any(|c| c.running);
        let mut detail = format!(
            "{} live (release {target}){}, switched in {:.2}s",
            color.as_str(),
            if started {
                ""
            } else {
                ", no container started"
            },
            switch_time.as_secs_f64()
        );
        if !had_old {
            return Ok(Done::new(Outcome::Changed, Some(detail)));
        }
        let old_release = old_release.unwrap_or_else(|| "unknown".into());
        if switch.keep_previous {
            detail.push_str(&format!(
                "; {} kept idle for rollback (release {old_release})",
                old.as_str()
            ));
        } else {
            // In-flight requests finish on the old workers, which still reach the old color:
            // it is stopped only after the drain. (Kept idle, it is not touched at all.)
            tokio::select! {
                () = tokio::time::sleep(switch.drain) => {}
                () = ctx.cancel.aborted() => {}
            }
            let stop = bg::stop(&old.project(&switch.project));
            match self.exec_as(stop.as_str(), &[], become_as).await {
                Ok(out) if out.success() => detail.push_str(&format!(
                    "; {} stopped (release {old_release})",
                    old.as_str()
                )),
                Ok(out) => detail.push_str(&format!(
                    "; {} could not be stopped: {}",
                    old.as_str(),
                    failure_text(&out, &self.redactor)
                )),
                Err(e) => detail.push_str(&format!("; {} could not be stopped: {e}", old.as_str())),
            }
        }
        Ok(Done::new(Outcome::Changed, Some(detail)))
    }

    /// A new color failed: what its containers say (before they go), then it is removed.
    /// Aborted, neither: the run must end.
    async fn bg_give_up(
        &self,
        ctx: &RunContext<'_>,
        switch: &Switch,
        become_as: Option<&Become>,
        color: Color,
    ) -> Option<String> {
        if ctx.cancel.is_aborted() {
            return None;
        }
        let words = self
            .container_words(ctx, &[color.project(&switch.project)])
            .await;
        self.bg_remove(switch, become_as, color).await;
        words
    }

    /// Removes a color that failed (`down`, volumes kept). Best effort: the failure that led
    /// here is what gets reported.
    async fn bg_remove(&self, switch: &Switch, become_as: Option<&Become>, color: Color) {
        let down = bg::remove(self.compose, &switch.dir, &color.project(&switch.project));
        match self.exec_as(down.as_str(), &[], become_as).await {
            Ok(out) if out.success() => {}
            Ok(out) => {
                tracing::warn!(host = %self.name(), "could not remove {}: {}", color.as_str(), failure_text(&out, &self.redactor))
            }
            Err(e) => {
                tracing::warn!(host = %self.name(), "could not remove {}: {e}", color.as_str())
            }
        }
    }
}

/// A failure's text, then what the failed color's containers said (their state and last log
/// lines, masked), when they said anything.
fn with_words(failure: String, words: Option<String>) -> String {
    match words {
        Some(words) => format!("{failure}\n{words}"),
        None => failure,
    }
}

/// The containers of the routed service, in name order.
fn routed(containers: &[Container], service: &str) -> Vec<Container> {
    let mut routed: Vec<Container> = containers
        .iter()
        .filter(|c| c.service == service)
        .cloned()
        .collect();
    routed.sort_by(|a, b| a.name.cmp(&b.name));
    routed
}
