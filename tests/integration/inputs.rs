//! Input that must be refused before any host is touched (empty selections, impossible
//! settings, unrendered templates, cycles, huge ranges), and variables built from variables
//! landing where they say on real hosts.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{
    Fleet, Run, Secrets, dropship, inventory_with_ssh, logins, run_playbook, shop_playbook,
    start_fleet, toml_str, write,
};

/// TCP connections each host's sshd logged so far (the harness's readiness probe among them).
fn connections(fleet: &Fleet) -> Vec<usize> {
    fleet
        .hosts
        .iter()
        .map(|h| h.sshd_log().matches("Connection from").count())
        .collect()
}

/// Asserts exit 2 with `message` on stderr, and that no host saw even a TCP connection.
#[track_caller]
fn assert_refused_untouched(fleet: &Fleet, run: &Run, message: &str) {
    run.assert_code(2);
    assert!(
        run.stderr.contains(message),
        "expected `{message}` on stderr\n{}",
        run.all()
    );
    // sshd logs a connection as it accepts it; the run has ended, so give it a moment.
    std::thread::sleep(Duration::from_millis(50));
    for (h, seen) in fleet.hosts.iter().zip(connections(fleet)) {
        let log = h.sshd_log();
        assert!(
            seen == ready_probes(&log) && logins(&log) == 0,
            "{} was contacted:\n{log}\n{}",
            h.name,
            run.all()
        );
    }
}

/// The harness's own connections: it connects once to see that sshd listens, and closes
/// before the key exchange.
fn ready_probes(log: &str) -> usize {
    log.matches("kex_exchange_identification: Connection closed by remote host")
        .count()
}

/// Every path under `root` whose name still holds a template delimiter.
fn template_named_paths(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains("{{") || name.contains("{%") || name.contains("}}") {
                out.push(path.clone());
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(path);
            }
        }
    }
    out
}

const CONF_TEMPLATE: &str = "conf={{ conf }}\nfirst={{ files.list[0] }}\nport={{ ports.web }}\n";

#[test]
fn chained_variables_render_per_host_into_the_right_directory() {
    let fleet = start_fleet(2);
    let top = fleet.dir.path();
    // inventory [vars] < group vars < host vars (app_dir, from the harness) < playbook vars:
    // each layer refers to the one below, and to built-ins (`app`, `host.name`).
    let inv = fleet.write_inventory(
        "vars = { site = \"{{ host.name }}/root/{{ sub }}\", port_base = 8000 }\n\
         \n[vars]\nsub = \"{{ app }}-{{ host.name }}\"\nsite = \"overridden by the group\"\n",
    );
    write(top, "conf.j2", CONF_TEMPLATE);
    let playbook = write(
        top,
        "chained.toml",
        &format!(
            r#"name = "chained"
app = "shop"
hosts = "web"

[vars]
conf = "{top}/{{{{ site }}}}/conf"
files = {{ list = ["{{{{ conf }}}}/first", "{{{{ conf }}}}/second"] }}
ports = {{ web = "{{{{ port_base + 80 }}}}" }}

[[steps]]
name = "conf file"
template = {{ src = "conf.j2", dest = "{{{{ conf }}}}/app.conf" }}

[[steps]]
name = "nested"
dir = "{{{{ conf }}}}"
run = "touch {{{{ files.list[1] }}}} in-dir"
"#,
            top = top.display()
        ),
    );
    let run = run_playbook("deploy", &inv, &playbook);
    run.assert_code(0);
    for h in &fleet.hosts {
        let conf = h.root.join(format!("shop-{}", h.name)).join("conf");
        let text = fs::read_to_string(conf.join("app.conf"))
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", h.name, run.all()));
        assert_eq!(
            text,
            format!(
                "conf={}\nfirst={}/first\nport=8080\n",
                conf.display(),
                conf.display()
            )
        );
        assert!(conf.join("second").is_file(), "{}\n{}", h.name, run.all());
        assert!(conf.join("in-dir").is_file(), "{}\n{}", h.name, run.all());
    }
    assert_eq!(template_named_paths(top), Vec::<PathBuf>::new());
}

