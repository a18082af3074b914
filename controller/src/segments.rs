//! Which host interfaces share a layer-2 segment: joined through switches in
//! the same VLAN, across trunks that carry it (or links whose untagged VLANs
//! meet), and across hypervisors through the VNI a VLAN maps to. Hosts in one
//! segment and one subnet should reach each other; hosts in different
//! segments must not, whatever their addresses.

use crate::plan::access_vlan;
use crate::topology::{Endpoint, Interface, NodeKind, PortMode, Topology};
use std::collections::HashMap;

/// A point frames of one segment pass through.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Station {
    /// A host interface: (host, interface).
    Interface(String, String),
    /// A VLAN on a VLAN-aware switch, or the whole of a plain one (`None`).
    Switch(String, Option<u16>),
    /// A VXLAN network.
    Vni(u32),
}

/// Union-find over stations.
#[derive(Default)]
struct Stations {
    index: HashMap<Station, usize>,
    parent: Vec<usize>,
}

impl Stations {
    fn id(&mut self, station: Station) -> usize {
        let next = self.parent.len();
        let id = *self.index.entry(station).or_insert(next);
        if id == next {
            self.parent.push(next);
        }
        id
    }

    fn root(&mut self, mut id: usize) -> usize {
        while self.parent[id] != id {
            self.parent[id] = self.parent[self.parent[id]];
            id = self.parent[id];
        }
        id
    }

    fn join(&mut self, a: Station, b: Station) {
        let (a, b) = (self.id(a), self.id(b));
        let (a, b) = (self.root(a), self.root(b));
        self.parent[a] = b;
    }
}

/// The segments of a topology's host interfaces.
#[derive(Debug, Clone)]
pub struct Segments {
    of: HashMap<(String, String), usize>,
    /// Per switch: its VLANs (`None` on a plain switch) and their segments.
    switches: HashMap<String, Vec<(Option<u16>, usize)>>,
}

/// A port of a switch as a segment sees it.
struct SwitchPort<'a> {
    switch: &'a str,
    vlan_aware: bool,
    mode: &'a PortMode,
}

impl SwitchPort<'_> {
    /// Where untagged frames arriving on the port go (`None`: dropped).
    fn untagged_station(&self) -> Option<Station> {
        if !self.vlan_aware {
            return Some(Station::Switch(self.switch.into(), None));
        }
        access_vlan(self.mode).map(|v| Station::Switch(self.switch.into(), Some(v)))
    }

    /// VLANs the port carries tagged.
    fn tagged(&self) -> &[u16] {
        match self.mode {
            PortMode::Trunk { vlans, .. } if self.vlan_aware => vlans,
            _ => &[],
        }
    }
}

