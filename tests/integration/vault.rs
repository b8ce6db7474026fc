//! The encrypted secrets file through the real binary: every `dropship secrets` subcommand,
//! where a value may appear (only `get`'s stdout), `edit`'s private temp file on every way
//! out, a wrong identity or a tampered vault as bad input, and a deploy reading `{ vault = … }`.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{
    ArgvWatch, Run, Watched, assert_untouched, command, dropship_cmd, location_of, read,
    read_or_empty, start_fleet, unique, wait_until, write,
};

/// A project directory with its own HOME (so `~/.config/dropship/age.key` is the test's).
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Project {
        Project {
            dir: tempfile::Builder::new()
                .prefix("dropship-vault-test-")
                .tempdir()
                .unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn vault(&self) -> PathBuf {
        self.path().join("secrets.age")
    }

    fn default_key(&self) -> PathBuf {
        self.path().join("home/.config/dropship/age.key")
    }

    /// `dropship ARGS` run in the project, HOME inside it, no identity or editor from the
    /// developer's environment.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = command(args, None);
        cmd.current_dir(self.path())
            .env("HOME", self.path().join("home"))
            .env_remove("DROPSHIP_AGE_KEY_FILE")
            .env_remove("DROPSHIP_AGE_KEY")
            .env_remove("DROPSHIP_VAULT")
            .env_remove("VISUAL")
            .env_remove("EDITOR")
            .env_remove("XDG_RUNTIME_DIR");
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        dropship_cmd(self.command(args))
    }

    /// `dropship secrets set NAME` with `value` on stdin.
    fn set(&self, name: &str, value: &str) -> Run {
        let mut cmd = self.command(&["secrets", "set", name]);
        cmd.stdin(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(value.as_bytes())
            .unwrap();
        crate::harness::finish(child)
    }

    /// `dropship secrets edit` with EDITOR a script running `body` (`$1` is the file); the
    /// script first records the file's path and the modes of it and its directory in `edit.log`.
    fn edit_command(&self, body: &str) -> Command {
        let script = write(
            self.path(),
            "editor.sh",
            &format!(
                "#!/bin/sh\nprintf '%s %s %s\\n' \"$1\" \"$(stat -c %a \"$1\")\" \"$(stat -c %a \"$(dirname \"$1\")\")\" > {}\n{body}\n",
                self.path().join("edit.log").display()
            ),
        );
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut cmd = self.command(&["secrets", "edit"]);
        cmd.env("EDITOR", &script);
        cmd
    }

    /// What the editor script recorded: the temp file, its mode, its directory's mode.
    fn edited(&self) -> (PathBuf, String, String) {
        let log = read(&self.path().join("edit.log"));
        let mut words = log.split_whitespace();
        let (file, mode, dir_mode) = (words.next(), words.next(), words.next());
        (
            PathBuf::from(file.unwrap()),
            mode.unwrap().to_string(),
            dir_mode.unwrap().to_string(),
        )
    }

    /// Asserts the temp file and its private directory are gone.
    #[track_caller]
    fn assert_temp_removed(&self) {
        let (file, mode, dir_mode) = self.edited();
        assert_eq!((mode.as_str(), dir_mode.as_str()), ("600", "700"));
        assert!(!file.exists(), "{} left behind", file.display());
        assert!(
            !file.parent().unwrap().exists(),
            "{} left behind",
            file.parent().unwrap().display()
        );
        std::fs::remove_file(self.path().join("edit.log")).unwrap();
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[track_caller]
fn assert_no_value(run: &Run, values: &[&str]) {
    let all = run.all();
    for v in values {
        assert!(!all.contains(v), "value `{v}` in the output:\n{all}");
    }
}

#[test]
fn every_secrets_subcommand_keeps_the_value_out_of_output_and_command_lines() {
    let p = Project::new();
    let value = unique("vault-value-");
    let edited_value = unique("edited-value-");

    let init = p.run(&["secrets", "init"]);
    init.assert_code(0);
    assert!(
        init.stdout.contains("created the identity"),
        "{}",
        init.all()
    );
    assert_eq!(mode(&p.default_key()), 0o600);
    assert_eq!(mode(p.default_key().parent().unwrap()), 0o700);
    let key = read(&p.default_key());
    let vault = std::fs::read(p.vault()).unwrap();
    assert!(vault.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"));
    // The identity's secret half is never printed.
    let secret_line = key
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap();
    assert!(!init.all().contains(secret_line));

    // A second init overwrites neither the vault nor the identity.
    let again = p.run(&["secrets", "init"]);
    again.assert_code(2);
    assert!(again.stderr.contains("already exists"), "{}", again.all());
    assert_eq!(std::fs::read(p.vault()).unwrap(), vault);
    assert_eq!(read(&p.default_key()), key);

    // `set` reads stdin: while it runs (stdin still open, the value already written), no
    // command line on the machine holds the value.
    let mut cmd = p.command(&["secrets", "set", "db_password"]);
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{value}\n").as_bytes()).unwrap();
    let pid = child.id();
    let mut watched = Watched::start(child);
    let watch = ArgvWatch::start();
    std::thread::sleep(Duration::from_millis(300));
    let seen = watch.stop();
    assert!(!watched.ended(), "set ended before stdin was closed");
    seen.assert_hidden(&[&value], "the value");
    assert!(
        seen.saw_in(pid, "secrets set db_password"),
        "never saw `secrets set` running"
    );
    drop(stdin);
    let set = watched.finish();
    set.assert_code(0);
    assert!(set.stderr.contains("added `db_password`"), "{}", set.all());
    assert_no_value(&set, &[&value]);
    assert!(
        !read(&p.vault()).contains(&value),
        "the vault holds the value in clear"
    );

    p.set("api_token", "second").assert_code(0);
    let list = p.run(&["secrets", "list"]);
    list.assert_code(0);
    assert_eq!(list.stdout, "db_password\napi_token\n");
    assert_no_value(&list, &[&value, "second"]);

    let get = p.run(&["secrets", "get", "db_password"]);
    get.assert_code(0);
    // One trailing newline from stdin was trimmed when set; `get` prints the value and one.
    assert_eq!(get.stdout, format!("{value}\n"));
    assert_eq!(get.stderr, "");
    let missing = p.run(&["secrets", "get", "nope"]);
    missing.assert_code(2);
    assert!(
        missing.stderr.contains("has no `nope`"),
        "{}",
        missing.all()
    );
    assert!(missing.stderr.contains("it holds: db_password, api_token"));

    // `edit`: the editor changes one value and adds a secret.
    let edit = dropship_cmd(p.edit_command(&format!(
        "sed -i 's/{value}/{edited_value}/' \"$1\" && echo 'added = \"x\"' >> \"$1\""
    )));
    edit.assert_code(0);
    assert!(edit.stderr.contains("saved"), "{}", edit.all());
    assert_no_value(&edit, &[&value, &edited_value]);
    p.assert_temp_removed();
    let get = p.run(&["secrets", "get", "db_password"]);
    assert_eq!(get.stdout, format!("{edited_value}\n"));
    let list = p.run(&["secrets", "list"]);
    assert_eq!(list.stdout, "db_password\napi_token\nadded\n");

    // An editor that changes nothing leaves the vault's bytes as they were.
    let before = std::fs::read(p.vault()).unwrap();
    let unchanged = dropship_cmd(p.edit_command("true"));
    unchanged.assert_code(0);
    assert!(
        unchanged.stderr.contains("no changes"),
        "{}",
        unchanged.all()
    );
    assert_eq!(std::fs::read(p.vault()).unwrap(), before);
    p.assert_temp_removed();
}

#[test]
fn edit_removes_its_temp_file_when_the_editor_fails_writes_garbage_or_is_interrupted() {
    let p = Project::new();
    p.run(&["secrets", "init"]).assert_code(0);
    p.set("db_password", "kept-value").assert_code(0);
    let before = std::fs::read(p.vault()).unwrap();

    let failed = dropship_cmd(p.edit_command("echo 'x = \"y\"' >> \"$1\"; exit 3"));
    failed.assert_code(2);
    assert!(
        failed
            .stderr
            .contains("failed (exit status: 3); the vault is unchanged"),
        "{}",
        failed.all()
    );
    p.assert_temp_removed();
    assert_eq!(std::fs::read(p.vault()).unwrap(), before);

    let garbage = dropship_cmd(p.edit_command("echo 'broken = ' >> \"$1\""));
    garbage.assert_code(2);
    assert!(
        garbage.stderr.contains("the edited vault: line ")
            && garbage.stderr.contains("the vault is unchanged"),
        "{}",
        garbage.all()
    );
    assert_no_value(&garbage, &["kept-value"]);
    p.assert_temp_removed();
    assert_eq!(std::fs::read(p.vault()).unwrap(), before);

    // Ctrl-C at a terminal signals the whole foreground process group: dropship and the editor.
    // `exec`: no child of the script that a signal sent before its fork would miss (and that
    // would hold the output pipes open).
    let mut cmd = p.edit_command("echo 'x = \"y\"' >> \"$1\"; exec sleep 30");
    cmd.process_group(0);
    let child = cmd.spawn().unwrap();
    let group = child.id() as libc::pid_t;
    let watched = Watched::start(child);
    let log = p.path().join("edit.log");
    // Its whole line written (the redirection creates the file before printf writes it).
    wait_until(Duration::from_secs(10), "the editor to start", || {
        read_or_empty(&log).ends_with('\n')
    });
    let sent = Instant::now();
    // SAFETY: kill(2) on the process group of the child this test spawned.
    unsafe { libc::kill(-group, libc::SIGINT) };
    let interrupted = watched.finish();
    interrupted.assert_code(130);
    assert!(sent.elapsed() < Duration::from_secs(10));
    assert!(
        interrupted
            .stderr
            .contains("interrupted: the vault is unchanged"),
        "{}",
        interrupted.all()
    );
    p.assert_temp_removed();
    assert_eq!(std::fs::read(p.vault()).unwrap(), before);
}

#[test]
fn a_wrong_identity_or_a_tampered_vault_is_bad_input() {
    let p = Project::new();
    p.run(&["secrets", "init"]).assert_code(0);
    p.set("db_password", "the-value").assert_code(0);
    let before = std::fs::read(p.vault()).unwrap();

    // Another identity, from each place one can come from.
    let other = Project::new();
    other.run(&["secrets", "init"]).assert_code(0);
    let other_key = read(&other.default_key());
    let other_line = other_key
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap();
    let other_key_file = other.default_key();
    let ways: [(&str, &str); 2] = [
        ("DROPSHIP_AGE_KEY_FILE", other_key_file.to_str().unwrap()),
        ("DROPSHIP_AGE_KEY", other_line),
    ];
    for (var, value) in ways {
        for args in [
            &["secrets", "get", "db_password"][..],
            &["secrets", "list"],
            &["secrets", "edit"],
        ] {
            let mut cmd = p.command(args);
            cmd.env(var, value).env("EDITOR", "false");
            let run = dropship_cmd(cmd);
            run.assert_code(2);
            assert!(
                run.stderr
                    .contains("was not encrypted for the identity from"),
                "{var} {args:?}\n{}",
                run.all()
            );
            assert!(
                run.stderr
                    .contains("hint: use the identity this vault was made with")
            );
            assert_no_value(&run, &["the-value", other_line]);
        }
    }
    assert_eq!(std::fs::read(p.vault()).unwrap(), before);

    // One changed character in the encrypted body.
    let text = read(&p.vault());
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let at = lines.len() - 2;
    let swapped = if lines[at].starts_with('A') { "B" } else { "A" };
    lines[at].replace_range(0..1, swapped);
    std::fs::write(p.vault(), lines.join("\n") + "\n").unwrap();
    let tampered = p.run(&["secrets", "get", "db_password"]);
    tampered.assert_code(2);
    assert!(
        tampered
            .stderr
            .contains("is corrupted or was tampered with"),
        "{}",
        tampered.all()
    );
    assert!(
        tampered
            .stderr
            .contains("hint: restore it from version control")
    );

    // A vault others can read the identity of is refused like ssh refuses such a key.
    std::fs::write(p.vault(), &before).unwrap();
    std::fs::set_permissions(p.default_key(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let open_key = p.run(&["secrets", "list"]);
    open_key.assert_code(2);
    assert!(
        open_key.stderr.contains("is readable by others"),
        "{}",
        open_key.all()
    );
}

/// A project with its vault at the root and the playbook in `playbooks/`, as `init` lays it out.
fn vault_playbook(p: &Project, extra: &str, secret: &str) -> PathBuf {
    std::fs::create_dir_all(p.path().join("playbooks")).unwrap();
    write(
        &p.path().join("playbooks"),
        "env.j2",
        "DB_PASSWORD={{ secrets.db }}\n",
    );
    write(
        &p.path().join("playbooks"),
        "app.toml",
        &format!(
            "name = \"vault\"\napp = \"vaultapp\"\nhosts = \"web\"\n{extra}\n[secrets]\ndb = {{ vault = \"{secret}\" }}\n\n[[steps]]\nname = \"env file\"\ntemplate = {{ src = \"env.j2\", dest = \"{{{{ app_dir }}}}/.env\", mode = \"0600\" }}\n"
        ),
    )
}

#[test]
fn a_deploy_renders_a_vault_secret_and_masks_it() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let p = Project::new();
    p.run(&["secrets", "init"]).assert_code(0);
    let value = unique("deploy-vault-value-");
    p.set("db_password", &value).assert_code(0);
    let playbook = vault_playbook(&p, "", "db_password");
    // A step whose failure output holds the value: it is shown masked, as any secret's.
    let mut text = read(&playbook);
    text.push_str("\n[[steps]]\nname = \"show it\"\nrun = \"cat {{ app_dir }}/.env; exit 1\"\n");
    std::fs::write(&playbook, text).unwrap();
    let args = [
        "deploy",
        "-i",
        inv.to_str().unwrap(),
        playbook.to_str().unwrap(),
    ];

    let run = p.run(&args);
    run.assert_code(1);
    run.assert_outcome("h1", "env file", "changed");
    run.assert_outcome("h1", "show it", "FAILED");
    assert_eq!(
        read(&fleet.hosts[0].root.join(".env")),
        format!("DB_PASSWORD={value}\n")
    );
    assert!(run.all().contains("DB_PASSWORD=********"), "{}", run.all());
    assert_no_value(&run, &[&value]);
    let check = p.run(&[
        "check",
        "-i",
        inv.to_str().unwrap(),
        playbook.to_str().unwrap(),
    ]);
    check.assert_code(0);
    assert_no_value(&check, &[&value]);
}

#[test]
fn vault_problems_in_a_playbook_are_bad_input_before_any_connection() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let p = Project::new();
    p.run(&["secrets", "init"]).assert_code(0);
    p.set("db_password", "v").assert_code(0);

    // A name the vault does not hold: the error points at the entry, with a suggestion.
    let playbook = vault_playbook(&p, "", "db_pasword");
    let run = p.run(&[
        "deploy",
        "-i",
        inv.to_str().unwrap(),
        playbook.to_str().unwrap(),
    ]);
    run.assert_code(2);
    crate::harness::assert_error_at(
        &run,
        &location_of(&playbook, "{ vault = "),
        "secret `db`: the vault `",
    );
    assert!(run.stderr.contains("has no `db_pasword`"), "{}", run.all());
    assert!(
        run.stderr.contains("did you mean `db_password`?"),
        "{}",
        run.all()
    );

    // `[secrets_vault] file` naming a missing file: the error points at it.
    let playbook = vault_playbook(
        &p,
        "\n[secrets_vault]\nfile = \"../vaults/prod.age\"\n",
        "db_password",
    );
    let run = p.run(&[
        "deploy",
        "-i",
        inv.to_str().unwrap(),
        playbook.to_str().unwrap(),
    ]);
    run.assert_code(2);
    crate::harness::assert_error_at(
        &run,
        &location_of(&playbook, "\"../vaults/prod.age\""),
        "cannot read the vault `",
    );
    assert!(
        run.stderr.contains("key: `secrets_vault.file`"),
        "{}",
        run.all()
    );

    // ... and once it exists there, it is the one read.
    std::fs::create_dir_all(p.path().join("vaults")).unwrap();
    let mut init = p.command(&["secrets", "--vault", "vaults/prod.age", "init"]);
    init.env("DROPSHIP_AGE_KEY_FILE", p.default_key());
    dropship_cmd(init).assert_code(0);
    let mut set = p.command(&["secrets", "set", "db_password"]);
    set.env("DROPSHIP_VAULT", "vaults/prod.age")
        .stdin(Stdio::piped());
    let mut child = set.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"from-prod").unwrap();
    crate::harness::finish(child).assert_code(0);
    let check = p.run(&[
        "check",
        "-i",
        inv.to_str().unwrap(),
        playbook.to_str().unwrap(),
    ]);
    check.assert_code(0);

    // A wrong identity: bad input, nothing touched.
    let other = Project::new();
    other.run(&["secrets", "init"]).assert_code(0);
    let mut cmd = p.command(&[
        "deploy",
        "-i",
        inv.to_str().unwrap(),
        playbook.to_str().unwrap(),
    ]);
    cmd.env("DROPSHIP_AGE_KEY_FILE", other.default_key());
    let run = dropship_cmd(cmd);
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("was not encrypted for the identity from"),
        "{}",
        run.all()
    );
    assert_untouched(&fleet);
}
