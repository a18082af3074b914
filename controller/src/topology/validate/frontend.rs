//! Load balancer frontends: an IPv4 address each, either public (in the
//! internet's ranges, not its router or a range's edge, used by no internet
//! host, public IP or NAT gateway, in a network with an internet gateway) or
//! internal (in a subnet of the network, not its network, broadcast or
//! gateway address, used by no host interface of the network); unique among
//! frontends. The load balancer's network is the one it names, or else the
//! one its internal frontends are in.

use super::Checker;
use super::load_balancer::{Context, Unique};
use crate::topology::load_balancer::{Frontend, FrontendKind};
use crate::topology::model::{Host, Interface, Network};
use crate::topology::raw::{RawFrontend, RawLoadBalancer, RawTopology};
use crate::topology::routing::{INTERNET_RANGES, INTERNET_ROUTER};
use ipnet::IpNet;
use rustc_hash::FxHashMap;
use serde_saphyr::Spanned;
use std::net::{IpAddr, Ipv4Addr};

/// The address space a frontend address is unique in: the internet's, or
/// one network's (networks that are not peered may overlap).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Space {
    Internet,
    Network(String),
}

/// Frontend addresses claimed so far, with the path of the claim.
pub(super) type Claimed = FxHashMap<(Space, Ipv4Addr), String>;

/// Validates the frontends of a load balancer and settles its network.
pub(super) fn frontends<'n>(
    c: &mut Checker<'_>,
    cx: &Context<'n>,
    lb: &RawLoadBalancer,
    path: &str,
    claimed: &mut Claimed,
) -> (Settled<'n>, Vec<Frontend>) {
    let name = lb.name.value.as_str();
    let addresses: Vec<Option<Ipv4Addr>> = lb
        .frontends
        .iter()
        .enumerate()
        .map(|(f, fe)| {
            let text = &fe.value.address;
            let parsed = text.value.parse::<Ipv4Addr>().ok();
            if parsed.is_none() {
                c.error(
                    text,
                    format!("{path}.frontends[{f}].address"),
                    format!("{:?} is not an IPv4 address", text.value),
                );
            }
            parsed
        })
        .collect();
    if lb.frontends.is_empty() {
        c.error(
            &lb.name,
            format!("{path}.frontends"),
            "a load balancer has at least one frontend",
        );
    }
    let network = network(c, cx, lb, path, &addresses);
    let mut unique = Unique::new(name, "frontend");
    let mut frontends = Vec::new();
    for (f, (fe, address)) in lb.frontends.iter().zip(&addresses).enumerate() {
        let fpath = format!("{path}.frontends[{f}]");
        unique.check(c, &fe.value.name, &format!("{fpath}.name"));
        let Some(address) = *address else { continue };
        let kind = frontend_kind(c, cx, &fe.value, address, &fpath, network, claimed);
        if let Some(kind) = kind {
            frontends.push(Frontend {
                name: fe.value.name.value.clone(),
                address,
                kind,
            });
        }
    }
    (network, frontends)
}

/// How a load balancer's network is settled.
#[derive(Clone, Copy)]
pub(super) enum Settled<'n> {
    /// Named, or told by its internal frontends.
    Network(&'n Network),
    /// Not settled, and why was reported.
    Reported,
    /// Not named, and no frontend address is in a subnet of a network.
    Nowhere,
}

impl<'n> Settled<'n> {
    pub(super) fn network(self) -> Option<&'n Network> {
        match self {
            Settled::Network(n) => Some(n),
            Settled::Reported | Settled::Nowhere => None,
        }
    }
}

