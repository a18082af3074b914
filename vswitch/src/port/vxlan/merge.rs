//! Turning what UDP GRO hands over back into frames: a datagram that holds
//! several VXLAN packets of one size (the last may be shorter). When they
//! are consecutive segments of one TCP stream, as a sender segmenting a TSO
//! super-frame makes them, they are merged in place into one super-frame
//! with offload metadata, so the receiving host gets them at once. Anything
//! else is split back into its packets.

use crate::gso::{self, InnerChecksum};
use crate::wire::{
    GsoType, IpProtocol, Ipv4Packet, Ipv6Packet, TcpFlags, TcpSegment, VnetRepr, VxlanPacket,
    checksum, vnet_hdr, vxlan,
};
use std::ops::Range;

/// Flags a merged segment may carry (CWR only on the first, PSH and FIN only
/// on the last; nothing else beyond ACK and ECE).
const URG_SYN_RST: u16 = 0x020 | TcpFlags::SYN | TcpFlags::RST;
const CWR: u16 = 0x080;
const PSH_FIN: u16 = TcpFlags::PSH | TcpFlags::FIN;

/// A merged super-frame: the inner frame at `datagram[8..8 + len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Merged {
    /// Its length.
    pub(crate) len: usize,
    /// Its VNI.
    pub(crate) vni: u32,
    /// Offload metadata for it (TSO, partial checksum).
    pub(crate) vnet: VnetRepr,
}

/// The VXLAN packets of a datagram of `len` bytes cut every `size` bytes.
pub(crate) fn packets(len: usize, size: usize) -> impl Iterator<Item = Range<usize>> {
    let size = size.max(1);
    (0..len.div_ceil(size)).map(move |i| i * size..((i + 1) * size).min(len))
}

/// Merges the VXLAN packets of `datagram` (each `size` bytes, the last
/// maybe shorter) into one TCP super-frame, if they are consecutive segments
/// of one stream with identical headers. Leaves the datagram unchanged
/// (except for checksums completed in place) and returns `None` otherwise.
pub(crate) fn merge(datagram: &mut [u8], size: usize) -> Option<Merged> {
    if size <= vxlan::HEADER_LEN || datagram.len() <= size {
        return None;
    }
    let len = datagram.len();
    let last = len.div_ceil(size) - 1;
    let first = 0..size;
    let vni = VxlanPacket::new_checked(&datagram[first.clone()])
        .ok()?
        .vni();
    let inner0 = first.start + vxlan::HEADER_LEN..first.end;
    let shape = Shape::of(&datagram[inner0.clone()])?;
    let mss = shape.payload_len(&datagram[inner0.clone()]);
    if mss == 0 {
        return None;
    }
    let mut seq = shape.seq(&datagram[inner0.clone()]);
    for (i, range) in packets(len, size).enumerate() {
        let packet = VxlanPacket::new_checked(&datagram[range.clone()]).ok()?;
        if packet.vni() != vni {
            return None;
        }
        let inner = range.start + vxlan::HEADER_LEN..range.end;
        let frame = &datagram[inner.clone()];
        let payload = shape.payload_len(frame);
        let size_ok = if i == last {
            (1..=mss).contains(&payload)
        } else {
            payload == mss
        };
        if !size_ok
            || !shape.same_stream(&datagram[inner0.clone()], frame, i, i == last)
            || shape.seq(frame) != seq
        {
            return None;
        }
        seq = seq.wrapping_add(payload as u32);
        if gso::finish_inner_checksum(&mut datagram[inner]) == InnerChecksum::Corrupt {
            return None;
        }
    }
    // The TCP payload of each packet (segment headers all have one length).
    let payload_of =
        |range: Range<usize>| range.start + vxlan::HEADER_LEN + shape.headers..range.end;
    let total = shape.headers
        + packets(len, size)
            .map(|range| payload_of(range).len())
            .sum::<usize>();
    let l3_len = total - shape.l3;
    if l3_len > usize::from(u16::MAX) {
        return None;
    }
    // Everything checks: move the payloads up behind the first segment's.
    let last_flags = shape.flags(&datagram[last * size + vxlan::HEADER_LEN..]);
    let mut end = payload_of(first).end;
    for range in packets(len, size).skip(1) {
        let payload = payload_of(range);
        datagram.copy_within(payload.clone(), end);
        end += payload.len();
    }
    let frame = &mut datagram[inner0.start..inner0.start + total];
    shape.finish(frame, last_flags & PSH_FIN);
    Some(Merged {
        len: total,
        vni,
        vnet: shape.tso(mss as u16),
    })
}

