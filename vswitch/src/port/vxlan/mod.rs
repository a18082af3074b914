//! A VXLAN tunnel endpoint (RFC 7348) as a port: frames sent to it are
//! wrapped in UDP/VXLAN towards the endpoint their actions chose; frames that
//! arrive are unwrapped and carry their VNI and source into the pipeline.
//!
//! The port takes TSO super-frames. It segments one once, lays the
//! encapsulated segments back to back and sends them with a single
//! `sendmsg` (UDP GSO), so the kernel carries them as one packet as far as
//! the receiver; a receiver with UDP GRO reads them with one `recvmmsg`
//! slot, and merges consecutive segments of one TCP stream back into a
//! super-frame for the host behind it. Single frames go in batches through a
//! raw UDP socket (`sendmmsg`). Every flow keeps one source port in the
//! dynamic range, picked by a hash of its inner headers (RFC 7348 §5), on
//! both paths. The kernel adds the outer IP header, routes and resolves the
//! next hop. The sockets live in the network namespace of the calling thread
//! (the hypervisor's).

pub(crate) mod merge;
mod sockets;

use super::{BATCH, Port, PortInfo, RxBatch, TxFrame};
use crate::flow::FlowKey;
use crate::gso;
use crate::pipeline::{TunnelMeta, TunnelTarget};
use crate::wire::{
    EthernetAddress, GsoType, VnetHeader, VnetRepr, VxlanPacket, VxlanRepr, vnet_hdr, vxlan,
};
use sockets::{SourcePorts, UDP_GRO, UDP_SEGMENT, sockaddr};
use std::collections::VecDeque;
use std::io;
use std::mem;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Outer UDP and VXLAN headers.
const ENCAP_LEN: usize = 8 + vxlan::HEADER_LEN;

/// Most UDP payload one segmented send carries (IPv4 total length is 16 bits).
const MAX_GSO_BYTES: usize = 65_000;

/// Most segments one segmented send carries (the kernel's `UDP_MAX_SEGMENTS`).
const MAX_GSO_SEGMENTS: usize = 64;

/// Bytes kept for frames whose checksum is finished before sending.
const ARENA: usize = 256 * 1024;

/// A hash of an inner frame's flow (its flow key), to pick a source port.
pub fn flow_hash(inner: &[u8]) -> u64 {
    match FlowKey::extract(inner, 0) {
        Some(mut extracted) => {
            // ECN marks change within a flow; the flow must keep its port.
            extracted.key.set_ip_tos(0);
            extracted
                .key
                .words
                .iter()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, w| {
                    (h ^ w).wrapping_mul(0x0100_0000_01b3)
                })
        }
        None => 0,
    }
}

/// Writes the outer UDP header (checksum zero, RFC 7348 §5 for IPv4) and the
/// VXLAN header for an inner frame of `inner_len` bytes.
pub fn encapsulation_headers(
    out: &mut [u8; ENCAP_LEN],
    vni: u32,
    source_port: u16,
    dst_port: u16,
    inner_len: usize,
) {
    let udp_len = u16::try_from(ENCAP_LEN + inner_len).unwrap_or(u16::MAX);
    out[0..2].copy_from_slice(&source_port.to_be_bytes());
    out[2..4].copy_from_slice(&dst_port.to_be_bytes());
    out[4..6].copy_from_slice(&udp_len.to_be_bytes());
    out[6..8].copy_from_slice(&[0, 0]);
    VxlanRepr { vni }.emit(&mut out[8..]);
}

/// Where a queued single packet's inner frame lies.
#[derive(Clone, Copy)]
enum Inner {
    /// In the caller's frame, for the duration of `send_batch`.
    Borrowed(*const u8, usize),
    /// In the arena.
    Arena(usize, usize),
}

/// A VXLAN tunnel endpoint.
pub struct VxlanPort {
    rx: OwnedFd,
    raw: OwnedFd,
    pool: SourcePorts,
    /// Segmented sends work here (cleared after the kernel refuses one).
    gso: bool,
    info: PortInfo,
    dst_port: u16,
    rx_iovecs: Vec<libc::iovec>,
    rx_addrs: Vec<libc::sockaddr_in>,
    rx_msgs: Vec<libc::mmsghdr>,
    rx_control: Vec<[u64; 4]>,
    /// Inner frames of datagrams that could not be merged, delivered next
    /// time: where each lies in `pending_bytes`, which is reused.
    pending: VecDeque<(Range<usize>, TunnelMeta)>,
    pending_bytes: Vec<u8>,
    tx_headers: Vec<[u8; ENCAP_LEN]>,
    tx_inner: Vec<Inner>,
    tx_targets: Vec<libc::sockaddr_in>,
    tx_iovecs: Vec<[libc::iovec; 2]>,
    tx_msgs: Vec<libc::mmsghdr>,
    arena: Vec<u8>,
    segments: gso::Segments,
    dropped: u64,
}

