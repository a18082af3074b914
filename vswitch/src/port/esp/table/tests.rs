use super::*;
use crate::testutil::FrameBuilder;
use crate::wire::{EtherType, EthernetFrame};
use sdn_vpn::esp::Cipher;

const CIPHER: Cipher = Cipher::Aes256Gcm16;
const TUNNEL: u32 = 7;
const PORT_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x99]);
/// Where the port receives a datagram (see `RX_DATAGRAM_AT`).
const AT: usize = 8;

fn keymat(seed: u8) -> Vec<u8> {
    (0..CIPHER.keymat_len())
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

fn outbound(spi: u32, seed: u8) -> OutboundSa {
    OutboundSa::new(CIPHER, spi, &keymat(seed)).unwrap()
}

fn inbound(spi: u32, seed: u8) -> InboundSa {
    InboundSa::new(CIPHER, spi, &keymat(seed)).unwrap()
}

fn peer() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), 4500)
}

fn src() -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 1)
}

fn target(vni: u32) -> Option<TunnelTarget> {
    Some(TunnelTarget {
        vni,
        dst: *peer().ip(),
    })
}

fn frame(payload: &[u8]) -> Vec<u8> {
    FrameBuilder::udp4("10.1.0.1:1000", "10.2.0.1:2000", payload).build()
}

/// A sender table and a receiver table with one SA pair for TUNNEL.
fn pair(spi: u32, seed: u8) -> (SaTable, SaTable) {
    let mut a = SaTable::default();
    a.install_outbound(TUNNEL, peer(), outbound(spi, seed));
    let mut b = SaTable::default();
    b.install_inbound(TUNNEL, inbound(spi, seed));
    (a, b)
}

/// Seals `frame` on `a`; returns the datagram.
fn seal(a: &mut SaTable, frame: &[u8]) -> Vec<u8> {
    let mut slot = vec![0u8; 2048];
    let (to, len) = a.seal(frame, target(TUNNEL), &mut slot).expect("sealed");
    assert_eq!(to, peer());
    slot.truncate(len);
    slot
}

/// Receives `datagram` on `b` as the port does: at offset AT of a buffer.
fn receive(b: &mut SaTable, datagram: &[u8]) -> (Received, Vec<u8>) {
    let mut buffer = vec![0u8; AT + datagram.len() + 16];
    buffer[AT..AT + datagram.len()].copy_from_slice(datagram);
    let got = b.receive(
        &mut buffer,
        AT..AT + datagram.len(),
        src(),
        PORT_MAC,
        Instant::now(),
    );
    (got, buffer)
}

#[test]
fn a_sealed_frame_opens_to_its_ipv4_packet_behind_a_rebuilt_ethernet_header() {
    let (mut a, mut b) = pair(0x1000, 1);
    let sent = frame(b"inner payload");
    let datagram = seal(&mut a, &sent);
    assert_eq!(esp::spi_of(&datagram), Some(0x1000));
    assert!(
        !datagram
            .windows(b"inner payload".len())
            .any(|w| w == b"inner payload"),
        "the payload is not in clear"
    );
    let (got, buffer) = receive(&mut b, &datagram);
    let Received::Frame { start, len, tunnel } = got else {
        panic!("not a frame: {got:?}");
    };
    assert_eq!(start, 10, "right after a virtio-net header's room");
    assert_eq!(
        tunnel,
        TunnelMeta {
            vni: TUNNEL,
            src: src()
        }
    );
    let out = &buffer[start..start + len];
    assert_eq!(&out[14..], &sent[14..], "identical inner IPv4 packet");
    let eth = EthernetFrame::new_checked(out).unwrap();
    assert_eq!(eth.dst_addr(), PORT_MAC);
    assert_eq!(eth.src_addr(), super::super::tunnel_mac(TUNNEL));
    assert_eq!(eth.ethertype(), EtherType::Ipv4);

    let (sa, sb) = (a.stats(), b.stats());
    let (ta, tb) = (sa.tunnel(TUNNEL).unwrap(), sb.tunnel(TUNNEL).unwrap());
    let inner = (sent.len() - 14) as u64;
    assert_eq!((ta.sealed_packets, ta.sealed_bytes), (1, inner));
    assert_eq!((tb.opened_packets, tb.opened_bytes), (1, inner));
    assert!(tb.last_received.is_some() && ta.last_received.is_none());
    let out_sa = sa.sa(0x1000, SaDirection::Outbound).unwrap();
    assert_eq!((out_sa.packets, out_sa.seq, out_sa.current), (1, 1, true));
    assert_eq!(out_sa.peer, Some(peer()));
    let in_sa = sb.sa(0x1000, SaDirection::Inbound).unwrap();
    assert_eq!((in_sa.packets, in_sa.seq, in_sa.tunnel_id), (1, 1, TUNNEL));
    assert_eq!(sa.port.dropped() + sb.port.dropped(), 0);
}

