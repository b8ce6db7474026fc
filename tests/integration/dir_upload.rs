//! `copy`/`template` of a directory against real sshd: recursive upload with modes kept, an
//! unchanged redeploy that writes nothing, one changed file rewritten alone, `delete` taking
//! only what the source lacks (never through a symlink, never outside `dest`), hostile names,
//! `become` with `owner`, `[release]`, templates with secrets, and input refused before any
//! host is touched.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::{
    Fleet, Run, SudoUser, all_cmdlines, command, finish, finish_within, logins, run_playbook,
    start_fleet, wait_until, write,
};

/// Writes `text` at `dir/rel` (parents made) with `mode`.
fn put(dir: &Path, rel: &str, text: &str, mode: u32) {
    let path = dir.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Every entry under `root` (relative, `/`-separated; symlinks not followed) with its inode.
fn inodes(root: &Path) -> BTreeMap<String, u64> {
    let mut found = BTreeMap::new();
    let mut todo = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = todo.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let meta = fs::symlink_metadata(entry.path()).unwrap();
            if meta.is_dir() {
                todo.push((entry.path(), rel.clone()));
            }
            found.insert(rel, meta.ino());
        }
    }
    found
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// The detail of `step` on `host` in the plain output: what follows `STEP (`.
fn detail(run: &Run, host: &str, step: &str) -> String {
    let text = run.host_text(host);
    let start = format!("{step} (");
    text.lines()
        .find_map(|l| {
            l.split_once(&start)
                .map(|(_, d)| d.trim_end_matches(')').to_string())
        })
        .unwrap_or_else(|| panic!("no detail for `{step}`\n{}", run.all()))
}

/// A build context of `many` small files besides a few with their own modes: enough files
/// that the upload script is far longer than a command line may be (it travels on stdin).
fn build_context(dir: &Path, many: usize) {
    put(dir, "Dockerfile", "FROM scratch\nCOPY . /\n", 0o644);
    put(dir, "bin/entrypoint.sh", "#!/bin/sh\nexec \"$@\"\n", 0o755);
    put(dir, ".env.example", "KEY=value\n", 0o600);
    put(dir, "src/app/main.py", "print('hi')\n", 0o644);
    fs::create_dir_all(dir.join("empty")).unwrap();
    for i in 0..many {
        put(
            dir,
            &format!("static/asset-{i:03}.css"),
            &format!("/* {i} */\n"),
            0o644,
        );
    }
}

#[test]
fn a_directory_is_uploaded_with_its_modes_then_ok_then_only_the_changed_file_is_rewritten() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let context = fleet.dir.path().join("context");
    build_context(&context, 150);
    let pb = fleet.write_playbook(
        "dir.toml",
        "Dir",
        "dir",
        &format!(
            "[[steps]]\nname = \"context\"\ncopy = {{ src = \"{}/\", dest = \"{{{{ app_dir }}}}/build\" }}\n\
             on_change = {{ run = \"echo fired >> {{{{ app_dir }}}}/fired\" }}\n",
            context.display()
        ),
    );
    let host = fleet.host("h1");
    let build = host.root.join("build");
    let total = 154;

    let run = run_playbook("deploy", &inv, &pb);
    run.assert_code(0);
    run.assert_outcome("h1", "context", "changed");
    assert_eq!(
        detail(&run, "h1", "context"),
        format!("{}/: {total} of {total} files changed", build.display())
    );
    assert_eq!(
        fs::read_to_string(build.join("bin/entrypoint.sh")).unwrap(),
        "#!/bin/sh\nexec \"$@\"\n"
    );
    assert_eq!(mode_of(&build.join("bin/entrypoint.sh")), 0o755);
    assert_eq!(mode_of(&build.join(".env.example")), 0o600);
    assert_eq!(mode_of(&build.join("Dockerfile")), 0o644);
    assert_eq!(
        fs::read_to_string(build.join("static/asset-149.css")).unwrap(),
        "/* 149 */\n"
    );
    for dir in ["", "bin", "src", "src/app", "static", "empty"] {
        assert_eq!(mode_of(&build.join(dir)), 0o755, "{dir:?}");
    }
    assert_eq!(
        fs::read_to_string(host.root.join("fired")).unwrap(),
        "fired\n"
    );
    let local: Vec<String> = inodes(&context).into_keys().collect();
    let first = inodes(&build);
    assert_eq!(
        first.keys().cloned().collect::<Vec<_>>(),
        local,
        "exactly the source's entries, no temporary leftovers"
    );

    // Unchanged: nothing written, the handler not fired, one line `ok`.
    let run = run_playbook("deploy", &inv, &pb);
    run.assert_code(0);
    run.assert_outcome("h1", "context", "ok");
    assert_eq!(inodes(&build), first);
    assert_eq!(
        fs::read_to_string(host.root.join("fired")).unwrap(),
        "fired\n"
    );

    // One file changed (its mode too): only it is rewritten.
    put(&context, "src/app/main.py", "print('hello')\n", 0o750);
    let run = run_playbook("deploy", &inv, &pb);
    run.assert_code(0);
    run.assert_outcome("h1", "context", "changed");
    assert_eq!(
        detail(&run, "h1", "context"),
        format!("{}/: 1 of {total} files changed", build.display())
    );
    let third = inodes(&build);
    for (rel, ino) in &first {
        if rel == "src/app/main.py" {
            assert_ne!(third[rel], *ino, "the changed file is a new file");
        } else {
            assert_eq!(third[rel], *ino, "{rel} was rewritten");
        }
    }
    assert_eq!(mode_of(&build.join("src/app/main.py")), 0o750);
    assert_eq!(
        fs::read_to_string(host.root.join("fired")).unwrap(),
        "fired\nfired\n"
    );

    // `check` counts the files without connecting.
    let check = run_playbook("check", &inv, &pb);
    check.assert_code(0);
    assert!(
        check
            .stdout
            .contains(&format!("directory {}/ ({total} files,", build.display())),
        "{}",
        check.all()
    );
}

