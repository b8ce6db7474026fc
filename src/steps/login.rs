//! `docker_login`: a registry login, the password on the segment's stdin, never on a command
//! line.

use serde::Deserialize;
use toml::Spanned;

use super::{
    Act, Done, Failure, HostView, Kind, ParseCx, PlanCx, Prepared, Templated, require_success,
};
use crate::diagnostic::InputError;
use crate::remote::login;
use crate::report::Outcome;
use crate::secrets::Secret;
use crate::transport::ExecOutput;

/// `docker_login = { registry, username, password }`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub registry: Templated,
    pub username: Templated,
    pub password: Templated,
}

/// A login rendered for one host.
#[derive(Debug, Clone)]
pub struct DockerLogin {
    pub registry: String,
    pub username: String,
    pub password: Secret,
}

impl Kind for Login {
    type Raw = Login;
    type Action = DockerLogin;

    fn parse(raw: Spanned<Login>, _cx: &ParseCx<'_>) -> Result<Self, InputError> {
        Ok(raw.into_inner())
    }

    fn default_name(&self) -> String {
        format!("docker login {}", self.registry.get_ref())
    }

    fn templated_fields(&self) -> Vec<&Templated> {
        vec![&self.registry, &self.username, &self.password]
    }

    fn plan(&self, cx: &mut PlanCx<'_>) -> Result<DockerLogin, InputError> {
        // Sent on stdin: rendered without being noted for the command line.
        let label = format!("the docker_login password of step `{}`", cx.name);
        let password = cx.password(&self.password, label)?;
        Ok(DockerLogin {
            registry: cx.field(&self.registry)?,
            username: cx.field(&self.username)?,
            password,
        })
    }
}

impl Act for DockerLogin {
    fn describe(&self) -> String {
        format!(
            "docker login {} as {} (password on stdin)",
            self.registry, self.username
        )
    }

    fn prepare(&self, _host: &HostView<'_>, label: &str, _tag: usize) -> Prepared {
        Prepared::Remote(crate::remote::driver::Segment {
            label: label.to_string(),
            ..login::docker(&self.registry, &self.username, self.password.expose())
        })
    }

    fn judge(&self, host: &HostView<'_>, out: &ExecOutput) -> Result<Done, Failure> {
        require_success(out, host.redactor)?;
        Ok(Done::new(
            Outcome::Ok,
            Some(format!("logged in to {}", self.registry)),
        ))
    }
}
