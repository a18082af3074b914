//! The per-packet operations of an IPv4 router on a frame held in a buffer:
//! TTL decrement, ICMP errors and their rate limit, ARP replies and echo
//! replies for the router's own addresses.
//!
//! Every function takes `l3`, the offset of the IPv4 (or ARP) header in the
//! frame, and refuses a frame whose network header does not start there
//! (after the Ethernet header and at most one 802.1Q/802.1ad tag).

// The pipeline integration that calls these lands separately.
use crate::fragment::network_header;
use crate::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr,
    IcmpPacket, IpPair, IpProtocol, Ipv4Packet, Ipv4Repr, checksum, icmp, ipv4,
};
use rustc_hash::FxHashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// The rest-of-header of ICMP error messages (RFC 792), bytes 4..8 of the
/// message, which the shared ICMP view names only for echo.
mod field {
    use std::ops::Range;
    /// Unused (zero) for time exceeded and destination unreachable.
    pub(super) const REST_OF_HEADER: Range<usize> = 4..8;
    /// Next-hop MTU of "fragmentation needed" (RFC 1191 §4).
    pub(super) const NEXT_HOP_MTU: Range<usize> = 6..8;
}

/// ICMP types and codes (RFC 792) this module sends or must recognise.
mod icmp_type {
    pub(super) const DEST_UNREACHABLE: u8 = 3;
    pub(super) const SOURCE_QUENCH: u8 = 4;
    pub(super) const REDIRECT: u8 = 5;
    pub(super) const TIME_EXCEEDED: u8 = 11;
    pub(super) const PARAMETER_PROBLEM: u8 = 12;
    /// Highest type Linux knows (`NR_ICMP_TYPES`).
    pub(super) const LAST_KNOWN: u8 = 18;
    /// Destination unreachable: fragmentation needed and DF set.
    pub(super) const CODE_FRAG_NEEDED: u8 = 4;
    /// Time exceeded: TTL exceeded in transit.
    pub(super) const CODE_TTL_IN_TRANSIT: u8 = 0;
}

/// TTL of the packets the router originates (Linux's `ip_default_ttl`).
const ORIGINATED_TTL: u8 = 64;

/// TOS of ICMP errors: precedence "internetwork control", as Linux sends
/// them (`IPTOS_PREC_INTERNETCONTROL`).
const ERROR_TOS: u8 = 0xc0;

/// An ICMP error's IP datagram is at most this long (RFC 1812 §4.3.2.3).
const ERROR_MAX_DATAGRAM: usize = 576;

/// Bytes of the original datagram an error may quote.
const MAX_QUOTE: usize = ERROR_MAX_DATAGRAM - ipv4::MIN_HEADER_LEN - icmp::HEADER_LEN;

/// What [`dec_ttl`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TtlOutcome {
    /// TTL was above 1; it is now one less and the checksum is updated.
    Decremented,
    /// TTL was 0 or 1: the packet must not be forwarded (send time exceeded).
    /// The frame is unchanged.
    Expired,
    /// No valid IPv4 header at `l3`; the frame is unchanged.
    NotIpv4,
}

/// Decrements the TTL of the IPv4 packet at `l3` and updates the header
/// checksum incrementally (RFC 1624 §3).
///
/// RFC 1812 §5.3.1: the router checks the TTL before decrementing, so a TTL
/// of 0 or 1 is [`TtlOutcome::Expired`] and the frame keeps the TTL as
/// received, which is what the time-exceeded error then quotes. The header
/// checksum is not verified here: an incremental update carries an existing
/// error through, so the next hop still discards the packet.
pub(crate) fn dec_ttl(frame: &mut [u8], l3: usize) -> TtlOutcome {
    if !starts_at(frame, l3, EtherType::Ipv4) {
        return TtlOutcome::NotIpv4;
    }
    let Some(Ok(mut ip)) = frame.get_mut(l3..).map(Ipv4Packet::new_checked) else {
        return TtlOutcome::NotIpv4;
    };
    let ttl = ip.ttl();
    if ttl <= 1 {
        return TtlOutcome::Expired;
    }
    let new_ttl = ttl - 1;
    let sum = ttl_checksum(&ip, new_ttl);
    ip.set_ttl(new_ttl);
    ip.set_checksum(sum);
    TtlOutcome::Decremented
}

/// The header checksum after the TTL of `ip` becomes `new_ttl`: TTL and
/// protocol share one 16-bit word of the header (RFC 791 §3.1).
fn ttl_checksum<T: AsRef<[u8]>>(ip: &Ipv4Packet<T>, new_ttl: u8) -> u16 {
    let protocol = u8::from(ip.protocol());
    checksum::update_word(
        ip.checksum(),
        u16::from_be_bytes([ip.ttl(), protocol]),
        u16::from_be_bytes([new_ttl, protocol]),
    )
}

/// The total length in bytes of the IPv4 datagram at `l3` and its Don't
/// Fragment flag, to compare with the next hop's MTU; `None` without a valid
/// IPv4 header there. A zero length field (a TSO super-frame) stands for the
/// rest of the frame, saturated at 65535.
pub(crate) fn ipv4_size(frame: &[u8], l3: usize) -> Option<(u16, bool)> {
    let ip = ipv4_at(frame, l3)?;
    let len = u16::try_from(ip.total_len()).unwrap_or(u16::MAX);
    Some((len, ip.dont_fragment()))
}

/// Which ICMP error [`icmp_error`] sends, and which the limiter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IcmpErrorKind {
    /// Type 11 code 0: TTL exceeded in transit (RFC 792).
    TimeExceeded,
    /// Type 3 with this code (RFC 792, RFC 1812 §5.2.7.1). For code 4 use
    /// [`IcmpErrorKind::FragNeeded`], which carries the MTU.
    Unreachable(u8),
    /// Type 3 code 4: fragmentation needed and DF set, with the next-hop MTU
    /// in bytes (RFC 1191 §4).
    FragNeeded(u16),
}

impl IcmpErrorKind {
    fn type_and_code(self) -> (u8, u8) {
        match self {
            IcmpErrorKind::TimeExceeded => {
                (icmp_type::TIME_EXCEEDED, icmp_type::CODE_TTL_IN_TRANSIT)
            }
            IcmpErrorKind::Unreachable(code) => (icmp_type::DEST_UNREACHABLE, code),
            IcmpErrorKind::FragNeeded(_) => {
                (icmp_type::DEST_UNREACHABLE, icmp_type::CODE_FRAG_NEEDED)
            }
        }
    }
}

