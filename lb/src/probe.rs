//! The health-probe state machine for a pool's backends: every `interval`
//! it asks for one probe per backend, counts a result that does not come
//! within `timeout` as a failure, and moves a backend to unhealthy after
//! `unhealthy_threshold` failures in a row (fall) and back to healthy after
//! `healthy_threshold` successes in a row (rise). A backend starts unknown,
//! and its first result settles it at once. The caller runs the probes (a
//! TCP connect, an HTTP GET) and feeds results back; time comes in as `now`,
//! with [`Prober::poll_timeout`] and [`Prober::handle_timeout`] as
//! quinn-proto does.

use crate::pool::BackendId;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A probe's timing and thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Time between the starts of two probes of one backend.
    pub interval: Duration,
    /// How long a probe may take; later is a failure. Below `interval`.
    pub timeout: Duration,
    /// Successes in a row that make an unhealthy backend healthy (rise).
    pub healthy_threshold: u32,
    /// Failures in a row that make a healthy backend unhealthy (fall).
    pub unhealthy_threshold: u32,
}

impl Default for ProbeConfig {
    /// Azure's defaults: every 5 s, two in a row either way; a 4 s timeout.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(4),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
        }
    }
}

/// What the probes say of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    /// No result yet: takes no new connections until its first success.
    Unknown,
    /// In rotation.
    Healthy,
    /// Out of rotation for new connections.
    Unhealthy,
}

/// The result of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeOutcome {
    /// Connected (TCP) or answered 200 (HTTP).
    Success,
    /// Refused, reset, a wrong answer, or no answer within the timeout.
    Failure,
}

/// A probe the caller must run now, and hand back with its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProbeStart {
    /// The backend to probe.
    pub backend: BackendId,
    /// Names this attempt: a result for an older attempt is ignored.
    pub attempt: u64,
}

/// A backend's change of health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The backend.
    pub backend: BackendId,
    /// Its health before.
    pub from: Health,
    /// Its health now.
    pub to: Health,
}

/// The timers each backend has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// When its next probe starts.
    NextProbe = 0,
    /// When the probe in flight counts as failed.
    Deadline = 1,
}

/// One backend's probing state.
#[derive(Debug, Clone)]
struct Target {
    backend: BackendId,
    health: Health,
    successes: u32,
    failures: u32,
    /// The attempt in flight, if any.
    in_flight: Option<u64>,
    timers: [Option<Instant>; 2],
    last: Option<(ProbeOutcome, Instant)>,
}

impl Target {
    fn new(backend: BackendId, now: Instant) -> Self {
        Self {
            backend,
            health: Health::Unknown,
            successes: 0,
            failures: 0,
            in_flight: None,
            timers: [Some(now), None],
            last: None,
        }
    }

    fn timer(&self, timer: Timer) -> Option<Instant> {
        self.timers[timer as usize]
    }

    fn set_timer(&mut self, timer: Timer, at: Option<Instant>) {
        self.timers[timer as usize] = at;
    }
}

/// Probes of a set of backends with one configuration.
#[derive(Debug, Clone)]
pub struct Prober {
    config: ProbeConfig,
    targets: Vec<Target>,
    next_attempt: u64,
    starts: VecDeque<ProbeStart>,
    transitions: VecDeque<Transition>,
}

