//! Software segmentation and checksum completion, for frames that carry
//! offload metadata (a TSO/USO super-frame, or a partial checksum) but must
//! leave through a port that cannot take it. Segments are written into one
//! reused buffer.

use crate::wire::{
    EtherType, EthernetFrame, GsoType, IpPair, IpProtocol, Ipv4Packet, Ipv6Packet, TcpFlags,
    TcpSegment, UdpDatagram, VlanHeader, VnetRepr, checksum, ipv6, udp,
};
use std::ops::Range;

/// Why a frame could not be segmented; it is dropped and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GsoError {
    /// The headers do not parse, or disagree with the offload metadata.
    #[error("malformed offload frame: {0}")]
    Malformed(&'static str),
    /// A segmentation type this module does not implement.
    #[error("unsupported segmentation type {0:?}")]
    Unsupported(GsoType),
}

/// Reused output space for segments, one after another in one buffer, each
/// optionally preceded by a gap of room for an encapsulation header.
#[derive(Debug, Default)]
pub struct Segments {
    data: Vec<u8>,
    ranges: Vec<Range<usize>>,
    gap: usize,
}

impl Segments {
    /// Empties the buffer (keeps its memory).
    pub fn clear(&mut self) {
        self.data.clear();
        self.ranges.clear();
    }

    /// Number of frames held.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether no frame is held.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The frames held.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.ranges.iter().map(|r| &self.data[r.clone()])
    }

    /// The whole buffer (gaps included) and where each frame lies in it.
    pub fn buffer_mut(&mut self) -> (&mut [u8], &[Range<usize>]) {
        (&mut self.data, &self.ranges)
    }

    fn push(&mut self, parts: &[&[u8]]) -> Range<usize> {
        self.data.resize(self.data.len() + self.gap, 0);
        let start = self.data.len();
        for part in parts {
            self.data.extend_from_slice(part);
        }
        let range = start..self.data.len();
        self.ranges.push(range.clone());
        range
    }
}

/// Where the layers of a frame start.
pub(crate) struct Offsets {
    pub(crate) l3: usize,
    pub(crate) l4: usize,
    pub(crate) ipv4: bool,
}

/// The offsets of an Ethernet (maybe tagged) IPv4 or IPv6 frame.
pub(crate) fn offsets(frame: &[u8]) -> Result<Offsets, GsoError> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| GsoError::Malformed("ethernet"))?;
    let (ethertype, l3) = match eth.ethertype() {
        EtherType::Vlan => {
            let tag =
                VlanHeader::new_checked(eth.payload()).map_err(|_| GsoError::Malformed("vlan"))?;
            (tag.ethertype(), 18)
        }
        other => (other, 14),
    };
    let rest = &frame[l3..];
    match ethertype {
        EtherType::Ipv4 => {
            let ip = Ipv4Packet::new_checked(rest).map_err(|_| GsoError::Malformed("ipv4"))?;
            Ok(Offsets {
                l3,
                l4: l3 + ip.header_len(),
                ipv4: true,
            })
        }
        EtherType::Ipv6 => {
            Ipv6Packet::new_checked(rest).map_err(|_| GsoError::Malformed("ipv6"))?;
            Ok(Offsets {
                l3,
                l4: l3 + ipv6::HEADER_LEN,
                ipv4: false,
            })
        }
        _ => Err(GsoError::Malformed("not IP")),
    }
}

pub(crate) fn ip_pair(frame: &[u8], o: &Offsets) -> IpPair {
    if o.ipv4 {
        let ip = Ipv4Packet::new_unchecked(&frame[o.l3..]);
        IpPair::V4(ip.src_addr(), ip.dst_addr())
    } else {
        let ip = Ipv6Packet::new_unchecked(&frame[o.l3..]);
        IpPair::V6(ip.src_addr(), ip.dst_addr())
    }
}

