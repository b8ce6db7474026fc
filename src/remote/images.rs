//! Image retention on a host: the script that surveys what the kept releases refer to, what
//! containers use and what the engine holds (`survey`), the one that untags what may go
//! (`remove`), their parsers, Docker's image reference grammar (`ImageRef`) and the choice
//! between them (`select`, a pure function). Everything read back is hostile data: refused
//! unless it has the grammar's form, before it goes near a script.
//! May import: `remote::{script, frame, vars, compose, release}`.

use std::collections::{BTreeSet, HashSet};

use super::compose::{ComposeFlavor, ComposeTool};
use super::frame::{self, Kind, Reply};
use super::release;
use super::script::Script;
use super::vars;
use crate::sh;

/// Where a release's image references are kept once compose has listed them: releases do not
/// change after activation, so compose (a python start-up of ~0.5 s for v1) runs once per
/// release, not once per deploy for every kept release.
pub const CACHE_FILE: &str = ".dropship-images";

/// Lines of an error shown per failed command.
const ERROR_LINES: usize = 3;

// ---------------------------------------------------------------------------------------------
// Docker's reference grammar (distribution/reference), as far as a host's answers need it.

/// An image reference read from a host, in the form `docker image ls` shows (Docker Hub's
/// `docker.io/` and `library/` left out), with its tag and digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses `name[:tag][@digest]`; `None` unless it has the grammar's form.
    pub fn parse(text: &str) -> Option<Self> {
        if text.is_empty() || text.len() > 512 {
            return None;
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (text, None),
        };
        if let Some(d) = digest
            && !valid_digest(d)
        {
            return None;
        }
        // The tag's colon comes after the last slash (a registry's port comes before it).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return None;
        }
        Some(Self {
            repository: familiar_name(name)?,
            tag: tag.map(str::to_string),
            digest: digest.map(str::to_string),
        })
    }

    /// Whether this reference names `image` (the digest decides when there is one; no tag
    /// means `latest`).
    fn names(&self, image: &EngineImage) -> bool {
        self.repository == image.repository
            && match &self.digest {
                Some(d) => image.digest.as_deref() == Some(d.as_str()),
                None => image.tag.as_deref() == Some(self.tag.as_deref().unwrap_or("latest")),
            }
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// A repository name in its familiar form, or `None` when it is not one: an optional domain
/// (`host[:port]`, taken as one when it has a `.` or `:` or is `localhost`) and lowercase path
/// components. `docker.io/library/x` reads `x`, as `docker image ls` shows it.
fn familiar_name(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > 255 {
        return None;
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    let has_domain = parts.len() > 1
        && (parts[0].contains(['.', ':'])
            || parts[0] == "localhost"
            || parts[0].bytes().any(|b| b.is_ascii_uppercase()));
    let domain = if has_domain {
        let d = parts.remove(0);
        if !valid_domain(d) {
            return None;
        }
        Some(d)
    } else {
        None
    };
    if !parts.iter().all(|p| valid_path_component(p)) {
        return None;
    }
    let path = parts.join("/");
    Some(match domain {
        Some("docker.io" | "index.docker.io") | None => match path.strip_prefix("library/") {
            Some(official) if !official.contains('/') => official.to_string(),
            _ => path,
        },
        Some(d) => format!("{d}/{path}"),
    })
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or one or more `-`.
fn valid_path_component(part: &str) -> bool {
    let b = part.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(&b[0]) || !alnum(&b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(&b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(&b[i]) {
            i += 1;
        }
        let sep = &part[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-')) {
            return false;
        }
    }
    true
}

/// `host[.host…][:port]`, each label alphanumerics with inner `-`.
fn valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (domain, None),
    };
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    };
    host.split('.').all(label_ok)
        && port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()))
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(tag: &str) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

/// `algorithm:hex`, the hex at least 32 digits (`sha256:` + 64 in practice).
fn valid_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let a = algorithm.as_bytes();
    !a.is_empty()
        && a[0].is_ascii_alphabetic()
        && a.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_+.".contains(c))
        && hex.len() >= 32
        && hex.len() <= 128
        && hex.bytes().all(|c| c.is_ascii_hexdigit())
}

/// An image id as the engine prints it untruncated: `sha256:` and 64 lowercase hex digits.
pub fn valid_image_id(id: &str) -> bool {
    id.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    })
}

// ---------------------------------------------------------------------------------------------
// What the engine holds, and the choice.

/// One row of `docker image ls --digests`: a repository's tag (`None`: `<none>`) and digest of
/// an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineImage {
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
    pub id: String,
}

