//! The exchange layer of one IKE SA (RFC 7296 §2.1, §2.2): message IDs in
//! each direction, a window of one (one request of ours outstanding at a
//! time), retransmission of that request on the schedule's deadlines until
//! it is answered or given up, and the cached response to the peer's last
//! request, sent again when that request comes again instead of
//! processing it twice. A response that matches no outstanding request is
//! not taken.

use super::config::Retransmit;
use super::events::Transmit;
use std::time::Instant;

/// Our request awaiting its response.
#[derive(Debug)]
pub(crate) struct Outstanding<P> {
    /// Its message ID.
    pub(crate) id: u32,
    transmit: Transmit,
    sends: u32,
    tries: u32,
    deadline: Instant,
    /// What it is for.
    pub(crate) purpose: P,
}

/// What a peer's request is, by its message ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestKind {
    /// The next one: process it.
    New,
    /// The last one again: send the cached response again.
    Again,
    /// Neither: drop it.
    Stale,
}

/// What a request's deadline brings.
#[derive(Debug)]
pub(crate) enum Deadline<P> {
    /// Nothing is due.
    Waiting,
    /// Send it again.
    Resend(Transmit),
    /// Its last wait is over: the peer is not answering.
    GaveUp(P),
}

/// Message IDs, our outstanding request and the cached response.
#[derive(Debug)]
pub(crate) struct Window<P> {
    next_id: u32,
    outstanding: Option<Outstanding<P>>,
    peer_next: u32,
    cached: Option<(u32, Transmit)>,
}

impl<P> Window<P> {
    /// A window whose next request of ours is `next_id` and whose next
    /// request from the peer is `peer_next`.
    pub(crate) fn new(next_id: u32, peer_next: u32) -> Window<P> {
        Window {
            next_id,
            outstanding: None,
            peer_next,
            cached: None,
        }
    }

    /// Whether a request of ours may be sent now.
    pub(crate) fn is_free(&self) -> bool {
        self.outstanding.is_none()
    }

    /// The message ID our next request takes.
    pub(crate) fn next_id(&self) -> u32 {
        self.next_id
    }

    /// Our outstanding request, if any.
    pub(crate) fn outstanding(&self) -> Option<&Outstanding<P>> {
        self.outstanding.as_ref()
    }

    /// Records our request `transmit` (sealed with [`Window::next_id`]),
    /// sent now, to be sent `tries` times at most; returns what to send.
    /// The window must be free: the caller checks [`Window::is_free`].
    pub(crate) fn start(
        &mut self,
        now: Instant,
        schedule: &Retransmit,
        tries: u32,
        transmit: Transmit,
        purpose: P,
    ) -> Transmit {
        debug_assert!(self.outstanding.is_none(), "a window of one");
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.outstanding = Some(Outstanding {
            id,
            transmit: transmit.clone(),
            sends: 1,
            tries: tries.max(1),
            deadline: now + schedule.wait_after(1),
            purpose,
        });
        transmit
    }

    /// Replaces the outstanding request's message by `transmit` under the
    /// same ID, its count of transmissions started again (IKE_SA_INIT sent
    /// again with a cookie, §2.6). Returns what to send.
    pub(crate) fn restart(
        &mut self,
        now: Instant,
        schedule: &Retransmit,
        transmit: Transmit,
    ) -> Option<Transmit> {
        let o = self.outstanding.as_mut()?;
        o.transmit = transmit.clone();
        o.sends = 1;
        o.deadline = now + schedule.wait_after(1);
        Some(transmit)
    }

    /// Whether a response with message ID `id` answers our outstanding
    /// request.
    pub(crate) fn awaits(&self, id: u32) -> bool {
        self.outstanding.as_ref().is_some_and(|o| o.id == id)
    }

    /// Takes the outstanding request answered by the response `id`; `None`
    /// (and nothing changes) for a response to nothing outstanding.
    pub(crate) fn answered_by(&mut self, id: u32) -> Option<P> {
        if !self.awaits(id) {
            return None;
        }
        self.outstanding.take().map(|o| o.purpose)
    }

