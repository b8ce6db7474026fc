//! `[rollout] first`: its items resolved against the inventory into the stages deployed before
//! every other host, and the bad input they can be (an item that names nothing, or no host the
//! playbook targets).

use toml::Spanned;

use crate::diagnostic::InputError;
use crate::inventory::{Host, Inventory, SelectError, closest};
use crate::playbook::Playbook;
use crate::rollout::FirstStages;

/// The stages of `playbook.first` among `targeted` (the run's hosts, in order): one per item,
/// each the targeted hosts it matches that no earlier item took. An item must match a host
/// the playbook's `hosts` selects (else it is a typo or the wrong playbook: bad input); one
/// whose hosts `--limit` left out is an empty stage (nothing waits for it).
pub fn first_stages(
    inventory: &Inventory,
    playbook: &Playbook,
    targeted: &[Host],
) -> Result<FirstStages, InputError> {
    let mut stages = Vec::with_capacity(playbook.first.len());
    let mut taken = std::collections::HashSet::new();
    // The playbook's own selection, before `--limit`: it was checked already.
    let selected = inventory.select(&playbook.hosts).unwrap_or_default();
    for item in &playbook.first {
        let matched = inventory
            .select(item.get_ref())
            .map_err(|e| item_error(playbook, inventory, item, &e))?;
        if !matched.iter().any(|i| selected.contains(i)) {
            let names: Vec<&str> = matched
                .iter()
                .take(3)
                .map(|&i| inventory.hosts[i].name.as_str())
                .collect();
            return Err(playbook
                .file
                .error_at(
                    item.span(),
                    format!(
                        "`{}` matches no host this playbook targets (it matches {}{}; the playbook's hosts are `{}`)",
                        item.get_ref(),
                        names.join(", "),
                        if matched.len() > 3 { ", …" } else { "" },
                        playbook.hosts
                    ),
                )
                .with_hint(
                    "`first` orders the playbook's own hosts: add those hosts to `hosts`, or name a group of them here",
                ));
        }
        let names: Vec<&str> = matched
            .iter()
            .map(|&i| inventory.hosts[i].name.as_str())
            .collect();
        let hosts: Vec<usize> = targeted
            .iter()
            .enumerate()
            .filter(|(i, h)| names.contains(&h.name.as_str()) && !taken.contains(i))
            .map(|(i, _)| i)
            .collect();
        taken.extend(hosts.iter().copied());
        stages.push((item.get_ref().clone(), hosts));
    }
    Ok(FirstStages(stages))
}