/// A tag to remove, `repository:tag`, and the image it names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Removal {
    pub reference: String,
    pub id: String,
}

/// The tags that may go: those of the repositories the kept releases refer to (never another
/// app's), of images that no kept release names (by any of its tags or digests) and no
/// container, running or stopped, uses. An image kept for either reason keeps all its tags.
pub fn select(kept: &[ImageRef], in_use: &HashSet<String>, images: &[EngineImage]) -> Vec<Removal> {
    let repositories: HashSet<&str> = kept.iter().map(|r| r.repository.as_str()).collect();
    let protected: HashSet<&str> = images
        .iter()
        .filter(|image| kept.iter().any(|r| r.names(image)))
        .map(|image| image.id.as_str())
        .chain(in_use.iter().map(String::as_str))
        .collect();
    let chosen: BTreeSet<Removal> = images
        .iter()
        .filter(|image| repositories.contains(image.repository.as_str()))
        .filter(|image| !protected.contains(image.id.as_str()))
        .filter_map(|image| {
            Some(Removal {
                reference: format!("{}:{}", image.repository, image.tag.as_ref()?),
                id: image.id.clone(),
            })
        })
        .collect();
    chosen.into_iter().collect()
}

// ---------------------------------------------------------------------------------------------
// The survey: one script, one round trip.

