//! Typed packet views: a zero-copy `FooPacket<T: AsRef<[u8]>>` per header with
//! checked construction, accessors and setters, and a `FooRepr` with `parse`,
//! `buffer_len` and `emit` (the smoltcp two-level design). After `new_checked`
//! succeeds no accessor panics.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;
pub mod vlan;
pub mod vnet_hdr;
pub mod vxlan;

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use ethernet::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr};
pub use icmp::{IcmpEchoRepr, IcmpPacket};
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6Packet, Ipv6Repr};
pub use tcp::{TcpFlags, TcpRepr, TcpSegment};
pub use udp::{UdpDatagram, UdpRepr};
pub use vlan::{VlanHeader, VlanRepr};
pub use vnet_hdr::{GsoType, VnetHeader, VnetRepr};
pub use vxlan::{VxlanPacket, VxlanRepr};

use std::net::{Ipv4Addr, Ipv6Addr};

/// Why bytes could not be read as a header. Small and `Copy`: malformed input
/// on the fast path is counted, not logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The buffer ends before the header (or the length it declares) does.
    #[error("{layer}: truncated, need {need} bytes, got {got}")]
    Truncated {
        /// The header being read.
        layer: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        got: usize,
    },
    /// A field holds an impossible value.
    #[error("{layer}: malformed, {reason}")]
    Malformed {
        /// The header being read.
        layer: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// Valid, but not something this parser handles.
    #[error("{layer}: unsupported {what}")]
    Unsupported {
        /// The header being read.
        layer: &'static str,
        /// What is unsupported.
        what: &'static str,
    },
    /// The checksum does not verify.
    #[error("{layer}: bad checksum")]
    Checksum {
        /// The header being read.
        layer: &'static str,
    },
}

/// Result of a parse.
pub type Result<T> = std::result::Result<T, ParseError>;

/// An IP protocol number; values not interpreted here are kept as `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpProtocol {
    /// 1.
    Icmp,
    /// 6.
    Tcp,
    /// 17.
    Udp,
    /// 58.
    Icmpv6,
    /// Anything else.
    Unknown(u8),
}

impl From<u8> for IpProtocol {
    fn from(value: u8) -> Self {
        match value {
            1 => IpProtocol::Icmp,
            6 => IpProtocol::Tcp,
            17 => IpProtocol::Udp,
            58 => IpProtocol::Icmpv6,
            other => IpProtocol::Unknown(other),
        }
    }
}

impl From<IpProtocol> for u8 {
    fn from(value: IpProtocol) -> Self {
        match value {
            IpProtocol::Icmp => 1,
            IpProtocol::Tcp => 6,
            IpProtocol::Udp => 17,
            IpProtocol::Icmpv6 => 58,
            IpProtocol::Unknown(other) => other,
        }
    }
}

/// Source and destination addresses of an IP packet, for pseudo-headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpPair {
    /// IPv4 source and destination.
    V4(Ipv4Addr, Ipv4Addr),
    /// IPv6 source and destination.
    V6(Ipv6Addr, Ipv6Addr),
}

impl IpPair {
    /// The pseudo-header sum for an upper-layer message of `length` bytes.
    pub fn pseudo_header(self, protocol: IpProtocol, length: usize) -> u32 {
        match self {
            IpPair::V4(src, dst) => checksum::pseudo_header_v4(
                src,
                dst,
                protocol.into(),
                u16::try_from(length).unwrap_or(u16::MAX),
            ),
            IpPair::V6(src, dst) => checksum::pseudo_header_v6(
                src,
                dst,
                protocol.into(),
                u32::try_from(length).unwrap_or(u32::MAX),
            ),
        }
    }
}