/// Writes into `out` (cleared first) the untagged Ethernet frame carrying the
/// ICMP error `kind` about the IPv4 packet at `l3`, sent from `icmp_src` back
/// to the packet's source. The Ethernet addresses are the frame's, swapped.
/// The error quotes the original datagram as it is in `frame` (header and as
/// much data as keeps the error's datagram within 576 bytes, RFC 1812
/// §4.3.2.3; never past its total length, so no Ethernet padding).
///
/// Returns false, leaving `out` empty, when no error may be sent: a malformed
/// header or wrong header checksum, or a packet RFC 1122 §3.2.2 and RFC 1812
/// §4.3.2.7 exempt (see [`may_answer_with_error`]).
pub(crate) fn icmp_error(
    frame: &[u8],
    l3: usize,
    kind: IcmpErrorKind,
    icmp_src: Ipv4Addr,
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    let (Some(ip), Ok(eth)) = (ipv4_at(frame, l3), EthernetFrame::new_checked(frame)) else {
        return false;
    };
    // RFC 1812 §5.2.2: a header with a wrong checksum is discarded, and its
    // source address cannot be trusted to send anything to.
    if !ip.verify_checksum() || !may_answer_with_error(&eth, &ip) {
        return false;
    }
    let quote_len = ip.total_len().min(MAX_QUOTE);
    let Some(quote) = l3.checked_add(quote_len).and_then(|end| frame.get(l3..end)) else {
        return false;
    };
    let icmp_len = icmp::HEADER_LEN + quote_len;
    let (msg_type, code) = kind.type_and_code();
    let eth_repr = EthernetRepr {
        src_addr: eth.dst_addr(),
        dst_addr: eth.src_addr(),
        ethertype: EtherType::Ipv4,
    };
    let ip_repr = Ipv4Repr {
        src_addr: icmp_src,
        dst_addr: ip.src_addr(),
        protocol: IpProtocol::Icmp,
        payload_len: icmp_len,
        ttl: ORIGINATED_TTL,
        dscp_ecn: ERROR_TOS,
        ident: 0,
        dont_fragment: false,
    };
    out.resize(eth_repr.buffer_len() + ip_repr.buffer_len() + icmp_len, 0);
    let (eth_bytes, rest) = out.split_at_mut(eth_repr.buffer_len());
    let (ip_bytes, icmp_bytes) = rest.split_at_mut(ip_repr.buffer_len());
    eth_repr.emit(&mut EthernetFrame::new_unchecked(eth_bytes));
    ip_repr.emit(&mut Ipv4Packet::new_unchecked(ip_bytes));
    icmp_bytes[field::REST_OF_HEADER].fill(0);
    if let IcmpErrorKind::FragNeeded(mtu) = kind {
        icmp_bytes[field::NEXT_HOP_MTU].copy_from_slice(&mtu.to_be_bytes());
    }
    icmp_bytes[icmp::HEADER_LEN..].copy_from_slice(quote);
    let mut message = IcmpPacket::new_unchecked(icmp_bytes);
    message.set_msg_type(msg_type);
    message.set_code(code);
    message.fill_checksum(IpPair::V4(icmp_src, ip.src_addr()));
    true
}

/// Whether an ICMP error may answer this packet (RFC 1122 §3.2.2, RFC 1812
/// §4.3.2.7). Not for: an ICMP error; a non-initial fragment; a source that is
/// not a single host; a multicast or limited-broadcast destination; a
/// link-layer group destination. A group Ethernet source (never valid) is
/// refused too, since the error would go to it.
fn may_answer_with_error<T: AsRef<[u8]>>(eth: &EthernetFrame<T>, ip: &Ipv4Packet<&[u8]>) -> bool {
    if eth.dst_addr().is_multicast() || eth.src_addr().is_multicast() {
        return false;
    }
    if ip.is_later_fragment() || !is_single_host(ip.src_addr()) {
        return false;
    }
    let dst = ip.dst_addr();
    if dst.is_multicast() || dst.is_broadcast() {
        return false;
    }
    if ip.protocol() == IpProtocol::Icmp {
        // Without its type byte the message cannot be shown not to be an error.
        return ip.payload().first().is_some_and(|&t| !is_icmp_error(t));
    }
    true
}

/// ICMP error types (RFC 792, RFC 1122 §3.2.2). Types past the last one
/// defined then are treated as errors, as Linux does: some later ones are
/// (Datagram Conversion Error, RFC 1475; Photuris, RFC 2521).
fn is_icmp_error(msg_type: u8) -> bool {
    matches!(
        msg_type,
        icmp_type::DEST_UNREACHABLE
            | icmp_type::SOURCE_QUENCH
            | icmp_type::REDIRECT
            | icmp_type::TIME_EXCEEDED
            | icmp_type::PARAMETER_PROBLEM
    ) || msg_type > icmp_type::LAST_KNOWN
}

/// A source address that names one host (RFC 1812 §4.3.2.7): not 0.0.0.0,
/// limited broadcast, multicast (224/4), loopback (127/8) or class E (240/4).
fn is_single_host(addr: Ipv4Addr) -> bool {
    let class_e = addr.octets()[0] >= 240;
    !(addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() || class_e)
}

/// Turns the ARP request at `l3` (Ethernet/IPv4, operation 1) into the reply
/// that claims its target protocol address for `mac` (RFC 826): operation 2,
/// the request's sender as target, `mac` and the requested address as sender,
/// and Ethernet from `mac` to the requester. A tag before the ARP packet is
/// kept as it is.
///
/// Returns false, leaving the frame unchanged, for anything else, and, as
/// Linux's `arp_process` does, for a request for a multicast or loopback
/// address or from a group hardware address. Whether the target address is
/// the router's own is the caller's decision.
pub(crate) fn arp_reply(frame: &mut [u8], l3: usize, mac: EthernetAddress) -> bool {
    if !starts_at(frame, l3, EtherType::Arp) {
        return false;
    }
    let Some(bytes) = frame.get_mut(l3..) else {
        return false;
    };
    let Ok(packet) = ArpPacket::new_checked(&*bytes) else {
        return false;
    };
    let request = ArpRepr::parse(&packet);
    let target = request.target_protocol_addr;
    if request.operation != ArpOperation::Request
        || request.sender_hardware_addr.is_multicast()
        || target.is_multicast()
        || target.is_loopback()
    {
        return false;
    }
    let reply = ArpRepr {
        operation: ArpOperation::Reply,
        sender_hardware_addr: mac,
        sender_protocol_addr: target,
        target_hardware_addr: request.sender_hardware_addr,
        target_protocol_addr: request.sender_protocol_addr,
    };
    // `new_checked` above found room for the whole packet.
    reply.emit(&mut ArpPacket::new_unchecked(bytes));
    let mut eth = EthernetFrame::new_unchecked(frame);
    eth.set_dst_addr(request.sender_hardware_addr);
    eth.set_src_addr(mac);
    true
}

