//! Turns the raw file into the typed model, checking everything before
//! anything is created: names, CIDRs (a subnet lies inside its network,
//! subnets do not overlap, an address lies in its subnet and is used once),
//! references between sections, and that every port and interface is linked.
//! Every problem is collected, each with its line, path and reason.

use super::TopologyError;
use super::model::*;
use super::raw::*;
use ipnet::IpNet;
use rustc_hash::{FxHashMap, FxHashSet};
use sdn_vswitch::agent::FailMode;
use sdn_vswitch::wire::EthernetAddress;
use serde_saphyr::Spanned;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

/// Longest lab or node name (namespace names are `<lab>-<node>`).
const MAX_NAME: usize = 32;
/// Longest device name the kernel takes (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;
/// Upper bounds that keep a lab within what one machine can hold.
const MAX_HOSTS: usize = 1024;
const MAX_SWITCHES: usize = 256;
const MAX_PORTS: usize = 1024;

struct Checker<'a> {
    file: &'a Path,
    errors: Vec<TopologyError>,
}

impl Checker<'_> {
    fn error<T>(&mut self, at: &Spanned<T>, path: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(TopologyError {
            file: self.file.to_path_buf(),
            line: Some(at.referenced.line()),
            column: Some(at.referenced.column()),
            path: path.into(),
            reason: reason.into(),
        });
    }

    /// A lab, network, switch or host name: lowercase letters, digits, dashes.
    fn name(&mut self, name: &Spanned<String>, path: &str) -> bool {
        let n = &name.value;
        let ok = !n.is_empty()
            && n.len() <= MAX_NAME
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !n.starts_with('-');
        if !ok {
            self.error(
                name,
                path,
                format!("name {n:?} must be 1-{MAX_NAME} characters of a-z, 0-9 and '-', not starting with '-'"),
            );
        }
        ok
    }

    /// A device name the kernel accepts.
    fn ifname(&mut self, name: &Spanned<String>, path: &str) -> bool {
        let n = &name.value;
        let ok = !n.is_empty()
            && n.len() <= MAX_IFNAME
            && n != "."
            && n != ".."
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            self.error(
                name,
                path,
                format!("device name {n:?} must be 1-{MAX_IFNAME} characters of letters, digits, '-', '_' and '.'"),
            );
        }
        ok
    }

    /// A CIDR with no host bits set.
    fn cidr(&mut self, text: &Spanned<String>, path: &str) -> Option<IpNet> {
        match text.value.parse::<IpNet>() {
            Ok(net) if net.trunc() == net => Some(net),
            Ok(net) => {
                self.error(
                    text,
                    path,
                    format!("{net} has host bits set; did you mean {}?", net.trunc()),
                );
                None
            }
            Err(_) => {
                self.error(
                    text,
                    path,
                    format!(
                        "malformed CIDR {:?} (want address/prefix, like 10.0.0.0/24)",
                        text.value
                    ),
                );
                None
            }
        }
    }
}

/// Where a link endpoint lives, for the completeness check.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DeviceRef {
    node: String,
    device: String,
}

/// Kind and location of a declared port or interface.
#[derive(Debug, Clone)]
struct DeviceInfo {
    kind: NodeKind,
    path: String,
    line: u64,
    column: u64,
}

impl DeviceInfo {
    fn new(kind: NodeKind, path: String, at: &Spanned<String>) -> DeviceInfo {
        DeviceInfo {
            kind,
            path,
            line: at.referenced.line(),
            column: at.referenced.column(),
        }
    }
}

/// A deterministic locally administered MAC for a host interface.
fn derived_mac(lab: &str, host: &str, interface: &str) -> EthernetAddress {
    let hash = [lab, host, interface]
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, part| {
            part.bytes()
                .chain(std::iter::once(0))
                .fold(h, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
        });
    let b = hash.to_be_bytes();
    // 0x02: locally administered, unicast.
    EthernetAddress([0x02, b[3], b[4], b[5], b[6], b[7]])
}

