//! Fuzz bodies for the router's data path: conntrack NAT over packet
//! sequences, and the frames a routing pipeline makes itself (ICMP errors,
//! ARP and echo replies) or fragments. Besides never panicking, each checks
//! what a router owes its peers: checksums that were right stay right, no
//! two connections answer to one reply tuple, errors quote what arrived and
//! stay within 576 bytes.

use crate::conntrack::packet::{PROTO_ICMP, PROTO_TCP, PROTO_UDP, Tuple, probe};
use crate::conntrack::{Conntrack, Timeouts, Translation, state, translate};
use crate::flow::action::Nat;
use crate::flow::{Action, FlowMod, FlowSpec, IpPrefix, Match, SetField};
use crate::pipeline::{Decision, FrameMeta, OwnedFrame, Pipeline};
use crate::wire::*;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

/// The NAT gateway's public address in the targets.
const PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 20);
/// A host behind a public IP (destination NAT) in the targets.
const PRIVATE: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 10);
/// The subnet gateway that sends the routing pipeline's ICMP messages.
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
/// The gateway's MAC.
const GATEWAY_MAC: EthernetAddress = EthernetAddress([0x02, 0x5d, 0, 0, 0, 1]);
/// Largest datagram an ICMP error may make (RFC 1812 §4.3.2.3).
const MAX_ERROR_DATAGRAM: usize = 576;

/// The NAT a control byte asks for: none, source NAT to a four-port range
/// (so that it runs out), destination NAT with a port, or existing only.
fn nat_of(control: u8) -> Option<Nat> {
    match (control >> 1) & 3 {
        0 => None,
        1 => Some(Nat::Src {
            addr: PUBLIC,
            ports: Some((20_000, 20_003)),
        }),
        2 => Some(Nat::Dst {
            addr: PRIVATE,
            port: Some(8080),
        }),
        _ => Some(Nat::Existing),
    }
}

/// Whether the IPv4 header of `l3` verifies, and whether its whole TCP, UDP
/// or ICMP message is present and verifies (`None`: not present whole, or
/// another protocol, or a fragment).
fn checksums(l3: &[u8]) -> (bool, Option<bool>) {
    let Ok(ip) = Ipv4Packet::new_checked(l3) else {
        return (false, None);
    };
    let header = ip.verify_checksum();
    if ip.more_fragments() || ip.fragment_offset() != 0 || ip.total_len() > l3.len() {
        return (header, None);
    }
    let ips = IpPair::V4(ip.src_addr(), ip.dst_addr());
    let payload = ip.payload();
    let l4 = match u8::from(ip.protocol()) {
        PROTO_TCP => TcpSegment::new_checked(payload)
            .ok()
            .map(|s| s.verify_checksum(ips)),
        PROTO_UDP => UdpDatagram::new_checked(payload)
            .ok()
            .map(|d| d.verify_checksum(ips)),
        PROTO_ICMP => IcmpPacket::new_checked(payload)
            .ok()
            .map(|m| m.verify_checksum(ips)),
        _ => None,
    };
    (header, l4)
}

/// Conntrack with NAT over a sequence of IPv4 packets, each `[control,
/// length, bytes…]`: the control byte picks the zone (bit 0), the NAT (bits
/// 1–2, see [`nat_of`]), commit (bit 3) and the seconds that pass before it
/// (the rest). Every translation is applied; then a checksum that verified
/// still verifies, the packet keeps its length, a translated packet carries
/// the tuple it was given, no two live connections of a zone share an
/// original or a reply tuple, and the table never outgrows its size.
pub fn nat_packets(data: &[u8]) {
    let _ = translate_all(data);
}

/// Which checks one `nat_packets` input reached.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct NatReached {
    /// Translations applied and checked.
    translated: usize,
    /// New connections refused for want of a port.
    exhausted: u64,
}

