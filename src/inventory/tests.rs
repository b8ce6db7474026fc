//! Unit tests of inventory parsing: hosts, groups, ranges, SSH settings, vars, patterns.

use std::time::Duration;

use super::*;
use crate::transport::JumpSpec;

fn parse(text: &str) -> Result<Inventory, InputError> {
    Inventory::parse(&SourceFile {
        path: "inv.toml".into(),
        text: text.into(),
    })
}

#[test]
fn ssh_settings_override_by_group_then_host() {
    let inv = parse(
        r#"
[ssh]
user = "deploy"
port = 22
connect_timeout = "3s"

[groups.web]
ssh = { port = 2200 }

[hosts."web-[1:2]"]
groups = ["web"]

[hosts.db]
ssh = { user = "admin" }
"#,
    )
    .unwrap();
    let names: Vec<_> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["web-1", "web-2", "db"]);
    assert_eq!(inv.hosts[0].ssh.port, 2200);
    assert_eq!(inv.hosts[0].ssh.user, "deploy");
    assert_eq!(inv.hosts[2].ssh.port, 22);
    assert_eq!(inv.hosts[2].ssh.user, "admin");
    assert_eq!(inv.hosts[2].ssh.connect_timeout, Duration::from_secs(3));
    assert_eq!(inv.hosts[0].address, "web-1");
}

#[test]
fn vars_follow_group_order_then_host() {
    let inv = parse(
        r#"
[vars]
a = "inv"
b = "inv"
c = "inv"

[groups.one]
vars = { b = "one", c = "one" }

[groups.two]
vars = { c = "two" }

[hosts.h]
groups = ["one", "two"]
vars = { d = "host" }
"#,
    )
    .unwrap();
    let v = &inv.hosts[0].vars;
    assert_eq!(v["a"].value.as_str(), Some("inv"));
    assert_eq!(v["b"].value.as_str(), Some("one"));
    assert_eq!(v["c"].value.as_str(), Some("two"));
    assert_eq!(v["d"].value.as_str(), Some("host"));
}

#[test]
fn address_template_uses_host_name() {
    let inv = parse("[hosts.\"w[1:1]\"]\naddress = \"{{ name }}.internal\"\n").unwrap();
    assert_eq!(inv.hosts[0].address, "w1.internal");
}

#[test]
fn address_knows_only_the_host_name() {
    let err = parse("[hosts.w1]\naddress = \"{{ nope }}.internal\"\n").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("inv.toml:2:11: undefined variable `nope` in `address`"),
        "{err}"
    );
    assert!(err.to_string().contains("hint: only `{{ name }}`"), "{err}");
    for (address, want) in [
        (
            "{{ '{{' }} name }}",
            "the address still contains `{{` after rendering",
        ),
        ("{{ '' }}", "the address is empty"),
        ("{% if %}", "bad address template"),
    ] {
        let err = parse(&format!("[hosts.w1]\naddress = \"{address}\"\n")).unwrap_err();
        assert!(err.to_string().contains(want), "{address}: {err}");
    }
}

#[test]
fn empty_patterns_select_nothing_instead_of_everything() {
    let inv = parse("[hosts.a]\n[hosts.b]\n").unwrap();
    for pattern in ["", " , ", ","] {
        assert!(
            inv.select(pattern)
                .unwrap_err()
                .to_string()
                .contains("names no host"),
            "{pattern:?}"
        );
    }
    assert_eq!(inv.select("!a").unwrap(), [1]);
}

#[test]
fn port_zero_is_an_error_where_it_is_written() {
    let err = parse("[hosts.a]\nssh = { port = 0 }\n").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("inv.toml:2:16: port 0 is not a port sshd can listen on"),
        "{err}"
    );
}

#[test]
fn missing_identity_file_and_directory_known_hosts_are_found_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        "[ssh]\nssh_config = \"\"\nidentity_file = \"no-key\"\nknown_hosts = \".\"\n[hosts.a]\n";
    let inv = Inventory::parse(&SourceFile {
        path: dir.path().join("inv.toml"),
        text: text.into(),
    })
    .unwrap();
    let err = inv.hosts[0].check_local_files().unwrap_err();
    assert!(
        err.to_string().contains("inv.toml:3:17: identity file `"),
        "{err}"
    );
    assert!(err.to_string().contains("no-key` does not exist"), "{err}");
    std::fs::write(dir.path().join("no-key"), "k").unwrap();
    let err = inv.hosts[0].check_local_files().unwrap_err();
    assert!(
        err.to_string().contains("inv.toml:4:15: known_hosts `"),
        "{err}"
    );
    assert!(err.to_string().contains("is a directory"), "{err}");
}

