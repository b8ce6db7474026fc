//! Rendering with minijinja: template files, templated playbook fields, `when` expressions.

mod dotenv;
mod include;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};

use crate::diagnostic::{InputError, SourceFile};
use crate::playbook::{Playbook, StepKind, Templated};

/// Holds every template file of a playbook, compiled once, shared by all hosts, and the
/// templates they name (`{% include %}`, `{% import %}`, …; see `include`).
pub struct Renderer {
    env: Environment<'static>,
    /// Template name → its file, to point errors at lines (included templates too).
    library: Arc<include::Library>,
    /// A playbook template's name → the templates it names, itself first, directly or not;
    /// and whether one of them names a template only known when rendering.
    closures: BTreeMap<String, (Vec<String>, bool)>,
}

impl Renderer {
    pub fn new(playbook: &Playbook) -> Result<Self, InputError> {
        let library = include::Library::new(playbook.bases.clone());
        let mut env = new_environment();
        let joins = library.clone();
        env.set_path_join_callback(move |name, parent| joins.join(name, parent));
        let loads = library.clone();
        env.set_loader(move |name| loads.load(name));
        let mut closures = BTreeMap::new();
        for step in &playbook.steps {
            let StepKind::Template(f) = &step.kind else {
                continue;
            };
            // The file, or each file of its directory.
            for (name, path, content) in f.template_sources() {
                if closures.contains_key(&name) {
                    continue;
                }
                let text = String::from_utf8(content.to_vec()).map_err(|_| {
                    playbook
                        .file
                        .error_at(
                            f.src_span.clone(),
                            format!("template `{name}` is not UTF-8 text"),
                        )
                        .with_hint("use a `copy` step for binary files")
                })?;
                let source = SourceFile {
                    path: path.to_path_buf(),
                    text: text.clone(),
                };
                if let Err(e) = env.add_template_owned(name.clone(), text) {
                    return Err(template_error(&source, &e, None));
                }
                library.add(&name, source);
                let closure = include::named_templates(&env, &library, &name)?;
                closures.insert(name, closure);
            }
        }
        Ok(Self {
            env,
            library,
            closures,
        })
    }

    /// Renders a template file for one host.
    pub fn render_file(&self, name: &str, ctx: &Value) -> Result<String, InputError> {
        let tmpl = self
            .env
            .get_template(name)
            .map_err(|e| InputError::plain(format!("template `{name}`: {e}")))?;
        let source = self
            .library
            .source(name)
            .ok_or_else(|| InputError::plain(format!("template `{name}` is not loaded")))?;
        let rendered = tmpl
            .render(ctx)
            .map_err(|e| self.file_error(&source, &e, ctx))?;
        dotenv::finish(rendered).map_err(|partial| partial_value_error(&source, &partial))
    }

    /// Renders a templated playbook string field (`dest`, `run`, …) for one host.
    pub fn render_field(
        &self,
        field: &Templated,
        ctx: &Value,
        playbook: &SourceFile,
    ) -> Result<String, InputError> {
        let text = field.get_ref();
        if !has_template_syntax(text) {
            return Ok(text.clone());
        }
        let tmpl = self
            .env
            .template_from_str(text)
            .map_err(|e| field_error(playbook, field, &e, None))?;
        let rendered = tmpl.render(ctx).map_err(|e| {
            let missing = undefined_variable(&tmpl.undeclared_variables(true), ctx, &e, text);
            field_error(playbook, field, &e, missing)
        })?;
        // An included `.env` template brackets its quoted values: check and remove them.
        let rendered = dotenv::finish(rendered).map_err(|partial| {
            playbook.error_at(
                field.span(),
                format!(
                    "`{}`: a quoted .env value is only part of a value",
                    partial.key
                ),
            )
        })?;
        // What is rendered is a path, an address or a command: template syntax left in it came
        // from data (--var, a secret, a variable holding braces), never meant as a file name.
        // Fields reading secrets (passwords) may hold anything; `{% raw %}` says "literally".
        if let Some(delimiter) = leftover_delimiter(&rendered)
            && !has_raw_block(text)
            && !self.names_read(field).contains("secrets")
        {
            return Err(playbook
                .error_at(
                    field.span(),
                    format!("the value still contains `{delimiter}` after rendering"),
                )
                .with_hint(LEFTOVER_HINT));
        }
        Ok(rendered)
    }