#[test]
fn every_send_drop_is_counted_by_reason() {
    let (mut a, _) = pair(0x1000, 1);
    let mut slot = vec![0u8; 2048];
    let ip = frame(b"x");
    assert_eq!(a.seal(&ip, None, &mut slot), None, "no tunnel target");
    assert_eq!(a.seal(&ip, target(TUNNEL + 1), &mut slot), None, "no SA");
    assert_eq!((a.counters.untargeted, a.counters.no_sa), (1, 1));
    assert_eq!(a.counters.dropped(), 1, "a flooded frame is no drop");
    let v6 = FrameBuilder::tcp6("[fd00::1]:1", "[fd00::2]:2", b"x").build();
    assert_eq!(a.seal(&v6, target(TUNNEL), &mut slot), None);
    assert_eq!(a.counters.not_ipv4, 1);
    assert_eq!(a.seal(&ip[..20], target(TUNNEL), &mut slot), None);
    assert_eq!(
        a.seal(&ip, target(TUNNEL), &mut slot[..40]),
        None,
        "no room"
    );
    assert_eq!(a.counters.bad_frames, 2);
    assert_eq!(a.counters.dropped(), 4);
    assert_eq!(a.stats().sa(0x1000, SaDirection::Outbound).unwrap().seq, 0);
}

#[test]
fn every_receive_drop_is_counted_by_reason() {
    let (mut a, mut b) = pair(0x1000, 1);
    let datagram = seal(&mut a, &frame(b"once"));
    assert!(matches!(
        receive(&mut b, &datagram).0,
        Received::Frame { .. }
    ));
    // Replayed.
    assert_eq!(receive(&mut b, &datagram).0, Received::Nothing);
    assert_eq!(b.counters.replayed, 1);
    // A flipped bit in the ciphertext.
    let mut forged = seal(&mut a, &frame(b"twice"));
    forged[30] ^= 0x01;
    assert_eq!(receive(&mut b, &forged).0, Received::Nothing);
    assert_eq!(b.counters.auth_failed, 1);
    // An SPI nobody installed.
    let mut stranger = seal(&mut a, &frame(b"thrice"));
    stranger[..4].copy_from_slice(&0xdead_beefu32.to_be_bytes());
    assert_eq!(receive(&mut b, &stranger).0, Received::Nothing);
    assert_eq!(b.counters.unknown_spi, 1);
    // Too short to be anything, or a truncated marker.
    for short in [&[][..], &[1, 2, 3], &datagram[..20], &[0, 0, 0, 0, 1]] {
        assert_eq!(receive(&mut b, short).0, Received::Nothing);
    }
    assert_eq!(b.counters.malformed, 4);
    let mut buffer = [0u8; 8];
    assert_eq!(
        b.receive(&mut buffer, 4..40, src(), PORT_MAC, Instant::now()),
        Received::Nothing,
        "a range past the buffer"
    );
    assert_eq!(b.counters.malformed, 5);
    // A keepalive is counted, not dropped.
    assert_eq!(receive(&mut b, &[0xff]).0, Received::Nothing);
    assert_eq!(b.counters.keepalives, 1);
    let sa = b.stats();
    let stats = sa.sa(0x1000, SaDirection::Inbound).unwrap();
    assert_eq!(
        (stats.replayed, stats.auth_failed, stats.packets),
        (1, 1, 1)
    );
    assert_eq!(sa.port.dropped(), 1 + 1 + 1 + 5);
}