/// Lists, on a host, the image references of every release under `root` (after `activate`
/// pruned them: the kept ones), from `compose config` in each release's directory (cached in
/// `CACHE_FILE`); then, when any release refers to an image, the image of every container and
/// every image the engine holds. With the flavour `Unknown`, `compose::detect` runs first.
/// A container removed between `docker ps` and `docker container inspect` (an engine shared
/// with other work) fails the inspection: both are retried, up to 3 times.
pub fn survey(root: &str, flavor: ComposeFlavor, forced: Option<ComposeTool>) -> Script {
    let report = |fields: Script| frame::report(Kind::Images, &fields);
    let detect = if flavor == ComposeFlavor::Unknown {
        sh!("{}\n", super::compose::detect(forced))
    } else {
        Script::default()
    };
    sh!(
        "{}cd -- {} 2>/dev/null || {{ {}; exit 0; }}
{}
dsia=
for r in \"$@\"; do
  dsii=${{r#releases/}}
  {}
  if [ -f \"$r/{}\" ]; then
    dsil=$(cat -- \"$r/{}\") || exit 1
  elif [ -e \"$r/compose.yaml\" ] || [ -e \"$r/compose.yml\" ] || [ -e \"$r/docker-compose.yml\" ] || [ -e \"$r/docker-compose.yaml\" ]; then
    if dsio=$(cd -- \"$r\" && {} 2>/dev/null </dev/null); then
      dsil=$(printf '%s\\n' \"$dsio\" | {})
      {{ printf '%s\\n' \"$dsil\" > \"$r/{}.tmp\" && mv -f -- \"$r/{}.tmp\" \"$r/{}\"; }} 2>/dev/null || rm -f -- \"$r/{}.tmp\" 2>/dev/null
    else
      {}
      (cd -- \"$r\" && {} 2>&1 >/dev/null </dev/null) | tail -n {}
      continue
    fi
  else
    dsil=
  fi
  [ -z \"$dsil\" ] || {{ dsia=1; printf '%s\\n' \"$dsil\"; }}
done
if [ -n \"$dsia\" ]; then
  {}
  set -f; dsit=0
  until dsic=$(docker ps -aq --no-trunc </dev/null) && dsiu=$([ -z \"$dsic\" ] || docker container inspect --format {} $dsic 2>/dev/null </dev/null); do
    dsit=$((dsit + 1)); [ $dsit -lt 3 ] || {{ echo 'cannot list the images of the containers (docker failed, or containers kept going away while listed)' >&2; exit 1; }}
  done
  [ -z \"$dsiu\" ] || printf '%s\\n' \"$dsiu\"
  {}
  docker image ls --no-trunc --digests --format {} </dev/null || exit 1
fi
{}",
        detect,
        root,
        report(sh!("end")),
        release::scan(),
        report(sh!("\"release $dsii\"")),
        CACHE_FILE,
        CACHE_FILE,
        config_images(flavor),
        image_lines(flavor),
        CACHE_FILE,
        CACHE_FILE,
        CACHE_FILE,
        CACHE_FILE,
        report(sh!("\"unknown $dsii\"")),
        config_images(flavor),
        ERROR_LINES,
        report(sh!("containers")),
        "{{.Image}}",
        report(sh!("images")),
        "{{.Repository}} {{.Tag}} {{.Digest}} {{.ID}}",
        report(sh!("end")),
    )
}

/// `compose config` as this host's compose runs it: v2 lists the images itself
/// (`--images`), v1 prints the whole configuration (`image_lines` keeps the images).
fn config_images(flavor: ComposeFlavor) -> Script {
    match flavor {
        ComposeFlavor::Plugin => sh!("docker compose config --images"),
        ComposeFlavor::Standalone => sh!("docker-compose config"),
        ComposeFlavor::Missing | ComposeFlavor::Unusable { .. } => sh!("false"),
        ComposeFlavor::Unknown => sh!(
            "case {} in plugin) {} ;; standalone) {} ;; *) false ;; esac",
            vars::COMPOSE_FLAVOR.bare(),
            config_images(ComposeFlavor::Plugin),
            config_images(ComposeFlavor::Standalone)
        ),
    }
}

/// Keeps the image of each service from `config_images`'s output: v1's configuration has
/// them as `    image: REF` (services at the top level, their keys four spaces in); no other
/// line (an environment value, a secret) is kept.
fn image_lines(flavor: ComposeFlavor) -> Script {
    let v1 = sh!("sed -n 's/^    image: //p'");
    match flavor {
        ComposeFlavor::Plugin => sh!("cat"),
        ComposeFlavor::Standalone | ComposeFlavor::Missing | ComposeFlavor::Unusable { .. } => v1,
        ComposeFlavor::Unknown => sh!(
            "{{ if [ {} = standalone ]; then {}; else cat; fi; }}",
            vars::COMPOSE_FLAVOR.bare(),
            v1
        ),
    }
}

/// One kept release and the images its compose files name (or why they are not known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseImages {
    pub id: String,
    pub images: Result<Vec<ImageRef>, String>,
}

/// What `survey` found; `Err` (why) when it cannot be trusted to protect every image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Survey {
    pub releases: Vec<ReleaseImages>,
    /// The image id of every container.
    pub in_use: HashSet<String>,
    pub images: Vec<EngineImage>,
}

impl Survey {
    /// Every image reference of the kept releases, or why they are not all known.
    pub fn kept(&self) -> Result<Vec<ImageRef>, String> {
        let mut kept = Vec::new();
        for release in &self.releases {
            match &release.images {
                Ok(images) => kept.extend(images.iter().cloned()),
                Err(why) => return Err(format!("release {}: {why}", release.id)),
            }
        }
        Ok(kept)
    }
}

/// Parses `survey`'s reply. Anything not of the expected form (an id, a reference, a row)
/// makes the survey unusable rather than being skipped: an image it leaves out would lose its
/// protection.
pub fn parse_survey(reply: &Reply) -> Result<Survey, String> {
    let mut survey = Survey::default();
    let mut ended = false;
    let lines = |data: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(data)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    };
    for (frame, data) in &reply.sections {
        let Some(fields) = frame.of(Kind::Images) else {
            continue;
        };
        let (what, value) = fields.split_once(' ').unwrap_or((fields, ""));
        match what {
            "release" | "unknown" => {
                if !crate::release::is_release_id(value) {
                    return Err(format!("a release named `{}`", shown(value)));
                }
                let images = if what == "unknown" {
                    Err(format!(
                        "compose config failed: {}",
                        lines(data).join(" / ").trim()
                    ))
                } else {
                    lines(data)
                        .iter()
                        .map(|l| {
                            let unquoted = l.trim_matches(|c| c == '\'' || c == '"');
                            ImageRef::parse(unquoted)
                                .ok_or_else(|| format!("`{}` is not an image reference", shown(l)))
                        })
                        .collect()
                };
                survey.releases.push(ReleaseImages {
                    id: value.to_string(),
                    images,
                });
            }
            "containers" => {
                for id in lines(data) {
                    if !valid_image_id(&id) {
                        return Err(format!("a container's image `{}`", shown(&id)));
                    }
                    survey.in_use.insert(id);
                }
            }
            "images" => {
                for row in lines(data) {
                    survey.images.push(
                        parse_image_row(&row)
                            .ok_or_else(|| format!("an image listed as `{}`", shown(&row)))?,
                    );
                }
            }
            "end" => ended = true,
            _ => {}
        }
    }
    if ended {
        Ok(survey)
    } else {
        Err("the survey did not finish".to_string())
    }
}

/// `REPOSITORY TAG DIGEST ID`, `<none>` for a missing tag or digest (a repository `<none>` is
/// a dangling image: never chosen, so it is not kept as a row).
fn parse_image_row(row: &str) -> Option<EngineImage> {
    let fields: Vec<&str> = row.split(' ').collect();
    let [repository, tag, digest, id] = fields[..] else {
        return None;
    };
    if !valid_image_id(id) {
        return None;
    }
    let none = |v: &str| (v != "<none>").then(|| v.to_string());
    let (tag, digest) = (none(tag), none(digest));
    if tag.as_deref().is_some_and(|t| !valid_tag(t))
        || digest.as_deref().is_some_and(|d| !valid_digest(d))
    {
        return None;
    }
    let repository = if repository == "<none>" {
        "<none>".to_string()
    } else {
        familiar_name(repository)?
    };
    Some(EngineImage {
        repository,
        tag,
        digest,
        id: id.to_string(),
    })
}

/// A hostile text as shown in a message: at most 80 characters, control characters escaped.
fn shown(text: &str) -> String {
    text.chars().take(80).flat_map(char::escape_debug).collect()
}

// ---------------------------------------------------------------------------------------------
// The removal.

/// Untags each chosen reference (`docker image rm`, never `-f`: an image a container uses is
/// refused by the engine and kept), after reading the size of each image, then reports which
/// images are gone. Every value has been validated (`select` takes them from a parsed survey).
pub fn remove(removals: &[Removal]) -> Script {
    let report = |fields: String| frame::report(Kind::Images, &fields);
    let ids: BTreeSet<&str> = removals.iter().map(|r| r.id.as_str()).collect();
    let mut script = sh!(
        "{}\ndocker image inspect --format {}",
        report("sizes".into()),
        "{{.Id}} {{.Size}}"
    );
    for id in &ids {
        script.push(&sh!(" {}", *id));
    }
    script.push(&sh!(" 2>/dev/null </dev/null\n"));
    for removal in removals {
        debug_assert!(ImageRef::parse(&removal.reference).is_some());
        script.push(&sh!(
            "if dsio=$(docker image rm {} 2>&1 </dev/null); then {}; else {}; printf '%s\\n' \"$dsio\" | tail -n {}; fi\n",
            removal.reference.as_str(),
            report(format!("untagged {}", removal.reference)),
            report(format!("kept {}", removal.reference)),
            ERROR_LINES
        ));
    }
    for id in &ids {
        script.push(&sh!(
            "docker image inspect --format . {} >/dev/null 2>&1 </dev/null || {}\n",
            *id,
            report(format!("gone {id}"))
        ));
    }
    script.push(&report("end".into()));
    script
}

/// What `remove` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    pub untagged: Vec<String>,
    /// References the engine refused to remove, with its reason.
    pub kept: Vec<(String, String)>,
    /// Bytes of the images now gone from the engine.
    pub freed: u64,
    pub images_gone: usize,
    /// The script ran to its end.
    pub complete: bool,
}

/// Parses `remove`'s reply: only the references and ids it was asked about count.
pub fn parse_removed(reply: &Reply, asked: &[Removal]) -> Removed {
    let mut removed = Removed::default();
    let mut sizes = std::collections::HashMap::new();
    let mut gone = BTreeSet::new();
    let asked_ref = |r: &str| asked.iter().any(|a| a.reference == r);
    for (frame, data) in &reply.sections {
        let Some(fields) = frame.of(Kind::Images) else {
            continue;
        };
        let (what, value) = fields.split_once(' ').unwrap_or((fields, ""));
        match what {
            "sizes" => {
                for line in String::from_utf8_lossy(data).lines() {
                    if let Some((id, size)) = line.trim().split_once(' ')
                        && asked.iter().any(|a| a.id == id)
                        && let Ok(size) = size.parse::<u64>()
                    {
                        sizes.insert(id.to_string(), size);
                    }
                }
            }
            "untagged" if asked_ref(value) => removed.untagged.push(value.to_string()),
            "kept" if asked_ref(value) => {
                let text = String::from_utf8_lossy(data);
                let reason = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(" / ");
                removed.kept.push((value.to_string(), shown(&reason)));
            }
            "gone" if asked.iter().any(|a| a.id == value) => {
                gone.insert(value.to_string());
            }
            "end" => removed.complete = true,
            _ => {}
        }
    }
    removed.images_gone = gone.len();
    removed.freed = gone.iter().filter_map(|id| sizes.get(id)).sum();
    removed
}

#[cfg(test)]
mod tests;
