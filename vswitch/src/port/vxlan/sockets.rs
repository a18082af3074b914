//! The sockets of a tunnel endpoint: the receiving UDP socket, the raw
//! socket that sends single packets with any source port, and the pool of
//! UDP sockets bound to source ports in the dynamic range that send whole
//! segmented super-frames at once (UDP GSO).

use std::io;
use std::mem;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Socket buffer size asked for.
const SOCKET_BUFFER: libc::c_int = 8 << 20;

/// `UDP_SEGMENT` and `UDP_GRO` from <linux/udp.h>.
pub(super) const UDP_SEGMENT: libc::c_int = 103;
pub(super) const UDP_GRO: libc::c_int = 104;

/// First port of the dynamic range (RFC 6335), where VXLAN source ports go
/// (RFC 7348 §5).
pub(super) const DYNAMIC_PORTS: u16 = 49152;

/// Source ports (and their sockets) flows are spread over.
pub(super) const POOL_SIZE: usize = 64;

pub(super) use crate::port::sys::{check, set_option};

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

pub(super) fn sockaddr(addr: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data.
    let mut sa: libc::sockaddr_in = unsafe { mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = port.to_be();
    sa.sin_addr.s_addr = u32::from(addr).to_be();
    sa
}

/// Asks for big socket buffers (forcing past the limits when allowed).
fn big_buffers(fd: RawFd, send: bool) {
    let (force, plain, what) = if send {
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, "SO_SNDBUF")
    } else {
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, "SO_RCVBUF")
    };
    if set_option(fd, libc::SOL_SOCKET, force, &SOCKET_BUFFER, what).is_err() {
        let _ = set_option(fd, libc::SOL_SOCKET, plain, &SOCKET_BUFFER, what);
    }
}

/// Makes a socket send-only: a filter that accepts nothing keeps the kernel
/// from queueing packets on it.
fn accept_nothing(fd: RawFd) -> io::Result<()> {
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
        fd,
        libc::SOL_SOCKET,
        libc::SO_ATTACH_FILTER,
        &program,
        "SO_ATTACH_FILTER",
    )
}

/// Lets the kernel fragment an outer packet rather than drop it: no silent
/// black hole when an inner frame is larger than planned.
fn fragment_when_needed(fd: RawFd) -> io::Result<()> {
    set_option(
        fd,
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        &libc::IP_PMTUDISC_DONT,
        "IP_MTU_DISCOVER",
    )
}

fn bind(fd: RawFd, addr: Ipv4Addr, port: u16) -> io::Result<()> {
    let bind_to = sockaddr(addr, port);
    // SAFETY: `bind_to` is a valid sockaddr_in of the size passed.
    let ret = unsafe {
        libc::bind(
            fd,
            (&bind_to as *const libc::sockaddr_in).cast(),
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    check(ret, &format!("bind UDP port {port}")).map(|_| ())
}

/// The receiving socket: UDP port `port` on every address, with GRO so that
/// a segmented super-frame arrives in one piece when the sender sent it so.
/// Returns the socket and whether GRO is on.
pub(super) fn receiver(port: u16) -> io::Result<(OwnedFd, bool)> {
    let rx = socket(libc::SOCK_DGRAM, 0, "socket(UDP)")?;
    let fd = rx.as_raw_fd();
    set_option(
        fd,
        libc::SOL_SOCKET,
        libc::SO_REUSEADDR,
        &1 as &libc::c_int,
        "SO_REUSEADDR",
    )?;
    big_buffers(fd, false);
    let gro = set_option(fd, libc::SOL_UDP, UDP_GRO, &1 as &libc::c_int, "UDP_GRO").is_ok();
    // Bound to any address: a peer may send to any of the host's addresses.
    bind(fd, Ipv4Addr::UNSPECIFIED, port)
        .map_err(|e| io::Error::new(e.kind(), format!("{e} for VXLAN")))?;
    Ok((rx, gro))
}

/// The raw UDP socket single packets leave through, with the UDP header
/// (and so the source port) written by the caller.
pub(super) fn raw_sender() -> io::Result<OwnedFd> {
    let tx = socket(libc::SOCK_RAW, libc::IPPROTO_UDP, "socket(SOCK_RAW, UDP)")?;
    accept_nothing(tx.as_raw_fd())?;
    fragment_when_needed(tx.as_raw_fd())?;
    big_buffers(tx.as_raw_fd(), true);
    Ok(tx)
}

/// UDP sockets bound to source ports spread over the dynamic range; a flow's
/// hash picks one, and every packet of the flow leaves with its port whether
/// it goes alone (raw socket) or in a segmented batch (this socket).
pub(super) struct SourcePorts {
    sockets: Vec<(OwnedFd, u16)>,
}

impl SourcePorts {
    /// Binds `POOL_SIZE` sockets, each to the first free port of its share
    /// of the dynamic range. Fails only if no socket can be made at all.
    pub(super) fn bind() -> io::Result<SourcePorts> {
        let share = (u16::MAX - DYNAMIC_PORTS) as usize / POOL_SIZE;
        let mut sockets = Vec::with_capacity(POOL_SIZE);
        for i in 0..POOL_SIZE {
            let socket = socket(libc::SOCK_DGRAM, 0, "socket(UDP)")?;
            let fd = socket.as_raw_fd();
            accept_nothing(fd)?;
            fragment_when_needed(fd)?;
            big_buffers(fd, true);
            let first = DYNAMIC_PORTS as usize + i * share;
            let bound =
                (first..first + share).find(|&p| bind(fd, Ipv4Addr::UNSPECIFIED, p as u16).is_ok());
            if let Some(port) = bound {
                sockets.push((socket, port as u16));
            }
        }
        if sockets.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "no free UDP port in 49152-65535 for VXLAN source ports",
            ));
        }
        Ok(SourcePorts { sockets })
    }

    /// The socket and source port of a flow with hash `hash`.
    pub(super) fn of(&self, hash: u64) -> (RawFd, u16) {
        let (socket, port) = &self.sockets[(hash % self.sockets.len() as u64) as usize];
        (socket.as_raw_fd(), *port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::vxlan::flow_hash;
    use crate::testutil::FrameBuilder;
    use std::collections::HashSet;

    #[test]
    fn flows_keep_one_source_port_in_the_dynamic_range() {
        let pool = SourcePorts::bind().expect("bind the source port pool");
        assert!(
            pool.sockets.len() > POOL_SIZE / 2,
            "most shares had a free port"
        );
        let mut used = HashSet::new();
        for sport in 1000..1400 {
            let frame =
                FrameBuilder::tcp4(&format!("10.0.0.1:{sport}"), "10.0.0.2:80", b"x").build();
            let (_, port) = pool.of(flow_hash(&frame));
            assert!((DYNAMIC_PORTS..=u16::MAX).contains(&port));
            used.insert(port);
        }
        assert!(
            used.len() > POOL_SIZE / 2,
            "flows spread over the pool: {} ports of {}",
            used.len(),
            pool.sockets.len()
        );

        let first = FrameBuilder::tcp4("10.0.0.1:1000", "10.0.0.2:80", b"x").build();
        let mut marked = FrameBuilder::tcp4("10.0.0.1:1000", "10.0.0.2:80", b"more data").build();
        marked[15] = 0x03; // ECN congestion experienced
        assert_eq!(
            pool.of(flow_hash(&first)).1,
            pool.of(flow_hash(&marked)).1,
            "same flow, same port, whatever its payload and ECN marks"
        );
    }
}