#[test]
fn delete_removes_what_the_source_lacks_and_nothing_outside_dest() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let src = fleet.dir.path().join("site");
    put(&src, "index.html", "new\n", 0o644);
    put(&src, "css/site.css", "body{}\n", 0o644);
    let host = fleet.host("h1");
    let dest = host.root.join("www");
    // On the host: what a former version left, a symlink leading out, and a neighbour.
    put(&dest, "old.html", "old\n", 0o644);
    put(&dest, "stale/deep/x.js", "x\n", 0o644);
    put(&dest, "css/old.css", "old\n", 0o644);
    let outside = host.root.join("outside");
    put(&outside, "victim", "keep me\n", 0o644);
    std::os::unix::fs::symlink(&outside, dest.join("link")).unwrap();
    put(&host.root, "www-neighbour", "keep me too\n", 0o644);
    let playbook = |delete: bool| {
        fleet.write_playbook(
            "site.toml",
            "Site",
            "site",
            &format!(
                "[[steps]]\nname = \"site\"\ncopy = {{ src = \"{}\", dest = \"{{{{ app_dir }}}}/www/\", delete = {delete} }}\n",
                src.display()
            ),
        )
    };

    // Without `delete` (the default) everything else stays.
    let run = run_playbook("deploy", &inv, &playbook(false));
    run.assert_code(0);
    assert!(dest.join("old.html").exists() && dest.join("stale/deep/x.js").exists());

    let run = run_playbook("deploy", &inv, &playbook(true));
    run.assert_code(0);
    run.assert_outcome("h1", "site", "changed");
    let shown = detail(&run, "h1", "site");
    assert!(
        shown.starts_with(&format!(
            "{}/: 0 of 2 files changed, 6 removed (",
            dest.display()
        )),
        "{shown}"
    );
    for name in ["\"old.html\"", "\"link\"", "\"css/old.css\""] {
        assert!(shown.contains(name), "{name} in {shown}");
    }
    let left: Vec<String> = inodes(&dest).into_keys().collect();
    assert_eq!(left, ["css", "css/site.css", "index.html"]);
    assert_eq!(
        fs::read_to_string(outside.join("victim")).unwrap(),
        "keep me\n"
    );
    assert!(outside.is_dir());
    assert!(host.root.join("www-neighbour").exists());

    let run = run_playbook("deploy", &inv, &playbook(true));
    run.assert_code(0);
    run.assert_outcome("h1", "site", "ok");
}

/// Names a shell would take for code or options, and names with newlines: all data.
const HOSTILE: &[&str] = &[
    "a b",
    "-rf",
    "$(touch pwned)",
    "`touch pwned`",
    "new\nline",
    "quote'\"",
    "back\\slash",
    "semi;colon&",
    "-sub dir/--x",
    "*",
];

