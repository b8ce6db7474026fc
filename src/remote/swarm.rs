//! Docker Swarm membership of one host: the scripts of a `swarm` step (a survey of the engine's
//! swarm state, `docker swarm init`, reading the join tokens on a manager, and a join through
//! the Engine API on its unix socket with the JSON body on stdin, so the token is never on a
//! command line) and the parsers of what they report.
//! May import: `remote::{script, frame}`, serde_json, secrets (`Secret`).

use serde::Deserialize;

use super::frame::{self, Kind, Reply};
use super::script::Script;
use crate::secrets::Secret;
use crate::sh;

/// The port swarm managers listen on for joining nodes.
pub const SWARM_PORT: u16 = 2377;

/// The engine's swarm state as `docker info --format '{{json .Swarm}}'` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SwarmInfo {
    /// inactive, pending, active, error or locked.
    #[serde(rename = "LocalNodeState", default)]
    pub state: String,
    #[serde(rename = "NodeID", default)]
    pub node_id: String,
    /// Whether the node is a manager.
    #[serde(rename = "ControlAvailable", default)]
    pub manager: bool,
    #[serde(rename = "Cluster", default)]
    pub cluster: Option<Cluster>,
    /// The managers the node knows (a worker's way to tell which swarm it is in).
    #[serde(rename = "RemoteManagers", default)]
    pub remote_managers: Option<Vec<RemoteManager>>,
    #[serde(rename = "Error", default)]
    pub error: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Cluster {
    #[serde(rename = "ID", default)]
    pub id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RemoteManager {
    #[serde(rename = "NodeID", default)]
    pub node_id: String,
    #[serde(rename = "Addr", default)]
    pub addr: String,
}

impl SwarmInfo {
    /// The swarm's id (known on managers only).
    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster
            .as_ref()
            .map(|c| c.id.as_str())
            .filter(|id| !id.is_empty())
    }

    pub fn managers(&self) -> &[RemoteManager] {
        self.remote_managers.as_deref().unwrap_or_default()
    }
}

/// What a joining host needs from a manager: where to reach the managers, which swarm they
/// are, and the two join tokens (secrets: masked in all output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinTicket {
    pub cluster_id: String,
    /// Every manager of the swarm (node id and `ADDR:PORT`).
    pub managers: Vec<RemoteManager>,
    pub worker_token: Secret,
    pub manager_token: Secret,
}

impl JoinTicket {
    /// Whether `info` (a host in a swarm) is in this ticket's swarm: a manager by the swarm's
    /// id, a worker by a manager it knows.
    pub fn same_swarm(&self, info: &SwarmInfo) -> bool {
        match info.cluster_id() {
            Some(id) => id == self.cluster_id,
            None => info
                .managers()
                .iter()
                .any(|m| self.managers.iter().any(|t| t.node_id == m.node_id)),
        }
    }
}

/// Fails with a clear word when the host has no docker CLI.
fn docker_present() -> Script {
    sh!(
        "command -v docker >/dev/null 2>&1 || {{ echo 'docker is not installed on this host (no `docker` on PATH)' >&2; exit 127; }}\n"
    )
}

/// The engine's swarm state: a `swarm:info` frame followed by one JSON line.
fn info() -> Script {
    sh!(
        "{}\ndocker info --format {} || exit 3\n",
        frame::report(Kind::Swarm, &"info"),
        "{{json .Swarm}}"
    )
}

/// A survey of the host's swarm state.
pub fn survey() -> Script {
    sh!("{}{}", docker_present(), info())
}

/// `docker swarm init` advertising `advertise_addr` (its output, which shows the worker's join
/// command with its token, is thrown away; its errors are kept).
pub fn init(advertise_addr: &str) -> Script {
    sh!(
        "{}docker swarm init --advertise-addr={} >/dev/null || exit $?\n",
        docker_present(),
        advertise_addr
    )
}

/// On a manager: the worker's token (`swarm:worker`), the manager's (`swarm:manager`), then the
/// engine's swarm state (`swarm:info`), each followed by what docker printed.
pub fn tickets() -> Script {
    sh!(
        "{}{}\ndocker swarm join-token -q worker || exit 3\n{}\ndocker swarm join-token -q manager || exit 3\n{}",
        docker_present(),
        frame::report(Kind::Swarm, &"worker"),
        frame::report(Kind::Swarm, &"manager"),
        info()
    )
}

