//! From the topology's security section to what one switch enforces: each
//! port's interface gets its layers (subnet NSG, own NSG or ACG set) with
//! groups and service tags (`VirtualNetwork`, `Internet`, `AzureLoadBalancer`)
//! turned into prefixes and NSG defaults added.

use super::compile::{ProtectedPort, SwitchFirewall};
use super::rules::{
    Access, Addresses, Direction, Layer, PortPolicy, PortRange, Rule, RuleRef, nsg_defaults,
    sort_nsg,
};
use crate::topology::load_balancer::PROBE_SOURCE;
use crate::topology::routing::INTERNET_RANGES;
use crate::topology::security::{Acg, InterfaceRef, Nsg, Peer};
use crate::topology::{Interface, NodeKind, Topology, peer_of};
use ipnet::{IpNet, Ipv4Net};
use std::net::IpAddr;

/// The interface a reference names.
fn interface<'t>(topology: &'t Topology, r: &InterfaceRef) -> Option<&'t Interface> {
    topology
        .host(&r.host)?
        .interfaces
        .iter()
        .find(|i| i.name == r.interface)
}

fn host_prefix(iface: &Interface) -> Option<Ipv4Net> {
    match iface.address {
        IpAddr::V4(a) => Ipv4Net::new(a, 32).ok(),
        IpAddr::V6(_) => None,
    }
}

/// The IPv4 address space of an interface's network and of the networks
/// peered with it (what Azure's `VirtualNetwork` tag stands for).
fn vnet_of(topology: &Topology, iface: &Interface) -> Vec<Ipv4Net> {
    topology
        .networks
        .iter()
        .filter(|n| n.name == iface.network || topology.routing.peered(&n.name, &iface.network))
        .filter_map(|n| match n.cidr {
            IpNet::V4(net) => Some(net),
            IpNet::V6(_) => None,
        })
        .collect()
}

/// The internet's public address space (what Azure's `Internet` tag
/// stands for here).
fn internet() -> Vec<Ipv4Net> {
    INTERNET_RANGES.to_vec()
}

/// The source of load balancer health probes (what Azure's
/// `AzureLoadBalancer` tag stands for).
fn probe_source() -> Vec<Ipv4Net> {
    vec![Ipv4Net::new_assert(PROBE_SOURCE, 32)]
}

/// The addresses a peer stands for, seen from `iface`.
fn addresses(topology: &Topology, iface: &Interface, peer: &Peer) -> Addresses {
    let members = |refs: &mut dyn Iterator<Item = &InterfaceRef>| {
        Addresses::Prefixes(
            refs.filter_map(|r| interface(topology, r))
                .filter_map(host_prefix)
                .collect(),
        )
    };
    let security = &topology.security;
    match peer {
        Peer::Any => Addresses::Any,
        Peer::VirtualNetwork => Addresses::Prefixes(vnet_of(topology, iface)),
        Peer::Internet => Addresses::Prefixes(internet()),
        Peer::AzureLoadBalancer => Addresses::Prefixes(probe_source()),
        Peer::Prefixes(p) => Addresses::Prefixes(p.clone()),
        Peer::Group(name) => {
            if let Some(asg) = security.asgs.iter().find(|a| &a.name == name) {
                members(&mut asg.members.iter())
            } else if let Some(acg) = security.acgs.iter().find(|a| &a.name == name) {
                members(&mut acg.interfaces.iter())
            } else {
                Addresses::Prefixes(Vec::new())
            }
        }
    }
}

fn nsg_layer(topology: &Topology, iface: &Interface, nsg: &Nsg) -> Layer {
    let mut rules: Vec<Rule> = nsg
        .rules
        .iter()
        .map(|r| Rule {
            origin: RuleRef {
                group: nsg.name.clone(),
                rule: r.name.clone(),
                direction: r.direction,
                priority: r.priority,
            },
            access: r.access,
            protocol: r.protocol,
            src: addresses(topology, iface, &r.source),
            src_ports: r.source_ports.clone(),
            dst: addresses(topology, iface, &r.destination),
            dst_ports: r.destination_ports.clone(),
        })
        .collect();
    rules.extend(nsg_defaults(
        &nsg.name,
        &vnet_of(topology, iface),
        &internet(),
    ));
    sort_nsg(&mut rules);
    Layer::Nsg {
        name: nsg.name.clone(),
        rules,
    }
}

fn acg_layer(topology: &Topology, iface: &Interface, acgs: &[&Acg]) -> Layer {
    let mut rules = Vec::new();
    for acg in acgs {
        for (direction, list) in [
            (Direction::Inbound, &acg.inbound),
            (Direction::Outbound, &acg.outbound),
        ] {
            for (k, r) in list.iter().enumerate() {
                let peer = addresses(topology, iface, &r.peer);
                let (src, dst) = match direction {
                    Direction::Inbound => (peer, Addresses::Any),
                    Direction::Outbound => (Addresses::Any, peer),
                };
                rules.push(Rule {
                    origin: RuleRef {
                        group: acg.name.clone(),
                        rule: format!("{}[{k}]", direction.name()),
                        direction,
                        priority: 0,
                    },
                    access: Access::Allow,
                    protocol: r.protocol,
                    src,
                    src_ports: vec![PortRange::ANY],
                    dst,
                    dst_ports: r.ports.clone(),
                });
            }
        }
    }
    Layer::Acg {
        names: acgs.iter().map(|a| a.name.clone()).collect(),
        outbound_open: acgs.iter().all(|a| a.outbound.is_empty()),
        rules,
    }
}

/// The layers filtering `host:iface`.
pub fn port_policy(topology: &Topology, host: &str, iface: &Interface) -> PortPolicy {
    let security = &topology.security;
    let me = InterfaceRef {
        host: host.to_string(),
        interface: iface.name.clone(),
    };
    let subnet = security
        .nsgs
        .iter()
        .find(|n| {
            n.subnets
                .iter()
                .any(|s| s.network == iface.network && s.subnet == iface.subnet)
        })
        .map(|nsg| nsg_layer(topology, iface, nsg));
    let own_nsg = security.nsgs.iter().find(|n| n.interfaces.contains(&me));
    let acgs: Vec<&Acg> = security
        .acgs
        .iter()
        .filter(|a| a.interfaces.contains(&me))
        .collect();
    let nic = match own_nsg {
        Some(nsg) => Some(nsg_layer(topology, iface, nsg)),
        None if !acgs.is_empty() => Some(acg_layer(topology, iface, &acgs)),
        None => None,
    };
    PortPolicy { subnet, nic }
}

/// What switch `name` enforces: its ports whose hosts' interfaces are filtered.
pub fn switch_firewall(topology: &Topology, name: &str) -> SwitchFirewall {
    let mut fw = SwitchFirewall {
        ports: Vec::new(),
        log_denied: topology.security.flow_log_rate.is_some(),
    };
    let Some(switch) = topology.switch(name) else {
        return fw;
    };
    for port in &switch.ports {
        let Some(end) = peer_of(&topology.links, name, &port.name) else {
            continue;
        };
        if end.kind != NodeKind::Host {
            continue;
        }
        let Some(iface) = topology
            .host(&end.node)
            .and_then(|h| h.interfaces.iter().find(|i| i.name == end.device))
        else {
            continue;
        };
        let policy = port_policy(topology, &end.node, iface);
        if let (false, IpAddr::V4(address)) = (policy.is_empty(), iface.address) {
            fw.ports.push(ProtectedPort {
                port: port.number,
                mac: iface.mac,
                address,
                policy,
                forwards: iface.ip_forward,
            });
        }
    }
    fw
}
