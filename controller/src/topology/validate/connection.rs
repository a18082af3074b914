//! VPN connections: a connection names a VPN gateway and exactly one far
//! end (an on-premises site, a local network gateway or another network's
//! VPN gateway; each pair of gateways at most once, in either direction);
//! the prefixes behind the far end overlap no network the gateway's
//! network reaches (its own and those peered with it) nor the prefixes of
//! the gateway's other connections, and for a VNet-to-VNet connection the
//! same holds from the peer gateway's side. VPN connections carry IPv4.
//! A connection's algorithms, timers and key file are checked in `ipsec`.

use super::Checker;
use super::ipsec::{psk_file, settings};
use super::routing::{ResourceNames, overlaps};
use super::vpn::Context;
use crate::topology::raw::{RawConnection, RawTopology};
use crate::topology::routing::VpnGateway;
use crate::topology::vpn::*;
use ipnet::{IpNet, Ipv4Net};
use rustc_hash::FxHashMap;
use serde_saphyr::Spanned;

/// A connection's far end, resolved.
struct Far<'r> {
    remote: Remote,
    prefixes: Vec<Ipv4Net>,
    /// What the prefixes are, for messages, like `site branch's LAN`.
    owner: String,
    /// Where the file names the far end, and that field's path.
    at: &'r Spanned<String>,
    path: String,
}

/// A prefix one VPN gateway would send into a connection's tunnel.
struct Reach<'r> {
    gateway: &'r VpnGateway,
    /// `gateway`, or `peer gateway` for the far end of a VNet-to-VNet
    /// connection.
    role: &'static str,
    /// For the peer gateway's side of a VNet-to-VNet connection, the
    /// network whose range it sends: the other side already compares the
    /// two networks (and their peering) with each other.
    from_network: Option<&'r str>,
    prefix: Ipv4Net,
    owner: String,
    connection: usize,
    at: &'r Spanned<String>,
    path: String,
}

/// Validates `connections` against the sites and local network gateways
/// validated (in `vpn`).
pub(super) fn connections<'a>(
    c: &mut Checker<'_>,
    cx: &Context<'a>,
    vpn: &Vpn,
    resources: &mut ResourceNames,
) -> Vec<Connection> {
    let mut out = Vec::new();
    let mut reaches: Vec<Reach<'a>> = Vec::new();
    // Pairs of gateways joined so far (in name order), with the connection.
    let mut pairs: FxHashMap<(String, String), String> = FxHashMap::default();
    let raw_topology: &'a RawTopology = cx.raw;
    for (i, conn) in raw_topology.connections.iter().enumerate() {
        let path = format!("connections[{i}]");
        let raw = &conn.value;
        resources.claim(c, &raw.name, &format!("{path}.name"));
        let gateway = gateway(c, cx, &raw.gateway, &format!("{path}.gateway"));
        let far = far_end(c, cx, vpn, raw, &path, gateway);
        let key_file = psk_file(c, &raw.psk_file, &format!("{path}.psk_file"));
        let settings = settings(c, raw, &path);
        let (Some((gateway, local_prefix)), Some(far)) = (gateway, far) else {
            continue;
        };
        if let Remote::PeerGateway(peer) = &far.remote {
            let mut pair = (gateway.name.clone(), peer.clone());
            if pair.0 > pair.1 {
                pair = (pair.1, pair.0);
            }
            if let Some(first) = pairs.get(&pair) {
                c.error(
                    far.at,
                    &far.path,
                    format!(
                        "gateways {} and {} are already connected by connection {first}: two VPN gateways take one connection, in either direction",
                        pair.0, pair.1
                    ),
                );
                continue;
            }
            pairs.insert(pair, raw.name.value.clone());
            // The peer gateway sends the gateway's network into the tunnel.
            let peer = cx.routing.vpn_gateways.iter().find(|g| g.name == *peer);
            if let Some(peer) = peer {
                reaches.push(Reach {
                    gateway: peer,
                    role: "peer gateway",
                    from_network: Some(&gateway.network),
                    prefix: local_prefix,
                    owner: format!("gateway {}'s network {}", gateway.name, gateway.network),
                    connection: i,
                    at: far.at,
                    path: far.path.clone(),
                });
            }
        }
        for prefix in &far.prefixes {
            reaches.push(Reach {
                gateway,
                role: "gateway",
                from_network: None,
                prefix: *prefix,
                owner: far.owner.clone(),
                connection: i,
                at: far.at,
                path: far.path.clone(),
            });
        }
        let (Some(psk_file), Some(settings)) = (key_file, settings) else {
            continue;
        };
        out.push(Connection {
            name: raw.name.value.clone(),
            gateway: gateway.name.clone(),
            remote: far.remote,
            local_prefix,
            remote_prefixes: far.prefixes,
            psk_file,
            policy: settings.policy,
            ike_lifetime: settings.ike_lifetime,
            child_lifetime: settings.child_lifetime,
            dpd_interval: settings.dpd_interval,
            dpd_retries: settings.dpd_retries,
            initiator: settings.initiator,
        });
    }
    check_reaches(c, cx, &reaches);
    out
}

