//! Provisioning: the `apt` step (against an apt-get stand-in), `become` through a real sudo
//! with a password (which must appear in no process's argv and no output), and a fresh Debian
//! container bootstrapped with `playbooks/bootstrap.toml`.

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::time::Instant;

use crate::harness::{
    ArgvWatch, FreshServer, SudoUser, command, dropship_cmd, dropship_reporting, finish, keygen,
    run_playbook, run_playbook_with, start_fleet,
};

/// An `apt-get` that only logs its argv and DEBIAN_FRONTEND, first on the host's PATH.
const APT_GET_STANDIN: &str = "#!/bin/sh\nprintf 'DEBIAN_FRONTEND=%s %s\\n' \"$DEBIAN_FRONTEND\" \"$*\" >> \"$(dirname \"$0\")/../apt-get.log\"\n";

#[test]
fn apt_installs_only_missing_packages() {
    let fleet = start_fleet(1);
    let h = fleet.host("h1");
    let standin = h.dir.join("bin/apt-get");
    fs::write(&standin, APT_GET_STANDIN).unwrap();
    fs::set_permissions(&standin, fs::Permissions::from_mode(0o755)).unwrap();
    let log = h.dir.join("apt-get.log");
    let inv = fleet.write_inventory("");

    let pb = fleet.write(
        "apt-present.toml",
        "name = \"apt\"\napp = \"apt\"\n[[steps]]\nname = \"coreutils\"\napt = { packages = [\"coreutils\"], update = true }\n",
    );
    let run = run_playbook("deploy", &inv, &pb);
    run.assert_code(0);
    run.assert_outcome("h1", "coreutils", "ok");
    assert!(!log.exists(), "apt-get ran: {:?}", fs::read_to_string(&log));

    let pb = fleet.write(
        "apt-missing.toml",
        "name = \"apt\"\napp = \"apt\"\n[[steps]]\nname = \"missing\"\napt = { packages = [\"coreutils\", \"dropship-test-missing\"], update = true }\n",
    );
    let run = run_playbook("deploy", &inv, &pb);
    run.assert_code(0);
    run.assert_outcome("h1", "missing", "changed");
    assert!(
        run.all().contains("installed dropship-test-missing"),
        "{}",
        run.all()
    );
    let calls = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = calls.lines().collect();
    assert_eq!(lines.len(), 2, "{calls}");
    assert_eq!(
        lines[0],
        "DEBIAN_FRONTEND=noninteractive -o DPkg::Lock::Timeout=600 update -q"
    );
    assert_eq!(
        lines[1],
        "DEBIAN_FRONTEND=noninteractive -o DPkg::Lock::Timeout=600 install -y --no-install-recommends dropship-test-missing"
    );
}

#[test]
fn become_with_a_sudo_password_keeps_it_off_argv_and_output() {
    if !Path::new("/usr/bin/sudo").exists() {
        panic!("sudo is not installed: run scripts/install-deps.sh");
    }
    let fleet = start_fleet(1);
    let user = SudoUser::create();
    let inv = fleet.inventory_for_user(&user.name);
    fs::write(fleet.dir.path().join("secret.conf.j2"), "for root only\n").unwrap();
    let pb = fleet.write(
        "become.toml",
        &format!(
            r#"name = "become"
app = "become"

{}[[steps]]
name = "as the user"
run = "id -u > {{{{ out }}}}/plain-uid"

[[steps]]
name = "as root"
run = "id -u > {{{{ out }}}}/root-uid"
become = true

[[steps]]
name = "slow"
run = "sleep 2"
become = true

[[steps]]
name = "root file"
template = {{ src = "secret.conf.j2", dest = "{{{{ out }}}}/secret.conf", owner = "root", group = "root", mode = "0600" }}
become = true
become_password = "{{{{ secrets.sudo_pw }}}}"
"#,
            user.become_vars()
        ),
    );
    let mut cmd = command(
        &["deploy", "-i", inv.to_str().unwrap(), pb.to_str().unwrap()],
        None,
    );
    cmd.env("DROPSHIP_TEST_SUDO_PW", &user.password);
    let watch = ArgvWatch::start();
    let run = finish(cmd.spawn().expect("spawn dropship"));
    let seen = watch.stop();
    seen.assert_hidden(&[&user.password], "the sudo password");
    run.assert_code(0);
    assert!(
        seen.scans > 10,
        "only {} scans of /proc during the run",
        seen.scans
    );
    assert!(!run.all().contains(&user.password), "{}", run.all());
    for step in ["as the user", "as root", "slow", "root file"] {
        run.assert_outcome("h1", step, "changed");
    }
    let read = |f: &str| fs::read_to_string(user.scratch.join(f)).unwrap();
    assert_eq!(read("plain-uid").trim(), user.uid().to_string());
    assert_eq!(read("root-uid").trim(), "0");
    let meta = fs::metadata(user.scratch.join("secret.conf")).unwrap();
    assert_eq!(meta.uid(), 0);
    assert_eq!(meta.gid(), 0);
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_eq!(read("secret.conf"), "for root only\n");

    // Again: the root-only file is probed through sudo, so it is found unchanged.
    let mut cmd = command(
        &["deploy", "-i", inv.to_str().unwrap(), pb.to_str().unwrap()],
        None,
    );
    cmd.env("DROPSHIP_TEST_SUDO_PW", &user.password);
    let run = dropship_cmd(cmd);
    run.assert_code(0);
    run.assert_outcome("h1", "root file", "ok");
    assert!(!run.all().contains(&user.password), "{}", run.all());

    // A wrong password fails the step, and is not printed either.
    let mut cmd = command(
        &["deploy", "-i", inv.to_str().unwrap(), pb.to_str().unwrap()],
        None,
    );
    cmd.env("DROPSHIP_TEST_SUDO_PW", "wrong-password-xyz");
    let run = dropship_cmd(cmd);
    assert_ne!(run.code, Some(0), "{}", run.all());
    assert!(!run.all().contains("wrong-password-xyz"), "{}", run.all());
    // What sudo's refusal means is said, not only sudo's "incorrect password attempt".
    assert!(
        run.all().contains(&format!(
            "sudo refused the become password of {}",
            user.name
        )),
        "{}",
        run.all()
    );
}