#[test]
fn the_inventory_as_a_whole_is_capped() {
    let text: String = (0..11)
        .map(|i| format!("[hosts.\"g{i}-[1:10000]\"]\n"))
        .collect();
    let err = parse(&text).unwrap_err();
    assert!(err.to_string().contains("more than 100000 hosts"), "{err}");
}

#[test]
fn unknown_key_names_file_line_column_and_key() {
    let err = parse("[hosts.web-1]\nadress = \"10.0.0.1\"\n").unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("inv.toml:2:1: unknown field `adress`, expected one of `address`, `groups`, `vars`, `ssh`"),
        "{text}"
    );
    assert_eq!(err.key.as_deref(), Some("hosts.web-1.adress"));
    assert!(
        text.contains("2 | adress = \"10.0.0.1\"\n  | ^^^^^^"),
        "{text}"
    );
    assert!(text.contains("hint:"), "{text}");
}

#[test]
fn undefined_group_is_an_error_with_suggestion() {
    let err = parse("[groups.web]\n[hosts.a]\ngroups = [\"wbe\"]\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "inv.toml:3:11: undefined group `wbe`\n  key: `hosts.a.groups.0`\n  |\n3 | groups = [\"wbe\"]\n  |           ^^^^^\n  hint: did you mean `web`? Groups are declared as `[groups.NAME]`"
    );
}

#[test]
fn bad_policy_and_duration_are_errors() {
    let err = parse("[ssh]\nhost_key_policy = \"yolo\"\n").unwrap_err();
    assert!(
        err.to_string().starts_with(
            "inv.toml:2:19: unknown variant `yolo`, expected `strict` or `accept-new`"
        ),
        "{err}"
    );
    let err = parse("[ssh]\nconnect_timeout = \"ten\"\n").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("inv.toml:2:19: bad duration `ten`"),
        "{err}"
    );
}

#[test]
fn limit_patterns_select_names_groups_globs_and_exclusions() {
    let inv = parse(
        "[groups.web]\n[groups.db]\n[hosts.\"web-[1:3]\"]\ngroups=[\"web\"]\n[hosts.db-1]\ngroups=[\"db\"]\n",
    )
    .unwrap();
    assert_eq!(inv.select("web").unwrap(), [0, 1, 2]);
    assert_eq!(inv.select("db-1,web-2").unwrap(), [1, 3]);
    assert_eq!(inv.select("web-*").unwrap(), [0, 1, 2]);
    assert_eq!(inv.select("all,!web-2").unwrap(), [0, 2, 3]);
    assert_eq!(inv.select("!web").unwrap(), [3]);
    assert!(
        inv.select("nope")
            .unwrap_err()
            .to_string()
            .contains("`nope` matches no host")
    );
}

#[test]
fn jump_resolves_per_group_and_host() {
    let inv = parse(
        r#"
[ssh]
user = "deploy"
jump = "bastion:2222"
ssh_config = ""

[groups.dmz]
ssh = { jump = "" }

[hosts.a]
[hosts.b]
groups = ["dmz"]
[hosts.c]
ssh = { jump = "ops@[::1]" }
"#,
    )
    .unwrap();
    let jumps: Vec<_> = inv
        .hosts
        .iter()
        .map(|h| h.ssh.jump.as_ref().map(ToString::to_string))
        .collect();
    assert_eq!(
        jumps,
        [
            Some("deploy@bastion:2222".to_string()),
            None,
            Some("ops@[::1]:22".to_string())
        ]
    );
    let err = parse("[ssh]\njump = \"b:x\"\n").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("inv.toml:2:8: bad jump host `b:x`: `x` is not a port number"),
        "{err}"
    );
}

#[test]
fn ssh_config_fills_what_the_inventory_leaves_unset() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ssh_config"),
        "Host myalias\n  HostName 10.1.2.3\n  User cfguser\n  Port 2200\n  IdentityFile /keys/cfg\n  ProxyJump jumper\n  IdentitiesOnly yes\nHost jumper\n  HostName 10.9.9.9\n",
    )
    .unwrap();
    let text = r#"
[ssh]
ssh_config = "ssh_config"

[hosts.plain]
address = "myalias"

