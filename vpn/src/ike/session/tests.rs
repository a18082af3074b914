//! Each transition of the session's state, between two sessions whose
//! datagrams the tests carry by hand (or drop, or repeat).

use super::state::State;
use super::*;
use crate::esp::{Cipher, HEADROOM, InboundSa, OutboundSa};
use std::collections::HashMap;
use std::net::Ipv4Addr;

const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Settings with short times: retransmits at 1, 2, 4 s; liveness after
/// 10 s of silence; a child SA for 100 s, the IKE SA for 300 s.
fn config(role: Role, local: Ipv4Addr, remote: Ipv4Addr, psk: &[u8]) -> Config {
    let (ours, theirs) = if local == A {
        (Ipv4Addr::new(10, 81, 0, 0), Ipv4Addr::new(10, 82, 0, 0))
    } else {
        (Ipv4Addr::new(10, 82, 0, 0), Ipv4Addr::new(10, 81, 0, 0))
    };
    let mut c = Config::new(role, local, remote, psk, (ours, 24), (theirs, 24));
    c.retransmit = Retransmit {
        initial: secs(1),
        backoff: 2.0,
        tries: 3,
    };
    c.dpd_interval = secs(10);
    c.dpd_retries = 2;
    c.child_lifetime = secs(100);
    c.ike_lifetime = secs(300);
    c.reconnect_initial = secs(1);
    c.reconnect_max = secs(8);
    c.cookie_threshold = None;
    c
}

/// The switch's side of one end: installed SAs and the one it sends on.
#[derive(Default)]
struct Switch {
    inbound: HashMap<u32, InboundSa>,
    outbound: HashMap<u32, OutboundSa>,
    sending: Option<u32>,
    events: Vec<String>,
    up: bool,
    downs: Vec<DownReason>,
}

impl Switch {
    fn take(&mut self, event: Event) {
        self.events.push(match &event {
            Event::ChildSaInstalled(_) => "installed".to_string(),
            Event::ChildSaSending { .. } => "sending".to_string(),
            Event::ChildSaRemoved { .. } => "removed".to_string(),
            Event::IkeEstablished { .. } => "established".to_string(),
            Event::IkeRekeyed { .. } => "ike rekeyed".to_string(),
            Event::IkeDown { reason } => format!("down {reason:?}"),
        });
        match event {
            Event::ChildSaInstalled(keys) => {
                self.inbound
                    .insert(keys.inbound_spi, keys.inbound_sa().unwrap());
                self.outbound
                    .insert(keys.outbound_spi, keys.outbound_sa().unwrap());
            }
            Event::ChildSaSending { outbound_spi, .. } => self.sending = Some(outbound_spi),
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
            Event::IkeEstablished { .. } => self.up = true,
            Event::IkeRekeyed { .. } => {}
            Event::IkeDown { reason } => {
                self.up = false;
                self.downs.push(reason);
            }
        }
    }
}

/// Two sessions, the datagrams between them, and virtual time.
struct Pair {
    a: Session,
    b: Session,
    sa: Switch,
    sb: Switch,
    now: Instant,
    /// Where B sees A's datagrams come from (a NAT rewrites it).
    a_seen: Option<SocketAddrV4>,
    /// Datagrams sent, kept for tests that replay them.
    log: Vec<(bool, Transmit)>,
    /// Whether A's and B's datagrams arrive.
    a_to_b: bool,
    b_to_a: bool,
    /// A's datagrams counted from zero; the one of this number is held.
    a_sent: usize,
    hold_from_a: Option<usize>,
    held: Vec<Transmit>,
}

impl Pair {
    fn new(a: Config, b: Config) -> Pair {
        let now = Instant::now();
        Pair {
            a: Session::new(a, 1, now).unwrap(),
            b: Session::new(b, 2, now).unwrap(),
            sa: Switch::default(),
            sb: Switch::default(),
            now,
            a_seen: None,
            log: Vec::new(),
            a_to_b: true,
            b_to_a: true,
            a_sent: 0,
            hold_from_a: None,
            held: Vec::new(),
        }
    }

