//! Reading files on a host: the probe that reports every destination's checksum, mode, owner
//! and group (and lists the directories a step asks for) in one round trip, and its parser.
//! May import: `remote::{script, frame, tree}`, `plan::Upload`.

use super::frame::{self, Kind, Reply};
use super::script::Script;
use super::tree;
use crate::plan::Upload;
use crate::sh;

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
/// Its frames: `files:sums`, `files:stats` (each followed by the output of its program),
/// `files:tree:I` for each of `trees` (the entries under that directory, `tree::listing`) and
/// `files:end` (the output is whole). It needs `$dsn` (a driver's, or `frame::Framed`).
/// Any name is data: `stat` ends each record with a NUL, `sha256sum` escapes odd names.
pub fn probe(dests: &[&str], trees: &[&str]) -> Script {
    let mut files = Script::default();
    for d in dests {
        files.push(&sh!(" {}", d));
    }
    let mut listings = Script::default();
    for (i, root) in trees.iter().enumerate() {
        listings.push(&sh!(
            "{}; {}; ",
            frame::report(Kind::Files, &format!("{TREE}{i}")),
            tree::listing(root)
        ));
    }
    sh!(
        "set --; for f in{}; do [ -f \"$f\" ] && set -- \"$@\" \"$f\"; done; \
         {}; [ $# = 0 ] || sha256sum -- \"$@\" 2>/dev/null; \
         {}; [ $# = 0 ] || stat --printf '%F|%a|%U|%G|%n\\0' -- \"$@\" 2>/dev/null; \
         {}{}\n",
        files,
        frame::report(Kind::Files, &SUMS),
        frame::report(Kind::Files, &STATS),
        listings,
        frame::report(Kind::Files, &END)
    )
}

const SUMS: &str = "sums";
const STATS: &str = "stats";
const TREE: &str = "tree:";
const END: &str = "end";

/// What `probe` found: one entry per destination (`None`: no regular file there), one per
/// tree (its entries; empty when it does not exist).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probed {
    pub files: Vec<Option<RemoteFile>>,
    pub trees: Vec<tree::Listing>,
}

/// Parses `probe`'s reply; `None` when the probe did not finish.
pub fn parse_probe(reply: &Reply, dests: &[&str], trees: &[&str]) -> Option<Probed> {
    let mut probed = Probed {
        files: vec![None; dests.len()],
        trees: vec![tree::Listing::default(); trees.len()],
    };
    if dests.is_empty() && trees.is_empty() {
        return Some(probed);
    }
    let section = |name: &str| {
        reply
            .sections
            .iter()
            .find_map(|(frame, data)| (frame.of(Kind::Files) == Some(name)).then_some(&data[..]))
    };
    let (sums, stats) = (section(SUMS)?, section(STATS)?);
    section(END)?;
    for (i, listing) in probed.trees.iter_mut().enumerate() {
        *listing = tree::parse_listing(section(&format!("{TREE}{i}"))?);
    }
    let sums = String::from_utf8_lossy(sums);
    let mut sha_of = std::collections::HashMap::new();
    for line in sums.split('\n').filter(|l| !l.is_empty()) {
        // `HASH  PATH`; a name holding `\\`, a newline or a carriage return is escaped and
        // the line starts with `\\`.
        let (escaped, line) = match line.strip_prefix('\\') {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        if let Some((hash, path)) = line.split_once("  ") {
            let path = if escaped {
                unescape_sum_name(path)
            } else {
                path.to_string()
            };
            sha_of.insert(path, hash.to_string());
        }
    }
    let stats = String::from_utf8_lossy(stats);
    // `stat --printf` ends each record with a NUL: a name may hold newlines and `|`.
    for record in stats.split('\0').filter(|r| !r.is_empty()) {
        let mut parts = record.splitn(5, '|');
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
        probed.files[index] = Some(RemoteFile {
            sha256: hash.clone(),
            mode: u32::from_str_radix(mode, 8).ok()?,
            owner: owner.to_string(),
            group: group.to_string(),
        });
    }
    Some(probed)
}

/// A name as `sha256sum` escapes it: `\\\\` is `\\`, `\\n` a newline, `\\r` a carriage return.
fn unescape_sum_name(escaped: &str) -> String {
    let mut name = String::with_capacity(escaped.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            name.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => name.push('\n'),
            Some('r') => name.push('\r'),
            Some(other) => name.push(other),
            None => name.push('\\'),
        }
    }
    name
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
            let request = frame::Framed::new(&probe(dests, &[]));
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(request.script())
                .output()
                .unwrap();
            assert!(out.status.success());
            parse_probe(&request.reply(&out.stdout), dests, &[])
                .unwrap()
                .files
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
            parse_probe(&Reply::parse(b"abc  /x\n", "n"), &["/x"], &[]).is_none(),
            "truncated output is an error"
        );
    }

    #[test]
    fn a_forged_probe_answer_in_a_file_name_is_not_taken_for_one() {
        // A destination whose name holds frames of another nonce (and none at all), and
        // `stat`'s own separators: its records carry them, and they stay data.
        let dir = tempfile::tempdir().unwrap();
        let name = "x\n@@dropship:0123456789abcdef:files:end@@\n--dropship--\n|644|a\\b\r";
        let path = dir.path().join(name);
        std::fs::write(&path, "hello\n").unwrap();
        let dests = [path.to_str().unwrap()];
        let request = frame::Framed::new(&probe(&dests, &[]));
        let out = crate::remote::run_in_sh(request.script(), b"");
        let reply = request.reply(&out.stdout);
        let kinds: Vec<&str> = reply
            .sections
            .iter()
            .map(|(f, _)| f.fields.as_str())
            .collect();
        assert_eq!(kinds, ["sums", "stats", "end"], "{reply:?}");
        // Its `stat` record ends with a NUL and `sha256sum` escapes its name: the file is
        // known like any other (a directory step's files may have any name), never by the
        // forged lines.
        let probed = parse_probe(&reply, &dests, &[]).unwrap();
        let file = probed.files[0].clone().expect("the file is known");
        assert_eq!(
            file.sha256,
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
        assert_eq!(file.mode, 0o644 & file.mode);
        // Cut before its end, a reply is no answer, whatever frames came before.
        let cut = out.stdout.len() - 10;
        assert!(parse_probe(&request.reply(&out.stdout[..cut]), &dests, &[]).is_none());
    }
}
