//! A VXLAN tunnel endpoint (RFC 7348) as a port: frames sent to it are
//! wrapped in UDP/VXLAN towards the endpoint their actions chose; frames that
//! arrive are unwrapped and carry their VNI and source into the pipeline.
//! Receives on a UDP socket bound to port 4789 (`recvmmsg`); sends through a
//! raw UDP socket (`sendmmsg`) so that each inner flow gets its own source
//! port, as RFC 7348 §5 recommends for underlay load balancing. The kernel adds
//! the outer IP header, routes and resolves the next hop. Both sockets live in
//! the network namespace of the calling thread (the hypervisor's).

use super::{BATCH, Port, PortInfo, RxBatch, TxFrame};
use crate::flow::FlowKey;
use crate::gso;
use crate::pipeline::TunnelMeta;
use crate::wire::{EthernetAddress, VnetHeader, VnetRepr, VxlanPacket, VxlanRepr, vnet_hdr, vxlan};
use std::io;
use std::mem;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Outer UDP and VXLAN headers.
const ENCAP_LEN: usize = 8 + vxlan::HEADER_LEN;

/// Socket buffer size asked for.
const SOCKET_BUFFER: libc::c_int = 8 << 20;

/// The UDP source port of an inner frame: a hash of its flow, within the
/// dynamic range 49152-65535 (RFC 7348 §5).
pub fn source_port(inner: &[u8]) -> u16 {
    let hash = match FlowKey::extract(inner, 0) {
        Some(extracted) => extracted
            .key
            .words
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, w| {
                (h ^ w).wrapping_mul(0x0100_0000_01b3)
            }),
        None => 0,
    };
    49152 + ((hash ^ (hash >> 32)) % 16384) as u16
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

fn check(ret: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if ret < 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(err.kind(), format!("{what}: {err}")));
    }
    Ok(ret)
}

fn set_option<T>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
    what: &str,
) -> io::Result<()> {
    // SAFETY: `value` outlives the call and its size is passed.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    };
    check(ret, what).map(|_| ())
}

fn socket(kind: libc::c_int, protocol: libc::c_int, what: &str) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call.
    let raw = check(
        unsafe {
            libc::socket(
                libc::AF_INET,
                kind | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                protocol,
            )
        },
        what,
    )?;
    // SAFETY: `raw` is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn sockaddr(addr: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data.
    let mut sa: libc::sockaddr_in = unsafe { mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = port.to_be();
    sa.sin_addr.s_addr = u32::from(addr).to_be();
    sa
}

/// A VXLAN tunnel endpoint.
pub struct VxlanPort {
    rx: OwnedFd,
    tx: OwnedFd,
    info: PortInfo,
    dst_port: u16,
    rx_iovecs: Vec<libc::iovec>,
    rx_addrs: Vec<libc::sockaddr_in>,
    rx_msgs: Vec<libc::mmsghdr>,
    tx_headers: Vec<[u8; ENCAP_LEN]>,
    tx_iovecs: Vec<[libc::iovec; 2]>,
    tx_addrs: Vec<libc::sockaddr_in>,
    tx_msgs: Vec<libc::mmsghdr>,
    dropped: u64,
}

// SAFETY: the raw pointers in the scratch arrays are only meaningful during
// one recv/send call, where they are rebuilt from live buffers.
unsafe impl Send for VxlanPort {}

impl std::fmt::Debug for VxlanPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VxlanPort")
            .field("info", &self.info)
            .finish()
    }
}

