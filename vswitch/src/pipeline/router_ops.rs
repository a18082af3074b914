//! What a switch does to a frame as the router of its subnets, in bytes:
//! decrement the TTL, answer ARP and ping for a gateway address in place,
//! build the ICMP errors a router sends (time exceeded, destination
//! unreachable, fragmentation needed), and rate-limit those errors as Linux
//! does. `l3` is the offset of the IPv4 or ARP header in the frame (past
//! any VLAN tag). Nothing here panics on any input.

use crate::wire::{EthernetAddress, checksum};
use rustc_hash::FxHashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

mod field {
    pub(super) const ETH_DST: std::ops::Range<usize> = 0..6;
    pub(super) const ETH_SRC: std::ops::Range<usize> = 6..12;
    pub(super) const IP_TOTAL_LEN: usize = 2;
    pub(super) const IP_FLAGS: usize = 6;
    pub(super) const IP_TTL: usize = 8;
    pub(super) const IP_PROTO: usize = 9;
    pub(super) const IP_CHECKSUM: usize = 10;
    pub(super) const IP_SRC: usize = 12;
    pub(super) const IP_DST: usize = 16;
    pub(super) const ARP_OP: usize = 6;
    pub(super) const ARP_SHA: usize = 8;
    pub(super) const ARP_SPA: usize = 14;
    pub(super) const ARP_THA: usize = 18;
    pub(super) const ARP_TPA: usize = 24;
    pub(super) const ARP_LEN: usize = 28;
    pub(super) const ICMP_CHECKSUM: usize = 2;
}

const ETH_HEADER: usize = 14;
const IP_HEADER: usize = 20;
const ICMP_HEADER: usize = 8;
const PROTO_ICMP: u8 = 1;
const DF: u16 = 0x4000;
/// RFC 1812 §4.3.2.3: an ICMP error's datagram stays within 576 bytes.
const ICMP_ERROR_MAX: usize = 576;
/// TTL of packets the router sends itself (Linux's default).
const TTL: u8 = 64;
/// Linux's IPTOS_PREC_INTERNETCONTROL, the TOS of its ICMP errors.
const TOS_INTERNETCONTROL: u8 = 0xc0;

fn read16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn write16(b: &mut [u8], at: usize, value: u16) {
    if let Some(dst) = b.get_mut(at..at + 2) {
        dst.copy_from_slice(&value.to_be_bytes());
    }
}

fn addr(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    let o: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(o))
}

/// The IPv4 header at the start of `ip`, if valid: its length and the
/// datagram's total length (at most what the buffer holds).
fn ipv4_header(ip: &[u8]) -> Option<(usize, usize)> {
    let first = *ip.first()?;
    let header = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || header < IP_HEADER || ip.len() < header {
        return None;
    }
    let total = usize::from(read16(ip, field::IP_TOTAL_LEN)?);
    // A TSO super-frame may carry 0 (longer than 64 KiB): the whole buffer.
    let total = if total == 0 { ip.len() } else { total };
    (total >= header).then_some((header, total.min(ip.len())))
}

/// What `dec_ttl` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TtlOutcome {
    /// The TTL went down by one.
    Decremented,
    /// The TTL was 1 or 0: the packet must not be forwarded.
    Expired,
    /// Not an IPv4 packet: left alone.
    NotIpv4,
}

/// Decrements the TTL of the IPv4 packet at `l3`, updating its checksum
/// (RFC 1624). A router checks the TTL before decrementing (RFC 1812
/// §5.3.1), so an expiring packet is left as it arrived.
pub(crate) fn dec_ttl(frame: &mut [u8], l3: usize) -> TtlOutcome {
    let Some(ip) = frame.get_mut(l3..) else {
        return TtlOutcome::NotIpv4;
    };
    if ipv4_header(ip).is_none() {
        return TtlOutcome::NotIpv4;
    }
    let ttl = ip[field::IP_TTL];
    if ttl <= 1 {
        return TtlOutcome::Expired;
    }
    let old = u16::from_be_bytes([ttl, ip[field::IP_PROTO]]);
    ip[field::IP_TTL] = ttl - 1;
    let new = u16::from_be_bytes([ttl - 1, ip[field::IP_PROTO]]);
    if let Some(sum) = read16(ip, field::IP_CHECKSUM) {
        write16(ip, field::IP_CHECKSUM, checksum::update_word(sum, old, new));
    }
    TtlOutcome::Decremented
}