    fn standard() -> Pair {
        Pair::new(
            config(Role::Initiator, A, B, b"key"),
            config(Role::Responder, B, A, b"key"),
        )
    }

    /// Carries every datagram until none is left; events to the switches.
    fn deliver(&mut self) -> usize {
        let mut carried = 0;
        loop {
            let mut any = false;
            while let Some(t) = self.a.poll_transmit() {
                any = true;
                self.log.push((true, t.clone()));
                self.a_sent += 1;
                if self.hold_from_a == Some(self.a_sent - 1) {
                    self.held.push(t);
                    continue;
                }
                if self.a_to_b {
                    carried += 1;
                    let from = self
                        .a_seen
                        .map(|s| SocketAddrV4::new(*s.ip(), s.port() + t.source_port - IKE_PORT))
                        .unwrap_or(SocketAddrV4::new(A, t.source_port));
                    self.b
                        .handle_datagram(self.now, from, t.destination.port(), &t.payload);
                }
            }
            while let Some(t) = self.b.poll_transmit() {
                any = true;
                self.log.push((false, t.clone()));
                if self.b_to_a {
                    carried += 1;
                    let from = SocketAddrV4::new(B, t.source_port);
                    // The NAT maps its ports back to A's 500 and 4500.
                    let port = match self.a_seen {
                        Some(s) if t.destination.port() == s.port() => IKE_PORT,
                        Some(_) => NAT_T_PORT,
                        None => t.destination.port(),
                    };
                    self.a.handle_datagram(self.now, from, port, &t.payload);
                }
            }
            self.events();
            if !any {
                return carried;
            }
        }
    }

    fn events(&mut self) {
        while let Some(e) = self.a.poll_event() {
            self.sa.take(e);
        }
        while let Some(e) = self.b.poll_event() {
            self.sb.take(e);
        }
    }

    /// Runs both to `until`, handling their timers and carrying datagrams.
    fn run_until(&mut self, until: Instant) {
        // Tests set deadlines in the state directly.
        self.a.sync_timers();
        self.b.sync_timers();
        loop {
            self.deliver();
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    self.a.handle_timeout(self.now);
                    self.b.handle_timeout(self.now);
                }
                _ => break,
            }
        }
        self.now = until;
        self.deliver();
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn establish(&mut self) {
        self.run_for(Duration::ZERO);
        assert_eq!(self.a.phase(), Phase::Established);
        assert_eq!(self.b.phase(), Phase::Established);
    }

    /// Whether a packet A seals on the SA it sends on opens at B, and
    /// back.
    fn esp_works(&mut self) -> bool {
        fn one_way(from: &mut Switch, to: &mut Switch) -> bool {
            let Some(out) = from.sending.and_then(|s| from.outbound.get_mut(&s)) else {
                return false;
            };
            let mut packet = vec![0u8; HEADROOM];
            packet.extend_from_slice(b"inner packet");
            out.seal(&mut packet, 4).unwrap();
            let spi = u32::from_be_bytes(packet[..4].try_into().unwrap());
            to.inbound
                .get_mut(&spi)
                .is_some_and(|sa| sa.open(&mut packet).is_ok())
        }
        one_way(&mut self.sa, &mut self.sb) && one_way(&mut self.sb, &mut self.sa)
    }
}

fn established(s: &mut Session) -> &mut super::state::Established {
    match &mut s.state {
        State::Established(est) => est,
        _ => panic!("not established"),
    }
}