/// The network of a load balancer: the one it names, or else the one its
/// internal frontends are in (a public frontend tells none).
fn network<'n>(
    c: &mut Checker<'_>,
    cx: &Context<'n>,
    lb: &RawLoadBalancer,
    path: &str,
    addresses: &[Option<Ipv4Addr>],
) -> Settled<'n> {
    if let Some(named) = &lb.network {
        return match cx.networks.iter().find(|n| n.name == named.value) {
            Some(n) => Settled::Network(n),
            None => {
                c.error(
                    named,
                    format!("{path}.network"),
                    format!("no network named {}", named.value),
                );
                Settled::Reported
            }
        };
    }
    let written: Vec<(&RawFrontend, Ipv4Addr)> = lb
        .frontends
        .iter()
        .zip(addresses)
        .filter_map(|(f, a)| a.map(|a| (&f.value, a)))
        .collect();
    if let Some((public, address)) = written.iter().find(|(_, a)| is_public(*a)) {
        c.error(
            &lb.name,
            format!("{path}.network"),
            format!(
                "frontend {} ({address}) is public, which does not tell the load balancer's network: name it with network:",
                public.name.value
            ),
        );
        return Settled::Reported;
    }
    if written.is_empty() {
        // No frontend, or none with an address: already reported.
        return Settled::Reported;
    }
    for (frontend, address) in &written {
        let holding: Vec<&Network> = cx
            .networks
            .iter()
            .filter(|n| subnet_holding(n, *address).is_some())
            .collect();
        match holding.as_slice() {
            [] => continue,
            [one] => return Settled::Network(one),
            several => {
                let names: Vec<&str> = several.iter().map(|n| n.name.as_str()).collect();
                c.error(
                    &frontend.address,
                    format!("{path}.network"),
                    format!(
                        "{address} is in subnets of networks {}: name the load balancer's network with network:",
                        names.join(" and ")
                    ),
                );
                return Settled::Reported;
            }
        }
    }
    Settled::Nowhere
}

/// Whether `address` is in the internet's public ranges.
fn is_public(address: Ipv4Addr) -> bool {
    INTERNET_RANGES.iter().any(|r| r.contains(&address))
}

/// The subnet of `network` holding `address`, with its IPv4 range.
fn subnet_holding(network: &Network, address: Ipv4Addr) -> Option<(&str, ipnet::Ipv4Net)> {
    network.subnets.iter().find_map(|s| match s.cidr {
        IpNet::V4(net) if net.contains(&address) => Some((s.name.as_str(), net)),
        _ => None,
    })
}

/// The address a public thing of the file uses, by path: internet hosts,
/// public IPs, NAT gateways, VPN gateways, on-premises sites and local
/// network gateways.
fn public_user(raw: &RawTopology, address: Ipv4Addr) -> Option<String> {
    let is = |text: &Spanned<String>| text.value.parse::<Ipv4Addr>() == Ok(address);
    let hosts = raw.internet.iter().flat_map(|i| i.value.hosts.iter());
    for (i, host) in hosts.enumerate() {
        if is(&host.value.address) {
            return Some(format!("internet.hosts[{i}].address"));
        }
    }
    for (i, ip) in raw.public_ips.iter().enumerate() {
        if is(&ip.value.address) {
            return Some(format!("public_ips[{i}].address"));
        }
    }
    for (i, gw) in raw.nat_gateways.iter().enumerate() {
        if is(&gw.value.address) {
            return Some(format!("nat_gateways[{i}].address"));
        }
    }
    for (i, gw) in raw.vpn_gateways.iter().enumerate() {
        if is(&gw.value.public_ip) {
            return Some(format!("vpn_gateways[{i}].public_ip"));
        }
    }
    for (i, site) in raw.onprem_sites.iter().enumerate() {
        if is(&site.value.public_ip) {
            return Some(format!("onprem_sites[{i}].public_ip"));
        }
    }
    for (i, gw) in raw.local_network_gateways.iter().enumerate() {
        if is(&gw.value.address) {
            return Some(format!("local_network_gateways[{i}].address"));
        }
    }
    None
}