    /// When the outstanding request is due for a retransmission or to be
    /// given up.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.outstanding.as_ref().map(|o| o.deadline)
    }

    /// The outstanding request's deadline at `now`.
    pub(crate) fn on_deadline(&mut self, now: Instant, schedule: &Retransmit) -> Deadline<P> {
        let Some(o) = self.outstanding.as_mut() else {
            return Deadline::Waiting;
        };
        if now < o.deadline {
            return Deadline::Waiting;
        }
        if o.sends >= o.tries {
            return match self.outstanding.take() {
                Some(o) => Deadline::GaveUp(o.purpose),
                None => Deadline::Waiting,
            };
        }
        o.sends += 1;
        o.deadline = now + schedule.wait_after(o.sends);
        Deadline::Resend(o.transmit.clone())
    }

    /// What the peer's request `id` is.
    pub(crate) fn classify(&self, id: u32) -> RequestKind {
        if id == self.peer_next {
            RequestKind::New
        } else if self.cached.as_ref().is_some_and(|(c, _)| *c == id) {
            RequestKind::Again
        } else {
            RequestKind::Stale
        }
    }

    /// Records our response `transmit` to the peer's request `id`.
    pub(crate) fn respond(&mut self, id: u32, transmit: Transmit) {
        self.peer_next = id.wrapping_add(1);
        self.cached = Some((id, transmit));
    }

    /// The cached response to the peer's last request.
    pub(crate) fn cached(&self) -> Option<&Transmit> {
        self.cached.as_ref().map(|(_, t)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn transmit(tag: u8) -> Transmit {
        Transmit {
            destination: "192.0.2.2:500".parse().unwrap(),
            source_port: 500,
            payload: vec![tag],
        }
    }

    fn schedule() -> Retransmit {
        Retransmit {
            initial: Duration::from_secs(1),
            backoff: 2.0,
            tries: 3,
        }
    }

    #[test]
    fn a_request_is_sent_again_on_its_deadlines_then_given_up() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut w: Window<&str> = Window::new(2, 0);
        assert!(w.is_free());
        assert_eq!(w.next_id(), 2);
        let sent = w.start(t0, &schedule(), 3, transmit(1), "liveness");
        assert_eq!(sent.payload, [1]);
        assert!(!w.is_free());
        assert_eq!(w.next_id(), 3);
        assert_eq!(w.deadline(), Some(t0 + s));
        assert!(matches!(w.on_deadline(t0, &schedule()), Deadline::Waiting));
        assert!(
            matches!(w.on_deadline(t0 + s, &schedule()), Deadline::Resend(t) if t.payload == [1])
        );
        assert_eq!(w.deadline(), Some(t0 + 3 * s), "then twice as long");
        assert!(matches!(
            w.on_deadline(t0 + 3 * s, &schedule()),
            Deadline::Resend(_)
        ));
        assert_eq!(w.deadline(), Some(t0 + 7 * s));
        assert!(matches!(
            w.on_deadline(t0 + 7 * s, &schedule()),
            Deadline::GaveUp("liveness")
        ));
        assert!(w.is_free());
        assert_eq!(w.deadline(), None);
    }

    #[test]
    fn only_the_response_to_the_outstanding_request_is_taken() {
        let t0 = Instant::now();
        let mut w: Window<u8> = Window::new(0, 0);
        assert_eq!(w.answered_by(0), None, "nothing outstanding");
        w.start(t0, &schedule(), 3, transmit(1), 7);
        assert!(!w.awaits(1));
        assert_eq!(w.answered_by(1), None, "another ID");
        assert!(!w.is_free());
        assert_eq!(w.answered_by(0), Some(7));
        assert_eq!(w.answered_by(0), None, "a duplicate response");
        w.start(t0, &schedule(), 3, transmit(2), 8);
        assert_eq!(w.outstanding().map(|o| o.id), Some(1));
        // The same ID, a new message: counted from the start again.
        let again = w.restart(t0 + Duration::from_millis(1500), &schedule(), transmit(3));
        assert_eq!(again.map(|t| t.payload), Some(vec![3]));
        assert_eq!(
            w.deadline(),
            Some(t0 + Duration::from_millis(2500)),
            "a first wait again"
        );
        assert_eq!(w.answered_by(1), Some(8));
    }

    #[test]
    fn a_repeated_request_is_answered_from_the_cache_and_old_ones_dropped() {
        let mut w: Window<()> = Window::new(0, 0);
        assert_eq!(w.classify(0), RequestKind::New);
        assert_eq!(w.classify(1), RequestKind::Stale);
        assert!(w.cached().is_none());
        w.respond(0, transmit(9));
        assert_eq!(w.classify(0), RequestKind::Again);
        assert_eq!(w.cached().map(|t| t.payload.clone()), Some(vec![9]));
        assert_eq!(w.classify(1), RequestKind::New);
        w.respond(1, transmit(10));
        assert_eq!(w.classify(0), RequestKind::Stale, "only the last is cached");
        assert_eq!(w.classify(5), RequestKind::Stale);
    }
}