#[test]
fn hostile_names_are_data_uploaded_compared_and_removed() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let src = fleet.dir.path().join("hostile");
    for (i, name) in HOSTILE.iter().enumerate() {
        put(&src, name, &format!("{i}\n"), 0o644);
    }
    let host = fleet.host("h1");
    let dest = host.root.join("-dest $(touch pwned)");
    // Extras with hostile names too, for `delete`.
    put(&dest, "-stale\nname", "x", 0o644);
    put(&dest, "$(touch pwned)-old/x", "x", 0o644);
    let pb = fleet.write_playbook(
        "hostile.toml",
        "Hostile",
        "hostile",
        &format!(
            "[[steps]]\nname = \"names\"\ncopy = {{ src = {:?}, dest = \"{{{{ app_dir }}}}/-dest $(touch pwned)\", delete = true }}\n",
            src.display().to_string()
        ),
    );
    let run = run_playbook("deploy", &inv, &pb);
    run.assert_code(0);
    run.assert_outcome("h1", "names", "changed");
    for (i, name) in HOSTILE.iter().enumerate() {
        assert_eq!(
            fs::read_to_string(dest.join(name)).unwrap(),
            format!("{i}\n"),
            "{name:?}"
        );
    }
    let mut expected: Vec<String> = HOSTILE.iter().map(|n| n.to_string()).collect();
    expected.push("-sub dir".into());
    expected.sort();
    let left: Vec<String> = inodes(&dest).into_keys().collect();
    assert_eq!(left, expected);
    let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
    let pwned: Vec<PathBuf> = [
        fleet.dir.path(),
        host.root.as_path(),
        &home,
        Path::new("/tmp"),
    ]
    .into_iter()
    .map(|d| d.join("pwned"))
    .filter(|p| p.exists())
    .collect();
    assert!(pwned.is_empty(), "a name ran as code in {pwned:?}");
    // Every name, the newline one among them, is recognised unchanged the next time.
    let run = run_playbook("deploy", &inv, &pb);
    run.assert_code(0);
    run.assert_outcome("h1", "names", "ok");
}

#[test]
fn a_templated_directory_renders_every_file_and_keeps_secrets_out_of_the_output() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let src = fleet.dir.path().join("conf.d");
    // A file names another beside it (`{% include %}`): both are rendered and placed.
    put(
        &src,
        "app.conf",
        "{% include \"_common.j2\" %}host={{ host.name }}\n",
        0o644,
    );
    put(&src, "_common.j2", "app={{ app }}\n", 0o644);
    put(
        &src,
        "secret/db.env",
        "DB_PASSWORD={{ secrets.db }}\n",
        0o600,
    );
    let pb = fleet.write_playbook(
        "tpl.toml",
        "Tpl",
        "tpl",
        &format!(
            "[secrets]\ndb = {{ env = \"DIR_TEST_DB\" }}\n\n[[steps]]\nname = \"conf\"\ntemplate = {{ src = \"{}\", dest = \"{{{{ app_dir }}}}/conf.d\" }}\n",
            src.display()
        ),
    );
    let secret = "s3cr3t-for-dir-upload";
    let run_with = |cmd: &str| {
        let mut c = command(
            &[cmd, "-i", inv.to_str().unwrap(), pb.to_str().unwrap()],
            None,
        );
        c.env("DIR_TEST_DB", secret);
        finish(c.spawn().unwrap())
    };
    let check = run_with("check");
    check.assert_code(0);
    assert!(
        check.stdout.contains("3 files,") && check.stdout.contains("1 hold secrets"),
        "{}",
        check.all()
    );
    let run = run_with("deploy");
    run.assert_code(0);
    run.assert_outcome("h1", "conf", "changed");
    let dest = fleet.host("h1").root.join("conf.d");
    assert_eq!(
        fs::read_to_string(dest.join("app.conf")).unwrap(),
        "app=tpl\nhost=h1\n"
    );
    assert_eq!(
        fs::read_to_string(dest.join("secret/db.env")).unwrap(),
        format!("DB_PASSWORD={secret}\n")
    );
    assert_eq!(mode_of(&dest.join("secret/db.env")), 0o600);
    for out in [&check, &run] {
        assert!(!out.all().contains(secret), "{}", out.all());
    }
}

