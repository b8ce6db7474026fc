//! What the fleet views (`ps`, `logs`) read of a plan: the compose projects each host's steps
//! deploy (blue/green colors included), the user their docker commands run as, and the services
//! its steps and compose files name (for hints).

use crate::diagnostic::InputError;
use crate::plan::{Action, Become, HostPlan, Plan};
use crate::remote::blue_green::Color;

/// The compose projects a host's steps act on, in the order they first appear: a compose
/// step's `project`, a blue/green step's colors (`PROJECT-blue`, `PROJECT-green`) and its
/// proxy's project.
fn projects_of(host: &HostPlan) -> Vec<String> {
    let mut projects: Vec<String> = Vec::new();
    let mut add = |p: String| {
        if !projects.contains(&p) {
            projects.push(p);
        }
    };
    for step in &host.steps {
        match &step.action {
            Action::Compose(run) => add(run.project.clone()),
            Action::BlueGreen(switch) => {
                add(Color::Blue.project(&switch.project));
                add(Color::Green.project(&switch.project));
                add(switch.proxy.project.clone());
            }
            _ => {}
        }
    }
    projects
}

/// Each host's compose projects (`projects_of`; a host whose steps are all skipped there, by
/// `when` or `once`, gets every host's). A playbook without compose steps has nothing to show.
pub fn host_projects(plan: &Plan, command: &str) -> Result<Vec<Vec<String>>, InputError> {
    let mut per_host: Vec<Vec<String>> = plan.hosts.iter().map(projects_of).collect();
    let mut all: Vec<String> = Vec::new();
    for p in per_host.iter().flatten() {
        if !all.contains(p) {
            all.push(p.clone());
        }
    }
    if all.is_empty() {
        return Err(InputError::plain(format!(
            "`{command}`: the playbook has no compose or blue_green step, so no compose project to look at"
        ))
        .with_hint("`ps` and `logs` show the containers of the projects the playbook's compose and blue_green steps deploy (`--tags` may have left them out)"));
    }
    for projects in per_host.iter_mut().filter(|p| p.is_empty()) {
        projects.clone_from(&all);
    }
    Ok(per_host)
}

/// The user the host's compose steps run docker as (`become`), so a docker socket only root
/// may use is read the same way.
pub fn docker_user(host: &HostPlan) -> Option<Become> {
    host.steps
        .iter()
        .filter(|s| matches!(s.action, Action::Compose(_) | Action::BlueGreen(_)))
        .find_map(|s| s.become_as.clone())
}

/// The services the plan names: in its compose and blue/green steps, and as the keys of
/// `services:` in the compose files it uploads. Sorted, each once.
pub fn known_services(plan: &Plan) -> Vec<String> {
    use crate::remote::compose::Request;
    let mut names: Vec<String> = Vec::new();
    for step in plan.hosts.iter().flat_map(|hp| &hp.steps) {
        match &step.action {
            Action::Compose(run) => match &run.request {
                Request::Pull(s) | Request::Up(s) | Request::Down(s) | Request::Restart(s) => {
                    names.extend(s.iter().cloned())
                }
                Request::Ps(s) => names.extend(s.iter().cloned()),
                Request::Build { services, .. } | Request::Logs { services, .. } => {
                    names.extend(services.iter().cloned())
                }
                Request::Exec { service, .. } | Request::Run { service, .. } => {
                    names.push(service.clone())
                }
            },
            Action::BlueGreen(switch) => {
                names.push(switch.service.clone());
                names.push(switch.proxy.service.clone());
            }
            action => {
                for upload in action.uploads() {
                    if !upload.sensitive && is_compose_file(&upload.dest) {
                        names.extend(compose_file_services(&upload.content));
                    }
                }
            }
        }
    }
    names.retain(|n| crate::steps::compose::valid_service(n));
    names.sort();
    names.dedup();
    names
}

/// The names compose looks for (`docker-compose.yml`, `compose.yaml`, overrides too).
fn is_compose_file(dest: &str) -> bool {
    let name = dest.rsplit('/').next().unwrap_or(dest);
    (name.starts_with("docker-compose") || name.starts_with("compose"))
        && (name.ends_with(".yml") || name.ends_with(".yaml"))
}

/// The keys of the top-level `services:` mapping of a compose file, read line by line (block
/// style, as compose files are written; anything else yields fewer names, never an error).
fn compose_file_services(content: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(content);
    let mut names = Vec::new();
    let mut inside = false;
    let mut indent: Option<usize> = None;
    for line in text.lines() {
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let depth = line.len() - content.len();
        if depth == 0 {
            inside = content.trim_end() == "services:";
            indent = None;
            continue;
        }
        if !inside || *indent.get_or_insert(depth) != depth {
            continue;
        }
        if let Some(key) = content.strip_suffix(':').or_else(|| {
            content
                .split_once(':')
                .filter(|(_, rest)| rest.trim().is_empty() || rest.trim().starts_with('#'))
                .map(|(key, _)| key)
        }) {
            names.push(key.trim().trim_matches(['"', '\'']).to_string());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_playbook_without_compose_steps_has_no_project_to_show() {
        let err = host_projects(&crate::plan::inspection(Vec::new()), "ps").unwrap_err();
        assert!(
            err.message.contains("no compose or blue_green step"),
            "{}",
            err.message
        );
    }

    #[test]
    fn compose_files_name_their_top_level_services() {
        let file = b"version: '3'\nservices:\n  web:\n    image: nginx\n    environment:\n      A: b\n  \"db\":  # the database\n    image: postgres\n\n  worker:\nvolumes:\n  data:\n";
        assert_eq!(compose_file_services(file), ["web", "db", "worker"]);
        assert!(compose_file_services(b"services: {web: {image: x}}\n").is_empty());
        assert!(is_compose_file("/srv/app/docker-compose.yml"));
        assert!(is_compose_file("compose.override.yaml"));
        assert!(!is_compose_file("/srv/app/nginx.conf"));
    }
}
