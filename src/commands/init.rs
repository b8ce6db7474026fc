//! `dropship init [DIR]`: a new project from the example app — inventories, the playbook, its
//! templates (the repository's own files, embedded), a .gitignore and local placeholder
//! secrets. Writes nothing when any of its files exists. May import diagnostic.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use crate::diagnostic::InputError;

/// The example app's files, as the repository has them: one source for the demo and `init`.
const EXAMPLE: &[(&str, &str)] = &[
    (
        "inventory/local.toml",
        include_str!("../../inventory/local.toml"),
    ),
    (
        "inventory/production.toml",
        include_str!("../../inventory/production.example.toml"),
    ),
    (
        "playbooks/deploy.toml",
        include_str!("../../playbooks/deploy.toml"),
    ),
    (
        "templates/docker-compose.yml.j2",
        include_str!("../../templates/docker-compose.yml.j2"),
    ),
    (
        "templates/nginx.conf.j2",
        include_str!("../../templates/nginx.conf.j2"),
    ),
    ("templates/env.j2", include_str!("../../templates/env.j2")),
];

/// The first line of the production inventory, which in the repository says to copy it.
const PRODUCTION_HEADER: &str =
    "# Your fleet: edit the hosts, the SSH user and key, and the registry below.";

const GITIGNORE: &str = "\
# Kept out of version control by `dropship init`: anything holding a plaintext secret.
# Local state: SSH keys, known_hosts, plaintext secret files (`{ file = \".fleet/secrets/…\" }`).
.fleet/
# Identities and keys (the vault's identity lives in ~/.config/dropship/age.key).
*.key
*.pem
id_ed25519*
id_rsa*
# Rendered files: a local render of templates/env.j2 holds every secret.
.env
.env.*
*.env
# The encrypted vault is meant to be committed: secrets.age stays tracked.
";

/// The placeholder secrets the example playbook reads (`{ file = ".fleet/secrets/NAME" }`),
/// made random so that the project checks at once and nothing guessable is ever deployed.
const PLACEHOLDER_SECRETS: &[&str] = &[
    ".fleet/secrets/django_secret_key",
    ".fleet/secrets/postgres_password",
    ".fleet/secrets/registry_password",
];

/// One file the scaffold writes.
struct Planned {
    rel: &'static str,
    text: String,
    /// Secrets: 0600 in 0700 directories.
    private: bool,
}

fn planned() -> Result<Vec<Planned>, InputError> {
    let mut files: Vec<Planned> = EXAMPLE
        .iter()
        .map(|(rel, text)| Planned {
            rel,
            text: if *rel == "inventory/production.toml" {
                replace_first_comment(text, PRODUCTION_HEADER)
            } else {
                text.to_string()
            },
            private: false,
        })
        .collect();
    files.push(Planned {
        rel: ".gitignore",
        text: GITIGNORE.to_string(),
        private: false,
    });
    for rel in PLACEHOLDER_SECRETS {
        files.push(Planned {
            rel,
            text: random_secret()?,
            private: true,
        });
    }
    Ok(files)
}

fn replace_first_comment(text: &str, header: &str) -> String {
    match text.split_once('\n') {
        Some((first, rest)) if first.starts_with('#') => format!("{header}\n{rest}"),
        _ => format!("{header}\n{text}"),
    }
}

/// 24 random bytes from the kernel, as 48 hex digits.
fn random_secret() -> Result<String, InputError> {
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| InputError::plain(format!("cannot read /dev/urandom: {e}")))?;
    Ok(hex::encode(bytes))
}

/// Scaffolds the project into `dir`: every path checked before the first is written.
pub fn run(dir: &Path) -> Result<(), InputError> {
    if dir.exists() && !dir.is_dir() {
        return Err(InputError::plain(format!(
            "`{}` exists and is not a directory",
            dir.display()
        ))
        .with_hint("give a new or an existing directory"));
    }
    let files = planned()?;
    let existing: Vec<PathBuf> = files
        .iter()
        .map(|f| dir.join(f.rel))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect();
    if let Some(first) = existing.first() {
        let mut all: Vec<String> = existing
            .iter()
            .take(4)
            .map(|p| format!("`{}`", p.display()))
            .collect();
        if existing.len() > 4 {
            all.push(format!("and {} more", existing.len() - 4));
        }
        return Err(InputError::plain(format!(
            "`{}` already exists; `init` overwrites nothing, so it wrote nothing",
            first.display()
        ))
        .with_hint(format!(
            "init into a new directory (`dropship init myapp`), or move away: {}",
            all.join(", ")
        )));
    }
    for file in &files {
        write_new(&dir.join(file.rel), &file.text, file.private).map_err(|e| {
            InputError::plain(format!(
                "cannot write `{}`: {e}",
                dir.join(file.rel).display()
            ))
        })?;
    }
    print_next(dir, &files);
    Ok(())
}

fn write_new(path: &Path, text: &str, private: bool) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(if private { 0o700 } else { 0o755 })
            .create(parent)?;
    }
    // create_new: a file that appeared since the check is still never overwritten.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)?;
    file.write_all(text.as_bytes())
}

fn print_next(dir: &Path, files: &[Planned]) {
    let mut out = format!("created the example app `pixel` in `{}`:\n", dir.display());
    for file in files {
        let note = if file.private {
            "  (random placeholder, 0600; .gitignore keeps .fleet/ out of git)"
        } else {
            ""
        };
        out.push_str(&format!("  {}{note}\n", file.rel));
    }
    let cd = if dir == Path::new(".") {
        String::new()
    } else {
        format!("cd {} && ", shell_escape::escape(dir.to_string_lossy()))
    };
    out.push_str(&format!(
        "\nnext:\n  # render every template for every host, without connecting:\n  {cd}dropship check -i inventory/production.toml playbooks/deploy.toml\n  # an encrypted secrets.age to commit (then `{{ vault = \"NAME\" }}` in the playbook's [secrets]):\n  dropship secrets init\n  # once inventory/production.toml names your hosts, SSH user and registry:\n  dropship deploy -i inventory/production.toml playbooks/deploy.toml\n"
    ));
    let _ = std::io::stdout().write_all(out.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_production_inventory_says_to_edit_it_not_to_copy_it() {
        let files = planned().unwrap();
        let production = files
            .iter()
            .find(|f| f.rel == "inventory/production.toml")
            .unwrap();
        assert!(production.text.starts_with(PRODUCTION_HEADER));
        assert!(!production.text.contains("Copy to production.toml"));
    }

    #[test]
    fn placeholder_secrets_are_random_and_distinct() {
        let a = random_secret().unwrap();
        let b = random_secret().unwrap();
        assert_eq!(a.len(), 48);
        assert_ne!(a, b);
    }
}
