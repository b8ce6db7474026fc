//! Host key verification end to end: unknown hosts under `strict` and `accept-new`, and
//! changed keys, which are refused under every policy.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::cli_support::{
    Secrets, deploy_shop, files_in, inventory_with_ssh, listening_count, logins, start_fleet,
};
use crate::support::{TestHost, toml_str};

const UP: &str = "compose -p shop up -d --remove-orphans";

/// `SHA256:...` of a host's current key, as `ssh-keygen -l` prints it.
fn fingerprint(h: &TestHost) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(h.dir.join("ssh_host_ed25519_key.pub"))
        .output()
        .expect("ssh-keygen -l");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("fingerprint field")
        .to_string()
}

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
                fingerprint(h),
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
    assert!(
        run.stdout.contains("3 host(s): 0 ok, 3 failed"),
        "{}",
        run.all()
    );
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
    let mut want: Vec<String> = fleet.hosts.iter().map(TestHost::host_key_line).collect();
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
                fingerprint(h2),
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
            assert!(
                run.summary_row(name).unwrap().ends_with("  ok"),
                "{policy}: {name}\n{}",
                run.all()
            );
        }
        assert!(
            run.stdout.contains("3 host(s): 2 ok, 1 failed"),
            "{policy}:\n{}",
            run.all()
        );
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
