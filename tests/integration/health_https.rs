//! `health` over `https://` against a TLS server the test starts on 127.0.0.1 with a CA made
//! for the test: trusted with `ca`, refused without it, accepted with `insecure`; a `Host`
//! header reaches the server (over http too) and names the certificate for an IP URL.

use crate::harness::{Fleet, HttpsServer, Run, http_server_with_heads};

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
fn https_is_trusted_with_its_ca_and_refused_without_it() {
    let fleet = Fleet::start(1);
    let server = HttpsServer::start(&["pixel.example.com"], "version=A");
    std::fs::create_dir_all(fleet.dir.path().join("certs")).unwrap();
    fleet.write("certs/ca.pem", &server.ca_pem);
    let port = server.port;

    // The URL names an IP: the Host header's name is sent as SNI and checked.
    let run = deploy(
        &fleet,
        &format!(
            "{{ url = \"https://127.0.0.1:{port}/up\", ca = \"certs/ca.pem\", headers = {{ Host = \"pixel.example.com\" }}, contains = \"version=A\", timeout = \"10s\" }}"
        ),
    );
    run.assert_code(0);
    run.assert_outcome("h1", "healthy", "ok");
    let heads = server.heads.lock().unwrap().clone();
    assert!(
        heads
            .iter()
            .any(|h| h.starts_with("GET /up HTTP/1.0\r\nHost: pixel.example.com\r\n")),
        "{heads:?}"
    );

    // Without `ca`: this machine's bundle does not know the test CA.
    let run = deploy(
        &fleet,
        &format!(
            "{{ url = \"https://127.0.0.1:{port}/up\", headers = {{ Host = \"pixel.example.com\" }}, timeout = \"1s\", interval = \"300ms\" }}"
        ),
    );
    run.assert_code(1);
    let text = run.host_text("h1");
    assert!(
        text.contains("last: certificate not trusted by this machine's CA bundle"),
        "{text}"
    );

    // The right CA, the wrong name.
    let run = deploy(
        &fleet,
        &format!(
            "{{ url = \"https://127.0.0.1:{port}/up\", ca = \"certs/ca.pem\", headers = {{ Host = \"other.example.com\" }}, timeout = \"1s\", interval = \"300ms\" }}"
        ),
    );
    run.assert_code(1);
    let text = run.host_text("h1");
    assert!(
        text.contains("name mismatch: the certificate is not valid for other.example.com"),
        "{text}"
    );

    // Another CA: not trusted by it.
    let other = HttpsServer::start(&["x.test"], "");
    fleet.write("certs/other.pem", &other.ca_pem);
    let run = deploy(
        &fleet,
        &format!(
            "{{ url = \"https://127.0.0.1:{port}/up\", ca = \"certs/other.pem\", headers = {{ Host = \"pixel.example.com\" }}, timeout = \"1s\", interval = \"300ms\" }}"
        ),
    );
    run.assert_code(1);
    assert!(
        run.host_text("h1")
            .contains("certificate not trusted by ca certs/other.pem"),
        "{}",
        run.all()
    );
}

#[test]
fn insecure_accepts_any_certificate_and_check_says_so() {
    let fleet = Fleet::start(1);
    let server = HttpsServer::start(&["self-signed.test"], "ok");
    let health = format!(
        "{{ url = \"https://127.0.0.1:{}/\", insecure = true, timeout = \"10s\" }}",
        server.port
    );
    let run = deploy(&fleet, &health);
    run.assert_code(0);
    run.assert_outcome("h1", "healthy", "ok");
    let pb = fleet.write_playbook(
        "check.toml",
        "health",
        "h",
        &format!("[[steps]]\nname = \"healthy\"\nhealth = {health}\n"),
    );
    let check = crate::harness::run_playbook("check", &fleet.write_inventory(""), &pb);
    check.assert_code(0);
    assert!(
        check
            .all()
            .contains("INSECURE: any certificate accepted, not verified"),
        "{}",
        check.all()
    );
}

#[test]
fn a_host_header_reaches_an_http_server() {
    let fleet = Fleet::start(1);
    let (port, _, heads) = http_server_with_heads(|_, _| (200, "ok".into()));
    let run = deploy(
        &fleet,
        &format!(
            "{{ url = \"http://127.0.0.1:{port}/\", headers = {{ Host = \"pixel.example.com\", X-Probe = \"dropship\" }}, timeout = \"10s\" }}"
        ),
    );
    run.assert_code(0);
    let heads = heads.lock().unwrap().clone();
    assert!(
        heads
            .iter()
            .any(|h| h.contains("\r\nHost: pixel.example.com\r\n")
                && h.contains("\r\nX-Probe: dropship\r\n")),
        "{heads:?}"
    );
}

#[test]
fn bad_https_input_is_located() {
    let fleet = Fleet::start(1);
    fleet.write("not-a-cert.pem", "hello\n");
    for (health, expected) in [
        (
            "{ url = \"https://127.0.0.1/\", ca = \"missing.pem\" }",
            "bad `ca`: cannot read",
        ),
        (
            "{ url = \"https://127.0.0.1/\", ca = \"not-a-cert.pem\" }",
            "no `BEGIN CERTIFICATE` block",
        ),
        (
            "{ url = \"https://127.0.0.1/\", headers = { \"Bad Name\" = \"x\" } }",
            "bad header name `Bad Name`",
        ),
        (
            "{ url = \"https://127.0.0.1/\", headers = { Host = \"a\\r\\nX: y\" } }",
            "line break or control character",
        ),
        (
            "{ url = \"http://127.0.0.1/\", insecure = true }",
            "`ca` and `insecure` apply to https:// URLs only",
        ),
        (
            "{ command = \"true\", headers = { Host = \"a\" } }",
            "apply to `url` checks only",
        ),
    ] {
        let run = deploy(&fleet, health);
        run.assert_code(2);
        assert!(
            run.stderr.contains("health.toml:") && run.stderr.contains(expected),
            "{expected}\n{}",
            run.all()
        );
    }
}
