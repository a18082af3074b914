//! AF_PACKET port on a network device (a veth end). Receives through a
//! `TPACKET_V2` ring the kernel fills in the sender's context (no system call
//! and no copy on the switch's thread; frames are forwarded straight from the
//! ring); frames too large for a ring slot (TSO super-frames) are queued whole
//! on the socket by `PACKET_COPY_THRESH` and read with `recvmmsg`, in order.
//! Sends with `sendmmsg` in batches. `PACKET_VNET_HDR` lets super-frames and
//! partial checksums pass through untouched; `PACKET_IGNORE_OUTGOING` keeps
//! the switch from seeing its own transmissions. The socket is created in
//! whatever network namespace the calling thread is in (`netns::run_in`).

mod ring;

use super::{BATCH, Port, PortInfo, RxBatch, TxFrame};
use crate::wire::{EthernetAddress, VnetHeader, VnetRepr, vnet_hdr};
use ring::{
    RING_FRAME_SIZE, RxRing, TP_STATUS_COPY, TP_STATUS_USER, TP_STATUS_VLAN_TPID_VALID,
    TP_STATUS_VLAN_VALID, ring_field, setup_ring,
};
use std::ffi::CString;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// From <linux/if_packet.h>; not all are in the libc crate.
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_AUXDATA: libc::c_int = 8;
const PACKET_MR_PROMISC: libc::c_ushort = 1;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// `struct tpacket_auxdata` from <linux/if_packet.h>: what the kernel says
/// about a frame read with `recvmsg`, including the VLAN tag it took out.
#[repr(C)]
#[derive(Clone, Copy)]
struct TpacketAuxdata {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

/// 8-byte words of control buffer per received frame (one auxdata message).
const CONTROL_WORDS: usize = 8;

/// The 802.1Q tag the kernel took out of a frame read with `recvmsg`.
fn tag_in_control(msg: &libc::msghdr) -> Option<(u16, u16)> {
    // SAFETY: the control buffer was set up by us and filled by the kernel;
    // CMSG_* walk it within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_PACKET
                && (*cmsg).cmsg_type == PACKET_AUXDATA
                && (*cmsg).cmsg_len as usize
                    >= libc::CMSG_LEN(mem::size_of::<TpacketAuxdata>() as u32) as usize
            {
                let aux = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<TpacketAuxdata>());
                if aux.tp_status & TP_STATUS_VLAN_VALID == 0 {
                    return None;
                }
                let tpid = if aux.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 {
                    aux.tp_vlan_tpid
                } else {
                    0x8100
                };
                return Some((tpid, aux.tp_vlan_tci));
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    None
}

/// Puts a tag the kernel took out back into a frame that follows a
/// virtio-net header in `buffer` (`len` bytes used), moving what follows the
/// MAC addresses; the header's offsets move with the frame. Returns the new
/// length, or `None` if the buffer has no room.
fn reinsert_tag(buffer: &mut [u8], len: usize, (tpid, tci): (u16, u16)) -> Option<usize> {
    let macs_end = vnet_hdr::HEADER_LEN + 12;
    if len < macs_end || len + 4 > buffer.len() {
        return None;
    }
    buffer.copy_within(macs_end..len, macs_end + 4);
    buffer[macs_end..macs_end + 2].copy_from_slice(&tpid.to_be_bytes());
    buffer[macs_end + 2..macs_end + 4].copy_from_slice(&tci.to_be_bytes());
    shift_vnet_header(&mut buffer[..vnet_hdr::HEADER_LEN], 4);
    Some(len + 4)
}

/// Moves the frame-relative offsets of a virtio-net header by `delta`.
fn shift_vnet_header(header: &mut [u8], delta: isize) {
    let repr = VnetRepr::parse(&VnetHeader::new_unchecked(&*header)).shifted(delta);
    repr.emit(&mut VnetHeader::new_unchecked(header));
}

/// Socket buffer size asked for (the kernel may cap it without CAP_NET_ADMIN).
const SOCKET_BUFFER: libc::c_int = 4 << 20;

/// Options for opening a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfPacketOptions {
    /// Exchange virtio-net headers (TSO/GSO super-frames, partial checksums).
    pub offloads: bool,
    /// Receive through a memory-mapped ring instead of `recvmmsg` alone.
    pub ring: bool,
}

