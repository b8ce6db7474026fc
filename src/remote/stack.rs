//! Docker Swarm stacks on a manager: the scripts of a `stack` step (deploy with the step's
//! environment read from stdin, one survey of every service of the stack per poll round,
//! `docker service rollback` of each) and the parser of what they report.
//! May import: `remote::{script, frame, vars}`, serde_json.

use serde::Deserialize;
use serde_json::Value;

use super::frame::{self, Kind, Reply};
use super::script::Script;
use crate::sh;

/// `docker`'s Go template that prints an object as one line of JSON.
const JSON_LINE: &str = "{{json .}}";

/// Reads `KEY=VALUE` lines from stdin into the environment of the commands that follow (the
/// values never reach a command line; `export "KEY=VALUE"` assigns them as they are).
fn environment_from_stdin() -> Script {
    sh!("while IFS= read -r dsst_kv; do export \"$dsst_kv\" || exit 2; done\n")
}

/// One survey of the stack `name`: for each of its services a `stack:service` frame followed
/// by `docker service inspect` (one JSON line), then a `stack:tasks` frame followed by its
/// tasks (`docker service ps --no-trunc`, one JSON line each).
fn survey(name: &str) -> Script {
    sh!(
        "dsst_ids=$(docker service ls --quiet --filter {}) || exit 3\nfor dsst_id in $dsst_ids; do\n{}\ndocker service inspect --format {} \"$dsst_id\" || true\n{}\ndocker service ps --no-trunc --format {} \"$dsst_id\" || true\ndone\n",
        format!("label=com.docker.stack.namespace={name}"),
        frame::report(Kind::Stack, &"service"),
        JSON_LINE,
        frame::report(Kind::Stack, &"tasks"),
        JSON_LINE
    )
}

/// The labels that mark a secret as a version of `key` of the stack `stack` (the namespace
/// label also makes `docker stack rm` remove it with the stack).
const SECRET_KEY_LABEL: &str = "dropship.secret";

/// A Docker secret of the step, as the deploy script makes it: its key and how many bytes of
/// stdin its value is. Its name is `<stack>_<key>_<version>`, the version named on the manager.
pub struct SecretToMake<'a> {
    pub key: &'a str,
    /// The variable that gives the stack file the name (`SECRET_<KEY>_NAME`).
    pub name_variable: String,
    pub size: usize,
}

/// The Docker config that holds the stack's salt for naming secret versions.
pub fn salt_config(stack: &str) -> String {
    format!("{stack}_dropship-salt")
}

/// Reads the stack's salt (a Docker config of 32 random bytes, made the first time; Swarm
/// holds it on every manager, so any of them names a version the same) into `dsst_salt`.
/// Labelled with the stack's namespace: `docker stack rm` removes it, and a new salt later only
/// means new names, one rotation. A concurrent first run may make it first: read it again.
fn read_salt(stack: &str) -> Script {
    let inspect = sh!(
        "docker config inspect --format {} -- {}",
        "{{json .Spec.Data}}",
        salt_config(stack)
    );
    sh!(
        "command -v sha256sum >/dev/null 2>&1 || {{ echo 'the manager has no sha256sum (coreutils), which names secret versions' >&2; exit 5; }}\nif ! dsst_salt=$({} 2>/dev/null); then\nhead -c 32 /dev/urandom | base64 | docker config create --label {} -- {} - >/dev/null 2>&1\ndsst_salt=$({}) || exit 5\nfi\n[ -n \"$dsst_salt\" ] || {{ echo 'the secret-naming salt config is empty' >&2; exit 5; }}\n",
        inspect,
        format!("com.docker.stack.namespace={stack}"),
        salt_config(stack),
        inspect
    )
}

