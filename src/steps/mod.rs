//! Step kinds: the registry of every kind a `[[steps]]` table may have and the one place that
//! dispatches to each kind's file (parsing, planning, remote segment, judging, description).
//! May import: diagnostic, paths, template, secrets, health, release (`ReleaseSite`), remote,
//! report (`Outcome`), transport (`ExecOutput`), plan (`Upload` and its constructor, data only);
//! never playbook, session or fleet (they call in here).
//!
//! Adding a step kind: a file here implementing [`Kind`] (and [`Act`] for its action), its
//! `mod` line and one line in `registry!` below. Nothing else changes.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use minijinja::Value;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;

use crate::diagnostic::{InputError, SourceFile};
use crate::plan::Upload;
use crate::release::ReleaseSite;
use crate::remote::compose::ComposeFlavor;
use crate::remote::probe::RemoteFile;
use crate::remote::tree::Listing;
use crate::secrets::{Redactor, Secret};
use crate::template::Renderer;
use crate::transport::ExecOutput;

pub mod activate;
pub mod apt;
pub mod blue_green;
pub mod compose;
mod done;
pub mod ensure;
pub mod files;
pub mod handlers;
pub mod health;
pub mod login;
pub mod prune_images;
pub mod prune_releases;
pub mod run;
pub mod stack;
pub mod swarm;
pub mod tree;

pub use done::{Done, Failure, Learned, Prepared, failure_text, output_tail, require_success};

/// A string field that is rendered per host, with its place in the playbook for errors.
pub type Templated = Spanned<String>;

/// One step kind as written in the playbook, validated: what its key holds.
pub trait Kind: Sized + std::fmt::Debug + Clone {
    /// What the kind's key holds in a `[[steps]]` table, as deserialized.
    type Raw: DeserializeOwned;
    /// What the step does on one host, every field rendered.
    type Action: Act + std::fmt::Debug + Clone;
    /// Whether the step-level guards `creates` and `unless` apply to this kind.
    const GUARDED: bool = false;

    /// Validates the raw value (and reads the files it names).
    fn parse(raw: Spanned<Self::Raw>, cx: &ParseCx<'_>) -> Result<Self, InputError>;
    /// The step's name when the playbook gives none.
    fn default_name(&self) -> String;
    /// Every string field of the kind rendered per host.
    fn templated_fields(&self) -> Vec<&Templated>;
    /// Renders the kind for one host.
    fn plan(&self, cx: &mut PlanCx<'_>) -> Result<Self::Action, InputError>;
}

/// One step's action on one host: its remote segment, how its output is judged, and what
/// `check` says of it.
pub trait Act {
    /// What `dropship check` prints for it.
    fn describe(&self) -> String;
    /// What it needs from the host; `tag` tells this step's temporary files apart from the
    /// others' in the same script.
    fn prepare(&self, host: &HostView<'_>, label: &str, tag: usize) -> Prepared;
    /// Judges what its segment did on the host.
    fn judge(&self, host: &HostView<'_>, out: &ExecOutput) -> Result<Done, Failure>;
    /// The files it places (a file step: one, or a directory's).
    fn uploads(&self) -> &[Upload] {
        &[]
    }
    fn uploads_mut(&mut self) -> &mut [Upload] {
        &mut []
    }
    /// The directory whose entries the probe must list (a directory step with `delete`).
    fn tree_root(&self) -> Option<&str> {
        None
    }
    /// Whether its segment needs to know how compose is invoked on the host.
    fn needs_compose(&self) -> bool {
        false
    }
}

/// What parsing a kind may read besides its own key.
pub struct ParseCx<'a> {
    pub file: &'a SourceFile,
    /// Where relative paths (`src`) are looked up, in order.
    pub bases: &'a [&'a Path],
    /// The step-level guards (only kinds with `GUARDED` may see them set).
    pub creates: Option<Templated>,
    pub unless: Option<Templated>,
    /// The playbook has a `[release]` section.
    pub has_release: bool,
}

/// A rendered playbook field that ends up on a command line on the host (or in an argument
/// the host's other users can read), with where it was written.
#[derive(Debug, Clone)]
pub struct CommandLineValue {
    pub span: Range<usize>,
    pub text: String,
}

/// What planning a kind for one host may read, and what it collects.
pub struct PlanCx<'a> {
    pub file: &'a SourceFile,
    pub renderer: &'a Renderer,
    pub ctx: &'a Value,
    /// The playbook's `app` (the default compose project).
    pub app: &'a str,
    /// Position in `[[steps]]` and name, for errors.
    pub index: usize,
    pub name: &'a str,
    /// The step's `dir`, rendered.
    pub dir: Option<String>,
    /// The release this run creates, when the playbook has `[release]`.
    pub release: Option<(&'a ReleaseSite, &'a str)>,
    /// Every rendered value that goes on a command line, to be checked for secrets.
    pub command_line: Vec<CommandLineValue>,
    /// Passwords sent on stdin, masked in all output like secrets, each with how to name it.
    pub passwords: Vec<(String, Secret)>,
}

impl PlanCx<'_> {
    /// Renders a field bound for a command line (noted, to be checked for secrets).
    pub fn field(&mut self, field: &Templated) -> Result<String, InputError> {
        let text = self.renderer.render_field(field, self.ctx, self.file)?;
        self.command_line.push(CommandLineValue {
            span: field.span(),
            text: text.clone(),
        });
        Ok(text)
    }

