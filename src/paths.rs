//! Local path rules: `~` expansion and resolving files relative to the playbook or inventory.

use std::path::{Path, PathBuf};

/// Expands a leading `~/` to `$HOME`.
pub fn expand_home(path: &str) -> PathBuf {
    if let Some(rest) = path.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return Path::new(&home).join(rest);
        }
    } else if path == "~"
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home);
    }
    PathBuf::from(path)
}

/// Resolves `path` against each base directory in turn and returns the first that exists;
/// when none does, the path joined to the first base (so the error names a sensible place).
pub fn resolve_existing(path: &str, bases: &[&Path]) -> PathBuf {
    let expanded = expand_home(path);
    if expanded.is_absolute() {
        return expanded;
    }
    for base in bases {
        let candidate = base.join(&expanded);
        if candidate.exists() {
            return candidate;
        }
    }
    bases
        .first()
        .map_or(expanded.clone(), |b| b.join(&expanded))
}

/// The directories a playbook's relative paths are tried against: its own directory, then
/// that directory's parent (the project root when playbooks live in `playbooks/`).
pub fn playbook_bases(playbook: &Path) -> Vec<PathBuf> {
    let dir = playbook
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let mut bases = vec![dir.clone()];
    let parent = dir.join("..");
    bases.push(parent);
    bases
}
