//! The swarm runner: one `swarm` step on one host, and the run's rendezvous that carries the
//! join ticket across hosts. The run's first manager (the first host, in run order, whose
//! `swarm` step has role manager) initialises the swarm when its engine is in none, or finds
//! it a manager of one, reads the join tokens and publishes them; every other host waits for
//! that ticket (or that host's failure), then joins with the token its role needs through the
//! Engine API (token on stdin), or finds itself a member already. A host in another swarm, or
//! in this one with the other role, fails and is left as it is.

use std::sync::Arc;

use tokio::sync::watch;

use super::sequence::Purpose;
use super::{HostSession, RunContext, failure_text};
use crate::plan::{Action, Become, Plan};
use crate::remote::frame::Framed;
use crate::remote::swarm::{self, JoinTicket, SwarmInfo};
use crate::report::Outcome;
use crate::secrets::Redactor;
use crate::steps::Done;
use crate::steps::swarm::{Role, SwarmMember};
use crate::transport::Connection;

/// Where the run's first manager stands, as the other hosts see it.
#[derive(Debug, Clone)]
enum Published {
    /// It has not finished its `swarm` step yet.
    Pending,
    Ready(Arc<JoinTicket>),
    /// It failed or stopped before publishing: why.
    Gone(String),
}

/// The run's swarm rendezvous: who the first manager is and, once it ran, its join ticket.
pub struct SwarmRendezvous {
    /// The first manager's index in the plan, with its name.
    leader: Option<(usize, String)>,
    /// Each host's batch number in the rollout (a host never waits for a later batch).
    batch_of: Vec<usize>,
    ticket: watch::Sender<Published>,
}

impl SwarmRendezvous {
    pub fn new(plan: &Plan) -> Self {
        let leader = plan
            .hosts
            .iter()
            .position(|h| {
                h.steps
                    .iter()
                    .any(|s| matches!(&s.action, Action::Swarm(m) if m.role == Role::Manager))
            })
            .map(|i| (i, plan.hosts[i].host.name.clone()));
        let mut batch_of = vec![0; plan.hosts.len()];
        let batches = plan.rollout.batches(plan.hosts.len(), &plan.first);
        for (number, batch) in batches.iter().enumerate() {
            for &host in &batch.hosts {
                batch_of[host] = number;
            }
        }
        Self {
            leader,
            batch_of,
            ticket: watch::Sender::new(Published::Pending),
        }
    }

    fn publish(&self, published: Published) {
        self.ticket.send_if_modified(|now| {
            let pending = matches!(now, Published::Pending);
            if pending {
                *now = published;
            }
            pending
        });
    }

    /// The first manager's run on its host ended: a ticket not published by now never will be.
    pub(super) fn host_finished(&self, index: usize, name: &str) {
        if self.leader.as_ref().is_some_and(|(i, _)| *i == index) {
            self.publish(Published::Gone(format!(
                "{name} stopped before its swarm step"
            )));
        }
    }
}

/// What a host that is not the first manager does, from its swarm state and the ticket.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decision {
    Join,
    /// A member of the swarm with the asked role already: why nothing is done.
    Member(String),
    /// Left as it is, failing: why.
    Refuse(String),
}

pub(super) fn decide(role: Role, info: &SwarmInfo, ticket: &JoinTicket) -> Decision {
    match info.state.as_str() {
        "inactive" => Decision::Join,
        "active" if ticket.same_swarm(info) => {
            let is = if info.manager {
                Role::Manager
            } else {
                Role::Worker
            };
            if is == role {
                Decision::Member(format!("already a {} of the swarm", role.as_str()))
            } else {
                let how = match role {
                    Role::Manager => "promote it on a manager: docker node promote",
                    Role::Worker => "demote it on a manager: docker node demote",
                };
                Decision::Refuse(format!(
                    "already a {} of the swarm, not a {}: nothing changed (hint: {how} {})",
                    is.as_str(),
                    role.as_str(),
                    info.node_id
                ))
            }
        }
        "active" => Decision::Refuse(format!(
            "the engine is in another swarm ({}): nothing changed (hint: if it should join this one, run `docker swarm leave` on it first)",
            info.cluster_id().map_or_else(
                || "its managers are not this swarm's".to_string(),
                |id| format!("swarm {id}")
            )
        )),
        other => Decision::Refuse(state_refusal(other, info)),
    }
}

