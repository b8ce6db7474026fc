//! Releases on the real engine, both compose flavours: a release that changes one service
//! leaves the others' containers alone (compose resolves `./file` through `current`, the same
//! path in every release), a service whose bind-mounted file changed serves the new content,
//! and a rollback serves the old release's files again.

use std::process::Command;

use crate::harness::{Flavor, LocalFleet};

crate::on_both_compose_flavors! {
    a_release_recreates_only_what_changed_and_mounted_files_follow_current =>
        e2e_a_release_recreates_only_what_changed_and_mounted_files_follow_current_v1,
        e2e_a_release_recreates_only_what_changed_and_mounted_files_follow_current_v2;
}

/// Two services without a dependency between them: the app (its image is the release's
/// `version`) and a proxy that mounts one file of the release, `./proxy.conf`, and answers
/// `proxy GREETING` with it.
const PLAYBOOK: &str = r#"
name = "Stable paths"
app = "pixel"
hosts = "web"

[vars]
version = "A"
greeting = "one"

[secrets]
registry_password = { file = ".fleet/secrets/registry_password" }

[release]
root = "{{ app_dir }}"
keep = 5

[[steps]]
name = "compose file"
template = { src = "templates/stable-compose.yml.j2", dest = "{{ release.dir }}/docker-compose.yml" }

[[steps]]
name = "proxy config"
template = { src = "templates/stable-proxy.conf.j2", dest = "{{ release.dir }}/proxy.conf" }

[[steps]]
name = "registry login"
docker_login = { registry = "{{ registry }}", username = "{{ registry_user }}", password = "{{ secrets.registry_password }}" }

[[steps]]
name = "start stack"
compose = { command = "up", dir = "{{ app_dir }}/current", project = "{{ app }}-{{ stage }}" }

[[steps]]
name = "served"
health = { url = "http://127.0.0.1:{{ http_port }}/", contains = "proxy ", timeout = "30s" }
"#;

const COMPOSE: &str = r#"services:
  app:
    image: "{{ registry }}/pixel/app:{{ version }}"
  proxy:
    image: "{{ registry }}/pixel/nginx:1"
    volumes:
      - ./proxy.conf:/etc/nginx/conf.d/default.conf:ro
    ports:
      - "{{ http_bind }}:{{ http_port }}:80"
"#;

const PROXY: &str = r#"server {
    listen 80;
    location / {
        default_type text/plain;
        return 200 "proxy {{ greeting }}\n";
    }
}
"#;

/// A service's container on the engine: its id, when it last started, and its image.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Container {
    id: String,
    started: String,
    image: String,
}

fn container(project: &str, service: &str) -> Container {
    let ps = Command::new("docker")
        .args(["ps", "-q", "--no-trunc"])
        .args([
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
        ])
        .args([
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ])
        .output()
        .unwrap();
    let ids = String::from_utf8_lossy(&ps.stdout).to_string();
    let ids: Vec<&str> = ids.split_whitespace().collect();
    assert_eq!(ids.len(), 1, "{project} {service}: {ids:?}");
    let inspect = Command::new("docker")
        .args([
            "inspect",
            "--format",
            "{{.State.StartedAt}} {{.Config.Image}}",
            ids[0],
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&inspect.stdout).trim().to_string();
    let (started, image) = text.split_once(' ').unwrap();
    Container {
        id: ids[0].to_string(),
        started: started.to_string(),
        image: image.to_string(),
    }
}

fn a_release_recreates_only_what_changed_and_mounted_files_follow_current(flavor: Flavor) {
    let fleet = LocalFleet::start("e2esp", 1, flavor);
    let host = fleet.host(1);
    let project = format!("pixel-{host}");
    std::fs::write(fleet.playbook("stable.toml"), PLAYBOOK).unwrap();
    let templates = fleet.project().join("templates");
    std::fs::write(templates.join("stable-compose.yml.j2"), COMPOSE).unwrap();
    std::fs::write(templates.join("stable-proxy.conf.j2"), PROXY).unwrap();
    let served = || fleet.get(1, "/").1;
    let releases = || {
        let mut ids: Vec<String> = std::fs::read_dir(fleet.app_dir(1).join("releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        ids.sort();
        ids
    };

    // A.
    let run = fleet.deploy("stable.toml", &[]);
    run.assert_code(0);
    let release_a = releases().pop().unwrap();
    let (app_a, proxy_a) = (container(&project, "app"), container(&project, "proxy"));
    assert!(app_a.image.ends_with("/pixel/app:A"), "{app_a:?}");
    assert_eq!(served(), "proxy one\n");

    // B changes only the app's image: the app is recreated, the proxy (same file content,
    // in a new release directory) is neither recreated nor restarted.
    let run = fleet.deploy("stable.toml", &["--var", "version=B"]);
    run.assert_code(0);
    run.assert_outcome(&host, "start stack", "changed");
    let (app_b, proxy_b) = (container(&project, "app"), container(&project, "proxy"));
    assert_ne!(app_b.id, app_a.id, "the app's image changed");
    assert!(app_b.image.ends_with("/pixel/app:B"), "{app_b:?}");
    assert_eq!(
        proxy_b,
        proxy_a,
        "the proxy's config is the same in B: its container is left alone\n{}",
        run.all()
    );
    assert!(!run.all().contains("restarted proxy"), "{}", run.all());

    // C changes only the proxy's file: the proxy serves it (restarted onto it), the app
    // is left alone.
    let run = fleet.deploy(
        "stable.toml",
        &["--var", "version=B", "--var", "greeting=two"],
    );
    run.assert_code(0);
    run.assert_outcome(&host, "start stack", "changed");
    assert!(
        run.all()
            .contains("restarted proxy: files it mounts changed with the release"),
        "{}",
        run.all()
    );
    assert_eq!(served(), "proxy two\n", "{}", run.all());
    assert_eq!(container(&project, "app"), app_b, "{}", run.all());
    let proxy_c = container(&project, "proxy");
    assert_ne!(proxy_c.started, proxy_b.started, "restarted");

    // The same again (a new release, nothing in it changed): nothing recreated or restarted.
    let run = fleet.deploy(
        "stable.toml",
        &["--var", "version=B", "--var", "greeting=two"],
    );
    run.assert_code(0);
    run.assert_outcome(&host, "start stack", "ok");
    assert_eq!(container(&project, "app"), app_b);
    assert_eq!(container(&project, "proxy"), proxy_c);

    // Rollback to A: A's image and A's proxy config are served again.
    let run = fleet.rollback("stable.toml", &["--to", &release_a]);
    run.assert_code(0);
    assert_eq!(served(), "proxy one\n", "{}", run.all());
    let app = container(&project, "app");
    assert!(app.image.ends_with("/pixel/app:A"), "{app:?}");
    assert_eq!(container(&project, "proxy").id, proxy_a.id);
}
