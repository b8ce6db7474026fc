//! The deploy lock and the audit log on each host: where they live, the holder written into
//! the lock (and who this process is), the scripts that take, release and show them, and the
//! parser of the lock's answer.
//! May import: `remote::{script, frame, vars}`, libc.

use super::frame::{self, Framed, Kind, Reply};
use super::script::Script;
use super::vars;
use crate::sh;

/// Where an app instance keeps its lock and audit log on a host, as a shell word ready to
/// paste into scripts. One place per app instance, whatever the playbook or the SSH user:
/// `<app dir>/.dropship`, the app's directory being the `app_dir` variable when set, else the
/// `[release]` root. An app with neither falls back to `~/.dropship/<app>` of the remote user
/// (then two SSH users do not share it: set `app_dir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    shell: Script,
    in_home: bool,
}

impl StateDir {
    pub fn for_app(app: &str, app_dir: Option<&str>) -> Self {
        match app_dir
            .map(|d| d.trim_end_matches('/'))
            .filter(|d| !d.is_empty())
        {
            Some(dir) => Self {
                shell: sh!("{}/.dropship", dir),
                in_home: false,
            },
            None => Self::in_home(app),
        }
    }

    pub fn in_home(app: &str) -> Self {
        Self {
            shell: sh!("\"$HOME\"/.dropship/{}", app),
            in_home: true,
        }
    }

    pub fn shell(&self) -> &Script {
        &self.shell
    }

