//! A dry run's view of a file: the unified diff of what a host has against what a deploy would
//! write, secrets masked on both sides before diffing (so no character of a secret is ever
//! compared, let alone shown). May import secrets (`MASK`) and its sibling `redact`.

use super::redact::Redactor;
use crate::secrets::MASK;

/// Follows a masked line of the host's file that the rendered file does not have.
const HIDDEN: &str = "  # the host's value, hidden";

/// Files larger than this are not read back nor diffed.
pub const DIFF_LIMIT: usize = 256 * 1024;

/// What a dry run shows of one file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentView {
    /// A unified diff (`---`/`+++` headers, `@@` hunks); empty when the contents agree.
    Diff(String),
    /// Not text (a NUL byte, or not UTF-8): only that it differs.
    Binary,
    /// Larger than `DIFF_LIMIT`: only that it differs.
    TooLarge,
}

/// The diff from `remote` (`None`: no file there yet) to `local`, as `dest`, with every secret
/// masked. `sensitive` (the rendered file holds a secret): a line of the host's file that the
/// rendered file does not have is shown with its value masked (`KEY=********`, or `********`),
/// since an old secret there is one the run's redactor does not know.
pub fn file_diff(
    dest: &str,
    remote: Option<&[u8]>,
    local: &[u8],
    redactor: &Redactor,
    sensitive: bool,
) -> ContentView {
    if local.len() > DIFF_LIMIT || remote.is_some_and(|r| r.len() > DIFF_LIMIT) {
        return ContentView::TooLarge;
    }
    let old_name = match remote {
        None => "/dev/null".to_string(),
        Some(_) => format!("{dest} (host)"),
    };
    let (Some(local), Some(remote)) = (as_text(local), remote.map_or(Some(""), as_text)) else {
        return ContentView::Binary;
    };
    let new = redactor.redact(local);
    let old = if sensitive {
        mask_unknown_lines(remote, local, redactor)
    } else {
        redactor.redact(remote)
    };
    let diff = similar::TextDiff::from_lines(&old, &new);
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header(&old_name, &format!("{dest} (deploy)"))
        .missing_newline_hint(true)
        .to_string();
    ContentView::Diff(text)
}

/// Text a terminal may show: no NUL, valid UTF-8.
fn as_text(bytes: &[u8]) -> Option<&str> {
    if bytes.contains(&0) {
        return None;
    }
    std::str::from_utf8(bytes).ok()
}

/// `remote` with each line the rendered `local` does not have word for word, and that holds
/// no secret of this run, masked after its key (`KEY=********`, `export KEY=********`) or whole (`********`), marked as hidden (a
/// rotated secret would otherwise mask to the very line the rendered file shows); the lines
/// both have are masked like the rendered file's.
fn mask_unknown_lines(remote: &str, local: &str, redactor: &Redactor) -> String {
    let known: std::collections::HashSet<&str> = local.split_inclusive('\n').collect();
    remote
        .split_inclusive('\n')
        .map(|line| {
            // A line the rendered file has, or one holding a secret of this run (the template
            // made it with today's secret): masked like the rendered file's lines.
            if known.contains(line) || redactor.reveals_secret(line.as_bytes()) {
                return redactor.redact(line);
            }
            let (body, end) = match line.strip_suffix('\n') {
                Some(body) => (body.strip_suffix('\r').unwrap_or(body), &line[body.len()..]),
                None => (line, ""),
            };
            let trimmed = body.trim_start();
            if body.trim().is_empty() || trimmed.starts_with('#') {
                // Blank lines and comments: `#` lines in `.env` hold no value compose reads.
                return redactor.redact(line);
            }
            match body.split_once('=') {
                Some((key, _)) if is_key(key) => format!("{key}={MASK}{HIDDEN}{end}"),
                _ => format!("{MASK}{HIDDEN}{end}"),
            }
        })
        .collect()
}

