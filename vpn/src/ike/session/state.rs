//! The session's state: the enum of where the connection stands and the
//! data each state holds (our handshake, the established IKE SA with its
//! child SAs and pending work), and the SAs kept beside it (a peer's
//! half-open handshake, retiring IKE SAs).

use super::config::{Config, REKEY_BETWEEN};
use super::events::{ChildSaKeys, Transmit};
use super::rng::Rng;
use super::window::Window;
use crate::ike::auth::{AuthRequest, ChildSa};
use crate::ike::dh::KeyPair;
use crate::ike::protected::Protected;
use crate::ike::rekey::{IkeRekeyRequest, RekeyRequest};
use crate::ike::sa_init::{Agreed, InitRequest};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

/// Where the connection stands. Transitions (each in `Session`):
/// Idle → Initiating (start), Initiating → Initiating (cookie, IKE_AUTH
/// sent), Initiating → Established, Initiating → Idle (refused, given up),
/// any but Closed → Established (a peer's handshake completes),
/// Established → Established (rekeys), Established → Idle (dead, deleted,
/// expired, refused), any → Closed (close), Closed → Idle (connect).
pub(crate) enum State {
    /// No IKE SA; the next attempt at `start_at`, if we initiate.
    Idle {
        /// When to send the next IKE_SA_INIT.
        start_at: Option<Instant>,
    },
    /// Our IKE_SA_INIT or IKE_AUTH is under way.
    Initiating(Box<Initiating>),
    /// An IKE SA is up.
    Established(Box<Established>),
    /// Closed by the owner.
    Closed,
}

/// Our handshake as initiator.
pub(crate) struct Initiating {
    /// Our SPI.
    pub(crate) spi_i: u64,
    /// Our Diffie-Hellman key pair.
    pub(crate) pair: KeyPair,
    /// Ni.
    pub(crate) nonce: Vec<u8>,
    /// The IKE_SA_INIT request (with the cookie, once asked for one).
    pub(crate) request: InitRequest,
    /// Cookies asked for so far (a responder that keeps asking is given
    /// up on).
    pub(crate) cookie_rounds: u32,
    /// IKE_SA_INIT (ID 0), then IKE_AUTH (ID 1).
    pub(crate) window: Window<()>,
    /// Which of the two is under way.
    pub(crate) auth: Option<Box<AuthPhase>>,
}

/// Our IKE_AUTH request, after the IKE_SA_INIT exchange.
pub(crate) struct AuthPhase {
    /// What IKE_SA_INIT agreed.
    pub(crate) agreed: Agreed,
    /// The responder's IKE_SA_INIT answer (its AUTH signs it).
    pub(crate) init_response: Vec<u8>,
    /// Our IKE_AUTH request.
    pub(crate) request: AuthRequest,
    /// Where the peer is (port 4500 once a NAT was seen).
    pub(crate) peer: SocketAddrV4,
    /// Our port towards it.
    pub(crate) local_port: u16,
}

/// A peer's handshake: its IKE_SA_INIT answered, its IKE_AUTH awaited.
pub(crate) struct Responding {
    /// Its IKE_SA_INIT request.
    pub(crate) request: Vec<u8>,
    /// Our answer.
    pub(crate) response: Vec<u8>,
    /// What was agreed.
    pub(crate) agreed: Agreed,
    /// When it is forgotten without an IKE_AUTH.
    pub(crate) expires: Instant,
    /// Its IKE_AUTH request and our refusal, sent again if it comes again.
    pub(crate) refused: Option<(Vec<u8>, Transmit)>,
}

/// An IKE SA: its keys, its exchanges and where the peer is.
pub(crate) struct IkeSa {
    /// What was agreed (SK_d, nonces, SPIs).
    pub(crate) agreed: Agreed,
    /// Sealing and opening its messages.
    pub(crate) protected: Protected,
    /// Its exchanges.
    pub(crate) window: Window<Purpose>,
    /// Where the peer is.
    pub(crate) peer: SocketAddrV4,
    /// Our port towards it.
    pub(crate) local_port: u16,
    /// When to rekey it (none once asked for or when not current).
    pub(crate) rekey_at: Option<Instant>,
    /// When its lifetime ends.
    pub(crate) expire_at: Instant,
}

/// When to rekey an SA of `lifetime` made at `now` ([`REKEY_BETWEEN`]).
pub(crate) fn rekey_time(
    now: Instant,
    lifetime: Duration,
    config: &Config,
    rng: &mut Rng,
) -> Instant {
    let (from, to) = REKEY_BETWEEN;
    let margin = lifetime.mul_f64(1.0 - to + (to - from) * rng.fraction());
    let retransmit = &config.retransmit;
    let schedule = retransmit
        .give_up_after(retransmit.tries)
        .mul_f64(1.0 + 0.1 * rng.fraction());
    now + lifetime - margin.max(schedule).min(lifetime / 2)
}

