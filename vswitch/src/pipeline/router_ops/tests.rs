//! The router's byte operations, field by field, against the wire views.

use super::*;
use crate::testutil::{FrameBuilder, mac};
use crate::wire::{ArpPacket, EthernetFrame, IcmpPacket, IpPair, Ipv4Packet};
use proptest::prelude::*;

const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);

fn ip_of(frame: &[u8], l3: usize) -> Ipv4Packet<&[u8]> {
    Ipv4Packet::new_checked(&frame[l3..]).unwrap()
}

fn with_ttl(mut frame: Vec<u8>, l3: usize, ttl: u8) -> Vec<u8> {
    frame[l3 + 8] = ttl;
    frame[l3 + 10..l3 + 12].fill(0);
    let sum = checksum::checksum(&frame[l3..l3 + 20]);
    frame[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
    frame
}

fn tcp_frame(payload: &[u8]) -> Vec<u8> {
    FrameBuilder::tcp4("10.0.1.10:40000", "10.0.2.20:80", payload)
        .src_mac(mac(1))
        .dst_mac(mac(0xaa))
        .build()
}

#[test]
fn ttl_goes_down_with_a_valid_checksum_and_expires_at_one() {
    let mut frame = with_ttl(tcp_frame(b"x"), 14, 2);
    assert_eq!(dec_ttl(&mut frame, 14), TtlOutcome::Decremented);
    let ip = ip_of(&frame, 14);
    assert_eq!(ip.ttl(), 1);
    assert!(ip.verify_checksum());
    let before = frame.clone();
    assert_eq!(dec_ttl(&mut frame, 14), TtlOutcome::Expired);
    assert_eq!(frame, before, "an expiring packet is left as it arrived");
    let mut zero = with_ttl(tcp_frame(b"x"), 14, 0);
    assert_eq!(dec_ttl(&mut zero, 14), TtlOutcome::Expired);
    let mut arp = FrameBuilder::arp_request(mac(1), "10.0.1.10", "10.0.1.1").build();
    assert_eq!(dec_ttl(&mut arp, 14), TtlOutcome::NotIpv4);
    // Tagged: the header is 4 bytes further in.
    let mut tagged = with_ttl(
        FrameBuilder::udp4("10.0.1.10:1", "10.0.2.20:2", b"")
            .vlan(10, 0)
            .build(),
        18,
        9,
    );
    assert_eq!(dec_ttl(&mut tagged, 18), TtlOutcome::Decremented);
    assert_eq!(ip_of(&tagged, 18).ttl(), 8);
}

#[test]
fn size_and_dont_fragment() {
    let mut frame = tcp_frame(&[0u8; 100]);
    assert_eq!(ipv4_size(&frame, 14).map(|(len, _)| len), Some(140));
    frame[14 + 6] |= 0x40;
    assert_eq!(ipv4_size(&frame, 14), Some((140, true)));
    assert_eq!(ipv4_size(&frame[..20], 14), None);
}

/// The ICMP error built about `frame`, parsed: (ICMP type, code, bytes 4..8,
/// quoted bytes).
fn error_of(frame: &[u8], l3: usize, kind: IcmpErrorKind) -> (Vec<u8>, u8, u8, [u8; 4], Vec<u8>) {
    let mut out = Vec::new();
    assert!(icmp_error(frame, l3, kind, GW, &mut out));
    let eth = EthernetFrame::new_checked(&out[..]).unwrap();
    assert_eq!(eth.dst_addr(), mac(1), "back to the sender");
    assert_eq!(eth.src_addr(), mac(0xaa), "from the router's MAC");
    assert_eq!(u16::from(eth.ethertype()), 0x0800, "untagged");
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(ip.src_addr(), GW);
    assert_eq!(ip.dst_addr(), Ipv4Addr::new(10, 0, 1, 10));
    assert_eq!(ip.ttl(), 64);
    assert_eq!(ip.total_len(), ip.payload().len() + 20);
    let icmp = IcmpPacket::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum(IpPair::V4(ip.src_addr(), ip.dst_addr())));
    let p = ip.payload();
    (
        out.clone(),
        icmp.msg_type(),
        icmp.code(),
        [p[4], p[5], p[6], p[7]],
        p[8..].to_vec(),
    )
}

