//! A dry run's look at which services a compose `up` would create, recreate or leave alone: the
//! read-only script that lists the project's containers with their
//! `com.docker.compose.config-hash` label and asks compose for the hash of each service of the
//! new compose file (given on stdin, never on argv or in a temp file), its parser, and the
//! verdict per service. Writes nothing on the host.
//! May import: `remote::{script, frame, vars, compose}`, `steps::compose::valid_service`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::compose::{self, ComposeTool};
use super::frame::{self, Kind, Reply};
use super::script::Script;
use super::vars;
use crate::sh;
use crate::steps::compose::valid_service;

const CONTAINERS: &str = "compose:containers";
const HASHES: &str = "compose:hashes";
const NO_DIR: &str = "compose:nodir";
const END: &str = "compose:end";

/// The container labels `docker ps` prints, one container a line.
const PS_FORMAT: &str = "{{.Label \"com.docker.compose.service\"}}|{{.Label \"com.docker.compose.config-hash\"}}|{{.Label \"com.docker.compose.oneoff\"}}";

/// docker-compose 1.x reads a `-f -` file twice (`config --hash` loads the project twice), so
/// a pipe would be empty the second time: this runs its own entry point with a stdin that
/// starts over once read to the end. Code only; the file arrives on stdin.
const V1_STDIN_SHIM: &str = "import io, sys
data = sys.stdin.read()
class Rewinding(io.StringIO):
    def read(self, *args):
        out = io.StringIO.read(self, *args)
        if not out:
            self.seek(0)
        return out
sys.stdin = Rewinding(data)
sys.argv[0] = 'docker-compose'
from compose.cli.main import main
main()
";

/// How the look finds the project's compose file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The new file, on the script's stdin (`-f -`).
    Stdin,
    /// The one in the project's directory (the run places none).
    OnHost,
}

/// Detects the flavour, lists the containers of `project` (`preview:compose:containers`), then
/// in `dir` (`preview:compose:nodir` when it does not exist) prints compose's
/// `config --hash '*'` (`preview:compose:hashes`, errors included); `preview:compose:end`
/// last. `as_written`: relative paths resolve against `dir` as written (`ProjectPaths`).
/// It needs `$dsn`.
pub fn look(
    forced: Option<ComposeTool>,
    dir: &str,
    project: &str,
    source: Source,
    as_written: bool,
) -> Script {
    let report = |fields: &str| frame::report(Kind::Preview, &fields);
    let mut options = sh!("-p {}", project);
    if source == Source::Stdin {
        options.push(&sh!(" -f -"));
    }
    if as_written {
        options.push(&sh!(" --project-directory \"$PWD\""));
    }
    let stdin = match source {
        Source::Stdin => Script::default(),
        Source::OnHost => sh!(" </dev/null"),
    };
    // v2 (up to 2.40 at least) hashes an env_file service without its env_file's values for
    // `config --hash` but with them for the label (docker/compose#14001): `config` resolves
    // them into `environment` first, and its output (in a pipe only) is hashed.
    let plugin = sh!(
        "docker compose {} config{} | docker compose -p {} -f - config --hash '*'",
        options,
        stdin,
        project
    );
    let standalone = match source {
        Source::OnHost => sh!("docker-compose {} config --hash '*'{}", options, stdin),
        Source::Stdin => sh!(
            "dscp=$(command -v docker-compose) && IFS= read -r dscl < \"$dscp\" && case $dscl in \
             '#!'*python*) ${{dscl#??}} -c {} {} config --hash '*' ;; \
             *) echo 'this docker-compose is not a python script: it cannot read a compose file from stdin' ;; esac",
            V1_STDIN_SHIM,
            options
        ),
    };
    sh!(
        "{}
{}; docker ps -a --filter {} --format {} </dev/null 2>&1
if cd -- {} 2>/dev/null; then {}; {{ case {} in plugin) {} ;; standalone) {} ;; esac; }} 2>&1; else {}; fi
{}
",
        compose::detect(forced),
        report(CONTAINERS),
        format!("label=com.docker.compose.project={project}"),
        PS_FORMAT,
        dir,
        report(HASHES),
        vars::COMPOSE_FLAVOR.bare(),
        plugin,
        standalone,
        report(NO_DIR),
        report(END)
    )
}

/// What `look` found. Names are checked (`valid_service`), hashes are 64 hex digits: anything
/// else a host printed is error text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Looked {
    /// Each service's containers' config hashes (one-off `run` containers left out).
    pub running: BTreeMap<String, Vec<String>>,
    /// Each service's hash of the new configuration; `None`: compose gave none.
    pub hashes: Option<BTreeMap<String, String>>,
    /// The project's directory is not on the host.
    pub no_dir: bool,
    /// What compose or docker printed that is not an answer (at most 3 lines).
    pub error: Option<String>,
}

