//! `copy` and `template`: a file placed on the host (checked first by the probe, written only
//! when it differs), its keys, rendering and description.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::{
    Act, Done, Failure, HostView, Kind, Learned, ParseCx, PlanCx, Prepared, Templated,
    require_success, valid_user_name,
};
use crate::diagnostic::{InputError, SourceFile};
use crate::paths::resolve_existing;
use crate::plan::{Upload, upload};
use crate::remote::driver::Segment;
use crate::remote::files::{self, RemoteFile};
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
}

/// A file step as written: `src` read when the playbook is, `dest` rendered per host.
#[derive(Debug, Clone)]
pub struct FileStep {
    /// `src` as written: the template's name in errors.
    pub src_name: String,
    pub src_path: PathBuf,
    pub src_span: std::ops::Range<usize>,
    /// The file's bytes (for `copy`) or the template source (for `template`).
    pub content: Arc<[u8]>,
    pub dest: Templated,
    pub mode: u32,
    /// Owner and group to give the file (rendered per host, checked to be plain names).
    pub owner: Option<Templated>,
    pub group: Option<Templated>,
}

/// A file step of either kind: `copy` ([`AsIs`]) or `template` ([`Rendered`]).
#[derive(Debug, Clone)]
pub struct File<C>(pub FileStep, PhantomData<C>);

/// `copy = { src, dest, mode, owner, group }`: the file as it is.
pub type Copy = File<AsIs>;
/// `template = { src, dest, mode, owner, group }`: the file rendered per host.
pub type Template = File<Rendered>;

/// Where a file step's content comes from, for one host: the content and whether it holds
/// a secret.
pub trait Content: std::fmt::Debug + Clone {
    fn content(step: &FileStep, cx: &PlanCx<'_>) -> Result<(Arc<[u8]>, bool), InputError>;
}

#[derive(Debug, Clone)]
pub struct AsIs;

#[derive(Debug, Clone)]
pub struct Rendered;

impl Content for AsIs {
    fn content(step: &FileStep, _cx: &PlanCx<'_>) -> Result<(Arc<[u8]>, bool), InputError> {
        Ok((step.content.clone(), false))
    }
}

impl Content for Rendered {
    fn content(step: &FileStep, cx: &PlanCx<'_>) -> Result<(Arc<[u8]>, bool), InputError> {
        let text = cx.renderer.render_file(&step.src_name, cx.ctx)?;
        let sensitive = cx.renderer.file_uses_secrets(&step.src_name);
        Ok((text.into_bytes().into(), sensitive))
    }
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
    type Action = Upload;

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

    fn plan(&self, cx: &mut PlanCx<'_>) -> Result<Upload, InputError> {
        let (content, sensitive) = C::content(self, cx)?;
        self.0.plan(cx, content, sensitive)
    }
}

impl FileStep {
    fn plan(
        &self,
        cx: &mut PlanCx<'_>,
        content: Arc<[u8]>,
        sensitive: bool,
    ) -> Result<Upload, InputError> {
        let dest = cx.field(&self.dest)?;
        check_dest(cx.file, &self.dest, &dest)?;
        let mut u = upload(dest, self.mode, content, sensitive);
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
        u.owner = name(&self.owner)?;
        u.group = name(&self.group)?;
        Ok(u)
    }
}

impl Act for Upload {
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
            stdin: Some(self.content.clone()),
            label: label.to_string(),
            cleanup: Some(files::upload_cleanup(self)),
        })
    }

    fn judge(&self, host: &HostView<'_>, out: &ExecOutput) -> Result<Done, Failure> {
        require_success(out, host.redactor)?;
        Ok(Done {
            learned: Some(Learned::Wrote {
                dest: self.dest.clone(),
                file: RemoteFile::written_by(self),
            }),
            ..Done::new(Outcome::Changed, Some(self.dest.clone()))
        })
    }

    fn upload(&self) -> Option<&Upload> {
        Some(self)
    }

    fn upload_mut(&mut self) -> Option<&mut Upload> {
        Some(self)
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

fn load_file_step(cx: &ParseCx<'_>, raw: Spanned<RawFile>) -> Result<FileStep, InputError> {
    let file = cx.file;
    let raw = raw.into_inner();
    let src_path = resolve_existing(raw.src.get_ref(), cx.bases);
    let content = std::fs::read(&src_path).map_err(|e| {
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
    })?;
    let mode = match &raw.mode {
        None => 0o644,
        Some(m) => parse_mode(m.get_ref()).ok_or_else(|| {
            file.error_at(m.span(), format!("bad file mode `{}`", m.get_ref()))
                .with_hint("write an octal string such as \"0600\" or \"0644\"")
        })?,
    };
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
        dest: raw.dest,
        mode,
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
