//! Fleet views on a host (`dropship ps`, `dropship logs`): the scripts that list a compose
//! project's containers (`docker ps -a` by the project's label: compose v1 and v2 alike, no
//! compose dir needed) and print one service's logs, and the parser of `docker ps`'s JSON lines.
//! Read-only. May import: `remote::script`.

use serde::Deserialize;

use crate::sh;

use super::script::Script;

/// The label compose puts on every container of a project (v1 and v2 alike).
const PROJECT_LABEL: &str = "com.docker.compose.project";
/// The label naming the container's service.
const SERVICE_LABEL: &str = "com.docker.compose.service";

/// Exit status of the logs script when the host runs no container of the service.
pub const NO_CONTAINER: u32 = 3;

/// Lists every container of `projects`, one JSON object per line (`docker ps --format
/// '{{json .}}'`); exits with docker's status when a listing fails.
pub fn ps_script(projects: &[String]) -> Script {
    let mut script = Script::default();
    for project in projects {
        script.push(&sh!(
            "docker ps -a --no-trunc --filter {} --format {} </dev/null || exit\n",
            format!("label={PROJECT_LABEL}={project}"),
            "{{json .}}",
        ));
    }
    script.push(&sh!("exit 0\n"));
    script
}

/// How much of a service's logs to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsRequest {
    pub service: String,
    /// `--tail`: lines per container (`None`: all).
    pub tail: Option<u32>,
    /// `--since`, seconds ago.
    pub since_secs: Option<u64>,
    /// `-f`: keep following until stopped.
    pub follow: bool,
}

/// Prints the logs of `request.service`'s containers in `projects` (both of a container's
/// streams on stdout); exits `NO_CONTAINER` when the host runs none, 1 when a listing fails.
/// Followed containers are followed at once; otherwise one after the other.
pub fn logs_script(projects: &[String], request: &LogsRequest) -> Script {
    let service_filter = format!("label={SERVICE_LABEL}={}", request.service);
    let mut script = sh!("dsc=\n");
    for project in projects {
        script.push(&sh!(
            "dsc=\"$dsc $(docker ps -a -q --no-trunc --filter {} --filter {} </dev/null)\" || exit 1\n",
            format!("label={PROJECT_LABEL}={project}"),
            service_filter,
        ));
    }
    let mut options = Script::default();
    if let Some(tail) = request.tail {
        options.push(&sh!(" --tail {}", tail));
    }
    if let Some(secs) = request.since_secs {
        options.push(&sh!(" --since {}", format!("{secs}s")));
    }
    let run = if request.follow {
        sh!(
            "for dsi; do docker logs -f{} \"$dsi\" </dev/null 2>&1 & done; wait\n",
            options
        )
    } else {
        sh!(
            "dse=0; for dsi; do docker logs{} \"$dsi\" </dev/null 2>&1 || dse=1; done; exit $dse\n",
            options
        )
    };
    script.push(&sh!(
        "set --
for dsi in $dsc; do case $dsi in *[!0-9a-f]*) ;; *) set -- \"$@\" \"$dsi\" ;; esac; done
if [ $# = 0 ]; then echo {} >&2; exit {}; fi
{}",
        format!("no container of service `{}`", request.service),
        NO_CONTAINER,
        run,
    ));
    script
}

/// One container as `docker ps --format '{{json .}}'` describes it (the fields used here;
/// docker adds others).
#[derive(Debug, Deserialize)]
struct PsLine {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Names")]
    names: String,
    #[serde(rename = "Image")]
    image: String,
    /// Missing before docker 20.10: found from `Status` then.
    #[serde(rename = "State", default)]
    state: Option<String>,
    #[serde(rename = "Status")]
    status: String,
    /// `k=v,k=v`.
    #[serde(rename = "Labels", default)]
    labels: String,
}

/// A container of one of the playbook's projects, as a host listed it (the host's text, not
/// yet made visible).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub project: String,
    pub service: String,
    pub name: String,
    pub id: String,
    /// `running`, `exited`, `restarting`, `created`, `paused`, `dead`, …
    pub state: String,
    /// The exit code of an exited container (from `Status`).
    pub exit_code: Option<i64>,
    pub image: String,
    /// Docker's `Status`: `Up 5 minutes (healthy)`, `Exited (1) 2 hours ago`, …
    pub status: String,
}