/// A TCP frame out of one datagram that is larger than the tunnel's MTU: a
/// Linux VTEP on the same machine hands its UDP-tunnel GSO packets to the
/// socket whole, so the datagram holds a super-frame without its offload
/// metadata (the MSS is lost with it). Gives it TSO metadata with the
/// largest MSS that fits `mtu`, so that the host receives it in segments
/// instead of the veth dropping it as too big. The frame's checksum must be
/// complete; it becomes the pseudo-header seed the metadata asks for.
pub(crate) fn oversize_tcp(frame: &mut [u8], mtu: usize) -> Option<VnetRepr> {
    let shape = Shape::of(frame)?;
    if frame.len() - shape.l3 <= mtu || shape.payload_len(frame) == 0 {
        return None;
    }
    let mss = mtu
        .checked_sub(shape.headers - shape.l3)
        .filter(|&m| m > 0)?;
    let flags = shape.flags(frame);
    shape.finish(frame, flags & PSH_FIN);
    Some(shape.tso(u16::try_from(mss).ok()?))
}

/// The layout shared by the segments of one TCP stream.
struct Shape {
    l3: usize,
    l4: usize,
    headers: usize,
    ipv4: bool,
}

impl Shape {
    /// The layout of the first segment, if it is TCP that can be merged.
    fn of(frame: &[u8]) -> Option<Shape> {
        let o = gso::offsets(frame).ok()?;
        let protocol = if o.ipv4 {
            let ip = Ipv4Packet::new_checked(&frame[o.l3..]).ok()?;
            if ip.more_fragments() || ip.fragment_offset() != 0 || !ip.verify_checksum() {
                return None;
            }
            ip.protocol()
        } else {
            Ipv6Packet::new_checked(&frame[o.l3..]).ok()?.next_header()
        };
        if protocol != IpProtocol::Tcp {
            return None;
        }
        let tcp = TcpSegment::new_checked(&frame[o.l4..]).ok()?;
        if tcp.flags().0 & URG_SYN_RST != 0 {
            return None;
        }
        Some(Shape {
            l3: o.l3,
            l4: o.l4,
            headers: o.l4 + tcp.header_len(),
            ipv4: o.ipv4,
        })
    }

    /// TSO metadata for a super-frame of this shape, its checksum field
    /// holding the pseudo-header seed.
    fn tso(&self, mss: u16) -> VnetRepr {
        VnetRepr {
            flags: vnet_hdr::FLAG_NEEDS_CSUM,
            gso_type: if self.ipv4 {
                GsoType::TcpV4
            } else {
                GsoType::TcpV6
            },
            hdr_len: self.headers as u16,
            gso_size: mss,
            csum_start: self.l4 as u16,
            csum_offset: 16,
        }
    }

    /// Payload bytes of a segment of this shape (0 if it is too short, or its
    /// IP length disagrees with its size).
    fn payload_len(&self, frame: &[u8]) -> usize {
        if frame.len() <= self.headers {
            return 0;
        }
        let ip_len = if self.ipv4 {
            Ipv4Packet::new_unchecked(&frame[self.l3..]).total_len()
        } else {
            self.l4 - self.l3 + Ipv6Packet::new_unchecked(&frame[self.l3..]).payload_len()
        };
        if ip_len != frame.len() - self.l3 {
            return 0;
        }
        frame.len() - self.headers
    }

    fn seq(&self, frame: &[u8]) -> u32 {
        TcpSegment::new_unchecked(&frame[self.l4..]).seq_number()
    }

    fn flags(&self, frame: &[u8]) -> u16 {
        TcpSegment::new_unchecked(&frame[self.l4..]).flags().0
    }

    /// Whether segment `index` has the first's headers, but for what differs
    /// between segments of one stream (IP length, identification and
    /// checksum, TCP sequence number and checksum, and the flags allowed).
    fn same_stream(&self, first: &[u8], frame: &[u8], index: usize, last: bool) -> bool {
        let (l3, l4, end) = (self.l3, self.l4, self.headers);
        let same = |r: Range<usize>| first.get(r.clone()) == frame.get(r);
        let ip_same = if self.ipv4 {
            same(0..l3 + 2)
                && same(l3 + 6..l3 + 10)
                && same(l3 + 12..l4)
                && Ipv4Packet::new_unchecked(&frame[l3..]).verify_checksum()
        } else {
            same(0..l3 + 4) && same(l3 + 6..l4)
        };
        // Ports, acknowledgement, data offset, window, urgent pointer, options.
        let tcp_same = same(l4..l4 + 4)
            && same(l4 + 8..l4 + 13)
            && same(l4 + 14..l4 + 16)
            && same(l4 + 18..end);
        if !ip_same || !tcp_same {
            return false;
        }
        let base = self.flags(first) & !(CWR | PSH_FIN);
        let flags = self.flags(frame);
        let allowed_extra = match (index == 0, last) {
            (true, true) => CWR | PSH_FIN,
            (true, false) => CWR,
            (false, true) => PSH_FIN,
            (false, false) => 0,
        };
        flags & !allowed_extra == base
    }

