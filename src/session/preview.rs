//! A dry run on one host: the files probe, then one read-only script that reads back the files
//! whose content differs and tests `creates` guards; from those, what each step would do (the
//! `report::preview` data). With `[release]`, the new release's files are compared with the
//! same files of the release `current` points at. Takes no lock and writes nothing on the host.

use std::collections::HashSet;

use super::{HostSession, RunContext, failure_text, tree_roots, upload_dests};
use crate::output::diff::{ContentView, DIFF_LIMIT, file_diff};
use crate::plan::{Action, Notify, PlannedStep, Upload};
use crate::remote::compose::Request;
use crate::remote::frame::Framed;
use crate::remote::preview::{
    FILES_PER_READ, ReadBack, current_release, parse_current_release, parse_read_back, read_back,
};
use crate::remote::probe;
use crate::report::preview::{FilePreview, HostPreview, StepPreview, Would};
use crate::steps::compose::ComposeRun;
use crate::steps::files::Placement;
use crate::transport::Connection;

/// What a dry run looks at on a host.
#[derive(Debug, Clone, Copy)]
pub enum Look<'a> {
    /// `deploy --dry-run`: every step.
    Deploy,
    /// `rollback --dry-run`: the release it would go back to (this one, or the previous), and
    /// the steps after activation.
    Rollback(Option<&'a str>),
}

/// With `[release]`: where the files of the release this run would create are compared. The
/// new release's directory does not exist yet, so every file there would look new; the same
/// path in `current` is what the release would replace.
pub(super) struct Compared {
    new_dir: String,
    current_dir: String,
}

impl Compared {
    /// The path `dest` is compared with: in `current` when it is in the new release.
    pub(super) fn path<'a>(&self, dest: &'a str) -> std::borrow::Cow<'a, str> {
        match dest.strip_prefix(&self.new_dir) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                format!("{}{rest}", self.current_dir).into()
            }
            _ => dest.into(),
        }
    }
}

/// What the read-back found on the host, by destination and by `creates` path.
#[derive(Default)]
struct Found {
    contents: std::collections::HashMap<String, Option<Vec<u8>>>,
    existing: HashSet<String>,
}

impl<T: Connection> HostSession<T> {
    /// Looks at the host (within the fork cap) and says what `look` would do there.
    pub async fn preview(&mut self, ctx: &RunContext<'_>, look: Look<'_>) -> HostPreview {
        let mut preview = HostPreview::new(&self.host_name);
        if self.set_aside && self.result.error.is_none() {
            preview.note = self.result.note.clone();
            return preview;
        }
        if let Err(error) = self.look(ctx, look, &mut preview).await {
            preview.error = Some(ctx.plan.redactor.redact(&error));
            preview.steps.clear();
        }
        preview
    }

    async fn look(
        &mut self,
        ctx: &RunContext<'_>,
        look: Look<'_>,
        preview: &mut HostPreview,
    ) -> Result<(), String> {
        if let Some(error) = &self.result.error {
            return Err(error.clone());
        }
        let host_plan = &ctx.plan.hosts[self.index];
        let _turn = ctx.gate.turn().await;
        let steps = match look {
            Look::Deploy => &host_plan.steps[..],
            Look::Rollback(to) => {
                let Some(site) = &host_plan.release else {
                    return Err(
                        "the playbook has no [release] section: nothing to roll back to".into(),
                    );
                };
                preview.rollback_to = Some(self.rollback_target(ctx, site, to).await?);
                &host_plan.steps[host_plan.post_activate.min(host_plan.steps.len())..]
            }
        };
        let compared = match (look, &host_plan.release, &ctx.plan.release_id) {
            (Look::Deploy, Some(site), Some(id)) => Some(Compared {
                new_dir: site.dir(id),
                current_dir: format!("{}/current", site.root.trim_end_matches('/')),
            }),
            _ => None,
        };
        match &compared {
            Some(compared) => preview.compared_with = self.probe_compared(ctx, compared).await?,
            None => self.probe(ctx.plan).await?,
        }
        let found = self.read_back(ctx, steps, compared.as_ref()).await?;
        preview.steps = self.judge_steps(ctx, steps, &found);
        // A rollback's `up` runs on the files of a release already on the host, which the
        // look below does not read: its note stays the general one.
        if matches!(look, Look::Deploy) {
            self.preview_compose(ctx, steps, &mut preview.steps, compared.as_ref())
                .await;
        }
        Ok(())
    }