#[test]
fn variable_cycles_and_unrendered_values_are_refused() {
    let fleet = start_fleet(1);
    let top = fleet.dir.path();
    let inv = fleet.write_inventory("\n[vars]\nbase = \"{{ app_dir }}/srv\"\n");
    write(top, "conf.j2", "x\n");
    let playbook = write(
        top,
        "cycle.toml",
        &format!(
            "name = \"c\"\napp = \"shop\"\n\n[vars]\napp_dir = \"{}/{{{{ base }}}}\"\n\n[[steps]]\ntemplate = {{ src = \"conf.j2\", dest = \"{{{{ app_dir }}}}/x\" }}\n",
            top.display()
        ),
    );
    let run = run_playbook("check", &inv, &playbook);
    run.assert_code(2);
    for want in [
        "variables refer to each other in a cycle: `app_dir` → `base` → `app_dir`",
        &format!("`app_dir` at {}:5:11", playbook.display()),
        &format!("`base` at {}:", inv.display()),
    ] {
        assert!(run.stderr.contains(want), "no `{want}`\n{}", run.all());
    }
    let run = run_playbook("deploy", &inv, &playbook);
    assert_refused_untouched(&fleet, &run, "in a cycle");

    // `--var` is data, never a template: a value holding `{{` cannot become a directory.
    let plain = fleet.write_inventory("");
    let secrets = Secrets::fresh();
    let app_dir = format!("app_dir={}/{{{{ base }}}}", top.display());
    let run = dropship(
        &[
            "deploy",
            "-i",
            plain.to_str().unwrap(),
            shop_playbook().to_str().unwrap(),
            "--var",
            &app_dir,
        ],
        Some(&secrets),
    );
    assert_refused_untouched(&fleet, &run, "still contains `{{` after rendering");
    assert!(
        run.stderr.contains("steps.0.template.dest"),
        "{}",
        run.all()
    );
    assert_eq!(template_named_paths(top), Vec::<PathBuf>::new());
}

/// Playbook `name`: one template step into `dest` (TOML text) and one `run` step tagged `t`.
fn one_file_playbook(dir: &Path, name: &str, hosts: &str, dest: &str) -> PathBuf {
    write(dir, "conf.j2", "x\n");
    write(
        dir,
        name,
        &format!(
            "name = \"one\"\napp = \"shop\"\n{hosts}\n\n[[steps]]\ntemplate = {{ src = \"conf.j2\", dest = {dest} }}\n\n[[steps]]\nrun = \"true\"\ntags = [\"t\"]\n"
        ),
    )
}