fn state_refusal(state: &str, info: &SwarmInfo) -> String {
    format!(
        "the engine's swarm state is `{state}`{}: nothing changed (hint: see `docker info` on the host)",
        if info.error.is_empty() {
            String::new()
        } else {
            format!(" ({})", info.error)
        }
    )
}

impl<T: Connection> HostSession<T> {
    /// Runs one `swarm` step: the first manager's (init or find, then publish the ticket) or
    /// another host's (wait for the ticket, then join or find). A rollback leaves membership.
    pub(super) async fn swarm(
        &mut self,
        ctx: &RunContext<'_>,
        step: &SwarmMember,
        become_as: Option<&Become>,
        purpose: Purpose,
    ) -> Done {
        if purpose == Purpose::Rollback {
            return Done::new(
                Outcome::Ok,
                Some("swarm membership is left as it is".into()),
            );
        }
        let rendezvous = &ctx.swarm;
        let result = match &rendezvous.leader {
            Some((leader, _)) if *leader == self.index => {
                let led = self.swarm_lead(step, become_as).await;
                rendezvous.publish(match &led {
                    Ok((_, ticket)) => Published::Ready(ticket.clone()),
                    Err(error) => Published::Gone(format!("{}: {error}", self.host_name)),
                });
                led.map(|(done, _)| done)
            }
            Some((leader, name)) => match self.wait_for_ticket(ctx, *leader, name).await {
                Ok(ticket) => self.swarm_join(step, become_as, &ticket).await,
                Err(error) => Err(error),
            },
            None => Err("no host of this run is a swarm manager, so none can hand out a join token (hint: include the swarm's first manager in the run)".into()),
        };
        match result {
            Ok(done) => done,
            Err(error) => Done::new(Outcome::Failed, Some(self.redactor.redact(&error))),
        }
    }

    /// Waits until the first manager published its ticket or gave up.
    async fn wait_for_ticket(
        &self,
        ctx: &RunContext<'_>,
        leader: usize,
        name: &str,
    ) -> Result<Arc<JoinTicket>, String> {
        let rendezvous = &ctx.swarm;
        if rendezvous.batch_of[leader] > rendezvous.batch_of[self.index] {
            return Err(format!(
                "the swarm's first manager {name} deploys in a later batch than this host, so it has no join token yet (hint: put it first: [rollout] first = [\"{name}\"] or its group)"
            ));
        }
        let mut rx = rendezvous.ticket.subscribe();
        tokio::select! {
            seen = rx.wait_for(|p| !matches!(p, Published::Pending)) => match seen.as_deref() {
                Ok(Published::Ready(ticket)) => Ok(ticket.clone()),
                Ok(Published::Gone(why)) => Err(format!(
                    "the swarm's first manager failed, so this host did not join: {why}"
                )),
                _ => Err("the swarm's first manager never answered".into()),
            },
            () = ctx.cancel.cancelled() => Err("interrupted before joining the swarm".into()),
        }
    }

    /// The host's swarm state.
    async fn swarm_survey(&self, become_as: Option<&Become>) -> Result<SwarmInfo, String> {
        let request = Framed::new(&swarm::survey());
        let out = self.exec_as(request.script(), &[], become_as).await?;
        if !out.success() {
            return Err(format!(
                "could not read the swarm state: {}",
                failure_text(&out, &self.redactor)
            ));
        }
        swarm::parse_info(&request.reply(&out.stdout))
    }

