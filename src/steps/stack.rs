//! `stack`: `docker stack deploy` of a compose file on a Docker Swarm manager, then waiting
//! until the engine has converged (or rolled back) every service: its keys, their checks and
//! planning. It runs alone, like `blue_green` (the host session's `stack` runner): a deploy,
//! then one survey per poll round; in a rollback, `docker service rollback` of each service.

use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use super::{Act, Done, Failure, HostView, Kind, ParseCx, PlanCx, Prepared, Templated};
use crate::diagnostic::InputError;
use crate::secrets::Secret;
use crate::transport::ExecOutput;

/// How long the engine gets to converge when the step gives no `timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The most a Docker secret may hold (the engine's limit: 500 KiB).
const SECRET_MAX_BYTES: usize = 500 * 1024;

/// The longest object name the engine accepts for a secret.
const SECRET_NAME_MAX: usize = 64;

/// `stack = { file, name, with_registry_auth, timeout, env, secrets }`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStack {
    file: Templated,
    name: Templated,
    with_registry_auth: Option<bool>,
    timeout: Option<Spanned<String>>,
    env: Option<IndexMap<String, Templated>>,
    secrets: Option<IndexMap<Spanned<String>, Templated>>,
}

/// The step as written, validated.
#[derive(Debug, Clone)]
pub struct Stack {
    file: Templated,
    name: Templated,
    with_registry_auth: bool,
    timeout: Duration,
    env: Vec<(String, Templated)>,
    secrets: Vec<(String, Templated)>,
}

/// How many hex digits of the keyed digest name a secret's version.
const VERSION_DIGITS: usize = 12;

/// One of the step's `secrets`, rendered: a Docker secret named
/// `<stack>_<key>_<version>`, the version a digest of the value keyed with a salt that never
/// leaves the swarm (named on the manager: see `remote::stack`), so a new value is a new
/// secret the services are updated to, and the name tells nothing of the value.
#[derive(Clone)]
pub struct VersionedSecret {
    /// The key in `secrets` (`django_secret_key`).
    pub key: String,
    pub value: Secret,
}

impl VersionedSecret {
    fn new(key: &str, value: String) -> Self {
        VersionedSecret {
            key: key.to_string(),
            value: Secret::new(value),
        }
    }

    /// The name of a version of this secret of the stack `stack`, the version shown as `what`.
    fn name_shape(&self, stack: &str, what: &str) -> String {
        format!("{stack}_{}_{what}", self.key)
    }

    /// The variable that gives the stack file this secret's name: `SECRET_<KEY>_NAME`.
    pub fn name_variable(&self) -> String {
        secret_name_variable(&self.key)
    }
}

fn secret_name_variable(key: &str) -> String {
    format!("SECRET_{}_NAME", key.to_ascii_uppercase())
}

/// The step rendered for one host.
#[derive(Clone)]
pub struct StackDeploy {
    /// The compose file on the manager.
    pub file: String,
    /// The stack's name (`com.docker.stack.namespace`).
    pub name: String,
    pub with_registry_auth: bool,
    /// How long the engine gets to converge.
    pub timeout: Duration,
    /// The environment of `docker stack deploy` (the file's `${VAR}`s), sent on stdin.
    pub env: Vec<(String, Secret)>,
    /// Docker secrets made (when missing) before the deploy, their values sent on stdin.
    pub secrets: Vec<VersionedSecret>,
}

