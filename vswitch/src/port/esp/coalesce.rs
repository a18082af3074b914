//! Coalescing in both directions of an ESP port, sans-IO. Sealed datagrams
//! to one peer of one length leave in one segmented send (UDP GSO: the
//! kernel cuts them apart again where they arrive), so that the segments of
//! a TSO super-frame cross the kernel, the links and any router between the
//! gateways as one packet instead of one each. On the way in, consecutive
//! frames of one receive that are consecutive segments of one TCP stream,
//! as a sender segmenting a TSO super-frame makes them, merge back into one
//! super-frame with offload metadata, so that the receiving host takes them
//! at once.

use crate::gso::{self, InnerChecksum};
use crate::wire::{
    GsoType, IpProtocol, Ipv4Packet, TcpFlags, TcpSegment, VnetRepr, checksum, ethernet, vnet_hdr,
};
use std::net::SocketAddrV4;
use std::ops::Range;

/// Most datagrams one segmented send carries (the kernel's
/// `UDP_MAX_SEGMENTS`).
pub(super) const MAX_GSO_SEGMENTS: usize = 64;

/// Most UDP payload one segmented send carries (an IPv4 packet's total
/// length is 16 bits; the outer headers need room too).
pub(super) const MAX_GSO_BYTES: usize = 65_000;

/// Splits sealed datagrams, `(peer, length)` in send order, into runs
/// that one segmented send each carries, written into `runs`: datagrams to
/// one peer all of the first's length but the last, which may be shorter
/// (what UDP GSO cuts), at most `MAX_GSO_SEGMENTS` of them and
/// `MAX_GSO_BYTES` together. A datagram longer than `max_segment` (one the
/// link cannot carry whole, which the kernel fragments) goes alone, and so
/// does every datagram when `max_segment` is 0.
pub(super) fn send_runs(
    datagrams: &[(SocketAddrV4, usize)],
    max_segment: usize,
    runs: &mut Vec<Range<usize>>,
) {
    runs.clear();
    let mut first = 0;
    while first < datagrams.len() {
        let (peer, size) = datagrams[first];
        let mut end = first + 1;
        if size <= max_segment {
            let mut bytes = size;
            while end < datagrams.len() && end - first < MAX_GSO_SEGMENTS {
                let (next_peer, next) = datagrams[end];
                if next_peer != peer || next > size || bytes + next > MAX_GSO_BYTES {
                    break;
                }
                bytes += next;
                end += 1;
                if next < size {
                    break;
                }
            }
        }
        runs.push(first..end);
        first = end;
    }
}

/// Where a frame the port opened has its IPv4 header: behind the untagged
/// Ethernet header the port writes.
const L3: usize = ethernet::HEADER_LEN;

/// The longest headers a merged segment may have: Ethernet, IPv4 and TCP
/// with options.
const MAX_HEADERS: usize = L3 + 60 + 60;

/// TCP flags that stop a segment from being merged at all.
const URG_SYN_RST_FIN: u16 = 0x020 | TcpFlags::SYN | TcpFlags::RST | TcpFlags::FIN;
/// Congestion window reduced: allowed on the first segment only.
const CWR: u16 = 0x080;

/// A TCP stream being merged from consecutive frames: the first segment's
/// headers, which every later one must repeat but for what differs between
/// segments of a stream (IP length, identification and checksum, the
/// sequence number, the TCP checksum, PSH on the last), and what the next
/// segment must be.
#[derive(Debug, Clone)]
pub(super) struct Stream {
    header: [u8; MAX_HEADERS],
    /// Where TCP starts.
    l4: usize,
    /// Where the payload starts.
    headers: usize,
    /// Payload bytes of every segment but the last (the first's).
    mss: usize,
    /// The sequence number the next segment must have.
    next_seq: u32,
    /// IPv4 total length of the merged packet so far.
    ip_len: usize,
    /// Most bytes the merged frame may have (its buffer's room).
    room: usize,
    /// Segments taken, the first included.
    segments: usize,
    /// A shorter or pushed segment was taken: nothing may follow it.
    closed: bool,
    /// Whether the last segment taken had PSH.
    push: bool,
}

