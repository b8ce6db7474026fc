//! The playbook: app, targeted hosts, vars, secret sources and steps, parsed and validated.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use crate::diagnostic::{InputError, SourceFile};
use crate::paths::playbook_bases;
use crate::rollout::{Amount, OnFailure, Policy};
use crate::secrets::{SecretSource, VaultSettings};
use crate::vars::{self, RawVars, Vars};

mod reuse;
mod step;

use crate::steps::RawStep;
pub use crate::steps::apt::{AptState, valid_package_name};
pub use crate::steps::compose::ComposeCommand;
pub use crate::steps::{StepKind, Templated, valid_user_name};
pub use reuse::Loop;
use step::convert_step;
pub use step::{BecomeSpec, Step};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlaybook {
    name: String,
    app: Spanned<String>,
    #[serde(default)]
    hosts: Option<Spanned<HostsField>>,
    #[serde(default)]
    vars: RawVars,
    #[serde(default)]
    secrets: IndexMap<Spanned<String>, Spanned<SecretSource>>,
    secrets_vault: Option<Spanned<VaultSettings>>,
    rollout: Option<Spanned<RawRollout>>,
    release: Option<Spanned<RawRelease>>,
    swarm: Option<Spanned<RawSwarm>>,
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

/// `[swarm]`: the app runs on a Docker Swarm, deployed through one of its managers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSwarm {
    managers: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRollout {
    canary: Option<usize>,
    batch: Option<Spanned<CountOrPercent>>,
    pause: Option<Spanned<String>>,
    max_failures: Option<Spanned<CountOrPercent>>,
    on_failure: Option<OnFailure>,
    first: Option<Spanned<FirstField>>,
}

/// `first = "db"` or `first = ["db", "cache-*"]`: each item keeps its own place in the file.
#[derive(Debug)]
enum FirstField {
    One(String),
    Many(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for FirstField {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = FirstField;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a group, host name or glob, or a list of them")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FirstField, E> {
                Ok(FirstField::One(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<FirstField, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(FirstField::Many(items))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
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
    prune_images: Option<bool>,
}

/// `[release]` as written: `root` is rendered per host.
#[derive(Debug, Clone)]
pub struct ReleaseConfig {
    pub root: Templated,
    pub keep: usize,
    /// Remove the images no kept release uses after a successful deploy (the default).
    pub prune_images: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum HostsField {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Playbook {
    pub file: SourceFile,
    pub name: String,
    pub app: String,
    /// Host patterns (names, groups, globs, `all`), as accepted by `Inventory::select`.
    pub hosts: String,
    pub hosts_span: Option<std::ops::Range<usize>>,
    /// `[swarm]`: `hosts` are the swarm's managers (`[swarm] managers`), of which a deploy or
    /// rollback uses the first reachable active one and leaves the others alone.
    pub swarm: bool,
    /// `[vars]` as written (rendered per host, see `crate::vars`).
    pub vars: Vars,
    pub secrets: IndexMap<Spanned<String>, Spanned<SecretSource>>,
    /// `[secrets_vault]`: where `{ vault = "NAME" }` secrets are read from.
    pub secrets_vault: Option<Spanned<VaultSettings>>,
    pub steps: Vec<Step>,
    pub rollout: Policy,
    /// `[rollout] first`: host patterns deployed, one after the other, before all other hosts.
    pub first: Vec<Spanned<String>>,
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
        let first = match raw
            .rollout
            .as_ref()
            .and_then(|r| r.get_ref().first.as_ref())
        {
            Some(f) => convert_first(&file, f)?,
            None => Vec::new(),
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
                Some(ReleaseConfig {
                    root: r.root,
                    keep,
                    prune_images: r.prune_images.unwrap_or(true),
                })
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
        let (hosts, hosts_span) = match (&raw.hosts, &raw.swarm) {
            (Some(h), Some(_)) => {
                return Err(file
                    .error_at(h.span(), "`hosts` and `[swarm] managers` both say where to deploy")
                    .with_hint("leave `hosts` out: a swarm playbook deploys through the first reachable active manager of `[swarm] managers`"));
            }
            (None, Some(swarm)) => {
                let managers = &swarm.get_ref().managers;
                if managers
                    .get_ref()
                    .split(',')
                    .all(|item| item.trim().is_empty())
                {
                    return Err(file
                        .error_at(managers.span(), "`managers` names no host")
                        .with_hint("write the inventory group of the swarm's managers, e.g. managers = \"managers\" (tried in inventory order)"));
                }
                (managers.get_ref().clone(), Some(managers.span()))
            }
            (None, None) => ("all".to_string(), None),
            (Some(h), None) => {
                let text = match h.get_ref() {
                    HostsField::One(s) => s.clone(),
                    HostsField::Many(list) => list.join(","),
                };
                if text.split(',').all(|item| item.trim().is_empty()) {
                    return Err(file
                        .error_at(h.span(), "`hosts` names no host")
                        .with_hint("write a group, a host name, a glob or a list of them; leave `hosts` out (or write \"all\") to target every host"));
                }
                (text, Some(h.span()))
            }
        };
        let base_refs: Vec<&Path> = bases.iter().map(PathBuf::as_path).collect();
        let default_password = raw.become_defaults.and_then(|b| b.into_inner().password);
        let shared_file = Arc::new(file.clone());
        let mut steps = Vec::new();
        for (index, raw_step) in raw.steps.into_iter().enumerate() {
            steps.push(convert_step(
                &shared_file,
                &base_refs,
                index,
                raw_step,
                default_password.as_ref(),
                release.is_some(),
            )?);
        }
        Ok(Self {
            name: raw.name,
            app: app.clone(),
            hosts,
            hosts_span,
            swarm: raw.swarm.is_some(),
            vars: vars::from_raw(raw.vars, &shared_file),
            secrets: raw.secrets,
            secrets_vault: raw.secrets_vault,
            steps,
            rollout,
            first,
            release,
            bases,
            file,
        })
    }
}

/// `first`'s items, each a host pattern that names something: empty items are bad input.
fn convert_first(
    file: &SourceFile,
    raw: &Spanned<FirstField>,
) -> Result<Vec<Spanned<String>>, InputError> {
    let items = match raw.get_ref() {
        FirstField::One(text) => vec![Spanned::new(raw.span(), text.clone())],
        FirstField::Many(items) => items.clone(),
    };
    let hint = "write a group, a host name or a glob (`db`, `db-*`), or a list of them deployed in that order: first = [\"db\", \"cache\"]";
    if items.is_empty() {
        return Err(file
            .error_at(raw.span(), "`first` names no host")
            .with_hint(hint));
    }
    for item in &items {
        let text = item.get_ref().trim();
        if text.is_empty() || text.contains(',') || text.starts_with('!') {
            return Err(file
                .error_at(
                    item.span(),
                    format!("`{}` is not one group, host name or glob", item.get_ref()),
                )
                .with_hint(hint));
        }
    }
    Ok(items)
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
                    file.error_at(v.span(), e.to_string()).with_hint(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::files::parse_mode;

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
        let StepKind::Run(run) = &pb.steps[2].kind else {
            panic!()
        };
        assert_eq!(run.creates.as_ref().unwrap().get_ref(), "/etc/x");
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
    fn hosts_naming_no_host_is_an_error() {
        for hosts in ["[]", "\"\"", "\" , \"", "[\"\", \" \"]"] {
            let err = parse(&format!("name = \"t\"\napp = \"a\"\nhosts = {hosts}\n")).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("/nonexistent/pb.toml:3:9: `hosts` names no host"),
                "{hosts}: {err}"
            );
        }
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
