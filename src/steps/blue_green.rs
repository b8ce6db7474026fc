//! `blue_green`: a zero-downtime switch of a compose app between two colors (compose projects
//! `PROJECT-blue` and `PROJECT-green`) behind a proxy whose upstream file dropship writes: its
//! keys, their checks, planning, and the decision of what a host needs (`decide`, pure). It runs
//! alone, like `health` (the host session's `blue_green` runner), never as a driver segment.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Act, Done, Failure, HostView, Kind, ParseCx, PlanCx, Prepared, Templated};
use crate::diagnostic::{InputError, SourceFile};
use crate::health::MIN_INTERVAL;
use crate::remote::blue_green::{Color, Container, HostState};
use crate::transport::ExecOutput;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    path: Spanned<String>,
    expect: Option<Spanned<u16>>,
    contains: Option<String>,
    timeout: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    dir: Templated,
    project: Option<Templated>,
    service: Spanned<String>,
}

/// `port`: a number, or a template that renders to one (`"{{ app_port }}"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawPort {
    Number(u16),
    Text(String),
}

/// `blue_green = { dir, project, service, port, health, upstream, proxy, test, reload, drain,
/// keep_previous }`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBlueGreen {
    dir: Option<Templated>,
    project: Option<Templated>,
    service: Spanned<String>,
    port: Spanned<RawPort>,
    health: Spanned<RawHealth>,
    upstream: Templated,
    proxy: Spanned<RawProxy>,
    test: Option<Spanned<Vec<String>>>,
    reload: Option<Spanned<Vec<String>>>,
    drain: Option<Spanned<String>>,
    keep_previous: Option<bool>,
}

/// The direct health check of each new container: `GET http://IP:port/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectHealth {
    pub path: String,
    pub expect: u16,
    pub contains: Option<String>,
    pub timeout: Duration,
    pub interval: Duration,
}

/// The step as written, validated (boxed: far larger than the other kinds).
#[derive(Debug, Clone)]
pub struct BlueGreen(Box<Spec>);

impl std::ops::Deref for BlueGreen {
    type Target = Spec;

    fn deref(&self) -> &Spec {
        &self.0
    }
}

/// What a `blue_green` table says, validated.
#[derive(Debug, Clone)]
pub struct Spec {
    dir: Option<Templated>,
    project: Option<Templated>,
    service: String,
    /// A number, or a template rendered per host.
    port: Result<u16, Templated>,
    health: DirectHealth,
    upstream: Templated,
    proxy_dir: Templated,
    proxy_project: Option<Templated>,
    proxy_service: String,
    test: Vec<String>,
    reload: Vec<String>,
    drain: Duration,
    keep_previous: bool,
}

/// The proxy a switch reloads, rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub dir: String,
    pub project: String,
    pub service: String,
    pub test: Vec<String>,
    pub reload: Vec<String>,
}

/// The step rendered for one host.
#[derive(Debug, Clone)]
pub struct Switch {
    /// The colored stack's compose directory (normally `…/current`).
    pub dir: String,
    /// Colors run as `PROJECT-blue` and `PROJECT-green`.
    pub project: String,
    /// The service the proxy routes to.
    pub service: String,
    pub port: u16,
    pub health: DirectHealth,
    /// The upstream file dropship writes.
    pub upstream: String,
    pub proxy: Proxy,
    pub drain: Duration,
    pub keep_previous: bool,
}

fn duration(
    file: &SourceFile,
    field: &Option<Spanned<String>>,
    default: Duration,
) -> Result<Duration, InputError> {
    match field {
        None => Ok(default),
        Some(t) => humantime::parse_duration(t.get_ref()).map_err(|e| {
            file.error_at(t.span(), format!("bad duration `{}`: {e}", t.get_ref()))
                .with_hint("write e.g. \"60s\", \"2m\" or \"500ms\"")
        }),
    }
}

