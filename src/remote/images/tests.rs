use super::*;
use crate::remote::frame::Framed;

const R1: &str = "20261122T175512.042Z-3f9a1c2e";
const R2: &str = "20261122T175613.000Z-00000000";

fn id(n: u8) -> String {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
}

fn image(repository: &str, tag: &str, n: u8) -> EngineImage {
    EngineImage {
        repository: repository.into(),
        tag: (tag != "<none>").then(|| tag.to_string()),
        digest: None,
        id: id(n),
    }
}

fn r(text: &str) -> ImageRef {
    ImageRef::parse(text).unwrap_or_else(|| panic!("{text}"))
}

#[test]
fn references_follow_docker_s_grammar_and_read_in_their_familiar_form() {
    let parsed = r("127.0.0.1:5000/pixel/app:A");
    assert_eq!(parsed.repository, "127.0.0.1:5000/pixel/app");
    assert_eq!(parsed.tag.as_deref(), Some("A"));
    assert_eq!(parsed.to_string(), "127.0.0.1:5000/pixel/app:A");
    assert_eq!(r("localhost:5000/app").tag, None);
    assert_eq!(r("docker.io/library/nginx:1.25").repository, "nginx");
    assert_eq!(
        r("index.docker.io/bitnami/redis").repository,
        "bitnami/redis"
    );
    assert_eq!(r("library/postgres:15").repository, "postgres");
    assert_eq!(
        r("my-reg.example.com/a__b/c-d.e:v1.2_3").tag.as_deref(),
        Some("v1.2_3")
    );
    let digest = format!("sha256:{}", "ab".repeat(32));
    let pinned = r(&format!("reg.io/app:1@{digest}"));
    assert_eq!(pinned.digest.as_deref(), Some(digest.as_str()));
    // Hostile or malformed: refused, never passed on.
    for bad in [
        "",
        "$(touch pwned)",
        "app:A; rm -rf /",
        "-rf",
        "App:1",
        "app:-x",
        "app::1",
        "a b",
        "app:A\nother",
        "reg:5000/",
        "/app",
        "app/",
        "a..b",
        "a.-b",
        "bad_domain_/x",
        "reg.io:99999999/x",
        "app@sha256:short",
        "app:A@",
        "'app:A'",
        "app:`id`",
        &format!("app:{}", "x".repeat(129)),
    ] {
        assert_eq!(ImageRef::parse(bad), None, "{bad:?}");
    }
    assert!(valid_image_id(&id(7)));
    assert!(!valid_image_id("sha256:ABC"));
    assert!(!valid_image_id(&format!("sha256:{}", "A".repeat(64))));
}

#[test]
fn only_unused_images_of_the_kept_releases_repositories_are_chosen() {
    let kept = [r("reg/pixel/app:B"), r("reg/pixel/app:C"), r("postgres:15")];
    let images = [
        image("reg/pixel/app", "A", 1),
        image("reg/pixel/app", "B", 2),
        image("reg/pixel/app", "C", 3),
        // Another tag of C's image: C keeps all its tags.
        image("reg/pixel/app", "latest", 3),
        // Used by a (stopped) container.
        image("reg/pixel/app", "old", 4),
        // Another app's image: never a candidate.
        image("reg/other", "x", 5),
        image("postgres", "14", 6),
        image("postgres", "15", 7),
        // Dangling: never named, never chosen.
        image("<none>", "<none>", 8),
        image("reg/pixel/app", "<none>", 9),
        // The same image under another repository keeps it alive: only the tag goes.
        image("reg/pixel/app", "Z", 10),
        image("reg/archive/app", "Z", 10),
    ];
    let in_use: HashSet<String> = [id(4)].into();
    let chosen = select(&kept, &in_use, &images);
    let refs: Vec<&str> = chosen.iter().map(|c| c.reference.as_str()).collect();
    assert_eq!(refs, ["postgres:14", "reg/pixel/app:A", "reg/pixel/app:Z"]);
    assert_eq!(chosen[1].id, id(1));

    // A release pinned by digest protects the image of that digest, whatever its tag.
    let digest = format!("sha256:{}", "cd".repeat(32));
    let mut pinned = image("reg/pixel/app", "A", 1);
    pinned.digest = Some(digest.clone());
    let kept = [r(&format!("reg/pixel/app@{digest}"))];
    assert!(select(&kept, &HashSet::new(), &[pinned.clone()]).is_empty());
    // No tag means `latest`.
    let kept = [r("reg/pixel/app")];
    let latest = image("reg/pixel/app", "latest", 2);
    let refs: Vec<String> = select(&kept, &HashSet::new(), &[pinned, latest])
        .into_iter()
        .map(|c| c.reference)
        .collect();
    assert_eq!(refs, ["reg/pixel/app:A"]);
    // Nothing kept: nothing chosen (no repository is ours).
    assert!(select(&[], &HashSet::new(), &images).is_empty());

    // A container of another app (another registry's tag of the same content: the same id)
    // keeps the image, so this repository's tag stays too.
    let kept = [r("reg/pixel/app:C")];
    let images = [
        image("reg/pixel/app", "A", 1),
        image("other-reg/pixel/app", "A", 1),
        image("reg/pixel/app", "C", 3),
    ];
    assert!(select(&kept, &[id(1)].into(), &images).is_empty());
    assert_eq!(
        select(&kept, &HashSet::new(), &images)[0].reference,
        "reg/pixel/app:A"
    );
}

