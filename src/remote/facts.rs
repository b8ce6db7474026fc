//! `dropship ping`: the docker engine's version, how compose is invoked on a host (as a deploy
//! would find it) and the version of each compose flavour the host has, in one script.
//! May import: `remote::{script, frame, compose}`.

use super::compose::{self, ComposeFlavor, ComposeTool};
use super::frame::{self, Framed, Kind, Reply};
use crate::sh;

/// The script asking a host for its facts: the compose detection of a deploy (with the
/// inventory's `forced` flavour), then `facts:docker`, `facts:plugin` and `facts:standalone`
/// frames, each followed by that version (nothing when it is missing).
pub fn request(forced: Option<ComposeTool>) -> Framed {
    let report = |what: &str| frame::report(Kind::Facts, &what.to_string());
    Framed::new(&sh!(
        "{}
{}; docker version --format '{{{{.Server.Version}}}}' 2>/dev/null
{}; docker compose version --short 2>/dev/null
{}; ! command -v docker-compose >/dev/null 2>&1 || docker-compose version --short 2>/dev/null
true",
        compose::detect(forced),
        report("docker"),
        report("plugin"),
        report("standalone"),
    ))
}

/// What `request` found on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub docker: Option<String>,
    /// How compose is invoked there (`None`: the reply had no detection).
    pub flavor: Option<ComposeFlavor>,
    pub plugin: Option<String>,
    pub standalone: Option<String>,
}

impl Facts {
    pub fn parse(reply: &Reply) -> Self {
        let version = |name: &str| {
            reply.sections.iter().find_map(|(f, data)| {
                (f.of(Kind::Facts)? == name)
                    .then(|| version(data))
                    .flatten()
            })
        };
        Facts {
            docker: version("docker"),
            flavor: compose::flavor(reply.sections.iter().map(|(f, _)| f)),
            plugin: version("plugin"),
            standalone: version("standalone"),
        }
    }

    /// One line such as `docker 28.2.2, compose plugin 2.30.0; also standalone 1.29.2`
    /// (`forced`: the inventory chose the flavour), or why compose does not work there.
    pub fn summarize(&self, forced: bool) -> Result<String, ComposeFlavor> {
        let docker = self.docker.as_deref().unwrap_or("none");
        let (used, other) = match self.flavor {
            Some(ComposeFlavor::Plugin) => (ComposeTool::Plugin, ComposeTool::Standalone),
            Some(ComposeFlavor::Standalone) => (ComposeTool::Standalone, ComposeTool::Plugin),
            Some(flavor @ ComposeFlavor::Unusable { .. }) => return Err(flavor),
            _ => return Ok(format!("docker {docker}, compose none")),
        };
        let version_of = |tool| match tool {
            ComposeTool::Plugin => self.plugin.as_deref(),
            ComposeTool::Standalone => self.standalone.as_deref(),
        };
        let mut line = format!(
            "docker {docker}, compose {} {}",
            used.setting(),
            version_of(used).unwrap_or("(version unknown)")
        );
        if forced {
            line.push_str(" (set in the inventory)");
        }
        if let Some(v) = version_of(other) {
            line.push_str(&format!("; also {} {v}", other.setting()));
        }
        Ok(line)
    }
}

