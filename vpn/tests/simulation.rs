//! Two IKE sessions on an in-memory link with virtual time: latency,
//! loss, duplicates and reordering drawn from a seeded xorshift. Each side
//! has a model switch that installs the SAs the session's events name and
//! seals ESP on the one it is told to send on; at every step where both
//! sides are established, a packet sealed by either opens on the other's
//! inbound SAs (no gap across rekeys). ESP that crosses the link is
//! reported back to the receiving session, as a switch would.

use sdn_vpn::esp::{HEADROOM, InboundSa, OutboundSa};
use sdn_vpn::ike::session::{Config, DownReason, Event, Phase, Retransmit, Role, Session};
use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let span = (high - low).as_micros() as u64 + 1;
        low + Duration::from_micros(self.next() % span)
    }
}

/// How the link treats each datagram.
#[derive(Clone, Copy)]
struct Link {
    loss: f64,
    duplicate: f64,
    /// Datagrams held back by up to 200 ms more, arriving after later ones.
    reorder: f64,
    latency: (Duration, Duration),
}

const CLEAN: Link = Link {
    loss: 0.0,
    duplicate: 0.0,
    reorder: 0.0,
    latency: (Duration::from_millis(5), Duration::from_millis(20)),
};

/// A model switch: installed SAs, the one sent on, what happened.
#[derive(Default)]
struct Switch {
    inbound: HashMap<u32, InboundSa>,
    outbound: HashMap<u32, OutboundSa>,
    sending: Option<u32>,
    downs: Vec<(Duration, DownReason)>,
    established: usize,
    /// Outbound SPIs a packet was seen to open through.
    carried: BTreeSet<u32>,
}

impl Switch {
    fn take(&mut self, at: Duration, event: Event) {
        match event {
            Event::ChildSaInstalled(keys) => {
                self.inbound
                    .insert(keys.inbound_spi, keys.inbound_sa().expect("keys fit"));
                self.outbound
                    .insert(keys.outbound_spi, keys.outbound_sa().expect("keys fit"));
            }
            Event::ChildSaSending { outbound_spi, .. } => {
                assert!(self.outbound.contains_key(&outbound_spi), "installed first");
                self.sending = Some(outbound_spi);
            }
            Event::ChildSaRemoved {
                inbound_spi,
                outbound_spi,
            } => {
                self.inbound.remove(&inbound_spi);
                self.outbound.remove(&outbound_spi);
                if self.sending == Some(outbound_spi) {
                    self.sending = None;
                }
            }
            Event::IkeEstablished { .. } => self.established += 1,
            Event::IkeRekeyed { .. } => {}
            Event::IkeDown { reason } => self.downs.push((at, reason)),
        }
    }
}

struct Datagram {
    at: Instant,
    order: u64,
    to_b: bool,
    from: SocketAddrV4,
    port: u16,
    payload: Vec<u8>,
}

struct Sim {
    base: Instant,
    now: Instant,
    rng: Xorshift,
    link: Link,
    up: bool,
    a: Session,
    b: Session,
    sa: Switch,
    sb: Switch,
    flight: Vec<Datagram>,
    order: u64,
    esp_every: Duration,
    next_esp: Instant,
    /// Steps where both were established and a sealed packet did not open.
    gaps: usize,
    /// Steps where both were established.
    checked: usize,
}

/// Short lifetimes (child 30 s, IKE 120 s), a liveness check after 5 s of
/// silence, retransmissions at 0.5 s, backing off by 1.5.
fn config(role: Role, local: Ipv4Addr, remote: Ipv4Addr, psk: &[u8]) -> Config {
    let (ours, theirs) = if local == A {
        (Ipv4Addr::new(10, 81, 0, 0), Ipv4Addr::new(10, 82, 0, 0))
    } else {
        (Ipv4Addr::new(10, 82, 0, 0), Ipv4Addr::new(10, 81, 0, 0))
    };
    let mut c = Config::new(role, local, remote, psk, (ours, 24), (theirs, 24));
    c.child_lifetime = secs(30);
    c.ike_lifetime = secs(120);
    c.dpd_interval = secs(5);
    c.dpd_retries = 3;
    c.retransmit = Retransmit {
        initial: ms(500),
        backoff: 1.5,
        tries: 5,
    };
    c.reconnect_initial = ms(500);
    c.reconnect_max = secs(4);
    c
}

