//! Errors in the user's input files (file, line, column, key path, a source excerpt and a
//! hint), and the one function that renders every error with its hint for the user.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

/// A TOML (or template) file as the user wrote it, kept to point errors at it.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    pub fn read(path: &Path, what: &str) -> Result<Self, InputError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Self {
                path: path.to_path_buf(),
                text,
            }),
            Err(e) => Err(InputError::plain(format!(
                "cannot read {what} `{}`: {e}",
                path.display()
            ))),
        }
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = self.text.floor_char_boundary(offset);
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    /// An error pointing at `span` of this TOML file, naming the key there.
    pub fn error_at(&self, span: Range<usize>, message: impl Into<String>) -> InputError {
        let span = self.within_text(span);
        let mut error = self.error_at_span(span.clone(), message);
        error.key = key_path_at(&self.text, span.start);
        error
    }

    /// An error pointing at `span` of this file (any format: no key path).
    pub fn error_at_span(&self, span: Range<usize>, message: impl Into<String>) -> InputError {
        let span = self.within_text(span);
        let (line, column) = self.line_col(span.start);
        InputError(Box::new(InputErrorDetails {
            location: Some(Location {
                file: self.path.display().to_string(),
                line,
                column,
            }),
            key: None,
            message: message.into(),
            excerpt: Some(self.excerpt(span)),
            hint: None,
        }))
    }

    /// Converts a TOML deserialisation error, keeping its position.
    pub fn toml_error(&self, error: &toml::de::Error) -> InputError {
        let message = error.message().trim().to_string();
        let hint = hint_for_toml_message(&message);
        let mut err = match error.span() {
            Some(span) => self.error_at(span, message),
            None => InputError::plain(format!("{}: {message}", self.path.display())),
        };
        err.hint = hint;
        err
    }

    /// `span` inside the text and on character boundaries: spans come from other crates
    /// (minijinja counts some in bytes of a different text), and slicing must never panic.
    fn within_text(&self, span: Range<usize>) -> Range<usize> {
        let start = self.text.floor_char_boundary(span.start);
        let end = self.text.ceil_char_boundary(span.end.max(start));
        start..end
    }

    fn excerpt(&self, span: Range<usize>) -> String {
        let (line, column) = self.line_col(span.start);
        let text = self.text.lines().nth(line - 1).unwrap_or("");
        let width = self.text[span.start.min(self.text.len())..span.end.min(self.text.len())]
            .split('\n')
            .next()
            .unwrap_or("")
            .chars()
            .count()
            .max(1);
        let gutter = line.to_string().len();
        format!(
            "{:gutter$} |\n{line} | {text}\n{:gutter$} | {}{}",
            "",
            "",
            " ".repeat(column - 1),
            "^".repeat(width)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

/// Bad input: reported before any host is touched; the process exits 2. Boxed: errors are
/// rare and `Result`s carrying them stay small.
#[derive(Debug, Clone)]
pub struct InputError(Box<InputErrorDetails>);

impl std::ops::Deref for InputError {
    type Target = InputErrorDetails;
    fn deref(&self) -> &InputErrorDetails {
        &self.0
    }
}

impl std::ops::DerefMut for InputError {
    fn deref_mut(&mut self) -> &mut InputErrorDetails {
        &mut self.0
    }
}

#[derive(Debug, Clone)]
pub struct InputErrorDetails {
    pub location: Option<Location>,
    /// Dotted key path, e.g. `hosts.web-1.adress`.
    pub key: Option<String>,
    pub message: String,
    pub excerpt: Option<String>,
    pub hint: Option<String>,
}

impl InputError {
    pub fn plain(message: impl Into<String>) -> Self {
        Self(Box::new(InputErrorDetails {
            location: None,
            key: None,
            message: message.into(),
            excerpt: None,
            hint: None,
        }))
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        render(
            f,
            self.location.as_ref(),
            &self.message,
            self.key.as_deref(),
            self.excerpt.as_deref(),
            self.hint.as_deref(),
        )
    }
}

/// How every error reaches the user: `file:line:column: ` when it points into a file, the
/// message, the key path, the source excerpt, then `  hint: …` on a line of its own.
pub fn render(
    f: &mut fmt::Formatter<'_>,
    location: Option<&Location>,
    message: &dyn fmt::Display,
    key: Option<&str>,
    excerpt: Option<&str>,
    hint: Option<&str>,
) -> fmt::Result {
    if let Some(loc) = location {
        write!(f, "{}:{}:{}: ", loc.file, loc.line, loc.column)?;
    }
    write!(f, "{message}")?;
    if let Some(key) = key {
        write!(f, "\n  key: `{key}`")?;
    }
    if let Some(excerpt) = excerpt {
        write!(f, "\n{excerpt}")?;
    }
    if let Some(hint) = hint {
        write!(f, "\n  hint: {hint}")?;
    }
    Ok(())
}

/// An error message with its hint (data the error carries), shown through `render`: how the
/// errors that point into no file (transport, planning) display themselves.
pub struct Hinted<'a>(pub &'a dyn fmt::Display, pub Option<&'a str>);

impl fmt::Display for Hinted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        render(f, None, self.0, None, None, self.1)
    }
}

