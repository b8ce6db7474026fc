//! `deploy --dry-run` and `rollback --dry-run` against real sshd hosts: what would change is
//! shown per host (a masked diff, even of a secret that is only part of a `.env` value), and
//! nothing on any host changes: no file, mtime, lock, audit line, temp file or docker call.

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use crate::harness::{command, dropship, dropship_cmd, start_fleet};

const SECRET_VAR: &str = "DROPSHIP_DRY_RUN_DB";

/// Every entry under `dir` with its kind, size, mode and mtime (nanoseconds), sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            out.push(format!(
                "{} {:o} {} {}.{}",
                path.strip_prefix(dir).unwrap().display(),
                meta.mode(),
                meta.len(),
                meta.mtime(),
                meta.mtime_nsec()
            ));
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A playbook with a `.env` whose secret is part of a value, a config template, a compose
/// file, a guarded `run` of each kind and `compose up`; `db_host` and `port` are the knobs.
fn write_project(dir: &Path) -> std::path::PathBuf {
    fs::write(
        dir.join("env.j2"),
        "APP=shop\nDATABASE_URL=postgres://u:{{ secrets.db }}@{{ db_host }}/x\n",
    )
    .unwrap();
    fs::write(dir.join("app.conf.j2"), "listen {{ port }}\nname shop\n").unwrap();
    fs::write(
        dir.join("docker-compose.yml"),
        "services:\n  web:\n    image: nginx\n",
    )
    .unwrap();
    let playbook = dir.join("dry.toml");
    fs::write(
        &playbook,
        format!(
            r#"name = "Dry"
app = "dry"
hosts = "web"

[vars]
db_host = "db"
port = "80"

[secrets]
db = {{ env = "{SECRET_VAR}" }}

[[steps]]
name = "env"
template = {{ src = "env.j2", dest = "{{{{ app_dir }}}}/.env", mode = "0600" }}

[[steps]]
name = "config"
template = {{ src = "app.conf.j2", dest = "{{{{ app_dir }}}}/app.conf" }}

[[steps]]
name = "compose file"
copy = {{ src = "docker-compose.yml", dest = "{{{{ app_dir }}}}/docker-compose.yml" }}

[[steps]]
name = "seed"
run = "touch seeded"
dir = "{{{{ app_dir }}}}"
creates = "{{{{ app_dir }}}}/seeded"

[[steps]]
name = "migrate"
run = "touch migrated"
dir = "{{{{ app_dir }}}}"
unless = "false"

[[steps]]
name = "up"
compose = {{ command = "up", dir = "{{{{ app_dir }}}}" }}
"#
        ),
    )
    .unwrap();
    playbook
}

fn run(args: &[&str], secret: &str) -> crate::harness::Run {
    let mut cmd = command(args, None);
    cmd.env(SECRET_VAR, secret);
    dropship_cmd(cmd)
}

