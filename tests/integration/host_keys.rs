//! Host key verification end to end: unknown hosts under `strict` and `accept-new`, and
//! changed keys, which are refused under every policy; known_hosts read as OpenSSH reads it
//! (markers, patterns, hashed names, tabs), with OpenSSH's own `ssh` as the referee.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::harness::{
    Fleet, Run, Secrets, TestHost, deploy_shop, dropship_reporting, files_in, inventory_with_ssh,
    keygen, listening_count, logins, public_key, start_fleet, toml_str,
};

const UP: &str = "compose -p shop up -d --remove-orphans";

fn path_toml(p: &Path) -> String {
    toml_str(p.to_str().unwrap())
}

#[test]
fn refuses_unknown_host_under_strict() {
    let fleet = start_fleet(3);
    let empty = fleet.dir.path().join("known_hosts.empty");
    fs::write(&empty, "").unwrap();
    let inv = inventory_with_ssh(&fleet, &[("known_hosts", path_toml(&empty))]);
    let secrets = Secrets::fresh();

    let run = deploy_shop(&inv, &secrets, &[]);
    run.assert_code(1);
    for h in &fleet.hosts {
        let text = run.host_text(&h.name);
        assert!(
            text.contains(&format!(
                "[{}] FAILED   host key for [127.0.0.1]:{} is not known ({}); it is not in {}",
                h.name,
                h.port,
                h.fingerprint(),
                empty.display()
            )),
            "{}",
            run.all()
        );
        assert!(text.contains("host_key_policy = \"accept-new\""), "{text}");
        assert!(files_in(&h.root).is_empty(), "{} has files", h.name);
        assert_eq!(h.docker_log(), "", "{}", h.name);
        assert_eq!(logins(&h.sshd_log()), 0, "{} authenticated", h.name);
    }
    assert_eq!(
        fs::read_to_string(&empty).unwrap(),
        "",
        "strict learned a key"
    );
    run.assert_counts(3, 0, 3);
}

#[test]
fn learns_unknown_host_under_accept_new() {
    let fleet = start_fleet(3);
    let learned = fleet.dir.path().join("known_hosts.learned");
    fs::write(&learned, "").unwrap();
    let secrets = Secrets::fresh();

    let inv = inventory_with_ssh(
        &fleet,
        &[
            ("known_hosts", path_toml(&learned)),
            ("host_key_policy", "\"accept-new\"".into()),
        ],
    );
    let run = deploy_shop(&inv, &secrets, &[]);
    run.assert_code(0);
    let text = fs::read_to_string(&learned).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    let mut want: Vec<String> = fleet.hosts.iter().map(|h| h.host_key_line()).collect();
    want.sort_unstable();
    assert_eq!(lines, want, "one line per host, OpenSSH format");
    assert!(text.ends_with('\n'));
    for h in &fleet.hosts {
        assert!(h.docker_commands().iter().any(|c| c == UP), "{}", h.name);
    }

    // What was learned is what strict checking trusts.
    let inv = inventory_with_ssh(&fleet, &[("known_hosts", path_toml(&learned))]);
    let run = deploy_shop(&inv, &secrets, &[]);
    run.assert_code(0);
    assert_eq!(fs::read_to_string(&learned).unwrap(), text);

    // A known_hosts that does not exist yet (nor its directory) is created under accept-new.
    let fresh = fleet.dir.path().join("new-dir/known_hosts");
    let inv = inventory_with_ssh(
        &fleet,
        &[
            ("known_hosts", path_toml(&fresh)),
            ("host_key_policy", "\"accept-new\"".into()),
        ],
    );
    let run = deploy_shop(&inv, &secrets, &["--limit", "h2"]);
    run.assert_code(0);
    assert_eq!(
        fs::read_to_string(&fresh).unwrap(),
        format!("{}\n", fleet.host("h2").host_key_line())
    );
}