impl Segments {
    /// Works out the segments of `topology`.
    pub fn of(topology: &Topology) -> Segments {
        let mut stations = Stations::default();
        let port = |e: &Endpoint| -> Option<SwitchPort<'_>> {
            let switch = topology.switch(&e.node)?;
            let port = switch.ports.iter().find(|p| p.name == e.device)?;
            Some(SwitchPort {
                switch: &switch.name,
                vlan_aware: topology.vlan_aware(switch),
                mode: &port.mode,
            })
        };
        let station_of = |e: &Endpoint| match e.kind {
            NodeKind::Host => Some(Station::Interface(e.node.clone(), e.device.clone())),
            NodeKind::Switch => port(e).and_then(|p| p.untagged_station()),
        };
        for link in &topology.links {
            // Untagged frames: a host's, or a port's access or native VLAN.
            let sends_untagged = |e: &Endpoint| {
                e.kind == NodeKind::Host || port(e).and_then(|p| p.untagged_station()).is_some()
            };
            if sends_untagged(&link.a)
                && sends_untagged(&link.b)
                && let (Some(a), Some(b)) = (station_of(&link.a), station_of(&link.b))
            {
                stations.join(a, b);
            }
            // Tagged frames: VLANs both ends of a trunk carry.
            if let (Some(a), Some(b)) = (port(&link.a), port(&link.b)) {
                for vlan in a.tagged().iter().filter(|v| b.tagged().contains(v)) {
                    stations.join(
                        Station::Switch(a.switch.into(), Some(*vlan)),
                        Station::Switch(b.switch.into(), Some(*vlan)),
                    );
                }
            }
        }
        for switch in topology.switches.iter().filter(|s| s.hypervisor.is_some()) {
            for (&vlan, &vni) in &switch.vlan_vni {
                stations.join(
                    Station::Switch(switch.name.clone(), Some(vlan)),
                    Station::Vni(vni),
                );
            }
        }
        let mut of = HashMap::new();
        for host in &topology.hosts {
            for iface in &host.interfaces {
                let id = stations.id(Station::Interface(host.name.clone(), iface.name.clone()));
                of.insert((host.name.clone(), iface.name.clone()), stations.root(id));
            }
        }
        let mut switches = HashMap::new();
        for switch in &topology.switches {
            let vlans: Vec<Option<u16>> = if topology.vlan_aware(switch) {
                crate::plan::vlans_of(switch)
                    .into_iter()
                    .map(Some)
                    .collect()
            } else {
                vec![None]
            };
            let list = vlans
                .into_iter()
                .map(|vlan| {
                    let id = stations.id(Station::Switch(switch.name.clone(), vlan));
                    (vlan, stations.root(id))
                })
                .collect();
            switches.insert(switch.name.clone(), list);
        }
        Segments { of, switches }
    }

    /// Where `switch` carries the segment of a host interface: `Some(None)`
    /// on a plain switch, `Some(Some(vlan))` on a VLAN-aware one, `None` if
    /// the segment does not reach the switch.
    pub fn reach(&self, switch: &str, interface: (&str, &str)) -> Option<Option<u16>> {
        let segment = self.id(interface)?;
        self.switches
            .get(switch)?
            .iter()
            .find(|(_, s)| *s == segment)
            .map(|(vlan, _)| *vlan)
    }

    /// The segment of a host interface (an arbitrary number, equal for
    /// interfaces of one segment).
    pub fn id(&self, (host, iface): (&str, &str)) -> Option<usize> {
        self.of.get(&(host.to_string(), iface.to_string())).copied()
    }

    /// Whether two host interfaces share a segment.
    pub fn together(&self, a: (&str, &str), b: (&str, &str)) -> bool {
        matches!((self.id(a), self.id(b)), (Some(x), Some(y)) if x == y)
    }
}

/// Whether two interfaces share a subnet of the topology.
pub fn same_subnet(a: &Interface, b: &Interface) -> bool {
    a.network == b.network && a.subnet == b.subnet
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn load(text: &str) -> (Topology, Segments) {
        let topology = crate::topology::parse(text, Path::new("t.yaml")).unwrap();
        let segments = Segments::of(&topology);
        (topology, segments)
    }

    fn eth0(host: &str) -> (&str, &str) {
        (host, "eth0")
    }

    #[test]
    fn vlans_across_a_trunk() {
        let (_, s) = load(include_str!("../../topologies/vlan.yaml"));
        assert!(
            s.together(eth0("a1"), eth0("a2")),
            "VLAN 10 across the trunk"
        );
        assert!(
            s.together(eth0("b1"), eth0("b2")),
            "VLAN 20 across the trunk"
        );
        assert!(
            s.together(eth0("c1"), eth0("c2")),
            "native VLAN 30, untagged"
        );
        assert!(!s.together(eth0("a1"), eth0("b1")));
        assert!(!s.together(eth0("a1"), eth0("b2")));
        assert!(!s.together(eth0("a2"), eth0("c1")));
    }

    #[test]
    fn a_trunk_that_does_not_carry_a_vlan_splits_it() {
        let text = include_str!("../../topologies/vlan.yaml").replacen(
            "vlans: [10, 20], native_vlan: 30",
            "vlans: [10], native_vlan: 30",
            1,
        );
        let (_, s) = load(&text);
        assert!(s.together(eth0("a1"), eth0("a2")));
        assert!(
            !s.together(eth0("b1"), eth0("b2")),
            "sw1's trunk no longer carries VLAN 20"
        );
    }

    #[test]
    fn vnis_across_hypervisors() {
        let (t, s) = load(include_str!("../../topologies/vxlan.yaml"));
        assert!(s.together(eth0("a1"), eth0("a2")));
        assert!(s.together(eth0("b1"), eth0("b2")));
        assert!(
            !s.together(eth0("a1"), eth0("b2")),
            "tenants apart despite equal addresses"
        );
        let (a1, b1) = (
            &t.host("a1").unwrap().interfaces[0],
            &t.host("b1").unwrap().interfaces[0],
        );
        assert!(
            !same_subnet(a1, b1),
            "tenant A's web subnet is not tenant B's"
        );
    }

    #[test]
    fn a_plain_switch_is_one_segment() {
        let (_, s) = load(include_str!("../../topologies/demo.yaml"));
        assert!(s.together(eth0("h1"), eth0("h2")));
    }
}
