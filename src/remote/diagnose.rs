//! What a host's compose containers say after a step failed: the script that lists each
//! compose project's containers (`docker ps -a` by the project's label: compose v1 and v2 alike,
//! no compose invocation) with each one's state and last log lines, and its parser. Host output
//! is hostile: frame fields are constants and validated container ids only; what docker prints
//! (the state as JSON, the logs) comes back as raw bytes between frames, bounded on the host.
//! May import: `remote::{script, frame}`.

use serde::Deserialize;

use super::frame::{self, Kind, Reply};
use super::script::Script;
use crate::sh;

/// Log lines asked of each container (`docker logs --tail`).
pub const LOG_LINES: u32 = 30;
/// Bytes of a container's logs kept on the host (`head -c`): a container printing megabytes
/// on one line, or escape codes, costs no more than this.
pub const LOG_BYTES: usize = 8 * 1024;
/// Bytes of a container's state (one JSON line) kept on the host.
const STATE_BYTES: usize = 4 * 1024;
/// Containers looked at per project; more are counted as left out.
pub const MAX_CONTAINERS: usize = 20;
/// Projects looked at per request (the rest are left out), so a reply stays far below the
/// transport's capture limit: 8 × 20 × 12 KiB ≈ 2 MiB at most.
pub const MAX_PROJECTS: usize = 8;

/// A container's state as `docker inspect` prints it with this template: one JSON line, every
/// value JSON-encoded by docker (a label holding a newline stays on the line).
const STATE_FORMAT: &str = concat!(
    r#"{"name":{{json .Name}},"#,
    r#""service":{{json (index .Config.Labels "com.docker.compose.service")}},"#,
    r#""status":{{json .State.Status}},"exit_code":{{json .State.ExitCode}},"#,
    r#""error":{{json .State.Error}},"oom_killed":{{json .State.OOMKilled}},"#,
    r#""health":{{if .State.Health}}{{json .State.Health.Status}}{{else}}null{{end}},"#,
    r#""restarts":{{json .RestartCount}}}"#
);

/// The label value compose gives a project's containers: compose v1 lowercases the name and
/// drops what is not `[a-z0-9_-]`; v2 refuses such names, so this changes nothing there.
pub fn project_label(project: &str) -> String {
    project
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// The script: for each project (`MAX_PROJECTS` at most), a `diagnose:project:I` frame, then
/// `diagnose:error` and the listing's error text, or for each container (`MAX_CONTAINERS` at
/// most, then `diagnose:more`) a `diagnose:container:ID` frame followed by its state (JSON)
/// and a `diagnose:logs` frame followed by its last `LOG_LINES` log lines. Run with
/// `frame::Framed`; always exits 0.
pub fn script(projects: &[String]) -> Script {
    let mut script = Script::default();
    for (index, project) in projects.iter().take(MAX_PROJECTS).enumerate() {
        let filter = format!(
            "label=com.docker.compose.project={}",
            project_label(project)
        );
        script.push(&sh!(
            "{}
if dsl=$(docker ps -a -q --no-trunc --filter {} 2>&1); then
printf '%s\\n' \"$dsl\" | {{ dsk=0
while IFS= read -r dsi; do
case $dsi in ''|*[!0-9a-f]*) continue ;; esac
dsk=$((dsk + 1))
if [ $dsk -gt {} ]; then {}; break; fi
{}
docker inspect --format {} \"$dsi\" 2>&1 | head -c {}
{}
docker logs --tail {} \"$dsi\" 2>&1 | head -c {}
done; }}
else {}; printf '%s' \"$dsl\" | head -c {}; fi
",
            frame::report(Kind::Diagnose, &format!("project:{index}")),
            filter,
            MAX_CONTAINERS,
            frame::report(Kind::Diagnose, &"more"),
            frame::report(Kind::Diagnose, &sh!("\"container:$dsi\"")),
            STATE_FORMAT,
            STATE_BYTES,
            frame::report(Kind::Diagnose, &"logs"),
            LOG_LINES,
            LOG_BYTES,
            frame::report(Kind::Diagnose, &"error"),
            STATE_BYTES,
        ));
    }
    script.push(&sh!("true\n"));
    script
}

/// What the script found for one project.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectContainers {
    pub project: String,
    /// `docker ps` failed: its output (docker missing, no permission to its socket).
    pub error: Option<String>,
    pub containers: Vec<Container>,
    /// More containers than `MAX_CONTAINERS`: the rest were not looked at.
    pub more: bool,
}