impl Default for AfPacketOptions {
    fn default() -> Self {
        AfPacketOptions {
            offloads: true,
            ring: true,
        }
    }
}

/// An AF_PACKET socket bound to one device.
pub struct AfPacketPort {
    // Declared before `fd` so that the ring is unmapped before the socket closes.
    ring: Option<RxRing>,
    fd: OwnedFd,
    info: PortInfo,
    rx_iovecs: Vec<libc::iovec>,
    rx_msgs: Vec<libc::mmsghdr>,
    /// Room for each received frame's `tpacket_auxdata` (its VLAN tag).
    rx_control: Vec<[u64; CONTROL_WORDS]>,
    tx_iovecs: Vec<libc::iovec>,
    tx_msgs: Vec<libc::mmsghdr>,
    dropped: u64,
}

// SAFETY: the raw pointers inside the iovec/mmsghdr scratch arrays are only
// meaningful during a single recv/send call, where they are rebuilt from
// borrowed slices; the port owns no shared state.
unsafe impl Send for AfPacketPort {}

impl std::fmt::Debug for AfPacketPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfPacketPort")
            .field("fd", &self.fd.as_raw_fd())
            .field("info", &self.info)
            .finish()
    }
}

use crate::port::sys::check;

fn set_int_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
    what: &str,
) -> io::Result<()> {
    crate::port::sys::set_option(fd, level, name, &value, what)
}

/// Makes `msg` a one-buffer message over `iov` (no address, no control data).
fn point_at(msg: &mut libc::mmsghdr, iov: &mut libc::iovec) {
    msg.msg_hdr.msg_iov = iov;
    msg.msg_hdr.msg_iovlen = 1;
    msg.msg_hdr.msg_name = std::ptr::null_mut();
    msg.msg_hdr.msg_namelen = 0;
    msg.msg_hdr.msg_control = std::ptr::null_mut();
    msg.msg_hdr.msg_controllen = 0;
    msg.msg_hdr.msg_flags = 0;
    msg.msg_len = 0;
}

/// Reads the MAC address and MTU of `name` with ioctls on `fd`.
fn device_facts(fd: RawFd, name: &CString) -> io::Result<(EthernetAddress, u32)> {
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    let bytes = name.as_bytes_with_nul();
    if bytes.len() > req.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "device name too long",
        ));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR fills ifr_hwaddr of a valid ifreq.
    check(
        unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut req) },
        "SIOCGIFHWADDR",
    )?;
    // SAFETY: the kernel wrote a sockaddr into the union.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    let mac = EthernetAddress([
        data[0] as u8,
        data[1] as u8,
        data[2] as u8,
        data[3] as u8,
        data[4] as u8,
        data[5] as u8,
    ]);
    // SAFETY: SIOCGIFMTU fills ifr_mtu of a valid ifreq.
    check(
        unsafe { libc::ioctl(fd, libc::SIOCGIFMTU, &mut req) },
        "SIOCGIFMTU",
    )?;
    // SAFETY: the kernel wrote the MTU into the union.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    Ok((mac, u32::try_from(mtu).unwrap_or(1500)))
}

