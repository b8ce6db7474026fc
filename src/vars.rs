//! Variables: each definition with where it was written, merged by precedence and resolved
//! per host — a value may refer to other variables and to the built-ins; a cycle is bad input.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;

use indexmap::IndexMap;
use minijinja::{Environment, UndefinedBehavior, Value};
use toml::Spanned;

use crate::diagnostic::{InputError, SourceFile};
use crate::template::{LOOP_NAMES, UNDEFINED_HINT, has_template_syntax, undefined_variable};

/// Names provided by dropship itself; they win over variables of the same name (`item` and
/// `loop_index` in a step with `loop` only).
pub const BUILT_INS: [&str; 6] = [
    "host",
    "app",
    "secrets",
    "release",
    LOOP_NAMES[0],
    LOOP_NAMES[1],
];

/// Where a variable was defined.
#[derive(Debug, Clone)]
pub enum Origin {
    /// In a TOML file (inventory or playbook); `span` covers the value.
    File {
        file: Arc<SourceFile>,
        span: Range<usize>,
    },
    /// `--var` on the command line: data, never rendered as a template.
    CommandLine,
}

/// A variable's value as written, and where.
#[derive(Debug, Clone)]
pub struct VarDef {
    pub value: toml::Value,
    pub origin: Origin,
}

/// Variables by name, in definition order; a later layer's definition replaces an earlier one.
pub type Vars = IndexMap<String, VarDef>;

/// A `vars` table as deserialized, spans kept to point errors at the definitions.
pub type RawVars = IndexMap<String, Spanned<toml::Value>>;

/// The definitions of a `vars` table of `file`.
pub fn from_raw(raw: RawVars, file: &Arc<SourceFile>) -> Vars {
    raw.into_iter()
        .map(|(name, value)| {
            let span = value.span();
            let def = VarDef {
                value: value.into_inner(),
                origin: Origin::File {
                    file: file.clone(),
                    span,
                },
            };
            (name, def)
        })
        .collect()
}

/// A `--var` value: `true`/`false` become booleans (so `when = "upgrade"` reads
/// `--var upgrade=false` as false); everything else stays a string, never rendered.
pub fn cli_value(text: &str) -> toml::Value {
    match text {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(text.to_string()),
    }
}

/// Which variables the caller will read: an error in any other is not reported (that variable
/// is left out instead), so one inventory serves playbooks that define different secrets.
#[derive(Debug, Clone)]
pub enum Needed {
    All,
    /// Top-level names read by whatever will be rendered; what they read is needed too.
    Names(HashSet<String>),
}

/// A host's variables rendered, with the built-ins, as one template context.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub context: Value,
    /// `(variable, text)`: the rendered strings of variables that carry secret content (they
    /// read `secrets`, directly or through another variable, and change when a secret's text
    /// does, e.g. `{{ secrets.pw | b64encode }}`): secrets too, guarded like the secrets.
    pub derived_secrets: Vec<(String, String)>,
}

struct Node<'a> {
    name: &'a str,
    def: &'a VarDef,
    /// The variables its templates read.
    deps: Vec<usize>,
    /// The built-ins its templates read.
    built_ins: Vec<&'static str>,
    /// It reads `secrets`, itself or through another variable.
    reads_secrets: bool,
}

