//! Reuse against real sshd hosts: one template deployed twice by a `loop` with per-step `vars`,
//! `{% include %}` and `{% import %}` of other templates, a looped file step's handler fired
//! once, `check` listing the iterations; and bad loops, `item` outside a loop and includes
//! leaving the template directories refused before any connection.

use std::fs;
use std::path::PathBuf;

use crate::harness::{
    Fleet, assert_error_at, assert_untouched, location_of, run_playbook, start_fleet,
};

/// The template files of a project in the fleet's dir: `templates/site.conf.j2` includes
/// `nginx/common.conf.j2` (beside it) and imports a macro from `templates/macros.j2`.
fn write_templates(fleet: &Fleet, common: &str) {
    fs::create_dir_all(fleet.dir.path().join("templates/nginx")).unwrap();
    fleet.write(
        "templates/site.conf.j2",
        "{% import \"templates/macros.j2\" as m %}server {\n{{ m.listen(port) }}\n{% include \"nginx/common.conf.j2\" %}}\n",
    );
    fleet.write("templates/nginx/common.conf.j2", common);
    fleet.write(
        "templates/macros.j2",
        "{% macro listen(p) %}  listen 127.0.0.1:{{ p }};{% endmacro %}",
    );
}

const STEPS: &str = r#"
[vars]
instances = [{ name = "latest", port = 8000 }, { name = "stable", port = 8001 }]

[[steps]]
name = "site"
template = { src = "templates/site.conf.j2", dest = "{{ app_dir }}/{{ instance }}.conf" }
loop = "{{ instances }}"
vars = { instance = "{{ item.name }}", port = "{{ item.port }}" }
on_change = { run = "echo reloaded >> reloads.log", dir = "{{ app_dir }}" }

[[steps]]
name = "greeting"
run = "printf '%s\n' '{{ greeting }}' > greeting"
dir = "{{ app_dir }}"
vars = { greeting = "hello from {{ host.name }}" }
"#;

fn read(fleet: &Fleet, host: &str, file: &str) -> String {
    fs::read_to_string(fleet.host(host).root.join(file)).unwrap_or_default()
}

#[test]
fn one_template_deployed_per_instance_with_its_vars_includes_and_one_handler_run() {
    let fleet = start_fleet(2);
    write_templates(&fleet, "  # {{ instance }} on {{ host.name }}\n");
    let pb = fleet.write_playbook("pb.toml", "reuse", "rx", STEPS);

    // `check` lists every iteration, before any connection.
    let check = run_playbook("check", &fleet.write_inventory(""), &pb);
    check.assert_code(0);
    for name in ["site (latest)", "site (stable)", "greeting"] {
        assert!(
            check.stdout.contains(&format!("  - {name}: ")),
            "{}",
            check.all()
        );
    }
    assert_untouched(&fleet);

    let run = fleet.deploy(&pb, &[]);
    run.assert_code(0);
    for h in ["h1", "h2"] {
        assert_eq!(
            read(&fleet, h, "latest.conf"),
            format!("server {{\n  listen 127.0.0.1:8000;\n  # latest on {h}\n}}\n")
        );
        assert_eq!(
            read(&fleet, h, "stable.conf"),
            format!("server {{\n  listen 127.0.0.1:8001;\n  # stable on {h}\n}}\n")
        );
        assert_eq!(read(&fleet, h, "greeting"), format!("hello from {h}\n"));
        run.assert_outcome(h, "site (latest)", "changed");
        run.assert_outcome(h, "site (stable)", "changed");
        // Two iterations changed, one handler run.
        run.assert_outcome(
            h,
            "run echo reloaded >> reloads.log (site changed)",
            "changed",
        );
        assert_eq!(
            read(&fleet, h, "reloads.log"),
            "reloaded\n",
            "{}",
            run.all()
        );
    }

    // An included template changed: only the files that include it change, the handler runs
    // once more.
    write_templates(&fleet, "  # {{ instance }} on {{ host.name }} (v2)\n");
    let run = fleet.deploy(&pb, &[]);
    run.assert_code(0);
    for h in ["h1", "h2"] {
        assert!(
            read(&fleet, h, "stable.conf").contains("# stable on h"),
            "{h}"
        );
        assert!(read(&fleet, h, "stable.conf").ends_with("(v2)\n}\n"), "{h}");
        run.assert_outcome(h, "site (latest)", "changed");
        assert_eq!(read(&fleet, h, "reloads.log"), "reloaded\nreloaded\n");
    }

    // Nothing changed: both iterations ok, no handler run.
    let run = fleet.deploy(&pb, &[]);
    run.assert_code(0);
    for h in ["h1", "h2"] {
        run.assert_outcome(h, "site (latest)", "ok");
        run.assert_outcome(h, "site (stable)", "ok");
        run.assert_outcome(
            h,
            "run echo reloaded >> reloads.log (site changed)",
            "skipped",
        );
        assert_eq!(read(&fleet, h, "reloads.log"), "reloaded\nreloaded\n");
    }
}

