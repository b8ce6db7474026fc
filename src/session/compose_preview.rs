//! A dry run's look at each compose `up` step: which services it would create, recreate or
//! leave alone (`remote::compose_preview`), from the new compose file (on stdin) and the
//! running containers' config hashes. Read-only, like the rest of the dry run.

use super::preview::Compared;
use super::{HostSession, RunContext, failure_text};
use crate::plan::Action;
use crate::plan::{PlannedStep, Upload};
use crate::remote::compose::Request;
use crate::remote::compose_preview::{Source, declared_services, look, parse_look, verdicts};
use crate::remote::frame::Framed;
use crate::report::preview::{StepPreview, Would};
use crate::steps::compose::ComposeRun;
use crate::transport::Connection;

/// The names compose looks for in a project's directory, in its order.
const COMPOSE_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

impl<T: Connection> HostSession<T> {
    /// Fills in, for each compose `up` step that would run, what it would do to each service.
    pub(super) async fn preview_compose(
        &self,
        ctx: &RunContext<'_>,
        steps: &[PlannedStep],
        previews: &mut [StepPreview],
        compared: Option<&Compared>,
    ) {
        for (i, step) in steps.iter().enumerate() {
            let Action::Compose(run) = &step.action else {
                continue;
            };
            let Request::Up(only) = &run.request else {
                continue;
            };
            if previews[i].would == Would::Skip {
                continue;
            }
            let changed: Vec<&str> = previews[..i]
                .iter()
                .flat_map(|p| &p.files)
                .filter(|f| f.change != "unchanged")
                .map(|f| f.dest.as_str())
                .collect();
            match self
                .look_at_services(ctx, step, run, &steps[..i], &changed, compared)
                .await
            {
                Ok(mut services) => {
                    if !only.is_empty() {
                        services.retain(|s| only.contains(&s.service) || s.would_be == "removed");
                    }
                    let redact = |text: &str| ctx.plan.redactor.redact(text);
                    for service in &mut services {
                        service.service = redact(&service.service);
                        service.why = service.why.as_deref().map(redact);
                    }
                    previews[i].note = None;
                    previews[i].services = services;
                }
                Err(error) => {
                    let note = previews[i].note.take().unwrap_or_default();
                    previews[i].note = Some(ctx.plan.redactor.redact(&format!(
                        "{note}{}which services it would recreate is not known: {error}",
                        if note.is_empty() { "" } else { "; " }
                    )));
                }
            }
        }
    }

    async fn look_at_services(
        &self,
        ctx: &RunContext<'_>,
        step: &PlannedStep,
        run: &ComposeRun,
        before: &[PlannedStep],
        changed: &[&str],
        compared: Option<&Compared>,
    ) -> Result<Vec<crate::remote::compose_preview::ServicePreview>, String> {
        let dir = run.dir.trim_end_matches('/');
        // The file compose would pick (its first name that exists), as the run leaves it.
        let file: Option<&Upload> = COMPOSE_FILES.iter().find_map(|name| {
            let dest = format!("{dir}/{name}");
            before
                .iter()
                .flat_map(|s| s.action.uploads())
                .rfind(|u| u.dest == dest)
        });
        let declared = file
            .map(|u| declared_services(&String::from_utf8_lossy(&u.content)))
            .unwrap_or_default();
        let in_dir = |written: &str| -> String {
            if written.starts_with('/') {
                written.to_string()
            } else {
                format!("{dir}/{}", written.trim_start_matches("./"))
            }
        };
        let masked = |path: String| ctx.plan.redactor.redact(&path);
        let mut changed_env: Vec<String> = declared
            .iter()
            .flat_map(|d| &d.env_files)
            .filter(|f| changed.contains(&masked(in_dir(f)).as_str()))
            .cloned()
            .collect();
        if changed.contains(&masked(in_dir(".env")).as_str()) {
            changed_env.push(".env".into());
        }
        let seen_dir = compared.map_or_else(|| dir.to_string(), |c| c.path(dir).into_owned());
        let source = if file.is_some() {
            Source::Stdin
        } else {
            Source::OnHost
        };
        let request = Framed::new(&look(
            self.compose_forced,
            &seen_dir,
            &run.project,
            source,
            run.release_root.is_some(),
        ));
        let stdin: Vec<&[u8]> = file.map(|u| &u.content[..]).into_iter().collect();
        let out = self
            .exec_as(request.script(), &stdin, step.become_as.as_ref())
            .await?;
        let Some(looked) = parse_look(&request.reply(&out.stdout)) else {
            return Err(failure_text(&out, &self.redactor));
        };
        if looked.hashes.is_none() && !looked.running.is_empty() && looked.error.is_some() {
            return Err(looked.error.unwrap_or_default());
        }
        Ok(verdicts(&looked, &declared, &changed_env))
    }
}
