//! Auto-escaping for `.env` templates: every `{{ … }}` output becomes one dotenv value that
//! Compose v1 (python-dotenv) and v2 (compose-go) both read back exactly, or an error.

use minijinja::{AutoEscape, Error, ErrorKind, Output, State, Value};

/// The auto-escape mode of templates that render `.env` files.
pub const DOTENV: AutoEscape = AutoEscape::Custom("dotenv");

/// Auto-escape by template name: `.env` files get [`DOTENV`]; other names keep minijinja's
/// default (HTML escaping for `*.html`, none for the rest).
pub fn auto_escape_for(name: &str) -> AutoEscape {
    if is_env_file_name(name) {
        DOTENV
    } else {
        minijinja::default_auto_escape_callback(name)
    }
}

/// `env.j2`, `.env`, `.env.production`, `app.env`, `app.env.j2`, … (in any directory).
pub fn is_env_file_name(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    let base = [".j2", ".jinja2", ".jinja"]
        .iter()
        .find_map(|ext| base.strip_suffix(ext))
        .unwrap_or(base);
    base == "env" || base.starts_with(".env") || base.ends_with(".env")
}

/// Bracket a quoted value in the rendered text until [`finish`] checks that it stands for
/// a whole value (`KEY=<here>`): quotes inside a longer value would be read literally.
const QUOTED_START: char = '\u{E000}';
const QUOTED_END: char = '\u{E001}';

/// The environment's formatter: dotenv quoting in `.env` templates (values marked `safe`
/// are written as they are), minijinja's default everywhere else.
pub fn formatter(out: &mut Output, state: &State, value: &Value) -> Result<(), Error> {
    if state.auto_escape() != DOTENV || value.is_safe() {
        return minijinja::escape_formatter(out, state, value);
    }
    let text = value.to_string();
    let cannot = |why: &str| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "this value cannot be written to a .env file so that Compose reads it back unchanged: {why} (the value is not shown)"
            ),
        )
    };
    if text.contains([QUOTED_START, QUOTED_END]) {
        return Err(cannot(
            "it contains a reserved character (U+E000 or U+E001)",
        ));
    }
    let quoted = quote(&text).map_err(cannot)?;
    if quoted == text {
        return out.write_str(&text).map_err(Error::from);
    }
    write!(out, "{QUOTED_START}{quoted}{QUOTED_END}").map_err(Error::from)
}

/// A quoted value that is only part of a line's value: the key it belongs to (`#` for a
/// multi-line value in a comment).
#[derive(Debug, PartialEq, Eq)]
pub struct PartialValue {
    pub key: String,
}