    /// The top-level names (variables and built-ins) a templated field reads.
    pub fn names_read(&self, field: &Templated) -> HashSet<String> {
        self.env
            .template_from_str(field.get_ref())
            .map(|t| t.undeclared_variables(false))
            .unwrap_or_default()
    }

    /// The top-level names a `when` expression reads.
    pub fn expression_names_read(&self, expr: &Templated) -> HashSet<String> {
        self.env
            .compile_expression(expr.get_ref())
            .map(|e| e.undeclared_variables(false))
            .unwrap_or_default()
    }

    /// The top-level names the named template file reads, itself or through the templates it
    /// names.
    pub fn file_names_read(&self, name: &str) -> HashSet<String> {
        let single = [name.to_string()];
        let names = self.closures.get(name).map_or(&single[..], |(c, _)| c);
        names
            .iter()
            .filter_map(|n| self.env.get_template(n).ok())
            .flat_map(|t| t.undeclared_variables(false))
            .collect()
    }

    /// An error while rendering a template file, located where it happened: in the file, or
    /// in a template it includes (minijinja wraps that one in an "error in …").
    fn file_error(&self, top: &SourceFile, error: &minijinja::Error, ctx: &Value) -> InputError {
        let mut inner = error;
        while inner.kind() == ErrorKind::BadInclude
            && let Some(cause) =
                std::error::Error::source(inner).and_then(|c| c.downcast_ref::<minijinja::Error>())
        {
            inner = cause;
        }
        let source = inner
            .name()
            .and_then(|n| self.library.source(n))
            .filter(|s| !s.text.is_empty())
            .unwrap_or_else(|| top.clone());
        let declared = inner
            .name()
            .and_then(|n| self.env.get_template(n).ok())
            .map(|t| t.undeclared_variables(true))
            .unwrap_or_default();
        let missing = undefined_variable(&declared, ctx, inner, &source.text);
        template_error(&source, inner, missing)
    }

    /// Evaluates a `when` expression for one host.
    pub fn eval_when(
        &self,
        expr: &Templated,
        ctx: &Value,
        playbook: &SourceFile,
    ) -> Result<bool, InputError> {
        self.eval_expression(expr, ctx, playbook)
            .map(|v| v.is_true())
    }

    /// Evaluates an expression (`when`, `loop`) for one host.
    pub fn eval_expression(
        &self,
        expr: &Templated,
        ctx: &Value,
        playbook: &SourceFile,
    ) -> Result<Value, InputError> {
        let compiled = self
            .env
            .compile_expression(expr.get_ref())
            .map_err(|e| field_error(playbook, expr, &e, None))?;
        compiled.eval(ctx).map_err(|e| {
            let missing = undefined_variable(
                &compiled.undeclared_variables(true),
                ctx,
                &e,
                expr.get_ref(),
            );
            field_error(playbook, expr, &e, missing)
        })
    }

    /// True when the named template file reads `secrets`, itself or through a template it
    /// names (or names a template known only when rendering, which might).
    pub fn file_uses_secrets(&self, name: &str) -> bool {
        self.closures.get(name).is_some_and(|(_, dynamic)| *dynamic)
            || self.file_names_read(name).contains("secrets")
    }
}

/// The top-level names a templated string reads (none when it does not compile: rendering
/// reports that).
pub fn names_in_text(text: &str) -> HashSet<String> {
    if !has_template_syntax(text) {
        return HashSet::new();
    }
    let env = Environment::new();
    env.template_from_str(text)
        .map(|t| t.undeclared_variables(false))
        .unwrap_or_default()
}

/// The top-level names an expression (`when`, `loop`) reads.
pub fn names_in_expression(expr: &str) -> HashSet<String> {
    let env = Environment::new();
    env.compile_expression(expr)
        .map(|e| e.undeclared_variables(false))
        .unwrap_or_default()
}

