//! Turns the raw file into the typed model, checking everything before
//! anything is created: names, CIDRs (a subnet lies inside its network,
//! subnets do not overlap, an address lies in its subnet and is used once),
//! references between sections (load balancers and VPN connections
//! included), and that every port and interface is linked.
//! Every problem is collected, each with its line, path and reason.

mod connection;
mod duration;
mod frontend;
mod internet;
mod ipsec;
mod links;
mod load_balancer;
mod nodes;
mod overlay;
mod probe;
mod routing;
mod security;
mod vpn;

use super::TopologyError;
use super::model::*;
use super::raw::*;
use ipnet::IpNet;
use rustc_hash::{FxHashMap, FxHashSet};
use serde_saphyr::Spanned;
use std::path::Path;
use std::time::Duration;

/// Longest lab or node name (namespace names are `<lab>-<node>`).
const MAX_NAME: usize = 32;
/// Longest device name the kernel takes (IFNAMSIZ - 1).
pub(super) const MAX_IFNAME: usize = 15;
/// Upper bounds that keep a lab within what one machine can hold.
const MAX_HOSTS: usize = 1024;
const MAX_SWITCHES: usize = 256;
pub(super) const MAX_PORTS: usize = 1024;

pub(super) struct Checker<'a> {
    pub(super) file: &'a Path,
    pub(super) errors: Vec<TopologyError>,
}

impl Checker<'_> {
    pub(super) fn error<T>(
        &mut self,
        at: &Spanned<T>,
        path: impl Into<String>,
        reason: impl Into<String>,
    ) {
        self.errors.push(TopologyError {
            file: self.file.to_path_buf(),
            line: Some(at.referenced.line()),
            column: Some(at.referenced.column()),
            path: path.into(),
            reason: reason.into(),
        });
    }

    /// A lab, network, switch or host name: lowercase letters, digits, dashes.
    pub(super) fn name(&mut self, name: &Spanned<String>, path: &str) -> bool {
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
    pub(super) fn ifname(&mut self, name: &Spanned<String>, path: &str) -> bool {
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
    pub(super) fn cidr(&mut self, text: &Spanned<String>, path: &str) -> Option<IpNet> {
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
pub(super) struct DeviceRef {
    pub(super) node: String,
    pub(super) device: String,
}

/// Kind and location of a declared port or interface.
#[derive(Debug, Clone)]
pub(super) struct DeviceInfo {
    pub(super) kind: NodeKind,
    pub(super) path: String,
    pub(super) line: u64,
    pub(super) column: u64,
}

impl DeviceInfo {
    pub(super) fn new(kind: NodeKind, path: String, at: &Spanned<String>) -> DeviceInfo {
        DeviceInfo {
            kind,
            path,
            line: at.referenced.line(),
            column: at.referenced.column(),
        }
    }
}

pub(super) use crate::topology::model::derived_mac;

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
    let underlay = overlay::underlay(&mut c, raw.underlay.as_ref());
    let hypervisors =
        overlay::hypervisors(&mut c, &raw.hypervisors, underlay.as_ref(), &mut node_names);
    let mut switches = nodes::switches(&mut c, &raw.switches, &mut node_names, &mut devices);
    overlay::placements(&mut c, &raw.switches, &mut switches, &hypervisors);
    let mut hosts = nodes::hosts(
        &mut c,
        &lab,
        &raw.hosts,
        &networks,
        &mut node_names,
        &mut devices,
    );
    let links = links::links(&mut c, &raw.links, &devices);
    overlay::tunnel_mtus(
        &mut c,
        &raw.hosts,
        &mut hosts,
        &switches,
        &links,
        underlay.as_ref(),
    );

    let security = security::security(&mut c, raw.security.as_ref(), &hosts, &networks, &links);
    let mut resources = routing::ResourceNames::default();
    let mut addresses = internet::Addresses::default();
    let mut routing =
        routing::peerings_and_vpn_gateways(&mut c, &raw, &networks, &mut resources, &mut addresses);
    let names = security::Names::new(&hosts, &networks, &links);
    let context = internet::Context {
        lab: &lab,
        networks: &networks,
        hosts: &hosts,
        switches: &switches,
        links: &links,
        names: &names,
    };
    let internet = internet::internet(
        &mut c,
        &raw,
        &context,
        &mut node_names,
        &mut resources,
        &mut addresses,
    );
    let hops = routing::HopContext {
        hosts: &hosts,
        internet: &internet,
        routing: &routing,
    };
    let tables = routing::route_tables(&mut c, &raw.route_tables, &names, &hops, &mut resources);
    routing.route_tables = tables;
    let balancers = load_balancer::Context {
        raw: &raw,
        networks: &networks,
        hosts: &hosts,
        names: &names,
        routing: &routing,
        internet: &internet,
        links: &links,
    };
    let load_balancers = load_balancer::load_balancers(&mut c, &balancers, &mut resources);
    let vpn_context = vpn::Context {
        raw: &raw,
        networks: &networks,
        routing: &routing,
    };
    let mut claims = vpn::Claims {
        node_names: &mut node_names,
        resources: &mut resources,
        addresses: &mut addresses,
    };
    let vpn = vpn::vpn(&mut c, &vpn_context, &mut claims);
    routing::vpn_gateways_on_switches(&mut c, &raw, &routing, &hosts, &links);

    if c.errors.is_empty() {
        Ok(Topology {
            name: lab,
            source: file.to_path_buf(),
            controller,
            networks,
            switches,
            hosts,
            links,
            underlay,
            hypervisors,
            security,
            routing,
            internet,
            load_balancers,
            vpn,
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

/// A subnet's `gateway:`: an IPv4 host address inside it.
fn gateway(
    c: &mut Checker<'_>,
    text: &Spanned<String>,
    path: &str,
    cidr: &IpNet,
) -> Option<std::net::Ipv4Addr> {
    let Ok(address) = text.value.parse::<std::net::Ipv4Addr>() else {
        c.error(
            text,
            path,
            format!("{:?} is not an IPv4 address", text.value),
        );
        return None;
    };
    match cidr {
        IpNet::V4(net) if !net.contains(&address) => {
            c.error(text, path, format!("{address} is not inside subnet {cidr}"));
            None
        }
        IpNet::V4(net)
            if net.prefix_len() < 31
                && (address == net.network() || address == net.broadcast()) =>
        {
            c.error(
                text,
                path,
                format!("{address} is the network or broadcast address of {cidr}"),
            );
            None
        }
        IpNet::V4(_) => Some(address),
        IpNet::V6(_) => {
            c.error(
                text,
                path,
                "IPv6 subnets are not routed: they have no gateway",
            );
            None
        }
    }
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
            let gateway = match &sub.gateway {
                None => default_gateway(&sub_cidr),
                Some(text) => gateway(c, text, &format!("{spath}.gateway"), &sub_cidr),
            };
            subnets.push(Subnet {
                name: sub.name.value.clone(),
                cidr: sub_cidr,
                gateway,
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
