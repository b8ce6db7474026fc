//! Playbook steps: the step kinds as written, their validation and conversion.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::diagnostic::{InputError, SourceFile};
use crate::paths::resolve_existing;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
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
pub(super) struct RawApt {
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
pub(super) struct RawFile {
    src: Spanned<String>,
    dest: Spanned<String>,
    mode: Option<Spanned<String>>,
    owner: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogin {
    registry: Spanned<String>,
    username: Spanned<String>,
    password: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    url: Option<Spanned<String>>,
    command: Option<Spanned<String>>,
    expect: Option<u16>,
    contains: Option<String>,
    timeout: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCompose {
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

impl Step {
    /// Every string field of the step rendered per host (`when`, an expression, aside).
    pub fn templated_fields(&self) -> Vec<&Templated> {
        let mut fields: Vec<&Templated> = Vec::new();
        fields.extend(self.dir.iter());
        fields.extend(self.guards.creates.iter());
        fields.extend(self.guards.unless.iter());
        if let Some(b) = &self.become_as {
            fields.extend(b.password.iter());
        }
        match &self.kind {
            StepKind::Copy(f) | StepKind::Template(f) => {
                fields.push(&f.dest);
                fields.extend(f.owner.iter());
                fields.extend(f.group.iter());
            }
            StepKind::Run(command) => fields.push(command),
            StepKind::DockerLogin(l) => fields.extend([&l.registry, &l.username, &l.password]),
            StepKind::Compose(c) => {
                fields.extend(c.dir.iter());
                fields.extend(c.project.iter());
            }
            StepKind::Health(h) => {
                fields.extend(h.url.iter());
                fields.extend(h.command.iter());
            }
            StepKind::Apt(_) | StepKind::Activate => {}
        }
        fields
    }
}

/// A file step's rendered `dest` must name a file: not empty, not a directory (ending in `/`,
/// `.` or `..`).
pub fn check_dest(file: &SourceFile, field: &Templated, dest: &str) -> Result<(), InputError> {
    let last = dest.rsplit('/').next().unwrap_or("");
    let problem = if dest.trim().is_empty() {
        "is empty"
    } else if dest.ends_with('/') {
        "ends with `/`"
    } else if last == "." || last == ".." {
        "names a directory"
    } else {
        return Ok(());
    };
    Err(file
        .error_at(
            field.span(),
            format!("file destination `{dest}` {problem}: it must name a file"),
        )
        .with_hint("write the file's full path, e.g. dest = \"{{ app_dir }}/docker-compose.yml\""))
}

pub(super) const STEP_KINDS: &str =
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

pub(super) fn convert_apt(file: &SourceFile, raw: Spanned<RawApt>) -> Result<AptStep, InputError> {
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

pub(super) fn convert_health(
    file: &SourceFile,
    raw: Spanned<RawHealth>,
) -> Result<HealthStep, InputError> {
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
    let interval = duration(&raw.interval, 1)?;
    if let Some(t) = &raw.interval
        && interval < crate::health::MIN_INTERVAL
    {
        return Err(file
            .error_at(
                t.span(),
                format!(
                    "`interval` must be at least {}",
                    humantime::format_duration(crate::health::MIN_INTERVAL)
                ),
            )
            .with_hint("each attempt opens a channel (and, for a `command`, runs a shell) on the host; write e.g. \"1s\" (the default) or \"500ms\""));
    }
    Ok(HealthStep {
        url: raw.url,
        command: raw.command,
        expect: raw.expect.unwrap_or(200),
        contains: raw.contains,
        timeout: duration(&raw.timeout, 60)?,
        interval,
    })
}

pub(super) fn convert_step(
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

pub(super) fn convert_become(
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

pub(super) fn default_step_name(kind: &StepKind) -> String {
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

pub(super) fn load_file_step(
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

pub(super) fn parse_mode(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 5 || !text.chars().all(|c| ('0'..='7').contains(&c)) {
        return None;
    }
    u32::from_str_radix(text, 8).ok().filter(|m| *m <= 0o7777)
}