    /// The first manager: `docker swarm init` when the engine is in no swarm, nothing when it
    /// manages one; then the join tokens, which mask all output of this host from now on.
    async fn swarm_lead(
        &mut self,
        step: &SwarmMember,
        become_as: Option<&Become>,
    ) -> Result<(Done, Arc<JoinTicket>), String> {
        let info = self.swarm_survey(become_as).await?;
        let initialised = match info.state.as_str() {
            "inactive" => {
                let out = self
                    .exec_as(swarm::init(&step.advertise_addr).as_str(), &[], become_as)
                    .await?;
                if !out.success() {
                    return Err(format!(
                        "docker swarm init failed: {}",
                        failure_text(&out, &self.redactor)
                    ));
                }
                true
            }
            "active" if info.manager => false,
            "active" => {
                return Err(format!(
                    "this host is the run's first swarm manager, but its engine is a worker of a swarm: nothing changed (hint: promote it on a manager: docker node promote {}, or list a manager of that swarm first)",
                    info.node_id
                ));
            }
            other => return Err(state_refusal(other, &info)),
        };
        let request = Framed::new(&swarm::tickets());
        let out = self.exec_as(request.script(), &[], become_as).await?;
        let reply = request.reply(&out.stdout);
        let ticket = swarm::parse_ticket(&reply);
        if let Ok(ticket) = &ticket {
            self.redactor = self
                .redactor
                .with([&ticket.worker_token, &ticket.manager_token]);
        }
        if !out.success() {
            // Whatever tokens it printed are not shown: stdout is left out.
            let stderr_only = crate::transport::ExecOutput {
                stdout: Vec::new(),
                ..out
            };
            return Err(format!(
                "could not read the swarm's join tokens: {}",
                failure_text(&stderr_only, &self.redactor)
            ));
        }
        let ticket = Arc::new(ticket?);
        let detail = if initialised {
            format!(
                "initialised swarm {} advertising {} (node {})",
                ticket.cluster_id, step.advertise_addr, info.node_id
            )
        } else {
            format!(
                "already a manager of swarm {} (node {})",
                ticket.cluster_id, info.node_id
            )
        };
        let outcome = if initialised {
            Outcome::Changed
        } else {
            Outcome::Ok
        };
        Ok((Done::new(outcome, Some(detail)), ticket))
    }

