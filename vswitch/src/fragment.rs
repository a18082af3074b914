//! IPv4 fragmentation by a router (RFC 791 §3.2, RFC 1812 §5.2.6): an
//! Ethernet frame (with one VLAN tag or none) whose datagram is larger than
//! the next hop's MTU and may be fragmented becomes several frames, each
//! with a copy of the Ethernet header and tag, fragment offsets and
//! more-fragments flags set, options copied where their copy flag says so.

use crate::wire::checksum;

/// Why a frame was not fragmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    /// Not an IPv4 datagram, or its header does not fit.
    #[error("not a well-formed IPv4 datagram")]
    Malformed,
    /// DF is set: it must not be fragmented.
    #[error("don't-fragment is set")]
    DontFragment,
    /// The datagram already fits the MTU.
    #[error("the datagram fits the MTU")]
    Fits,
    /// The MTU cannot carry the header and 8 bytes of data.
    #[error("MTU {0} is too small to fragment into")]
    MtuTooSmall(u16),
}

const DF: u16 = 0x4000;
const MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

fn read16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// The offset of the IPv4 header in an Ethernet frame with at most one tag.
fn l3_offset(frame: &[u8]) -> Option<usize> {
    match read16(frame, 12)? {
        0x0800 => Some(14),
        0x8100 | 0x88a8 if read16(frame, 16)? == 0x0800 => Some(18),
        _ => None,
    }
}

/// The options of a header that later fragments carry (RFC 791: those
/// with the copied flag), padded to a multiple of 4 bytes.
fn copied_options(options: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&kind) = options.get(i) {
        match kind {
            0 => break,
            1 => i += 1,
            _ => {
                let len = usize::from(options.get(i + 1).copied().unwrap_or(0));
                if len < 2 || i + len > options.len() {
                    break;
                }
                if kind & 0x80 != 0 {
                    out.extend_from_slice(&options[i..i + len]);
                }
                i += len;
            }
        }
    }
    while out.len() % 4 != 0 {
        out.push(0);
    }
    out
}

