//! The `--json` report: the whole run as one JSON document, written when the run ends.

use std::io::Write;
use std::path::PathBuf;

use super::{Event, Reporter, RunReport};
use crate::secrets::Redactor;

pub struct JsonReporter {
    /// `None` writes to stdout.
    path: Option<PathBuf>,
    /// Output was masked where it came in; this catches any text that came another way.
    redactor: Redactor,
}

impl JsonReporter {
    /// `None` writes to stdout.
    pub fn new(path: Option<PathBuf>, redactor: Redactor) -> Self {
        Self { path, redactor }
    }
}

/// JSON text with the C1 controls and bidirectional overrides that serde leaves as they are
/// written `\u009b`-style too (C0 controls already are), so `--json -` on a terminal cannot
/// drive it either. The same text once parsed: outside strings JSON has no such characters.
fn escape_terminal_controls(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        // Newlines between fields stay; C0 controls inside strings are escaped already.
        if (c as u32 >= 0x7f && c.is_control()) || crate::output::is_bidi_control(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Masks secrets in every string of a JSON document.
fn redact_strings(value: &mut serde_json::Value, redactor: &Redactor) {
    match value {
        serde_json::Value::String(text) if redactor.reveals_secret(text.as_bytes()) => {
            *text = redactor.redact(text);
        }
        serde_json::Value::Array(items) => {
            items.iter_mut().for_each(|v| redact_strings(v, redactor));
        }
        serde_json::Value::Object(fields) => {
            fields
                .values_mut()
                .for_each(|v| redact_strings(v, redactor));
        }
        _ => {}
    }
}

impl Reporter for JsonReporter {
    fn event(&self, _event: &Event<'_>) {}

    fn finished(&self, report: &RunReport) {
        // Text stays faithful (control characters escaped the JSON way, `\u001b`); only
        // secrets are masked.
        let Ok(mut value) = serde_json::to_value(report) else {
            return;
        };
        redact_strings(&mut value, &self.redactor);
        let Ok(text) = serde_json::to_string_pretty(&value) else {
            return;
        };
        let mut text = escape_terminal_controls(&text);
        text.push('\n');
        let result = match &self.path {
            Some(path) => std::fs::write(path, text),
            None => std::io::stdout().lock().write_all(text.as_bytes()),
        };
        if let Err(e) = result {
            eprintln!("dropship: cannot write the JSON report: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_text_stays_faithful_and_terminal_safe() {
        let text = "esc \x1b c1 \u{9b} bidi \u{202e} ok ✓";
        let json = escape_terminal_controls(&serde_json::to_string(&text).unwrap());
        assert_eq!(json, r#""esc \u001b c1 \u009b bidi \u202e ok ✓""#);
        assert_eq!(serde_json::from_str::<String>(&json).unwrap(), text);
    }
}