    /// The probe (`HostSession::probe`) with the new release's files and directories looked up
    /// in `current`, kept under their own destinations, and which release `current` is.
    async fn probe_compared(
        &mut self,
        ctx: &RunContext<'_>,
        compared: &Compared,
    ) -> Result<Option<String>, String> {
        let plan = ctx.plan;
        let dests = upload_dests(plan, self.index);
        let trees = tree_roots(plan, self.index);
        let seen_dests: Vec<String> = dests.iter().map(|d| compared.path(d).into()).collect();
        let seen_trees: Vec<String> = trees.iter().map(|t| compared.path(t).into()).collect();
        let seen_dests: Vec<&str> = seen_dests.iter().map(String::as_str).collect();
        let seen_trees: Vec<&str> = seen_trees.iter().map(String::as_str).collect();
        let root = &plan.hosts[self.index]
            .release
            .as_ref()
            .expect("compared")
            .root;
        let script = crate::sh!(
            "{}{}\n",
            probe::probe(&seen_dests, &seen_trees),
            current_release(root)
        );
        let request = Framed::new(&script);
        let out = self
            .exec_as(request.script(), &[], self.file_reader(plan).as_ref())
            .await?;
        let reply = request.reply(&out.stdout);
        let Some(probed) = probe::parse_probe(&reply, &seen_dests, &seen_trees) else {
            return Err(format!(
                "could not inspect the host's files: {}",
                failure_text(&out, &self.redactor)
            ));
        };
        for (dest, file) in dests.iter().zip(probed.files) {
            self.remote_files.insert((*dest).to_string(), file);
        }
        for (root, listing) in trees.iter().zip(probed.trees) {
            self.remote_trees.insert((*root).to_string(), listing);
        }
        self.probed = true;
        Ok(parse_current_release(&reply))
    }

    /// Reads back every destination whose content differs (text-sized on this side) and tests
    /// every `creates` path, a bounded number of files per script.
    async fn read_back(
        &self,
        ctx: &RunContext<'_>,
        steps: &[PlannedStep],
        compared: Option<&Compared>,
    ) -> Result<Found, String> {
        let mut files: Vec<&str> = Vec::new();
        for upload in steps.iter().flat_map(|s| s.action.uploads()) {
            let differs = matches!(
                self.remote_files.get(&upload.dest),
                Some(Some(r)) if r.sha256 != upload.sha256
            );
            if differs && upload.content.len() <= DIFF_LIMIT && !files.contains(&&*upload.dest) {
                files.push(&upload.dest);
            }
        }
        let creates: Vec<&str> = steps
            .iter()
            .filter_map(|s| match &s.action {
                Action::Run(command) => command.creates.as_deref(),
                _ => None,
            })
            .collect();
        let reader = self.file_reader(ctx.plan);
        let mut found = Found::default();
        let mut chunks: Vec<&[&str]> = files.chunks(FILES_PER_READ).collect();
        if chunks.is_empty() && !creates.is_empty() {
            chunks.push(&[]);
        }
        for (n, chunk) in chunks.iter().enumerate() {
            // The guards ride with the first chunk.
            let paths: &[&str] = if n == 0 { &creates } else { &[] };
            let seen: Vec<String> = chunk
                .iter()
                .map(|d| compared.map_or((*d).into(), |c| c.path(d).into_owned()))
                .collect();
            let seen: Vec<&str> = seen.iter().map(String::as_str).collect();
            let request = Framed::new(&read_back(&seen, paths));
            let out = self.exec_as(request.script(), &[], reader.as_ref()).await?;
            let Some(ReadBack { files, exists }) =
                parse_read_back(&request.reply(&out.stdout), chunk.len(), paths.len())
            else {
                return Err(format!(
                    "could not read the host's files: {}",
                    failure_text(&out, &self.redactor)
                ));
            };
            for (dest, content) in chunk.iter().zip(files) {
                found.contents.insert((*dest).to_string(), content);
            }
            for (path, yes) in paths.iter().zip(exists) {
                if yes {
                    found.existing.insert((*path).to_string());
                }
            }
        }
        Ok(found)
    }

    /// What each step would do, from what the probe and the read-back found.
    fn judge_steps(
        &self,
        ctx: &RunContext<'_>,
        steps: &[PlannedStep],
        found: &Found,
    ) -> Vec<StepPreview> {
        let mut notified = HashSet::new();
        // Destinations (masked) that would change so far, for the compose steps after them.
        let mut changed: Vec<String> = Vec::new();
        let redact = |text: &str| ctx.plan.redactor.redact(text);
        steps
            .iter()
            .map(|step| {
                let mut preview = StepPreview {
                    name: redact(&step.name),
                    would: Would::Run,
                    describe: redact(&step.action.describe()),
                    note: None,
                    files: Vec::new(),
                    services: Vec::new(),
                };
                match &step.action {
                    Action::Skip { .. } => preview.would = Would::Skip,
                    Action::Copy(placement) | Action::Template(placement) => {
                        preview.files = self.file_previews(ctx, placement, found);
                        changed.extend(
                            preview
                                .files
                                .iter()
                                .filter(|f| f.change != "unchanged")
                                .map(|f| f.dest.clone()),
                        );
                        let changes = preview.files.iter().any(|f| f.change != "unchanged");
                        preview.would = if changes { Would::Change } else { Would::Ok };
                        if let (true, Notify::Trigger(handler)) = (changes, step.notify) {
                            notified.insert(handler);
                        }
                    }
                    Action::Run(command) => {
                        if let Some(path) = &command.creates
                            && found.existing.contains(path)
                        {
                            preview.would = Would::Ok;
                            preview.note = Some(format!("guard holds: {path} exists"));
                        } else if command.unless.is_some() {
                            preview.note =
                                Some("guard not evaluated (unless runs a command)".into());
                        }
                    }
                    Action::Compose(run) => preview.note = compose_note(run, &changed),
                    _ => {}
                }
                if let Notify::Handler(handler) = step.notify
                    && !notified.contains(&handler)
                {
                    preview.would = Would::Skip;
                    preview.note = Some("no file it watches would change".into());
                }
                preview
            })
            .collect()
    }