/// Turns the ICMP echo request at `l3` into its echo reply in place (RFC 792;
/// RFC 1122 §3.2.2.6): addresses swapped at both layers, TTL 64, type 0. The
/// IPv4 checksum is updated incrementally for the TTL alone (swapping the
/// addresses keeps the sum); the ICMP checksum is recomputed.
/// Identifier, sequence number, data and the code byte are kept.
///
/// Returns false, leaving the frame unchanged, for anything else: not an
/// echo request, a fragment, a wrong IPv4 or ICMP checksum, a header with
/// options (RFC 1122 §3.2.2.6 wants record-route and timestamp updated and a
/// source route reversed, which this in-place rewrite does not do), a request
/// to a multicast or broadcast address at either layer (§3.2.2.6 lets those be
/// discarded, and the reply's source must be a unicast address), or one from a
/// source that is not a single host.
pub(crate) fn echo_reply(frame: &mut [u8], l3: usize) -> bool {
    let Some((src, dst)) = echo_request_addresses(frame, l3) else {
        return false;
    };
    let Some(Ok(mut ip)) = frame.get_mut(l3..).map(Ipv4Packet::new_checked) else {
        return false;
    };
    let sum = ttl_checksum(&ip, ORIGINATED_TTL);
    {
        let Ok(mut message) = IcmpPacket::new_checked(ip.payload_mut()) else {
            return false;
        };
        message.set_msg_type(icmp::V4_ECHO_REPLY);
        // The view has no checksum setter, so the ICMP checksum is summed
        // anew; the request's was verified, so nothing is laundered.
        message.fill_checksum(IpPair::V4(dst, src));
    }
    ip.set_ttl(ORIGINATED_TTL);
    ip.set_checksum(sum);
    ip.set_src_addr(dst);
    ip.set_dst_addr(src);
    let mut eth = EthernetFrame::new_unchecked(frame);
    let (eth_src, eth_dst) = (eth.src_addr(), eth.dst_addr());
    eth.set_src_addr(eth_dst);
    eth.set_dst_addr(eth_src);
    true
}

/// The source and destination of the echo request at `l3`, if it is one
/// [`echo_reply`] may answer.
fn echo_request_addresses(frame: &[u8], l3: usize) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.dst_addr().is_multicast() || eth.src_addr().is_multicast() {
        return None;
    }
    let ip = ipv4_at(frame, l3)?;
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let answerable = ip.verify_checksum()
        && ip.header_len() == ipv4::MIN_HEADER_LEN
        && !ip.more_fragments()
        && !ip.is_later_fragment()
        && ip.protocol() == IpProtocol::Icmp
        && is_single_host(src)
        && !dst.is_multicast()
        && !dst.is_broadcast();
    if !answerable {
        return None;
    }
    let message = IcmpPacket::new_checked(ip.payload()).ok()?;
    let is_request = message.msg_type() == icmp::V4_ECHO_REQUEST
        && message.verify_checksum(IpPair::V4(src, dst));
    is_request.then_some((src, dst))
}

/// Whether the network header of `frame` starts at `l3` with `ethertype`.
fn starts_at(frame: &[u8], l3: usize, ethertype: EtherType) -> bool {
    network_header(frame) == Some((ethertype, l3))
}

/// The checked IPv4 view at `l3`, if the frame's network header is IPv4 there.
fn ipv4_at(frame: &[u8], l3: usize) -> Option<Ipv4Packet<&[u8]>> {
    if !starts_at(frame, l3, EtherType::Ipv4) {
        return None;
    }
    Ipv4Packet::new_checked(frame.get(l3..)?).ok()
}

/// Linux's defaults for ICMP rate limiting (net/ipv4/icmp.c and the
/// `net.ipv4.icmp_*` sysctls).
mod limits {
    use std::time::Duration;
    /// `icmp_msgs_per_sec`: the global bucket refills at this many per second.
    pub(super) const GLOBAL_PER_SEC: u32 = 1000;
    /// `icmp_msgs_burst`: the global bucket holds at most this many.
    pub(super) const GLOBAL_BURST: u32 = 50;
    /// `icmp_ratelimit`: one message per destination per this long.
    pub(super) const PER_HOST: Duration = Duration::from_millis(1000);
    /// `XRLIM_BURST_FACTOR`: a destination's tokens accumulate up to this
    /// many messages.
    pub(super) const BURST_FACTOR: u32 = 6;
    /// `icmp_ratemask`: the types limited (bits 3, 4, 11 and 12).
    pub(super) const RATE_MASK: u32 = 0x1818;
    /// Most destinations tracked at once.
    pub(super) const HOSTS: usize = 4096;
}

/// A destination's tokens, as Linux's `inet_peer` keeps them.
#[derive(Debug, Clone, Copy)]
struct HostTokens {
    /// Time credited, at most `PER_HOST * BURST_FACTOR`; a message costs
    /// `PER_HOST`.
    tokens: Duration,
    /// When the tokens were last brought up to date.
    last: Instant,
}

/// Rate limits ICMP errors as Linux does (net/ipv4/icmp.c): a global token
/// bucket of 1000 per second with a burst of 50, and per destination host one
/// per second with a burst of 6 (`inet_peer_xrlim_allow`). Only the types of
/// `icmp_ratemask` (0x1818: unreachable, source quench, time exceeded,
/// parameter problem) are limited, and "fragmentation needed" never is, so
/// that path MTU discovery keeps working. As in Linux 6.x, a message refused
/// per destination costs no global credit. Memory is bounded: at most 4096
/// destinations are tracked. Sans-IO: the caller passes `now`.
#[derive(Debug)]
pub(crate) struct IcmpLimiter {
    /// Messages the global bucket allows now.
    global_credit: u32,
    /// When the global bucket was last refilled; `None` before the first use.
    global_stamp: Option<Instant>,
    hosts: FxHashMap<Ipv4Addr, HostTokens>,
    host_capacity: usize,
}

impl Default for IcmpLimiter {
    fn default() -> Self {
        IcmpLimiter::new()
    }
}

impl IcmpLimiter {
    /// A limiter with full buckets and Linux's default limits.
    pub(crate) fn new() -> IcmpLimiter {
        IcmpLimiter::with_host_capacity(limits::HOSTS)
    }

    fn with_host_capacity(host_capacity: usize) -> IcmpLimiter {
        IcmpLimiter {
            global_credit: limits::GLOBAL_BURST,
            global_stamp: None,
            hosts: FxHashMap::default(),
            host_capacity,
        }
    }