/// Reads each secret's value (exactly its bytes) from stdin into a variable and names its
/// version `<stack>_<key>_<first 12 hex of sha256(salt || value)>` (the salt never leaves the
/// swarm: the name says nothing of the value); exports the name as `SECRET_<KEY>_NAME` for the
/// stack file and makes the secret (value on stdin, never an argument) unless one of that name
/// exists. A `stack:version` frame and the name for each, a `stack:secret` frame and its key
/// for each made.
fn make_secrets(stack: &str, secrets: &[SecretToMake<'_>]) -> Script {
    if secrets.is_empty() {
        return Script::default();
    }
    let mut script = read_salt(stack);
    for secret in secrets {
        script.push(&sh!(
            "dsst_value=$(head -c {} && printf x) || exit 5\ndsst_value=${{dsst_value%x}}\n[ ${{#dsst_value}} -gt 0 ] || {{ echo 'a secret value ended early on stdin' >&2; exit 5; }}\ndsst_hash=$({{ printf '%s' \"$dsst_salt\"; printf '%s' \"$dsst_value\"; }} | sha256sum) || exit 5\ndsst_name={}${{dsst_hash%\"${{dsst_hash#????????????}}\"}}\nexport {}=\"$dsst_name\"\n{}\nprintf '%s\\n' \"$dsst_name\"\nif ! docker secret inspect --format {} -- \"$dsst_name\" >/dev/null 2>&1; then\nprintf '%s' \"$dsst_value\" | docker secret create --label {} --label {} -- \"$dsst_name\" - >/dev/null || exit 5\n{}\nprintf '%s\\n' {}\nfi\n",
            secret.size.to_string(),
            format!("{stack}_{}_", secret.key),
            secret.name_variable.as_str(),
            frame::report(Kind::Stack, &"version"),
            "{{.ID}}",
            format!("com.docker.stack.namespace={stack}"),
            format!("{SECRET_KEY_LABEL}={}", secret.key),
            frame::report(Kind::Stack, &"secret"),
            secret.key
        ));
    }
    script.push(&sh!("unset dsst_value dsst_salt\n"));
    script
}

/// After a deploy: removes each version of the stack's secrets (made by `make_secrets`) that is
/// not in `keep` and that no service of the stack names in its spec or its previous spec (kept
/// for `docker service rollback`); one in use by a task is refused by the engine and stays. A
/// `stack:pruned` frame and its name for each removed.
pub fn prune_secrets(stack: &str, keep: &[&str]) -> Script {
    let mut keep_words = Script::default();
    for name in keep {
        keep_words.push(&sh!(" {}", *name));
    }
    sh!(
        "dsst_ids=$(docker service ls --quiet --filter {}) || exit 3\ndsst_keep=' '\nfor dsst_id in $dsst_ids; do\ndsst_used=$(docker service inspect --format {} \"$dsst_id\") || exit 3\ndsst_keep=\"$dsst_keep$dsst_used \"\ndone\nfor dsst_name in{}; do dsst_keep=\"$dsst_keep$dsst_name \"; done\ndsst_all=$(docker secret ls --filter {} --filter {} --format {}) || exit 3\nfor dsst_name in $dsst_all; do\ncase $dsst_keep in *\" $dsst_name \"*) continue ;; esac\nif docker secret rm -- \"$dsst_name\" >/dev/null 2>&1; then\n{}\nprintf '%s\\n' \"$dsst_name\"\nfi\ndone\n",
        format!("label=com.docker.stack.namespace={stack}"),
        "{{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}} {{end}}{{if .PreviousSpec}}{{range .PreviousSpec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}} {{end}}{{end}}",
        keep_words,
        format!("label=com.docker.stack.namespace={stack}"),
        format!("label={SECRET_KEY_LABEL}"),
        "{{.Name}}",
        frame::report(Kind::Stack, &"pruned")
    )
}

/// The names following each frame `what` of a reply (`secret`: made; `pruned`: removed).
pub fn named(reply: &Reply, what: &str) -> Vec<String> {
    reply
        .sections
        .iter()
        .filter(|(f, _)| f.of(Kind::Stack) == Some(what))
        .map(|(_, d)| String::from_utf8_lossy(d).trim().to_string())
        .collect()
}

/// The deploy: the step's secrets made from stdin when missing, its environment from stdin, a
/// survey of the stack as it was, then `docker stack deploy` (its output after a
/// `stack:deploy` frame, `stack:deployed` once it succeeded). Exits with the deploy's status.
pub fn deploy(
    file: &str,
    name: &str,
    with_registry_auth: bool,
    secrets: &[SecretToMake<'_>],
) -> Script {
    let auth = if with_registry_auth {
        sh!(" --with-registry-auth")
    } else {
        Script::default()
    };
    sh!(
        "{}{}{}{}\ndocker stack deploy --compose-file {}{} --detach=true -- {} 2>&1 || exit $?\n{}\n",
        make_secrets(name, secrets),
        environment_from_stdin(),
        survey(name),
        frame::report(Kind::Stack, &"deploy"),
        file,
        auth,
        name,
        frame::report(Kind::Stack, &"deployed")
    )
}

/// One poll round: a survey of the stack.
pub fn poll(name: &str) -> Script {
    survey(name)
}

/// `docker service rollback` of each service of the stack that has a previous spec and is
/// not on it already (a `stack:rollback` frame followed by the service's name), after a survey
/// of the stack as it was. A service without one, or rolled back already (by the engine after
/// a failed update, or by an earlier rollback: rolling back again would go forward), reports
/// `stack:kept` and its name. A rollback refused by the engine ends the script with its status.
pub fn rollback(name: &str) -> Script {
    sh!(
        "{}for dsst_id in $dsst_ids; do\ndsst_prev=$(docker service inspect --format {} \"$dsst_id\") || exit 3\ncase $dsst_prev in\n'yes rollback_completed '*|no\\ *) {}\n;;\n*) {}\ndocker service rollback --detach --quiet \"$dsst_id\" >/dev/null || exit 4\n;;\nesac\nprintf '%s\\n' \"${{dsst_prev##* }}\"\ndone\n",
        survey(name),
        "{{if .PreviousSpec}}yes{{else}}no{{end}} {{if .UpdateStatus}}{{.UpdateStatus.State}}{{else}}none{{end}} {{.Spec.Name}}",
        frame::report(Kind::Stack, &"kept"),
        frame::report(Kind::Stack, &"rollback")
    )
}

/// Whether the host's engine is an active swarm manager: prints its node state and whether
/// it is a manager reachable for control (`active true` on one).
pub fn manager_check() -> Script {
    sh!(
        "docker info --format {} 2>&1\n",
        "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"
    )
}

/// What `manager_check` printed: `Ok` on an active manager, else why the host is not one.
pub fn judge_manager(status_ok: bool, printed: &str) -> Result<(), String> {
    let printed = printed.trim();
    if !status_ok {
        let said = printed.lines().last().unwrap_or("no output");
        return Err(format!("`docker info` failed: {said}"));
    }
    match printed.split_whitespace().collect::<Vec<_>>()[..] {
        ["active", "true"] => Ok(()),
        ["active", _] => Err("a swarm worker, not a manager".to_string()),
        ["inactive", ..] => Err("in no swarm".to_string()),
        [state, ..] => Err(format!("its swarm node state is `{state}`, not active")),
        [] => Err("`docker info` printed nothing".to_string()),
    }
}

/// A service as `docker service inspect` shows it: what convergence is judged on.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub id: String,
    pub name: String,
    /// The image its spec asks for (`.Spec.TaskTemplate.ContainerSpec.Image`).
    pub image: String,
    /// `None` for a global service.
    pub replicas: Option<u64>,
    /// `.UpdateStatus`, when the engine has updated or rolled it back.
    pub update: Option<UpdateStatus>,
    /// `.Spec.TaskTemplate`: a change of it makes the engine replace the tasks.
    pub task_template: Value,
    /// The whole `.Spec` (a change of replicas, labels or ports leaves the tasks' template).
    pub spec: Value,
    /// Its tasks, newest first per slot.
    pub tasks: Vec<Task>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UpdateStatus {
    /// updating, completed, paused, rollback_started, rollback_paused, rollback_completed.
    #[serde(rename = "State", default)]
    pub state: String,
    #[serde(rename = "StartedAt", default)]
    pub started_at: String,
    #[serde(rename = "Message", default)]
    pub message: String,
}

/// A task as `docker service ps --format '{{json .}}'` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Task {
    #[serde(rename = "Name", default)]
    pub name: String,
    #[serde(rename = "Image", default)]
    pub image: String,
    #[serde(rename = "DesiredState", default)]
    pub desired_state: String,
    #[serde(rename = "CurrentState", default)]
    pub current_state: String,
    #[serde(rename = "Error", default)]
    pub error: String,
}

impl Task {
    /// Desired and actually running.
    pub fn running(&self) -> bool {
        self.desired_state == "Running" && self.current_state.starts_with("Running")
    }
}

/// One service from its `docker service inspect --format '{{json .}}'` line.
pub fn parse_service(json: &str) -> Option<Service> {
    let v: Value = serde_json::from_str(json.trim()).ok()?;
    let spec = v.get("Spec")?;
    let task_template = spec.get("TaskTemplate").cloned().unwrap_or(Value::Null);
    Some(Service {
        id: v.get("ID")?.as_str()?.to_string(),
        name: spec.get("Name")?.as_str()?.to_string(),
        image: task_template
            .pointer("/ContainerSpec/Image")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        replicas: spec
            .pointer("/Mode/Replicated/Replicas")
            .and_then(Value::as_u64),
        update: v
            .get("UpdateStatus")
            .filter(|u| !u.is_null())
            .and_then(|u| serde_json::from_value(u.clone()).ok()),
        task_template,
        spec: spec.clone(),
        tasks: Vec::new(),
    })
}

/// What the sections of a survey hold: each service with its tasks, in the order listed.
/// A service whose inspection printed nothing readable (removed meanwhile) is left out.
pub fn parse_survey(reply: &Reply) -> Vec<Service> {
    let mut services: Vec<Service> = Vec::new();
    let mut current: Option<usize> = None;
    for (frame, data) in &reply.sections {
        let text = String::from_utf8_lossy(data);
        match frame.of(Kind::Stack) {
            Some("service") => {
                current = text.lines().find_map(parse_service).map(|s| {
                    services.push(s);
                    services.len() - 1
                });
            }
            Some("tasks") => {
                if let Some(i) = current.take() {
                    services[i].tasks = text
                        .lines()
                        .filter_map(|l| serde_json::from_str(l.trim()).ok())
                        .collect();
                }
            }
            _ => current = None,
        }
    }
    services
}

/// The sections of a reply up to the first frame of `kind` `until` (the survey before a
/// deploy or rollback), as a reply of their own.
pub fn before(reply: &Reply, until: &str) -> Reply {
    Reply {
        head: reply.head.clone(),
        sections: reply
            .sections
            .iter()
            .take_while(|(f, _)| f.of(Kind::Stack) != Some(until))
            .cloned()
            .collect(),
    }
}

/// The names of the services `rollback` sent back (`stack:rollback`) and of those it left as
/// they were (`stack:kept`).
pub fn rolled_back(reply: &Reply) -> (Vec<String>, Vec<String>) {
    let mut sent = Vec::new();
    let mut left = Vec::new();
    for (frame, data) in &reply.sections {
        let name = String::from_utf8_lossy(data).trim().to_string();
        match frame.of(Kind::Stack) {
            Some("rollback") => sent.push(name),
            Some("kept") => left.push(name),
            _ => {}
        }
    }
    (sent, left)
}

/// Whether the deploy reported success (`stack:deployed`), and what `docker stack deploy`
/// printed.
pub fn deploy_output(reply: &Reply) -> (bool, String) {
    let deployed = reply
        .sections
        .iter()
        .any(|(f, _)| f.of(Kind::Stack) == Some("deployed"));
    let said = reply
        .sections
        .iter()
        .find(|(f, _)| f.of(Kind::Stack) == Some("deploy"))
        .map(|(_, d)| String::from_utf8_lossy(d).trim().to_string())
        .unwrap_or_default();
    (deployed, said)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::frame::Framed;
    use crate::remote::run_in_sh;
    use crate::remote::script::tests::HOSTILE;

    #[test]
    fn the_environment_comes_from_stdin_as_it_is_and_runs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let script = sh!(
            "cd {} || exit 9\n{}printf '%s|' \"$A\" \"$B\"",
            dir.path().to_str().unwrap(),
            environment_from_stdin()
        );
        let mut stdin = String::new();
        stdin.push_str(&format!("A={}\n", HOSTILE[0]));
        stdin.push_str(&format!("B={}\n", HOSTILE[5]));
        let out = run_in_sh(script.as_str(), stdin.as_bytes());
        assert_eq!(out.status, Some(0), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{}|{}|", HOSTILE[0], HOSTILE[5])
        );
        assert!(!dir.path().join("pwned").exists());
    }

    #[test]
    fn a_survey_reply_is_read_per_service_with_its_tasks() {
        let framed = Framed::new(&poll("pixel"));
        let nonce = &framed.script()[4..20];
        let frame = |f: &str| format!("\n@@dropship:{nonce}:stack:{f}@@\n");
        let stdout = format!(
            "{}{}\n{}{}\n{}\n{}{}\n{}",
            frame("service"),
            r#"{"ID":"s1","Spec":{"Name":"pixel_web","TaskTemplate":{"ContainerSpec":{"Image":"r/app:B@sha256:1"}},"Mode":{"Replicated":{"Replicas":2}}},"UpdateStatus":{"State":"completed","StartedAt":"t1","Message":"update completed"}}"#,
            frame("tasks"),
            r#"{"Name":"pixel_web.1","Image":"r/app:B@sha256:1","DesiredState":"Running","CurrentState":"Running 3 seconds ago","Error":""}"#,
            r#"{"Name":"pixel_web.1","Image":"r/app:A@sha256:0","DesiredState":"Shutdown","CurrentState":"Shutdown 5 seconds ago","Error":""}"#,
            frame("service"),
            "Error: No such service: gone",
            frame("tasks"),
        );
        let services = parse_survey(&framed.reply(stdout.as_bytes()));
        assert_eq!(services.len(), 1, "{services:?}");
        let web = &services[0];
        assert_eq!(
            (web.name.as_str(), web.image.as_str(), web.replicas),
            ("pixel_web", "r/app:B@sha256:1", Some(2))
        );
        assert_eq!(web.update.as_ref().unwrap().state, "completed");
        assert_eq!(web.tasks.len(), 2);
        assert!(web.tasks[0].running() && !web.tasks[1].running());
    }

    #[test]
    fn a_rollback_sends_back_only_services_with_a_previous_spec_not_on_it_already() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let fake = dir.path().join("docker");
        std::fs::write(
            &fake,
            r#"#!/bin/sh
case "$1 $2" in
"service ls") printf 'id1\nid2\nid3\n' ;;
"service inspect") case "$4" in
    *PreviousSpec*) case "$5" in
        id1) echo "yes completed p_web" ;;
        id2) echo "yes rollback_completed p_worker" ;;
        id3) echo "no none p_new" ;;
        esac ;;
    *) echo '{}' ;;
    esac ;;
