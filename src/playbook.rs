//! The playbook: app, targeted hosts, vars, secret sources and steps, parsed and validated.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use crate::diagnostic::{InputError, SourceFile};
use crate::inventory::Vars;
use crate::paths::{playbook_bases, resolve_existing};
use crate::rollout::{Amount, OnFailure, Policy};
use crate::secrets::SecretSource;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlaybook {
    name: String,
    app: Spanned<String>,
    #[serde(default)]
    hosts: Option<Spanned<HostsField>>,
    #[serde(default)]
    vars: Vars,
    #[serde(default)]
    secrets: IndexMap<Spanned<String>, Spanned<SecretSource>>,
    rollout: Option<Spanned<RawRollout>>,
    release: Option<Spanned<RawRelease>>,
    #[serde(default)]
    steps: Vec<Spanned<RawStep>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRollout {
    canary: Option<usize>,
    batch: Option<Spanned<CountOrPercent>>,
    pause: Option<Spanned<String>>,
    max_failures: Option<Spanned<CountOrPercent>>,
    on_failure: Option<OnFailure>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum CountOrPercent {
    Count(usize),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelease {
    root: Spanned<String>,
    keep: Option<Spanned<usize>>,
}

/// `[release]` as written: `root` is rendered per host.
#[derive(Debug, Clone)]
pub struct ReleaseConfig {
    pub root: Templated,
    pub keep: usize,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum HostsField {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: Option<String>,
    dir: Option<Spanned<String>>,
    #[serde(default)]
    once: bool,
    when: Option<Spanned<String>>,
    #[serde(default)]
    tags: Vec<String>,
    copy: Option<Spanned<RawFile>>,
    template: Option<Spanned<RawFile>>,
    run: Option<Spanned<String>>,
    docker_login: Option<Spanned<RawLogin>>,
    compose: Option<Spanned<RawCompose>>,
    health: Option<Spanned<RawHealth>>,
    apt: Option<Spanned<toml::Value>>,
    activate: Option<Spanned<bool>>,
    #[serde(rename = "become")]
    become_root: Option<Spanned<toml::Value>>,
    become_user: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    src: Spanned<String>,
    dest: Spanned<String>,
    mode: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogin {
    registry: Spanned<String>,
    username: Spanned<String>,
    password: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    url: Option<Spanned<String>>,
    command: Option<Spanned<String>>,
    expect: Option<u16>,
    contains: Option<String>,
    timeout: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompose {
    command: ComposeCommand,
    dir: Option<Spanned<String>>,
    project: Option<Spanned<String>>,
    #[serde(default)]
    services: Vec<String>,
}

/// The compose subcommands a step may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComposeCommand {
    Pull,
    Up,
    Down,
    Restart,
    Ps,
}

impl ComposeCommand {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::Up => "up",
            Self::Down => "down",
            Self::Restart => "restart",
            Self::Ps => "ps",
        }
    }
}

/// A string field that is rendered per host, with its place in the playbook for errors.
pub type Templated = Spanned<String>;

#[derive(Debug, Clone)]
pub struct FileStep {
    /// `src` as written: the template's name in errors.
    pub src_name: String,
    pub src_path: PathBuf,
    pub src_span: std::ops::Range<usize>,
    /// The file's bytes (for `copy`) or the template source (for `template`).
    pub content: std::sync::Arc<[u8]>,
    pub dest: Templated,
    pub mode: u32,
}

#[derive(Debug, Clone)]
pub struct LoginStep {
    pub registry: Templated,
    pub username: Templated,
    pub password: Templated,
}

#[derive(Debug, Clone)]
pub struct ComposeStep {
    pub command: ComposeCommand,
    pub dir: Option<Templated>,
    pub project: Option<Templated>,
    pub services: Vec<String>,
}

/// An HTTP check made from the host's side (`url`) or a command that must exit 0.
#[derive(Debug, Clone)]
pub struct HealthStep {
    pub url: Option<Templated>,
    pub command: Option<Templated>,
    pub expect: u16,
    pub contains: Option<String>,
    pub timeout: std::time::Duration,
    pub interval: std::time::Duration,
}

#[derive(Debug, Clone)]
pub enum StepKind {
    Copy(FileStep),
    Template(FileStep),
    Run(Templated),
    DockerLogin(LoginStep),
    Compose(ComposeStep),
    Health(HealthStep),
    /// Switch `current` to the new release (implied after the last file step).
    Activate,
}

#[derive(Debug, Clone)]
pub struct Step {
    /// Position in `[[steps]]`, from 0.
    pub index: usize,
    pub name: String,
    pub dir: Option<Templated>,
    pub once: bool,
    pub when: Option<Templated>,
    pub tags: Vec<String>,
    pub kind: StepKind,
}

#[derive(Debug, Clone)]
pub struct Playbook {
    pub file: SourceFile,
    pub name: String,
    pub app: String,
    /// Host patterns (names, groups, globs, `all`), as accepted by `Inventory::select`.
    pub hosts: String,
    pub hosts_span: Option<std::ops::Range<usize>>,
    pub vars: Vars,
    pub secrets: IndexMap<Spanned<String>, Spanned<SecretSource>>,
    pub steps: Vec<Step>,
    pub rollout: Policy,
    pub release: Option<ReleaseConfig>,
    /// Where relative paths (templates, secret files) are looked up, in order.
    pub bases: Vec<PathBuf>,
}

impl Playbook {
    pub fn load(path: &Path) -> Result<Self, InputError> {
        let file = SourceFile::read(path, "playbook")?;
        Self::parse(file)
    }

    pub fn parse(file: SourceFile) -> Result<Self, InputError> {
        let raw: RawPlaybook = toml::from_str(&file.text).map_err(|e| file.toml_error(&e))?;
        let bases = playbook_bases(&file.path);
        let rollout = match &raw.rollout {
            Some(r) => convert_rollout(&file, r)?,
            None => Policy::default(),
        };
        let release = match raw.release {
            Some(r) => {
                let r = r.into_inner();
                let keep = match r.keep {
                    Some(k) if *k.get_ref() == 0 => {
                        return Err(file
                            .error_at(k.span(), "`keep` must be at least 1")
                            .with_hint(
                                "the current and the previous release are always kept anyway",
                            ));
                    }
                    Some(k) => *k.get_ref(),
                    None => 5,
                };
                Some(ReleaseConfig { root: r.root, keep })
            }
            None => None,
        };
        let app = raw.app.get_ref();
        if app.is_empty()
            || !app
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            || !app.starts_with(|c: char| c.is_ascii_alphanumeric())
        {
            return Err(file
                .error_at(raw.app.span(), format!("bad app name `{app}`"))
                .with_hint(
                    "use lowercase letters, digits, `-` and `_`: it names the compose project",
                ));
        }
        let (hosts, hosts_span) = match &raw.hosts {
            None => ("all".to_string(), None),
            Some(h) => {
                let text = match h.get_ref() {
                    HostsField::One(s) => s.clone(),
                    HostsField::Many(list) => list.join(","),
                };
                (text, Some(h.span()))
            }
        };
        let base_refs: Vec<&Path> = bases.iter().map(PathBuf::as_path).collect();
        let mut steps = Vec::new();
        for (index, raw_step) in raw.steps.into_iter().enumerate() {
            steps.push(convert_step(&file, &base_refs, index, raw_step)?);
        }
        Ok(Self {
            name: raw.name,
            app: app.clone(),
            hosts,
            hosts_span,
            vars: raw.vars,
            secrets: raw.secrets,
            steps,
            rollout,
            release,
            bases,
            file,
        })
    }
}

fn convert_rollout(file: &SourceFile, raw: &Spanned<RawRollout>) -> Result<Policy, InputError> {
    let r = raw.get_ref();
    let amount = |field: &Option<Spanned<CountOrPercent>>| -> Result<Option<Amount>, InputError> {
        match field {
            None => Ok(None),
            Some(v) => {
                let parsed = match v.get_ref() {
                    CountOrPercent::Count(n) => Ok(Amount::Count(*n)),
                    CountOrPercent::Text(t) => Amount::parse(t),
                };
                parsed.map(Some).map_err(|e| {
                    file.error_at(v.span(), e).with_hint(
                        "write a count (3) or a percentage of the targeted hosts (\"25%\")",
                    )
                })
            }
        }
    };
    let batch = amount(&r.batch)?;
    if let Some(b) = &r.batch
        && matches!(batch, Some(Amount::Count(0)) | Some(Amount::Percent(0)))
    {
        return Err(file
            .error_at(b.span(), "`batch` must be at least one host")
            .with_hint("leave `batch` out to deploy all hosts after the canary at once"));
    }
    let pause = match &r.pause {
        None => std::time::Duration::ZERO,
        Some(p) => humantime::parse_duration(p.get_ref()).map_err(|e| {
            file.error_at(p.span(), format!("bad duration `{}`: {e}", p.get_ref()))
                .with_hint("write e.g. \"30s\" or \"2m\"")
        })?,
    };
    Ok(Policy {
        canary: r.canary.unwrap_or(0),
        batch,
        pause,
        max_failures: amount(&r.max_failures)?.unwrap_or(Amount::Count(0)),
        on_failure: r.on_failure.unwrap_or(OnFailure::Halt),
    })
}

fn not_supported_yet(file: &SourceFile, span: std::ops::Range<usize>, what: &str) -> InputError {
    file.error_at(span, format!("{what} is not supported yet"))
        .with_hint("this dropship version deploys with copy, template, run, docker_login, compose and health steps; remove it for now")
}

const STEP_KINDS: &str = "`copy`, `template`, `run`, `docker_login`, `compose` or `health`";

fn convert_health(file: &SourceFile, raw: Spanned<RawHealth>) -> Result<HealthStep, InputError> {
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
        None => Ok(std::time::Duration::from_secs(default)),
        Some(t) => humantime::parse_duration(t.get_ref()).map_err(|e| {
            file.error_at(t.span(), format!("bad duration `{}`: {e}", t.get_ref()))
                .with_hint("write e.g. \"60s\", \"2m\" or \"500ms\"")
        }),
    };
    Ok(HealthStep {
        url: raw.url,
        command: raw.command,
        expect: raw.expect.unwrap_or(200),
        contains: raw.contains,
        timeout: duration(&raw.timeout, 60)?,
        interval: duration(&raw.interval, 1)?,
    })
}

fn convert_step(
    file: &SourceFile,
    bases: &[&Path],
    index: usize,
    raw: Spanned<RawStep>,
) -> Result<Step, InputError> {
    let span = raw.span();
    let raw = raw.into_inner();
    for (key, value) in [
        ("`apt`", &raw.apt),
        ("`become`", &raw.become_root),
        ("`become_user`", &raw.become_user),
    ] {
        if let Some(v) = value {
            return Err(not_supported_yet(file, v.span(), key));
        }
    }
    let mut kinds: Vec<(&str, StepKind)> = Vec::new();
    if let Some(f) = raw.copy {
        kinds.push(("copy", StepKind::Copy(load_file_step(file, bases, f)?)));
    }
    if let Some(f) = raw.template {
        kinds.push((
            "template",
            StepKind::Template(load_file_step(file, bases, f)?),
        ));
    }
    if let Some(r) = raw.run {
        kinds.push(("run", StepKind::Run(r)));
    }
    if let Some(l) = raw.docker_login {
        let l = l.into_inner();
        kinds.push((
            "docker_login",
            StepKind::DockerLogin(LoginStep {
                registry: l.registry,
                username: l.username,
                password: l.password,
            }),
        ));
    }
    if let Some(c) = raw.compose {
        let c = c.into_inner();
        kinds.push((
            "compose",
            StepKind::Compose(ComposeStep {
                command: c.command,
                dir: c.dir,
                project: c.project,
                services: c.services,
            }),
        ));
    }
    if let Some(a) = &raw.activate {
        if !*a.get_ref() {
            return Err(file
                .error_at(a.span(), "`activate = false` does nothing")
                .with_hint("write `activate = true` where `current` should switch to the new release, or remove the step"));
        }
        kinds.push(("activate", StepKind::Activate));
    }
    if let Some(h) = raw.health {
        kinds.push(("health", StepKind::Health(convert_health(file, h)?)));
    }
    let kind = match kinds.len() {
        1 => kinds.pop().map(|(_, k)| k),
        0 => None,
        _ => {
            let names: Vec<String> = kinds.iter().map(|(n, _)| format!("`{n}`")).collect();
            return Err(file
                .error_at(
                    span,
                    format!(
                        "step {} has more than one kind: {}",
                        index + 1,
                        names.join(" and ")
                    ),
                )
                .with_key(format!("steps.{index}"))
                .with_hint("split it into one `[[steps]]` table per action"));
        }
    };
    let Some(kind) = kind else {
        return Err(file
            .error_at(span, format!("step {} does nothing", index + 1))
            .with_key(format!("steps.{index}"))
            .with_hint(format!("give it one of {STEP_KINDS}")));
    };
    let name = raw.name.unwrap_or_else(|| default_step_name(&kind));
    Ok(Step {
        index,
        name,
        dir: raw.dir,
        once: raw.once,
        when: raw.when,
        tags: raw.tags,
        kind,
    })
}

fn default_step_name(kind: &StepKind) -> String {
    match kind {
        StepKind::Copy(f) | StepKind::Template(f) => f.dest.get_ref().clone(),
        StepKind::Run(r) => {
            let first = r.get_ref().lines().next().unwrap_or("");
            let short: String = first.chars().take(60).collect();
            format!("run {short}")
        }
        StepKind::DockerLogin(l) => format!("docker login {}", l.registry.get_ref()),
        StepKind::Compose(c) => format!("compose {}", c.command.as_str()),
        StepKind::Activate => "activate release".to_string(),
        StepKind::Health(h) => match (&h.url, &h.command) {
            (Some(url), _) => format!("health {}", url.get_ref()),
            (None, Some(c)) => format!("health `{}`", c.get_ref()),
            (None, None) => "health".to_string(),
        },
    }
}

fn load_file_step(
    file: &SourceFile,
    bases: &[&Path],
    raw: Spanned<RawFile>,
) -> Result<FileStep, InputError> {
    let raw = raw.into_inner();
    let src_path = resolve_existing(raw.src.get_ref(), bases);
    let content = std::fs::read(&src_path).map_err(|e| {
        let tried: Vec<String> = bases
            .iter()
            .map(|b| b.join(raw.src.get_ref()).display().to_string())
            .collect();
        file.error_at(
            raw.src.span(),
            format!("cannot read `{}`: {e}", raw.src.get_ref()),
        )
        .with_hint(format!(
            "relative paths are looked up in the playbook's directory, then its parent; tried {}",
            tried.join(", ")
        ))
    })?;
    let mode = match &raw.mode {
        None => 0o644,
        Some(m) => parse_mode(m.get_ref()).ok_or_else(|| {
            file.error_at(m.span(), format!("bad file mode `{}`", m.get_ref()))
                .with_hint("write an octal string such as \"0600\" or \"0644\"")
        })?,
    };
    Ok(FileStep {
        src_name: raw.src.get_ref().clone(),
        src_path,
        src_span: raw.src.span(),
        content: content.into(),
        dest: raw.dest,
        mode,
    })
}

fn parse_mode(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 5 || !text.chars().all(|c| ('0'..='7').contains(&c)) {
        return None;
    }
    u32::from_str_radix(text, 8).ok().filter(|m| *m <= 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Playbook, InputError> {
        Playbook::parse(SourceFile {
            path: "/nonexistent/pb.toml".into(),
            text: text.into(),
        })
    }

    #[test]
    fn parses_steps_of_each_kind() {
        let pb = parse(
            r#"
name = "t"
app = "pixel"
hosts = ["web", "db"]

[[steps]]
run = "echo hi"
dir = "/srv"
once = true

[[steps]]
docker_login = { registry = "r", username = "u", password = "{{ secrets.p }}" }

[[steps]]
compose = { command = "up", dir = "/srv" }
"#,
        )
        .unwrap();
        assert_eq!(pb.hosts, "web,db");
        assert_eq!(pb.steps.len(), 3);
        assert!(pb.steps[0].once);
        assert_eq!(pb.steps[0].name, "run echo hi");
        assert_eq!(pb.steps[2].name, "compose up");
        assert!(matches!(pb.steps[1].kind, StepKind::DockerLogin(_)));
    }

    #[test]
    fn later_features_are_rejected_with_not_supported_yet() {
        let err = parse("name = \"t\"\napp = \"a\"\n[[steps]]\napt = { packages = [\"x\"] }\n")
            .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "/nonexistent/pb.toml:4:7: `apt` is not supported yet\n  key: `steps.0.apt`"
            ),
            "{err}"
        );
        let err = parse("name = \"t\"\napp = \"a\"\n[rollout]\nbatch = \"lots\"\n").unwrap_err();
        assert!(
            err.to_string().starts_with(
                "/nonexistent/pb.toml:4:9: `lots` is neither a count nor a percentage"
            ),
            "{err}"
        );
    }

    #[test]
    fn health_needs_exactly_one_of_url_and_command() {
        let err = parse("name = \"t\"\napp = \"a\"\n[[steps]]\nhealth = { timeout = \"5s\" }\n")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("exactly one of `url` and `command`"),
            "{err}"
        );
        let pb = parse("name = \"t\"\napp = \"a\"\n[[steps]]\nhealth = { url = \"http://127.0.0.1:81/\", timeout = \"5s\" }\n").unwrap();
        let StepKind::Health(h) = &pb.steps[0].kind else {
            panic!()
        };
        assert_eq!(h.expect, 200);
        assert_eq!(h.timeout, std::time::Duration::from_secs(5));
        assert_eq!(pb.steps[0].name, "health http://127.0.0.1:81/");
    }

    #[test]
    fn step_with_two_kinds_or_none_is_an_error() {
        let err = parse(
            "name = \"t\"\napp = \"a\"\n[[steps]]\nrun = \"x\"\ncompose = { command = \"up\" }\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("step 1 has more than one kind: `run` and `compose`"),
            "{err}"
        );
        let err = parse("name = \"t\"\napp = \"a\"\n[[steps]]\nname = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("step 1 does nothing"), "{err}");
    }

    #[test]
    fn unknown_compose_command_names_the_choices() {
        let err = parse("name = \"t\"\napp = \"a\"\n[[steps]]\ncompose = { command = \"upp\" }\n")
            .unwrap_err();
        assert!(
            err.to_string().starts_with("/nonexistent/pb.toml:4:23: unknown variant `upp`, expected one of `pull`, `up`, `down`, `restart`, `ps`"),
            "{err}"
        );
    }

    #[test]
    fn missing_template_file_is_an_error_at_src() {
        let err = parse("name = \"t\"\napp = \"a\"\n[[steps]]\ntemplate = { src = \"nope.j2\", dest = \"/x\" }\n")
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/pb.toml:4:20: cannot read `nope.j2`"),
            "{err}"
        );
    }

    #[test]
    fn modes_are_octal_strings() {
        assert_eq!(parse_mode("0600"), Some(0o600));
        assert_eq!(parse_mode("755"), Some(0o755));
        assert_eq!(parse_mode("0800"), None);
        assert_eq!(parse_mode("rw"), None);
    }
}