    /// Whether an error of `kind` to `dst` may be sent at `now`; if so, it is
    /// counted against the limits.
    pub(crate) fn allow(&mut self, dst: Ipv4Addr, kind: IcmpErrorKind, now: Instant) -> bool {
        let (msg_type, code) = kind.type_and_code();
        if !is_rate_limited(msg_type, code) {
            return true;
        }
        self.refill_global(now);
        if self.global_credit == 0 || !self.host_allow(dst, now) {
            return false;
        }
        self.global_credit -= 1;
        true
    }

    /// Credits the global bucket for the time since its last refill, at
    /// `GLOBAL_PER_SEC`, up to `GLOBAL_BURST` (`__icmp_global_allow`).
    fn refill_global(&mut self, now: Instant) {
        let Some(stamp) = self.global_stamp else {
            self.global_stamp = Some(now);
            return;
        };
        let interval = Duration::from_secs(1) / limits::GLOBAL_PER_SEC;
        let earned = now.saturating_duration_since(stamp).as_nanos() / interval.as_nanos();
        if earned == 0 {
            return;
        }
        let room = limits::GLOBAL_BURST.saturating_sub(self.global_credit);
        match u32::try_from(earned) {
            Ok(earned) if earned < room => {
                self.global_credit += earned;
                // Keep the unspent fraction of an interval.
                self.global_stamp = Some(stamp + interval * earned);
            }
            _ => {
                self.global_credit = limits::GLOBAL_BURST;
                self.global_stamp = Some(now);
            }
        }
    }

    /// The per-destination check (`inet_peer_xrlim_allow`): tokens grow with
    /// elapsed time up to `BURST_FACTOR` messages' worth, and a message costs
    /// one `PER_HOST`. A destination seen for the first time starts full, as
    /// Linux backdates a new peer's `rate_last` by 60 s.
    fn host_allow(&mut self, dst: Ipv4Addr, now: Instant) -> bool {
        let full = limits::PER_HOST * limits::BURST_FACTOR;
        if !self.hosts.contains_key(&dst) && self.hosts.len() >= self.host_capacity {
            self.make_room(now);
        }
        let host = self.hosts.entry(dst).or_insert(HostTokens {
            tokens: full,
            last: now,
        });
        let elapsed = now.saturating_duration_since(host.last);
        let mut tokens = host.tokens.saturating_add(elapsed).min(full);
        host.last = host.last.max(now);
        let allowed = tokens >= limits::PER_HOST;
        if allowed {
            tokens -= limits::PER_HOST;
        }
        host.tokens = tokens;
        allowed
    }

    /// Frees room in a full table of destinations: an entry whose tokens are
    /// full again is the same as no entry, so those go first; if that frees
    /// less than a quarter of the table (a flood of distinct sources), the
    /// table is emptied, which keeps the cost per new destination constant.
    /// The global bucket still bounds what the flood gets back.
    fn make_room(&mut self, now: Instant) {
        let full = limits::PER_HOST * limits::BURST_FACTOR;
        self.hosts.retain(|_, host| {
            let elapsed = now.saturating_duration_since(host.last);
            host.tokens.saturating_add(elapsed) < full
        });
        if self.hosts.len() > self.host_capacity - self.host_capacity / 4 {
            self.hosts.clear();
        }
    }
}