#[test]
fn time_exceeded_quotes_the_packet_as_it_arrived() {
    let frame = with_ttl(tcp_frame(b"0123456789"), 14, 1);
    let (_, t, code, rest, quoted) = error_of(&frame, 14, IcmpErrorKind::TimeExceeded);
    assert_eq!((t, code, rest), (11, 0, [0; 4]));
    assert_eq!(
        quoted,
        frame[14..].to_vec(),
        "all of a small packet, TTL 1 included"
    );
    assert_eq!(quoted[8], 1);
}

#[test]
fn a_big_packet_is_quoted_up_to_576_bytes() {
    let frame = tcp_frame(&[7u8; 1460]);
    let (out, t, code, _, quoted) = error_of(&frame, 14, IcmpErrorKind::Unreachable(1));
    assert_eq!((t, code), (3, 1));
    assert_eq!(out.len() - 14, 576);
    assert_eq!(quoted, frame[14..14 + 548].to_vec());
}

#[test]
fn fragmentation_needed_carries_the_mtu_and_tags_come_off() {
    let frame = FrameBuilder::udp4("10.0.1.10:1", "10.0.2.20:2", &[1u8; 1472])
        .src_mac(mac(1))
        .dst_mac(mac(0xaa))
        .vlan(10, 0)
        .build();
    let (_, t, code, rest, quoted) = error_of(&frame, 18, IcmpErrorKind::FragNeeded(1450));
    assert_eq!((t, code), (3, 4));
    assert_eq!(rest, [0, 0, 0x05, 0xaa]);
    assert_eq!(&quoted[..20], &frame[18..38]);
}

#[test]
fn no_error_where_the_rfcs_forbid_one() {
    let mut out = vec![1, 2, 3];
    let check = |frame: &[u8], out: &mut Vec<u8>| {
        icmp_error(frame, 14, IcmpErrorKind::Unreachable(1), GW, out)
    };
    // About an ICMP error.
    let mut err = FrameBuilder::icmp4_echo("10.0.1.10", "10.0.2.20", 1).build();
    err[34] = 3;
    assert!(!check(&err, &mut out));
    assert!(out.is_empty());
    // About an echo request: fine.
    let ping = FrameBuilder::icmp4_echo("10.0.1.10", "10.0.2.20", 1)
        .dst_mac(mac(0xaa))
        .build();
    assert!(check(&ping, &mut out));
    // A later fragment.
    let mut frag = tcp_frame(b"x");
    frag[14 + 7] = 8;
    assert!(!check(&frag, &mut out));
    // Sources that cannot be answered, destinations that are groups.
    for (src, dst) in [
        ("0.0.0.0", "10.0.2.20"),
        ("255.255.255.255", "10.0.2.20"),
        ("224.0.0.5", "10.0.2.20"),
        ("127.0.0.1", "10.0.2.20"),
        ("240.0.0.1", "10.0.2.20"),
        ("10.0.1.10", "224.0.0.251"),
        ("10.0.1.10", "255.255.255.255"),
    ] {
        let f = FrameBuilder::udp4(&format!("{src}:1"), &format!("{dst}:2"), b"")
            .dst_mac(mac(0xaa))
            .build();
        assert!(!check(&f, &mut out), "{src} -> {dst}");
    }
    let group = FrameBuilder::udp4("10.0.1.10:1", "10.0.2.20:2", b"")
        .dst_mac(EthernetAddress::BROADCAST)
        .build();
    assert!(!check(&group, &mut out));
    assert!(!check(&tcp_frame(b"")[..30], &mut out), "truncated");
}

#[test]
fn arp_for_the_gateway_is_answered_in_place() {
    let router = mac(0xaa);
    let mut frame = FrameBuilder::arp_request(mac(1), "10.0.1.10", "10.0.1.1").build();
    assert!(arp_reply(&mut frame, 14, router));
    let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
    assert_eq!((eth.dst_addr(), eth.src_addr()), (mac(1), router));
    let arp = ArpPacket::new_checked(eth.payload()).unwrap();
    assert_eq!(u16::from(arp.operation()), 2);
    assert_eq!(arp.sender_hardware_addr(), router);
    assert_eq!(arp.sender_protocol_addr(), GW);
    assert_eq!(arp.target_hardware_addr(), mac(1));
    assert_eq!(arp.target_protocol_addr(), Ipv4Addr::new(10, 0, 1, 10));
    // A reply, or not ARP at all, is left alone.
    let before = frame.clone();
    assert!(!arp_reply(&mut frame, 14, router));
    assert_eq!(frame, before);
    let mut udp = tcp_frame(b"");
    assert!(!arp_reply(&mut udp, 14, router));
    let mut tagged = FrameBuilder::arp_request(mac(1), "10.0.1.10", "10.0.1.1")
        .vlan(10, 0)
        .build();
    assert!(arp_reply(&mut tagged, 18, router));
    assert_eq!(&tagged[12..14], &[0x81, 0x00], "the tag stays");
}

