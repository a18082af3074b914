//! Traffic between lab hosts, generated from inside their namespaces by this
//! process (no `ping` or `iperf3` needed): ICMP echo over a raw socket and
//! bulk TCP with an integrity check. Used by `sdn demo` and the tests.

use anyhow::{Context, Result, bail};
use sdn_vswitch::wire::{IcmpEchoRepr, IcmpPacket, IpPair, Ipv4Packet, icmp};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Runs `work` on a thread that lives in namespace `namespace`.
fn in_namespace<T: Send + 'static>(
    namespace: &str,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let namespace = namespace.to_string();
    std::thread::spawn(move || {
        sdn_vswitch::netns::enter(&namespace)?;
        work()
    })
    .join()
    .unwrap_or_else(|_| bail!("traffic thread panicked"))
}

/// Sends `count` ICMP echo requests from namespace `namespace` to `to` and
/// returns the round-trip time of each reply (`None` for a lost one).
pub fn ping(namespace: &str, to: Ipv4Addr, count: u16) -> Result<Vec<Option<Duration>>> {
    in_namespace(namespace, move || {
        // SAFETY: plain socket(2) call; the descriptor is owned below.
        let raw = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::IPPROTO_ICMP,
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error())
                .context("open a raw ICMP socket (needs root)");
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let ident = (std::process::id() & 0xffff) as u16;
        let mut rtts = Vec::new();
        for seq in 0..count {
            let mut message = [0u8; icmp::HEADER_LEN + 32];
            IcmpEchoRepr {
                msg_type: icmp::V4_ECHO_REQUEST,
                ident,
                seq,
            }
            .emit(
                &mut IcmpPacket::new_unchecked(&mut message[..]),
                IpPair::V4(Ipv4Addr::UNSPECIFIED, to),
            );
            // SAFETY: sockaddr_in is plain data.
            let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from(to).to_be();
            let sent_at = Instant::now();
            // SAFETY: `message` and `addr` are live for the call.
            let sent = unsafe {
                libc::sendto(
                    fd.as_raw_fd(),
                    message.as_ptr().cast(),
                    message.len(),
                    0,
                    (&addr as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            if sent < 0 {
                return Err(std::io::Error::last_os_error())
                    .context(format!("send an echo request to {to}"));
            }
            rtts.push(await_reply(
                &fd,
                to,
                ident,
                seq,
                sent_at + Duration::from_secs(1),
            ));
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(rtts)
    })
}

fn await_reply(
    fd: &OwnedFd,
    from: Ipv4Addr,
    ident: u16,
    seq: u16,
    deadline: Instant,
) -> Option<Duration> {
    let started = deadline - Duration::from_secs(1);
    let mut buffer = [0u8; 1500];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as libc::c_int) };
        if ready <= 0 {
            return None;
        }
        // SAFETY: receiving into a live buffer of the length passed.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), 0) };
        if n <= 0 {
            return None;
        }
        // A raw IPv4 socket hands over the IP header too.
        let Ok(ip) = Ipv4Packet::new_checked(&buffer[..n as usize]) else {
            continue;
        };
        if ip.src_addr() != from {
            continue;
        }
        let Ok(message) = IcmpPacket::new_checked(ip.payload()) else {
            continue;
        };
        if message.msg_type() == icmp::V4_ECHO_REPLY
            && message.echo_ident() == ident
            && message.echo_seq() == seq
        {
            return Some(started.elapsed());
        }
    }
}

/// What a TCP transfer achieved.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    /// Bytes received.
    pub bytes: usize,
    /// Whether they equal the bytes sent.
    pub intact: bool,
    /// Time from connect to the last byte.
    pub elapsed: Duration,
}

/// Deterministic test data.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// Sends `data` over TCP from a host in `client_ns` to `server`, a listener
/// bound in `server_ns`, and checks what arrives.
pub fn tcp_transfer(
    server_ns: &str,
    client_ns: &str,
    server: SocketAddr,
    data: Vec<u8>,
) -> Result<(Transfer, Vec<u8>)> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server_ns = server_ns.to_string();
    let receiver = std::thread::spawn(move || -> Result<(Vec<u8>, Instant)> {
        sdn_vswitch::netns::enter(&server_ns)?;
        let listener = TcpListener::bind(server).with_context(|| format!("listen on {server}"))?;
        let _ = ready_tx.send(());
        let (mut conn, _) = listener.accept()?;
        conn.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut got = Vec::new();
        conn.read_to_end(&mut got)?;
        Ok((got, Instant::now()))
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .context("the TCP server did not start")?;
    let length = data.len();
    let sent = data.clone();
    let started = in_namespace(client_ns, move || {
        let started = Instant::now();
        let mut conn = TcpStream::connect_timeout(&server, Duration::from_secs(5))
            .with_context(|| format!("connect to {server}"))?;
        conn.write_all(&sent)?;
        Ok(started)
    })?;
    let (got, finished) = receiver
        .join()
        .unwrap_or_else(|_| bail!("TCP server thread panicked"))?;
    let transfer = Transfer {
        bytes: got.len(),
        intact: got.len() == length && got == data,
        elapsed: finished - started,
    };
    Ok((transfer, got))
}
