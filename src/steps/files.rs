//! `copy` and `template`: a file placed on the host (checked first by the probe, written only
//! when it differs), its keys, rendering and description; a directory `src` is placed file by
//! file the same way (`tree.rs`).

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::tree::{self, LocalTree, TreeUpload};
use super::{
    Act, Done, Failure, HostView, Kind, Learned, ParseCx, PlanCx, Prepared, Templated,
    require_success, valid_user_name,
};
use crate::diagnostic::{InputError, SourceFile};
use crate::paths::resolve_existing;
use crate::plan::{Upload, upload};
use crate::remote::driver::Segment;
use crate::remote::files;
use crate::remote::probe::RemoteFile;
use crate::remote::tree::DirSpec;
use crate::report::Outcome;
use crate::transport::ExecOutput;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    src: Spanned<String>,
    dest: Spanned<String>,
    mode: Option<Spanned<String>>,
    owner: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
    /// A directory `src` only: the mode of the directories it makes.
    dir_mode: Option<Spanned<String>>,
    /// A directory `src` only: remove what is under `dest` and not in `src`.
    delete: Option<Spanned<bool>>,
}

/// A file step as written: `src` read when the playbook is, `dest` rendered per host.
#[derive(Debug, Clone)]
pub struct FileStep {
    /// `src` as written: the template's name in errors.
    pub src_name: String,
    pub src_path: PathBuf,
    pub src_span: std::ops::Range<usize>,
    /// The file's bytes (for `copy`) or the template source (for `template`); empty for a
    /// directory.
    pub content: Arc<[u8]>,
    /// `src` is a directory: its files (each placed like a file step's) and subdirectories.
    pub tree: Option<LocalTree>,
    pub dest: Templated,
    /// The mode written in the step; else a file gets 0644, a directory's files their own.
    pub mode: Option<u32>,
    /// A directory's subdirectories that do not exist yet are made with this mode.
    pub dir_mode: u32,
    pub delete: bool,
    /// Owner and group to give the file (rendered per host, checked to be plain names).
    pub owner: Option<Templated>,
    pub group: Option<Templated>,
}

/// A file step of either kind: `copy` ([`AsIs`]) or `template` ([`Rendered`]).
#[derive(Debug, Clone)]
pub struct File<C>(pub FileStep, PhantomData<C>);

/// `copy = { src, dest, mode, owner, group, dir_mode, delete }`: the file (or directory) as it is.
pub type Copy = File<AsIs>;
/// `template = { … }`: the same, each file rendered per host.
pub type Template = File<Rendered>;

/// Where a file's content comes from, for one host: the content and whether it holds a
/// secret. `name` is its template name, `raw` its bytes as read.
pub trait Content: std::fmt::Debug + Clone {
    fn content(
        name: &str,
        raw: &Arc<[u8]>,
        cx: &PlanCx<'_>,
    ) -> Result<(Arc<[u8]>, bool), InputError>;
}

#[derive(Debug, Clone)]
pub struct AsIs;

#[derive(Debug, Clone)]
pub struct Rendered;

impl Content for AsIs {
    fn content(
        _name: &str,
        raw: &Arc<[u8]>,
        _cx: &PlanCx<'_>,
    ) -> Result<(Arc<[u8]>, bool), InputError> {
        Ok((raw.clone(), false))
    }
}

impl Content for Rendered {
    fn content(
        name: &str,
        _raw: &Arc<[u8]>,
        cx: &PlanCx<'_>,
    ) -> Result<(Arc<[u8]>, bool), InputError> {
        let text = cx.renderer.render_file(name, cx.ctx)?;
        let sensitive = cx.renderer.file_uses_secrets(name);
        Ok((text.into_bytes().into(), sensitive))
    }
}

/// What a `copy`/`template` step places on one host: a file, or a directory's files.
#[derive(Debug, Clone)]
pub enum Placement {
    File(Upload),
    Tree(TreeUpload),
}

impl<C> Deref for File<C> {
    type Target = FileStep;
    fn deref(&self) -> &FileStep {
        &self.0
    }
}

impl<C> DerefMut for File<C> {
    fn deref_mut(&mut self) -> &mut FileStep {
        &mut self.0
    }
}

impl<C: Content> Kind for File<C> {
    type Raw = RawFile;
    type Action = Placement;

    fn parse(raw: Spanned<RawFile>, cx: &ParseCx<'_>) -> Result<Self, InputError> {
        Ok(File(load_file_step(cx, raw)?, PhantomData))
    }

    fn default_name(&self) -> String {
        self.dest.get_ref().clone()
    }

    fn templated_fields(&self) -> Vec<&Templated> {
        let mut fields = vec![&self.dest];
        fields.extend(self.owner.iter());
        fields.extend(self.group.iter());
        fields
    }

