//! `become` under a narrow sudoers rule, through a real sshd and a real sudo: a user allowed
//! only `NOPASSWD: /usr/bin/docker` is told exactly which rule a `become` step needs (instead
//! of sudo's "a password is required"), and that very rule makes the same deploy pass.

use std::fs;
use std::path::Path;

use crate::harness::{Run, SudoUser, run_playbook, start_fleet};

/// The sudoers rule the failure names: the text between the backquotes after `needs is`.
fn named_rule(run: &Run) -> String {
    let all = run.all();
    let start = all
        .find("the sudoers rule it needs is `")
        .unwrap_or_else(|| panic!("no rule named\n{all}"))
        + "the sudoers rule it needs is `".len();
    all[start..].split('`').next().unwrap().to_string()
}

#[test]
fn a_narrow_sudoers_rule_is_named_and_the_named_rule_works() {
    if !Path::new("/usr/bin/sudo").exists() {
        panic!("sudo is not installed: run scripts/install-deps.sh");
    }
    let fleet = start_fleet(1);
    let user = SudoUser::create();
    user.set_sudoers(&format!(
        "{} ALL=(root) NOPASSWD: /usr/bin/docker\n",
        user.name
    ));
    let inv = fleet.inventory_for_user(&user.name);
    let out = user.scratch.display().to_string();
    let pb = fleet.write(
        "narrow.toml",
        &format!(
            "name = \"narrow\"\napp = \"narrow\"\n\n[[steps]]\nname = \"as root\"\nrun = \"id -u > {out}/root-uid\"\nbecome = true\n"
        ),
    );
    let run = run_playbook("deploy", &inv, &pb);
    run.assert_code(1);
    run.assert_outcome("h1", "as root", "FAILED");
    let all = run.all();
    let want = format!(
        "sudo does not let {name} run `sh` as root ({name} may run only: (root) NOPASSWD: /usr/bin/docker)",
        name = user.name
    );
    assert!(all.contains(&want), "no `{want}`\n{all}");
    assert!(!all.contains("a password is required"), "{all}");
    assert_eq!(
        named_rule(&run),
        format!("{} ALL=(root) NOPASSWD: /bin/sh", user.name)
    );
    assert!(!user.scratch.join("root-uid").exists());

    // A file step with `become` reaches sudo first through the probe of its destination:
    // the same answer there.
    fs::write(fleet.dir.path().join("conf.j2"), "root's\n").unwrap();
    let files = fleet.write(
        "narrow-file.toml",
        &format!(
            "name = \"narrow\"\napp = \"narrow\"\n\n[[steps]]\nname = \"root file\"\ntemplate = {{ src = \"conf.j2\", dest = \"{out}/root.conf\", owner = \"root\" }}\nbecome = true\n"
        ),
    );
    let probe = run_playbook("deploy", &inv, &files);
    probe.assert_code(1);
    assert!(probe.all().contains(&want), "no `{want}`\n{}", probe.all());
    assert_eq!(named_rule(&probe), named_rule(&run));

    // The rule named, as it is, lets both deploys through.
    user.set_sudoers(&format!("{}\n", named_rule(&run)));
    run_playbook("deploy", &inv, &pb).assert_code(0);
    assert_eq!(
        fs::read_to_string(user.scratch.join("root-uid")).unwrap(),
        "0\n"
    );
    run_playbook("deploy", &inv, &files).assert_code(0);
    assert_eq!(
        fs::read_to_string(user.scratch.join("root.conf")).unwrap(),
        "root's\n"
    );
}

#[test]
fn a_user_without_passwordless_rules_is_told_to_give_a_password_or_the_rule() {
    let fleet = start_fleet(1);
    // SudoUser's own rule: everything, with its password.
    let user = SudoUser::create();
    let inv = fleet.inventory_for_user(&user.name);
    let pb = fleet.write(
        "pw.toml",
        "name = \"pw\"\napp = \"pw\"\n\n[[steps]]\nname = \"as root\"\nrun = \"id -u\"\nbecome = true\n",
    );
    let run = run_playbook("deploy", &inv, &pb);
    run.assert_code(1);
    let all = run.all();
    let want = format!(
        "sudo asks {} for a password (none of its sudo rules is NOPASSWD)",
        user.name
    );
    assert!(all.contains(&want), "no `{want}`\n{all}");
    assert!(all.contains("give `become_password`"), "{all}");
    assert_eq!(
        named_rule(&run),
        format!("{} ALL=(root) NOPASSWD: /bin/sh", user.name)
    );
}
