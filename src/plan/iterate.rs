//! A looped step on one host: its items (the list as written, strings rendered, or the
//! expression's list) and the name each iteration has in the report.

use minijinja::Value;
use minijinja::value::ValueKind;
use toml::Spanned;

use crate::diagnostic::{InputError, SourceFile};
use crate::playbook::Loop;
use crate::secrets::Redactor;
use crate::template::{Renderer, names_in_expression, undefined_hint};

/// The items of a loop on one host, evaluated with the host's variables.
pub(super) fn items(
    l: &Loop,
    renderer: &Renderer,
    ctx: &Value,
    file: &SourceFile,
) -> Result<Vec<Value>, InputError> {
    match l {
        Loop::Items { items, span } => items
            .iter()
            .map(|item| rendered(item, span, renderer, ctx, file))
            .collect(),
        Loop::Expression(expr) => {
            let value = renderer.eval_expression(expr, ctx, file)?;
            let not_a_list = |what: &str, hint: &str| {
                file.error_at(expr.span(), format!("`loop` gives {what}, not a list"))
                    .with_hint(hint.to_string())
            };
            if value.is_undefined() {
                let mut names: Vec<String> = names_in_expression(expr.get_ref())
                    .into_iter()
                    .filter(|n| ctx.get_attr(n).map_or(true, |v| v.is_undefined()))
                    .collect();
                names.sort();
                let name = names.first().map_or("?", String::as_str);
                return Err(file
                    .error_at(expr.span(), format!("undefined variable `{name}`"))
                    .with_hint(undefined_hint(name)));
            }
            match value.kind() {
                ValueKind::Seq | ValueKind::Iterable => Ok(value
                    .try_iter()
                    .map_err(|e| not_a_list(&e.to_string(), ""))?
                    .collect()),
                ValueKind::Map => Err(not_a_list(
                    "a table",
                    "loop over its keys with `| list`, or its (key, value) pairs with `| items`",
                )),
                ValueKind::String => Err(not_a_list(
                    &format!("the string `{}`", value.as_str().unwrap_or("")),
                    "define the variable as a list, e.g. instances = [\"latest\", \"stable\"] (a --var value is always a string)",
                )),
                _ => Err(not_a_list(
                    &value.kind().to_string(),
                    "give it a list variable or an expression such as range(3)",
                )),
            }
        }
    }
}

