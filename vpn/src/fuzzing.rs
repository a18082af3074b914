//! Fuzz target bodies, kept in the crate so that the normal test suite runs
//! them over seeds and mutations too (`fuzz/` calls them from cargo-fuzz):
//! ESP decapsulation, IKE messages, and an IKE session's datagram input.

use crate::esp::{Cipher, EspError, HEADROOM, InboundSa, OutboundSa};

const SPI: u32 = 0x0001_0203;

/// ESP decapsulation: the first byte picks the cipher and whether the rest
/// is sealed first (a real packet the fuzzer then corrupts by its second
/// byte's XOR at its third byte's offset) or opened as it is. Invariants:
/// nothing but a packet sealed under the SA's key opens; a packet that
/// opens opens once; a sealed packet opens to what was sealed; every
/// refusal is counted once.
pub fn esp_open(data: &[u8]) {
    let [mode, flip, at, rest @ ..] = data else {
        return;
    };
    let cipher = match mode % 3 {
        0 => Cipher::Aes128Gcm16,
        1 => Cipher::Aes256Gcm16,
        _ => Cipher::ChaCha20Poly1305,
    };
    let keymat: Vec<u8> = (0..cipher.keymat_len()).map(|i| i as u8).collect();
    let (Ok(mut outbound), Ok(mut inbound)) = (
        OutboundSa::new(cipher, SPI, &keymat),
        InboundSa::new(cipher, SPI, &keymat),
    ) else {
        panic!("valid keying material is taken");
    };
    let mut packet;
    let sealed = mode & 0x80 != 0;
    if sealed {
        packet = vec![0u8; HEADROOM];
        packet.extend_from_slice(rest);
        assert!(outbound.seal(&mut packet, 4).is_ok(), "room was given");
        if *flip != 0 {
            let index = usize::from(*at) % packet.len();
            packet[index] ^= flip;
        }
    } else {
        packet = rest.to_vec();
    }
    let copy = packet.clone();
    let result = inbound.open(&mut packet);
    let counted = inbound.stats.packets
        + inbound.stats.replayed
        + inbound.stats.auth_failed
        + inbound.stats.malformed;
    assert_eq!(counted, 1, "one outcome counted: {result:?}");
    match result {
        Ok(opened) => {
            assert!(sealed, "only a sealed packet opens");
            if *flip == 0 {
                assert_eq!(&packet[opened.inner.clone()], rest);
                assert_eq!(opened.next_header, 4);
            }
            // A flipped bit in the SPI names another SA; elsewhere it fails
            // authentication, so an opened packet was not altered.
            assert_eq!(opened.seq, 1);
            let mut again = copy;
            assert_eq!(
                inbound.open(&mut again),
                Err(EspError::Replayed(crate::replay::Replay::Seen)),
                "a packet opens once"
            );
        }
        Err(EspError::WrongSpi(spi)) => assert_ne!(spi, SPI),
        Err(_) => {}
    }
}

/// IKEv2 messages: the header and payload chain, and every payload's typed
/// view. Invariants: a message that parses is rebuilt byte for byte from
/// its header and payload bodies (when its reserved bits are clear), every
/// body lies inside it, and the typed views never panic.
pub fn ike_message(data: &[u8]) {
    use crate::ike::message::{
        HEADER_LEN, KeyExchange, Message, Notify, emit_payload, payload, proposals,
        traffic_selectors,
    };
    let Ok(m) = Message::parse(data) else {
        return;
    };
    let mut rebuilt = Vec::with_capacity(data.len());
    m.header.emit(&mut rebuilt);
    assert_eq!(&rebuilt[..], &data[..HEADER_LEN]);
    let mut reserved_clear = true;
    for (i, p) in m.payloads.iter().enumerate() {
        assert!(p.body.start >= HEADER_LEN && p.body.end <= data.len());
        reserved_clear &= data[p.body.start - 3] == 0;
        let next = match m.payloads.get(i + 1) {
            Some(n) => n.kind,
            None if p.kind == payload::SK || p.kind == payload::SKF => p.inner_first,
            None => payload::NONE,
        };
        let body = &data[p.body.clone()];
        assert!(emit_payload(&mut rebuilt, next, body).is_some());
        match p.kind {
            payload::SA => {
                let _ = proposals(body);
            }
            payload::KE => {
                let _ = KeyExchange::parse(body);
            }
            payload::NOTIFY => {
                let _ = Notify::parse(body);
            }
            payload::TSI | payload::TSR => {
                let _ = traffic_selectors(body);
            }
            _ => {}
        }
    }
    if reserved_clear {
        assert_eq!(rebuilt, data, "a message is its header and payloads");
    }
}