/// A compose service name: letters, digits, `_`, `.`, `-`, not starting with `-` or `.`.
fn valid_service(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['-', '.'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// A compose project name compose v2 accepts (v1 accepts more): lowercase letters, digits,
/// `_` and `-`, starting with a letter or digit.
pub fn valid_project(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn bad_port(file: &SourceFile, span: std::ops::Range<usize>, text: &str) -> InputError {
    file.error_at(span, format!("bad port `{text}`: it must be 1 to 65535"))
        .with_hint(
            "the port the service listens on inside its container, e.g. 8000 or \"{{ app_port }}\"",
        )
}

fn argv(
    file: &SourceFile,
    field: Option<Spanned<Vec<String>>>,
    default: &[&str],
    key: &str,
) -> Result<Vec<String>, InputError> {
    match field {
        None => Ok(default.iter().map(|s| s.to_string()).collect()),
        Some(v) if v.get_ref().is_empty() || v.get_ref()[0].is_empty() => Err(file
            .error_at(v.span(), format!("`{key}` names no command"))
            .with_hint(format!(
                "write the command and its arguments as a list, e.g. {key} = {default:?}"
            ))),
        Some(v) => Ok(v.into_inner()),
    }
}

impl Kind for BlueGreen {
    type Raw = RawBlueGreen;
    /// Boxed: far larger than the other kinds' actions.
    type Action = Box<Switch>;

    fn parse(raw: Spanned<RawBlueGreen>, cx: &ParseCx<'_>) -> Result<Self, InputError> {
        let file = cx.file;
        let span = raw.span();
        let raw = raw.into_inner();
        if !cx.has_release {
            return Err(file
                .error_at(span, "`blue_green` needs a `[release]` section")
                .with_hint("add [release] with `root`: a rollback switches back to the previous release's color, which needs its files; point `dir` at \"{{ release.root }}/current\""));
        }
        let service_of = |s: &Spanned<String>, what: &str| {
            if valid_service(s.get_ref()) {
                Ok(s.get_ref().clone())
            } else {
                Err(file
                    .error_at(s.span(), format!("bad {what} `{}`", s.get_ref()))
                    .with_hint(
                        "name a service of the compose file: letters, digits, `_`, `.` and `-`",
                    ))
            }
        };
        let service = service_of(&raw.service, "service")?;
        let proxy = raw.proxy.into_inner();
        let proxy_service = service_of(&proxy.service, "proxy service")?;
        let port_span = raw.port.span();
        let port = match raw.port.into_inner() {
            RawPort::Number(0) => return Err(bad_port(file, port_span, "0")),
            RawPort::Number(n) => Ok(n),
            RawPort::Text(text) => Err(Spanned::new(port_span, text)),
        };
        let health = raw.health.into_inner();
        if !health.path.get_ref().starts_with('/')
            || health.path.get_ref().contains(char::is_whitespace)
        {
            return Err(file
                .error_at(
                    health.path.span(),
                    format!("bad health path `{}`", health.path.get_ref()),
                )
                .with_hint("write the path each new container answers on, e.g. \"/healthz\""));
        }
        if let Some(e) = &health.expect
            && !(100..=599).contains(e.get_ref())
        {
            return Err(file
                .error_at(
                    e.span(),
                    format!("`expect` {} is not an HTTP status", e.get_ref()),
                )
                .with_hint("write e.g. expect = 200"));
        }
        let interval = duration(file, &health.interval, Duration::from_secs(1))?;
        if let Some(t) = &health.interval
            && interval < MIN_INTERVAL
        {
            return Err(file
                .error_at(
                    t.span(),
                    format!(
                        "`interval` must be at least {}",
                        humantime::format_duration(MIN_INTERVAL)
                    ),
                )
                .with_hint("write e.g. \"1s\" (the default) or \"500ms\""));
        }
        let health = DirectHealth {
            path: health.path.into_inner(),
            expect: health.expect.map_or(200, |e| *e.get_ref()),
            contains: health.contains,
            timeout: duration(file, &health.timeout, Duration::from_secs(60))?,
            interval,
        };
        let upstream = raw.upstream.get_ref();
        if upstream.ends_with(".conf") {
            return Err(file
                .error_at(raw.upstream.span(), format!("the upstream file `{upstream}` ends in `.conf`"))
                .with_hint("nginx loads every conf.d/*.conf as a whole config: name it e.g. app.upstream and `include` it inside an `upstream` block"));
        }
        Ok(BlueGreen(Box::new(Spec {
            dir: raw.dir,
            project: raw.project,
            service,
            port,
            health,
            upstream: raw.upstream,
            proxy_dir: proxy.dir,
            proxy_project: proxy.project,
            proxy_service,
            test: argv(file, raw.test, &["nginx", "-t"], "test")?,
            reload: argv(file, raw.reload, &["nginx", "-s", "reload"], "reload")?,
            drain: duration(file, &raw.drain, Duration::from_secs(2))?,
            keep_previous: raw.keep_previous.unwrap_or(true),
        })))
    }

    fn default_name(&self) -> String {
        format!("blue/green switch of `{}`", self.service)
    }

    fn templated_fields(&self) -> Vec<&Templated> {
        let mut fields: Vec<&Templated> = self.dir.iter().collect();
        fields.extend(self.project.iter());
        fields.extend(self.port.as_ref().err());
        fields.push(&self.upstream);
        fields.push(&self.proxy_dir);
        fields.extend(self.proxy_project.iter());
        fields
    }

    fn plan(&self, cx: &mut PlanCx<'_>) -> Result<Box<Switch>, InputError> {
        if cx.release.is_none() {
            return Err(cx
                .step_error("`blue_green` needs a `[release]` section", "blue_green")
                .with_hint("add [release] with `root`"));
        }
        let dir = cx.compose_dir(
            &self.dir,
            "a blue_green step needs `dir`, the directory holding the colored stack's compose file",
            "blue_green.dir",
            "write e.g. dir = \"{{ app_dir }}/current\"",
        )?;
        let project = |cx: &mut PlanCx<'_>,
                       field: &Option<Templated>|
         -> Result<String, InputError> {
            let (name, span) = match field {
                Some(p) => (cx.field(p)?, Some(p.span())),
                None => (cx.app.to_string(), None),
            };
            if valid_project(&name) {
                return Ok(name);
            }
            let message = format!("bad compose project name `{name}`");
            let hint = "compose accepts lowercase letters, digits, `_` and `-`, starting with a letter or digit";
            Err(match span {
                Some(span) => cx.file.error_at(span, message),
                None => cx.step_error(&message, "blue_green.project"),
            }
            .with_hint(hint))
        };
        let color_project = project(cx, &self.project)?;
        let proxy_project = match &self.proxy_project {
            Some(_) => project(cx, &self.proxy_project)?,
            None => color_project.clone(),
        };
        let absolute = |cx: &mut PlanCx<'_>, field: &Templated, what: &str| {
            let path = cx.field(field)?;
            if path.starts_with('/') && !path.ends_with('/') {
                Ok(path)
            } else {
                Err(cx
                    .file
                    .error_at(
                        field.span(),
                        format!("{what} `{path}` is not an absolute path"),
                    )
                    .with_hint("write e.g. \"{{ app_dir }}/shared/nginx/app.upstream\""))
            }
        };
        let port = match &self.port {
            Ok(n) => *n,
            Err(field) => {
                let text = cx.field(field)?;
                match text.trim().parse::<u16>() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(bad_port(cx.file, field.span(), &text)),
                }
            }
        };
        let upstream = absolute(cx, &self.upstream, "the upstream file")?;
        let proxy_dir = cx.field(&self.proxy_dir)?;
        Ok(Box::new(Switch {
            dir,
            project: color_project,
            service: self.service.clone(),
            port,
            health: self.health.clone(),
            upstream,
            proxy: Proxy {
                dir: proxy_dir,
                project: proxy_project,
                service: self.proxy_service.clone(),
                test: self.test.clone(),
                reload: self.reload.clone(),
            },
            drain: self.drain,
            keep_previous: self.keep_previous,
        }))
    }
}

impl Act for Box<Switch> {
    fn describe(&self) -> String {
        format!(
            "blue/green: start `{}` from {} as {}-blue|green, check it at :{}{}, point {} at it and reload `{}` (project {}); {}",
            self.service,
            self.dir,
            self.project,
            self.port,
            self.health.path,
            self.upstream,
            self.proxy.service,
            self.proxy.project,
            if self.keep_previous {
                "the old color stays idle for rollback"
            } else {
                "the old color is stopped"
            }
        )
    }

    fn prepare(&self, _host: &HostView<'_>, _label: &str, _tag: usize) -> Prepared {
        unreachable!("blue/green switches run alone (the session's blue_green runner)")
    }

    fn judge(&self, _host: &HostView<'_>, _out: &ExecOutput) -> Result<Done, Failure> {
        unreachable!("blue/green switches run alone (the session's blue_green runner)")
    }

    fn needs_compose(&self) -> bool {
        true
    }
}

/// What a host needs to serve the target release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// This color (idle) already runs the target: point the proxy at it, start nothing
    /// (a rollback while the previous color still runs).
    SwitchOnly(Color),
    /// The live color runs the target: nothing to do, unless its images are out of date
    /// (a deploy asks `compose pull`; see `after_pull`).
    KeepLive(Color),
    /// Start the target in this color (the idle one, or blue when nothing is live), then switch.
    StartThenSwitch(Color),
}