// SAFETY: the raw pointers in the scratch arrays are only meaningful during
// one recv/send call, where they are rebuilt from live buffers.
unsafe impl Send for VxlanPort {}

impl std::fmt::Debug for VxlanPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VxlanPort")
            .field("info", &self.info)
            .field("gso", &self.gso)
            .finish()
    }
}

/// The segment size UDP GRO reported for a received datagram, if any.
fn gro_size(msg: &libc::msghdr) -> Option<usize> {
    // SAFETY: the control buffer was set up by us and filled by the kernel;
    // CMSG_* walk it within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                return usize::try_from(size).ok().filter(|&s| s > 0);
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    None
}

impl VxlanPort {
    /// Opens an endpoint with local address `local`, on UDP port `dst_port`
    /// (4789 unless a peer uses another), in the calling thread's namespace.
    /// `mtu` is the largest inner frame it carries without fragmenting.
    pub fn open(local: Ipv4Addr, dst_port: u16, mtu: u32) -> io::Result<VxlanPort> {
        let (rx, _gro) = sockets::receiver(dst_port)?;
        let raw = sockets::raw_sender()?;
        let pool = SourcePorts::bind()?;
        let empty = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        Ok(VxlanPort {
            rx,
            raw,
            pool,
            gso: true,
            info: PortInfo {
                name: format!("vxlan:{local}"),
                hw_addr: EthernetAddress([0; 6]),
                mtu,
                offloads: true,
                tunnel_local: Some(local),
            },
            dst_port,
            rx_iovecs: vec![empty; BATCH],
            rx_addrs: vec![sockaddr(Ipv4Addr::UNSPECIFIED, 0); BATCH],
            // SAFETY: mmsghdr is plain data; zeroed is valid.
            rx_msgs: (0..BATCH).map(|_| unsafe { mem::zeroed() }).collect(),
            rx_control: vec![[0; 4]; BATCH],
            pending: VecDeque::new(),
            pending_bytes: Vec::new(),
            tx_headers: vec![[0u8; ENCAP_LEN]; BATCH],
            tx_inner: Vec::with_capacity(BATCH),
            tx_targets: Vec::with_capacity(BATCH),
            tx_iovecs: vec![[empty; 2]; BATCH],
            // SAFETY: as above.
            tx_msgs: (0..BATCH).map(|_| unsafe { mem::zeroed() }).collect(),
            arena: Vec::with_capacity(ARENA),
            segments: gso::Segments::default(),
            dropped: 0,
        })
    }

    /// Moves frames left over from split datagrams into the batch.
    /// Drops the delivered front of `pending_bytes` once it is large, so
    /// that a queue that never quite empties does not grow without end.
    fn compact_pending(&mut self) {
        let Some(start) = self.pending.front().map(|(range, _)| range.start) else {
            return;
        };
        if start < (1 << 20) {
            return;
        }
        self.pending_bytes.drain(..start);
        for (range, _) in &mut self.pending {
            *range = range.start - start..range.end - start;
        }
    }

    fn deliver_pending(&mut self, batch: &mut RxBatch) -> usize {
        let mut used = 0;
        while used < batch.capacity().min(BATCH) {
            let Some((range, tunnel)) = self.pending.pop_front() else {
                break;
            };
            let frame = &self.pending_bytes[range];
            let buffer = batch.storage_mut(used);
            let len = vnet_hdr::HEADER_LEN + frame.len();
            if len > buffer.len() {
                self.dropped += 1;
                continue;
            }
            VnetRepr::PLAIN.emit(&mut VnetHeader::new_unchecked(
                &mut buffer[..vnet_hdr::HEADER_LEN],
            ));
            buffer[vnet_hdr::HEADER_LEN..len].copy_from_slice(frame);
            batch.push_stored_at(used, 0, len, Some(tunnel));
            used += 1;
        }
        if self.pending.is_empty() {
            self.pending_bytes.clear();
        }
        used
    }

