//! `copy`/`template` of a directory: the local tree read with the playbook (bounded, no
//! symlinks), and what the step does on one host. Each file is an ordinary [`Upload`] (checked
//! by the one probe like every destination, written by the one verified atomic upload,
//! `files::upload`); the step adds its subdirectories (`tree::make_dirs`) and, with `delete`,
//! the removal of what the source no longer has (`tree::remove`), all in one segment and one
//! report line.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Done, Failure, HostView, Learned, Prepared, require_success};
use crate::plan::Upload;
use crate::remote::driver::Segment;
use crate::remote::files;
use crate::remote::probe::RemoteFile;
use crate::remote::tree::{self, DirSpec, Listing};
use crate::report::Outcome;
use crate::transport::ExecOutput;

/// Most files one directory step uploads.
pub const MAX_FILES: usize = 10_000;
/// Most bytes one directory step uploads (its files' total).
pub const MAX_BYTES: u64 = 1 << 30;

/// One file of a local directory.
#[derive(Debug, Clone)]
pub struct LocalFile {
    /// Its path below the directory, `/`-separated.
    pub rel: String,
    pub path: PathBuf,
    pub content: Arc<[u8]>,
    /// Its permission bits (`0o777` at most).
    pub mode: u32,
}

/// A local directory read whole: every regular file (hidden ones too) and every subdirectory,
/// each sorted so parents come before their contents.
#[derive(Debug, Clone, Default)]
pub struct LocalTree {
    pub files: Vec<LocalFile>,
    pub dirs: Vec<String>,
}

/// Reads the directory `root`. A symlink, a special file, a name that is not UTF-8, a file
/// that cannot be read, or more than `MAX_FILES` files / `MAX_BYTES` bytes: the error's text.
pub fn read_tree(root: &Path) -> Result<LocalTree, String> {
    let mut tree = LocalTree::default();
    let mut bytes = 0u64;
    walk(root, "", &mut tree, &mut bytes)?;
    Ok(tree)
}

fn walk(dir: &Path, prefix: &str, tree: &mut LocalTree, bytes: &mut u64) -> Result<(), String> {
    let shown = |rel: &str| {
        if rel.is_empty() {
            ".".to_string()
        } else {
            rel.to_string()
        }
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read directory `{}`: {e}", shown(prefix)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot read directory `{}`: {e}", shown(prefix)))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().into_string().map_err(|name| {
            format!("`{}` has a name that is not UTF-8: {name:?}", shown(prefix))
        })?;
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let meta = std::fs::symlink_metadata(entry.path())
            .map_err(|e| format!("cannot read `{rel}`: {e}"))?;
        let kind = meta.file_type();
        if kind.is_symlink() {
            return Err(format!(
                "`{rel}` is a symlink: a directory step uploads regular files and directories only"
            ));
        } else if kind.is_dir() {
            tree.dirs.push(rel.clone());
            walk(&entry.path(), &rel, tree, bytes)?;
        } else if kind.is_file() {
            if tree.files.len() == MAX_FILES {
                return Err(format!(
                    "it holds more than {MAX_FILES} files, the most one directory step uploads"
                ));
            }
            *bytes += meta.len();
            if *bytes > MAX_BYTES {
                return Err(format!(
                    "its files add up to more than 1 GiB ({MAX_BYTES} bytes), the most one directory step uploads"
                ));
            }
            let content =
                std::fs::read(entry.path()).map_err(|e| format!("cannot read `{rel}`: {e}"))?;
            tree.files.push(LocalFile {
                rel,
                path: entry.path(),
                content: content.into(),
                mode: meta.permissions().mode() & 0o777,
            });
        } else {
            return Err(format!(
                "`{rel}` is not a regular file (a socket, fifo or device): a directory step uploads regular files and directories only"
            ));
        }
    }
    Ok(())
}

/// A directory placed on one host: its files as uploads (`root/REL`), its subdirectories.
#[derive(Debug, Clone)]
pub struct TreeUpload {
    /// The destination directory as rendered, without a trailing `/`.
    pub root: String,
    pub files: Vec<Upload>,
    /// Each file's path below `root` (same order as `files`).
    pub rels: Vec<String>,
    /// Subdirectories below `root`, parents first.
    pub dirs: Vec<String>,
    pub dir_spec: DirSpec,
    /// Remove what is under `root` on the host and not in the source.
    pub delete: bool,
}

/// What a tree step has to do on a host, from what the probe found there.
struct Work<'a> {
    /// Indices in `files` of the files that differ.
    changed: Vec<usize>,
    /// Entries to remove (`delete`): non-directories, then directories.
    remove_others: Vec<&'a str>,
    remove_dirs: Vec<&'a str>,
    /// Source directories the host lacks (known only with `delete`, which lists the host).
    missing_dirs: usize,
}

