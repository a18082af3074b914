//! An ESP tunnel port (RFC 4303 in tunnel mode, in UDP as RFC 3948 puts
//! it): frames sent to it lose their Ethernet header and their IPv4 packet
//! is sealed with the newest outbound SA of the tunnel their actions chose;
//! ESP packets that arrive on UDP port 4500 are opened with the inbound SA
//! their SPI names and enter the pipeline as frames with the tunnel's id.
//! IKE messages on the same port go to the IKE daemon through the port's
//! [`EspHandle`], which also installs and removes SAs.
//!
//! The sans-IO rules live beside this file: `datagram` (telling IKE,
//! keepalives and ESP apart, the inner MTU, the Ethernet header) and
//! `table` (the SAs and what they do to one packet). This file is the I/O
//! shell: one UDP socket bound to local:4500, `recvmmsg` into the batch's
//! buffers and `sendmmsg` from the port's own.
//!
//! Copies: a frame to send is copied once, its inner IPv4 packet into a
//! reused send buffer with room for the ESP header in front and the
//! trailer and ICV behind, and sealed in place there; the datapath's frame
//! is borrowed and read-only, and has neither room. A received packet is
//! not copied: it is opened in place in the batch's buffer, and its
//! Ethernet header is written over the ESP header and IV in front of it.
//!
//! Coalescing (`coalesce`): sealed datagrams to one peer of one length go
//! out in one segmented send (UDP GSO), and the consecutive segments of one
//! TCP stream that one receive opens are merged into one super-frame, each
//! payload after the first copied once into the first's buffer.

mod coalesce;
mod datagram;
mod handle;
mod stats;
mod table;

pub use datagram::{
    Datagram, ESP_UDP_PORT, FrameError, IKE_HEADER_LEN, NAT_KEEPALIVE, NEXT_HEADER_IPV4,
    NON_ESP_MARKER, OUTER_IPV4_LEN, OUTER_UDP_LEN, classify, inbound_inner_len, inner_mtu,
    outbound_inner, tunnel_mac, write_ethernet_header,
};
pub use handle::{EspHandle, IKE_QUEUE, IkeMessage};
pub use stats::{EspCounters, EspStats, SaDirection, SaStats, TunnelStats};

use super::sys::set_option;
use super::{BATCH, Port, PortInfo, RxBatch, TxFrame};
use crate::wire::{EthernetAddress, VnetHeader, VnetRepr, ethernet, vnet_hdr};
use handle::{Shared, queue_ike};
use sdn_vpn::esp;
use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Instant;
use table::Received;
use tokio::sync::mpsc;
use tracing::info;

/// `UDP_SEGMENT` from <linux/udp.h>: the segment size of a segmented send.
const UDP_SEGMENT: libc::c_int = 103;

/// Socket buffer size asked for, each way.
const SOCKET_BUFFER: libc::c_int = 8 << 20;

/// Where a datagram is received in a batch buffer: so that once opened, its
/// inner packet with an Ethernet header in front starts right after a
/// virtio-net header (the layout `RxBatch` frames have).
const RX_DATAGRAM_AT: usize = vnet_hdr::HEADER_LEN + ethernet::HEADER_LEN - esp::HEADROOM;

/// Bytes of one send buffer: the ESP header and IV, the largest IPv4
/// packet, the padding, trailer and ICV.
const TX_SLOT: usize = esp::HEADROOM + u16::MAX as usize + esp::TAILROOM;

/// A frame one receive opened: `len` bytes at `start` in batch buffer
/// `slot`, out of `tunnel`.
#[derive(Debug, Clone, Copy)]
struct Opened {
    slot: usize,
    start: usize,
    len: usize,
    tunnel: crate::pipeline::TunnelMeta,
}