/// Checks that every quoted value of `rendered` is a whole value (`KEY=<value>`, optionally
/// `export KEY = <value>  # comment`) and removes the brackets.
pub fn finish(rendered: String) -> Result<String, PartialValue> {
    if !rendered.contains(QUOTED_START) {
        return Ok(rendered);
    }
    let mut out = String::with_capacity(rendered.len());
    let mut rest = rendered.as_str();
    while let Some(start) = rest.find(QUOTED_START) {
        let (before, after) = rest.split_at(start);
        out.push_str(before);
        let line = &out[out.rfind('\n').map_or(0, |i| i + 1)..];
        let key = line.split('=').next().unwrap_or("").trim();
        let key = key
            .strip_prefix("export ")
            .unwrap_or(key)
            .trim()
            .to_string();
        let whole_start = line.matches('=').count() == 1 && line.trim_end().ends_with('=');
        let in_comment = line.trim_start().starts_with('#');
        let after = &after[QUOTED_START.len_utf8()..];
        let Some(end) = after.find(QUOTED_END) else {
            return Err(PartialValue { key });
        };
        let value = &after[..end];
        out.push_str(value);
        rest = &after[end + QUOTED_END.len_utf8()..];
        // In a comment a value may stand anywhere, as long as it stays on the comment's line.
        if in_comment {
            if value.contains(['\n', '\r']) {
                return Err(PartialValue {
                    key: "#".to_string(),
                });
            }
            continue;
        }
        let tail = rest.split('\n').next().unwrap_or("");
        let whole_end = tail.trim().is_empty()
            || (tail.starts_with([' ', '\t']) && tail.trim_start().starts_with('#'));
        if !whole_start || !whole_end || key.is_empty() {
            return Err(PartialValue { key });
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Characters written without quotes: read literally by both parsers in any position.
fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_.-/:@+,=%^~*?![](){}<>|;&\\".contains(c)
}

/// One dotenv value for `text`, verified against both Compose flavours (see the
/// `env_values_read_back_exactly` integration test):
/// - plain text as it is;
/// - else, when it ends with `\`, an error: python-dotenv takes `\'` or `\"` before the
///   closing quote for an escaped quote and runs on into the next line;
/// - else single quotes, which neither flavour interpolates (python-dotenv expands only
///   `${…}`, which is refused), valid when the text has no `'`, no carriage return (Python
///   reads it as a newline) and no `\\` pair (python-dotenv unescapes it);
/// - else double quotes with `\\`, `\"`, `\n` and `\r` escaped, valid when the text has no `$`
///   (compose-go expands `$NAME` there and has no escape python-dotenv agrees with).
pub fn quote(text: &str) -> Result<String, &'static str> {
    if text.contains('\0') {
        return Err("it contains a NUL byte");
    }
    if has_python_dotenv_variable(text) {
        return Err("it contains `${…}`, which Compose v1 always expands");
    }
    if text.chars().all(is_plain) {
        return Ok(text.to_string());
    }
    if text.ends_with('\\') {
        return Err("it ends with a backslash and needs quotes, which Compose v1 misreads");
    }
    if !text.contains(['\'', '\r']) && !text.contains("\\\\") {
        return Ok(format!("'{text}'"));
    }
    if text.contains('$') {
        return Err(
            "it contains `$` together with `'`, a carriage return or backslashes, which no quoting keeps for both Compose v1 and v2",
        );
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

/// True when python-dotenv (Compose v1) would expand part of `text`: `${NAME}` or
/// `${NAME:-default}`, in any quoting.
fn has_python_dotenv_variable(text: &str) -> bool {
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        rest = &rest[start + 2..];
        if let Some(end) = rest.find('}') {
            let inner = &rest[..end];
            let name = inner.split_once(":-").map_or(inner, |(n, _)| n);
            if !name.contains(':') {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_render_env_files() {
        for name in [
            "templates/env.j2",
            "env",
            ".env",
            ".env.production",
            "app.env",
            "x/app.env.j2",
            ".env.j2",
        ] {
            assert!(is_env_file_name(name), "{name}");
        }
        for name in [
            "templates/nginx.conf.j2",
            "environment.yml",
            "docker-compose.yml.j2",
            "envoy.j2",
        ] {
            assert!(!is_env_file_name(name), "{name}");
        }
    }

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(quote("s3cr3t-db_1.2:x@y/z").unwrap(), "s3cr3t-db_1.2:x@y/z");
        assert_eq!(quote("").unwrap(), "");
        assert_eq!(quote("a b\nINJECTED=1").unwrap(), "'a b\nINJECTED=1'");
        assert_eq!(
            quote("it's \"x\"\\\n").unwrap(),
            "\"it's \\\"x\\\"\\\\\\n\""
        );
        assert!(quote("a${HOME}b").is_err());
        assert!(quote("it's $5").is_err());
        assert_eq!(quote("${HOME").unwrap(), "'${HOME'");
        assert_eq!(quote("C:\\dir\\").unwrap(), "C:\\dir\\");
        assert!(quote("a b\\").is_err());
    }

    #[test]
    fn quoted_values_must_be_whole_values() {
        let q = |v: &str| format!("{QUOTED_START}{v}{QUOTED_END}");
        assert_eq!(
            finish(format!(
                "# c\nA={}\nexport B = {}  # note\nC=x\n",
                q("'a b'"),
                q("'c\nd'")
            )),
            Ok("# c\nA='a b'\nexport B = 'c\nd'  # note\nC=x\n".to_string())
        );
        assert_eq!(
            finish(format!("URL=postgres://u:{}@db\n", q("'p w'"))),
            Err(PartialValue { key: "URL".into() })
        );
        assert_eq!(
            finish(format!("URL={}@db\n", q("'p w'"))),
            Err(PartialValue { key: "URL".into() })
        );
        assert_eq!(finish("A=plain\n".to_string()), Ok("A=plain\n".to_string()));
        assert_eq!(
            finish(format!("# for {} here\n", q("'web 1'"))),
            Ok("# for 'web 1' here\n".to_string())
        );
        assert!(finish(format!("# for {}\n", q("'a\nB=1'"))).is_err());
    }
}