/// Renders every variable of `vars` whose value holds templates, in dependency order, against
/// the other variables and `built_ins` (which win over variables of the same name). A value
/// from the command line is data and stays as given. A variable reading a built-in this scope
/// lacks (`secrets` or `release` where they are not known yet) is left out.
pub fn resolve(
    vars: &Vars,
    built_ins: IndexMap<String, Value>,
    needed: &Needed,
) -> Result<Resolved, InputError> {
    let env = environment();
    let mut nodes = analyse(vars, &env)?;
    let order = dependency_order(&nodes)?;
    for &index in &order {
        if nodes[index].deps.iter().any(|d| nodes[*d].reads_secrets) {
            nodes[index].reads_secrets = true;
        }
    }
    let wanted = needed_closure(&nodes, needed);
    let absent: Vec<&str> = BUILT_INS
        .iter()
        .copied()
        .filter(|b| !built_ins.contains_key(*b))
        .collect();

    // The same variables rendered with every secret's text changed: a string that differs
    // carries secret content (a flag set from whether a secret is set does not).
    let scrambled_ins = built_ins.get("secrets").map(|secrets| {
        let mut ins = built_ins.clone();
        ins.insert("secrets".into(), scramble(secrets));
        ins
    });
    let mut values: Vec<Option<Value>> = vec![None; nodes.len()];
    let mut scrambled: Vec<Option<Value>> = vec![None; nodes.len()];
    let mut derived_secrets = Vec::new();
    for index in order {
        let node = &nodes[index];
        let deps_ok = node.deps.iter().all(|d| values[*d].is_some());
        let reads_absent = node.built_ins.iter().any(|b| absent.contains(b));
        if !deps_ok || reads_absent {
            continue;
        }
        let ctx = context_for(node, &nodes, &values, &built_ins);
        match render_value(&node.def.value, &node.def.origin, &env, &ctx) {
            Ok(value) => {
                if let (true, Some(ins)) = (node.reads_secrets, &scrambled_ins) {
                    let mixed: Vec<Option<Value>> = values
                        .iter()
                        .zip(&nodes)
                        .zip(&scrambled)
                        .map(|((v, n), s)| {
                            if n.reads_secrets {
                                s.clone()
                            } else {
                                v.clone()
                            }
                        })
                        .collect();
                    let other = node
                        .deps
                        .iter()
                        .all(|d| mixed[*d].is_some())
                        .then(|| context_for(node, &nodes, &mixed, ins))
                        .and_then(|ctx| {
                            render_value(&node.def.value, &node.def.origin, &env, &ctx).ok()
                        });
                    collect_differing(node.name, &value, other.as_ref(), &mut derived_secrets);
                    scrambled[index] = other;
                }
                values[index] = Some(value);
            }
            Err(e) if wanted[index] => return Err(located(node, e)),
            Err(_) => {}
        }
    }

    let mut context: IndexMap<String, Value> = IndexMap::new();
    for (node, value) in nodes.iter().zip(values) {
        if let Some(v) = value {
            context.insert(node.name.to_string(), v);
        }
    }
    context.extend(built_ins);
    Ok(Resolved {
        context: Value::from_iter(context),
        derived_secrets,
    })
}