/// Rewrites the IP length fields of a segment whose IP packet spans `ip_len`
/// bytes from `o.l3`, with `ident` for IPv4.
fn fix_ip_header(seg: &mut [u8], o: &Offsets, ip_len: usize, ident: Option<u16>) {
    if o.ipv4 {
        let mut ip = Ipv4Packet::new_unchecked(&mut seg[o.l3..]);
        ip.set_total_len(ip_len as u16);
        if let Some(ident) = ident {
            ip.set_ident(ident);
        }
        ip.fill_checksum();
    } else {
        let mut ip = Ipv6Packet::new_unchecked(&mut seg[o.l3..]);
        ip.set_payload_len((ip_len - ipv6::HEADER_LEN) as u16);
    }
}

/// Appends segment `index`: the headers and `chunk`, with the IP length
/// (and, for IPv4, identification and checksum) made right for it.
fn push_segment<'a>(
    out: &'a mut Segments,
    headers: &[u8],
    chunk: &[u8],
    o: &Offsets,
    ident: Option<u16>,
    index: usize,
) -> &'a mut [u8] {
    let range = out.push(&[headers, chunk]);
    let seg = &mut out.data[range];
    let ip_len = seg.len() - o.l3;
    fix_ip_header(
        seg,
        o,
        ip_len,
        ident.map(|id| id.wrapping_add(index as u16)),
    );
    seg
}

/// Writes into `out` the frames that carry `frame` on a port without
/// offloads: the segments of a super-frame, or the frame itself with its
/// checksum completed. A frame with no offload metadata is copied as is.
pub fn segment(frame: &[u8], vnet: &VnetRepr, out: &mut Segments) -> Result<(), GsoError> {
    segment_with_gap(frame, vnet, out, 0)
}

/// As `segment`, with `gap` bytes of room before each frame (for a tunnel
/// header, so that the encapsulated segments lie back to back).
pub fn segment_with_gap(
    frame: &[u8],
    vnet: &VnetRepr,
    out: &mut Segments,
    gap: usize,
) -> Result<(), GsoError> {
    out.clear();
    out.gap = gap;
    match vnet.gso_type {
        GsoType::None => {
            let range = out.push(&[frame]);
            if vnet.needs_checksum() {
                complete_checksum(&mut out.data[range], vnet)?;
            }
            Ok(())
        }
        GsoType::TcpV4 | GsoType::TcpV6 => segment_tcp(frame, vnet, out),
        GsoType::UdpL4 => segment_udp(frame, vnet, out),
        other => Err(GsoError::Unsupported(other)),
    }
}

/// Completes a partial checksum in place: the field at `csum_start +
/// csum_offset` holds the pseudo-header sum; the result covers everything
/// from `csum_start` to the end of the frame.
pub fn complete_checksum(frame: &mut [u8], vnet: &VnetRepr) -> Result<(), GsoError> {
    let start = usize::from(vnet.csum_start);
    let at = start + usize::from(vnet.csum_offset);
    if at + 2 > frame.len() || start > frame.len() {
        return Err(GsoError::Malformed("checksum offsets past the frame"));
    }
    let sum = !checksum::fold(checksum::accumulate(0, &frame[start..]));
    frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

/// What `finish_inner_checksum` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InnerChecksum {
    /// Not TCP or UDP, or its checksum is right (or absent, for UDP over IPv4).
    Valid,
    /// The field held only the pseudo-header sum (a sender that left the
    /// checksum to offload); it now holds the full checksum.
    Completed,
    /// Neither: the frame was damaged.
    Corrupt,
}

