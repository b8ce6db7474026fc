//! `dropship logs SERVICE`: the logs of a service's containers (found by the compose labels
//! of the playbook's projects) on every targeted host at once, each line printed as it
//! arrives, prefixed `[host] `, masked by the run's redactor, control characters made
//! visible, filtered by `--grep` here. `-f` follows until Ctrl-C, which stops `docker logs`
//! on the hosts and ends with status 0.

use std::io::Write as _;

use regex::Regex;

use super::{ExitStatus, exec_options, views};
use crate::diagnostic::InputError;
use crate::fleet::{self, Cancel, ViewEnd, ViewScript};
use crate::output::{RedactingStream, visible};
use crate::plan::Plan;
use crate::remote::views::{LogsRequest, NO_CONTAINER, logs_script};
use crate::secrets::Redactor;
use crate::settings::{LogsSettings, RunSettings};
use crate::steps::compose::valid_service;
use crate::transport::OutputSink;
use crate::transport::ssh::SshConnector;

pub async fn logs(
    plan: Plan,
    run: &RunSettings,
    logs: &LogsSettings,
) -> Result<ExitStatus, InputError> {
    check_service(&plan, &logs.service)?;
    if run.json.is_some() {
        return Err(InputError::plain("--json does not apply to `logs`")
            .with_hint("`logs` prints lines; `dropship ps --json -` describes the containers"));
    }
    if logs.follow && plan.hosts.len() > run.forks {
        return Err(InputError::plain(format!(
            "`logs -f` follows {} hosts at once, more than --forks {}",
            plan.hosts.len(),
            run.forks
        ))
        .with_hint("raise --forks, or narrow the hosts with --limit"));
    }
    let projects = views::host_projects(&plan, "logs")?;
    let request = LogsRequest {
        service: logs.service.clone(),
        tail: logs.tail,
        since_secs: logs.since_secs,
        follow: logs.follow,
    };
    let scripts: Vec<ViewScript> = plan
        .hosts
        .iter()
        .zip(&projects)
        .map(|(hp, projects)| ViewScript {
            script: logs_script(projects, &request).into_string(),
            become_as: views::docker_user(hp),
        })
        .collect();
    let mut sinks: Vec<Lines> = plan
        .hosts
        .iter()
        .map(|hp| Lines::new(&hp.host.name, &plan.redactor, logs.grep.as_ref()))
        .collect();
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
    let mut failed = false;
    let mut found = false;
    for (((end, mut sink), hp), projects) in
        ends.into_iter().zip(sinks).zip(&plan.hosts).zip(&projects)
    {
        sink.finish();
        let host = visible(&hp.host.name).into_owned();
        let problem = match end {
            ViewEnd::Stopped | ViewEnd::Exited(Some(0)) => {
                found = true;
                None
            }
            ViewEnd::Exited(Some(NO_CONTAINER)) => {
                eprintln!(
                    "[{host}] no container of service `{}` in compose project {}",
                    logs.service,
                    projects.join(", ")
                );
                None
            }
            ViewEnd::Failed(error) => Some(error),
            ViewEnd::Exited(Some(code)) => Some(format!(
                "`docker` failed (exit {code}){}",
                sink.errors(&plan.redactor)
            )),
            ViewEnd::Exited(None) => Some(format!(
                "`docker logs` was killed{}",
                sink.errors(&plan.redactor)
            )),
        };
        if let Some(problem) = problem {
            failed = true;
            let problem = plan.redactor.redact(&problem);
            eprintln!("[{host}] error: {}", visible(&problem));
        }
    }
    Ok(if failed {
        ExitStatus::HostsFailed
    } else if cancel.is_cancelled() {
        // Ctrl-C is how a follow ends; a one-off listing cut short was interrupted.
        if logs.follow {
            ExitStatus::Success
        } else {
            ExitStatus::Interrupted
        }
    } else if !found {
        ExitStatus::HostsFailed
    } else {
        ExitStatus::Success
    })
}

/// A service name compose takes, before any connection: bad input otherwise, with the
/// services the playbook names.
fn check_service(plan: &Plan, service: &str) -> Result<(), InputError> {
    if valid_service(service) {
        return Ok(());
    }
    let known = views::known_services(plan);
    let hint = if known.is_empty() {
        "a compose service name: letters, digits, `_`, `-` and `.`, not starting with `-`"
            .to_string()
    } else {
        format!("the playbook's services: {}", known.join(", "))
    };
    Err(
        InputError::plain(format!("bad compose service name `{}`", visible(service)))
            .with_key("SERVICE")
            .with_hint(hint),
    )
}

/// Longest line printed whole: a longer one is printed in pieces of this size.
const MAX_LINE: usize = 16 * 1024;
/// Most bytes of a host's own error output kept.
const ERROR_LIMIT: usize = 4096;

/// One host's output on its way to the terminal: masked as it arrives, cut into lines, each
/// matching line printed with the host's prefix.
struct Lines<'a> {
    prefix: String,
    redact: RedactingStream<'a>,
    /// Masked bytes of the line not yet complete.
    line: Vec<u8>,
    grep: Option<&'a Regex>,
    /// The end of the host's stderr (its shell's or sudo's complaints).
    errors: Vec<u8>,
}

