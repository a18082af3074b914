//! NAT through the tracker: translations of first packets, later packets
//! both ways, ICMP errors about NATed connections, port allocation and its
//! exhaustion, checked on real packets with valid checksums.

use super::packet::Tuple;
use super::state::*;
use super::*;
use crate::testutil::FrameBuilder;
use crate::wire::{IcmpPacket, IpPair, Ipv4Packet, TcpFlags, TcpSegment, UdpDatagram, checksum};
use proptest::prelude::*;
use std::net::Ipv4Addr;

const ZONE: u16 = 65280;
const PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 20);

fn addr(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

/// The IPv4 packet of a built frame.
fn l3(frame: Vec<u8>) -> Vec<u8> {
    frame[14..].to_vec()
}

fn tcp(src: &str, dst: &str, flags: u16) -> Vec<u8> {
    l3(FrameBuilder::tcp4(src, dst, b"hello")
        .tcp_flags(flags)
        .build())
}

fn udp(src: &str, dst: &str) -> Vec<u8> {
    l3(FrameBuilder::udp4(src, dst, b"query").build())
}

fn snat(lo: u16, hi: u16) -> Option<Nat> {
    Some(Nat::Src {
        addr: PUBLIC,
        ports: Some((lo, hi)),
    })
}

/// Tracks `packet` with `nat`, applies the translation, returns the bits.
fn pass(ct: &mut Conntrack, packet: &mut [u8], commit: bool, nat: Option<Nat>) -> u8 {
    let v = ct.track_nat(packet, ZONE, commit, nat, Instant::now());
    if let Some(t) = v.translation {
        translate::apply(packet, &t, false);
    }
    v.bits
}

fn tuple_of(packet: &[u8]) -> Tuple {
    packet::probe(packet).unwrap().tuple
}

/// Whether the IPv4 header and the L4 checksum verify.
fn checksums_valid(packet: &[u8]) -> bool {
    let ip = Ipv4Packet::new_checked(packet).unwrap();
    let ips = IpPair::V4(ip.src_addr(), ip.dst_addr());
    let l4 = match ip.protocol() {
        crate::wire::IpProtocol::Tcp => TcpSegment::new_checked(ip.payload())
            .unwrap()
            .verify_checksum(ips),
        crate::wire::IpProtocol::Udp => UdpDatagram::new_checked(ip.payload())
            .unwrap()
            .verify_checksum(ips),
        crate::wire::IpProtocol::Icmp => IcmpPacket::new_checked(ip.payload())
            .unwrap()
            .verify_checksum(ips),
        _ => true,
    };
    ip.verify_checksum() && l4
}

/// An ICMP port-unreachable from `src` to `dst` quoting `quoted`, with
/// valid checksums.
fn port_unreachable(src: &str, dst: &str, quoted: &[u8]) -> Vec<u8> {
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&quoted[..quoted.len().min(28)]);
    let sum = checksum::checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
    p[2..4].copy_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
    p.extend_from_slice(&addr(src).octets());
    p.extend_from_slice(&addr(dst).octets());
    p.extend_from_slice(&icmp);
    let sum = checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p
}

#[test]
fn source_nat_translates_both_ways_with_valid_checksums() {
    let mut ct = Conntrack::default();
    let mut syn = tcp("10.0.1.5:40000", "198.51.100.7:80", TcpFlags::SYN);
    assert_eq!(pass(&mut ct, &mut syn, true, snat(1024, 65535)), TRK | NEW);
    let out = tuple_of(&syn);
    assert_eq!(out.src, PUBLIC);
    assert_eq!(
        out.sport, 40000,
        "the connection's own port is kept while free"
    );
    assert_eq!((out.dst, out.dport), (addr("198.51.100.7"), 80));
    assert!(checksums_valid(&syn));
    // The SYN-ACK must acknowledge the SYN's sequence number (1) plus one.
    let mut syn_ack = l3(
        FrameBuilder::tcp4("198.51.100.7:80", "203.0.113.20:40000", b"")
            .tcp_flags(TcpFlags::SYN | TcpFlags::ACK)
            .tcp_seq_ack(500, 2)
            .build(),
    );
    assert_eq!(
        pass(&mut ct, &mut syn_ack, false, Some(Nat::Existing)),
        TRK | EST | RPL
    );
    let back = tuple_of(&syn_ack);
    assert_eq!((back.dst, back.dport), (addr("10.0.1.5"), 40000));
    assert_eq!((back.src, back.sport), (addr("198.51.100.7"), 80));
    assert!(checksums_valid(&syn_ack));
    let mut ack = l3(FrameBuilder::tcp4("10.0.1.5:40000", "198.51.100.7:80", b"")
        .tcp_seq_ack(2, 501)
        .build());
    assert_eq!(pass(&mut ct, &mut ack, true, snat(1024, 65535)), TRK | EST);
    assert_eq!(tuple_of(&ack), out, "later packets leave the same way");
    // Without `nat` in the action the packet is tracked but not rewritten.
    let mut plain = l3(
        FrameBuilder::tcp4("198.51.100.7:80", "203.0.113.20:40000", b"")
            .tcp_seq_ack(501, 2)
            .build(),
    );
    let before = plain.clone();
    assert_eq!(pass(&mut ct, &mut plain, false, None), TRK | EST | RPL);
    assert_eq!(plain, before);
    let list = ct.list(None, Instant::now());
    assert_eq!(
        list[0].orig,
        tuple_of(&tcp("10.0.1.5:40000", "198.51.100.7:80", 0))
    );
    assert_eq!(list[0].reply.dst, PUBLIC, "the listing shows the binding");
}