    /// Any other host: joins with its role's token unless it is a member already.
    async fn swarm_join(
        &mut self,
        step: &SwarmMember,
        become_as: Option<&Become>,
        ticket: &JoinTicket,
    ) -> Result<Done, String> {
        self.redactor = self
            .redactor
            .with([&ticket.worker_token, &ticket.manager_token]);
        let info = self.swarm_survey(become_as).await?;
        match decide(step.role, &info, ticket) {
            Decision::Member(why) => return Ok(Done::new(Outcome::Ok, Some(why))),
            Decision::Refuse(why) => return Err(why),
            Decision::Join => {}
        }
        let token = match step.role {
            Role::Manager => &ticket.manager_token,
            Role::Worker => &ticket.worker_token,
        };
        let body = swarm::join_body(&step.advertise_addr, &ticket.managers, token);
        let request = Framed::new(&swarm::join());
        let out = self.exec_as(request.script(), &[&body], become_as).await?;
        let redactor: &Redactor = &self.redactor;
        if !out.success() {
            return Err(format!(
                "could not join the swarm: {}",
                failure_text(&out, redactor)
            ));
        }
        swarm::parse_join(&request.reply(&out.stdout)).map_err(|e| redactor.redact(&e))?;
        Ok(Done::new(
            Outcome::Changed,
            Some(format!(
                "joined swarm {} as a {} advertising {}",
                ticket.cluster_id,
                step.role.as_str(),
                step.advertise_addr
            )),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::swarm::{Cluster, RemoteManager};
    use crate::secrets::Secret;

    fn ticket() -> JoinTicket {
        JoinTicket {
            cluster_id: "c1".into(),
            managers: vec![RemoteManager {
                node_id: "n1".into(),
                addr: "10.0.0.1:2377".into(),
            }],
            worker_token: Secret::new("SWMTKN-w"),
            manager_token: Secret::new("SWMTKN-m"),
        }
    }

    fn active(manager: bool, cluster: Option<&str>, knows: &str) -> SwarmInfo {
        SwarmInfo {
            state: "active".into(),
            node_id: "n9".into(),
            manager,
            cluster: cluster.map(|id| Cluster { id: id.into() }),
            remote_managers: Some(vec![RemoteManager {
                node_id: knows.into(),
                addr: "x:2377".into(),
            }]),
            error: String::new(),
        }
    }

    #[test]
    fn an_engine_in_no_swarm_joins_and_a_member_with_its_role_is_left_alone() {
        let t = ticket();
        let inactive = SwarmInfo {
            state: "inactive".into(),
            ..Default::default()
        };
        assert_eq!(decide(Role::Worker, &inactive, &t), Decision::Join);
        assert_eq!(decide(Role::Manager, &inactive, &t), Decision::Join);
        // A worker knows the swarm by its managers; a manager by the swarm's id.
        assert_eq!(
            decide(Role::Worker, &active(false, None, "n1"), &t),
            Decision::Member("already a worker of the swarm".into())
        );
        assert_eq!(
            decide(Role::Manager, &active(true, Some("c1"), "n1"), &t),
            Decision::Member("already a manager of the swarm".into())
        );
    }

    #[test]
    fn another_swarm_the_other_role_or_a_broken_state_is_refused_and_left_as_it_is() {
        let t = ticket();
        let refused = |d: Decision| match d {
            Decision::Refuse(why) => why,
            other => panic!("{other:?}"),
        };
        let why = refused(decide(Role::Worker, &active(false, None, "n7"), &t));
        assert!(
            why.contains("another swarm") && why.contains("nothing changed"),
            "{why}"
        );
        let why = refused(decide(Role::Manager, &active(true, Some("c2"), "n7"), &t));
        assert!(why.contains("another swarm (swarm c2)"), "{why}");
        let why = refused(decide(Role::Manager, &active(false, None, "n1"), &t));
        assert!(
            why.starts_with("already a worker of the swarm, not a manager")
                && why.contains("docker node promote n9"),
            "{why}"
        );
        let why = refused(decide(Role::Worker, &active(true, Some("c1"), "n1"), &t));
        assert!(why.contains("docker node demote n9"), "{why}");
        let locked = SwarmInfo {
            state: "locked".into(),
            error: "swarm is encrypted".into(),
            ..Default::default()
        };
        let why = refused(decide(Role::Worker, &locked, &t));
        assert!(why.contains("`locked` (swarm is encrypted)"), "{why}");
    }

    #[test]
    fn the_first_word_published_stays_and_a_finished_leader_that_published_nothing_is_gone() {
        let rendezvous = SwarmRendezvous {
            leader: Some((0, "m1".into())),
            batch_of: vec![0, 0],
            ticket: watch::Sender::new(Published::Pending),
        };
        // Another host finishing says nothing.
        rendezvous.host_finished(1, "w1");
        assert!(matches!(*rendezvous.ticket.borrow(), Published::Pending));
        rendezvous.publish(Published::Ready(Arc::new(ticket())));
        rendezvous.host_finished(0, "m1");
        assert!(matches!(*rendezvous.ticket.borrow(), Published::Ready(_)));

        let rendezvous = SwarmRendezvous {
            leader: Some((0, "m1".into())),
            batch_of: vec![0],
            ticket: watch::Sender::new(Published::Pending),
        };
        rendezvous.host_finished(0, "m1");
        assert!(
            matches!(&*rendezvous.ticket.borrow(), Published::Gone(why) if why == "m1 stopped before its swarm step")
        );
    }
}
