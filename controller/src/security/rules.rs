//! Security rules as the switch enforces them: every name resolved to
//! addresses, every default rule written out. Both models end up here: an
//! NSG is an ordered list with allow and deny; an ACG set is a union of allow
//! rules. `eval` decides packets straight from these; `compile` turns them
//! into flows.

use crate::topology::load_balancer::PROBE_SOURCE;
pub use crate::topology::{Access, Direction, PortRange, Protocol};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// The addresses a rule names, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Addresses {
    /// Any address.
    Any,
    /// These prefixes (empty: a group with no members, which matches nothing).
    Prefixes(Vec<Ipv4Net>),
}

impl Addresses {
    /// Whether `addr` is among them.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        match self {
            Addresses::Any => true,
            Addresses::Prefixes(p) => p.iter().any(|net| net.contains(&addr)),
        }
    }
}

/// Where a rule came from, for counters, logs and listings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleRef {
    /// NSG or ACG name.
    pub group: String,
    /// Rule name (NSG) or `inbound[3]`-style position (ACG).
    pub rule: String,
    /// Direction.
    pub direction: Direction,
    /// NSG priority; 0 for ACG rules.
    pub priority: u32,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Where it came from.
    pub origin: RuleRef,
    /// Allow or deny (ACG rules always allow).
    pub access: Access,
    /// Protocol.
    pub protocol: Protocol,
    /// Source addresses.
    pub src: Addresses,
    /// Source ports (TCP and UDP only).
    pub src_ports: Vec<PortRange>,
    /// Destination addresses.
    pub dst: Addresses,
    /// Destination ports (TCP and UDP only).
    pub dst_ports: Vec<PortRange>,
}

impl Rule {
    /// Whether the rule restricts ports. Ports only exist for TCP and UDP, so
    /// a rule for any protocol with a port restriction matches TCP and UDP
    /// alone.
    pub fn restricts_ports(&self) -> bool {
        !(self.src_ports.iter().any(|r| r.is_any()) && self.dst_ports.iter().any(|r| r.is_any()))
    }
}

/// `tcp`, `udp`, `icmp`, or the number of another IP protocol.
pub fn proto_name(proto: u8) -> String {
    match proto {
        proto::ICMP => "icmp".into(),
        proto::TCP => "tcp".into(),
        proto::UDP => "udp".into(),
        proto::ESP => "esp".into(),
        proto::AH => "ah".into(),
        other => other.to_string(),
    }
}

/// The IPv4 protocols the switch tracks.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ESP.
    pub const ESP: u8 = 50;
    /// AH.
    pub const AH: u8 = 51;
}

/// A packet as rules see it (ports are 0 for protocols without them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// IP protocol.
    pub proto: u8,
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

/// One layer of policy on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layer {
    /// An NSG: rules of both directions, the defaults included; first match
    /// (lowest priority number) wins.
    Nsg {
        /// NSG name.
        name: String,
        /// Rules, sorted by priority within each direction.
        rules: Vec<Rule>,
    },
    /// One to three ACGs: the union of their allow rules.
    Acg {
        /// ACG names.
        names: Vec<String>,
        /// Allow rules of both directions.
        rules: Vec<Rule>,
        /// No ACG has outbound rules: all outbound traffic is allowed.
        outbound_open: bool,
    },
}

impl Layer {
    /// Rules of one direction, in evaluation order.
    pub fn rules(&self, direction: Direction) -> impl Iterator<Item = &Rule> {
        let rules = match self {
            Layer::Nsg { rules, .. } | Layer::Acg { rules, .. } => rules,
        };
        rules
            .iter()
            .filter(move |r| r.origin.direction == direction)
    }
}

/// The policy of one interface: Azure evaluates a subnet's NSG and the
/// interface's own; both must allow (inbound subnet first, outbound
/// interface first).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortPolicy {
    /// The NSG of the interface's subnet.
    pub subnet: Option<Layer>,
    /// The interface's own NSG or ACGs.
    pub nic: Option<Layer>,
}

impl PortPolicy {
    /// Whether anything filters this interface.
    pub fn is_empty(&self) -> bool {
        self.subnet.is_none() && self.nic.is_none()
    }

