//! What the topology asks of one switch, in the terms its L2 application
//! needs: ports and their VLAN treatment, and for a switch on a hypervisor its
//! tunnel endpoint, the remote endpoints of each VNI, and where the hosts of
//! those VNIs live (so remote MACs are programmed, not only learned).

use crate::topology::{NodeKind, PortMode, Switch, Topology};
use sdn_vswitch::flow::PortNo;
use sdn_vswitch::wire::EthernetAddress;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The port number of a switch's VXLAN tunnel endpoint.
pub const TUNNEL_PORT: PortNo = 65_000;

/// The VLAN of a port without VLAN configuration on a VLAN-aware switch.
pub const DEFAULT_VLAN: u16 = 1;

/// A switch port and its VLAN treatment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPort {
    /// Port number.
    pub number: PortNo,
    /// Port name.
    pub name: String,
    /// VLAN treatment (`Plain` becomes access VLAN 1 on a VLAN-aware switch).
    pub mode: PortMode,
}

/// A host MAC that lives behind another tunnel endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteMac {
    /// This switch's VLAN for it.
    pub vlan: u16,
    /// The address.
    pub mac: EthernetAddress,
    /// The VNI that carries it.
    pub vni: u32,
    /// The endpoint it lives behind.
    pub vtep: Ipv4Addr,
}

/// A switch's tunnel endpoint and what it reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelPlan {
    /// Local underlay address.
    pub local: Ipv4Addr,
    /// VLAN → VNI.
    pub vni_of_vlan: BTreeMap<u16, u32>,
    /// Remote endpoints of each VNI (head-end replication list).
    pub vteps: BTreeMap<u32, Vec<Ipv4Addr>>,
    /// Hosts known to live behind remote endpoints.
    pub remote_macs: Vec<RemoteMac>,
}

/// What one switch is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchPlan {
    /// Whether it runs the VLAN-aware pipeline.
    pub vlan_aware: bool,
    /// Ports.
    pub ports: Vec<PlannedPort>,
    /// Its tunnel endpoint, if it has one.
    pub tunnel: Option<TunnelPlan>,
}

/// The VLAN a port puts untagged frames in.
pub fn access_vlan(mode: &PortMode) -> Option<u16> {
    match mode {
        PortMode::Plain => Some(DEFAULT_VLAN),
        PortMode::Access { vlan, .. } => Some(*vlan),
        PortMode::Trunk { native, .. } => *native,
    }
}

/// Every VLAN a switch carries: its ports' VLANs and those it tunnels.
pub fn vlans_of(switch: &Switch) -> std::collections::BTreeSet<u16> {
    vlans_carried(
        switch.ports.iter().map(|p| &p.mode),
        switch.vlan_vni.keys().copied(),
    )
}

/// The VLANs of ports with `modes`, and the `tunnelled` ones.
pub fn vlans_carried<'m>(
    modes: impl IntoIterator<Item = &'m PortMode>,
    tunnelled: impl IntoIterator<Item = u16>,
) -> std::collections::BTreeSet<u16> {
    let mut vlans = std::collections::BTreeSet::new();
    for mode in modes {
        match mode {
            PortMode::Plain => {
                vlans.insert(DEFAULT_VLAN);
            }
            PortMode::Access { vlan, .. } => {
                vlans.insert(*vlan);
            }
            PortMode::Trunk {
                vlans: carried,
                native,
            } => vlans.extend(carried.iter().copied().chain(*native)),
        }
    }
    vlans.extend(tunnelled);
    vlans
}