/// A join through the Engine API: `POST /swarm/join` on the engine's unix socket
/// (`$DOCKER_HOST` when it is `unix://…`, else /var/run/docker.sock) with the JSON body read
/// from stdin. After a `swarm:response` frame: the answer's body, then its HTTP status on the
/// last line. A host without curl, or whose `DOCKER_HOST` is no unix socket, fails saying so.
pub fn join() -> Script {
    sh!(
        "case ${{DOCKER_HOST:-}} in\n'') dssw_sock=/var/run/docker.sock ;;\nunix://*) dssw_sock=${{DOCKER_HOST#unix://}} ;;\n*) echo \"DOCKER_HOST=$DOCKER_HOST is not a unix socket: dropship joins a swarm through the engine's unix socket\" >&2; exit 5 ;;\nesac\ncommand -v curl >/dev/null 2>&1 || {{ echo 'curl is not installed on this host: dropship joins a swarm through the Engine API with curl (the join token never goes on a command line); install it, e.g. apt = {{ packages = [\"curl\"] }}' >&2; exit 4; }}\n{}\ncurl --silent --show-error --unix-socket \"$dssw_sock\" --request POST --header 'Content-Type: application/json' --data-binary @- --write-out '\\n%{{http_code}}' http://localhost/swarm/join || exit 6\n",
        frame::report(Kind::Swarm, &"response")
    )
}

/// The body of `POST /swarm/join` (stdin of `join`): it holds the token.
pub fn join_body(advertise_addr: &str, managers: &[RemoteManager], token: &Secret) -> Vec<u8> {
    let remote: Vec<&str> = managers.iter().map(|m| m.addr.as_str()).collect();
    serde_json::json!({
        "ListenAddr": format!("0.0.0.0:{SWARM_PORT}"),
        "AdvertiseAddr": advertise_addr,
        "RemoteAddrs": remote,
        "JoinToken": token.expose(),
    })
    .to_string()
    .into_bytes()
}

/// What followed the `swarm:WHICH` frame.
fn section(reply: &Reply, which: &str) -> Option<String> {
    reply
        .sections
        .iter()
        .find(|(f, _)| f.of(Kind::Swarm) == Some(which))
        .map(|(_, d)| String::from_utf8_lossy(d).into_owned())
}

/// The swarm state a survey (or the end of `tickets`) reported.
pub fn parse_info(reply: &Reply) -> Result<SwarmInfo, String> {
    let Some(text) = section(reply, "info") else {
        return Err("docker info printed no swarm state".into());
    };
    serde_json::from_str(text.trim()).map_err(|e| format!("docker info's swarm state: {e}"))
}

/// The join ticket `tickets` reported, or what is missing.
pub fn parse_ticket(reply: &Reply) -> Result<JoinTicket, String> {
    let token = |which: &str| -> Result<Secret, String> {
        let data = section(reply, which).unwrap_or_default().trim().to_string();
        if data.is_empty() || data.contains(char::is_whitespace) {
            return Err(format!("docker swarm join-token {which} printed no token"));
        }
        Ok(Secret::new(data))
    };
    let worker_token = token("worker")?;
    let manager_token = token("manager")?;
    let info = parse_info(reply)?;
    let Some(cluster_id) = info.cluster_id() else {
        return Err("the manager's engine shows no swarm id".into());
    };
    if info.managers().is_empty() {
        return Err("the manager's engine lists no manager address".into());
    }
    Ok(JoinTicket {
        cluster_id: cluster_id.to_string(),
        managers: info.managers().to_vec(),
        worker_token,
        manager_token,
    })
}

