//! Bastions (`jump`) and `~/.ssh/config` end to end, against real sshd on loopback.

use std::fs;

use crate::harness::{Fleet, TestHost, dropship_reporting, logins, start_fleet, toml_str};

/// Restarts `h`'s sshd at LogLevel DEBUG1, which logs every `direct-tcpip` request.
fn debug_log(h: &mut TestHost) {
    let config = h.dir.join("sshd_config");
    let text = fs::read_to_string(&config).unwrap();
    fs::write(&config, text.replace("LogLevel VERBOSE", "LogLevel DEBUG1")).unwrap();
    h.stop();
    h.start();
}

/// The fleet's inventory with `jump` through `bastion` in `[ssh]`, the bastion itself
/// reached directly.
fn inventory_via(fleet: &Fleet, bastion: &TestHost, extra: &str) -> std::path::PathBuf {
    let text = fleet
        .inventory()
        .replacen(
            "[ssh]\n",
            &format!("[ssh]\njump = \"root@127.0.0.1:{}\"\n", bastion.port),
            1,
        )
        .replace(
            &format!("ssh = {{ port = {} }}", bastion.port),
            &format!("ssh = {{ port = {}, jump = \"\" }}", bastion.port),
        );
    let path = fleet.dir.path().join("inventory-bastion.toml");
    fs::write(&path, format!("{text}{extra}\n")).unwrap();
    path
}

#[test]
fn all_targets_share_one_bastion_connection() {
    let mut fleet = start_fleet(6);
    debug_log(fleet.host_mut("h1"));
    let bastion = fleet.host("h1");
    let inv = inventory_via(&fleet, bastion, "");
    let run = dropship_reporting(
        &[
            "exec",
            "-i",
            inv.to_str().unwrap(),
            "--limit",
            "!h1",
            "--",
            "docker info >/dev/null && echo hi",
        ],
        None,
    );
    run.assert_code(0);
    run.assert_counts(5, 5, 0);

    let log = bastion.sshd_log();
    assert_eq!(logins(&log), 1, "one login on the bastion:\n{log}");
    for h in &fleet.hosts[1..] {
        // The bastion opened the forwarded connection to this target...
        let forwarded = format!(
            "server_request_direct_tcpip: originator 127.0.0.1 port 0, target 127.0.0.1 port {}",
            h.port
        );
        assert_eq!(log.matches(&forwarded).count(), 1, "{}:\n{log}", h.name);
        // ...and the target saw one login, which really ran the command there.
        assert_eq!(logins(&h.sshd_log()), 1, "{}", h.name);
        assert_eq!(h.docker_commands(), ["info"], "{}", h.name);
    }
}

#[test]
fn bastion_and_target_host_keys_are_both_verified() {
    let mut fleet = start_fleet(4);
    let bastion_port = fleet.host("h1").port;
    // h3's key is unknown; a name the bastion cannot resolve is reported as unreachable.
    let known: String = fs::read_to_string(&fleet.known_hosts)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with(&format!("[127.0.0.1]:{} ", fleet.host("h3").port)))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&fleet.known_hosts, known).unwrap();
    let ghost = "\n[hosts.ghost]\naddress = \"no-such-host.invalid\"\n";
    let inv = inventory_via(&fleet, fleet.host("h1"), ghost);
    let inv_s = inv.to_str().unwrap().to_string();
    let exec = || {
        dropship_reporting(
            &["exec", "-i", &inv_s, "--limit", "!h1", "--", "true"],
            None,
        )
    };

    let run = exec();
    run.assert_code(1);
    run.assert_host_ok("h2");
    run.assert_host_ok("h4");
    let h3 = run.host_text("h3");
    assert!(
        h3.contains(&format!(
            "host key for [127.0.0.1]:{} is not known",
            fleet.host("h3").port
        )),
        "{}",
        run.all()
    );
    assert_eq!(logins(&fleet.host("h3").sshd_log()), 0);
    let ghost = run.host_text("ghost");
    assert!(
        ghost.contains(&format!(
            "cannot reach no-such-host.invalid:22: bastion root@127.0.0.1:{bastion_port} could not connect to it"
        )),
        "{}",
        run.all()
    );

    // A changed bastion key fails every target behind it, naming the bastion.
    fleet.host_mut("h1").regenerate_host_key();
    let before = logins(&fleet.host("h1").sshd_log());
    let run = exec();
    run.assert_code(1);
    for h in ["h2", "h3", "h4", "ghost"] {
        let text = run.host_text(h);
        assert!(
            text.contains(&format!(
                "via bastion root@127.0.0.1:{bastion_port}: HOST KEY CHANGED for [127.0.0.1]:{bastion_port}"
            )),
            "{h}: {}",
            run.all()
        );
    }
    assert_eq!(logins(&fleet.host("h1").sshd_log()), before);
}

