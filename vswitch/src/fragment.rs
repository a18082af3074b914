//! IPv4 fragmentation by a router (RFC 791 §3.2, RFC 1812 §5.2.6): one
//! Ethernet frame whose datagram exceeds the next hop's MTU in, one Ethernet
//! frame per fragment out.
//!
//! A frame whose L4 checksum is still partial (virtio-net `NEEDS_CSUM`) must
//! first go through [`crate::gso::complete_checksum`]: once the data is split
//! across fragments nobody downstream can finish that checksum.

use crate::wire::{EtherType, EthernetFrame, Ipv4Packet, VlanHeader, ethernet, ipv4, vlan};

/// IPv4 option kinds and flags (RFC 791 §3.1, "Options").
mod option {
    /// End of Option List: the rest of the header is padding.
    pub(super) const END: u8 = 0;
    /// No Operation: a single byte, never copied.
    pub(super) const NOP: u8 = 1;
    /// The copied flag: the option goes into every fragment.
    pub(super) const COPIED: u8 = 0x80;
}

/// Fragment data, except in the last fragment, is a multiple of this many
/// bytes: the fragment offset field counts 8-byte units (RFC 791 §3.1).
const FRAGMENT_UNIT: usize = 8;

/// Largest IPv4 datagram (the total length field is 16 bits).
const MAX_DATAGRAM: usize = u16::MAX as usize;

/// Why a frame was not fragmented. Small and `Copy`: the caller counts it and,
/// for [`FragmentError::DontFragment`], answers with an ICMP "fragmentation
/// needed" error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    /// The frame does not carry IPv4 (after at most one 802.1Q/802.1ad tag).
    #[error("not an IPv4 frame")]
    NotIpv4,
    /// The IPv4 header or its options do not parse, its checksum is wrong, or
    /// its fragment would end past 65535 bytes.
    #[error("malformed IPv4 datagram: {0}")]
    Malformed(&'static str),
    /// The datagram is too long for the MTU and has Don't Fragment set.
    #[error("the datagram is longer than the MTU and has Don't Fragment set")]
    DontFragment,
    /// The datagram is no longer than the MTU: send it as it is.
    #[error("the {len}-byte datagram already fits the MTU of {mtu} bytes")]
    FitsMtu {
        /// The datagram's total length in bytes.
        len: u16,
        /// The MTU asked for, in bytes.
        mtu: u16,
    },
    /// The MTU cannot hold the datagram's header and 8 bytes of data.
    #[error("an MTU of {mtu} bytes cannot carry the header and 8 data bytes ({need} bytes)")]
    MtuTooSmall {
        /// The MTU asked for, in bytes.
        mtu: u16,
        /// The smallest MTU that would do, in bytes.
        need: u16,
    },
}

/// Where the network header of an Ethernet frame starts, past at most one
/// 802.1Q or 802.1ad tag, and the EtherType that names it. `None` for a frame
/// too short to hold its Ethernet header and tag.
pub(crate) fn network_header(frame: &[u8]) -> Option<(EtherType, usize)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    match eth.ethertype() {
        EtherType::Vlan | EtherType::QinQ => {
            let tag = VlanHeader::new_checked(eth.payload()).ok()?;
            Some((tag.ethertype(), ethernet::HEADER_LEN + vlan::HEADER_LEN))
        }
        other => Some((other, ethernet::HEADER_LEN)),
    }
}