impl Prober {
    /// Probes `backends`, the first probes due at `now`.
    pub fn new(config: ProbeConfig, backends: &[BackendId], now: Instant) -> Self {
        Self {
            config,
            targets: backends.iter().map(|&b| Target::new(b, now)).collect(),
            next_attempt: 0,
            starts: VecDeque::new(),
            transitions: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> ProbeConfig {
        self.config
    }

    /// Replaces the probed set: backends kept keep their state, new ones
    /// start unknown with a probe due at `now`, removed ones are forgotten
    /// (a late result for them is ignored).
    pub fn set_backends(&mut self, backends: &[BackendId], now: Instant) {
        let mut old = std::mem::take(&mut self.targets);
        self.targets = backends
            .iter()
            .map(|&b| match old.iter().position(|t| t.backend == b) {
                Some(i) => old.swap_remove(i),
                None => Target::new(b, now),
            })
            .collect();
    }

    /// A backend's health (`None` for one not probed here).
    pub fn health(&self, backend: BackendId) -> Option<Health> {
        self.target(backend).map(|t| t.health)
    }

    /// A backend's last result and when it came.
    pub fn last_result(&self, backend: BackendId) -> Option<(ProbeOutcome, Instant)> {
        self.target(backend).and_then(|t| t.last)
    }

    fn target(&self, backend: BackendId) -> Option<&Target> {
        self.targets.iter().find(|t| t.backend == backend)
    }

    /// The earliest instant [`Prober::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.targets
            .iter()
            .flat_map(|t| t.timers.iter().flatten())
            .min()
            .copied()
    }

    /// Starts the probes due by `now` (see [`Prober::poll_start`]) and fails
    /// the ones whose timeout passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let config = self.config;
        for index in 0..self.targets.len() {
            let target = &mut self.targets[index];
            if target.timer(Timer::Deadline).is_some_and(|at| at <= now) {
                target.set_timer(Timer::Deadline, None);
                target.in_flight = None;
                self.record(index, ProbeOutcome::Failure, now);
            }
            let target = &mut self.targets[index];
            if let Some(due) = target.timer(Timer::NextProbe).filter(|&at| at <= now) {
                // Keep the cadence; after a stall, restart it from now
                // rather than firing the missed probes at once.
                let next = due + config.interval;
                target.set_timer(
                    Timer::NextProbe,
                    Some(if next <= now {
                        now + config.interval
                    } else {
                        next
                    }),
                );
                if target.in_flight.is_none() {
                    let attempt = self.next_attempt;
                    self.next_attempt += 1;
                    target.in_flight = Some(attempt);
                    target.set_timer(Timer::Deadline, Some(now + config.timeout));
                    self.starts.push_back(ProbeStart {
                        backend: target.backend,
                        attempt,
                    });
                }
            }
        }
    }

    /// The next probe to run.
    pub fn poll_start(&mut self) -> Option<ProbeStart> {
        self.starts.pop_front()
    }

    /// A probe's outcome. Results of attempts no longer in flight (timed
    /// out, superseded, or for a removed backend) are ignored: returns
    /// whether this one counted.
    pub fn on_result(&mut self, start: ProbeStart, outcome: ProbeOutcome, now: Instant) -> bool {
        let Some(index) = self
            .targets
            .iter()
            .position(|t| t.backend == start.backend && t.in_flight == Some(start.attempt))
        else {
            return false;
        };
        let target = &mut self.targets[index];
        target.in_flight = None;
        target.set_timer(Timer::Deadline, None);
        self.record(index, outcome, now);
        true
    }

    fn record(&mut self, index: usize, outcome: ProbeOutcome, now: Instant) {
        let config = self.config;
        let target = &mut self.targets[index];
        target.last = Some((outcome, now));
        let from = target.health;
        let to = match outcome {
            ProbeOutcome::Success => {
                target.failures = 0;
                target.successes = target.successes.saturating_add(1);
                if from == Health::Unknown || target.successes >= config.healthy_threshold {
                    Health::Healthy
                } else {
                    from
                }
            }
            ProbeOutcome::Failure => {
                target.successes = 0;
                target.failures = target.failures.saturating_add(1);
                if from == Health::Unknown || target.failures >= config.unhealthy_threshold {
                    Health::Unhealthy
                } else {
                    from
                }
            }
        };
        if to != from {
            target.health = to;
            self.transitions.push_back(Transition {
                backend: target.backend,
                from,
                to,
            });
        }
    }

    /// The next change of health.
    pub fn poll_transition(&mut self) -> Option<Transition> {
        self.transitions.pop_front()
    }
}

#[cfg(test)]
#[path = "probe_tests.rs"]
mod tests;
