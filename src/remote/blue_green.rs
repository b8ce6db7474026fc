//! Blue/green switches on a host: the scripts that inspect both colors and the proxy's upstream
//! file, start a color, switch the upstream (and reload the proxy), stop or remove a color, and
//! the parsers of what they report. What the host prints is hostile: container names must be
//! plain names, releases must be release ids, addresses must parse as IPs.
//! May import: `remote::{script, frame, compose}`, `release` (ids).

use std::net::IpAddr;

use super::compose::{self, ComposeFlavor, ComposeTool};
use super::frame::{self, Kind, Reply};
use super::script::Script;
use crate::release::is_release_id;
use crate::sh;

/// A color: each runs as its own compose project, `PROJECT-blue` or `PROJECT-green`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Color {
    Blue,
    Green,
}

impl Color {
    pub const ALL: [Color; 2] = [Color::Blue, Color::Green];

    pub fn as_str(self) -> &'static str {
        match self {
            Color::Blue => "blue",
            Color::Green => "green",
        }
    }

    pub fn other(self) -> Color {
        match self {
            Color::Blue => Color::Green,
            Color::Green => Color::Blue,
        }
    }

    fn parse(text: &str) -> Option<Color> {
        match text {
            "blue" => Some(Color::Blue),
            "green" => Some(Color::Green),
            _ => None,
        }
    }

    /// The compose project this color runs as.
    pub fn project(self, project: &str) -> String {
        format!("{project}-{}", self.as_str())
    }
}

/// One container of a color, as the host described it (only the ones that passed the checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub name: String,
    /// Its compose service.
    pub service: String,
    pub running: bool,
    /// The release its compose project was started from (the id of its working directory).
    pub release: Option<String>,
    /// Its address on a network (the first one docker lists).
    pub ip: Option<IpAddr>,
}

/// The live color and release, as the upstream file's first line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    pub color: Color,
    pub release: Option<String>,
}

/// What `inspect` found on a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostState {
    /// The release the colored stack's directory resolves to (`cd -P`), when it is a release.
    pub target: Option<String>,
    /// The physical directory it resolved to (for messages).
    pub target_dir: Option<String>,
    pub live: Option<Live>,
    pub blue: Vec<Container>,
    pub green: Vec<Container>,
    /// How compose is invoked, when the inspection had to find out.
    pub flavor: Option<ComposeFlavor>,
}

impl HostState {
    pub fn containers(&self, color: Color) -> &[Container] {
        match color {
            Color::Blue => &self.blue,
            Color::Green => &self.green,
        }
    }
}

/// Whether a name can be written into the upstream file and used by docker: a container name.
pub fn valid_container_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// The header of the upstream file: what `parse_header` reads back.
const HEADER: &str = "# dropship blue/green:";

/// The upstream file: a header saying which color is live with which release, then one
/// `server` line per container of the routed service (names checked by the caller).
pub fn render_upstream(color: Color, release: &str, names: &[String], port: u16) -> String {
    let mut text = format!("{HEADER} live={} release={release}\n", color.as_str());
    for name in names {
        text.push_str(&format!("server {name}:{port};\n"));
    }
    text
}

/// The live color (and release) from the upstream file's first line; anything else is none.
pub fn parse_header(line: &str) -> Option<Live> {
    let rest = line.trim_end().strip_prefix(HEADER)?;
    let mut color = None;
    let mut release = None;
    for word in rest.split_whitespace() {
        if let Some(c) = word.strip_prefix("live=") {
            color = Color::parse(c);
        } else if let Some(r) = word.strip_prefix("release=") {
            release = Some(r.to_string()).filter(|r| is_release_id(r));
        }
    }
    Some(Live {
        color: color?,
        release,
    })
}

/// `docker inspect --format` for one container a line: project, service, name, running, the
/// addresses, then the working directory (last: a path may hold the separator).
const CONTAINER_FORMAT: &str = "{{index .Config.Labels \"com.docker.compose.project\"}}|{{index .Config.Labels \"com.docker.compose.service\"}}|{{.Name}}|{{.State.Running}}|{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}|{{index .Config.Labels \"com.docker.compose.project.working_dir\"}}";

