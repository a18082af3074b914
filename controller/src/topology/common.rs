//! Types the topology and several applications share: IP protocols as rules
//! name them, port ranges, traffic directions and allow/deny.

/// Protocol a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Any IPv4 protocol.
    Any,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP.
    Icmp,
    /// ESP (IP protocol 50), as IPsec sends it outside UDP.
    Esp,
    /// AH (IP protocol 51).
    Ah,
}

impl Protocol {
    /// The name rules are written with.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Any => "any",
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::Esp => "esp",
            Protocol::Ah => "ah",
        }
    }
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Let the packet (and its connection) through.
    Allow,
    /// Drop it.
    Deny,
}

/// Which traffic of an interface a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Toward the interface's host.
    Inbound,
    /// From the interface's host.
    Outbound,
}

impl Direction {
    /// `inbound` or `outbound`.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// An inclusive range of TCP/UDP ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port.
    pub lo: u16,
    /// Last port.
    pub hi: u16,
}

impl PortRange {
    /// Every port.
    pub const ANY: PortRange = PortRange { lo: 0, hi: 65535 };

    /// Whether `port` is inside.
    pub fn contains(self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }

    /// Whether this is every port.
    pub fn is_any(self) -> bool {
        self == PortRange::ANY
    }
}