    fn plan(&self, cx: &mut PlanCx<'_>) -> Result<Placement, InputError> {
        let dest = cx.field(&self.dest)?;
        let (owner, group) = self.owner_and_group(cx)?;
        let with_owner = |mut u: Upload| {
            u.owner = owner.clone();
            u.group = group.clone();
            u
        };
        let Some(local) = &self.tree else {
            check_dest(cx.file, &self.dest, &dest)?;
            let (content, sensitive) = C::content(&self.src_name, &self.content, cx)?;
            let mode = self.mode.unwrap_or(0o644);
            return Ok(Placement::File(with_owner(upload(
                dest, mode, content, sensitive,
            ))));
        };
        let root = check_tree_dest(cx.file, &self.dest, &dest)?;
        let mut files = Vec::with_capacity(local.files.len());
        for file in &local.files {
            let name = tree_template_name(&self.src_name, &file.rel);
            let (content, sensitive) = C::content(&name, &file.content, cx)?;
            let mode = self.mode.unwrap_or(file.mode);
            files.push(with_owner(upload(
                format!("{root}/{}", file.rel),
                mode,
                content,
                sensitive,
            )));
        }
        Ok(Placement::Tree(TreeUpload {
            files,
            rels: local.files.iter().map(|f| f.rel.clone()).collect(),
            dirs: local.dirs.clone(),
            dir_spec: DirSpec {
                mode: self.dir_mode,
                chown: files::chown_spec(owner.as_deref(), group.as_deref()),
            },
            delete: self.delete,
            root,
        }))
    }
}

impl FileStep {
    /// `owner` and `group` rendered for one host.
    fn owner_and_group(
        &self,
        cx: &mut PlanCx<'_>,
    ) -> Result<(Option<String>, Option<String>), InputError> {
        let mut name = |n: &Option<Templated>| -> Result<Option<String>, InputError> {
            let Some(n) = n else { return Ok(None) };
            let text = cx.field(n)?;
            if !valid_user_name(&text) {
                return Err(cx
                    .file
                    .error_at(n.span(), format!("bad user or group name `{text}`"))
                    .with_hint("use letters, digits, `_`, `-` and `.`"));
            }
            Ok(Some(text))
        };
        Ok((name(&self.owner)?, name(&self.group)?))
    }

    /// The template files this step reads, each with its name, path and source bytes: the
    /// file itself, or every file of its directory (named `SRC/REL`).
    pub fn template_sources(&self) -> Vec<(String, &std::path::Path, &[u8])> {
        match &self.tree {
            None => vec![(
                self.src_name.clone(),
                self.src_path.as_path(),
                &self.content[..],
            )],
            Some(tree) => tree
                .files
                .iter()
                .map(|f| {
                    (
                        tree_template_name(&self.src_name, &f.rel),
                        f.path.as_path(),
                        &f.content[..],
                    )
                })
                .collect(),
        }
    }
}

/// The template name of the file `rel` of the directory `src`: `src/rel`.
fn tree_template_name(src: &str, rel: &str) -> String {
    format!("{}/{rel}", src.trim_end_matches('/'))
}

impl Act for Placement {
    fn describe(&self) -> String {
        match self {
            Placement::File(u) => u.describe(),
            Placement::Tree(t) => t.describe(),
        }
    }

    fn prepare(&self, host: &HostView<'_>, label: &str, tag: usize) -> Prepared {
        match self {
            Placement::File(u) => u.prepare(host, label, tag),
            Placement::Tree(t) => t.prepare(host, label, tag),
        }
    }

    fn judge(&self, host: &HostView<'_>, out: &ExecOutput) -> Result<Done, Failure> {
        match self {
            Placement::File(u) => u.judge(host, out),
            Placement::Tree(t) => t.judge(host, out),
        }
    }

    fn uploads(&self) -> &[Upload] {
        match self {
            Placement::File(u) => std::slice::from_ref(u),
            Placement::Tree(t) => &t.files,
        }
    }

    fn uploads_mut(&mut self) -> &mut [Upload] {
        match self {
            Placement::File(u) => std::slice::from_mut(u),
            Placement::Tree(t) => &mut t.files,
        }
    }

    fn tree_root(&self) -> Option<&str> {
        match self {
            Placement::Tree(t) if t.delete => Some(&t.root),
            _ => None,
        }
    }
}

impl Upload {
    fn describe(&self) -> String {
        format!(
            "file {} ({:04o}{}, {} bytes, sha256 {}{})",
            self.dest,
            self.mode,
            match (&self.owner, &self.group) {
                (None, None) => String::new(),
                (o, g) => format!(
                    ", {}:{}",
                    o.as_deref().unwrap_or("-"),
                    g.as_deref().unwrap_or("-")
                ),
            },
            self.content.len(),
            &self.sha256[..12],
            if self.sensitive {
                ", holds secrets"
            } else {
                ""
            }
        )
    }

    fn prepare(&self, host: &HostView<'_>, label: &str, tag: usize) -> Prepared {
        if let Some(Some(remote)) = host.files.get(&self.dest)
            && remote.matches(self)
        {
            return Prepared::Local(Done::new(Outcome::Ok, Some(self.dest.clone())));
        }
        Prepared::Remote(Segment {
            script: files::upload(self, tag),
            stdin: vec![self.content.clone()],
            label: label.to_string(),
            cleanup: Some(files::upload_cleanup(self)),
        })
    }

