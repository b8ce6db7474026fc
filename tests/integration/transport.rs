//! The SSH transport against real OpenSSH sshd processes on loopback.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dropship::transport::ssh::SshConnector;
use dropship::transport::{
    ConnectSpec, Connection, Connector, HostKeyPolicy, JumpSpec, OutputSink, TransportError,
};
use sha2::{Digest, Sha256};

use crate::harness::{Agent, Sshd, free_port, keygen, keygen_typed};

/// What the transport needs to reach `sshd` as root with its client key.
pub(crate) fn connect_spec(sshd: &Sshd, known_hosts: &Path, policy: HostKeyPolicy) -> ConnectSpec {
    ConnectSpec {
        host_name: format!("test-{}", sshd.port),
        address: "127.0.0.1".into(),
        port: sshd.port,
        user: "root".into(),
        identity_file: Some(sshd.path("client_key")),
        known_hosts: known_hosts.to_path_buf(),
        host_key_policy: policy,
        connect_timeout: Duration::from_secs(10),
        jump: None,
        identities_only: false,
    }
}

/// Only the spec's identity file: the developer's agent and ~/.ssh must not influence tests.
pub(crate) fn connector() -> SshConnector {
    SshConnector::new()
        .with_agent(false)
        .with_default_keys(false)
}

