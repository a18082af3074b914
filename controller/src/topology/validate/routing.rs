//! Peerings, VPN gateways and route tables: peerings join two existing,
//! different networks whose address spaces do not overlap; a VPN gateway
//! belongs to an existing network (one per network) and has a free public
//! address; a route table attaches to subnets (one table per subnet) and
//! its routes have valid prefixes and next hops that exist for every
//! subnet it steers: a virtual appliance is a forwarding interface of the
//! subnet's network or a peered one, `internet` needs the network's
//! internet gateway, a VPN gateway belongs to the network. A VPN
//! gateway's network has a host on a switch: the gateway runs there.

use super::Checker;
use super::internet::Addresses;
use super::security::{Names, subnet_refs_at};
use crate::topology::model::{Host, Link, Network, NodeKind};
use crate::topology::raw::{RawNextHop, RawRoute, RawRouteTable, RawTopology};
use crate::topology::routing::{Internet, NextHop, RouteTable, Routing, UserRoute, VpnGateway};
use crate::topology::security::SubnetRef;
use ipnet::IpNet;
use rustc_hash::{FxHashMap, FxHashSet};
use serde_saphyr::Spanned;
use std::net::{IpAddr, Ipv4Addr};

/// Most routes in one route table (Azure's limit).
const MAX_ROUTES: usize = 400;

/// Names of routing and edge resources, unique across their kinds.
#[derive(Default)]
pub(super) struct ResourceNames(FxHashMap<String, String>);

impl ResourceNames {
    /// Claims `name` for the resource at `path`; reports a clash.
    pub(super) fn claim(&mut self, c: &mut Checker<'_>, name: &Spanned<String>, path: &str) {
        if !c.name(name, path) {
            return;
        }
        if let Some(first) = self.0.get(&name.value) {
            c.error(
                name,
                path,
                format!("name {} is already used by {first}", name.value),
            );
        } else {
            self.0.insert(name.value.clone(), path.to_string());
        }
    }
}

/// Whether two address spaces overlap.
pub(super) fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Validates `peerings` and `vpn_gateways` (claiming their public IPs in
/// `addresses`); route tables come later, once the internet gateways are
/// known (see `route_tables`).
pub(super) fn peerings_and_vpn_gateways(
    c: &mut Checker<'_>,
    raw: &RawTopology,
    networks: &[Network],
    resources: &mut ResourceNames,
    addresses: &mut Addresses,
) -> Routing {
    let mut routing = Routing::default();
    for (i, pair) in raw.peerings.iter().enumerate() {
        let path = format!("peerings[{i}]");
        let [a, b] = pair.value.as_slice() else {
            c.error(
                pair,
                &path,
                format!(
                    "a peering joins exactly two networks, like [vnet-a, vnet-b]; got {}",
                    pair.value.len()
                ),
            );
            continue;
        };
        let mut found = Vec::new();
        for (e, end) in [a, b].into_iter().enumerate() {
            match networks.iter().find(|n| n.name == end.value) {
                Some(n) => found.push(n),
                None => c.error(
                    end,
                    format!("{path}[{e}]"),
                    format!("no network named {}", end.value),
                ),
            }
        }
        let [x, y] = found.as_slice() else { continue };
        if x.name == y.name {
            c.error(pair, &path, format!("peers network {} with itself", x.name));
        } else if overlaps(&x.cidr, &y.cidr) {
            c.error(
                pair,
                &path,
                format!(
                    "networks {} ({}) and {} ({}) overlap; overlapping networks cannot be peered",
                    x.name, x.cidr, y.name, y.cidr
                ),
            );
        } else if routing.peered(&x.name, &y.name) {
            c.error(
                pair,
                &path,
                format!("networks {} and {} are already peered", x.name, y.name),
            );
        } else {
            routing.peerings.push((x.name.clone(), y.name.clone()));
        }
    }
    for (i, gw) in raw.vpn_gateways.iter().enumerate() {
        let path = format!("vpn_gateways[{i}]");
        resources.claim(c, &gw.value.name, &format!("{path}.name"));
        let public_ip = addresses.claim(
            c,
            &gw.value.public_ip,
            &format!("{path}.public_ip"),
            networks,
        );
        let network = &gw.value.network;
        if !networks.iter().any(|n| n.name == network.value) {
            c.error(
                network,
                format!("{path}.network"),
                format!("no network named {}", network.value),
            );
            continue;
        }
        if let Some(other) = routing.vpn_gateway_of(&network.value) {
            c.error(
                network,
                format!("{path}.network"),
                format!(
                    "network {} already has VPN gateway {}; a network takes one",
                    network.value, other.name
                ),
            );
            continue;
        }
        routing.vpn_gateways.push(VpnGateway {
            name: gw.value.name.value.clone(),
            network: network.value.clone(),
            // A refused address was reported, and the file is refused: the
            // gateway is kept so that what names it is checked against it
            // rather than reported missing.
            public_ip: public_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
        });
    }
    routing
}

/// Refuses a VPN gateway whose network has no host interface linked to a
/// switch port: a gateway runs on the first switch holding a host of its
/// network (see `Topology::vpn_gateway_switch`), so without one it would
/// run nowhere.
pub(super) fn vpn_gateways_on_switches(
    c: &mut Checker<'_>,
    raw: &RawTopology,
    routing: &Routing,
    hosts: &[Host],
    links: &[Link],
) {
    let on_a_switch = |network: &str| {
        links.iter().any(|l| {
            [(&l.a, &l.b), (&l.b, &l.a)].iter().any(|(host, switch)| {
                host.kind == NodeKind::Host
                    && switch.kind == NodeKind::Switch
                    && hosts.iter().any(|h| {
                        h.name == host.node
                            && h.interfaces
                                .iter()
                                .any(|i| i.name == host.device && i.network == network)
                    })
            })
        })
    };
    for (i, gw) in raw.vpn_gateways.iter().enumerate() {
        let network = &gw.value.network;
        let accepted = routing
            .vpn_gateway(&gw.value.name.value)
            .is_some_and(|g| g.network == network.value);
        if accepted && !on_a_switch(&network.value) {
            c.error(
                network,
                format!("vpn_gateways[{i}].network"),
                format!(
                    "network {} has no host on a switch: VPN gateway {} runs on the switch of a host of its network; link one to a switch",
                    network.value, gw.value.name.value
                ),
            );
        }
    }
}

/// What the next hops of a route table may name.
pub(super) struct HopContext<'a> {
    pub(super) hosts: &'a [Host],
    pub(super) internet: &'a Internet,
    /// Peerings and VPN gateways, validated.
    pub(super) routing: &'a Routing,
}