/// The total length and DF bit of the IPv4 packet at `l3`.
pub(crate) fn ipv4_size(frame: &[u8], l3: usize) -> Option<(u16, bool)> {
    let ip = frame.get(l3..)?;
    let (_, total) = ipv4_header(ip)?;
    let df = read16(ip, field::IP_FLAGS)? & DF != 0;
    Some((u16::try_from(total).unwrap_or(u16::MAX), df))
}

/// The ICMP errors a router sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IcmpErrorKind {
    /// Time exceeded in transit (type 11, code 0).
    TimeExceeded,
    /// Destination unreachable (type 3) with this code.
    Unreachable(u8),
    /// Fragmentation needed and DF set (type 3, code 4) with the next
    /// hop's MTU (RFC 1191 §4).
    FragNeeded(u16),
}

impl IcmpErrorKind {
    fn type_code(self) -> (u8, u8) {
        match self {
            IcmpErrorKind::TimeExceeded => (11, 0),
            IcmpErrorKind::Unreachable(code) => (3, code),
            IcmpErrorKind::FragNeeded(_) => (3, 4),
        }
    }
}

/// ICMP types that are errors (RFC 1122 §3.2.2: never answered by one).
fn is_icmp_error(icmp_type: u8) -> bool {
    matches!(icmp_type, 3 | 4 | 5 | 11 | 12)
}

/// Source addresses no error may be sent to (RFC 1812 §4.3.2.7).
fn unanswerable_source(a: Ipv4Addr) -> bool {
    a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback() || {
        let first = a.octets()[0];
        first >= 240
    }
}

/// Writes into `out` the untagged Ethernet frame carrying the ICMP error
/// `kind` from `icmp_src` about the IPv4 packet at `l3` of `frame`, sent
/// back to where the packet came from (MACs swapped). Returns false, with
/// `out` empty, when no error may be sent about this packet (RFC 1122
/// §3.2.2, RFC 1812 §4.3.2.7): an ICMP error, a later fragment, a packet
/// from a source that cannot be answered or to a group address.
pub(crate) fn icmp_error(
    frame: &[u8],
    l3: usize,
    kind: IcmpErrorKind,
    icmp_src: Ipv4Addr,
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    let (Some(eth_dst), Some(eth_src), Some(ip)) = (
        frame.get(field::ETH_DST),
        frame.get(field::ETH_SRC),
        frame.get(l3..),
    ) else {
        return false;
    };
    let Some((header, total)) = ipv4_header(ip) else {
        return false;
    };
    let (Some(src), Some(dst), Some(flags)) = (
        addr(ip, field::IP_SRC),
        addr(ip, field::IP_DST),
        read16(ip, field::IP_FLAGS),
    ) else {
        return false;
    };
    if flags & 0x1fff != 0
        || eth_dst[0] & 1 != 0
        || unanswerable_source(src)
        || dst.is_multicast()
        || dst.is_broadcast()
    {
        return false;
    }
    if ip[field::IP_PROTO] == PROTO_ICMP {
        match ip.get(header) {
            Some(&t) if !is_icmp_error(t) => {}
            _ => return false,
        }
    }
    let quoted = total.min(ICMP_ERROR_MAX - IP_HEADER - ICMP_HEADER);
    let datagram = IP_HEADER + ICMP_HEADER + quoted;
    out.reserve(ETH_HEADER + datagram);
    out.extend_from_slice(eth_src);
    out.extend_from_slice(eth_dst);
    out.extend_from_slice(&0x0800u16.to_be_bytes());
    let ip_at = out.len();
    out.extend_from_slice(&[0x45, TOS_INTERNETCONTROL]);
    out.extend_from_slice(&(datagram as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, TTL, PROTO_ICMP, 0, 0]);
    out.extend_from_slice(&icmp_src.octets());
    out.extend_from_slice(&src.octets());
    let sum = checksum::checksum(&out[ip_at..]);
    write16(out, ip_at + field::IP_CHECKSUM, sum);
    let icmp_at = out.len();
    let (icmp_type, code) = kind.type_code();
    out.extend_from_slice(&[icmp_type, code, 0, 0, 0, 0]);
    let word = match kind {
        IcmpErrorKind::FragNeeded(mtu) => mtu,
        _ => 0,
    };
    out.extend_from_slice(&word.to_be_bytes());
    out.extend_from_slice(&ip[..quoted]);
    let sum = checksum::checksum(&out[icmp_at..]);
    write16(out, icmp_at + field::ICMP_CHECKSUM, sum);
    true
}