impl Sim {
    fn new(a: Config, b: Config, link: Link, seed: u64) -> Sim {
        let base = Instant::now();
        Sim {
            base,
            now: base,
            rng: Xorshift(seed | 1),
            link,
            up: true,
            a: Session::new(a, seed.wrapping_mul(3), base).unwrap(),
            b: Session::new(b, seed.wrapping_mul(5).wrapping_add(1), base).unwrap(),
            sa: Switch::default(),
            sb: Switch::default(),
            flight: Vec::new(),
            order: 0,
            esp_every: ms(100),
            next_esp: base,
            gaps: 0,
            checked: 0,
        }
    }

    fn standard(link: Link, seed: u64) -> Sim {
        Sim::new(
            config(Role::Initiator, A, B, b"key"),
            config(Role::Responder, B, A, b"key"),
            link,
            seed,
        )
    }

    fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    /// Puts what both sessions send on the link.
    fn transmit(&mut self) {
        for to_b in [true, false] {
            loop {
                let session = if to_b { &mut self.a } else { &mut self.b };
                let Some(t) = session.poll_transmit() else {
                    break;
                };
                let from = SocketAddrV4::new(if to_b { A } else { B }, t.source_port);
                if !self.up || self.rng.chance(self.link.loss) {
                    continue;
                }
                let copies = if self.rng.chance(self.link.duplicate) {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let mut delay = self.rng.between(self.link.latency.0, self.link.latency.1);
                    if self.rng.chance(self.link.reorder) {
                        delay += self.rng.between(ms(0), ms(200));
                    }
                    self.order += 1;
                    self.flight.push(Datagram {
                        at: self.now + delay,
                        order: self.order,
                        to_b,
                        from,
                        port: t.destination.port(),
                        payload: t.payload.clone(),
                    });
                }
            }
        }
    }

    fn events(&mut self) {
        let at = self.elapsed();
        while let Some(e) = self.a.poll_event() {
            self.sa.take(at, e);
        }
        while let Some(e) = self.b.poll_event() {
            self.sb.take(at, e);
        }
    }

    /// ESP both ways: the oracle (keys only) and, across the link, the
    /// report to the receiving session.
    fn esp(&mut self) {
        let both = self.a.phase() == Phase::Established && self.b.phase() == Phase::Established;
        let through = self.up && !self.rng.chance(self.link.loss);
        for to_b in [true, false] {
            let (from, to, session) = if to_b {
                (&mut self.sa, &mut self.sb, &mut self.b)
            } else {
                (&mut self.sb, &mut self.sa, &mut self.a)
            };
            let sealed = from.sending.and_then(|spi| {
                let out = from.outbound.get_mut(&spi)?;
                let mut packet = vec![0u8; HEADROOM];
                packet.extend_from_slice(b"an inner packet");
                out.seal(&mut packet, 4).ok()?;
                Some((spi, packet))
            });
            let opened = sealed.and_then(|(spi, mut packet)| {
                let inbound = to.inbound.get_mut(&spi)?;
                inbound.open(&mut packet).ok()?;
                Some(spi)
            });
            if both {
                self.checked += 1;
                match opened {
                    Some(spi) => {
                        from.carried.insert(spi);
                    }
                    None => self.gaps += 1,
                }
            }
            if let (Some(spi), true) = (opened, through) {
                session.esp_received(self.now, spi);
            }
        }
    }