impl AfPacketPort {
    /// Opens a port on device `name` in the calling thread's network namespace.
    pub fn open(name: &str, options: AfPacketOptions) -> io::Result<AfPacketPort> {
        let cname = CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "device name has a NUL"))?;
        // Protocol 0 at creation: the socket receives nothing until bound to
        // the device, so no frame of another device slips in before `bind`.
        // SAFETY: plain socket(2) call.
        let raw = check(
            unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    0,
                )
            },
            "socket(AF_PACKET)",
        )?;
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let raw = fd.as_raw_fd();
        // SAFETY: if_nametoindex reads a NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no device {name} in this network namespace"),
            ));
        }
        if options.offloads {
            set_int_option(raw, libc::SOL_PACKET, PACKET_VNET_HDR, 1, "PACKET_VNET_HDR")?;
        }
        set_int_option(
            raw,
            libc::SOL_PACKET,
            PACKET_IGNORE_OUTGOING,
            1,
            "PACKET_IGNORE_OUTGOING",
        )?;
        // Frames read with recvmsg lose their 802.1Q tag to the kernel; the
        // auxdata says what it was.
        set_int_option(raw, libc::SOL_PACKET, PACKET_AUXDATA, 1, "PACKET_AUXDATA")?;
        // Straight to the driver: a veth has no queue worth passing through.
        set_int_option(
            raw,
            libc::SOL_PACKET,
            PACKET_QDISC_BYPASS,
            1,
            "PACKET_QDISC_BYPASS",
        )?;
        let ring = if options.ring {
            Some(setup_ring(raw)?)
        } else {
            None
        };
        // Larger buffers absorb bursts; *FORCE needs CAP_NET_ADMIN, fall back quietly.
        for (force, plain) in [
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
        ] {
            if set_int_option(raw, libc::SOL_SOCKET, force, SOCKET_BUFFER, "buffer").is_err() {
                let _ = set_int_option(raw, libc::SOL_SOCKET, plain, SOCKET_BUFFER, "buffer");
            }
        }
        // SAFETY: sockaddr_ll is plain data.
        let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as libc::c_ushort;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = ifindex as libc::c_int;
        // SAFETY: `addr` is a valid sockaddr_ll of the size passed.
        check(
            unsafe {
                libc::bind(
                    raw,
                    (&addr as *const libc::sockaddr_ll).cast(),
                    mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            },
            "bind",
        )?;
        // Promiscuous for as long as the socket lives.
        // SAFETY: packet_mreq is plain data.
        let mut mreq: libc::packet_mreq = unsafe { mem::zeroed() };
        mreq.mr_ifindex = ifindex as libc::c_int;
        mreq.mr_type = PACKET_MR_PROMISC;
        // SAFETY: `mreq` outlives the call and its size is passed.
        check(
            unsafe {
                libc::setsockopt(
                    raw,
                    libc::SOL_PACKET,
                    PACKET_ADD_MEMBERSHIP,
                    (&mreq as *const libc::packet_mreq).cast(),
                    mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
                )
            },
            "PACKET_ADD_MEMBERSHIP",
        )?;
        let (hw_addr, mtu) = device_facts(raw, &cname)?;
        let empty_iovec = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        Ok(AfPacketPort {
            ring,
            fd,
            info: PortInfo {
                name: name.to_string(),
                hw_addr,
                mtu,
                offloads: options.offloads,
                tunnel_local: None,
            },
            rx_iovecs: vec![empty_iovec; BATCH],
            // SAFETY: mmsghdr is plain data; zeroed is valid.
            rx_msgs: (0..BATCH).map(|_| unsafe { mem::zeroed() }).collect(),
            rx_control: vec![[0; CONTROL_WORDS]; BATCH],
            tx_iovecs: vec![empty_iovec; BATCH],
            // SAFETY: as above.
            tx_msgs: (0..BATCH).map(|_| unsafe { mem::zeroed() }).collect(),
            dropped: 0,
        })
    }
}

impl AfPacketPort {
    /// Reads up to `want` frames queued on the socket into the batch's own
    /// buffers (after any frames already in the batch).
    fn recv_queue(&mut self, batch: &mut RxBatch, want: usize) -> io::Result<usize> {
        let first = batch.len();
        let slots = want.min(BATCH).min(batch.capacity() - first);
        if slots == 0 {
            return Ok(0);
        }
        // Without virtio-net headers the frame goes after a blank header slot.
        let skip = if self.info.offloads {
            0
        } else {
            vnet_hdr::HEADER_LEN
        };
        for i in 0..slots {
            let buffer = batch.storage_mut(first + i);
            self.rx_iovecs[i] = libc::iovec {
                iov_base: buffer[skip..].as_mut_ptr().cast(),
                iov_len: buffer.len() - skip,
            };
            point_at(&mut self.rx_msgs[i], &mut self.rx_iovecs[i]);
            self.rx_msgs[i].msg_hdr.msg_control = self.rx_control[i].as_mut_ptr().cast();
            self.rx_msgs[i].msg_hdr.msg_controllen = mem::size_of::<[u64; CONTROL_WORDS]>() as _;
        }
        // SAFETY: rx_msgs[..slots] point at iovecs that point into the
        // batch's buffers, alive and exclusively borrowed for this call.
        let n = unsafe { super::sys::recv_some(self.fd.as_raw_fd(), &mut self.rx_msgs[..slots])? };
        let mut kept = 0;
        for i in 0..n {
            let mut len = self.rx_msgs[i].msg_len as usize + skip;
            if self.rx_msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0
                || len < vnet_hdr::HEADER_LEN + 14
            {
                self.dropped += 1;
                continue;
            }
            if !self.info.offloads {
                VnetRepr::PLAIN.emit(&mut VnetHeader::new_unchecked(
                    &mut batch.storage_mut(first + i)[..vnet_hdr::HEADER_LEN],
                ));
            }
            if let Some(tag) = tag_in_control(&self.rx_msgs[i].msg_hdr) {
                match reinsert_tag(batch.storage_mut(first + i), len, tag) {
                    Some(tagged) => len = tagged,
                    None => {
                        self.dropped += 1;
                        continue;
                    }
                }
            }
            let slot = first + kept;
            if slot != first + i {
                let (lo, hi) = (first + kept, first + i);
                let source = batch.storage_mut(hi)[..len].to_vec();
                batch.storage_mut(lo)[..len].copy_from_slice(&source);
            }
            batch.push_stored(slot, len);
            kept += 1;
        }
        Ok(kept)
    }

