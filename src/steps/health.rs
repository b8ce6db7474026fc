//! `health`: an HTTP check made from the host's side, or a command that must exit 0, retried
//! until it passes or times out. It runs in a session of its own (the host session's health
//! runner), never as a segment of a driver script.

use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;

use serde::Deserialize;
use toml::Spanned;

use super::{Act, Done, Failure, HostView, Kind, ParseCx, PlanCx, Prepared, Templated};
use crate::diagnostic::InputError;
use crate::health::{self, HealthCheck, Probe, Tls, Trust};
use crate::transport::ExecOutput;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    url: Option<Spanned<String>>,
    command: Option<Spanned<String>>,
    expect: Option<u16>,
    contains: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    ca: Option<Spanned<String>>,
    insecure: Option<Spanned<bool>>,
    headers: Option<Spanned<IndexMap<String, Templated>>>,
}

/// `health = { url | command, expect, contains, timeout, interval, ca | insecure, headers }`.
#[derive(Debug, Clone)]
pub struct Health {
    pub url: Option<Templated>,
    /// For `https://` URLs: the CA file's certificates (read with the playbook), `insecure`,
    /// or neither (this machine's CA bundle).
    pub trust: Trust,
    /// Request headers, values rendered per host (like a command line: no secret in them).
    pub headers: Vec<(String, Templated)>,
    pub command: Option<Templated>,
    pub expect: u16,
    /// Text the answer's body must hold, rendered per host (like a command line: no secret).
    pub contains: Option<Templated>,
    pub timeout: Duration,
    pub interval: Duration,
}

impl Kind for Health {
    type Raw = RawHealth;
    type Action = HealthCheck;

    fn parse(raw: Spanned<RawHealth>, cx: &ParseCx<'_>) -> Result<Self, InputError> {
        let file = cx.file;
        let span = raw.span();
        let raw = raw.into_inner();
        if raw.url.is_some() == raw.command.is_some() {
            return Err(file
                .error_at(span, "a health check needs exactly one of `url` and `command`")
                .with_hint("write health = { url = \"http://127.0.0.1:8080/\", expect = 200, timeout = \"60s\" } or health = { command = \"…\" }"));
        }
        if raw.command.is_some() && (raw.expect.is_some() || raw.contains.is_some()) {
            return Err(file
                .error_at(span, "`expect` and `contains` apply to `url` checks only")
                .with_hint("a `command` check passes when the command exits 0"));
        }
        if raw.command.is_some()
            && (raw.ca.is_some() || raw.insecure.is_some() || raw.headers.is_some())
        {
            return Err(file
                .error_at(
                    span,
                    "`ca`, `insecure` and `headers` apply to `url` checks only",
                )
                .with_hint("a `command` check passes when the command exits 0"));
        }
        let trust = match (&raw.ca, &raw.insecure) {
            (Some(_), Some(insecure)) if *insecure.get_ref() => {
                return Err(file
                    .error_at(insecure.span(), "`insecure = true` and `ca` contradict each other")
                    .with_hint("keep `ca` to verify the server's certificate, or `insecure = true` to accept any certificate"));
            }
            (Some(ca), _) => {
                let path = crate::paths::resolve_existing(ca.get_ref(), cx.bases);
                let pem = std::fs::read(&path)
                    .map_err(|e| format!("cannot read `{}`: {e}", path.display()))
                    .and_then(|pem| {
                        health::tls::certificates(&pem).map(|_| pem).map_err(|e| {
                            format!("`{}`: {e}", path.display())
                        })
                    })
                    .map_err(|e| {
                        file.error_at(ca.span(), format!("bad `ca`: {e}"))
                            .with_hint("name a PEM file with the CA certificate(s) that signed the server's; relative paths are looked up in the playbook's directory, then its parent")
                    })?;
                Trust::Ca {
                    name: ca.get_ref().clone(),
                    pem: Arc::from(pem),
                }
            }
            (None, Some(insecure)) if *insecure.get_ref() => Trust::Insecure,
            (None, _) => Trust::System,
        };
        let mut headers = Vec::new();
        if let Some(map) = raw.headers {
            for (name, value) in map.into_inner() {
                if let Some(problem) = health::header_problem(&name, value.get_ref()) {
                    return Err(file
                        .error_at(value.span(), problem)
                        .with_hint("write e.g. headers = { Host = \"pixel.example.com\" }: names are HTTP tokens, values one line"));
                }
                headers.push((name, value));
            }
        }
        let duration = |field: &Option<Spanned<String>>, default: u64| match field {
            None => Ok(Duration::from_secs(default)),
            Some(t) => humantime::parse_duration(t.get_ref()).map_err(|e| {
                file.error_at(t.span(), format!("bad duration `{}`: {e}", t.get_ref()))
                    .with_hint("write e.g. \"60s\", \"2m\" or \"500ms\"")
            }),
        };
        let interval = duration(&raw.interval, 1)?;
        if let Some(t) = &raw.interval
            && interval < health::MIN_INTERVAL
        {
            return Err(file
                .error_at(
                    t.span(),
                    format!(
                        "`interval` must be at least {}",
                        humantime::format_duration(health::MIN_INTERVAL)
                    ),
                )
                .with_hint("each attempt opens a channel (and, for a `command`, runs a shell) on the host; write e.g. \"1s\" (the default) or \"500ms\""));
        }
        Ok(Health {
            url: raw.url,
            trust,
            headers,
            command: raw.command,
            expect: raw.expect.unwrap_or(200),
            contains: raw.contains,
            timeout: duration(&raw.timeout, 60)?,
            interval,
        })
    }