impl VxlanPort {
    /// Opens an endpoint with local address `local`, on UDP port `dst_port`
    /// (4789 unless a peer uses another), in the calling thread's namespace.
    /// `mtu` is the largest inner frame it carries without fragmenting.
    pub fn open(local: Ipv4Addr, dst_port: u16, mtu: u32) -> io::Result<VxlanPort> {
        let rx = socket(libc::SOCK_DGRAM, 0, "socket(UDP)")?;
        set_option(
            rx.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &1 as &libc::c_int,
            "SO_REUSEADDR",
        )?;
        if set_option(
            rx.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &SOCKET_BUFFER,
            "SO_RCVBUFFORCE",
        )
        .is_err()
        {
            let _ = set_option(
                rx.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &SOCKET_BUFFER,
                "SO_RCVBUF",
            );
        }
        // Bound to any address: a peer may send to any of the host's addresses.
        let bind_to = sockaddr(Ipv4Addr::UNSPECIFIED, dst_port);
        // SAFETY: `bind_to` is a valid sockaddr_in of the size passed.
        check(
            unsafe {
                libc::bind(
                    rx.as_raw_fd(),
                    (&bind_to as *const libc::sockaddr_in).cast(),
                    mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            },
            &format!("bind UDP port {dst_port} for VXLAN"),
        )?;
        let tx = socket(libc::SOCK_RAW, libc::IPPROTO_UDP, "socket(SOCK_RAW, UDP)")?;
        // A raw UDP socket would also queue a copy of every UDP packet the host
        // receives: a filter that accepts nothing keeps it send-only.
        let reject_all = [libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0,
        }];
        let program = libc::sock_fprog {
            len: 1,
            filter: reject_all.as_ptr() as *mut libc::sock_filter,
        };
        set_option(
            tx.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            &program,
            "SO_ATTACH_FILTER",
        )?;
        // Let the kernel fragment an outer packet rather than drop it (no
        // silent black hole when an inner frame is larger than planned).
        set_option(
            tx.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            &libc::IP_PMTUDISC_DONT,
            "IP_MTU_DISCOVER",
        )?;
        if set_option(
            tx.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            &SOCKET_BUFFER,
            "SO_SNDBUFFORCE",
        )
        .is_err()
        {
            let _ = set_option(
                tx.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                &SOCKET_BUFFER,
                "SO_SNDBUF",
            );
        }
        let empty = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        Ok(VxlanPort {
            rx,
            tx,
            info: PortInfo {
                name: format!("vxlan:{local}"),
                hw_addr: EthernetAddress([0; 6]),
                mtu,
                offloads: false,
                tunnel_local: Some(local),
            },
            dst_port,
            rx_iovecs: vec![empty; BATCH],
            rx_addrs: vec![sockaddr(Ipv4Addr::UNSPECIFIED, 0); BATCH],
            // SAFETY: mmsghdr is plain data; zeroed is valid.
            rx_msgs: (0..BATCH).map(|_| unsafe { mem::zeroed() }).collect(),
            tx_headers: vec![[0u8; ENCAP_LEN]; BATCH],
            tx_iovecs: vec![[empty; 2]; BATCH],
            tx_addrs: vec![sockaddr(Ipv4Addr::UNSPECIFIED, 0); BATCH],
            // SAFETY: as above.
            tx_msgs: (0..BATCH).map(|_| unsafe { mem::zeroed() }).collect(),
            dropped: 0,
        })
    }

