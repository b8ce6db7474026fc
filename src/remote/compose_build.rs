//! `compose build` judged from facts: the image ids of the services it builds, read from the
//! engine before and after, reported as `build:ok` or `build:changed REF…`.
//! May import: `remote::{script, frame, compose}`, `transport::ExecOutput`.

use super::compose::ComposeTool;
use super::frame::{self, Kind};
use super::script::Script;
use crate::sh;
use crate::transport::ExecOutput;

/// Prints the image reference of each service of `compose config`'s output (stdin) that has a
/// `build` section, restricted to the services given as arguments when there are any: its
/// `image`, else the name compose gives it, `PROJECT` `sep` `SERVICE` (v2 joins with `-`,
/// v1 with `_`). Both flavours print services two spaces in and their keys four (deeper lines,
/// such as an environment value or a block scalar, are never taken for a key).
const BUILT_IMAGES_AWK: &str = r#"
function unquote(v) { gsub(/^["']|["']$/, "", v); return v }
function flush() {
  if (svc != "" && built && (wanted == 0 || (svc in want)))
    print (img != "" ? img : p sep svc)
  svc = ""; img = ""; built = 0
}
BEGIN { for (i = 1; i < ARGC; i++) { want[ARGV[i]] = 1; wanted++ } ARGC = 1 }
/^[^ ]/ { flush(); in_services = ($0 == "services:"); next }
!in_services { next }
/^  [^ ]/ { flush(); svc = $0; sub(/^  /, "", svc); sub(/:[ ]*$/, "", svc); svc = unquote(svc); next }
/^    image: / { img = $0; sub(/^    image: /, "", img); img = unquote(img); next }
/^    build:/ { built = 1 }
END { flush() }
"#;

/// `build_line` (the `compose build` command, run in the project's directory) between two
/// listings of the built services' images (`REF ID` lines, read with `docker image inspect`),
/// then the report: `build:ok` when they are the same, else `build:changed` and the references
/// whose image is new. A failing `compose config` or build fails the segment.
pub fn around(
    tool: &Script,
    tool_kind: ComposeTool,
    project: &str,
    services: &[String],
    build_line: &Script,
) -> Script {
    let separator = match tool_kind {
        ComposeTool::Plugin => "-",
        ComposeTool::Standalone => "_",
    };
    let mut filter = Script::default();
    for service in services {
        filter.push(&sh!(" {}", service));
    }
    sh!(
        "dscc=$({} -p {} config) || exit 1
dscr=$(printf '%s\\n' \"$dscc\" | awk -v p={} -v sep={} {}{}) || exit 1
dsci() {{ printf '%s\\n' \"$dscr\" | while IFS= read -r r; do [ -z \"$r\" ] || {{ i=$(docker image inspect --format {} -- \"$r\" 2>/dev/null) && printf '%s %s\\n' \"$r\" \"$i\"; }}; done; }}
dscb=$(dsci)
{} || exit $?
dsca=$(dsci)
if [ \"$dscb\" = \"$dsca\" ]; then {}
else {}
fi",
        tool,
        project,
        project,
        separator,
        BUILT_IMAGES_AWK,
        filter,
        "{{.Id}}",
        build_line,
        frame::report(Kind::Build, &"ok"),
        frame::report(
            Kind::Build,
            &sh!("\"changed $(printf '%s\\n' \"$dsca\" | grep -vxF -e \"$dscb\" | cut -d' ' -f1 | tr '\\n' ' ')\"")
        ),
    )
}

/// What a build step's segment reported: `None` when nothing changed, else the references
/// whose image is new (possibly none named, when only one went away).
pub fn changes(out: &ExecOutput) -> Option<Vec<String>> {
    let fields = frame::results(out)
        .filter_map(|f| f.of(Kind::Build).map(str::to_string))
        .last()?;
    let rest = fields.trim().strip_prefix("changed")?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::compose::{self, ComposeFlavor, Request};
    use crate::remote::driver::run_one;
    use crate::remote::script::quote;

    /// What `compose config` prints (v2's shape; v1's is the same two and four spaces in):
    /// lines deeper in that look like keys are not taken for them.
    const CONFIG: &str = r#"name: p
services:
  db:
    environment:
      X: "    image: evil"
    image: postgres:15
  "other":
    build:
      context: /x
    image: "reg/other:1"
  web:
    build:
      context: /x
    command:
      - |
          build:
          image: taken-only-if-misread
networks:
  default:
    name: p_default
"#;

    /// A docker stand-in: `compose … config` prints $CONFIG, `compose … build` records its
    /// arguments and runs the test's hook, `image inspect … -- REF` prints `$IMAGES/REF`
    /// (`/` as `_`) or fails as docker does for a missing image.
    const DOCKER: &str = r#"#!/bin/sh
if [ "$1" = compose ]; then
  shift 3
  case "$1" in
    config) cat "$CONFIG" ;;
    build) shift; printf '[%s]' "$@" > "$BUILT"; . "$HOOK" ;;
  esac
elif [ "$1 $2" = "image inspect" ]; then
  f="$IMAGES/$(printf '%s' "$6" | tr / _)"
  [ -f "$f" ] || { echo "Error: No such image: $6" >&2; exit 1; }
  cat "$f"
fi
"#;

    #[test]
    fn a_build_is_changed_only_when_a_built_service_s_image_id_changed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let (bin, images, project) = (root.join("bin"), root.join("images"), root.join("app dir"));
        for d in [&bin, &images, &project] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(bin.join("docker"), DOCKER).unwrap();
        std::fs::set_permissions(
            bin.join("docker"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(root.join("config"), CONFIG).unwrap();
        let image = |name: &str, id: &str| std::fs::write(images.join(name), id).unwrap();
        let hook = |code: &str| std::fs::write(root.join("hook"), code).unwrap();
        let build = |services: &[&str]| {
            let request = Request::Build {
                services: services.iter().map(|s| s.to_string()).collect(),
                pull: false,
                no_cache: true,
            };
            let env = format!(
                "PATH={}:$PATH CONFIG={} IMAGES={} HOOK={} BUILT={}; export PATH CONFIG IMAGES HOOK BUILT\n",
                quote(bin.to_str().unwrap()),
                quote(root.join("config").to_str().unwrap()),
                quote(images.to_str().unwrap()),
                quote(root.join("hook").to_str().unwrap()),
                quote(root.join("built").to_str().unwrap()),
            );
            let line = compose::command(
                ComposeFlavor::Plugin,
                project.to_str().unwrap(),
                "p",
                &request,
            );
            let out = run_one(&format!("{env}{line}"));
            let built = std::fs::read_to_string(root.join("built")).unwrap_or_default();
            (out, built)
        };
        image("p-web", "sha256:1");
        image("reg_other:1", "sha256:2");
        image("postgres:15", "sha256:9");

        // Nothing rebuilt: ok.
        hook("true");
        let (out, built) = build(&[]);
        assert_eq!(out.status, Some(0), "{out:?}");
        assert_eq!(built, "[--no-cache]");
        assert_eq!(changes(&out), None);

        // The web image rebuilt under its name (v2's PROJECT-SERVICE): changed, named.
        hook(&format!(
            "printf sha256:3 > {}",
            quote(images.join("p-web").to_str().unwrap())
        ));
        let (out, _) = build(&[]);
        assert_eq!(changes(&out), Some(vec!["p-web".to_string()]), "{out:?}");

        // Only the services asked for are looked at: another's image changing is not this
        // build's doing.
        hook(&format!(
            "printf sha256:4 > {}; printf sha256:5 > {}",
            quote(images.join("reg_other:1").to_str().unwrap()),
            quote(images.join("postgres:15").to_str().unwrap())
        ));
        let (out, built) = build(&["web"]);
        assert_eq!(built, "[--no-cache][--][web]");
        assert_eq!(changes(&out), None, "{out:?}");
        // All services: `other` has an `image` of its own; `db` is not built.
        hook(&format!(
            "printf sha256:6 > {}; printf sha256:7 > {}",
            quote(images.join("reg_other:1").to_str().unwrap()),
            quote(images.join("postgres:15").to_str().unwrap())
        ));
        let (out, _) = build(&[]);
        assert_eq!(changes(&out), Some(vec!["reg/other:1".to_string()]));

        // An image that did not exist before: changed.
        std::fs::remove_file(images.join("p-web")).unwrap();
        hook(&format!(
            "printf sha256:8 > {}",
            quote(images.join("p-web").to_str().unwrap())
        ));
        let (out, _) = build(&["web"]);
        assert_eq!(changes(&out), Some(vec!["p-web".to_string()]));

        // A failed build fails the segment, and reports nothing.
        hook("echo 'no space left' >&2; exit 3");
        let (out, _) = build(&[]);
        assert_eq!(out.status, Some(3), "{out:?}");
        assert_eq!(changes(&out), None);
        assert!(String::from_utf8_lossy(&out.stderr).contains("no space left"));
    }
}
