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
    let steps = plan.hosts.first().map_or(0, |h| h.steps.len());
    out.push_str(&format!(
        "ok: {} host(s), {steps} step(s) each; every template rendered\n",
        plan.hosts.len()
    ));
    out
}
