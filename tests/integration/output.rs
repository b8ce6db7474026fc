//! What reaches the operator from a host's output, against real sshd hosts: secrets masked
//! over the raw bytes before anything reshapes them, each step's output bounded, and control
//! characters shown instead of acted on.

use std::path::Path;
use std::process::Command;

use crate::harness::{
    BIN, Fleet, Run, command, dropship_cmd, http_server, start_fleet, toml_str, write,
};

/// A secret with runs of spaces and tabs and a line break, made of distinctive parts.
const SECRET: &str = "pw-alpha7  pw-bravo8\t\tpw-charlie9\npw-delta0";
const SECRET_PARTS: [&str; 4] = ["pw-alpha7", "pw-bravo8", "pw-charlie9", "pw-delta0"];

fn secret_body(path: &str) -> String {
    match path {
        // Past the 200 characters a failure excerpt keeps: the cut lands inside the secret.
        "/h1" => format!("{}{SECRET} tail", "x".repeat(190)),
        // The secret's line break arrives as CRLF.
        "/h2" => format!("<p>{}</p>", SECRET.replace('\n', "\r\n")),
        // Runs of whitespace around it, which an excerpt collapses.
        _ => format!("a  \t\t  b\n\n{SECRET}\n\n   c"),
    }
}

fn deploy(fleet: &Fleet, playbook: &str, json: &Path) -> Run {
    let pb = fleet.write("output.toml", playbook);
    fleet.deploy(&pb, &["--json", json.to_str().unwrap()])
}

#[test]
fn a_secret_in_a_health_body_is_masked_however_the_excerpt_reshapes_it() {
    let fleet = start_fleet(3);
    let (port, _) = http_server(|_, path| (200, secret_body(path)));
    let secret_file = write(fleet.dir.path(), "token", &format!("{SECRET}\n"));
    let json = fleet.dir.path().join("report.json");
    let run = deploy(
        &fleet,
        &format!(
            "name = \"leak\"\napp = \"leak\"\nhosts = \"web\"\n\n[secrets]\ntoken = {{ file = {} }}\n\n\
             [[steps]]\nname = \"healthy\"\n\
             health = {{ url = \"http://127.0.0.1:{port}/{{{{ host.name }}}}\", contains = \"never there\", timeout = \"1s\", interval = \"500ms\" }}\n",
            toml_str(secret_file.to_str().unwrap())
        ),
        &json,
    );
    run.assert_code(1);
    let report = std::fs::read_to_string(&json).unwrap();
    for host in ["h1", "h2", "h3"] {
        assert!(
            run.host_text(host).contains("lacks `never there`"),
            "{}",
            run.all()
        );
    }
    assert!(run.all().contains("********"), "{}", run.all());
    for part in SECRET_PARTS {
        assert!(!run.all().contains(part), "`{part}` shown:\n{}", run.all());
        assert!(!report.contains(part), "`{part}` in --json:\n{report}");
    }
    // Not only whole parts: not even the start of the secret cut at 200 characters.
    assert!(!run.all().contains("pw-a"), "{}", run.all());
    assert!(!report.contains("pw-a"), "{report}");
}

#[test]
fn a_secret_echoed_by_a_command_is_masked_in_output_and_errors() {
    let fleet = start_fleet(1);
    let secret_file = write(fleet.dir.path(), "token", &format!("{SECRET}\n"));
    let template = write(fleet.dir.path(), "token.j2", "{{ secrets.token }}\n");
    let json = fleet.dir.path().join("report.json");
    // The secret reaches the host in a file; the commands print it with CRLF line ends,
    // after a long line, and on stderr of a failing command.
    let run = deploy(
        &fleet,
        &format!(
            "name = \"leak\"\napp = \"leak\"\nhosts = \"web\"\n\n[secrets]\ntoken = {{ file = {} }}\n\n\
             [[steps]]\nname = \"secret file\"\n\
             template = {{ src = {}, dest = \"{{{{ app_dir }}}}/token\", mode = \"0600\" }}\n\n\
             [[steps]]\nname = \"echo it\"\nrun = \"head -c 70000 /dev/zero | tr '\\\\0' y; sed 's/$/\\\\r/' token; cat token; seq 49\"\ndir = \"{{{{ app_dir }}}}\"\n\n\
             [[steps]]\nname = \"fail with it\"\nrun = \"printf 'error:  '; cat token >&2; seq 7 >&2; exit 3\"\ndir = \"{{{{ app_dir }}}}\"\n",
            toml_str(secret_file.to_str().unwrap()),
            toml_str(template.to_str().unwrap())
        ),
        &json,
    );
    run.assert_code(1);
    run.assert_outcome("h1", "echo it", "changed");
    run.assert_outcome("h1", "fail with it", "FAILED");
    let report = std::fs::read_to_string(&json).unwrap();
    for part in SECRET_PARTS {
        assert!(!run.all().contains(part), "`{part}` shown:\n{}", run.all());
        assert!(!report.contains(part), "`{part}` in --json:\n{report}");
    }
    assert!(run.host_text("h1").contains("********"), "{}", run.all());
}