/// True when `text` holds template syntax (`{{ }}` or `{% %}`) to render.
pub fn has_template_syntax(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// The template delimiter still in a rendered value, if any.
pub fn leftover_delimiter(rendered: &str) -> Option<&'static str> {
    ["{{", "{%"].into_iter().find(|d| rendered.contains(d))
}

/// True when a field's source has a `{% raw %}` block: its braces are meant literally.
fn has_raw_block(text: &str) -> bool {
    text.match_indices("{%").any(|(i, _)| {
        text[i + 2..]
            .trim_start_matches(['-', '+'])
            .trim_start()
            .starts_with("raw")
    })
}

const LEFTOVER_HINT: &str = "template syntax came from a value: --var values are data, never rendered, and so are secrets; braces meant literally (e.g. docker's --format '{{.Names}}') go inside {% raw %}…{% endraw %} in this field";

/// A quoted `.env` value inside a longer value: points at the key's line in the template.
fn partial_value_error(source: &SourceFile, partial: &dotenv::PartialValue) -> InputError {
    let key = &partial.key;
    let offset = source
        .text
        .match_indices(key.as_str())
        .map(|(i, _)| i)
        .find(|&i| !key.is_empty() && (i == 0 || source.text[..i].ends_with(['\n', ' '])))
        .unwrap_or(0);
    let message = if key == "#" {
        "a value spanning several lines is written in a comment, where its other lines would be read as settings".to_string()
    } else {
        format!(
            "`{key}`: a value that needs quotes is only part of this .env value, so Compose would read the quotes as part of it"
        )
    };
    source
        .error_at_span(offset..offset + key.len(), message)
        .with_hint("build the whole value in one expression, e.g. DATABASE_URL={{ 'postgres://app:' ~ secrets.db_password ~ '@db/app' }}, or write the part with `| safe` if it never holds quotes, spaces, `#`, `$` or newlines")
}

fn new_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Config files must keep their final newline.
    env.set_keep_trailing_newline(true);
    // `.env` templates quote every `{{ … }}` for dotenv, so a value cannot add lines.
    env.set_auto_escape_callback(|name| {
        if include::is_env_template(name) {
            dotenv::DOTENV
        } else {
            dotenv::auto_escape_for(name)
        }
    });
    env.set_formatter(dotenv::formatter);
    env
}

/// The first variable the template reads that the context cannot resolve, preferring one
/// named on the failing line.
pub(crate) fn undefined_variable(
    declared: &std::collections::HashSet<String>,
    ctx: &Value,
    error: &minijinja::Error,
    source: &str,
) -> Option<String> {
    if error.kind() != ErrorKind::UndefinedError {
        return None;
    }
    let mut missing: Vec<&String> = declared
        .iter()
        .filter(|path| !resolves(ctx, path))
        .collect();
    missing.sort();
    let line = error
        .line()
        .and_then(|l| source.lines().nth(l.saturating_sub(1)))
        .unwrap_or("");
    missing
        .iter()
        .find(|m| line.contains(m.as_str()))
        .or_else(|| missing.first())
        .map(|m| m.to_string())
}

fn resolves(ctx: &Value, path: &str) -> bool {
    let mut value = ctx.clone();
    for part in path.split('.') {
        match value.get_attr(part) {
            Ok(v) if !v.is_undefined() => value = v,
            _ => return false,
        }
    }
    true
}

pub(crate) const UNDEFINED_HINT: &str = "define it in the inventory ([vars], a group or a host), the playbook's [vars], the step's `vars`, or with --var NAME=VALUE; secrets are `secrets.NAME`";

/// Names set only in a step with `loop`.
pub const LOOP_NAMES: [&str; 2] = ["item", "loop_index"];

/// The hint for an undefined variable: where variables come from, or where `item` does.
pub(crate) fn undefined_hint(var: &str) -> &'static str {
    let top = var.split('.').next().unwrap_or(var);
    if LOOP_NAMES.contains(&top) {
        "`item` and `loop_index` are set only in a step with `loop` (and its `vars`, `when` and template file)"
    } else {
        UNDEFINED_HINT
    }
}