    /// Makes the merged frame's headers right: lengths, the IPv4 checksum,
    /// the last segment's PSH and FIN, and the TCP checksum field holding the
    /// pseudo-header sum (a partial checksum, as a TSO sender leaves it).
    fn finish(&self, frame: &mut [u8], last_flags: u16) {
        let ips = gso::ip_pair(
            frame,
            &gso::Offsets {
                l3: self.l3,
                l4: self.l4,
                ipv4: self.ipv4,
            },
        );
        if self.ipv4 {
            let len = (frame.len() - self.l3) as u16;
            let mut ip = Ipv4Packet::new_unchecked(&mut frame[self.l3..]);
            ip.set_total_len(len);
            ip.fill_checksum();
        } else {
            let len = (frame.len() - self.l4) as u16;
            Ipv6Packet::new_unchecked(&mut frame[self.l3..]).set_payload_len(len);
        }
        let l4_len = frame.len() - self.l4;
        let mut tcp = TcpSegment::new_unchecked(&mut frame[self.l4..]);
        let header_len = tcp.header_len();
        let flags = tcp.flags().0 | last_flags;
        tcp.set_header_len_and_flags(header_len, TcpFlags(flags));
        let pseudo = checksum::fold(ips.pseudo_header(IpProtocol::Tcp, l4_len));
        frame[self.l4 + 16..self.l4 + 18].copy_from_slice(&pseudo.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FrameBuilder;
    use crate::wire::{TcpRepr, VxlanRepr};

    /// The datagram a sender makes of a TSO super-frame: its segments, each
    /// behind a VXLAN header, back to back.
    fn datagram(payload_len: usize, mss: u16, flags: u16) -> (Vec<u8>, usize, Vec<u8>) {
        let payload: Vec<u8> = (0..payload_len).map(|i| (i * 7) as u8).collect();
        let mut frame = FrameBuilder::tcp4("10.0.0.1:1000", "10.0.0.2:80", &payload)
            .tcp_flags(flags)
            .build();
        let pseudo = {
            let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
            let ips = crate::wire::IpPair::V4(ip.src_addr(), ip.dst_addr());
            checksum::fold(ips.pseudo_header(IpProtocol::Tcp, frame.len() - 34))
        };
        frame[50..52].copy_from_slice(&pseudo.to_be_bytes());
        let vnet = VnetRepr {
            flags: vnet_hdr::FLAG_NEEDS_CSUM,
            gso_type: GsoType::TcpV4,
            hdr_len: 54,
            gso_size: mss,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut segments = gso::Segments::default();
        gso::segment_with_gap(&frame, &vnet, &mut segments, vxlan::HEADER_LEN).unwrap();
        let size = segments.iter().next().unwrap().len() + vxlan::HEADER_LEN;
        let (buffer, ranges) = segments.buffer_mut();
        for r in ranges {
            VxlanRepr { vni: 42 }.emit(&mut buffer[r.start - vxlan::HEADER_LEN..r.start]);
        }
        (buffer.to_vec(), size, payload)
    }

    #[test]
    fn an_oversize_frame_from_a_tunnel_becomes_a_super_frame() {
        let payload: Vec<u8> = (0..2796).map(|i| (i * 3) as u8).collect();
        let mut frame = FrameBuilder::tcp4("10.0.0.1:1000", "10.0.0.2:80", &payload)
            .tcp_flags(TcpFlags::ACK | TcpFlags::PSH)
            .build();
        let vnet = oversize_tcp(&mut frame, 1450).expect("larger than the MTU");
        assert_eq!(vnet.gso_type, GsoType::TcpV4);
        assert_eq!(vnet.hdr_len, 54);
        assert_eq!(vnet.gso_size, 1450 - 40, "the largest MSS that fits");
        assert_eq!((vnet.csum_start, vnet.csum_offset), (34, 16));
        // Segmented as the host's kernel would, every segment is whole.
        let mut segments = gso::Segments::default();
        gso::segment_with_gap(&frame, &vnet, &mut segments, 0).unwrap();
        let mut rebuilt = Vec::new();
        for segment in segments.iter() {
            let ip = Ipv4Packet::new_checked(&segment[14..]).unwrap();
            assert!(ip.verify_checksum());
            assert!(ip.total_len() <= 1450);
            let ips = crate::wire::IpPair::V4(ip.src_addr(), ip.dst_addr());
            let tcp = ip.payload();
            let sum = checksum::accumulate(ips.pseudo_header(IpProtocol::Tcp, tcp.len()), tcp);
            assert_eq!(checksum::fold(sum), 0xffff, "TCP checksum valid");
            rebuilt.extend_from_slice(TcpSegment::new_checked(tcp).unwrap().payload());
        }
        assert_eq!(rebuilt, payload);

        let mut small =
            FrameBuilder::tcp4("10.0.0.1:1000", "10.0.0.2:80", &payload[..1000]).build();
        assert_eq!(oversize_tcp(&mut small, 1450), None, "fits: left alone");
        let mut udp = FrameBuilder::udp4("10.0.0.1:1000", "10.0.0.2:80", &payload).build();
        assert_eq!(oversize_tcp(&mut udp, 1450), None, "not TCP");
    }

    #[test]
    fn mutated_datagrams_never_panic() {
        let (data, size, _) = datagram(6_000, 1000, TcpFlags::ACK);
        let count = data.len().div_ceil(size);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for round in 0..2_000 {
            let mut mutated = data.clone();
            for _ in 0..1 + round % 4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state as usize) % mutated.len();
                mutated[at] ^= (state >> 32) as u8 | 1;
            }
            if round % 7 == 0 {
                mutated.truncate(mutated.len() - (state as usize % 200));
            }
            // The fuzz target's first byte picks the packet count.
            let mut input = vec![(count - 2) as u8];
            input.extend_from_slice(&mutated);
            crate::fuzzing::vxlan_gro(&input);
            let _ = merge(&mut mutated, size);
        }
    }

    #[test]
    fn segments_of_one_stream_become_a_super_frame_again() {
        let flags = TcpFlags::ACK | TcpFlags::PSH;
        let (mut data, size, payload) = datagram(10_000, 1400, flags);
        let merged = merge(&mut data, size).expect("mergeable");
        assert_eq!(merged.vni, 42);
        assert_eq!(merged.len, 54 + 10_000);
        let frame = &data[8..8 + merged.len];
        let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.total_len(), 40 + 10_000);
        assert_eq!(ip.ident(), 0x1234, "the first segment's identification");
        let tcp = TcpSegment::new_checked(ip.payload()).unwrap();
        assert_eq!(tcp.payload(), &payload[..]);
        assert_eq!(tcp.seq_number(), 1);
        assert!(tcp.flags().contains(flags), "PSH of the last segment kept");
        assert_eq!(
            merged.vnet,
            VnetRepr {
                flags: vnet_hdr::FLAG_NEEDS_CSUM,
                gso_type: GsoType::TcpV4,
                hdr_len: 54,
                gso_size: 1400,
                csum_start: 34,
                csum_offset: 16,
            }
        );
        // Completing the partial checksum gives a valid segment.
        let mut whole = frame.to_vec();
        gso::complete_checksum(&mut whole, &merged.vnet).unwrap();
        let ip = Ipv4Packet::new_checked(&whole[14..]).unwrap();
        let ips = crate::wire::IpPair::V4(ip.src_addr(), ip.dst_addr());
        assert!(TcpRepr::parse(&TcpSegment::new_checked(ip.payload()).unwrap(), ips).is_ok());
    }