impl<'a> Lines<'a> {
    fn new(host: &str, redactor: &'a Redactor, grep: Option<&'a Regex>) -> Self {
        Self {
            prefix: format!("[{}] ", visible(host)),
            redact: redactor.stream(),
            line: Vec::new(),
            grep,
            errors: Vec::new(),
        }
    }

    /// Prints what is left: the stream has ended.
    fn finish(&mut self) {
        let Self {
            redact,
            line,
            grep,
            prefix,
            ..
        } = self;
        let mut out = String::new();
        redact.finish(&mut |masked| take_lines(line, masked, *grep, prefix, &mut out));
        if !line.is_empty() {
            push_line(&String::from_utf8_lossy(line), *grep, prefix, &mut out);
            line.clear();
        }
        print(&out);
    }

    /// `: ` and the host's last error line(s), masked, or nothing.
    fn errors(&self, redactor: &Redactor) -> String {
        let text = String::from_utf8_lossy(&self.errors);
        let text = text.trim();
        if text.is_empty() {
            return String::new();
        }
        format!(": {}", redactor.redact(text).replace('\n', " "))
    }
}

impl OutputSink for Lines<'_> {
    fn stdout(&mut self, bytes: &[u8]) {
        let Self {
            redact,
            line,
            grep,
            prefix,
            ..
        } = self;
        let mut out = String::new();
        redact.push(bytes, &mut |masked| {
            take_lines(line, masked, *grep, prefix, &mut out)
        });
        print(&out);
    }

    fn stderr(&mut self, bytes: &[u8]) {
        self.errors.extend_from_slice(bytes);
        let over = self.errors.len().saturating_sub(ERROR_LIMIT);
        self.errors.drain(..over);
    }
}

/// Adds `masked` to the pending `line`; each line completed (or grown to `MAX_LINE`) goes to
/// `out` when `grep` lets it.
fn take_lines(
    line: &mut Vec<u8>,
    masked: &[u8],
    grep: Option<&Regex>,
    prefix: &str,
    out: &mut String,
) {
    for mut piece in masked.split_inclusive(|b| *b == b'\n') {
        while !piece.is_empty() {
            let room = MAX_LINE - line.len();
            let (now, rest) = piece.split_at(piece.len().min(room));
            line.extend_from_slice(now);
            piece = rest;
            let ended = line.last() == Some(&b'\n');
            if ended || line.len() >= MAX_LINE {
                if ended {
                    line.pop();
                }
                push_line(&String::from_utf8_lossy(line), grep, prefix, out);
                line.clear();
            }
        }
    }
}

fn push_line(text: &str, grep: Option<&Regex>, prefix: &str, out: &mut String) {
    let text = text.strip_suffix('\r').unwrap_or(text);
    if grep.is_some_and(|re| !re.is_match(text)) {
        return;
    }
    out.push_str(prefix);
    out.push_str(&visible(text));
    out.push('\n');
}

/// Lines of one host at a time: another host's lines never land inside them.
fn print(text: &str) {
    if !text.is_empty() {
        // A closed pipe (`dropship logs web | head`) is no error worth reporting.
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Secret;

    fn collected(chunks: &[&[u8]], secrets: &[&str], grep: Option<&str>) -> String {
        let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
        let redactor = Redactor::new(secrets.iter());
        let grep = grep.map(|g| Regex::new(g).unwrap());
        let mut line = Vec::new();
        let mut out = String::new();
        let mut stream = redactor.stream();
        for chunk in chunks {
            stream.push(chunk, &mut |m| {
                take_lines(&mut line, m, grep.as_ref(), "[h1] ", &mut out)
            });
        }
        stream.finish(&mut |m| take_lines(&mut line, m, grep.as_ref(), "[h1] ", &mut out));
        if !line.is_empty() {
            push_line(
                &String::from_utf8_lossy(&line),
                grep.as_ref(),
                "[h1] ",
                &mut out,
            );
        }
        out
    }

    #[test]
    fn lines_are_prefixed_masked_across_pieces_and_made_visible() {
        let out = collected(
            &[
                b"GET / 200\r\npassword=hun",
                b"ter2hunter2 ok\n\x1b]0;title\x07\nlast",
            ],
            &["hunter2hunter2"],
            None,
        );
        assert_eq!(
            out,
            "[h1] GET / 200\n[h1] password=******** ok\n[h1] \\x1b]0;title\\x07\n[h1] last\n"
        );
    }

    #[test]
    fn grep_matches_the_masked_line_and_long_lines_come_in_pieces() {
        let out = collected(
            &[b"GET /a 200\nGET /b 500\nsecret hunter2hunter2\n"],
            &["hunter2hunter2"],
            Some("500|hunter2"),
        );
        assert_eq!(out, "[h1] GET /b 500\n");
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let out = collected(&[&long], &[], None);
        assert_eq!(out.lines().count(), 3);
    }

    #[test]
    fn a_bad_service_name_is_refused_with_the_playbooks_services() {
        let plan = crate::plan::inspection(Vec::new());
        assert!(check_service(&plan, "web.1_x-y").is_ok());
        for bad in ["", "-f", "web;id", "$(id)", "a b", "web\n"] {
            let err = check_service(&plan, bad).unwrap_err();
            assert!(err.message.contains("bad compose service name"), "{bad}");
            assert!(err.hint.as_deref().unwrap().contains("letters, digits"));
        }
    }
}