impl std::error::Error for InputError {}

fn hint_for_toml_message(message: &str) -> Option<String> {
    if message.starts_with("unknown field") {
        Some("check the spelling; the expected keys are listed above".to_string())
    } else if message.starts_with("missing field") {
        Some("add the key named above".to_string())
    } else if message.starts_with("unknown variant") {
        Some("use one of the values listed above".to_string())
    } else if message.starts_with("invalid type") {
        Some("check the value's type (quotes make a string, [ ] a list, { } a table)".to_string())
    } else {
        None
    }
}

/// The dotted key path of the deepest key or value whose span contains `offset`.
pub fn key_path_at(text: &str, offset: usize) -> Option<String> {
    let (doc, _) = DeTable::parse_recoverable(text);
    let mut path = Vec::new();
    walk_table(doc.get_ref(), offset, &mut path);
    if path.is_empty() {
        None
    } else {
        Some(path.join("."))
    }
}

fn walk_table(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table.iter() {
        let in_key = key.span().contains(&offset);
        let in_value = value.span().contains(&offset) || value.span().end == offset;
        // Tables opened with a `[header]` have a value span that covers their body only
        // through their children, so children are searched even when the span misses.
        let is_table = matches!(value.get_ref(), DeValue::Table(_) | DeValue::Array(_));
        if in_key || in_value || is_table {
            path.push(format_key(key.get_ref()));
            if in_key {
                return true;
            }
            if walk_value(value.get_ref(), offset, path) || in_value {
                return true;
            }
            path.pop();
        }
    }
    false
}

fn walk_value(value: &DeValue<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    match value {
        DeValue::Table(t) => walk_table(t, offset, path),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let inside = item.span().contains(&offset);
                let is_table = matches!(item.get_ref(), DeValue::Table(_));
                if inside || is_table {
                    path.push(i.to_string());
                    if walk_value(item.get_ref(), offset, path) || inside {
                        return true;
                    }
                    path.pop();
                }
            }
            false
        }
        _ => false,
    }
}

fn format_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_string()
    } else {
        format!("\"{key}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_path_names_nested_keys() {
        let text = "[ssh]\nuser = \"x\"\n\n[hosts.web-1]\naddress = \"a\"\nadress = 3\n";
        let offset = text.find("adress").unwrap();
        assert_eq!(
            key_path_at(text, offset).as_deref(),
            Some("hosts.web-1.adress")
        );
        let offset = text.find("\"x\"").unwrap();
        assert_eq!(key_path_at(text, offset).as_deref(), Some("ssh.user"));
    }

    #[test]
    fn key_path_indexes_arrays_of_tables() {
        let text = "[[steps]]\nrun = \"a\"\n\n[[steps]]\nrun = 5\n";
        let offset = text.rfind('5').unwrap();
        assert_eq!(key_path_at(text, offset).as_deref(), Some("steps.1.run"));
    }

    #[test]
    fn line_and_column_are_one_based() {
        let file = SourceFile {
            path: "x.toml".into(),
            text: "a = 1\nbb = 2\n".into(),
        };
        assert_eq!(file.line_col(0), (1, 1));
        assert_eq!(file.line_col(7), (2, 2));
    }

    /// Found by fuzzing (fuzz/ template target): minijinja reported a syntax error whose span
    /// ends inside a multi-byte character, and cutting the excerpt there panicked.
    #[test]
    fn spans_off_character_boundaries_or_past_the_end_never_panic() {
        let file = SourceFile {
            path: "t.j2".into(),
            text: "first={{ files.lis\u{FFFD}[0] }}\n".into(),
        };
        let inside = file.text.find('\u{FFFD}').unwrap() + 1;
        #[allow(clippy::reversed_empty_ranges)]
        let spans = [inside..inside, 0..inside, inside..inside + 1, 40..99, 9..3];
        for span in spans {
            let err = file.error_at_span(span.clone(), "x");
            assert!(err.to_string().starts_with("t.j2:"), "{span:?}: {err}");
            let _ = file.error_at(span, "x");
        }
        assert_eq!(file.line_col(inside), (1, 19));
    }
}