#[test]
fn an_initiator_starts_at_once_and_a_responder_waits() {
    let mut p = Pair::standard();
    assert_eq!(p.a.phase(), Phase::Idle);
    assert_eq!(p.a.poll_timeout(), Some(p.now), "Idle → Initiating is due");
    assert_eq!(p.b.poll_timeout(), None);
    assert_eq!(p.b.phase(), Phase::Idle);
    p.a.handle_timeout(p.now);
    assert_eq!(p.a.phase(), Phase::Connecting);
    let t = p.a.poll_transmit().unwrap();
    assert_eq!(t.destination, SocketAddrV4::new(B, IKE_PORT));
    assert_eq!(t.source_port, IKE_PORT);
    assert_eq!(p.a.stats().attempts, 1);
    assert_eq!(
        p.a.poll_timeout(),
        Some(p.now + secs(1)),
        "its retransmission"
    );
}

#[test]
fn the_handshake_establishes_both_sides_with_a_working_child_sa() {
    let mut p = Pair::standard();
    p.establish();
    for s in [&p.sa, &p.sb] {
        assert_eq!(s.events, ["established", "installed", "sending"]);
    }
    assert!(p.esp_works());
    assert_eq!(p.a.stats().established, 1);
    assert_eq!(p.b.stats().established, 1);
    assert_eq!(p.a.stats().retransmissions, 0);
    // Idle afterwards: only the liveness check and rekeys are due.
    assert_eq!(p.a.poll_timeout(), Some(p.now + secs(10)));
}

#[test]
fn a_cookie_is_demanded_under_load_and_the_initiator_comes_back_with_it() {
    let mut b = config(Role::Responder, B, A, b"key");
    b.cookie_threshold = Some(0);
    let mut p = Pair::new(config(Role::Initiator, A, B, b"key"), b);
    p.establish();
    assert_eq!(p.b.stats().cookies_demanded, 1);
    assert!(p.esp_works());
}

#[test]
fn an_unanswered_handshake_is_given_up_and_tried_again_after_a_back_off() {
    let mut p = Pair::standard();
    p.a_to_b = false;
    p.run_for(secs(6));
    // Sent at 0, 1 and 3 s, given up at 7 s.
    assert_eq!(p.a.stats().retransmissions, 2);
    assert_eq!(p.a.phase(), Phase::Connecting);
    p.run_for(secs(1));
    assert_eq!(p.a.phase(), Phase::Idle);
    assert!(p.sa.downs.is_empty(), "silence is counted, not an event");
    let next = p.a.poll_timeout().unwrap();
    assert!(next >= p.now + secs(1) && next <= p.now + Duration::from_millis(1250));
    p.run_until(next);
    assert_eq!(p.a.phase(), Phase::Connecting);
    assert_eq!(p.a.stats().attempts, 2);
    // The peer comes back: the next attempt gets through.
    p.a_to_b = true;
    p.run_for(secs(30));
    assert_eq!(p.a.phase(), Phase::Established);
}

#[test]
fn a_wrong_key_fails_on_both_sides() {
    let mut p = Pair::new(
        config(Role::Initiator, A, B, b"one key"),
        config(Role::Responder, B, A, b"another"),
    );
    p.run_for(Duration::ZERO);
    assert_eq!(p.a.phase(), Phase::Idle);
    assert_eq!(p.sa.downs, [DownReason::AuthFailed]);
    assert_eq!(p.sb.downs, [DownReason::AuthFailed]);
    assert!(!p.sa.up && !p.sb.up);
    // The initiator keeps trying, and keeps failing.
    p.run_for(secs(5));
    assert!(p.sa.downs.len() >= 2);
    assert!(p.sa.inbound.is_empty() && p.sb.inbound.is_empty());
}

#[test]
fn no_common_cipher_fails_with_no_proposal_chosen() {
    let mut a = config(Role::Initiator, A, B, b"key");
    a.ciphers = vec![Cipher::Aes128Gcm16];
    let mut b = config(Role::Responder, B, A, b"key");
    b.ciphers = vec![Cipher::Aes256Gcm16];
    let mut p = Pair::new(a, b);
    p.run_for(Duration::ZERO);
    assert_eq!(p.sa.downs, [DownReason::NoProposalChosen]);
    assert_eq!(p.sb.downs, [DownReason::NoProposalChosen]);
}

