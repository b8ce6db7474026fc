//! The one way to write a remote shell script: fixed `'static` templates whose `{}` holes take
//! values that are quoted by default; only other `Script`s (or text explicitly marked as a
//! trusted shell fragment, such as a user's `run` command: `Script::raw_trusted`) go in as code.
//! May import: nothing of the crate (shell-escape for the quoting).

use std::borrow::Cow;
use std::fmt;

/// Quotes one word for a POSIX shell (as a template value does): the builder's own quoting.
pub fn quote(word: &str) -> Cow<'_, str> {
    shell_escape::unix::escape(Cow::Borrowed(word))
}

/// Shell code for a host. It can only be made from `'static` templates (code written in this
/// crate) with every value quoted, or from text marked trusted with `Script::raw_trusted`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script(String);

/// Something that can fill a template's hole: text is quoted (one shell word), numbers are
/// written as digits, a `Script` goes in as code.
pub trait ShellArg {
    fn push_to(&self, out: &mut String);
}

impl ShellArg for str {
    fn push_to(&self, out: &mut String) {
        out.push_str(&quote(self));
    }
}

impl ShellArg for String {
    fn push_to(&self, out: &mut String) {
        self.as_str().push_to(out);
    }
}

impl<T: ShellArg + ?Sized> ShellArg for &T {
    fn push_to(&self, out: &mut String) {
        (**self).push_to(out);
    }
}

impl ShellArg for Script {
    fn push_to(&self, out: &mut String) {
        out.push_str(&self.0);
    }
}

macro_rules! digits {
    ($($t:ty),*) => {$(
        impl ShellArg for $t {
            fn push_to(&self, out: &mut String) {
                out.push_str(&self.to_string());
            }
        }
    )*};
}
digits!(u16, u32, u64, usize);

/// A shell variable that scripts of this crate share (named once, in `remote::vars`): as a
/// template value it is its bare name (`{}=ok`, `${{{}:-}}`); `get()` is its value as one word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Var(Cow<'static, str>);

impl Var {
    pub const fn new(name: &'static str) -> Self {
        Self(Cow::Borrowed(name))
    }

    /// `PREFIX` followed by `tag` (letters, digits and `_` only: a bug otherwise).
    pub fn tagged(prefix: &'static str, tag: &str) -> Self {
        assert!(
            tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "not a shell name: {tag:?}"
        );
        Self(Cow::Owned(format!("{prefix}{tag}")))
    }

    pub fn name(&self) -> &str {
        &self.0
    }

    /// `"$name"`: the variable's value as one word.
    pub fn get(&self) -> Script {
        Script(format!("\"${}\"", self.0))
    }

    /// `$name` unquoted: only where no splitting happens (a `case` word, an assignment) or
    /// the value is known to be one word.
    pub fn bare(&self) -> Script {
        Script(format!("${}", self.0))
    }
}

impl ShellArg for Var {
    fn push_to(&self, out: &mut String) {
        out.push_str(&self.0);
    }
}

/// A text single-quoted even when it would not need it (a script for `sh -c`).
pub struct SingleQuoted<'a>(pub &'a str);

impl ShellArg for SingleQuoted<'_> {
    fn push_to(&self, out: &mut String) {
        out.push('\'');
        out.push_str(&self.0.replace('\'', "'\\''"));
        out.push('\'');
    }
}

/// A umask written as 3 octal digits (`077`).
pub struct Umask(pub u32);

impl ShellArg for Umask {
    fn push_to(&self, out: &mut String) {
        out.push_str(&format!("{:03o}", self.0 & 0o777));
    }
}

/// A file mode written as 4 octal digits (`0644`).
pub struct Octal(pub u32);

impl ShellArg for Octal {
    fn push_to(&self, out: &mut String) {
        out.push_str(&format!("{:04o}", self.0 & 0o7777));
    }
}

