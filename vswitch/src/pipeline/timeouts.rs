//! Idle and hard timeouts: a min-heap of deadlines, checked lazily (an idle
//! deadline moves with traffic, so a popped timer is re-armed if the entry
//! was used since).

use super::flow_mod::stats_of;
use super::table::Entry;
use super::{FlowRemoved, Pipeline, RemovedReason};
use crate::classifier::RuleId;
use crate::flow::FlowSpec;
use std::cmp::Reverse;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Timer {
    pub(super) deadline: Instant,
    pub(super) table: u8,
    pub(super) id: RuleId,
    pub(super) seq: u64,
}

impl Pipeline {
    /// The earliest instant at which an entry may time out.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse(t)| t.deadline)
    }

    /// Removes entries whose timeouts passed by `now`; returns those that
    /// asked to be reported.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<FlowRemoved> {
        self.conntrack.sweep(now);
        let mut removed = Vec::new();
        let mut changed = false;
        while let Some(Reverse(timer)) = self.timers.peek().copied() {
            if timer.deadline > now {
                break;
            }
            self.timers.pop();
            let table = &mut self.tables[usize::from(timer.table)];
            let Some(entry) = table.get(timer.id) else {
                continue;
            };
            if entry.seq != timer.seq {
                continue; // The slot was reused by a later entry.
            }
            match expiry(entry, now) {
                Some(reason) => {
                    if let Some(entry) = table.remove(timer.id) {
                        changed = true;
                        if entry.spec.send_flow_removed {
                            removed.push(FlowRemoved {
                                reason,
                                stats: stats_of(&entry, now),
                            });
                        }
                    }
                }
                None => {
                    if let Some(deadline) =
                        first_deadline(&entry.spec, entry.installed, entry.last_used)
                    {
                        self.timers.push(Reverse(Timer { deadline, ..timer }));
                    }
                }
            }
        }
        if changed {
            self.cache.clear();
        }
        removed
    }
}

/// When an entry installed at `installed` and last hit at `last_used` times
/// out, if ever.
pub(super) fn first_deadline(
    spec: &FlowSpec,
    installed: Instant,
    last_used: Instant,
) -> Option<Instant> {
    let hard = (!spec.hard_timeout.is_zero()).then(|| installed + spec.hard_timeout);
    let idle = (!spec.idle_timeout.is_zero()).then(|| last_used + spec.idle_timeout);
    match (hard, idle) {
        (Some(h), Some(i)) => Some(h.min(i)),
        (h, i) => h.or(i),
    }
}

/// Whether (and why) an entry has timed out at `now`.
fn expiry(entry: &Entry, now: Instant) -> Option<RemovedReason> {
    let spec = &entry.spec;
    if !spec.hard_timeout.is_zero() && now >= entry.installed + spec.hard_timeout {
        return Some(RemovedReason::HardTimeout);
    }
    if !spec.idle_timeout.is_zero() && now >= entry.last_used + spec.idle_timeout {
        return Some(RemovedReason::IdleTimeout);
    }
    None
}