    /// Takes the frames the kernel put in the ring, in order; a slot marked
    /// `TP_STATUS_COPY` stands for a frame queued whole on the socket.
    fn recv_ring(&mut self, batch: &mut RxBatch) -> io::Result<usize> {
        let vnet_len = if self.info.offloads {
            vnet_hdr::HEADER_LEN
        } else {
            0
        };
        let capacity = batch.capacity();
        while batch.len() < capacity {
            let Some(ring) = &mut self.ring else { break };
            let index = ring.head;
            let status = ring
                .status(index)
                .load(std::sync::atomic::Ordering::Acquire);
            if status & TP_STATUS_USER == 0 {
                break;
            }
            ring.head = (index + 1) % ring.frames;
            let len = ring.read_u32(index, ring_field::LEN) as usize;
            let snaplen = ring.read_u32(index, ring_field::SNAPLEN) as usize;
            let mac = usize::from(ring.read_u16(index, ring_field::MAC));
            if status & TP_STATUS_COPY != 0 {
                ring.give_back(index);
                if self.recv_queue(batch, 1)? == 0 {
                    self.dropped += 1;
                }
                continue;
            }
            let start = mac.wrapping_sub(vnet_len);
            if snaplen < len
                || snaplen < 14
                || mac < vnet_len
                || start < ring_field::END
                || mac + snaplen > RING_FRAME_SIZE as usize
            {
                ring.give_back(index);
                self.dropped += 1;
                continue;
            }
            let slot = ring.slot(index);
            let mut frame_start = start;
            let mut total = vnet_len + snaplen;
            if status & TP_STATUS_VLAN_VALID != 0 {
                // The kernel took the 802.1Q tag out of the frame: put it back.
                let tpid = if status & TP_STATUS_VLAN_TPID_VALID != 0 {
                    ring.read_u16(index, ring_field::VLAN_TPID)
                } else {
                    0x8100
                };
                let tci = ring.read_u16(index, ring_field::VLAN_TCI);
                if start - 4 < ring_field::END {
                    ring.give_back(index);
                    self.dropped += 1;
                    continue;
                }
                // SAFETY: [start-4, start+vnet_len+snaplen) lies inside the
                // slot (checked above) and belongs to us until given back.
                unsafe {
                    std::ptr::copy(slot.add(start), slot.add(start - 4), vnet_len + 12);
                    let tag = slot.add(start - 4 + vnet_len + 12);
                    std::ptr::copy_nonoverlapping(tpid.to_be_bytes().as_ptr(), tag, 2);
                    std::ptr::copy_nonoverlapping(tci.to_be_bytes().as_ptr(), tag.add(2), 2);
                }
                frame_start = start - 4;
                total += 4;
                if vnet_len > 0 {
                    // The kernel's offsets count from the untagged frame.
                    // SAFETY: the header lies inside the slot, ours until given back.
                    let header =
                        unsafe { std::slice::from_raw_parts_mut(slot.add(frame_start), vnet_len) };
                    shift_vnet_header(header, 4);
                }
            }
            if vnet_len == 0 {
                // A port without offloads still hands frames on behind a
                // (plain) header; there is headroom for one in the slot.
                if frame_start < ring_field::END + vnet_hdr::HEADER_LEN {
                    ring.give_back(index);
                    self.dropped += 1;
                    continue;
                }
                frame_start -= vnet_hdr::HEADER_LEN;
                total += vnet_hdr::HEADER_LEN;
                // SAFETY: the header bytes lie inside the slot, before the frame.
                let header = unsafe {
                    std::slice::from_raw_parts_mut(slot.add(frame_start), vnet_hdr::HEADER_LEN)
                };
                VnetRepr::PLAIN.emit(&mut VnetHeader::new_unchecked(header));
            }
            // SAFETY: `total` bytes from `frame_start` lie inside this slot,
            // which stays ours until `release` gives it back.
            unsafe {
                batch.push_ring(
                    slot.add(frame_start),
                    total,
                    frame_start - ring_field::END,
                    index,
                )
            };
        }
        Ok(batch.len())
    }
}