/// Validates `route_tables`.
pub(super) fn route_tables(
    c: &mut Checker<'_>,
    raw: &[Spanned<RawRouteTable>],
    names: &Names<'_>,
    context: &HopContext<'_>,
    resources: &mut ResourceNames,
) -> Vec<RouteTable> {
    let mut out = Vec::new();
    let mut attached: FxHashMap<SubnetRef, String> = FxHashMap::default();
    for (i, table) in raw.iter().enumerate() {
        let path = format!("route_tables[{i}]");
        let table = &table.value;
        resources.claim(c, &table.name, &format!("{path}.name"));
        let written = subnet_refs_at(c, &table.subnets, &format!("{path}.subnets"), names);
        for (j, subnet) in &written {
            if let Some(first) = attached.insert(subnet.clone(), table.name.value.clone()) {
                c.error(
                    &table.subnets[*j],
                    format!("{path}.subnets[{j}]"),
                    format!(
                        "subnet {}/{} already has route table {first}; a subnet takes one",
                        subnet.network, subnet.subnet
                    ),
                );
            }
        }
        if table.routes.len() > MAX_ROUTES {
            c.error(
                &table.name,
                format!("{path}.routes"),
                format!("{} routes; at most {MAX_ROUTES}", table.routes.len()),
            );
        }
        let subnets: Vec<SubnetRef> = written.into_iter().map(|(_, s)| s).collect();
        let mut routes: Vec<UserRoute> = Vec::new();
        let mut route_names = FxHashSet::default();
        for (r, route) in table.routes.iter().enumerate() {
            let rpath = format!("{path}.routes[{r}]");
            let Some(route) = user_route(c, &route.value, &rpath, r, &subnets, context) else {
                continue;
            };
            if !route_names.insert(route.name.clone()) {
                let at = table.routes[r].value.name.as_ref().unwrap_or(&table.name);
                c.error(
                    at,
                    format!("{rpath}.name"),
                    format!("route {} is declared twice in this table", route.name),
                );
            }
            if let Some(other) = routes.iter().find(|o| o.prefix == route.prefix) {
                c.error(
                    &table.routes[r].value.prefix,
                    format!("{rpath}.prefix"),
                    format!(
                        "prefix {} is already routed by {}; one route per prefix",
                        route.prefix, other.name
                    ),
                );
            }
            routes.push(route);
        }
        out.push(RouteTable {
            name: table.name.value.clone(),
            routes,
            subnets,
        });
    }
    out
}