/// `NAME` or `export NAME` (with optional spaces), as a `.env` line's key.
fn is_key(key: &str) -> bool {
    let key = key.trim();
    let name = key.strip_prefix("export ").unwrap_or(key).trim();
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Secret;

    fn redactor(secrets: &[&str]) -> Redactor {
        let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
        Redactor::new(&secrets)
    }

    fn diff_text(view: ContentView) -> String {
        match view {
            ContentView::Diff(text) => text,
            other => panic!("not a diff: {other:?}"),
        }
    }

    #[test]
    fn a_secret_inside_a_value_is_masked_on_both_sides_before_diffing() {
        let r = redactor(&["S3cr3tPw"]);
        let old = b"APP=web\nDATABASE_URL=postgres://u:S3cr3tPw@db/x\n";
        let new = b"APP=web\nDATABASE_URL=postgres://u:S3cr3tPw@db2/x\n";
        let sensitive = diff_text(file_diff("/srv/.env", Some(old), new, &r, true));
        let text = diff_text(file_diff("/srv/.env", Some(old), new, &r, false));
        assert_eq!(
            text, sensitive,
            "the old line holds today's secret: shown masked"
        );
        assert!(
            text.contains("-DATABASE_URL=postgres://u:********@db/x\n"),
            "{text}"
        );
        assert!(
            text.contains("+DATABASE_URL=postgres://u:********@db2/x\n"),
            "{text}"
        );
        assert!(text.contains("--- /srv/.env (host)"), "{text}");
        assert!(
            !text.contains("S3cr3tPw") && !text.contains("S3cr"),
            "{text}"
        );
    }

    #[test]
    fn a_changed_secret_shows_no_character_of_either_value() {
        // The secret changed from `oldpassword` to `newpassword`: a character diff of the raw
        // lines would show `old`/`new`; masked first, the lines are equal but for the mask.
        let r = redactor(&["newpassword"]);
        let old = b"PW=oldpassword\nURL=x:oldpassword@h\n";
        let new = b"PW=newpassword\nURL=x:newpassword@h\n";
        let text = diff_text(file_diff("/srv/.env", Some(old), new, &r, true));
        assert!(!text.contains("password"), "{text}");
        assert!(
            text.contains("-PW=********  # the host's value, hidden\n"),
            "{text}"
        );
        assert!(text.contains("+PW=********\n"), "{text}");
        assert!(text.contains("-URL=********  # the host's value, hidden\n"));
        assert!(text.contains("+URL=x:********@h\n"), "{text}");
    }

    #[test]
    fn lines_a_sensitive_file_keeps_show_as_the_rendered_ones_do() {
        let r = redactor(&["tok"]);
        let old = b"# comment\nA=1\nB=tok\nC=old\nnot a pair: xyz\n";
        let new = b"# comment\nA=1\nB=tok\nC=new\n";
        let text = diff_text(file_diff("/e", Some(old), new, &r, true));
        assert!(
            text.contains(" A=1\n") && text.contains(" B=********\n"),
            "{text}"
        );
        assert!(
            text.contains("-C=********  # the host's value, hidden\n"),
            "{text}"
        );
        assert!(text.contains("+C=new\n"), "{text}");
        assert!(
            text.contains("-********  # the host's value, hidden\n"),
            "{text}"
        );
        assert!(!text.contains("xyz") && !text.contains("old"), "{text}");
    }

    #[test]
    fn new_files_are_added_whole_and_equal_ones_give_no_diff() {
        let r = redactor(&["pw"]);
        let text = diff_text(file_diff("/srv/a", None, b"x=pw\ny\n", &r, false));
        assert!(
            text.starts_with("--- /dev/null\n+++ /srv/a (deploy)\n"),
            "{text}"
        );
        assert!(text.contains("+x=********\n+y\n"), "{text}");
        assert_eq!(
            file_diff("/srv/a", Some(b"same\n"), b"same\n", &r, false),
            ContentView::Diff(String::new())
        );
    }

    #[test]
    fn binary_and_large_files_are_not_diffed() {
        let r = Redactor::default();
        assert_eq!(
            file_diff("/b", Some(b"a\0b"), b"ab", &r, false),
            ContentView::Binary
        );
        assert_eq!(
            file_diff("/b", None, &[0xff, 0xfe], &r, false),
            ContentView::Binary
        );
        let big = vec![b'a'; DIFF_LIMIT + 1];
        assert_eq!(
            file_diff("/b", Some(b"a"), &big, &r, false),
            ContentView::TooLarge
        );
    }
}