fn translate_all(data: &[u8]) -> NatReached {
    let mut translated = 0;
    const CAPACITY: usize = 16;
    let mut ct = Conntrack::new(CAPACITY, Timeouts::default());
    let mut now = Instant::now();
    let mut rest = data;
    while let [control, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (packet, next) = tail.split_at(len);
        rest = next;
        now += Duration::from_secs(u64::from(control >> 4));
        let zone = u16::from(control & 1);
        let verdict = ct.track_nat(packet, zone, control & 8 != 0, nat_of(*control), now);
        assert!(verdict.bits & state::TRK != 0);
        if let Some(translation) = verdict.translation {
            check_translation(packet, &translation);
            translated += 1;
        }
        assert!(ct.len() <= CAPACITY);
        ct.sweep(now);
        check_tuples_unique(&ct, now);
    }
    NatReached {
        translated,
        exhausted: ct.counters().nat_exhausted,
    }
}

/// Applies `translation` to a copy of `packet` and checks the result.
fn check_translation(packet: &[u8], translation: &Translation) {
    let mut out = packet.to_vec();
    translate::apply(&mut out, translation, false);
    assert_eq!(out.len(), packet.len());
    let (header_before, l4_before) = checksums(packet);
    let (header_after, l4_after) = checksums(&out);
    if header_before {
        assert!(
            header_after,
            "a valid IPv4 checksum broken by {translation:?}"
        );
    }
    if l4_before == Some(true) {
        assert_eq!(
            l4_after,
            Some(true),
            "a valid L4 checksum broken by {translation:?}"
        );
    }
    if let Translation::Packet { to } = translation
        && let Ok(p) = probe(&out)
    {
        assert_eq!(
            p.tuple, *to,
            "the packet leaves with the tuple it was given"
        );
    }
}

/// No two live connections of a zone share an original or a reply tuple
/// (an echo exchange and other ICMP between the same hosts are apart).
fn check_tuples_unique(ct: &Conntrack, now: Instant) {
    let conns = ct.list(None, now);
    let mut seen: Vec<(u16, bool, Tuple)> = Vec::with_capacity(conns.len() * 2);
    for c in &conns {
        for t in [c.orig, c.reply] {
            let key = (c.zone, c.echo, t);
            // A connection whose reply is its original reversed onto itself
            // (a packet to itself) names one tuple twice, legitimately.
            assert!(
                !seen.contains(&key) || c.orig == c.reply,
                "two connections answer to {t:?}"
            );
            seen.push(key);
        }
    }
}

/// The flows of one subnet gateway: ARP and ping for the gateway answered,
/// 10.0.2.0/24 routed (TTL, MTU `mtu` with fragmentation-needed, MACs),
/// 198.51.100.0/24 routed and source-NATed, anything else unreachable.
fn router_flows(mtu: u16) -> Vec<FlowSpec> {
    let prefix = |text: &str, len| IpPrefix {
        addr: IpAddr::V4(text.parse().expect("literal")),
        len,
    };
    let gateway = Some(IpPrefix::host(IpAddr::V4(GATEWAY)));
    // Routed: TTL, MTU, MACs, then out (or on through source NAT).
    let routed = |last: Action| {
        vec![
            Action::DecTtl { icmp_src: GATEWAY },
            Action::CheckMtu {
                mtu,
                icmp_src: Some(GATEWAY),
            },
            Action::SetField(SetField::EthSrc(GATEWAY_MAC)),
            Action::SetField(SetField::EthDst(EthernetAddress([2, 0, 0, 0, 2, 10]))),
            last,
        ]
    };
    vec![
        FlowSpec::new(
            0,
            100,
            Match {
                eth_type: Some(0x0806),
                ..Match::default()
            },
            vec![Action::ArpReply(GATEWAY_MAC), Action::InPort],
        ),
        FlowSpec::new(
            0,
            100,
            Match {
                eth_type: Some(0x0800),
                ip_proto: Some(PROTO_ICMP),
                ip_dst: gateway,
                ..Match::default()
            },
            vec![Action::IcmpEchoReply, Action::InPort],
        ),
        FlowSpec::new(
            0,
            50,
            Match {
                eth_type: Some(0x0800),
                ip_dst: Some(prefix("10.0.2.0", 24)),
                ..Match::default()
            },
            routed(Action::Output(2)),
        ),
        FlowSpec::new(
            0,
            50,
            Match {
                eth_type: Some(0x0800),
                ip_dst: Some(prefix("198.51.100.0", 24)),
                ..Match::default()
            },
            routed(Action::Ct {
                zone: 65280,
                commit: true,
                table: 1,
                nat: Some(Nat::Src {
                    addr: PUBLIC,
                    ports: Some((1024, 1027)),
                }),
            }),
        ),
        FlowSpec::new(1, 0, Match::default(), vec![Action::Output(3)]),
        FlowSpec::new(
            0,
            10,
            Match {
                eth_type: Some(0x0800),
                ..Match::default()
            },
            vec![Action::IcmpUnreachable {
                code: 0,
                icmp_src: GATEWAY,
            }],
        ),
    ]
}