/// Validates a parsed file.
pub(crate) fn validate(raw: RawTopology, file: &Path) -> Result<Topology, Vec<TopologyError>> {
    let mut c = Checker {
        file,
        errors: Vec::new(),
    };
    c.name(&raw.name, "name");
    let lab = raw.name.value.clone();

    let controller = controller_settings(&mut c, raw.controller.as_ref());
    let networks = networks(&mut c, &raw.networks);

    if raw.switches.len() > MAX_SWITCHES {
        c.error(
            &raw.name,
            "switches",
            format!("{} switches; at most {MAX_SWITCHES}", raw.switches.len()),
        );
    }
    if raw.hosts.len() > MAX_HOSTS {
        c.error(
            &raw.name,
            "hosts",
            format!("{} hosts; at most {MAX_HOSTS}", raw.hosts.len()),
        );
    }

    let mut node_names: FxHashMap<String, String> = FxHashMap::default();
    let mut devices: FxHashMap<DeviceRef, DeviceInfo> = FxHashMap::default();
    let switches = switches(&mut c, &raw.switches, &mut node_names, &mut devices);
    let hosts = hosts(
        &mut c,
        &lab,
        &raw.hosts,
        &networks,
        &mut node_names,
        &mut devices,
    );
    let links = links(&mut c, &raw.links, &devices);

    if c.errors.is_empty() {
        Ok(Topology {
            name: lab,
            source: file.to_path_buf(),
            controller,
            networks,
            switches,
            hosts,
            links,
        })
    } else {
        Err(c.errors)
    }
}

fn controller_settings(
    c: &mut Checker<'_>,
    raw: Option<&Spanned<RawController>>,
) -> ControllerSettings {
    let mut settings = ControllerSettings {
        listen: Listen::Unix,
        mac_aging: DEFAULT_MAC_AGING,
    };
    let Some(raw) = raw else { return settings };
    if let Some(listen) = &raw.value.listen {
        let text = listen.value.as_str();
        if text != "unix" {
            match text.strip_prefix("tcp:").unwrap_or(text).parse() {
                Ok(addr) => settings.listen = Listen::Tcp(addr),
                Err(_) => c.error(
                    listen,
                    "controller.listen",
                    format!(
                        "{text:?}: want \"unix\" or \"tcp:ADDRESS:PORT\" (like tcp:127.0.0.1:6653)"
                    ),
                ),
            }
        }
    }
    if let Some(aging) = &raw.value.mac_aging {
        if aging.value == 0 || aging.value > 65_535 {
            c.error(
                aging,
                "controller.mac_aging",
                format!("{} seconds: want 1 to 65535", aging.value),
            );
        } else {
            settings.mac_aging = Duration::from_secs(aging.value);
        }
    }
    settings
}

fn networks(c: &mut Checker<'_>, raw: &[Spanned<RawNetwork>]) -> Vec<Network> {
    let mut seen = FxHashSet::default();
    let mut out = Vec::new();
    for (n, net) in raw.iter().enumerate() {
        let path = format!("networks[{n}]");
        let net = &net.value;
        if c.name(&net.name, &format!("{path}.name")) && !seen.insert(net.name.value.clone()) {
            c.error(
                &net.name,
                format!("{path}.name"),
                format!("network {} is declared twice", net.name.value),
            );
        }
        let cidr = c.cidr(&net.cidr, &format!("{path}.cidr"));
        let mut subnets: Vec<Subnet> = Vec::new();
        let mut subnet_names = FxHashSet::default();
        for (s, sub) in net.subnets.iter().enumerate() {
            let spath = format!("{path}.subnets[{s}]");
            let sub = &sub.value;
            if c.name(&sub.name, &format!("{spath}.name"))
                && !subnet_names.insert(sub.name.value.clone())
            {
                c.error(
                    &sub.name,
                    format!("{spath}.name"),
                    format!(
                        "subnet {} is declared twice in network {}",
                        sub.name.value, net.name.value
                    ),
                );
            }
            let Some(sub_cidr) = c.cidr(&sub.cidr, &format!("{spath}.cidr")) else {
                continue;
            };
            if let Some(net_cidr) = cidr
                && !net_cidr.contains(&sub_cidr)
            {
                c.error(
                    &sub.cidr,
                    format!("{spath}.cidr"),
                    format!(
                        "subnet {sub_cidr} is not inside network {} ({net_cidr})",
                        net.name.value
                    ),
                );
            }
            if let Some(other) = subnets.iter().find(|o| {
                o.cidr.contains(&sub_cidr.network()) || sub_cidr.contains(&o.cidr.network())
            }) {
                c.error(
                    &sub.cidr,
                    format!("{spath}.cidr"),
                    format!(
                        "subnet {sub_cidr} overlaps subnet {} ({})",
                        other.name, other.cidr
                    ),
                );
            }
            subnets.push(Subnet {
                name: sub.name.value.clone(),
                cidr: sub_cidr,
            });
        }
        if let Some(cidr) = cidr {
            out.push(Network {
                name: net.name.value.clone(),
                cidr,
                subnets,
            });
        }
    }
    out
}