#[test]
fn empty_selections_and_impossible_settings_exit_2_before_any_connection() {
    let fleet = start_fleet(1);
    let top = fleet.dir.path();
    let inv = fleet.write_inventory("");
    let good = one_file_playbook(top, "good.toml", "hosts = \"web\"", "\"{{ app_dir }}/f\"");
    let deploy = |inv: &Path, playbook: &Path, extra: &[&str]| {
        let mut args = vec![
            "deploy",
            "-i",
            inv.to_str().unwrap(),
            playbook.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        dropship(&args, None)
    };
    let report = top.join("report.json");
    let report_s = report.to_str().unwrap();

    // Empty selections.
    for limit in ["", " , "] {
        let run = deploy(&inv, &good, &["--limit", limit, "--json", report_s]);
        assert_refused_untouched(&fleet, &run, "--limit names no host");
        assert!(run.stderr.contains("hint:"), "{}", run.all());
        assert!(!report.exists(), "a refused run left {}", report.display());
    }
    let run = dropship(
        &[
            "exec",
            "-i",
            inv.to_str().unwrap(),
            "--limit",
            "",
            "--",
            "true",
        ],
        None,
    );
    assert_refused_untouched(&fleet, &run, "--limit names no host");
    let no_hosts = one_file_playbook(top, "one.toml", "hosts = []", "\"{{ app_dir }}/f\"");
    let run = deploy(&inv, &no_hosts, &[]);
    assert_refused_untouched(&fleet, &run, "`hosts` names no host");
    assert!(run.stderr.contains("one.toml:3:"), "{}", run.all());
    let run = deploy(&inv, &good, &["--tags", "nope"]);
    assert_refused_untouched(&fleet, &run, "--tags `nope` selects no step");
    assert!(
        run.stderr.contains("hint: the playbook's tags: `t`"),
        "{}",
        run.all()
    );

    // A JSON report that cannot be written.
    let missing_dir = top.join("no-such-dir/report.json");
    for (path, message) in [
        (
            missing_dir.to_str().unwrap(),
            "cannot write the JSON report",
        ),
        (top.to_str().unwrap(), "is a directory"),
    ] {
        let run = deploy(&inv, &good, &["--json", path]);
        assert_refused_untouched(&fleet, &run, message);
        assert!(run.stderr.contains("--json"), "{}", run.all());
    }

    // SSH settings that cannot work.
    let key_missing = inventory_with_ssh(
        &fleet,
        &[(
            "identity_file",
            toml_str(&top.join("no-key").to_string_lossy()),
        )],
    );
    let run = deploy(&key_missing, &good, &[]);
    assert_refused_untouched(&fleet, &run, "identity file");
    assert!(
        run.stderr.contains("inventory-custom.toml:3:"),
        "{}",
        run.all()
    );
    let kh_dir = inventory_with_ssh(&fleet, &[("known_hosts", toml_str(&top.to_string_lossy()))]);
    let run = deploy(&kh_dir, &good, &[]);
    assert_refused_untouched(&fleet, &run, "is a directory");
    assert!(run.stderr.contains("known_hosts"), "{}", run.all());
    let port = fleet.hosts[0].port;
    let port_zero = write(
        top,
        "port0.toml",
        &fleet
            .inventory()
            .replace(&format!("port = {port}"), "port = 0"),
    );
    let run = deploy(&port_zero, &good, &[]);
    assert_refused_untouched(&fleet, &run, "port 0");
    let nope_address = write(
        top,
        "address.toml",
        &fleet.inventory().replace(
            "address = \"127.0.0.1\"",
            "address = \"{{ nope }}.example\"",
        ),
    );
    let run = deploy(&nope_address, &good, &[]);
    assert_refused_untouched(&fleet, &run, "undefined variable `nope` in `address`");
    assert!(run.stderr.contains("address.toml:"), "{}", run.all());
    // A compose flavour that does not exist, for `ping` too.
    let bad_compose = write(
        top,
        "compose.toml",
        &format!("compose = \"v1\"\n{}", fleet.inventory()),
    );
    let run = deploy(&bad_compose, &good, &[]);
    assert_refused_untouched(
        &fleet,
        &run,
        "compose.toml:1:11: unknown variant `v1`, expected one of `auto`, `plugin`, `standalone`",
    );
    assert!(
        run.stderr
            .contains("hint: write compose = \"auto\" (the plugin when the host has it"),
        "{}",
        run.all()
    );
    let run = dropship(&["ping", "-i", bad_compose.to_str().unwrap()], None);
    assert_refused_untouched(&fleet, &run, "unknown variant `v1`");

    // Destinations that name no file.
    for (dest, message) in [
        ("\"\"", "is empty"),
        ("\"{{ app_dir }}/conf/\"", "ends with `/`"),
        ("\"{{ nothing }}\"", "is empty"),
    ] {
        let playbook = one_file_playbook(
            top,
            "dest.toml",
            "hosts = \"web\"\n[vars]\nnothing = \"\"",
            dest,
        );
        let run = deploy(&inv, &playbook, &[]);
        assert_refused_untouched(&fleet, &run, message);
        assert!(
            run.stderr.contains("steps.0.template.dest"),
            "{}",
            run.all()
        );
    }

    // The same inventory and playbook deploy fine: the refusals above were about the input.
    let run = deploy(&inv, &good, &["--json", report_s]);
    run.assert_code(0);
    assert!(report.is_file());
}

#[test]
fn host_ranges_are_capped_on_the_product_of_all_ranges_in_a_name() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "conf.j2", "x\n");
    let playbook = one_file_playbook(dir.path(), "one.toml", "", "\"/tmp/x\"");
    for name in [
        "h-[1:1000]-[1:1000]",
        "h[1:99999999999]",
        "h-[1:100000]-[1:100000]",
    ] {
        let inv = write(
            dir.path(),
            "range.toml",
            &format!("[hosts.\"{name}\"]\naddress = \"127.0.0.1\"\n"),
        );
        let started = Instant::now();
        let run = run_playbook("check", &inv, &playbook);
        run.assert_code(2);
        assert!(
            run.stderr.contains("more than 100000 hosts"),
            "{name}: {}",
            run.all()
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name} took {:?}",
            started.elapsed()
        );
    }
}