/// When to try a refused or postponed rekey again: after `wait`, but
/// well before `expire_at`.
pub(crate) fn retry_before(now: Instant, wait: Duration, expire_at: Instant) -> Instant {
    (now + wait).min(now + expire_at.saturating_duration_since(now) / 2)
}

impl IkeSa {
    /// The SA of `agreed`, of whose original initiator we are
    /// (`initiator`) or not; `None` if its keys do not fit (they always
    /// do: they were derived for its cipher).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        agreed: Agreed,
        initiator: bool,
        window: Window<Purpose>,
        peer: SocketAddrV4,
        local_port: u16,
        now: Instant,
        config: &Config,
        rng: &mut Rng,
    ) -> Option<IkeSa> {
        let protected = Protected::new(&agreed, initiator).ok()?;
        Some(IkeSa {
            agreed,
            protected,
            window,
            peer,
            local_port,
            rekey_at: Some(rekey_time(now, config.ike_lifetime, config, rng)),
            expire_at: now + config.ike_lifetime,
        })
    }

    /// Its SPIs (initiator's, responder's).
    pub(crate) fn spis(&self) -> (u64, u64) {
        (self.agreed.spi_i, self.agreed.spi_r)
    }

    /// A message of it to send to the peer.
    pub(crate) fn transmit(&self, message: &[u8]) -> Transmit {
        Transmit::ike(self.peer, self.local_port, message)
    }
}

/// What one of our requests on an established IKE SA is for.
pub(crate) enum Purpose {
    /// An empty INFORMATIONAL: is the peer alive?
    Liveness,
    /// Rekeying the child SA we receive under `old_inbound`.
    RekeyChild {
        /// The request.
        request: RekeyRequest,
        /// The old child SA's inbound SPI.
        old_inbound: u32,
    },
    /// Rekeying the IKE SA.
    RekeyIke {
        /// The request.
        request: IkeRekeyRequest,
        /// Our new Diffie-Hellman key pair.
        pair: KeyPair,
    },
    /// A new child SA, the IKE SA having none left.
    NewChild {
        /// The request.
        request: RekeyRequest,
    },
    /// Deleting the child SAs we receive under these SPIs.
    DeleteChildren(Vec<u32>),
    /// Deleting the IKE SA itself.
    DeleteIke,
}

/// An IKE SA that is not the current one.
pub(crate) struct Retiring {
    /// The SA.
    pub(crate) sa: IkeSa,
    /// When it is forgotten, deleted or not.
    pub(crate) until: Instant,
    /// The SA the peer made by rekeying while our own IKE rekey was under
    /// way: it replaces the current one if its nonces win (RFC 7296
    /// §2.8.2).
    pub(crate) candidate: bool,
    /// Our Delete of it waits for its window to be free.
    pub(crate) pending_delete: bool,
}

/// The peer's rekey of a child SA that we answered while ours of the same
/// child was under way (RFC 7296 §2.8.1). Kept beside the child SAs, not
/// on the old one: the peer may delete that before our answer comes.
#[derive(Debug, Clone)]
pub(crate) struct Crossed {
    /// The inbound SPI of the child SA both rekey.
    pub(crate) old_inbound: u32,
    /// The peer's nonce.
    pub(crate) nonce_i: Vec<u8>,
    /// Ours in the answer.
    pub(crate) nonce_r: Vec<u8>,
    /// The inbound SPI of the child SA the peer's rekey made.
    pub(crate) new_inbound: u32,
    /// The peer deleted the old child SA: only the rekey that won does,
    /// so ours lost whatever the nonces say.
    pub(crate) peer_won: bool,
}

/// A child SA, as the session tracks it (the keys went out in an event).
#[derive(Debug, Clone)]
pub(crate) struct Child {
    /// Its inbound SPI.
    pub(crate) inbound_spi: u32,
    /// Its outbound SPI.
    pub(crate) outbound_spi: u32,
    /// Whether the switch sends on it.
    pub(crate) sending: bool,
    /// When to rekey it, while it is the live one.
    pub(crate) rekey_at: Option<Instant>,
    /// When its lifetime ends, while it is the live one.
    pub(crate) expire_at: Option<Instant>,
    /// Once replaced: when it is removed if no Delete came by then.
    pub(crate) retire_at: Option<Instant>,
    /// Made by the peer's rekey that crossed ours: undecided until our
    /// own rekey is answered.
    pub(crate) pending: bool,
}

impl Child {
    /// A new live child SA at `now`.
    pub(crate) fn new(
        inbound_spi: u32,
        outbound_spi: u32,
        now: Instant,
        config: &Config,
        rng: &mut Rng,
    ) -> Child {
        Child {
            inbound_spi,
            outbound_spi,
            sending: false,
            rekey_at: Some(rekey_time(now, config.child_lifetime, config, rng)),
            expire_at: Some(now + config.child_lifetime),
            retire_at: None,
            pending: false,
        }
    }