impl Script {
    /// Fills each `{}` of `template` with the next of `args`, in order; `{{` and `}}` are literal
    /// braces, as in `format!` (a lone brace is kept too). The template is code written in this
    /// crate (hence `'static`); a count mismatch is a bug in that code.
    pub fn new(template: &'static str, args: &[&dyn ShellArg]) -> Self {
        let mut out = String::with_capacity(template.len() + 16 * args.len());
        let mut args = args.iter();
        let mut rest = template;
        while let Some(at) = rest.find(['{', '}']) {
            out.push_str(&rest[..at]);
            let after = &rest[at..];
            if after.starts_with("{}") {
                args.next()
                    .unwrap_or_else(|| panic!("too few values for script template {template:?}"))
                    .push_to(&mut out);
            } else if after.starts_with("{{") || after.starts_with("}}") {
                out.push_str(&after[..1]);
            } else {
                // A lone brace is shell code (`${x}`, `{ a; }`): kept as written.
                out.push_str(&after[..1]);
                rest = &after[1..];
                continue;
            }
            rest = &after[2..];
        }
        out.push_str(rest);
        assert!(
            args.next().is_none(),
            "too many values for script template {template:?}"
        );
        Self(out)
    }

    /// The one escape hatch: text that is shell code by intent (a user's `run` command, a
    /// health `command`, a script built here and kept as text), taken as is. The only way
    /// other than a template to make a `Script`; grep for it.
    pub fn raw_trusted(code: impl Into<String>) -> Self {
        Self(code.into())
    }

    /// Appends another script.
    pub fn push(&mut self, more: &Script) {
        self.0.push_str(&more.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Script> for String {
    fn from(script: Script) -> Self {
        script.0
    }
}

/// `sh!("mkdir -p -- {} && cd {}", dir, dir)`: a `Script` from a literal template, each value
/// quoted (a `Script` value goes in as code).
#[macro_export]
macro_rules! sh {
    ($template:literal $(, $arg:expr)* $(,)?) => {
        $crate::remote::script::Script::new(
            $template,
            &[$(&$arg as &dyn $crate::remote::script::ShellArg),*],
        )
    };
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Values that would run code, pass options or split words if pasted unquoted.
    pub(crate) const HOSTILE: [&str; 9] = [
        "$(touch pwned)",
        "`touch pwned`",
        "-rf",
        "--help",
        "a b",
        "x'; touch pwned; '",
        "x\"; touch pwned; \"",
        "line\ntouch pwned",
        "",
    ];

    #[test]
    fn every_value_is_one_word_and_runs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        for value in HOSTILE {
            let script = sh!(
                "cd {} && printf '[%s]' {} {}",
                dir.path().to_str().unwrap(),
                value,
                7u32
            );
            let out = crate::remote::run_in_sh(script.as_str(), b"");
            assert_eq!(out.status, Some(0), "{script}");
            assert_eq!(
                String::from_utf8(out.stdout).unwrap(),
                format!("[{value}][7]"),
                "{script}"
            );
            assert_eq!(
                std::fs::read_dir(dir.path()).unwrap().count(),
                0,
                "{script} created something"
            );
        }
    }

    #[test]
    fn scripts_nest_as_code_and_modes_as_octal() {
        let inner = sh!("echo {}", "a b");
        assert_eq!(
            sh!("{} && chmod {} -- {}", inner, Octal(0o640), "f").as_str(),
            "echo 'a b' && chmod 0640 -- f"
        );
        assert_eq!(Script::raw_trusted("ls | wc -l").as_str(), "ls | wc -l");
        assert_eq!(
            sh!("{{ x=${y}; }} && find -exec rm {{}} + {}", "z").as_str(),
            "{ x=${y}; } && find -exec rm {} + z"
        );
    }

    #[test]
    #[should_panic(expected = "too many values")]
    fn a_value_without_a_hole_is_a_bug() {
        let _ = sh!("true", "x");
    }
}
