//! Switches, their ports, hosts and their interfaces: names, numbers,
//! subnets, addresses, MACs and MTUs.

use super::{Checker, DeviceInfo, DeviceRef, MAX_PORTS, derived_mac};
use crate::topology::model::*;
use crate::topology::raw::*;
use ipnet::IpNet;
use rustc_hash::FxHashMap;
use sdn_vswitch::agent::FailMode;
use sdn_vswitch::wire::EthernetAddress;
use serde_saphyr::Spanned;
use std::net::IpAddr;

/// Node names the lab uses for namespaces of its own.
const RESERVED_NODES: [&str; 2] = ["internet", "underlay"];

pub(super) fn claim_node(
    c: &mut Checker<'_>,
    names: &mut FxHashMap<String, String>,
    name: &Spanned<String>,
    path: &str,
) {
    if RESERVED_NODES.contains(&name.value.as_str()) {
        c.error(
            name,
            path,
            format!(
                "name {} is reserved (the lab's {} namespace); choose another",
                name.value, name.value
            ),
        );
    } else if let Some(first) = names.get(&name.value) {
        c.error(
            name,
            path,
            format!("name {} is already used by {first}", name.value),
        );
    } else {
        names.insert(name.value.clone(), path.to_string());
    }
}

/// Port numbers the switch gives its own ports.
const RESERVED_PORTS: [u32; 2] = [65_000, 65_001];

pub(super) fn switches(
    c: &mut Checker<'_>,
    raw: &[Spanned<RawSwitch>],
    node_names: &mut FxHashMap<String, String>,
    devices: &mut FxHashMap<DeviceRef, DeviceInfo>,
) -> Vec<Switch> {
    let mut out = Vec::new();
    for (i, sw) in raw.iter().enumerate() {
        let path = format!("switches[{i}]");
        let sw = &sw.value;
        if c.name(&sw.name, &format!("{path}.name")) {
            claim_node(c, node_names, &sw.name, &format!("{path}.name"));
        }
        let fail_mode = match &sw.fail_mode {
            None => FailMode::Secure,
            Some(text) => text.value.parse().unwrap_or_else(|reason: String| {
                c.error(text, format!("{path}.fail_mode"), reason);
                FailMode::Secure
            }),
        };
        let cpu = match &sw.cpu {
            None => CpuPin::Auto,
            Some(spanned) => match &spanned.value {
                RawCpu::Number(n) if (*n as usize) < libc::CPU_SETSIZE as usize => {
                    CpuPin::Cpu(*n as usize)
                }
                RawCpu::Word(w) if w == "auto" => CpuPin::Auto,
                RawCpu::Word(w) if w == "none" => CpuPin::Unpinned,
                other => {
                    c.error(
                        spanned,
                        format!("{path}.cpu"),
                        format!("{other:?}: want a CPU number, auto or none"),
                    );
                    CpuPin::Auto
                }
            },
        };
        if sw.ports.len() > MAX_PORTS {
            c.error(
                &sw.name,
                format!("{path}.ports"),
                format!("{} ports; at most {MAX_PORTS}", sw.ports.len()),
            );
        }
        let mut ports: Vec<SwitchPort> = Vec::new();
        for (p, port) in sw.ports.iter().enumerate() {
            let ppath = format!("{path}.ports[{p}]");
            let port = &port.value;
            c.ifname(&port.name, &format!("{ppath}.name"));
            // Declared before its number is checked, so that a refused number
            // does not also make its link "no port named ...".
            let key = DeviceRef {
                node: sw.name.value.clone(),
                device: port.name.value.clone(),
            };
            if devices
                .insert(
                    key,
                    DeviceInfo::new(NodeKind::Switch, format!("{ppath}.name"), &port.name),
                )
                .is_some()
            {
                c.error(
                    &port.name,
                    format!("{ppath}.name"),
                    format!(
                        "switch {} has two ports named {}",
                        sw.name.value, port.name.value
                    ),
                );
            }
            let number = match &port.number {
                Some(n) if n.value == 0 || n.value > 65_279 => {
                    c.error(
                        n,
                        format!("{ppath}.number"),
                        format!("port number {}: want 1 to 65279", n.value),
                    );
                    continue;
                }
                Some(n) if RESERVED_PORTS.contains(&n.value) => {
                    c.error(
                        n,
                        format!("{ppath}.number"),
                        format!(
                            "port number {} is reserved (65000: the VXLAN endpoint, 65001: the internet uplink)",
                            n.value
                        ),
                    );
                    continue;
                }
                Some(n) => n.value,
                None => p as u32 + 1,
            };
            if port.name.value == UPLINK_PORT_NAME {
                c.error(
                    &port.name,
                    format!("{ppath}.name"),
                    format!("port name {UPLINK_PORT_NAME} is reserved for the internet uplink; choose another"),
                );
            }
            if let Some(other) = ports.iter().find(|o| o.number == number) {
                c.error(
                    &port.name,
                    format!("{ppath}.number"),
                    format!("port number {number} is already port {}", other.name),
                );
            }
            let mode = port_mode(c, port, &ppath);
            ports.push(SwitchPort {
                name: port.name.value.clone(),
                number,
                offloads: port.offloads.as_ref().is_none_or(|o| o.value),
                mode,
            });
        }
        out.push(Switch {
            name: sw.name.value.clone(),
            fail_mode,
            cpu,
            hypervisor: None,
            vlan_vni: Default::default(),
            ports,
        });
    }
    out
}

