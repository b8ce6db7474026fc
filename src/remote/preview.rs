//! A dry run's read-only look at a host: the content of files that differ (each cut at
//! `DIFF_LIMIT` + 1 bytes, so a larger one is known to be larger) and the `creates` guards
//! (`test -e`), and which release `current` points at (a release's files are compared with
//! that release's). Reads only: no file, lock or temp file is written.
//! May import: `remote::{script, frame}`, `output::diff`, `release`.

use super::frame::{self, Kind, Reply};
use super::script::Script;
use crate::output::diff::DIFF_LIMIT;
use crate::release::is_release_id;
use crate::sh;

/// Files read back per script: their sum stays well under the transport's capture limit.
pub const FILES_PER_READ: usize = 12;

const READ: &str = "read:";
const EXISTS: &str = "exists:";
const END: &str = "end";
const CURRENT: &str = "current";

/// Prints each of `files` (a regular file only, at most `DIFF_LIMIT` + 1 bytes) after a frame
/// `preview:read:I`, and `preview:exists:I:yes|no` for each of `paths`; `preview:end` last.
/// It needs `$dsn` (`frame::Framed`).
pub fn read_back(files: &[&str], paths: &[&str]) -> Script {
    let mut script = Script::default();
    for (i, file) in files.iter().enumerate() {
        script.push(&sh!(
            "if [ -f {} ]; then {}; head -c {} -- {} 2>/dev/null; fi; ",
            file,
            frame::report(Kind::Preview, &format!("{READ}{i}")),
            (DIFF_LIMIT + 1).to_string(),
            file
        ));
    }
    for (i, path) in paths.iter().enumerate() {
        script.push(&sh!(
            "if [ -e {} ]; then {}; else {}; fi; ",
            path,
            frame::report(Kind::Preview, &format!("{EXISTS}{i}:yes")),
            frame::report(Kind::Preview, &format!("{EXISTS}{i}:no"))
        ));
    }
    sh!("{}{}\n", script, frame::report(Kind::Preview, &END))
}

/// What `read_back` found: each file's bytes (`None`: not a readable regular file), whether
/// each path exists; `None` when the script did not finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBack {
    pub files: Vec<Option<Vec<u8>>>,
    pub exists: Vec<bool>,
}

pub fn parse_read_back(reply: &Reply, files: usize, paths: usize) -> Option<ReadBack> {
    reply.find(Kind::Preview).filter(|_| {
        reply
            .sections
            .iter()
            .any(|(f, _)| f.of(Kind::Preview) == Some(END))
    })?;
    let mut read = ReadBack {
        files: vec![None; files],
        exists: vec![false; paths],
    };
    for (frame, data) in &reply.sections {
        let Some(fields) = frame.of(Kind::Preview) else {
            continue;
        };
        if let Some(i) = fields
            .strip_prefix(READ)
            .and_then(|i| i.parse::<usize>().ok())
        {
            if let Some(slot) = read.files.get_mut(i) {
                *slot = Some(data.clone());
            }
        } else if let Some((i, yes)) = fields.strip_prefix(EXISTS).and_then(|f| f.split_once(':'))
            && let Some(slot) = i.parse::<usize>().ok().and_then(|i| read.exists.get_mut(i))
        {
            *slot = yes == "yes";
        }
    }
    Some(read)
}

/// Prints the target of `ROOT/current` after a frame `preview:current` (nothing when there
/// is no such link). It needs `$dsn`.
pub fn current_release(root: &str) -> Script {
    sh!(
        "{}; readlink -- {} 2>/dev/null; ",
        frame::report(Kind::Preview, &CURRENT),
        format!("{}/current", root.trim_end_matches('/'))
    )
}

/// The release `current_release` found, when the link names one (`releases/<id>`).
pub fn parse_current_release(reply: &Reply) -> Option<String> {
    let (_, data) = reply
        .sections
        .iter()
        .find(|(f, _)| f.of(Kind::Preview) == Some(CURRENT))?;
    let target = String::from_utf8_lossy(data);
    let id = target.trim().strip_prefix("releases/")?;
    is_release_id(id).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::frame::Framed;
    use crate::remote::script::tests::HOSTILE;

    #[test]
    fn files_come_back_byte_for_byte_and_guards_say_whether_paths_exist() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for (i, name) in HOSTILE.iter().filter(|n| !n.is_empty()).enumerate() {
            let path = dir.path().join(name.replace('/', "_"));
            std::fs::write(&path, format!("line {i}\nno newline at end")).unwrap();
            files.push(path.to_str().unwrap().to_string());
        }
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; DIFF_LIMIT + 10]).unwrap();
        files.push(big.to_str().unwrap().to_string());
        let missing = dir.path().join("missing").to_str().unwrap().to_string();
        files.push(missing.clone());
        let refs: Vec<&str> = files.iter().map(String::as_str).collect();
        let paths = [files[0].as_str(), missing.as_str(), "$(touch pwned)"];
        let request = Framed::new(&read_back(&refs, &paths));
        let out = crate::remote::run_in_sh(request.script(), b"");
        let read = parse_read_back(&request.reply(&out.stdout), refs.len(), paths.len()).unwrap();
        for (i, content) in read.files[..refs.len() - 2].iter().enumerate() {
            assert_eq!(
                content.as_deref(),
                Some(format!("line {i}\nno newline at end").as_bytes())
            );
        }
        assert_eq!(
            read.files[refs.len() - 2].as_ref().unwrap().len(),
            DIFF_LIMIT + 1
        );
        assert_eq!(read.files[refs.len() - 1], None);
        assert_eq!(read.exists, [true, false, false]);
        assert!(!std::path::Path::new("pwned").exists());
    }

    #[test]
    fn the_current_release_is_read_from_the_link_and_only_a_release_id_counts() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let look = || {
            let request = Framed::new(&current_release(root));
            let out = crate::remote::run_in_sh(request.script(), b"");
            parse_current_release(&request.reply(&out.stdout))
        };
        assert_eq!(look(), None);
        let id = "20261122T175512.042Z-3f9a1c2e";
        std::os::unix::fs::symlink(format!("releases/{id}"), dir.path().join("current")).unwrap();
        assert_eq!(look().as_deref(), Some(id));
        std::fs::remove_file(dir.path().join("current")).unwrap();
        std::os::unix::fs::symlink("releases/$(touch x)", dir.path().join("current")).unwrap();
        assert_eq!(look(), None);
    }

    #[test]
    fn a_script_cut_short_is_no_answer() {
        let request = Framed::new(&read_back(&["/etc/hostname"], &[]));
        assert_eq!(parse_read_back(&request.reply(b""), 1, 0), None);
    }
}