/// Splits the IPv4 datagram in `frame` into fragments of at most `mtu` bytes
/// (IP header included) and pushes one Ethernet frame per fragment onto `out`,
/// each with the original Ethernet header and tag. Returns how many frames
/// were pushed; on error nothing is pushed.
///
/// The first fragment keeps every option; later ones carry only the options
/// with the copied flag, padded to a 4-byte boundary (RFC 791 §3.2). A
/// datagram that is itself a fragment keeps its offset base, and its last
/// piece keeps its More Fragments flag. Identification, TTL and the other
/// header fields are copied as they are; total length and checksum are
/// recomputed. Ethernet padding after the datagram is dropped.
///
/// # Errors
///
/// [`FragmentError`]: not IPv4, a malformed header (or a wrong header
/// checksum, which recomputing would hide), a datagram that already fits,
/// Don't Fragment set, or an MTU below the header length plus 8.
pub fn fragment(frame: &[u8], mtu: u16, out: &mut Vec<Vec<u8>>) -> Result<usize, FragmentError> {
    let (ethertype, l3) = network_header(frame).ok_or(FragmentError::NotIpv4)?;
    if ethertype != EtherType::Ipv4 {
        return Err(FragmentError::NotIpv4);
    }
    let (link, bytes) = frame.split_at_checked(l3).ok_or(FragmentError::NotIpv4)?;
    let ip = Ipv4Packet::new_checked(bytes).map_err(|_| FragmentError::Malformed("header"))?;
    // RFC 1812 §5.2.2: a router verifies the checksum; fragments get fresh
    // checksums, so a damaged header would otherwise leave looking sound.
    if !ip.verify_checksum() {
        return Err(FragmentError::Malformed("header checksum"));
    }
    let len = u16::try_from(ip.total_len())
        .map_err(|_| FragmentError::Malformed("longer than 65535 bytes"))?;
    if len <= mtu {
        return Err(FragmentError::FitsMtu { len, mtu });
    }
    if ip.dont_fragment() {
        return Err(FragmentError::DontFragment);
    }
    let header_len = ip.header_len();
    let need = header_len
        .checked_add(FRAGMENT_UNIT)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or(FragmentError::Malformed("header length"))?;
    if mtu < need {
        return Err(FragmentError::MtuTooSmall { mtu, need });
    }
    let header = bytes
        .get(..header_len)
        .ok_or(FragmentError::Malformed("header"))?;
    let payload = ip.payload();
    let base = usize::from(ip.fragment_offset());
    if base
        .checked_add(payload.len())
        .is_none_or(|end| end > MAX_DATAGRAM)
    {
        return Err(FragmentError::Malformed("fragment ends past 65535 bytes"));
    }
    let later = later_header(header)?;
    let pieces = Pieces {
        link,
        first: header,
        later: &later,
        payload,
        base,
        more_after_last: ip.more_fragments(),
        mtu: usize::from(mtu),
    };
    let before = out.len();
    match pieces.push_all(out) {
        Ok(()) => Ok(out.len() - before),
        Err(e) => {
            out.truncate(before);
            Err(e)
        }
    }
}

/// The header of every fragment but the first: the fixed header followed by
/// the options whose copied flag is set, padded with End of Option List to a
/// multiple of 4 bytes, with the header length field set to match (RFC 791
/// §3.1, "the copy flag"; §3.2, fragmentation procedure).
fn later_header(header: &[u8]) -> Result<Vec<u8>, FragmentError> {
    let (fixed, options) = header
        .split_at_checked(ipv4::MIN_HEADER_LEN)
        .ok_or(FragmentError::Malformed("header"))?;
    let mut later = Vec::with_capacity(header.len());
    later.extend_from_slice(fixed);
    let mut at = 0usize;
    while let Some(&kind) = options.get(at) {
        match kind {
            option::END => break,
            option::NOP => at += 1,
            _ => {
                let len = options
                    .get(at + 1)
                    .map(|&l| usize::from(l))
                    .ok_or(FragmentError::Malformed("option without a length"))?;
                if len < 2 {
                    return Err(FragmentError::Malformed("option length below 2"));
                }
                let end = at + len;
                let bytes = options
                    .get(at..end)
                    .ok_or(FragmentError::Malformed("option runs past the header"))?;
                if kind & option::COPIED != 0 {
                    later.extend_from_slice(bytes);
                }
                at = end;
            }
        }
    }
    // The copied options are a subset of the original's, so this stays ≤ 60.
    later.resize(later.len().next_multiple_of(4), option::END);
    let header_len = later.len();
    Ipv4Packet::new_unchecked(&mut later[..]).set_version_and_header_len(header_len);
    Ok(later)
}