fn template_error(
    source: &SourceFile,
    error: &minijinja::Error,
    missing: Option<String>,
) -> InputError {
    let message = match &missing {
        Some(var) => format!(
            "undefined variable `{var}` in template `{}`",
            include::display_name(error.name().unwrap_or("?"))
        ),
        None => format!("template error: {}", error_summary(error)),
    };
    let err = match error.range() {
        Some(range) => source.error_at_span(range, message),
        None => {
            let line = error.line().unwrap_or(1);
            let offset: usize = source
                .text
                .lines()
                .take(line - 1)
                .map(|l| l.len() + 1)
                .sum();
            source.error_at_span(offset..offset, message)
        }
    };
    match missing {
        Some(var) => err.with_hint(undefined_hint(&var)),
        None if error.kind() == ErrorKind::TemplateNotFound
            || error
                .detail()
                .is_some_and(|d| d.starts_with("template name")) =>
        {
            err.with_hint(include::LOOKUP_HINT)
        }
        None => err,
    }
}

fn field_error(
    playbook: &SourceFile,
    field: &Templated,
    error: &minijinja::Error,
    missing: Option<String>,
) -> InputError {
    let message = match &missing {
        Some(var) => format!("undefined variable `{var}`"),
        None => format!("template error: {}", error_summary(error)),
    };
    let err = playbook.error_at(field.span(), message);
    match missing {
        Some(var) => err.with_hint(undefined_hint(&var)),
        None => err,
    }
}

