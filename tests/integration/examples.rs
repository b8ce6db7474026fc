//! The shipped examples stay valid: every playbook under `examples/*/playbooks/` (and the
//! top-level Pixel playbooks `examples/pixel` points to) passes `dropship check`, and so does
//! every `dropship deploy` command the examples' READMEs give, run as written through bash with
//! `deploy` turned into `check`. No connection is made.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{BIN, Run, command, copy_dir, dropship_cmd, read};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The examples the issue asks for; a missing one fails the test rather than being skipped.
const EXAMPLES: [&str; 6] = [
    "django-caddy",
    "examist",
    "nexchange",
    "pixel",
    "ratemymodule",
    "swarm",
];

/// Secrets some examples read from the environment (as CI variables would give them).
const ENV_SECRETS: [(&str, &str); 1] = [("NEXCHANGE_REGISTRY_PASSWORD", "made-up-registry-pw")];

/// A copy of the repository's example files (inventory/, playbooks/, templates/, examples/)
/// with the demo's secrets made up in `.fleet/secrets/`, where scripts/demo.sh writes them.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["inventory", "playbooks", "templates", "examples"] {
        copy_dir(&Path::new(REPO).join(sub), &dir.path().join(sub));
    }
    let secrets = dir.path().join(".fleet/secrets");
    fs::create_dir_all(&secrets).unwrap();
    for name in [
        "django_secret_key",
        "postgres_password",
        "registry_password",
    ] {
        fs::write(secrets.join(name), format!("made-up-{name}\n")).unwrap();
    }
    dir
}

/// `examples/NAME` for every directory under `examples/`, sorted.
fn example_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(root.join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The `*.toml` files directly in `dir` (none when it does not exist), sorted.
fn tomls_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

/// `dropship check -i INVENTORY PLAYBOOK` run from `root`, with the environment's secrets.
fn check(root: &Path, inventory: &Path, playbook: &Path) -> Run {
    let mut cmd = command(
        &[
            "check",
            "-i",
            inventory.to_str().unwrap(),
            playbook.to_str().unwrap(),
        ],
        None,
    );
    cmd.current_dir(root).envs(ENV_SECRETS);
    dropship_cmd(cmd)
}

#[test]
fn every_example_playbook_passes_check() {
    let project = project();
    let root = project.path();
    let names: Vec<String> = example_dirs(root)
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names, EXAMPLES,
        "examples/ holds one directory per seed system"
    );

    // (inventory, playbook) pairs: an example with inventories of its own is checked with each
    // of them (its roles, e.g. a `db` group, exist only there), the others with the demo fleet's.
    let mut cases: Vec<(PathBuf, PathBuf)> = Vec::new();
    for pb in tomls_in(&root.join("playbooks")) {
        cases.push((PathBuf::from("inventory/local.toml"), pb));
    }
    for dir in example_dirs(root) {
        assert!(
            dir.join("README.md").is_file(),
            "{} has no README.md",
            dir.display()
        );
        let mut inventories = tomls_in(&dir.join("inventory"));
        if inventories.is_empty() {
            inventories.push(PathBuf::from("inventory/local.toml"));
        }
        for pb in tomls_in(&dir.join("playbooks")) {
            for inventory in &inventories {
                cases.push((inventory.clone(), pb.clone()));
            }
        }
    }
    assert!(cases.len() >= 9, "{cases:?}");
    for (inventory, playbook) in &cases {
        let playbook = playbook.strip_prefix(root).unwrap_or(playbook);
        let inventory = inventory.strip_prefix(root).unwrap_or(inventory);
        let run = check(root, inventory, playbook);
        assert_eq!(
            run.code,
            Some(0),
            "check -i {} {}\n{}",
            inventory.display(),
            playbook.display(),
            run.all()
        );
        assert!(
            run.stdout.contains("every template rendered"),
            "{}\n{}",
            playbook.display(),
            run.all()
        );
    }
}

/// The `dropship deploy …` lines of a README's shell blocks (continuation lines joined).
fn deploy_commands(readme: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_shell = false;
    let mut pending = String::new();
    for line in readme.lines() {
        let trimmed = line.trim();
        if let Some(lang) = trimmed.strip_prefix("```") {
            in_shell = !in_shell && matches!(lang, "sh" | "bash" | "shell");
            continue;
        }
        if !in_shell {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let full = std::mem::take(&mut pending);
        if !full.starts_with('#') && full.contains("dropship deploy ") {
            commands.push(full);
        }
    }
    commands
}

#[test]
fn every_deploy_command_in_the_examples_readmes_passes_check() {
    let project = project();
    let root = project.path();
    // `dropship` on the PATH of the commands: deploy becomes check, nothing else changes.
    let bin = root.join(".bin");
    fs::create_dir_all(&bin).unwrap();
    let wrapper = bin.join("dropship");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ \"$1\" = deploy ]; then shift; set -- check \"$@\"; fi\nexec '{BIN}' \"$@\"\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());

    for dir in example_dirs(root) {
        let readme = read(&dir.join("README.md"));
        let commands = deploy_commands(&readme);
        assert!(
            !commands.is_empty(),
            "{}/README.md gives no `dropship deploy` command",
            dir.display()
        );
        for line in commands {
            let out = Command::new("bash")
                .args(["-euo", "pipefail", "-c", &line])
                .current_dir(root)
                .env("PATH", &path)
                .env_remove("SSH_AUTH_SOCK")
                .env_remove("DROPSHIP_LOG")
                .output()
                .unwrap();
            let run = Run::from_output(out);
            assert_eq!(
                run.code,
                Some(0),
                "{}/README.md: {line}\n{}",
                dir.display(),
                run.all()
            );
            assert!(
                run.stdout.contains("every template rendered"),
                "{line}\n{}",
                run.all()
            );
        }
    }
}