/// An ESP tunnel endpoint on local:4500.
pub struct EspPort {
    socket: UdpSocket,
    info: PortInfo,
    /// The largest sealed datagram a segmented send may carry: one that
    /// fits the link whole (0 once the kernel refused a segmented send).
    max_segment: usize,
    /// The frames the current receive opened, before merging.
    opened: Vec<Opened>,
    shared: Arc<Shared>,
    ike_sender: mpsc::Sender<handle::IkeMessage>,
    rx_iovecs: Vec<libc::iovec>,
    rx_addrs: Vec<libc::sockaddr_in>,
    rx_msgs: Vec<libc::mmsghdr>,
    /// `BATCH` send buffers of `TX_SLOT` bytes, back to back.
    tx_slots: Box<[u8]>,
    /// Each sealed datagram's peer and length, in send order.
    tx_sealed: Vec<(SocketAddrV4, usize)>,
    tx_addrs: Vec<libc::sockaddr_in>,
    tx_iovecs: Vec<libc::iovec>,
    /// The runs of `tx_sealed` that each go in one message.
    tx_runs: Vec<std::ops::Range<usize>>,
    /// Each message's control data (its segment size).
    tx_control: Vec<[u64; 3]>,
    tx_msgs: Vec<libc::mmsghdr>,
    /// Packets dropped in either direction (the table's counters say why).
    dropped: u64,
}

// SAFETY: the raw pointers in the scratch arrays are only meaningful during
// one recv/send call, where they are rebuilt from live buffers.
unsafe impl Send for EspPort {}

impl std::fmt::Debug for EspPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EspPort")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data; zeroed is valid.
    let mut sa: libc::sockaddr_in = unsafe { mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = addr.port().to_be();
    sa.sin_addr.s_addr = u32::from(*addr.ip()).to_be();
    sa
}

fn from_sockaddr(sa: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)),
        u16::from_be(sa.sin_port),
    )
}

/// The port's socket: UDP on `local`:4500, nonblocking, with big buffers,
/// and fragmenting outer packets rather than dropping them should an inner
/// packet be larger than planned (no silent black hole).
fn bind(local: Ipv4Addr) -> io::Result<UdpSocket> {
    let at = SocketAddrV4::new(local, ESP_UDP_PORT);
    let socket = UdpSocket::bind(at)
        .map_err(|e| io::Error::new(e.kind(), format!("bind UDP {at} for ESP: {e}")))?;
    socket.set_nonblocking(true)?;
    let fd = socket.as_raw_fd();
    for (force, plain, what) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, "SO_RCVBUF"),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, "SO_SNDBUF"),
    ] {
        if set_option(fd, libc::SOL_SOCKET, force, &SOCKET_BUFFER, what).is_err() {
            // Without CAP_NET_ADMIN: as much as the limits allow.
            let _ = set_option(fd, libc::SOL_SOCKET, plain, &SOCKET_BUFFER, what);
        }
    }
    set_option(
        fd,
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        &libc::IP_PMTUDISC_DONT,
        "IP_MTU_DISCOVER",
    )?;
    Ok(socket)
}