fn error_summary(error: &minijinja::Error) -> String {
    match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn playbook_with_template(dir: &Path, template: &str) -> Playbook {
        std::fs::write(dir.join("t.j2"), template).unwrap();
        Playbook::parse(SourceFile {
            path: dir.join("pb.toml"),
            text: "name = \"t\"\napp = \"a\"\n[[steps]]\ntemplate = { src = \"t.j2\", dest = \"{{ app_dir }}/x\" }\n".into(),
        })
        .unwrap()
    }

    #[test]
    fn renders_keeping_the_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        let pb = playbook_with_template(dir.path(), "a={{ a }}\n");
        let r = Renderer::new(&pb).unwrap();
        let out = r
            .render_file("t.j2", &minijinja::context! { a => 1 })
            .unwrap();
        assert_eq!(out, "a=1\n");
    }

    #[test]
    fn undefined_variable_names_template_line_and_variable() {
        let dir = tempfile::tempdir().unwrap();
        let pb = playbook_with_template(dir.path(), "ok={{ a }}\nport={{ nginx_port }}\n");
        let r = Renderer::new(&pb).unwrap();
        let err = r
            .render_file("t.j2", &minijinja::context! { a => 1 })
            .unwrap_err();
        let path = dir.path().join("t.j2");
        assert_eq!(
            err.to_string(),
            format!(
                "{}:2:9: undefined variable `nginx_port` in template `t.j2`\n  |\n2 | port={{{{ nginx_port }}}}\n  |         ^^^^^^^^^^\n  hint: {UNDEFINED_HINT}",
                path.display()
            )
        );
    }

    #[test]
    fn undefined_nested_secret_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let pb = playbook_with_template(dir.path(), "K={{ secrets.django_key }}\n");
        let r = Renderer::new(&pb).unwrap();
        let ctx = minijinja::context! { secrets => minijinja::context! { other => "x" } };
        let err = r.render_file("t.j2", &ctx).unwrap_err();
        assert!(
            err.message
                .contains("undefined variable `secrets.django_key`"),
            "{err}"
        );
        assert!(r.file_uses_secrets("t.j2"));
    }

    #[test]
    fn field_errors_point_into_the_playbook() {
        let dir = tempfile::tempdir().unwrap();
        let pb = playbook_with_template(dir.path(), "x\n");
        let r = Renderer::new(&pb).unwrap();
        let StepKind::Template(f) = &pb.steps[0].kind else {
            panic!()
        };
        let err = r
            .render_field(&f.dest, &minijinja::context! {}, &pb.file)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("pb.toml:4:35: undefined variable `app_dir`"),
            "{err}"
        );
        assert_eq!(err.key.as_deref(), Some("steps.0.template.dest"));
    }

    #[test]
    fn template_syntax_left_after_rendering_is_refused_unless_raw() {
        let dir = tempfile::tempdir().unwrap();
        let pb = playbook_with_template(dir.path(), "x\n");
        let r = Renderer::new(&pb).unwrap();
        let field = |text: &str| Templated::new(0..1, text.to_string());
        let ctx = minijinja::context! { app_dir => "/srv/{{ base }}", fmt => "{{.Names}}" };
        let err = r
            .render_field(&field("{{ app_dir }}/x"), &ctx, &pb.file)
            .unwrap_err();
        assert!(
            err.message
                .contains("the value still contains `{{` after rendering"),
            "{err}"
        );
        let err = r
            .render_field(&field("{{ '{%' }} x"), &ctx, &pb.file)
            .unwrap_err();
        assert!(err.message.contains("`{%`"), "{err}");
        assert_eq!(
            r.render_field(
                &field("docker ps --format '{% raw %}{{.Names}}{% endraw %}'"),
                &ctx,
                &pb.file
            )
            .unwrap(),
            "docker ps --format '{{.Names}}'"
        );
    }

    #[test]
    fn syntax_error_names_the_template_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.j2"), "a\n{% if %}\n").unwrap();
        let pb = Playbook::parse(SourceFile {
            path: dir.path().join("pb.toml"),
            text: "name = \"t\"\napp = \"a\"\n[[steps]]\ntemplate = { src = \"t.j2\", dest = \"/x\" }\n".into(),
        })
        .unwrap();
        let err = Renderer::new(&pb).err().unwrap();
        assert!(
            err.to_string()
                .starts_with(&format!("{}:2:", dir.path().join("t.j2").display())),
            "{err}"
        );
        assert!(err.message.contains("syntax error"), "{err}");
    }

    #[test]
    fn env_templates_quote_every_value_unless_marked_safe() {
        let mut env = new_environment();
        let source = "A={{ v }}\nB={{ v | safe }}\nC={{ port }}\n";
        env.add_template("templates/env.j2", source).unwrap();
        env.add_template("templates/app.conf.j2", source).unwrap();
        let ctx = minijinja::context! { v => "x\nINJECTED=1", port => 8000 };
        assert_eq!(
            dotenv::finish(
                env.get_template("templates/env.j2")
                    .unwrap()
                    .render(&ctx)
                    .unwrap()
            )
            .unwrap(),
            "A='x\nINJECTED=1'\nB=x\nINJECTED=1\nC=8000\n"
        );
        assert_eq!(
            env.get_template("templates/app.conf.j2")
                .unwrap()
                .render(&ctx)
                .unwrap(),
            "A=x\nINJECTED=1\nB=x\nINJECTED=1\nC=8000\n"
        );
    }

    #[test]
    fn quoted_env_value_inside_a_longer_value_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("env.j2"),
            "A=1\nDATABASE_URL=postgres://app:{{ pw }}@db/app\n",
        )
        .unwrap();
        let pb = Playbook::parse(SourceFile {
            path: dir.path().join("pb.toml"),
            text: "name = \"t\"\napp = \"a\"\n[[steps]]\ntemplate = { src = \"env.j2\", dest = \"/x/.env\" }\n".into(),
        })
        .unwrap();
        let r = Renderer::new(&pb).unwrap();
        let plain = r.render_file("env.j2", &minijinja::context! { pw => "s3cret" });
        assert_eq!(
            plain.unwrap(),
            "A=1\nDATABASE_URL=postgres://app:s3cret@db/app\n"
        );
        let err = r
            .render_file("env.j2", &minijinja::context! { pw => "p w#1" })
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "{}:2:1: `DATABASE_URL`: a value that needs quotes is only part of this .env value",
                dir.path().join("env.j2").display()
            )),
            "{text}"
        );
        assert!(!text.contains("p w#1"), "{text}");
    }
}
