//! Templates a template file names (`{% include %}`, `{% import %}`, `{% from %}`,
//! `{% extends %}`): looked up beside the naming template, then in the playbook's directories
//! (as `src` is); an absolute name, `~` or `..` is refused, so no template reads a file outside
//! them. A template included by a `.env` template is quoted as one (see `dotenv`).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use minijinja::{Environment, Error, ErrorKind};

use super::dotenv;
use crate::diagnostic::{InputError, SourceFile};
use crate::paths::normalize;

/// Appended to the name of a template included by a `.env` template (and not named like
/// one): it is compiled with `.env` quoting, like the template that includes it.
const IN_ENV: &str = " (in a .env template)";

/// The template files known to a renderer: the playbook's, and those they name, loaded on
/// first use. Shared by the environment's loader and path-join callbacks.
#[derive(Debug)]
pub struct Library {
    /// Where names are looked up after the naming template's own directory.
    bases: Vec<PathBuf>,
    /// Template name → its file, for every template added or loaded.
    files: Mutex<BTreeMap<String, SourceFile>>,
}

/// Why a name is refused, if it is.
pub fn refusal(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it is empty");
    }
    if name.starts_with('~') {
        return Some("it starts with `~`");
    }
    let path = Path::new(name);
    if path.is_absolute() || name.starts_with('\\') {
        return Some("it is an absolute path");
    }
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Some("it contains `..`");
    }
    None
}

pub const LOOKUP_HINT: &str = "a template names others by a relative path, looked up beside it, then in the playbook's directory and its parent (as `src` is); it cannot name a file outside them";

impl Library {
    pub fn new(bases: Vec<PathBuf>) -> Arc<Self> {
        Arc::new(Self {
            bases,
            files: Mutex::new(BTreeMap::new()),
        })
    }

    /// Records a template added by its `src` name.
    pub fn add(&self, name: &str, source: SourceFile) {
        self.lock().insert(name.to_string(), source);
    }

    /// The file of a template, by its name in the environment.
    pub fn source(&self, name: &str) -> Option<SourceFile> {
        self.lock().get(name).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SourceFile>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The places tried for `name` named by the template `parent`, in order.
    pub fn candidates(&self, name: &str, parent: &str) -> Vec<PathBuf> {
        let beside = self
            .source(parent)
            .and_then(|s| s.path.parent().map(Path::to_path_buf));
        beside
            .iter()
            .chain(&self.bases)
            .map(|dir| normalize(&dir.join(name)))
            .collect()
    }

    /// The environment's name for `name` named by `parent`: the path of the file found (so
    /// one file is one template whoever names it), marked when a `.env` template names it.
    /// A refused or missing name is returned as it is: the loader says why it cannot load it.
    pub fn join<'s>(&self, name: &'s str, parent: &'s str) -> Cow<'s, str> {
        if refusal(name).is_some() {
            return Cow::Borrowed(name);
        }
        let Some(path) = self
            .candidates(name, parent)
            .into_iter()
            .find(|p| p.is_file())
        else {
            return Cow::Borrowed(name);
        };
        let mut joined = path.display().to_string();
        if dotenv::is_env_file_name(parent) && !dotenv::is_env_file_name(&joined) {
            joined.push_str(IN_ENV);
        }
        self.lock().entry(joined.clone()).or_insert(SourceFile {
            path,
            text: String::new(),
        });
        Cow::Owned(joined)
    }

    /// The environment's loader: the text of a template `join` found.
    pub fn load(&self, name: &str) -> Result<Option<String>, Error> {
        let Some(path) = self.source(name).map(|s| s.path) else {
            return match refusal(name) {
                Some(why) => Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("template name `{name}` is refused: {why}"),
                )),
                None => Ok(None),
            };
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("cannot read `{}`: {e}", path.display()),
            )
        })?;
        self.lock().insert(
            name.to_string(),
            SourceFile {
                path,
                text: text.clone(),
            },
        );
        Ok(Some(text))
    }
}

/// Whether a template's name says it is quoted for `.env` files.
pub fn is_env_template(name: &str) -> bool {
    name.ends_with(IN_ENV) || dotenv::is_env_file_name(name)
}

/// The name of a template as shown to people (without the `.env` mark).
pub fn display_name(name: &str) -> &str {
    name.strip_suffix(IN_ENV).unwrap_or(name)
}

/// One `{% include %}`-like tag of a template's text.
#[derive(Debug, PartialEq, Eq)]
pub struct Reference {
    /// The tag, `{%` to `%}`, in the template's text.
    pub span: std::ops::Range<usize>,
    /// The literal names it gives (`include ["a", "b"]` gives several).
    pub names: Vec<String>,
    /// Names a variable: which template is known only when rendering.
    pub dynamic: bool,
    /// `ignore missing`: a missing template is no error.
    pub ignore_missing: bool,
}