/// Prints every container of the given compose projects, one `CONTAINER_FORMAT` line each
/// (nothing when there is none); fails when docker does.
fn list_containers(projects: &[String]) -> Script {
    let mut ids = sh!("dsi=$(");
    for (i, project) in projects.iter().enumerate() {
        if i > 0 {
            ids.push(&sh!(" && "));
        }
        ids.push(&sh!(
            "docker ps -aq --filter {}",
            format!("label=com.docker.compose.project={project}")
        ));
    }
    ids.push(&sh!(
        ") || exit 1; [ -z \"$dsi\" ] || docker inspect --format {} $dsi || exit 1",
        CONTAINER_FORMAT
    ));
    ids
}

/// One exec that learns everything the switch decides on: the release `dir` resolves to, the
/// upstream file's first line, both colors' containers; and, while compose's flavour is
/// unknown, how compose is invoked (first, as a driver's preamble does).
/// `forced`: the flavour the inventory forces, looked for when `flavor` is not known yet.
pub fn inspect(
    flavor: ComposeFlavor,
    forced: Option<ComposeTool>,
    dir: &str,
    project: &str,
    upstream: &str,
) -> Script {
    let detect = if flavor == ComposeFlavor::Unknown {
        sh!("{}\n", compose::detect(forced))
    } else {
        Script::default()
    };
    let projects: Vec<String> = Color::ALL.iter().map(|c| c.project(project)).collect();
    sh!(
        "{}{}\n(cd -P -- {} 2>/dev/null && pwd -P) || true\n{}\nsed -n 1p -- {} 2>/dev/null || true\n{}\n{}",
        detect,
        frame::report(Kind::BlueGreen, &"target"),
        dir,
        frame::report(Kind::BlueGreen, &"upstream"),
        upstream,
        frame::report(Kind::BlueGreen, &"containers"),
        list_containers(&projects)
    )
}

/// Parses `inspect`'s reply. Containers of other projects, with bad names or unknown colors
/// are left out.
pub fn parse_inspect(reply: &Reply, project: &str) -> HostState {
    let section = |name: &str| {
        reply
            .sections
            .iter()
            .find(|(f, _)| f.of(Kind::BlueGreen) == Some(name))
            .map(|(_, data)| String::from_utf8_lossy(data).into_owned())
            .unwrap_or_default()
    };
    let target_dir = section("target").trim_end_matches('\n').to_string();
    let target = release_of(&target_dir);
    let live = section("upstream").lines().next().and_then(parse_header);
    let mut state = HostState {
        target,
        target_dir: Some(target_dir).filter(|d| !d.is_empty() && !d.contains('\n')),
        live,
        flavor: compose::flavor(reply.sections.iter().map(|(f, _)| f)),
        ..HostState::default()
    };
    for (color, container) in parse_containers(&section("containers"), project) {
        match color {
            Color::Blue => state.blue.push(container),
            Color::Green => state.green.push(container),
        }
    }
    state
}

/// The release id a directory is (its last component), if it is one.
fn release_of(dir: &str) -> Option<String> {
    let last = dir.trim_end_matches('/').rsplit('/').next()?;
    is_release_id(last).then(|| last.to_string())
}

/// `CONTAINER_FORMAT` lines of the colors of `project`, in the order docker printed them.
pub fn parse_containers(text: &str, project: &str) -> Vec<(Color, Container)> {
    let mut found = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.splitn(6, '|').collect();
        let [proj, service, name, running, ips, working_dir] = fields[..] else {
            continue;
        };
        let Some(color) = Color::ALL.into_iter().find(|c| c.project(project) == proj) else {
            continue;
        };
        let name = name.trim_start_matches('/');
        if !valid_container_name(name) || !valid_container_name(service) {
            continue;
        }
        found.push((
            color,
            Container {
                name: name.to_string(),
                service: service.to_string(),
                running: running == "true",
                release: release_of(working_dir),
                ip: ips.split_whitespace().find_map(|ip| ip.parse().ok()),
            },
        ));
    }
    found
}