impl Port for AfPacketPort {
    fn info(&self) -> &PortInfo {
        &self.info
    }

    fn fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn recv_batch(&mut self, batch: &mut RxBatch) -> io::Result<usize> {
        batch.clear();
        if self.ring.is_some() {
            self.recv_ring(batch)
        } else {
            let got = self.recv_queue(batch, batch.capacity())?;
            Ok(got)
        }
    }

    fn release(&mut self, batch: &mut RxBatch) {
        if let Some(ring) = &self.ring {
            for slot in batch.ring_slots() {
                ring.give_back(slot);
            }
        }
        batch.clear();
    }

    fn send_batch(&mut self, frames: &mut dyn Iterator<Item = TxFrame<'_>>) -> io::Result<usize> {
        let mut sent_total = 0;
        loop {
            let mut count = 0;
            for frame in (&mut *frames).take(BATCH) {
                self.tx_iovecs[count] = libc::iovec {
                    iov_base: frame.data.as_ptr() as *mut libc::c_void,
                    iov_len: frame.data.len(),
                };
                point_at(&mut self.tx_msgs[count], &mut self.tx_iovecs[count]);
                count += 1;
            }
            if count == 0 {
                return Ok(sent_total);
            }
            // SAFETY: tx_msgs[..count] point at iovecs that point into
            // frames borrowed for 'a, alive during this call.
            let (sent, refused) = unsafe {
                crate::port::sys::send_all(self.fd.as_raw_fd(), &mut self.tx_msgs[..count])
            };
            sent_total += sent;
            // No room, or a frame the kernel refused: dropped.
            self.dropped += refused;
        }
    }

    fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FrameBuilder;
    use crate::wire::vnet_hdr::FLAG_NEEDS_CSUM;

    #[test]
    fn a_tag_goes_back_between_the_addresses_and_the_type_and_offsets_follow() {
        let frame = FrameBuilder::tcp4("10.0.0.1:1000", "10.0.0.2:80", b"data").build();
        let mut buffer = vec![0u8; 200];
        let header = VnetRepr {
            flags: FLAG_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 16,
            ..VnetRepr::PLAIN
        };
        header.emit(&mut VnetHeader::new_unchecked(
            &mut buffer[..vnet_hdr::HEADER_LEN],
        ));
        let len = vnet_hdr::HEADER_LEN + frame.len();
        buffer[vnet_hdr::HEADER_LEN..len].copy_from_slice(&frame);
        let tagged = reinsert_tag(&mut buffer, len, (0x8100, 0x2000 | 10)).unwrap();
        assert_eq!(tagged, len + 4);
        let out = &buffer[vnet_hdr::HEADER_LEN..tagged];
        assert_eq!(&out[..12], &frame[..12]);
        assert_eq!(&out[12..16], &[0x81, 0x00, 0x20, 10]);
        assert_eq!(&out[16..], &frame[12..]);
        let moved = VnetRepr::parse(&VnetHeader::new_unchecked(&buffer[..vnet_hdr::HEADER_LEN]));
        assert_eq!(moved.csum_start, 38, "the TCP header is 4 bytes further in");
        assert_eq!(moved.csum_offset, 16);
        assert_eq!(
            reinsert_tag(&mut buffer[..tagged + 3], tagged, (0x8100, 1)),
            None,
            "no room"
        );
    }
}