/// The templates a template's text names, in order (`{% raw %}` blocks and comments aside).
pub fn references(text: &str) -> Vec<Reference> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(open) = next_open(text, at) {
        if text[open..].starts_with("{#") {
            at = text[open..]
                .find("#}")
                .map_or(text.len(), |end| open + end + 2);
            continue;
        }
        let Some(close) = text[open..].find("%}").map(|end| open + end + 2) else {
            break;
        };
        let inner = text[open + 2..close - 2].trim_matches(['-', '+']).trim();
        let (word, rest) = inner.split_once(char::is_whitespace).unwrap_or((inner, ""));
        at = close;
        match word {
            "raw" => {
                at = raw_end(text, close);
            }
            "include" | "import" | "from" | "extends" => {
                let rest = rest.trim_start();
                let (names, literal) = string_literals(rest);
                found.push(Reference {
                    span: open..close,
                    names,
                    dynamic: !literal,
                    ignore_missing: word == "include" && rest.contains("ignore missing"),
                });
            }
            _ => {}
        }
    }
    found
}

/// The next `{%` or `{#` at or after `at`.
fn next_open(text: &str, at: usize) -> Option<usize> {
    let tag = text[at..].find("{%").map(|i| at + i);
    let comment = text[at..].find("{#").map(|i| at + i);
    match (tag, comment) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    }
}

/// Where the `{% endraw %}` closing a raw block that starts at `from` ends.
fn raw_end(text: &str, from: usize) -> usize {
    let mut at = from;
    while let Some(i) = text[at..].find("{%") {
        let open = at + i;
        let Some(close) = text[open..].find("%}").map(|e| open + e + 2) else {
            return text.len();
        };
        if text[open + 2..close - 2].trim_matches(['-', '+']).trim() == "endraw" {
            return close;
        }
        at = close;
    }
    text.len()
}

/// The string literals a tag's argument starts with (one, or a `[…]` list of them), and
/// whether it is only that (else it is an expression known only when rendering).
fn string_literals(rest: &str) -> (Vec<String>, bool) {
    let mut names = Vec::new();
    let (list, mut s) = match rest.strip_prefix('[') {
        Some(inner) => (true, inner),
        None => (false, rest),
    };
    loop {
        s = s.trim_start();
        let Some(quote) = s.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            return (names, false);
        };
        let Some(end) = s[1..].find(quote) else {
            return (names, false);
        };
        let literal = &s[1..1 + end];
        if literal.contains('\\') {
            return (names, false);
        }
        names.push(literal.to_string());
        s = s[end + 2..].trim_start();
        if !list {
            // What follows a single name: nothing, `ignore missing`, `as x`, `import …`, `with(out) context`.
            let next = s.split_whitespace().next().unwrap_or("");
            return (
                names,
                matches!(next, "" | "ignore" | "as" | "import" | "with" | "without"),
            );
        }
        match s.strip_prefix(',') {
            Some(more) => s = more,
            None => {
                return (names, s.starts_with(']'));
            }
        }
    }
}

