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
    #[serde(rename = "become")]
    become_defaults: Option<Spanned<RawBecomeDefaults>>,
    #[serde(default)]
    steps: Vec<Spanned<RawStep>>,
}

/// `[become]`: defaults for every step that sets `become` or `become_user`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBecomeDefaults {
    password: Option<Spanned<String>>,
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
    apt: Option<Spanned<RawApt>>,
    activate: Option<Spanned<bool>>,
    #[serde(rename = "become")]
    become_root: Option<Spanned<bool>>,
    become_user: Option<Spanned<String>>,
    become_password: Option<Spanned<String>>,
    creates: Option<Spanned<String>>,
    unless: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApt {
    packages: Vec<Spanned<String>>,
    #[serde(default)]
    update: bool,
    #[serde(default)]
    state: AptState,
}

/// Whether an `apt` step installs or removes its packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AptState {
    #[default]
    Present,
    Absent,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    src: Spanned<String>,
    dest: Spanned<String>,
    mode: Option<Spanned<String>>,
    owner: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
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
    /// Owner and group to give the file (rendered per host, checked to be plain names).
    pub owner: Option<Templated>,
    pub group: Option<Templated>,
}

/// `apt = { packages, update, state }`.
#[derive(Debug, Clone)]
pub struct AptStep {
    /// Validated Debian package names (optionally `name:arch`).
    pub packages: Vec<String>,
    pub update: bool,
    pub state: AptState,
}

/// `become`, `become_user`, `become_password` of a step (the password falls back to
/// `[become] password`).
#[derive(Debug, Clone)]
pub struct BecomeSpec {
    /// `None`: root.
    pub user: Option<String>,
    /// A templated field, normally `{{ secrets.NAME }}`; `None`: `sudo -n` (passwordless).
    pub password: Option<Templated>,
}

/// Guards of a `run` step: it is skipped (reported `ok`) when `creates` exists or `unless`
/// exits 0.
#[derive(Debug, Clone, Default)]
pub struct RunGuards {
    pub creates: Option<Templated>,
    pub unless: Option<Templated>,
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
    Apt(AptStep),
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
    /// Run the step's remote commands through sudo.
    pub become_as: Option<BecomeSpec>,
    /// Only for `run` steps.
    pub guards: RunGuards,
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
        let default_password = raw.become_defaults.and_then(|b| b.into_inner().password);
        let mut steps = Vec::new();
        for (index, raw_step) in raw.steps.into_iter().enumerate() {
            steps.push(convert_step(
                &file,
                &base_refs,
                index,
                raw_step,
                default_password.as_ref(),
            )?);
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

const STEP_KINDS: &str =
    "`copy`, `template`, `run`, `apt`, `docker_login`, `compose`, `health` or `activate`";

/// Debian package names: lowercase letters, digits, `+`, `-`, `.`, at least two characters,
/// starting with a letter or digit; optionally `:arch`.
pub fn valid_package_name(name: &str) -> bool {
    let (pkg, arch) = match name.split_once(':') {
        Some((p, a)) => (p, Some(a)),
        None => (name, None),
    };
    let pkg_ok = pkg.len() >= 2
        && pkg.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && pkg
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    let arch_ok = arch.is_none_or(|a| {
        !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    });
    pkg_ok && arch_ok
}

/// User and group names usable with `sudo -u` and `chown`: letters, digits, `_`, `-`, `.`,
/// not starting with `-`, at most 32 characters.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

fn convert_apt(file: &SourceFile, raw: Spanned<RawApt>) -> Result<AptStep, InputError> {
    let span = raw.span();
    let raw = raw.into_inner();
    if raw.packages.is_empty() {
        return Err(file
            .error_at(span, "an `apt` step needs at least one package")
            .with_hint("write apt = { packages = [\"docker.io\"] }"));
    }
    let mut packages = Vec::with_capacity(raw.packages.len());
    for p in raw.packages {
        if !valid_package_name(p.get_ref()) {
            return Err(file
                .error_at(p.span(), format!("bad package name `{}`", p.get_ref()))
                .with_hint("Debian package names use lowercase letters, digits, `+`, `-` and `.` (optionally `:arch`); versions and globs are not accepted"));
        }
        packages.push(p.into_inner());
    }
    Ok(AptStep {
        packages,
        update: raw.update,
        state: raw.state,
    })
}

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
    default_password: Option<&Templated>,
) -> Result<Step, InputError> {
    let span = raw.span();
    let raw = raw.into_inner();
    let become_as = convert_become(file, &raw, default_password)?;
    if raw.run.is_none()
        && let Some(g) = raw.creates.as_ref().or(raw.unless.as_ref())
    {
        return Err(file
            .error_at(g.span(), "`creates` and `unless` apply to `run` steps only")
            .with_hint("remove it, or guard the step with `when`"));
    }
    let guards = RunGuards {
        creates: raw.creates.clone(),
        unless: raw.unless.clone(),
    };
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
    if let Some(a) = raw.apt {
        kinds.push(("apt", StepKind::Apt(convert_apt(file, a)?)));
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
        become_as,
        guards,
    })
}