    /// Runs to `base + at`.
    fn run_until(&mut self, at: Duration) {
        let end = self.base + at;
        loop {
            self.transmit();
            self.events();
            let next = [
                self.a.poll_timeout(),
                self.b.poll_timeout(),
                self.flight.iter().map(|d| d.at).min(),
                Some(self.next_esp),
            ]
            .into_iter()
            .flatten()
            .min()
            .expect("ESP ticks");
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            let now = self.now;
            self.flight.sort_by_key(|d| (d.at, d.order));
            while self.flight.first().is_some_and(|d| d.at <= now) {
                let d = self.flight.remove(0);
                let session = if d.to_b { &mut self.b } else { &mut self.a };
                session.handle_datagram(now, d.from, d.port, &d.payload);
            }
            if self.a.poll_timeout().is_some_and(|t| t <= now) {
                self.a.handle_timeout(now);
            }
            if self.b.poll_timeout().is_some_and(|t| t <= now) {
                self.b.handle_timeout(now);
            }
            self.events();
            if self.next_esp <= now {
                self.esp();
                self.next_esp = now + self.esp_every;
            }
        }
        self.now = end;
    }
}

#[test]
fn rekeys_by_lifetime_leave_no_gap_in_esp() {
    let mut crossed = 0;
    for seed in 1..=8 {
        let mut sim = Sim::standard(CLEAN, seed);
        sim.run_until(secs(600));
        let (a, b) = (sim.a.stats(), sim.b.stats());
        assert_eq!(sim.a.phase(), Phase::Established);
        assert_eq!(
            (sim.sa.established, sim.sb.established),
            (1, 1),
            "never down"
        );
        assert!(sim.sa.downs.is_empty() && sim.sb.downs.is_empty());
        // A 30 s child SA rekeyed at 80-90 % of its life: about 23 times
        // in 600 s; a 120 s IKE SA about 5 times. Both sides count each,
        // whichever rekeyed.
        assert!(
            a.child_rekeys >= 18 && a.child_rekeys == b.child_rekeys,
            "{a:?} {b:?}"
        );
        assert!(
            a.ike_rekeys >= 4 && a.ike_rekeys == b.ike_rekeys,
            "{a:?} {b:?}"
        );
        assert_eq!(
            sim.gaps, 0,
            "ESP opened at every step ({} checked)",
            sim.checked
        );
        assert!(
            sim.sa.carried.len() as u64 > a.child_rekeys,
            "every child SA carried ESP"
        );
        assert_eq!(sim.sa.inbound.len(), 1, "old SAs are all gone");
        assert_eq!(sim.sb.inbound.len(), 1);
        assert_eq!(a.peer_dead + b.peer_dead, 0);
        assert_eq!(
            a.liveness_checks + b.liveness_checks,
            0,
            "ESP kept them quiet"
        );
        crossed += a.rekey_collisions + b.rekey_collisions;
    }
    // Both ends rekey by their own jittered timers: now and then they
    // cross, and the nonces settle it.
    assert!(crossed > 0);
}