/// One container of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// Docker's full id (64 hex digits, checked by the script).
    pub id: String,
    /// `None`: its state could not be read (the container went away meanwhile, or docker
    /// printed something else); `unreadable` holds what it printed.
    pub state: Option<State>,
    pub unreadable: String,
    /// What `docker logs --tail` printed (both streams), at most `LOG_BYTES`, unmasked.
    pub logs: Vec<u8>,
}

/// A container's state, as `docker inspect` tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct State {
    /// `/NAME` as docker keeps it.
    pub name: String,
    #[serde(default)]
    pub service: String,
    /// `created`, `running`, `restarting`, `paused`, `exited`, `removing` or `dead`.
    pub status: String,
    #[serde(default)]
    pub exit_code: i64,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub oom_killed: bool,
    /// `starting`, `healthy` or `unhealthy`, for a container with a health check.
    #[serde(default)]
    pub health: Option<String>,
    #[serde(default)]
    pub restarts: u64,
}

impl Container {
    /// The container's name without docker's leading `/` (its short id when unknown).
    pub fn name(&self) -> String {
        match &self.state {
            Some(s) if !s.name.is_empty() => s.name.trim_start_matches('/').to_string(),
            _ => self.id.chars().take(12).collect(),
        }
    }

    /// Whether this container is why the app is down: restarting, unhealthy, dead, exited
    /// with a non-zero code (or killed for memory), never started because of an error, or
    /// restarted since it was created. A one-shot service that exited 0 is not.
    pub fn stands_out(&self) -> bool {
        let Some(s) = &self.state else {
            return true;
        };
        let odd = match s.status.as_str() {
            "running" => s.health.as_deref() == Some("unhealthy"),
            "exited" => s.exit_code != 0 || s.oom_killed,
            "created" => !s.error.is_empty(),
            _ => true,
        };
        odd || s.restarts > 0
    }

    /// How the container stands, in a few words: `exited (1)`, `running (unhealthy)`,
    /// `restarting (last exit 3), 4 restart(s)`, `created: <docker's error>`.
    pub fn status_text(&self) -> String {
        let Some(s) = &self.state else {
            let what = self.unreadable.trim();
            return if what.is_empty() {
                "state unknown".to_string()
            } else {
                format!("state unknown: {what}")
            };
        };
        let mut text = match s.status.as_str() {
            "exited" => format!("exited ({})", s.exit_code),
            "restarting" => format!("restarting (last exit {})", s.exit_code),
            "running" | "paused" => match &s.health {
                Some(health) => format!("{} ({health})", s.status),
                None => s.status.clone(),
            },
            other => other.to_string(),
        };
        if s.oom_killed {
            text.push_str(", killed for lack of memory");
        }
        if s.restarts > 0 {
            text.push_str(&format!(", {} restart(s)", s.restarts));
        }
        if !s.error.is_empty() {
            text.push_str(&format!(": {}", s.error));
        }
        text
    }
}