/// Whether two releases hold the same content: the same id, or the same hash (an id's last 8
/// hex digits: everything rendered for it).
fn same_content(a: &str, b: &str) -> bool {
    a == b || (a.len() > 8 && b.len() > 8 && a[a.len() - 8..] == b[b.len() - 8..])
}

/// Whether `containers` serve `target`: at least one container of `service`, every one of them
/// running and started from `target` (or a release with the same content).
pub fn serves(containers: &[Container], service: &str, target: &str) -> bool {
    let routed: Vec<&Container> = containers.iter().filter(|c| c.service == service).collect();
    !routed.is_empty()
        && routed.iter().all(|c| {
            c.running
                && c.ip.is_some()
                && c.release
                    .as_deref()
                    .is_some_and(|r| same_content(r, target))
        })
}

/// What the host needs, from what `inspect` found, to serve `target` through the proxy.
pub fn decide(state: &HostState, target: &str, service: &str) -> Decision {
    let serving = |color: Color| serves(state.containers(color), service, target);
    match &state.live {
        Some(live) if serving(live.color) => Decision::KeepLive(live.color),
        Some(live) if serving(live.color.other()) => Decision::SwitchOnly(live.color.other()),
        Some(live) => Decision::StartThenSwitch(live.color.other()),
        // Nothing is live (a first deploy, or an upstream file not written by dropship): a
        // color that already serves the target is used as it is.
        None => match Color::ALL.into_iter().find(|c| serving(*c)) {
            Some(color) => Decision::SwitchOnly(color),
            None => Decision::StartThenSwitch(Color::Blue),
        },
    }
}

