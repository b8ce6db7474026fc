//! Playbook parsing and validation: any text is a playbook or an input error, never a panic.
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use dropship::diagnostic::SourceFile;
use dropship::playbook::Playbook;
use libfuzzer_sys::fuzz_target;

/// A directory holding the templates the seed playbooks name, so `src` can be found.
static DIR: LazyLock<tempfile::TempDir> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temp dir");
    let templates = dir.path().join("templates");
    std::fs::create_dir(&templates).expect("templates dir");
    for name in [
        "docker-compose.yml.j2",
        "env.j2",
        "nginx.conf.j2",
        "authorized_keys.j2",
        "undefined_var.j2",
    ] {
        std::fs::write(templates.join(name), "x={{ x }}\n").expect("template");
    }
    dir
});

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let path: PathBuf = DIR.path().join("playbook.toml");
    let _ = Playbook::parse(SourceFile { path, text });
});