#[test]
fn a_repeated_request_is_answered_from_the_cache_and_stray_responses_ignored() {
    let mut p = Pair::standard();
    p.establish();
    // A's liveness check reaches B twice; B answers both, the same bytes.
    p.b_to_a = false;
    p.run_for(secs(10));
    let (_, check) = p
        .log
        .iter()
        .rev()
        .find(|(from_a, _)| *from_a)
        .unwrap()
        .clone();
    let from = SocketAddrV4::new(A, check.source_port);
    p.b.handle_datagram(p.now, from, check.destination.port(), &check.payload);
    let answers: Vec<Transmit> = std::iter::from_fn(|| p.b.poll_transmit()).collect();
    assert_eq!(answers.len(), 1);
    assert_eq!(p.b.stats().responses_resent, 1);
    // The answer reaches A twice: taken once, then unexpected.
    let unexpected = p.a.stats().unexpected;
    for _ in 0..2 {
        p.a.handle_datagram(p.now, SocketAddrV4::new(B, 500), 500, &answers[0].payload);
    }
    assert_eq!(p.a.stats().unexpected, unexpected + 1);
    assert_eq!(p.a.stats().liveness_checks, 1);
    p.b_to_a = true;
    p.run_for(secs(5));
    assert_eq!(p.a.phase(), Phase::Established);
}

#[test]
fn the_initiator_rekeys_the_child_sa_making_before_breaking() {
    let mut p = Pair::standard();
    p.establish();
    let old = p.sa.sending;
    // Rekeys between 80 and 90 s of the 100 s lifetime; ESP keeps B from
    // checking liveness meanwhile.
    p.establish_quiet_until(secs(95));
    assert_eq!(p.a.stats().child_rekeys + p.b.stats().child_rekeys, 2);
    assert_ne!(p.sa.sending, old);
    assert_eq!(p.sa.inbound.len(), 1, "the old SA is gone on both sides");
    assert_eq!(p.sb.inbound.len(), 1);
    assert!(p.esp_works());
}

impl Pair {
    /// Runs to `at` from the establishment, reporting ESP both ways every
    /// second so that no liveness check is needed.
    fn establish_quiet_until(&mut self, at: Duration) {
        let end = self.now + at;
        while self.now < end {
            let step = (self.now + secs(1)).min(end);
            self.run_until(step);
            for (session, switch) in [(&mut self.a, &self.sa), (&mut self.b, &self.sb)] {
                for &spi in switch.inbound.keys() {
                    session.esp_received(self.now, spi);
                }
            }
            assert!(self.esp_works(), "ESP works at every second");
        }
    }
}

#[test]
fn a_responder_rekeys_too_and_the_other_side_answers() {
    let mut p = Pair::standard();
    p.establish();
    // Only B's timer is near: B (the IKE responder) rekeys the child SA.
    let t = p.now + secs(5);
    established(&mut p.b).children[0].rekey_at = Some(t);
    established(&mut p.a).children[0].rekey_at = None;
    p.run_until(t);
    // A answered: it installed the new SA, sends on it only once B
    // deleted the old one.
    assert_eq!(
        &p.sa.events[3..],
        ["installed", "removed", "sending"],
        "{:?}",
        p.sa.events
    );
    assert_eq!(&p.sb.events[3..], ["installed", "sending", "removed"]);
    assert_eq!(p.sa.inbound.len(), 1);
    assert!(p.esp_works());
}