impl EspPort {
    /// Opens an ESP port on `local`:4500 in the calling thread's network
    /// namespace, for a link of MTU `link_mtu` (the outer packets'), with
    /// `mac` as the Ethernet address of the switch's end (the destination of
    /// every frame it receives). Its `info().mtu` is the largest inner IPv4
    /// packet that fits the link once sealed ([`inner_mtu`]). Returns the
    /// port, for the datapath, and its handle, for the IKE daemon.
    ///
    /// # Errors
    /// When the socket cannot be made or bound (the address is not the
    /// namespace's, or port 4500 is taken on it).
    pub fn open(
        local: Ipv4Addr,
        mac: EthernetAddress,
        link_mtu: u32,
    ) -> io::Result<(EspPort, EspHandle)> {
        let socket = bind(local)?;
        let (ike_sender, ike_receiver) = mpsc::channel(IKE_QUEUE);
        let shared = Arc::new(Shared::new(socket.try_clone()?, ike_receiver));
        let empty = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let info = PortInfo {
            name: format!("esp:{local}"),
            hw_addr: mac,
            mtu: inner_mtu(link_mtu),
            offloads: false,
            tunnel_local: Some(local),
        };
        info!(port = %info.name, mtu = info.mtu, link_mtu, "ESP port opened");
        let handle = EspHandle::new(shared.clone(), SocketAddrV4::new(local, ESP_UDP_PORT));
        let port = EspPort {
            socket,
            info,
            max_segment: (link_mtu as usize).saturating_sub(OUTER_IPV4_LEN + OUTER_UDP_LEN),
            opened: Vec::with_capacity(BATCH),
            shared,
            ike_sender,
            rx_iovecs: vec![empty; BATCH],
            rx_addrs: vec![sockaddr(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)); BATCH],
            // SAFETY: mmsghdr is plain data; zeroed is valid.
            rx_msgs: (0..BATCH).map(|_| unsafe { mem::zeroed() }).collect(),
            // Zeroed memory from the allocator: pages are touched as used.
            tx_slots: vec![0u8; BATCH * TX_SLOT].into_boxed_slice(),
            tx_sealed: vec![(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), 0); BATCH],
            tx_addrs: vec![sockaddr(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)); BATCH],
            tx_iovecs: vec![empty; BATCH],
            tx_runs: Vec::with_capacity(BATCH),
            tx_control: vec![[0; 3]; BATCH],
            // SAFETY: as above.
            tx_msgs: (0..BATCH).map(|_| unsafe { mem::zeroed() }).collect(),
            dropped: 0,
        };
        Ok((port, handle))
    }

    /// Seals frames from `frames` into the send buffers under one lock of
    /// the table, until they are full or `frames` ends. Returns how many
    /// were queued and whether `frames` ended.
    fn seal_some(&mut self, frames: &mut dyn Iterator<Item = TxFrame<'_>>) -> (usize, bool) {
        let mut table = self.shared.table();
        let before = table.counters.dropped();
        let mut queued = 0;
        let mut ended = false;
        while queued < BATCH {
            let Some(frame) = frames.next() else {
                ended = true;
                break;
            };
            let slot = &mut self.tx_slots[queued * TX_SLOT..(queued + 1) * TX_SLOT];
            if let Some((peer, len)) = table.seal(frame.data, frame.tunnel, slot) {
                self.tx_sealed[queued] = (peer, len);
                self.tx_addrs[queued] = sockaddr(peer);
                queued += 1;
            }
        }
        self.dropped += table.counters.dropped() - before;
        (queued, ended)
    }

    /// Sends the first `count` sealed packets with `sendmmsg`, each run of
    /// them that `coalesce::send_runs` finds in one message (segmented by
    /// the kernel when it holds more than one); returns how many packets
    /// the kernel took.
    fn flush(&mut self, count: usize) -> usize {
        coalesce::send_runs(
            &self.tx_sealed[..count],
            self.max_segment,
            &mut self.tx_runs,
        );
        for i in 0..count {
            self.tx_iovecs[i] = libc::iovec {
                iov_base: self.tx_slots[i * TX_SLOT..].as_mut_ptr().cast(),
                iov_len: self.tx_sealed[i].1,
            };
        }
        for (m, run) in self.tx_runs.iter().enumerate() {
            let msg = &mut self.tx_msgs[m].msg_hdr;
            msg.msg_iov = &mut self.tx_iovecs[run.start];
            msg.msg_iovlen = run.len() as _;
            msg.msg_name = (&mut self.tx_addrs[run.start] as *mut libc::sockaddr_in).cast();
            msg.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            msg.msg_flags = 0;
            if run.len() > 1 {
                let size = self.tx_sealed[run.start].1 as u16;
                msg.msg_control = self.tx_control[m].as_mut_ptr().cast();
                // SAFETY: CMSG_SPACE is a size computation.
                msg.msg_controllen = unsafe { libc::CMSG_SPACE(mem::size_of::<u16>() as u32) } as _;
                // SAFETY: the control buffer (24 bytes) holds one cmsg of
                // a u16, which CMSG_FIRSTHDR points at.
                unsafe {
                    let cmsg = libc::CMSG_FIRSTHDR(msg);
                    (*cmsg).cmsg_level = libc::SOL_UDP;
                    (*cmsg).cmsg_type = UDP_SEGMENT;
                    (*cmsg).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), size);
                }
            } else {
                msg.msg_control = std::ptr::null_mut();
                msg.msg_controllen = 0;
            }
        }
        let messages = self.tx_runs.len();
        let (mut offset, mut sent, mut refused) = (0, 0, 0u64);
        while offset < messages {
            // SAFETY: tx_msgs[..messages] point at iovecs, addresses and
            // control data in this port's scratch arrays and at its send
            // buffers, alive for the call; the kernel only reads them.
            let n = unsafe {
                libc::sendmmsg(
                    self.socket.as_raw_fd(),
                    self.tx_msgs.as_mut_ptr().add(offset),
                    (messages - offset) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                let n = n as usize;
                sent += self.tx_runs[offset..offset + n]
                    .iter()
                    .map(|r| r.len())
                    .sum::<usize>();
                offset += n;
                continue;
            }
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // The kernel refused the message at `offset` (no room, or it
            // will not segment): skip it. A kernel without UDP GSO says so
            // once; from then on every datagram goes alone.
            let run = self.tx_runs[offset].clone();
            if run.len() > 1
                && matches!(
                    err.raw_os_error(),
                    Some(libc::ENOPROTOOPT | libc::EOPNOTSUPP | libc::EIO | libc::EINVAL)
                )
                && self.max_segment > 0
            {
                info!(port = %self.info.name, error = %err, "segmented sends refused; sending datagrams one by one");
                self.max_segment = 0;
            }
            refused += run.len() as u64;
            offset += 1;
        }
        if refused > 0 {
            self.shared.table().counters.send_refused += refused;
            self.dropped += refused;
        }
        sent
    }

    /// Hands the frames of `self.opened` to `batch` in order, each run of
    /// consecutive segments of one TCP stream out of one tunnel merged into
    /// its first frame's buffer as one super-frame.
    fn deliver_opened(&mut self, batch: &mut RxBatch) {
        let mut i = 0;
        while i < self.opened.len() {
            let head = self.opened[i];
            let mut end = i + 1;
            let buffer = batch.storage_mut(head.slot);
            let room = buffer.len() - head.start;
            let mut stream =
                coalesce::Stream::start(&mut buffer[head.start..head.start + head.len], room);
            if let Some(stream) = &mut stream {
                while let Some(next) = self.opened.get(end).copied() {
                    let frame =
                        &mut batch.storage_mut(next.slot)[next.start..next.start + next.len];
                    if next.tunnel != head.tunnel || !stream.take(frame) {
                        break;
                    }
                    end += 1;
                }
            }
            let Some(vnet_at) = head.start.checked_sub(vnet_hdr::HEADER_LEN) else {
                self.shared.table().counters.malformed += (end - i) as u64;
                self.dropped += (end - i) as u64;
                i = end;
                continue;
            };
            let (len, vnet) = match stream.filter(|s| s.segments() > 1) {
                Some(stream) => {
                    let mut at = head.start + head.len;
                    for next in &self.opened[i + 1..end] {
                        let payload = next.start + stream.headers()..next.start + next.len;
                        let source = batch.storage_mut(next.slot)[payload].as_ptr();
                        let target = &mut batch.storage_mut(head.slot)
                            [at..at + (next.len - stream.headers())];
                        // SAFETY: `source` points at the payload's bytes in
                        // another slot of the batch, a heap buffer of its
                        // own that nothing else touches meanwhile; `target`
                        // is as long as the payload.
                        unsafe {
                            std::ptr::copy_nonoverlapping(source, target.as_mut_ptr(), target.len())
                        };
                        at += target.len();
                    }
                    debug_assert_eq!(at - head.start, stream.merged_len());
                    let frame = &mut batch.storage_mut(head.slot)[head.start..at];
                    (at - head.start, stream.finish(frame))
                }
                None => (head.len, VnetRepr::PLAIN),
            };
            let buffer = batch.storage_mut(head.slot);
            vnet.emit(&mut VnetHeader::new_unchecked(
                &mut buffer[vnet_at..head.start],
            ));
            // Frames stay in their slots; a slot whose datagram delivered
            // nothing, or whose frame was merged into another, is unused.
            batch.push_stored_at(
                head.slot,
                vnet_at,
                vnet_hdr::HEADER_LEN + len,
                Some(head.tunnel),
            );
            i = end;
        }
        self.opened.clear();
    }
}

