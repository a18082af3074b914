//! What connection tracking reads from an IPv4 packet: its 5-tuple and, per
//! protocol, the facts the state machines need (TCP flags and sequence
//! numbers, ICMP echo identifiers, the inner tuple of an ICMP error). Reads
//! bytes in place and never panics on short or malformed input.

use std::net::Ipv4Addr;

/// TCP FIN bit.
pub const FIN: u8 = 0x01;
/// TCP SYN bit.
pub const SYN: u8 = 0x02;
/// TCP RST bit.
pub const RST: u8 = 0x04;
/// TCP ACK bit.
pub const ACK: u8 = 0x10;

/// IP protocol numbers tracked.
pub const PROTO_ICMP: u8 = 1;
/// TCP.
pub const PROTO_TCP: u8 = 6;
/// UDP.
pub const PROTO_UDP: u8 = 17;

/// One direction of a connection: protocol, addresses and ports (for ICMP
/// echo both ports hold the identifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tuple {
    /// IP protocol.
    pub proto: u8,
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Source port (ICMP echo: identifier).
    pub sport: u16,
    /// Destination port (ICMP echo: identifier).
    pub dport: u16,
}

impl Tuple {
    /// The same connection seen from the other end.
    pub fn reversed(&self) -> Tuple {
        Tuple {
            proto: self.proto,
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
        }
    }
}

/// What kind of packet it is, for the state machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A TCP segment.
    Tcp {
        /// Control bits (low byte of the flags).
        flags: u8,
        /// Sequence number.
        seq: u32,
        /// Acknowledgement number.
        ack: u32,
    },
    /// A UDP datagram.
    Udp,
    /// An ICMP echo request (`true`) or reply (`false`).
    Echo {
        /// A request.
        request: bool,
    },
    /// An ICMP error about a packet of the tuple it quotes.
    IcmpError {
        /// The quoted packet's tuple, as that packet travelled.
        inner: Tuple,
        /// The quoted packet is an ICMP echo request (`Some(true)`) or reply.
        inner_echo: Option<bool>,
    },
    /// Any other IPv4 packet: tracked by addresses and protocol alone.
    Other,
}

/// A packet as connection tracking sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Its tuple (for an ICMP error: the error's own addresses).
    pub tuple: Tuple,
    /// Its kind.
    pub kind: Kind,
}

/// Why a packet cannot be tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untrackable {
    /// Not IPv4, or a header that does not fit.
    Malformed,
    /// A later fragment (no L4 header to read).
    Fragment,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn addr_at(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    u32_at(b, at).map(Ipv4Addr::from)
}

/// Reads the IPv4 header at the start of `l3`: (protocol, src, dst, header
/// length, later fragment).
fn ipv4_header(l3: &[u8]) -> Option<(u8, Ipv4Addr, Ipv4Addr, usize, bool)> {
    let first = *l3.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < 20 || l3.len() < header_len {
        return None;
    }
    let later_fragment = u16_at(l3, 6)? & 0x1fff != 0;
    Some((
        l3[9],
        addr_at(l3, 12)?,
        addr_at(l3, 16)?,
        header_len,
        later_fragment,
    ))
}

/// ICMP types that carry a quoted packet (destination unreachable, source
/// quench, redirect, time exceeded, parameter problem).
fn is_icmp_error(icmp_type: u8) -> bool {
    matches!(icmp_type, 3 | 4 | 5 | 11 | 12)
}

/// The tuple of the packet an ICMP error quotes (its IP header and at least
/// the first 8 bytes of its L4 header), and whether it is an echo request or
/// reply.
fn quoted_tuple(quoted: &[u8]) -> Option<(Tuple, Option<bool>)> {
    let (proto, src, dst, header_len, _) = ipv4_header(quoted)?;
    let l4 = &quoted[header_len..];
    let mut echo = None;
    let (sport, dport) = match proto {
        PROTO_TCP | PROTO_UDP => (u16_at(l4, 0)?, u16_at(l4, 2)?),
        PROTO_ICMP => {
            echo = match *l4.first()? {
                8 => Some(true),
                0 => Some(false),
                _ => None,
            };
            let ident = u16_at(l4, 4)?;
            (ident, ident)
        }
        _ => (0, 0),
    };
    Some((
        Tuple {
            proto,
            src,
            dst,
            sport,
            dport,
        },
        echo,
    ))
}