    fn file_previews(
        &self,
        ctx: &RunContext<'_>,
        placement: &Placement,
        found: &Found,
    ) -> Vec<FilePreview> {
        let uploads = match placement {
            Placement::File(upload) => std::slice::from_ref(upload),
            Placement::Tree(tree) => &tree.files[..],
        };
        let mut previews: Vec<FilePreview> = uploads
            .iter()
            .map(|u| self.file_preview(ctx, u, found))
            .collect();
        if let Placement::Tree(tree) = placement
            && tree.delete
            && let Some(listing) = self.remote_trees.get(&tree.root)
        {
            let kept: HashSet<&str> = tree
                .rels
                .iter()
                .chain(&tree.dirs)
                .map(String::as_str)
                .collect();
            for entry in listing.others.iter().chain(&listing.dirs) {
                if !kept.contains(entry.as_str()) {
                    previews.push(FilePreview {
                        dest: format!("{}/{entry}", tree.root),
                        change: "removed",
                        mode: None,
                        owner: None,
                        diff: None,
                        note: None,
                    });
                }
            }
        }
        previews
    }

    fn file_preview(&self, ctx: &RunContext<'_>, upload: &Upload, found: &Found) -> FilePreview {
        let redactor = &ctx.plan.redactor;
        let remote = self.remote_files.get(&upload.dest).cloned().flatten();
        let mut preview = FilePreview {
            dest: redactor.redact(&upload.dest),
            change: "unchanged",
            mode: None,
            owner: None,
            diff: None,
            note: None,
        };
        let Some(remote) = remote else {
            preview.change = "new";
            preview.mode = Some(format!("{:04o}", upload.mode));
            self.show_content(ctx, upload, None, &mut preview);
            return preview;
        };
        if remote.mode != upload.mode {
            preview.mode = Some(format!("{:04o} → {:04o}", remote.mode, upload.mode));
        }
        let owner = upload.owner.as_deref().unwrap_or(&remote.owner);
        let group = upload.group.as_deref().unwrap_or(&remote.group);
        if (owner, group) != (remote.owner.as_str(), remote.group.as_str()) {
            preview.owner = Some(redactor.redact(&format!(
                "{}:{} → {owner}:{group}",
                remote.owner, remote.group
            )));
        }
        if remote.sha256 != upload.sha256 {
            match found.contents.get(&upload.dest) {
                Some(Some(content)) => {
                    self.show_content(ctx, upload, Some(content), &mut preview);
                }
                Some(None) => preview.note = Some("could not be read back".into()),
                None => preview.note = Some(too_large()),
            }
            preview.change = "changed";
        } else if preview.mode.is_some() || preview.owner.is_some() {
            preview.change = "changed";
        }
        preview
    }

    fn show_content(
        &self,
        ctx: &RunContext<'_>,
        upload: &Upload,
        remote: Option<&[u8]>,
        preview: &mut FilePreview,
    ) {
        let dest = &preview.dest;
        match file_diff(
            dest,
            remote,
            &upload.content,
            &ctx.plan.redactor,
            upload.sensitive,
        ) {
            ContentView::Diff(diff) => preview.diff = Some(diff),
            ContentView::Binary => preview.note = Some("binary, not shown".into()),
            ContentView::TooLarge => preview.note = Some(too_large()),
        }
    }
}

fn too_large() -> String {
    format!("larger than {} KiB, not shown", DIFF_LIMIT / 1024)
}

/// What a compose `up` step's note says about the services it would recreate. A dry run
/// writes no file, and which services `up` recreates depends on the new files being on the
/// host: it says which files of the project's directory would change instead.
fn compose_note(run: &ComposeRun, changed: &[String]) -> Option<String> {
    if !matches!(run.request, Request::Up(_)) {
        return None;
    }
    let prefix = format!("{}/", run.dir.trim_end_matches('/'));
    let here: Vec<&str> = changed
        .iter()
        .filter(|d| d.starts_with(&prefix))
        .map(String::as_str)
        .collect();
    Some(if here.is_empty() {
        "no file in its directory would change: up recreates only containers that differ from the running configuration".to_string()
    } else {
        format!(
            "{} would change: up recreates the services whose configuration that changes; which ones needs the new files on the host, and a dry run writes none",
            here.join(", ")
        )
    })
}
