//! Template rendering in a playbook's context: the fuzzed text is a template file deployed
//! by a playbook whose `[vars]` (after the first NUL) may refer to each other; the whole plan
//! is built for two hosts (variables resolved, every field and file rendered and checked).
//! Any input is a plan or an input error, never a panic or a hang.
#![no_main]

use std::sync::{Arc, LazyLock};

use dropship::diagnostic::SourceFile;
use dropship::inventory::Inventory;
use dropship::plan::{self, PlanOptions};
use dropship::playbook::{Playbook, StepKind};
use dropship::secrets::Secret;
use indexmap::IndexMap;
use libfuzzer_sys::fuzz_target;

const INVENTORY: &str = r#"
[ssh]
user = "deploy"
ssh_config = ""

[vars]
app_dir = "/srv/{{ app }}"
registry = "registry.test:5000"

[groups.web]
vars = { server_name = "{{ host.name }}.test", http_port = 8080 }

[hosts."web-[1:2]"]
address = "{{ name }}.internal"
groups = ["web"]
"#;

const PLAYBOOK_HEAD: &str = "name = \"fuzz\"\napp = \"shop\"\nhosts = \"web\"\n";

const PLAYBOOK_TAIL: &str = r#"
[secrets]
db_password = { env = "DROPSHIP_FUZZ_UNSET" }

[[steps]]
name = "the fuzzed template"
template = { src = "t.j2", dest = "{{ app_dir }}/out.conf", mode = "0600" }

[[steps]]
compose = { command = "up", dir = "{{ app_dir }}" }
"#;

static DIR: LazyLock<tempfile::TempDir> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("t.j2"), "placeholder\n").expect("template");
    dir
});

static INV: LazyLock<Inventory> = LazyLock::new(|| {
    Inventory::parse(&SourceFile {
        path: DIR.path().join("inventory.toml"),
        text: INVENTORY.into(),
    })
    .expect("fuzz inventory parses")
});

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (template, vars) = text.split_once('\0').unwrap_or((&text, ""));
    let playbook_text = format!("{PLAYBOOK_HEAD}[vars]\n{vars}\n{PLAYBOOK_TAIL}");
    let playbook = Playbook::parse(SourceFile {
        path: DIR.path().join("playbook.toml"),
        text: playbook_text,
    })
    .or_else(|_| {
        Playbook::parse(SourceFile {
            path: DIR.path().join("playbook.toml"),
            text: format!("{PLAYBOOK_HEAD}{PLAYBOOK_TAIL}"),
        })
    });
    let Ok(mut playbook) = playbook else { return };
    for step in &mut playbook.steps {
        if let StepKind::Template(f) = &mut step.kind {
            f.content = Arc::from(template.as_bytes());
        }
    }
    let mut secrets = IndexMap::new();
    secrets.insert("db_password".to_string(), Secret::new("s3cret{{ x }}"));
    let _ = plan::build(&INV, &playbook, &secrets, &PlanOptions::default());
});