/// Parses `look`'s reply; `None` when the script did not finish.
pub fn parse_look(reply: &Reply) -> Option<Looked> {
    let section = |name: &str| {
        reply
            .sections
            .iter()
            .find_map(|(f, data)| (f.of(Kind::Preview) == Some(name)).then_some(&data[..]))
    };
    section(END)?;
    let mut looked = Looked::default();
    let mut errors: Vec<String> = Vec::new();
    for line in String::from_utf8_lossy(section(CONTAINERS)?).lines() {
        let mut fields = line.split('|');
        match (fields.next(), fields.next(), fields.next(), fields.next()) {
            (Some(service), Some(hash), Some(oneoff), None) if valid_service(service) => {
                if oneoff != "True" {
                    looked
                        .running
                        .entry(service.to_string())
                        .or_default()
                        .push(hash.to_string());
                }
            }
            _ if line.trim().is_empty() => {}
            _ => errors.push(line.to_string()),
        }
    }
    looked.no_dir = section(NO_DIR).is_some();
    if let Some(printed) = section(HASHES) {
        let mut hashes = BTreeMap::new();
        for line in String::from_utf8_lossy(printed).lines() {
            match line.split_once(' ') {
                Some((service, hash)) if valid_service(service) && is_hash(hash) => {
                    hashes.insert(service.to_string(), hash.to_string());
                }
                _ if line.trim().is_empty() => {}
                _ => errors.push(line.to_string()),
            }
        }
        if !hashes.is_empty() {
            looked.hashes = Some(hashes);
        }
    }
    if !errors.is_empty() {
        errors.truncate(3);
        looked.error = Some(errors.join("\n"));
    }
    Some(looked)
}

fn is_hash(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A service as the compose file declares it, read line by line (no YAML library: only the
/// service names, their `env_file`s and whether their block interpolates `$…` are needed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declared {
    pub name: String,
    /// As written (relative to the project's directory, or absolute).
    pub env_files: Vec<String>,
    /// Its block holds a `$`: a value of the project's `.env` may be part of it.
    pub interpolates: bool,
}

/// The services of a compose file in their order: the keys one level below a top-level
/// `services:`; with each, its `env_file` (a string, a `[…]` list, `- x` items or
/// `- path: x` items).
pub fn declared_services(text: &str) -> Vec<Declared> {
    let mut services: Vec<Declared> = Vec::new();
    let mut in_services = false;
    let mut service_indent: Option<usize> = None;
    let mut key_indent: Option<usize> = None;
    let mut in_env_file = false;
    for raw in text.lines() {
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = raw.len() - trimmed.len();
        let line = trimmed.trim_end();
        if indent == 0 {
            in_services = line == "services:";
            service_indent = None;
            continue;
        }
        if !in_services {
            continue;
        }
        let level = *service_indent.get_or_insert(indent);
        if indent < level {
            continue;
        }
        if indent == level {
            in_env_file = false;
            key_indent = None;
            if let Some(name) = line.strip_suffix(':').map(unquote)
                && valid_service(name)
            {
                services.push(Declared {
                    name: name.to_string(),
                    ..Declared::default()
                });
            }
            continue;
        }
        let Some(service) = services.last_mut() else {
            continue;
        };
        service.interpolates |= line.contains('$');
        let keys = *key_indent.get_or_insert(indent);
        if indent == keys {
            in_env_file = false;
            if let Some(value) = line.strip_prefix("env_file:") {
                let value = value.trim();
                if let Some(list) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
                    service.env_files.extend(
                        list.split(',')
                            .map(|v| unquote(v.trim()).to_string())
                            .filter(|v| !v.is_empty()),
                    );
                } else if value.is_empty() {
                    in_env_file = true;
                } else {
                    service.env_files.push(unquote(value).to_string());
                }
            }
        } else if in_env_file && let Some(item) = line.strip_prefix('-') {
            let item = item.trim();
            let item = item.strip_prefix("path:").map_or(item, str::trim);
            service.env_files.push(unquote(item).to_string());
        } else if in_env_file && let Some(path) = line.strip_prefix("path:") {
            // `path:` on its own line of a `- required: …` item.
            service.env_files.push(unquote(path.trim()).to_string());
        }
    }
    services
}

fn unquote(text: &str) -> &str {
    let text = text.trim();
    for q in ['"', '\''] {
        if let Some(inner) = text.strip_prefix(q).and_then(|t| t.strip_suffix(q)) {
            return inner;
        }
    }
    text
}