/// An item as written, its strings rendered (template syntax in them) with the host's context.
fn rendered(
    value: &toml::Value,
    span: &std::ops::Range<usize>,
    renderer: &Renderer,
    ctx: &Value,
    file: &SourceFile,
) -> Result<Value, InputError> {
    Ok(match value {
        toml::Value::String(s) => {
            Value::from(renderer.render_field(&Spanned::new(span.clone(), s.clone()), ctx, file)?)
        }
        toml::Value::Array(items) => Value::from(
            items
                .iter()
                .map(|v| rendered(v, span, renderer, ctx, file))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        toml::Value::Table(table) => Value::from_iter(
            table
                .iter()
                .map(|(k, v)| Ok((k.clone(), rendered(v, span, renderer, ctx, file)?)))
                .collect::<Result<Vec<_>, InputError>>()?,
        ),
        other => Value::from_serialize(other),
    })
}

/// Labels longer than this are replaced by the item's position.
const MAX_LABEL: usize = 60;

/// `NAME (ITEM)`: the item itself when it is a string, number or boolean, a table's `name`,
/// else (or when it holds a secret, or would not fit one line) its position from 1.
pub(super) fn iteration_name(name: &str, item: &Value, index: usize, guard: &Redactor) -> String {
    let label = match item.kind() {
        ValueKind::String | ValueKind::Number | ValueKind::Bool => Some(item.to_string()),
        ValueKind::Map => item
            .get_attr("name")
            .ok()
            .filter(|n| matches!(n.kind(), ValueKind::String | ValueKind::Number))
            .map(|n| n.to_string()),
        _ => None,
    }
    .filter(|l| {
        !l.is_empty()
            && l.len() <= MAX_LABEL
            && !l.chars().any(char::is_control)
            && !guard.reveals_secret(l.as_bytes())
    });
    match label {
        Some(label) => format!("{name} ({label})"),
        None => format!("{name} (item {})", index + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Secret;

    #[test]
    fn an_iteration_is_named_by_its_item_unless_that_shows_a_secret() {
        let guard = Redactor::new([&Secret::new("hunter2")]);
        let named = |item: Value| iteration_name("conf", &item, 1, &guard);
        assert_eq!(named(Value::from("stable")), "conf (stable)");
        assert_eq!(named(Value::from(8001)), "conf (8001)");
        assert_eq!(
            named(minijinja::context! { name => "latest", port => 8000 }),
            "conf (latest)"
        );
        assert_eq!(named(minijinja::context! { port => 8000 }), "conf (item 2)");
        assert_eq!(named(Value::from("x-hunter2")), "conf (item 2)");
        assert_eq!(named(Value::from("a\nb")), "conf (item 2)");
        assert_eq!(named(Value::from("x".repeat(61))), "conf (item 2)");
        assert_eq!(named(Value::from(vec![1, 2])), "conf (item 2)");
    }
}

#[cfg(test)]
mod plan_tests {
    use indexmap::IndexMap;

    use crate::diagnostic::{InputError, SourceFile};
    use crate::inventory::Inventory;
    use crate::plan::{Action, Notify, Plan, PlanOptions, build};
    use crate::playbook::Playbook;
    use crate::secrets::Secret;

    /// Plans `steps` (with `conf.j2` = `template`) on hosts h1 and h2.
    fn plan(template: &str, steps: &str, cli: &[(&str, &str)]) -> Result<Plan, InputError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("conf.j2"), template).unwrap();
        let pb = Playbook::parse(SourceFile {
            path: dir.path().join("pb.toml"),
            text: format!(
                "name = \"t\"\napp = \"a\"\n[vars]\napp_dir = \"/srv/{{{{ instance }}}}\"\ninstance = \"default\"\nwhere = \"/w/{{{{ suffix }}}}\"\ninstances = [{{ name = \"latest\", port = 8000 }}, {{ name = \"stable\", port = 8001 }}]\n{steps}"
            ),
        })?;
        let inventory = Inventory::parse(&SourceFile {
            path: "inv.toml".into(),
            text: "[ssh]\nssh_config = \"\"\n[hosts.h1]\n[hosts.h2]\n".into(),
        })
        .unwrap();
        let options = PlanOptions {
            vars: cli
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        let mut secrets = IndexMap::new();
        secrets.insert("token".to_string(), Secret::new("s3cr3t-token"));
        build(&inventory, &pb, &secrets, &options)
    }

    /// Each step of host `h`: name, and the file's path and content or the action's text.
    fn steps(plan: &Plan, h: usize) -> Vec<(String, String)> {
        plan.hosts[h]
            .steps
            .iter()
            .map(|s| {
                let what = match &s.action {
                    Action::Template(crate::steps::files::Placement::File(u)) => {
                        format!("{}: {}", u.dest, String::from_utf8_lossy(&u.content))
                    }
                    other => other.describe(),
                };
                (s.name.clone(), what)
            })
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    const TEMPLATE: &str = "instance={{ instance }} port={{ port }} dir={{ app_dir }}\n";

    #[test]
    fn one_template_per_item_with_the_step_vars_reading_item() {
        let steps_toml = r#"
[[steps]]
name = "conf"
template = { src = "conf.j2", dest = "{{ app_dir }}/nginx.conf" }
loop = "{{ instances }}"
vars = { instance = "{{ item.name }}", port = "{{ item.port }}" }
when = "item.name != 'stable' or host.name == 'h1'"
"#;
        let plan = plan(TEMPLATE, steps_toml, &[]).unwrap();
        assert_eq!(
            steps(&plan, 0),
            pairs(&[
                (
                    "conf (latest)",
                    "/srv/latest/nginx.conf: instance=latest port=8000 dir=/srv/latest\n"
                ),
                (
                    "conf (stable)",
                    "/srv/stable/nginx.conf: instance=stable port=8001 dir=/srv/stable\n"
                ),
            ])
        );
        // `when` is decided per item.
        assert_eq!(
            steps(&plan, 1)[1],
            pairs(&[("conf (stable)", "skip (when is false)")])[0]
        );
        // `check` lists every iteration.
        let text = crate::commands::check::describe_plan(&plan);
        assert!(
            text.contains("  - conf (latest): file /srv/latest/nginx.conf"),
            "{text}"
        );
        assert!(
            text.contains("  - conf (stable): file /srv/stable/nginx.conf"),
            "{text}"
        );
    }

    #[test]
    fn step_vars_win_over_playbook_vars_for_that_step_only_and_var_wins_over_them() {
        let steps_toml = r#"
[[steps]]
name = "stable"
template = { src = "conf.j2", dest = "{{ app_dir }}/a.conf" }
vars = { instance = "stable", port = 8001 }
[[steps]]
name = "plain"
run = "echo {{ instance }}"
[[steps]]
name = "list"
run = "echo {{ item }} {{ loop_index }} {{ port }}"
loop = [8000, "{{ instance }}-x"]
vars = { port = "{{ loop_index + 1 }}" }
"#;
        let planned = plan(TEMPLATE, steps_toml, &[]).unwrap();
        assert_eq!(
            steps(&planned, 0),
            pairs(&[
                (
                    "stable",
                    "/srv/stable/a.conf: instance=stable port=8001 dir=/srv/stable\n"
                ),
                ("plain", "run: echo default"),
                ("list (8000)", "run: echo 8000 0 1"),
                ("list (default-x)", "run: echo default-x 1 2"),
            ])
        );
        let plan = plan(TEMPLATE, steps_toml, &[("instance", "cli")]).unwrap();
        // A playbook variable reading a variable only the step defines.
        let only_in_step =
            "[[steps]]\nname = \"w\"\nrun = \"echo {{ where }}\"\nvars = { suffix = \"s\" }\n";
        let planned = super::plan_tests::plan(TEMPLATE, only_in_step, &[]).unwrap();
        assert_eq!(steps(&planned, 0), pairs(&[("w", "run: echo /w/s")]));
        // A step variable made from a secret stays off command lines like the secret.
        let err = super::plan_tests::plan(
            TEMPLATE,
            "[[steps]]\nrun = \"echo {{ t }}\"\nvars = { t = \"{{ secrets.token | upper }}\" }\n",
            &[],
        )
        .err()
        .unwrap();
        assert!(
            err.message
                .contains("would put variable `t` (made from a secret) on a command line"),
            "{err}"
        );
        assert_eq!(
            steps(&plan, 0)[0],
            pairs(&[(
                "stable",
                "/srv/cli/a.conf: instance=cli port=8001 dir=/srv/cli\n"
            )])[0]
        );
    }

    #[test]
    fn an_empty_list_from_an_expression_is_one_skipped_step() {
        let steps_toml = "[[steps]]\nname = \"x\"\nrun = \"echo {{ item }}\"\nloop = \"{{ instances | selectattr('port', '>', 9000) | list }}\"\n";
        let plan = plan(TEMPLATE, steps_toml, &[]).unwrap();
        assert_eq!(steps(&plan, 0), pairs(&[("x", "skip (loop is empty)")]));
    }

    #[test]
    fn a_looped_file_step_triggers_one_handler() {
        let steps_toml = r#"
[[steps]]
name = "conf"
template = { src = "conf.j2", dest = "/srv/{{ item }}.conf" }
loop = ["a", "b"]
vars = { instance = "{{ item }}", port = 1 }
on_change = { restart = ["proxy"] }
[[steps]]
compose = { command = "up", dir = "/srv" }
"#;
        let plan = plan(TEMPLATE, steps_toml, &[]).unwrap();
        let got: Vec<(String, Notify)> = plan.hosts[0]
            .steps
            .iter()
            .map(|s| (s.name.clone(), s.notify))
            .collect();
        assert_eq!(
            got,
            [
                ("conf (a)".to_string(), Notify::Trigger(0)),
                ("conf (b)".to_string(), Notify::Trigger(0)),
                ("compose up".to_string(), Notify::None),
                (
                    "restart proxy (conf changed)".to_string(),
                    Notify::Handler(0)
                ),
            ]
        );
    }

    #[test]
    fn an_item_made_from_a_secret_is_not_in_the_step_name() {
        let steps_toml = r#"
[[steps]]
name = "tok"
template = { src = "conf.j2", dest = "/srv/t{{ loop_index }}" }
loop = ["{{ secrets.token | upper }}", "plain"]
vars = { instance = "x", port = 1 }
"#;
        let plan = plan(TEMPLATE, steps_toml, &[]).unwrap();
        let names: Vec<String> = steps(&plan, 0).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["tok (item 1)", "tok (item 2)"]);
    }

    #[test]
    fn bad_loops_and_item_outside_a_loop_are_errors_where_written() {
        let cases = [
            (
                "loop = 3",
                "pb.toml:10:8: `loop` must be a list, not integer",
            ),
            (
                "loop = \"a, b\"",
                "pb.toml:10:8: `loop` is a string, `a, b`, not a list or one `{{ expression }}`",
            ),
            ("loop = []", "pb.toml:10:8: `loop` is an empty list"),
            (
                "loop = \"{{ instance }}\"",
                "pb.toml:10:8: `loop` gives the string `default`, not a list",
            ),
            (
                "loop = \"{{ app }}\"\n",
                "pb.toml:10:8: `loop` gives the string `a`, not a list",
            ),
            (
                "vars = { port = \"{{ item }}\" }",
                "pb.toml:10:17: `item` is used outside a loop",
            ),
            (
                "when = \"loop_index > 0\"",
                "pb.toml:10:8: `loop_index` is used outside a loop",
            ),
            (
                "vars = { item = 1 }",
                "pb.toml:10:17: `item` is set by dropship",
            ),
            (
                "loop = \"{{ nope }}\"",
                "pb.toml:10:8: undefined variable `nope`",
            ),
        ];
        for (keys, want) in cases {
            let steps_toml = format!("[[steps]]\nrun = \"echo {{{{ instance }}}}\"\n{keys}\n");
            let err = plan(TEMPLATE, &steps_toml, &[]).err().unwrap();
            assert!(err.to_string().contains(want), "{keys}: {err}");
            assert!(err.hint.is_some(), "{keys}: {err}");
        }
        // In a template file, found when rendering: the hint says where `item` is set.
        let err = plan(
            "{{ item }}\n",
            "[[steps]]\ntemplate = { src = \"conf.j2\", dest = \"/x\" }\n",
            &[],
        )
        .err()
        .unwrap();
        assert!(err.message.contains("undefined variable `item`"), "{err}");
        assert!(
            err.hint
                .clone()
                .unwrap()
                .contains("only in a step with `loop`")
        );
    }
}