#[test]
fn packets_that_open_to_no_ipv4_packet_are_dropped() {
    let mut b = SaTable::default();
    b.install_inbound(TUNNEL, inbound(0x2000, 2));
    let mut sender = outbound(0x2000, 2);
    let ip = frame(b"payload");
    let mut seal_with = |next_header: u8, inner: &[u8]| {
        let mut buffer = vec![0u8; esp::HEADROOM + inner.len() + esp::TAILROOM];
        buffer[esp::HEADROOM..esp::HEADROOM + inner.len()].copy_from_slice(inner);
        let len = sender
            .seal_in_place(&mut buffer, inner.len(), next_header)
            .unwrap();
        buffer.truncate(len);
        buffer
    };
    let v6 = seal_with(41, &ip[14..]);
    let garbage = seal_with(NEXT_HEADER_IPV4, &[0x45; 10]);
    let dummy = seal_with(esp::NEXT_HEADER_DUMMY, b"");
    let mut tfc = ip[14..].to_vec();
    tfc.extend_from_slice(&[0; 12]);
    let padded = seal_with(NEXT_HEADER_IPV4, &tfc);
    assert_eq!(receive(&mut b, &v6).0, Received::Nothing);
    assert_eq!(receive(&mut b, &garbage).0, Received::Nothing);
    assert_eq!(b.counters.inner_not_ipv4, 2);
    assert_eq!(receive(&mut b, &dummy).0, Received::Nothing);
    assert_eq!(b.counters.dummies, 1);
    let (got, buffer) = receive(&mut b, &padded);
    let Received::Frame { start, len, .. } = got else {
        panic!("{got:?}");
    };
    assert_eq!(
        &buffer[start + 14..start + len],
        &ip[14..],
        "TFC padding cut"
    );
    let stats = b.stats();
    let tunnel = stats.tunnel(TUNNEL).unwrap();
    assert_eq!(tunnel.opened_packets, 1);
    assert!(
        tunnel.last_received.is_some(),
        "authentic packets prove life"
    );
    assert_eq!(stats.port.dropped(), 2, "dummies are discarded by design");
}

#[test]
fn ike_messages_are_handed_over_without_their_marker() {
    let mut b = SaTable::default();
    let mut message = vec![0u8; 4];
    message.extend((0..40).map(|i| i as u8 + 1));
    let (got, buffer) = receive(&mut b, &message);
    let Received::Ike(range) = got else {
        panic!("{got:?}");
    };
    assert_eq!(&buffer[range], &message[4..]);
    assert_eq!(b.counters.dropped(), 0);
}