/// Whether Linux limits this type and code (`icmpv4_mask_allow`).
fn is_rate_limited(msg_type: u8, code: u8) -> bool {
    if msg_type == icmp_type::DEST_UNREACHABLE && code == icmp_type::CODE_FRAG_NEEDED {
        // Don't limit path MTU discovery.
        return false;
    }
    msg_type <= icmp_type::LAST_KNOWN && (1u32 << msg_type) & limits::RATE_MASK != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{FrameBuilder, mac};
    use crate::wire::{ArpPacket, IcmpEchoRepr};
    use proptest::prelude::*;

    const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
    const HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    fn tcp_frame() -> Vec<u8> {
        FrameBuilder::tcp4("10.0.0.1:1000", "10.0.1.2:80", b"hello, router").build()
    }

    /// Changes the IPv4 header at `l3` and recomputes its checksum.
    fn edit_ip(frame: &mut [u8], l3: usize, edit: impl FnOnce(&mut Ipv4Packet<&mut [u8]>)) {
        let mut ip = Ipv4Packet::new_checked(&mut frame[l3..]).unwrap();
        edit(&mut ip);
        ip.fill_checksum();
    }

    fn with_ttl(mut frame: Vec<u8>, l3: usize, ttl: u8) -> Vec<u8> {
        edit_ip(&mut frame, l3, |ip| ip.set_ttl(ttl));
        frame
    }

    /// Inserts four NOP options into the IPv4 header at 14.
    fn with_options(frame: &[u8]) -> Vec<u8> {
        let mut out = frame[..34].to_vec();
        out.extend_from_slice(&[1, 1, 1, 1]);
        out.extend_from_slice(&frame[34..]);
        let total = Ipv4Packet::new_checked(&frame[14..]).unwrap().total_len() + 4;
        let mut ip = Ipv4Packet::new_unchecked(&mut out[14..]);
        ip.set_version_and_header_len(24);
        ip.set_total_len(total as u16);
        ip.fill_checksum();
        out
    }

    /// An ICMP message of type `msg_type` from 10.0.0.1 to 10.0.1.2.
    fn icmp_of_type(msg_type: u8) -> Vec<u8> {
        let mut frame = FrameBuilder::icmp4_echo("10.0.0.1", "10.0.1.2", 1).build();
        frame[34] = msg_type;
        IcmpPacket::new_unchecked(&mut frame[34..]).fill_checksum(IpPair::V4(HOST, HOST));
        frame
    }

    /// What the common fields of an ICMP error leave to check per test.
    struct ErrorMessage {
        msg_type: u8,
        code: u8,
        rest_of_header: [u8; 4],
        quote: Vec<u8>,
    }

    /// Checks every field of an error frame that does not depend on the
    /// kind, against the `original` frame it answers.
    fn check_error(out: &[u8], original: &[u8], l3: usize) -> ErrorMessage {
        let eth = EthernetFrame::new_checked(out).unwrap();
        let orig_eth = EthernetFrame::new_checked(original).unwrap();
        assert_eq!(eth.dst_addr(), orig_eth.src_addr(), "back to the sender");
        assert_eq!(eth.src_addr(), orig_eth.dst_addr(), "from the router");
        assert_eq!(eth.ethertype(), EtherType::Ipv4, "untagged");
        let orig_ip = Ipv4Packet::new_checked(&original[l3..]).unwrap();
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.version(), 4);
        assert_eq!(ip.header_len(), 20);
        assert_eq!(ip.dscp_ecn(), 0xc0);
        assert_eq!(ip.total_len(), out.len() - 14);
        assert!(ip.total_len() <= 576);
        assert_eq!(ip.ident(), 0);
        assert!(!ip.dont_fragment() && !ip.more_fragments());
        assert_eq!(ip.fragment_offset(), 0);
        assert_eq!(ip.ttl(), 64);
        assert_eq!(ip.protocol(), IpProtocol::Icmp);
        assert_eq!(ip.src_addr(), ROUTER_IP);
        assert_eq!(ip.dst_addr(), orig_ip.src_addr());
        let message = IcmpPacket::new_checked(ip.payload()).unwrap();
        assert!(message.verify_checksum(IpPair::V4(ip.src_addr(), ip.dst_addr())));
        let bytes = ip.payload();
        ErrorMessage {
            msg_type: message.msg_type(),
            code: message.code(),
            rest_of_header: bytes[4..8].try_into().unwrap(),
            quote: message.payload().to_vec(),
        }
    }

    fn error_for(frame: &[u8], l3: usize, kind: IcmpErrorKind) -> Option<Vec<u8>> {
        let mut out = vec![0xaa; 10];
        let sent = icmp_error(frame, l3, kind, ROUTER_IP, &mut out);
        assert_eq!(
            sent,
            !out.is_empty(),
            "out is empty exactly when nothing is sent"
        );
        sent.then_some(out)
    }

    #[test]
    fn ttl_above_one_is_decremented_with_a_valid_checksum() {
        for ttl in 2..=255u8 {
            let mut frame = with_ttl(tcp_frame(), 14, ttl);
            assert_eq!(dec_ttl(&mut frame, 14), TtlOutcome::Decremented);
            let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
            assert_eq!(ip.ttl(), ttl - 1);
            assert!(ip.verify_checksum(), "ttl {ttl}");
        }
        let mut tagged = with_ttl(
            FrameBuilder::udp4("10.0.0.1:1", "10.0.1.2:2", b"x")
                .vlan(10, 3)
                .build(),
            18,
            2,
        );
        assert_eq!(dec_ttl(&mut tagged, 18), TtlOutcome::Decremented);
        let ip = Ipv4Packet::new_checked(&tagged[18..]).unwrap();
        assert_eq!(ip.ttl(), 1);
        assert!(ip.verify_checksum());
    }

    #[test]
    fn ttl_one_and_zero_expire_unchanged() {
        for ttl in [0, 1] {
            let before = with_ttl(tcp_frame(), 14, ttl);
            let mut frame = before.clone();
            assert_eq!(dec_ttl(&mut frame, 14), TtlOutcome::Expired);
            assert_eq!(frame, before);
        }
    }

    #[test]
    fn dec_ttl_refuses_what_is_not_ipv4_at_l3() {
        let arp = FrameBuilder::arp_request(mac(1), "10.0.0.1", "10.0.0.254").build();
        let tagged = FrameBuilder::tcp4("10.0.0.1:1", "10.0.1.2:2", b"")
            .vlan(5, 0)
            .build();
        let mut bad_version = tcp_frame();
        bad_version[14] = 0x65;
        let cases: [(&[u8], usize); 6] = [
            (&arp, 14),
            (&tcp_frame(), 18),
            (&tagged, 14),
            (&tcp_frame()[..40], 14),
            (&bad_version, 14),
            (&[], 14),
        ];
        for (bytes, l3) in cases {
            let mut frame = bytes.to_vec();
            assert_eq!(dec_ttl(&mut frame, l3), TtlOutcome::NotIpv4);
            assert_eq!(frame, bytes);
        }
    }

    #[test]
    fn ipv4_size_reads_length_and_df() {
        let mut frame = tcp_frame();
        assert_eq!(ipv4_size(&frame, 14), Some((20 + 20 + 13, true)));
        edit_ip(&mut frame, 14, |ip| ip.set_flags_fragment(false, false, 0));
        frame.resize(frame.len() + 11, 0);
        assert_eq!(ipv4_size(&frame, 14), Some((53, false)), "padding ignored");
        let tagged = FrameBuilder::udp4("10.0.0.1:1", "10.0.1.2:2", &[0; 100])
            .vlan(7, 1)
            .build();
        assert_eq!(ipv4_size(&tagged, 18), Some((128, true)));
        let arp = FrameBuilder::arp_request(mac(1), "10.0.0.1", "10.0.0.254").build();
        assert_eq!(ipv4_size(&arp, 14), None);
        assert_eq!(ipv4_size(&frame[..30], 14), None);
    }

    #[test]
    fn time_exceeded_quotes_the_datagram_as_received() {
        let mut frame = with_ttl(tcp_frame(), 14, 1);
        assert_eq!(dec_ttl(&mut frame, 14), TtlOutcome::Expired);
        // Ethernet padding after the datagram is not quoted.
        frame.resize(frame.len() + 11, 0xee);
        let out = error_for(&frame, 14, IcmpErrorKind::TimeExceeded).unwrap();
        let error = check_error(&out, &frame, 14);
        assert_eq!((error.msg_type, error.code), (11, 0));
        assert_eq!(error.rest_of_header, [0; 4]);
        assert_eq!(error.quote, &frame[14..14 + 53], "the whole datagram");
        let quoted = Ipv4Packet::new_checked(&error.quote[..]).unwrap();
        assert_eq!(quoted.ttl(), 1, "TTL as received");
        assert!(quoted.verify_checksum());
        assert!(error.quote.len() >= quoted.header_len() + 8);
        assert_eq!(out.len(), 14 + 20 + 8 + 53);
    }

    #[test]
    fn a_long_datagram_is_quoted_up_to_576_bytes() {
        let frame = FrameBuilder::udp4("10.0.0.1:1000", "10.0.1.2:53", &[0x5a; 1472]).build();
        assert_eq!(ipv4_size(&frame, 14), Some((1500, true)));
        let out = error_for(&frame, 14, IcmpErrorKind::TimeExceeded).unwrap();
        let error = check_error(&out, &frame, 14);
        let ip = Ipv4Packet::new_checked(&out[14..]).unwrap();
        assert_eq!(ip.total_len(), 576);
        assert_eq!(error.quote.len(), 576 - 28);
        assert_eq!(error.quote, &frame[14..14 + 548]);
    }

    #[test]
    fn frag_needed_carries_the_mtu() {
        let frame = FrameBuilder::udp4("10.0.0.1:1000", "10.0.1.2:53", &[1; 1472]).build();
        let out = error_for(&frame, 14, IcmpErrorKind::FragNeeded(1400)).unwrap();
        let error = check_error(&out, &frame, 14);
        assert_eq!((error.msg_type, error.code), (3, 4));
        assert_eq!(error.rest_of_header, [0, 0, 0x05, 0x78]);
    }

    #[test]
    fn unreachable_carries_its_code() {
        let frame = tcp_frame();
        let out = error_for(&frame, 14, IcmpErrorKind::Unreachable(1)).unwrap();
        let error = check_error(&out, &frame, 14);
        assert_eq!((error.msg_type, error.code), (3, 1));
        assert_eq!(error.rest_of_header, [0; 4]);
        assert_eq!(error.quote, &frame[14..]);
    }

    #[test]
    fn tagged_input_gives_an_untagged_error() {
        let frame = with_ttl(
            FrameBuilder::tcp4("10.0.0.1:1000", "10.0.1.2:80", b"tagged")
                .vlan(10, 3)
                .build(),
            18,
            1,
        );
        let out = error_for(&frame, 18, IcmpErrorKind::TimeExceeded).unwrap();
        let error = check_error(&out, &frame, 18);
        assert_eq!(error.quote, &frame[18..]);
        assert_eq!(
            error_for(&frame, 14, IcmpErrorKind::TimeExceeded),
            None,
            "l3 must point past the tag"
        );
    }

    #[test]
    fn no_error_about_an_icmp_error() {
        for msg_type in [3, 4, 5, 11, 12, 19, 40] {
            assert_eq!(
                error_for(&icmp_of_type(msg_type), 14, IcmpErrorKind::TimeExceeded),
                None,
                "type {msg_type}"
            );
        }
        for msg_type in [0, 8, 13, 17] {
            let frame = icmp_of_type(msg_type);
            let out = error_for(&frame, 14, IcmpErrorKind::TimeExceeded).unwrap();
            check_error(&out, &frame, 14);
        }
        // An ICMP header too short to show its type.
        let mut empty = icmp_of_type(8);
        empty.truncate(34);
        let mut ip = Ipv4Packet::new_unchecked(&mut empty[14..]);
        ip.set_total_len(20);
        ip.fill_checksum();
        assert_eq!(error_for(&empty, 14, IcmpErrorKind::TimeExceeded), None);
    }

    #[test]
    fn no_error_about_a_later_fragment() {
        let mut later = tcp_frame();
        edit_ip(&mut later, 14, |ip| ip.set_flags_fragment(false, true, 8));
        assert_eq!(error_for(&later, 14, IcmpErrorKind::TimeExceeded), None);
        let mut first = tcp_frame();
        edit_ip(&mut first, 14, |ip| ip.set_flags_fragment(false, true, 0));
        assert!(error_for(&first, 14, IcmpErrorKind::TimeExceeded).is_some());
    }

    #[test]
    fn no_error_to_a_source_that_is_not_one_host() {
        for src in [
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "239.1.2.3",
            "127.0.0.1",
            "240.0.0.1",
        ] {
            let frame = FrameBuilder::udp4(&format!("{src}:1"), "10.0.1.2:2", b"x").build();
            assert_eq!(
                error_for(&frame, 14, IcmpErrorKind::TimeExceeded),
                None,
                "{src}"
            );
        }
    }

    #[test]
    fn no_error_about_a_group_destination() {
        for dst in ["224.0.0.5", "255.255.255.255"] {
            let frame = FrameBuilder::udp4("10.0.0.1:1", &format!("{dst}:2"), b"x").build();
            assert_eq!(
                error_for(&frame, 14, IcmpErrorKind::TimeExceeded),
                None,
                "{dst}"
            );
        }
        let group = EthernetAddress([0x01, 0x00, 0x5e, 0, 0, 1]);
        for eth_dst in [EthernetAddress::BROADCAST, group] {
            let frame = FrameBuilder::tcp4("10.0.0.1:1", "10.0.1.2:2", b"")
                .dst_mac(eth_dst)
                .build();
            assert_eq!(error_for(&frame, 14, IcmpErrorKind::TimeExceeded), None);
        }
        let frame = FrameBuilder::tcp4("10.0.0.1:1", "10.0.1.2:2", b"")
            .src_mac(group)
            .build();
        assert_eq!(error_for(&frame, 14, IcmpErrorKind::TimeExceeded), None);
    }

    #[test]
    fn no_error_about_a_malformed_header() {
        let good = tcp_frame();
        let mut bad_sum = good.clone();
        bad_sum[14 + 10] ^= 0x40;
        let mut bad_version = good.clone();
        bad_version[14] = 0x65;
        let mut short_ihl = good.clone();
        short_ihl[14] = 0x44;
        let arp = FrameBuilder::arp_request(mac(1), "10.0.0.1", "10.0.0.254").build();
        let cases: [(&[u8], usize); 8] = [
            (&bad_sum, 14),
            (&bad_version, 14),
            (&short_ihl, 14),
            (&good[..50], 14),
            (&good[..20], 14),
            (&good, 0),
            (&good, 15),
            (&arp, 14),
        ];
        for (frame, l3) in cases {
            assert_eq!(error_for(frame, l3, IcmpErrorKind::TimeExceeded), None);
        }
    }

    #[test]
    fn arp_request_becomes_the_reply() {
        let router_mac = mac(9);
        for (tagged, l3) in [(false, 14), (true, 18)] {
            let mut builder = FrameBuilder::arp_request(mac(1), "10.0.0.1", "10.0.0.254");
            if tagged {
                builder = builder.vlan(20, 5);
            }
            let before = builder.build();
            let mut frame = before.clone();
            assert!(arp_reply(&mut frame, l3, router_mac));
            let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
            assert_eq!(eth.dst_addr(), mac(1));
            assert_eq!(eth.src_addr(), router_mac);
            assert_eq!(&frame[12..l3], &before[12..l3], "EtherType and tag kept");
            let reply = ArpRepr::parse(&ArpPacket::new_checked(&frame[l3..]).unwrap());
            assert_eq!(reply.operation, ArpOperation::Reply);
            assert_eq!(reply.sender_hardware_addr, router_mac);
            assert_eq!(reply.sender_protocol_addr, ROUTER_IP);
            assert_eq!(reply.target_hardware_addr, mac(1));
            assert_eq!(reply.target_protocol_addr, HOST);
            assert_eq!(frame.len(), before.len());
        }
    }

    #[test]
    fn arp_reply_refuses_anything_else() {
        let request = FrameBuilder::arp_request(mac(1), "10.0.0.1", "10.0.0.254").build();
        let mut reply = request.clone();
        assert!(arp_reply(&mut reply, 14, mac(9)));
        let cases: [(Vec<u8>, usize); 7] = [
            (reply, 14),
            (tcp_frame(), 14),
            (request.clone(), 18),
            (request[..40].to_vec(), 14),
            (
                FrameBuilder::arp_request(mac(1), "10.0.0.1", "224.0.0.1").build(),
                14,
            ),
            (
                FrameBuilder::arp_request(mac(1), "10.0.0.1", "127.0.0.1").build(),
                14,
            ),
            (
                FrameBuilder::arp_request(EthernetAddress::BROADCAST, "10.0.0.1", "10.0.0.2")
                    .build(),
                14,
            ),
        ];
        for (before, l3) in cases {
            let mut frame = before.clone();
            assert!(!arp_reply(&mut frame, l3, mac(9)));
            assert_eq!(frame, before);
        }
    }

    #[test]
    fn echo_request_becomes_the_reply() {
        for (tagged, l3) in [(false, 14), (true, 18)] {
            let mut builder = FrameBuilder::icmp4_echo("10.0.0.1", "10.0.0.254", 7);
            if tagged {
                builder = builder.vlan(30, 2);
            }
            let before = with_ttl(builder.build(), l3, 17);
            let mut frame = before.clone();
            assert!(echo_reply(&mut frame, l3));
            let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
            assert_eq!(eth.dst_addr(), mac(1));
            assert_eq!(eth.src_addr(), mac(2));
            assert_eq!(&frame[12..l3], &before[12..l3]);
            let ip = Ipv4Packet::new_checked(&frame[l3..]).unwrap();
            let orig = Ipv4Packet::new_checked(&before[l3..]).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!(ip.src_addr(), ROUTER_IP);
            assert_eq!(ip.dst_addr(), HOST);
            assert_eq!(ip.ttl(), 64);
            assert_eq!(ip.total_len(), orig.total_len());
            assert_eq!(ip.ident(), orig.ident());
            assert_eq!(ip.protocol(), IpProtocol::Icmp);
            let ips = IpPair::V4(ip.src_addr(), ip.dst_addr());
            let message = IcmpPacket::new_checked(ip.payload()).unwrap();
            let echo = IcmpEchoRepr::parse(&message, ips).expect("valid checksum");
            assert_eq!(echo.msg_type, icmp::V4_ECHO_REPLY);
            assert_eq!((echo.ident, echo.seq), (0x4242, 7));
            assert_eq!(message.payload(), b"0123456789abcdef");
        }
    }

    #[test]
    fn echo_reply_refuses_anything_else() {
        let request = FrameBuilder::icmp4_echo("10.0.0.1", "10.0.0.254", 7).build();
        let mut fragment = request.clone();
        edit_ip(&mut fragment, 14, |ip| {
            ip.set_flags_fragment(false, true, 0)
        });
        let mut bad_icmp_sum = request.clone();
        bad_icmp_sum[40] ^= 1;
        let mut bad_ip_sum = request.clone();
        bad_ip_sum[24] ^= 1;
        let cases: [(Vec<u8>, usize); 12] = [
            (
                FrameBuilder::icmp4_echo("10.0.0.1", "10.0.0.254", 7)
                    .echo_reply(true)
                    .build(),
                14,
            ),
            (icmp_of_type(3), 14),
            (tcp_frame(), 14),
            (fragment, 14),
            (bad_icmp_sum, 14),
            (bad_ip_sum, 14),
            (with_options(&request), 14),
            (
                FrameBuilder::icmp4_echo("10.0.0.1", "10.0.0.255", 7).build(),
                18,
            ),
            (
                FrameBuilder::icmp4_echo("10.0.0.1", "255.255.255.255", 7).build(),
                14,
            ),
            (
                FrameBuilder::icmp4_echo("10.0.0.1", "224.0.0.1", 7).build(),
                14,
            ),
            (
                FrameBuilder::icmp4_echo("10.0.0.1", "10.0.0.254", 7)
                    .dst_mac(EthernetAddress::BROADCAST)
                    .build(),
                14,
            ),
            (request[..40].to_vec(), 14),
        ];
        for (i, (before, l3)) in cases.into_iter().enumerate() {
            let mut frame = before.clone();
            assert!(!echo_reply(&mut frame, l3), "case {i}");
            assert_eq!(frame, before, "case {i}");
        }
    }

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn limiter_allows_a_burst_of_six_per_destination_then_one_a_second() {
        let t0 = Instant::now();
        let mut limiter = IcmpLimiter::new();
        for _ in 0..6 {
            assert!(limiter.allow(A, IcmpErrorKind::TimeExceeded, t0));
        }
        assert!(!limiter.allow(A, IcmpErrorKind::TimeExceeded, t0));
        assert!(
            !limiter.allow(A, IcmpErrorKind::Unreachable(1), t0 + ms(999)),
            "one budget per destination, for both limited types"
        );
        for second in 1..10 {
            let at = t0 + ms(1000 * second);
            assert!(
                limiter.allow(A, IcmpErrorKind::TimeExceeded, at),
                "{second}s"
            );
            assert!(!limiter.allow(A, IcmpErrorKind::TimeExceeded, at));
            assert!(!limiter.allow(A, IcmpErrorKind::TimeExceeded, at + ms(500)));
        }
        // Other destinations have their own budget.
        for _ in 0..6 {
            assert!(limiter.allow(B, IcmpErrorKind::Unreachable(3), t0 + ms(9000)));
        }
        assert!(!limiter.allow(B, IcmpErrorKind::Unreachable(3), t0 + ms(9000)));
        // Six idle seconds refill the burst, and no more than it.
        let later = t0 + ms(60_000);
        for _ in 0..6 {
            assert!(limiter.allow(A, IcmpErrorKind::TimeExceeded, later));
        }
        assert!(!limiter.allow(A, IcmpErrorKind::TimeExceeded, later));
    }

    #[test]
    fn limiter_never_limits_frag_needed() {
        let t0 = Instant::now();
        let mut limiter = IcmpLimiter::new();
        for _ in 0..10_000 {
            assert!(limiter.allow(A, IcmpErrorKind::FragNeeded(1400), t0));
            assert!(limiter.allow(A, IcmpErrorKind::Unreachable(4), t0));
        }
        // Nor did they spend anything.
        for _ in 0..6 {
            assert!(limiter.allow(A, IcmpErrorKind::TimeExceeded, t0));
        }
        assert!(limiter.hosts.len() == 1);
    }

    #[test]
    fn limiter_has_a_global_budget() {
        let t0 = Instant::now();
        let mut limiter = IcmpLimiter::new();
        let host = |i: u32| Ipv4Addr::from(0x0a00_0000 + i);
        let allowed = (0..60)
            .filter(|&i| limiter.allow(host(i), IcmpErrorKind::TimeExceeded, t0))
            .count();
        assert_eq!(allowed, 50, "the global burst");
        assert!(!limiter.allow(host(100), IcmpErrorKind::TimeExceeded, t0 + ms(0)));
        // 1000 per second: one more per millisecond.
        assert!(limiter.allow(host(101), IcmpErrorKind::TimeExceeded, t0 + ms(1)));
        assert!(!limiter.allow(host(102), IcmpErrorKind::TimeExceeded, t0 + ms(1)));
        let allowed = (200..300)
            .filter(|&i| limiter.allow(host(i), IcmpErrorKind::TimeExceeded, t0 + ms(1000)))
            .count();
        assert_eq!(allowed, 50, "refilled to the burst, not past it");
    }

    #[test]
    fn refusals_per_destination_cost_no_global_credit() {
        let t0 = Instant::now();
        let mut limiter = IcmpLimiter::new();
        for _ in 0..1000 {
            limiter.allow(A, IcmpErrorKind::TimeExceeded, t0);
        }
        let host = |i: u32| Ipv4Addr::from(0x0b00_0000 + i);
        let allowed = (0..100)
            .filter(|&i| limiter.allow(host(i), IcmpErrorKind::TimeExceeded, t0))
            .count();
        assert_eq!(allowed, 50 - 6);
    }

    #[test]
    fn limiter_table_stays_bounded() {
        let t0 = Instant::now();
        let mut limiter = IcmpLimiter::new();
        for i in 0..20_000u32 {
            let at = t0 + ms(u64::from(i));
            assert!(limiter.allow(Ipv4Addr::from(i), IcmpErrorKind::TimeExceeded, at));
            assert!(limiter.hosts.len() <= limits::HOSTS);
        }
        // A table full of destinations none of which may be forgotten yet.
        let mut small = IcmpLimiter::with_host_capacity(8);
        for i in 0..1000u32 {
            let at = t0 + ms(u64::from(i));
            assert!(small.allow(Ipv4Addr::from(i), IcmpErrorKind::TimeExceeded, at));
            assert!(small.hosts.len() <= 8);
        }
        // A time earlier than one already seen (a caller's stale `now`) is harmless.
        assert!(small.allow(B, IcmpErrorKind::TimeExceeded, t0));
    }

    /// Runs every operation on `bytes` at `l3`, checking what each promises.
    fn run_all(bytes: &[u8], l3: usize) {
        let mut frame = bytes.to_vec();
        let checksum_ok = ipv4_at(bytes, l3).map(|ip| ip.verify_checksum());
        match dec_ttl(&mut frame, l3) {
            TtlOutcome::Decremented => {
                let ip = ipv4_at(&frame, l3).unwrap();
                assert_eq!(Some(ip.verify_checksum()), checksum_ok);
            }
            TtlOutcome::Expired | TtlOutcome::NotIpv4 => assert_eq!(frame, bytes),
        }
        assert_eq!(ipv4_size(bytes, l3).is_some(), checksum_ok.is_some());
        let mut out = Vec::new();
        for kind in [
            IcmpErrorKind::TimeExceeded,
            IcmpErrorKind::Unreachable(3),
            IcmpErrorKind::FragNeeded(1280),
        ] {
            if icmp_error(bytes, l3, kind, ROUTER_IP, &mut out) {
                let ip = Ipv4Packet::new_checked(&out[14..]).unwrap();
                assert!(ip.verify_checksum());
                assert_eq!(ip.total_len(), out.len() - 14);
                assert!(ip.total_len() <= 576);
                let message = IcmpPacket::new_checked(ip.payload()).unwrap();
                assert!(message.verify_checksum(IpPair::V4(ROUTER_IP, ip.dst_addr())));
            } else {
                assert!(out.is_empty());
            }
        }
        let mut frame = bytes.to_vec();
        if echo_reply(&mut frame, l3) {
            let ip = ipv4_at(&frame, l3).unwrap();
            assert!(ip.verify_checksum());
            let message = IcmpPacket::new_checked(ip.payload()).unwrap();
            assert_eq!(message.msg_type(), icmp::V4_ECHO_REPLY);
            assert!(message.verify_checksum(IpPair::V4(ROUTER_IP, ROUTER_IP)));
            assert!(!echo_reply(&mut frame, l3), "a reply is not answered");
        } else {
            assert_eq!(frame, bytes);
        }
        let mut frame = bytes.to_vec();
        if arp_reply(&mut frame, l3, mac(9)) {
            let arp = ArpPacket::new_checked(&frame[l3..]).unwrap();
            assert_eq!(arp.operation(), ArpOperation::Reply);
            assert!(
                !arp_reply(&mut frame, l3, mac(9)),
                "a reply is not answered"
            );
        } else {
            assert_eq!(frame, bytes);
        }
    }

    fn seed(which: usize, tagged: bool) -> (Vec<u8>, usize) {
        let builder = match which {
            0 => FrameBuilder::tcp4("10.0.0.1:1000", "10.0.1.2:80", b"data"),
            1 => FrameBuilder::udp4("10.0.0.1:1000", "10.0.1.2:53", &[7; 700]),
            2 => FrameBuilder::icmp4_echo("10.0.0.1", "10.0.0.254", 1),
            _ => FrameBuilder::arp_request(mac(1), "10.0.0.1", "10.0.0.254"),
        };
        if tagged {
            (builder.vlan(3, 0).build(), 18)
        } else {
            (builder.build(), 14)
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..120),
            l3 in 0usize..130,
        ) {
            run_all(&bytes, l3);
        }

        #[test]
        fn damaged_frames_never_panic_and_outputs_stay_sound(
            which in 0usize..4,
            tagged in any::<bool>(),
            flips in proptest::collection::vec((0usize..80, any::<u8>()), 0..4),
            fix_checksum in any::<bool>(),
            l3_shift in prop_oneof![Just(0isize), -4isize..=4],
        ) {
            let (mut frame, l3) = seed(which, tagged);
            for (at, value) in flips {
                if let Some(b) = frame.get_mut(at) {
                    *b = value;
                }
            }
            if fix_checksum
                && let Some(Ok(mut ip)) = frame.get_mut(l3..).map(Ipv4Packet::new_checked)
            {
                ip.fill_checksum();
            }
            run_all(&frame, l3.saturating_add_signed(l3_shift));
        }
    }
}