/// A frame through a subnet gateway's flows; the first byte picks the MTU
/// of the routed next hop, and the input port. ICMP errors the switch
/// makes must be well formed: from the gateway to the sender, checksums
/// valid, within 576 bytes, quoting the datagram as it arrived (TTL and
/// header checksum aside). A routed frame whose header verified still
/// verifies; one to fragment splits into valid fragments within the MTU.
pub fn icmp_errors(data: &[u8]) {
    let _ = route_one(data);
}

/// Which checks one `icmp_errors` input reached.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Reached {
    /// ICMP errors the switch made.
    errors: usize,
    /// A routed frame whose header checksum was checked.
    routed: bool,
    /// Fragments checked.
    fragments: usize,
}

fn route_one(data: &[u8]) -> Reached {
    let mut reached = Reached::default();
    let Some((&selector, frame)) = data.split_first() else {
        return reached;
    };
    let now = Instant::now();
    let mtu = 68 + u16::from(selector & 0x7f) * 12;
    let mut pipeline = Pipeline::new();
    pipeline.set_ports(&[1, 2, 3]);
    for spec in router_flows(mtu) {
        pipeline
            .apply_flow_mod(&FlowMod::add(spec), now)
            .expect("router flows are valid");
    }
    let received = frame.to_vec();
    let mut owned = OwnedFrame::new(frame);
    let meta = FrameMeta::plain(1 + u32::from(selector >> 7));
    let mut decision = Decision::default();
    pipeline.process(&mut owned, meta, now, &mut decision);
    for (_, error) in &decision.generated {
        check_generated(&received, error);
        reached.errors += 1;
    }
    let sent = owned.as_slice();
    if !decision.outputs.is_empty()
        && let (Some((EtherType::Ipv4, l3)), Some((EtherType::Ipv4, _))) = (
            crate::fragment::network_header(&received),
            crate::fragment::network_header(sent),
        )
        && checksums(&received[l3..]).0
    {
        assert!(
            checksums(&sent[l3..]).0,
            "routing broke the header checksum"
        );
        reached.routed = true;
    }
    if let Some(mtu) = decision.fragment_mtu {
        reached.fragments = check_fragments(sent, mtu);
    }
    reached
}

/// An ICMP error (or echo reply) the switch made about `received`.
fn check_generated(received: &[u8], generated: &[u8]) {
    let Some((EtherType::Ipv4, l3)) = crate::fragment::network_header(generated) else {
        panic!("a generated frame that is not IPv4");
    };
    let ip = Ipv4Packet::new_checked(&generated[l3..]).expect("a parsable header");
    assert_eq!(ip.src_addr(), GATEWAY);
    assert!(ip.total_len() <= MAX_ERROR_DATAGRAM);
    assert_eq!(
        generated.len(),
        l3 + ip.total_len(),
        "no padding, nothing cut"
    );
    assert_eq!(checksums(&generated[l3..]), (true, Some(true)));
    let message = IcmpPacket::new_checked(ip.payload()).expect("an ICMP message");
    assert!(matches!(message.msg_type(), 3 | 11), "an error type");
    let (_, at) = crate::fragment::network_header(received).expect("the error is about IPv4");
    let quoted = message.payload();
    let original = &received[at..];
    assert!(quoted.len() <= original.len());
    assert_eq!(
        ip.dst_addr(),
        Ipv4Addr::from([original[12], original[13], original[14], original[15]])
    );
    for (i, (q, o)) in quoted.iter().zip(original).enumerate() {
        // TTL and header checksum may have changed before the error was made.
        assert!(
            q == o || matches!(i, 8 | 10 | 11),
            "quote differs at byte {i}"
        );
    }
}