/// Fragments `frame` for a link of `mtu` bytes, pushing one frame per
/// fragment onto `out`; returns how many. An already fragmented datagram
/// keeps its place: offsets continue from its own, and its last piece keeps
/// its own more-fragments flag.
pub fn fragment(frame: &[u8], mtu: u16, out: &mut Vec<Vec<u8>>) -> Result<usize, FragmentError> {
    let l3 = l3_offset(frame).ok_or(FragmentError::Malformed)?;
    let ip = &frame[l3..];
    let first = *ip.first().ok_or(FragmentError::Malformed)?;
    let header_len = usize::from(first & 0x0f) * 4;
    let total = usize::from(read16(ip, 2).ok_or(FragmentError::Malformed)?);
    if first >> 4 != 4 || header_len < 20 || total < header_len || total > ip.len() {
        return Err(FragmentError::Malformed);
    }
    let flags = read16(ip, 6).ok_or(FragmentError::Malformed)?;
    if flags & DF != 0 {
        return Err(FragmentError::DontFragment);
    }
    let mtu_len = usize::from(mtu);
    if total <= mtu_len {
        return Err(FragmentError::Fits);
    }
    let later_options = copied_options(&ip[20..header_len]);
    let later_header = 20 + later_options.len();
    if mtu_len < header_len.max(later_header) + 8 {
        return Err(FragmentError::MtuTooSmall(mtu));
    }
    let data = &ip[header_len..total];
    let base = usize::from(flags & OFFSET_MASK) * 8;
    let own_mf = flags & MF != 0;
    let mut at = 0;
    let mut count = 0;
    while at < data.len() {
        let header: Vec<u8> = if at == 0 {
            ip[..header_len].to_vec()
        } else {
            let mut h = ip[..20].to_vec();
            h[0] = 0x40 | (later_header / 4) as u8;
            h.extend_from_slice(&later_options);
            h
        };
        let room = (mtu_len - header.len()) & !7;
        let end = (at + room).min(data.len());
        let last = end == data.len();
        let mut piece = Vec::with_capacity(l3 + header.len() + end - at);
        piece.extend_from_slice(&frame[..l3]);
        piece.extend_from_slice(&header);
        piece.extend_from_slice(&data[at..end]);
        let ip_out = &mut piece[l3..];
        let length = (header.len() + end - at) as u16;
        ip_out[2..4].copy_from_slice(&length.to_be_bytes());
        let mut field = (((base + at) / 8) as u16) & OFFSET_MASK;
        if !last || own_mf {
            field |= MF;
        }
        field |= flags & !(DF | MF | OFFSET_MASK);
        ip_out[6..8].copy_from_slice(&field.to_be_bytes());
        ip_out[10..12].fill(0);
        let sum = checksum::checksum(&ip_out[..header.len()]);
        ip_out[10..12].copy_from_slice(&sum.to_be_bytes());
        out.push(piece);
        count += 1;
        at = end;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FrameBuilder;
    use crate::wire::Ipv4Packet;
    use proptest::prelude::*;

    /// Clears DF (the builder sets it, as Linux does) and fixes the checksum.
    fn without_df(mut frame: Vec<u8>, l3: usize) -> Vec<u8> {
        frame[l3 + 6] &= !0x40;
        frame[l3 + 10..l3 + 12].fill(0);
        let sum = checksum::checksum(&frame[l3..l3 + 20]);
        frame[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
        frame
    }

    fn udp(len: usize) -> Vec<u8> {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        without_df(
            FrameBuilder::udp4("10.0.1.10:5000", "10.0.2.20:53", &payload).build(),
            14,
        )
    }

    /// The data of fragments in offset order, checking each as it goes.
    fn reassemble(pieces: &[Vec<u8>], l3: usize, mtu: u16) -> Vec<u8> {
        let mut parts: Vec<(usize, Vec<u8>, bool)> = pieces
            .iter()
            .map(|p| {
                let ip = Ipv4Packet::new_checked(&p[l3..]).unwrap();
                assert!(ip.verify_checksum());
                assert!(ip.total_len() <= usize::from(mtu));
                (
                    usize::from(ip.fragment_offset()),
                    ip.payload().to_vec(),
                    ip.more_fragments(),
                )
            })
            .collect();
        parts.sort_by_key(|p| p.0);
        let mut data = Vec::new();
        for (i, (offset, bytes, more)) in parts.iter().enumerate() {
            assert_eq!(*offset, data.len(), "fragments follow each other");
            let last = i + 1 == parts.len();
            assert_eq!(*more, !last);
            if !last {
                assert_eq!(bytes.len() % 8, 0);
            }
            data.extend_from_slice(bytes);
        }
        data
    }

    #[test]
    fn a_big_datagram_becomes_fragments_that_reassemble() {
        let frame = udp(1472);
        let mut out = Vec::new();
        assert_eq!(fragment(&frame, 1450, &mut out), Ok(2));
        let original = Ipv4Packet::new_checked(&frame[14..]).unwrap();
        assert_eq!(reassemble(&out, 14, 1450), original.payload());
        assert!(out.iter().all(|p| p[..14] == frame[..14]));
        let ident = original.ident();
        assert!(
            out.iter()
                .all(|p| Ipv4Packet::new_checked(&p[14..]).unwrap().ident() == ident)
        );
    }

    #[test]
    fn a_tag_is_kept_on_every_fragment() {
        let frame = without_df(
            FrameBuilder::udp4("10.0.1.10:5000", "10.0.2.20:53", &[9u8; 3000])
                .vlan(20, 0)
                .build(),
            18,
        );
        let mut out = Vec::new();
        assert_eq!(fragment(&frame, 1000, &mut out), Ok(4));
        assert!(out.iter().all(|p| p[..18] == frame[..18]));
        let data = Ipv4Packet::new_checked(&frame[18..])
            .unwrap()
            .payload()
            .to_vec();
        assert_eq!(reassemble(&out, 18, 1000), data);
    }

    #[test]
    fn options_and_refragmenting() {
        let mut frame = udp(600);
        // Give the header 8 bytes of options: a copied one (type 0x94, router
        // alert) and a not-copied one (type 0x07 record route, length 4).
        let options = [0x94, 4, 0, 0, 0x07, 4, 4, 0];
        frame.splice(34..34, options);
        frame[14] = 0x47;
        let total = (frame.len() - 14) as u16;
        frame[16..18].copy_from_slice(&total.to_be_bytes());
        frame[24..26].fill(0);
        let sum = checksum::checksum(&frame[14..42]);
        frame[24..26].copy_from_slice(&sum.to_be_bytes());
        let mut out = Vec::new();
        let n = fragment(&frame, 300, &mut out).unwrap();
        assert!(n >= 3);
        assert_eq!(out[0][14] & 0x0f, 7, "the first keeps every option");
        for later in &out[1..] {
            assert_eq!(later[14] & 0x0f, 6, "later ones keep the copied one");
            assert_eq!(&later[34..38], &[0x94, 4, 0, 0]);
        }
        // A fragment fragmented again keeps its offset and its MF.
        let middle = out[1].clone();
        let mut again = Vec::new();
        fragment(&middle, 100, &mut again).unwrap();
        let first = Ipv4Packet::new_checked(&again[0][14..]).unwrap();
        let orig = Ipv4Packet::new_checked(&middle[14..]).unwrap();
        assert_eq!(first.fragment_offset(), orig.fragment_offset());
        let last = Ipv4Packet::new_checked(&again[again.len() - 1][14..]).unwrap();
        assert!(
            last.more_fragments(),
            "the middle of a datagram stays the middle"
        );
    }

    #[test]
    fn what_is_not_fragmented() {
        let mut out = Vec::new();
        assert_eq!(
            fragment(&udp(100), 1500, &mut out),
            Err(FragmentError::Fits)
        );
        let mut df = udp(1472);
        df[20] |= 0x40;
        assert_eq!(
            fragment(&df, 1000, &mut out),
            Err(FragmentError::DontFragment)
        );
        assert_eq!(
            fragment(&udp(1472), 27, &mut out),
            Err(FragmentError::MtuTooSmall(27))
        );
        let arp =
            FrameBuilder::arp_request(crate::testutil::mac(1), "10.0.0.1", "10.0.0.2").build();
        assert_eq!(fragment(&arp, 100, &mut out), Err(FragmentError::Malformed));
        assert_eq!(
            fragment(&udp(1472)[..30], 100, &mut out),
            Err(FragmentError::Malformed)
        );
        assert!(out.is_empty());
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), mtu in any::<u16>()) {
            let mut out = Vec::new();
            let _ = fragment(&bytes, mtu, &mut out);
        }

        #[test]
        fn fragments_reassemble_for_any_size_and_mtu(len in 0usize..4000, mtu in 68u16..=1500) {
            let frame = udp(len);
            let mut out = Vec::new();
            match fragment(&frame, mtu, &mut out) {
                Ok(_) => {
                    let data = Ipv4Packet::new_checked(&frame[14..]).unwrap().payload().to_vec();
                    prop_assert_eq!(reassemble(&out, 14, mtu), data);
                }
                Err(FragmentError::Fits) => prop_assert!(len + 28 <= usize::from(mtu)),
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
    }
}
