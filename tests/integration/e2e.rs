//! The shipped example (playbooks/deploy.toml + templates/) deployed for real: the Docker engine,
//! a private registry with htpasswd auth and locally built images (scripts/localfleet/), sshd
//! hosts on 127.0.0.1 whose `docker` is the real one. Checked over HTTP through each host's nginx.
//! Every test runs twice, `_v1` with `docker-compose` 1.29 and `_v2` with the `docker compose`
//! plugin (the inventory's `compose` setting), and checks the stack was made by that one.

use sha2::{Digest, Sha256};

use crate::harness::{Flavor, LocalFleet, dropship_reporting, http_get};

crate::on_both_compose_flavors! {
    example_app_deploys_for_real_and_rolls_forward =>
        example_app_deploys_for_real_and_rolls_forward_v1,
        example_app_deploys_for_real_and_rolls_forward_v2;
    real_failures_are_reported_per_step =>
        real_failures_are_reported_per_step_v1,
        real_failures_are_reported_per_step_v2;
    broken_release_is_rolled_back_on_the_canary_and_reaches_no_other_host =>
        broken_release_is_rolled_back_on_the_canary_and_reaches_no_other_host_v1,
        broken_release_is_rolled_back_on_the_canary_and_reaches_no_other_host_v2;
}

fn fingerprint(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.trim_end_matches('\n').as_bytes()))[..12].to_string()
}

fn example_app_deploys_for_real_and_rolls_forward(flavor: Flavor) {
    let fleet = LocalFleet::start("e2ea", 2, flavor);
    let secret_fp = fingerprint(&fleet.secret("django_secret_key"));

    // The registry refuses anonymous pulls: the docker_login step is what lets hosts pull.
    let (status, _) = http_get(fleet.registry_port, "/v2/pixel/app/manifests/A");
    assert_eq!(status, 401, "the registry must require auth");

    // `ping` names the flavour the inventory chose, and both versions this machine has.
    let inventory = fleet.inventory();
    let run = dropship_reporting(&["ping", "-i", inventory.to_str().unwrap()], None);
    run.assert_code(0);
    let expected = match flavor {
        Flavor::V1 => "compose standalone 1.29.2 (set in the inventory); also plugin 2.",
        Flavor::V2 => "compose plugin 2.40.3 (set in the inventory); also standalone 1.29.2",
    };
    for k in 1..=fleet.hosts {
        let text = run.host_text(&fleet.host(k));
        assert!(text.contains(expected), "host {k}: {}", run.all());
    }

    let run = fleet.deploy("deploy.toml", &["--var", "version=A"]);
    run.assert_code(0);
    // The hosts had no tag of these images (their layers may be in the shared engine): v1
    // says `downloaded newer image` in lower case; v2 prints only `Pulled` when no layer was
    // downloaded, so it is not judged here. All hosts share one engine: whichever pulls first
    // downloads the tag and the others find it there, so one host (any) reports the change.
    if flavor == Flavor::V1 {
        let pulled: Vec<String> = (1..=fleet.hosts)
            .filter(|&k| {
                run.report().host(&fleet.host(k))["steps"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|s| s["name"] == "pull images" && s["outcome"] == "changed")
            })
            .map(|k| fleet.host(k))
            .collect();
        assert!(
            !pulled.is_empty(),
            "no host reported its pull changed:\n{}",
            run.all()
        );
    }
    for k in 1..=fleet.hosts {
        fleet.assert_stack_made_by_flavor(k);
        let (status, body) = fleet.get(k, "/");
        assert_eq!(status, 200, "host {k}: {body}\n{}", run.all());
        assert!(body.contains("version=A\n"), "host {k}: {body}");
        assert!(body.contains("image=A\n"), "host {k}: {body}");
        assert!(
            body.contains(&format!("instance={}\n", fleet.host(k))),
            "host {k}: {body}"
        );
        // Only the rendered .env carries the secret key: the app reports its fingerprint.
        assert!(
            body.contains(&format!("secret_fingerprint={secret_fp}\n")),
            "host {k}: {body}"
        );
        assert!(body.contains("db=ok"), "host {k}: {body}");
        // nginx serves /static/ itself.
        let (status, text) = fleet.get(k, "/static/hello.txt");
        assert_eq!(status, 200, "host {k}: {text}");
    }
    // No secret value anywhere in dropship's output.
    for name in [
        "django_secret_key",
        "postgres_password",
        "registry_password",
    ] {
        let value = fleet.secret(name);
        assert!(
            !run.all().contains(value.trim()),
            "{name} leaked:\n{}",
            run.all()
        );
    }

    let run = fleet.deploy("deploy.toml", &["--var", "version=B"]);
    run.assert_code(0);
    // The new image recreates the app's container.
    run.assert_outcome(&fleet.host(1), "start stack", "changed");
    for k in 1..=fleet.hosts {
        let (_, body) = fleet.get(k, "/");
        assert!(
            body.contains("version=B\n") && body.contains("image=B\n"),
            "host {k}: {body}"
        );
        assert!(body.contains("db=ok"), "host {k}: {body}");
    }

    // Unchanged: a third run rewrites no file and changes no container, whichever compose
    // printed it (each words it differently).
    let run = fleet.deploy("deploy.toml", &["--var", "version=B"]);
    run.assert_code(0);
    for step in [
        "compose file",
        "nginx config",
        "secrets (.env)",
        "pull images",
        "start stack",
    ] {
        run.assert_outcome(&fleet.host(1), step, "ok");
    }
    fleet.assert_stack_made_by_flavor(1);
}

