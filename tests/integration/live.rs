//! Watching a run as it happens, against real sshd hosts: the terminal view under a real
//! pseudo-terminal (tmux renders the screen), `--plain` there, `-v` streaming each command's
//! output masked, and the plain lines as a snapshot.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{BIN, Fleet, start_fleet, toml_str, write};

/// A tmux server of the test's own (its socket in a temp dir) with one window running a
/// shell command; killed when dropped.
struct Tmux {
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmux {
    /// Runs `command` in a 160x40 terminal; the window stays after it ended.
    fn start(command: &str) -> Tmux {
        let dir = tempfile::tempdir().unwrap();
        let tmux = Tmux {
            socket: dir.path().join("tmux.sock"),
            _dir: dir,
        };
        let shell = format!("{command}; echo \"[exit $?]\"; sleep 600");
        let status = tmux
            .cmd()
            .args(["new-session", "-d", "-x", "160", "-y", "40", &shell])
            .status()
            .expect("tmux (scripts/install-deps.sh installs it)");
        assert!(status.success());
        tmux
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-S").arg(&self.socket).args(["-f", "/dev/null"]);
        cmd
    }

    /// What the terminal shows now (`history`: with what scrolled away).
    fn screen(&self, history: bool) -> String {
        let mut cmd = self.cmd();
        cmd.args(["capture-pane", "-p"]);
        if history {
            cmd.args(["-S", "-"]);
        }
        String::from_utf8_lossy(&cmd.output().unwrap().stdout).into_owned()
    }

    fn title(&self) -> String {
        let out = self
            .cmd()
            .args(["display-message", "-p", "#{pane_title}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

/// `dropship ARGS` as a shell command line in the terminal: nothing of the developer's SSH
/// agent, log or colour settings.
fn shell_line(args: &[&str]) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let words: Vec<String> = std::iter::once(BIN)
        .chain(args.iter().copied())
        .map(quote)
        .collect();
    format!(
        "env -u SSH_AUTH_SOCK -u DROPSHIP_LOG -u NO_COLOR {}",
        words.join(" ")
    )
}

/// Three steps in one driver script: the first prints escape sequences (clear the screen,
/// set the window title), the second sleeps 3 s.
fn slow_playbook(fleet: &Fleet) -> std::path::PathBuf {
    fleet.write_playbook(
        "live.toml",
        "live",
        "live",
        r#"[[steps]]
name = "first"
run = "printf 'one \\033[2J\\033]0;pwned\\007\\n'"

[[steps]]
name = "slow"
run = "sleep 3"

[[steps]]
name = "last"
run = "true"
"#,
    )
}

/// The bar line of `host` on `screen` naming `step`: `⠙ [h1]   2s slow` (step lines above
/// the bars start with `[host]`).
fn bar_line<'s>(screen: &'s str, host: &str, step: &str) -> Option<&'s str> {
    screen.lines().find(|l| {
        let l = l.trim_end();
        !l.starts_with('[') && l.contains(&format!("[{host}]")) && l.ends_with(&format!(" {step}"))
    })
}

#[test]
fn the_terminal_shows_each_hosts_running_step_and_ends_with_the_table() {
    let fleet = start_fleet(2);
    let pb = slow_playbook(&fleet);
    let inventory = fleet.write_inventory("");
    let args = [
        "deploy",
        "-i",
        inventory.to_str().unwrap(),
        pb.to_str().unwrap(),
    ];
    let tmux = Tmux::start(&shell_line(&args));
    let started = Instant::now();
    let mut first_ended = None;
    let mut slow_shown = None;
    let mut ticking = false;
    let mut screens = Vec::new();
    loop {
        let screen = tmux.screen(false);
        let now = started.elapsed().as_secs_f64();
        if first_ended.is_none() && screen.contains("[h1] changed  first") {
            first_ended = Some(now);
        }
        let slow_ended = screen.contains("[h1] changed  slow");
        if let Some(line) = bar_line(&screen, "h1", "slow")
            && !slow_ended
        {
            slow_shown.get_or_insert(now);
            // The elapsed time moves on while the step runs: the spinner ticks on its own.
            ticking |= line.contains(" 2s slow");
        }
        screens.push(format!("--- {now:.2}s\n{screen}"));
        if screen.contains("[exit ") {
            break;
        }
        assert!(now < 60.0, "no end in sight:\n{}", screens.join(""));
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = screens.join("");
    let first_ended = first_ended.unwrap_or_else(|| panic!("no line for `first`:\n{log}"));
    let slow_shown = slow_shown.unwrap_or_else(|| panic!("h1's line never named `slow`:\n{log}"));
    assert!(
        slow_shown - first_ended <= 1.0,
        "h1's line named `slow` {:.2}s after `first` ended:\n{log}",
        slow_shown - first_ended
    );
    assert!(
        ticking,
        "h1's line never showed `slow` running for 2s:\n{log}"
    );

    let all = tmux.screen(true);
    assert!(all.contains("[exit 0]"), "{all}");
    for host in ["h1", "h2"] {
        for step in ["first", "slow", "last"] {
            assert!(all.contains(&format!("[{host}] changed  {step}")), "{all}");
        }
        // The host's line collapsed to how it ended.
        assert!(
            all.lines()
                .any(|l| l.trim_end() == format!("  [{host}] ok")),
            "{all}"
        );
    }
    let table = all
        .find("HOST  CHANGED")
        .unwrap_or_else(|| panic!("no table:\n{all}"));
    assert!(all[table..].contains("2 host(s): 2 ok, 0 failed"), "{all}");
    // The host's escape sequences are shown, not acted on: the screen was not cleared (the
    // step lines are all there) and the window title is not the host's.
    assert!(all.contains(r"one \x1b[2J\x1b]0;pwned\x07"), "{all}");
    assert_ne!(tmux.title(), "pwned");
}

/// `script` gives the run a pseudo-terminal and keeps the raw bytes it wrote.
fn under_script(args: &[&str], dir: &Path) -> String {
    let log = dir.join("typescript");
    let status = Command::new("script")
        .args(["-q", "-e", "-c", &shell_line(args)])
        .arg(&log)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("script (util-linux)");
    assert!(
        status.success(),
        "{}",
        String::from_utf8_lossy(&std::fs::read(&log).unwrap())
    );
    let raw = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
    // `script`'s own first and last lines.
    raw.lines()
        .filter(|l| !l.starts_with("Script started") && !l.starts_with("Script done"))
        .map(|l| format!("{}\n", l.trim_end_matches('\r')))
        .collect()
}

#[test]
fn plain_on_a_terminal_writes_plain_lines_and_no_escape_sequence() {
    let fleet = start_fleet(1);
    let pb = fleet.write_playbook(
        "plain.toml",
        "plain",
        "plain",
        "[[steps]]\nname = \"first\"\nrun = \"echo one\"\n\n[[steps]]\nname = \"second\"\nrun = \"true\"\n",
    );
    let inventory = fleet.write_inventory("");
    let (inv, pb) = (inventory.to_str().unwrap(), pb.to_str().unwrap());
    let plain = under_script(&["deploy", "--plain", "-i", inv, pb], fleet.dir.path());
    assert!(!plain.contains('\x1b'), "{plain:?}");
    assert!(
        plain.starts_with("[h1] changed  first\n[h1]     one\n[h1] changed  second\n"),
        "{plain}"
    );
    assert!(plain.contains("1 host(s): 1 ok, 0 failed"), "{plain}");
    // Without it the same terminal gets the live view (it moves the cursor).
    let live = under_script(&["deploy", "-i", inv, pb], fleet.dir.path());
    assert!(live.contains('\x1b'), "{live:?}");
    assert!(live.contains("1 host(s): 1 ok, 0 failed"), "{live}");
}

#[test]
fn verbose_streams_each_line_as_it_comes_with_a_split_secret_masked() {
    let fleet = start_fleet(1);
    let secret_file = write(fleet.dir.path(), "token", "hunter2-live\n");
    let pb = fleet.write_playbook(
        "verbose.toml",
        "verbose",
        "verbose",
        &format!(
            "[secrets]\ntoken = {{ file = {} }}\n\n\
             [[steps]]\nname = \"talk\"\n\
             run = \"echo line-one; echo warn-one >&2; sleep 2; printf 'pw: hunter'; sleep 0.5; printf '2-live\\\\n'; printf '\\\\033[2Jdone'\"\n",
            toml_str(secret_file.to_str().unwrap())
        ),
    );
    let inventory = fleet.write_inventory("");
    let started = Instant::now();
    let mut child = crate::harness::spawn(
        &[
            "deploy",
            "-v",
            "-i",
            inventory.to_str().unwrap(),
            pb.to_str().unwrap(),
        ],
        None,
    );
    let stdout = child.stdout.take().unwrap();
    let lines: Vec<(f64, String)> = BufReader::new(stdout)
        .lines()
        .map(|l| (started.elapsed().as_secs_f64(), l.unwrap()))
        .collect();
    assert!(child.wait().unwrap().success());
    let text: String = lines
        .iter()
        .map(|(t, l)| format!("{t:6.2} {l}\n"))
        .collect();
    let at = |line: &str| {
        lines
            .iter()
            .find(|(_, l)| l == line)
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("no line `{line}`:\n{text}"))
    };
    let ended = at("[h1] changed  talk");
    assert!(ended - at("[h1] line-one") >= 2.0, "not streamed:\n{text}");
    assert!(
        ended - at("[h1] warn-one") >= 2.0,
        "stderr not streamed:\n{text}"
    );
    at("[h1] pw: ********");
    // A last line without newline comes at the step's end, its escape shown.
    at(r"[h1] \x1b[2Jdone");
    assert!(!text.contains("hunter"), "{text}");
}

/// The plain lines of a small deploy (one host, so their order is fixed), times normalised.
#[test]
fn plain_lines_of_a_small_deploy() {
    let fleet = start_fleet(1);
    let pb = fleet.write_playbook(
        "small.toml",
        "small",
        "small",
        r#"[[steps]]
name = "say hello"
run = "echo hello; echo world"

[[steps]]
name = "quiet"
run = "true"

[[steps]]
name = "break"
run = "echo oops >&2; exit 3"

[[steps]]
name = "never"
run = "true"
"#,
    );
    let inventory = fleet.write_inventory("");
    let run = crate::harness::dropship(
        &[
            "deploy",
            "-i",
            inventory.to_str().unwrap(),
            pb.to_str().unwrap(),
        ],
        None,
    );
    run.assert_code(1);
    insta::assert_snapshot!(normalise_seconds(&run.stdout), @r"
    [h1] changed  say hello
    [h1]     hello
    [h1]     world
    [h1] changed  quiet
    [h1] FAILED   break:
    [h1]     exit status 3
    [h1]     oops
    [h1] skipped  never (after a failed step)

    HOST  CHANGED  OK  FAILED  SKIPPED  TIME  RESULT
    h1    2        0   1       1        T.Ts  failed at `break`
    1 host(s): 0 ok, 1 failed in T.Ts
    ");
}

/// Each `1.2s` word as `T.Ts`: how long things took is never the same twice.
fn normalise_seconds(text: &str) -> String {
    let is_seconds = |word: &str| {
        let Some((whole, tenth)) = word.strip_suffix('s').and_then(|n| n.split_once('.')) else {
            return false;
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        digits(whole) && digits(tenth) && tenth.len() == 1
    };
    text.split_inclusive(char::is_whitespace)
        .map(|word| {
            let bare = word.trim_end();
            if is_seconds(bare) {
                format!("T.Ts{}", &word[bare.len()..])
            } else {
                word.to_string()
            }
        })
        .collect()
}

/// `-v` with a host printing 300 MB in one step: a bounded share of it is shown (in lines of
/// at most 4 kB), the rest counted, and dropship's memory stays small.
#[test]
fn verbose_output_of_a_flood_is_bounded() {
    let fleet = start_fleet(1);
    let inventory = fleet.write_inventory("");
    let pb = fleet.write_playbook(
        "flood.toml",
        "flood",
        "flood",
        r#"[[steps]]
name = "flood"
run = "echo first-line; head -c 300000000 /dev/zero | tr '\\0' x; echo"

[[steps]]
name = "after"
run = "echo still-running"
"#,
    );
    let (run, rss_kib) = crate::output::dropship_measured(
        &[
            "deploy",
            "-v",
            "-i",
            inventory.to_str().unwrap(),
            pb.to_str().unwrap(),
        ],
        fleet.dir.path(),
    );
    eprintln!("peak RSS of dropship -v with 300 MB of output: {rss_kib} KiB");
    run.assert_code(0);
    let out = &run.stdout;
    let tail = &out[out.len().saturating_sub(3000)..];
    assert!(out.starts_with("[h1] first-line\n"), "{}", &out[..200]);
    assert!(
        out.contains("\n[h1] … 299.7 MB more on stdout not shown"),
        "{tail}"
    );
    assert!(out.contains("\n[h1] still-running\n"), "{tail}");
    assert!(out.len() < 1024 * 1024, "{} bytes shown", out.len());
    // Streamed lines (`[h1] x…`; the step's own lines are `[h1]     …`) come in 4 kB pieces.
    let streamed = out.lines().filter(|l| l.starts_with("[h1] x"));
    assert_eq!(streamed.clone().count(), 64, "256 kB in 4 kB lines");
    assert!(
        streamed.clone().all(|l| l.len() <= 5 + 4096),
        "a line past 4 kB"
    );
    assert!(rss_kib < 150 * 1024, "dropship peaked at {rss_kib} KiB");
}