/// `KeepLive` once `compose pull` has run in the live color: newer images mean the target
/// starts in the idle color.
pub fn after_pull(live: Color, pulled_newer: bool) -> Decision {
    if pulled_newer {
        Decision::StartThenSwitch(live.other())
    } else {
        Decision::KeepLive(live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::blue_green::Live;

    const OLD: &str = "20261122T175512.042Z-3f9a1c2e";
    const NEW: &str = "20261123T010203.999Z-abcdef01";
    /// NEW's content rendered again by a later run.
    const NEW_AGAIN: &str = "20261124T000000.000Z-abcdef01";

    fn web(color: Color, release: &str, running: bool) -> Container {
        Container {
            name: format!("p-{}-web-1", color.as_str()),
            service: "web".into(),
            running,
            release: Some(release.into()),
            ip: Some("172.18.0.9".parse().unwrap()),
        }
    }

    fn state(live: Option<Color>, blue: Vec<Container>, green: Vec<Container>) -> HostState {
        HostState {
            target: Some(NEW.into()),
            live: live.map(|color| Live {
                color,
                release: None,
            }),
            blue,
            green,
            ..HostState::default()
        }
    }

    #[test]
    fn a_first_deploy_starts_blue() {
        assert_eq!(
            decide(&state(None, vec![], vec![]), NEW, "web"),
            Decision::StartThenSwitch(Color::Blue)
        );
    }

    #[test]
    fn a_new_release_starts_in_the_idle_color() {
        let s = state(
            Some(Color::Blue),
            vec![web(Color::Blue, OLD, true)],
            vec![web(Color::Green, "20261101T000000.000Z-00000000", true)],
        );
        assert_eq!(
            decide(&s, NEW, "web"),
            Decision::StartThenSwitch(Color::Green)
        );
        // Idle gone, or stopped: started again all the same.
        let gone = state(Some(Color::Blue), vec![web(Color::Blue, OLD, true)], vec![]);
        assert_eq!(
            decide(&gone, NEW, "web"),
            Decision::StartThenSwitch(Color::Green)
        );
        let stopped = state(
            Some(Color::Green),
            vec![web(Color::Blue, NEW, false)],
            vec![web(Color::Green, OLD, true)],
        );
        assert_eq!(
            decide(&stopped, NEW, "web"),
            Decision::StartThenSwitch(Color::Blue)
        );
    }

    #[test]
    fn a_rollback_while_the_previous_color_runs_only_switches() {
        // Live green runs NEW; the idle blue still runs OLD, which the rollback wants back.
        let s = state(
            Some(Color::Green),
            vec![web(Color::Blue, OLD, true)],
            vec![web(Color::Green, NEW, true)],
        );
        assert_eq!(decide(&s, OLD, "web"), Decision::SwitchOnly(Color::Blue));
        // And forward again.
        assert_eq!(decide(&s, NEW, "web"), Decision::KeepLive(Color::Green));
    }

    #[test]
    fn the_live_color_running_the_target_is_kept_unless_newer_images_were_pulled() {
        let s = state(Some(Color::Blue), vec![web(Color::Blue, NEW, true)], vec![]);
        assert_eq!(decide(&s, NEW, "web"), Decision::KeepLive(Color::Blue));
        // The same content rendered again by another run counts as the same release.
        assert_eq!(
            decide(&s, NEW_AGAIN, "web"),
            Decision::KeepLive(Color::Blue)
        );
        assert_eq!(
            after_pull(Color::Blue, false),
            Decision::KeepLive(Color::Blue)
        );
        assert_eq!(
            after_pull(Color::Blue, true),
            Decision::StartThenSwitch(Color::Green)
        );
    }

    #[test]
    fn a_live_color_that_is_down_or_partly_down_is_not_kept() {
        let mut blue = vec![web(Color::Blue, NEW, true), web(Color::Blue, NEW, false)];
        blue[1].name = "p-blue-web-2".into();
        let s = state(Some(Color::Blue), blue, vec![]);
        assert_eq!(
            decide(&s, NEW, "web"),
            Decision::StartThenSwitch(Color::Green)
        );
    }

    #[test]
    fn nothing_live_but_a_color_serving_the_target_is_switched_to() {
        let s = state(None, vec![], vec![web(Color::Green, NEW, true)]);
        assert_eq!(decide(&s, NEW, "web"), Decision::SwitchOnly(Color::Green));
    }

    #[test]
    fn containers_of_other_services_or_without_a_release_or_address_serve_nothing() {
        let mut db = web(Color::Blue, NEW, true);
        db.service = "worker".into();
        assert!(!serves(&[db.clone()], "web", NEW));
        let mut unknown = web(Color::Blue, NEW, true);
        unknown.release = None; // a working dir that is no release id (hostile or foreign)
        assert!(!serves(&[unknown], "web", NEW));
        let mut no_ip = web(Color::Blue, NEW, true);
        no_ip.ip = None;
        assert!(!serves(&[no_ip], "web", NEW));
        assert!(serves(&[db, web(Color::Blue, NEW, true)], "web", NEW));
        let s = state(
            Some(Color::Green),
            vec![],
            vec![Container {
                release: None,
                ..web(Color::Green, NEW, true)
            }],
        );
        assert_eq!(
            decide(&s, NEW, "web"),
            Decision::StartThenSwitch(Color::Blue)
        );
    }

    #[test]
    fn project_and_service_names_compose_would_refuse_are_bad() {
        assert!(valid_project("pixel-local-1"));
        assert!(valid_project("a_b"));
        for bad in ["", "Pixel", "-x", "_x", "a b", "a.b", "a/b"] {
            assert!(!valid_project(bad), "{bad:?}");
        }
        assert!(valid_service("web.1"));
        for bad in ["", "-web", ".web", "we b", "web;x"] {
            assert!(!valid_service(bad), "{bad:?}");
        }
    }
}
