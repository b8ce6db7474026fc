//! `dropship releases` shows what each release recorded at activation, against real sshd: the
//! deploy's `version` variable, else its compose file's images; a hostile version can neither
//! forge a line of the listing nor reach the terminal as an escape code.

use std::fs;

use crate::harness::{dropship, start_fleet};

#[test]
fn releases_show_each_release_version_or_images_escaped() {
    let fleet = start_fleet(1);
    let inv = fleet.write_inventory("");
    let dir = fleet.dir.path();
    fs::write(
        dir.join("compose.yml.j2"),
        "services:\n  web:\n    image: \"reg/app:{{ version | default('latest') }}\"\n  db:\n    image: postgres:15\n",
    )
    .unwrap();
    let pb = dir.join("rel.toml");
    fs::write(
        &pb,
        "name = \"Rel\"\napp = \"rel\"\nhosts = \"web\"\n\n[release]\nroot = \"{{ app_dir }}\"\nprune_images = false\n\n\
         [[steps]]\nname = \"compose file\"\ntemplate = { src = \"compose.yml.j2\", dest = \"{{ release.dir }}/docker-compose.yml\" }\n\n\
         [[steps]]\nname = \"up\"\ncompose = { command = \"up\", dir = \"{{ release.dir }}\" }\n",
    )
    .unwrap();
    let (inv, pb) = (inv.to_str().unwrap(), pb.to_str().unwrap());
    dropship(&["deploy", "-i", inv, pb], None).assert_code(0);
    let h = fleet.host("h1");
    let first = fs::read_link(h.root.join("current")).unwrap();
    let first = first.file_name().unwrap().to_string_lossy().into_owned();
    let hostile = "7\n* 20991231T235959.999Z-deadbeef (current)\x1b[2J";
    dropship(
        &[
            "deploy",
            "-i",
            inv,
            pb,
            "--var",
            &format!("version={hostile}"),
        ],
        None,
    )
    .assert_code(0);
    let second = fs::read_link(h.root.join("current")).unwrap();
    let second = second.file_name().unwrap().to_string_lossy().into_owned();
    assert_ne!(first, second);

    let listed = dropship(&["releases", "-i", inv, pb], None);
    listed.assert_code(0);
    let out = &listed.stdout;
    assert!(
        out.contains(&format!("  {first}  images reg/app:latest postgres:15\n")),
        "{}",
        listed.all()
    );
    assert!(
        out.contains(&format!(
            "* {second} (current)  version 7\\x0a* 20991231T235959.999Z-deadbeef (current)\\x1b[2J\n"
        )),
        "{}",
        listed.all()
    );
    assert!(!listed.all().contains('\x1b'), "{}", listed.all());
    assert!(
        !out.lines().any(|l| l.trim_start().starts_with("* 2099")),
        "{}",
        listed.all()
    );
    // Written on the host as one line, in the release it describes.
    let recorded = fs::read_to_string(
        h.root
            .join("releases")
            .join(&second)
            .join(".dropship-version"),
    )
    .unwrap();
    assert_eq!(recorded.lines().count(), 1, "{recorded:?}");
}
