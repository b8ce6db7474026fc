//! `dropship check`: what each step would do on each host, from the plan alone.

use crate::plan::Plan;

/// What `check` prints: every host and what each step would do, secrets masked.
pub fn describe_plan(plan: &Plan) -> String {
    // Planning refuses a secret on a command line; masking the whole text keeps any other
    // way (a host name, a release root) from printing one.
    plan.redactor.redact(&describe_steps(plan))
}

fn describe_steps(plan: &Plan) -> String {
    let mut out = String::new();
    for hp in &plan.hosts {
        out.push_str(&format!(
            "{} ({}@{}:{})\n",
            hp.host.name, hp.connect.user, hp.host.address, hp.connect.port
        ));
        for step in &hp.steps {
            let what = step.action.describe();
            let via = match &step.become_as {
                None => String::new(),
                Some(b) => format!(
                    " [sudo{}{}]",
                    b.user
                        .as_deref()
                        .map(|u| format!(" -u {u}"))
                        .unwrap_or_default(),
                    if b.password.is_some() {
                        " with password"
                    } else {
                        ""
                    }
                ),
            };
            out.push_str(&format!("  - {}: {what}{via}\n", step.name));
        }
    }
    out.push_str(&describe_rollout(plan));
    let steps = plan.hosts.first().map_or(0, |h| h.steps.len());
    out.push_str(&format!(
        "ok: {} host(s), {steps} step(s) each; every template rendered\n",
        plan.hosts.len()
    ));
    out
}

/// The order a deploy takes the hosts in, when it is more than one batch: `first` stages, the
/// canary, the batches.
pub(super) fn describe_rollout(plan: &Plan) -> String {
    let batches = plan.rollout.batches(plan.hosts.len(), &plan.first);
    if batches.len() < 2 {
        return String::new();
    }
    let mut out = String::from("rollout:\n");
    for (number, batch) in batches.iter().enumerate() {
        let names: Vec<&str> = batch
            .hosts
            .iter()
            .map(|&i| plan.hosts[i].host.name.as_str())
            .collect();
        let stage = batch
            .first
            .as_deref()
            .map_or(String::new(), |f| format!(" (first: {f})"));
        out.push_str(&format!(
            "  batch {}/{}{stage}: {}\n",
            number + 1,
            batches.len(),
            names.join(", ")
        ));
    }
    out
}