/// Makes sure a frame that came out of a tunnel carries a finished TCP/UDP
/// checksum. A Linux VTEP whose inner stack offloads checksums sends the
/// pseudo-header sum alone when nothing on the way (veths, bridges) computes
/// it, and a UDP socket cannot tell; delivered as is, such a frame would be
/// dropped by the receiving host.
pub fn finish_inner_checksum(frame: &mut [u8]) -> InnerChecksum {
    let Ok(o) = offsets(frame) else {
        return InnerChecksum::Valid;
    };
    let (field_at, protocol) = {
        let protocol = if o.ipv4 {
            Ipv4Packet::new_unchecked(&frame[o.l3..]).protocol()
        } else {
            Ipv6Packet::new_unchecked(&frame[o.l3..]).next_header()
        };
        match protocol {
            IpProtocol::Tcp => (o.l4 + 16, protocol),
            IpProtocol::Udp => (o.l4 + 6, protocol),
            _ => return InnerChecksum::Valid,
        }
    };
    let l4_end = if o.ipv4 {
        o.l3 + Ipv4Packet::new_unchecked(&frame[o.l3..]).total_len()
    } else {
        o.l4 + Ipv6Packet::new_unchecked(&frame[o.l3..]).payload_len()
    };
    if field_at + 2 > l4_end || l4_end > frame.len() {
        return InnerChecksum::Corrupt;
    }
    let field = u16::from_be_bytes([frame[field_at], frame[field_at + 1]]);
    if protocol == IpProtocol::Udp && field == 0 && o.ipv4 {
        return InnerChecksum::Valid;
    }
    let ips = ip_pair(frame, &o);
    let pseudo = ips.pseudo_header(protocol, l4_end - o.l4);
    if checksum::fold(checksum::accumulate(pseudo, &frame[o.l4..l4_end])) == 0xffff {
        return InnerChecksum::Valid;
    }
    if field != checksum::fold(pseudo) {
        return InnerChecksum::Corrupt;
    }
    let sum = !checksum::fold(checksum::accumulate(0, &frame[o.l4..l4_end]));
    let sum = if protocol == IpProtocol::Udp && sum == 0 {
        0xffff
    } else {
        sum
    };
    frame[field_at..field_at + 2].copy_from_slice(&sum.to_be_bytes());
    InnerChecksum::Completed
}

fn segment_tcp(frame: &[u8], vnet: &VnetRepr, out: &mut Segments) -> Result<(), GsoError> {
    let o = offsets(frame)?;
    let tcp = TcpSegment::new_checked(&frame[o.l4..]).map_err(|_| GsoError::Malformed("tcp"))?;
    let headers_end = o.l4 + tcp.header_len();
    let mss = usize::from(vnet.gso_size);
    if mss == 0 {
        return Err(GsoError::Malformed("zero segment size"));
    }
    let ips = ip_pair(frame, &o);
    let ident = o
        .ipv4
        .then(|| Ipv4Packet::new_unchecked(&frame[o.l3..]).ident());
    let seq = tcp.seq_number();
    let flags = tcp.flags();
    let payload = &frame[headers_end..];
    let count = payload.len().div_ceil(mss).max(1);
    for (i, chunk) in payload
        .chunks(mss)
        .chain(payload.is_empty().then_some(&[][..]))
        .enumerate()
    {
        let seg = push_segment(out, &frame[..headers_end], chunk, &o, ident, i);
        let mut tcp = TcpSegment::new_unchecked(&mut seg[o.l4..]);
        tcp.set_seq_number(seq.wrapping_add((i * mss) as u32));
        let mut bits = flags.0;
        if i + 1 != count {
            bits &= !(TcpFlags::FIN | TcpFlags::PSH);
        }
        if i != 0 {
            bits &= !0x080; // CWR only on the first segment (RFC 3168 §6.1.2).
        }
        let header_len = tcp.header_len();
        tcp.set_header_len_and_flags(header_len, TcpFlags(bits));
        tcp.fill_checksum(ips);
    }
    Ok(())
}

