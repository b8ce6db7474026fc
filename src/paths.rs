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
        let candidate = normalize(&base.join(&expanded));
        if candidate.exists() {
            return candidate;
        }
    }
    bases
        .first()
        .map_or(expanded.clone(), |b| normalize(&b.join(&expanded)))
}

/// Removes `.` and `dir/..` pairs without touching the file system, so messages show
/// `templates/env.j2` rather than `playbooks/../templates/env.j2`.
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            Component::ParentDir if matches!(out.last(), Some(Component::RootDir)) => {}
            other => out.push(other),
        }
    }
    if out.is_empty() {
        PathBuf::from(".")
    } else {
        out.iter().collect()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_drops_dot_and_dot_dot() {
        assert_eq!(
            normalize(Path::new("playbooks/../templates/env.j2")),
            PathBuf::from("templates/env.j2")
        );
        assert_eq!(normalize(Path::new("./a/./b")), PathBuf::from("a/b"));
        assert_eq!(normalize(Path::new("../x")), PathBuf::from("../x"));
        assert_eq!(normalize(Path::new("/srv/../etc")), PathBuf::from("/etc"));
    }
}
