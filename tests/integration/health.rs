//! `health` steps against real sshd hosts: HTTP fetched through the SSH connection
//! (direct-tcpip to the host's loopback), and command checks.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::harness::{Fleet, Run, http_server};

/// An HTTP server that answers `status` (and `body`), except for the first `unhealthy_first`
/// requests: 503. Returns its port and a request counter.
fn http_server_healthy_after(
    status: u16,
    body: &'static str,
    unhealthy_first: usize,
) -> (u16, Arc<AtomicUsize>) {
    http_server(move |n, _| {
        if n < unhealthy_first {
            (503, "starting".to_string())
        } else {
            (status, body.to_string())
        }
    })
}

/// Deploys a playbook of one `health` step (`health` is its TOML value).
fn deploy(fleet: &Fleet, health: &str) -> Run {
    let pb = fleet.write_playbook(
        "health.toml",
        "health",
        "h",
        &format!("[[steps]]\nname = \"healthy\"\nhealth = {health}\n"),
    );
    fleet.deploy(&pb, &[])
}

#[test]
fn http_health_check_retries_until_healthy() {
    let fleet = Fleet::start(2);
    let (port, count) = http_server_healthy_after(200, "version=A db=ok", 2);
    let run = deploy(
        &fleet,
        &format!(
            "{{ url = \"http://127.0.0.1:{port}/healthz\", contains = \"db=ok\", timeout = \"20s\", interval = \"200ms\" }}"
        ),
    );
    run.assert_code(0);
    for host in ["h1", "h2"] {
        run.assert_outcome(host, "healthy", "ok");
    }
    assert!(run.stdout.contains("HTTP 200 after"), "{}", run.all());
    // Two hosts, the first two answers were 503: at least 4 requests reached the server.
    assert!(count.load(Ordering::SeqCst) >= 4);
}

#[test]
fn http_health_check_that_never_passes_reports_the_last_status() {
    let fleet = Fleet::start(1);
    let (port, _) = http_server_healthy_after(502, "<h1>Bad Gateway</h1>", 0);
    let started = std::time::Instant::now();
    let run = deploy(
        &fleet,
        &format!(
            "{{ url = \"http://127.0.0.1:{port}/\", timeout = \"2s\", interval = \"300ms\" }}"
        ),
    );
    run.assert_code(1);
    run.assert_outcome("h1", "healthy", "FAILED");
    let text = run.host_text("h1");
    assert!(text.contains("unhealthy after 2s"), "{text}");
    assert!(
        text.contains("last: HTTP 502 (expected 200): <h1>Bad Gateway</h1>"),
        "{text}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}

/// Found by CI on a busy machine: the final attempt, cut by the deadline, hid the status the
/// check had been answering all along.
#[test]
fn a_final_attempt_cut_by_the_deadline_still_reports_the_last_answer() {
    let fleet = Fleet::start(1);
    let (port, _) = http_server(|n, _| {
        if n >= 2 {
            // From the third request on, the server hangs past the check's deadline.
            std::thread::sleep(std::time::Duration::from_secs(6));
        }
        (503, "db down".to_string())
    });
    let run = deploy(
        &fleet,
        &format!(
            "{{ url = \"http://127.0.0.1:{port}/\", timeout = \"2s\", interval = \"300ms\" }}"
        ),
    );
    run.assert_code(1);
    let text = run.host_text("h1");
    assert!(
        text.contains("last: HTTP 503 (expected 200): db down (the attempt after it had no answer before the timeout)"),
        "{text}"
    );
}

#[test]
fn http_health_check_to_a_closed_port_fails_with_the_reason() {
    let fleet = Fleet::start(1);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = deploy(
        &fleet,
        &format!(
            "{{ url = \"http://127.0.0.1:{port}/\", timeout = \"1s\", interval = \"200ms\" }}"
        ),
    );
    run.assert_code(1);
    let text = run.host_text("h1");
    assert!(
        text.contains(&format!("cannot connect to 127.0.0.1:{port} from the host")),
        "{text}"
    );
}

#[test]
fn command_health_check_passes_on_exit_zero() {
    let fleet = Fleet::start(1);
    let marker = fleet.host("h1").root.join("ready");
    // The check passes once the file exists; a background job creates it after a moment.
    let run = deploy(
        &fleet,
        &format!(
            "{{ command = \"test -f {m} || {{ (sleep 1; touch {m}) >/dev/null 2>&1 & exit 1; }}\", timeout = \"10s\", interval = \"300ms\" }}",
            m = marker.display()
        ),
    );
    run.assert_code(0);
    run.assert_outcome("h1", "healthy", "ok");
    assert!(marker.exists());
}

#[test]
fn health_interval_below_the_minimum_is_bad_input() {
    let fleet = Fleet::start(1);
    for interval in ["0s", "1ms", "99ms"] {
        let run = deploy(
            &fleet,
            &format!("{{ command = \"true\", timeout = \"2s\", interval = \"{interval}\" }}"),
        );
        run.assert_code(2);
        let first = run.stderr.lines().next().unwrap_or("");
        assert!(
            first.starts_with("error: ")
                && first.contains("health.toml:")
                && first.contains("`interval` must be at least 100ms"),
            "{interval}\n{}",
            run.all()
        );
        assert!(run.stderr.contains("hint: "), "{}", run.all());
    }
    assert!(
        !fleet.host("h1").sshd_log().contains("Accepted publickey"),
        "a host was touched"
    );
    // The minimum itself is accepted.
    let run = deploy(
        &fleet,
        "{ command = \"true\", timeout = \"2s\", interval = \"100ms\" }",
    );
    run.assert_code(0);
}