/// Payload bytes of a TCP segment laid out as `headers` says, if its IPv4
/// length agrees with the frame (0 otherwise).
fn payload_len(frame: &[u8], headers: usize) -> usize {
    let Some(ip) = frame
        .get(L3..)
        .and_then(|l3| Ipv4Packet::new_checked(l3).ok())
    else {
        return 0;
    };
    if ip.total_len() != frame.len() - L3 || frame.len() <= headers {
        return 0;
    }
    frame.len() - headers
}

/// The TCP flags of the segment at `l4`.
fn flags_at(frame: &[u8], l4: usize) -> u16 {
    TcpSegment::new_unchecked(&frame[l4..]).flags().0
}

impl Stream {
    /// A stream starting with `frame`, if it is an IPv4 TCP segment that
    /// can be merged: not a fragment, its checksums right (a TCP checksum
    /// left to offload is completed in place), a payload, and none of URG,
    /// SYN, RST or FIN. The merged frame is to have at most `room` bytes.
    pub(super) fn start(frame: &mut [u8], room: usize) -> Option<Stream> {
        let ip = Ipv4Packet::new_checked(frame.get(L3..)?).ok()?;
        if ip.protocol() != IpProtocol::Tcp
            || ip.more_fragments()
            || ip.fragment_offset() != 0
            || !ip.verify_checksum()
        {
            return None;
        }
        let l4 = L3 + ip.header_len();
        let tcp = TcpSegment::new_checked(frame.get(l4..)?).ok()?;
        let headers = l4 + tcp.header_len();
        let flags = tcp.flags().0;
        let seq = tcp.seq_number();
        let mss = payload_len(frame, headers);
        if flags & URG_SYN_RST_FIN != 0 || mss == 0 || headers > MAX_HEADERS {
            return None;
        }
        if gso::finish_inner_checksum(frame) == InnerChecksum::Corrupt {
            return None;
        }
        let mut header = [0u8; MAX_HEADERS];
        header[..headers].copy_from_slice(&frame[..headers]);
        let push = flags & TcpFlags::PSH != 0;
        Some(Stream {
            header,
            l4,
            headers,
            mss,
            next_seq: seq.wrapping_add(mss as u32),
            ip_len: frame.len() - L3,
            room,
            segments: 1,
            closed: push,
            push,
        })
    }

    /// Takes `frame` into the stream if it is the next segment: the same
    /// headers, the next sequence number, as much payload as the first (or
    /// less, which makes it the last), PSH only if it is the last, right
    /// checksums (completed in place if left to offload), and room for it
    /// in one IPv4 packet and in the merged frame's buffer. Returns whether
    /// it was taken.
    pub(super) fn take(&mut self, frame: &mut [u8]) -> bool {
        if self.closed || !self.same_headers(frame) {
            return false;
        }
        let payload = payload_len(frame, self.headers);
        let tcp = TcpSegment::new_unchecked(&frame[self.l4..]);
        if payload == 0
            || payload > self.mss
            || tcp.seq_number() != self.next_seq
            || self.ip_len + payload > usize::from(u16::MAX)
            || L3 + self.ip_len + payload > self.room
        {
            return false;
        }
        if gso::finish_inner_checksum(frame) == InnerChecksum::Corrupt {
            return false;
        }
        self.push = flags_at(frame, self.l4) & TcpFlags::PSH != 0;
        self.closed = self.push || payload < self.mss;
        self.next_seq = self.next_seq.wrapping_add(payload as u32);
        self.ip_len += payload;
        self.segments += 1;
        true
    }