#[test]
fn a_rekey_makes_before_it_breaks() {
    let (mut a, mut b) = pair(0x1000, 1);
    let old_in_flight = seal(&mut a, &frame(b"old"));
    // The receiver installs the new inbound SA first, then the sender its
    // new outbound SA: new packets use it at once.
    b.install_inbound(TUNNEL, inbound(0x1001, 9));
    a.install_outbound(TUNNEL, peer(), outbound(0x1001, 9));
    let new = seal(&mut a, &frame(b"new"));
    assert_eq!(esp::spi_of(&new), Some(0x1001), "the newest SA seals");
    let stats = a.stats();
    assert!(!stats.sa(0x1000, SaDirection::Outbound).unwrap().current);
    assert!(stats.sa(0x1001, SaDirection::Outbound).unwrap().current);
    // Both open: the old packet still in flight too.
    assert!(matches!(receive(&mut b, &new).0, Received::Frame { .. }));
    assert!(matches!(
        receive(&mut b, &old_in_flight).0,
        Received::Frame { .. }
    ));
    // Then the old SAs go, in both directions at once.
    assert_eq!(a.remove_sa(0x1000), 1);
    assert_eq!(b.remove_sa(0x1000), 1);
    assert_eq!(b.remove_sa(0x1000), 0);
    assert_eq!(esp::spi_of(&seal(&mut a, &frame(b"x"))), Some(0x1001));
    let late = old_in_flight.clone();
    assert_eq!(receive(&mut b, &late).0, Received::Nothing);
    assert_eq!(b.counters.unknown_spi, 1, "after removal: unknown");
    // Removing the newest outbound SA leaves the tunnel without one.
    assert!(a.remove_outbound(TUNNEL, 0x1001));
    assert!(!a.remove_outbound(TUNNEL, 0x1001));
    let mut slot = vec![0u8; 2048];
    assert_eq!(a.seal(&frame(b"x"), target(TUNNEL), &mut slot), None);
    assert_eq!(a.counters.no_sa, 1);
    // The tunnel's counters outlive its SAs.
    assert_eq!(a.stats().tunnel(TUNNEL).unwrap().sealed_packets, 3);
    assert!(a.stats().sas.is_empty());
}

#[test]
fn an_older_outbound_sa_takes_over_again_when_the_newest_goes() {
    let mut a = SaTable::default();
    a.install_outbound(TUNNEL, peer(), outbound(1, 1));
    a.install_outbound(TUNNEL, peer(), outbound(2, 2));
    let nat = SocketAddrV4::new(*peer().ip(), 61_000);
    a.install_outbound(TUNNEL + 1, nat, outbound(2, 3));
    // Reinstalling an SPI replaces it and makes it the newest.
    a.install_outbound(TUNNEL, peer(), outbound(1, 4));
    let spis: Vec<(u32, u32, bool)> = a
        .stats()
        .sas
        .iter()
        .map(|s| (s.tunnel_id, s.spi, s.current))
        .collect();
    assert_eq!(
        spis,
        [(TUNNEL, 2, false), (TUNNEL, 1, true), (TUNNEL + 1, 2, true)]
    );
    let mut slot = vec![0u8; 2048];
    let (to, _) = a.seal(&frame(b"x"), target(TUNNEL + 1), &mut slot).unwrap();
    assert_eq!(to, nat, "the SA's peer port, as NAT traversal found it");
    // SPI 2 names an SA in two tunnels: remove_sa takes both.
    assert_eq!(a.remove_sa(2), 2);
    assert_eq!(a.remove_sa(1), 1);
    assert!(a.stats().sas.is_empty());
}

#[test]
fn mutated_datagrams_never_panic_and_are_each_counted_once() {
    let (mut a, mut b) = pair(0x1000, 1);
    let datagram = seal(&mut a, &frame(&[0x5a; 200]));
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for round in 0..3_000u32 {
        let mut mutated = datagram.clone();
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let at = state as usize % mutated.len();
        mutated[at] ^= (state >> 40) as u8 | 1;
        if round % 5 == 0 {
            mutated.truncate(state as usize % (mutated.len() + 1));
        }
        let before = b.counters;
        let got = receive(&mut b, &mutated).0;
        let counted =
            b.counters.dropped() - before.dropped() + (b.counters.keepalives - before.keepalives);
        match got {
            Received::Nothing => assert_eq!(counted, 1, "round {round}"),
            _ => assert_eq!(counted, 0, "round {round}"),
        }
    }
    assert_eq!(b.stats().tunnel(TUNNEL).unwrap().opened_packets, 0);
}