/// The VPN gateway a connection names, with its network's (IPv4) range.
fn gateway<'r>(
    c: &mut Checker<'_>,
    cx: &Context<'r>,
    at: &Spanned<String>,
    path: &str,
) -> Option<(&'r VpnGateway, Ipv4Net)> {
    let Some(gateway) = cx.routing.vpn_gateways.iter().find(|g| g.name == at.value) else {
        if !cx
            .raw
            .vpn_gateways
            .iter()
            .any(|g| g.value.name.value == at.value)
        {
            c.error(
                at,
                path,
                format!("no VPN gateway named {} (see vpn_gateways)", at.value),
            );
        }
        // Otherwise the gateway was refused, and why was reported.
        return None;
    };
    let range = ipv4_range(c, cx, gateway, at, path, "gateway")?;
    Some((gateway, range))
}

/// The IPv4 range of a VPN gateway's network; `role` names the gateway in
/// the message if it is IPv6.
fn ipv4_range(
    c: &mut Checker<'_>,
    cx: &Context<'_>,
    gateway: &VpnGateway,
    at: &Spanned<String>,
    path: &str,
    role: &str,
) -> Option<Ipv4Net> {
    let network = cx.networks.iter().find(|n| n.name == gateway.network)?;
    match network.cidr {
        IpNet::V4(net) => Some(net),
        IpNet::V6(net) => {
            c.error(
                at,
                path,
                format!(
                    "{role} {}'s network {} ({net}) is IPv6: VPN connections carry IPv4",
                    gateway.name, network.name
                ),
            );
            None
        }
    }
}

/// What a connection's far end is, from its `site`, `local_network_gateway`
/// or `peer_gateway` (exactly one).
fn far_end<'r>(
    c: &mut Checker<'_>,
    cx: &Context<'_>,
    vpn: &Vpn,
    raw: &'r RawConnection,
    path: &str,
    gateway: Option<(&VpnGateway, Ipv4Net)>,
) -> Option<Far<'r>> {
    let written: Vec<(&str, &Spanned<String>)> = [
        ("site", &raw.site),
        ("local_network_gateway", &raw.local_network_gateway),
        ("peer_gateway", &raw.peer_gateway),
    ]
    .into_iter()
    .filter_map(|(key, value)| value.as_ref().map(|v| (key, v)))
    .collect();
    let want = "a connection names its far end with exactly one of site, local_network_gateway or peer_gateway";
    let (key, at) = match written.as_slice() {
        [] => {
            c.error(&raw.name, path, format!("{want}; it names none"));
            return None;
        }
        [one] => *one,
        [(first, _), (second, at), ..] => {
            c.error(
                *at,
                format!("{path}.{second}"),
                format!("{want}; it names {first} and {second}"),
            );
            return None;
        }
    };
    let fpath = format!("{path}.{key}");
    let name = &at.value;
    let (remote, prefixes, owner) = match key {
        "site" => {
            let Some(site) = vpn.site(name) else {
                if !cx
                    .raw
                    .onprem_sites
                    .iter()
                    .any(|s| s.value.name.value == *name)
                {
                    c.error(
                        at,
                        &fpath,
                        format!("no on-premises site named {name} (see onprem_sites)"),
                    );
                }
                return None;
            };
            (
                Remote::Site(name.clone()),
                vec![site.lan],
                format!("site {name}'s LAN"),
            )
        }
        "local_network_gateway" => {
            let Some(lng) = vpn.local_network_gateway(name) else {
                if !cx
                    .raw
                    .local_network_gateways
                    .iter()
                    .any(|g| g.value.name.value == *name)
                {
                    c.error(
                        at,
                        &fpath,
                        format!(
                            "no local network gateway named {name} (see local_network_gateways)"
                        ),
                    );
                }
                return None;
            };
            (
                Remote::LocalNetworkGateway(name.clone()),
                lng.prefixes.clone(),
                format!("local network gateway {name}'s prefix"),
            )
        }
        _ => {
            let (peer, range) = peer_gateway(c, cx, at, &fpath, gateway)?;
            (
                Remote::PeerGateway(name.clone()),
                vec![range],
                format!("peer gateway {name}'s network {}", peer.network),
            )
        }
    };
    Some(Far {
        remote,
        prefixes,
        owner,
        at,
        path: fpath,
    })
}

