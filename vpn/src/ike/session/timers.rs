//! The session's timers: one deadline per kind, in a small table keyed by
//! an enum, from which the next deadline and the first expired timer are
//! read. The session rebuilds the table from its state after every input,
//! so a deadline lives in one place (the state) and cannot go stale.

use std::time::Instant;

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Start (or restart, after a back-off) an IKE_SA_INIT as initiator.
    Start,
    /// Retransmit or give up our IKE_SA_INIT or IKE_AUTH request.
    Handshake,
    /// Forget a peer's half-open IKE_SA_INIT that never got to IKE_AUTH.
    HalfOpen,
    /// Retransmit or give up our request on the current IKE SA.
    Request,
    /// Retransmit a request on a retiring IKE SA, or forget that SA.
    Retiring,
    /// Check that a silent peer is alive.
    Liveness,
    /// Rekey the IKE SA.
    RekeyIke,
    /// The IKE SA's lifetime is over.
    ExpireIke,
    /// Rekey the child SA.
    RekeyChild,
    /// The child SA's lifetime is over.
    ExpireChild,
    /// Remove replaced child SAs whose Delete never came.
    ChildCleanup,
    /// Change the cookie secret.
    CookieRotate,
}

impl Timer {
    /// Every timer, in the table's order.
    pub(crate) const ALL: [Timer; 12] = [
        Timer::Start,
        Timer::Handshake,
        Timer::HalfOpen,
        Timer::Request,
        Timer::Retiring,
        Timer::Liveness,
        Timer::RekeyIke,
        Timer::ExpireIke,
        Timer::RekeyChild,
        Timer::ExpireChild,
        Timer::ChildCleanup,
        Timer::CookieRotate,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// A deadline per [`Timer`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct TimerTable {
    at: [Option<Instant>; Timer::ALL.len()],
}

impl TimerTable {
    /// Sets `timer` to `at`, or stops it with `None`.
    pub(crate) fn set(&mut self, timer: Timer, at: Option<Instant>) {
        self.at[timer.index()] = at;
    }

    /// When `timer` expires, if it runs.
    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.at[timer.index()]
    }

    /// Stops every timer.
    pub(crate) fn clear(&mut self) {
        self.at = Default::default();
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }

    /// The timer expired at `now` with the earliest deadline (the first in
    /// the table's order among equals).
    pub(crate) fn expired(&self, now: Instant) -> Option<Timer> {
        Timer::ALL
            .iter()
            .filter_map(|&t| self.get(t).filter(|&at| at <= now).map(|at| (at, t)))
            .min_by_key(|&(at, t)| (at, t.index()))
            .map(|(_, t)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_earliest_deadline_and_the_first_expired_timer() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut table = TimerTable::default();
        assert_eq!(table.next(), None);
        assert_eq!(table.expired(t0 + 100 * s), None);
        table.set(Timer::RekeyChild, Some(t0 + 5 * s));
        table.set(Timer::Liveness, Some(t0 + 3 * s));
        table.set(Timer::Request, Some(t0 + 3 * s));
        assert_eq!(table.next(), Some(t0 + 3 * s));
        assert_eq!(table.expired(t0 + 2 * s), None);
        // Equal deadlines: the table's order.
        assert_eq!(table.expired(t0 + 3 * s), Some(Timer::Request));
        table.set(Timer::Request, None);
        assert_eq!(table.expired(t0 + 4 * s), Some(Timer::Liveness));
        table.set(Timer::Liveness, None);
        assert_eq!(table.expired(t0 + 4 * s), None);
        assert_eq!(table.get(Timer::RekeyChild), Some(t0 + 5 * s));
        assert_eq!(table.expired(t0 + 9 * s), Some(Timer::RekeyChild));
        table.clear();
        assert_eq!(table.next(), None);
        for (i, t) in Timer::ALL.iter().enumerate() {
            assert_eq!(t.index(), i);
        }
    }
}