fn reply(text: &str) -> Reply {
    Reply::parse(text.as_bytes(), "n")
}

#[test]
fn a_survey_is_parsed_and_anything_out_of_form_makes_it_unusable() {
    let ok = format!(
        "\n@@dropship:n:images:release {R1}@@\nreg/app:A\npostgres:15\n\
         \n@@dropship:n:images:release {R2}@@\n\
         \n@@dropship:n:images:containers@@\n{}\n\
         \n@@dropship:n:images:images@@\nreg/app A <none> {}\n<none> <none> <none> {}\n\
         \n@@dropship:n:images:end@@\n",
        id(1),
        id(1),
        id(2)
    );
    let survey = parse_survey(&reply(&ok)).unwrap();
    assert_eq!(survey.releases.len(), 2);
    assert_eq!(survey.kept().unwrap(), [r("reg/app:A"), r("postgres:15")]);
    assert!(survey.in_use.contains(&id(1)));
    assert_eq!(survey.images.len(), 2);

    // v1 may quote a value; compose config failing for a kept release: nothing is chosen.
    let failed = format!(
        "\n@@dropship:n:images:release {R1}@@\n'reg/app:A'\n\
         \n@@dropship:n:images:unknown {R2}@@\nyaml: line 3: bad\n\n@@dropship:n:images:end@@\n"
    );
    let survey = parse_survey(&reply(&failed)).unwrap();
    assert_eq!(survey.releases[0].images, Ok(vec![r("reg/app:A")]));
    assert_eq!(
        survey.kept().unwrap_err(),
        format!("release {R2}: compose config failed: yaml: line 3: bad")
    );

    let end = "\n@@dropship:n:images:end@@\n";
    for (hostile, why) in [
        (
            format!("\n@@dropship:n:images:release $(id)@@\n{end}"),
            "a release named `$(id)`",
        ),
        (
            format!("\n@@dropship:n:images:containers@@\nsha256:$(id)\n{end}"),
            "a container's image `sha256:$(id)`",
        ),
        (
            format!(
                "\n@@dropship:n:images:images@@\nreg/app A;rm <none> {}\n{end}",
                id(1)
            ),
            "an image listed as `reg/app A;rm <none> sha256:",
        ),
        (
            format!("\n@@dropship:n:images:images@@\nreg/app A <none>\n{end}"),
            "an image listed as `reg/app A <none>`",
        ),
        (
            format!(
                "\n@@dropship:n:images:images@@\nreg/app A <none> {} extra\n{end}",
                id(1)
            ),
            "an image listed as",
        ),
        (
            "\n@@dropship:n:images:containers@@\n".to_string(),
            "the survey did not finish",
        ),
    ] {
        let err = parse_survey(&reply(&hostile)).unwrap_err();
        assert!(err.starts_with(why), "{err} / {why}");
    }
    // A hostile reference in a release's list: that release's images are unknown.
    let forged = format!("\n@@dropship:n:images:release {R1}@@\nreg/app:A\n$(touch x)\n{end}");
    let survey = parse_survey(&reply(&forged)).unwrap();
    assert!(
        survey
            .kept()
            .unwrap_err()
            .contains("`$(touch x)` is not an image reference")
    );
    // A frame of another session is output, not a result.
    let other = "\n@@dropship:m:images:end@@\n";
    assert!(parse_survey(&reply(other)).is_err());
}