#[test]
fn a_taken_port_is_replaced_and_exhaustion_refuses() {
    let mut ct = Conntrack::default();
    let server = "198.51.100.7:80";
    let mut taken = Vec::new();
    for host in ["10.0.1.5:5000", "10.0.1.6:5000"] {
        let mut p = udp(host, server);
        assert_eq!(pass(&mut ct, &mut p, true, snat(7000, 7001)), TRK | NEW);
        taken.push(tuple_of(&p).sport);
    }
    taken.sort();
    assert_eq!(taken, vec![7000, 7001], "two connections, two ports");
    let mut third = udp("10.0.1.7:5000", server);
    let before = third.clone();
    assert_eq!(pass(&mut ct, &mut third, true, snat(7000, 7001)), TRK | INV);
    assert_eq!(third, before, "a refused connection is never translated");
    assert_eq!(ct.counters().nat_exhausted, 1);
    // Another destination can use the same ports.
    let mut elsewhere = udp("10.0.1.7:5000", "198.51.100.8:80");
    assert_eq!(
        pass(&mut ct, &mut elsewhere, true, snat(7000, 7001)),
        TRK | NEW
    );
}

#[test]
fn expiry_frees_the_port() {
    let timeouts = Timeouts {
        unreplied: Duration::from_secs(5),
        ..Timeouts::default()
    };
    let mut ct = Conntrack::new(16, timeouts);
    let t = Instant::now();
    let first = udp("10.0.1.5:5000", "198.51.100.7:53");
    assert!(
        ct.track_nat(&first, ZONE, true, snat(7000, 7000), t)
            .translation
            .is_some()
    );
    let second = udp("10.0.1.6:5000", "198.51.100.7:53");
    assert_eq!(
        ct.track_nat(&second, ZONE, true, snat(7000, 7000), t).bits,
        TRK | INV
    );
    let later = t + Duration::from_secs(6);
    let v = ct.track_nat(&second, ZONE, true, snat(7000, 7000), later);
    assert_eq!(v.bits, TRK | NEW);
    assert!(matches!(v.translation, Some(Translation::Packet { to }) if to.sport == 7000));
}

#[test]
fn destination_nat_for_a_public_address() {
    let mut ct = Conntrack::default();
    let dnat = Some(Nat::Dst {
        addr: addr("10.0.1.5"),
        port: None,
    });
    let mut query = udp("198.51.100.9:3333", "203.0.113.10:53");
    assert_eq!(pass(&mut ct, &mut query, true, dnat), TRK | NEW);
    assert_eq!(tuple_of(&query).dst, addr("10.0.1.5"));
    assert!(checksums_valid(&query));
    // The host's answer leaves from the public address (any nat argument).
    let mut answer = udp("10.0.1.5:53", "198.51.100.9:3333");
    assert_eq!(
        pass(
            &mut ct,
            &mut answer,
            true,
            Some(Nat::Src {
                addr: addr("203.0.113.10"),
                ports: None
            })
        ),
        TRK | EST | RPL
    );
    let t = tuple_of(&answer);
    assert_eq!((t.src, t.sport), (addr("203.0.113.10"), 53));
    assert!(checksums_valid(&answer));
    assert_eq!(ct.len(), 1, "the answer added nothing");
}