[hosts.overridden]
address = "myalias"
ssh = { user = "inv", port = 22, identity_file = "/keys/inv", jump = "" }

[hosts.other]
address = "elsewhere"
"#;
    let inv = Inventory::parse(&SourceFile {
        path: dir.path().join("inv.toml"),
        text: text.into(),
    })
    .unwrap();
    let plain = &inv.hosts[0];
    assert_eq!(plain.address, "10.1.2.3");
    assert_eq!((plain.ssh.user.as_str(), plain.ssh.port), ("cfguser", 2200));
    assert_eq!(plain.ssh.identity_file, Some(PathBuf::from("/keys/cfg")));
    assert_eq!(
        plain.ssh.jump,
        Some(JumpSpec {
            host: "10.9.9.9".into(),
            port: 22,
            user: "cfguser".into()
        })
    );
    assert!(plain.ssh.identities_only);

    let over = &inv.hosts[1];
    assert_eq!(over.address, "10.1.2.3");
    assert_eq!((over.ssh.user.as_str(), over.ssh.port), ("inv", 22));
    assert_eq!(over.ssh.identity_file, Some(PathBuf::from("/keys/inv")));
    assert_eq!(over.ssh.jump, None);

    let other = &inv.hosts[2];
    assert_eq!(other.address, "elsewhere");
    assert_eq!(other.ssh.port, 22);
    assert_eq!(other.ssh.jump, None);
    assert!(!other.ssh.identities_only);
}

#[test]
fn parsing_reads_no_environment_resolution_uses_the_one_given() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config"), "Host a\n  HostName 10.0.0.7\n").unwrap();
    let env = SshEnv {
        local_user: Some("carol".into()),
        ssh_config: dir.path().join("config"),
        known_hosts: dir.path().join("known_hosts"),
    };
    let file = SourceFile {
        path: dir.path().join("inv.toml"),
        text: "[hosts.a]\n[hosts.b]\nssh = { user = \"bob\" }\n".into(),
    };
    let inv = Inventory::parse_in(&file, env).unwrap();
    let a = &inv.hosts[0];
    assert_eq!(
        (a.ssh.user.as_str(), a.address.as_str()),
        ("carol", "10.0.0.7")
    );
    assert_eq!(a.ssh.address, a.address);
    assert_eq!(a.ssh.host_name, "a");
    assert_eq!(a.ssh.known_hosts, dir.path().join("known_hosts"));
    assert_eq!(inv.hosts[1].ssh.user, "bob");
}

#[test]
fn compose_choice_is_layered_inventory_groups_host() {
    let inv = parse(
        r#"
compose = "standalone"

[groups.v2]
compose = "plugin"

[groups.back]
compose = "auto"

[hosts.a]

[hosts.b]
groups = ["v2"]

[hosts.c]
groups = ["v2", "back"]

[hosts.d]
groups = ["back"]
compose = "plugin"
"#,
    )
    .unwrap();
    let choices: Vec<_> = inv.hosts.iter().map(|h| h.compose).collect();
    assert_eq!(
        choices,
        [
            ComposeChoice::Standalone,
            ComposeChoice::Plugin,
            ComposeChoice::Auto,
            ComposeChoice::Plugin
        ]
    );
    assert_eq!(
        parse("[hosts.a]\n").unwrap().hosts[0].compose,
        ComposeChoice::Auto
    );
}

#[test]
fn bad_compose_choice_names_the_place_and_the_values() {
    for (text, line, column, key) in [
        ("[hosts.a]\ncompose = \"v1\"\n", 2, 11, "hosts.a.compose"),
        (
            "[groups.g]\ncompose = \"docker-compose\"\n[hosts.a]\n",
            2,
            11,
            "groups.g.compose",
        ),
        ("compose = \"Plugin\"\n[hosts.a]\n", 1, 11, "compose"),
    ] {
        let err = parse(text).unwrap_err();
        let rendered = err.to_string();
        assert!(
            rendered.starts_with(&format!("inv.toml:{line}:{column}: unknown variant")),
            "{rendered}"
        );
        assert!(
            rendered.contains("expected one of `auto`, `plugin`, `standalone`"),
            "{rendered}"
        );
        assert_eq!(err.key.as_deref(), Some(key));
        assert!(
            err.hint
                .as_deref()
                .is_some_and(|h| h.contains("\"standalone\" (`docker-compose`)")),
            "{rendered}"
        );
    }
}
