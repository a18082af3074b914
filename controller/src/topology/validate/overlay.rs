//! The overlay's parts: the underlay network, hypervisors on it, switches
//! placed on hypervisors with VLANs mapped to VNIs, and MTUs that leave room
//! for VXLAN's 50 bytes.

use super::Checker;
use crate::topology::model::*;
use crate::topology::raw::*;
use ipnet::IpNet;
use rustc_hash::{FxHashMap, FxHashSet};
use sdn_vswitch::wire::vxlan::MAX_VNI;
use serde_saphyr::Spanned;
use std::net::{IpAddr, Ipv4Addr};

/// Smallest underlay MTU that still carries a minimum IPv4 frame tunnelled.
const MIN_UNDERLAY_MTU: u32 = 576 + VXLAN_OVERHEAD;

pub(super) fn underlay(
    c: &mut Checker<'_>,
    raw: Option<&Spanned<RawUnderlay>>,
) -> Option<Underlay> {
    let raw = raw?;
    let cidr = c.cidr(&raw.value.cidr, "underlay.cidr")?;
    if !matches!(cidr, IpNet::V4(_)) {
        c.error(
            &raw.value.cidr,
            "underlay.cidr",
            format!("{cidr}: the underlay is IPv4"),
        );
        return None;
    }
    let mtu = match &raw.value.mtu {
        Some(m) if !(MIN_UNDERLAY_MTU..=65_535).contains(&m.value) => {
            c.error(
                m,
                "underlay.mtu",
                format!("MTU {}: want {MIN_UNDERLAY_MTU} to 65535", m.value),
            );
            DEFAULT_UNDERLAY_MTU
        }
        Some(m) => m.value,
        None => DEFAULT_UNDERLAY_MTU,
    };
    Some(Underlay { cidr, mtu })
}

pub(super) fn hypervisors(
    c: &mut Checker<'_>,
    raw: &[Spanned<RawHypervisor>],
    underlay: Option<&Underlay>,
    node_names: &mut FxHashMap<String, String>,
) -> Vec<Hypervisor> {
    let mut out = Vec::new();
    let mut addresses = FxHashMap::default();
    for (i, hv) in raw.iter().enumerate() {
        let path = format!("hypervisors[{i}]");
        let hv_value = &hv.value;
        if c.name(&hv_value.name, &format!("{path}.name")) {
            super::nodes::claim_node(c, node_names, &hv_value.name, &format!("{path}.name"));
            // The name also names the hypervisor's port on the underlay bridge.
            if hv_value.name.value.len() > super::MAX_IFNAME
                || hv_value.name.value == UNDERLAY_BRIDGE
            {
                c.error(
                    &hv_value.name,
                    format!("{path}.name"),
                    format!(
                        "hypervisor name {:?} names its port on the underlay bridge: use at most {} characters, other than {UNDERLAY_BRIDGE:?}",
                        hv_value.name.value,
                        super::MAX_IFNAME
                    ),
                );
            }
        }
        let Some(underlay) = underlay else {
            c.error(
                hv,
                &path,
                "hypervisors need an underlay (add underlay: { cidr: ... })",
            );
            continue;
        };
        let Ok(address) = hv_value.address.value.parse::<Ipv4Addr>() else {
            c.error(
                &hv_value.address,
                format!("{path}.address"),
                format!("{:?} is not an IPv4 address", hv_value.address.value),
            );
            continue;
        };
        if !underlay.cidr.contains(&IpAddr::V4(address)) {
            c.error(
                &hv_value.address,
                format!("{path}.address"),
                format!("{address} is not inside the underlay {}", underlay.cidr),
            );
        } else if let IpNet::V4(v4) = underlay.cidr
            && v4.prefix_len() < 31
            && (v4.network() == address || v4.broadcast() == address)
        {
            c.error(
                &hv_value.address,
                format!("{path}.address"),
                format!(
                    "{address} is the network or broadcast address of {}",
                    underlay.cidr
                ),
            );
        }
        if let Some(first) = addresses.insert(address, path.clone()) {
            c.error(
                &hv_value.address,
                format!("{path}.address"),
                format!("{address} is already the address of {first}"),
            );
        }
        let mut vnis = Vec::new();
        for (v, vni) in hv_value.vnis.iter().enumerate() {
            if vni.value == 0 || vni.value > MAX_VNI {
                c.error(
                    vni,
                    format!("{path}.vnis[{v}]"),
                    format!("VNI {}: want 1 to {MAX_VNI}", vni.value),
                );
            } else {
                vnis.push(vni.value);
            }
        }
        out.push(Hypervisor {
            name: hv_value.name.value.clone(),
            address,
            vnis,
        });
    }
    out
}