/// Finds the subnet an interface names: `network/subnet`, or `subnet` when
/// only one network has a subnet of that name.
fn resolve_subnet<'n>(
    networks: &'n [Network],
    text: &str,
) -> Result<(&'n Network, &'n Subnet), String> {
    if let Some((net, sub)) = text.split_once('/') {
        let network = networks
            .iter()
            .find(|n| n.name == net)
            .ok_or_else(|| format!("no network named {net}"))?;
        let subnet = network
            .subnets
            .iter()
            .find(|s| s.name == sub)
            .ok_or_else(|| format!("network {net} has no subnet named {sub}"))?;
        return Ok((network, subnet));
    }
    let matches: Vec<_> = networks
        .iter()
        .flat_map(|n| {
            n.subnets
                .iter()
                .filter(|s| s.name == text)
                .map(move |s| (n, s))
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!("no subnet named {text}")),
        _ => Err(format!(
            "subnet name {text} is ambiguous; write network/{text}"
        )),
    }
}

pub(super) fn hosts(
    c: &mut Checker<'_>,
    lab: &str,
    raw: &[Spanned<RawHost>],
    networks: &[Network],
    node_names: &mut FxHashMap<String, String>,
    devices: &mut FxHashMap<DeviceRef, DeviceInfo>,
) -> Vec<Host> {
    let mut out = Vec::new();
    let mut addresses: FxHashMap<(String, IpAddr), String> = FxHashMap::default();
    let mut macs: FxHashMap<EthernetAddress, String> = FxHashMap::default();
    for (i, host) in raw.iter().enumerate() {
        let path = format!("hosts[{i}]");
        let host = &host.value;
        if c.name(&host.name, &format!("{path}.name")) {
            claim_node(c, node_names, &host.name, &format!("{path}.name"));
        }
        let mut interfaces = Vec::new();
        for (f, iface) in host.interfaces.iter().enumerate() {
            let ipath = format!("{path}.interfaces[{f}]");
            let iface = &iface.value;
            c.ifname(&iface.name, &format!("{ipath}.name"));
            let key = DeviceRef {
                node: host.name.value.clone(),
                device: iface.name.value.clone(),
            };
            if devices
                .insert(
                    key,
                    DeviceInfo::new(NodeKind::Host, format!("{ipath}.name"), &iface.name),
                )
                .is_some()
            {
                c.error(
                    &iface.name,
                    format!("{ipath}.name"),
                    format!(
                        "host {} has two interfaces named {}",
                        host.name.value, iface.name.value
                    ),
                );
            }
            let (network, subnet) = match resolve_subnet(networks, &iface.subnet.value) {
                Ok(found) => found,
                Err(reason) => {
                    c.error(&iface.subnet, format!("{ipath}.subnet"), reason);
                    continue;
                }
            };
            let text = iface.address.value.as_str();
            let (addr_text, prefix) = match text.split_once('/') {
                Some((a, p)) => (a, Some(p)),
                None => (text, None),
            };
            let Ok(address) = addr_text.parse::<IpAddr>() else {
                c.error(
                    &iface.address,
                    format!("{ipath}.address"),
                    format!("malformed address {text:?}"),
                );
                continue;
            };
            if let Some(prefix) = prefix
                && prefix.parse::<u8>().ok() != Some(subnet.cidr.prefix_len())
            {
                c.error(
                    &iface.address,
                    format!("{ipath}.address"),
                    format!(
                        "prefix /{prefix} differs from subnet {}/{} ({})",
                        network.name, subnet.name, subnet.cidr
                    ),
                );
            }
            if !subnet.cidr.contains(&address) {
                c.error(
                    &iface.address,
                    format!("{ipath}.address"),
                    format!(
                        "{address} is not inside subnet {}/{} ({})",
                        network.name, subnet.name, subnet.cidr
                    ),
                );
            } else if let IpNet::V4(v4) = subnet.cidr
                && v4.prefix_len() < 31
                && (IpAddr::V4(v4.network()) == address || IpAddr::V4(v4.broadcast()) == address)
            {
                c.error(
                    &iface.address,
                    format!("{ipath}.address"),
                    format!(
                        "{address} is the network or broadcast address of {}",
                        subnet.cidr
                    ),
                );
            }
            if subnet.gateway.map(IpAddr::V4) == Some(address) {
                c.error(
                    &iface.address,
                    format!("{ipath}.address"),
                    format!(
                        "{address} is the gateway of subnet {}/{} (the switch answers for it); give the host another address, or the subnet another gateway:",
                        network.name, subnet.name
                    ),
                );
            }
            if let Some(first) = addresses.insert((network.name.clone(), address), ipath.clone()) {
                c.error(
                    &iface.address,
                    format!("{ipath}.address"),
                    format!("{address} is already assigned to {first}"),
                );
            }
            let derived = derived_mac(lab, &host.name.value, &iface.name.value);
            let mac = match &iface.mac {
                None => derived,
                Some(text) => match text.value.parse::<EthernetAddress>() {
                    Ok(m) if m.is_multicast() || m == EthernetAddress([0; 6]) => {
                        c.error(
                            text,
                            format!("{ipath}.mac"),
                            format!("{m} is not a unicast address"),
                        );
                        derived
                    }
                    Ok(m) => m,
                    Err(e) => {
                        c.error(text, format!("{ipath}.mac"), e.to_string());
                        derived
                    }
                },
            };
            if let Some(first) = macs.insert(mac, ipath.clone()) {
                let at = iface.mac.as_ref().unwrap_or(&iface.name);
                c.error(
                    at,
                    format!("{ipath}.mac"),
                    format!("{mac} is already the address of {first}"),
                );
            }
            let mtu = match &iface.mtu {
                Some(m) if !(68..=65_535).contains(&m.value) => {
                    c.error(
                        m,
                        format!("{ipath}.mtu"),
                        format!("MTU {}: want 68 to 65535", m.value),
                    );
                    DEFAULT_MTU
                }
                Some(m) => m.value,
                None => DEFAULT_MTU,
            };
            interfaces.push(Interface {
                name: iface.name.value.clone(),
                network: network.name.clone(),
                subnet: subnet.name.clone(),
                address,
                prefix_len: subnet.cidr.prefix_len(),
                mac,
                mtu,
                ip_forward: iface.ip_forward.as_ref().is_some_and(|f| f.value),
            });
        }
        out.push(Host {
            name: host.name.value.clone(),
            interfaces,
        });
    }
    out
}