#[test]
fn escape_sequences_from_a_host_are_shown_not_sent_to_the_terminal() {
    let fleet = start_fleet(1);
    let json = fleet.dir.path().join("report.json");
    let run = deploy(
        &fleet,
        r#"name = "tty"
app = "tty"
hosts = "web"

[[steps]]
name = "hostile output"
run = '''printf '\033]0;pwned\007\033[2Jcleared\roverwritten\010\302\233X\342\200\256txt.exe\nok\r\n'; true'''

[[steps]]
name = "hostile failure"
run = '''printf '\033[31mred\033[0m\a\n' >&2; exit 1'''
"#,
        &json,
    );
    run.assert_code(1);
    let all = run.all();
    for byte in ['\x1b', '\x07', '\x08', '\u{9b}', '\u{202e}'] {
        assert!(
            !all.contains(byte),
            "{byte:?} reached the terminal:\n{all:?}"
        );
    }
    assert!(!all.replace("\r\n", "\n").contains('\r'), "{all:?}");
    let text = run.host_text("h1");
    assert!(
        text.contains(r"\x1b]0;pwned\x07\x1b[2Jcleared\x0doverwritten\x08\u{9b}X\u{202e}txt.exe"),
        "{text}"
    );
    assert!(text.contains(r"\x1b[31mred\x1b[0m\x07"), "{text}");
    // JSON keeps the text faithful: control characters escaped the JSON way.
    let report = std::fs::read_to_string(&json).unwrap();
    assert!(
        report.contains(r"\u001b]0;pwned\u0007\u001b[2J"),
        "{report}"
    );
    assert!(!report.contains('\x1b'), "{report}");
}

/// `dropship ARGS` under GNU time: the run and dropship's peak RSS in KiB.
pub(crate) fn dropship_measured(args: &[&str], dir: &Path) -> (Run, u64) {
    let rss_file = dir.join("rss");
    let plain = command(args, None);
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(BIN)
        .args(args);
    for (key, value) in plain.get_envs() {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    cmd.stdin(std::process::Stdio::null());
    let run = dropship_cmd(cmd);
    let rss = std::fs::read_to_string(&rss_file).unwrap_or_default();
    let kib = rss
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no RSS from GNU time: {rss:?}\n{}", run.all()));
    (run, kib)
}

#[test]
fn a_step_printing_300_mb_on_two_hosts_keeps_dropship_small() {
    let fleet = start_fleet(2);
    let inventory = fleet.write_inventory("");
    let pb = write(
        fleet.dir.path(),
        "flood.toml",
        r#"name = "flood"
app = "flood"
hosts = "web"

[[steps]]
name = "flood"
run = "echo first-line; head -c 300000000 /dev/zero | tr '\\0' x; echo; echo last-line; head -c 300000000 /dev/zero | tr '\\0' e >&2"

[[steps]]
name = "after"
run = "echo still-running"
"#,
    );
    let json = fleet.dir.path().join("report.json");
    let (run, rss_kib) = dropship_measured(
        &[
            "deploy",
            "-i",
            inventory.to_str().unwrap(),
            pb.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ],
        fleet.dir.path(),
    );
    eprintln!("peak RSS of dropship with 2 x 600 MB of output: {rss_kib} KiB");
    run.assert_code(0);
    for host in ["h1", "h2"] {
        let text = run.host_text(host);
        assert!(
            text.contains("first-line"),
            "{}",
            &text[..text.len().min(2000)]
        );
        assert!(
            text.contains("last-line"),
            "{}",
            &text[text.len().saturating_sub(2000)..]
        );
        assert!(
            text.contains("299.9 MB dropped"),
            "no dropped count for {host}"
        );
        assert!(
            text.contains("still-running"),
            "the next step ran on {host}"
        );
        assert!(
            text.len() < 1024 * 1024,
            "{host}: {} bytes shown",
            text.len()
        );
    }
    assert!(
        std::fs::read_to_string(&json)
            .unwrap()
            .contains("299.9 MB dropped"),
        "the JSON report says what was dropped"
    );
    assert!(
        rss_kib < 150 * 1024,
        "dropship peaked at {rss_kib} KiB (limit 150 MiB)"
    );
}

/// A step's line is printed when that step ends, not when the host's whole session (one
/// driver script for all three steps) ends: the first step's line comes while the second
/// still sleeps.
#[test]
fn each_step_line_appears_when_that_step_ends() {
    use std::io::{BufRead, BufReader};
    use std::time::Instant;

    let fleet = start_fleet(2);
    let pb = fleet.write_playbook(
        "live.toml",
        "live",
        "live",
        "[[steps]]\nname = \"first\"\nrun = \"echo one\"\n\n\
         [[steps]]\nname = \"slow\"\nrun = \"sleep 3\"\n\n\
         [[steps]]\nname = \"last\"\nrun = \"true\"\n",
    );
    let inventory = fleet.write_inventory("");
    let started = Instant::now();
    let mut child = crate::harness::spawn_playbook("deploy", &inventory, &pb);
    let stdout = child.stdout.take().unwrap();
    let lines: Vec<(f64, String)> = BufReader::new(stdout)
        .lines()
        .map(|l| (started.elapsed().as_secs_f64(), l.unwrap()))
        .collect();
    let ended = started.elapsed().as_secs_f64();
    let status = child.wait().unwrap();
    let text: String = lines
        .iter()
        .map(|(t, l)| format!("{t:6.2} {l}\n"))
        .collect();
    assert!(status.success(), "{text}");
    for host in ["h1", "h2"] {
        let at = |step: &str| {
            lines
                .iter()
                .find(|(_, l)| l.starts_with(&format!("[{host}] changed  {step}")))
                .map(|(t, _)| *t)
                .unwrap_or_else(|| panic!("no line for {host}'s {step}:\n{text}"))
        };
        let (first, slow, last) = (at("first"), at("slow"), at("last"));
        assert!(
            slow - first >= 2.5,
            "{host}: `first` printed {:.2}s before `slow`, not when it ended:\n{text}",
            slow - first
        );
        assert!(first <= slow && slow <= last && last <= ended, "{text}");
    }
}