fn convert_become(
    file: &SourceFile,
    raw: &RawStep,
    default_password: Option<&Templated>,
) -> Result<Option<BecomeSpec>, InputError> {
    if let Some(u) = &raw.become_user
        && !valid_user_name(u.get_ref())
    {
        return Err(file
            .error_at(u.span(), format!("bad user name `{}`", u.get_ref()))
            .with_hint("use letters, digits, `_`, `-` and `.`"));
    }
    let wanted = match (&raw.become_root, &raw.become_user) {
        (Some(b), Some(_)) if !*b.get_ref() => {
            return Err(file
                .error_at(b.span(), "`become = false` contradicts `become_user`")
                .with_hint("remove one of them"));
        }
        (Some(b), _) => *b.get_ref() || raw.become_user.is_some(),
        (None, user) => user.is_some(),
    };
    if !wanted {
        if let Some(p) = &raw.become_password {
            return Err(file
                .error_at(p.span(), "`become_password` without `become`")
                .with_hint("add `become = true`, or remove it"));
        }
        return Ok(None);
    }
    Ok(Some(BecomeSpec {
        user: raw.become_user.as_ref().map(|u| u.get_ref().clone()),
        password: raw
            .become_password
            .clone()
            .or_else(|| default_password.cloned()),
    }))
}