fn vid(c: &mut Checker<'_>, at: &Spanned<impl Sized>, path: &str, vid: u16) -> Option<u16> {
    if (1..=4094).contains(&vid) {
        Some(vid)
    } else {
        c.error(at, path, format!("VLAN {vid}: want 1 to 4094"));
        None
    }
}

/// A port's VLAN treatment: `mode: access` with `vlan` (and `pcp`), or
/// `mode: trunk` with `vlans` (and `native_vlan`). Without `mode`, `vlan`
/// means access and `vlans` trunk.
fn port_mode(c: &mut Checker<'_>, port: &RawPort, path: &str) -> PortMode {
    let mode = match (&port.mode, &port.vlan, &port.vlans) {
        (Some(m), _, _) => m.value.as_str(),
        (None, Some(_), None) => "access",
        (None, None, Some(_)) => "trunk",
        (None, Some(v), Some(_)) => {
            c.error(
                v,
                format!("{path}.vlan"),
                "a port has either vlan (access) or vlans (trunk), not both",
            );
            return PortMode::Plain;
        }
        (None, None, None) => {
            if let Some(n) = &port.native_vlan {
                c.error(
                    n,
                    format!("{path}.native_vlan"),
                    "native_vlan belongs to a trunk (add mode: trunk and vlans)",
                );
            }
            if let Some(p) = &port.pcp {
                c.error(
                    p,
                    format!("{path}.pcp"),
                    "pcp belongs to an access port (add vlan)",
                );
            }
            return PortMode::Plain;
        }
    };
    match mode {
        "access" => {
            for (field, misplaced) in [
                ("vlans", port.vlans.is_some()),
                ("native_vlan", port.native_vlan.is_some()),
            ] {
                if misplaced {
                    c.error(
                        &port.name,
                        format!("{path}.{field}"),
                        format!("{field} belongs to a trunk port, not an access port"),
                    );
                }
            }
            let Some(v) = &port.vlan else {
                c.error(
                    &port.name,
                    format!("{path}.vlan"),
                    "an access port needs vlan: <1-4094>",
                );
                return PortMode::Plain;
            };
            let pcp = match &port.pcp {
                Some(p) if p.value > 7 => {
                    c.error(
                        p,
                        format!("{path}.pcp"),
                        format!("PCP {}: want 0 to 7", p.value),
                    );
                    0
                }
                Some(p) => p.value,
                None => 0,
            };
            match vid(c, v, &format!("{path}.vlan"), v.value) {
                Some(vlan) => PortMode::Access { vlan, pcp },
                None => PortMode::Plain,
            }
        }
        "trunk" => {
            for (field, misplaced) in [("vlan", port.vlan.is_some()), ("pcp", port.pcp.is_some())] {
                if misplaced {
                    c.error(
                        &port.name,
                        format!("{path}.{field}"),
                        format!("{field} belongs to an access port, not a trunk"),
                    );
                }
            }
            let Some(list) = &port.vlans else {
                c.error(
                    &port.name,
                    format!("{path}.vlans"),
                    "a trunk needs vlans: [<1-4094>, ...]",
                );
                return PortMode::Plain;
            };
            let mut vlans: Vec<u16> = Vec::new();
            for &v in &list.value {
                if let Some(v) = vid(c, list, &format!("{path}.vlans"), v) {
                    if vlans.contains(&v) {
                        c.error(
                            list,
                            format!("{path}.vlans"),
                            format!("VLAN {v} is listed twice"),
                        );
                    } else {
                        vlans.push(v);
                    }
                }
            }
            if vlans.is_empty() && port.native_vlan.is_none() {
                c.error(
                    list,
                    format!("{path}.vlans"),
                    "a trunk carries at least one VLAN",
                );
            }
            let native = port
                .native_vlan
                .as_ref()
                .and_then(|n| vid(c, n, &format!("{path}.native_vlan"), n.value));
            if let Some(n) = native {
                vlans.retain(|&v| v != n);
            }
            PortMode::Trunk { vlans, native }
        }
        other => {
            let at = port.mode.as_ref().map_or(&port.name, |m| m);
            c.error(
                at,
                format!("{path}.mode"),
                format!("mode {other:?}: want access or trunk"),
            );
            PortMode::Plain
        }
    }
}
