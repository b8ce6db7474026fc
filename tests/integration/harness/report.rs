//! The `--json` report a run wrote, read back, with accessors for what the tests check: each
//! host's entry, a step's outcome, the counts. Imports std and serde_json only.

use std::fmt;
use std::ops::Deref;
use std::path::Path;

use serde_json::Value;

/// A parsed `--json` report.
#[derive(Debug)]
pub struct Report(pub Value);

impl Report {
    pub fn read(path: &Path) -> Report {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read the JSON report {}: {e}", path.display()));
        Report(serde_json::from_str(&text).expect("the JSON report is JSON"))
    }

    /// The entry of `name` in `hosts`.
    #[track_caller]
    pub fn host(&self, name: &str) -> &Value {
        self.0["hosts"]
            .as_array()
            .expect("hosts array")
            .iter()
            .find(|h| h["host"] == name)
            .unwrap_or_else(|| panic!("no host `{name}` in the JSON report:\n{:#}", self.0))
    }

    /// The outcome of `step` on `host` (`changed`, `ok`, `failed`, `skipped`), if it is listed.
    pub fn outcome(&self, host: &str, step: &str) -> Option<&str> {
        self.host(host)["steps"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == step)
            .and_then(|s| s["outcome"].as_str())
    }

    /// Asserts the outcome of `step` on `host`, given as the plain output's label
    /// (`changed`, `ok`, `FAILED`, `skipped`).
    #[track_caller]
    pub fn assert_outcome(&self, host: &str, step: &str, label: &str) {
        assert_eq!(
            self.outcome(host, step),
            Some(label.to_lowercase().as_str()),
            "JSON report: `{step}` on {host}:\n{:#}",
            self.0
        );
    }

    /// How `host`'s run ended, as the summary counts it: `failed` (an error or a failed
    /// step), `not deployed` (a note: interrupted, rollout halted, lock held), else `ok`.
    pub fn host_status(&self, host: &str) -> &'static str {
        let h = self.host(host);
        let failed_step = h["steps"]
            .as_array()
            .is_some_and(|steps| steps.iter().any(|s| s["outcome"] == "failed"));
        if h.get("error").is_some() || failed_step {
            "failed"
        } else if h.get("note").is_some() {
            "not deployed"
        } else {
            "ok"
        }
    }

    /// Asserts `host_status(host)`.
    #[track_caller]
    pub fn assert_status(&self, host: &str, status: &str) {
        assert_eq!(
            self.host_status(host),
            status,
            "JSON report: status of {host}\n{:#}",
            self.0
        );
    }

    /// Asserts the number of hosts and how many ended ok and failed.
    #[track_caller]
    pub fn assert_counts(&self, hosts: usize, ok: u64, failed: u64) {
        self.assert_counts_of(hosts, ok, failed, 0);
    }

    /// `assert_counts`, with the hosts not deployed.
    #[track_caller]
    pub fn assert_counts_of(&self, hosts: usize, ok: u64, failed: u64, not_deployed: u64) {
        assert_eq!(
            self.0["hosts"].as_array().map(Vec::len),
            Some(hosts),
            "JSON report: hosts\n{:#}",
            self.0
        );
        assert_eq!(
            (
                self.0["counts"]["ok"].as_u64(),
                self.0["counts"]["failed"].as_u64(),
                self.0["counts"]["not_deployed"].as_u64()
            ),
            (Some(ok), Some(failed), Some(not_deployed)),
            "JSON report: counts (ok, failed, not deployed)\n{:#}",
            self.0
        );
    }
}

impl Deref for Report {
    type Target = Value;
    fn deref(&self) -> &Value {
        &self.0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}