#[test]
fn a_dry_run_shows_masked_diffs_and_changes_nothing() {
    let fleet = start_fleet(2);
    let inv = fleet.write_inventory("");
    let project = tempfile::tempdir().unwrap();
    let playbook = write_project(project.path());
    let secret = format!("Sup3rS3cret-{}", std::process::id());
    let (inv, pb) = (inv.to_str().unwrap(), playbook.to_str().unwrap());
    run(&["deploy", "-i", inv, pb], &secret).assert_code(0);

    let before: Vec<_> = fleet.hosts.iter().map(|h| listing(&h.root)).collect();
    let docker_before: Vec<_> = fleet.hosts.iter().map(|h| h.docker_log()).collect();
    let report = project.path().join("dry.json");
    let dry = run(
        &[
            "deploy",
            "--dry-run",
            "-i",
            inv,
            pb,
            "--var",
            "db_host=db2",
            "--var",
            "port=8080",
            "--json",
            report.to_str().unwrap(),
        ],
        &secret,
    );
    dry.assert_code(0);
    let json = fs::read_to_string(&report).unwrap();
    for text in [&dry.stdout, &dry.stderr, &json] {
        assert!(!text.contains(&secret), "the secret leaked:\n{}", dry.all());
        assert!(
            !text.contains("Sup3r"),
            "part of the secret leaked:\n{}",
            dry.all()
        );
    }
    let out = &dry.stdout;
    // The `.env` line whose secret is part of the value: both sides masked, the change shown.
    assert!(
        out.contains("-DATABASE_URL=postgres://u:********@db/x"),
        "{}",
        dry.all()
    );
    assert!(
        out.contains("+DATABASE_URL=postgres://u:********@db2/x"),
        "{}",
        dry.all()
    );
    assert!(
        out.contains("-listen 80") && out.contains("+listen 8080"),
        "{out}"
    );
    assert!(out.contains("- compose file: ok:"), "{out}");
    assert!(
        out.contains("- seed: ok:") && out.contains("guard holds"),
        "{out}"
    );
    assert!(
        out.contains("- migrate: would run:")
            && out.contains("guard not evaluated (unless runs a command)"),
        "{out}"
    );
    assert!(out.contains("- up: would run: compose up"), "{out}");
    // The stand-in has no container of the project: the new file's service would be created.
    assert!(
        out.contains("      web: would be created (no container)"),
        "{out}"
    );
    assert!(
        out.contains("dry run: 4 file(s) would change, 4 command(s) would run on 2 host(s)"),
        "{out}"
    );
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["files_changing"], 4);
    let env_file = &doc["hosts"][0]["steps"][0]["files"][0];
    assert_eq!(env_file["change"], "changed");
    assert!(
        env_file["diff"]
            .as_str()
            .unwrap()
            .contains("+DATABASE_URL=postgres://u:********@db2/x"),
        "{json}"
    );

    // The secret rotated: the host's value is one this run does not know, hidden whole.
    let rotated = run(&["deploy", "--dry-run", "-i", inv, pb], "R0tated-pw");
    rotated.assert_code(0);
    assert!(
        rotated
            .stdout
            .contains("-DATABASE_URL=********  # the host's value, hidden"),
        "{}",
        rotated.all()
    );
    assert!(
        rotated
            .stdout
            .contains("+DATABASE_URL=postgres://u:********@db/x"),
        "{}",
        rotated.all()
    );
    assert!(!rotated.all().contains(&secret) && !rotated.all().contains("R0tated"));

    for (i, h) in fleet.hosts.iter().enumerate() {
        assert_eq!(listing(&h.root), before[i], "{} changed", h.name);
        // Docker was only asked questions: the containers' labels, the new file's hashes.
        let log = h.docker_log();
        let asked = log
            .strip_prefix(&docker_before[i])
            .expect("the log only grew");
        for call in asked.lines().map(|l| l.split_once(' ').unwrap().1) {
            assert!(
                call == "compose version"
                    || call.starts_with("ps -a --filter label=com.docker.compose.project=")
                    || (call.starts_with("compose -p ") && call.contains(" config")),
                "{} ran docker {call}",
                h.name
            );
        }
        assert!(!h.root.join(".dropship/lock").exists());
        let audit = fs::read_to_string(h.root.join(".dropship/audit.log")).unwrap();
        assert_eq!(audit.lines().count(), 1, "only the deploy's line: {audit}");
    }
}