/// How compose is invoked: `docker compose` or `docker-compose` (a known flavour).
fn compose_tool(flavor: ComposeFlavor) -> Script {
    match flavor {
        ComposeFlavor::Standalone => sh!("docker-compose"),
        _ => sh!("docker compose"),
    }
}

/// `compose -p PROJECT ARGS` in the physical directory `dir` resolves to (so that the
/// containers' working directory names the release, not `current`), stdin closed.
fn compose_in(flavor: ComposeFlavor, dir: &str, project: &str, args: Script) -> Script {
    sh!(
        "(cd -P -- {} && exec {} -p {} {}) </dev/null",
        dir,
        compose_tool(flavor),
        project,
        args
    )
}

/// `compose pull` of a color's project in `dir`: whether the live color's images are current.
pub fn pull(flavor: ComposeFlavor, dir: &str, color_project: &str) -> Script {
    compose_in(flavor, dir, color_project, sh!("pull"))
}

/// Starts a color from `dir`: pull (then the `pulled` frame: up to there the color was not
/// touched), `up -d --force-recreate --remove-orphans`, then its containers (the `containers`
/// frame, `list_containers` lines). The color is idle, so recreating it costs no request; and
/// compose would keep a container whose config did not change, still labelled with the older
/// release's directory, which the next decision reads.
pub fn start(flavor: ComposeFlavor, dir: &str, color_project: &str) -> Script {
    sh!(
        "{} || exit 1\n{}\n{} || exit 1\n{}\n{}",
        compose_in(flavor, dir, color_project, sh!("pull")),
        frame::report(Kind::BlueGreen, &"pulled"),
        compose_in(
            flavor,
            dir,
            color_project,
            sh!("up -d --force-recreate --remove-orphans")
        ),
        frame::report(Kind::BlueGreen, &"containers"),
        list_containers(&[color_project.to_string()])
    )
}

/// Whether `start` got past the pull (the color was touched).
pub fn pulled(reply: &Reply) -> bool {
    reply
        .sections
        .iter()
        .any(|(f, _)| f.of(Kind::BlueGreen) == Some("pulled"))
}

/// The `containers` section of a reply.
pub fn containers_section(reply: &Reply) -> String {
    reply
        .sections
        .iter()
        .find(|(f, _)| f.of(Kind::BlueGreen) == Some("containers"))
        .map(|(_, data)| String::from_utf8_lossy(data).into_owned())
        .unwrap_or_default()
}

/// Removes a color that failed to start (`down`, never `-v`: volumes stay).
pub fn remove(flavor: ComposeFlavor, dir: &str, color_project: &str) -> Script {
    compose_in(flavor, dir, color_project, sh!("down --remove-orphans"))
}

/// Stops a color's containers (kept, stopped: `up` starts them again).
pub fn stop(color_project: &str) -> Script {
    sh!(
        "dsi=$(docker ps -q --filter {}) || exit 1; [ -z \"$dsi\" ] || docker stop $dsi >/dev/null",
        format!("label=com.docker.compose.project={color_project}")
    )
}

/// The proxy the switch reloads: a compose service with a directory and project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyTarget<'a> {
    pub dir: &'a str,
    pub project: &'a str,
    pub service: &'a str,
    /// Checks its configuration (`nginx -t`; empty: no check) and reloads it gracefully
    /// (`nginx -s reload`), run in its container.
    pub test: &'a [String],
    pub reload: &'a [String],
}

/// `docker exec "$dsp" ARGV…` (the proxy's container found by the switch script).
fn exec_in_proxy(argv: &[String]) -> Script {
    let mut script = sh!("docker exec \"$dsp\"");
    for arg in argv {
        script.push(&sh!(" {}", arg));
    }
    script.push(&sh!(" </dev/null"));
    script
}