    /// Renders a password sent on stdin (never on a command line), to be masked in all output.
    pub fn password(&mut self, field: &Templated, label: String) -> Result<Secret, InputError> {
        let secret = Secret::new(self.renderer.render_field(field, self.ctx, self.file)?);
        self.passwords.push((label, secret.clone()));
        Ok(secret)
    }

    /// The directory a compose-driven step runs in: its own `dir` key rendered, else the step's
    /// `dir`; neither is the error `message` at `key`, with `hint`.
    pub fn compose_dir(
        &mut self,
        own: &Option<Templated>,
        message: &str,
        key: &str,
        hint: &str,
    ) -> Result<String, InputError> {
        match (own, self.dir.clone()) {
            (Some(d), _) => self.field(d),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(self.step_error(message, key).with_hint(hint)),
        }
    }

    /// An error about the step as a whole at `key` (below `steps.N.`).
    pub fn step_error(&self, message: &str, key: &str) -> InputError {
        InputError::plain(format!(
            "{}: step {} (`{}`): {message}",
            self.file.path.display(),
            self.index + 1,
            self.name
        ))
        .with_key(format!("steps.{}.{key}", self.index))
    }
}

/// What a host session knows of its host that the step kinds read.
pub struct HostView<'a> {
    /// What the probe found at each destination, updated after each upload.
    pub files: &'a HashMap<String, Option<RemoteFile>>,
    /// What the probe found under each directory a step lists (`Act::tree_root`).
    pub trees: &'a HashMap<String, Listing>,
    pub compose: ComposeFlavor,
    /// Masks secrets in failure texts.
    pub redactor: &'a Redactor,
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