impl Port for EspPort {
    fn info(&self) -> &PortInfo {
        &self.info
    }

    fn fd(&self) -> Option<RawFd> {
        Some(self.socket.as_raw_fd())
    }

    fn recv_batch(&mut self, batch: &mut RxBatch) -> io::Result<usize> {
        batch.clear();
        let slots = batch.capacity().min(BATCH);
        for i in 0..slots {
            let room = &mut batch.storage_mut(i)[RX_DATAGRAM_AT..];
            self.rx_iovecs[i] = libc::iovec {
                iov_base: room.as_mut_ptr().cast(),
                iov_len: room.len(),
            };
            let msg = &mut self.rx_msgs[i];
            msg.msg_hdr.msg_iov = &mut self.rx_iovecs[i];
            msg.msg_hdr.msg_iovlen = 1;
            msg.msg_hdr.msg_name = (&mut self.rx_addrs[i] as *mut libc::sockaddr_in).cast();
            msg.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            msg.msg_hdr.msg_control = std::ptr::null_mut();
            msg.msg_hdr.msg_controllen = 0;
            msg.msg_hdr.msg_flags = 0;
            msg.msg_len = 0;
        }
        // SAFETY: rx_msgs[..slots] point at iovecs into the batch's buffers
        // and at this port's address slots, alive for the call.
        let n =
            unsafe { super::sys::recv_some(self.socket.as_raw_fd(), &mut self.rx_msgs[..slots])? };
        let now = Instant::now();
        let mut table = self.shared.table();
        let before = table.counters.dropped();
        for i in 0..n {
            let len = self.rx_msgs[i].msg_len as usize;
            let from = from_sockaddr(&self.rx_addrs[i]);
            if self.rx_msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                table.counters.malformed += 1;
                continue;
            }
            let buffer = batch.storage_mut(i);
            let datagram = RX_DATAGRAM_AT..RX_DATAGRAM_AT + len;
            match table.receive(buffer, datagram, *from.ip(), self.info.hw_addr, now) {
                Received::Frame { start, len, tunnel } => {
                    self.opened.push(Opened {
                        slot: i,
                        start,
                        len,
                        tunnel,
                    });
                }
                Received::Ike(message) => {
                    queue_ike(
                        &self.ike_sender,
                        &mut table.counters,
                        from,
                        &buffer[message],
                    );
                }
                Received::Nothing => {}
            }
        }
        self.dropped += table.counters.dropped() - before;
        drop(table);
        self.deliver_opened(batch);
        Ok(batch.len())
    }

    fn send_batch(&mut self, frames: &mut dyn Iterator<Item = TxFrame<'_>>) -> io::Result<usize> {
        let mut sent = 0;
        loop {
            let (queued, ended) = self.seal_some(frames);
            if queued > 0 {
                sent += self.flush(queued);
            }
            if ended {
                return Ok(sent);
            }
        }
    }

    fn dropped(&self) -> u64 {
        self.dropped
    }
}
