//! Bodies of the fuzz targets for the data plane's parsers of wire input:
//! each takes arbitrary bytes and must never panic. `fuzz/` runs them under
//! libFuzzer; the unit tests run them over seeds and mutations on the stable
//! toolchain.

use crate::flow::{Action, FlowMod, FlowSpec, Match, SetField, VlanMatch};
use crate::pipeline::{Decision, FrameMeta, Pipeline};
use crate::testutil::FrameBuilder;
use crate::wire::*;
use std::time::Instant;

mod routing;
pub use routing::{icmp_errors, nat_packets};

/// Connection tracking over a sequence of IPv4 packets, each `[control,
/// length, bytes…]` where the control byte picks the zone (low 2 bits), commit
/// (bit 2) and how many seconds pass before it (the rest). The tracker is
/// small, so that it fills; every answer must carry `TRK` and one verdict,
/// and the table must never grow past its size.
pub fn conntrack_packets(data: &[u8]) {
    use crate::conntrack::{Conntrack, Timeouts, state};
    const CAPACITY: usize = 8;
    let mut ct = Conntrack::new(CAPACITY, Timeouts::default());
    let mut now = Instant::now();
    let mut rest = data;
    while let [control, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (packet, next) = tail.split_at(len);
        rest = next;
        now += std::time::Duration::from_secs(u64::from(control >> 3));
        let bits = ct.track(packet, u16::from(control & 3), control & 4 != 0, now);
        assert!(bits & state::TRK != 0);
        let verdicts = [state::NEW, state::EST, state::REL, state::INV];
        assert_eq!(
            verdicts.iter().filter(|&&v| bits & v != 0).count(),
            1,
            "{bits:#x}"
        );
        assert!(ct.len() <= CAPACITY);
        ct.sweep(now);
        assert_eq!(ct.list(None, now).len(), ct.len());
    }
}

/// Every packet view and `Repr` over the same bytes.
pub fn wire_views(data: &[u8]) {
    if let Ok(frame) = EthernetFrame::new_checked(data) {
        let _ = EthernetRepr::parse(&frame);
        let _ = frame.payload();
    }
    if let Ok(tag) = VlanHeader::new_checked(data) {
        let _ = VlanRepr::parse(&tag);
        let _ = tag.payload();
    }
    if let Ok(ip) = Ipv4Packet::new_checked(data) {
        let _ = Ipv4Repr::parse(&ip);
        let ips = IpPair::V4(ip.src_addr(), ip.dst_addr());
        let payload = ip.payload();
        l4_views(payload, ips);
    }
    if let Ok(ip) = Ipv6Packet::new_checked(data) {
        let _ = Ipv6Repr::parse(&ip);
        l4_views(ip.payload(), IpPair::V6(ip.src_addr(), ip.dst_addr()));
    }
    if let Ok(arp) = ArpPacket::new_checked(data) {
        let _ = ArpRepr::parse(&arp);
    }
    if let Ok(vnet) = VnetHeader::new_checked(data) {
        let _ = VnetRepr::parse(&vnet);
    }
}

fn l4_views(payload: &[u8], ips: IpPair) {
    if let Ok(tcp) = TcpSegment::new_checked(payload) {
        let _ = TcpRepr::parse(&tcp, ips);
        let _ = tcp.payload();
    }
    if let Ok(udp) = UdpDatagram::new_checked(payload) {
        let _ = UdpRepr::parse(&udp, ips);
    }
    if let Ok(icmp) = IcmpPacket::new_checked(payload) {
        let _ = IcmpEchoRepr::parse(&icmp, ips);
    }
}

/// 802.1Q: the tags of a frame (up to two, as in QinQ), each parsed and
/// written back unchanged, and the flow key the pipeline extracts, whose
/// VLAN must be the outer tag's.
pub fn vlan_frame(data: &[u8]) {
    let Ok(frame) = EthernetFrame::new_checked(data) else {
        return;
    };
    let mut rest = frame.payload();
    let mut ethertype = frame.ethertype();
    let mut outer = None;
    for _ in 0..2 {
        if !matches!(ethertype, EtherType::Vlan | EtherType::QinQ) {
            break;
        }
        let Ok(tag) = VlanHeader::new_checked(rest) else {
            break;
        };
        let repr = VlanRepr::parse(&tag);
        let mut again = [0u8; 4];
        repr.emit(&mut VlanHeader::new_unchecked(&mut again[..]));
        assert_eq!(&again[..], &rest[..4], "a tag survives parse and emit");
        outer.get_or_insert(tag.vid());
        ethertype = tag.ethertype();
        rest = &rest[4..];
    }
    if let (Some(extracted), Some(vid)) = (crate::flow::FlowKey::extract(data, 1), outer) {
        assert_eq!(
            extracted.key.vlan_tci() & 0x0fff,
            vid,
            "the key carries the outer VID"
        );
    }
}