    fn default_name(&self) -> String {
        match (&self.url, &self.command) {
            (Some(url), _) => format!("health {}", url.get_ref()),
            (None, Some(c)) => format!("health `{}`", c.get_ref()),
            (None, None) => "health".to_string(),
        }
    }

    fn templated_fields(&self) -> Vec<&Templated> {
        self.url
            .iter()
            .chain(self.command.iter())
            .chain(self.headers.iter().map(|(_, value)| value))
            .chain(self.contains.iter())
            .collect()
    }

    fn plan(&self, cx: &mut PlanCx<'_>) -> Result<HealthCheck, InputError> {
        let probe = match (&self.url, &self.command) {
            (Some(url), _) => {
                let rendered = cx.field(url)?;
                let target = health::parse_url(&rendered).map_err(|e| {
                    cx.file
                        .error_at(url.span(), format!("bad health URL: {e}"))
                        .with_hint("write e.g. http://127.0.0.1:8080/healthz; it is fetched from the host's side")
                })?;
                let mut headers = Vec::with_capacity(self.headers.len());
                for (name, value) in &self.headers {
                    // Rendered like a command line: a secret in a header is refused.
                    let text = cx.field(value)?;
                    if let Some(problem) = health::header_problem(name, &text) {
                        return Err(cx.file.error_at(value.span(), problem).with_hint(
                            "a header value is one line of text: check what the template renders",
                        ));
                    }
                    headers.push((name.clone(), text));
                }
                let host_header = headers
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("host"))
                    .map(|(_, value)| value.as_str());
                let tls = target.https.then(|| Tls {
                    trust: self.trust.clone(),
                    server_name: health::tls::server_name(&target.host, host_header),
                });
                if !target.https && !matches!(self.trust, Trust::System) {
                    return Err(cx
                        .file
                        .error_at(
                            url.span(),
                            "`ca` and `insecure` apply to https:// URLs only",
                        )
                        .with_hint("write the URL with https://, or drop `ca`/`insecure`"));
                }
                Probe::Http {
                    target,
                    headers,
                    tls,
                }
            }
            (None, Some(command)) => Probe::Command {
                command: cx.field(command)?,
                dir: cx.dir.clone(),
            },
            (None, None) => unreachable!("parsing requires url or command"),
        };
        Ok(HealthCheck {
            probe,
            expect: self.expect,
            contains: self.contains.as_ref().map(|c| cx.field(c)).transpose()?,
            timeout: self.timeout,
            interval: self.interval,
        })
    }
}

impl Act for HealthCheck {
    fn describe(&self) -> String {
        match &self.probe {
            Probe::Http {
                target,
                headers,
                tls,
            } => {
                let mut notes: Vec<String> = headers
                    .iter()
                    .map(|(name, value)| format!("{name}: {value}"))
                    .collect();
                notes.extend(tls.as_ref().map(Tls::describe));
                notes.push(format!(
                    "timeout {}",
                    humantime::format_duration(self.timeout)
                ));
                let body = match &self.contains {
                    Some(text) => format!(" with `{text}` in the body"),
                    None => String::new(),
                };
                format!(
                    "GET {} from the host until HTTP {}{body} ({})",
                    target.url(),
                    self.expect,
                    notes.join("; ")
                )
            }
            Probe::Command { command, .. } => format!(
                "run `{command}` until it exits 0 (timeout {})",
                humantime::format_duration(self.timeout)
            ),
        }
    }

    fn prepare(&self, _host: &HostView<'_>, _label: &str, _tag: usize) -> Prepared {
        unreachable!("health checks run alone (the session's health runner)")
    }

    fn judge(&self, _host: &HostView<'_>, _out: &ExecOutput) -> Result<Done, Failure> {
        unreachable!("health checks run alone (the session's health runner)")
    }
}
