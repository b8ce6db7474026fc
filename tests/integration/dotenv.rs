//! `.env` files rendered from templates read back exactly by the real Compose v1
//! (`docker-compose`, python-dotenv) and v2 (`docker compose`, compose-go), whatever the values.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use crate::harness::{assert_error_at, command, dropship_cmd, location_of, start_fleet};

/// Values an attacker or an unlucky password generator could put in a secret.
const HOSTILE: &[&str] = &[
    "plain-Value_1.2:x@y/z",
    "",
    "two words",
    "  leading and trailing  ",
    "hash # not a comment",
    "#starts-with-hash",
    "line1\nINJECTED=yes",
    "ends with newline\n",
    "single ' quote",
    "double \" quote",
    "both ' and \" quotes",
    "'fully single-quoted'",
    "\"fully double-quoted\"",
    "dollar $HOME and $$ and $",
    "${HOME",
    "back\\slash",
    "\\\\server\\share",
    "C:\\dir\\",
    "back\\' quote",
    "tab\tinside",
    "crlf\r\nnext",
    "ünïcødé €",
    "=starts with equals",
    "export X=1",
];

/// Values no quoting keeps for both flavours: refused as bad input.
const REFUSED: &[&str] = &[
    "a${HOME}b",
    "it's $5",
    "C:\\\\dir\\\\ $x",
    "ends with backslash\\",
];

fn env_var(i: usize) -> String {
    format!("DROPSHIP_TEST_ENV_{i}")
}

/// A playbook rendering `KEYi={{ secrets.ki }}` for each value (as the example's env.j2
/// does) and a compose file reading it both ways: `env_file` (KEYi) and interpolation (Xi).
fn write_project(dir: &Path, count: usize) -> std::path::PathBuf {
    let mut playbook =
        String::from("name = \"env\"\napp = \"envtest\"\nhosts = \"web\"\n\n[secrets]\n");
    let mut template = String::from("# Rendered by dropship for {{ host.name }}.\n");
    let mut compose =
        String::from("services:\n  s:\n    image: busybox\n    env_file: .env\n    environment:\n");
    for i in 0..count {
        writeln!(playbook, "k{i} = {{ env = \"{}\" }}", env_var(i)).unwrap();
        writeln!(template, "KEY{i}={{{{ secrets.k{i} }}}}").unwrap();
        writeln!(compose, "      X{i}: ${{KEY{i}}}").unwrap();
    }
    playbook.push_str(
        "\n[[steps]]\nname = \"env file\"\ntemplate = { src = \"env.j2\", dest = \"{{ app_dir }}/.env\", mode = \"0600\" }\n\n[[steps]]\nname = \"compose file\"\ncopy = { src = \"docker-compose.yml\", dest = \"{{ app_dir }}/docker-compose.yml\" }\n",
    );
    fs::write(dir.join("env.j2"), template).unwrap();
    fs::write(dir.join("docker-compose.yml"), compose).unwrap();
    let path = dir.join("playbook.toml");
    fs::write(&path, playbook).unwrap();
    path
}

/// The service's environment as `flavour` reads the project in `dir`, `$$` unescaped.
fn compose_environment(dir: &Path, flavour: &str) -> serde_json::Map<String, serde_json::Value> {
    let script = match flavour {
        "v1" => {
            "docker-compose config | /usr/bin/python3 -c 'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)'"
        }
        _ => "docker compose config --format json",
    };
    let out = Command::new("bash")
        .args(["-c", &format!("set -o pipefail; {script}")])
        .current_dir(dir)
        .output()
        .expect("run compose");
    assert!(
        out.status.success(),
        "compose {flavour} config failed (is it installed? scripts/install-deps.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("compose config JSON");
    doc["services"]["s"]["environment"]
        .as_object()
        .cloned()
        .unwrap_or_else(|| panic!("no environment in {doc}"))
        .into_iter()
        .map(|(k, v)| {
            let text = v.as_str().map(|s| s.replace("$$", "$"));
            (k, text.map_or(v, serde_json::Value::from))
        })
        .collect()
}

#[test]
fn env_values_read_back_exactly() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let dir = tempfile::tempdir().unwrap();
    let playbook = write_project(dir.path(), HOSTILE.len());
    let mut cmd = command(
        &[
            "deploy",
            "-i",
            inv.to_str().unwrap(),
            playbook.to_str().unwrap(),
        ],
        None,
    );
    for (i, value) in HOSTILE.iter().enumerate() {
        cmd.env(env_var(i), value);
    }
    let run = dropship_cmd(cmd);
    run.assert_code(0);
    let root = &fleet.hosts[0].root;
    let env_file = fs::read_to_string(root.join(".env")).unwrap();

    for flavour in ["v1", "v2"] {
        let env = compose_environment(root, flavour);
        let mut wrong = Vec::new();
        for (i, value) in HOSTILE.iter().enumerate() {
            for key in [format!("KEY{i}"), format!("X{i}")] {
                let got = env.get(&key).and_then(|v| v.as_str());
                if got != Some(value) {
                    wrong.push(format!("{key}: wrote {value:?}, read {got:?}"));
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "compose {flavour} read back differently:\n{}\n.env:\n{env_file}",
            wrong.join("\n")
        );
        assert!(
            !env.contains_key("INJECTED"),
            "{flavour}: a value added a line"
        );
    }
}

#[test]
fn env_value_no_quoting_keeps_is_refused() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let dir = tempfile::tempdir().unwrap();
    let playbook = write_project(dir.path(), 1);
    for value in REFUSED {
        let mut cmd = command(
            &[
                "deploy",
                "-i",
                inv.to_str().unwrap(),
                playbook.to_str().unwrap(),
            ],
            None,
        );
        cmd.env(env_var(0), value);
        let run = dropship_cmd(cmd);
        run.assert_code(2);
        assert_error_at(
            &run,
            &location_of(&dir.path().join("env.j2"), "secrets.k0 }}"),
            "template error: invalid operation: this value cannot be written to a .env file so that Compose reads it back unchanged",
        );
        assert!(!run.all().contains(value), "{}", run.all());
        assert!(fleet.hosts[0].docker_log().is_empty());
        assert!(!fleet.hosts[0].root.join(".env").exists());
    }
}
