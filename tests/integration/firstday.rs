//! A first day with the real binary: `init` scaffolds a project that passes `check` and never
//! overwrites a file; shell completions and the man page.

use std::path::{Path, PathBuf};

use crate::harness::{command, dropship, dropship_cmd, files_in, read};

/// Every file under `dir`, relative to it, sorted.
fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn init_scaffolds_a_project_that_passes_check() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("myapp");
    let run = dropship(&["init", dir.to_str().unwrap()], None);
    run.assert_code(0);

    let files = all_files(&dir);
    let expected = [
        ".fleet/secrets/django_secret_key",
        ".fleet/secrets/postgres_password",
        ".fleet/secrets/registry_password",
        ".gitignore",
        "inventory/local.toml",
        "inventory/production.toml",
        "playbooks/deploy.toml",
        "templates/docker-compose.yml.j2",
        "templates/env.j2",
        "templates/nginx.conf.j2",
    ];
    assert_eq!(
        files,
        expected.iter().map(PathBuf::from).collect::<Vec<_>>(),
        "{}",
        run.all()
    );
    // The example's files are the repository's own.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(
        read(&dir.join("playbooks/deploy.toml")),
        read(&repo.join("playbooks/deploy.toml"))
    );
    assert_eq!(
        read(&dir.join("templates/env.j2")),
        read(&repo.join("templates/env.j2"))
    );
    // Placeholder secrets: private, random, kept out of git.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.join(".fleet")), 0o700);
    assert_eq!(mode(&dir.join(".fleet/secrets/postgres_password")), 0o600);
    assert_ne!(
        read(&dir.join(".fleet/secrets/postgres_password")),
        read(&dir.join(".fleet/secrets/django_secret_key"))
    );
    let gitignore = read(&dir.join(".gitignore"));
    for pattern in [".fleet/", "*.key", ".env"] {
        assert!(
            gitignore.lines().any(|l| l == pattern),
            "{pattern}: {gitignore}"
        );
    }
    // Next steps: three commands, the first one runnable from where init was run.
    let next: Vec<&str> = run
        .stdout
        .split("next:\n")
        .nth(1)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert_eq!(next.len(), 3, "{}", run.stdout);
    assert!(next[0].starts_with(&format!("cd {} && dropship check ", dir.display())));
    assert_eq!(next[1], "dropship secrets init");
    assert!(next[2].starts_with("dropship deploy -i inventory/production.toml"));

    // Both inventories check, run from inside the project as the next steps say.
    for inventory in ["inventory/production.toml", "inventory/local.toml"] {
        let mut cmd = command(&["check", "-i", inventory, "playbooks/deploy.toml"], None);
        cmd.current_dir(&dir);
        let check = dropship_cmd(cmd);
        check.assert_code(0);
        assert!(
            check.stdout.contains("every template rendered"),
            "{}",
            check.all()
        );
    }
}

#[test]
fn init_over_one_existing_file_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("templates")).unwrap();
    std::fs::write(dir.path().join("templates/env.j2"), "mine\n").unwrap();
    let run = dropship(&["init", dir.path().to_str().unwrap()], None);
    run.assert_code(2);
    let conflict = dir.path().join("templates/env.j2");
    assert!(
        run.stderr.starts_with(&format!(
            "error: `{}` already exists; `init` overwrites nothing, so it wrote nothing",
            conflict.display()
        )),
        "{}",
        run.all()
    );
    assert!(run.stderr.contains("hint: "), "{}", run.all());
    assert_eq!(all_files(dir.path()), [PathBuf::from("templates/env.j2")]);
    assert_eq!(read(&conflict), "mine\n");
    assert!(files_in(&dir.path().join("templates")).len() == 1);

    // A file where the directory should be.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let run = dropship(&["init", file.to_str().unwrap()], None);
    run.assert_code(2);
    assert!(run.stderr.contains("is not a directory"), "{}", run.all());
}

#[test]
fn completions_for_each_shell_and_a_man_page() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef dropship"),
        ("fish", "complete -c dropship"),
    ] {
        let run = dropship(&["completions", shell], None);
        run.assert_code(0);
        assert!(run.stdout.contains(marker), "{shell}:\n{}", run.all());
        // The commands added last are there too.
        for word in ["deploy", "secrets", "init"] {
            assert!(run.stdout.contains(word), "{shell}: no `{word}`");
        }
    }
    let bad = dropship(&["completions", "tcsh"], None);
    bad.assert_code(2);

    let man = dropship(&["man"], None);
    man.assert_code(0);
    assert!(
        man.stdout.starts_with(".TH dropship 1 "),
        "{}",
        &man.stdout[..200]
    );
    assert!(
        man.stdout.contains("dropship\\-deploy(1)"),
        "{}",
        man.stdout
    );
    let page = dropship(&["man", "deploy"], None);
    page.assert_code(0);
    assert!(
        page.stdout.starts_with(".TH dropship-deploy 1 "),
        "{}",
        page.all()
    );
    assert!(page.stdout.contains("\\-\\-inventory"), "{}", page.stdout);
    let unknown = dropship(&["man", "deplo"], None);
    unknown.assert_code(2);
    assert!(
        unknown.stderr.contains("no command `deplo`"),
        "{}",
        unknown.all()
    );
}