/// Checks the templates `name` names, directly or through others (each must exist inside the
/// template directories and compile), and returns them, `name` first, with whether one of
/// them names a template known only when rendering.
pub(super) fn named_templates(
    env: &Environment<'static>,
    library: &Library,
    name: &str,
) -> Result<(Vec<String>, bool), InputError> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut order = Vec::new();
    let mut dynamic = false;
    let mut todo = vec![name.to_string()];
    while let Some(next) = todo.pop() {
        if !seen.insert(next.clone()) {
            continue;
        }
        order.push(next.clone());
        let Some(source) = library.source(&next) else {
            continue;
        };
        for reference in references(&source.text) {
            dynamic |= reference.dynamic;
            let optional = reference.ignore_missing || reference.names.len() > 1;
            for wanted in &reference.names {
                let at = |message: String| source.error_at_span(reference.span.clone(), message);
                if let Some(why) = refusal(wanted) {
                    return Err(at(format!("template name `{wanted}` is refused: {why}"))
                        .with_hint(LOOKUP_HINT));
                }
                let joined = library.join(wanted, &next).into_owned();
                match env.get_template(&joined) {
                    Ok(_) => todo.push(joined),
                    Err(e) if e.kind() == ErrorKind::TemplateNotFound => {
                        if optional {
                            continue;
                        }
                        let tried: Vec<String> = library
                            .candidates(wanted, &next)
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect();
                        return Err(at(format!("template `{wanted}` not found"))
                            .with_hint(format!("{}; tried {}", LOOKUP_HINT, tried.join(", "))));
                    }
                    Err(e) => {
                        let inner = library
                            .source(&joined)
                            .filter(|s| !s.text.is_empty())
                            .unwrap_or(source.clone());
                        return Err(super::template_error(&inner, &e, None));
                    }
                }
            }
        }
    }
    Ok((order, dynamic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_leave_the_template_directories_are_refused() {
        for (name, why) in [
            ("../../etc/passwd", "it contains `..`"),
            ("templates/../../x", "it contains `..`"),
            ("/etc/passwd", "it is an absolute path"),
            ("~/x", "it starts with `~`"),
            ("", "it is empty"),
        ] {
            assert_eq!(refusal(name), Some(why), "{name}");
        }
        for name in ["common.j2", "nginx/common.conf.j2", "./a.j2", "a..b.j2"] {
            assert_eq!(refusal(name), None, "{name}");
        }
    }

    #[test]
    fn references_are_found_outside_raw_blocks_and_comments() {
        let text = "{% include \"a.j2\" %}\n{# {% include \"no.j2\" %} #}\n{% raw %}{% include \"raw.j2\" %}{% endraw %}\n{%- import 'm.j2' as m -%}\n{% from \"f.j2\" import x %}\n{% include name %}\n{% include ['b.j2', \"c.j2\"] ignore missing %}\n{% if x %}{{ x }}{% endif %}";
        let refs = references(text);
        let summary: Vec<(Vec<String>, bool, bool)> = refs
            .iter()
            .map(|r| (r.names.clone(), r.dynamic, r.ignore_missing))
            .collect();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            summary,
            [
                (s(&["a.j2"]), false, false),
                (s(&["m.j2"]), false, false),
                (s(&["f.j2"]), false, false),
                (vec![], true, false),
                (s(&["b.j2", "c.j2"]), false, true),
            ]
        );
        assert_eq!(&text[refs[0].span.clone()], "{% include \"a.j2\" %}");
        // An expression built from a literal is known only when rendering.
        assert!(references("{% include 'a' ~ x %}")[0].dynamic);
    }
}

#[cfg(test)]
mod renderer_tests {
    use std::path::Path;

    use crate::diagnostic::SourceFile;
    use crate::playbook::Playbook;
    use crate::template::Renderer;