/// VXLAN: a UDP payload as the tunnel port reads it (header, inner frame),
/// with the decapsulation steps it takes: header checks, the inner frame's
/// checksum finished, its flow key; and the encapsulation's source port.
pub fn vxlan_datagram(data: &[u8]) {
    let Ok(packet) = VxlanPacket::new_checked(data) else {
        return;
    };
    let repr = VxlanRepr::parse(&packet);
    assert!(repr.vni <= vxlan::MAX_VNI);
    let mut header = [0u8; vxlan::HEADER_LEN];
    repr.emit(&mut header);
    assert_eq!(
        VxlanPacket::new_checked(&header[..]).map(|p| p.vni()),
        Ok(repr.vni)
    );
    let mut inner = packet.payload().to_vec();
    let _ = crate::gso::finish_inner_checksum(&mut inner);
    let _ = crate::flow::FlowKey::extract(&inner, 1);
    let _ = crate::port::vxlan::flow_hash(&inner);
    if let Some(vnet) = crate::port::vxlan::merge::oversize_tcp(&mut inner, 576) {
        assert!(usize::from(vnet.hdr_len) < inner.len());
        assert!(vnet.gso_size > 0);
    }
}

/// What UDP GRO hands the tunnel port: a datagram of several VXLAN packets
/// of one size; the first byte picks how many. Merged or not, nothing may
/// panic, and a merged super-frame must describe itself consistently.
pub fn vxlan_gro(data: &[u8]) {
    let Some((&pick, datagram)) = data.split_first() else {
        return;
    };
    let count = 2 + usize::from(pick % 8);
    let size = datagram.len().div_ceil(count).max(1);
    let mut buffer = datagram.to_vec();
    let covered: usize = crate::port::vxlan::merge::packets(buffer.len(), size)
        .map(|r| r.len())
        .sum();
    assert_eq!(covered, buffer.len());
    if let Some(merged) = crate::port::vxlan::merge::merge(&mut buffer, size) {
        assert!(merged.vni <= vxlan::MAX_VNI);
        assert!(vxlan::HEADER_LEN + merged.len <= buffer.len());
        let frame = &buffer[vxlan::HEADER_LEN..vxlan::HEADER_LEN + merged.len];
        assert!(usize::from(merged.vnet.hdr_len) <= frame.len());
        assert!(usize::from(merged.vnet.csum_start) + 18 <= frame.len());
        assert!(merged.vnet.gso_size > 0);
        let _ = crate::flow::FlowKey::extract(frame, 1);
    }
}

