//! `health`: an HTTP check made from the host's side, or a command that must exit 0, retried
//! until it passes or times out. It runs in a session of its own (the host session's health
//! runner), never as a segment of a driver script.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Act, Done, Failure, HostView, Kind, ParseCx, PlanCx, Prepared, Templated};
use crate::diagnostic::InputError;
use crate::health::{self, HealthCheck, Probe};
use crate::transport::ExecOutput;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    url: Option<Spanned<String>>,
    command: Option<Spanned<String>>,
    expect: Option<u16>,
    contains: Option<String>,
    timeout: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
}

/// `health = { url | command, expect, contains, timeout, interval }`.
#[derive(Debug, Clone)]
pub struct Health {
    pub url: Option<Templated>,
    pub command: Option<Templated>,
    pub expect: u16,
    pub contains: Option<String>,
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
        self.url.iter().chain(self.command.iter()).collect()
    }

    fn plan(&self, cx: &mut PlanCx<'_>) -> Result<HealthCheck, InputError> {
        let probe = match (&self.url, &self.command) {
            (Some(url), _) => {
                let rendered = cx.field(url)?;
                Probe::Http(health::parse_url(&rendered).map_err(|e| {
                    cx.file
                        .error_at(url.span(), format!("bad health URL: {e}"))
                        .with_hint("write e.g. http://127.0.0.1:8080/healthz; it is fetched from the host's side")
                })?)
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
            contains: self.contains.clone(),
            timeout: self.timeout,
            interval: self.interval,
        })
    }
}

impl Act for HealthCheck {
    fn describe(&self) -> String {
        match &self.probe {
            Probe::Http(t) => format!(
                "GET http://{}:{}{} from the host until HTTP {} (timeout {})",
                t.host,
                t.port,
                t.path,
                self.expect,
                humantime::format_duration(self.timeout)
            ),
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
