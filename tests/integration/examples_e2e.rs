//! The shipped examples deployed for real on two local hosts (the real Docker engine, a private
//! registry, images built offline): `examples/ratemymodule`, both instances checked over HTTP
//! through the one nginx by Host name, then a tag promoted from latest to stable in two deploys;
//! `examples/django-caddy` with its own images (built by its `images/build.sh`), the database
//! host first, migrate once, checked over HTTPS through Caddy; `examples/examist` built on the
//! hosts from the uploaded context; `examples/nexchange`'s copied files served over HTTPS.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{
    Flavor, LocalFleet, copy_dir, dropship_reporting, free_range, http_get_for, project_containers,
    read, write,
};

crate::on_both_compose_flavors! {
    ratemymodule_serves_latest_and_stable_and_promotes_a_tag => ratemymodule_example_v1, ratemymodule_example_v2;
}

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Removes the docker networks the example's `ensure` step made (compose leaves external
/// networks alone); declared before the fleet, so it runs after the fleet's stacks are down.
struct Networks(Vec<String>);

impl Drop for Networks {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("docker")
                .args(["network", "rm", name])
                .output();
        }
    }
}

/// The fleet's inventory with `var = base + k` added to host k's vars, written beside it as
/// `file`.
fn inventory_with_port(fleet: &LocalFleet, var: &str, base: u16, file: &str) -> PathBuf {
    let text = read(&fleet.inventory());
    let mut k: u16 = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|line| match line.strip_prefix("vars = { ") {
            Some(rest) => {
                k += 1;
                format!("vars = {{ {var} = {}, {rest}", base + k)
            }
            None => line.to_string(),
        })
        .collect();
    assert_eq!(usize::from(k), fleet.hosts, "{text}");
    write(
        fleet.inventory().parent().unwrap(),
        file,
        &(lines.join("\n") + "\n"),
    )
}

