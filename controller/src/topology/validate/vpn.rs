//! The VPN sections' peers: on-premises sites and local network gateways.
//! A site's name and its hosts' are node names (each is a namespace), its
//! public IP and a local network gateway's address are free public
//! addresses, a LAN and the prefixes behind a local network gateway are
//! IPv4 and outside the internet's ranges (and a gateway's prefixes do not
//! overlap each other), and a site's hosts are inside its LAN, not on its
//! router's address. Connections are checked in `connection`.

use super::Checker;
use super::connection::connections;
use super::internet::Addresses;
use super::nodes::claim_node;
use super::routing::{ResourceNames, overlaps};
use super::security::word;
use crate::topology::model::Network;
use crate::topology::raw::{RawLocalNetworkGateway, RawOnpremSite, RawTopology};
use crate::topology::routing::{INTERNET_RANGES, Routing};
use crate::topology::vpn::*;
use ipnet::{IpNet, Ipv4Net};
use rustc_hash::FxHashMap;
use serde_saphyr::Spanned;
use std::net::Ipv4Addr;

/// What `vpn` needs from the rest of the file.
pub(super) struct Context<'a> {
    pub(super) raw: &'a RawTopology,
    pub(super) networks: &'a [Network],
    /// Peerings and VPN gateways, validated.
    pub(super) routing: &'a Routing,
}

/// What `vpn` claims names and addresses in.
pub(super) struct Claims<'a> {
    /// Names of hosts, switches and internet hosts (the node names).
    pub(super) node_names: &'a mut FxHashMap<String, String>,
    /// Names of routing and edge resources.
    pub(super) resources: &'a mut ResourceNames,
    /// Public addresses in use.
    pub(super) addresses: &'a mut Addresses,
}

/// Validates `onprem_sites`, `local_network_gateways` and `connections`.
pub(super) fn vpn(c: &mut Checker<'_>, cx: &Context<'_>, claims: &mut Claims<'_>) -> Vpn {
    let mut out = Vpn::default();
    for (i, site) in cx.raw.onprem_sites.iter().enumerate() {
        let path = format!("onprem_sites[{i}]");
        out.onprem_sites
            .extend(onprem_site(c, cx, &site.value, &path, claims));
    }
    for (i, gateway) in cx.raw.local_network_gateways.iter().enumerate() {
        let path = format!("local_network_gateways[{i}]");
        out.local_network_gateways.extend(local_network_gateway(
            c,
            cx,
            &gateway.value,
            &path,
            claims,
        ));
    }
    out.connections = connections(c, cx, &out, claims.resources);
    out
}

/// A prefix behind a VPN peer: an IPv4 CIDR outside the internet's ranges.
fn remote_prefix(c: &mut Checker<'_>, text: &Spanned<String>, path: &str) -> Option<Ipv4Net> {
    let net = match c.cidr(text, path)? {
        IpNet::V4(net) => net,
        IpNet::V6(net) => {
            c.error(text, path, format!("{net}: VPN prefixes are IPv4"));
            return None;
        }
    };
    if let Some(range) = INTERNET_RANGES
        .iter()
        .find(|r| overlaps(&IpNet::V4(**r), &IpNet::V4(net)))
    {
        c.error(
            text,
            path,
            format!(
                "{net} overlaps the internet's public range {range}: the tunnel would carry traffic meant for the internet"
            ),
        );
        return None;
    }
    Some(net)
}

