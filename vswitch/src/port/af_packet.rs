//! AF_PACKET port on a network device (a veth end): `recvmmsg`/`sendmmsg` in
//! batches into reused buffers, with `PACKET_VNET_HDR` so that TSO/GSO
//! super-frames and partial checksums pass through untouched, and
//! `PACKET_IGNORE_OUTGOING` so that the switch does not see its own
//! transmissions. The socket is created in whatever network namespace the
//! calling thread is in (see `netns::run_in`).

use super::{BATCH, Port, PortInfo, RxBatch};
use crate::wire::{EthernetAddress, VnetHeader, VnetRepr, vnet_hdr};
use std::ffi::CString;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// From <linux/if_packet.h>; not all are in the libc crate.
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_MR_PROMISC: libc::c_ushort = 1;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// Socket buffer size asked for (the kernel may cap it without CAP_NET_ADMIN).
const SOCKET_BUFFER: libc::c_int = 4 << 20;

/// Options for opening a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfPacketOptions {
    /// Exchange virtio-net headers (TSO/GSO super-frames, partial checksums).
    pub offloads: bool,
}

impl Default for AfPacketOptions {
    fn default() -> Self {
        AfPacketOptions { offloads: true }
    }
}

/// An AF_PACKET socket bound to one device.
pub struct AfPacketPort {
    fd: OwnedFd,
    info: PortInfo,
    rx_iovecs: Vec<libc::iovec>,
    rx_msgs: Vec<libc::mmsghdr>,
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

fn check(ret: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if ret < 0 {
        let err = io::Error::last_os_error();
        Err(io::Error::new(err.kind(), format!("{what}: {err}")))
    } else {
        Ok(ret)
    }
}

fn set_int_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
    what: &str,
) -> io::Result<()> {
    // SAFETY: `value` outlives the call and its size is passed.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    check(ret, what).map(|_| ())
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
        // Straight to the driver: a veth has no queue worth passing through.
        set_int_option(
            raw,
            libc::SOL_PACKET,
            PACKET_QDISC_BYPASS,
            1,
            "PACKET_QDISC_BYPASS",
        )?;
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
            fd,
            info: PortInfo {
                name: name.to_string(),
                hw_addr,
                mtu,
                offloads: options.offloads,
            },
            rx_iovecs: vec![empty_iovec; BATCH],
            // SAFETY: mmsghdr is plain data; zeroed is valid.
            rx_msgs: (0..BATCH).map(|_| unsafe { mem::zeroed() }).collect(),
            tx_iovecs: vec![empty_iovec; BATCH],
            // SAFETY: as above.
            tx_msgs: (0..BATCH).map(|_| unsafe { mem::zeroed() }).collect(),
            dropped: 0,
        })
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
        let slots = batch.capacity().min(BATCH);
        // Without virtio-net headers the frame goes after a blank header slot.
        let skip = if self.info.offloads {
            0
        } else {
            vnet_hdr::HEADER_LEN
        };
        for (i, slot) in batch.slots_mut().iter_mut().take(slots).enumerate() {
            self.rx_iovecs[i] = libc::iovec {
                iov_base: slot[skip..].as_mut_ptr().cast(),
                iov_len: slot.len() - skip,
            };
            let msg = &mut self.rx_msgs[i];
            msg.msg_hdr.msg_iov = &mut self.rx_iovecs[i];
            msg.msg_hdr.msg_iovlen = 1;
            msg.msg_hdr.msg_name = std::ptr::null_mut();
            msg.msg_hdr.msg_namelen = 0;
            msg.msg_hdr.msg_control = std::ptr::null_mut();
            msg.msg_hdr.msg_controllen = 0;
            msg.msg_hdr.msg_flags = 0;
            msg.msg_len = 0;
        }
        // SAFETY: rx_msgs[..slots] point at iovecs that point into `batch`'s
        // buffers, all alive and exclusively borrowed for this call.
        let n = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                self.rx_msgs.as_mut_ptr(),
                slots as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            batch.set_received(0);
            return match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(err),
            };
        }
        let n = n as usize;
        let mut kept = 0;
        for i in 0..n {
            let len = self.rx_msgs[i].msg_len as usize + skip;
            if self.rx_msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0
                || len < vnet_hdr::HEADER_LEN + 14
            {
                self.dropped += 1;
                continue;
            }
            if kept != i {
                let (lo, hi) = batch.slots_mut().split_at_mut(i);
                lo[kept][..len].copy_from_slice(&hi[0][..len]);
            }
            if !self.info.offloads {
                VnetRepr::PLAIN.emit(&mut VnetHeader::new_unchecked(
                    &mut batch.slots_mut()[kept][..vnet_hdr::HEADER_LEN],
                ));
            }
            batch.set_len(kept, len);
            kept += 1;
        }
        batch.set_received(kept);
        Ok(kept)
    }

    fn send_batch<'a>(&mut self, frames: &mut dyn Iterator<Item = &'a [u8]>) -> io::Result<usize> {
        let mut sent_total = 0;
        loop {
            let mut count = 0;
            for frame in (&mut *frames).take(BATCH) {
                self.tx_iovecs[count] = libc::iovec {
                    iov_base: frame.as_ptr() as *mut libc::c_void,
                    iov_len: frame.len(),
                };
                let msg = &mut self.tx_msgs[count];
                msg.msg_hdr.msg_iov = &mut self.tx_iovecs[count];
                msg.msg_hdr.msg_iovlen = 1;
                msg.msg_hdr.msg_name = std::ptr::null_mut();
                msg.msg_hdr.msg_namelen = 0;
                msg.msg_hdr.msg_control = std::ptr::null_mut();
                msg.msg_hdr.msg_controllen = 0;
                msg.msg_hdr.msg_flags = 0;
                count += 1;
            }
            if count == 0 {
                return Ok(sent_total);
            }
            let mut offset = 0;
            while offset < count {
                // SAFETY: tx_msgs[offset..count] point at iovecs that point
                // into frames borrowed for 'a, alive during this call; the
                // kernel only reads them.
                let n = unsafe {
                    libc::sendmmsg(
                        self.fd.as_raw_fd(),
                        self.tx_msgs.as_mut_ptr().add(offset),
                        (count - offset) as libc::c_uint,
                        libc::MSG_DONTWAIT,
                    )
                };
                if n > 0 {
                    offset += n as usize;
                    sent_total += n as usize;
                    continue;
                }
                if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                    // No room, or a frame the kernel refused: drop it and go on.
                    self.dropped += 1;
                    offset += 1;
                }
            }
        }
    }

    fn dropped(&self) -> u64 {
        self.dropped
    }
}