/// Bad loops, `item` outside a loop, includes that leave the template directories or name a
/// missing file: exit 2 with the place, nothing touched.
#[test]
fn bad_loops_and_includes_are_refused_before_any_connection() {
    let fleet = start_fleet(1);
    fs::create_dir_all(fleet.dir.path().join("templates")).unwrap();
    let template_step =
        "[[steps]]\ntemplate = { src = \"templates/t.j2\", dest = \"{{ app_dir }}/t\" }\n";
    let cases: &[(&str, &str, &str, &str)] = &[
        // (template text, steps, where (file, needle), message)
        (
            "x\n",
            "[[steps]]\nrun = \"true\"\nloop = { a = 1 }\n",
            "pb.toml|{ a = 1 }",
            "`loop` must be a list, not table",
        ),
        (
            "x\n",
            "[[steps]]\nrun = \"echo {{ item }}\"\n",
            "pb.toml|\"echo {{ item }}\"",
            "`item` is used outside a loop",
        ),
        (
            "a\n{% include \"../../../etc/passwd\" %}\n",
            template_step,
            "templates/t.j2|{% include",
            "template name `../../../etc/passwd` is refused: it contains `..`",
        ),
        (
            "a\n{% import \"/etc/passwd\" as p %}\n",
            template_step,
            "templates/t.j2|{% import",
            "template name `/etc/passwd` is refused: it is an absolute path",
        ),
        (
            "a\n{% include \"missing.j2\" %}\n",
            template_step,
            "templates/t.j2|{% include",
            "template `missing.j2` not found",
        ),
    ];
    for (template, steps, at, message) in cases {
        fleet.write("templates/t.j2", template);
        let pb = fleet.write_playbook("pb.toml", "reuse", "rx", steps);
        let (file, needle) = at.split_once('|').unwrap();
        let path: PathBuf = fleet.dir.path().join(file);
        let run = fleet.deploy(&pb, &[]);
        run.assert_code(2);
        assert_error_at(&run, &location_of(&path, needle), message);
        assert!(run.stderr.contains("hint: "), "{}", run.all());
        assert!(!run.all().contains("root:x:0:0"), "{}", run.all());
    }
    assert_untouched(&fleet);
}

/// Items are data: a file name with spaces, `$(…)`, quotes and a leading `-` is written as
/// it is, nothing it spells runs, and a name with a newline shows as its position.
#[test]
fn hostile_items_stay_data() {
    let fleet = start_fleet(1);
    fleet.write("t.txt", "same\n");
    let pb = fleet.write_playbook(
        "pb.toml",
        "reuse",
        "rx",
        r#"
[[steps]]
name = "file"
copy = { src = "t.txt", dest = "{{ app_dir }}/{{ item }}" }
loop = ["-rf", "a b $(touch pwned)", "it's `id`", "two\nlines"]
"#,
    );
    let run = fleet.deploy(&pb, &[]);
    run.assert_code(0);
    let root = &fleet.host("h1").root;
    for name in ["-rf", "a b $(touch pwned)", "it's `id`", "two\nlines"] {
        assert_eq!(
            fs::read_to_string(root.join(name)).unwrap(),
            "same\n",
            "{name:?}\n{}",
            run.all()
        );
    }
    assert!(!root.join("pwned").exists());
    run.assert_outcome("h1", "file (a b $(touch pwned))", "changed");
    run.assert_outcome("h1", "file (item 4)", "changed");
}