#[test]
fn a_peer_sending_on_the_new_sa_is_answered_on_it() {
    let mut p = Pair::standard();
    p.establish();
    // A rekeys; B installs the new SA, and before the Delete of the old
    // one comes, ESP arrives on the new one: B sends on it too.
    p.b_to_a = false;
    let t = p.now + secs(1);
    established(&mut p.a).children[0].rekey_at = Some(t);
    established(&mut p.b).children[0].rekey_at = None;
    p.run_until(t);
    let before = p.sb.sending;
    let children = &established(&mut p.b).children;
    assert_eq!(children.len(), 2, "the old and the new");
    let new = children.iter().find(|c| !c.sending).unwrap().inbound_spi;
    // ESP on the old SA changes nothing; on the new one it does.
    let old = children.iter().find(|c| c.sending).unwrap().inbound_spi;
    p.b.esp_received(p.now, old);
    p.events();
    assert_eq!(p.sb.sending, before);
    p.b.esp_received(p.now, new);
    p.events();
    assert_ne!(p.sb.sending, before);
    assert_eq!(p.sb.events.last().map(String::as_str), Some("sending"));
}

#[test]
fn the_ike_sa_is_rekeyed_by_either_side_and_children_carry_over() {
    for rekeying_side_is_a in [true, false] {
        let mut p = Pair::standard();
        p.establish();
        let t = p.now + secs(5);
        let (first, second) = if rekeying_side_is_a {
            (&mut p.a, &mut p.b)
        } else {
            (&mut p.b, &mut p.a)
        };
        established(first).ike.rekey_at = Some(t);
        established(second).ike.rekey_at = None;
        let old = established(first).ike.spis();
        p.run_until(t + secs(1));
        assert_ne!(established(&mut p.a).ike.spis(), old);
        assert_eq!(
            established(&mut p.a).ike.spis(),
            established(&mut p.b).ike.spis()
        );
        assert!(p.sa.events.contains(&"ike rekeyed".to_string()));
        assert!(p.sb.events.contains(&"ike rekeyed".to_string()));
        assert!(
            p.a.retiring.is_empty() && p.b.retiring.is_empty(),
            "old one deleted"
        );
        assert!(p.esp_works());
        // The new SA carries the next exchanges: a liveness check.
        p.run_for(secs(11));
        assert_eq!(p.a.phase(), Phase::Established);
        assert!(p.a.stats().liveness_checks + p.b.stats().liveness_checks >= 1);
        assert_eq!(p.a.stats().peer_dead, 0);
    }
}

#[test]
fn crossed_child_rekeys_leave_one_new_child_sa() {
    for seed in 0..6u64 {
        let mut p = Pair::standard();
        p.a.rng = super::rng::Rng::new(seed);
        p.establish();
        let t = p.now + secs(3);
        established(&mut p.a).children[0].rekey_at = Some(t);
        established(&mut p.b).children[0].rekey_at = Some(t);
        // Both requests leave before either arrives.
        p.now = t;
        p.a.handle_timeout(t);
        p.b.handle_timeout(t);
        p.run_for(secs(2));
        assert!(p.a.stats().rekey_collisions >= 1 && p.b.stats().rekey_collisions >= 1);
        assert_eq!(p.sa.inbound.len(), 1, "{:?}", p.sa.events);
        assert_eq!(p.sb.inbound.len(), 1, "{:?}", p.sb.events);
        let (ea, eb) = (
            &established(&mut p.a).children,
            &established(&mut p.b).children,
        );
        assert_eq!(ea[0].inbound_spi, eb[0].outbound_spi);
        assert!(p.esp_works());
    }
}

