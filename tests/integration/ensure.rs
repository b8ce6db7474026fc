//! `ensure` steps over real sshd: a directory and an empty file made only when missing, their
//! mode and owner set where they differ, a symlink in the way refused, a docker network created
//! only when missing (through the docker stand-in, and once against the real engine).

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::process::Command;

use crate::harness::{SudoUser, command, finish, run_playbook, start_fleet, unique};

fn playbook(steps: &str) -> String {
    format!("name = \"ensure\"\napp = \"ensure\"\n{steps}")
}

#[test]
fn a_directory_and_a_file_are_made_once_then_ok_and_their_mode_and_owner_follow() {
    let fleet = start_fleet(1);
    let h = fleet.host("h1");
    let inv = fleet.write_inventory("");
    let data = h.dir.join("srv/app/data");
    let log = h.dir.join("srv/app/data/app.log");
    let steps = |mode: &str, owner: &str| {
        playbook(&format!(
            "[[steps]]\nname = \"data\"\nensure = {{ path = \"{}\", mode = \"{mode}\", owner = \"{owner}\" }}\n[[steps]]\nname = \"log\"\nensure = {{ path = \"{}\", state = \"file\", mode = \"0640\" }}\n",
            data.display(),
            log.display()
        ))
    };
    let pb = fleet.write("ensure.toml", &steps("0750", "root"));
    let run = run_playbook("deploy", &inv, &pb);
    run.assert_code(0);
    run.assert_outcome("h1", "data", "changed");
    run.assert_outcome("h1", "log", "changed");
    assert!(run.all().contains("created, mode"), "{}", run.all());
    assert_eq!(fs::metadata(&data).unwrap().mode() & 0o7777, 0o750);
    assert_eq!(fs::metadata(&log).unwrap().mode() & 0o7777, 0o640);
    assert_eq!(fs::read(&log).unwrap(), b"");

    // Content written meanwhile is kept; the second run changes nothing.
    fs::write(&log, "kept\n").unwrap();
    let run = run_playbook("deploy", &inv, &pb);
    run.assert_code(0);
    run.assert_outcome("h1", "data", "ok");
    run.assert_outcome("h1", "log", "ok");
    assert_eq!(fs::read_to_string(&log).unwrap(), "kept\n");

    // A new mode and owner are applied, and only they are reported.
    let pb = fleet.write("ensure2.toml", &steps("0700", "nobody"));
    let run = run_playbook("deploy", &inv, &pb);
    run.assert_code(0);
    run.assert_outcome("h1", "data", "changed");
    assert!(run.all().contains("mode, owner"), "{}", run.all());
    let meta = fs::metadata(&data).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o700);
    let nobody = String::from_utf8(
        Command::new("id")
            .args(["-u", "nobody"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(meta.uid().to_string(), nobody.trim());
    let run = run_playbook("deploy", &inv, &pb);
    run.assert_outcome("h1", "data", "ok");
}

#[test]
fn a_symlink_in_the_way_fails_and_its_target_is_untouched() {
    let fleet = start_fleet(1);
    let h = fleet.host("h1");
    let inv = fleet.write_inventory("");
    let target = h.dir.join("elsewhere");
    fs::write(&target, "precious").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
    let link = h.dir.join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let pb = fleet.write(
        "link.toml",
        &playbook(&format!(
            "[[steps]]\nname = \"through\"\nensure = {{ path = \"{}\", state = \"file\", mode = \"0600\" }}\n",
            link.display()
        )),
    );
    let run = run_playbook("deploy", &inv, &pb);
    run.assert_code(1);
    run.assert_outcome("h1", "through", "FAILED");
    assert!(run.all().contains("is a symbolic link"), "{}", run.all());
    assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
    assert_eq!(fs::metadata(&target).unwrap().mode() & 0o7777, 0o644);
}

#[test]
fn bad_ensure_input_is_located_and_nothing_runs() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    for (steps, expected) in [
        (
            "[[steps]]\nensure = { network = \"-evil\" }\n",
            "ensure.toml:4:22: bad docker network name `-evil`",
        ),
        (
            "[[steps]]\nensure = { path = \"srv/data\" }\n",
            "ensure.toml:4:19: `srv/data` is not an absolute path",
        ),
        (
            "[[steps]]\nensure = { path = \"/srv\", mode = \"999\" }\n",
            "ensure.toml:4:34: bad mode `999`",
        ),
        (
            "[[steps]]\nensure = { path = \"/srv\", state = \"link\" }\n",
            "ensure.toml:4:35: bad state `link`",
        ),
        (
            "[[steps]]\nensure = { network = \"n\", mode = \"0750\" }\n",
            "`mode` applies to `path`, not to `network`",
        ),
        (
            "[[steps]]\nensure = { mode = \"0750\" }\n",
            "needs exactly one of `network` and `path`",
        ),
    ] {
        let pb = fleet.write("ensure.toml", &playbook(steps));
        let run = run_playbook("deploy", &inv, &pb);
        run.assert_code(2);
        assert!(run.all().contains(expected), "{expected}\n{}", run.all());
    }
}

#[test]
fn a_network_is_created_through_the_stand_in_only_when_missing() {
    let fleet = start_fleet(1);
    let h = fleet.host("h1");
    let inv = fleet.write_inventory("");
    let pb = fleet.write(
        "net.toml",
        &playbook("[[steps]]\nname = \"net\"\nensure = { network = \"app_net\", driver = \"bridge\", attachable = true }\n"),
    );
    let run = run_playbook("deploy", &inv, &pb);
    run.assert_code(0);
    run.assert_outcome("h1", "net", "changed");
    let run = run_playbook("deploy", &inv, &pb);
    run.assert_code(0);
    run.assert_outcome("h1", "net", "ok");
    let calls = fs::read_to_string(h.dir.join("docker.log")).unwrap();
    let calls: Vec<&str> = calls
        .lines()
        .map(|l| l.split_once(' ').unwrap().1)
        .collect();
    assert_eq!(
        calls,
        [
            "network inspect app_net",
            "network create --driver=bridge --attachable app_net",
            "network inspect app_net"
        ]
    );
}

/// Removes a docker network when dropped (the test's own, uniquely named).
struct NetworkGuard(String);

impl Drop for NetworkGuard {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["network", "rm", &self.0])
            .output();
    }
}

