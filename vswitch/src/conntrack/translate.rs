//! Applying a NAT rewrite to the bytes of an IPv4 packet: addresses, ports
//! or ICMP echo identifier, with the IPv4, TCP, UDP and ICMP checksums kept
//! right (RFC 1624 incremental updates). An ICMP error gets its own
//! addresses and the packet it quotes rewritten, inner checksums included
//! (RFC 5508 §4.2). A packet whose L4 checksum is left to the NIC
//! (`partial`) holds only the pseudo-header sum there, so only address
//! changes touch it, in the opposite sense. Short or malformed input is left
//! as it is.

use super::nat::Translation;
use super::packet::{PROTO_ICMP, PROTO_TCP, PROTO_UDP, Tuple};
use crate::wire::checksum;
use std::net::Ipv4Addr;

const IP_CHECKSUM: usize = 10;
const IP_SRC: usize = 12;
const IP_DST: usize = 16;
const TCP_CHECKSUM: usize = 16;
const UDP_CHECKSUM: usize = 6;
const ICMP_CHECKSUM: usize = 2;
const ICMP_ECHO_ID: usize = 4;
/// Bytes of an ICMP header before the quoted packet.
const ICMP_HEADER: usize = 8;

fn read16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn write16(b: &mut [u8], at: usize, value: u16) {
    if let Some(dst) = b.get_mut(at..at + 2) {
        dst.copy_from_slice(&value.to_be_bytes());
    }
}

fn read_addr(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    let o: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(o))
}

/// The header length of the IPv4 header at the start of `b`, if it fits.
fn header_len(b: &[u8]) -> Option<usize> {
    let first = *b.first()?;
    let len = usize::from(first & 0x0f) * 4;
    (first >> 4 == 4 && len >= 20 && b.len() >= len).then_some(len)
}

/// Applies `t` to the IPv4 packet at the start of `l3`.
pub fn apply(l3: &mut [u8], t: &Translation, partial: bool) {
    match *t {
        Translation::Packet { to } => rewrite_packet(l3, to, partial),
        Translation::Error {
            outer_src,
            outer_dst,
            inner,
        } => rewrite_error(l3, outer_src, outer_dst, inner),
    }
}

/// A change of one checksummed field: where the L4 checksum must follow.
struct Change<'a> {
    old: &'a [u8],
    new: &'a [u8],
    /// Part of the TCP/UDP pseudo-header (an address) rather than the header.
    pseudo: bool,
}