/// A frame through a pipeline with rewrites, goto, flood, learning and
/// conntrack with a second pass; the first byte picks the input port and
/// whether the checksum is partial.
pub fn frame_pipeline(data: &[u8]) {
    let Some((&selector, frame)) = data.split_first() else {
        return;
    };
    let now = Instant::now();
    let mut pipeline = Pipeline::new();
    pipeline.set_ports(&[1, 2, 3]);
    let flows = [
        FlowSpec::new(
            0,
            10,
            Match {
                eth_type: Some(0x0800),
                ..Match::default()
            },
            vec![
                Action::SetField(SetField::Ipv4Dst("10.9.9.9".parse().expect("literal"))),
                Action::SetField(SetField::TpDst(8080)),
                Action::Output(2),
                Action::SetField(SetField::EthSrc(EthernetAddress([2, 0, 0, 0, 0, 9]))),
                Action::GotoTable(1),
            ],
        ),
        FlowSpec::new(
            0,
            0,
            Match::default(),
            vec![Action::Controller { max_len: 64 }, Action::GotoTable(1)],
        ),
        FlowSpec::new(
            1,
            5,
            Match {
                vlan: Some(VlanMatch::Vid(10)),
                ..Match::default()
            },
            vec![
                Action::Output(1),
                Action::PopVlan,
                Action::SetField(SetField::TunnelId(100)),
                Action::SetField(SetField::TunnelDst("192.168.1.2".parse().expect("literal"))),
                Action::Output(3),
                Action::PushVlan(0x2000 | 20),
                Action::SetField(SetField::VlanVid(30)),
                Action::Output(2),
            ],
        ),
        FlowSpec::new(
            1,
            0,
            Match::default(),
            vec![Action::Normal, Action::PushVlan(10), Action::Flood],
        ),
        // IPv4 TCP: a tag pushed (the layers move), then conntrack and a
        // second pass that tells established from the rest.
        FlowSpec::new(
            1,
            8,
            Match {
                eth_type: Some(0x0800),
                ip_proto: Some(6),
                ..Match::default()
            },
            vec![
                Action::PushVlan(0x2000 | 5),
                Action::Ct {
                    zone: 3,
                    commit: true,
                    table: 2,
                    nat: None,
                },
            ],
        ),
        FlowSpec::new(
            2,
            5,
            Match {
                ct_state: Some(crate::flow::CtStateMatch::new(
                    crate::conntrack::state::TRK | crate::conntrack::state::NEW,
                    0,
                )),
                ..Match::default()
            },
            vec![Action::PopVlan, Action::Output(3)],
        ),
        FlowSpec::new(2, 0, Match::default(), vec![Action::Output(1)]),
    ];
    for spec in flows {
        let _ = pipeline.apply_flow_mod(&FlowMod::add(spec), now);
    }
    let mut frame = crate::pipeline::OwnedFrame::new(frame);
    let meta = FrameMeta {
        gso_size: 0,
        in_port: u32::from(selector % 4),
        segments: 1,
        partial_checksum: selector & 0x80 != 0,
        tunnel: (selector & 0x40 != 0).then(|| crate::pipeline::TunnelMeta {
            vni: 100,
            src: "192.168.1.9".parse().expect("literal"),
        }),
    };
    let mut decision = Decision::default();
    pipeline.process(&mut frame, meta, now, &mut decision);
    pipeline.process_normal(&mut frame, meta, now, &mut decision);
}

/// Software segmentation of a frame with an arbitrary virtio-net header (the
/// first 10 bytes).
pub fn gso(data: &[u8]) {
    if data.len() < vnet_hdr::HEADER_LEN {
        return;
    }
    let vnet = VnetRepr::parse(&VnetHeader::new_unchecked(&data[..vnet_hdr::HEADER_LEN]));
    let mut out = crate::gso::Segments::default();
    let _ = crate::gso::segment(&data[vnet_hdr::HEADER_LEN..], &vnet, &mut out);
}

/// A controller message off the wire, decoded and converted to commands.
pub fn southbound_message(data: &[u8]) {
    use prost::Message;
    use sdn_proto::southbound as pb;
    let Ok(message) = pb::ControllerMessage::decode(data) else {
        return;
    };
    match message.body {
        Some(pb::controller_message::Body::FlowMod(fm)) => {
            if let Ok(flow_mod) = FlowMod::try_from(&fm) {
                let mut pipeline = Pipeline::new();
                let _ = pipeline.apply_flow_mod(&flow_mod, Instant::now());
            }
        }
        Some(pb::controller_message::Body::PacketOut(po)) => {
            let _ = crate::flow::convert::actions_from_pb(&po.actions);
        }
        Some(pb::controller_message::Body::FlowStatsRequest(req)) => {
            let _ = req.r#match.as_ref().map(Match::try_from);
        }
        _ => {}
    }
    if let Ok(stats) = pb::FlowStats::decode(data) {
        let _ = crate::flow::FlowStats::try_from(&stats);
    }
}