/// What one datagram is cut into.
struct Pieces<'a> {
    /// Ethernet header and tag, copied in front of each fragment.
    link: &'a [u8],
    /// Header of the first fragment (the original, all options).
    first: &'a [u8],
    /// Header of the others (copied options only).
    later: &'a [u8],
    /// The data to split.
    payload: &'a [u8],
    /// Offset of `payload` in the original datagram, in bytes.
    base: usize,
    /// The More Fragments flag of the datagram being split, kept on its last piece.
    more_after_last: bool,
    /// MTU in bytes; at least `first.len() + 8` (checked by the caller).
    mtu: usize,
}

impl Pieces<'_> {
    fn push_all(&self, out: &mut Vec<Vec<u8>>) -> Result<(), FragmentError> {
        let mut remaining = self.payload;
        let mut offset = self.base;
        let mut header = self.first;
        while !remaining.is_empty() {
            let room = self.mtu.saturating_sub(header.len());
            let last = remaining.len() <= room;
            // RFC 791 §3.2: all but the last fragment carry a multiple of 8
            // data bytes. `room` is at least 8, so every step makes progress.
            let take = if last {
                remaining.len()
            } else {
                room - room % FRAGMENT_UNIT
            };
            let (data, rest) = remaining.split_at(take.min(remaining.len()));
            self.push_one(out, header, data, offset, !last || self.more_after_last)?;
            remaining = rest;
            offset += data.len();
            header = self.later;
        }
        Ok(())
    }

    fn push_one(
        &self,
        out: &mut Vec<Vec<u8>>,
        header: &[u8],
        data: &[u8],
        offset: usize,
        more: bool,
    ) -> Result<(), FragmentError> {
        let total = u16::try_from(header.len() + data.len())
            .map_err(|_| FragmentError::Malformed("fragment longer than 65535 bytes"))?;
        let offset =
            u16::try_from(offset).map_err(|_| FragmentError::Malformed("fragment offset"))?;
        let mut piece = Vec::with_capacity(self.link.len() + usize::from(total));
        piece.extend_from_slice(self.link);
        piece.extend_from_slice(header);
        piece.extend_from_slice(data);
        let (_, ip_bytes) = piece.split_at_mut(self.link.len());
        let mut ip = Ipv4Packet::new_unchecked(ip_bytes);
        ip.set_total_len(total);
        // DF is clear, or the datagram would not be split.
        ip.set_flags_fragment(false, more, offset);
        ip.fill_checksum();
        out.push(piece);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gso::complete_checksum;
    use crate::testutil::FrameBuilder;
    use crate::wire::{IpPair, IpProtocol, UdpDatagram, UdpRepr, VnetRepr, checksum, vnet_hdr};
    use proptest::prelude::*;

    /// Record Route (RFC 791 §3.1): copied flag clear.
    const RECORD_ROUTE: [u8; 7] = [0x07, 7, 4, 0, 0, 0, 0];
    /// Loose Source and Record Route (RFC 791 §3.1): copied flag set.
    const LOOSE_SOURCE_ROUTE: [u8; 7] = [0x83, 7, 4, 10, 0, 1, 2];

    fn payload_bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// A UDP/IPv4 frame whose IP payload is `len` bytes, with `options`
    /// (padded to 4 bytes) in its header, DF clear, optionally tagged.
    fn datagram(len: usize, options: &[u8], tag: Option<EtherType>) -> Vec<u8> {
        let udp = payload_bytes(len.saturating_sub(8));
        let mut builder = FrameBuilder::udp4("10.0.0.1:1000", "10.0.1.2:80", &udp);
        if tag.is_some() {
            builder = builder.vlan(10, 3);
        }
        let mut frame = builder.build();
        if tag == Some(EtherType::QinQ) {
            frame[12..14].copy_from_slice(&0x88a8u16.to_be_bytes());
        }
        let l3 = network_header(&frame).unwrap().1;
        let mut opts = options.to_vec();
        opts.resize(opts.len().next_multiple_of(4), 0);
        let mut out = frame[..l3 + 20].to_vec();
        out.extend_from_slice(&opts);
        out.extend_from_slice(&frame[l3 + 20..]);
        let mut ip = Ipv4Packet::new_unchecked(&mut out[l3..]);
        ip.set_version_and_header_len(20 + opts.len());
        ip.set_total_len((20 + opts.len() + len.max(8)) as u16);
        ip.set_flags_fragment(false, false, 0);
        ip.fill_checksum();
        out
    }

    /// Makes the datagram in `frame` a fragment at `offset` bytes.
    fn make_fragment(frame: &mut [u8], more: bool, offset: u16) {
        let l3 = network_header(frame).unwrap().1;
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[l3..]);
        ip.set_flags_fragment(false, more, offset);
        ip.fill_checksum();
    }

    /// One fragment as read back.
    struct Piece {
        offset: usize,
        more: bool,
        header: Vec<u8>,
        data: Vec<u8>,
    }

    /// Checks what every fragment of `original` must satisfy and returns them.
    fn check_fragments(original: &[u8], mtu: u16, frags: &[Vec<u8>]) -> Vec<Piece> {
        let l3 = network_header(original).unwrap().1;
        let orig = Ipv4Packet::new_checked(&original[l3..]).unwrap();
        let mut pieces = Vec::new();
        for (i, frag) in frags.iter().enumerate() {
            assert_eq!(&frag[..l3], &original[..l3], "link header and tag kept");
            let ip = Ipv4Packet::new_checked(&frag[l3..]).unwrap();
            assert!(ip.verify_checksum(), "fragment {i} checksum");
            assert!(ip.total_len() <= usize::from(mtu), "fragment {i} fits");
            assert_eq!(ip.total_len(), frag.len() - l3, "no padding");
            assert!(!ip.dont_fragment());
            assert_eq!(ip.ident(), orig.ident());
            assert_eq!(ip.ttl(), orig.ttl());
            assert_eq!(ip.protocol(), orig.protocol());
            assert_eq!(ip.src_addr(), orig.src_addr());
            assert_eq!(ip.dst_addr(), orig.dst_addr());
            assert_eq!(ip.header_len() % 4, 0);
            let last = i + 1 == frags.len();
            if !last {
                assert!(ip.more_fragments(), "fragment {i} has MF");
                assert_eq!(ip.payload().len() % 8, 0, "fragment {i} data");
            }
            pieces.push(Piece {
                offset: usize::from(ip.fragment_offset()),
                more: ip.more_fragments(),
                header: frag[l3..l3 + ip.header_len()].to_vec(),
                data: ip.payload().to_vec(),
            });
        }
        pieces
    }

    /// The data of `pieces` in offset order, checking they leave no gap.
    fn reassemble(mut pieces: Vec<Piece>, base: usize) -> Vec<u8> {
        pieces.sort_by_key(|p| p.offset);
        let mut data = Vec::new();
        for p in &pieces {
            assert_eq!(p.offset, base + data.len(), "contiguous");
            assert_eq!(p.offset % 8, 0);
            data.extend_from_slice(&p.data);
        }
        data
    }

    fn ip_payload(frame: &[u8]) -> Vec<u8> {
        let l3 = network_header(frame).unwrap().1;
        Ipv4Packet::new_checked(&frame[l3..])
            .unwrap()
            .payload()
            .to_vec()
    }

    #[test]
    fn fragments_reassemble_to_the_original() {
        let frame = datagram(3000, &[], None);
        let mut out = Vec::new();
        assert_eq!(fragment(&frame, 1500, &mut out), Ok(3));
        let pieces = check_fragments(&frame, 1500, &out);
        assert_eq!(
            pieces.iter().map(|p| p.data.len()).collect::<Vec<_>>(),
            [1480, 1480, 40]
        );
        assert_eq!(
            pieces.iter().map(|p| p.offset).collect::<Vec<_>>(),
            [0, 1480, 2960]
        );
        assert_eq!(
            pieces.iter().map(|p| p.more).collect::<Vec<_>>(),
            [true, true, false]
        );
        assert_eq!(reassemble(pieces, 0), ip_payload(&frame));
    }

    #[test]
    fn pushes_after_what_out_already_holds() {
        let frame = datagram(100, &[], None);
        let mut out = vec![vec![1, 2, 3]];
        assert_eq!(fragment(&frame, 68, &mut out), Ok(3));
        assert_eq!(out.len(), 4);
        assert_eq!(out[0], [1, 2, 3]);
        // 48 + 48 + 4 bytes: 68 - 20 = 48 is already a multiple of 8.
        let pieces = check_fragments(&frame, 68, &out[1..]);
        assert_eq!(reassemble(pieces, 0), ip_payload(&frame));
    }

    #[test]
    fn unaligned_room_is_rounded_down_to_8() {
        let frame = datagram(1000, &[], None);
        let mut out = Vec::new();
        fragment(&frame, 577, &mut out).unwrap();
        let pieces = check_fragments(&frame, 577, &out);
        assert_eq!(pieces[0].data.len(), 552, "557 rounded down");
        assert_eq!(reassemble(pieces, 0), ip_payload(&frame));
    }

    #[test]
    fn tagged_frames_keep_their_tag() {
        for tag in [EtherType::Vlan, EtherType::QinQ] {
            let frame = datagram(2000, &[], Some(tag));
            assert_eq!(network_header(&frame), Some((EtherType::Ipv4, 18)));
            let mut out = Vec::new();
            assert_eq!(fragment(&frame, 1000, &mut out), Ok(3));
            for frag in &out {
                assert_eq!(&frag[..18], &frame[..18]);
                assert_eq!(
                    u16::from(EthernetFrame::new_checked(&frag[..]).unwrap().ethertype()),
                    u16::from(tag)
                );
            }
            let pieces = check_fragments(&frame, 1000, &out);
            assert_eq!(reassemble(pieces, 0), ip_payload(&frame));
        }
    }

    #[test]
    fn only_copied_options_go_past_the_first_fragment() {
        let mut options = vec![option::NOP];
        options.extend_from_slice(&RECORD_ROUTE);
        options.extend_from_slice(&LOOSE_SOURCE_ROUTE);
        let frame = datagram(1000, &options, None);
        let original_header = frame[14..14 + 36].to_vec();
        let mut out = Vec::new();
        fragment(&frame, 400, &mut out).unwrap();
        let pieces = check_fragments(&frame, 400, &out);
        // The first fragment: the original header, all options in place.
        assert_eq!(pieces[0].header.len(), 36);
        assert_eq!(pieces[0].header[20..], original_header[20..]);
        // The others: only the source route, padded to 8 bytes.
        for p in &pieces[1..] {
            assert_eq!(p.header.len(), 28);
            assert_eq!(&p.header[20..27], &LOOSE_SOURCE_ROUTE);
            assert_eq!(p.header[27], option::END);
        }
        assert_eq!(reassemble(pieces, 0), ip_payload(&frame));
    }

    #[test]
    fn options_without_copied_flag_leave_later_headers_bare() {
        let frame = datagram(600, &RECORD_ROUTE, None);
        let mut out = Vec::new();
        fragment(&frame, 300, &mut out).unwrap();
        let pieces = check_fragments(&frame, 300, &out);
        assert_eq!(pieces[0].header.len(), 28);
        assert!(pieces[1..].iter().all(|p| p.header.len() == 20));
        // A bare later header leaves room for more data: 280 vs 272.
        assert_eq!(pieces[0].data.len(), 272);
        assert_eq!(pieces[1].data.len(), 280);
        assert_eq!(reassemble(pieces, 0), ip_payload(&frame));
    }

    #[test]
    fn malformed_options_are_refused() {
        for options in [
            &[0x44u8][..],       // no length byte
            &[0x44, 1, 0, 0],    // length below 2
            &[0x83, 9, 4, 0],    // runs past the header
            &[0x01, 0x83, 0, 0], // zero length after a NOP
        ] {
            let frame = datagram(600, options, None);
            assert!(
                matches!(
                    fragment(&frame, 300, &mut Vec::new()),
                    Err(FragmentError::Malformed(_))
                ),
                "{options:?}"
            );
        }
        // Bytes after End of Option List are padding and not read.
        let frame = datagram(600, &[option::END, 0x44, 1, 0], None);
        assert!(fragment(&frame, 300, &mut Vec::new()).is_ok());
    }

    #[test]
    fn refragmenting_keeps_offset_base_and_last_mf() {
        let frame = datagram(3000, &[], None);
        let mut first_hop = Vec::new();
        fragment(&frame, 1500, &mut first_hop).unwrap();
        let mut second_hop = Vec::new();
        for frag in &first_hop {
            match fragment(frag, 576, &mut second_hop) {
                Ok(_) => {}
                Err(FragmentError::FitsMtu { .. }) => second_hop.push(frag.clone()),
                Err(e) => panic!("{e}"),
            }
        }
        // 1480 → 552 + 552 + 376, twice, then the 40-byte tail as it was.
        assert_eq!(second_hop.len(), 7);
        let pieces: Vec<Piece> = second_hop
            .iter()
            .map(|f| check_fragments(f, 576, std::slice::from_ref(f)).remove(0))
            .collect();
        assert_eq!(
            pieces.iter().map(|p| p.more).collect::<Vec<_>>(),
            [true, true, true, true, true, true, false],
            "pieces of a middle fragment keep MF on their last piece"
        );
        assert_eq!(reassemble(pieces, 0), ip_payload(&frame));

        // The last fragment alone: offsets start at its own base.
        let mut tail = datagram(1000, &[], None);
        make_fragment(&mut tail, false, 2960);
        let mut out = Vec::new();
        assert_eq!(fragment(&tail, 576, &mut out), Ok(2));
        let pieces = check_fragments(&tail, 576, &out);
        assert_eq!(pieces[0].offset, 2960);
        assert!(pieces[0].more && !pieces[1].more);
        assert_eq!(reassemble(pieces, 2960), ip_payload(&tail));
    }

    #[test]
    fn each_error() {
        let mut out = Vec::new();
        let arp =
            FrameBuilder::arp_request(crate::testutil::mac(1), "10.0.0.1", "10.0.0.2").build();
        assert_eq!(fragment(&arp, 68, &mut out), Err(FragmentError::NotIpv4));
        let v6 = FrameBuilder::udp4("[fd00::1]:1", "[fd00::2]:2", &[0; 200]).build();
        assert_eq!(fragment(&v6, 68, &mut out), Err(FragmentError::NotIpv4));
        assert_eq!(
            fragment(&[0u8; 10], 68, &mut out),
            Err(FragmentError::NotIpv4)
        );

        let good = datagram(1000, &[], None);
        let mut bad_sum = good.clone();
        bad_sum[14 + 11] ^= 1;
        assert_eq!(
            fragment(&bad_sum, 500, &mut out),
            Err(FragmentError::Malformed("header checksum"))
        );
        assert!(matches!(
            fragment(&good[..500], 400, &mut out),
            Err(FragmentError::Malformed(_))
        ));
        let mut past_end = good.clone();
        make_fragment(&mut past_end, false, 65000);
        assert!(matches!(
            fragment(&past_end, 500, &mut out),
            Err(FragmentError::Malformed(_))
        ));

        // FrameBuilder sets DF.
        let df = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", &[0; 1000]).build();
        assert_eq!(
            fragment(&df, 500, &mut out),
            Err(FragmentError::DontFragment)
        );
        assert_eq!(
            fragment(&good, 1028, &mut out),
            Err(FragmentError::FitsMtu {
                len: 1020,
                mtu: 1028
            })
        );
        assert_eq!(
            fragment(&good, 1020, &mut out),
            Err(FragmentError::FitsMtu {
                len: 1020,
                mtu: 1020
            })
        );
        assert_eq!(
            fragment(&good, 27, &mut out),
            Err(FragmentError::MtuTooSmall { mtu: 27, need: 28 })
        );
        let long_header = datagram(1000, &[option::NOP; 40], None);
        assert_eq!(
            fragment(&long_header, 67, &mut out),
            Err(FragmentError::MtuTooSmall { mtu: 67, need: 68 })
        );
        assert_eq!(
            fragment(&long_header, 68, &mut out).map(|n| n > 0),
            Ok(true)
        );
        out.clear();
        assert_eq!(fragment(&good, 28, &mut out), Ok(125), "8 bytes each");
        assert!(out.iter().all(|f| f.len() == 14 + 28));
        assert!(
            fragment(&df, 500, &mut out).is_err() && out.len() == 125,
            "an error pushes nothing"
        );
    }

    #[test]
    fn partial_checksum_is_completed_before_fragmenting() {
        let mut frame = datagram(2000, &[], None);
        let l4 = 14 + 20;
        let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
        let ips = IpPair::V4(ip.src_addr(), ip.dst_addr());
        let pseudo = checksum::fold(ips.pseudo_header(IpProtocol::Udp, 2000));
        frame[l4 + 6..l4 + 8].copy_from_slice(&pseudo.to_be_bytes());
        let vnet = VnetRepr {
            flags: vnet_hdr::FLAG_NEEDS_CSUM,
            csum_start: l4 as u16,
            csum_offset: 6,
            ..VnetRepr::PLAIN
        };
        complete_checksum(&mut frame, &vnet).unwrap();
        let mut out = Vec::new();
        fragment(&frame, 1500, &mut out).unwrap();
        let data = reassemble(check_fragments(&frame, 1500, &out), 0);
        let udp = UdpDatagram::new_checked(&data[..]).unwrap();
        assert!(
            UdpRepr::parse(&udp, ips).is_ok(),
            "the reassembled checksum verifies"
        );
    }

    fn options_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(Vec::new()),
            Just(RECORD_ROUTE.to_vec()),
            Just(LOOSE_SOURCE_ROUTE.to_vec()),
            Just([&LOOSE_SOURCE_ROUTE[..], &[option::NOP], &RECORD_ROUTE[..]].concat()),
            Just(vec![option::NOP; 40]),
        ]
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            mtu in any::<u16>(),
        ) {
            let mut out = Vec::new();
            let _ = fragment(&bytes, mtu, &mut out);
        }

        #[test]
        fn never_panics_on_damaged_datagrams(
            len in 8usize..600,
            flips in proptest::collection::vec((0usize..700, any::<u8>()), 1..6),
            mtu in any::<u16>(),
            fix_checksum in any::<bool>(),
        ) {
            let mut frame = datagram(len, &LOOSE_SOURCE_ROUTE, None);
            for (at, value) in flips {
                if let Some(b) = frame.get_mut(at) {
                    *b = value;
                }
            }
            if fix_checksum && Ipv4Packet::new_checked(&frame[14..]).is_ok() {
                Ipv4Packet::new_unchecked(&mut frame[14..]).fill_checksum();
            }
            let mut out = Vec::new();
            if let Ok(n) = fragment(&frame, mtu, &mut out) {
                prop_assert_eq!(n, out.len());
                for f in &out {
                    let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
                    prop_assert!(ip.verify_checksum());
                    prop_assert!(ip.total_len() <= usize::from(mtu));
                }
            }
        }

        #[test]
        fn random_datagrams_reassemble(
            len in 8usize..4000,
            mtu in 68u16..=1500,
            options in options_strategy(),
            tag in prop_oneof![Just(None), Just(Some(EtherType::Vlan)), Just(Some(EtherType::QinQ))],
            prior in prop_oneof![Just(None), (0u16..2000, any::<bool>()).prop_map(Some)],
        ) {
            let mut frame = datagram(len, &options, tag);
            let base = match prior {
                Some((units, more)) => {
                    make_fragment(&mut frame, more, units * 8);
                    usize::from(units) * 8
                }
                None => 0,
            };
            let l3 = network_header(&frame).unwrap().1;
            let total = Ipv4Packet::new_checked(&frame[l3..]).unwrap().total_len();
            let mut out = Vec::new();
            match fragment(&frame, mtu, &mut out) {
                Err(FragmentError::FitsMtu { len, .. }) => {
                    prop_assert!(total <= usize::from(mtu));
                    prop_assert_eq!(usize::from(len), total);
                }
                Ok(n) => {
                    prop_assert!(total > usize::from(mtu));
                    prop_assert_eq!(n, out.len());
                    let pieces = check_fragments(&frame, mtu, &out);
                    let last_more = pieces.last().unwrap().more;
                    prop_assert_eq!(last_more, matches!(prior, Some((_, true))));
                    prop_assert_eq!(reassemble(pieces, base), ip_payload(&frame));
                }
                Err(e) => prop_assert!(false, "unexpected {}", e),
            }
        }
    }
}
