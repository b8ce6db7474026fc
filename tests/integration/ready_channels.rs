//! Session channels opened ahead (`Connection::keep_ready`) against a real sshd: an exec on
//! one starts without waiting for the server, and a channel the server refuses ahead costs
//! nothing but the plain open.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dropship::transport::{ConnectSpec, Connection, Connector, HostKeyPolicy};

use crate::harness::{Sshd, SshdSetup, keygen_typed};
use crate::transport::{connect_spec, connector};

/// A TCP proxy in front of `target` whose server-to-client direction can be held back
/// (`replies` false: nothing the server sends reaches the client until it is true again).
/// Returns its port.
fn holding_proxy(target: u16, replies: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                return;
            };
            let (mut up_from, mut up_to) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut up_from, &mut up_to);
                let _ = up_to.shutdown(std::net::Shutdown::Write);
            });
            let replies = Arc::clone(&replies);
            let (mut down_from, mut down_to) = (server, client);
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                loop {
                    let n = match down_from.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    while !replies.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    if down_to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = down_to.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
}

/// The spec for reaching `sshd` through a proxy on `port` (its known_hosts line moved there).
fn through(sshd: &Sshd, port: u16) -> ConnectSpec {
    let known_hosts = sshd.path(&format!("known_hosts_{port}"));
    let line = sshd.host_key_line().replace(
        &format!("[127.0.0.1]:{}", sshd.port),
        &format!("[127.0.0.1]:{port}"),
    );
    fs::write(&known_hosts, format!("{line}\n")).unwrap();
    ConnectSpec {
        port,
        ..connect_spec(sshd, &known_hosts, HostKeyPolicy::Strict)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exec_on_a_channel_opened_ahead_starts_without_waiting_for_the_server() {
    let sshd = Sshd::alone("ed25519");
    let replies = Arc::new(AtomicBool::new(true));
    let port = holding_proxy(sshd.port, Arc::clone(&replies));
    let conn = Arc::new(
        connector()
            .connect(&through(&sshd, port))
            .await
            .expect("connect"),
    );
    // Two channels open at once: the first runs `true`; the second's confirmation came in
    // the same flight as the first's, so it is open by the time `true` has ended.
    conn.keep_ready(2);
    let first = conn.exec("true", b"").await.expect("true");
    assert_eq!(first.status, Some(0));

    // From now on the client hears nothing. A command that needed a channel opened now
    // would wait for its confirmation forever; on the channel opened ahead it starts at once.
    replies.store(false, Ordering::SeqCst);
    let marker = sshd.path("ran-ahead");
    let command = format!("touch '{}'", marker.display());
    let running = tokio::spawn({
        let conn = Arc::clone(&conn);
        async move { conn.exec(&command, b"").await }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !marker.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started_unanswered = marker.exists();
    replies.store(true, Ordering::SeqCst);
    let out = running
        .await
        .unwrap()
        .expect("the command's answer, once let through");
    assert!(
        started_unanswered,
        "the command did not start while the server's answers were held back"
    );
    assert_eq!(out.status, Some(0));
    conn.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn channels_the_server_refuses_ahead_fall_back_to_a_plain_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sshd");
    fs::create_dir_all(&dir).unwrap();
    keygen_typed(&dir.join("client_key"), "ed25519", "");
    let authorized_keys = dir.join("authorized_keys");
    fs::copy(dir.join("client_key.pub"), &authorized_keys).unwrap();
    let mut sshd = Sshd::create(
        dir,
        SshdSetup {
            host_key_types: vec!["ed25519"],
            authorized_keys,
            // One session at a time: every channel asked for ahead of the first is refused.
            extra_config: "MaxSessions 1\n".into(),
        },
    );
    sshd.spawn();
    sshd.wait_started();
    let spec = connect_spec(&sshd, &sshd.trusted_known_hosts(), HostKeyPolicy::Strict);
    let conn = connector().connect(&spec).await.expect("connect");
    conn.keep_ready(3);
    for n in 0..4 {
        let out = conn
            .exec(&format!("echo {n}"), b"")
            .await
            .unwrap_or_else(|e| panic!("exec {n}: {e}"));
        assert_eq!(out.stdout, format!("{n}\n").as_bytes());
    }
    // More asked for than MaxSessions allows on our side: never more than the cap, and
    // concurrent commands still all run.
    conn.keep_ready(50);
    let inputs: Vec<String> = (0..3).map(|n| n.to_string()).collect();
    let outs =
        futures::future::join_all(inputs.iter().map(|n| conn.exec("cat", n.as_bytes()))).await;
    for (n, out) in outs.into_iter().enumerate() {
        assert_eq!(out.expect("cat").stdout, format!("{n}").as_bytes());
    }
    conn.close().await;
}
