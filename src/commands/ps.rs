//! `dropship ps`: one table of every targeted host's containers of the playbook's compose
//! projects (HOST, PROJECT, SERVICE, STATE, IMAGE, STATUS), in inventory order; `--json` the
//! same as JSON. What hosts print is data: parsed strictly, bounded, masked, made visible.

use serde_json::json;

use super::{ExitStatus, exec_options, views};
use crate::diagnostic::InputError;
use crate::fleet::{self, Cancel, ViewEnd, ViewScript};
use crate::output::visible;
use crate::plan::Plan;
use crate::remote::views::{Container, PS_LIMIT, parse_ps, ps_script};
use crate::secrets::Redactor;
use crate::settings::{JsonTarget, RunSettings};
use crate::transport::OutputSink;
use crate::transport::ssh::SshConnector;

/// What one host said.
type Listing = Result<Vec<Container>, String>;

pub async fn ps(plan: Plan, run: &RunSettings) -> Result<ExitStatus, InputError> {
    let projects = views::host_projects(&plan, "ps")?;
    let scripts: Vec<ViewScript> = plan
        .hosts
        .iter()
        .zip(&projects)
        .map(|(hp, projects)| ViewScript {
            script: ps_script(projects).into_string(),
            become_as: views::docker_user(hp),
        })
        .collect();
    let mut sinks: Vec<Bounded> = plan.hosts.iter().map(|_| Bounded::default()).collect();
    let cancel = Cancel::on_signals_stop_at_once();
    let ends = fleet::view(
        &SshConnector::new(),
        &plan,
        &scripts,
        &mut sinks,
        exec_options(run),
        cancel.clone(),
    )
    .await;
    let listings: Vec<Listing> = ends
        .into_iter()
        .zip(sinks)
        .zip(&projects)
        .map(|((end, sink), projects)| listing(end, sink, projects, &plan.redactor))
        .collect();
    let hosts: Vec<&str> = plan.hosts.iter().map(|hp| hp.host.name.as_str()).collect();
    let table = table(&hosts, &listings);
    match &run.json {
        None => print(&mut std::io::stdout(), &table),
        Some(target) => {
            print(&mut std::io::stderr(), &table);
            let report = json_report(&hosts, &listings);
            let text = serde_json::to_string_pretty(&report).expect("JSON values serialize") + "\n";
            match target {
                JsonTarget::Stdout => print(&mut std::io::stdout(), &text),
                JsonTarget::File(path) => {
                    if let Err(e) = std::fs::write(path, text) {
                        eprintln!("dropship: cannot write {}: {e}", path.display());
                        return Ok(ExitStatus::HostsFailed);
                    }
                }
            }
        }
    }
    Ok(if cancel.is_cancelled() {
        ExitStatus::Interrupted
    } else if listings.iter().any(Result::is_err) {
        ExitStatus::HostsFailed
    } else {
        ExitStatus::Success
    })
}

/// Keeps a host's output up to `PS_LIMIT` (stdout) and its last error lines (stderr).
#[derive(Default)]
struct Bounded {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    overflow: bool,
}

/// Most bytes of a host's error output kept.
const ERROR_LIMIT: usize = 4096;

impl OutputSink for Bounded {
    fn stdout(&mut self, bytes: &[u8]) {
        if self.stdout.len() + bytes.len() > PS_LIMIT {
            self.overflow = true;
        } else {
            self.stdout.extend_from_slice(bytes);
        }
    }

    fn stderr(&mut self, bytes: &[u8]) {
        self.stderr.extend_from_slice(bytes);
        let over = self.stderr.len().saturating_sub(ERROR_LIMIT);
        self.stderr.drain(..over);
    }
}

/// A host's containers, or why there are none to show (masked).
fn listing(end: ViewEnd, sink: Bounded, projects: &[String], redactor: &Redactor) -> Listing {
    let stderr = || {
        let text = String::from_utf8_lossy(&sink.stderr);
        let text = text.trim();
        if text.is_empty() {
            String::new()
        } else {
            format!(": {text}")
        }
    };
    let containers = match end {
        ViewEnd::Failed(error) => Err(error),
        ViewEnd::Stopped => Err("interrupted".to_string()),
        ViewEnd::Exited(Some(0)) if sink.overflow => Err(format!(
            "`docker ps` printed more than {}",
            crate::output::human_bytes(PS_LIMIT as u64)
        )),
        ViewEnd::Exited(Some(0)) => parse_ps(&sink.stdout, projects).map(|mut list| {
            let rank = |c: &Container| projects.iter().position(|p| *p == c.project);
            list.sort_by(|a, b| {
                (rank(a), &a.service, &a.name).cmp(&(rank(b), &b.service, &b.name))
            });
            list
        }),
        ViewEnd::Exited(Some(code)) => Err(format!("`docker ps` failed (exit {code}){}", stderr())),
        ViewEnd::Exited(None) => Err(format!("`docker ps` was killed{}", stderr())),
    };
    let shown = |text: &str| visible(&redactor.redact(text)).into_owned();
    containers
        .map(|list| {
            list.into_iter()
                .map(|c| Container {
                    project: shown(&c.project),
                    service: shown(&c.service),
                    name: shown(&c.name),
                    id: shown(&c.id),
                    state: shown(&c.state),
                    exit_code: c.exit_code,
                    image: shown(&c.image),
                    status: shown(&c.status),
                })
                .collect()
        })
        .map_err(|e| shown(&e).replace('\n', " "))
}