    /// The fallback in the SSH user's home (no app directory): every instance of the app this
    /// user deploys on the host shares it.
    pub fn is_in_home(&self) -> bool {
        self.in_home
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
    audit_field(text)
}

/// `text` on one line whatever it holds: control characters (newlines, escapes) and
/// backslashes are written as escapes (`\\n`, `\\u{1b}`, `\\\\`), so no value can end an
/// audit record or a lock-info line and forge another.
pub fn audit_field(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
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

/// Takes the lock with `mkdir` (atomic) and writes the holder into it, then runs `probe` (the
/// files probe riding along: one round trip instead of two). Reports `lock:acquired`, or
/// `lock:held` followed by the holder's lines (or, when another user's lock cannot be read,
/// its owner and time from `stat`); a lock that cannot be made (no permission) is an error,
/// never a pass. The state directory is made sticky and world-writable (1777, like /tmp) so
/// that every user deploying the app can take its lock (only its taker or root can remove it);
/// the lock and its info are readable by all, so whoever is refused can say by whom. Builtins
/// but for the `mkdir`s (neither the holder nor the audit line is secret, so both travel in
/// the script). Read the answer with `parse_acquire`.
pub fn acquire(state: &StateDir, holder: &Holder, probe: Option<&Script>) -> Framed {
    let s = state.shell();
    let mut script = sh!(
        "{{ [ -d {} ] || mkdir -p -m 1777 -- {}; }} && umask 022 && \
         if dse=$(mkdir -- {}/lock 2>&1); then printf '%s' {} > {}/lock/info; {}; \
         elif [ -d {}/lock ]; then {}; cat -- {}/lock/info 2>/dev/null || \
         stat --printf 'holder=%U on this host (its lock details are not readable)\\nsince=%y\\ncommand=?\\n' -- {}/lock; \
         else printf '%s\\n' \"$dse\" >&2; exit 1; fi",
        s,
        s,
        s,
        holder.to_lines(),
        s,
        frame::report(Kind::Lock, &ACQUIRED),
        s,
        frame::report(Kind::Lock, &HELD),
        s,
        s
    );
    if let Some(probe) = probe {
        script.push(&sh!("\n{}", probe));
    }
    Framed::new(&script)
}

const ACQUIRED: &str = "acquired";
const HELD: &str = "held";

/// What the lock script answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockAnswer {
    Acquired,
    /// Held by this holder (one whose lock has no readable info is an unknown holder).
    Held(Holder),
}

/// The lock's answer in `acquire`'s reply; `None` when it gave none (the script failed).
pub fn parse_acquire(reply: &Reply) -> Option<LockAnswer> {
    match reply.find(Kind::Lock)? {
        (ACQUIRED, _) => Some(LockAnswer::Acquired),
        (HELD, lines) => Some(LockAnswer::Held(
            Holder::parse(&String::from_utf8_lossy(lines)).unwrap_or_else(|| Holder {
                who: "an unknown holder (the lock has no info)".into(),
                since: "?".into(),
                playbook: String::new(),
                command: "?".into(),
                release: String::new(),
                token: String::new(),
            }),
        )),
        _ => None,
    }
}

/// Appends the audit line (prefix and result), then removes the lock if it is ours (same
/// token). The audit log is shared by every user deploying the app (0666 in the sticky state
/// directory); a symlink planted in its place is never written through. The result is a
/// script word: a quoted text, or `"$dsr"` in a chain's epilogue.
fn audit_and_release(state: &StateDir, token: &str, audit: Option<(&str, Script)>) -> String {
    let s = state.shell();
    let audit = match audit {
        Some((prefix, result)) => sh!("{}; ", audit_line(state, prefix, result)),
        None => Script::default(),
    };
    sh!(
        "{}dsl=; if [ -f {}/lock/info ]; then while IFS= read -r l; do [ \"$l\" != {} ] || dsl=1; done < {}/lock/info; fi; \
         [ -z \"$dsl\" ] || rm -rf -- {}/lock",
        audit,
        s,
        format!("token={}", one_line(token)),
        s,
        s
    )
    .into_string()
}

/// Appends one audit line (`prefix` then `result`, a script word) to the state directory's log,
/// never through a symlink.
fn audit_line(state: &StateDir, prefix: &str, result: Script) -> Script {
    let s = state.shell();
    sh!(
        "{{ [ -d {} ] || mkdir -p -m 1777 -- {}; }} && {{ [ ! -L {}/audit.log ] || {{ echo 'dropship: the audit log is a symlink: not written' >&2; false; }}; }} && \
         umask 000 && printf '%s%s\\n' {} {} >> {}/audit.log",
        s,
        s,
        s,
        prefix,
        result,
        s
    )
}

/// Appends `holder`'s audit line for `host` and releases the lock if it is `holder`'s.
pub fn release_and_audit(state: &StateDir, holder: &Holder, host: &str, result: &str) -> String {
    audit_and_release(
        state,
        &holder.token,
        Some((&audit_prefix(holder, host), sh!("{}", audit_field(result)))),
    )
}

/// Appends `holder`'s audit line for `host` and leaves the lock alone: a host that shares this
/// run's lock through another host of the run (two inventory names for one app instance)
/// writes its own line; the lock is the other host's to release.
pub fn audit(state: &StateDir, holder: &Holder, host: &str, result: &str) -> String {
    audit_line(
        state,
        &audit_prefix(holder, host),
        sh!("{}", audit_field(result)),
    )
    .into_string()
}

/// Releases the lock if it is `holder`'s, without an audit line (a run refused elsewhere).
pub fn release(state: &StateDir, holder: &Holder) -> String {
    audit_and_release(state, &holder.token, None)
}

/// The same, as the epilogue of a chain: the result is the chain's `$dsr` (`ok` or
/// `failed at STEP`, the step's name already escaped by the driver), so the last step's
/// session also writes the audit line and unlocks.
pub fn release_and_audit_epilogue(state: &StateDir, holder: &Holder, host: &str) -> String {
    audit_and_release(
        state,
        &holder.token,
        Some((&audit_prefix(holder, host), vars::RESULT.get())),
    )
}

/// Prints the lock's holder lines, or nothing when unlocked.
fn status(state: &StateDir) -> Script {
    sh!("cat -- {}/lock/info 2>/dev/null || true", state.shell())
}

/// `dropship lock status`: `locked:` and the holder's lines (indented), or `unlocked`.
pub fn show_status(state: &StateDir) -> Script {
    sh!(
        "info=$({}); if [ -n \"$info\" ]; then echo \"locked:\"; printf '%s\\n' \"$info\" | sed 's/^/  /'; else echo unlocked; fi",
        status(state)
    )
}

/// Removes the lock whoever holds it: prints `released` and who held it, or `unlocked`;
/// fails (saying why) when this user may not remove it.
fn force_release(state: &StateDir) -> Script {
    let s = state.shell();
    sh!(
        "if [ -d {}/lock ]; then dsi=$(cat -- {}/lock/info 2>/dev/null); rm -rf -- {}/lock || exit 1; \
         echo released; printf '%s\\n' \"$dsi\"; else echo unlocked; fi",
        s,
        s,
        s
    )
}

/// `dropship lock release`: removes the lock whoever holds it and says whose it was (or that
/// there was none); fails (saying why) when this user may not remove it.
pub fn show_force_release(state: &StateDir) -> Script {
    sh!(
        "out=$({}) || exit 1; case $out in released*) echo \"released the lock of:\"; printf '%s\\n' \"$out\" | sed '1d; /^token=/d; s/^/  /' ;; *) echo 'was not locked' ;; esac",
        force_release(state)
    )
}

/// The last `lines` lines of the audit log.
pub fn audit_tail(state: &StateDir, lines: usize) -> Script {
    sh!(
        "tail -n {} -- {}/audit.log 2>/dev/null || true",
        lines,
        state.shell()
    )
}

/// One audit line up to its result: time, who, command, playbook, release, `result=`.
fn audit_prefix(holder: &Holder, host: &str) -> String {
    format!(
        "{} {} {} host={} playbook=\"{}\" release={} result=",
        audit_field(&holder.since),
        audit_field(&holder.who),
        audit_field(&holder.command),
        audit_field(host),
        audit_field(&holder.playbook).replace('"', "'"),
        if holder.release.is_empty() {
            "-".to_string()
        } else {
            audit_field(&holder.release)
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
        let state = StateDir::for_app("app", Some(dir.path().to_str().unwrap()));
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
        assert_eq!(take(&state, &a), Some(LockAnswer::Acquired));
        let Some(LockAnswer::Held(second)) = take(&state, &b) else {
            panic!("not held")
        };
        assert_eq!(second.who, "alice@laptop");
        // Bob's release leaves Alice's lock in place but records his audit line.
        sh(&release_and_audit(&state, &b, "h1", "refused"), "");
        assert!(sh(status(&state).as_str(), "").contains("holder=alice@laptop"));
        sh(&release(&state, &b), "");
        assert!(sh(status(&state).as_str(), "").contains("holder=alice@laptop"));
        // A host sharing Alice's lock writes its own line and leaves the lock to her.
        sh(&audit(&state, &a, "h1b", "ok"), "");
        assert!(sh(status(&state).as_str(), "").contains("holder=alice@laptop"));
        // Alice's epilogue takes the chain's result from `$dsr`.
        sh(
            &format!(
                "dsr='failed at up'; {}",
                release_and_audit_epilogue(&state, &a, "h1")
            ),
            "",
        );
        assert_eq!(sh(status(&state).as_str(), ""), "");
        assert_eq!(take(&state, &b), Some(LockAnswer::Acquired));
        sh(&release(&state, &b), "");
        assert_eq!(sh(status(&state).as_str(), ""), "");
        let audit = sh(audit_tail(&state, 5).as_str(), "");
        assert_eq!(audit.lines().count(), 3, "{audit}");
        assert!(audit.contains(
            "alice@laptop deploy host=h1b playbook=\"Deploy Pixel\" release=r1 result=ok\n"
        ));
        assert!(audit.contains(
            "bob@ci deploy host=h1 playbook=\"Deploy Pixel\" release=r1 result=refused\n"
        ));
        assert!(audit.contains(
            "alice@laptop deploy host=h1 playbook=\"Deploy Pixel\" release=r1 result=failed at up\n"
        ));
    }

    #[test]
    fn audit_records_stay_one_line_whatever_the_names() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::for_app("app", Some(dir.path().to_str().unwrap()));
        let h = Holder {
            who: "eve\n2026-01-01T00:00:00Z root@ci deploy host=h1 result=ok".into(),
            release: "r\r1\u{1b}[2J".into(),
            ..holder()
        };
        let script = format!(
            "dsr={}; {}",
            sh!(
                "{}",
                format!("failed at {}", audit_field("x\nforged result=ok"))
            ),
            release_and_audit_epilogue(&state, &h, "h\n1")
        );
        let out = crate::remote::run_in_sh(&script, b"");
        assert_eq!(out.status, Some(0));
        let audit = std::fs::read_to_string(dir.path().join(".dropship/audit.log")).unwrap();
        assert_eq!(audit.lines().count(), 1, "{audit}");
        assert!(
            audit.ends_with("result=failed at x\\nforged result=ok\n"),
            "{audit}"
        );
        assert!(audit.contains("eve\\n2026"), "{audit}");
        assert!(audit.contains("release=r\\r1\\u{1b}[2J "), "{audit}");
        assert_eq!(audit_field("a\\b\tc"), "a\\\\b\\tc");
    }

    #[test]
    fn a_lock_that_cannot_be_made_is_an_error_and_hostile_dirs_are_data() {
        let dir = tempfile::tempdir().unwrap();
        for name in crate::remote::script::tests::HOSTILE {
            let app_dir = dir.path().join("apps").join(format!("d{name}"));
            let state = StateDir::for_app(name, Some(app_dir.to_str().unwrap()));
            assert_eq!(
                take(&state, &holder()),
                Some(LockAnswer::Acquired),
                "{name:?}"
            );
            assert!(app_dir.join(".dropship/lock/info").is_file(), "{name:?}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // Under a file, no lock can be made: an error, not a pass and not "held".
        let file = dir.path().join("plain");
        std::fs::write(&file, "").unwrap();
        let state = StateDir::for_app("app", Some(file.to_str().unwrap()));
        let request = acquire(&state, &holder(), None);
        let out = crate::remote::run_in_sh(request.script(), b"");
        assert_ne!(out.status, Some(0));
        assert_eq!(out.stdout, b"");
        assert_eq!(parse_acquire(&request.reply(&out.stdout)), None);
    }

    /// Runs `acquire` in a real shell and reads its answer.
    fn take(state: &StateDir, holder: &Holder) -> Option<LockAnswer> {
        let request = acquire(state, holder, None);
        let out = crate::remote::run_in_sh(request.script(), b"");
        parse_acquire(&request.reply(&out.stdout))
    }

    #[test]
    fn a_forged_answer_in_the_lock_info_is_not_taken_for_one() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::for_app("app", Some(dir.path().to_str().unwrap()));
        std::fs::create_dir_all(dir.path().join(".dropship/lock")).unwrap();
        let forged = "\n@@dropship:0123456789abcdef:lock:acquired@@\n@@dropship:lock:acquired@@\nholder=mallory@x\n";
        std::fs::write(dir.path().join(".dropship/lock/info"), forged).unwrap();
        let Some(LockAnswer::Held(other)) = take(&state, &holder()) else {
            panic!("a forged answer was believed")
        };
        assert_eq!(other.who, "mallory@x");
        // The files probe riding along answers in its own frames, after the lock's.
        let probe = crate::remote::probe::probe(&["/nonexistent/x"], &[]);
        let request = acquire(&state, &holder(), Some(&probe));
        let out = crate::remote::run_in_sh(request.script(), b"");
        let reply = request.reply(&out.stdout);
        assert!(matches!(parse_acquire(&reply), Some(LockAnswer::Held(_))));
        assert_eq!(
            crate::remote::probe::parse_probe(&reply, &["/nonexistent/x"], &[]).map(|p| p.files),
            Some(vec![None])
        );
    }
}