    /// Whether it is in use and not replaced.
    pub(crate) fn live(&self) -> bool {
        self.retire_at.is_none() && !self.pending
    }

    /// Marks it replaced at `now`: no more rekey or expiry, removed by
    /// `now + wait` at the latest.
    pub(crate) fn retire(&mut self, now: Instant, wait: Duration) {
        self.rekey_at = None;
        self.expire_at = None;
        self.retire_at = Some(now + wait);
    }
}

/// The switch's view of `child`: `ours_first` when we initiated the
/// exchange that made it (its initiator-to-responder keys are ours to send
/// with).
pub(crate) fn child_keys(child: ChildSa, ours_first: bool, sa: &IkeSa) -> ChildSaKeys {
    let (outbound_keymat, inbound_keymat) = if ours_first {
        (child.keys_i_to_r, child.keys_r_to_i)
    } else {
        (child.keys_r_to_i, child.keys_i_to_r)
    };
    ChildSaKeys {
        cipher: child.cipher,
        inbound_spi: child.our_spi,
        outbound_spi: child.peer_spi,
        inbound_keymat,
        outbound_keymat,
        local_ts: child.ts_local,
        remote_ts: child.ts_remote,
        udp_encapsulated: sa.agreed.nat,
        peer: sa.peer,
    }
}

/// Work waiting for the window of the current IKE SA to be free.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Wants {
    /// Delete these child SAs (our inbound SPIs).
    pub(crate) delete_children: Vec<u32>,
    /// Rekey the IKE SA.
    pub(crate) rekey_ike: bool,
    /// Rekey the live child SA.
    pub(crate) rekey_child: bool,
    /// Make a child SA, there being none.
    pub(crate) new_child: bool,
    /// Check the peer is alive.
    pub(crate) liveness: bool,
}

/// An established IKE SA and its child SAs.
pub(crate) struct Established {
    /// The current IKE SA.
    pub(crate) ike: IkeSa,
    /// The child SAs, oldest first.
    pub(crate) children: Vec<Child>,
    /// Requests to send when the window is free.
    pub(crate) wants: Wants,
    /// A peer's child SA rekey that crossed ours.
    pub(crate) crossed: Option<Crossed>,
    /// With no child SA left: when the IKE SA goes down if none was made
    /// by then.
    pub(crate) childless_until: Option<Instant>,
    /// When to ask for a new child SA again after a refusal.
    pub(crate) new_child_at: Option<Instant>,
    /// When to check the peer is alive, if the window is free then.
    pub(crate) liveness_at: Instant,
}

impl Established {
    /// The peer was heard from at `now`.
    pub(crate) fn heard(&mut self, now: Instant, config: &Config) {
        self.liveness_at = now + config.dpd_interval;
    }

    /// The child SA received under `spi`.
    pub(crate) fn child(&mut self, inbound_spi: u32) -> Option<&mut Child> {
        self.children
            .iter_mut()
            .find(|c| c.inbound_spi == inbound_spi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ike::session::{Retransmit, Role};
    use std::net::Ipv4Addr;

    fn config(tries: u32) -> Config {
        let mut c = Config::new(
            Role::Initiator,
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(192, 0, 2, 2),
            b"key",
            (Ipv4Addr::new(10, 81, 0, 0), 24),
            (Ipv4Addr::new(10, 82, 0, 0), 24),
        );
        c.retransmit = Retransmit {
            initial: Duration::from_secs(1),
            backoff: 2.0,
            tries,
        };
        c
    }

    #[test]
    fn a_rekey_leaves_room_for_its_retransmissions_but_not_before_half_life() {
        let now = Instant::now();
        let mut rng = Rng::new(3);
        let life = Duration::from_secs(100);
        // 1 + 2 + 4 s of retransmissions fit in a 10-20 % margin.
        let short = config(3);
        for _ in 0..100 {
            let at = rekey_time(now, life, &short, &mut rng) - now;
            assert!(
                at >= Duration::from_secs(80) && at < Duration::from_secs(90),
                "{at:?}"
            );
        }
        // 31 s do not: earlier, by the schedule (and up to 10 % more).
        let long = config(5);
        for _ in 0..100 {
            let at = rekey_time(now, life, &long, &mut rng) - now;
            assert!(
                at > Duration::from_secs_f64(65.8) && at <= Duration::from_secs(69),
                "{at:?}"
            );
        }
        // 127 s would not fit at all: half the lifetime.
        let at = rekey_time(now, life, &config(7), &mut rng) - now;
        assert_eq!(at, Duration::from_secs(50));
        // A retry comes well before the expiry.
        let expire = now + Duration::from_secs(10);
        assert_eq!(
            retry_before(now, Duration::from_secs(1), expire),
            now + Duration::from_secs(1)
        );
        assert_eq!(
            retry_before(now, Duration::from_secs(8), expire),
            now + Duration::from_secs(5)
        );
    }
}