/// Switch placement and VLAN→VNI maps, checked once hypervisors are known.
pub(super) fn placements(
    c: &mut Checker<'_>,
    raw: &[Spanned<RawSwitch>],
    switches: &mut [Switch],
    hypervisors: &[Hypervisor],
) {
    let mut taken: FxHashMap<String, String> = FxHashMap::default();
    for (i, (raw_switch, switch)) in raw.iter().zip(switches.iter_mut()).enumerate() {
        let path = format!("switches[{i}]");
        if let Some(name) = &raw_switch.value.hypervisor {
            match hypervisors.iter().find(|h| h.name == name.value) {
                None => c.error(name, format!("{path}.hypervisor"), format!("no hypervisor named {}", name.value)),
                Some(hv) if !hv.vnis.is_empty() => c.error(
                    name,
                    format!("{path}.hypervisor"),
                    format!("hypervisor {} lists vnis for an external endpoint; a switch's VNIs come from its vlan_vni", hv.name),
                ),
                Some(hv) => {
                    for (p, port) in switch.ports.iter().enumerate() {
                        if port.name == UNDERLAY_DEVICE {
                            c.error(
                                name,
                                format!("{path}.ports[{p}].name"),
                                format!("port name {UNDERLAY_DEVICE:?} is the hypervisor's underlay device: choose another"),
                            );
                        }
                    }
                    if let Some(first) = taken.insert(hv.name.clone(), switch.name.clone()) {
                        c.error(name, format!("{path}.hypervisor"), format!("hypervisor {} already runs switch {first}", hv.name));
                    } else {
                        switch.hypervisor = Some(hv.name.clone());
                    }
                }
            }
        }
        let Some(map) = &raw_switch.value.vlan_vni else {
            continue;
        };
        if raw_switch.value.hypervisor.is_none() {
            c.error(
                map,
                format!("{path}.vlan_vni"),
                "a switch that tunnels VLANs runs on a hypervisor (add hypervisor: ...)",
            );
        }
        let mut seen_vnis = FxHashSet::default();
        for (&vlan, &vni) in &map.value {
            if !(1..=4094).contains(&vlan) {
                c.error(
                    map,
                    format!("{path}.vlan_vni"),
                    format!("VLAN {vlan}: want 1 to 4094"),
                );
            }
            if vni == 0 || vni > MAX_VNI {
                c.error(
                    map,
                    format!("{path}.vlan_vni"),
                    format!("VNI {vni}: want 1 to {MAX_VNI}"),
                );
            }
            if !seen_vnis.insert(vni) {
                c.error(
                    map,
                    format!("{path}.vlan_vni"),
                    format!("VNI {vni} is mapped from two VLANs"),
                );
            }
        }
        switch.vlan_vni = map.value.clone();
    }
}

/// Hosts on a tunnelled VLAN: their MTU must leave room for VXLAN (the
/// default becomes the underlay MTU less 50).
pub(super) fn tunnel_mtus(
    c: &mut Checker<'_>,
    raw_hosts: &[Spanned<RawHost>],
    hosts: &mut [Host],
    switches: &[Switch],
    links: &[Link],
    underlay: Option<&Underlay>,
) {
    let Some(underlay) = underlay else { return };
    let room = underlay.mtu - VXLAN_OVERHEAD;
    for (h, host) in hosts.iter_mut().enumerate() {
        for (f, iface) in host.interfaces.iter_mut().enumerate() {
            let Some(peer) = peer_of(links, &host.name, &iface.name) else {
                continue;
            };
            let Some(switch) = switches.iter().find(|s| s.name == peer.node) else {
                continue;
            };
            let Some(port) = switch.ports.iter().find(|p| p.name == peer.device) else {
                continue;
            };
            let tunnelled = match &port.mode {
                PortMode::Access { vlan, .. } => switch.vlan_vni.contains_key(vlan),
                PortMode::Plain => switch.vlan_vni.contains_key(&1),
                PortMode::Trunk { .. } => false,
            };
            if !tunnelled {
                continue;
            }
            let raw_iface = raw_hosts.get(h).and_then(|rh| rh.value.interfaces.get(f));
            match raw_iface.and_then(|ri| ri.value.mtu.as_ref()) {
                Some(mtu) if mtu.value > room => c.error(
                    mtu,
                    format!("hosts[{h}].interfaces[{f}].mtu"),
                    format!(
                        "MTU {} does not fit VXLAN over an underlay of MTU {}: use at most {room}, or raise underlay.mtu to {}",
                        mtu.value,
                        underlay.mtu,
                        mtu.value + VXLAN_OVERHEAD
                    ),
                ),
                Some(_) => {}
                None => iface.mtu = iface.mtu.min(room),
            }
        }
    }
}