#[test]
fn with_become_and_owner_files_and_made_directories_belong_to_the_owner() {
    let fleet = start_fleet(1);
    let user = SudoUser::create();
    let inv = fleet.inventory_for_user(&user.name);
    let src = fleet.dir.path().join("rootctx");
    put(&src, "etc/app.conf", "x=1\n", 0o640);
    put(&src, "run.sh", "#!/bin/sh\n", 0o755);
    let pb = fleet.write(
        "become.toml",
        &format!(
            "name = \"b\"\napp = \"b\"\n\n{}[[steps]]\nname = \"ctx\"\ncopy = {{ src = \"{}\", dest = \"{{{{ out }}}}/root-owned\", owner = \"root\", group = \"root\", dir_mode = \"0750\" }}\nbecome = true\n",
            user.become_vars(),
            src.display()
        ),
    );
    let deploy = || {
        let mut cmd = command(
            &["deploy", "-i", inv.to_str().unwrap(), pb.to_str().unwrap()],
            None,
        );
        cmd.env("DROPSHIP_TEST_SUDO_PW", &user.password);
        finish(cmd.spawn().expect("spawn dropship"))
    };
    let run = deploy();
    run.assert_code(0);
    run.assert_outcome("h1", "ctx", "changed");
    let dest = user.scratch.join("root-owned");
    for (rel, mode) in [
        ("", 0o750),
        ("etc", 0o750),
        ("etc/app.conf", 0o640),
        ("run.sh", 0o755),
    ] {
        let meta = fs::metadata(dest.join(rel)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "{rel:?}");
        assert_eq!(meta.mode() & 0o7777, mode, "{rel:?}");
    }
    let run = deploy();
    run.assert_code(0);
    run.assert_outcome("h1", "ctx", "ok");
}

#[test]
fn a_directory_goes_into_each_release() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let src = fleet.dir.path().join("ctx");
    put(&src, "a.txt", "one\n", 0o644);
    put(&src, "sub/b.sh", "#!/bin/sh\n", 0o755);
    let pb = fleet.write(
        "rel.toml",
        &format!(
            "name = \"Rel\"\napp = \"rel\"\nhosts = \"web\"\n\n[release]\nroot = \"{{{{ app_dir }}}}\"\nprune_images = false\n\n\
             [[steps]]\nname = \"ctx\"\ncopy = {{ src = \"{}\", dest = \"{{{{ release.dir }}}}/ctx\" }}\n",
            src.display()
        ),
    );
    let run = run_playbook("deploy", &inv, &pb);
    run.assert_code(0);
    run.assert_outcome("h1", "ctx", "changed");
    let current = fleet.host("h1").root.join("current/ctx");
    assert_eq!(fs::read_to_string(current.join("a.txt")).unwrap(), "one\n");
    assert_eq!(mode_of(&current.join("sub/b.sh")), 0o755);
    let first = fs::read_link(fleet.host("h1").root.join("current")).unwrap();
    // A changed file makes a new release holding the whole directory.
    put(&src, "a.txt", "two\n", 0o644);
    std::thread::sleep(Duration::from_millis(5));
    run_playbook("deploy", &inv, &pb).assert_code(0);
    let second = fs::read_link(fleet.host("h1").root.join("current")).unwrap();
    assert_ne!(first, second);
    assert_eq!(fs::read_to_string(current.join("a.txt")).unwrap(), "two\n");
    assert!(current.join("sub/b.sh").exists());
}

/// Asserts exit 2 with `message` on stderr and that no host was logged into.
#[track_caller]
fn assert_refused(fleet: &Fleet, run: &Run, message: &str) {
    run.assert_code(2);
    assert!(
        run.stderr.contains(message),
        "expected `{message}`\n{}",
        run.all()
    );
    std::thread::sleep(Duration::from_millis(50));
    for h in &fleet.hosts {
        assert_eq!(
            logins(&h.sshd_log()),
            0,
            "{} was logged into\n{}",
            h.name,
            run.all()
        );
    }
}

