//! The deploy lock and the audit log on each host: where they live, the scripts, the holder.

use crate::remote::quote;

/// A host's state directory for one app, as a shell word ready to paste into scripts: under the
/// release root when `[release]` is set, else `$HOME/.dropship/<app>` of the remote user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir(String);

impl StateDir {
    pub fn under_release_root(root: &str) -> Self {
        Self(format!("{}/.dropship", quote(root.trim_end_matches('/'))))
    }

    pub fn in_home(app: &str) -> Self {
        Self(format!("\"$HOME\"/.dropship/{}", quote(app)))
    }

    pub fn shell(&self) -> &str {
        &self.0
    }
}

/// Who holds (or wants) a lock: written into the lock as `key=value` lines.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Holder {
    /// `user@machine` of the workstation or CI job.
    pub who: String,
    pub since: String,
    pub playbook: String,
    pub command: String,
    pub release: String,
    /// Unique per run, so a run only ever removes its own lock.
    pub token: String,
}

impl Holder {
    pub fn to_lines(&self) -> String {
        format!(
            "holder={}\nsince={}\nplaybook={}\ncommand={}\nrelease={}\ntoken={}\n",
            one_line(&self.who),
            one_line(&self.since),
            one_line(&self.playbook),
            one_line(&self.command),
            one_line(&self.release),
            one_line(&self.token)
        )
    }

    pub fn parse(text: &str) -> Option<Self> {
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                .unwrap_or("")
                .to_string()
        };
        let who = get("holder");
        if who.is_empty() {
            return None;
        }
        Some(Self {
            who,
            since: get("since"),
            playbook: get("playbook"),
            command: get("command"),
            release: get("release"),
            token: get("token"),
        })
    }

    /// `alice@laptop since 2026-11-22T17:55:12Z (deploy of "Deploy Pixel", release X)`.
    pub fn describe(&self) -> String {
        let mut text = format!("{} since {} ({}", self.who, self.since, self.command);
        if !self.playbook.is_empty() {
            text.push_str(&format!(" of \"{}\"", self.playbook));
        }
        if !self.release.is_empty() {
            text.push_str(&format!(", release {}", self.release));
        }
        text.push(')');
        text
    }
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// `user@machine` of this process.
pub fn local_identity() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(effective_user_name)
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!("{user}@{host}")
}

/// The effective user's name from the password database (cron, systemd and CI often set no
/// `USER`).
fn effective_user_name() -> Option<String> {
    // SAFETY: getpwuid returns a pointer into static storage or null; the name is copied
    // out before any other call could overwrite it.
    unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if pw.is_null() || (*pw).pw_name.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_str()
            .ok()
            .map(str::to_string)
    }
}

/// Takes the lock with `mkdir` (atomic) and writes the holder into it. Prints `acquired`, or
/// `held` followed by the holder's lines. Builtins but for the `mkdir` (neither the holder nor
/// the audit line is secret, so both travel in the script).
pub fn acquire(state: &StateDir, holder: &Holder) -> String {
    let s = state.shell();
    format!(
        "{{ [ -d {s} ] || mkdir -p {s}; }} && if mkdir {s}/lock 2>/dev/null; then \
         printf '%s' {lines} > {s}/lock/info; echo acquired; \
         else echo held; cat {s}/lock/info 2>/dev/null; fi",
        lines = quote(&holder.to_lines())
    )
}

/// Appends the audit line (prefix and result), then removes the lock if it is ours (same
/// token). The result is a shell word: a quoted text, or `"$dsr"` in a chain's epilogue.
fn audit_and_release(state: &StateDir, token: &str, audit: Option<(&str, &str)>) -> String {
    let s = state.shell();
    let audit = match audit {
        Some((prefix, result)) => format!(
            "{{ [ -d {s} ] || mkdir -p {s}; }} && printf '%s%s\\n' {} {result} >> {s}/audit.log; ",
            quote(prefix)
        ),
        None => String::new(),
    };
    format!(
        "{audit}dsl=; if [ -f {s}/lock/info ]; then while IFS= read -r l; do [ \"$l\" != {tok} ] || dsl=1; done < {s}/lock/info; fi; \
         [ -z \"$dsl\" ] || rm -rf {s}/lock",
        tok = quote(&format!("token={token}"))
    )
}

/// Appends `holder`'s audit line for `host` and releases the lock if it is `holder`'s.
pub fn release_and_audit(state: &StateDir, holder: &Holder, host: &str, result: &str) -> String {
    let result = quote(&one_line(result)).into_owned();
    audit_and_release(
        state,
        &holder.token,
        Some((&audit_prefix(holder, host), &result)),
    )
}

