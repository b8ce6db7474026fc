//! Whether a stack has converged after a deploy or a rollback (pure): each service judged from
//! what `docker service inspect` and `docker service ps` say now, against the survey taken
//! before. Swarm's own CLI exits 0 when the engine rolls an update back (docker/cli#6752):
//! here that is a failure naming the service.
//! May import: `remote::stack`.

use std::collections::HashMap;

use super::stack::{Service, Task};

/// Why the stack was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `docker stack deploy`.
    Deploy,
    /// `docker service rollback` of each service named.
    Rollback,
}

/// Where one service stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not there yet: why.
    Pending(String),
    /// Its tasks run the new spec.
    Updated,
    /// Nothing of it changed.
    Unchanged,
    /// Back on its previous spec: the engine's own rollback after a failed update (a failure
    /// of a deploy), or the one a rollback asked for.
    RolledBack(String),
    /// The engine paused its update or rollback, or it is gone.
    Failed(String),
}

impl Verdict {
    pub fn settled(&self) -> bool {
        !matches!(self, Verdict::Pending(_))
    }
}

/// The image a task runs and the one the spec asks for are the same (one of them may lack the
/// digest the engine pinned).
fn same_image(a: &str, b: &str) -> bool {
    let bare = |s: &str| s.split('@').next().unwrap_or(s).to_string();
    a == b || (!(a.contains('@') && b.contains('@')) && bare(a) == bare(b))
}

/// Its tasks run: as many running as its replicas (at least one for a global service), each
/// on the image its spec asks for; otherwise why not.
fn tasks_converged(service: &Service) -> Result<(), String> {
    let running: Vec<&Task> = service.tasks.iter().filter(|t| t.running()).collect();
    let wanted = service.replicas.unwrap_or(1);
    if let Some(old) = running
        .iter()
        .find(|t| !same_image(&t.image, &service.image))
    {
        return Err(format!("{} still runs {}", old.name, old.image));
    }
    if (running.len() as u64) < wanted {
        return Err(format!("{} of {wanted} task(s) running", running.len()));
    }
    Ok(())
}

/// The latest error a task of the service reported (`docker service ps --no-trunc`).
pub fn task_error(service: &Service) -> Option<String> {
    service
        .tasks
        .iter()
        .find(|t| !t.error.trim().is_empty())
        .map(|t| format!("{}: {}", t.name, t.error.trim()))
}

fn with_task_error(message: &str, service: &Service) -> String {
    let message = if message.trim().is_empty() {
        "no message from the engine".to_string()
    } else {
        message.trim().to_string()
    };
    match task_error(service) {
        Some(e) => format!("{message}; last task error: {e}"),
        None => message,
    }
}

/// Judges one service now against `before` (the same service before the change, if it
/// existed). `asked` says whether a rollback was asked of it (always true for a deploy).
pub fn judge(service: &Service, before: Option<&Service>, change: Change, asked: bool) -> Verdict {
    let earlier_update = before.and_then(|b| b.update.as_ref());
    // An update or rollback the engine began since the survey before the change.
    let fresh = service.update.as_ref().filter(|u| {
        earlier_update.is_none_or(|e| e.started_at != u.started_at || e.state != u.state)
    });
    if change == Change::Rollback && !asked {
        return Verdict::Unchanged;
    }
    if let Some(update) = fresh {
        let converged = || match tasks_converged(service) {
            Ok(()) => None,
            Err(why) => Some(Verdict::Pending(why)),
        };
        return match (update.state.as_str(), change) {
            ("updating" | "rollback_started", _) => {
                Verdict::Pending(format!("{}: {}", update.state, update.message.trim()))
            }
            ("completed", Change::Deploy) => converged().unwrap_or(Verdict::Updated),
            ("rollback_completed", Change::Deploy) => {
                Verdict::RolledBack(with_task_error(&update.message, service))
            }
            ("rollback_completed", Change::Rollback) => converged()
                .unwrap_or_else(|| Verdict::RolledBack(update.message.trim().to_string())),
            ("paused" | "rollback_paused", _) => Verdict::Failed(format!(
                "{}: {}",
                update.state,
                with_task_error(&update.message, service)
            )),
            // `completed` after a rollback was asked: the rollback has not begun yet.
            (state, _) => Verdict::Pending(format!("{state}: waiting for the engine")),
        };
    }
    let template_changed = before.is_some_and(|b| b.task_template != service.task_template);
    if template_changed || change == Change::Rollback {
        // The engine replaces the tasks; its update status says when it has begun.
        return Verdict::Pending("waiting for the engine to begin".into());
    }
    match tasks_converged(service) {
        Err(why) => Verdict::Pending(match task_error(service) {
            Some(e) => format!("{why}; last task error: {e}"),
            None => why,
        }),
        Ok(()) if before.is_none_or(|b| b.spec != service.spec) => Verdict::Updated,
        Ok(()) => Verdict::Unchanged,
    }
}