/// Most bytes of `docker ps` output a host may send (about ten thousand containers).
pub const PS_LIMIT: usize = 16 * 1024 * 1024;
/// Longest value kept of a listed field.
const FIELD_LIMIT: usize = 512;

/// Parses the ps script's output: every non-empty line a JSON object of a container of one of
/// `projects`. Anything else is the host's failure (what was not understood, shortened).
pub fn parse_ps(stdout: &[u8], projects: &[String]) -> Result<Vec<Container>, String> {
    let text = std::str::from_utf8(stdout).map_err(|_| "`docker ps` printed non-UTF-8 text")?;
    let mut containers = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let parsed: PsLine = serde_json::from_str(line).map_err(|e| {
            format!(
                "`docker ps` printed a line that is not a container ({e}): {}",
                shortened(line, 200)
            )
        })?;
        let label = |key: &str| {
            parsed
                .labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or("")
                .to_string()
        };
        let project = label(PROJECT_LABEL);
        if !projects.contains(&project) {
            return Err(format!(
                "`docker ps` listed container `{}` of project `{}`, not asked for",
                shortened(&parsed.names, 100),
                shortened(&project, 100)
            ));
        }
        let state = parsed
            .state
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| state_of_status(&parsed.status).to_string());
        containers.push(Container {
            project,
            service: shortened(&label(SERVICE_LABEL), FIELD_LIMIT),
            name: shortened(&parsed.names, FIELD_LIMIT),
            id: shortened(&parsed.id, 64),
            exit_code: (state == "exited")
                .then(|| exit_code(&parsed.status))
                .flatten(),
            state: shortened(&state, 32),
            image: shortened(&parsed.image, FIELD_LIMIT),
            status: shortened(&parsed.status, FIELD_LIMIT),
        });
    }
    Ok(containers)
}

/// A container's state from docker's `Status` text (docker before 20.10 had no `State`).
fn state_of_status(status: &str) -> &'static str {
    let word = status.split_whitespace().next().unwrap_or("");
    match word {
        "Up" if status.contains("(Paused)") => "paused",
        "Up" => "running",
        "Exited" => "exited",
        "Restarting" => "restarting",
        "Created" => "created",
        "Dead" => "dead",
        "Removal" => "removing",
        _ => "unknown",
    }
}

/// `N` of `Exited (N) 5 minutes ago`.
fn exit_code(status: &str) -> Option<i64> {
    let rest = status.strip_prefix("Exited (")?;
    rest[..rest.find(')')?].parse().ok()
}