    fn judge(&self, host: &HostView<'_>, out: &ExecOutput) -> Result<Done, Failure> {
        require_success(out, host.redactor)?;
        Ok(Done {
            learned: Some(Learned::Wrote {
                files: vec![(self.dest.clone(), RemoteFile::written_by(self))],
                listing: None,
            }),
            ..Done::new(Outcome::Changed, Some(self.dest.clone()))
        })
    }
}

/// A file step's rendered `dest` must name a file: not empty, not a directory (ending in `/`,
/// `.` or `..`).
pub fn check_dest(file: &SourceFile, field: &Templated, dest: &str) -> Result<(), InputError> {
    let last = dest.rsplit('/').next().unwrap_or("");
    let problem = if dest.trim().is_empty() {
        "is empty"
    } else if dest.ends_with('/') {
        "ends with `/`"
    } else if last == "." || last == ".." {
        "names a directory"
    } else {
        return Ok(());
    };
    Err(file
        .error_at(
            field.span(),
            format!("file destination `{dest}` {problem}: it must name a file"),
        )
        .with_hint("write the file's full path, e.g. dest = \"{{ app_dir }}/docker-compose.yml\""))
}

/// A directory step's rendered `dest`, without its trailing `/`: not empty, not `/`, no `.` or
/// `..` part (what `delete` may remove must be plainly below it).
fn check_tree_dest(file: &SourceFile, field: &Templated, dest: &str) -> Result<String, InputError> {
    let root = dest.trim_end_matches('/');
    let problem = if dest.trim().is_empty() {
        "is empty"
    } else if root.is_empty() {
        "is `/`"
    } else if root.split('/').any(|part| part == "." || part == "..") {
        "has a `.` or `..` part"
    } else {
        return Ok(root.to_string());
    };
    Err(file
        .error_at(
            field.span(),
            format!("directory destination `{dest}` {problem}"),
        )
        .with_hint("write the directory's full path, e.g. dest = \"{{ app_dir }}/build\""))
}

fn load_file_step(cx: &ParseCx<'_>, raw: Spanned<RawFile>) -> Result<FileStep, InputError> {
    let file = cx.file;
    let raw = raw.into_inner();
    let src_path = resolve_existing(raw.src.get_ref(), cx.bases);
    let tree = if src_path.is_dir() {
        let tree = tree::read_tree(&src_path).map_err(|e| {
            file.error_at(
                raw.src.span(),
                format!("directory `{}`: {e}", raw.src.get_ref()),
            )
            .with_hint(format!(
                "a directory step uploads at most {} files and 1 GiB of regular files; copy what a symlink points to instead of the link",
                tree::MAX_FILES
            ))
        })?;
        Some(tree)
    } else {
        for (key, given) in [
            ("dir_mode", raw.dir_mode.as_ref().map(Spanned::span)),
            ("delete", raw.delete.as_ref().map(Spanned::span)),
        ] {
            if let Some(span) = given {
                return Err(file
                    .error_at(
                        span,
                        format!(
                            "`{key}` is for a directory `src`, and `{}` is not one",
                            raw.src.get_ref()
                        ),
                    )
                    .with_hint(format!("remove `{key}`, or name a directory in `src`")));
            }
        }
        None
    };
    let content = if tree.is_some() {
        Vec::new()
    } else {
        std::fs::read(&src_path).map_err(|e| {
            let tried: Vec<String> = cx
                .bases
                .iter()
                .map(|b| b.join(raw.src.get_ref()).display().to_string())
                .collect();
            file.error_at(
            raw.src.span(),
            format!("cannot read `{}`: {e}", raw.src.get_ref()),
        )
        .with_hint(format!(
            "relative paths are looked up in the playbook's directory, then its parent; tried {}",
            tried.join(", ")
        ))
        })?
    };
    let mode_of = |m: &Spanned<String>| {
        parse_mode(m.get_ref()).ok_or_else(|| {
            file.error_at(m.span(), format!("bad file mode `{}`", m.get_ref()))
                .with_hint("write an octal string such as \"0600\" or \"0644\"")
        })
    };
    let mode = raw.mode.as_ref().map(mode_of).transpose()?;
    let dir_mode = raw
        .dir_mode
        .as_ref()
        .map(mode_of)
        .transpose()?
        .unwrap_or(0o755);
    for name in [&raw.owner, &raw.group].into_iter().flatten() {
        let text = name.get_ref();
        if !text.contains("{{") && !valid_user_name(text) {
            return Err(file
                .error_at(name.span(), format!("bad user or group name `{text}`"))
                .with_hint("use letters, digits, `_`, `-` and `.`"));
        }
    }
    Ok(FileStep {
        src_name: raw.src.get_ref().clone(),
        src_path,
        src_span: raw.src.span(),
        content: content.into(),
        tree,
        dest: raw.dest,
        mode,
        dir_mode,
        delete: raw.delete.is_some_and(|d| *d.get_ref()),
        owner: raw.owner,
        group: raw.group,
    })
}

pub(crate) fn parse_mode(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 5 || !text.chars().all(|c| ('0'..='7').contains(&c)) {
        return None;
    }
    u32::from_str_radix(text, 8).ok().filter(|m| *m <= 0o7777)
}