/// An IKE session's datagram input (`Session::handle_datagram`, then its
/// timers): the first byte picks the session and the port, the rest is the
/// datagram. A responder takes it as it is; an initiator waiting for its
/// IKE_SA_INIT answer, and an established pair's either side, take it with
/// the IKE SPIs set to theirs, so that it reaches their parsers and the
/// encrypted payload's check. Invariants: nothing panics; junk never moves
/// an established session out of its phase, and the pair still completes
/// a liveness check afterwards.
pub fn ike_session(data: &[u8]) {
    use crate::ike::session::{IKE_PORT, NAT_T_PORT, Phase};
    use std::net::SocketAddrV4;
    let [mode, rest @ ..] = data else {
        return;
    };
    let now = std::time::Instant::now();
    let port = if mode & 0x80 != 0 {
        NAT_T_PORT
    } else {
        IKE_PORT
    };
    let from = SocketAddrV4::new(session_fixture::A, port);
    let with_spis = |spi_i: u64, spi_r: Option<u64>| {
        let mut bytes = rest.to_vec();
        let at = if port == NAT_T_PORT { 4 } else { 0 };
        if let Some(head) = bytes.get_mut(at..at + 8) {
            head.copy_from_slice(&spi_i.to_be_bytes());
        }
        if let (Some(spi_r), Some(head)) = (spi_r, bytes.get_mut(at + 8..at + 16)) {
            head.copy_from_slice(&spi_r.to_be_bytes());
        }
        bytes
    };
    match mode % 4 {
        0 => {
            let mut b = session_fixture::responder(now);
            b.handle_datagram(now, from, port, rest);
            b.handle_timeout(now + std::time::Duration::from_secs(3600));
            while b.poll_transmit().is_some() || b.poll_event().is_some() {}
        }
        1 => {
            let mut a = session_fixture::initiator(now);
            a.handle_timeout(now);
            let Some(first) = a.poll_transmit() else {
                panic!("an initiator sends IKE_SA_INIT at once");
            };
            let spi_i = u64::from_be_bytes(first.payload[..8].try_into().unwrap_or_default());
            let from = SocketAddrV4::new(session_fixture::B, port);
            a.handle_datagram(now, from, port, &with_spis(spi_i, None));
            a.handle_timeout(now + std::time::Duration::from_secs(3600));
        }
        side => {
            let (mut a, mut b, spis) = session_fixture::established(now);
            let (target, from) = if side == 2 {
                (&mut b, SocketAddrV4::new(session_fixture::A, port))
            } else {
                (&mut a, SocketAddrV4::new(session_fixture::B, port))
            };
            target.handle_datagram(now, from, port, &with_spis(spis.0, Some(spis.1)));
            assert_eq!(target.phase(), Phase::Established, "junk changes nothing");
            // A liveness check still gets its answer.
            let later = now + a.config().dpd_interval;
            session_fixture::run(&mut a, &mut b, later);
            assert_eq!(a.phase(), Phase::Established);
            assert_eq!(b.phase(), Phase::Established);
            assert!(a.stats().liveness_checks >= 1);
            assert_eq!(a.stats().peer_dead + b.stats().peer_dead, 0);
        }
    }
}

/// Two sessions for [`ike_session`], and carrying datagrams between them.
mod session_fixture {
    use crate::ike::session::{Config, Role, Session};
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::time::Instant;

    pub(super) const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    pub(super) const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    fn config(role: Role, local: Ipv4Addr, remote: Ipv4Addr) -> Config {
        let net = |n| (Ipv4Addr::new(10, n, 0, 0), 24);
        let (ours, theirs) = if local == A { (81, 82) } else { (82, 81) };
        let mut c = Config::new(role, local, remote, b"fuzz", net(ours), net(theirs));
        c.cookie_threshold = None;
        c
    }

    pub(super) fn initiator(now: Instant) -> Session {
        Session::new(config(Role::Initiator, A, B), 1, now).expect("a valid config")
    }

    pub(super) fn responder(now: Instant) -> Session {
        Session::new(config(Role::Responder, B, A), 2, now).expect("a valid config")
    }