fn default_step_name(kind: &StepKind) -> String {
    match kind {
        StepKind::Copy(f) | StepKind::Template(f) => f.dest.get_ref().clone(),
        StepKind::Apt(a) => match a.state {
            AptState::Present => format!("apt install {}", a.packages.join(" ")),
            AptState::Absent => format!("apt remove {}", a.packages.join(" ")),
        },
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
    for name in [&raw.owner, &raw.group].into_iter().flatten() {
        let text = name.get_ref();
        if !text.contains("{{") && !valid_user_name(text) {
            return Err(file
                .error_at(name.span(), format!("bad user or group name `{text}`"))
                .with_hint("use letters, digits, `_`, `-` and `.`"));
        }
    }
    Ok(FileStep {
        src_name: raw.src.get_ref().clone(),
        src_path,
        src_span: raw.src.span(),
        content: content.into(),
        dest: raw.dest,
        mode,
        owner: raw.owner,
        group: raw.group,
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
    fn apt_packages_are_validated() {
        let pb = parse("name = \"t\"\napp = \"a\"\n[[steps]]\napt = { packages = [\"docker.io\", \"g++\", \"libc6:amd64\"], update = true }\n[[steps]]\napt = { packages = [\"ufw\"], state = \"absent\" }\n").unwrap();
        let StepKind::Apt(a) = &pb.steps[0].kind else {
            panic!()
        };
        assert_eq!(a.packages, ["docker.io", "g++", "libc6:amd64"]);
        assert!(a.update);
        assert_eq!(a.state, AptState::Present);
        assert_eq!(pb.steps[0].name, "apt install docker.io g++ libc6:amd64");
        let StepKind::Apt(a) = &pb.steps[1].kind else {
            panic!()
        };
        assert!(!a.update);
        assert_eq!(a.state, AptState::Absent);
        let err = parse("name = \"t\"\napp = \"a\"\n[[steps]]\napt = { packages = [\"curl\", \"x; rm -rf /\"] }\n")
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/pb.toml:4:29: bad package name `x; rm -rf /`"),
            "{err}"
        );
        let err =
            parse("name = \"t\"\napp = \"a\"\n[[steps]]\napt = { packages = [] }\n").unwrap_err();
        assert!(err.to_string().contains("at least one package"), "{err}");
        let err = parse("name = \"t\"\napp = \"a\"\n[[steps]]\napt = { packages = [\"xy\"], state = \"latest\" }\n")
            .unwrap_err();
        assert!(
            err.to_string().contains("unknown variant `latest`"),
            "{err}"
        );
        for bad in ["", "A", "-x", "x", "Docker", "a b", "pkg=1.0", "p*", "a:"] {
            assert!(!valid_package_name(bad), "{bad}");
        }
    }

    #[test]
    fn become_keys_are_parsed_with_the_playbook_default_password() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.j2"), "x").unwrap();
        let text = r#"
name = "t"
app = "a"
[become]
password = "{{ secrets.pw }}"

[[steps]]
run = "id -u"
become = true

[[steps]]
run = "whoami"
become_user = "postgres"
become_password = "{{ secrets.other }}"

[[steps]]
run = "true"
creates = "/etc/x"

[[steps]]
template = { src = "t.j2", dest = "/etc/y", owner = "root", group = "{{ g }}" }
become = true
"#;
        let pb = Playbook::parse(SourceFile {
            path: dir.path().join("pb.toml"),
            text: text.into(),
        })
        .unwrap();
        let b = pb.steps[0].become_as.as_ref().unwrap();
        assert_eq!(b.user, None);
        assert_eq!(b.password.as_ref().unwrap().get_ref(), "{{ secrets.pw }}");
        let b = pb.steps[1].become_as.as_ref().unwrap();
        assert_eq!(b.user.as_deref(), Some("postgres"));
        assert_eq!(
            b.password.as_ref().unwrap().get_ref(),
            "{{ secrets.other }}"
        );
        assert!(pb.steps[2].become_as.is_none());
        assert_eq!(
            pb.steps[2].guards.creates.as_ref().unwrap().get_ref(),
            "/etc/x"
        );
        let StepKind::Template(f) = &pb.steps[3].kind else {
            panic!()
        };
        assert_eq!(f.owner.as_ref().unwrap().get_ref(), "root");
        assert_eq!(f.group.as_ref().unwrap().get_ref(), "{{ g }}");
    }

    #[test]
    fn bad_become_keys_are_errors() {
        let cases = [
            ("become_user = \"-x\"", "bad user name `-x`"),
            (
                "become = false\nbecome_user = \"bob\"",
                "contradicts `become_user`",
            ),
            (
                "become_password = \"p\"",
                "`become_password` without `become`",
            ),
            ("become = \"yes\"", "expected a boolean"),
        ];
        for (keys, want) in cases {
            let err = parse(&format!(
                "name = \"t\"\napp = \"a\"\n[[steps]]\nrun = \"x\"\n{keys}\n"
            ))
            .unwrap_err();
            assert!(err.to_string().contains(want), "{keys}: {err}");
        }
        let err = parse("name = \"t\"\napp = \"a\"\n[[steps]]\ncompose = { command = \"up\" }\nunless = \"true\"\n")
            .unwrap_err();
        assert!(
            err.to_string().contains("apply to `run` steps only"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.j2"), "x").unwrap();
        let err = Playbook::parse(SourceFile {
            path: dir.path().join("pb.toml"),
            text: "name = \"t\"\napp = \"a\"\n[[steps]]\ncopy = { src = \"t.j2\", dest = \"/x\", owner = \"a b\" }\n".into(),
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("bad user or group name `a b`"),
            "{err}"
        );
    }

    #[test]
    fn bad_batch_is_neither_count_nor_percentage() {
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