/// Writes `content` to the upstream file atomically (a temporary file beside it, renamed over
/// it), makes sure the proxy runs (`up -d --no-deps` when it does not, or always with
/// `update_proxy`: a no-op when it runs unchanged), tests its config and reloads it. A failed
/// start or test puts the previous upstream file back; the reload is the last thing done.
pub fn switch(
    flavor: ComposeFlavor,
    upstream: &str,
    content: &str,
    proxy: &ProxyTarget<'_>,
    update_proxy: bool,
) -> Script {
    let find_proxy = sh!(
        "dsp=$(docker ps -q --filter {} --filter {} | sed -n 1p)",
        format!("label=com.docker.compose.project={}", proxy.project),
        format!("label=com.docker.compose.service={}", proxy.service)
    );
    let proxy_up = compose_in(
        flavor,
        proxy.dir,
        proxy.project,
        sh!("up -d --no-deps -- {}", proxy.service),
    );
    sh!(
        "dsu={}; dst=\"${dsu%/*}/.${dsu##*/}.dropship-tmp\"
if [ -f \"$dsu\" ]; then dsh=1; dso=$(cat -- \"$dsu\") || exit 1; else dsh=0; fi
dsrestore() {{ if [ $dsh = 1 ]; then printf '%s\\n' \"$dso\" > \"$dst\" && mv -f -- \"$dst\" \"$dsu\"; else rm -f -- \"$dsu\"; fi; }}
(umask 022 && printf '%s' {} > \"$dst\") && mv -f -- \"$dst\" \"$dsu\" || exit 1
{}
if [ {} = 1 ] || [ -z \"$dsp\" ]; then {} >&2 || {{ dsrestore; echo 'could not start the proxy; the previous upstream is back' >&2; exit 1; }}; {}; fi
[ -n \"$dsp\" ] || {{ dsrestore; printf 'the proxy (service %s of project %s) is not running\\n' {} {} >&2; exit 1; }}
{} >&2 || {{ dsrestore; echo 'the proxy refused the new upstream; the previous one is back' >&2; exit 1; }}
{} >&2 || {{ dsrestore; {} >&2; echo 'the proxy did not reload; the previous upstream is back' >&2; exit 1; }}",
        upstream,
        content,
        find_proxy,
        if update_proxy { "1" } else { "0" },
        proxy_up,
        find_proxy,
        proxy.service,
        proxy.project,
        if proxy.test.is_empty() {
            sh!("true")
        } else {
            exec_in_proxy(proxy.test)
        },
        exec_in_proxy(proxy.reload),
        exec_in_proxy(proxy.reload)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::frame::Framed;

    const R1: &str = "20261122T175512.042Z-3f9a1c2e";
    const R2: &str = "20261123T010203.999Z-abcdef01";

    #[test]
    fn the_upstream_file_says_which_color_is_live_and_reads_back() {
        let text = render_upstream(
            Color::Green,
            R1,
            &["p-green-web-1".into(), "p-green_web_2".into()],
            8000,
        );
        assert_eq!(
            text,
            format!(
                "# dropship blue/green: live=green release={R1}\nserver p-green-web-1:8000;\nserver p-green_web_2:8000;\n"
            )
        );
        assert_eq!(
            parse_header(text.lines().next().unwrap()),
            Some(Live {
                color: Color::Green,
                release: Some(R1.into())
            })
        );
        // Hostile or foreign headers are no live color; a bad release is no release.
        assert_eq!(parse_header("server web:8000;"), None);
        assert_eq!(
            parse_header("# dropship blue/green: live=red release=x"),
            None
        );
        assert_eq!(
            parse_header("# dropship blue/green: live=blue release=$(id)"),
            Some(Live {
                color: Color::Blue,
                release: None
            })
        );
        assert!(valid_container_name("pixel-local-1-blue_web_1"));
        for bad in ["", "a b", "a;b", "a:80;server x", "$(id)", "a\nb", "a/b"] {
            assert!(!valid_container_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn containers_are_parsed_and_hostile_lines_ignored() {
        let text = format!(
            "p-blue|web|/p-blue-web-1|true|172.18.0.3 |/srv/app/releases/{R1}\n\
             p-green|web|/p-green_web_1|false||/srv/app/releases/{R2}\n\
             p-green|web|/bad name|true|172.18.0.4 |/srv/app/releases/{R2}\n\
             p-green|web|/p-green-web-2|true|not-an-ip 10.0.0.9 |/srv/a|b/releases/$(id)\n\
             other|web|/other-web-1|true|172.18.0.5 |/x/{R1}\n\
             p-blue|web;x|/p-blue-web-9|true||/x\n\
             garbage line\n"
        );
        let found = parse_containers(&text, "p");
        assert_eq!(
            found,
            [
                (
                    Color::Blue,
                    Container {
                        name: "p-blue-web-1".into(),
                        service: "web".into(),
                        running: true,
                        release: Some(R1.into()),
                        ip: Some("172.18.0.3".parse().unwrap()),
                    }
                ),
                (
                    Color::Green,
                    Container {
                        name: "p-green_web_1".into(),
                        service: "web".into(),
                        running: false,
                        release: Some(R2.into()),
                        ip: None,
                    }
                ),
                (
                    Color::Green,
                    Container {
                        name: "p-green-web-2".into(),
                        service: "web".into(),
                        running: true,
                        release: None,
                        ip: Some("10.0.0.9".parse().unwrap()),
                    }
                ),
            ]
        );
    }

    /// A host in a temp dir: a `docker` that answers `ps` and `inspect` from files, and
    /// records the other commands it was given.
    fn fake_docker(dir: &std::path::Path) -> std::path::PathBuf {
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(
            bin.join("docker"),
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> \"$LOG\"\ncase \"$1\" in\n\
             ps) case \"$*\" in *proxy*) echo c0ffee ;; *blue*) echo b1 ;; *green*) ;; esac ;;\n\
             inspect) cat \"$INSPECT\" ;;\n\
             exec) case \"$*\" in *-t*) [ -z \"$FAIL_TEST\" ] || { echo 'emerg: host not found' >&2; exit 1; } ;; esac ;;\n\
             esac\n",
        )
        .unwrap();
        std::fs::set_permissions(
            bin.join("docker"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        bin
    }

    fn run(
        script: &str,
        dir: &std::path::Path,
        bin: &std::path::Path,
        env: &[(&str, &str)],
    ) -> crate::transport::ExecOutput {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("LOG", dir.join("log"))
            .env("INSPECT", dir.join("inspect"))
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        crate::transport::ExecOutput {
            status: out.status.code().map(|c| c as u32),
            stdout: out.stdout,
            stderr: out.stderr,
            ..Default::default()
        }
    }

    #[test]
    fn inspect_reads_the_release_the_upstream_and_the_colors_in_a_real_shell() {
        let dir = tempfile::tempdir().unwrap();
        let bin = fake_docker(dir.path());
        let release = dir.path().join("releases").join(R2);
        std::fs::create_dir_all(&release).unwrap();
        std::os::unix::fs::symlink(&release, dir.path().join("current")).unwrap();
        let upstream = dir.path().join("app.upstream");
        std::fs::write(
            &upstream,
            render_upstream(Color::Blue, R1, &["p-blue-web-1".into()], 80),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("inspect"),
            format!("p-blue|web|/p-blue-web-1|true|172.18.0.3 |/srv/releases/{R1}\n"),
        )
        .unwrap();
        let request = Framed::new(&inspect(
            ComposeFlavor::Plugin,
            None,
            dir.path().join("current").to_str().unwrap(),
            "p",
            upstream.to_str().unwrap(),
        ));
        let out = run(request.script(), dir.path(), &bin, &[]);
        assert_eq!(
            out.status,
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let state = parse_inspect(&request.reply(&out.stdout), "p");
        assert_eq!(state.target.as_deref(), Some(R2), "through the symlink");
        assert_eq!(
            state.live,
            Some(Live {
                color: Color::Blue,
                release: Some(R1.into())
            })
        );
        assert_eq!(state.blue.len(), 1);
        assert!(state.green.is_empty());
        assert_eq!(state.flavor, None, "the flavour was known");
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
        assert!(log.contains("ps -aq --filter label=com.docker.compose.project=p-blue"));
        assert!(log.contains("inspect --format"), "{log}");

        // A first deploy: no upstream file, no release behind `dir`, no container.
        std::fs::write(dir.path().join("inspect"), "").unwrap();
        let request = Framed::new(&inspect(
            ComposeFlavor::Plugin,
            None,
            dir.path().join("nowhere").to_str().unwrap(),
            "q",
            dir.path().join("none.upstream").to_str().unwrap(),
        ));
        let out = run(request.script(), dir.path(), &bin, &[]);
        assert_eq!(out.status, Some(0));
        let state = parse_inspect(&request.reply(&out.stdout), "q");
        assert_eq!(state, HostState::default());
    }

    #[test]
    fn the_switch_writes_the_upstream_atomically_and_puts_it_back_when_the_proxy_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let bin = fake_docker(dir.path());
        let upstream = dir.path().join("app.upstream");
        let old = render_upstream(Color::Blue, R1, &["p-blue-web-1".into()], 80);
        std::fs::write(&upstream, &old).unwrap();
        let new = render_upstream(Color::Green, R2, &["p-green-web-1".into()], 80);
        let test = vec!["nginx".to_string(), "-t".to_string()];
        let reload = vec!["nginx".to_string(), "-s".into(), "reload".into()];
        let proxy = ProxyTarget {
            dir: "/srv/shared",
            project: "p",
            service: "proxy",
            test: &test,
            reload: &reload,
        };
        let script = switch(
            ComposeFlavor::Plugin,
            upstream.to_str().unwrap(),
            &new,
            &proxy,
            false,
        );
        let out = run(script.as_str(), dir.path(), &bin, &[("FAIL_TEST", "1")]);
        assert_eq!(out.status, Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("emerg: host not found"), "{stderr}");
        assert!(stderr.contains("the previous one is back"), "{stderr}");
        assert_eq!(std::fs::read_to_string(&upstream).unwrap(), old);
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
        assert!(
            !log.contains("reload"),
            "no reload after a failed test: {log}"
        );

        let out = run(script.as_str(), dir.path(), &bin, &[]);
        assert_eq!(
            out.status,
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read_to_string(&upstream).unwrap(), new);
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
        assert!(
            log.ends_with("exec c0ffee nginx -t\nexec c0ffee nginx -s reload\n"),
            "{log}"
        );
        // Only the upstream file is left in the directory (no temporary file).
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains("upstream"))
            .collect();
        assert_eq!(names, ["app.upstream"]);

        // No previous file: a refused switch leaves none.
        std::fs::remove_file(&upstream).unwrap();
        let out = run(script.as_str(), dir.path(), &bin, &[("FAIL_TEST", "1")]);
        assert_eq!(out.status, Some(1));
        assert!(!upstream.exists());
    }

    #[test]
    fn colors_start_and_stop_in_the_physical_release_dir() {
        let s = start(ComposeFlavor::Standalone, "/srv/app/current", "p-green");
        assert!(
            s.as_str().starts_with(
                "(cd -P -- /srv/app/current && exec docker-compose -p p-green pull) </dev/null || exit 1\n"
            ),
            "{s}"
        );
        assert!(
            s.as_str().contains(
                "\n(cd -P -- /srv/app/current && exec docker-compose -p p-green up -d --force-recreate --remove-orphans) </dev/null || exit 1\n"
            ),
            "{s}"
        );
        assert_eq!(
            remove(ComposeFlavor::Plugin, "/srv/x y", "p-blue").as_str(),
            "(cd -P -- '/srv/x y' && exec docker compose -p p-blue down --remove-orphans) </dev/null"
        );
        assert!(
            stop("p-blue")
                .as_str()
                .contains("label=com.docker.compose.project=p-blue")
        );
    }
}