#[test]
fn crossed_child_rekeys_settle_when_the_winners_delete_overtakes_an_answer() {
    // A's answer to B's rekey is held back while A's next datagram (the
    // Delete of the old SA, when A's rekey wins) goes ahead; whichever
    // side wins, both end with the same single child SA.
    let mut outcomes = std::collections::BTreeSet::new();
    for _ in 0..24 {
        let mut p = Pair::standard();
        p.establish();
        let old = established(&mut p.a).children[0].inbound_spi;
        let t = p.now + secs(3);
        established(&mut p.a).children[0].rekey_at = Some(t);
        established(&mut p.b).children[0].rekey_at = Some(t);
        p.run_until(t - secs(1));
        p.now = t;
        p.a.handle_timeout(t);
        p.b.handle_timeout(t);
        // A's rekey request, then its answer to B's: hold the answer.
        p.a_sent = 0;
        p.hold_from_a = Some(1);
        p.deliver();
        for held in std::mem::take(&mut p.held) {
            p.b.handle_datagram(
                p.now,
                SocketAddrV4::new(A, held.source_port),
                held.destination.port(),
                &held.payload,
            );
        }
        p.hold_from_a = None;
        p.run_for(secs(2));
        for s in [&mut p.a, &mut p.b] {
            let est = established(s);
            assert_eq!(est.children.len(), 1, "{:?}", est.children);
            assert!(est.children[0].live() && est.crossed.is_none());
        }
        let (ea, eb) = (
            &established(&mut p.a).children,
            &established(&mut p.b).children,
        );
        assert_eq!(ea[0].inbound_spi, eb[0].outbound_spi);
        assert_ne!(ea[0].inbound_spi, old);
        assert!(p.esp_works());
        // Which side's new SA survived.
        outcomes.insert(p.sa.events.iter().filter(|e| *e == "installed").count());
        // And the next rekey is not refused forever.
        p.establish_quiet_until(secs(120));
        assert!(p.sa.downs.is_empty() && p.sb.downs.is_empty());
    }
    assert_eq!(outcomes.len(), 2, "both ends won some: {outcomes:?}");
}

#[test]
fn crossed_ike_rekeys_leave_one_new_ike_sa() {
    for _ in 0..4 {
        let mut p = Pair::standard();
        p.establish();
        let t = p.now + secs(3);
        established(&mut p.a).ike.rekey_at = Some(t);
        established(&mut p.b).ike.rekey_at = Some(t);
        p.now = t;
        p.a.handle_timeout(t);
        p.b.handle_timeout(t);
        p.run_for(secs(20));
        assert_eq!(
            established(&mut p.a).ike.spis(),
            established(&mut p.b).ike.spis()
        );
        assert!(p.a.retiring.is_empty() && p.b.retiring.is_empty());
        assert!(p.a.stats().rekey_collisions >= 1);
        assert!(p.esp_works());
        assert_eq!(p.a.stats().peer_dead + p.b.stats().peer_dead, 0);
    }
}

#[test]
fn a_silent_peer_is_checked_then_declared_dead_and_the_initiator_reconnects() {
    let mut p = Pair::standard();
    p.establish();
    let cut = p.now;
    p.a_to_b = false;
    p.b_to_a = false;
    let bound = p.a.config().dead_peer_within();
    p.run_until(cut + secs(10));
    assert_eq!(p.a.stats().liveness_checks, 1, "after 10 s of silence");
    p.run_until(cut + bound);
    for s in [&p.sa, &p.sb] {
        assert_eq!(s.downs, [DownReason::PeerDead]);
        assert!(s.inbound.is_empty() && s.outbound.is_empty());
        assert_eq!(s.events[3..], ["removed", "down PeerDead"]);
    }
    assert_eq!(p.b.phase(), Phase::Idle);
    assert_eq!(p.b.poll_timeout(), None, "a responder just waits");
    assert_ne!(p.a.phase(), Phase::Established);
    p.a_to_b = true;
    p.b_to_a = true;
    p.run_for(secs(20));
    assert_eq!(p.a.phase(), Phase::Established);
    assert!(p.esp_works());
}

#[test]
fn esp_from_the_peer_keeps_liveness_checks_away() {
    let mut p = Pair::standard();
    p.establish();
    p.establish_quiet_until(secs(30));
    assert_eq!(p.a.stats().liveness_checks + p.b.stats().liveness_checks, 0);
}