fn claim_node(
    c: &mut Checker<'_>,
    names: &mut FxHashMap<String, String>,
    name: &Spanned<String>,
    path: &str,
) {
    if let Some(first) = names.get(&name.value) {
        c.error(
            name,
            path,
            format!("name {} is already used by {first}", name.value),
        );
    } else {
        names.insert(name.value.clone(), path.to_string());
    }
}

fn switches(
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
            let number = match &port.number {
                Some(n) if n.value == 0 || n.value > 65_279 => {
                    c.error(
                        n,
                        format!("{ppath}.number"),
                        format!("port number {}: want 1 to 65279", n.value),
                    );
                    continue;
                }
                Some(n) => n.value,
                None => p as u32 + 1,
            };
            if let Some(other) = ports.iter().find(|o| o.number == number) {
                c.error(
                    &port.name,
                    format!("{ppath}.number"),
                    format!("port number {number} is already port {}", other.name),
                );
            }
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
            ports.push(SwitchPort {
                name: port.name.value.clone(),
                number,
                offloads: port.offloads.as_ref().is_none_or(|o| o.value),
            });
        }
        out.push(Switch {
            name: sw.name.value.clone(),
            fail_mode,
            cpu,
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

fn hosts(
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
            });
        }
        out.push(Host {
            name: host.name.value.clone(),
            interfaces,
        });
    }
    out
}

fn links(
    c: &mut Checker<'_>,
    raw: &[Spanned<Vec<Spanned<String>>>],
    devices: &FxHashMap<DeviceRef, DeviceInfo>,
) -> Vec<Link> {
    let mut used: FxHashMap<DeviceRef, String> = FxHashMap::default();
    let mut out = Vec::new();
    for (l, link) in raw.iter().enumerate() {
        let path = format!("links[{l}]");
        if link.value.len() != 2 {
            c.error(
                link,
                &path,
                format!(
                    "a link joins exactly two endpoints, like [h1:eth0, sw1:p1]; got {}",
                    link.value.len()
                ),
            );
            continue;
        }
        let mut ends = Vec::new();
        for (e, end) in link.value.iter().enumerate() {
            let epath = format!("{path}[{e}]");
            let Some((node, device)) = end.value.split_once(':') else {
                c.error(
                    end,
                    &epath,
                    format!("{:?}: want node:device, like h1:eth0 or sw1:p1", end.value),
                );
                continue;
            };
            let key = DeviceRef {
                node: node.to_string(),
                device: device.to_string(),
            };
            let Some(DeviceInfo { kind, .. }) = devices.get(&key) else {
                let node_has_devices = devices.keys().any(|k| k.node == node);
                let reason = if node_has_devices {
                    format!("{node} has no port or interface named {device}")
                } else {
                    format!("no host or switch named {node}")
                };
                c.error(end, &epath, reason);
                continue;
            };
            if let Some(first) = used.insert(key.clone(), epath.clone()) {
                c.error(
                    end,
                    &epath,
                    format!("{} is already linked by {first}", end.value),
                );
                continue;
            }
            ends.push(Endpoint {
                node: key.node,
                device: key.device,
                kind: *kind,
            });
        }
        if let [a, b] = ends.as_slice() {
            if a.node == b.node {
                c.error(link, &path, format!("links {} to itself", a.node));
                continue;
            }
            out.push(Link {
                a: a.clone(),
                b: b.clone(),
            });
        }
    }
    // Every port and interface must be linked: an unlinked one has no device.
    let mut unlinked: Vec<(&DeviceRef, &DeviceInfo)> = devices
        .iter()
        .filter(|(k, _)| !used.contains_key(*k))
        .collect();
    unlinked.sort_by_key(|(_, info)| (info.line, info.column));
    for (device, info) in unlinked {
        c.errors.push(TopologyError {
            file: c.file.to_path_buf(),
            line: Some(info.line),
            column: Some(info.column),
            path: info.path.clone(),
            reason: format!(
                "{}:{} is not linked to anything; add it to links",
                device.node, device.device
            ),
        });
    }
    out
}
