//! The effective routes of a subnet, as Azure lists them: system routes (the
//! network's own address space, peered networks, the internet through the
//! network's internet gateway) and the user routes of the subnet's route
//! table, a user route taking over a system route of the same prefix. Also
//! the reference lookup (longest prefix wins) that the compiled flows are
//! tested against.

use crate::topology::Topology;
use crate::topology::routing::NextHop;
use ipnet::{IpNet, Ipv4Net};
use std::net::Ipv4Addr;

/// Where a route comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// The network's own address space, or the internet gateway.
    System,
    /// A peered network.
    Peering,
    /// A VPN gateway's connection: the prefixes behind its far end.
    Gateway,
    /// A route table.
    User,
}

impl Source {
    /// `system`, `peering`, `gateway` or `user`.
    pub fn name(self) -> &'static str {
        match self {
            Source::System => "system",
            Source::Peering => "peering",
            Source::Gateway => "gateway",
            Source::User => "user",
        }
    }
}

/// What a route does with a packet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Hop {
    /// Delivered to its host in this network.
    VnetLocal {
        /// The network.
        network: String,
    },
    /// Delivered to its host in a peered network.
    Peering {
        /// The peered network.
        network: String,
    },
    /// Out through the internet gateway.
    Internet,
    /// To a host interface that forwards.
    VirtualAppliance(Ipv4Addr),
    /// Dropped.
    None,
    /// To a VPN gateway.
    VpnGateway(String),
}

impl Hop {
    /// The next-hop type as Azure names it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Hop::VnetLocal { .. } => "VnetLocal",
            Hop::Peering { .. } => "VNetPeering",
            Hop::Internet => "Internet",
            Hop::VirtualAppliance(_) => "VirtualAppliance",
            Hop::None => "None",
            Hop::VpnGateway(_) => "VirtualNetworkGateway",
        }
    }

    /// The next hop's address or name, if it has one.
    pub fn target(&self) -> Option<String> {
        match self {
            Hop::VnetLocal { .. } | Hop::Peering { .. } | Hop::Internet | Hop::None => None,
            Hop::VirtualAppliance(a) => Some(a.to_string()),
            Hop::VpnGateway(name) => Some(name.clone()),
        }
    }
}

/// One route of a subnet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EffectiveRoute {
    /// Where it comes from.
    pub source: Source,
    /// The route's name (user routes) or what it stands for.
    pub name: String,
    /// Destination prefix.
    pub prefix: Ipv4Net,
    /// What it does.
    pub hop: Hop,
    /// False when a user route of the same prefix takes over.
    pub active: bool,
}

impl EffectiveRoute {
    /// Its flow priority: longer prefixes first, a user route above a system
    /// route of the same length.
    pub fn priority(&self) -> u16 {
        100 + 2 * u16::from(self.prefix.prefix_len()) + u16::from(self.source == Source::User)
    }
}

/// The IPv4 address space of a network.
fn v4(cidr: &IpNet) -> Option<Ipv4Net> {
    match cidr {
        IpNet::V4(net) => Some(*net),
        IpNet::V6(_) => None,
    }
}

/// The effective routes of subnet `network/subnet` (empty for an unknown one).
pub fn subnet_routes(topology: &Topology, network: &str, subnet: &str) -> Vec<EffectiveRoute> {
    let Some(own) = topology.network(network) else {
        return Vec::new();
    };
    let mut routes = Vec::new();
    if let Some(prefix) = v4(&own.cidr) {
        routes.push(EffectiveRoute {
            source: Source::System,
            name: "VnetLocal".into(),
            prefix,
            hop: Hop::VnetLocal {
                network: own.name.clone(),
            },
            active: true,
        });
    }
    for other in &topology.networks {
        if other.name != own.name
            && topology.routing.peered(&own.name, &other.name)
            && let Some(prefix) = v4(&other.cidr)
        {
            routes.push(EffectiveRoute {
                source: Source::Peering,
                name: format!("peering-{}", other.name),
                prefix,
                hop: Hop::Peering {
                    network: other.name.clone(),
                },
                active: true,
            });
        }
    }
    if let Some(gateway) = topology.routing.vpn_gateway_of(&own.name) {
        for tunnel in topology.vpn.tunnel_routes(&gateway.name) {
            routes.push(EffectiveRoute {
                source: Source::Gateway,
                name: format!("vpn-{}", tunnel.connection),
                prefix: tunnel.prefix,
                hop: Hop::VpnGateway(gateway.name.clone()),
                active: true,
            });
        }
    }
    if topology.internet.gateway_of(&own.name).is_some() {
        routes.push(EffectiveRoute {
            source: Source::System,
            name: "Internet".into(),
            prefix: Ipv4Net::default(),
            hop: Hop::Internet,
            active: true,
        });
    }
    if let Some(table) = topology.routing.table_of(network, subnet) {
        for route in &table.routes {
            for system in routes.iter_mut().filter(|r| r.prefix == route.prefix) {
                system.active = false;
            }
            routes.push(EffectiveRoute {
                source: Source::User,
                name: route.name.clone(),
                prefix: route.prefix,
                hop: match &route.next_hop {
                    NextHop::VirtualAppliance(a) => Hop::VirtualAppliance(*a),
                    NextHop::None => Hop::None,
                    NextHop::Internet => Hop::Internet,
                    NextHop::VpnGateway(g) => Hop::VpnGateway(g.clone()),
                },
                active: true,
            });
        }
    }
    routes
}

/// The route a packet to `dst` takes: the active route with the longest
/// prefix containing it, a user route winning a tie.
pub fn lookup(routes: &[EffectiveRoute], dst: Ipv4Addr) -> Option<&EffectiveRoute> {
    routes
        .iter()
        .filter(|r| r.active && r.prefix.contains(&dst))
        .max_by_key(|r| (r.prefix.prefix_len(), r.source == Source::User))
}