#[test]
fn ssh_config_supplies_what_the_inventory_leaves_out() {
    let fleet = start_fleet(2);
    let (h1, h2) = (fleet.host("h1"), fleet.host("h2"));
    let config = fleet.dir.path().join("ssh_config");
    fs::write(
        &config,
        format!(
            "Host other\n  User nobody\n\nHost myalias !nothing\n  HostName 127.0.0.1\n  Port {}\n  User root\n  IdentityFile {}\n  IdentitiesOnly yes\n\nHost *\n  Port 1\n",
            h1.port,
            fleet.client_key.display()
        ),
    )
    .unwrap();
    let write = |host_ssh: &str| {
        let text = format!(
            "[ssh]\nknown_hosts = {}\nhost_key_policy = \"strict\"\nconnect_timeout = \"5s\"\nssh_config = {}\n\n[hosts.web]\naddress = \"myalias\"\n{host_ssh}\n",
            toml_str(fleet.known_hosts.to_str().unwrap()),
            toml_str(config.to_str().unwrap()),
        );
        let path = fleet.dir.path().join("inventory-config.toml");
        fs::write(&path, text).unwrap();
        path
    };

    let inv = write("");
    let run = dropship_reporting(
        &["exec", "-i", inv.to_str().unwrap(), "--", "docker info"],
        None,
    );
    run.assert_code(0);
    assert_eq!(h1.docker_commands(), ["info"]);
    assert!(h2.docker_commands().is_empty());

    // The inventory wins over the config: its port sends the same alias to h2.
    let inv = write(&format!("ssh = {{ port = {} }}", h2.port));
    let run = dropship_reporting(
        &["exec", "-i", inv.to_str().unwrap(), "--", "docker info"],
        None,
    );
    run.assert_code(0);
    assert_eq!(h1.docker_commands(), ["info"]);
    assert_eq!(h2.docker_commands(), ["info"]);

    let inv = write("ssh = { user = \"nobody-here\" }");
    let run = dropship_reporting(&["exec", "-i", inv.to_str().unwrap(), "--", "true"], None);
    run.assert_code(1);
    assert!(
        run.all().contains("permission denied for nobody-here@web"),
        "{}",
        run.all()
    );
}

#[test]
fn bastion_is_verified_with_each_hosts_settings() {
    let fleet = start_fleet(3);
    let bastion = fleet.host("h1");
    let (h2, h3) = (fleet.host("h2"), fleet.host("h3"));
    // h3's own known_hosts knows its target but has another key for the bastion.
    let h3_known = fleet.dir.path().join("known_hosts.h3");
    fs::write(
        &h3_known,
        format!(
            "[127.0.0.1]:{} {}\n{}\n",
            bastion.port,
            h2.host_key_line().split_once(' ').unwrap().1,
            h3.host_key_line()
        ),
    )
    .unwrap();
    let inv = inventory_via(&fleet, bastion, "");
    let text = fs::read_to_string(&inv).unwrap().replace(
        &format!("ssh = {{ port = {} }}", h3.port),
        &format!(
            "ssh = {{ port = {}, known_hosts = {} }}",
            h3.port,
            toml_str(h3_known.to_str().unwrap())
        ),
    );
    fs::write(&inv, text).unwrap();

    // Either host may reach the bastion first; run a few times so both orders are seen.
    for round in 0..3 {
        let run = dropship_reporting(
            &[
                "exec",
                "-i",
                inv.to_str().unwrap(),
                "--limit",
                "!h1",
                "--",
                "true",
            ],
            None,
        );
        run.assert_code(1);
        run.assert_host_ok("h2");
        assert!(
            run.host_text("h3").contains(&format!(
                "via bastion root@127.0.0.1:{}: HOST KEY CHANGED for [127.0.0.1]:{}",
                bastion.port, bastion.port
            )),
            "round {round}: {}",
            run.all()
        );
    }
    assert_eq!(
        logins(&h3.sshd_log()),
        0,
        "h3 was reached through the bastion"
    );
    assert_eq!(
        logins(&bastion.sshd_log()),
        3,
        "one bastion login per run (h2's)"
    );
}