fn pseudo_random(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Keeps everything a streamed command prints.
#[derive(Default)]
struct Collected {
    stdout: Vec<u8>,
}

impl OutputSink for Collected {
    fn stdout(&mut self, bytes: &[u8]) {
        self.stdout.extend_from_slice(bytes);
    }

    fn stderr(&mut self, _: &[u8]) {}
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_commands_with_stdin_and_exit_status() {
    let sshd = Sshd::alone("ed25519");
    let conn = connector()
        .connect(&connect_spec(
            &sshd,
            &sshd.trusted_known_hosts(),
            HostKeyPolicy::Strict,
        ))
        .await
        .expect("connect");

    let out = conn.exec("cat", b"hello over ssh").await.expect("cat");
    assert_eq!(out.stdout, b"hello over ssh");
    assert_eq!(out.status, Some(0));
    assert!(out.success());

    let out = conn
        .exec("echo to-out; echo to-err >&2; exit 3", b"")
        .await
        .expect("exit 3");
    assert_eq!(out.stdout, b"to-out\n");
    // ends_with: the remote user's shell rc files may chatter on stderr (root's pyenv does here).
    assert!(
        out.stderr.ends_with(b"to-err\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status, Some(3));

    // More concurrent commands than OpenSSH's default MaxSessions (10) on the one connection.
    let runs = (0..16).map(|i| {
        let conn = &conn;
        async move {
            let input = format!("input-{i}\n").repeat(1000);
            let out = conn
                .exec(&format!("cat; echo done-{i} >&2"), input.as_bytes())
                .await
                .expect("concurrent exec");
            assert_eq!(out.stdout, input.as_bytes(), "stdout of run {i}");
            assert!(
                out.stderr.ends_with(format!("done-{i}\n").as_bytes()),
                "stderr of run {i}"
            );
            assert_eq!(out.status, Some(0));
        }
    });
    futures::future::join_all(runs).await;

    let big = pseudo_random(5 * 1024 * 1024);
    let out = conn.exec("sha256sum", &big).await.expect("sha256sum");
    let expected = hex::encode(Sha256::digest(&big));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next(),
        Some(expected.as_str())
    );

    // Echoing megabytes back needs stdin written while stdout is read. (Streamed: a whole
    // capture stops at CAPTURE_LIMIT, below.)
    let mut echoed = Collected::default();
    let status = conn
        .exec_streamed("cat", &[&big], &mut echoed)
        .await
        .expect("cat 5 MiB");
    assert_eq!(status, Some(0));
    assert!(
        echoed.stdout == big,
        "5 MiB did not round-trip through cat ({} bytes back)",
        echoed.stdout.len()
    );
    let too_much = conn
        .exec("cat", &big)
        .await
        .expect_err("more than the capture limit");
    assert!(
        too_much
            .to_string()
            .contains("printed more than 4.2 MB on stdout"),
        "{too_much}"
    );

    // A command that ignores its stdin must not leave us blocked on the send window.
    let out = tokio::time::timeout(Duration::from_secs(20), conn.exec("exit 0", &big))
        .await
        .expect("exec with unread stdin hung")
        .expect("exit 0");
    assert_eq!(out.status, Some(0));

    conn.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_unknown_host_key_under_strict() {
    let sshd = Sshd::alone("ed25519");
    let known_hosts = sshd.path("known_hosts");
    for existing in [
        None,
        Some(
            "[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ\n",
        ),
    ] {
        if let Some(content) = existing {
            fs::write(&known_hosts, content).unwrap();
        }
        let err = connector()
            .connect(&connect_spec(&sshd, &known_hosts, HostKeyPolicy::Strict))
            .await
            .expect_err("must refuse");
        match err {
            TransportError::UnknownHostKey {
                host,
                fingerprint,
                known_hosts: path,
            } => {
                assert_eq!(host, format!("[127.0.0.1]:{}", sshd.port));
                assert_eq!(fingerprint, sshd.fingerprint());
                assert_eq!(path, known_hosts.display().to_string());
            }
            other => panic!("expected UnknownHostKey, got {other:?}"),
        }
        // Strict never writes.
        assert_eq!(fs::read_to_string(&known_hosts).ok().as_deref(), existing);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn learns_unknown_host_key_under_accept_new() {
    let sshd = Sshd::alone("ed25519");
    // Missing directory and file: "nothing known", both get created.
    let known_hosts = sshd.path("fresh/dir/known_hosts");
    let conn = connector()
        .connect(&connect_spec(&sshd, &known_hosts, HostKeyPolicy::AcceptNew))
        .await
        .expect("accept-new");
    assert_eq!(
        conn.exec("echo hi", b"").await.expect("exec").stdout,
        b"hi\n"
    );
    conn.close().await;

    assert_eq!(
        fs::read_to_string(&known_hosts).unwrap(),
        format!("{}\n", sshd.host_key_line())
    );
    assert_eq!(
        fs::metadata(&known_hosts).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // OpenSSH itself must find the entry.
    let found = Command::new("ssh-keygen")
        .arg("-F")
        .arg(format!("[127.0.0.1]:{}", sshd.port))
        .arg("-f")
        .arg(&known_hosts)
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "ssh-keygen -F did not find the learned key"
    );

    let conn = connector()
        .connect(&connect_spec(&sshd, &known_hosts, HostKeyPolicy::Strict))
        .await
        .expect("now known");
    conn.close().await;
    let conn = connector()
        .connect(&connect_spec(&sshd, &known_hosts, HostKeyPolicy::AcceptNew))
        .await
        .expect("known again");
    conn.close().await;
    assert_eq!(
        fs::read_to_string(&known_hosts).unwrap().lines().count(),
        1,
        "learned twice"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_changed_host_key_naming_the_line() {
    let sshd = Sshd::alone("ed25519");
    keygen(&sshd.path("impostor"));
    let impostor = fs::read_to_string(sshd.path("impostor.pub")).unwrap();
    let impostor_key = impostor
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let known_hosts = sshd.path("known_hosts");
    let content = format!(
        "# managed by hand\nother.example ssh-ed25519 {}\n[127.0.0.1]:{} {impostor_key}\n",
        impostor.split_whitespace().nth(1).unwrap(),
        sshd.port
    );
    fs::write(&known_hosts, &content).unwrap();

    for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
        let err = connector()
            .connect(&connect_spec(&sshd, &known_hosts, policy))
            .await
            .expect_err("must refuse");
        match &err {
            TransportError::ChangedHostKey {
                host,
                fingerprint,
                known_hosts: path,
                line,
            } => {
                assert_eq!(host, &format!("[127.0.0.1]:{}", sshd.port));
                assert_eq!(fingerprint, &sshd.fingerprint());
                assert_eq!(path, &known_hosts.display().to_string());
                assert_eq!(*line, 3, "{policy:?}");
            }
            other => panic!("expected ChangedHostKey under {policy:?}, got {other:?}"),
        }
        assert!(err.to_string().contains("line 3"), "{err}");
        assert_eq!(
            fs::read_to_string(&known_hosts).unwrap(),
            content,
            "known_hosts modified under {policy:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn accept_new_is_safe_under_concurrent_learning() {
    let hosts = [
        Sshd::alone("ed25519"),
        Sshd::alone("ed25519"),
        Sshd::alone("ed25519"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    let connector = connector();
    let attempts = (0..21).map(|i| {
        let spec = connect_spec(
            &hosts[i % hosts.len()],
            &known_hosts,
            HostKeyPolicy::AcceptNew,
        );
        let connector = connector.clone();
        tokio::spawn(async move {
            let conn = connector.connect(&spec).await?;
            let out = conn.exec("true", b"").await?;
            conn.close().await;
            Ok::<_, TransportError>(out.status)
        })
    });
    for result in futures::future::join_all(attempts).await {
        assert_eq!(result.expect("task").expect("connect"), Some(0));
    }
    let content = fs::read_to_string(&known_hosts).unwrap();
    let mut lines: Vec<&str> = content.lines().collect();
    lines.sort();
    let mut expected: Vec<String> = hosts.iter().map(Sshd::host_key_line).collect();
    expected.sort();
    assert_eq!(lines, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_auth_refused_listing_keys_tried() {
    let sshd = Sshd::alone("ed25519");
    let known_hosts = sshd.trusted_known_hosts();
    let stranger = sshd.path("stranger");
    keygen(&stranger);
    let mut spec = connect_spec(&sshd, &known_hosts, HostKeyPolicy::Strict);
    spec.identity_file = Some(stranger.clone());
    match connector()
        .connect(&spec)
        .await
        .expect_err("must be refused")
    {
        TransportError::AuthRefused { user, host, tried } => {
            assert_eq!(user, "root");
            assert_eq!(host, spec.host_name);
            assert_eq!(tried, vec![stranger.display().to_string()]);
        }
        other => panic!("expected AuthRefused, got {other:?}"),
    }

    // Identity files that cannot be used are named, not silently skipped.
    let locked = sshd.path("locked");
    keygen_typed(&locked, "ed25519", "secret passphrase");
    for (path, why) in [
        (sshd.path("no-such-key"), "not found"),
        (locked, "passphrase"),
    ] {
        spec.identity_file = Some(path.clone());
        match connector().connect(&spec).await.expect_err("must fail") {
            TransportError::Protocol(msg) => {
                assert!(
                    msg.contains(&path.display().to_string()) && msg.contains(why),
                    "{msg}"
                );
            }
            other => panic!("expected Protocol naming {}, got {other:?}", path.display()),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn uses_rsa_keys_with_sha2_signatures() {
    // OpenSSH 8.8+ refuses SHA-1 `ssh-rsa`, so success here means rsa-sha2-* on both sides.
    let sshd = Sshd::alone("rsa");
    let known_hosts = sshd.path("known_hosts");
    let conn = connector()
        .connect(&connect_spec(&sshd, &known_hosts, HostKeyPolicy::AcceptNew))
        .await
        .expect("rsa connect");
    assert_eq!(conn.exec("echo rsa", b"").await.unwrap().stdout, b"rsa\n");
    conn.close().await;
    assert_eq!(
        fs::read_to_string(&known_hosts).unwrap(),
        format!("{}\n", sshd.host_key_line())
    );
    let conn = connector()
        .connect(&connect_spec(&sshd, &known_hosts, HostKeyPolicy::Strict))
        .await
        .expect("rsa host key known");
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn verifies_the_host_key_type_already_known() {
    // The server offers ed25519 and ecdsa; only ecdsa is recorded. OpenSSH then asks for
    // ecdsa rather than calling the host unknown, and so must we.
    let sshd = Sshd::alone("ed25519");
    let known_hosts = sshd.path("known_hosts");
    let ecdsa_line = sshd.host_key_line_of("ecdsa");
    fs::write(&known_hosts, format!("{ecdsa_line}\n")).unwrap();
    for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
        let conn = connector()
            .connect(&connect_spec(&sshd, &known_hosts, policy))
            .await
            .expect("ecdsa key is known");
        conn.close().await;
    }
    assert_eq!(
        fs::read_to_string(&known_hosts).unwrap(),
        format!("{ecdsa_line}\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn authenticates_through_ssh_agent() {
    let sshd = Sshd::alone("ed25519");
    let known_hosts = sshd.trusted_known_hosts();
    let agent = Agent::start();
    let via_agent = || connector().with_agent_socket(&agent.socket);

    // A stranger key in the agent is offered and named.
    let stranger = sshd.path("stranger");
    keygen(&stranger);
    Command::new("ssh-keygen")
        .args(["-q", "-c", "-C", "stranger@test", "-f"])
        .arg(&stranger)
        .status()
        .unwrap();
    agent.add(&stranger);
    let mut spec = connect_spec(&sshd, &known_hosts, HostKeyPolicy::Strict);
    spec.identity_file = None;
    match via_agent().connect(&spec).await.expect_err("stranger only") {
        TransportError::AuthRefused { tried, .. } => {
            assert_eq!(tried, vec!["agent: stranger@test".to_string()])
        }
        other => panic!("expected AuthRefused, got {other:?}"),
    }

    // A passphrase-protected identity file is left to the agent, which holds the same key.
    let locked = sshd.path("locked");
    keygen_typed(&locked, "ed25519", "secret passphrase");
    let unlocked = sshd.path("unlocked");
    fs::copy(&locked, &unlocked).unwrap();
    fs::set_permissions(&unlocked, fs::Permissions::from_mode(0o600)).unwrap();
    let status = Command::new("ssh-keygen")
        .args(["-q", "-p", "-P", "secret passphrase", "-N", "", "-f"])
        .arg(&unlocked)
        .status()
        .unwrap();
    assert!(status.success());
    agent.add(&unlocked);
    sshd.authorize(&sshd.path("locked"));
    spec.identity_file = Some(locked);
    let conn = via_agent()
        .connect(&spec)
        .await
        .expect("agent key accepted");
    assert_eq!(
        conn.exec("echo via-agent", b"").await.unwrap().stdout,
        b"via-agent\n"
    );
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_port_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ConnectSpec {
        host_name: "closed".into(),
        address: "127.0.0.1".into(),
        port: free_port(),
        user: "root".into(),
        identity_file: None,
        known_hosts: dir.path().join("known_hosts"),
        host_key_policy: HostKeyPolicy::Strict,
        connect_timeout: Duration::from_secs(5),
        jump: None,
        identities_only: false,
    };
    match connector().connect(&spec).await.expect_err("closed port") {
        TransportError::Unreachable { reason, .. } => {
            assert!(reason.contains("refused"), "{reason}")
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }

    let spec = ConnectSpec {
        address: "no-such-host.invalid".into(),
        ..spec
    };
    match connector().connect(&spec).await.expect_err("bad name") {
        TransportError::Unreachable { reason, .. } => {
            assert!(reason.contains("cannot resolve host name"), "{reason}")
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_server_times_out() {
    // The kernel completes the TCP handshake for the backlog; nobody ever speaks SSH.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = ConnectSpec {
        host_name: "silent".into(),
        address: "127.0.0.1".into(),
        port: listener.local_addr().unwrap().port(),
        user: "root".into(),
        identity_file: None,
        known_hosts: dir.path().join("known_hosts"),
        host_key_policy: HostKeyPolicy::Strict,
        connect_timeout: Duration::from_secs(1),
        jump: None,
        identities_only: false,
    };
    let started = Instant::now();
    match connector().connect(&spec).await.expect_err("silent server") {
        TransportError::Timeout { after, .. } => assert_eq!(after, Duration::from_secs(1)),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_connection_lost_mid_command() {
    let sshd = Sshd::alone("ed25519");
    let conn = connector()
        .connect(&connect_spec(
            &sshd,
            &sshd.trusted_known_hosts(),
            HostKeyPolicy::Strict,
        ))
        .await
        .expect("connect");
    // The shell's parent is the sshd process serving this connection.
    let err = conn
        .exec("kill -9 $PPID; sleep 10", b"")
        .await
        .expect_err("connection must drop");
    match err {
        TransportError::Protocol(msg) => assert!(msg.starts_with("connection lost"), "{msg}"),
        other => panic!("expected connection lost, got {other:?}"),
    }
    // Later commands fail the same way instead of hanging.
    let err = conn
        .exec("true", b"")
        .await
        .expect_err("connection is gone");
    assert!(
        matches!(&err, TransportError::Protocol(msg) if msg.starts_with("connection lost")),
        "{err:?}"
    );
}

/// A TCP proxy in front of `target` that accepts and immediately drops the first `drop_first`
/// connections (what sshd does above MaxStartups), then forwards the rest. Returns its port
/// and the number of connections it accepted so far.
fn flaky_proxy(
    target: u16,
    drop_first: usize,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::Ordering;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&accepted);
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            if count.fetch_add(1, Ordering::SeqCst) < drop_first {
                drop(client);
                continue;
            }
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                return;
            };
            let pump = |mut from: TcpStream, mut to: TcpStream| {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            };
            pump(client.try_clone().unwrap(), server.try_clone().unwrap());
            pump(server, client);
        }
    });
    (port, accepted)
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_handshakes_the_server_dropped() {
    let sshd = Sshd::alone("ed25519");
    let known_hosts = sshd.path("known_hosts_proxy");
    let (port, accepted) = flaky_proxy(sshd.port, 2);
    // The proxy's port must be trusted with the sshd's key.
    let line = sshd.host_key_line().replace(
        &format!("[127.0.0.1]:{}", sshd.port),
        &format!("[127.0.0.1]:{port}"),
    );
    fs::write(&known_hosts, format!("{line}\n")).unwrap();
    let spec = ConnectSpec {
        port,
        ..connect_spec(&sshd, &known_hosts, HostKeyPolicy::Strict)
    };
    let started = Instant::now();
    let conn = connector()
        .connect(&spec)
        .await
        .expect("connects on the third attempt");
    assert_eq!(
        conn.exec("echo retried", b"").await.unwrap().stdout,
        b"retried\n"
    );
    conn.close().await;
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    // Two backoffs: 200-300 ms, then 400-600 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );

    // Host key errors are never retried.
    let (port, accepted) = flaky_proxy(sshd.port, 0);
    let spec = ConnectSpec {
        port,
        ..connect_spec(&sshd, &known_hosts, HostKeyPolicy::Strict)
    };
    let err = connector().connect(&spec).await.expect_err("unknown key");
    assert!(
        matches!(err, TransportError::UnknownHostKey { .. }),
        "{err:?}"
    );
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn targets_share_one_bastion_connection_that_outlives_them() {
    let (bastion, target) = (Sshd::alone("ed25519"), Sshd::alone("ed25519"));
    // The bastion accepts the target's client key too; one known_hosts trusts both.
    bastion.authorize(&target.path("client_key"));
    let known_hosts = target.path("known_hosts_both");
    fs::write(
        &known_hosts,
        format!("{}\n{}\n", bastion.host_key_line(), target.host_key_line()),
    )
    .unwrap();
    let spec = ConnectSpec {
        jump: Some(JumpSpec {
            host: "127.0.0.1".into(),
            port: bastion.port,
            user: "root".into(),
        }),
        ..connect_spec(&target, &known_hosts, HostKeyPolicy::Strict)
    };

    let connector = connector();
    let conns = futures::future::join_all((0..4).map(|_| connector.connect(&spec))).await;
    for conn in &conns {
        let conn = conn.as_ref().expect("connected through the bastion");
        assert_eq!(conn.exec("echo via", b"").await.unwrap().stdout, b"via\n");
    }
    assert_eq!(connector.bastion_connections().await, 1);
    for conn in conns {
        conn.unwrap().close().await;
    }
    // Closing the targets left the bastion connection up: a later target reuses it.
    let conn = connector.connect(&spec).await.expect("reuses the bastion");
    assert_eq!(
        conn.exec("echo again", b"").await.unwrap().stdout,
        b"again\n"
    );
    conn.close().await;
    let log = fs::read_to_string(bastion.path("sshd.log")).unwrap();
    assert_eq!(log.matches("Accepted publickey").count(), 1, "{log}");
    let log = fs::read_to_string(target.path("sshd.log")).unwrap();
    assert_eq!(log.matches("Accepted publickey").count(), 5, "{log}");

    // A bastion that refuses our key fails the target, naming the bastion.
    fs::write(bastion.path("authorized_keys"), "").unwrap();
    let err = SshConnector::new()
        .with_agent(false)
        .with_default_keys(false)
        .connect(&spec)
        .await
        .expect_err("bastion refuses the key");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "via bastion root@127.0.0.1:{}: permission denied for root@127.0.0.1 (publickey); keys tried: {}",
            bastion.port,
            target.path("client_key").display()
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn targets_with_other_identities_do_not_share_a_bastion_connection() {
    let (bastion, target) = (Sshd::alone("ed25519"), Sshd::alone("ed25519"));
    // The bastion accepts only its own client key; the target accepts both.
    target.authorize(&bastion.path("client_key"));
    let known_hosts = target.path("known_hosts_both");
    fs::write(
        &known_hosts,
        format!("{}\n{}\n", bastion.host_key_line(), target.host_key_line()),
    )
    .unwrap();
    let via_bastion = |identity: PathBuf| ConnectSpec {
        jump: Some(JumpSpec {
            host: "127.0.0.1".into(),
            port: bastion.port,
            user: "root".into(),
        }),
        identity_file: Some(identity),
        identities_only: true,
        ..connect_spec(&target, &known_hosts, HostKeyPolicy::Strict)
    };
    let accepted = via_bastion(bastion.path("client_key"));
    let refused = via_bastion(target.path("client_key"));

    let connector = connector();
    let conn = connector
        .connect(&accepted)
        .await
        .expect("bastion accepts this key");
    assert_eq!(conn.exec("echo via", b"").await.unwrap().stdout, b"via\n");
    // Same bastion, another identity: it must log in on its own, and be refused.
    let err = connector
        .connect(&refused)
        .await
        .expect_err("bastion refuses the other key");
    assert!(
        err.to_string().starts_with(&format!(
            "via bastion root@127.0.0.1:{}: permission denied for root@127.0.0.1",
            bastion.port
        )),
        "{err}"
    );
    assert_eq!(connector.bastion_connections().await, 2);
    conn.close().await;
}
