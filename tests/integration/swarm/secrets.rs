//! Versioned Docker secrets of a `stack` step on a real single-node swarm: made from the value
//! on stdin, named by a digest keyed with the stack's salt config (never the bare digest of the
//! value), seen by the service at /run/secrets/, a new value a new secret the service is
//! updated to, the old version kept while a previous spec names it, then removed; no value or
//! bare digest on any command line or in the output; `docker stack rm` removes the salt.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{PLAYBOOK, STEP, Swarm, detail, docker};
use crate::harness::{ArgvWatch, Flavor, LocalFleet};

fn fingerprint(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))[..12].to_string()
}

/// The stack's salt config as a manager reads it (`{{json .Spec.Data}}`).
fn salt_of(stack: &str) -> String {
    let config = format!("{stack}_dropship-salt");
    let format = "{{json .Spec.Data}}";
    let (ok, salt) = docker(&["config", "inspect", "--format", format, &config]);
    assert!(ok, "{salt}");
    salt.trim_end_matches('\n').to_string()
}

/// The stack's secrets, by name, sorted.
fn secrets_of(stack: &str) -> Vec<String> {
    let label = format!("label=com.docker.stack.namespace={stack}");
    let (ok, names) = docker(&["secret", "ls", "--filter", &label, "--format", "{{.Name}}"]);
    assert!(ok, "{names}");
    let mut names: Vec<String> = names.lines().map(str::to_string).collect();
    names.sort();
    names
}

/// Waits up to 60 s until every running container of `service` reads a secret file whose
/// sha256 starts with `expected`.
fn assert_containers_read(service: &str, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, ids) = docker(&[
            "ps",
            "--filter",
            &format!("label=com.docker.swarm.service.name={service}"),
            "--format",
            "{{.ID}}",
        ]);
        assert!(ok, "{ids}");
        let seen: Vec<String> = ids
            .lines()
            .map(|id| {
                docker(&[
                    "exec",
                    id,
                    "python3",
                    "-c",
                    "import hashlib; print(hashlib.sha256(open('/run/secrets/django_secret_key','rb').read()).hexdigest()[:12])",
                ])
                .1
                .trim()
                .to_string()
            })
            .collect();
        if !seen.is_empty() && seen.iter().all(|s| s == expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{service}'s containers read {seen:?}, not {expected}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
#[ignore = "changes the shared engine's swarm state: run alone with `--ignored swarm::`"]
fn a_rotated_secret_becomes_a_new_docker_secret_and_the_unused_old_one_is_removed() {
    let fleet = LocalFleet::start("swarm-secrets", 1, Flavor::V2);
    let host = fleet.host(1);
    let stack = format!("pixel-{host}");
    let service = format!("{stack}_web");
    let _swarm = Swarm::join(&stack);
    let first = fleet
        .secret("django_secret_key")
        .trim_end_matches('\n')
        .to_string();
    let pwned = format!("/tmp/dropship-swarm-pwned-{}", std::process::id());
    let rotated = format!("rotated {} $(touch {pwned})", fingerprint(&first));
    let unsalted = |value: &str| format!("{stack}_django_secret_key_{}", fingerprint(value));

    let watch = ArgvWatch::start();

    // v1: the stack's salt made, the secret under its keyed version, read by both replicas;
    // the output names the key, not the version, and nowhere the bare digest.
    let run = fleet.deploy(PLAYBOOK, &["--var", "version=A"]);
    run.assert_code(0);
    run.assert_outcome(&host, STEP, "changed");
    let salt = salt_of(&stack);
    let name = |value: &str| {
        let version = hex::encode(Sha256::digest(format!("{salt}{value}").as_bytes()));
        format!("{stack}_django_secret_key_{}", &version[..12])
    };
    assert_ne!(name(&first), unsalted(&first));
    assert!(
        detail(&run, &host, STEP).contains("secrets made: django_secret_key: new version"),
        "{}",
        run.all()
    );
    assert!(!run.all().contains(&fingerprint(&first)), "{}", run.all());
    assert_eq!(secrets_of(&stack), vec![name(&first)]);
    assert_containers_read(&service, &fingerprint(&first));

    // Rotation: a new secret, the service updated to it; the old one stays while the
    // service's previous spec (what `docker service rollback` goes back to) names it.
    fleet.set_secret("django_secret_key", &rotated);
    let run = fleet.deploy(PLAYBOOK, &["--var", "version=A"]);
    run.assert_code(0);
    run.assert_outcome(&host, STEP, "changed");
    assert!(
        detail(&run, &host, STEP).contains(&format!("{service}: updated")),
        "{}",
        run.all()
    );
    assert_containers_read(&service, &fingerprint(&rotated));
    let mut both = vec![name(&first), name(&rotated)];
    both.sort();
    assert_eq!(secrets_of(&stack), both);

    // The next deploy, the value the same: the same name, nothing made; it leaves no spec
    // naming the first, which is removed.
    let run = fleet.deploy(PLAYBOOK, &["--var", "version=B"]);
    run.assert_code(0);
    let said = detail(&run, &host, STEP);
    assert!(
        said.contains("old secret versions removed: django_secret_key"),
        "{}",
        run.all()
    );
    assert!(!said.contains("secrets made"), "{}", run.all());
    assert_eq!(salt_of(&stack), salt);
    assert_eq!(secrets_of(&stack), vec![name(&rotated)]);
    assert_containers_read(&service, &fingerprint(&rotated));
    assert!(!std::path::Path::new(&pwned).exists());

    let seen = watch.stop();
    seen.assert_saw("docker stack deploy");
    let needles = [&first, &rotated, &unsalted(&first), &unsalted(&rotated)];
    seen.assert_hidden(&needles, "a secret");

    // `docker stack rm` takes the salt with the stack (a later deploy makes a new one).
    let (ok, said) = docker(&["stack", "rm", &stack]);
    assert!(ok, "{said}");
    let (ok, configs) = docker(&["config", "ls", "--format", "{{.Name}}"]);
    assert!(ok, "{configs}");
    assert!(
        !configs
            .lines()
            .any(|c| c == format!("{stack}_dropship-salt")),
        "{configs}"
    );
}