#[test]
fn echo_identifiers_are_allocated() {
    let mut ct = Conntrack::default();
    let ping = || l3(FrameBuilder::icmp4_echo("10.0.1.5", "198.51.100.7", 1).build());
    let mut first = ping();
    pass(&mut ct, &mut first, true, snat(100, 101));
    // The same identifier from another host gets the other one.
    let mut second = l3(FrameBuilder::icmp4_echo("10.0.1.6", "198.51.100.7", 1).build());
    pass(&mut ct, &mut second, true, snat(100, 101));
    let ids = [tuple_of(&first).sport, tuple_of(&second).sport];
    assert!(ids.contains(&100) && ids.contains(&101), "{ids:?}");
    assert!(checksums_valid(&first) && checksums_valid(&second));
    let mut reply = l3(FrameBuilder::icmp4_echo("198.51.100.7", "203.0.113.20", 1)
        .echo_reply(true)
        .build());
    // Set the reply's identifier to the second one's, checksum fixed.
    reply[20 + 4..20 + 6].copy_from_slice(&ids[1].to_be_bytes());
    reply[22..24].copy_from_slice(&[0, 0]);
    let sum = checksum::checksum(&reply[20..]);
    reply[22..24].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(
        pass(&mut ct, &mut reply, false, Some(Nat::Existing)),
        TRK | EST | RPL
    );
    let back = tuple_of(&reply);
    assert_eq!((back.dst, back.sport), (addr("10.0.1.6"), 0x4242));
    assert!(checksums_valid(&reply));
}

#[test]
fn an_icmp_error_about_a_nated_connection_is_translated_inside_too() {
    let mut ct = Conntrack::default();
    let mut query = udp("10.0.1.5:5000", "198.51.100.7:53");
    pass(&mut ct, &mut query, true, snat(1024, 65535));
    // The server answers the translated query with port unreachable.
    let mut error = port_unreachable("198.51.100.7", "203.0.113.20", &query);
    assert_eq!(
        pass(&mut ct, &mut error, false, Some(Nat::Existing)),
        TRK | REL | RPL
    );
    let ip = Ipv4Packet::new_checked(&error[..]).unwrap();
    assert_eq!(
        ip.dst_addr(),
        addr("10.0.1.5"),
        "outer destination restored"
    );
    assert_eq!(ip.src_addr(), addr("198.51.100.7"));
    assert!(checksums_valid(&error), "outer IPv4 and ICMP checksums");
    let quoted = &ip.payload()[8..];
    assert_eq!(checksum::checksum(&quoted[..20]), 0, "quoted IPv4 checksum");
    assert_eq!(&quoted[12..16], &addr("10.0.1.5").octets());
    assert_eq!(
        u16::from_be_bytes([quoted[20], quoted[21]]),
        5000,
        "quoted port restored"
    );
    // The quoted UDP checksum (covering all of the original datagram) is
    // kept consistent: it verifies against the restored original.
    let original = udp("10.0.1.5:5000", "198.51.100.7:53");
    assert_eq!(&quoted[..28], &original[..28]);
}

#[test]
fn an_error_from_the_inside_host_leaves_from_the_public_address() {
    let mut ct = Conntrack::default();
    let dnat = Some(Nat::Dst {
        addr: addr("10.0.1.5"),
        port: None,
    });
    let mut query = udp("198.51.100.9:3333", "203.0.113.10:9");
    pass(&mut ct, &mut query, true, dnat);
    let mut error = port_unreachable("10.0.1.5", "198.51.100.9", &query);
    assert_eq!(pass(&mut ct, &mut error, true, dnat), TRK | REL | RPL);
    let ip = Ipv4Packet::new_checked(&error[..]).unwrap();
    assert_eq!(ip.src_addr(), addr("203.0.113.10"));
    let quoted = &ip.payload()[8..];
    assert_eq!(&quoted[16..20], &addr("203.0.113.10").octets());
    assert_eq!(checksum::checksum(&quoted[..20]), 0, "quoted IPv4 checksum");
    assert!(checksums_valid(&error));
}

#[test]
fn partial_checksums_follow_only_the_addresses() {
    let mut ct = Conntrack::default();
    let mut p = udp("10.0.1.5:5000", "198.51.100.7:53");
    // Turn it into a CHECKSUM_PARTIAL packet: the field holds the folded
    // pseudo-header sum.
    let len = p.len() - 20;
    let pseudo = checksum::pseudo_header_v4(addr("10.0.1.5"), addr("198.51.100.7"), 17, len as u16);
    p[26..28].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
    let v = ct.track_nat(&p, ZONE, true, snat(7000, 7000), Instant::now());
    translate::apply(&mut p, &v.translation.unwrap(), true);
    let expected = checksum::fold(checksum::pseudo_header_v4(
        PUBLIC,
        addr("198.51.100.7"),
        17,
        len as u16,
    ));
    assert_eq!(u16::from_be_bytes([p[26], p[27]]), expected);
    assert_eq!(u16::from_be_bytes([p[20], p[21]]), 7000);
}