/// The template context of one variable: the variables it reads and the built-ins.
fn context_for(
    node: &Node<'_>,
    nodes: &[Node<'_>],
    values: &[Option<Value>],
    built_ins: &IndexMap<String, Value>,
) -> Value {
    let mut ctx: IndexMap<String, Value> = node
        .deps
        .iter()
        .filter_map(|d| Some((nodes[*d].name.to_string(), values[*d].clone()?)))
        .collect();
    ctx.extend(built_ins.iter().map(|(k, v)| (k.clone(), v.clone())));
    Value::from_iter(ctx)
}

/// Every secret with each character changed, lengths kept.
fn scramble(secrets: &Value) -> Value {
    let Ok(names) = secrets.try_iter() else {
        return secrets.clone();
    };
    Value::from_iter(names.map(|name| {
        let text = secrets
            .get_item(&name)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let changed: String = text
            .chars()
            .map(|c| if c == 'x' { 'y' } else { 'x' })
            .collect();
        (name.to_string(), Value::from(changed))
    }))
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

/// Each variable with the variables its templates read; syntax errors are reported here,
/// whether the variable is used or not.
fn analyse<'a>(vars: &'a Vars, env: &Environment<'_>) -> Result<Vec<Node<'a>>, InputError> {
    let mut nodes = Vec::with_capacity(vars.len());
    for (name, def) in vars {
        let mut read: HashSet<String> = HashSet::new();
        if !matches!(def.origin, Origin::CommandLine) {
            let mut texts = Vec::new();
            templated_strings(&def.value, &mut texts);
            for text in texts {
                let tmpl = env.template_from_str(text).map_err(|e| {
                    def_error(
                        name,
                        def,
                        format!("variable `{name}`: template error: {}", summary(&e)),
                    )
                })?;
                read.extend(tmpl.undeclared_variables(false));
            }
        }
        let deps = read
            .iter()
            .filter(|n| !BUILT_INS.contains(&n.as_str()))
            .filter_map(|n| vars.get_index_of(n))
            .collect();
        let built_ins: Vec<&'static str> = BUILT_INS
            .iter()
            .copied()
            .filter(|b| read.contains(*b))
            .collect();
        nodes.push(Node {
            name,
            def,
            deps,
            reads_secrets: built_ins.contains(&"secrets"),
            built_ins,
        });
    }
    Ok(nodes)
}

/// Variables ordered so that each comes after those it reads; a cycle is an error naming its
/// variables and where each is defined. Iterative: a long chain cannot overflow the stack.
fn dependency_order(nodes: &[Node<'_>]) -> Result<Vec<usize>, InputError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark = vec![Mark::New; nodes.len()];
    let mut order = Vec::with_capacity(nodes.len());
    for start in 0..nodes.len() {
        if mark[start] != Mark::New {
            continue;
        }
        // (node, index of the next dependency to visit)
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        mark[start] = Mark::Open;
        while let Some((node, next)) = stack.last_mut() {
            let node = *node;
            match nodes[node].deps.get(*next) {
                Some(&dep) => {
                    *next += 1;
                    match mark[dep] {
                        Mark::New => {
                            mark[dep] = Mark::Open;
                            stack.push((dep, 0));
                        }
                        Mark::Open => {
                            let from = stack.iter().position(|(n, _)| *n == dep).unwrap_or(0);
                            let cycle: Vec<usize> = stack[from..].iter().map(|(n, _)| *n).collect();
                            return Err(cycle_error(nodes, cycle));
                        }
                        Mark::Done => {}
                    }
                }
                None => {
                    mark[node] = Mark::Done;
                    order.push(node);
                    stack.pop();
                }
            }
        }
    }
    Ok(order)
}

fn cycle_error(nodes: &[Node<'_>], mut cycle: Vec<usize>) -> InputError {
    // Start at the alphabetically first name, so the message does not depend on file order.
    let first = (0..cycle.len())
        .min_by_key(|i| nodes[cycle[*i]].name)
        .unwrap_or(0);
    cycle.rotate_left(first);
    let mut path: Vec<String> = cycle
        .iter()
        .map(|i| format!("`{}`", nodes[*i].name))
        .collect();
    path.push(path[0].clone());
    let places: Vec<String> = cycle
        .iter()
        .map(|i| {
            format!(
                "`{}` at {}",
                nodes[*i].name,
                describe_origin(&nodes[*i].def.origin)
            )
        })
        .collect();
    let head = &nodes[cycle[0]];
    let message = format!(
        "variables refer to each other in a cycle: {} (defined: {})",
        path.join(" → "),
        places.join(", ")
    );
    def_error(head.name, head.def, message).with_hint(
        "a variable's value cannot depend on itself, even through others; a variable cannot extend a lower layer's value of the same name: give one of them another name",
    )
}

fn describe_origin(origin: &Origin) -> String {
    match origin {
        Origin::File { file, span } => {
            let (line, column) = file.line_col(span.start);
            format!("{}:{line}:{column}", file.path.display())
        }
        Origin::CommandLine => "--var".to_string(),
    }
}

/// Marks the variables needed: those named, and everything they read, transitively.
fn needed_closure(nodes: &[Node<'_>], needed: &Needed) -> Vec<bool> {
    let Needed::Names(names) = needed else {
        return vec![true; nodes.len()];
    };
    let mut wanted = vec![false; nodes.len()];
    let mut todo: Vec<usize> = (0..nodes.len())
        .filter(|i| names.contains(nodes[*i].name))
        .collect();
    while let Some(i) = todo.pop() {
        if !std::mem::replace(&mut wanted[i], true) {
            todo.extend(nodes[i].deps.iter().copied());
        }
    }
    wanted
}

/// The strings of a value that hold template syntax.
fn templated_strings<'v>(value: &'v toml::Value, out: &mut Vec<&'v str>) {
    match value {
        toml::Value::String(s) if has_template_syntax(s) => out.push(s),
        toml::Value::Array(items) => items.iter().for_each(|v| templated_strings(v, out)),
        toml::Value::Table(table) => table.values().for_each(|v| templated_strings(v, out)),
        _ => {}
    }
}

/// A value with every templated string inside it rendered (tables and arrays too).
fn render_value(
    value: &toml::Value,
    origin: &Origin,
    env: &Environment<'_>,
    ctx: &Value,
) -> Result<Value, RenderError> {
    Ok(match value {
        toml::Value::String(s)
            if has_template_syntax(s) && !matches!(origin, Origin::CommandLine) =>
        {
            let tmpl = env
                .template_from_str(s)
                .map_err(|e| RenderError::new(&e, None))?;
            let rendered = tmpl.render(ctx).map_err(|e| {
                let missing = undefined_variable(&tmpl.undeclared_variables(true), ctx, &e, s);
                RenderError::new(&e, missing)
            })?;
            Value::from(rendered)
        }
        toml::Value::Array(items) => Value::from(
            items
                .iter()
                .map(|v| render_value(v, origin, env, ctx))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        toml::Value::Table(table) => Value::from_iter(
            table
                .iter()
                .map(|(k, v)| Ok((k.clone(), render_value(v, origin, env, ctx)?)))
                .collect::<Result<Vec<_>, RenderError>>()?,
        ),
        other => Value::from_serialize(other),
    })
}

struct RenderError {
    summary: String,
    missing: Option<String>,
}

impl RenderError {
    fn new(error: &minijinja::Error, missing: Option<String>) -> Self {
        Self {
            summary: summary(error),
            missing,
        }
    }
}

fn located(node: &Node<'_>, error: RenderError) -> InputError {
    match error.missing {
        Some(var) => def_error(
            node.name,
            node.def,
            format!("undefined variable `{var}` in variable `{}`", node.name),
        )
        .with_hint(UNDEFINED_HINT),
        None => def_error(
            node.name,
            node.def,
            format!(
                "variable `{}`: template error: {}",
                node.name, error.summary
            ),
        ),
    }
}

fn def_error(name: &str, def: &VarDef, message: String) -> InputError {
    match &def.origin {
        Origin::File { file, span } => file.error_at(span.clone(), message),
        Origin::CommandLine => InputError::plain(format!("--var {name}: {message}")),
    }
}

fn summary(error: &minijinja::Error) -> String {
    match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    }
}

/// The strings of `real` that differ from the same place in `other` (all of them when there
/// is no `other`: it could not be rendered), as `(variable, text)`.
fn collect_differing(
    name: &str,
    real: &Value,
    other: Option<&Value>,
    out: &mut Vec<(String, String)>,
) {
    if let Some(text) = real.as_str() {
        if !text.is_empty() && other.and_then(Value::as_str) != Some(text) {
            out.push((name.to_string(), text.to_string()));
        }
        return;
    }
    let Ok(items) = real.try_iter() else { return };
    let is_map = real.kind() == minijinja::value::ValueKind::Map;
    for (index, item) in items.enumerate() {
        let (inner, key) = if is_map {
            (real.get_item(&item).ok(), item)
        } else {
            (Some(item), Value::from(index))
        };
        let Some(inner) = inner else { continue };
        let counterpart = other.and_then(|o| o.get_item(&key).ok());
        collect_differing(name, &inner, counterpart.as_ref(), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Layer {
        vars: RawVars,
    }

    /// The `[vars]` of a TOML text, as defined in file `path`.
    fn layer(path: &str, text: &str) -> Vars {
        let file = Arc::new(SourceFile {
            path: path.into(),
            text: text.into(),
        });
        let raw: Layer = toml::from_str(text).unwrap();
        from_raw(raw.vars, &file)
    }

    fn built_ins() -> IndexMap<String, Value> {
        let mut b = IndexMap::new();
        b.insert(
            "host".to_string(),
            minijinja::context! { name => "web-1", groups => vec!["web"] },
        );
        b.insert("app".to_string(), Value::from("shop"));
        b
    }

    fn resolve_all(vars: &Vars) -> Result<Value, InputError> {
        resolve(vars, built_ins(), &Needed::All).map(|r| r.context)
    }

    fn get(ctx: &Value, path: &str) -> String {
        let mut v = ctx.clone();
        for part in path.split('.') {
            v = match part.parse::<usize>() {
                Ok(i) => v.get_item(&Value::from(i)).unwrap(),
                Err(_) => v.get_attr(part).unwrap(),
            };
        }
        v.to_string()
    }

    #[test]
    fn values_render_after_the_variables_they_read_whatever_the_order() {
        let vars = layer(
            "inv.toml",
            "[vars]\napp_dir = \"{{ base }}/{{ app }}\"\nconf = \"{{ app_dir }}/{{ host.name }}.conf\"\nbase = \"/srv\"\nport = 80\nnext = \"{{ port + 1 }}\"\n",
        );
        let ctx = resolve_all(&vars).unwrap();
        assert_eq!(get(&ctx, "app_dir"), "/srv/shop");
        assert_eq!(get(&ctx, "conf"), "/srv/shop/web-1.conf");
        assert_eq!(get(&ctx, "next"), "81");
        assert_eq!(ctx.get_attr("port").unwrap(), Value::from(80));
    }

    #[test]
    fn a_later_layer_changes_what_earlier_values_render_to() {
        let mut vars = layer(
            "inv.toml",
            "[vars]\nbase = \"/srv\"\napp_dir = \"{{ base }}/app\"\n",
        );
        vars.extend(layer("pb.toml", "[vars]\nbase = \"/opt\"\n"));
        vars.insert(
            "tag".into(),
            VarDef {
                value: cli_value("{{ base }}"),
                origin: Origin::CommandLine,
            },
        );
        let ctx = resolve_all(&vars).unwrap();
        assert_eq!(get(&ctx, "app_dir"), "/opt/app");
        // `--var` is data: never rendered.
        assert_eq!(get(&ctx, "tag"), "{{ base }}");
    }

    #[test]
    fn strings_inside_tables_and_arrays_render_too() {
        let vars = layer(
            "pb.toml",
            "[vars]\nroot = \"/srv\"\npaths = { logs = \"{{ root }}/logs\", list = [\"{{ root }}/a\", 7, { deep = \"{{ app }}\" }] }\n",
        );
        let ctx = resolve_all(&vars).unwrap();
        assert_eq!(get(&ctx, "paths.logs"), "/srv/logs");
        assert_eq!(get(&ctx, "paths.list.0"), "/srv/a");
        assert_eq!(get(&ctx, "paths.list.1"), "7");
        assert_eq!(get(&ctx, "paths.list.2.deep"), "shop");
    }

    #[test]
    fn built_ins_win_over_variables_of_the_same_name() {
        let vars = layer("pb.toml", "[vars]\napp = \"mine\"\nx = \"{{ app }}\"\n");
        let ctx = resolve_all(&vars).unwrap();
        assert_eq!(get(&ctx, "app"), "shop");
        assert_eq!(get(&ctx, "x"), "shop");
    }

    #[test]
    fn a_cycle_names_its_variables_and_where_each_is_defined() {
        let mut vars = layer("inv.toml", "[vars]\nbase = \"{{ app_dir }}/x\"\n");
        vars.extend(layer("pb.toml", "[vars]\n\napp_dir = \"{{ base }}\"\n"));
        let err = resolve_all(&vars).unwrap_err();
        assert_eq!(
            err.message,
            "variables refer to each other in a cycle: `app_dir` → `base` → `app_dir` (defined: `app_dir` at pb.toml:3:11, `base` at inv.toml:2:8)"
        );
        assert_eq!(err.location.as_ref().unwrap().file, "pb.toml");
        assert_eq!(err.key.as_deref(), Some("vars.app_dir"));
        assert!(err.hint.is_some());

        let err = resolve_all(&layer("h.toml", "[vars]\npath = \"{{ path }}/bin\"\n")).unwrap_err();
        assert!(
            err.message
                .starts_with("variables refer to each other in a cycle: `path` → `path`"),
            "{err}"
        );
        // Through a nested value and a longer loop.
        let err = resolve_all(&layer(
            "h.toml",
            "[vars]\na = { x = [\"{{ b }}\"] }\nb = \"{{ c }}\"\nc = \"{{ a.x[0] }}\"\n",
        ))
        .unwrap_err();
        assert!(err.message.contains("`a` → `b` → `c` → `a`"), "{err}");
    }

    #[test]
    fn a_long_chain_resolves_without_recursion() {
        let mut text = String::from("[vars]\nv0 = \"x\"\n");
        for i in 1..20_000 {
            text.push_str(&format!("v{i} = \"{{{{ v{} }}}}\"\n", i - 1));
        }
        let ctx = resolve_all(&layer("big.toml", &text)).unwrap();
        assert_eq!(get(&ctx, "v19999"), "x");
    }

    #[test]
    fn an_error_is_reported_only_for_variables_that_are_read() {
        let vars = layer(
            "inv.toml",
            "[vars]\nok = \"{{ base }}\"\nbase = \"/srv\"\nbroken = \"{{ nope }}\"\nuser = \"{{ broken }}\"\n",
        );
        let needed = |names: &[&str]| Needed::Names(names.iter().map(|n| n.to_string()).collect());
        let ctx = resolve(&vars, built_ins(), &needed(&["ok"]))
            .unwrap()
            .context;
        assert_eq!(get(&ctx, "ok"), "/srv");
        assert!(ctx.get_attr("broken").unwrap().is_undefined());
        let err = resolve(&vars, built_ins(), &needed(&["user"])).unwrap_err();
        assert_eq!(
            err.message,
            "undefined variable `nope` in variable `broken`"
        );
        assert_eq!(err.key.as_deref(), Some("vars.broken"));
        assert_eq!(err.location.as_ref().unwrap().line, 4);
        // A syntax error is an error wherever it is.
        let vars = layer("inv.toml", "[vars]\nx = \"{% if %}\"\n");
        let err = resolve(&vars, built_ins(), &needed(&[])).unwrap_err();
        assert!(
            err.message.starts_with("variable `x`: template error"),
            "{err}"
        );
    }

    #[test]
    fn values_read_from_secrets_are_secrets_too() {
        let vars = layer(
            "pb.toml",
            "[vars]\ndb_url = \"postgres://app:{{ secrets.pw | upper }}@db\"\nenv = { url = \"{{ db_url }}\", name = \"prod\" }\nplain = \"x\"\nflag = \"{{ 'yes' if secrets.pw else 'no' }}\"\nlen = \"{{ secrets.pw | length }}\"\n",
        );
        let mut with_secrets = built_ins();
        with_secrets.insert("secrets".into(), minijinja::context! { pw => "hunter2" });
        let resolved = resolve(&vars, with_secrets, &Needed::All).unwrap();
        let url = "postgres://app:HUNTER2@db".to_string();
        assert_eq!(
            resolved.derived_secrets,
            [
                ("db_url".to_string(), url.clone()),
                ("env".to_string(), url)
            ]
        );
        // Where secrets are not known yet (the release root's scope), such a variable is left
        // out rather than failing.
        let resolved = resolve(&vars, built_ins(), &Needed::All).unwrap();
        assert!(resolved.context.get_attr("db_url").unwrap().is_undefined());
        assert!(resolved.context.get_attr("env").unwrap().is_undefined());
        assert_eq!(get(&resolved.context, "plain"), "x");
    }
}