    /// Whether `frame` repeats the stream's headers where segments of one
    /// stream agree, with a valid IPv4 header checksum.
    fn same_headers(&self, frame: &[u8]) -> bool {
        let (l3, l4, end) = (L3, self.l4, self.headers);
        if frame.len() <= end {
            return false;
        }
        let first = &self.header[..end];
        let same = |r: Range<usize>| first[r.clone()] == frame[r];
        // Ethernet, version, header length and TOS; flags, fragment offset,
        // TTL and protocol; addresses and options.
        let ip_same = same(0..l3 + 2)
            && same(l3 + 6..l3 + 10)
            && same(l3 + 12..l4)
            && Ipv4Packet::new_unchecked(&frame[l3..]).verify_checksum();
        // Ports; acknowledgement and data offset; window; urgent pointer
        // and options.
        let tcp_same = same(l4..l4 + 4)
            && same(l4 + 8..l4 + 13)
            && same(l4 + 14..l4 + 16)
            && same(l4 + 18..end);
        let base = flags_at(first, l4) & !(CWR | TcpFlags::PSH);
        ip_same && tcp_same && flags_at(frame, l4) & !TcpFlags::PSH == base
    }

    /// Segments taken, the first included.
    pub(super) fn segments(&self) -> usize {
        self.segments
    }

    /// Where a segment's payload starts (the headers' length).
    pub(super) fn headers(&self) -> usize {
        self.headers
    }

    /// Bytes of the merged frame, Ethernet header included.
    pub(super) fn merged_len(&self) -> usize {
        L3 + self.ip_len
    }