impl TreeUpload {
    fn work<'a>(&self, host: &'a HostView<'_>) -> Work<'a> {
        let changed = self
            .files
            .iter()
            .enumerate()
            .filter(|(_, u)| !matches!(host.files.get(&u.dest), Some(Some(r)) if r.matches(u)))
            .map(|(i, _)| i)
            .collect();
        let mut work = Work {
            changed,
            remove_others: Vec::new(),
            remove_dirs: Vec::new(),
            missing_dirs: 0,
        };
        if let (true, Some(listing)) = (self.delete, host.trees.get(&self.root)) {
            let rels: HashSet<&str> = self.rels.iter().map(String::as_str).collect();
            let dirs: HashSet<&str> = self.dirs.iter().map(String::as_str).collect();
            work.remove_others = listing
                .others
                .iter()
                .map(String::as_str)
                .filter(|p| !rels.contains(p))
                .collect();
            work.remove_dirs = listing
                .dirs
                .iter()
                .map(String::as_str)
                .filter(|p| !dirs.contains(p))
                .collect();
            let there: HashSet<&str> = listing.dirs.iter().map(String::as_str).collect();
            work.missing_dirs = self
                .dirs
                .iter()
                .filter(|d| !there.contains(d.as_str()))
                .count();
        }
        work
    }

    pub fn describe(&self) -> String {
        let bytes: usize = self.files.iter().map(|u| u.content.len()).sum();
        let secret = self.files.iter().filter(|u| u.sensitive).count();
        format!(
            "directory {}/ ({} files, {} bytes, {} subdirectories ({:04o} when made){}{}{})",
            self.root,
            self.files.len(),
            bytes,
            self.dirs.len(),
            self.dir_spec.mode,
            self.dir_spec
                .chown
                .as_deref()
                .map(|c| format!(", owner {c}"))
                .unwrap_or_default(),
            if self.delete {
                ", removes what the source lacks"
            } else {
                ""
            },
            if secret > 0 {
                format!(", {secret} hold secrets")
            } else {
                String::new()
            }
        )
    }

    pub fn prepare(&self, host: &HostView<'_>, label: &str, tag: usize) -> Prepared {
        let work = self.work(host);
        if work.changed.is_empty()
            && work.remove_others.is_empty()
            && work.remove_dirs.is_empty()
            && work.missing_dirs == 0
        {
            return Prepared::Local(Done::new(
                Outcome::Ok,
                Some(format!("{}/: {} files", self.root, self.files.len())),
            ));
        }
        let mut script = String::new();
        if !work.remove_others.is_empty() || !work.remove_dirs.is_empty() {
            let others: Vec<String> = work.remove_others.iter().map(|s| s.to_string()).collect();
            let dirs: Vec<String> = work.remove_dirs.iter().map(|s| s.to_string()).collect();
            script.push_str(tree::remove(&self.root, &others, &dirs).as_str());
            script.push_str(" && ");
        }
        script.push_str(tree::make_dirs(&self.root, &self.dirs, &self.dir_spec).as_str());
        let mut cleanup: Vec<String> = Vec::new();
        let mut stdin = Vec::with_capacity(work.changed.len());
        for &i in &work.changed {
            let upload = &self.files[i];
            script.push_str(" &&\n");
            script.push_str(&files::upload(upload, tag));
            stdin.push(upload.content.clone());
            let line = files::upload_cleanup(upload);
            if !cleanup.contains(&line) {
                cleanup.push(line);
            }
        }
        Prepared::Remote(Segment {
            script,
            stdin,
            label: label.to_string(),
            cleanup: (!cleanup.is_empty()).then(|| cleanup.join("\n")),
        })
    }

    pub fn judge(&self, host: &HostView<'_>, out: &ExecOutput) -> Result<Done, Failure> {
        require_success(out, host.redactor)?;
        let work = self.work(host);
        let removed: Vec<&str> = work
            .remove_others
            .iter()
            .chain(&work.remove_dirs)
            .copied()
            .collect();
        let mut detail = format!(
            "{}/: {} of {} files changed",
            self.root,
            work.changed.len(),
            self.files.len()
        );
        if !removed.is_empty() {
            const SHOWN: usize = 5;
            let mut names: Vec<String> = removed
                .iter()
                .take(SHOWN)
                .map(|n| format!("{n:?}"))
                .collect();
            if removed.len() > SHOWN {
                names.push(format!("… {} more", removed.len() - SHOWN));
            }
            detail.push_str(&format!(
                ", {} removed ({})",
                removed.len(),
                names.join(", ")
            ));
        }
        let files = work
            .changed
            .iter()
            .map(|&i| {
                (
                    self.files[i].dest.clone(),
                    RemoteFile::written_by(&self.files[i]),
                )
            })
            .collect();
        let listing = self.delete.then(|| {
            (
                self.root.clone(),
                Listing {
                    dirs: self.dirs.clone(),
                    others: self.rels.clone(),
                },
            )
        });
        Ok(Done {
            learned: Some(Learned::Wrote { files, listing }),
            ..Done::new(Outcome::Changed, Some(detail))
        })
    }
}