    /// The layers in the order `direction` meets them.
    pub fn layers(&self, direction: Direction) -> [Option<&Layer>; 2] {
        match direction {
            Direction::Inbound => [self.subnet.as_ref(), self.nic.as_ref()],
            Direction::Outbound => [self.nic.as_ref(), self.subnet.as_ref()],
        }
    }
}

/// The default rules every NSG ends with (as Azure's): allow traffic inside
/// the virtual network both ways, allow load balancer health probes in
/// (from `PROBE_SOURCE`, the `AzureLoadBalancer` tag), allow outbound to the
/// internet, deny all other inbound and outbound. `vnet` is the address
/// space of the interface's network (and its peers), `internet` the public
/// one.
pub fn nsg_defaults(nsg: &str, vnet: &[Ipv4Net], internet: &[Ipv4Net]) -> Vec<Rule> {
    let rule = |name: &str, priority, direction, access, src: Addresses, dst: Addresses| Rule {
        origin: RuleRef {
            group: nsg.to_string(),
            rule: name.to_string(),
            direction,
            priority,
        },
        access,
        protocol: Protocol::Any,
        src,
        src_ports: vec![PortRange::ANY],
        dst,
        dst_ports: vec![PortRange::ANY],
    };
    let vnet = || Addresses::Prefixes(vnet.to_vec());
    use Access::*;
    use Direction::*;
    vec![
        rule("AllowVnetInBound", 65000, Inbound, Allow, vnet(), vnet()),
        rule(
            "AllowAzureLoadBalancerInBound",
            65001,
            Inbound,
            Allow,
            Addresses::Prefixes(vec![Ipv4Net::new_assert(PROBE_SOURCE, 32)]),
            Addresses::Any,
        ),
        rule(
            "DenyAllInBound",
            65500,
            Inbound,
            Deny,
            Addresses::Any,
            Addresses::Any,
        ),
        rule("AllowVnetOutBound", 65000, Outbound, Allow, vnet(), vnet()),
        rule(
            "AllowInternetOutBound",
            65001,
            Outbound,
            Allow,
            Addresses::Any,
            Addresses::Prefixes(internet.to_vec()),
        ),
        rule(
            "DenyAllOutBound",
            65500,
            Outbound,
            Deny,
            Addresses::Any,
            Addresses::Any,
        ),
    ]
}

/// Sorts NSG rules into evaluation order (direction, then priority).
pub fn sort_nsg(rules: &mut [Rule]) {
    rules.sort_by_key(|r| (r.origin.direction, r.origin.priority));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nsg_defaults_are_azures() {
        let vnet: Vec<Ipv4Net> = vec!["10.0.0.0/16".parse().unwrap()];
        let internet: Vec<Ipv4Net> = vec!["203.0.113.0/24".parse().unwrap()];
        let mut rules = nsg_defaults("nsg", &vnet, &internet);
        sort_nsg(&mut rules);
        let listed: Vec<_> = rules
            .iter()
            .map(|r| {
                (
                    r.origin.rule.as_str(),
                    r.origin.priority,
                    r.origin.direction,
                    r.access,
                )
            })
            .collect();
        use Access::*;
        use Direction::*;
        assert_eq!(
            listed,
            [
                ("AllowVnetInBound", 65000, Inbound, Allow),
                ("AllowAzureLoadBalancerInBound", 65001, Inbound, Allow),
                ("DenyAllInBound", 65500, Inbound, Deny),
                ("AllowVnetOutBound", 65000, Outbound, Allow),
                ("AllowInternetOutBound", 65001, Outbound, Allow),
                ("DenyAllOutBound", 65500, Outbound, Deny),
            ]
        );
        // Health probes come from the one well-known address, to anywhere.
        let probes = &rules[1];
        assert_eq!(
            probes.src,
            Addresses::Prefixes(vec!["168.63.129.16/32".parse().unwrap()])
        );
        assert_eq!(probes.dst, Addresses::Any);
        assert_eq!(probes.protocol, Protocol::Any);
    }
}