fn onprem_site(
    c: &mut Checker<'_>,
    cx: &Context<'_>,
    raw: &RawOnpremSite,
    path: &str,
    claims: &mut Claims<'_>,
) -> Option<OnpremSite> {
    let name = &raw.name.value;
    if c.name(&raw.name, &format!("{path}.name")) {
        claim_node(c, claims.node_names, &raw.name, &format!("{path}.name"));
    }
    let public_ip =
        claims
            .addresses
            .claim(c, &raw.public_ip, &format!("{path}.public_ip"), cx.networks);
    let lan_path = format!("{path}.lan");
    let lan = remote_prefix(c, &raw.lan, &lan_path).filter(|lan| {
        // The network and broadcast addresses, the router and one host.
        let roomy = lan.prefix_len() <= 30;
        if !roomy {
            c.error(
                &raw.lan,
                &lan_path,
                format!("{lan} has no room for the site's router and a host: want a /30 or larger"),
            );
        }
        roomy
    });
    let ipsec = word(
        c,
        &raw.ipsec,
        &format!("{path}.ipsec"),
        &[("strongswan", SiteIpsec::StrongSwan)],
    );
    let router = lan.map(|lan| Ipv4Addr::from(u32::from(lan.network()) + 1));
    let mut hosts: Vec<(SiteHost, String)> = Vec::new();
    for (h, host) in raw.hosts.iter().enumerate() {
        let hpath = format!("{path}.hosts[{h}]");
        let host = &host.value;
        if c.name(&host.name, &format!("{hpath}.name")) {
            claim_node(c, claims.node_names, &host.name, &format!("{hpath}.name"));
        }
        let at = &host.address;
        let apath = format!("{hpath}.address");
        let Ok(address) = at.value.parse::<Ipv4Addr>() else {
            c.error(
                at,
                apath,
                format!(
                    "{:?} is not an IPv4 address (a site host's address has no prefix: the LAN's is its)",
                    at.value
                ),
            );
            continue;
        };
        let (Some(lan), Some(router)) = (lan, router) else {
            continue;
        };
        let reason = if !lan.contains(&address) {
            format!("{address} is not inside site {name}'s LAN {lan}")
        } else if address == lan.network() || address == lan.broadcast() {
            format!("{address} is the network or broadcast address of {lan}")
        } else if address == router {
            format!(
                "{address} is site {name}'s router (the LAN's first host address): give the host another"
            )
        } else if let Some((_, first)) = hosts.iter().find(|(o, _)| o.address == address) {
            format!("{address} is already used by {first}")
        } else {
            hosts.push((
                SiteHost {
                    name: host.name.value.clone(),
                    address,
                },
                apath,
            ));
            continue;
        };
        c.error(at, apath, reason);
    }
    Some(OnpremSite {
        name: name.clone(),
        public_ip: public_ip?,
        lan: lan?,
        router: router?,
        ipsec: ipsec?,
        hosts: hosts.into_iter().map(|(h, _)| h).collect(),
    })
}

fn local_network_gateway(
    c: &mut Checker<'_>,
    cx: &Context<'_>,
    raw: &RawLocalNetworkGateway,
    path: &str,
    claims: &mut Claims<'_>,
) -> Option<LocalNetworkGateway> {
    claims
        .resources
        .claim(c, &raw.name, &format!("{path}.name"));
    let address = claims
        .addresses
        .claim(c, &raw.address, &format!("{path}.address"), cx.networks);
    if raw.prefixes.is_empty() {
        c.error(
            &raw.name,
            format!("{path}.prefixes"),
            "a local network gateway has at least one prefix (the ranges behind it)",
        );
    }
    let mut prefixes: Vec<Ipv4Net> = Vec::new();
    let mut ok = true;
    for (p, text) in raw.prefixes.iter().enumerate() {
        let ppath = format!("{path}.prefixes[{p}]");
        let Some(net) = remote_prefix(c, text, &ppath) else {
            ok = false;
            continue;
        };
        if let Some(other) = prefixes
            .iter()
            .find(|o| overlaps(&IpNet::V4(**o), &IpNet::V4(net)))
        {
            c.error(
                text,
                ppath,
                format!(
                    "{net} overlaps {other}, also behind local network gateway {}",
                    raw.name.value
                ),
            );
            ok = false;
            continue;
        }
        prefixes.push(net);
    }
    if !ok || prefixes.is_empty() {
        return None;
    }
    Some(LocalNetworkGateway {
        name: raw.name.value.clone(),
        address: address?,
        prefixes,
    })
}