/// A datagram the pipeline marked for fragmentation at `mtu`: either it
/// splits into fragments within the MTU that together carry its data, with
/// valid headers, or the fragmenter refuses it with a reason. Returns how
/// many fragments it made.
fn check_fragments(frame: &[u8], mtu: u16) -> usize {
    let mut out = Vec::new();
    let Ok(count) = crate::fragment::fragment(frame, mtu, &mut out) else {
        return 0;
    };
    assert_eq!(count, out.len());
    let (_, l3) = crate::fragment::network_header(frame).expect("fragmented frames are IPv4");
    let ip = Ipv4Packet::new_checked(&frame[l3..]).expect("fragmented frames parse");
    let data_len = ip.total_len() - ip.header_len();
    let mut next_offset = usize::from(ip.fragment_offset());
    let mut carried = 0;
    for piece in &out {
        let (_, at) = crate::fragment::network_header(piece).expect("fragments are IPv4");
        let f = Ipv4Packet::new_checked(&piece[at..]).expect("fragments parse");
        assert!(f.verify_checksum());
        assert!(f.total_len() <= usize::from(mtu));
        assert_eq!(usize::from(f.fragment_offset()), next_offset);
        let len = f.total_len() - f.header_len();
        next_offset += len;
        carried += len;
    }
    assert_eq!(carried, data_len);
    count
}

/// Seeds for the stable-toolchain runs of these targets.
#[cfg(test)]
pub(super) mod seeds {
    use super::*;
    use crate::testutil::FrameBuilder;

