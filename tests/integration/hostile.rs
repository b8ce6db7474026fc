//! Names a host sends back are data, never code, against real sshd: directories planted among
//! a host's releases are neither listed, nor run, nor taken as a rollback target.

use std::fs;

use crate::harness::{dropship, start_fleet};

/// Planted under `releases/`: a command substitution, an option, a name with a space, each
/// sorting before the real release so that they would be "the previous release".
const HOSTILE: [&str; 3] = ["1$(touch${IFS}pwned)", "-rf", "0 $(touch pwned)"];

#[test]
fn hostile_release_names_on_a_host_are_data() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let pb = fleet.dir.path().join("rel.toml");
    fs::write(fleet.dir.path().join("version.txt"), "1\n").unwrap();
    fs::write(
        &pb,
        "name = \"Rel\"\napp = \"rel\"\nhosts = \"web\"\n\n[release]\nroot = \"{{ app_dir }}\"\n\n[[steps]]\nname = \"version\"\ncopy = { src = \"version.txt\", dest = \"{{ release.dir }}/version.txt\" }\n",
    )
    .unwrap();
    let args = |cmd: &str| {
        vec![
            cmd.to_string(),
            "-i".into(),
            inv.display().to_string(),
            pb.display().to_string(),
        ]
    };
    let call = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        dropship(&refs, None)
    };
    call(args("deploy")).assert_code(0);
    let h = fleet.host("h1");
    let current = fs::read_link(h.root.join("current")).unwrap();
    for name in HOSTILE {
        fs::create_dir_all(h.root.join("releases").join(name)).unwrap();
    }

    let listed = call(args("releases"));
    listed.assert_code(0);
    let real = current.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        listed.stdout.contains(&format!("* {real} (current)")),
        "{}",
        listed.all()
    );
    for name in HOSTILE {
        assert!(
            !listed.stdout.contains(name),
            "{name} listed\n{}",
            listed.all()
        );
    }

    // The only real release is the current one: there is nothing to roll back to.
    let rollback = call(args("rollback"));
    assert_eq!(rollback.code, Some(1), "{}", rollback.all());
    assert!(
        rollback.all().contains("no previous release on this host"),
        "{}",
        rollback.all()
    );
    let mut to = args("rollback");
    to.extend(["--to".into(), HOSTILE[0].into()]);
    let rollback_to = call(to);
    assert_eq!(rollback_to.code, Some(1), "{}", rollback_to.all());
    assert!(
        rollback_to.all().contains("is not on this host"),
        "{}",
        rollback_to.all()
    );

    assert_eq!(fs::read_link(h.root.join("current")).unwrap(), current);
    for dir in [&h.root, &h.dir, &h.root.join("releases")] {
        assert!(!dir.join("pwned").exists(), "code ran in {}", dir.display());
    }
    assert!(!std::path::Path::new("pwned").exists());
    for name in HOSTILE {
        assert!(
            h.root.join("releases").join(name).is_dir(),
            "{name} removed"
        );
    }
}