    fn flush(&mut self, count: usize) -> usize {
        let mut offset = 0;
        let mut sent = 0;
        while offset < count {
            // SAFETY: tx_msgs[offset..count] point at iovecs and addresses in
            // this port's scratch arrays and at frames borrowed for the
            // current call; the kernel only reads them.
            let n = unsafe {
                libc::sendmmsg(
                    self.tx.as_raw_fd(),
                    self.tx_msgs.as_mut_ptr().add(offset),
                    (count - offset) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                offset += n as usize;
                sent += n as usize;
            } else if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                self.dropped += 1;
                offset += 1;
            }
        }
        sent
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
        let slots = batch.capacity().min(BATCH);
        // The datagram (VXLAN header, inner frame) lands so that the inner
        // frame starts right after a virtio-net header's worth of bytes.
        let skip = vnet_hdr::HEADER_LEN - vxlan::HEADER_LEN;
        for i in 0..slots {
            let buffer = batch.storage_mut(i);
            self.rx_iovecs[i] = libc::iovec {
                iov_base: buffer[skip..].as_mut_ptr().cast(),
                iov_len: buffer.len() - skip,
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
        // and at this port's address slots, all alive for the call.
        let n = unsafe {
            libc::recvmmsg(
                self.rx.as_raw_fd(),
                self.rx_msgs.as_mut_ptr(),
                slots as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(err),
            };
        }
        let mut kept = 0;
        for i in 0..n as usize {
            let len = self.rx_msgs[i].msg_len as usize;
            let truncated = self.rx_msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let src = Ipv4Addr::from(u32::from_be(self.rx_addrs[i].sin_addr.s_addr));
            let buffer = batch.storage_mut(i);
            let datagram = &buffer[skip..skip + len.min(buffer.len() - skip)];
            let vni = match VxlanPacket::new_checked(datagram) {
                Ok(packet) if !truncated && packet.payload().len() >= 14 => packet.vni(),
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
            // The header replaces the VXLAN header, which has been read.
            VnetRepr::PLAIN.emit(&mut VnetHeader::new_unchecked(
                &mut buffer[..vnet_hdr::HEADER_LEN],
            ));
            // Frames stay in their slots; a dropped datagram leaves its slot unused.
            batch.push_stored_at(
                i,
                0,
                vnet_hdr::HEADER_LEN + inner_len,
                Some(TunnelMeta { vni, src }),
            );
            kept += 1;
        }
        Ok(kept)
    }

    fn send_batch(&mut self, frames: &mut dyn Iterator<Item = TxFrame<'_>>) -> io::Result<usize> {
        let mut sent = 0;
        let mut count = 0;
        for frame in frames {
            let Some(target) = frame.tunnel else {
                // A frame sent to the tunnel without a destination goes nowhere.
                self.dropped += 1;
                continue;
            };
            let inner = frame.data;
            encapsulation_headers(
                &mut self.tx_headers[count],
                target.vni,
                source_port(inner),
                self.dst_port,
                inner.len(),
            );
            self.tx_addrs[count] = sockaddr(target.dst, 0);
            self.tx_iovecs[count] = [
                libc::iovec {
                    iov_base: self.tx_headers[count].as_mut_ptr().cast(),
                    iov_len: ENCAP_LEN,
                },
                libc::iovec {
                    iov_base: inner.as_ptr() as *mut libc::c_void,
                    iov_len: inner.len(),
                },
            ];
            let msg = &mut self.tx_msgs[count];
            msg.msg_hdr.msg_iov = self.tx_iovecs[count].as_mut_ptr();
            msg.msg_hdr.msg_iovlen = 2;
            msg.msg_hdr.msg_name = (&mut self.tx_addrs[count] as *mut libc::sockaddr_in).cast();
            msg.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            msg.msg_hdr.msg_control = std::ptr::null_mut();
            msg.msg_hdr.msg_controllen = 0;
            msg.msg_hdr.msg_flags = 0;
            count += 1;
            if count == BATCH {
                sent += self.flush(count);
                count = 0;
            }
        }
        if count > 0 {
            sent += self.flush(count);
        }
        Ok(sent)
    }

    fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FrameBuilder;

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

    #[test]
    fn source_ports_hash_the_inner_flow_into_the_dynamic_range() {
        let a = FrameBuilder::tcp4("10.0.0.1:1000", "10.0.0.2:80", b"x").build();
        let a_again = FrameBuilder::tcp4("10.0.0.1:1000", "10.0.0.2:80", b"other payload").build();
        let mut ports = std::collections::HashSet::new();
        for sport in 1000..1200 {
            let frame =
                FrameBuilder::tcp4(&format!("10.0.0.1:{sport}"), "10.0.0.2:80", b"x").build();
            let port = source_port(&frame);
            assert!((49152..=65535).contains(&port));
            ports.insert(port);
        }
        assert_eq!(
            source_port(&a),
            source_port(&a_again),
            "same flow, same port"
        );
        assert!(
            ports.len() > 150,
            "flows spread over the range: {} distinct of 200",
            ports.len()
        );
        assert!((49152..=65535).contains(&source_port(&[0u8; 3])));
    }
}