#[test]
fn a_peer_that_closes_is_seen_down_and_a_closed_side_ignores_initiations() {
    let mut p = Pair::standard();
    p.establish();
    p.b.close(p.now);
    assert_eq!(p.b.phase(), Phase::Closed);
    p.run_for(Duration::ZERO);
    assert_eq!(p.sb.downs, [DownReason::Closed]);
    assert_eq!(p.sa.downs, [DownReason::PeerDeleted]);
    assert!(p.sa.inbound.is_empty() && p.sb.inbound.is_empty());
    assert!(p.b.retiring.is_empty(), "the Delete was answered");
    // A tries again; B, closed, does not answer until it connects.
    p.run_for(secs(3));
    assert_eq!(p.a.phase(), Phase::Connecting);
    p.b.connect(p.now);
    p.run_for(secs(10));
    assert_eq!(p.a.phase(), Phase::Established);
    assert_eq!(p.b.phase(), Phase::Established);
}

#[test]
fn a_lifetime_that_runs_out_tears_down_and_deletes() {
    let mut p = Pair::standard();
    p.establish();
    for s in [&mut p.a, &mut p.b] {
        established(s).children[0].rekey_at = None;
    }
    p.establish_quiet_until(secs(99));
    assert!(p.sa.downs.is_empty());
    p.run_for(secs(2));
    assert!(p.sa.downs.contains(&DownReason::Expired) || p.sb.downs.contains(&DownReason::Expired));
    // The initiator is back.
    p.run_for(secs(10));
    assert_eq!(p.a.phase(), Phase::Established);
}

#[test]
fn a_nat_moves_ike_and_esp_to_port_4500_behind_the_marker() {
    let mut p = Pair::standard();
    p.a_seen = Some("203.0.113.9:30500".parse().unwrap());
    p.establish();
    // A's second datagram is its IKE_AUTH request, B's second the answer.
    let auth = p.log.iter().filter(|(a, _)| *a).nth(1).unwrap().1.clone();
    assert_eq!(auth.source_port, NAT_T_PORT);
    assert_eq!(auth.destination, SocketAddrV4::new(B, NAT_T_PORT));
    assert_eq!(&auth.payload[..4], &NON_ESP_MARKER);
    let answer = p.log.iter().filter(|(a, _)| !*a).nth(1).unwrap().1.clone();
    assert_eq!(answer.source_port, NAT_T_PORT);
    assert_eq!(answer.destination, "203.0.113.9:34500".parse().unwrap());
    assert!(p.esp_works());
    // Without the marker on 4500 (ESP, a keepalive): not IKE.
    let before = p.b.stats().malformed;
    p.b.handle_datagram(
        p.now,
        "203.0.113.9:34500".parse().unwrap(),
        NAT_T_PORT,
        &[0xff],
    );
    p.b.handle_datagram(
        p.now,
        "203.0.113.9:34500".parse().unwrap(),
        NAT_T_PORT,
        auth.message(),
    );
    assert_eq!(p.b.stats().malformed, before + 2);
}

#[test]
fn a_peers_new_initiation_replaces_the_established_sa() {
    let mut p = Pair::standard();
    p.establish();
    // A restarts: a new session, which knows nothing of the old SA.
    p.a = Session::new(config(Role::Initiator, A, B, b"key"), 9, p.now).unwrap();
    p.sa = Switch::default();
    p.run_for(Duration::ZERO);
    assert_eq!(p.sb.downs, [DownReason::Replaced]);
    assert!(p.sb.up);
    assert_eq!(p.sb.inbound.len(), 1);
    assert!(p.esp_works());
}

