//! A reporter that passes a host's events on in the inventory's host order, not in the order
//! hosts answered: for inspection commands (`releases`, `lock`, `ping`), whose few lines per
//! host are read side by side. Host `i`'s events go out as soon as hosts before it finished.

use std::sync::Mutex;

use super::{Event, HostResult, Reporter, RunReport, StepResult};

/// A host event, owned, held until the hosts before it are done.
enum Held {
    Step(String, StepResult),
    Failed(String, String),
    Finished(HostResult),
}

struct Queue {
    /// Per host (plan order): its held events and whether it finished.
    hosts: Vec<(Vec<Held>, bool)>,
    /// Hosts before this one have been passed on whole.
    next: usize,
}

pub struct InHostOrder<'r> {
    inner: &'r dyn Reporter,
    names: Vec<String>,
    queue: Mutex<Queue>,
}

impl<'r> InHostOrder<'r> {
    /// `names`: the hosts in the order their events are to go out.
    pub fn new(inner: &'r dyn Reporter, names: Vec<String>) -> Self {
        let hosts = names.iter().map(|_| (Vec::new(), false)).collect();
        Self {
            inner,
            names,
            queue: Mutex::new(Queue { hosts, next: 0 }),
        }
    }

    fn hold(&self, host: &str, held: Held, finished: bool) {
        let Some(index) = self.names.iter().position(|n| n == host) else {
            return self.pass_on(&held);
        };
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.hosts[index].0.push(held);
        queue.hosts[index].1 |= finished;
        self.flush(&mut queue, false);
    }

    /// Passes on every host whose predecessors are done (all of them with `all`).
    fn flush(&self, queue: &mut Queue, all: bool) {
        while queue.next < queue.hosts.len() {
            let (events, finished) = &mut queue.hosts[queue.next];
            for held in events.drain(..) {
                self.pass_on(&held);
            }
            if !*finished && !all {
                break;
            }
            queue.next += 1;
        }
    }

    fn pass_on(&self, held: &Held) {
        self.inner.event(&match held {
            Held::Step(host, step) => Event::StepFinished { host, step },
            Held::Failed(host, error) => Event::HostFailed { host, error },
            Held::Finished(result) => Event::HostFinished { result },
        });
    }
}

impl Reporter for InHostOrder<'_> {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::StepFinished { host, step } => {
                self.hold(host, Held::Step(host.to_string(), (*step).clone()), false)
            }
            Event::HostFailed { host, error } => self.hold(
                host,
                Held::Failed(host.to_string(), error.to_string()),
                false,
            ),
            Event::HostFinished { result } => {
                self.hold(&result.host, Held::Finished((*result).clone()), true)
            }
            other => self.inner.event(other),
        }
    }

    fn finished(&self, report: &RunReport) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        self.flush(&mut queue, true);
        drop(queue);
        self.inner.finished(report);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Outcome;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Reporter for Recorder {
        fn event(&self, event: &Event<'_>) {
            let line = match event {
                Event::StepFinished { host, step } => format!("{host}:{}", step.name),
                Event::HostFailed { host, .. } => format!("{host}:failed"),
                Event::HostFinished { result } => format!("{}:done", result.host),
                Event::Note { text } => format!("note:{text}"),
                _ => "other".into(),
            };
            self.0.lock().unwrap().push(line);
        }
        fn finished(&self, _: &RunReport) {
            self.0.lock().unwrap().push("end".into());
        }
    }

    fn step(name: &str) -> StepResult {
        StepResult {
            name: name.into(),
            outcome: Outcome::Ok,
            detail: None,
            output: None,
            words: Default::default(),
            elapsed_ms: 0,
        }
    }

    #[test]
    fn hosts_go_out_in_the_given_order_as_soon_as_those_before_them_finished() {
        let recorder = Recorder::default();
        let ordered = InHostOrder::new(&recorder, vec!["a".into(), "b".into(), "c".into()]);
        let finish = |host: &str| {
            let result = HostResult::new(host, "127.0.0.1");
            ordered.event(&Event::HostFinished { result: &result });
        };
        ordered.event(&Event::StepFinished {
            host: "c",
            step: &step("s"),
        });
        finish("c");
        ordered.event(&Event::Note { text: "n" });
        ordered.event(&Event::StepFinished {
            host: "a",
            step: &step("s"),
        });
        ordered.event(&Event::HostFailed {
            host: "b",
            error: "down",
        });
        assert_eq!(*recorder.0.lock().unwrap(), ["note:n", "a:s"]);
        finish("a");
        finish("b");
        assert_eq!(
            *recorder.0.lock().unwrap(),
            [
                "note:n", "a:s", "a:done", "b:failed", "b:done", "c:s", "c:done"
            ]
        );
        // A host that never finished is passed on at the end, before the summary.
        let recorder = Recorder::default();
        let ordered = InHostOrder::new(&recorder, vec!["a".into(), "b".into()]);
        ordered.event(&Event::StepFinished {
            host: "b",
            step: &step("s"),
        });
        ordered.event(&Event::StepFinished {
            host: "a",
            step: &step("s"),
        });
        ordered.finished(&RunReport::default());
        assert_eq!(*recorder.0.lock().unwrap(), ["a:s", "b:s", "end"]);
    }
}