impl std::fmt::Debug for StackDeploy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The environment's values may be secrets: only their names.
        f.debug_struct("StackDeploy")
            .field("file", &self.file)
            .field("name", &self.name)
            .field("with_registry_auth", &self.with_registry_auth)
            .field("timeout", &self.timeout)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field(
                "secrets",
                &self.secrets.iter().map(|s| &s.key).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl StackDeploy {
    /// The deploy script's stdin: each secret's value (exactly its bytes, in order), then one
    /// `KEY=VALUE` line per variable (the script sets the secrets' `SECRET_<KEY>_NAME`s).
    pub fn stdin(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for secret in &self.secrets {
            out.extend_from_slice(secret.value.expose().as_bytes());
        }
        for (key, value) in &self.env {
            out.extend_from_slice(format!("{key}={}\n", value.expose()).as_bytes());
        }
        out
    }
}

/// A stack name `docker stack deploy` accepts: letters, digits, `_`, `.` and `-`, starting
/// with a letter or digit.
pub fn valid_stack_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// A key of `secrets`: lowercase letters, digits and `_`, starting with a letter (it goes
/// into the secret's name and, upper-cased, into a variable's).
fn valid_secret_key(key: &str) -> bool {
    key.starts_with(|c: char| c.is_ascii_lowercase())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// An environment variable's name: letters, digits and `_`, not starting with a digit.
fn valid_env_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Kind for Stack {
    type Raw = RawStack;
    type Action = StackDeploy;

    fn parse(raw: Spanned<RawStack>, cx: &ParseCx<'_>) -> Result<Self, InputError> {
        let file = cx.file;
        let span = raw.span();
        let raw = raw.into_inner();
        let timeout = match &raw.timeout {
            None => DEFAULT_TIMEOUT,
            Some(t) => match humantime::parse_duration(t.get_ref()) {
                Ok(d) if d >= Duration::from_secs(1) => d,
                Ok(_) => {
                    return Err(file
                        .error_at(t.span(), "`timeout` must be at least 1s")
                        .with_hint("write e.g. \"5m\" (the default)"));
                }
                Err(e) => {
                    return Err(file
                        .error_at(t.span(), format!("bad duration `{}`: {e}", t.get_ref()))
                        .with_hint("write e.g. \"5m\" (the default) or \"90s\""));
                }
            },
        };
        let mut env = Vec::new();
        for (key, value) in raw.env.unwrap_or_default() {
            if !valid_env_name(&key) {
                return Err(file
                    .error_at(span.clone(), format!("bad variable name `{key}` in `env`"))
                    .with_hint("letters, digits and `_`, not starting with a digit"));
            }
            env.push((key, value));
        }
        let mut secrets = Vec::new();
        for (spanned_key, value) in raw.secrets.unwrap_or_default() {
            let key_span = spanned_key.span();
            let key = spanned_key.into_inner();
            if !valid_secret_key(&key) {
                return Err(file
                    .error_at(key_span, format!("bad secret name `{key}` in `secrets`"))
                    .with_hint("lowercase letters, digits and `_`, starting with a letter"));
            }
            let variable = secret_name_variable(&key);
            if env.iter().any(|(k, _)| *k == variable) {
                return Err(file
                    .error_at(
                        key_span,
                        format!("`env` sets `{variable}`, which gives the stack file the name of secret `{key}`"),
                    )
                    .with_hint("rename that variable: dropship sets it"));
            }
            secrets.push((key, value));
        }
        Ok(Stack {
            file: raw.file,
            name: raw.name,
            with_registry_auth: raw.with_registry_auth.unwrap_or(true),
            timeout,
            env,
            secrets,
        })
    }

    fn default_name(&self) -> String {
        format!("stack deploy {}", self.name.get_ref())
    }

    fn templated_fields(&self) -> Vec<&Templated> {
        let mut fields = vec![&self.file, &self.name];
        fields.extend(self.env.iter().map(|(_, v)| v));
        fields.extend(self.secrets.iter().map(|(_, v)| v));
        fields
    }

    fn plan(&self, cx: &mut PlanCx<'_>) -> Result<StackDeploy, InputError> {
        let file = cx.field(&self.file)?;
        if !file.starts_with('/') || file.contains('\n') {
            return Err(cx
                .file
                .error_at(
                    self.file.span(),
                    format!("the stack file `{file}` is not an absolute path"),
                )
                .with_hint(
                    "write e.g. \"{{ app_dir }}/stack.yml\" (a file placed by an earlier step)",
                ));
        }
        let name = cx.field(&self.name)?;
        if !valid_stack_name(&name) {
            return Err(cx
                .file
                .error_at(self.name.span(), format!("bad stack name `{name}`"))
                .with_hint("letters, digits, `_`, `.` and `-`, starting with a letter or digit"));
        }
        let mut env = Vec::new();
        for (key, field) in &self.env {
            // Sent on stdin: rendered without being noted for the command line.
            let value = cx.renderer.render_field(field, cx.ctx, cx.file)?;
            if value.contains(['\n', '\r', '\0']) {
                return Err(cx
                    .file
                    .error_at(
                        field.span(),
                        format!("the value of `{key}` holds a line break (the value is not shown)"),
                    )
                    .with_hint("the stack's environment takes one-line values; put multi-line text in a file or a docker secret"));
            }
            env.push((key.clone(), Secret::new(value)));
        }
        let mut secrets = Vec::new();
        for (key, field) in &self.secrets {
            // Sent on stdin: rendered without being noted for the command line.
            let value = cx.renderer.render_field(field, cx.ctx, cx.file)?;
            if value.contains('\0') {
                return Err(cx
                    .file
                    .error_at(
                        field.span(),
                        format!("the secret `{key}` holds a NUL byte (the value is not shown)"),
                    )
                    .with_hint("the manager's shell cannot carry a NUL byte; encode binary values (base64)"));
            }
            if value.is_empty() || value.len() > SECRET_MAX_BYTES {
                return Err(cx
                    .file
                    .error_at(
                        field.span(),
                        format!(
                            "the secret `{key}` holds {} bytes (the value is not shown)",
                            value.len()
                        ),
                    )
                    .with_hint("a Docker secret holds 1 byte to 500 KiB"));
            }
            let secret = VersionedSecret::new(key, value);
            // Longer than the salt config's name (`<stack>_dropship-salt`): it fits too.
            let longest = secret.name_shape(&name, &"0".repeat(VERSION_DIGITS));
            if longest.len() > SECRET_NAME_MAX {
                return Err(cx
                    .file
                    .error_at(
                        self.name.span(),
                        format!(
                            "the secret name `{}` ({} characters) is longer than the {SECRET_NAME_MAX} characters Docker allows",
                            secret.name_shape(&name, "<12 hex digits>"),
                            longest.len()
                        ),
                    )
                    .with_hint("shorten the stack's name or the secret's key"));
            }
            secrets.push(secret);
        }
        Ok(StackDeploy {
            file,
            name,
            with_registry_auth: self.with_registry_auth,
            timeout: self.timeout,
            env,
            secrets,
        })
    }
}

impl Act for StackDeploy {
    fn describe(&self) -> String {
        let mut env: Vec<String> = self.env.iter().map(|(k, _)| k.clone()).collect();
        env.extend(self.secrets.iter().map(VersionedSecret::name_variable));
        let secrets = if self.secrets.is_empty() {
            String::new()
        } else {
            let names: Vec<String> = self
                .secrets
                .iter()
                .map(|s| s.name_shape(&self.name, "<version>"))
                .collect();
            format!(
                "docker secret create (when missing, value on stdin; <version>: a digest of the value keyed with the stack's salt config {}) {}; then ",
                crate::remote::stack::salt_config(&self.name),
                names.join(", ")
            )
        };
        format!(
            "{secrets}docker stack deploy -c {}{} {} (environment on stdin: {}), then wait up to {} for every service to converge{}; rollback: docker service rollback of each",
            self.file,
            if self.with_registry_auth {
                " --with-registry-auth"
            } else {
                ""
            },
            self.name,
            if env.is_empty() {
                "none".to_string()
            } else {
                env.join(", ")
            },
            humantime::format_duration(self.timeout),
            if self.secrets.is_empty() {
                ""
            } else {
                ", then remove this stack's older secret versions no service uses"
            }
        )
    }

    fn prepare(&self, _host: &HostView<'_>, _label: &str, _tag: usize) -> Prepared {
        unreachable!("stack steps run alone (the session's stack runner)")
    }

    fn judge(&self, _host: &HostView<'_>, _out: &ExecOutput) -> Result<Done, Failure> {
        unreachable!("stack steps run alone (the session's stack runner)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_and_variable_names_docker_would_refuse_are_bad() {
        assert!(valid_stack_name("pixel"));
        assert!(valid_stack_name("pixel-prod_2.a"));
        for bad in ["", "-x", ".x", "a b", "a/b", "$(x)", "a\nb"] {
            assert!(!valid_stack_name(bad), "{bad:?}");
        }
        assert!(valid_env_name("DB_PASSWORD") && valid_env_name("_x1"));
        assert!(valid_secret_key("django_secret_key") && valid_secret_key("k8"));
        for bad in ["", "_x", "8k", "Key", "a-b", "a.b", "a b"] {
            assert!(!valid_secret_key(bad), "{bad:?}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B"] {
            assert!(!valid_env_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_secret_version_is_named_by_stack_and_key_its_variable_by_key() {
        let secret = VersionedSecret::new("django_secret_key", "one".into());
        assert_eq!(
            secret.name_shape("pixel", "<version>"),
            "pixel_django_secret_key_<version>"
        );
        assert_eq!(secret.name_variable(), "SECRET_DJANGO_SECRET_KEY_NAME");
    }

    #[test]
    fn the_environment_goes_on_stdin_one_line_each_and_never_in_debug() {
        let step = StackDeploy {
            file: "/srv/stack.yml".into(),
            name: "pixel".into(),
            with_registry_auth: true,
            timeout: DEFAULT_TIMEOUT,
            env: vec![
                ("A".into(), Secret::new("s3cr3t $(x)")),
                ("B".into(), Secret::new("")),
            ],
            secrets: vec![VersionedSecret::new("key", "multi\nline s3cr3t".into())],
        };
        assert_eq!(
            step.stdin(),
            b"multi\nline s3cr3tA=s3cr3t $(x)\nB=\n".as_slice()
        );
        assert!(!format!("{step:?}").contains("s3cr3t"));
        assert!(!step.describe().contains("s3cr3t"));
        assert!(step.describe().contains("pixel_key_<version>"));
        assert!(step.describe().contains("SECRET_KEY_NAME"));
    }
}
