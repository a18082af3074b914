//! The two hosts a bench measures between, and whether the path between
//! them crosses a VXLAN overlay (which decides the baselines beside it).

use super::baseline::Addresses;
use crate::topology::{Host, PortMode, Topology};
use anyhow::{Result, bail};
use std::net::Ipv4Addr;

/// The sending and receiving host of a bench.
#[derive(Debug, Clone)]
pub(super) struct Pair {
    /// Name of the sending host.
    pub(super) client: String,
    /// Name of the receiving host.
    pub(super) server: String,
    /// Their addresses.
    pub(super) addresses: Addresses,
    /// MTU of the hosts' interfaces.
    pub(super) host_mtu: u32,
    /// The overlay between them, when their switches sit on two hypervisors.
    pub(super) overlay: Option<Overlay>,
}

/// A VXLAN overlay between the two hosts' hypervisors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Overlay {
    /// The VNI that carries their VLAN.
    pub(super) vni: u32,
    /// Underlay address of the sending host's hypervisor.
    pub(super) client_vtep: Ipv4Addr,
    /// Underlay address of the receiving host's hypervisor.
    pub(super) server_vtep: Ipv4Addr,
    /// Prefix length of the underlay.
    pub(super) underlay_prefix: u8,
    /// MTU of the underlay links.
    pub(super) underlay_mtu: u32,
}

/// The switch port a host interface is linked to: (switch, port mode).
fn attachment<'t>(
    topology: &'t Topology,
    host: &str,
    device: &str,
) -> Option<(&'t crate::topology::Switch, &'t PortMode)> {
    let theirs = crate::topology::peer_of(&topology.links, host, device)?;
    let switch = topology.switch(&theirs.node)?;
    let port = switch.ports.iter().find(|p| p.name == theirs.device)?;
    Some((switch, &port.mode))
}

/// The VNI and hypervisor address a host's traffic leaves with.
fn tunnel_end(topology: &Topology, host: &str, device: &str) -> Option<(u32, Ipv4Addr)> {
    let (switch, mode) = attachment(topology, host, device)?;
    let vlan = match mode {
        PortMode::Access { vlan, .. } => *vlan,
        PortMode::Plain => crate::plan::DEFAULT_VLAN,
        PortMode::Trunk { native, .. } => (*native)?,
    };
    let vni = *switch.vlan_vni.get(&vlan)?;
    let hypervisor = topology.hypervisor(switch.hypervisor.as_deref()?)?;
    Some((vni, hypervisor.address))
}

/// The overlay between the two hosts: both on hypervisors, different ones,
/// and their VLANs mapped to the same VNI.
fn overlay_between(
    topology: &Topology,
    client: (&str, &str),
    server: (&str, &str),
) -> Option<Overlay> {
    let underlay = topology.underlay.as_ref()?;
    let (client_vni, client_vtep) = tunnel_end(topology, client.0, client.1)?;
    let (server_vni, server_vtep) = tunnel_end(topology, server.0, server.1)?;
    (client_vni == server_vni && client_vtep != server_vtep).then_some(Overlay {
        vni: client_vni,
        client_vtep,
        server_vtep,
        underlay_prefix: underlay.cidr.prefix_len(),
        underlay_mtu: underlay.mtu,
    })
}

/// The sending and receiving host of a bench: the topology's first two
/// hosts with interfaces (each measured on its first interface).
pub(super) fn bench_hosts(topology: &Topology) -> Result<(&Host, &Host)> {
    let hosts: Vec<_> = topology
        .hosts
        .iter()
        .filter(|h| !h.interfaces.is_empty())
        .take(2)
        .collect();
    let [client, server] = hosts.as_slice() else {
        bail!(
            "{}: a bench topology needs two hosts with interfaces",
            topology.source.display()
        );
    };
    Ok((client, server))
}

/// The sending and receiving host of the topology: its first two hosts,
/// which must share a subnet.
pub(super) fn pick_pair(topology: &Topology) -> Result<Pair> {
    let (client, server) = bench_hosts(topology)?;
    let (c, s) = (&client.interfaces[0], &server.interfaces[0]);
    if c.prefix_len != s.prefix_len || c.network != s.network || c.subnet != s.subnet {
        bail!(
            "{}: the first two hosts must share a subnet",
            topology.source.display()
        );
    }
    Ok(Pair {
        client: client.name.clone(),
        server: server.name.clone(),
        addresses: Addresses {
            client: c.address,
            server: s.address,
            prefix_len: c.prefix_len,
        },
        host_mtu: c.mtu.min(s.mtu),
        overlay: overlay_between(topology, (&client.name, &c.name), (&server.name, &s.name)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn load(name: &str) -> Topology {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../topologies")
            .join(name);
        crate::topology::load(&path).expect("repository topology loads")
    }

    #[test]
    fn a_pair_on_one_switch_has_no_overlay() {
        let pair = pick_pair(&load("bench-2hosts.yaml")).unwrap();
        assert_eq!((pair.client.as_str(), pair.server.as_str()), ("h1", "h2"));
        assert_eq!(pair.overlay, None);
    }

    #[test]
    fn a_pair_across_hypervisors_finds_its_vni_and_vteps() {
        let pair = pick_pair(&load("bench-vxlan.yaml")).unwrap();
        let overlay = pair.overlay.expect("the hosts sit on two hypervisors");
        assert_eq!(overlay.vni, 5010);
        assert_eq!(overlay.client_vtep, Ipv4Addr::new(192, 168, 150, 1));
        assert_eq!(overlay.server_vtep, Ipv4Addr::new(192, 168, 150, 2));
        assert_eq!(overlay.underlay_prefix, 24);
        assert_eq!(overlay.underlay_mtu, 1500);
        assert_eq!(pair.host_mtu, 1450, "hosts fit inside the underlay");
    }
}