/// Checks a frontend's address and claims it; its kind if it is valid.
fn frontend_kind(
    c: &mut Checker<'_>,
    cx: &Context<'_>,
    raw: &RawFrontend,
    address: Ipv4Addr,
    path: &str,
    network: Settled<'_>,
    claimed: &mut Claimed,
) -> Option<FrontendKind> {
    let checked = if is_public(address) {
        public(cx, address, network).map(|()| (Space::Internet, FrontendKind::Public))
    } else {
        internal(cx, address, network)
            .map(|(network, subnet)| (Space::Network(network), FrontendKind::Internal { subnet }))
    };
    let path = format!("{path}.address");
    let reason = match checked {
        Ok((space, kind)) => match claimed.get(&(space.clone(), address)) {
            Some(first) => format!("{address} is already used by {first}"),
            None => {
                claimed.insert((space, address), path);
                return Some(kind);
            }
        },
        Err(Some(reason)) => reason,
        // What is wrong was reported (the load balancer's network).
        Err(None) => return None,
    };
    c.error(&raw.address, path, reason);
    None
}

/// Checks a public frontend address; `Err(None)` when the problem (an
/// unsettled network) was reported already.
fn public(cx: &Context<'_>, address: Ipv4Addr, network: Settled<'_>) -> Result<(), Option<String>> {
    let edge = INTERNET_RANGES
        .iter()
        .any(|r| r.network() == address || r.broadcast() == address);
    if edge {
        return Err(Some(format!(
            "{address} is the network or broadcast address of its range"
        )));
    }
    if address == INTERNET_ROUTER {
        return Err(Some(format!("{address} is the internet's router")));
    }
    if let Some(user) = public_user(cx.raw, address) {
        return Err(Some(format!("{address} is already used by {user}")));
    }
    let network = network.network().ok_or(None)?;
    if cx.internet.gateway_of(&network.name).is_none() {
        return Err(Some(format!(
            "{address} is public but network {} has no internet gateway (add one under internet_gateways)",
            network.name
        )));
    }
    Ok(())
}

/// Checks an internal frontend address: its network's and subnet's names if
/// it is valid; `Err(None)` when the problem was reported already.
fn internal(
    cx: &Context<'_>,
    address: Ipv4Addr,
    network: Settled<'_>,
) -> Result<(String, String), Option<String>> {
    let ranges: Vec<String> = INTERNET_RANGES.iter().map(|r| r.to_string()).collect();
    let ranges = ranges.join(", ");
    let network = match network {
        Settled::Network(network) => network,
        Settled::Reported => return Err(None),
        Settled::Nowhere => {
            return Err(Some(format!(
                "{address} is neither a public address of the lab's internet ({ranges}) nor in a subnet of any network"
            )));
        }
    };
    let Some((subnet, net)) = subnet_holding(network, address) else {
        return Err(Some(if network.cidr.contains(&IpAddr::V4(address)) {
            format!(
                "{address} is inside network {} ({}) but in none of its subnets",
                network.name, network.cidr
            )
        } else {
            format!(
                "{address} is neither a public address of the lab's internet ({ranges}) nor inside network {} ({})",
                network.name, network.cidr
            )
        }));
    };
    if net.prefix_len() < 31 && (address == net.network() || address == net.broadcast()) {
        return Err(Some(format!(
            "{address} is the network or broadcast address of {net}"
        )));
    }
    let gateway = network
        .subnets
        .iter()
        .find(|s| s.name == subnet)
        .and_then(|s| s.gateway);
    if gateway == Some(address) {
        return Err(Some(format!(
            "{address} is the gateway of subnet {}/{subnet} (the switch answers for it)",
            network.name
        )));
    }
    if let Some((host, iface)) = interface_at(cx.hosts, &network.name, address) {
        return Err(Some(format!(
            "{address} is used by {}:{}",
            host.name, iface.name
        )));
    }
    Ok((network.name.clone(), subnet.to_string()))
}

/// The host interface of `network` at `address`.
fn interface_at<'h>(
    hosts: &'h [Host],
    network: &str,
    address: Ipv4Addr,
) -> Option<(&'h Host, &'h Interface)> {
    hosts.iter().find_map(|h| {
        h.interfaces
            .iter()
            .find(|i| i.network == network && i.address == IpAddr::V4(address))
            .map(|i| (h, i))
    })
}
