//! A host's timeline: when each phase of its run (connect, lock, steps, release, disconnect)
//! started and how long it took, from `Instant` stamps taken as the run goes (no allocation).

use std::time::{Duration, Instant};

use serde::ser::{Serialize, SerializeMap, Serializer};

/// A phase of a host's run, in the order a run goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// TCP connect, SSH handshake and authentication (after waiting for a handshake slot).
    Connect,
    /// Taking the lock (with the piggybacked probe of the host's files).
    Lock,
    /// The steps' scripts (with the audit line and unlock at the end of the last one).
    Steps,
    /// Releasing the lock where the steps' last script did not (audit line, unlock).
    Release,
    /// Closing the connection.
    Disconnect,
}

impl Phase {
    const ALL: [Phase; 5] = [
        Phase::Connect,
        Phase::Lock,
        Phase::Steps,
        Phase::Release,
        Phase::Disconnect,
    ];

    fn key(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Lock => "lock",
            Phase::Steps => "steps",
            Phase::Release => "release",
            Phase::Disconnect => "disconnect",
        }
    }
}

/// When a phase first started (from the timeline's origin) and how long it took in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: Duration,
    pub busy: Duration,
}

/// Each phase's span; a phase that ran more than once (locks retried under `--wait-lock`,
/// steps batch by batch) keeps its first start and adds up its durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    origin: Instant,
    spans: [Option<Span>; Phase::ALL.len()],
}

impl Timeline {
    /// A timeline whose phases are measured from `origin` (when the host's run began).
    pub fn new(origin: Instant) -> Self {
        Self {
            origin,
            spans: [None; Phase::ALL.len()],
        }
    }

    /// `phase` ran from `started` until now.
    pub fn record(&mut self, phase: Phase, started: Instant) {
        self.record_between(phase, started, Instant::now());
    }

    /// `phase` ran from `started` to `ended`.
    pub fn record_between(&mut self, phase: Phase, started: Instant, ended: Instant) {
        let busy = ended.saturating_duration_since(started);
        let slot = &mut self.spans[phase as usize];
        match slot {
            Some(span) => span.busy += busy,
            None => {
                *slot = Some(Span {
                    start: started.saturating_duration_since(self.origin),
                    busy,
                });
            }
        }
    }

    pub fn span(&self, phase: Phase) -> Option<Span> {
        self.spans[phase as usize]
    }

    pub fn is_empty(&self) -> bool {
        self.spans.iter().all(Option::is_none)
    }
}

/// `{"connect": {"start_ms": 0.0, "ms": 312.5}, …}`: the phases that ran, in run order.
impl Serialize for Timeline {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let ran = Phase::ALL.iter().filter_map(|&p| Some((p, self.span(p)?)));
        let mut map = serializer.serialize_map(None)?;
        for (phase, span) in ran {
            map.serialize_entry(
                phase.key(),
                &SpanMs {
                    start_ms: millis(span.start),
                    ms: millis(span.busy),
                },
            )?;
        }
        map.end()
    }
}

#[derive(serde::Serialize)]
struct SpanMs {
    start_ms: f64,
    ms: f64,
}

/// Milliseconds to a tenth.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn records_each_phase_from_the_origin() {
        let origin = Instant::now();
        let mut t = Timeline::new(origin);
        t.record_between(Phase::Connect, origin + 5 * MS, origin + 105 * MS);
        t.record_between(Phase::Lock, origin + 105 * MS, origin + 305 * MS);
        assert_eq!(
            t.span(Phase::Connect),
            Some(Span {
                start: 5 * MS,
                busy: 100 * MS
            })
        );
        assert_eq!(t.span(Phase::Lock).unwrap().busy, 200 * MS);
        assert_eq!(t.span(Phase::Steps), None);
    }

    #[test]
    fn a_phase_run_twice_keeps_its_first_start_and_adds_up() {
        let origin = Instant::now();
        let mut t = Timeline::new(origin);
        t.record_between(Phase::Steps, origin + 10 * MS, origin + 30 * MS);
        t.record_between(Phase::Steps, origin + 50 * MS, origin + 55 * MS);
        assert_eq!(
            t.span(Phase::Steps),
            Some(Span {
                start: 10 * MS,
                busy: 25 * MS
            })
        );
    }

    #[test]
    fn serializes_the_phases_that_ran_in_run_order_in_ms() {
        let origin = Instant::now();
        let mut t = Timeline::new(origin);
        assert!(t.is_empty());
        t.record_between(Phase::Disconnect, origin + 400 * MS, origin + 401 * MS);
        t.record_between(
            Phase::Connect,
            origin,
            origin + Duration::from_micros(123_456),
        );
        assert!(!t.is_empty());
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"connect":{"start_ms":0.0,"ms":123.5},"disconnect":{"start_ms":400.0,"ms":1.0}}"#
        );
    }

    #[test]
    fn a_stamp_before_the_origin_counts_from_zero() {
        let origin = Instant::now() + 50 * MS;
        let mut t = Timeline::new(origin);
        t.record_between(Phase::Lock, origin - 10 * MS, origin + 10 * MS);
        assert_eq!(t.span(Phase::Lock).unwrap().start, Duration::ZERO);
        assert_eq!(t.span(Phase::Lock).unwrap().busy, 20 * MS);
    }
}