fn user_route(
    c: &mut Checker<'_>,
    raw: &RawRoute,
    path: &str,
    index: usize,
    subnets: &[SubnetRef],
    context: &HopContext<'_>,
) -> Option<UserRoute> {
    let name = match &raw.name {
        Some(n) => {
            c.name(n, &format!("{path}.name"));
            n.value.clone()
        }
        None => format!("route{index}"),
    };
    let prefix = match c.cidr(&raw.prefix, &format!("{path}.prefix"))? {
        IpNet::V4(net) => net,
        IpNet::V6(net) => {
            c.error(
                &raw.prefix,
                format!("{path}.prefix"),
                format!("{net}: routes are IPv4"),
            );
            return None;
        }
    };
    let next_hop = next_hop(c, &raw.next_hop, &format!("{path}.next_hop"))?;
    let hop_path = format!("{path}.next_hop");
    // The networks the table steers, each once: a reason about a network is
    // given once however many of its subnets the table holds.
    let mut networks: Vec<&str> = Vec::new();
    for subnet in subnets {
        if !networks.contains(&subnet.network.as_str()) {
            networks.push(&subnet.network);
        }
    }
    // Whether the named appliance or VPN gateway exists does not depend on
    // the subnets: a table that none uses yet is checked too.
    let reasons = match &next_hop {
        NextHop::Internet => networks
            .iter()
            .filter(|n| context.internet.gateway_of(n).is_none())
            .map(|n| {
                format!("network {n} has no internet gateway (add one under internet_gateways)")
            })
            .collect(),
        NextHop::VirtualAppliance(address) => appliance(context, subnets, *address),
        NextHop::VpnGateway(name) => match context
            .routing
            .vpn_gateways
            .iter()
            .find(|g| &g.name == name)
        {
            None => vec![format!("no VPN gateway named {name} (see vpn_gateways)")],
            Some(g) => networks
                .iter()
                .filter(|n| **n != g.network)
                .map(|n| {
                    format!(
                        "VPN gateway {name} belongs to network {}, not to {n}",
                        g.network
                    )
                })
                .collect(),
        },
        NextHop::None => Vec::new(),
    };
    for reason in reasons {
        c.error(&raw.next_hop, &hop_path, reason);
    }
    Some(UserRoute {
        name,
        prefix,
        next_hop,
    })
}

/// Checks that `address` is a forwarding interface each of `subnets` can
/// route to: in its own network or a peered one. Returns what is wrong.
fn appliance(context: &HopContext<'_>, subnets: &[SubnetRef], address: Ipv4Addr) -> Vec<String> {
    let candidates: Vec<_> = context
        .hosts
        .iter()
        .flat_map(|h| h.interfaces.iter().map(move |i| (h, i)))
        .filter(|(_, i)| i.address == IpAddr::V4(address))
        .collect();
    let Some(&first) = candidates.first() else {
        return vec![format!(
            "no host interface has address {address}: a virtual appliance is a host interface with ip_forward: true"
        )];
    };
    let mut reasons = Vec::new();
    // The interfaces the subnets would send to (the first one found when no
    // subnet uses the table yet).
    let mut used = Vec::new();
    if subnets.is_empty() {
        used.push(first);
    }
    for subnet in subnets {
        let reachable = |network: &str| {
            network == subnet.network || context.routing.peered(network, &subnet.network)
        };
        match candidates.iter().find(|(_, i)| reachable(&i.network)) {
            Some(&found) => {
                if !used.contains(&found) {
                    used.push(found);
                }
            }
            None => {
                let (host, iface) = first;
                reasons.push(format!(
                    "appliance {address} ({}:{}) is in network {}, which subnet {}/{} cannot reach (not its network, not peered)",
                    host.name, iface.name, iface.network, subnet.network, subnet.subnet
                ));
            }
        }
    }
    for (host, iface) in used {
        if !iface.ip_forward {
            reasons.push(format!(
                "{}:{} ({address}) does not forward: give it ip_forward: true to make it a virtual appliance",
                host.name, iface.name
            ));
        }
    }
    reasons
}

fn next_hop(c: &mut Checker<'_>, raw: &Spanned<RawNextHop>, path: &str) -> Option<NextHop> {
    let want = "want none, internet, { virtual_appliance: ADDRESS } or { vpn_gateway: NAME }";
    match &raw.value {
        RawNextHop::Word(w) if w == "none" => Some(NextHop::None),
        RawNextHop::Word(w) if w == "internet" => Some(NextHop::Internet),
        RawNextHop::Word(w) => {
            c.error(raw, path, format!("{w:?}: {want}"));
            None
        }
        RawNextHop::Map(map) => match map.iter().collect::<Vec<_>>().as_slice() {
            [(key, value)] if key.as_str() == "virtual_appliance" => {
                match value.parse::<Ipv4Addr>() {
                    Ok(address) => Some(NextHop::VirtualAppliance(address)),
                    Err(_) => {
                        c.error(raw, path, format!("{value:?} is not an IPv4 address"));
                        None
                    }
                }
            }
            [(key, value)] if key.as_str() == "vpn_gateway" => {
                Some(NextHop::VpnGateway((*value).clone()))
            }
            _ => {
                c.error(raw, path, want);
                None
            }
        },
    }
}