#[test]
fn a_removal_counts_only_what_it_asked_about() {
    let asked = [
        Removal {
            reference: "reg/app:A".into(),
            id: id(1),
        },
        Removal {
            reference: "reg/app:Z".into(),
            id: id(2),
        },
    ];
    let text = format!(
        "\n@@dropship:n:images:sizes@@\n{} 1000\n{} 500\n{} 99999\n\
         \n@@dropship:n:images:untagged reg/app:A@@\nUntagged: reg/app:A\n\
         \n@@dropship:n:images:kept reg/app:Z@@\nError: conflict: container abc uses it\n\
         \n@@dropship:n:images:untagged other:x@@\n\
         \n@@dropship:n:images:gone {}@@\n\n@@dropship:n:images:gone {}@@\n\
         \n@@dropship:n:images:end@@\n",
        id(1),
        id(2),
        id(3),
        id(1),
        id(3)
    );
    let removed = parse_removed(&reply(&text), &asked);
    assert_eq!(removed.untagged, ["reg/app:A"]);
    assert_eq!(
        removed.kept,
        [(
            "reg/app:Z".to_string(),
            "Error: conflict: container abc uses it".to_string()
        )]
    );
    assert_eq!(removed.freed, 1000);
    assert_eq!(removed.images_gone, 1);
    assert!(removed.complete);
}

/// A fake `docker` and `docker-compose` for the scripts run in a real shell: each answer is
/// read from a file beside them, every call logged.
fn fake_docker(dir: &std::path::Path) -> std::path::PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {log}\ncase \"$*\" in\n\
         'compose config --images'|config) cat images.txt ;;\n\
         'ps -aq --no-trunc') cat {d}/ps.txt ;;\n\
         'container inspect'*) [ -f {d}/docker-down ] && exit 1; if [ -f {d}/vanish ]; then rm {d}/vanish; echo 'Error: No such container: c2' >&2; exit 1; fi; cat {d}/containers.txt ;;\n\
         'image ls'*) cat {d}/images.txt ;;\n\
         'image inspect --format {{{{.Id}}}} {{{{.Size}}}}'*) cat {d}/sizes.txt ;;\n\
         'image rm '*) grep -qxF \"$3\" {d}/refuse.txt && {{ echo \"Error: conflict: $3 is in use\" >&2; exit 1; }}; echo \"Untagged: $3\" ;;\n\
         'image inspect --format . '*) grep -qxF \"$5\" {d}/remaining.txt ;;\n\
         *) exit 3 ;;\n\
         esac\n",
        log = dir.join("calls.log").display(),
        d = dir.display()
    );
    for name in ["docker", "docker-compose"] {
        let path = bin.join(name);
        std::fs::write(&path, &script).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    for file in [
        "ps.txt",
        "containers.txt",
        "images.txt",
        "sizes.txt",
        "refuse.txt",
        "remaining.txt",
    ] {
        std::fs::write(dir.join(file), "").unwrap();
    }
    bin
}

fn run_framed(script: &Script, bin: &std::path::Path) -> (crate::transport::ExecOutput, Reply) {
    let request = Framed::new(script);
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(request.script())
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .output()
        .unwrap();
    let out = crate::transport::ExecOutput {
        status: out.status.code().map(|c| c as u32),
        stdout: out.stdout,
        stderr: out.stderr,
        ..Default::default()
    };
    let reply = request.reply(&out.stdout);
    (out, reply)
}