/// A connection's peer gateway: another network's VPN gateway, with its
/// network's range.
fn peer_gateway<'r>(
    c: &mut Checker<'_>,
    cx: &Context<'r>,
    at: &Spanned<String>,
    path: &str,
    gateway: Option<(&VpnGateway, Ipv4Net)>,
) -> Option<(&'r VpnGateway, Ipv4Net)> {
    let name = &at.value;
    let Some(peer) = cx.routing.vpn_gateways.iter().find(|g| g.name == *name) else {
        if !cx
            .raw
            .vpn_gateways
            .iter()
            .any(|g| g.value.name.value == *name)
        {
            c.error(
                at,
                path,
                format!("no VPN gateway named {name} (see vpn_gateways)"),
            );
        }
        return None;
    };
    let (gateway, _) = gateway?;
    if peer.name == gateway.name {
        c.error(
            at,
            path,
            format!(
                "connects gateway {name} to itself: a peer gateway is another network's VPN gateway"
            ),
        );
        return None;
    }
    if peer.network == gateway.network {
        c.error(
            at,
            path,
            format!(
                "peer gateway {name} is in network {}, as gateway {} is: a VNet-to-VNet connection joins two networks",
                peer.network, gateway.name
            ),
        );
        return None;
    }
    let range = ipv4_range(c, cx, peer, at, path, "peer gateway")?;
    Some((peer, range))
}

/// Checks that no gateway sends a prefix into a tunnel that a network it
/// reaches holds (its own or one peered with it), or that it sends into
/// another of its tunnels.
fn check_reaches(c: &mut Checker<'_>, cx: &Context<'_>, reaches: &[Reach<'_>]) {
    for (k, reach) in reaches.iter().enumerate() {
        let prefix = IpNet::V4(reach.prefix);
        let what = format!("{} {}", reach.owner, reach.prefix);
        let (role, name) = (reach.role, &reach.gateway.name);
        let Some(home) = cx.networks.iter().find(|n| n.name == reach.gateway.network) else {
            continue;
        };
        if reach.from_network.is_none() && overlaps(&home.cidr, &prefix) {
            c.error(
                reach.at,
                &reach.path,
                format!(
                    "{what} overlaps network {} ({}) of {role} {name}",
                    home.name, home.cidr
                ),
            );
        }
        for (a, b) in &cx.routing.peerings {
            let other = if *a == home.name {
                b
            } else if *b == home.name {
                a
            } else {
                continue;
            };
            if reach.from_network == Some(other.as_str()) {
                continue;
            }
            let Some(other) = cx.networks.iter().find(|n| n.name == *other) else {
                continue;
            };
            if overlaps(&other.cidr, &prefix) {
                c.error(
                    reach.at,
                    &reach.path,
                    format!(
                        "{what} overlaps network {} ({}), peered with {}, the network of {role} {name}",
                        other.name, other.cidr, home.name
                    ),
                );
            }
        }
        let earlier = reaches[..k].iter().find(|e| {
            e.gateway.name == *name
                && e.connection != reach.connection
                && overlaps(&IpNet::V4(e.prefix), &prefix)
        });
        if let Some(earlier) = earlier {
            let connection = &cx.raw.connections[earlier.connection].value.name.value;
            c.error(
                reach.at,
                &reach.path,
                format!(
                    "{what} overlaps {}, which gateway {name} already sends into the tunnel of connection {connection}",
                    earlier.prefix
                ),
            );
        }
    }
}