/// Judges every service of the stack now; a service of `before` gone now is failed.
pub fn judge_all(
    now: &[Service],
    before: &[Service],
    change: Change,
    asked: &[String],
) -> Vec<(String, Verdict)> {
    let earlier: HashMap<&str, &Service> = before.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut verdicts: Vec<(String, Verdict)> = now
        .iter()
        .map(|s| {
            let asked = change == Change::Deploy || asked.contains(&s.name);
            (
                s.name.clone(),
                judge(s, earlier.get(s.id.as_str()).copied(), change, asked),
            )
        })
        .collect();
    for gone in before.iter().filter(|b| !now.iter().any(|s| s.id == b.id)) {
        verdicts.push((
            gone.name.clone(),
            Verdict::Failed("the service is gone".into()),
        ));
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::stack::parse_service;

    /// `docker service inspect --format '{{json .}}'` of a service, trimmed to what is judged,
    /// as recorded from a 20.10 engine.
    fn inspect(image: &str, update: Option<(&str, &str, &str)>) -> Service {
        let update = match update {
            Some((state, started, message)) => format!(
                r#","UpdateStatus":{{"State":"{state}","StartedAt":"{started}","CompletedAt":"2026-11-29T20:31:10Z","Message":"{message}"}}"#
            ),
            None => String::new(),
        };
        let json = format!(
            r#"{{"ID":"k3d2v0","Version":{{"Index":120}},"CreatedAt":"2026-11-29T20:30:00Z","Spec":{{"Name":"pixel_web","Labels":{{"com.docker.stack.image":"{image}","com.docker.stack.namespace":"pixel"}},"TaskTemplate":{{"ContainerSpec":{{"Image":"{image}","Healthcheck":{{"Test":["CMD","wget","-qO-","http://127.0.0.1:8000/healthz"]}}}},"ForceUpdate":0,"Runtime":"container"}},"Mode":{{"Replicated":{{"Replicas":2}}}},"UpdateConfig":{{"Parallelism":1,"FailureAction":"rollback","Order":"start-first"}}}},"PreviousSpec":{{"Name":"pixel_web"}}{update}}}"#
        );
        parse_service(&json).expect("recorded inspect parses")
    }

    fn task(slot: u32, image: &str, desired: &str, current: &str, error: &str) -> Task {
        Task {
            name: format!("pixel_web.{slot}"),
            image: image.into(),
            desired_state: desired.into(),
            current_state: current.into(),
            error: error.into(),
        }
    }

    const V1: &str = "127.0.0.1:5000/pixel/app:A@sha256:aaaa";
    const V2: &str = "127.0.0.1:5000/pixel/app:B@sha256:bbbb";

    fn running(image: &str) -> Vec<Task> {
        vec![
            task(1, image, "Running", "Running 4 seconds ago", ""),
            task(2, image, "Running", "Running 9 seconds ago", ""),
        ]
    }

    #[test]
    fn updating_is_pending_and_completed_with_new_tasks_is_updated() {
        let before = Service {
            tasks: running(V1),
            ..inspect(V1, Some(("completed", "t0", "update completed")))
        };
        let mut now = inspect(V2, Some(("updating", "t1", "update in progress")));
        now.tasks = running(V1);
        assert!(matches!(
            judge(&now, Some(&before), Change::Deploy, true),
            Verdict::Pending(_)
        ));
        // Completed, but a task still on the old image (read a moment too early): pending.
        let mut now = inspect(V2, Some(("completed", "t1", "update completed")));
        now.tasks = vec![running(V2).remove(0), running(V1).remove(1)];
        assert!(matches!(
            judge(&now, Some(&before), Change::Deploy, true),
            Verdict::Pending(w) if w.contains("still runs") && w.contains(":A@")
        ));
        now.tasks = running(V2);
        assert_eq!(
            judge(&now, Some(&before), Change::Deploy, true),
            Verdict::Updated
        );
    }

    #[test]
    fn a_changed_spec_whose_update_has_not_begun_is_pending_not_unchanged() {
        // Right after `stack deploy` returns, the update status still shows the last update.
        let before = Service {
            tasks: running(V1),
            ..inspect(V1, Some(("completed", "t0", "update completed")))
        };
        let mut now = inspect(V2, Some(("completed", "t0", "update completed")));
        now.tasks = running(V1);
        assert_eq!(
            judge(&now, Some(&before), Change::Deploy, true),
            Verdict::Pending("waiting for the engine to begin".into())
        );
        // The same spec again: unchanged once its tasks run.
        let same = Service {
            tasks: running(V1),
            ..before.clone()
        };
        assert_eq!(
            judge(&same, Some(&before), Change::Deploy, true),
            Verdict::Unchanged
        );
        // More replicas: the tasks' template is the same, the service is updated all the same.
        let mut scaled = same.clone();
        scaled.spec["Mode"]["Replicated"]["Replicas"] = 3.into();
        scaled.replicas = Some(3);
        scaled
            .tasks
            .push(task(3, V1, "Running", "Running 1 second ago", ""));
        assert_eq!(
            judge(&scaled, Some(&before), Change::Deploy, true),
            Verdict::Updated
        );
    }

    #[test]
    fn rollback_completed_after_a_deploy_is_the_engine_rolling_back_with_the_task_error() {
        let before = inspect(V2, Some(("completed", "t1", "update completed")));
        let mut now = inspect(
            V2,
            Some((
                "rollback_completed",
                "t2",
                "update rolled back due to failure or early termination of task x1",
            )),
        );
        now.tasks = running(V2);
        now.tasks.insert(
            0,
            task(
                1,
                "127.0.0.1:5000/pixel/app:broken",
                "Shutdown",
                "Failed 10 seconds ago",
                "task: non-zero exit (1): dockerexec: unhealthy container",
            ),
        );
        let Verdict::RolledBack(why) = judge(&now, Some(&before), Change::Deploy, true) else {
            panic!()
        };
        assert!(
            why.starts_with("update rolled back due to failure")
                && why.contains("last task error: pixel_web.1: task: non-zero exit (1)"),
            "{why}"
        );
        // The same rollback seen again by a later deploy is old news, not a new failure.
        let again = Service {
            tasks: running(V2),
            ..now.clone()
        };
        assert_eq!(
            judge(&again, Some(&now), Change::Deploy, true),
            Verdict::Unchanged
        );
    }

    #[test]
    fn a_paused_update_is_a_failure_and_a_missing_service_is_one_too() {
        let before = inspect(V1, None);
        let mut now = inspect(V2, Some(("paused", "t1", "update paused due to failure")));
        now.tasks = running(V1);
        assert!(matches!(
            judge(&now, Some(&before), Change::Deploy, true),
            Verdict::Failed(w) if w.starts_with("paused: update paused due to failure")
        ));
        let verdicts = judge_all(&[], &[before], Change::Deploy, &[]);
        assert_eq!(
            verdicts,
            vec![(
                "pixel_web".to_string(),
                Verdict::Failed("the service is gone".into())
            )]
        );
    }

    #[test]
    fn a_new_service_is_updated_once_its_tasks_run_and_pending_with_their_error_before() {
        let mut now = inspect(V1, None);
        now.tasks = vec![task(
            1,
            V1,
            "Running",
            "Preparing 2 seconds ago",
            "No such image: 127.0.0.1:5000/pixel/app:A",
        )];
        assert!(matches!(
            judge(&now, None, Change::Deploy, true),
            Verdict::Pending(w) if w.contains("0 of 2") && w.contains("No such image")
        ));
        now.tasks = running(V1);
        assert_eq!(judge(&now, None, Change::Deploy, true), Verdict::Updated);
    }

    #[test]
    fn a_rollback_waits_for_rollback_completed_and_leaves_services_not_asked() {
        let before = Service {
            tasks: running(V2),
            ..inspect(V2, Some(("completed", "t1", "update completed")))
        };
        let mut now = inspect(V1, Some(("completed", "t1", "update completed")));
        now.tasks = running(V2);
        assert!(matches!(
            judge(&now, Some(&before), Change::Rollback, true),
            Verdict::Pending(_)
        ));
        let mut now = inspect(
            V1,
            Some(("rollback_started", "t2", "manually requested rollback")),
        );
        now.tasks = running(V2);
        assert!(matches!(
            judge(&now, Some(&before), Change::Rollback, true),
            Verdict::Pending(_)
        ));
        let mut now = inspect(V1, Some(("rollback_completed", "t2", "rollback completed")));
        now.tasks = running(V1);
        assert_eq!(
            judge(&now, Some(&before), Change::Rollback, true),
            Verdict::RolledBack("rollback completed".into())
        );
        assert_eq!(
            judge(&now, Some(&before), Change::Rollback, false),
            Verdict::Unchanged
        );
    }
}