fn item_error(
    playbook: &Playbook,
    inventory: &Inventory,
    item: &Spanned<String>,
    error: &SelectError,
) -> InputError {
    let hint = match error {
        SelectError::NoMatch { .. } if inventory.groups.contains(item.get_ref()) => {
            "the group has no host: add hosts to it, or leave it out of `first`".to_string()
        }
        SelectError::NoMatch { .. } => {
            let names = inventory
                .groups
                .iter()
                .chain(inventory.hosts.iter().map(|h| &h.name));
            match closest(item.get_ref(), names) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!(
                    "name a group of the inventory ({}), a host or a glob over host names",
                    inventory
                        .groups
                        .iter()
                        .map(|g| format!("`{g}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
        _ => "write a group, a host name or a glob (`db-*`)".to_string(),
    };
    playbook
        .file
        .error_at(item.span(), format!("first: {error}"))
        .with_hint(hint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::SourceFile;

    fn inventory() -> Inventory {
        Inventory::parse(&SourceFile {
            path: "inv.toml".into(),
            text: "[ssh]\nssh_config = \"\"\n[groups.web]\n[groups.db]\n[groups.cache]\n\
                   [hosts.w1]\ngroups = [\"web\"]\n[hosts.d1]\ngroups = [\"db\"]\n\
                   [hosts.w2]\ngroups = [\"web\", \"cache\"]\n[hosts.d2]\ngroups = [\"db\"]\n"
                .into(),
        })
        .unwrap()
    }

    fn playbook(hosts: &str, first: &str) -> Playbook {
        Playbook::parse(SourceFile {
            path: "/nonexistent/pb.toml".into(),
            text: format!(
                "name = \"t\"\napp = \"a\"\nhosts = {hosts}\n[rollout]\nfirst = {first}\n"
            ),
        })
        .unwrap()
    }

    fn stages(hosts: &str, first: &str, limit: Option<&str>) -> Result<FirstStages, InputError> {
        let inventory = inventory();
        let playbook = playbook(hosts, first);
        let targeted = crate::plan::target_hosts(&inventory, &playbook.hosts, limit).unwrap();
        first_stages(&inventory, &playbook, &targeted)
    }

    #[test]
    fn items_become_stages_of_targeted_hosts_in_order() {
        // Targeted: w1 d1 w2 d2 (inventory order) → indices 0..4.
        let got = stages("\"all\"", "[\"db\", \"cache\", \"d*\"]", None).unwrap();
        assert_eq!(
            got.0,
            vec![
                ("db".to_string(), vec![1, 3]),
                ("cache".to_string(), vec![2]),
                // d1 and d2 went with `db` already.
                ("d*".to_string(), vec![]),
            ]
        );
        assert_eq!(
            stages("\"all\"", "\"db\"", None).unwrap().0,
            vec![("db".to_string(), vec![1, 3])]
        );
        // --limit leaves d2 out: indices are of the limited hosts (w1 d1 w2 → d1 is 1).
        assert_eq!(
            stages("\"all\"", "\"db\"", Some("w1,d1,w2")).unwrap().0,
            vec![("db".to_string(), vec![1])]
        );
        // --limit leaves every db host out: an empty stage, not an error.
        assert_eq!(
            stages("\"all\"", "\"db\"", Some("web")).unwrap().0,
            vec![("db".to_string(), vec![])]
        );
    }

    #[test]
    fn an_item_naming_nothing_or_no_targeted_host_is_bad_input_where_written() {
        let err = stages("\"all\"", "\"dbb\"", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/nonexistent/pb.toml:5:9: first: `dbb` matches no host, group or glob in the inventory\n  key: `rollout.first`\n  |\n5 | first = \"dbb\"\n  |         ^^^^^\n  hint: did you mean `db`?"
        );
        let err = stages("\"all\"", "[\"db\", \"cahce\"]", None).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "/nonexistent/pb.toml:5:16: first: `cahce` matches no host, group or glob"
            ),
            "{err}"
        );
        assert!(err.to_string().contains("key: `rollout.first.1`"), "{err}");
        assert!(err.to_string().ends_with("did you mean `cache`?"), "{err}");
        let err = stages("\"web\"", "\"db\"", None).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "/nonexistent/pb.toml:5:9: `db` matches no host this playbook targets (it matches d1, d2; the playbook's hosts are `web`)"
            ),
            "{err}"
        );
        let err = stages("\"all\"", "\"zzzzzz\"", None).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("hint: name a group of the inventory (`web`, `db`, `cache`), a host or a glob over host names"),
            "{err}"
        );
    }

    #[test]
    fn empty_or_compound_items_are_refused_by_the_playbook() {
        for first in ["[]", "\"\"", "\"db,web\"", "\"!db\"", "[\"db\", \" \"]"] {
            let err = Playbook::parse(SourceFile {
                path: "/nonexistent/pb.toml".into(),
                text: format!("name = \"t\"\napp = \"a\"\n[rollout]\nfirst = {first}\n"),
            })
            .unwrap_err();
            assert!(
                err.to_string().starts_with("/nonexistent/pb.toml:4:"),
                "{first}: {err}"
            );
            assert!(err.to_string().contains("first ="), "{first}: {err}");
        }
        let err = Playbook::parse(SourceFile {
            path: "/nonexistent/pb.toml".into(),
            text: "name = \"t\"\napp = \"a\"\n[rollout]\nfirst = 3\n".into(),
        })
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("a group, host name or glob, or a list of them"),
            "{err}"
        );
    }
}