    /// Carries datagrams both ways and runs both sessions' timers up to
    /// `until` (at most a few hundred rounds).
    pub(super) fn run(a: &mut Session, b: &mut Session, until: Instant) {
        let mut now = until;
        for _ in 0..400 {
            let mut moved = false;
            while let Some(t) = a.poll_transmit() {
                moved = true;
                let from = SocketAddrV4::new(A, t.source_port);
                b.handle_datagram(now, from, t.destination.port(), &t.payload);
            }
            while let Some(t) = b.poll_transmit() {
                moved = true;
                let from = SocketAddrV4::new(B, t.source_port);
                a.handle_datagram(now, from, t.destination.port(), &t.payload);
            }
            while a.poll_event().is_some() || b.poll_event().is_some() {}
            if !moved {
                let next = [a.poll_timeout(), b.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                match next {
                    Some(t) if t <= until => {
                        now = t;
                        a.handle_timeout(now);
                        b.handle_timeout(now);
                    }
                    _ => return,
                }
            }
        }
    }

    /// An established pair and its IKE SA's SPIs.
    pub(super) fn established(now: Instant) -> (Session, Session, (u64, u64)) {
        let (mut a, mut b) = (initiator(now), responder(now));
        a.handle_timeout(now);
        let mut spis = (0, 0);
        let mut rounds = 0;
        while rounds < 8 {
            rounds += 1;
            while let Some(t) = a.poll_transmit() {
                let from = SocketAddrV4::new(A, t.source_port);
                b.handle_datagram(now, from, t.destination.port(), &t.payload);
            }
            while let Some(t) = b.poll_transmit() {
                let from = SocketAddrV4::new(B, t.source_port);
                a.handle_datagram(now, from, t.destination.port(), &t.payload);
            }
            while let Some(e) = a.poll_event() {
                if let crate::ike::session::Event::IkeEstablished { spi_i, spi_r, .. } = e {
                    spis = (spi_i, spi_r);
                }
            }
            while b.poll_event().is_some() {}
        }
        assert_ne!(spis, (0, 0), "the pair establishes");
        (a, b, spis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ike_message_holds_over_mutations() {
        // A header and two payloads (a nonce and a notify), length right.
        let mut seed = vec![0u8; 28];
        seed[17] = 0x20;
        seed[16] = 40;
        seed.extend_from_slice(&[41, 0, 0, 8, 1, 2, 3, 4]);
        seed.extend_from_slice(&[0, 0, 0, 12, 0, 0, 0x40, 0x04, 9, 9, 9, 9]);
        let len = seed.len() as u32;
        seed[24..28].copy_from_slice(&len.to_be_bytes());
        ike_message(&seed);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..3000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut data = seed.clone();
            let at = (state as usize) % data.len();
            data[at] ^= (state >> 32) as u8;
            ike_message(&data);
        }
    }

    /// The datagrams of a handshake and a liveness check, mutated, into
    /// each of the session cases.
    #[test]
    fn ike_session_holds_over_mutations() {
        let now = std::time::Instant::now();
        let (mut a, mut b, _) = session_fixture::established(now);
        let later = now + a.config().dpd_interval;
        a.handle_timeout(later);
        let mut seeds: Vec<Vec<u8>> = Vec::new();
        while let Some(t) = a.poll_transmit() {
            seeds.push(t.message().to_vec());
        }
        let mut c = session_fixture::initiator(now);
        c.handle_timeout(now);
        if let Some(t) = c.poll_transmit() {
            seeds.push(t.message().to_vec());
        }
        let mut d = session_fixture::responder(now);
        d.handle_datagram(
            now,
            "192.0.2.1:500".parse().unwrap(),
            500,
            &seeds[seeds.len() - 1],
        );
        if let Some(t) = d.poll_transmit() {
            seeds.push(t.message().to_vec());
        }
        let _ = &mut b;
        let mut state = 0x0123_4567_89ab_cdefu64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for seed in &seeds {
            for mode in [0u8, 1, 2, 3, 0x80, 0x83] {
                let mut input = vec![mode];
                if mode & 0x80 != 0 {
                    input.extend_from_slice(&[0; 4]);
                }
                input.extend_from_slice(seed);
                ike_session(&input);
                for _ in 0..6 {
                    let mut data = input.clone();
                    let at = 1 + (next() as usize) % (data.len() - 1);
                    data[at] ^= (next() >> 24) as u8 | 1;
                    if next() % 3 == 0 {
                        data.truncate(at);
                    }
                    ike_session(&data);
                }
            }
        }
        ike_session(&[]);
        ike_session(&[1]);
        ike_session(&[0x82, 0, 0]);
    }

    /// Deterministic mutations of a few seeds (the fuzzer explores more).
    #[test]
    fn esp_open_holds_over_mutations() {
        let seeds: [&[u8]; 4] = [
            b"\x80\x00\x00hello, tunnel",
            b"\x81\x01\x05a longer inner packet of forty-two bytes..",
            b"\x82\x80\x10",
            b"\x00\x00\x00\x00\x01\x02\x03\x00\x00\x00\x01",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for seed in seeds {
            esp_open(seed);
            for _ in 0..300 {
                let mut data = seed.to_vec();
                for _ in 0..(next() % 4 + 1) {
                    let at = (next() as usize) % data.len().max(1);
                    match next() % 3 {
                        0 if !data.is_empty() => data[at] ^= 1 << (next() % 8),
                        1 => data.push(next() as u8),
                        _ => data.truncate(at.max(3)),
                    }
                }
                esp_open(&data);
            }
        }
    }
}