/// Releases the lock if it is `holder`'s, without an audit line (a run refused elsewhere).
pub fn release(state: &StateDir, holder: &Holder) -> String {
    audit_and_release(state, &holder.token, None)
}

/// The same, as the epilogue of a chain: the result is the chain's `$dsr` (`ok` or
/// `failed at STEP`), so the last step's session also writes the audit line and unlocks.
pub fn release_and_audit_epilogue(state: &StateDir, holder: &Holder, host: &str) -> String {
    audit_and_release(
        state,
        &holder.token,
        Some((&audit_prefix(holder, host), "\"$dsr\"")),
    )
}

/// Prints the lock's holder lines, or nothing when unlocked.
pub fn status(state: &StateDir) -> String {
    let s = state.shell();
    format!("cat {s}/lock/info 2>/dev/null || true")
}

/// Removes the lock whoever holds it (`dropship lock release`), printing who held it.
pub fn force_release(state: &StateDir) -> String {
    let s = state.shell();
    format!("cat {s}/lock/info 2>/dev/null || true; rm -rf {s}/lock")
}

/// The last `lines` lines of the audit log.
pub fn audit_tail(state: &StateDir, lines: usize) -> String {
    let s = state.shell();
    format!("tail -n {lines} {s}/audit.log 2>/dev/null || true")
}

/// One audit line up to its result: time, who, command, playbook, release, `result=`.
fn audit_prefix(holder: &Holder, host: &str) -> String {
    format!(
        "{} {} {} host={} playbook=\"{}\" release={} result=",
        holder.since,
        holder.who,
        holder.command,
        one_line(host),
        one_line(&holder.playbook).replace('"', "'"),
        if holder.release.is_empty() {
            "-"
        } else {
            &holder.release
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder() -> Holder {
        Holder {
            who: "alice@laptop".into(),
            since: "2026-11-22T17:55:12Z".into(),
            playbook: "Deploy Pixel".into(),
            command: "deploy".into(),
            release: "r1".into(),
            token: "t-1".into(),
        }
    }

    #[test]
    fn holder_round_trips_and_describes_itself() {
        let h = holder();
        assert_eq!(Holder::parse(&h.to_lines()), Some(h.clone()));
        assert_eq!(
            h.describe(),
            "alice@laptop since 2026-11-22T17:55:12Z (deploy of \"Deploy Pixel\", release r1)"
        );
        assert_eq!(Holder::parse(""), None);
    }

    #[test]
    fn lock_is_exclusive_and_only_its_owner_releases_it() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::under_release_root(dir.path().to_str().unwrap());
        let sh = |script: &str, stdin: &str| {
            let out = crate::remote::run_in_sh(script, stdin.as_bytes());
            String::from_utf8(out.stdout).unwrap()
        };
        let a = holder();
        let b = Holder {
            who: "bob@ci".into(),
            token: "t-2".into(),
            ..holder()
        };
        assert_eq!(sh(&acquire(&state, &a), ""), "acquired\n");
        let second = sh(&acquire(&state, &b), "");
        assert!(second.starts_with("held\n"));
        assert_eq!(Holder::parse(&second).unwrap().who, "alice@laptop");
        // Bob's release leaves Alice's lock in place but records his audit line.
        sh(&release_and_audit(&state, &b, "h1", "refused"), "");
        assert!(sh(&status(&state), "").contains("holder=alice@laptop"));
        sh(&release(&state, &b), "");
        assert!(sh(&status(&state), "").contains("holder=alice@laptop"));
        // Alice's epilogue takes the chain's result from `$dsr`.
        sh(
            &format!(
                "dsr='failed at up'; {}",
                release_and_audit_epilogue(&state, &a, "h1")
            ),
            "",
        );
        assert_eq!(sh(&status(&state), ""), "");
        assert_eq!(sh(&acquire(&state, &b), ""), "acquired\n");
        sh(&release(&state, &b), "");
        assert_eq!(sh(&status(&state), ""), "");
        let audit = sh(&audit_tail(&state, 5), "");
        assert_eq!(audit.lines().count(), 2, "{audit}");
        assert!(audit.contains(
            "bob@ci deploy host=h1 playbook=\"Deploy Pixel\" release=r1 result=refused\n"
        ));
        assert!(audit.contains(
            "alice@laptop deploy host=h1 playbook=\"Deploy Pixel\" release=r1 result=failed at up\n"
        ));
    }
}
