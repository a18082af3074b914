//! The internet edge: hosts on public addresses from the documentation
//! ranges, one internet gateway per network, public IPs on host interfaces
//! and NAT gateways on subnets. Public addresses (these, and those of VPN
//! gateways, on-premises sites and local network gateways, claimed through
//! `Addresses` too) are unique, inside the internet's ranges and in no
//! network; whatever reaches the internet belongs to a network with an
//! internet gateway.

use super::routing::ResourceNames;
use super::security::{Names, interface_ref, parse_ports, subnet_refs_at};
use super::{Checker, derived_mac};
use crate::topology::model::{Host, Link, Network, NodeKind, Switch, peer_of};
use crate::topology::raw::{RawPorts, RawTopology};
use crate::topology::routing::{
    DEFAULT_NAT_PORTS, INTERNET_RANGES, INTERNET_ROUTER, Internet, InternetGateway, InternetHost,
    NatGateway, PublicIp,
};
use rustc_hash::FxHashMap;
use serde_saphyr::Spanned;
use std::net::{IpAddr, Ipv4Addr};

/// What `internet` needs from the rest of the file.
pub(super) struct Context<'a> {
    pub(super) lab: &'a str,
    pub(super) networks: &'a [Network],
    pub(super) hosts: &'a [Host],
    pub(super) switches: &'a [Switch],
    pub(super) links: &'a [Link],
    pub(super) names: &'a Names<'a>,
}

/// Public addresses in use, and by what.
#[derive(Default)]
pub(super) struct Addresses(FxHashMap<Ipv4Addr, String>);

impl Addresses {
    /// Checks a public address and claims it for `path`.
    pub(super) fn claim(
        &mut self,
        c: &mut Checker<'_>,
        text: &Spanned<String>,
        path: &str,
        networks: &[Network],
    ) -> Option<Ipv4Addr> {
        let Ok(address) = text.value.parse::<Ipv4Addr>() else {
            c.error(
                text,
                path,
                format!("{:?} is not an IPv4 address", text.value),
            );
            return None;
        };
        let ranges: Vec<String> = INTERNET_RANGES.iter().map(|r| r.to_string()).collect();
        if !INTERNET_RANGES.iter().any(|r| r.contains(&address)) {
            c.error(
                text,
                path,
                format!(
                    "{address} is not a public address of the lab's internet ({})",
                    ranges.join(", ")
                ),
            );
            return None;
        }
        let edge = INTERNET_RANGES
            .iter()
            .any(|r| r.network() == address || r.broadcast() == address);
        if edge || address == INTERNET_ROUTER {
            let what = if edge {
                "the network or broadcast address of its range"
            } else {
                "the internet's router"
            };
            c.error(text, path, format!("{address} is {what}"));
            return None;
        }
        if let Some(network) = networks
            .iter()
            .find(|n| n.cidr.contains(&IpAddr::V4(address)))
        {
            c.error(
                text,
                path,
                format!(
                    "{address} is inside network {} ({}); public addresses are in no network",
                    network.name, network.cidr
                ),
            );
            return None;
        }
        if let Some(first) = self.0.insert(address, path.to_string()) {
            c.error(text, path, format!("{address} is already used by {first}"));
            return None;
        }
        Some(address)
    }
}