#[test]
fn the_survey_and_the_removal_work_in_a_real_shell_and_cache_each_release() {
    let host = tempfile::tempdir().unwrap();
    let bin = fake_docker(host.path());
    let root = host.path().join("app");
    let (a, b) = (
        root.join("releases").join(R1),
        root.join("releases").join(R2),
    );
    for (dir, images) in [(&a, "reg/app:A\n"), (&b, "reg/app:B\npostgres:15\n")] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("docker-compose.yml"), "services: {}\n").unwrap();
        std::fs::write(dir.join("images.txt"), images).unwrap();
    }
    // Hostile names beside the releases are never listed or entered.
    std::fs::create_dir_all(root.join("releases/$(touch pwned)")).unwrap();
    std::fs::write(host.path().join("ps.txt"), "c1\nc2\n").unwrap();
    std::fs::write(host.path().join("containers.txt"), format!("{}\n", id(2))).unwrap();
    std::fs::write(
        host.path().join("images.txt"),
        format!(
            "reg/app A <none> {}\nreg/app B <none> {}\nreg/app old <none> {}\nreg/other x <none> {}\n",
            id(1),
            id(2),
            id(3),
            id(4)
        ),
    )
    .unwrap();
    let root_text = root.to_str().unwrap();
    // Only R2 is kept (R1 was pruned): A and old may go. A container goes away while the
    // containers are listed: listed again.
    std::fs::remove_dir_all(&a).unwrap();
    std::fs::write(host.path().join("vanish"), "").unwrap();
    let (out, reply) = run_framed(&survey(root_text, ComposeFlavor::Plugin, None), &bin);
    assert_eq!(
        out.status,
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found = parse_survey(&reply).unwrap();
    assert_eq!(found.kept().unwrap(), [r("reg/app:B"), r("postgres:15")]);
    let chosen = select(&found.kept().unwrap(), &found.in_use, &found.images);
    let refs: Vec<&str> = chosen.iter().map(|c| c.reference.as_str()).collect();
    assert_eq!(refs, ["reg/app:A", "reg/app:old"]);
    assert_eq!(
        std::fs::read_to_string(b.join(CACHE_FILE)).unwrap(),
        "reg/app:B\npostgres:15\n"
    );
    // The second survey reads the cache: compose is not asked again.
    let calls = || std::fs::read_to_string(host.path().join("calls.log")).unwrap();
    assert_eq!(calls().matches("ps -aq").count(), 2, "{}", calls());
    assert_eq!(calls().matches("config").count(), 1, "{}", calls());
    run_framed(&survey(root_text, ComposeFlavor::Plugin, None), &bin);
    assert_eq!(calls().matches("config").count(), 1, "{}", calls());
    assert!(!host.path().join("pwned").exists());

    // Containers that cannot be listed at all: the survey fails (nothing will be removed).
    std::fs::write(host.path().join("docker-down"), "").unwrap();
    let (out, _) = run_framed(&survey(root_text, ComposeFlavor::Plugin, None), &bin);
    assert_eq!(out.status, Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot list the images of the containers")
    );
    std::fs::remove_file(host.path().join("docker-down")).unwrap();

    // The removal: `old` is refused by the engine (kept), A goes.
    std::fs::write(host.path().join("refuse.txt"), "reg/app:old\n").unwrap();
    std::fs::write(host.path().join("remaining.txt"), format!("{}\n", id(3))).unwrap();
    std::fs::write(
        host.path().join("sizes.txt"),
        format!("{} 152000000\n{} 7\n", id(1), id(3)),
    )
    .unwrap();
    let (out, reply) = run_framed(&remove(&chosen), &bin);
    assert_eq!(
        out.status,
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let removed = parse_removed(&reply, &chosen);
    assert_eq!(removed.untagged, ["reg/app:A"]);
    assert_eq!(removed.kept[0].0, "reg/app:old");
    assert!(removed.kept[0].1.contains("is in use"), "{removed:?}");
    assert_eq!(removed.freed, 152_000_000);
    assert!(!calls().contains(" -f"), "never forced: {}", calls());

    // v1: only the services' `image:` lines of the whole configuration count.
    std::fs::remove_file(b.join(CACHE_FILE)).unwrap();
    std::fs::write(
        b.join("images.txt"),
        "services:\n  app:\n    environment:\n      X: '    image: evil/x:1'\n    image: reg/app:B\n",
    )
    .unwrap();
    let (_, reply) = run_framed(&survey(root_text, ComposeFlavor::Standalone, None), &bin);
    assert_eq!(
        parse_survey(&reply).unwrap().kept().unwrap(),
        [r("reg/app:B")]
    );

    // No release refers to an image: the engine is not asked about containers or images.
    std::fs::write(b.join(CACHE_FILE), "").unwrap();
    std::fs::write(host.path().join("calls.log"), "").unwrap();
    let (_, reply) = run_framed(&survey(root_text, ComposeFlavor::Plugin, None), &bin);
    assert!(parse_survey(&reply).unwrap().images.is_empty());
    assert_eq!(calls(), "");
    // No release root at all: an empty, finished survey.
    let (_, reply) = run_framed(&survey("/nonexistent/x", ComposeFlavor::Plugin, None), &bin);
    assert!(parse_survey(&reply).unwrap().releases.is_empty());
}