    /// Finishes the merged frame (the first segment's headers and every
    /// payload after them, `merged_len` bytes): its IPv4 length and
    /// checksum, the last segment's PSH, and the TCP checksum field holding
    /// the pseudo-header sum (a partial checksum, as a TSO sender leaves
    /// it). Returns the offload metadata it goes with.
    pub(super) fn finish(&self, frame: &mut [u8]) -> VnetRepr {
        let l4 = self.l4;
        let (src, dst) = {
            let mut ip = Ipv4Packet::new_unchecked(&mut frame[L3..]);
            ip.set_total_len(self.ip_len as u16);
            ip.fill_checksum();
            (ip.src_addr(), ip.dst_addr())
        };
        let mut tcp = TcpSegment::new_unchecked(&mut frame[l4..]);
        let header_len = tcp.header_len();
        let flags = (tcp.flags().0 & !TcpFlags::PSH) | if self.push { TcpFlags::PSH } else { 0 };
        tcp.set_header_len_and_flags(header_len, TcpFlags(flags));
        let ips = crate::wire::IpPair::V4(src, dst);
        let pseudo = checksum::fold(ips.pseudo_header(IpProtocol::Tcp, L3 + self.ip_len - l4));
        frame[l4 + 16..l4 + 18].copy_from_slice(&pseudo.to_be_bytes());
        VnetRepr {
            flags: vnet_hdr::FLAG_NEEDS_CSUM,
            gso_type: GsoType::TcpV4,
            hdr_len: self.headers as u16,
            gso_size: self.mss as u16,
            csum_start: l4 as u16,
            csum_offset: 16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{FrameBuilder, checksums_valid};
    use std::net::Ipv4Addr;

    fn peer(n: u8) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, n), 4500)
    }

    fn runs_of(datagrams: &[(SocketAddrV4, usize)], max_segment: usize) -> Vec<Range<usize>> {
        // Left over from an earlier call: cleared first.
        let mut runs = vec![7..9, 0..1];
        send_runs(datagrams, max_segment, &mut runs);
        runs
    }

    #[test]
    fn equal_datagrams_to_one_peer_leave_together() {
        let a = peer(1);
        let b = peer(2);
        // A super-frame's segments: equal, the last shorter; then another peer.
        let mut datagrams = vec![(a, 1436); 5];
        datagrams.push((a, 700));
        datagrams.push((a, 1436));
        datagrams.extend([(b, 100), (b, 100), (a, 100)]);
        assert_eq!(
            runs_of(&datagrams, 1472),
            [0..6, 6..7, 7..9, 9..10],
            "a shorter datagram ends its run; a new peer starts one"
        );
        // A longer one after a shorter: apart.
        assert_eq!(runs_of(&[(a, 100), (a, 200)], 1472), [0..1, 1..2]);
        // Too long for the link, or segmenting off: alone.
        assert_eq!(runs_of(&[(a, 2000), (a, 2000)], 1472), [0..1, 1..2]);
        assert_eq!(runs_of(&[(a, 100), (a, 100)], 0), [0..1, 1..2]);
        assert!(runs_of(&[], 1472).is_empty());
    }

    #[test]
    fn runs_stop_at_the_segment_and_byte_limits() {
        let a = peer(1);
        let small = vec![(a, 64); 150];
        let runs = runs_of(&small, 1472);
        assert_eq!(runs, [0..64, 64..128, 128..150]);
        let big = vec![(a, 1436); 100];
        let runs = runs_of(&big, 1472);
        assert!(runs.iter().all(|r| r.len() * 1436 <= MAX_GSO_BYTES));
        assert_eq!(runs[0], 0..MAX_GSO_BYTES / 1436);
        assert_eq!(runs.iter().map(|r| r.len()).sum::<usize>(), 100);
    }

    /// The segments a sender makes of a TSO super-frame of `payload_len`
    /// bytes with `mss`: complete frames, checksums filled.
    fn segments(payload_len: usize, mss: u16) -> (Vec<Vec<u8>>, Vec<u8>) {
        let payload: Vec<u8> = (0..payload_len).map(|i| (i * 7 + 3) as u8).collect();
        let frame = FrameBuilder::tcp4("10.95.1.11:40000", "10.96.1.11:5201", &payload)
            .tcp_seq_ack(1000, 77)
            .build();
        let vnet = VnetRepr {
            flags: 0,
            gso_type: GsoType::TcpV4,
            hdr_len: 54,
            gso_size: mss,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut out = gso::Segments::default();
        gso::segment(&frame, &vnet, &mut out).unwrap();
        let frames: Vec<Vec<u8>> = out.iter().map(<[u8]>::to_vec).collect();
        assert!(frames.iter().all(|f| checksums_valid(f)));
        (frames, payload)
    }

    /// Merges `frames` as the port does: the first's headers, then every
    /// taken payload.
    fn merge(frames: &mut [Vec<u8>]) -> Option<(Vec<u8>, VnetRepr, usize)> {
        let (first, rest) = frames.split_first_mut()?;
        let mut stream = Stream::start(first, usize::MAX)?;
        let mut merged = first.clone();
        for frame in rest.iter_mut() {
            if !stream.take(frame) {
                break;
            }
            merged.extend_from_slice(&frame[stream.headers()..]);
        }
        assert_eq!(merged.len(), stream.merged_len());
        let vnet = stream.finish(&mut merged);
        Some((merged, vnet, stream.segments()))
    }

    #[test]
    fn segments_of_one_stream_become_the_super_frame_again() {
        let (mut frames, payload) = segments(20_000, 1348);
        assert_eq!(frames.len(), 15);
        let (merged, vnet, count) = merge(&mut frames).expect("mergeable");
        assert_eq!(count, 15);
        assert_eq!(
            vnet,
            VnetRepr {
                flags: vnet_hdr::FLAG_NEEDS_CSUM,
                gso_type: GsoType::TcpV4,
                hdr_len: 54,
                gso_size: 1348,
                csum_start: 34,
                csum_offset: 16,
            }
        );
        let ip = Ipv4Packet::new_checked(&merged[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.total_len(), 40 + 20_000);
        let tcp = TcpSegment::new_checked(ip.payload()).unwrap();
        assert_eq!(tcp.payload(), &payload[..]);
        assert_eq!(tcp.seq_number(), 1000);
        assert!(
            tcp.flags().contains(TcpFlags::PSH),
            "the last segment's PSH"
        );
        // Cut again as the host's kernel would, every segment is whole.
        let mut again = gso::Segments::default();
        let mut whole = merged.clone();
        gso::complete_checksum(&mut whole, &vnet).unwrap();
        assert!(checksums_valid(&whole));
        gso::segment(&merged, &vnet, &mut again).unwrap();
        assert!(again.iter().all(checksums_valid));
        assert_eq!(again.len(), 15);
    }

    #[test]
    fn a_stream_stops_where_the_next_frame_does_not_continue_it() {
        let (frames, _) = segments(8_000, 1000);
        let take_all = |mutate: &dyn Fn(&mut Vec<Vec<u8>>)| {
            let mut frames = frames.clone();
            mutate(&mut frames);
            merge(&mut frames).map(|(_, _, count)| count)
        };
        assert_eq!(take_all(&|_| {}), Some(8));
        type Mutation<'a> = &'a dyn Fn(&mut Vec<Vec<u8>>);
        let third = 2;
        let cases: [(&str, Mutation, Option<usize>); 9] = [
            (
                "a gap in the sequence",
                &|f| f[third][38 + 3] ^= 0x10,
                Some(2),
            ),
            ("another source port", &|f| f[third][34] ^= 1, Some(2)),
            (
                "another acknowledgement",
                &|f| f[third][42 + 3] ^= 1,
                Some(2),
            ),
            ("a damaged payload", &|f| f[third][60] ^= 0xff, Some(2)),
            ("a damaged IPv4 header", &|f| f[third][22] ^= 1, Some(2)),
            ("an RST", &|f| f[third][47] |= 0x04, Some(2)),
            ("frames reordered", &|f| f.swap(1, 2), Some(1)),
            ("a SYN first", &|f| f[0][47] |= 0x02, None),
            (
                "UDP first",
                &|f| f[0] = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", &[1; 100]).build(),
                None,
            ),
        ];
        for (what, mutate, want) in cases {
            assert_eq!(take_all(mutate), want, "{what}");
        }
        // A shorter segment, or one with PSH, is the last.
        let (mut short, _) = segments(1500, 1000);
        short.extend(segments(1500, 1000).0);
        assert_eq!(merge(&mut short).map(|m| m.2), Some(2));
    }

    #[test]
    fn a_partial_checksum_is_completed_and_a_merge_never_overflows() {
        let (mut frames, _) = segments(3_000, 1000);
        // The sender left the second segment's checksum to offload.
        let second = &mut frames[1];
        let ip = Ipv4Packet::new_checked(&second[14..]).unwrap();
        let ips = crate::wire::IpPair::V4(ip.src_addr(), ip.dst_addr());
        let pseudo = checksum::fold(ips.pseudo_header(IpProtocol::Tcp, second.len() - 34));
        second[50..52].copy_from_slice(&pseudo.to_be_bytes());
        assert_eq!(merge(&mut frames).map(|m| m.2), Some(3));
        assert!(checksums_valid(&frames[1]), "completed in place");
        // 70 full segments of 1,000 bytes would pass 65,535 bytes of IPv4.
        let (mut long, _) = segments(70_000, 1000);
        let (merged, _, count) = merge(&mut long).unwrap();
        assert!(merged.len() - 14 <= usize::from(u16::MAX));
        assert_eq!(count, (65_535 - 40) / 1000);
        // Nor past the room its buffer has.
        let (mut frames, _) = segments(10_000, 1000);
        let mut stream = Stream::start(&mut frames[0], 14 + 40 + 3_500).unwrap();
        let mut taken = 0;
        for frame in &mut frames[1..] {
            if !stream.take(frame) {
                break;
            }
            taken += 1;
        }
        assert_eq!(taken, 2);
        assert!(stream.merged_len() <= 14 + 40 + 3_500);
    }

    #[test]
    fn mutated_frames_never_panic() {
        let (frames, _) = segments(6_000, 1000);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for round in 0..2_000 {
            let mut mutated = frames.clone();
            for _ in 0..1 + round % 4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let frame = &mut mutated[(state >> 40) as usize % frames.len()];
                let at = (state as usize) % frame.len();
                frame[at] ^= (state >> 32) as u8 | 1;
                if round % 5 == 0 {
                    frame.truncate(at.max(1));
                }
            }
            let _ = merge(&mut mutated);
        }
    }
}