    /// Queues one inner frame for the raw socket; sends the queue when full.
    fn queue_single(&mut self, inner: Inner, target: TunnelTarget) -> usize {
        let (ptr, len) = match inner {
            Inner::Borrowed(ptr, len) => (ptr, len),
            Inner::Arena(at, len) => (self.arena[at..].as_ptr(), len),
        };
        // SAFETY: the pointer covers `len` live bytes (see `Inner`).
        let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
        let (_, port) = self.pool.of(flow_hash(bytes));
        let i = self.tx_inner.len();
        encapsulation_headers(
            &mut self.tx_headers[i],
            target.vni,
            port,
            self.dst_port,
            len,
        );
        self.tx_inner.push(inner);
        self.tx_targets.push(sockaddr(target.dst, 0));
        if self.tx_inner.len() == BATCH {
            self.flush_singles()
        } else {
            0
        }
    }

    /// Sends the queued single packets with `sendmmsg`; returns how many left.
    fn flush_singles(&mut self) -> usize {
        let count = self.tx_inner.len();
        for i in 0..count {
            let (ptr, len) = match self.tx_inner[i] {
                Inner::Borrowed(ptr, len) => (ptr, len),
                Inner::Arena(at, len) => (self.arena[at..].as_ptr(), len),
            };
            self.tx_iovecs[i] = [
                libc::iovec {
                    iov_base: self.tx_headers[i].as_mut_ptr().cast(),
                    iov_len: ENCAP_LEN,
                },
                libc::iovec {
                    iov_base: ptr as *mut libc::c_void,
                    iov_len: len,
                },
            ];
            let msg = &mut self.tx_msgs[i];
            msg.msg_hdr.msg_iov = self.tx_iovecs[i].as_mut_ptr();
            msg.msg_hdr.msg_iovlen = 2;
            msg.msg_hdr.msg_name = (&mut self.tx_targets[i] as *mut libc::sockaddr_in).cast();
            msg.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            msg.msg_hdr.msg_control = std::ptr::null_mut();
            msg.msg_hdr.msg_controllen = 0;
            msg.msg_hdr.msg_flags = 0;
        }
        // SAFETY: tx_msgs[..count] point at iovecs and addresses in this
        // port's scratch arrays and at frames borrowed for the current call
        // or held in the arena.
        let (sent, refused) =
            unsafe { crate::port::sys::send_all(self.raw.as_raw_fd(), &mut self.tx_msgs[..count]) };
        self.dropped += refused;
        self.tx_inner.clear();
        self.tx_targets.clear();
        self.arena.clear();
        sent
    }

    /// Copies a frame into the arena and finishes its checksum there.
    fn finish_in_arena(&mut self, frame: &[u8], vnet: &VnetRepr) -> Option<Inner> {
        if frame.len() > ARENA {
            return None;
        }
        if self.arena.len() + frame.len() > ARENA {
            self.flush_singles();
        }
        let at = self.arena.len();
        self.arena.extend_from_slice(frame);
        gso::complete_checksum(&mut self.arena[at..], vnet).ok()?;
        Some(Inner::Arena(at, frame.len()))
    }

    /// Segments a super-frame once and sends the encapsulated segments in as
    /// few segmented sends as the kernel takes. Returns whether it went.
    fn send_super_frame(&mut self, frame: &[u8], vnet: &VnetRepr, target: TunnelTarget) -> bool {
        if gso::segment_with_gap(frame, vnet, &mut self.segments, vxlan::HEADER_LEN).is_err() {
            return false;
        }
        let (socket, _) = self.pool.of(flow_hash(frame));
        let (buffer, ranges) = self.segments.buffer_mut();
        for r in ranges {
            VxlanRepr { vni: target.vni }.emit(&mut buffer[r.start - vxlan::HEADER_LEN..r.start]);
        }
        let packets: Vec<std::ops::Range<usize>> = ranges
            .iter()
            .map(|r| r.start - vxlan::HEADER_LEN..r.end)
            .collect();
        let mut first = 0;
        let mut all_sent = true;
        while first < packets.len() {
            let size = packets[first].len();
            let mut last = first;
            while last + 1 < packets.len()
                && last + 1 - first < MAX_GSO_SEGMENTS
                && packets[last + 1].end - packets[first].start <= MAX_GSO_BYTES
            {
                last += 1;
            }
            let went = self.gso && {
                let (buffer, _) = self.segments.buffer_mut();
                let bytes = &buffer[packets[first].start..packets[last].end];
                match send_segmented(socket, bytes, size, target.dst, self.dst_port) {
                    Ok(()) => true,
                    Err(e) => {
                        // A kernel without UDP GSO says so once; anything
                        // else (a segment too big for the path, a full
                        // buffer) concerns this send only.
                        if matches!(e.raw_os_error(), Some(libc::ENOPROTOOPT | libc::EOPNOTSUPP)) {
                            self.gso = false;
                        }
                        false
                    }
                }
            };
            if !went {
                all_sent &= self.send_each(&packets[first..=last], target);
            }
            first = last + 1;
        }
        all_sent
    }