    /// A project: `playbooks/pb.toml` with one template step for `src`, and `files`.
    fn project(files: &[(&str, &str)], src: &str) -> (tempfile::TempDir, Playbook) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("playbooks")).unwrap();
        let pb = Playbook::parse(SourceFile {
            path: dir.path().join("playbooks/pb.toml"),
            text: format!(
                "name = \"t\"\napp = \"a\"\n[[steps]]\ntemplate = {{ src = \"{src}\", dest = \"/srv/x\" }}\n"
            ),
        })
        .unwrap();
        (dir, pb)
    }

    fn located(dir: &Path, file: &str) -> String {
        crate::paths::normalize(&dir.join("playbooks/..").join(file))
            .display()
            .to_string()
    }

    #[test]
    fn include_and_import_are_looked_up_beside_the_template_then_in_the_playbook_dirs() {
        let (_dir, pb) = project(
            &[
                (
                    "templates/site.conf.j2",
                    "{% import \"macros.j2\" as m %}{% from \"templates/macros.j2\" import port %}server {\n{% include \"nginx/common.conf.j2\" %}\n{{ m.listen(port_of) }}{{ port(1) }}\n}\n",
                ),
                ("templates/nginx/common.conf.j2", "  # {{ instance }}\n"),
                (
                    "templates/macros.j2",
                    "{% macro listen(p) %}  listen {{ p }};{% endmacro %}{% macro port(n) %} # {{ 8000 + n }}{% endmacro %}",
                ),
            ],
            "templates/site.conf.j2",
        );
        let r = Renderer::new(&pb).unwrap();
        let out = r
            .render_file(
                "templates/site.conf.j2",
                &minijinja::context! { instance => "stable", port_of => 8001 },
            )
            .unwrap();
        assert_eq!(out, "server {\n  # stable\n\n  listen 8001; # 8001\n}\n");
        // What the included template reads counts as read by the playbook's template.
        let names = r.file_names_read("templates/site.conf.j2");
        assert!(
            names.contains("instance") && names.contains("port_of"),
            "{names:?}"
        );
        assert!(!r.file_uses_secrets("templates/site.conf.j2"));
    }

    #[test]
    fn a_name_leaving_the_template_dirs_is_refused_where_it_is_written() {
        for (name, why) in [
            ("../../etc/passwd", "it contains `..`"),
            ("/etc/passwd", "it is an absolute path"),
        ] {
            let (dir, pb) = project(
                &[(
                    "templates/t.j2",
                    &format!("a\n  {{% include \"{name}\" %}}\n"),
                )],
                "templates/t.j2",
            );
            let err = Renderer::new(&pb).err().unwrap();
            assert_eq!(
                err.message,
                format!("template name `{name}` is refused: {why}")
            );
            assert!(
                err.to_string()
                    .starts_with(&format!("{}:2:3:", located(dir.path(), "templates/t.j2"))),
                "{err}"
            );
            assert!(
                err.hint
                    .as_deref()
                    .unwrap()
                    .contains("cannot name a file outside")
            );
        }
        // Known only when rendering: the loader refuses it then.
        let (_dir, pb) = project(
            &[("templates/t.j2", "a\n{% include name %}\n")],
            "templates/t.j2",
        );
        let r = Renderer::new(&pb).unwrap();
        let err = r
            .render_file(
                "templates/t.j2",
                &minijinja::context! { name => "../../etc/passwd" },
            )
            .unwrap_err();
        assert!(
            err.message.contains("is refused: it contains `..`"),
            "{err}"
        );
        assert!(err.to_string().contains("t.j2:2:"), "{err}");
    }

    #[test]
    fn a_missing_template_is_an_error_at_the_tag_naming_the_places_tried() {
        let (dir, pb) = project(
            &[(
                "templates/t.j2",
                "x\n{% include \"nope.j2\" %}\n{% include \"gone.j2\" ignore missing %}\n",
            )],
            "templates/t.j2",
        );
        let err = Renderer::new(&pb).err().unwrap();
        assert_eq!(err.message, "template `nope.j2` not found");
        assert!(
            err.to_string()
                .starts_with(&format!("{}:2:1:", located(dir.path(), "templates/t.j2"))),
            "{err}"
        );
        let hint = err.hint.clone().unwrap();
        assert!(
            hint.contains(&located(dir.path(), "templates/nope.j2"))
                && hint.contains(&located(dir.path(), "playbooks/nope.j2"))
                && hint.contains(&located(dir.path(), "nope.j2")),
            "{hint}"
        );
    }

    #[test]
    fn an_error_inside_an_included_template_names_that_file_and_line() {
        let (dir, pb) = project(
            &[
                ("templates/t.j2", "top\n{% include \"inner.j2\" %}\n"),
                ("templates/inner.j2", "one\nport={{ nginx_port }}\n"),
            ],
            "templates/t.j2",
        );
        let r = Renderer::new(&pb).unwrap();
        let err = r
            .render_file("templates/t.j2", &minijinja::context! {})
            .unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "{}:2:9: undefined variable `nginx_port` in template `{}`",
                located(dir.path(), "templates/inner.j2"),
                located(dir.path(), "templates/inner.j2")
            )),
            "{err}"
        );
        // A syntax error in it is found when the playbook's templates are read.
        let (dir, pb) = project(
            &[
                ("templates/t.j2", "{% include \"inner.j2\" %}\n"),
                ("templates/inner.j2", "ok\n{% if %}\n"),
            ],
            "templates/t.j2",
        );
        let err = Renderer::new(&pb).err().unwrap();
        assert!(
            err.to_string()
                .starts_with(&format!("{}:2:", located(dir.path(), "templates/inner.j2"))),
            "{err}"
        );
    }

    #[test]
    fn a_template_included_by_an_env_template_is_quoted_and_its_secrets_count() {
        let (_dir, pb) = project(
            &[
                (
                    "templates/env.j2",
                    "{% import \"kv.j2\" as m %}A={{ a }}\n{% include \"db.j2\" %}{{ m.kv('B', a) }}\n",
                ),
                ("templates/db.j2", "DB_PASSWORD={{ secrets.pw }}\n"),
                (
                    "templates/kv.j2",
                    "{% macro kv(k, v) %}{{ k }}={{ v }}{% endmacro %}",
                ),
            ],
            "templates/env.j2",
        );
        let r = Renderer::new(&pb).unwrap();
        let out = r
            .render_file(
                "templates/env.j2",
                &minijinja::context! { a => "x y", secrets => minijinja::context! { pw => "p\nINJECTED=1" } },
            )
            .unwrap();
        assert_eq!(out, "A='x y'\nDB_PASSWORD='p\nINJECTED=1'\nB='x y'\n");
        assert!(r.file_uses_secrets("templates/env.j2"));
    }
}