fn ratemymodule_serves_latest_and_stable_and_promotes_a_tag(flavor: Flavor) {
    let mut networks = Networks(Vec::new());
    let fleet = LocalFleet::start("rmm", 2, flavor);
    networks.0 = (1..=fleet.hosts)
        .map(|k| format!("rmm-{}", fleet.host(k)))
        .collect();
    for name in &networks.0 {
        let _ = Command::new("docker")
            .args(["network", "rm", name])
            .output();
    }
    // The example as shipped, where its `../../.fleet/secrets` finds the fleet's secrets.
    copy_dir(
        &Path::new(REPO).join("examples/ratemymodule"),
        &fleet.project().join("examples/ratemymodule"),
    );
    let front = free_range(fleet.hosts as u16 + 1);
    let inventory = inventory_with_port(
        &fleet,
        "rmm_http_port",
        front,
        "inventory-ratemymodule.toml",
    );
    let playbook = fleet
        .project()
        .join("examples/ratemymodule/playbooks/deploy.toml");
    let deploy = |extra: &[&str]| {
        let mut args = vec![
            "deploy",
            "-i",
            inventory.to_str().unwrap(),
            playbook.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        dropship_reporting(&args, None)
    };
    let get = |k: usize, site: &str| http_get_for(front + k as u16, "/", site);
    let assert_serves = |k: usize, instance: &str, tag: &str, run: &str| {
        let (status, body) = get(k, &format!("{instance}.localhost"));
        assert_eq!(status, 200, "host {k} {instance}: {body}\n{run}");
        assert!(
            body.contains(&format!("version={tag}\n")) && body.contains(&format!("image={tag}\n")),
            "host {k} {instance} should run {tag}: {body}"
        );
        assert!(
            body.contains(&format!("instance={instance}@{}\n", fleet.host(k))),
            "host {k}: {body}"
        );
        assert!(body.contains("db=ok"), "host {k} {instance}: {body}");
    };

    // 1. Both instances on A, each with its own database, behind one nginx per host.
    let run = deploy(&[]);
    run.assert_code(0);
    for k in 1..=fleet.hosts {
        let host = fleet.host(k);
        assert_serves(k, "latest", "A", &run.all());
        assert_serves(k, "stable", "A", &run.all());
        // Any other name: the default site's 404, never an instance.
        let (status, body) = get(k, "other.localhost");
        assert_eq!(status, 404, "host {k}: {body}");
        run.assert_outcome(&host, "front network", "changed");
        run.assert_outcome(&host, "compose file (latest)", "changed");
        run.assert_outcome(&host, "compose file (stable)", "changed");
    }

    // 2. Nothing changed: no file, no container, no reload.
    let stable_before: Vec<Vec<String>> = (1..=fleet.hosts)
        .map(|k| project_containers(&format!("rmm-{}-stable", fleet.host(k)), true))
        .collect();
    let run = deploy(&[]);
    run.assert_code(0);
    for k in 1..=fleet.hosts {
        let host = fleet.host(k);
        for step in [
            "front network",
            "compose file (latest)",
            "secrets (.env) (stable)",
            "up (latest)",
            "up (stable)",
            "nginx site (latest)",
            "nginx site (stable)",
            "proxy up",
        ] {
            run.assert_outcome(&host, step, "ok");
        }
        run.assert_outcome(
            &host,
            "exec sh -c nginx -t -q && { [ ! -s /run/nginx.pid ] || nginx -s reload; } in proxy (nginx site or nginx default site changed)",
            "skipped",
        );
    }

    // 3. B on latest only: stable's files are unchanged and its containers keep running.
    let run = deploy(&["--var", "latest_tag=B", "--var", "stable_tag=A"]);
    run.assert_code(0);
    for k in 1..=fleet.hosts {
        let host = fleet.host(k);
        run.assert_outcome(&host, "up (latest)", "changed");
        run.assert_outcome(&host, "compose file (stable)", "ok");
        run.assert_outcome(&host, "up (stable)", "ok");
        assert_serves(k, "latest", "B", &run.all());
        assert_serves(k, "stable", "A", &run.all());
        assert_eq!(
            project_containers(&format!("rmm-{host}-stable"), true),
            stable_before[k - 1],
            "host {k}: stable was recreated\n{}",
            run.all()
        );
    }

    // 4. B promoted to stable; latest is left as it was.
    let run = deploy(&["--var", "latest_tag=B", "--var", "stable_tag=B"]);
    run.assert_code(0);
    for k in 1..=fleet.hosts {
        let host = fleet.host(k);
        run.assert_outcome(&host, "up (stable)", "changed");
        run.assert_outcome(&host, "up (latest)", "ok");
        assert_serves(k, "latest", "B", &run.all());
        assert_serves(k, "stable", "B", &run.all());
    }
    drop(fleet);
    drop(networks);
}

crate::on_both_compose_flavors! {
    django_caddy_serves_https_with_the_database_host_first => django_caddy_example_v1, django_caddy_example_v2;
}

/// The fleet's inventory with the django-caddy example's roles (host 1: `db` and `app`, the
/// others `app`), Caddy's port per host and the example's variables, written beside it.
fn django_caddy_inventory(fleet: &LocalFleet, https_base: u16, network: &str) -> PathBuf {
    let with_ports = read(&inventory_with_port(
        fleet,
        "https_port",
        https_base,
        "inventory-django-caddy.toml",
    ));
    let mut k = 0;
    let mut out = String::new();
    for line in with_ports.lines() {
        match line {
            "[vars]" => out.push_str(&format!(
                "[vars]\nsite_name = \"drunc.localhost\"\ndb_network = \"{network}\"\ndb_host = \"django-caddy-db\"\ndb_bind = \"127.0.0.1\"\n"
            )),
            "[groups.web]" => out.push_str("[groups.web]\n[groups.db]\n[groups.app]\n"),
            "groups = [\"web\"]" => {
                k += 1;
                out.push_str(if k == 1 {
                    "groups = [\"web\", \"db\", \"app\"]\n"
                } else {
                    "groups = [\"web\", \"app\"]\n"
                });
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    assert_eq!(k, fleet.hosts, "{with_ports}");
    write(
        fleet.inventory().parent().unwrap(),
        "inventory-django-caddy.toml",
        &out,
    )
}

/// GET over https through curl, naming the site so that SNI and Host are `site` (Caddy's
/// certificate comes from its internal CA on the host: not verified here, `-k`).
fn https_get(port: u16, site: &str, path: &str) -> String {
    let out = Command::new("curl")
        .args(["-sk", "-m", "10", "--resolve"])
        .arg(format!("{site}:{port}:127.0.0.1"))
        .arg(format!("https://{site}:{port}{path}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn django_caddy_serves_https_with_the_database_host_first(flavor: Flavor) {
    let mut networks = Networks(Vec::new());
    let fleet = LocalFleet::start("dcad", 2, flavor);
    let network = format!("dc-{}", fleet.name);
    networks.0.push(network.clone());
    let _ = Command::new("docker")
        .args(["network", "rm", &network])
        .output();
    // The example's own images, built offline and pushed to this fleet's registry.
    let build = Command::new("bash")
        .arg(Path::new(REPO).join("examples/django-caddy/images/build.sh"))
        .envs(fleet.script_env())
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "build.sh:\n{}\n{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );
    copy_dir(
        &Path::new(REPO).join("examples/django-caddy"),
        &fleet.project().join("examples/django-caddy"),
    );
    let https = free_range(fleet.hosts as u16 + 1);
    let inventory = django_caddy_inventory(&fleet, https, &network);
    let playbook = fleet
        .project()
        .join("examples/django-caddy/playbooks/deploy.toml");
    let deploy = || {
        dropship_reporting(
            &[
                "deploy",
                "-i",
                inventory.to_str().unwrap(),
                playbook.to_str().unwrap(),
            ],
            None,
        )
    };

    let run = deploy();
    run.assert_code(0);
    let (db_host, app_host) = (fleet.host(1), fleet.host(2));
    // The db stage first: host 2 starts only after host 1's last step.
    let last_of_first = run
        .stdout
        .find(&format!("[{db_host}] ok       serving over https"))
        .unwrap_or_else(|| panic!("{}", run.all()));
    let first_of_second = run
        .stdout
        .find(&format!("[{app_host}] "))
        .unwrap_or_else(|| panic!("{}", run.all()));
    assert!(last_of_first < first_of_second, "{}", run.all());
    // One database: migrated once, on the first host; static files collected on each.
    run.assert_outcome(&db_host, "migrate", "changed");
    run.assert_outcome(&app_host, "migrate", "skipped");
    run.assert_outcome(&app_host, "collectstatic", "changed");
    run.assert_outcome(&app_host, "database up", "skipped");
    for k in 1..=fleet.hosts {
        let port = https + k as u16;
        let body = https_get(port, "drunc.localhost", "/");
        for want in [
            "settings=drunc_ui.settings.deployment\n".to_string(),
            format!("instance={}\n", fleet.host(k)),
            "secure=True\n".to_string(),
            "db=ok\n".to_string(),
        ] {
            assert!(body.contains(&want), "host {k}: {want:?} in {body:?}");
        }
        assert!(!body.contains("migrations=0\n"), "host {k}: {body}");
        let text = https_get(port, "drunc.localhost", "/static/drunc_ui/hello.txt");
        assert!(
            text.contains("hello from the Django UI"),
            "host {k}: {text:?}"
        );
    }

    // Unchanged: no file rewritten, no container recreated, no handler run.
    let run = deploy();
    run.assert_code(0);
    for step in ["compose file", "deployment settings", "Caddyfile", "up"] {
        run.assert_outcome(&app_host, step, "ok");
    }
    run.assert_outcome(&db_host, "database up", "ok");
    drop(fleet);
    drop(networks);
}

crate::on_both_compose_flavors! {
    examist_builds_on_the_host_and_serves_through_nginx => examist_example_v1, examist_example_v2;
    nexchange_deploys_copied_files_and_serves_https => nexchange_example_v1, nexchange_example_v2;
}

/// `examples/NAME` copied into the fleet's project; its playbook `deploy.toml`.
fn shipped_example(fleet: &LocalFleet, name: &str) -> PathBuf {
    let dir = fleet.project().join("examples").join(name);
    copy_dir(&Path::new(REPO).join("examples").join(name), &dir);
    dir.join("playbooks/deploy.toml")
}

fn examist_builds_on_the_host_and_serves_through_nginx(flavor: Flavor) {
    let fleet = LocalFleet::start("exam", 2, flavor);
    let playbook = shipped_example(&fleet, "examist");
    let port = free_range(fleet.hosts as u16 + 1);
    let inventory =
        inventory_with_port(&fleet, "examist_http_port", port, "inventory-examist.toml");
    let deploy = || {
        dropship_reporting(
            &[
                "deploy",
                "-i",
                inventory.to_str().unwrap(),
                playbook.to_str().unwrap(),
            ],
            None,
        )
    };
    let run = deploy();
    run.assert_code(0);
    for k in 1..=fleet.hosts {
        let host = fleet.host(k);
        run.assert_outcome(&host, "build images", "changed");
        let (status, body) = http_get_for(port + k as u16, "/api/health", "examist.localhost");
        assert_eq!(
            (status, body.as_str()),
            (200, "server=ok db=ok\n"),
            "host {k}"
        );
        let (status, page) = http_get_for(port + k as u16, "/", "examist.localhost");
        assert_eq!(status, 200, "host {k}: {page}");
        assert!(page.contains("<h1>Examist</h1>"), "host {k}: {page}");
    }
    // Nothing changed: the context and the config are ok, and so are the build and up. Not on
    // v1: its legacy builder, on the one engine all test hosts share, may answer a cached step
    // with the equal image another host's build made (another id), which is a change.
    let run = deploy();
    run.assert_code(0);
    let mut unchanged = vec!["build context", "nginx config"];
    if flavor == Flavor::V2 {
        unchanged.extend(["build images", "start stack"]);
    }
    for step in unchanged {
        run.assert_outcome(&fleet.host(1), step, "ok");
    }
}

fn nexchange_deploys_copied_files_and_serves_https(flavor: Flavor) {
    let fleet = LocalFleet::start("nexc", 2, flavor);
    let playbook = shipped_example(&fleet, "nexchange");
    let port = free_range(fleet.hosts as u16 + 1);
    let inventory = inventory_with_port(
        &fleet,
        "nexchange_https_port",
        port,
        "inventory-nexchange.toml",
    );
    let registry_password = fleet.secret("registry_password");
    let deploy = |extra: &[&str]| {
        let mut args = vec![
            "deploy",
            "-i",
            inventory.to_str().unwrap(),
            playbook.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let mut cmd = crate::harness::command(&args, None);
        cmd.env("NEXCHANGE_REGISTRY_PASSWORD", registry_password.trim());
        crate::harness::dropship_cmd(cmd)
    };
    let run = deploy(&[]);
    run.assert_code(0);
    for k in 1..=fleet.hosts {
        let body = https_get(port + k as u16, "nexchange.localhost", "/");
        assert!(
            body.contains("version=A\n") && body.contains("db=ok"),
            "host {k}: {body:?}\n{}",
            run.all()
        );
    }
    // A new tag: only the app is recreated; the certificate and the copied files stay.
    let run = deploy(&["--var", "image_tag=B"]);
    run.assert_code(0);
    for k in 1..=fleet.hosts {
        let host = fleet.host(k);
        run.assert_outcome(
            &host,
            "TLS certificate (self-signed unless one is installed)",
            "ok",
        );
        run.assert_outcome(&host, "docker-compose.yml", "ok");
        run.assert_outcome(&host, "nginx.conf", "ok");
        run.assert_outcome(&host, "environment (.env)", "changed");
        let body = https_get(port + k as u16, "nexchange.localhost", "/");
        assert!(
            body.contains("version=B\n") && body.contains("image=B\n"),
            "host {k}: {body:?}"
        );
    }
}