/// Reads what tracking needs from the IPv4 packet at the start of `l3`.
pub fn probe(l3: &[u8]) -> Result<Probe, Untrackable> {
    let (proto, src, dst, header_len, later_fragment) =
        ipv4_header(l3).ok_or(Untrackable::Malformed)?;
    if later_fragment {
        return Err(Untrackable::Fragment);
    }
    let l4 = &l3[header_len..];
    let mut tuple = Tuple {
        proto,
        src,
        dst,
        sport: 0,
        dport: 0,
    };
    let kind = match proto {
        PROTO_TCP => {
            tuple.sport = u16_at(l4, 0).ok_or(Untrackable::Malformed)?;
            tuple.dport = u16_at(l4, 2).ok_or(Untrackable::Malformed)?;
            Kind::Tcp {
                seq: u32_at(l4, 4).ok_or(Untrackable::Malformed)?,
                ack: u32_at(l4, 8).ok_or(Untrackable::Malformed)?,
                flags: *l4.get(13).ok_or(Untrackable::Malformed)?,
            }
        }
        PROTO_UDP => {
            tuple.sport = u16_at(l4, 0).ok_or(Untrackable::Malformed)?;
            tuple.dport = u16_at(l4, 2).ok_or(Untrackable::Malformed)?;
            Kind::Udp
        }
        PROTO_ICMP => {
            let icmp_type = *l4.first().ok_or(Untrackable::Malformed)?;
            match icmp_type {
                0 | 8 => {
                    let ident = u16_at(l4, 4).ok_or(Untrackable::Malformed)?;
                    tuple.sport = ident;
                    tuple.dport = ident;
                    Kind::Echo {
                        request: icmp_type == 8,
                    }
                }
                t if is_icmp_error(t) => {
                    let (inner, inner_echo) = l4
                        .get(8..)
                        .and_then(quoted_tuple)
                        .ok_or(Untrackable::Malformed)?;
                    Kind::IcmpError { inner, inner_echo }
                }
                _ => Kind::Other,
            }
        }
        _ => Kind::Other,
    };
    Ok(Probe { tuple, kind })
}

#[cfg(test)]
pub(crate) mod build {
    //! Builds IPv4 packets for the tests.
    use super::*;

    /// An IPv4 header (checksums left zero: tracking does not read them).
    pub(crate) fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0];
        p[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(l4);
        p
    }

    /// A TCP segment with `flags`, `seq` and `ack`.
    pub(crate) fn tcp(
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
        flags: u8,
        seq: u32,
        ack: u32,
    ) -> Vec<u8> {
        let mut l4 = vec![0u8; 20];
        l4[0..2].copy_from_slice(&sport.to_be_bytes());
        l4[2..4].copy_from_slice(&dport.to_be_bytes());
        l4[4..8].copy_from_slice(&seq.to_be_bytes());
        l4[8..12].copy_from_slice(&ack.to_be_bytes());
        l4[12] = 5 << 4;
        l4[13] = flags;
        ipv4(PROTO_TCP, src, dst, &l4)
    }

    /// A UDP datagram.
    pub(crate) fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut l4 = vec![0u8; 8];
        l4[0..2].copy_from_slice(&sport.to_be_bytes());
        l4[2..4].copy_from_slice(&dport.to_be_bytes());
        ipv4(PROTO_UDP, src, dst, &l4)
    }

    /// An ICMP echo request or reply.
    pub(crate) fn echo(src: [u8; 4], dst: [u8; 4], request: bool, ident: u16) -> Vec<u8> {
        let mut l4 = vec![if request { 8 } else { 0 }, 0, 0, 0, 0, 0, 0, 1];
        l4[4..6].copy_from_slice(&ident.to_be_bytes());
        ipv4(PROTO_ICMP, src, dst, &l4)
    }

    /// An ICMP error of `icmp_type` quoting the first 28 bytes of `quoted`.
    pub(crate) fn icmp_error(src: [u8; 4], dst: [u8; 4], icmp_type: u8, quoted: &[u8]) -> Vec<u8> {
        let mut l4 = vec![icmp_type, 3, 0, 0, 0, 0, 0, 0];
        l4.extend_from_slice(&quoted[..quoted.len().min(28)]);
        ipv4(PROTO_ICMP, src, dst, &l4)
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    #[test]
    fn reads_each_kind() {
        let p = probe(&tcp([10, 0, 0, 1], 1000, [10, 0, 0, 2], 80, SYN, 7, 0)).unwrap();
        assert_eq!(p.tuple.sport, 1000);
        assert_eq!(p.tuple.dport, 80);
        assert_eq!(
            p.kind,
            Kind::Tcp {
                flags: SYN,
                seq: 7,
                ack: 0
            }
        );
        let p = probe(&echo([10, 0, 0, 1], [10, 0, 0, 2], true, 42)).unwrap();
        assert_eq!((p.tuple.sport, p.tuple.dport), (42, 42));
        assert_eq!(p.kind, Kind::Echo { request: true });
        let sent = udp([10, 0, 0, 1], 5000, [10, 0, 0, 2], 53);
        let p = probe(&icmp_error([10, 0, 0, 2], [10, 0, 0, 1], 3, &sent)).unwrap();
        assert_eq!(
            p.kind,
            Kind::IcmpError {
                inner: probe(&sent).unwrap().tuple,
                inner_echo: None,
            }
        );
    }

    #[test]
    fn refuses_short_and_foreign_input() {
        assert_eq!(probe(&[]), Err(Untrackable::Malformed));
        assert_eq!(probe(&[0x60; 40]), Err(Untrackable::Malformed));
        let mut short = tcp([10, 0, 0, 1], 1, [10, 0, 0, 2], 2, SYN, 0, 0);
        short.truncate(30);
        assert_eq!(probe(&short), Err(Untrackable::Malformed));
        let mut frag = udp([10, 0, 0, 1], 1, [10, 0, 0, 2], 2);
        frag[7] = 10;
        assert_eq!(probe(&frag), Err(Untrackable::Fragment));
    }
}