/// The plan of switch `name`; `None` if the topology has no such switch.
pub fn plan(topology: &Topology, name: &str) -> Option<SwitchPlan> {
    let switch = topology.switch(name)?;
    let ports = switch
        .ports
        .iter()
        .map(|p| PlannedPort {
            number: p.number,
            name: p.name.clone(),
            mode: p.mode.clone(),
        })
        .collect();
    let tunnel = switch
        .hypervisor
        .as_deref()
        .and_then(|hv| topology.hypervisor(hv))
        .map(|hv| {
            let vnis: Vec<u32> = switch.vlan_vni.values().copied().collect();
            let mut vteps: BTreeMap<u32, Vec<Ipv4Addr>> = BTreeMap::new();
            let mut remote_macs = Vec::new();
            for other in &topology.switches {
                let Some(other_hv) = other
                    .hypervisor
                    .as_deref()
                    .and_then(|h| topology.hypervisor(h))
                else {
                    continue;
                };
                if other.name == switch.name {
                    continue;
                }
                for (&other_vlan, &vni) in &other.vlan_vni {
                    let Some(&local_vlan) = switch
                        .vlan_vni
                        .iter()
                        .find(|&(_, &v)| v == vni)
                        .map(|(vlan, _)| vlan)
                    else {
                        continue;
                    };
                    vteps.entry(vni).or_default().push(other_hv.address);
                    for port in &other.ports {
                        if access_vlan(&port.mode) != Some(other_vlan)
                            || matches!(port.mode, PortMode::Trunk { .. })
                        {
                            continue;
                        }
                        if let Some(mac) = host_mac_on(topology, &other.name, &port.name) {
                            remote_macs.push(RemoteMac {
                                vlan: local_vlan,
                                mac,
                                vni,
                                vtep: other_hv.address,
                            });
                        }
                    }
                }
            }
            for external in topology.hypervisors.iter().filter(|h| !h.vnis.is_empty()) {
                for vni in external.vnis.iter().filter(|v| vnis.contains(v)) {
                    vteps.entry(*vni).or_default().push(external.address);
                }
            }
            for list in vteps.values_mut() {
                list.sort();
                list.dedup();
            }
            TunnelPlan {
                local: hv.address,
                vni_of_vlan: switch.vlan_vni.clone(),
                vteps,
                remote_macs,
            }
        });
    Some(SwitchPlan {
        vlan_aware: topology.vlan_aware(switch),
        ports,
        tunnel,
    })
}

/// The MAC of the host interface linked to `switch:port`, if a host is there.
fn host_mac_on(topology: &Topology, switch: &str, port: &str) -> Option<EthernetAddress> {
    let peer = crate::topology::peer_of(&topology.links, switch, port)?;
    if peer.kind != NodeKind::Host {
        return None;
    }
    topology
        .host(&peer.node)?
        .interfaces
        .iter()
        .find(|i| i.name == peer.device)
        .map(|i| i.mac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn vxlan_plan_knows_remote_endpoints_and_hosts() {
        let text = include_str!("../../topologies/vxlan.yaml");
        let topology = crate::topology::parse(text, Path::new("vxlan.yaml")).unwrap();
        let plan = plan(&topology, "sw1").unwrap();
        assert!(plan.vlan_aware);
        let tunnel = plan.tunnel.unwrap();
        assert_eq!(tunnel.local, Ipv4Addr::new(192, 168, 100, 1));
        assert_eq!(
            tunnel.vteps.get(&5001),
            Some(&vec![Ipv4Addr::new(192, 168, 100, 2)])
        );
        assert_eq!(
            tunnel.vteps.get(&5002),
            Some(&vec![Ipv4Addr::new(192, 168, 100, 2)])
        );
        let a2 = topology.host("a2").unwrap().interfaces[0].mac;
        let b2 = topology.host("b2").unwrap().interfaces[0].mac;
        assert!(tunnel.remote_macs.contains(&RemoteMac {
            vlan: 10,
            mac: a2,
            vni: 5001,
            vtep: Ipv4Addr::new(192, 168, 100, 2)
        }));
        assert!(tunnel.remote_macs.contains(&RemoteMac {
            vlan: 20,
            mac: b2,
            vni: 5002,
            vtep: Ipv4Addr::new(192, 168, 100, 2)
        }));
        assert_eq!(
            tunnel.remote_macs.len(),
            2,
            "only hosts behind the other endpoint"
        );
        // An external endpoint serving VNI 5001 joins its replication list only.
        let with_external = text.replacen(
            "  - { name: hv2, address: 192.168.100.2 }\n",
            "  - { name: hv2, address: 192.168.100.2 }\n  - { name: hv3, address: 192.168.100.3, vnis: [5001] }\n",
            1,
        );
        let topology = crate::topology::parse(&with_external, Path::new("x.yaml")).unwrap();
        let tunnel = plan_of(&topology, "sw2");
        assert_eq!(
            tunnel.vteps.get(&5001).unwrap(),
            &vec![
                Ipv4Addr::new(192, 168, 100, 1),
                Ipv4Addr::new(192, 168, 100, 3)
            ]
        );
        assert_eq!(
            tunnel.vteps.get(&5002).unwrap(),
            &vec![Ipv4Addr::new(192, 168, 100, 1)]
        );
    }

    fn plan_of(topology: &Topology, switch: &str) -> TunnelPlan {
        plan(topology, switch).unwrap().tunnel.unwrap()
    }

    #[test]
    fn plain_switches_stay_plain() {
        let topology = crate::topology::parse(
            include_str!("../../topologies/demo.yaml"),
            Path::new("demo.yaml"),
        )
        .unwrap();
        let plan = plan(&topology, "sw1").unwrap();
        assert!(!plan.vlan_aware);
        assert!(plan.tunnel.is_none());
        assert_eq!(access_vlan(&plan.ports[0].mode), Some(DEFAULT_VLAN));
    }
}
