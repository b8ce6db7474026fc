//! Inventory parsing: any text is an inventory or an input error, never a panic, a hang or
//! an allocation out of proportion (host ranges), and a `--limit` pattern over it is too.
#![no_main]

use dropship::diagnostic::SourceFile;
use dropship::inventory::Inventory;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // An optional `--limit` pattern after the first NUL.
    let (text, limit) = text.split_once('\0').unwrap_or((&text, "all"));
    let file = SourceFile {
        // A directory that does not exist: relative paths (ssh_config, keys) find nothing.
        path: "/nonexistent/dropship-fuzz/inventory.toml".into(),
        text: text.to_string(),
    };
    if let Ok(inventory) = Inventory::parse(&file) {
        let _ = dropship::plan::target_hosts(&inventory, "all", Some(limit));
    }
});