/// At most `max` characters of `text`, `…` marking a cut.
fn shortened(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((at, _)) => format!("{}…", &text[..at]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::run_in_sh;

    fn line(project: &str, service: &str, name: &str, state: &str, status: &str) -> String {
        serde_json::json!({
            "Command": "\"nginx -g 'daemon off;'\"",
            "ID": "0123abcd",
            "Image": "registry.local/pixel:1.2",
            "Labels": format!("com.docker.compose.oneoff=False,{PROJECT_LABEL}={project},{SERVICE_LABEL}={service},x=a=b"),
            "Names": name,
            "State": state,
            "Status": status,
        })
        .to_string()
    }

    #[test]
    fn ps_lines_parse_into_containers_with_state_and_exit_code() {
        let projects = vec!["app".to_string(), "app-blue".to_string()];
        let out = format!(
            "{}\n\n{}\n",
            line(
                "app",
                "web",
                "app-web-1",
                "running",
                "Up 5 minutes (healthy)"
            ),
            line(
                "app-blue",
                "db",
                "app-blue-db-1",
                "exited",
                "Exited (137) 2 hours ago"
            ),
        );
        let containers = parse_ps(out.as_bytes(), &projects).unwrap();
        assert_eq!(containers.len(), 2);
        assert_eq!(containers[0].project, "app");
        assert_eq!(containers[0].service, "web");
        assert_eq!(containers[0].state, "running");
        assert_eq!(containers[0].exit_code, None);
        assert_eq!(containers[0].image, "registry.local/pixel:1.2");
        assert_eq!(containers[1].project, "app-blue");
        assert_eq!(containers[1].state, "exited");
        assert_eq!(containers[1].exit_code, Some(137));
        assert_eq!(containers[1].status, "Exited (137) 2 hours ago");
    }

    #[test]
    fn old_dockers_without_state_are_read_from_status() {
        let mut value: serde_json::Value =
            serde_json::from_str(&line("app", "web", "w", "", "Restarting (1) 3 seconds ago"))
                .unwrap();
        value.as_object_mut().unwrap().remove("State");
        let containers = parse_ps(value.to_string().as_bytes(), &["app".into()]).unwrap();
        assert_eq!(containers[0].state, "restarting");
        assert_eq!(state_of_status("Up 2 minutes (Paused)"), "paused");
        assert_eq!(state_of_status("Exited (0) 1 second ago"), "exited");
    }

    #[test]
    fn anything_but_containers_of_the_asked_projects_is_the_hosts_failure() {
        let projects = ["app".to_string()];
        for bad in [
            "Got permission denied while trying to connect to the Docker daemon socket",
            "{\"ID\": 1}",
            "[]",
        ] {
            let err = parse_ps(bad.as_bytes(), &projects).unwrap_err();
            assert!(err.contains("not a container"), "{bad}: {err}");
        }
        let other = line("other", "web", "o", "running", "Up");
        let err = parse_ps(other.as_bytes(), &projects).unwrap_err();
        assert!(err.contains("not asked for"), "{err}");
        assert!(parse_ps(b"\xff\n", &projects).is_err());
        let long = line("app", "web", &"n".repeat(5000), "running", "Up");
        let containers = parse_ps(long.as_bytes(), &projects).unwrap();
        assert_eq!(containers[0].name.chars().count(), FIELD_LIMIT + 1);
    }

    /// A `docker` on PATH that logs its argv and answers `ps -q` with two ids.
    fn fake_docker(dir: &std::path::Path) -> String {
        let bin = dir.join("docker");
        std::fs::write(
            &bin,
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> \"$(dirname \"$0\")/log\"\n\
             case \"$1\" in ps) echo 0a1; echo 'zz-id';; logs) echo \"line of $3 $4 $5\";; esac\n",
        )
        .unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        format!("PATH={}:$PATH\n", dir.display())
    }

    #[test]
    fn the_scripts_quote_projects_and_pass_only_container_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = fake_docker(dir.path());
        let projects = vec!["app".to_string(), "app-blue".to_string()];
        let ps = ps_script(&projects);
        let out = run_in_sh(&format!("{path}{ps}"), b"");
        assert_eq!(out.status, Some(0));
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
        assert_eq!(
            log,
            "ps -a --no-trunc --filter label=com.docker.compose.project=app --format {{json .}}\n\
             ps -a --no-trunc --filter label=com.docker.compose.project=app-blue --format {{json .}}\n"
        );
        std::fs::remove_file(dir.path().join("log")).unwrap();
        let request = LogsRequest {
            service: "web".into(),
            tail: Some(5),
            since_secs: Some(600),
            follow: false,
        };
        let out = run_in_sh(&format!("{path}{}", logs_script(&projects, &request)), b"");
        assert_eq!(out.status, Some(0), "{out:?}");
        // `bad id` (not hex) is never passed to `docker logs`.
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "line of 5 --since 600s\nline of 5 --since 600s\n"
        );
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
        assert!(
            log.contains("--filter label=com.docker.compose.service=web"),
            "{log}"
        );
        assert!(log.contains("logs --tail 5 --since 600s 0a1\n"), "{log}");
    }

    #[test]
    fn a_host_without_the_service_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("docker");
        std::fs::write(&bin, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let request = LogsRequest {
            service: "web".into(),
            tail: None,
            since_secs: None,
            follow: true,
        };
        let script = logs_script(&["app".into()], &request);
        let out = run_in_sh(
            &format!("PATH={}:$PATH\n{script}", dir.path().display()),
            b"",
        );
        assert_eq!(out.status, Some(NO_CONTAINER));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no container of service `web`"));
    }
}
