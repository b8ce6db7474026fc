//! A step's own `vars` and its `loop`, parsed and checked: `item` and `loop_index` only where
//! a loop sets them, no step variable named like a built-in.

use std::ops::Range;
use std::sync::Arc;

use indexmap::IndexMap;
use toml::Spanned;

use crate::diagnostic::{InputError, SourceFile};
use crate::steps::Templated;
use crate::template::{LOOP_NAMES, names_in_expression, names_in_text};
use crate::vars::{self, BUILT_INS, Vars};

/// `loop`: what a step runs once per item of, on each host.
#[derive(Debug, Clone)]
pub enum Loop {
    /// A list written in the playbook; strings in it are rendered per host.
    Items {
        items: Vec<toml::Value>,
        span: Range<usize>,
    },
    /// `"{{ expression }}"`: the expression (without braces, spanning the whole string), a
    /// list evaluated per host, e.g. `"{{ instances }}"` or `"{{ range(3) }}"`.
    Expression(Templated),
}

const LOOP_HINT: &str = "write a list, e.g. loop = [\"latest\", \"stable\"], or one expression giving a list, e.g. loop = \"{{ instances }}\"";

impl Loop {
    pub(super) fn parse(file: &SourceFile, raw: Spanned<toml::Value>) -> Result<Self, InputError> {
        let span = raw.span();
        match raw.into_inner() {
            toml::Value::Array(items) if items.is_empty() => Err(file
                .error_at(span, "`loop` is an empty list: the step would never run")
                .with_hint("give it items, or remove the step")),
            toml::Value::Array(items) => Ok(Self::Items { items, span }),
            toml::Value::String(text) => match whole_expression(&text) {
                Some(expr) => Ok(Self::Expression(Spanned::new(span, expr.to_string()))),
                None => Err(file
                    .error_at(
                        span,
                        format!(
                            "`loop` is a string, `{text}`, not a list or one `{{{{ expression }}}}`"
                        ),
                    )
                    .with_hint(LOOP_HINT)),
            },
            other => Err(file
                .error_at(
                    span,
                    format!("`loop` must be a list, not {}", other.type_str()),
                )
                .with_hint(LOOP_HINT)),
        }
    }

    /// The templated strings in it: the expression, or the strings of the list's items.
    pub fn names_read(&self) -> std::collections::HashSet<String> {
        match self {
            Self::Expression(expr) => names_in_expression(expr.get_ref()),
            Self::Items { items, .. } => {
                let mut texts = Vec::new();
                items.iter().for_each(|v| strings(v, &mut texts));
                texts.into_iter().flat_map(names_in_text).collect()
            }
        }
    }
}

/// The expression of a string that is exactly one `{{ … }}`.
fn whole_expression(text: &str) -> Option<&str> {
    let inner = text
        .trim()
        .strip_prefix("{{")?
        .strip_suffix("}}")?
        .trim_matches(['-', '+'])
        .trim();
    (!inner.is_empty() && !inner.contains("{{") && !inner.contains("}}")).then_some(inner)
}

fn strings<'v>(value: &'v toml::Value, out: &mut Vec<&'v str>) {
    match value {
        toml::Value::String(s) => out.push(s),
        toml::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        toml::Value::Table(table) => table.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// A step's `vars` table, checked: no name dropship sets itself.
pub(super) fn step_vars(
    file: &Arc<SourceFile>,
    raw: Option<IndexMap<String, Spanned<toml::Value>>>,
) -> Result<Vars, InputError> {
    let raw = raw.unwrap_or_default();
    for (name, value) in &raw {
        if BUILT_INS.contains(&name.as_str()) || LOOP_NAMES.contains(&name.as_str()) {
            return Err(file
                .error_at(
                    value.span(),
                    format!("`{name}` is set by dropship: a step variable cannot be named so"),
                )
                .with_hint("give the variable another name"));
        }
    }
    Ok(vars::from_raw(raw, file))
}

/// Without `loop`, no string of the step may read `item` or `loop_index`: the error points
/// at the first that does.
pub(super) fn check_loop_names_outside_a_loop(
    file: &SourceFile,
    vars: &Vars,
    fields: &[&Templated],
    when: Option<&Templated>,
) -> Result<(), InputError> {
    let mut places: Vec<(Range<usize>, std::collections::HashSet<String>)> = Vec::new();
    for def in vars.values() {
        if let vars::Origin::File { span, .. } = &def.origin {
            let mut texts = Vec::new();
            strings(&def.value, &mut texts);
            places.push((
                span.clone(),
                texts.into_iter().flat_map(names_in_text).collect(),
            ));
        }
    }
    for field in fields {
        places.push((field.span(), names_in_text(field.get_ref())));
    }
    if let Some(when) = when {
        places.push((when.span(), names_in_expression(when.get_ref())));
    }
    places.sort_by_key(|(span, _)| span.start);
    for (span, names) in places {
        if let Some(name) = LOOP_NAMES.iter().find(|n| names.contains(**n)) {
            return Err(file
                .error_at(span, format!("`{name}` is used outside a loop"))
                .with_hint(
                    "`item` and `loop_index` are set only in a step with `loop`: add e.g. loop = [\"a\", \"b\"] to this step",
                ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_string_must_be_one_expression() {
        assert_eq!(whole_expression("{{ instances }}"), Some("instances"));
        assert_eq!(whole_expression(" {{- range(3) -}} "), Some("range(3)"));
        assert_eq!(whole_expression("{{ a }} {{ b }}"), None);
        assert_eq!(whole_expression("a, b"), None);
        assert_eq!(whole_expression("{{ }}"), None);
    }
}
