//! Files on a host: the probe that reads every destination's checksum and mode in one go, and
//! the upload script that writes one file atomically from the shared stdin.

use super::quote;
use crate::plan::Upload;

/// The current sha256, mode, owner and group of a remote file, if it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    pub sha256: String,
    pub mode: u32,
    pub owner: String,
    pub group: String,
}

impl RemoteFile {
    /// Whether this file already is what `upload` would write (owner and group only count when
    /// the step asks for them).
    pub fn matches(&self, upload: &Upload) -> bool {
        self.sha256 == upload.sha256
            && self.mode == upload.mode
            && upload.owner.as_ref().is_none_or(|o| *o == self.owner)
            && upload.group.as_ref().is_none_or(|g| *g == self.group)
    }

    /// What a file will be once `upload` has written it.
    pub fn written_by(upload: &Upload) -> Self {
        Self {
            sha256: upload.sha256.clone(),
            mode: upload.mode,
            owner: upload.owner.clone().unwrap_or_default(),
            group: upload.group.clone().unwrap_or_default(),
        }
    }
}

/// One script that reports every destination file's sha256 and mode/owner/group: one round
/// trip, and at most two processes for all files (`sha256sum` and `stat` each get every path
/// that is a regular file; none at all when no destination exists yet, as on a fresh host).
pub fn probe(dests: &[&str]) -> String {
    if dests.is_empty() {
        return String::new();
    }
    let mut files = String::new();
    for d in dests {
        files.push(' ');
        files.push_str(&quote(d));
    }
    format!(
        "set --; for f in{files}; do [ -f \"$f\" ] && set -- \"$@\" \"$f\"; done; \
         if [ $# -gt 0 ]; then sha256sum -- \"$@\" 2>/dev/null; echo '{PROBE_SPLIT}'; \
         stat -c '%F|%a|%U|%G|%n' -- \"$@\" 2>/dev/null; echo '{PROBE_SPLIT}'; \
         else echo '{PROBE_SPLIT}'; echo '{PROBE_SPLIT}'; fi\n"
    )
}

const PROBE_SPLIT: &str = "--dropship--";

/// Parses `probe`'s output: one entry per destination (`None`: no regular file there).
pub fn parse_probe(stdout: &str, dests: &[&str]) -> Option<Vec<Option<RemoteFile>>> {
    let mut files = vec![None; dests.len()];
    if dests.is_empty() {
        return Some(files);
    }
    let (sums, after) = stdout.split_once(&format!("{PROBE_SPLIT}\n"))?;
    let (stats, _) = after.split_once(&format!("{PROBE_SPLIT}\n"))?;
    let mut sha_of = std::collections::HashMap::new();
    for line in sums.lines() {
        // `HASH  PATH`; sha256sum escapes odd paths with a leading `\`: those stay unknown and
        // are simply rewritten.
        if let Some((hash, path)) = line.split_once("  ") {
            sha_of.insert(path, hash);
        }
    }
    for line in stats.lines() {
        let mut parts = line.splitn(5, '|');
        let (kind, mode, owner, group, path) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        if kind != "regular file" && kind != "regular empty file" {
            continue;
        }
        let (Some(index), Some(hash)) = (dests.iter().position(|d| *d == path), sha_of.get(path))
        else {
            continue;
        };
        files[index] = Some(RemoteFile {
            sha256: (*hash).to_string(),
            mode: u32::from_str_radix(mode, 8).ok()?,
            owner: owner.to_string(),
            group: group.to_string(),
        });
    }
    Some(files)
}