/// `running`, `exited (CODE)`, `restarting`, …
fn state_label(c: &Container) -> String {
    match c.exit_code {
        Some(code) => format!("{} ({code})", c.state),
        None => c.state.clone(),
    }
}

const HEADER: [&str; 6] = ["HOST", "PROJECT", "SERVICE", "STATE", "IMAGE", "STATUS"];

/// The table: a row per container, a host's containers by project (the playbook's order),
/// service and name; a host without any, or that failed, has one row saying so.
fn table(hosts: &[&str], listings: &[Listing]) -> String {
    let mut rows: Vec<Vec<String>> = vec![HEADER.iter().map(|h| h.to_string()).collect()];
    let mut notes: Vec<(usize, String)> = Vec::new();
    for (host, listing) in hosts.iter().zip(listings) {
        match listing {
            Err(error) => notes.push((rows.len(), format!("{host}  error: {error}"))),
            Ok(list) if list.is_empty() => {
                notes.push((rows.len(), format!("{host}  (no containers)")))
            }
            Ok(list) => {
                for c in list {
                    rows.push(vec![
                        host.to_string(),
                        c.project.clone(),
                        c.service.clone(),
                        state_label(c),
                        c.image.clone(),
                        c.status.clone(),
                    ]);
                }
            }
        }
    }
    let widths: Vec<usize> = (0..HEADER.len())
        .map(|col| {
            rows.iter()
                .map(|r| r[col].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let mut notes = notes.into_iter().peekable();
    for (at, row) in rows.iter().enumerate() {
        while let Some((_, note)) = notes.next_if(|(n, _)| *n == at) {
            out.push_str(&note);
            out.push('\n');
        }
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    for (_, note) in notes {
        out.push_str(&note);
        out.push('\n');
    }
    out
}

fn json_report(hosts: &[&str], listings: &[Listing]) -> serde_json::Value {
    let hosts: Vec<serde_json::Value> = hosts
        .iter()
        .zip(listings)
        .map(|(host, listing)| match listing {
            Err(error) => json!({ "host": host, "error": error, "containers": [] }),
            Ok(list) => json!({
                "host": host,
                "error": null,
                "containers": list.iter().map(|c| json!({
                    "project": c.project,
                    "service": c.service,
                    "name": c.name,
                    "id": c.id,
                    "state": c.state,
                    "exit_code": c.exit_code,
                    "image": c.image,
                    "status": c.status,
                })).collect::<Vec<_>>(),
            }),
        })
        .collect();
    json!({
        "command": "ps",
        "ok": listings.iter().all(Result::is_ok),
        "hosts": hosts,
    })
}

fn print(out: &mut dyn std::io::Write, text: &str) {
    // A closed pipe (`dropship ps | head`) is no error worth reporting.
    let _ = out.write_all(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(project: &str, service: &str, state: &str, code: Option<i64>) -> Container {
        Container {
            project: project.into(),
            service: service.into(),
            name: format!("{project}-{service}-1"),
            id: "0123".into(),
            state: state.into(),
            exit_code: code,
            image: "pixel:1".into(),
            status: "Up 2 minutes".into(),
        }
    }

    #[test]
    fn the_table_lists_hosts_in_order_with_errors_and_empty_hosts_as_rows() {
        let listings = vec![
            Ok(vec![
                container("app", "web", "running", None),
                container("app", "worker", "exited", Some(2)),
            ]),
            Err("connection refused".to_string()),
            Ok(vec![]),
        ];
        let table = table(&["h1", "h2", "h3"], &listings);
        assert_eq!(
            table,
            "HOST  PROJECT  SERVICE  STATE       IMAGE    STATUS\n\
             h1    app      web      running     pixel:1  Up 2 minutes\n\
             h1    app      worker   exited (2)  pixel:1  Up 2 minutes\n\
             h2  error: connection refused\n\
             h3  (no containers)\n"
        );
        let report = json_report(&["h1", "h2", "h3"], &listings);
        assert_eq!(report["ok"], false);
        assert_eq!(report["hosts"][0]["containers"][1]["exit_code"], 2);
        assert_eq!(report["hosts"][1]["error"], "connection refused");
    }

    #[test]
    fn what_a_host_says_is_masked_and_made_visible() {
        let secret = crate::secrets::Secret::new("hunter2hunter2");
        let redactor = Redactor::new([&secret]);
        let projects = vec!["app".to_string()];
        let line = serde_json::json!({
            "ID": "1", "Names": "web\u{1b}[2J", "Image": "x", "State": "running",
            "Status": "Up hunter2hunter2",
            "Labels": "com.docker.compose.project=app,com.docker.compose.service=web",
        });
        let sink = Bounded {
            stdout: line.to_string().into_bytes(),
            ..Bounded::default()
        };
        let listed = listing(ViewEnd::Exited(Some(0)), sink, &projects, &redactor).unwrap();
        assert_eq!(listed[0].name, "web\\x1b[2J");
        assert!(
            !listed[0].status.contains("hunter2"),
            "{}",
            listed[0].status
        );
        let sink = Bounded {
            stderr: b"permission denied\nhunter2hunter2".to_vec(),
            ..Bounded::default()
        };
        let error = listing(ViewEnd::Exited(Some(1)), sink, &projects, &redactor).unwrap_err();
        assert!(
            error.starts_with("`docker ps` failed (exit 1): permission denied"),
            "{error}"
        );
        assert!(
            !error.contains("hunter2") && !error.contains('\n'),
            "{error}"
        );
    }
}