/// Turns the ARP request at `l3` (Ethernet/IPv4, operation 1) in place into
/// the reply that claims the requested address for `mac`. Returns false and
/// leaves anything else alone.
pub(crate) fn arp_reply(frame: &mut [u8], l3: usize, mac: EthernetAddress) -> bool {
    let Some(arp) = frame.get(l3..l3.saturating_add(field::ARP_LEN)) else {
        return false;
    };
    // Hardware type 1 (Ethernet), protocol 0x0800, lengths 6 and 4, request.
    if arp[..field::ARP_SHA] != [0, 1, 8, 0, 6, 4, 0, 1] {
        return false;
    }
    let mut requester = [0u8; 6];
    requester.copy_from_slice(&arp[field::ARP_SHA..field::ARP_SPA]);
    let mut requester_ip = [0u8; 4];
    requester_ip.copy_from_slice(&arp[field::ARP_SPA..field::ARP_THA]);
    let mut wanted_ip = [0u8; 4];
    wanted_ip.copy_from_slice(&arp[field::ARP_TPA..field::ARP_LEN]);
    let arp = &mut frame[l3..l3 + field::ARP_LEN];
    write16(arp, field::ARP_OP, 2);
    arp[field::ARP_SHA..field::ARP_SPA].copy_from_slice(&mac.0);
    arp[field::ARP_SPA..field::ARP_THA].copy_from_slice(&wanted_ip);
    arp[field::ARP_THA..field::ARP_TPA].copy_from_slice(&requester);
    arp[field::ARP_TPA..field::ARP_LEN].copy_from_slice(&requester_ip);
    frame[field::ETH_DST].copy_from_slice(&requester);
    frame[field::ETH_SRC].copy_from_slice(&mac.0);
    true
}