/// Writes the next `content.len()` bytes of stdin to `dest` atomically, leaving the rest of
/// stdin to whatever follows in the same script: a temporary file beside `dest`, created
/// exclusively (`set -C`) under a umask that gives it the final mode (or 0600 when a `chmod`
/// follows: secrets are never world-readable), filled by `head -c N` (GNU head never reads past
/// N bytes), chown when asked, then renamed over the old file. Three processes in the common
/// case (`head`, `mv`, and `mkdir` only when the directory is missing). `tag` makes the
/// temporary name unique within one script.
pub fn upload(upload: &Upload, tag: usize) -> String {
    let dest = quote(&upload.dest);
    let dir = match upload.dest.rsplit_once('/') {
        Some(("", _)) => "/".to_string(),
        Some((dir, _)) => dir.to_string(),
        None => ".".to_string(),
    };
    let dir = quote(&dir);
    let chown = match (&upload.owner, &upload.group) {
        (None, None) => String::new(),
        (owner, group) => format!(
            "chown {}{} \"$dst\" && ",
            owner.as_deref().map(quote).unwrap_or_default(),
            group
                .as_deref()
                .map(|g| format!(":{}", quote(g)))
                .unwrap_or_default()
        ),
    };
    // A umask can only produce modes without execute or special bits: others need chmod.
    let umask_gives_mode = upload.mode & !0o666 == 0;
    let (umask, chmod) = if umask_gives_mode && chown.is_empty() {
        (0o777 & !upload.mode, String::new())
    } else {
        (0o077, format!("chmod {:04o} \"$dst\" && ", upload.mode))
    };
    format!(
        "dst={dir}/.dropship.$$.{tag}; {{ [ -d {dir} ] || mkdir -p -- {dir}; }} && \
         {{ [ ! -e \"$dst\" ] || rm -f -- \"$dst\"; }} && \
         (umask {umask:03o} && set -C && exec head -c {len} >\"$dst\") && \
         {chown}{chmod}mv -f -- \"$dst\" {dest} || {{ rm -f -- \"$dst\"; false; }}",
        len = upload.content.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_reports_each_file_in_a_real_shell() {
        let dir = tempfile::tempdir().unwrap();
        let present = dir.path().join("a b.txt");
        std::fs::write(&present, "hello\n").unwrap();
        std::fs::set_permissions(
            &present,
            std::os::unix::fs::PermissionsExt::from_mode(0o640),
        )
        .unwrap();
        let missing = dir.path().join("missing");
        let a_dir = dir.path().join("sub");
        std::fs::create_dir(&a_dir).unwrap();
        let dests = [
            present.to_str().unwrap(),
            missing.to_str().unwrap(),
            a_dir.to_str().unwrap(),
        ];
        let run = |dests: &[&str]| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(probe(dests))
                .output()
                .unwrap();
            assert!(out.status.success());
            parse_probe(&String::from_utf8_lossy(&out.stdout), dests).unwrap()
        };
        let files = run(&dests);
        let file = files[0].clone().unwrap();
        // sha256 of "hello\n"
        assert_eq!(
            file.sha256,
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
        assert_eq!(file.mode, 0o640);
        assert_eq!(files[1], None);
        assert_eq!(files[2], None, "a directory is not a file to compare");
        assert_eq!(run(&dests[1..]), [None, None], "nothing there at all");
        assert!(
            parse_probe("abc  /x\n", &["/x"]).is_none(),
            "truncated output is an error"
        );
    }

    /// Runs `script` under sh with `stdin`; returns (status, stdout).
    fn sh(script: &str, stdin: &[u8]) -> (Option<u32>, String) {
        let out = crate::remote::run_in_sh(script, stdin);
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    fn mode_of(path: &std::path::Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn uploads_take_exactly_their_bytes_and_leave_the_rest_of_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let a = crate::plan::upload(
            format!("{root}/new dir/a"),
            0o600,
            b"first"[..].into(),
            true,
        );
        let b = crate::plan::upload(format!("{root}/b"), 0o755, b"#!/bin/sh\n"[..].into(), false);
        let empty = crate::plan::upload(format!("{root}/e"), 0o644, b""[..].into(), false);
        std::fs::write(format!("{root}/b"), "old").unwrap();
        let script = format!(
            "{} && {} && {} && cat",
            upload(&a, 0),
            upload(&b, 1),
            upload(&empty, 2)
        );
        let (status, rest) = sh(&script, b"first#!/bin/sh\nthe rest\n");
        assert_eq!(status, Some(0));
        assert_eq!(rest, "the rest\n", "what follows the files is left alone");
        assert_eq!(
            std::fs::read(format!("{root}/new dir/a")).unwrap(),
            b"first"
        );
        assert_eq!(mode_of(&dir.path().join("new dir/a")), 0o600);
        assert_eq!(std::fs::read(format!("{root}/b")).unwrap(), b"#!/bin/sh\n");
        assert_eq!(mode_of(&dir.path().join("b")), 0o755);
        assert_eq!(std::fs::read(format!("{root}/e")).unwrap(), b"");
        assert_eq!(mode_of(&dir.path().join("e")), 0o644);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(".dropship"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        // A destination that cannot be written fails, and leaves no temporary file behind.
        let blocked = crate::plan::upload(format!("{root}/b/x"), 0o644, b"x"[..].into(), false);
        assert_ne!(sh(&upload(&blocked, 3), b"x").0, Some(0));
    }

    #[test]
    fn uploads_chown_before_chmod_and_rename() {
        let mut u = crate::plan::upload("/etc/app/x y".into(), 0o600, b"hi"[..].into(), false);
        assert!(!upload(&u, 0).contains("chown"));
        assert!(upload(&u, 0).contains("umask 177 "), "{}", upload(&u, 0));
        u.owner = Some("root".into());
        u.group = Some("adm".into());
        assert_eq!(
            upload(&u, 4),
            r#"dst=/etc/app/.dropship.$$.4; { [ -d /etc/app ] || mkdir -p -- /etc/app; } && { [ ! -e "$dst" ] || rm -f -- "$dst"; } && (umask 077 && set -C && exec head -c 2 >"$dst") && chown root:adm "$dst" && chmod 0600 "$dst" && mv -f -- "$dst" '/etc/app/x y' || { rm -f -- "$dst"; false; }"#
        );
        u.owner = None;
        assert!(upload(&u, 0).contains(r#" && chown :adm "$dst" && chmod 0600"#));
        let remote = RemoteFile {
            sha256: u.sha256.clone(),
            mode: 0o600,
            owner: "deploy".into(),
            group: "adm".into(),
        };
        assert!(remote.matches(&u));
        u.owner = Some("root".into());
        assert!(!remote.matches(&u));
    }
}