#[test]
fn a_network_is_created_on_the_real_engine_then_ok() {
    let fleet = start_fleet(1);
    let h = fleet.host("h1");
    // This host's `docker` is the real one.
    fs::remove_file(h.dir.join("bin/docker")).unwrap();
    let inv = fleet.write_inventory("");
    let name = unique("dropship-ensure-net");
    let _guard = NetworkGuard(name.clone());
    let pb = fleet.write(
        "net.toml",
        &playbook(&format!(
            "[[steps]]\nname = \"net\"\nensure = {{ network = \"{name}\", internal = true }}\n"
        )),
    );
    let run = run_playbook("deploy", &inv, &pb);
    run.assert_code(0);
    run.assert_outcome("h1", "net", "changed");
    let internal = Command::new("docker")
        .args(["network", "inspect", "--format", "{{.Internal}}", &name])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&internal.stdout).trim(), "true");
    let run = run_playbook("deploy", &inv, &pb);
    run.assert_code(0);
    run.assert_outcome("h1", "net", "ok");
}

#[test]
fn with_become_a_root_owned_directory_is_made_then_ok() {
    let fleet = start_fleet(1);
    let user = SudoUser::create();
    let inv = fleet.inventory_for_user(&user.name);
    let pb = fleet.write(
        "become.toml",
        &format!(
            "name = \"ensure\"\napp = \"ensure\"\n\n{}[[steps]]\nname = \"root dir\"\nensure = {{ path = \"{{{{ out }}}}/etc-app\", mode = \"0700\", owner = \"root\", group = \"root\" }}\nbecome = true\n",
            user.become_vars()
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
    // Made by root already: only the mode differs from what mkdir gave it.
    run.assert_outcome("h1", "root dir", "changed");
    let meta = fs::metadata(user.scratch.join("etc-app")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    assert_eq!(meta.mode() & 0o7777, 0o700);
    let run = deploy();
    run.assert_code(0);
    run.assert_outcome("h1", "root dir", "ok");
}
