//! The numbers the routing flows share: the router's and the edge's MAC
//! addresses, the metadata that carries a frame's routing context from table
//! to table, NAT zones, and indexes of subnets and networks.

use crate::topology::{Topology, derived_mac};
use sdn_vswitch::wire::EthernetAddress;

/// Metadata kind: a frame from a host port of subnet `index`.
pub const KIND_SUBNET: u32 = 1;
/// Metadata kind: a routed frame looking for its host in network `index`.
pub const KIND_NEIGH: u32 = 2;
/// Metadata kind: a frame from subnet `index` on its way to the internet.
pub const KIND_INET: u32 = 3;
/// Metadata kind: a frame from the internet for network `index`.
pub const KIND_EDGE: u32 = 4;
/// Metadata kind: a frame another switch relayed over the edge, in network
/// `index`.
pub const KIND_TRANSIT: u32 = 5;

/// The metadata value of a kind and index.
pub fn metadata(kind: u32, index: usize) -> u32 {
    (kind << 28) | (index as u32 & 0x0fff_ffff)
}

/// First conntrack zone of NAT (one per network; switch ports, which name
/// the security zones, stop below it).
pub const NAT_ZONE_BASE: u16 = 65_280;

/// The NAT zone of network `index`.
pub fn nat_zone(index: usize) -> u16 {
    NAT_ZONE_BASE.saturating_add(index as u16)
}

/// Where things are in the topology, by number.
#[derive(Debug, Clone)]
pub struct Indexes {
    subnets: Vec<(String, String)>,
    networks: Vec<String>,
    /// The lab's name (for derived addresses).
    pub lab: String,
}

impl Indexes {
    /// The indexes of `topology`'s networks and subnets, in file order.
    pub fn of(topology: &Topology) -> Indexes {
        Indexes {
            subnets: topology
                .networks
                .iter()
                .flat_map(|n| {
                    n.subnets
                        .iter()
                        .map(move |s| (n.name.clone(), s.name.clone()))
                })
                .collect(),
            networks: topology.networks.iter().map(|n| n.name.clone()).collect(),
            lab: topology.name.clone(),
        }
    }

    /// The index of subnet `network/subnet`.
    pub fn subnet(&self, network: &str, subnet: &str) -> Option<usize> {
        self.subnets
            .iter()
            .position(|(n, s)| n == network && s == subnet)
    }

    /// The subnet with index `i`.
    pub fn subnet_at(&self, i: usize) -> Option<(&str, &str)> {
        self.subnets.get(i).map(|(n, s)| (n.as_str(), s.as_str()))
    }

    /// The index of network `name`.
    pub fn network(&self, name: &str) -> Option<usize> {
        self.networks.iter().position(|n| n == name)
    }

    /// The MAC the switches route with (the gateways' address).
    pub fn router_mac(&self) -> EthernetAddress {
        router_mac(&self.lab)
    }

    /// The address of `switch` on the edge, for `network`.
    pub fn edge_mac(&self, switch: &str, network: &str) -> EthernetAddress {
        edge_mac(&self.lab, switch, network)
    }
}

/// The MAC the switches of `lab` route with.
pub fn router_mac(lab: &str) -> EthernetAddress {
    derived_mac(lab, "router", "")
}

/// The address of `switch` on the edge of `lab`, for `network`.
pub fn edge_mac(lab: &str, switch: &str, network: &str) -> EthernetAddress {
    derived_mac(lab, &format!("edge:{switch}"), network)
}

/// The address of the internet's router on the edge of `lab`.
pub fn internet_router_mac(lab: &str) -> EthernetAddress {
    derived_mac(lab, "internet", "edge")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_kinds_do_not_collide() {
        assert_eq!(metadata(KIND_SUBNET, 3), 0x1000_0003);
        assert_ne!(metadata(KIND_NEIGH, 3), metadata(KIND_INET, 3));
        assert_eq!(nat_zone(2), 65_282);
        let lab = "t";
        let macs = [
            router_mac(lab),
            edge_mac(lab, "sw1", "vnet"),
            edge_mac(lab, "sw2", "vnet"),
            edge_mac(lab, "sw1", "other"),
            internet_router_mac(lab),
        ];
        for (i, a) in macs.iter().enumerate() {
            assert!(!a.is_multicast());
            assert!(macs[i + 1..].iter().all(|b| b != a));
        }
    }
}