#[test]
fn ping_to_the_gateway_is_answered_in_place() {
    let mut frame = FrameBuilder::icmp4_echo("10.0.1.10", "10.0.1.1", 3)
        .src_mac(mac(1))
        .dst_mac(mac(0xaa))
        .build();
    let request = frame.clone();
    assert!(echo_reply(&mut frame, 14));
    let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
    assert_eq!((eth.dst_addr(), eth.src_addr()), (mac(1), mac(0xaa)));
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(
        (ip.src_addr(), ip.dst_addr()),
        (GW, Ipv4Addr::new(10, 0, 1, 10))
    );
    assert_eq!(ip.ttl(), 64);
    let icmp = IcmpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!(icmp.msg_type(), 0);
    assert!(icmp.verify_checksum(IpPair::V4(ip.src_addr(), ip.dst_addr())));
    assert_eq!(
        &frame[14 + 20 + 4..],
        &request[14 + 20 + 4..],
        "id, seq and data echoed"
    );
    assert!(!echo_reply(&mut frame, 14), "a reply is not answered");
}

#[test]
fn errors_are_limited_per_destination_and_overall_but_never_pmtu() {
    let mut limiter = IcmpLimiter::default();
    let t = Instant::now();
    let a = Ipv4Addr::new(10, 0, 1, 10);
    let b = Ipv4Addr::new(10, 0, 1, 11);
    let sent = (0..10)
        .filter(|_| limiter.allow(a, IcmpErrorKind::TimeExceeded, t))
        .count();
    assert_eq!(sent, 6, "a burst of six");
    assert!(
        limiter.allow(b, IcmpErrorKind::Unreachable(1), t),
        "another host has its own"
    );
    assert!(!limiter.allow(
        a,
        IcmpErrorKind::Unreachable(1),
        t + Duration::from_millis(500)
    ));
    assert!(limiter.allow(
        a,
        IcmpErrorKind::TimeExceeded,
        t + Duration::from_millis(1000)
    ));
    assert!(!limiter.allow(
        a,
        IcmpErrorKind::TimeExceeded,
        t + Duration::from_millis(1100)
    ));
    for _ in 0..100 {
        assert!(limiter.allow(a, IcmpErrorKind::FragNeeded(1450), t));
    }
    // Overall: 50 at once, whatever the destinations.
    let mut fresh = IcmpLimiter::default();
    let overall = (0..200u32)
        .filter(|i| {
            fresh.allow(
                Ipv4Addr::from(0x0a00_0000 + i),
                IcmpErrorKind::TimeExceeded,
                t,
            )
        })
        .count();
    assert_eq!(overall, 50);
    assert!(fresh.limited >= 150);
    // The table stays bounded under a flood of sources.
    let mut flood = IcmpLimiter::default();
    for i in 0..20_000u32 {
        flood.allow(
            Ipv4Addr::from(0x0b00_0000 + i),
            IcmpErrorKind::TimeExceeded,
            t + Duration::from_millis(u64::from(i)),
        );
    }
    assert!(flood.hosts.len() <= MAX_HOSTS);
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(
        mut bytes in proptest::collection::vec(any::<u8>(), 0..200),
        l3 in 0usize..220,
        mtu in any::<u16>(),
    ) {
        let mut out = Vec::new();
        let _ = dec_ttl(&mut bytes, l3);
        let _ = ipv4_size(&bytes, l3);
        for kind in [
            IcmpErrorKind::TimeExceeded,
            IcmpErrorKind::Unreachable(1),
            IcmpErrorKind::FragNeeded(mtu),
        ] {
            if icmp_error(&bytes, l3, kind, GW, &mut out) {
                prop_assert!(out.len() <= 14 + 576);
            }
        }
        let _ = arp_reply(&mut bytes, l3, mac(2));
        let _ = echo_reply(&mut bytes, l3);
    }
}