    /// Sends segments of `self.segments` (VXLAN header included) singly.
    fn send_each(&mut self, packets: &[std::ops::Range<usize>], target: TunnelTarget) -> bool {
        let (buffer, _) = self.segments.buffer_mut();
        let buffer: *const u8 = buffer.as_ptr();
        let mut sent = 0;
        for p in packets {
            let inner = p.start + vxlan::HEADER_LEN;
            // SAFETY: the segments buffer is not touched until the flush below.
            let ptr = unsafe { buffer.add(inner) };
            sent += self.queue_single(Inner::Borrowed(ptr, p.end - inner), target);
        }
        sent += self.flush_singles();
        sent == packets.len()
    }
}

/// One `sendmsg` of `bytes` (VXLAN packets of `size` bytes, the last maybe
/// shorter) to `dst`, cut by the kernel into `size`-byte datagrams.
fn send_segmented(
    socket: RawFd,
    bytes: &[u8],
    size: usize,
    dst: Ipv4Addr,
    port: u16,
) -> io::Result<()> {
    let mut target = sockaddr(dst, port);
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let mut control = [0u64; 3];
    // SAFETY: msghdr is plain data.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = (&mut target as *mut libc::sockaddr_in).cast();
    msg.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if bytes.len() > size {
        msg.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is a size computation.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(mem::size_of::<u16>() as u32) } as _;
        // SAFETY: the control buffer holds one cmsg of a u16.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_UDP;
            (*cmsg).cmsg_type = UDP_SEGMENT;
            (*cmsg).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), size as u16);
        }
    }
    loop {
        // SAFETY: the message points at live buffers for the call.
        let n = unsafe { libc::sendmsg(socket, &msg, libc::MSG_DONTWAIT) };
        if n >= 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

impl Port for VxlanPort {
    fn info(&self) -> &PortInfo {
        &self.info
    }

    fn fd(&self) -> Option<RawFd> {
        Some(self.rx.as_raw_fd())
    }

    fn recv_batch(&mut self, batch: &mut RxBatch) -> io::Result<usize> {
        batch.clear();
        let first = self.deliver_pending(batch);
        let slots = batch.capacity().min(BATCH) - first;
        if slots == 0 {
            return Ok(batch.len());
        }
        // The datagram (VXLAN header, inner frame) lands so that the inner
        // frame starts right after a virtio-net header's worth of bytes.
        let skip = vnet_hdr::HEADER_LEN - vxlan::HEADER_LEN;
        for i in 0..slots {
            let buffer = batch.storage_mut(first + i);
            self.rx_iovecs[i] = libc::iovec {
                iov_base: buffer[skip..].as_mut_ptr().cast(),
                iov_len: buffer.len() - skip,
            };
            let msg = &mut self.rx_msgs[i];
            msg.msg_hdr.msg_iov = &mut self.rx_iovecs[i];
            msg.msg_hdr.msg_iovlen = 1;
            msg.msg_hdr.msg_name = (&mut self.rx_addrs[i] as *mut libc::sockaddr_in).cast();
            msg.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            msg.msg_hdr.msg_control = self.rx_control[i].as_mut_ptr().cast();
            msg.msg_hdr.msg_controllen = mem::size_of::<[u64; 4]>() as _;
            msg.msg_hdr.msg_flags = 0;
            msg.msg_len = 0;
        }
        // SAFETY: rx_msgs[..slots] point at iovecs into the batch's buffers
        // and at this port's address and control slots, alive for the call.
        let n = unsafe { super::sys::recv_some(self.rx.as_raw_fd(), &mut self.rx_msgs[..slots])? };
        if n == 0 {
            return Ok(batch.len());
        }
        for i in 0..n {
            let slot = first + i;
            let mut len = self.rx_msgs[i].msg_len as usize;
            let truncated = self.rx_msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let src = Ipv4Addr::from(u32::from_be(self.rx_addrs[i].sin_addr.s_addr));
            let gro = gro_size(&self.rx_msgs[i].msg_hdr);
            let buffer = batch.storage_mut(slot);
            if truncated || len > buffer.len() - skip {
                self.dropped += 1;
                continue;
            }
            if let Some(size) = gro.filter(|&s| s < len) {
                let datagram = &mut buffer[skip..skip + len];
                if let Some(merged) = merge::merge(datagram, size) {
                    merged.vnet.emit(&mut VnetHeader::new_unchecked(
                        &mut buffer[..vnet_hdr::HEADER_LEN],
                    ));
                    let tunnel = TunnelMeta {
                        vni: merged.vni,
                        src,
                    };
                    batch.push_stored_at(slot, 0, vnet_hdr::HEADER_LEN + merged.len, Some(tunnel));
                    continue;
                }
                // Not one stream: the first packet stays here, the others
                // wait for the next receive.
                self.compact_pending();
                for packet in merge::packets(len, size).skip(1) {
                    let Ok(vni) =
                        VxlanPacket::new_checked(&datagram[packet.clone()]).map(|p| p.vni())
                    else {
                        self.dropped += 1;
                        continue;
                    };
                    let inner = &mut datagram[packet.start + vxlan::HEADER_LEN..packet.end];
                    if inner.len() < 14
                        || gso::finish_inner_checksum(inner) == gso::InnerChecksum::Corrupt
                    {
                        self.dropped += 1;
                        continue;
                    }
                    let at = self.pending_bytes.len();
                    self.pending_bytes.extend_from_slice(inner);
                    self.pending
                        .push_back((at..self.pending_bytes.len(), TunnelMeta { vni, src }));
                }
                len = size;
            }
            let datagram = &buffer[skip..skip + len];
            let vni = match VxlanPacket::new_checked(datagram) {
                Ok(packet) if packet.payload().len() >= 14 => packet.vni(),
                _ => {
                    self.dropped += 1;
                    continue;
                }
            };
            let inner_len = len - vxlan::HEADER_LEN;
            let inner = &mut buffer[vnet_hdr::HEADER_LEN..vnet_hdr::HEADER_LEN + inner_len];
            if gso::finish_inner_checksum(inner) == gso::InnerChecksum::Corrupt {
                self.dropped += 1;
                continue;
            }
            let vnet =
                merge::oversize_tcp(inner, self.info.mtu as usize).unwrap_or(VnetRepr::PLAIN);
            // The header replaces the VXLAN header, which has been read.
            vnet.emit(&mut VnetHeader::new_unchecked(
                &mut buffer[..vnet_hdr::HEADER_LEN],
            ));
            // Frames stay in their slots; a dropped datagram leaves its slot unused.
            batch.push_stored_at(
                slot,
                0,
                vnet_hdr::HEADER_LEN + inner_len,
                Some(TunnelMeta { vni, src }),
            );
        }
        Ok(batch.len())
    }

    fn send_batch(&mut self, frames: &mut dyn Iterator<Item = TxFrame<'_>>) -> io::Result<usize> {
        let mut sent = 0;
        for frame in frames {
            let Some(target) = frame.tunnel else {
                // A frame sent to the tunnel without a destination goes nowhere.
                self.dropped += 1;
                continue;
            };
            if frame.data.len() < vnet_hdr::HEADER_LEN {
                self.dropped += 1;
                continue;
            }
            let (header, inner) = frame.data.split_at(vnet_hdr::HEADER_LEN);
            let vnet = VnetRepr::parse(&VnetHeader::new_unchecked(header));
            if vnet.gso_type != GsoType::None {
                // Keep the order: what is queued goes first.
                sent += self.flush_singles();
                if self.send_super_frame(inner, &vnet, target) {
                    sent += 1;
                } else {
                    self.dropped += 1;
                }
            } else if vnet.needs_checksum() {
                match self.finish_in_arena(inner, &vnet) {
                    Some(at) => sent += self.queue_single(at, target),
                    None => self.dropped += 1,
                }
            } else {
                sent += self.queue_single(Inner::Borrowed(inner.as_ptr(), inner.len()), target);
            }
        }
        sent += self.flush_singles();
        Ok(sent)
    }

    fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_follow_rfc_7348() {
        let mut headers = [0u8; ENCAP_LEN];
        encapsulation_headers(&mut headers, 0x00abcdef, 50000, vxlan::UDP_PORT, 100);
        assert_eq!(u16::from_be_bytes([headers[0], headers[1]]), 50000);
        assert_eq!(u16::from_be_bytes([headers[2], headers[3]]), 4789);
        assert_eq!(
            u16::from_be_bytes([headers[4], headers[5]]),
            116,
            "UDP length covers its header, VXLAN and the frame"
        );
        assert_eq!(&headers[6..8], &[0, 0], "UDP checksum zero over IPv4");
        let vxlan = VxlanPacket::new_checked(&headers[8..]).unwrap();
        assert_eq!(vxlan.flags(), vxlan::FLAG_VNI);
        assert_eq!(vxlan.vni(), 0x00abcdef);
        assert_eq!(&headers[9..12], &[0, 0, 0], "reserved bits zero");
        assert_eq!(headers[15], 0);
    }
}