/// Turns the ICMP echo request at `l3` in place into its reply: addresses
/// swapped (which keeps the header checksum), TTL 64, type 0, MACs swapped.
/// Returns false and leaves anything else (a fragment too) alone.
pub(crate) fn echo_reply(frame: &mut [u8], l3: usize) -> bool {
    let Some(ip) = frame.get(l3..) else {
        return false;
    };
    let Some((header, _)) = ipv4_header(ip) else {
        return false;
    };
    let whole = read16(ip, field::IP_FLAGS).is_some_and(|f| f & 0x3fff == 0);
    if ip[field::IP_PROTO] != PROTO_ICMP || !whole || ip.get(header) != Some(&8) {
        return false;
    }
    let Some(icmp_sum) = read16(ip, header + field::ICMP_CHECKSUM) else {
        return false;
    };
    let ip = &mut frame[l3..];
    let old_ttl = u16::from_be_bytes([ip[field::IP_TTL], ip[field::IP_PROTO]]);
    ip[field::IP_TTL] = TTL;
    let new_ttl = u16::from_be_bytes([TTL, ip[field::IP_PROTO]]);
    if let Some(sum) = read16(ip, field::IP_CHECKSUM) {
        write16(
            ip,
            field::IP_CHECKSUM,
            checksum::update_word(sum, old_ttl, new_ttl),
        );
    }
    let mut src = [0u8; 4];
    src.copy_from_slice(&ip[field::IP_SRC..field::IP_DST]);
    ip.copy_within(field::IP_DST..field::IP_DST + 4, field::IP_SRC);
    ip[field::IP_DST..field::IP_DST + 4].copy_from_slice(&src);
    // Type 8 -> 0: the first word of the ICMP header changes.
    let old = u16::from_be_bytes([8, ip[header + 1]]);
    let new = u16::from_be_bytes([0, ip[header + 1]]);
    ip[header] = 0;
    write16(
        ip,
        header + field::ICMP_CHECKSUM,
        checksum::update_word(icmp_sum, old, new),
    );
    let mut dst = [0u8; 6];
    dst.copy_from_slice(&frame[field::ETH_DST]);
    frame.copy_within(field::ETH_SRC, 0);
    frame[field::ETH_SRC].copy_from_slice(&dst);
    true
}

/// Linux's icmp_msgs_per_sec and icmp_msgs_burst.
const GLOBAL_RATE: f64 = 1000.0;
const GLOBAL_BURST: f64 = 50.0;
/// Linux's icmp_ratelimit: one error per second per destination host.
const PER_HOST_INTERVAL: Duration = Duration::from_millis(1000);
/// Linux's XRLIM_BURST_FACTOR: up to six in a burst.
const PER_HOST_BURST: u32 = 6;
/// Most destinations remembered (bounded under a flood of sources).
const MAX_HOSTS: usize = 4096;

/// A token bucket: `tokens` as of `at`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Rate limits for the ICMP errors the switch sends, as Linux applies them
/// (net/ipv4/icmp.c): time-exceeded and unreachable (its default
/// `icmp_ratemask`) at most once a second per destination with a burst of
/// six, and all of them at most 1000 a second with a burst of 50;
/// fragmentation-needed is exempt from both, so that path MTU discovery is
/// never slowed.
#[derive(Debug, Default)]
pub(crate) struct IcmpLimiter {
    global: Option<Bucket>,
    hosts: FxHashMap<Ipv4Addr, Bucket>,
    /// Errors not sent because of the limits.
    pub(crate) limited: u64,
}

impl IcmpLimiter {
    /// Whether an error of `kind` to `dst` may be sent at `now` (and counts
    /// it against the limits if so).
    pub(crate) fn allow(&mut self, dst: Ipv4Addr, kind: IcmpErrorKind, now: Instant) -> bool {
        if matches!(kind, IcmpErrorKind::FragNeeded(_)) {
            return true;
        }
        let rate = 1.0 / PER_HOST_INTERVAL.as_secs_f64();
        let burst = f64::from(PER_HOST_BURST);
        if self.hosts.len() >= MAX_HOSTS && !self.hosts.contains_key(&dst) {
            // Forget the destinations whose buckets are full again.
            let full = PER_HOST_INTERVAL * PER_HOST_BURST;
            self.hosts
                .retain(|_, b| now.saturating_duration_since(b.at) < full);
            if self.hosts.len() >= MAX_HOSTS {
                self.hosts.clear();
            }
        }
        let host = self.hosts.entry(dst).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        if !host.take(now, rate, burst) {
            self.limited += 1;
            return false;
        }
        let global = self.global.get_or_insert(Bucket {
            tokens: GLOBAL_BURST,
            at: now,
        });
        if !global.take(now, GLOBAL_RATE, GLOBAL_BURST) {
            // Not sent: the destination keeps its token.
            host.tokens += 1.0;
            self.limited += 1;
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests;
