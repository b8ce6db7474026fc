//! The `--json` report: the whole run as one JSON document, written when the run ends.

use std::io::Write;
use std::path::PathBuf;

use super::{Event, Reporter, RunReport};

pub struct JsonReporter {
    /// `None` writes to stdout.
    path: Option<PathBuf>,
}

impl JsonReporter {
    /// `-` means stdout.
    pub fn new(target: &str) -> Self {
        Self {
            path: (target != "-").then(|| PathBuf::from(target)),
        }
    }
}

impl Reporter for JsonReporter {
    fn event(&self, _event: &Event<'_>) {}

    fn finished(&self, report: &RunReport) {
        let Ok(mut text) = serde_json::to_string_pretty(report) else {
            return;
        };
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