/// Updates the checksum at `at` for `changes`; `partial`: the field holds the
/// uncomplemented pseudo-header sum only.
fn follow(b: &mut [u8], at: usize, changes: &[Change<'_>], partial: bool) {
    let Some(mut sum) = read16(b, at) else { return };
    for c in changes {
        if partial {
            if c.pseudo {
                sum = !checksum::update_bytes(!sum, c.old, c.new);
            }
        } else {
            sum = checksum::update_bytes(sum, c.old, c.new);
        }
    }
    write16(b, at, sum);
}

/// Rewrites the addresses of the IPv4 header at the start of `b` (checksum
/// updated); returns the old ones.
fn set_addresses(b: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let (old_src, old_dst) = (read_addr(b, IP_SRC)?, read_addr(b, IP_DST)?);
    b.get_mut(IP_SRC..IP_SRC + 4)?
        .copy_from_slice(&src.octets());
    b.get_mut(IP_DST..IP_DST + 4)?
        .copy_from_slice(&dst.octets());
    let mut sum = read16(b, IP_CHECKSUM)?;
    sum = checksum::update_bytes(sum, &old_src.octets(), &src.octets());
    sum = checksum::update_bytes(sum, &old_dst.octets(), &dst.octets());
    write16(b, IP_CHECKSUM, sum);
    Some((old_src, old_dst))
}

/// Rewrites the L4 header at the start of `l4` (protocol `proto`) to
/// `to`'s ports (echo: identifier), keeping its checksum right for the
/// address change `old` → `to` too. A header cut short (quoted in an ICMP
/// error) has what is there rewritten.
fn rewrite_l4(
    l4: &mut [u8],
    proto: u8,
    old: (Ipv4Addr, Ipv4Addr),
    to: Tuple,
    partial: bool,
) -> Option<()> {
    let (old_src, old_dst) = (old.0.octets(), old.1.octets());
    let (new_src, new_dst) = (to.src.octets(), to.dst.octets());
    match proto {
        PROTO_TCP | PROTO_UDP => {
            let (old_sport, old_dport) = (read16(l4, 0)?, read16(l4, 2)?);
            write16(l4, 0, to.sport);
            write16(l4, 2, to.dport);
            let at = if proto == PROTO_TCP {
                TCP_CHECKSUM
            } else {
                UDP_CHECKSUM
            };
            // RFC 768: a zero UDP checksum means none was computed.
            if proto == PROTO_UDP && read16(l4, at) == Some(0) {
                return Some(());
            }
            let (os, od) = (old_sport.to_be_bytes(), old_dport.to_be_bytes());
            let (ns, nd) = (to.sport.to_be_bytes(), to.dport.to_be_bytes());
            let changes = [
                Change {
                    old: &old_src,
                    new: &new_src,
                    pseudo: true,
                },
                Change {
                    old: &old_dst,
                    new: &new_dst,
                    pseudo: true,
                },
                Change {
                    old: &os,
                    new: &ns,
                    pseudo: false,
                },
                Change {
                    old: &od,
                    new: &nd,
                    pseudo: false,
                },
            ];
            follow(l4, at, &changes, partial);
        }
        PROTO_ICMP if matches!(l4.first(), Some(0 | 8)) => {
            let old_id = read16(l4, ICMP_ECHO_ID)?;
            write16(l4, ICMP_ECHO_ID, to.sport);
            // The ICMP checksum has no pseudo-header.
            let (o, n) = (old_id.to_be_bytes(), to.sport.to_be_bytes());
            let change = [Change {
                old: &o,
                new: &n,
                pseudo: false,
            }];
            follow(l4, ICMP_CHECKSUM, &change, false);
        }
        _ => {}
    }
    Some(())
}

fn rewrite_packet(l3: &mut [u8], to: Tuple, partial: bool) {
    let Some(ihl) = header_len(l3) else { return };
    let proto = l3[9];
    let Some(old) = set_addresses(l3, to.src, to.dst) else {
        return;
    };
    if let Some(l4) = l3.get_mut(ihl..) {
        let _ = rewrite_l4(l4, proto, old, to, partial);
    }
}

fn rewrite_error(l3: &mut [u8], outer_src: Ipv4Addr, outer_dst: Ipv4Addr, inner: Tuple) {
    let Some(ihl) = header_len(l3) else { return };
    if set_addresses(l3, outer_src, outer_dst).is_none() {
        return;
    }
    let total = read16(l3, 2).map_or(l3.len(), |t| usize::from(t).min(l3.len()));
    let Some(icmp) = l3.get_mut(ihl..total.max(ihl)) else {
        return;
    };
    if let Some(quoted) = icmp.get_mut(ICMP_HEADER..)
        && let Some(inner_ihl) = header_len(quoted)
    {
        let proto = quoted[9];
        if let Some(old) = set_addresses(quoted, inner.src, inner.dst)
            && let Some(l4) = quoted.get_mut(inner_ihl..)
        {
            // The quoted L4 header may be cut short: write what is there.
            let _ = rewrite_l4(l4, proto, old, inner, false);
        }
    }
    // The ICMP checksum covers the whole message: sum it again.
    write16(icmp, ICMP_CHECKSUM, 0);
    let sum = checksum::checksum(icmp);
    write16(icmp, ICMP_CHECKSUM, sum);
}