#[test]
fn bytes_that_are_not_ike_are_counted_and_dropped() {
    let mut p = Pair::standard();
    p.establish();
    let mut state = 0x1234_5678_9abc_def0u64;
    let from = SocketAddrV4::new(A, IKE_PORT);
    for (n, t) in p.log.clone().iter().enumerate() {
        for _ in 0..50 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut bytes = t.1.payload.clone();
            let at = (state as usize) % bytes.len();
            bytes[at] ^= (state >> 40) as u8 | 1;
            bytes.truncate(bytes.len() - (state >> 20) as usize % 3 * (n % 2));
            p.a.handle_datagram(p.now, from, t.1.destination.port(), &bytes);
            p.b.handle_datagram(p.now, from, t.1.destination.port(), &bytes);
        }
    }
    p.b.handle_datagram(p.now, from, IKE_PORT, &[]);
    p.b.handle_datagram(p.now, from, NAT_T_PORT, &[0, 0, 0]);
    assert!(p.b.stats().malformed > 0);
    p.run_for(secs(1));
    assert_eq!(p.a.phase(), Phase::Established);
    assert!(p.esp_works());
}

#[test]
fn a_deleted_last_child_sa_is_made_again_and_the_ike_sa_stays() {
    for a_deletes in [true, false] {
        let mut p = Pair::standard();
        p.establish();
        let spis = established(&mut p.a).ike.spis();
        // One side deletes the only child SA (as strongSwan does at its
        // hard expiry): A keeps the connection up, so A makes a new one,
        // whichever side deleted it.
        let inbound = delete_first_child(if a_deletes { &mut p.a } else { &mut p.b }, p.now);
        p.run_for(secs(1));
        assert_eq!(p.a.phase(), Phase::Established);
        assert_eq!(established(&mut p.a).ike.spis(), spis, "the same IKE SA");
        assert_eq!(p.sa.inbound.len(), 1, "{:?}", p.sa.events);
        assert_eq!(p.sb.inbound.len(), 1, "{:?}", p.sb.events);
        assert!(!p.sa.inbound.contains_key(&inbound) && !p.sb.outbound.contains_key(&inbound));
        assert!(p.esp_works());
        assert!(p.sa.downs.is_empty() && p.sb.downs.is_empty());
    }
}

#[test]
fn an_ike_sa_left_without_a_child_sa_goes_down_after_a_while() {
    // Both only answer: nobody makes a new child SA.
    let mut p = Pair::standard();
    p.establish();
    p.a.keep_up = false;
    delete_first_child(&mut p.b, p.now);
    p.run_for(secs(1));
    assert!(p.sa.inbound.is_empty() && p.sb.inbound.is_empty());
    assert_eq!(p.a.phase(), Phase::Established, "waits for a new one");
    // 2 × (1 + 2 + 4) s later.
    p.run_for(secs(14));
    assert!(
        p.sa.downs.contains(&DownReason::PeerDeleted)
            || p.sb.downs.contains(&DownReason::PeerDeleted)
    );
    assert_ne!(p.a.phase(), Phase::Established);
}

/// Has `s` delete its first child SA now; its inbound SPI.
fn delete_first_child(s: &mut Session, now: Instant) -> u32 {
    let (Some(est), mut ctx) = s.split() else {
        panic!("not established");
    };
    let inbound = est.children[0].inbound_spi;
    est.wants.delete_children.push(inbound);
    est.drive(&mut ctx, now);
    inbound
}

#[test]
fn cookies_are_demanded_only_above_the_rate() {
    let now = Instant::now();
    let mut b = config(Role::Responder, B, A, b"key");
    b.cookie_threshold = Some(2);
    let mut b = Session::new(b, 2, now).unwrap();
    let first_datagram = |seed: u64| {
        let mut a = Session::new(config(Role::Initiator, A, B, b"key"), seed, now).unwrap();
        a.handle_timeout(now);
        a.poll_transmit().unwrap()
    };
    let from = SocketAddrV4::new(A, IKE_PORT);
    for seed in 10..13 {
        b.handle_datagram(now, from, IKE_PORT, &first_datagram(seed).payload);
    }
    assert_eq!(b.stats().cookies_demanded, 1, "the third in a second");
    // A second later the count starts again.
    let later = now + secs(1);
    b.handle_datagram(later, from, IKE_PORT, &first_datagram(20).payload);
    assert_eq!(b.stats().cookies_demanded, 1);
}