/// What `up` would do to one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServicePreview {
    pub service: String,
    /// `created`, `recreated`, `unchanged`, `removed` (an orphan, `--remove-orphans`) or
    /// `unknown` (compose gave no hash for it).
    pub would_be: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// The verdict per service: the new file's services (`declared`, else the ones compose
/// hashed) against the running containers, in the file's order, then the orphans.
/// `changed_env`: the env files of the project that would change, as written in the compose
/// file (`.env`: the project's own).
pub fn verdicts(
    looked: &Looked,
    declared: &[Declared],
    changed_env: &[String],
) -> Vec<ServicePreview> {
    let mut names: Vec<&str> = declared.iter().map(|d| d.name.as_str()).collect();
    for name in looked.hashes.iter().flat_map(|h| h.keys()) {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    let env_change = |service: &str| -> Option<String> {
        let declared = declared.iter().find(|d| d.name == service)?;
        let mut read: Vec<&str> = declared
            .env_files
            .iter()
            .filter(|f| changed_env.contains(f))
            .map(String::as_str)
            .collect();
        if declared.interpolates
            && changed_env.iter().any(|f| f == ".env")
            && !read.contains(&".env")
        {
            read.push(".env");
        }
        (!read.is_empty()).then(|| format!("it reads {}, which would change", read.join(", ")))
    };
    let mut out: Vec<ServicePreview> = names
        .iter()
        .map(|&name| {
            let verdict = |would_be, why: Option<String>| ServicePreview {
                service: name.to_string(),
                would_be,
                why,
            };
            let Some(running) = looked.running.get(name) else {
                return verdict("created", Some("no container".into()));
            };
            if let Some(why) = env_change(name) {
                return verdict("recreated", Some(why));
            }
            let Some(new) = looked.hashes.as_ref().and_then(|h| h.get(name)) else {
                return verdict("unknown", Some("compose gave no configuration hash".into()));
            };
            if running.iter().all(|old| old == new) {
                verdict(
                    "unchanged",
                    Some("a newer image after pull would still recreate it".into()),
                )
            } else {
                verdict("recreated", Some("its configuration changed".into()))
            }
        })
        .collect();
    if looked.hashes.is_some() || !declared.is_empty() {
        for orphan in looked
            .running
            .keys()
            .filter(|s| !names.contains(&s.as_str()))
        {
            out.push(ServicePreview {
                service: orphan.clone(),
                would_be: "removed",
                why: Some("not in the compose file (--remove-orphans)".into()),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::frame::Framed;

    const HASH_A: &str = "7c88f21d251b0599173800900c889b6149f6d4335a4bf08be054aaf6cdea293a";
    const HASH_B: &str = "0a3be0d57aeb32ffdcf462e049891a29586fa293980a72a8ea86c641de6f4115";

    #[test]
    fn services_env_files_and_interpolation_are_read_from_the_file() {
        let text = "version: '3'\nservices:\n  # a comment\n  web:\n    image: nginx:${TAG}\n    env_file: .env\n    environment:\n      A: b\n  \"db\":\n    image: postgres\n    env_file:\n      - db.env\n      - path: ./extra.env\n        required: false\n  app:\n    image: app\n    env_file: [\"a.env\", 'b.env']\nvolumes:\n  data:\n";
        let found = declared_services(text);
        let names: Vec<&str> = found.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["web", "db", "app"]);
        assert_eq!(found[0].env_files, [".env"]);
        assert!(found[0].interpolates && !found[1].interpolates);
        assert_eq!(found[1].env_files, ["db.env", "./extra.env"]);
        assert_eq!(found[2].env_files, ["a.env", "b.env"]);
        assert!(declared_services("volumes:\n  web:\n").is_empty());
    }

    fn looked(running: &[(&str, &str)], hashes: &[(&str, &str)]) -> Looked {
        let mut looked = Looked::default();
        for (s, h) in running {
            looked
                .running
                .entry(s.to_string())
                .or_default()
                .push(h.to_string());
        }
        looked.hashes = Some(
            hashes
                .iter()
                .map(|(s, h)| (s.to_string(), h.to_string()))
                .collect(),
        );
        looked
    }

    fn would_be(previews: &[ServicePreview]) -> Vec<(&str, &str)> {
        previews
            .iter()
            .map(|p| (p.service.as_str(), p.would_be))
            .collect()
    }

    #[test]
    fn each_service_is_created_recreated_unchanged_or_removed() {
        let declared = declared_services(
            "services:\n  a:\n    image: x\n  b:\n    image: y\n  c:\n    image: z\n",
        );
        let looked = looked(
            &[("a", HASH_A), ("b", HASH_A), ("old", HASH_B)],
            &[("a", HASH_A), ("b", HASH_B), ("c", HASH_A)],
        );
        assert_eq!(
            would_be(&verdicts(&looked, &declared, &[])),
            [
                ("a", "unchanged"),
                ("b", "recreated"),
                ("c", "created"),
                ("old", "removed")
            ]
        );
    }

    #[test]
    fn a_service_whose_env_file_changes_would_be_recreated_whatever_its_hash() {
        let declared = declared_services(
            "services:\n  a:\n    env_file: app.env\n  b:\n    image: y:${V}\n  c:\n    image: z\n",
        );
        let looked = looked(
            &[("a", HASH_A), ("b", HASH_A), ("c", HASH_A)],
            &[("a", HASH_A), ("b", HASH_A), ("c", HASH_A)],
        );
        let changed = ["app.env".to_string(), ".env".to_string()];
        let out = verdicts(&looked, &declared, &changed);
        assert_eq!(
            would_be(&out),
            [("a", "recreated"), ("b", "recreated"), ("c", "unchanged")]
        );
        assert_eq!(
            out[0].why.as_deref(),
            Some("it reads app.env, which would change")
        );
        assert_eq!(
            out[1].why.as_deref(),
            Some("it reads .env, which would change")
        );
    }

    #[test]
    fn hostile_host_output_is_error_text_never_a_service() {
        let text: String = [
            ("compose:plugin", String::new()),
            (
                "preview:compose:containers",
                format!("web|{HASH_A}|False\n$(rm -rf /)|{HASH_A}|False\nrun|{HASH_B}|True"),
            ),
            (
                "preview:compose:hashes",
                format!("web {HASH_B}\n\x1b[31mno such file"),
            ),
            ("preview:compose:end", String::new()),
        ]
        .iter()
        .map(|(frame, data)| format!("\n@@dropship:n:{frame}@@\n{data}"))
        .collect();
        let reply = Reply::parse(text.as_bytes(), "n");
        let looked = parse_look(&reply).unwrap();
        assert_eq!(looked.running.keys().collect::<Vec<_>>(), ["web"]);
        assert_eq!(looked.hashes.unwrap()["web"], HASH_B);
        assert!(looked.error.unwrap().contains("$(rm -rf /)"));
        let script = look(None, "/srv/app", "app", Source::OnHost, false);
        assert_eq!(parse_look(&Framed::new(&script).reply(b"")), None);
    }

    #[test]
    fn the_script_reads_the_file_from_stdin_and_runs_in_the_project_dir_with_a_stand_in_docker() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        let work = dir.path().join("it's $(here)");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        // A docker that answers `ps` with one container and `compose … config --hash` with
        // the hash of what it read on stdin, saying where it ran.
        std::fs::write(
            bin.join("docker"),
            format!("#!/bin/sh\ncase \"$1\" in\n version) exit 1 ;;\n ps) echo 'web|{HASH_A}|False' ;;\n compose) [ \"$2\" = version ] && exit 0; case \"$*\" in *--hash*) printf 'web %s\\n' \"$(sha256sum | cut -c1-64)\" ;; *) pwd >&2; cat ;; esac ;;\nesac\n"),
        )
        .unwrap();
        std::fs::set_permissions(
            bin.join("docker"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let script = look(
            Some(ComposeTool::Plugin),
            work.to_str().unwrap(),
            "app",
            Source::Stdin,
            true,
        );
        let request = Framed::new(&script);
        let script = format!("PATH={}:$PATH; {}", bin.display(), request.script());
        let out = crate::remote::run_in_sh(&script, b"services: {}\n");
        let looked = parse_look(&request.reply(&out.stdout)).unwrap();
        assert_eq!(looked.running["web"], [HASH_A]);
        let sum = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"services: {}\n"));
        assert_eq!(looked.hashes.unwrap()["web"], sum);
        assert!(!looked.no_dir);
        // Where compose ran: the project's directory (stage one said so on stderr).
        assert!(looked.error.unwrap().contains("it's $(here)"));

        let gone = look(
            Some(ComposeTool::Plugin),
            "/nonexistent/dir",
            "app",
            Source::Stdin,
            false,
        );
        let request = Framed::new(&gone);
        let script = format!("PATH={}:$PATH; {}", bin.display(), request.script());
        let out = crate::remote::run_in_sh(&script, b"");
        let looked = parse_look(&request.reply(&out.stdout)).unwrap();
        assert!(looked.no_dir && looked.hashes.is_none());
    }
}