proptest! {
    /// Random connections from a few hosts to a few servers through one
    /// source NAT with a small port range: every accepted connection gets a
    /// reply tuple of its own, every reply maps back to its original tuple,
    /// and a connection is refused only when its server has used up the range.
    #[test]
    fn replies_map_back_and_never_collide(
        conns in proptest::collection::vec((0u8..6, 1000u16..1004, 0u8..3, 0u8..2), 1..60),
    ) {
        let mut ct = Conntrack::default();
        let (lo, hi) = (20_000u16, 20_007u16);
        let mut accepted: Vec<(Tuple, Tuple)> = Vec::new();
        let mut refused = 0;
        for (host, sport, server, proto) in conns {
            let src = format!("10.0.1.{}:{sport}", 10 + host);
            let dst = format!("198.51.100.{}:80", 1 + server);
            let packet = if proto == 0 { udp(&src, &dst) } else { tcp(&src, &dst, TcpFlags::SYN) };
            let orig = tuple_of(&packet);
            let mut p = packet.clone();
            let bits = pass(&mut ct, &mut p, true, snat(lo, hi));
            if bits & INV != 0 {
                let used = accepted
                    .iter()
                    .filter(|(_, out)| out.dst == orig.dst && out.proto == orig.proto)
                    .count();
                prop_assert_eq!(used, usize::from(hi - lo) + 1, "refused with ports free");
                refused += 1;
                continue;
            }
            if accepted.iter().any(|(o, _)| *o == orig) {
                continue; // the same connection again
            }
            let out = tuple_of(&p);
            prop_assert!(checksums_valid(&p));
            prop_assert_eq!(out.src, PUBLIC);
            prop_assert!((lo..=hi).contains(&out.sport));
            prop_assert!(accepted.iter().all(|(_, o)| *o != out), "two connections share {:?}", out);
            accepted.push((orig, out));
        }
        for (orig, out) in &accepted {
            let reply = if out.proto == 17 {
                udp(&format!("{}:{}", out.dst, out.dport), &format!("{}:{}", out.src, out.sport))
            } else {
                l3(FrameBuilder::tcp4(
                    &format!("{}:{}", out.dst, out.dport),
                    &format!("{}:{}", out.src, out.sport),
                    b"",
                )
                .tcp_flags(TcpFlags::SYN | TcpFlags::ACK)
                .tcp_seq_ack(9, 2)
                .build())
            };
            let mut r = reply;
            let bits = pass(&mut ct, &mut r, false, Some(Nat::Existing));
            prop_assert_eq!(bits & (RPL | INV), RPL);
            prop_assert_eq!(tuple_of(&r), orig.reversed());
            prop_assert!(checksums_valid(&r));
        }
        prop_assert_eq!(ct.counters().nat_exhausted, refused);
    }
}

#[test]
fn a_closed_connection_gives_up_its_reply_tuple_and_an_open_one_does_not() {
    use TcpFlags as F;
    let dnat = |port| {
        Some(Nat::Dst {
            addr: addr("10.30.1.11"),
            port: Some(port),
        })
    };
    let mut ct = Conntrack::default();
    // Client port 40000 to frontend port 81, DNATed to the backend's 80.
    let mut syn = tcp("198.51.100.20:40000", "203.0.113.50:81", F::SYN);
    assert_eq!(pass(&mut ct, &mut syn, true, dnat(80)), TRK | NEW);
    // Another rule (frontend port 82) to the same backend port from the
    // same client port: the backend would see the same connection.
    let mut other = tcp("198.51.100.20:40000", "203.0.113.50:82", F::SYN);
    assert_ne!(
        pass(&mut ct, &mut other, true, dnat(80)) & INV,
        0,
        "refused while open"
    );
    assert_eq!(ct.counters().nat_exhausted, 1);
    // The first closes: the backend refuses it.
    let mut rst = tcp("10.30.1.11:80", "198.51.100.20:40000", F::RST | F::ACK);
    pass(&mut ct, &mut rst, false, Some(Nat::Existing));
    let mut again = tcp("198.51.100.20:40000", "203.0.113.50:82", F::SYN);
    assert_eq!(
        pass(&mut ct, &mut again, true, dnat(80)),
        TRK | NEW,
        "taken over once closed"
    );
    assert_eq!(ct.len(), 1);
}