/// The Engine API's answer to a join: `Ok` on HTTP 200, else its status and message.
pub fn parse_join(reply: &Reply) -> Result<(), String> {
    let Some(data) = section(reply, "response") else {
        return Err("the join request was not sent".into());
    };
    let (body, status) = data.trim_end().rsplit_once('\n').unwrap_or(("", &data));
    if status.trim() == "200" {
        return Ok(());
    }
    #[derive(Deserialize)]
    struct Message {
        message: String,
    }
    let said = serde_json::from_str::<Message>(body.trim())
        .map(|m| m.message)
        .unwrap_or_else(|_| body.trim().to_string());
    Err(format!(
        "the engine refused the join (HTTP {}): {said}",
        status.trim()
    ))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::remote::frame::Framed;
    use crate::remote::run_in_sh;
    use crate::remote::script::tests::HOSTILE;
    use crate::transport::ExecOutput;

    const TOKEN_W: &str = "SWMTKN-1-worker-0123456789";
    const TOKEN_M: &str = "SWMTKN-1-manager-9876543210";
    const MANAGER_INFO: &str = r#"{"NodeID":"n1","NodeAddr":"10.0.0.1","LocalNodeState":"active","ControlAvailable":true,"Error":"","RemoteManagers":[{"NodeID":"n1","Addr":"10.0.0.1:2377"}],"Cluster":{"ID":"c1"}}"#;

    /// Writes an executable `name` into `dir`.
    fn tool(dir: &Path, name: &str, body: &str) {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }

    /// Runs `framed` with only `dir` (and the shell's basics) on PATH.
    fn run(dir: &Path, framed: &Framed, env: &str, stdin: &[u8]) -> ExecOutput {
        let script = format!(
            "PATH={}:/usr/bin:/bin LOG={}/log {env}\nexport PATH LOG ANSWER\n{}",
            dir.display(),
            dir.display(),
            framed.script()
        );
        run_in_sh(&script, stdin)
    }

    /// A docker that logs its argv and answers `info` and `swarm join-token` like a manager's.
    fn fake_docker(dir: &Path) {
        tool(
            dir,
            "docker",
            &format!(
                r#"#!/bin/sh
echo "docker $*" >>"$LOG"
case "$1 $2" in
"info --format") echo '{MANAGER_INFO}' ;;
"swarm join-token") case "$4" in worker) echo {TOKEN_W} ;; manager) echo {TOKEN_M} ;; esac ;;
"swarm init") echo "To add a worker: docker swarm join --token {TOKEN_W} 10.0.0.1:2377" ;;
*) exit 1 ;;
esac
"#
            ),
        );
    }

    #[test]
    fn a_survey_reads_the_engines_swarm_state() {
        let dir = tempfile::tempdir().unwrap();
        fake_docker(dir.path());
        let framed = Framed::new(&survey());
        let out = run(dir.path(), &framed, "", b"");
        assert_eq!(out.status, Some(0), "{out:?}");
        let info = parse_info(&framed.reply(&out.stdout)).unwrap();
        assert_eq!(info.state, "active");
        assert!(info.manager);
        assert_eq!(info.cluster_id(), Some("c1"));
        assert_eq!(info.managers()[0].addr, "10.0.0.1:2377");
        // An inactive engine's state has no cluster and null managers.
        let inactive: SwarmInfo = serde_json::from_str(
            r#"{"NodeID":"","NodeAddr":"","LocalNodeState":"inactive","ControlAvailable":false,"Error":"","RemoteManagers":null}"#,
        )
        .unwrap();
        assert_eq!(
            (inactive.cluster_id(), inactive.managers().len()),
            (None, 0)
        );
    }

    #[test]
    fn a_host_without_docker_fails_saying_so() {
        let dir = tempfile::tempdir().unwrap();
        let framed = Framed::new(&survey());
        let script = format!("PATH={}\n{}", dir.path().display(), framed.script());
        let out = run_in_sh(&script, b"");
        assert_eq!(out.status, Some(127));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("docker is not installed"),
            "{out:?}"
        );
    }

    #[test]
    fn init_advertises_one_word_and_throws_away_the_join_command_it_prints() {
        let dir = tempfile::tempdir().unwrap();
        fake_docker(dir.path());
        let framed = Framed::new(&init("10.0.0.1"));
        let out = run(dir.path(), &framed, "", b"");
        assert_eq!(out.status, Some(0), "{out:?}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains(TOKEN_W));
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
        assert_eq!(log, "docker swarm init --advertise-addr=10.0.0.1\n");
        for bad in HOSTILE {
            let script = init(bad);
            assert!(
                script.as_str().contains(&format!(
                    "--advertise-addr={}",
                    crate::remote::script::quote(bad)
                )),
                "{script}"
            );
        }
    }

    #[test]
    fn a_manager_hands_out_both_tokens_and_its_managers() {
        let dir = tempfile::tempdir().unwrap();
        fake_docker(dir.path());
        let framed = Framed::new(&tickets());
        let out = run(dir.path(), &framed, "", b"");
        assert_eq!(out.status, Some(0), "{out:?}");
        let ticket = parse_ticket(&framed.reply(&out.stdout)).unwrap();
        assert_eq!(ticket.worker_token.expose(), TOKEN_W);
        assert_eq!(ticket.manager_token.expose(), TOKEN_M);
        assert_eq!(ticket.cluster_id, "c1");
        assert_eq!(ticket.managers.len(), 1);
        // The ticket never prints its tokens.
        let shown = format!("{ticket:?}");
        assert!(
            !shown.contains(TOKEN_W) && !shown.contains(TOKEN_M),
            "{shown}"
        );
    }

    #[test]
    fn a_ticket_without_tokens_or_a_swarm_id_is_refused() {
        let framed = Framed::new(&tickets());
        let nonce = &framed.script()[4..20];
        let frame = |f: &str| format!("\n@@dropship:{nonce}:swarm:{f}@@\n");
        let reply = |worker: &str, info: &str| {
            format!(
                "{}{worker}\n{}{TOKEN_M}\n{}{info}\n",
                frame("worker"),
                frame("manager"),
                frame("info")
            )
        };
        let parse = |text: String| parse_ticket(&framed.reply(text.as_bytes()));
        assert!(parse(reply(TOKEN_W, MANAGER_INFO)).is_ok());
        assert!(
            parse(reply("", MANAGER_INFO))
                .unwrap_err()
                .contains("worker")
        );
        assert!(parse(reply("two words", MANAGER_INFO)).is_err());
        let worker_info = r#"{"LocalNodeState":"active","ControlAvailable":false,"RemoteManagers":[{"NodeID":"n1","Addr":"10.0.0.1:2377"}]}"#;
        assert!(
            parse(reply(TOKEN_W, worker_info))
                .unwrap_err()
                .contains("swarm id")
        );
    }

    /// A curl that logs its argv and what it read on stdin, and answers with `$ANSWER`.
    fn fake_curl(dir: &Path) {
        tool(
            dir,
            "curl",
            "#!/bin/sh\nprintf '%s\\n' \"curl $*\" >>\"$LOG\"\ncat >\"$LOG.stdin\"\nprintf '%s' \"$ANSWER\"\n",
        );
    }

    fn ticket() -> JoinTicket {
        JoinTicket {
            cluster_id: "c1".into(),
            managers: vec![RemoteManager {
                node_id: "n1".into(),
                addr: "10.0.0.1:2377".into(),
            }],
            worker_token: Secret::new(TOKEN_W),
            manager_token: Secret::new(TOKEN_M),
        }
    }

    #[test]
    fn a_join_sends_the_token_on_stdin_to_the_engines_socket_never_on_argv() {
        let dir = tempfile::tempdir().unwrap();
        fake_curl(dir.path());
        let t = ticket();
        let body = join_body("10.0.0.2", &t.managers, &t.worker_token);
        let framed = Framed::new(&join());
        let out = run(
            dir.path(),
            &framed,
            "ANSWER='\n200' DOCKER_HOST=unix:///run/other.sock",
            &body,
        );
        assert_eq!(out.status, Some(0), "{out:?}");
        assert_eq!(parse_join(&framed.reply(&out.stdout)), Ok(()));
        let argv = std::fs::read_to_string(dir.path().join("log")).unwrap();
        assert!(!argv.contains(TOKEN_W), "{argv}");
        assert!(
            argv.contains("--unix-socket /run/other.sock")
                && argv.contains("--data-binary @-")
                && argv.ends_with("http://localhost/swarm/join\n"),
            "{argv}"
        );
        let sent: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("log.stdin")).unwrap()).unwrap();
        assert_eq!(sent["JoinToken"], TOKEN_W);
        assert_eq!(sent["RemoteAddrs"], serde_json::json!(["10.0.0.1:2377"]));
        assert_eq!(sent["AdvertiseAddr"], "10.0.0.2");
        assert_eq!(sent["ListenAddr"], "0.0.0.0:2377");

        // Without DOCKER_HOST: the default socket.
        let framed = Framed::new(&join());
        run(dir.path(), &framed, "ANSWER='\n200'", &body);
        let argv = std::fs::read_to_string(dir.path().join("log")).unwrap();
        assert!(
            argv.lines()
                .last()
                .unwrap()
                .contains("--unix-socket /var/run/docker.sock"),
            "{argv}"
        );
    }

    #[test]
    fn a_refused_join_says_the_engines_message() {
        let dir = tempfile::tempdir().unwrap();
        fake_curl(dir.path());
        let framed = Framed::new(&join());
        let out = run(
            dir.path(),
            &framed,
            r#"ANSWER='{"message":"This node is already part of a swarm."}
503'"#,
            b"{}",
        );
        assert_eq!(out.status, Some(0), "{out:?}");
        assert_eq!(
            parse_join(&framed.reply(&out.stdout)),
            Err(
                "the engine refused the join (HTTP 503): This node is already part of a swarm."
                    .into()
            )
        );
    }

    #[test]
    fn a_join_without_curl_or_over_tcp_fails_saying_so() {
        let dir = tempfile::tempdir().unwrap();
        // No curl on PATH (only the directory and a shell).
        let framed = Framed::new(&join());
        let script = format!("PATH={}\n{}", dir.path().display(), framed.script());
        // (stdin empty: the script ends before reading it)
        let out = run_in_sh(&script, b"");
        assert_eq!(out.status, Some(4), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("curl is not installed"));

        fake_curl(dir.path());
        let framed = Framed::new(&join());
        let out = run(dir.path(), &framed, "DOCKER_HOST=tcp://10.0.0.1:2376", b"");
        assert_eq!(out.status, Some(5), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("is not a unix socket"));
        assert!(!dir.path().join("log").exists(), "curl did not run");
    }
}