    /// `frame` with its IPv4 header changed by `change` (checksum refilled).
    fn with_header(mut frame: Vec<u8>, change: impl FnOnce(&mut Ipv4Packet<&mut [u8]>)) -> Vec<u8> {
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[14..]);
        change(&mut ip);
        ip.fill_checksum();
        frame
    }

    /// `icmp_errors` inputs: a selector (MTU 260) and a frame the gateway
    /// routes, NATs, answers, refuses or fragments.
    pub(in crate::fuzzing) fn frames() -> Vec<Vec<u8>> {
        let big = vec![b'x'; 1400];
        let frames = [
            FrameBuilder::tcp4("10.0.1.10:40000", "10.0.2.5:80", b"routed").build(),
            with_header(
                FrameBuilder::tcp4("10.0.1.10:40000", "10.0.2.5:80", b"ttl").build(),
                |ip| ip.set_ttl(1),
            ),
            with_header(
                with_header(
                    FrameBuilder::udp4("10.0.1.10:5000", "10.0.2.5:53", &big).build(),
                    |ip| ip.set_flags_fragment(false, false, 0),
                ),
                |ip| ip.set_flags_fragment(true, false, 0),
            ),
            with_header(
                FrameBuilder::udp4("10.0.1.10:5000", "10.0.2.5:53", &big).build(),
                |ip| ip.set_flags_fragment(false, false, 0),
            ),
            FrameBuilder::udp4("10.0.1.10:5000", "198.51.100.7:53", b"nat").build(),
            FrameBuilder::icmp4_echo("10.0.1.10", "10.0.1.1", 1).build(),
            FrameBuilder::tcp4("10.0.1.10:40000", "8.8.8.8:80", b"nowhere").build(),
            FrameBuilder::arp_request(crate::testutil::mac(10), "10.0.1.10", "10.0.1.1").build(),
        ];
        frames
            .into_iter()
            .map(|f| [&[0x10][..], &f].concat())
            .collect()
    }

    /// `nat_packets` input: a TCP connection, a UDP exchange and a ping
    /// through source NAT with their replies, an ICMP error about the UDP
    /// one, a connection to a public IP through destination NAT, and new
    /// connections until the four ports run out. The replies are addressed
    /// to the ports a scratch tracker allocates.
    pub(in crate::fuzzing) fn nat_sequence() -> Vec<u8> {
        let l3 = |frame: Vec<u8>| frame[14..].to_vec();
        let tcp = |src: &str, dst: &str, flags| {
            l3(FrameBuilder::tcp4(src, dst, b"").tcp_flags(flags).build())
        };
        let (snat, existing, dnat) = (0x0a, 0x06, 0x0c);
        let mut scratch = Conntrack::new(16, Timeouts::default());
        let mut leaves = |packet: &[u8]| {
            let v = scratch.track_nat(packet, 0, true, nat_of(snat), Instant::now());
            match v.translation {
                Some(Translation::Packet { to }) => to,
                other => panic!("the seed's connection is translated: {other:?}"),
            }
        };
        let syn = tcp("10.0.1.10:4000", "198.51.100.1:80", TcpFlags::SYN);
        let query = l3(FrameBuilder::udp4("10.0.1.10:5353", "198.51.100.1:53", b"q").build());
        let ping = l3(FrameBuilder::icmp4_echo("10.0.1.10", "198.51.100.1", 3).build());
        let (syn_to, query_to, ping_to) = (leaves(&syn), leaves(&query), leaves(&ping));
        let to_public = |port: u16| format!("{PUBLIC}:{port}");
        let mut answer = l3(
            FrameBuilder::icmp4_echo("198.51.100.1", &PUBLIC.to_string(), 3)
                .echo_reply(true)
                .build(),
        );
        // The echo identifier sits where the reply's port would.
        answer[24..26].copy_from_slice(&ping_to.sport.to_be_bytes());
        let mut translated_query = query.clone();
        translated_query[12..16].copy_from_slice(&PUBLIC.octets());
        translated_query[20..22].copy_from_slice(&query_to.sport.to_be_bytes());
        let mut error = vec![3, 3, 0, 0, 0, 0, 0, 0];
        error.extend_from_slice(&translated_query[..28]);
        let error = crate::conntrack::packet::build::ipv4(
            PROTO_ICMP,
            [198, 51, 100, 1],
            PUBLIC.octets(),
            &error,
        );
        let mut packets = vec![
            (snat, syn),
            (
                existing,
                l3(
                    FrameBuilder::tcp4("198.51.100.1:80", &to_public(syn_to.sport), b"")
                        .tcp_flags(TcpFlags::SYN | TcpFlags::ACK)
                        .tcp_seq_ack(500, 2)
                        .build(),
                ),
            ),
            (snat, query),
            (
                existing,
                l3(FrameBuilder::udp4("198.51.100.1:53", &to_public(query_to.sport), b"a").build()),
            ),
            (existing, error),
            (snat | 1 << 4, ping),
            (existing, answer),
            (
                dnat,
                tcp("192.0.2.9:5555", "203.0.113.20:443", TcpFlags::SYN),
            ),
        ];
        for port in 4001..4005 {
            packets.push((
                snat,
                tcp(
                    &format!("10.0.1.11:{port}"),
                    "198.51.100.1:80",
                    TcpFlags::SYN,
                ),
            ));
        }
        packets
            .into_iter()
            .flat_map(|(control, p)| [vec![control, p.len() as u8], p].concat())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_reach_every_check() {
        let reached: Vec<Reached> = seeds::frames().iter().map(|f| route_one(f)).collect();
        let [routed, ttl, df, fragment, nat, ping, nowhere, arp] = reached[..] else {
            panic!("eight seeds");
        };
        assert!(routed.routed && nat.routed && fragment.routed);
        assert_eq!((ttl.errors, df.errors, nowhere.errors), (1, 1, 1));
        assert!(fragment.fragments > 5, "{fragment:?}");
        assert_eq!(ping.errors + arp.errors, 0);
        // Three connections and their replies, the error, the public IP's
        // connection, and three that fill the range (TCP has used one of
        // its four ports) before one is refused.
        let nat = translate_all(&seeds::nat_sequence());
        assert_eq!(
            nat,
            NatReached {
                translated: 11,
                exhausted: 1
            }
        );
    }
}