macro_rules! registry {
    ($($key:ident => $Variant:ident($Kind:ty)),* $(,)?) => {
        /// A `[[steps]]` table as written: the keys common to every step (converted by
        /// `playbook`) and one optional key per step kind.
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(crate) struct RawStep {
            pub name: Option<String>,
            pub dir: Option<Templated>,
            #[serde(default)]
            pub once: bool,
            pub when: Option<Templated>,
            #[serde(default)]
            pub tags: Vec<String>,
            $(pub $key: Option<Spanned<<$Kind as Kind>::Raw>>,)*
            #[serde(rename = "become")]
            pub become_root: Option<Spanned<bool>>,
            pub become_user: Option<Templated>,
            pub become_password: Option<Templated>,
            pub creates: Option<Templated>,
            pub unless: Option<Templated>,
            /// A file step's handler (`copy`, `template` only; `playbook` checks).
            pub on_change: Option<Spanned<handlers::RawOnChange>>,
            /// The step's own variables (`playbook` converts them).
            pub vars: Option<indexmap::IndexMap<String, Spanned<toml::Value>>>,
            /// What the step runs once per item of (`playbook` converts it).
            #[serde(rename = "loop")]
            pub loop_over: Option<Spanned<toml::Value>>,
        }

        /// What a step does, as written and validated: one variant per kind.
        #[derive(Debug, Clone)]
        pub enum StepKind {
            $($Variant($Kind),)*
        }

        /// What one step does on one host. Everything is rendered; nothing is left to decide
        /// remotely.
        #[derive(Debug, Clone)]
        pub enum Action {
            $($Variant(<$Kind as Kind>::Action),)*
            /// `when` was false, or the step is `once` and runs on another host.
            Skip { reason: String },
        }

        /// The kinds' keys, for the hint of a step that has none.
        const KEYS: &[&str] = &[$(stringify!($key)),*];

        impl RawStep {
            /// Whether a kind present in this table takes `creates` and `unless`.
            pub(crate) fn takes_guards(&self) -> bool {
                false $(|| (self.$key.is_some() && <$Kind as Kind>::GUARDED))*
            }

            /// Validates every kind present (a step must have exactly one: the caller says so),
            /// each with its key.
            pub(crate) fn take_kinds(
                &mut self,
                cx: &ParseCx<'_>,
            ) -> Result<Vec<(&'static str, StepKind)>, InputError> {
                let mut kinds = Vec::new();
                $(if let Some(raw) = self.$key.take() {
                    kinds.push((stringify!($key), StepKind::$Variant(<$Kind as Kind>::parse(raw, cx)?)));
                })*
                Ok(kinds)
            }
        }

        impl StepKind {
            pub fn default_name(&self) -> String {
                match self {
                    $(Self::$Variant(k) => k.default_name(),)*
                }
            }

            pub fn templated_fields(&self) -> Vec<&Templated> {
                match self {
                    $(Self::$Variant(k) => k.templated_fields(),)*
                }
            }

            pub fn plan(&self, cx: &mut PlanCx<'_>) -> Result<Action, InputError> {
                Ok(match self {
                    $(Self::$Variant(k) => Action::$Variant(k.plan(cx)?),)*
                })
            }
        }

        impl Action {
            pub fn describe(&self) -> String {
                match self {
                    $(Self::$Variant(a) => a.describe(),)*
                    Self::Skip { reason } => format!("skip ({reason})"),
                }
            }

            pub fn prepare(&self, host: &HostView<'_>, label: &str, tag: usize) -> Prepared {
                match self {
                    $(Self::$Variant(a) => a.prepare(host, label, tag),)*
                    Self::Skip { reason } => Prepared::Local(Done::new(
                        crate::report::Outcome::Skipped,
                        Some(reason.clone()),
                    )),
                }
            }

            pub fn judge(&self, host: &HostView<'_>, out: &ExecOutput) -> Result<Done, Failure> {
                match self {
                    $(Self::$Variant(a) => a.judge(host, out),)*
                    Self::Skip { .. } => unreachable!("decided without a segment"),
                }
            }

            pub fn uploads(&self) -> &[Upload] {
                match self {
                    $(Self::$Variant(a) => a.uploads(),)*
                    Self::Skip { .. } => &[],
                }
            }

            pub fn uploads_mut(&mut self) -> &mut [Upload] {
                match self {
                    $(Self::$Variant(a) => a.uploads_mut(),)*
                    Self::Skip { .. } => &mut [],
                }
            }

            pub fn tree_root(&self) -> Option<&str> {
                match self {
                    $(Self::$Variant(a) => a.tree_root(),)*
                    Self::Skip { .. } => None,
                }
            }

            pub fn needs_compose(&self) -> bool {
                match self {
                    $(Self::$Variant(a) => a.needs_compose(),)*
                    Self::Skip { .. } => false,
                }
            }
        }
    };
}

// The registry: every step kind's key in a `[[steps]]` table, its variant and its type.
registry! {
    copy => Copy(files::Copy),
    template => Template(files::Template),
    run => Run(run::Run),
    apt => Apt(apt::Apt),
    docker_login => DockerLogin(login::Login),
    compose => Compose(compose::Compose),
    health => Health(health::Health),
    activate => Activate(activate::Activate),
    blue_green => BlueGreen(blue_green::BlueGreen),
    stack => Stack(stack::Stack),
    swarm => Swarm(swarm::Swarm),
    prune_images => PruneImages(prune_images::PruneImages),
    prune_releases => PruneReleases(prune_releases::PruneReleases),
    ensure => Ensure(ensure::Ensure),
}

/// Kinds the plan adds by itself and a playbook may not write (their key is refused).
const IMPLIED: &[&str] = &["prune_images", "prune_releases"];

impl Action {
    /// Whether it is a file step (`copy`, `template`: a file or a directory).
    pub fn places_files(&self) -> bool {
        matches!(self, Self::Copy(_) | Self::Template(_))
    }

    /// Whether the step runs in sessions of its own, through the session's own runner
    /// (health checks retried over time, blue/green switches with several round trips, image
    /// pruning, swarm stacks polled until they converge, swarm membership handed across hosts), rather than as a segment of a driver script.
    pub fn runs_alone(&self) -> bool {
        matches!(
            self,
            Self::Health(_)
                | Self::BlueGreen(_)
                | Self::PruneImages(_)
                | Self::Stack(_)
                | Self::Swarm(_)
        )
    }
}