#[test]
fn an_unreachable_host_fails_the_dry_run_and_the_others_are_still_shown() {
    let mut fleet = start_fleet(2);
    let inv = fleet.write_inventory("");
    let project = tempfile::tempdir().unwrap();
    let playbook = write_project(project.path());
    fleet.host_mut("h2").stop();
    let dry = run(
        &[
            "deploy",
            "--dry-run",
            "-i",
            inv.to_str().unwrap(),
            playbook.to_str().unwrap(),
        ],
        "pw-unreachable",
    );
    dry.assert_code(1);
    assert!(dry.stdout.contains("h2\n  FAILED: "), "{}", dry.all());
    // A fresh host: every file is new, shown added.
    assert!(dry.stdout.contains("+++ "), "{}", dry.all());
    assert!(dry.stdout.contains("(new, mode 0600)"), "{}", dry.all());
    assert!(dry.stdout.contains("+APP=shop"), "{}", dry.all());
    assert!(!dry.all().contains("pw-unreachable"), "{}", dry.all());
    assert!(
        fs::read_dir(&fleet.host("h1").root)
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn a_rollback_dry_run_names_the_release_and_changes_nothing() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let dir = fleet.dir.path();
    fs::write(dir.join("version.txt"), "1\n").unwrap();
    let pb = dir.join("rel.toml");
    fs::write(
        &pb,
        "name = \"Rel\"\napp = \"rel\"\nhosts = \"web\"\n\n[release]\nroot = \"{{ app_dir }}\"\nprune_images = false\n\n[[steps]]\nname = \"version\"\ncopy = { src = \"version.txt\", dest = \"{{ release.dir }}/version.txt\" }\n\n[[steps]]\nname = \"up\"\ncompose = { command = \"up\", dir = \"{{ release.dir }}\" }\n",
    )
    .unwrap();
    let args = |cmd: &str, extra: &[&str]| {
        let mut a = vec![
            cmd.to_string(),
            "-i".into(),
            inv.display().to_string(),
            pb.display().to_string(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let call = |a: Vec<String>| {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        dropship(&refs, None)
    };
    call(args("deploy", &[])).assert_code(0);
    let h = fleet.host("h1");
    let first = fs::read_link(h.root.join("current")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    call(args("deploy", &[])).assert_code(0);
    let first = first.file_name().unwrap().to_string_lossy().into_owned();

    let before = listing(&h.root);
    let docker_before = h.docker_log();
    let dry = call(args("rollback", &["--dry-run"]));
    dry.assert_code(0);
    assert!(
        dry.stdout
            .contains(&format!("would roll back: current → {first}")),
        "{}",
        dry.all()
    );
    assert!(
        dry.stdout.contains("- up: would run: compose up"),
        "{}",
        dry.all()
    );
    assert_eq!(listing(&h.root), before);
    assert_eq!(h.docker_log(), docker_before);

    let missing = call(args("rollback", &["--dry-run", "--to", "nope"]));
    missing.assert_code(1);
    assert!(
        missing.stdout.contains("release nope is not on this host"),
        "{}",
        missing.all()
    );
    assert_eq!(listing(&h.root), before);
}

#[test]
fn a_release_dry_run_diffs_each_release_file_against_the_current_release() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let dir = fleet.dir.path();
    fs::write(dir.join("app.conf.j2"), "listen {{ port }}\nname shop\n").unwrap();
    fs::write(dir.join("motd.j2"), "welcome\n").unwrap();
    let pb = dir.join("rel.toml");
    fs::write(
        &pb,
        "name = \"Rel\"\napp = \"rel\"\nhosts = \"web\"\n\n[vars]\nport = \"80\"\n\n[release]\nroot = \"{{ app_dir }}\"\nprune_images = false\n\n\
         [[steps]]\nname = \"config\"\ntemplate = { src = \"app.conf.j2\", dest = \"{{ release.dir }}/conf/app.conf\" }\n\n\
         [[steps]]\nname = \"motd\"\ntemplate = { src = \"motd.j2\", dest = \"{{ release.dir }}/motd\" }\n\n\
         [[steps]]\nname = \"outside\"\ntemplate = { src = \"motd.j2\", dest = \"{{ app_dir }}/motd\" }\n\n\
         [[steps]]\nname = \"up\"\ncompose = { command = \"up\", dir = \"{{ release.dir }}\" }\n",
    )
    .unwrap();
    let (inv, pb) = (inv.to_str().unwrap(), pb.to_str().unwrap());
    dropship(&["deploy", "-i", inv, pb], None).assert_code(0);
    let h = fleet.host("h1");
    let current = fs::read_link(h.root.join("current")).unwrap();
    let current = current.file_name().unwrap().to_string_lossy().into_owned();

    let before = listing(&h.root);
    let dry = dropship(
        &["deploy", "--dry-run", "-i", inv, pb, "--var", "port=8080"],
        None,
    );
    dry.assert_code(0);
    let out = &dry.stdout;
    assert!(
        out.contains(&format!(
            "the new release's files compared with release {current} (current)"
        )),
        "{}",
        dry.all()
    );
    assert!(
        out.contains("dry run: 1 file(s) would change"),
        "{}",
        dry.all()
    );
    assert!(
        out.contains("-listen 80\n") && out.contains("+listen 8080\n"),
        "{}",
        dry.all()
    );
    assert!(out.contains("/conf/app.conf (changed)"), "{}", dry.all());
    assert!(
        out.contains("- motd: ok:") && out.contains("- outside: ok:"),
        "{}",
        dry.all()
    );
    assert!(!out.contains("(new"), "{}", dry.all());
    assert_eq!(listing(&h.root), before);
}