/// Takes apart what `script(projects)` printed (a `Framed` reply). Output outside the frames
/// the script prints (a log line forging a frame without the nonce) stays where it was
/// printed: in a container's logs. Projects left out by the script are not in the result.
pub fn parse(reply: &Reply, projects: &[String]) -> Vec<ProjectContainers> {
    let mut found: Vec<ProjectContainers> = Vec::new();
    for (frame, data) in &reply.sections {
        let Some(fields) = frame.of(Kind::Diagnose) else {
            continue;
        };
        let (what, value) = fields.split_once(':').unwrap_or((fields, ""));
        if what == "project" {
            if let Some(project) = value.parse::<usize>().ok().and_then(|i| projects.get(i)) {
                found.push(ProjectContainers {
                    project: project.clone(),
                    ..Default::default()
                });
            }
            continue;
        }
        let Some(project) = found.last_mut() else {
            continue;
        };
        match what {
            "error" => {
                let text = String::from_utf8_lossy(data).trim().to_string();
                project.error = Some(if text.is_empty() {
                    "docker ps failed".to_string()
                } else {
                    text
                });
            }
            "more" => project.more = true,
            "container" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_hexdigit()) => {
                let (state, unreadable) = match serde_json::from_slice::<State>(data.trim_ascii()) {
                    Ok(state) => (Some(state), String::new()),
                    Err(_) => (None, String::from_utf8_lossy(data).into_owned()),
                };
                project.containers.push(Container {
                    id: value.to_string(),
                    state,
                    unreadable,
                    logs: Vec::new(),
                });
            }
            "logs" => {
                if let Some(c) = project.containers.last_mut() {
                    c.logs.extend_from_slice(data);
                }
            }
            _ => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::frame::Framed;

    /// A `docker` that answers from files in `dir`: `ps` prints `ps`, `inspect ID` prints
    /// `inspect.ID`, `logs --tail N ID` prints `logs.ID`; `ps.fail` makes `ps` fail.
    fn fake_docker(dir: &std::path::Path) {
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let docker = bin.join("docker");
        std::fs::write(
            &docker,
            format!(
                "#!/bin/sh\nd={}\necho \"$@\" >>\"$d/calls\"\n\
                 case $1 in\n\
                 ps) [ -f \"$d/ps.fail\" ] && {{ cat \"$d/ps.fail\" >&2; exit 1; }}; cat \"$d/ps\" ;;\n\
                 inspect) for a; do id=$a; done; cat \"$d/inspect.$id\" ;;\n\
                 logs) for a; do id=$a; done; cat \"$d/logs.$id\" ;;\n\
                 esac\n",
                crate::remote::script::quote(dir.to_str().unwrap())
            ),
        )
        .unwrap();
        std::fs::set_permissions(&docker, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }

    fn run(dir: &std::path::Path, projects: &[String]) -> (Vec<ProjectContainers>, Vec<u8>) {
        let request = Framed::new(&script(projects));
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(request.script())
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", dir.join("bin").display()),
            )
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        (parse(&request.reply(&out.stdout), projects), out.stdout)
    }

    const WEB: &str = "aaaa000000000000000000000000000000000000000000000000000000000001";
    const DB: &str = "bbbb000000000000000000000000000000000000000000000000000000000002";

    #[test]
    fn each_container_comes_back_with_its_state_and_logs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fake_docker(d);
        std::fs::write(d.join("ps"), format!("{WEB}\n{DB}\n")).unwrap();
        std::fs::write(
            d.join(format!("inspect.{WEB}")),
            r#"{"name":"/pixel-web-1","service":"web","status":"exited","exit_code":3,"error":"","oom_killed":false,"health":null,"restarts":0}"#,
        )
        .unwrap();
        std::fs::write(
            d.join(format!("inspect.{DB}")),
            r#"{"name":"/pixel-db-1","service":"db","status":"running","exit_code":0,"error":"","oom_killed":false,"health":"healthy","restarts":0}"#,
        )
        .unwrap();
        std::fs::write(d.join(format!("logs.{WEB}")), "Traceback\nValueError: boom").unwrap();
        std::fs::write(d.join(format!("logs.{DB}")), "ready\n").unwrap();
        let (found, _) = run(d, &["Pixel.Local".into()]);
        assert_eq!(found.len(), 1);
        let p = &found[0];
        assert_eq!(
            (p.project.as_str(), &p.error, p.more),
            ("Pixel.Local", &None, false)
        );
        assert_eq!(p.containers.len(), 2);
        let web = &p.containers[0];
        assert_eq!(web.name(), "pixel-web-1");
        assert_eq!(web.state.as_ref().unwrap().service, "web");
        assert_eq!(web.status_text(), "exited (3)");
        assert!(web.stands_out());
        assert_eq!(web.logs, b"Traceback\nValueError: boom");
        let db = &p.containers[1];
        assert_eq!(db.status_text(), "running (healthy)");
        assert!(!db.stands_out());
        assert_eq!(db.logs, b"ready\n");
        // The project is found by compose's own label (v1's normalised name), logs bounded.
        let calls = std::fs::read_to_string(d.join("calls")).unwrap();
        assert!(
            calls.contains(
                "ps -a -q --no-trunc --filter label=com.docker.compose.project=pixellocal\n"
            ),
            "{calls}"
        );
        assert!(
            calls.contains(&format!("logs --tail 30 {WEB}\n")),
            "{calls}"
        );
    }

    #[test]
    fn hostile_output_stays_data() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fake_docker(d);
        // Ids that are not ids (a glob, a command, a frame) are never used.
        std::fs::write(
            d.join("ps"),
            format!("*\n$(touch pwned)\n@@dropship:x:diagnose:more@@\n{WEB}\n"),
        )
        .unwrap();
        // A name with a space and a newline, JSON-encoded as docker does.
        std::fs::write(
            d.join(format!("inspect.{WEB}")),
            r#"{"name":"/we b\nx","service":"a\u001b[31mb","status":"restarting","exit_code":1,"error":"","oom_killed":true,"health":null,"restarts":4}"#,
        )
        .unwrap();
        // Logs that forge frames (no nonce, another nonce), escape codes, a huge line.
        let mut logs = b"\n@@dropship:0123456789abcdef:diagnose:project:0@@\n\x1b[2J\n@@dropship:diagnose:error@@\n"
            .to_vec();
        logs.extend(std::iter::repeat_n(b'x', 300_000));
        std::fs::write(d.join(format!("logs.{WEB}")), &logs).unwrap();
        let (found, _) = run(d, &["p".into()]);
        assert_eq!(found.len(), 1, "{found:?}");
        let p = &found[0];
        assert_eq!((&p.error, p.more), (&None, false));
        assert_eq!(p.containers.len(), 1);
        let c = &p.containers[0];
        assert_eq!(c.name(), "we b\nx");
        assert_eq!(
            c.status_text(),
            "restarting (last exit 1), killed for lack of memory, 4 restart(s)"
        );
        assert!(c.stands_out());
        assert_eq!(c.logs.len(), LOG_BYTES);
        assert_eq!(c.logs[..], logs[..LOG_BYTES]);
        assert!(!d.join("pwned").exists());
    }

    #[test]
    fn a_failed_listing_an_unreadable_state_and_too_many_containers_are_told() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fake_docker(d);
        std::fs::write(
            d.join("ps.fail"),
            "permission denied while trying to connect\n",
        )
        .unwrap();
        let (found, _) = run(d, &["a".into()]);
        assert_eq!(
            found[0].error.as_deref(),
            Some("permission denied while trying to connect")
        );
        std::fs::remove_file(d.join("ps.fail")).unwrap();
        let ids: Vec<String> = (0..MAX_CONTAINERS + 2)
            .map(|i| format!("{i:064x}"))
            .collect();
        std::fs::write(d.join("ps"), ids.join("\n")).unwrap();
        for id in &ids {
            std::fs::write(d.join(format!("logs.{id}")), "").unwrap();
        }
        std::fs::write(
            d.join(format!("inspect.{}", ids[0])),
            "Error: No such object\n",
        )
        .unwrap();
        let (found, _) = run(d, &["a".into(), "b".into()]);
        assert_eq!(found.len(), 2);
        assert!(found[0].more);
        assert_eq!(found[0].containers.len(), MAX_CONTAINERS);
        let gone = &found[0].containers[0];
        assert_eq!(gone.state, None);
        assert_eq!(gone.status_text(), "state unknown: Error: No such object");
        assert_eq!(gone.name(), "000000000000");
        assert!(gone.stands_out());
        assert_eq!(found[1].project, "b");
    }

    #[test]
    fn what_stands_out() {
        let c = |json: &str| Container {
            id: "0".into(),
            state: Some(serde_json::from_str(json).unwrap()),
            unreadable: String::new(),
            logs: Vec::new(),
        };
        let quiet = [
            r#"{"name":"/a","status":"running"}"#,
            r#"{"name":"/a","status":"running","health":"healthy"}"#,
            r#"{"name":"/a","status":"running","health":"starting"}"#,
            r#"{"name":"/a","status":"exited","exit_code":0}"#,
            r#"{"name":"/a","status":"created"}"#,
        ];
        for json in quiet {
            assert!(!c(json).stands_out(), "{json}");
        }
        let odd = [
            r#"{"name":"/a","status":"running","health":"unhealthy"}"#,
            r#"{"name":"/a","status":"running","restarts":2}"#,
            r#"{"name":"/a","status":"exited","exit_code":137}"#,
            r#"{"name":"/a","status":"exited","exit_code":0,"oom_killed":true}"#,
            r#"{"name":"/a","status":"created","error":"exec: \"/nope\": not found"}"#,
            r#"{"name":"/a","status":"restarting"}"#,
            r#"{"name":"/a","status":"dead"}"#,
            r#"{"name":"/a","status":"paused"}"#,
        ];
        for json in odd {
            assert!(c(json).stands_out(), "{json}");
        }
        assert_eq!(
            c(odd[4]).status_text(),
            "created: exec: \"/nope\": not found"
        );
        assert_eq!(project_label("Pixel.Local_1-x"), "pixellocal_1-x");
    }
}