/// Validates the internet section, internet gateways, public IPs and NAT
/// gateways. `node_names` holds the names of hosts and switches, which
/// internet hosts share; `addresses` the public addresses claimed so far.
/// A lab has an internet if it has an internet section or internet
/// gateways, or anything else on the internet: VPN gateways, on-premises
/// sites or local network gateways.
pub(super) fn internet(
    c: &mut Checker<'_>,
    raw: &RawTopology,
    cx: &Context<'_>,
    node_names: &mut FxHashMap<String, String>,
    resources: &mut ResourceNames,
    addresses: &mut Addresses,
) -> Internet {
    let present = raw.internet.is_some()
        || !raw.internet_gateways.is_empty()
        || !raw.vpn_gateways.is_empty()
        || !raw.onprem_sites.is_empty()
        || !raw.local_network_gateways.is_empty();
    let mut out = Internet {
        present,
        ..Internet::default()
    };
    if out.present {
        // The file's networks as written, to point at the offending CIDR
        // (`cx.networks` leaves out those whose CIDR was refused).
        for (n, network) in raw.networks.iter().enumerate() {
            let text = &network.value.cidr;
            let Ok(cidr) = text.value.parse::<ipnet::IpNet>() else {
                continue;
            };
            if cidr.trunc() != cidr {
                continue;
            }
            if let Some(range) = INTERNET_RANGES
                .iter()
                .find(|r| super::routing::overlaps(&cidr, &ipnet::IpNet::V4(**r)))
            {
                c.error(
                    text,
                    format!("networks[{n}].cidr"),
                    format!(
                        "network {} ({cidr}) overlaps the internet's public range {range}",
                        network.value.name.value
                    ),
                );
            }
        }
    }
    if let Some(section) = &raw.internet {
        for (i, host) in section.value.hosts.iter().enumerate() {
            let path = format!("internet.hosts[{i}]");
            let name = &host.value.name;
            if c.name(name, &format!("{path}.name")) {
                super::nodes::claim_node(c, node_names, name, &format!("{path}.name"));
            }
            let Some(address) = addresses.claim(
                c,
                &host.value.address,
                &format!("{path}.address"),
                cx.networks,
            ) else {
                continue;
            };
            out.hosts.push(InternetHost {
                name: name.value.clone(),
                address,
                mac: derived_mac(cx.lab, &name.value, "eth0"),
            });
        }
    }
    for (i, gw) in raw.internet_gateways.iter().enumerate() {
        let path = format!("internet_gateways[{i}]");
        resources.claim(c, &gw.value.name, &format!("{path}.name"));
        let network = &gw.value.network;
        if !cx.networks.iter().any(|n| n.name == network.value) {
            c.error(
                network,
                format!("{path}.network"),
                format!("no network named {}", network.value),
            );
            continue;
        }
        if let Some(other) = out.gateway_of(&network.value) {
            c.error(
                network,
                format!("{path}.network"),
                format!(
                    "network {} already has internet gateway {}; a network takes one",
                    network.value, other.name
                ),
            );
            continue;
        }
        out.gateways.push(InternetGateway {
            name: gw.value.name.value.clone(),
            network: network.value.clone(),
        });
    }
    public_ips(c, raw, cx, addresses, resources, &mut out);
    nat_gateways(c, raw, cx, addresses, resources, &mut out);
    out
}

fn public_ips(
    c: &mut Checker<'_>,
    raw: &RawTopology,
    cx: &Context<'_>,
    addresses: &mut Addresses,
    resources: &mut ResourceNames,
    out: &mut Internet,
) {
    for (i, ip) in raw.public_ips.iter().enumerate() {
        let path = format!("public_ips[{i}]");
        resources.claim(c, &ip.value.name, &format!("{path}.name"));
        let address = addresses.claim(
            c,
            &ip.value.address,
            &format!("{path}.address"),
            cx.networks,
        );
        let at = &ip.value.interface;
        let Some(interface) = interface_ref(c, at, &format!("{path}.interface"), cx.names) else {
            continue;
        };
        let Some(iface) = cx
            .hosts
            .iter()
            .find(|h| h.name == interface.host)
            .and_then(|h| h.interfaces.iter().find(|f| f.name == interface.interface))
        else {
            continue;
        };
        if !iface.address.is_ipv4() {
            c.error(
                at,
                format!("{path}.interface"),
                "a public IP maps to an IPv4 interface",
            );
            continue;
        }
        if out.gateway_of(&iface.network).is_none() {
            c.error(
                at,
                format!("{path}.interface"),
                format!(
                    "network {} of {} has no internet gateway (add one under internet_gateways)",
                    iface.network, at.value
                ),
            );
        }
        if let Some(other) = out.public_ip_of(&interface.host, &interface.interface) {
            c.error(
                at,
                format!("{path}.interface"),
                format!("{} already has public IP {}", at.value, other.name),
            );
            continue;
        }
        if let Some(address) = address {
            out.public_ips.push(PublicIp {
                name: ip.value.name.value.clone(),
                address,
                interface,
            });
        }
    }
}