#[test]
fn bad_directories_and_keys_are_refused_before_any_host_is_touched() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let top = fleet.dir.path();
    let step = |src: &Path, extra: &str| -> PathBuf {
        fleet.write_playbook(
            "bad.toml",
            "Bad",
            "bad",
            &format!(
                "[[steps]]\nname = \"ctx\"\ncopy = {{ src = \"{}\", dest = \"{{{{ app_dir }}}}/ctx\"{extra} }}\n",
                src.display()
            ),
        )
    };
    let deploy = |pb: &Path| run_playbook("deploy", &inv, pb);

    let linked = top.join("linked");
    put(&linked, "ok.txt", "x", 0o644);
    std::os::unix::fs::symlink("/etc/passwd", linked.join("passwd")).unwrap();
    assert_refused(
        &fleet,
        &deploy(&step(&linked, "")),
        "`passwd` is a symlink: a directory step uploads regular files and directories only",
    );

    let fifo = top.join("fifo");
    fs::create_dir_all(&fifo).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(fifo.join("pipe"))
        .status()
        .unwrap();
    assert!(made.success());
    assert_refused(
        &fleet,
        &deploy(&step(&fifo, "")),
        "`pipe` is not a regular file",
    );

    let plain = write(top, "plain.txt", "x");
    assert_refused(
        &fleet,
        &deploy(&step(&plain, ", delete = true")),
        "`delete` is for a directory `src`",
    );

    let many = top.join("many");
    fs::create_dir_all(&many).unwrap();
    for i in 0..=10_000 {
        fs::write(many.join(format!("{i}")), "").unwrap();
    }
    assert_refused(
        &fleet,
        &deploy(&step(&many, "")),
        "it holds more than 10000 files, the most one directory step uploads",
    );

    let fine = top.join("fine");
    put(&fine, "x", "x", 0o644);
    assert_refused(
        &fleet,
        &deploy(&step(&fine, ", dir_mode = \"99\"")),
        "bad file mode `99`",
    );
    let root_dest = fleet.write_playbook(
        "root.toml",
        "Root",
        "root",
        &format!(
            "[[steps]]\nname = \"ctx\"\ncopy = {{ src = \"{}\", dest = \"{{{{ '/' }}}}\", delete = true }}\n",
            fine.display()
        ),
    );
    assert_refused(
        &fleet,
        &deploy(&root_dest),
        "directory destination `/` is `/`",
    );
    let dotdot = fleet.write_playbook(
        "dotdot.toml",
        "Dotdot",
        "dotdot",
        &format!(
            "[[steps]]\nname = \"ctx\"\ncopy = {{ src = \"{}\", dest = \"{{{{ app_dir }}}}/../x\" }}\n",
            fine.display()
        ),
    );
    assert_refused(&fleet, &deploy(&dotdot), "has a `.` or `..` part");
}

/// A session too long for a command line (a directory of many files) goes on stdin behind a
/// loader: aborting the run (SIGTERM) still finds it on the host by its marker and stops what
/// it runs.
#[test]
fn an_aborted_run_stops_a_session_sent_on_stdin() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let context = fleet.dir.path().join("context");
    build_context(&context, 150);
    let sleep_arg = "913";
    let pb = fleet.write_playbook(
        "abort.toml",
        "Abort",
        "abort",
        &format!(
            "[[steps]]\nname = \"context\"\ncopy = {{ src = \"{}\", dest = \"{{{{ app_dir }}}}/build\" }}\n\n\
             [[steps]]\nname = \"long\"\nrun = \"touch {{{{ app_dir }}}}/long-started; sleep {sleep_arg}; touch {{{{ app_dir }}}}/long-done\"\n",
            context.display()
        ),
    );
    let sleeps = || -> Vec<u32> {
        all_cmdlines()
            .into_iter()
            .filter(|(_, c)| c.trim_end() == format!("sleep {sleep_arg}"))
            .map(|(pid, _)| pid)
            .collect()
    };
    let child = command(
        &["deploy", "-i", inv.to_str().unwrap(), pb.to_str().unwrap()],
        None,
    )
    .spawn()
    .unwrap();
    let host = fleet.host("h1");
    wait_until(Duration::from_secs(30), "the long step", || {
        host.root.join("long-started").exists() && !sleeps().is_empty()
    });
    // SAFETY: kill(2) on the pid of the child this test spawned and has not waited for.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let run = finish_within(child, Duration::from_secs(20));
    run.assert_code(130);
    let stopped = (0..40).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        sleeps().is_empty()
    });
    for pid in sleeps() {
        // SAFETY: kill(2) on the `sleep` this test's host started (its unique argument).
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
    assert!(stopped, "the remote sleep was left running\n{}", run.all());
    assert!(!host.root.join("long-done").exists());
    run.assert_outcome("h1", "context", "changed");
}
