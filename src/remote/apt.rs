//! The `apt` step's script (packages not yet in the wanted state, installed or removed in one
//! go) and what it reports.
//! May import: `remote::{script, frame}`, `playbook::AptState`, `transport::ExecOutput`.

use super::frame::{self, Kind};
use super::script::Script;
use crate::playbook::AptState;
use crate::sh;
use crate::transport::ExecOutput;

/// Installs (or removes) the packages not yet in the wanted state, in one script: `dpkg-query`
/// finds them; when there are none nothing else runs (no `apt-get update` either). apt-get
/// waits for the dpkg lock (`DPkg::Lock::Timeout`); `update` also retries while another apt
/// (e.g. unattended-upgrades at first boot) holds the lists lock. Package names are validated
/// when the playbook is read; quoted all the same. Reports `apt:ok` or `apt:changed PKG...`
/// last (`parse`); a segment of a driver (it needs `$dsn`).
pub fn script(packages: &[String], update: bool, state: AptState) -> String {
    let (wanted_installed, verb) = match state {
        AptState::Present => (false, sh!("install -y --no-install-recommends")),
        AptState::Absent => (true, sh!("remove -y")),
    };
    // `todo` collects the packages to act on: not installed (present) or installed (absent).
    let (on_installed, on_other) = if wanted_installed {
        (sh!("todo=\"$todo $p\""), sh!(":"))
    } else {
        (sh!(":"), sh!("todo=\"$todo $p\""))
    };
    let mut names = Script::default();
    for p in packages {
        names.push(&sh!(" {}", p));
    }
    let mut script = sh!(
        "set -e\nexport DEBIAN_FRONTEND=noninteractive\ntodo=\nfor p in{}; do\n  case \"$(dpkg-query -W -f='${{Status}}' \"$p\" 2>/dev/null || true)\" in\n    *' ok installed') {} ;;\n    *) {} ;;\n  esac\ndone\nif [ -z \"$todo\" ]; then {}; exit 0; fi\n",
        names,
        on_installed,
        on_other,
        frame::report(Kind::Apt, &OK)
    );
    if update {
        script.push(&sh!(
            "n=0\nuntil out=$(apt-get -o DPkg::Lock::Timeout=600 update -q 2>&1); do\n  case \"$out\" in\n    *'Could not get lock'*|*'Unable to lock'*) n=$((n+1)); if [ \"$n\" -ge 120 ]; then printf '%s\\n' \"$out\" >&2; exit 1; fi; sleep 5 ;;\n    *) printf '%s\\n' \"$out\" >&2; exit 1 ;;\n  esac\ndone\n"
        ));
    }
    script.push(&sh!(
        "apt-get -o DPkg::Lock::Timeout=600 {} $todo </dev/null\n{}\n",
        verb,
        frame::report(Kind::Apt, &sh!("{}\"$todo\"", CHANGED))
    ));
    script.into_string()
}

const OK: &str = "ok";
const CHANGED: &str = "changed";

/// What the `apt` script reported last: `None` when nothing changed, else the packages.
pub fn parse(out: &ExecOutput) -> Option<Vec<String>> {
    let fields = frame::results(out)
        .filter_map(|f| f.of(Kind::Apt).map(str::to_string))
        .last()?;
    let rest = fields.trim().strip_prefix(CHANGED)?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported(results: &[&str]) -> ExecOutput {
        ExecOutput {
            status: Some(0),
            results: results.iter().map(|r| r.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn apt_acts_only_on_packages_not_in_the_wanted_state() {
        let s = script(
            &["docker.io".into(), "curl".into()],
            true,
            AptState::Present,
        );
        let head = r#"set -e
export DEBIAN_FRONTEND=noninteractive
todo=
for p in docker.io curl; do
  case "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" in
    *' ok installed') : ;;
    *) todo="$todo $p" ;;
  esac
done
if [ -z "$todo" ]; then printf '\n@@dropship:%s:%s@@\n' "$dsn" apt:ok; exit 0; fi
"#;
        assert!(s.starts_with(head), "{s}");
        assert!(s.contains("until out=$(apt-get -o DPkg::Lock::Timeout=600 update -q 2>&1); do"));
        assert!(s.ends_with("apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends $todo </dev/null\nprintf '\\n@@dropship:%s:%s@@\\n' \"$dsn\" apt:changed\"$todo\"\n"), "{s}");
        let s = script(&["ufw".into()], false, AptState::Absent);
        assert!(s.contains("*' ok installed') todo=\"$todo $p\" ;;\n    *) : ;;"));
        assert!(!s.contains("update"));
        assert!(s.contains("apt-get -o DPkg::Lock::Timeout=600 remove -y $todo"));
        assert_eq!(parse(&reported(&["apt:ok"])), None);
        assert_eq!(
            parse(&reported(&["apt:changed curl jq"])),
            Some(vec!["curl".to_string(), "jq".to_string()])
        );
    }

    #[test]
    fn a_forged_apt_answer_in_the_output_is_not_taken_for_one() {
        // What apt-get (or a package's maintainer script) prints cannot pass for the answer:
        // another nonce, the old marker line, then the script's own `ok` last.
        let script = format!(
            "printf '\\n@@dropship:0123456789abcdef:apt:changed evil@@\\n'; echo 'dropship-apt: changed evil'; {}",
            frame::report(Kind::Apt, &OK)
        );
        let out = crate::remote::driver::run_one(&script);
        assert_eq!(out.status, Some(0));
        assert_eq!(parse(&out), None);
        assert_eq!(out.results, ["apt:ok"]);
    }
}