fn segment_udp(frame: &[u8], vnet: &VnetRepr, out: &mut Segments) -> Result<(), GsoError> {
    let o = offsets(frame)?;
    let headers_end = o.l4 + udp::HEADER_LEN;
    if frame.len() < headers_end {
        return Err(GsoError::Malformed("udp"));
    }
    let size = usize::from(vnet.gso_size);
    if size == 0 {
        return Err(GsoError::Malformed("zero segment size"));
    }
    let ips = ip_pair(frame, &o);
    let ident = o
        .ipv4
        .then(|| Ipv4Packet::new_unchecked(&frame[o.l3..]).ident());
    for (i, chunk) in frame[headers_end..].chunks(size).enumerate() {
        let seg = push_segment(out, &frame[..headers_end], chunk, &o, ident, i);
        let mut udp = UdpDatagram::new_unchecked(&mut seg[o.l4..]);
        udp.set_len((udp::HEADER_LEN + chunk.len()) as u16);
        udp.fill_checksum(ips);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FrameBuilder;
    use crate::wire::{TcpRepr, UdpRepr, vnet_hdr};

    /// A super-frame as the kernel hands it over: lengths of the whole, TCP
    /// checksum field holding the pseudo-header sum.
    fn tcp_super_frame(payload_len: usize, v6: bool) -> (Vec<u8>, VnetRepr) {
        let payload: Vec<u8> = (0..payload_len).map(|i| i as u8).collect();
        let mut frame = if v6 {
            FrameBuilder::tcp6("[fd00::1]:1000", "[fd00::2]:80", &payload)
        } else {
            FrameBuilder::tcp4("10.0.0.1:1000", "10.0.0.2:80", &payload)
        }
        .tcp_flags(TcpFlags::ACK | TcpFlags::PSH | TcpFlags::FIN)
        .build();
        let l4 = if v6 { 54 } else { 34 };
        let ips = ip_pair(&frame, &offsets(&frame).unwrap());
        let pseudo = checksum::fold(ips.pseudo_header(IpProtocol::Tcp, frame.len() - l4));
        frame[l4 + 16..l4 + 18].copy_from_slice(&pseudo.to_be_bytes());
        let vnet = VnetRepr {
            flags: vnet_hdr::FLAG_NEEDS_CSUM,
            gso_type: if v6 { GsoType::TcpV6 } else { GsoType::TcpV4 },
            hdr_len: (l4 + 20) as u16,
            gso_size: 1000,
            csum_start: l4 as u16,
            csum_offset: 16,
        };
        (frame, vnet)
    }

    fn check_tcp_segments(out: &Segments, payload_len: usize, v6: bool) {
        let mut reassembled = Vec::new();
        let segments: Vec<&[u8]> = out.iter().collect();
        assert_eq!(segments.len(), payload_len.div_ceil(1000));
        for (i, seg) in segments.iter().enumerate() {
            let o = offsets(seg).unwrap();
            let ips = ip_pair(seg, &o);
            if v6 {
                assert_eq!(
                    Ipv6Packet::new_checked(&seg[o.l3..]).unwrap().payload_len(),
                    seg.len() - o.l4
                );
            } else {
                let ip = Ipv4Packet::new_checked(&seg[o.l3..]).unwrap();
                assert!(ip.verify_checksum());
                assert_eq!(ip.total_len(), seg.len() - o.l3);
                assert_eq!(ip.ident(), 0x1234u16.wrapping_add(i as u16));
            }
            let tcp = TcpSegment::new_checked(&seg[o.l4..]).unwrap();
            let repr = TcpRepr::parse(&tcp, ips).expect("valid checksum");
            assert_eq!(repr.seq_number, 1 + (i * 1000) as u32);
            let last = i + 1 == segments.len();
            assert_eq!(repr.flags.contains(TcpFlags::FIN), last);
            assert_eq!(repr.flags.contains(TcpFlags::PSH), last);
            assert!(repr.flags.contains(TcpFlags::ACK));
            assert!(tcp.payload().len() <= 1000);
            reassembled.extend_from_slice(tcp.payload());
        }
        assert_eq!(
            reassembled,
            (0..payload_len).map(|i| i as u8).collect::<Vec<_>>()
        );
    }

    #[test]
    fn segments_tcp_v4_and_v6() {
        let mut out = Segments::default();
        for v6 in [false, true] {
            for len in [1, 999, 1000, 1001, 4321] {
                let (frame, vnet) = tcp_super_frame(len, v6);
                segment(&frame, &vnet, &mut out).unwrap();
                check_tcp_segments(&out, len, v6);
            }
        }
    }

    #[test]
    fn completes_partial_checksum_without_segmenting() {
        let (frame, mut vnet) = tcp_super_frame(500, false);
        vnet.gso_type = GsoType::None;
        let mut out = Segments::default();
        segment(&frame, &vnet, &mut out).unwrap();
        let seg: Vec<&[u8]> = out.iter().collect();
        assert_eq!(seg.len(), 1);
        let ip = Ipv4Packet::new_checked(&seg[0][14..]).unwrap();
        let ips = IpPair::V4(ip.src_addr(), ip.dst_addr());
        assert!(TcpRepr::parse(&TcpSegment::new_checked(ip.payload()).unwrap(), ips).is_ok());
    }

    #[test]
    fn segments_udp_l4() {
        let payload: Vec<u8> = (0..2500).map(|i| (i % 251) as u8).collect();
        let frame = FrameBuilder::udp4("10.0.0.1:1000", "10.0.0.2:53", &payload).build();
        let vnet = VnetRepr {
            gso_type: GsoType::UdpL4,
            gso_size: 1000,
            ..VnetRepr::PLAIN
        };
        let mut out = Segments::default();
        segment(&frame, &vnet, &mut out).unwrap();
        let mut reassembled = Vec::new();
        for seg in out.iter() {
            let ip = Ipv4Packet::new_checked(&seg[14..]).unwrap();
            assert!(ip.verify_checksum());
            let ips = IpPair::V4(ip.src_addr(), ip.dst_addr());
            let udp = UdpDatagram::new_checked(ip.payload()).unwrap();
            assert_eq!(UdpRepr::parse(&udp, ips).unwrap().dst_port, 53);
            reassembled.extend_from_slice(udp.payload());
        }
        assert_eq!(out.len(), 3);
        assert_eq!(reassembled, payload);
    }

    #[test]
    fn inner_checksums_are_checked_and_partial_ones_finished() {
        // A frame with a complete checksum is left alone.
        let good = FrameBuilder::tcp4("10.0.0.1:1000", "10.0.0.2:80", b"data").build();
        let mut frame = good.clone();
        assert_eq!(finish_inner_checksum(&mut frame), InnerChecksum::Valid);
        assert_eq!(frame, good);
        // The same frame as an offloading sender leaves it: pseudo-header sum only.
        let (mut partial, _) = tcp_super_frame(4, false);
        assert_eq!(
            finish_inner_checksum(&mut partial),
            InnerChecksum::Completed
        );
        let ip = Ipv4Packet::new_checked(&partial[14..]).unwrap();
        let ips = IpPair::V4(ip.src_addr(), ip.dst_addr());
        assert!(TcpRepr::parse(&TcpSegment::new_checked(ip.payload()).unwrap(), ips).is_ok());
        // Damage is not repaired.
        let mut damaged = good.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 0xff;
        assert_eq!(finish_inner_checksum(&mut damaged), InnerChecksum::Corrupt);
        // UDP: no checksum over IPv4 is fine; IPv6 partial is finished too.
        let mut no_sum = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"x").build();
        no_sum[40] = 0;
        no_sum[41] = 0;
        assert_eq!(finish_inner_checksum(&mut no_sum), InnerChecksum::Valid);
        let (mut v6, _) = tcp_super_frame(100, true);
        assert_eq!(finish_inner_checksum(&mut v6), InnerChecksum::Completed);
        assert_eq!(
            finish_inner_checksum(&mut [0u8; 20]),
            InnerChecksum::Valid,
            "not IP: nothing to check"
        );
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        let (frame, vnet) = tcp_super_frame(100, false);
        let mut out = Segments::default();
        assert!(segment(&frame[..20], &vnet, &mut out).is_err());
        let zero = VnetRepr {
            gso_size: 0,
            ..vnet
        };
        assert!(segment(&frame, &zero, &mut out).is_err());
        let ufo = VnetRepr {
            gso_type: GsoType::Udp,
            ..vnet
        };
        assert_eq!(
            segment(&frame, &ufo, &mut out),
            Err(GsoError::Unsupported(GsoType::Udp))
        );
        let bad_offsets = VnetRepr {
            gso_type: GsoType::None,
            csum_start: 5000,
            ..vnet
        };
        assert!(segment(&frame, &bad_offsets, &mut out).is_err());
    }
}