fn real_failures_are_reported_per_step(flavor: Flavor) {
    let fleet = LocalFleet::start("e2eb", 1, flavor);
    // A faster-failing copy of the example's health check: long enough for the recreated app
    // to answer (503) on a loaded machine, as step 3 needs.
    let pb = fleet.playbook("deploy.toml");
    let text = std::fs::read_to_string(&pb)
        .unwrap()
        .replace("timeout = \"60s\"", "timeout = \"15s\"");
    std::fs::write(fleet.playbook("fast.toml"), text).unwrap();

    // 1. A wrong registry password: login fails with the registry's message, masked; no compose.
    let real = fleet.secret("registry_password");
    let wrong = "wrong-Pa55word-e2e";
    fleet.set_secret("registry_password", wrong);
    let run = fleet.deploy("fast.toml", &[]);
    run.assert_code(1);
    run.assert_outcome(&fleet.host(1), "registry login", "FAILED");
    run.assert_outcome(&fleet.host(1), "pull images", "skipped");
    let text = run.host_text(&fleet.host(1));
    assert!(
        text.to_lowercase().contains("unauthorized")
            || text.contains("incorrect username or password"),
        "{text}"
    );
    assert!(
        !run.all().contains(wrong),
        "the password leaked:\n{}",
        run.all()
    );
    fleet.set_secret("registry_password", &real);

    // 2. A tag that is not in the registry: pull fails with docker's stderr tail.
    let run = fleet.deploy("fast.toml", &["--var", "version=no-such-tag"]);
    run.assert_code(1);
    run.assert_outcome(&fleet.host(1), "pull images", "FAILED");
    let text = run.host_text(&fleet.host(1));
    assert!(
        text.contains("no-such-tag")
            && (text.contains("not found") || text.contains("manifest unknown")),
        "{text}"
    );

    // 3. A health check that never passes: the database password changed after the database
    //    was initialised, so the app answers /healthz with 503 until the timeout.
    //    The healthy baseline uses the example's own 60s timeout: it is the stack's first start
    //    on this host (PostgreSQL initialises its database), which can take longer than the
    //    fast copy's 15s when the machine is busy.
    fleet.deploy("deploy.toml", &[]).assert_code(0);
    fleet.set_secret("postgres_password", "changed-after-init");
    let run = fleet.deploy("fast.toml", &[]);
    run.assert_code(1);
    run.assert_outcome(&fleet.host(1), "healthy through nginx", "FAILED");
    let text = run.host_text(&fleet.host(1));
    assert!(text.contains("last: HTTP 503"), "{text}");
    // Nothing stands out (every container runs): each one's last lines are shown, the app's
    // own among them (it logs each request to stderr).
    assert!(text.contains(" (web): running\n"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("| ") && l.contains("GET /healthz") && l.contains(" 503")),
        "{text}"
    );
    assert!(text.contains(" (db): running\n"), "{text}");
    let step = run.report().host(&fleet.host(1))["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "healthy through nginx")
        .unwrap()
        .clone();
    let web = step["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["service"] == "web")
        .unwrap_or_else(|| panic!("{step:#}"))
        .clone();
    assert_eq!(web["state"], "running", "{web:#}");
    assert!(
        web["logs"].as_str().unwrap().contains("/healthz"),
        "{web:#}"
    );

    // 4. A service that exits during `up` (its command exits 3 after printing the database
    //    password): the container, its exit code and its last words, the password masked.
    let password = "exits-Pa55word-e2e";
    fleet.set_secret("postgres_password", password);
    let template = fleet.project().join("templates/docker-compose.yml.j2");
    let compose = std::fs::read_to_string(&template).unwrap();
    let web_section = "      - db\n    restart: unless-stopped\n";
    assert!(compose.contains(web_section), "{compose}");
    let exits = compose.replace(
        web_section,
        "      - db\n    command: [\"sh\", \"-c\", \"echo \\\"password is $$POSTGRES_PASSWORD\\\" >&2; echo giving up >&2; exit 3\"]\n    restart: \"no\"\n",
    );
    std::fs::write(
        fleet
            .project()
            .join("templates/docker-compose-exits.yml.j2"),
        exits,
    )
    .unwrap();
    let fast = std::fs::read_to_string(fleet.playbook("fast.toml")).unwrap();
    std::fs::write(
        fleet.playbook("exits.toml"),
        fast.replace("docker-compose.yml.j2", "docker-compose-exits.yml.j2"),
    )
    .unwrap();
    let run = fleet.deploy("exits.toml", &[]);
    run.assert_code(1);
    let text = run.host_text(&fleet.host(1));
    assert!(text.contains(" (web): exited (3)\n"), "{text}");
    assert!(text.contains("| password is ********\n"), "{text}");
    assert!(text.contains("| giving up"), "{text}");
    // Only the container that stands out.
    assert!(!text.contains(" (db): "), "{text}");
    assert!(!run.all().contains(password), "{}", run.all());
    assert!(!run.report().to_string().contains(password));
}

fn broken_release_is_rolled_back_on_the_canary_and_reaches_no_other_host(flavor: Flavor) {
    let fleet = LocalFleet::start("e2ec", 3, flavor);
    let pb = fleet.playbook("release.toml");
    let steady = std::fs::read_to_string(&pb)
        .unwrap()
        .replace("pause = \"2s\"", "pause = \"0s\"");
    let fast = steady.replace("timeout = \"60s\"", "timeout = \"20s\"");
    std::fs::write(fleet.playbook("release-steady.toml"), steady).unwrap();
    std::fs::write(fleet.playbook("release-fast.toml"), fast).unwrap();

    // The stack's first start keeps the example's 60s health timeout (PostgreSQL initialises
    // its database, slow on a busy machine); the broken release fails faster.
    let run = fleet.deploy("release-steady.toml", &["--var", "version=A"]);
    run.assert_code(0);
    let releases_of = |k: usize| -> Vec<String> {
        let dir = fleet
            .project()
            .join(format!(".fleet/apps/{}/releases", fleet.host(k)));
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let release_a = releases_of(1);
    assert_eq!(release_a.len(), 1);
    for k in 1..=3 {
        let (_, body) = fleet.get(k, "/");
        assert!(
            body.contains("version=A\n") && body.contains("db=ok"),
            "host {k}: {body}"
        );
    }

    // B is broken: the database password it renders differs from the one the database was
    // initialised with, so the app's /healthz answers 503 on the canary.
    fleet.set_secret("postgres_password", "rotated-without-migrating");
    let run = fleet.deploy("release-fast.toml", &["--var", "version=B"]);
    run.assert_code(1);
    assert!(run.all().contains("rollout halted"), "{}", run.all());
    assert!(
        run.summary_row(&fleet.host(1))
            .unwrap_or_default()
            .contains("rolled back to"),
        "{}",
        run.all()
    );
    assert!(
        run.report().host(&fleet.host(1))["rolled_back"].is_string(),
        "{}",
        run.report()
    );
    // The canary serves A again, healthy.
    let (status, body) = fleet.get(1, "/");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("version=A\n") && body.contains("image=A\n") && body.contains("db=ok"),
        "{body}"
    );
    // The other hosts never saw B: no new release directory, still serving A.
    for k in 2..=3 {
        assert_eq!(releases_of(k), release_a, "host {k}");
        let (_, body) = fleet.get(k, "/");
        assert!(body.contains("version=A\n"), "host {k}: {body}");
        assert!(
            run.summary_row(&fleet.host(k))
                .unwrap_or_default()
                .contains("not deployed"),
            "{}",
            run.all()
        );
        run.assert_status(&fleet.host(k), "not deployed");
    }
}