/// The switches with host ports in `subnets`, in file order.
fn switches_serving<'s>(
    cx: &Context<'s>,
    network: &str,
    subnets: &[crate::topology::security::SubnetRef],
) -> Vec<&'s Switch> {
    cx.switches
        .iter()
        .filter(|sw| {
            sw.ports.iter().any(|p| {
                peer_of(cx.links, &sw.name, &p.name)
                    .filter(|end| end.kind == NodeKind::Host)
                    .and_then(|end| {
                        cx.hosts
                            .iter()
                            .find(|h| h.name == end.node)
                            .map(|h| (h, end))
                    })
                    .and_then(|(h, end)| h.interfaces.iter().find(|f| f.name == end.device))
                    .is_some_and(|f| {
                        f.network == network && subnets.iter().any(|s| s.subnet == f.subnet)
                    })
            })
        })
        .collect()
}

fn nat_ports(c: &mut Checker<'_>, raw: Option<&Spanned<RawPorts>>, path: &str) -> (u16, u16) {
    let Some(raw) = raw else {
        return DEFAULT_NAT_PORTS;
    };
    let text = match &raw.value {
        RawPorts::Number(n) => n.to_string(),
        RawPorts::Text(t) => t.clone(),
    };
    match parse_ports(&text).as_deref() {
        Ok([range]) if range.lo >= 1 && !range.is_any() => (range.lo, range.hi),
        _ => {
            c.error(
                raw,
                path,
                format!("{text:?}: want one range of source ports, like 1024-65535"),
            );
            DEFAULT_NAT_PORTS
        }
    }
}

fn nat_gateways(
    c: &mut Checker<'_>,
    raw: &RawTopology,
    cx: &Context<'_>,
    addresses: &mut Addresses,
    resources: &mut ResourceNames,
    out: &mut Internet,
) {
    for (i, gw) in raw.nat_gateways.iter().enumerate() {
        let path = format!("nat_gateways[{i}]");
        let gw = &gw.value;
        resources.claim(c, &gw.name, &format!("{path}.name"));
        let address = addresses.claim(c, &gw.address, &format!("{path}.address"), cx.networks);
        let ports = nat_ports(c, gw.ports.as_ref(), &format!("{path}.ports"));
        let written = subnet_refs_at(c, &gw.subnets, &format!("{path}.subnets"), cx.names);
        if gw.subnets.is_empty() {
            c.error(
                &gw.name,
                format!("{path}.subnets"),
                "a NAT gateway serves at least one subnet",
            );
        }
        let Some((_, first)) = written.first() else {
            continue;
        };
        let network = first.network.clone();
        let mut ok = true;
        for (j, subnet) in &written {
            let at = &gw.subnets[*j];
            if subnet.network != network {
                c.error(
                    at,
                    format!("{path}.subnets[{j}]"),
                    format!(
                        "subnet {}/{} is not in network {network}: a NAT gateway serves one network",
                        subnet.network, subnet.subnet
                    ),
                );
                ok = false;
            }
            if let Some(other) = out.nat_gateway_of(&subnet.network, &subnet.subnet) {
                c.error(
                    at,
                    format!("{path}.subnets[{j}]"),
                    format!(
                        "subnet {}/{} already has NAT gateway {}",
                        subnet.network, subnet.subnet, other.name
                    ),
                );
                ok = false;
            }
        }
        if out.gateway_of(&network).is_none() {
            c.error(
                &gw.name,
                &path,
                format!(
                    "network {network} has no internet gateway (add one under internet_gateways)"
                ),
            );
            ok = false;
        }
        let subnets: Vec<_> = written.into_iter().map(|(_, s)| s).collect();
        let switch = match &gw.switch {
            Some(name) => match cx.switches.iter().find(|s| s.name == name.value) {
                Some(s) => Some(s.name.clone()),
                None => {
                    c.error(
                        name,
                        format!("{path}.switch"),
                        format!("no switch named {}", name.value),
                    );
                    None
                }
            },
            None => match switches_serving(cx, &network, &subnets).first() {
                Some(s) => Some(s.name.clone()),
                None => {
                    c.error(
                        &gw.name,
                        format!("{path}.switch"),
                        "no switch has hosts of its subnets: name the switch that translates with switch:",
                    );
                    None
                }
            },
        };
        if let (true, Some(address), Some(switch)) = (ok, address, switch) {
            out.nat_gateways.push(NatGateway {
                name: gw.name.value.clone(),
                address,
                ports,
                subnets,
                network,
                switch,
            });
        }
    }
}
