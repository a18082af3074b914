//! The validated routing and internet sections: peerings between networks,
//! route tables attached to subnets, gateways a route may name, and the
//! internet edge (hosts on public addresses, internet gateways, public IPs
//! and NAT gateways). Names are checked to exist; `routing` turns them into
//! routes and flows per switch.

use super::security::{InterfaceRef, SubnetRef};
use ipnet::Ipv4Net;
use sdn_vswitch::wire::EthernetAddress;
use std::net::Ipv4Addr;

/// Public address ranges the lab's internet uses (RFC 5737's documentation
/// ranges, TEST-NET-1, -2 and -3).
pub const INTERNET_RANGES: [Ipv4Net; 3] = [
    Ipv4Net::new_assert(Ipv4Addr::new(192, 0, 2, 0), 24),
    Ipv4Net::new_assert(Ipv4Addr::new(198, 51, 100, 0), 24),
    Ipv4Net::new_assert(Ipv4Addr::new(203, 0, 113, 0), 24),
];

/// The internet's own router, the next hop of every internet host.
pub const INTERNET_ROUTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// Default source ports a NAT gateway allocates from.
pub const DEFAULT_NAT_PORTS: (u16, u16) = (1024, 65535);

/// Where a user route sends traffic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NextHop {
    /// A host interface that forwards (`ip_forward: true`).
    VirtualAppliance(Ipv4Addr),
    /// Nowhere: the traffic is dropped.
    None,
    /// The internet, through the network's internet gateway.
    Internet,
    /// A VPN gateway of the network.
    VpnGateway(String),
}

/// One user route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRoute {
    /// Name, unique in its table.
    pub name: String,
    /// Destination prefix.
    pub prefix: Ipv4Net,
    /// Where it goes.
    pub next_hop: NextHop,
}

/// A route table (Azure user-defined routes, an AWS route table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    /// Name.
    pub name: String,
    /// Routes, as written.
    pub routes: Vec<UserRoute>,
    /// Subnets whose traffic it steers.
    pub subnets: Vec<SubnetRef>,
}

/// A VPN gateway of a network (a route's `vpn_gateway` next hop, and an
/// end of `vpn::Connection`s); a network has at most one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpnGateway {
    /// Name.
    pub name: String,
    /// Its network.
    pub network: String,
    /// Its address on the internet edge, where IKE and ESP reach it.
    pub public_ip: Ipv4Addr,
}

/// Routing beyond a network's own subnets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Routing {
    /// Network pairs joined by peering (not transitive).
    pub peerings: Vec<(String, String)>,
    /// Route tables.
    pub route_tables: Vec<RouteTable>,
    /// VPN gateways.
    pub vpn_gateways: Vec<VpnGateway>,
}

impl Routing {
    /// Whether networks `a` and `b` are peered with each other.
    pub fn peered(&self, a: &str, b: &str) -> bool {
        self.peerings
            .iter()
            .any(|(x, y)| (x == a && y == b) || (x == b && y == a))
    }

    /// The VPN gateway named `name`.
    pub fn vpn_gateway(&self, name: &str) -> Option<&VpnGateway> {
        self.vpn_gateways.iter().find(|g| g.name == name)
    }

    /// The VPN gateway of a network.
    pub fn vpn_gateway_of(&self, network: &str) -> Option<&VpnGateway> {
        self.vpn_gateways.iter().find(|g| g.network == network)
    }

    /// The route table attached to a subnet.
    pub fn table_of(&self, network: &str, subnet: &str) -> Option<&RouteTable> {
        self.route_tables.iter().find(|t| {
            t.subnets
                .iter()
                .any(|s| s.network == network && s.subnet == subnet)
        })
    }
}

/// A host on the internet: a namespace with a public address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternetHost {
    /// Name (its namespace is `<lab>-<name>`).
    pub name: String,
    /// Its public address.
    pub address: Ipv4Addr,
    /// The MAC of its interface.
    pub mac: EthernetAddress,
}

/// A network's way to the internet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternetGateway {
    /// Name.
    pub name: String,
    /// The network it serves.
    pub network: String,
}

/// A public address attached to a host interface (1:1 NAT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicIp {
    /// Name.
    pub name: String,
    /// The public address.
    pub address: Ipv4Addr,
    /// The interface it stands for.
    pub interface: InterfaceRef,
}

/// A NAT gateway: outbound connections of its subnets' hosts (those without
/// a public IP) leave from its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatGateway {
    /// Name.
    pub name: String,
    /// The public address.
    pub address: Ipv4Addr,
    /// Source ports it allocates from (inclusive).
    pub ports: (u16, u16),
    /// Subnets it serves (of one network).
    pub subnets: Vec<SubnetRef>,
    /// The network of those subnets.
    pub network: String,
    /// The switch that translates (its uplink owns the address).
    pub switch: String,
}

/// The internet edge of the lab.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Internet {
    /// Whether the lab has an internet at all (an `internet:` section).
    pub present: bool,
    /// Hosts on the internet.
    pub hosts: Vec<InternetHost>,
    /// Internet gateways.
    pub gateways: Vec<InternetGateway>,
    /// Public IPs.
    pub public_ips: Vec<PublicIp>,
    /// NAT gateways.
    pub nat_gateways: Vec<NatGateway>,
}

impl Internet {
    /// The internet gateway of a network.
    pub fn gateway_of(&self, network: &str) -> Option<&InternetGateway> {
        self.gateways.iter().find(|g| g.network == network)
    }

    /// The public IP of a host interface.
    pub fn public_ip_of(&self, host: &str, interface: &str) -> Option<&PublicIp> {
        self.public_ips
            .iter()
            .find(|p| p.interface.host == host && p.interface.interface == interface)
    }

    /// The NAT gateway serving a subnet.
    pub fn nat_gateway_of(&self, network: &str, subnet: &str) -> Option<&NatGateway> {
        self.nat_gateways.iter().find(|g| {
            g.subnets
                .iter()
                .any(|s| s.network == network && s.subnet == subnet)
        })
    }
}