/// A version as a tool printed it: its first line, without a leading `v`; `None` when empty
/// or not a plain version (host output is not trusted to be one).
fn version(printed: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(printed);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line = line.strip_prefix('v').unwrap_or(line);
    let plain = line.len() <= 64
        && line
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+-_~".contains(c));
    plain.then(|| line.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts_in_sh(script_before: &str, forced: Option<ComposeTool>) -> Facts {
        let request = request(forced);
        let out = crate::remote::run_in_sh(&format!("{script_before}\n{}", request.script()), b"");
        assert_eq!(out.status, Some(0), "{out:?}");
        Facts::parse(&request.reply(&out.stdout))
    }

    #[test]
    fn versions_are_plain_or_nothing() {
        assert_eq!(version(b"v2.40.3\n").as_deref(), Some("2.40.3"));
        assert_eq!(version(b"\n1.29.2\nmore\n").as_deref(), Some("1.29.2"));
        assert_eq!(
            version(b"20.10.24+dfsg1\n").as_deref(),
            Some("20.10.24+dfsg1")
        );
        assert_eq!(version(b""), None);
        assert_eq!(version(b"\x1b[31mred\n"), None);
        assert_eq!(version(b"docker-compose version 1.29.2, build x"), None);
    }

    #[test]
    fn facts_are_summarized_per_flavour() {
        let facts = Facts {
            docker: Some("20.10.24".into()),
            flavor: Some(ComposeFlavor::Plugin),
            plugin: Some("2.40.3".into()),
            standalone: Some("1.29.2".into()),
        };
        assert_eq!(
            facts.summarize(false).unwrap(),
            "docker 20.10.24, compose plugin 2.40.3; also standalone 1.29.2"
        );
        let facts = Facts {
            flavor: Some(ComposeFlavor::Standalone),
            ..facts
        };
        assert_eq!(
            facts.summarize(true).unwrap(),
            "docker 20.10.24, compose standalone 1.29.2 (set in the inventory); also plugin 2.40.3"
        );
        let none = Facts {
            docker: None,
            flavor: Some(ComposeFlavor::Missing),
            plugin: None,
            standalone: None,
        };
        assert_eq!(none.summarize(false).unwrap(), "docker none, compose none");
        let unusable = ComposeFlavor::Unusable {
            wanted: ComposeTool::Plugin,
            other: true,
        };
        let facts = Facts {
            flavor: Some(unusable),
            ..none
        };
        assert_eq!(facts.summarize(true), Err(unusable));
    }

    /// Stand-ins for `docker` (answering `version` and `compose version`) and
    /// `docker-compose`, in a directory of their own that is the whole PATH.
    fn tools(dir: &std::path::Path, plugin: bool, standalone: bool) -> String {
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let write = |name: &str, text: &str| {
            let path = bin.join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        };
        let compose = if plugin {
            "echo v2.40.3"
        } else {
            "echo 'unknown command: docker compose' >&2; exit 1"
        };
        write(
            "docker",
            &format!(
                "#!/bin/sh\ncase $1 in version) echo 20.10.24 ;; compose) {compose} ;; *) exit 1 ;; esac\n"
            ),
        );
        if standalone {
            write("docker-compose", "#!/bin/sh\necho 1.29.2\n");
        }
        // The plugin where the docker CLI looks for it ($DOCKER_CONFIG/cli-plugins), found
        // before anything else.
        let config = dir.join("docker-config");
        std::fs::create_dir_all(config.join("cli-plugins")).unwrap();
        if plugin {
            std::fs::copy(
                bin.join("docker"),
                config.join("cli-plugins/docker-compose"),
            )
            .unwrap();
        }
        format!(
            "PATH={}; DOCKER_CONFIG={}; export PATH DOCKER_CONFIG",
            bin.display(),
            config.display()
        )
    }

    #[test]
    fn one_script_finds_the_flavour_and_every_version() {
        let dir = tempfile::tempdir().unwrap();
        let env = tools(dir.path(), true, true);
        let facts = facts_in_sh(&env, None);
        assert_eq!(
            facts,
            Facts {
                docker: Some("20.10.24".into()),
                flavor: Some(ComposeFlavor::Plugin),
                plugin: Some("2.40.3".into()),
                standalone: Some("1.29.2".into()),
            }
        );
        let forced = facts_in_sh(&env, Some(ComposeTool::Standalone));
        assert_eq!(forced.flavor, Some(ComposeFlavor::Standalone));
        assert_eq!(
            forced.summarize(true).unwrap(),
            "docker 20.10.24, compose standalone 1.29.2 (set in the inventory); also plugin 2.40.3"
        );

        // Only the plugin: forcing the standalone tool is a problem that names the plugin.
        let dir = tempfile::tempdir().unwrap();
        let env = tools(dir.path(), true, false);
        let facts = facts_in_sh(&env, Some(ComposeTool::Standalone));
        assert_eq!(
            facts.flavor,
            Some(ComposeFlavor::Unusable {
                wanted: ComposeTool::Standalone,
                other: true
            })
        );
        assert_eq!(facts.standalone, None);
    }
}