#[test]
fn refuses_changed_host_key() {
    let mut fleet = start_fleet(3);
    // A comment first, so the reported line number must be the physical one.
    let original = fs::read_to_string(&fleet.known_hosts).unwrap();
    let known = format!("# test fleet\n{original}");
    fs::write(&fleet.known_hosts, &known).unwrap();
    let listened = listening_count(fleet.host("h2"));
    fleet.host_mut("h2").regenerate_host_key();
    // The restarted sshd really got its port back (nobody took it while it was down).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while listening_count(fleet.host("h2")) == listened {
        assert!(
            std::time::Instant::now() < deadline,
            "harness: h2's sshd did not get port {} back:\n{}",
            fleet.host("h2").port,
            fleet.host("h2").sshd_log()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let secrets = Secrets::fresh();

    for policy in ["strict", "accept-new"] {
        let inv = inventory_with_ssh(&fleet, &[("host_key_policy", format!("\"{policy}\""))]);
        let run = deploy_shop(&inv, &secrets, &[]);
        run.assert_code(1);
        let h2 = fleet.host("h2");
        let text = run.host_text("h2");
        assert!(
            text.contains(&format!(
                "[h2] FAILED   HOST KEY CHANGED for [127.0.0.1]:{} (now {}); it does not match {} line 3",
                h2.port,
                h2.fingerprint(),
                fleet.known_hosts.display()
            )),
            "{policy}:\n{}",
            run.all()
        );
        assert!(text.contains("someone may be intercepting"), "{text}");
        assert!(files_in(&h2.root).is_empty(), "{policy}: h2 has files");
        assert_eq!(h2.docker_log(), "", "{policy}");
        assert_eq!(logins(&h2.sshd_log()), 0, "{policy}: h2 authenticated");
        for name in ["h1", "h3"] {
            run.assert_host_ok(name);
        }
        assert!(
            run.stdout.contains("3 host(s): 2 ok, 1 failed"),
            "{policy}:\n{}",
            run.all()
        );
        run.report().assert_counts(3, 2, 1);
        assert_eq!(
            fs::read_to_string(&fleet.known_hosts).unwrap(),
            known,
            "{policy}: known_hosts was modified"
        );
    }
    for name in ["h1", "h3"] {
        let h = fleet.host(name);
        assert!(h.root.join(".env").is_file(), "{name}");
        assert_eq!(
            h.docker_commands().iter().filter(|c| *c == UP).count(),
            2,
            "{name}"
        );
    }
}

/// `ssh-ed25519 AAAA...`: a host's key as it stands after the host names in known_hosts.
fn key_field(h: &TestHost) -> String {
    public_key(&h.host_key("ed25519"))
}

/// `dropship exec -- true` on every host of `inv`.
fn exec_true(inv: &Path) -> Run {
    dropship_reporting(&["exec", "-i", inv.to_str().unwrap(), "--", "true"], None)
}

/// Whether OpenSSH's own client, checking strictly against the fleet's known_hosts, logs in
/// to `name`; with its stderr.
fn openssh_verdict(fleet: &Fleet, name: &str) -> (bool, String) {
    let out = fleet.ssh(name, "true");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The host was refused before authenticating: nothing ran, nothing was written there.
fn untouched(h: &TestHost, context: &str) {
    assert!(
        files_in(&h.root).is_empty(),
        "{context}: {} has files",
        h.name
    );
    assert_eq!(h.docker_log(), "", "{context}: {}", h.name);
    assert_eq!(
        logins(&h.sshd_log()),
        0,
        "{context}: {} authenticated",
        h.name
    );
}

#[test]
fn refuses_revoked_host_key() {
    let fleet = start_fleet(2);
    let (h1, h2) = (fleet.host("h1"), fleet.host("h2"));
    // h1 is trusted and revoked (revocation wins); h2 is revoked through a wildcard on a
    // tab-separated line and not otherwise known.
    let known = format!(
        "{}\n@revoked [127.0.0.1]:{} {}\n@revoked\t*\t{}\n",
        h1.host_key_line(),
        h1.port,
        key_field(h1),
        key_field(h2).replace(' ', "\t"),
    );
    fs::write(&fleet.known_hosts, &known).unwrap();
    for name in ["h1", "h2"] {
        let (accepted, stderr) = openssh_verdict(&fleet, name);
        assert!(
            !accepted && stderr.contains("REVOKED HOST KEY"),
            "OpenSSH on {name}: {stderr}"
        );
    }

    for policy in ["strict", "accept-new"] {
        let inv = inventory_with_ssh(&fleet, &[("host_key_policy", format!("\"{policy}\""))]);
        let run = exec_true(&inv);
        run.assert_code(1);
        for (h, line) in [(h1, 2), (h2, 3)] {
            let text = run.host_text(&h.name);
            assert!(
                text.contains(&format!(
                    "host key for [127.0.0.1]:{} ({}) is REVOKED in {} line {line}",
                    h.port,
                    h.fingerprint(),
                    fleet.known_hosts.display()
                )),
                "{policy}:\n{}",
                run.all()
            );
            untouched(h, policy);
        }
        assert_eq!(
            fs::read_to_string(&fleet.known_hosts).unwrap(),
            known,
            "{policy}: known_hosts was modified"
        );
    }
}

#[test]
fn pattern_entry_with_another_key_is_a_changed_key() {
    let fleet = start_fleet(3);
    let (h1, h2, h3) = (fleet.host("h1"), fleet.host("h2"), fleet.host("h3"));
    // h1 matches a `?` wildcard line holding h3's key; h2 matches `*` (h1 negated) with its
    // own key; h3 matches the same `*` line, which holds a key that is not h3's.
    let known = format!(
        "# patterns\n[127.0.0.?]:{},unrelated.example {}\n*,![127.0.0.1]:{} {}\n",
        h1.port,
        key_field(h3),
        h1.port,
        key_field(h2),
    );
    fs::write(&fleet.known_hosts, &known).unwrap();
    let (accepted, stderr) = openssh_verdict(&fleet, "h1");
    assert!(
        !accepted && stderr.contains("HOST IDENTIFICATION HAS CHANGED"),
        "OpenSSH on h1: {stderr}"
    );
    let (accepted, stderr) = openssh_verdict(&fleet, "h2");
    assert!(accepted, "OpenSSH on h2: {stderr}");

    let inv = inventory_with_ssh(&fleet, &[("host_key_policy", "\"accept-new\"".into())]);
    let run = exec_true(&inv);
    run.assert_code(1);
    for (h, line) in [(h1, 2), (h3, 3)] {
        assert!(
            run.host_text(&h.name).contains(&format!(
                "HOST KEY CHANGED for [127.0.0.1]:{} (now {}); it does not match {} line {line}",
                h.port,
                h.fingerprint(),
                fleet.known_hosts.display()
            )),
            "{}",
            run.all()
        );
        untouched(h, &h.name);
    }
    run.assert_host_ok("h2");
    assert_eq!(
        fs::read_to_string(&fleet.known_hosts).unwrap(),
        known,
        "accept-new learned a key for a host a pattern line covers"
    );
}

#[test]
fn cert_authority_host_is_never_learned() {
    let fleet = start_fleet(2);
    let (h1, h2) = (fleet.host("h1"), fleet.host("h2"));
    // A CA for every host on the fleet's address; h2 also has its own plain line.
    let ca = fleet.dir.path().join("host_ca");
    keygen(&ca);
    let ca_key = fs::read_to_string(ca.with_extension("pub")).unwrap();
    let known = format!(
        "@cert-authority [127.0.0.1]:*,*.example.com {}\n{}\n",
        ca_key.trim(),
        h2.host_key_line()
    );
    fs::write(&fleet.known_hosts, &known).unwrap();

    let inv = inventory_with_ssh(&fleet, &[("host_key_policy", "\"accept-new\"".into())]);
    let run = exec_true(&inv);
    run.assert_code(1);
    let text = run.host_text("h1");
    assert!(
        text.contains(&format!(
            "host key for [127.0.0.1]:{} ({}) is not trusted: {} line 1 is a @cert-authority for it",
            h1.port,
            h1.fingerprint(),
            fleet.known_hosts.display()
        )),
        "{}",
        run.all()
    );
    untouched(h1, "h1");
    run.assert_host_ok("h2");
    assert_eq!(
        fs::read_to_string(&fleet.known_hosts).unwrap(),
        known,
        "accept-new learned a key for a host under a @cert-authority"
    );
}

#[test]
fn reads_known_hosts_lines_as_openssh_does() {
    let fleet = start_fleet(3);
    let (h1, h2, h3) = (fleet.host("h1"), fleet.host("h2"), fleet.host("h3"));
    // h2's line hashed by ssh-keygen itself.
    let hashed = fleet.dir.path().join("known_hosts.hashed");
    fs::write(&hashed, format!("{}\n", h2.host_key_line())).unwrap();
    let out = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&hashed)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hashed_line = fs::read_to_string(&hashed).unwrap();
    assert!(hashed_line.starts_with("|1|"), "{hashed_line}");
    let known = format!(
        "  # indented comment\nnot-a-key-line\n@bogus-marker [127.0.0.1]:{} {}\n\
         \t[127.0.0.1]:{}\t\t{}\tcomment with spaces\n{}\n[127.0.0.1]:{},other   {}  # trailing\n",
        h1.port,
        key_field(h3),
        h1.port,
        key_field(h1).replace(' ', "\t"),
        hashed_line.trim().replace(' ', "\t"),
        h3.port,
        key_field(h3).replace(' ', "    "),
    );
    fs::write(&fleet.known_hosts, &known).unwrap();
    for name in ["h1", "h2", "h3"] {
        let (accepted, stderr) = openssh_verdict(&fleet, name);
        assert!(accepted, "OpenSSH on {name}: {stderr}");
    }

    // Strict: every host must be found in the file as it is.
    let run = exec_true(&fleet.write_inventory(""));
    run.assert_code(0);
    run.assert_counts(3, 3, 0);
    assert_eq!(fs::read_to_string(&fleet.known_hosts).unwrap(), known);
}