/// The kinds a step may have, for a hint: "`copy`, `template`, … or `activate`".
pub fn kinds_list() -> String {
    let names: Vec<String> = KEYS
        .iter()
        .filter(|k| !IMPLIED.contains(k))
        .map(|k| format!("`{k}`"))
        .collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::upload;
    use crate::report::Outcome;

    fn view<'a>(
        files: &'a HashMap<String, Option<RemoteFile>>,
        compose: ComposeFlavor,
        redactor: &'a Redactor,
    ) -> HostView<'a> {
        static NO_TREES: std::sync::LazyLock<HashMap<String, Listing>> =
            std::sync::LazyLock::new(HashMap::new);
        HostView {
            files,
            trees: &NO_TREES,
            compose,
            redactor,
        }
    }

    fn exited(status: u32, stderr: &str) -> ExecOutput {
        ExecOutput {
            status: Some(status),
            stderr: stderr.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn a_file_already_on_the_host_is_decided_without_a_segment_and_a_written_one_is_learned() {
        let redactor = Redactor::default();
        let action = Action::Copy(files::Placement::File(upload(
            "/srv/a".into(),
            0o644,
            b"x"[..].into(),
            false,
        )));
        let [u] = action.uploads() else { panic!() };
        let mut files = HashMap::new();
        files.insert(u.dest.clone(), Some(RemoteFile::written_by(u)));
        let Prepared::Local(done) =
            action.prepare(&view(&files, ComposeFlavor::Unknown, &redactor), "a", 0)
        else {
            panic!("an unchanged file needs no segment")
        };
        assert_eq!(done.outcome, Outcome::Ok);

        let empty = HashMap::new();
        let host = view(&empty, ComposeFlavor::Unknown, &redactor);
        assert!(matches!(action.prepare(&host, "a", 0), Prepared::Remote(_)));
        let done = action.judge(&host, &exited(0, "")).unwrap();
        assert_eq!(done.outcome, Outcome::Changed);
        assert!(
            matches!(done.learned, Some(Learned::Wrote { ref files, .. }) if files[0].0 == "/srv/a")
        );
        let Err(failure) = action.judge(&host, &exited(3, "disk full")) else {
            panic!("a failed upload is a failure")
        };
        assert_eq!(failure, Failure("exit status 3\ndisk full".into()));
    }

    #[test]
    fn compose_fails_before_its_segment_when_the_host_has_no_compose() {
        let redactor = Redactor::default();
        let files = HashMap::new();
        let action = Action::Compose(compose::ComposeRun {
            dir: "/srv".into(),
            project: "app".into(),
            request: crate::remote::compose::Request::Up(Vec::new()),
            release_root: None,
        });
        assert!(action.needs_compose());
        let host = view(&files, ComposeFlavor::Missing, &redactor);
        let Prepared::Local(done) = action.prepare(&host, "up", 0) else {
            panic!()
        };
        assert_eq!(done.outcome, Outcome::Failed);
        assert_eq!(
            action.describe(),
            "compose up in /srv (project app)",
            "the `check` text"
        );
        // The inventory forces the plugin on a host that has only docker-compose.
        let host = view(
            &files,
            ComposeFlavor::Unusable {
                wanted: crate::remote::compose::ComposeTool::Plugin,
                other: true,
            },
            &redactor,
        );
        let Prepared::Local(done) = action.prepare(&host, "up", 0) else {
            panic!()
        };
        assert_eq!(done.outcome, Outcome::Failed);
        let detail = done.detail.unwrap();
        assert!(
            detail.starts_with("`docker compose` (the compose plugin) does not work on this host; it has `docker-compose`")
                && detail.contains("hint: set compose = \"standalone\""),
            "{detail}"
        );
    }

    #[test]
    fn a_skipped_step_is_decided_without_a_segment() {
        let redactor = Redactor::default();
        let files = HashMap::new();
        let action = Action::Skip {
            reason: "when is false".into(),
        };
        let host = view(&files, ComposeFlavor::Unknown, &redactor);
        let Prepared::Local(done) = action.prepare(&host, "x", 0) else {
            panic!()
        };
        assert_eq!(done.outcome, Outcome::Skipped);
        assert_eq!(action.describe(), "skip (when is false)");
    }

    #[test]
    fn the_kinds_list_names_every_kind_in_registry_order() {
        assert_eq!(
            kinds_list(),
            "`copy`, `template`, `run`, `apt`, `docker_login`, `compose`, `health`, `activate`, `blue_green`, `stack`, `swarm` or `ensure`"
        );
    }
}