    #[test]
    fn anything_else_is_left_alone() {
        let (data, size, _) = datagram(5_000, 1000, TcpFlags::ACK);
        let try_merge = |mutate: &dyn Fn(&mut Vec<u8>)| {
            let mut copy = data.clone();
            mutate(&mut copy);
            let before = copy.clone();
            let merged = merge(&mut copy, size);
            (merged, copy == before)
        };
        // Intact: merges.
        assert!(try_merge(&|_| {}).0.is_some());
        let second = size; // offset of the second VXLAN packet
        type Mutation<'a> = &'a dyn Fn(&mut Vec<u8>);
        let cases: [(&str, Mutation); 6] = [
            ("another VNI", &|d| d[second + 6] ^= 1),
            ("a gap in the sequence", &|d| d[second + 8 + 38 + 3] ^= 0x10),
            ("another source port", &|d| d[second + 8 + 34] ^= 1),
            ("a SYN", &|d| d[second + 8 + 47] |= 0x02),
            ("a damaged payload", &|d| d[second + 8 + 60] ^= 0xff),
            ("not VXLAN", &|d| d[second] = 0),
        ];
        for (what, mutate) in cases {
            let (merged, unchanged) = try_merge(mutate);
            assert!(merged.is_none(), "{what} merged");
            assert!(unchanged, "{what}: the datagram must stay as it was");
        }
        // One packet alone is not a merge.
        let mut single = data[..size].to_vec();
        assert!(merge(&mut single, size).is_none());
    }

    #[test]
    fn a_datagram_splits_into_its_packets() {
        let sizes: Vec<usize> = packets(2500, 1000).map(|r| r.len()).collect();
        assert_eq!(sizes, vec![1000, 1000, 500]);
        assert_eq!(packets(0, 1000).count(), 0);
    }
}