#[test]
fn loss_duplicates_and_reordering_still_establish_and_rekey() {
    let lossy = Link {
        loss: 0.15,
        duplicate: 0.1,
        reorder: 0.2,
        latency: (ms(5), ms(80)),
    };
    for seed in 1..=5u64 {
        let mut a = config(Role::Initiator, A, B, b"key");
        let mut b = config(Role::Responder, B, A, b"key");
        // Enough tries that 15 % loss each way does not look like death,
        // and lifetimes whose rekey margin holds such a schedule (a rekey
        // starts at half the lifetime at the earliest).
        for c in [&mut a, &mut b] {
            c.retransmit.tries = 10;
            c.dpd_retries = 9;
            c.child_lifetime = secs(60);
            c.ike_lifetime = secs(200);
        }
        let mut sim = Sim::new(a, b, lossy, seed);
        sim.run_until(secs(600));
        let (a, b) = (sim.a.stats(), sim.b.stats());
        assert_eq!(sim.a.phase(), Phase::Established, "seed {seed}: {a:?}");
        assert_eq!(sim.b.phase(), Phase::Established, "seed {seed}: {b:?}");
        assert!(sim.sa.downs.is_empty(), "seed {seed}: {:?}", sim.sa.downs);
        assert!(sim.sb.downs.is_empty(), "seed {seed}: {:?}", sim.sb.downs);
        assert!(a.child_rekeys >= 10, "seed {seed}: {a:?}");
        assert!(a.ike_rekeys >= 2, "seed {seed}: {a:?}");
        assert!(a.retransmissions + b.retransmissions > 0, "seed {seed}");
        assert!(
            a.responses_resent + b.responses_resent > 0,
            "duplicates answered from the cache, seed {seed}"
        );
        assert_eq!(sim.gaps, 0, "seed {seed}");
        assert!(sim.sa.inbound.len() <= 2 && sim.sb.inbound.len() <= 2);
    }
}

#[test]
fn a_cut_link_is_found_dead_on_both_sides_and_the_initiator_brings_it_back() {
    let mut sim = Sim::standard(CLEAN, 7);
    sim.run_until(secs(40));
    assert_eq!(sim.a.phase(), Phase::Established);
    let bound = sim.a.config().dead_peer_within();
    let cut = sim.elapsed();
    sim.up = false;
    sim.run_until(cut + bound + secs(1));
    for (name, s) in [("A", &sim.sa), ("B", &sim.sb)] {
        let [(at, reason)] = s.downs[..] else {
            panic!("{name}: one down event, not {:?}", s.downs);
        };
        assert_eq!(reason, DownReason::PeerDead, "{name}");
        assert!(
            at - cut <= bound,
            "{name} took {:?}, more than {bound:?}",
            at - cut
        );
        assert!(s.inbound.is_empty() && s.outbound.is_empty() && s.sending.is_none());
    }
    assert_eq!(sim.b.phase(), Phase::Idle);
    assert!(sim.a.stats().liveness_checks >= 1 && sim.b.stats().liveness_checks >= 1);
    assert!(sim.a.stats().retransmissions >= 3);
    // The initiator keeps trying (unanswered attempts are no events).
    let attempts = sim.a.stats().attempts;
    sim.run_until(sim.elapsed() + secs(30));
    assert!(sim.a.stats().attempts > attempts + 2);
    assert_eq!(sim.sa.downs.len(), 1);
    // The link comes back: the initiator re-establishes.
    sim.up = true;
    let restored = sim.elapsed();
    sim.run_until(restored + secs(10));
    assert_eq!(sim.a.phase(), Phase::Established);
    assert_eq!(sim.b.phase(), Phase::Established);
    assert_eq!((sim.sa.established, sim.sb.established), (2, 2));
    let gaps = sim.gaps;
    sim.run_until(restored + secs(100));
    assert_eq!(sim.gaps, gaps, "and rekeys without gaps again");
    assert!(sim.sa.carried.len() >= 4);
}

#[test]
fn a_wrong_pre_shared_key_never_establishes() {
    let mut sim = Sim::new(
        config(Role::Initiator, A, B, b"the right key"),
        config(Role::Responder, B, A, b"the wrong key"),
        CLEAN,
        5,
    );
    sim.run_until(secs(20));
    assert_eq!((sim.sa.established, sim.sb.established), (0, 0));
    for s in [&sim.sa, &sim.sb] {
        assert!(!s.downs.is_empty());
        assert!(s.downs.iter().all(|(_, r)| *r == DownReason::AuthFailed));
        assert!(s.inbound.is_empty());
    }
    // Tried again on the back-off, not in a tight loop.
    let attempts = sim.a.stats().attempts;
    assert!((3..=20).contains(&attempts), "{attempts}");
}