/// Seed inputs: well-formed frames of every kind the switch parses.
pub fn seed_frames() -> Vec<Vec<u8>> {
    vec![
        FrameBuilder::udp4("10.0.0.1:1000", "10.0.0.2:53", b"seed").build(),
        FrameBuilder::tcp4("10.0.0.1:1000", "10.0.0.2:80", b"GET / HTTP/1.1").build(),
        FrameBuilder::tcp6("[fd00::1]:1000", "[fd00::2]:80", b"x")
            .vlan(10, 1)
            .build(),
        FrameBuilder::icmp4_echo("10.0.0.1", "10.0.0.2", 1).build(),
        FrameBuilder::arp_request(crate::testutil::mac(1), "10.0.0.1", "10.0.0.2").build(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small xorshift generator: deterministic mutations without a fuzzer.
    struct Mutator(u64);

    impl Mutator {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
            let mut data = seed.to_vec();
            for _ in 0..(self.next() % 8 + 1) {
                match self.next() % 4 {
                    0 if !data.is_empty() => {
                        let at = (self.next() as usize) % data.len();
                        data[at] ^= 1 << (self.next() % 8);
                    }
                    1 if !data.is_empty() => {
                        let at = (self.next() as usize) % data.len();
                        data.truncate(at);
                    }
                    2 => data.push(self.next() as u8),
                    _ if !data.is_empty() => {
                        let at = (self.next() as usize) % data.len();
                        data[at] = self.next() as u8;
                    }
                    _ => {}
                }
            }
            data
        }
    }

    /// A TCP handshake, data and close, a UDP exchange with an ICMP error
    /// and an echo, as `conntrack_packets` input.
    fn conntrack_seed() -> Vec<u8> {
        use crate::conntrack::packet::build::*;
        use crate::conntrack::packet::{ACK, FIN, SYN};
        let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let q = udp(a, 5353, b, 53);
        let packets = [
            (4, tcp(a, 4000, b, 80, SYN, 100, 0)),
            (0, tcp(b, 80, a, 4000, SYN | ACK, 500, 101)),
            (0, tcp(a, 4000, b, 80, ACK, 101, 501)),
            (8, tcp(a, 4000, b, 80, FIN | ACK, 101, 501)),
            (0, tcp(b, 80, a, 4000, FIN | ACK, 501, 102)),
            (0, tcp(a, 4000, b, 80, ACK, 102, 502)),
            (5, q.clone()),
            (1, icmp_error(b, a, 3, &q)),
            (4, echo(a, b, true, 7)),
            (0, echo(b, a, false, 7)),
        ];
        let mut out = Vec::new();
        for (control, p) in packets {
            out.push(control);
            out.push(p.len() as u8);
            out.extend_from_slice(&p);
        }
        out
    }

    #[test]
    fn conntrack_survives_its_seed_and_mutations() {
        let mut mutator = Mutator(0x2545_f491_4f6c_dd1d);
        let seed = conntrack_seed();
        conntrack_packets(&seed);
        for _ in 0..3000 {
            conntrack_packets(&mutator.mutate(&seed));
        }
    }

    #[test]
    fn routing_targets_survive_their_seeds_and_mutations() {
        let mut mutator = Mutator(0x2f6b_0c4d_a1b3_9e57);
        for seed in routing::seeds::frames() {
            icmp_errors(&seed);
            for _ in 0..400 {
                icmp_errors(&mutator.mutate(&seed));
            }
        }
        let seed = routing::seeds::nat_sequence();
        nat_packets(&seed);
        for _ in 0..3000 {
            nat_packets(&mutator.mutate(&seed));
        }
    }

    #[test]
    fn targets_survive_seeds_and_mutations() {
        let mut mutator = Mutator(0x9e37_79b9_7f4a_7c15);
        let mut seeds = seed_frames();
        seeds.push(Vec::new());
        for seed in &seeds {
            for round in 0..400 {
                let data = if round == 0 {
                    seed.clone()
                } else {
                    mutator.mutate(seed)
                };
                wire_views(&data);
                frame_pipeline(&data);
                let mut with_vnet = vec![(round % 6) as u8, 0x81, 54, 0, 0xe8, 0x03, 34, 0, 16, 0];
                with_vnet.extend_from_slice(&data);
                gso(&with_vnet);
                southbound_message(&data);
                vlan_frame(&data);
                let mut datagram = vec![0x08, 0, 0, 0, 0, 0x13, 0x89, 0];
                datagram.extend_from_slice(&data);
                vxlan_datagram(&datagram);
                let mut gro = vec![round as u8];
                gro.extend_from_slice(&datagram);
                gro.extend_from_slice(&datagram);
                vxlan_gro(&gro);
            }
        }
    }
}