#[test]
fn bootstrap_provisions_a_fresh_debian_server() {
    let t0 = Instant::now();
    let server = FreshServer::start();
    eprintln!("fresh server up in {:.1}s", t0.elapsed().as_secs_f64());
    let root_inv = server.inventory("root", &server.root_key);
    let deploy_key = server.dir.path().join("deploy_key");
    keygen(&deploy_key);
    let deploy_pub = fs::read_to_string(deploy_key.with_extension("pub")).unwrap();
    let pb = Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/bootstrap.toml");
    let key_var = format!("deploy_public_key={}", deploy_pub.trim());
    let bootstrap = || {
        run_playbook_with(
            "deploy",
            &root_inv,
            &pb,
            &[
                "--var",
                "docker_source=distro",
                "--var",
                &key_var,
                "--var",
                "app_dir=/srv/pixel",
            ],
        )
    };
    let run = bootstrap();
    eprintln!("first bootstrap done at {:.1}s", t0.elapsed().as_secs_f64());
    run.assert_code(0);
    for step in [
        "base packages",
        "docker engine (distro)",
        "deploy user",
        "deploy user's authorized key",
        "passwordless sudo for the deploy user",
        "app dir",
    ] {
        run.assert_outcome("fresh", step, "changed");
    }

    // The deploy user logs in with its own key (root's key is not in its authorized_keys).
    let deploy_inv = server.inventory("deploy", &deploy_key);
    let run = dropship_reporting(
        &[
            "exec",
            "-i",
            deploy_inv.to_str().unwrap(),
            "--",
            "id -un && sudo -n true && echo sudo-ok && command -v docker && stat -c %U:%G /srv/pixel && id -nG",
        ],
        None,
    );
    run.assert_code(0);
    let text = run.all();
    for want in [
        "deploy",
        "sudo-ok",
        "/usr/bin/docker",
        "deploy:deploy",
        "docker",
    ] {
        assert!(text.contains(want), "no `{want}` in {text}");
    }

    // Twice: nothing changes.
    let run = bootstrap();
    eprintln!(
        "second bootstrap done at {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    run.assert_code(0);
    assert!(!run.stdout.contains("[fresh] changed"), "{}", run.all());
    assert!(run.stdout.contains("[fresh] ok"), "{}", run.all());
    let report = run.report();
    let outcomes: Vec<&str> = report.host("fresh")["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["outcome"].as_str())
        .collect();
    assert!(
        outcomes.contains(&"ok") && !outcomes.contains(&"changed"),
        "{report:#}"
    );

    // A small deploy as the deploy user into the app dir.
    fs::write(server.dir.path().join("hello.txt"), "hello from dropship\n").unwrap();
    let app_pb = server.dir.path().join("app.toml");
    fs::write(
        &app_pb,
        "name = \"app\"\napp = \"pixel\"\n[[steps]]\nname = \"hello\"\ncopy = { src = \"hello.txt\", dest = \"/srv/pixel/hello.txt\" }\n[[steps]]\nname = \"check\"\nrun = \"cat /srv/pixel/hello.txt && stat -c %U /srv/pixel/hello.txt\"\n",
    )
    .unwrap();
    let run = run_playbook("deploy", &deploy_inv, &app_pb);
    run.assert_code(0);
    run.assert_outcome("fresh", "hello", "changed");
    assert!(run.all().contains("hello from dropship"), "{}", run.all());
    eprintln!(
        "fresh-server test done in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
}