"service ps") ;;
"service rollback") echo "$*" >>"$LOG" ;;
*) exit 1 ;;
esac
"#,
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let framed = Framed::new(&rollback("p"));
        let script = format!(
            "PATH={}:$PATH LOG={}\nexport PATH LOG\n{}",
            dir.path().display(),
            log.display(),
            framed.script()
        );
        let out = run_in_sh(&script, b"");
        assert_eq!(out.status, Some(0), "{out:?}");
        let reply = framed.reply(&out.stdout);
        assert_eq!(
            rolled_back(&reply),
            (
                vec!["p_web".to_string()],
                vec!["p_worker".to_string(), "p_new".to_string()]
            )
        );
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "service rollback --detach --quiet id1\n"
        );
    }

    /// A fake `docker` in a temporary directory first on PATH; its calls logged to `log`.
    fn fake_docker(dir: &std::path::Path, body: &str) -> String {
        let fake = dir.join("docker");
        std::fs::write(&fake, format!("#!/bin/sh\n{body}")).unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        format!(
            "PATH={}:$PATH LOG={}\nexport PATH LOG\n",
            dir.display(),
            dir.join("log").display()
        )
    }

    /// A fake `docker` for the secrets: every call's arguments logged to `$LOG.argv`; the salt
    /// config kept in `salt` (made from stdin by `config create`, printed quoted like
    /// `{{json .Spec.Data}}`); a secret exists when its name is in `existing`; `secret create`
    /// logs its arguments and exact stdin, `stack deploy` the names it is given.
    fn fake_secret_docker(dir: &std::path::Path) -> String {
        fake_docker(
            dir,
            r#"D=$(dirname "$LOG")
printf '%s\n' "$*" >>"$LOG.argv"
case "$1 $2" in
"config inspect") [ -f "$D/salt" ] && printf '"%s"\n' "$(cat "$D/salt")" ;;
"config create") printf '%s\n' "$*" >>"$LOG"; tr -d '\n' >"$D/salt" ;;
"secret inspect") grep -qx -- "$6" "$D/existing" 2>/dev/null ;;
"secret create") printf '%s|' "$*" >>"$LOG"; cat >>"$LOG"; echo >>"$LOG" ;;
"stack deploy") printf 'deploy A=%s OLD=%s NEW=%s\n' "$A" "$SECRET_OLD_NAME" "$SECRET_NEW_NAME" >>"$LOG" ;;
*) ;;
esac
"#,
        )
    }

    /// The version a manager names: 12 hex digits of sha256(salt as read || value).
    fn keyed_version(salt: &str, value: &str) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(format!("{salt}{value}").as_bytes()))[..12].to_string()
    }

    fn secrets_to_make(sizes: [usize; 2]) -> [SecretToMake<'static>; 2] {
        [
            SecretToMake {
                key: "old",
                name_variable: "SECRET_OLD_NAME".into(),
                size: sizes[0],
            },
            SecretToMake {
                key: "new",
                name_variable: "SECRET_NEW_NAME".into(),
                size: sizes[1],
            },
        ]
    }

    #[test]
    fn secret_versions_are_named_by_a_salted_digest_and_made_from_exact_stdin_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let setup = fake_secret_docker(dir.path());
        let log = dir.path().join("log");
        let (old, new) = ("xyz", "-$(touch pwned)\n\n");
        let secrets = secrets_to_make([old.len(), new.len()]);
        let framed = Framed::new(&deploy("/s.yml", "p", false, &secrets));
        let script = format!(
            "cd {} || exit 9\n{setup}{}",
            dir.path().display(),
            framed.script()
        );
        let stdin = format!("{old}{new}A=v\n");

        // First run: the salt config is made (32 random bytes, base64), then both secrets.
        let out = run_in_sh(&script, stdin.as_bytes());
        assert_eq!(out.status, Some(0), "{out:?}");
        let salt = format!(
            "\"{}\"",
            std::fs::read_to_string(dir.path().join("salt")).unwrap()
        );
        assert_eq!(salt.len(), 2 + 44, "{salt}");
        let old_name = format!("p_old_{}", keyed_version(&salt, old));
        let new_name = format!("p_new_{}", keyed_version(&salt, new));
        let reply = framed.reply(&out.stdout);
        assert_eq!(
            named(&reply, "version"),
            vec![old_name.clone(), new_name.clone()]
        );
        assert_eq!(named(&reply, "secret"), vec!["old", "new"]);
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            format!(
                "config create --label com.docker.stack.namespace=p -- p_dropship-salt -\n\
                 secret create --label com.docker.stack.namespace=p --label dropship.secret=old -- {old_name} -|{old}\n\
                 secret create --label com.docker.stack.namespace=p --label dropship.secret=new -- {new_name} -|{new}\n\
                 deploy A=v OLD={old_name} NEW={new_name}\n"
            )
        );
        // The unsalted digest of the value is not the name.
        let unsalted = keyed_version("", old);
        assert!(!old_name.ends_with(&unsalted), "{old_name}");
        assert!(!dir.path().join("pwned").exists());

        // Again, the secrets existing: the same salt, the same names, nothing made.
        std::fs::write(
            dir.path().join("existing"),
            format!("{old_name}\n{new_name}\n"),
        )
        .unwrap();
        std::fs::write(&log, "").unwrap();
        let out = run_in_sh(&script, stdin.as_bytes());
        assert_eq!(out.status, Some(0), "{out:?}");
        let reply = framed.reply(&out.stdout);
        assert_eq!(
            named(&reply, "version"),
            vec![old_name.clone(), new_name.clone()]
        );
        assert!(named(&reply, "secret").is_empty());
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            format!("deploy A=v OLD={old_name} NEW={new_name}\n")
        );

        // Another salt (a new swarm, or after `docker stack rm`): other names.
        std::fs::write(dir.path().join("salt"), "b3RoZXI=").unwrap();
        let out = run_in_sh(&script, stdin.as_bytes());
        let versions = named(&framed.reply(&out.stdout), "version");
        assert_eq!(
            versions[0],
            format!("p_old_{}", keyed_version("\"b3RoZXI=\"", old))
        );
        assert_ne!(versions[0], old_name);

        // No value was ever an argument.
        let argv = std::fs::read_to_string(dir.path().join("log.argv")).unwrap();
        assert!(argv.contains("secret create"), "{argv}");
        assert!(
            !argv.contains(old) && !argv.contains("touch pwned"),
            "{argv}"
        );
    }

    #[test]
    fn a_stdin_that_ends_before_a_secret_value_stops_before_making_it_or_deploying() {
        let dir = tempfile::tempdir().unwrap();
        let setup = fake_secret_docker(dir.path());
        std::fs::write(dir.path().join("salt"), "c2FsdA==").unwrap();
        let framed = Framed::new(&deploy("/s.yml", "p", false, &secrets_to_make([3, 4])));
        let out = run_in_sh(&format!("{setup}{}", framed.script()), b"abc");
        assert_eq!(out.status, Some(5), "{out:?}");
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
        assert!(
            log.contains("-- p_old_") && !log.contains("p_new_"),
            "{log}"
        );
        assert!(!log.contains("deploy"), "{log}");
    }

    #[test]
    fn pruning_keeps_the_current_versions_and_those_a_spec_or_previous_spec_names() {
        let dir = tempfile::tempdir().unwrap();
        let setup = fake_docker(
            dir.path(),
            r#"case "$1 $2" in
"service ls") printf 'id1\n' ;;
"service inspect") echo "p_k_used p_k_prev " ;;
"secret ls") printf 'p_k_used\np_k_prev\np_k_now\np_k_old\np_k_busy\n' ;;
"secret rm") echo "$4" >>"$LOG"; [ "$4" != p_k_busy ] ;;
*) exit 1 ;;
esac
"#,
        );
        let framed = Framed::new(&prune_secrets("p", &["p_k_now"]));
        let out = run_in_sh(&format!("{setup}{}", framed.script()), b"");
        assert_eq!(out.status, Some(0), "{out:?}");
        assert_eq!(named(&framed.reply(&out.stdout), "pruned"), vec!["p_k_old"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("log")).unwrap(),
            "p_k_old\np_k_busy\n"
        );
    }

    #[test]
    fn only_an_active_manager_is_usable() {
        assert_eq!(judge_manager(true, "active true\n"), Ok(()));
        for (printed, why) in [
            ("active false", "a swarm worker, not a manager"),
            ("inactive false", "in no swarm"),
            (
                "pending false",
                "its swarm node state is `pending`, not active",
            ),
            ("", "`docker info` printed nothing"),
        ] {
            assert_eq!(
                judge_manager(true, printed),
                Err(why.to_string()),
                "{printed}"
            );
        }
        let failed = judge_manager(false, "x\npermission denied while trying to connect");
        assert_eq!(
            failed,
            Err("`docker info` failed: permission denied while trying to connect".to_string())
        );
    }

    #[test]
    fn hostile_names_and_files_stay_one_word() {
        for bad in HOSTILE {
            let script = deploy(bad, bad, true, &[]);
            assert!(
                script
                    .as_str()
                    .contains(&format!("-- {}", crate::remote::script::quote(bad))),
                "{script}"
            );
        }
    }
}
