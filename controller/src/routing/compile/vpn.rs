//! VPN gateways. What a network routes to its gateway (the `vpn_gateway`
//! system routes of the connections' remote prefixes, or a user route)
//! leaves by the gateway's ESP port, tagged with the connection's tunnel id:
//! the port seals it with that connection's newest child SA. What the
//! port opens enters with the tunnel id of the SA it came through and is
//! routed to its host if it comes from that connection's remote prefixes
//! to the gateway's network; anything else from a tunnel is dropped.
//!
//! A gateway lives on one switch (`Topology::vpn_gateway_switch`); a route
//! to it from another switch drops.

use super::builder::{Builder, ipv4, net_prefix};
use super::*;
use ipnet::Ipv4Net;

/// Largest inner packet a tunnel carries: the 1400 bytes Azure's VPN
/// gateway documents, which leaves room for the outer IPv4 and UDP headers,
/// ESP's header, IV, padding, trailer and ICV inside a 1500-byte link.
pub const TUNNEL_MTU: u16 = 1400;

/// What goes to and comes from the tunnels.
pub const COOKIE_VPN: u64 = COOKIE_ROUTING | (8 << 40);

/// The actions of a route to VPN gateway `gateway` for `prefix`: into the
/// tunnel of the connection that carries the prefix, or none (dropped)
/// when the gateway is not on this switch or no connection carries it.
pub(super) fn tunnel_actions(
    b: &Builder<'_>,
    gateway: &str,
    prefix: Ipv4Net,
    icmp_src: Ipv4Addr,
) -> Vec<Action> {
    let topology = b.topology;
    let Some((_, port)) = topology
        .vpn_gateways_on(&b.switch.name)
        .into_iter()
        .find(|(g, _)| g.name == gateway)
    else {
        return Vec::new();
    };
    let Some(connection) = carrying(topology, gateway, prefix) else {
        return Vec::new();
    };
    let (Some(id), Some(peer)) = (
        topology.vpn.tunnel_id(&connection.name),
        topology.vpn_peer_address(connection, gateway),
    ) else {
        return Vec::new();
    };
    vec![
        Action::DecTtl { icmp_src },
        Action::CheckMtu {
            mtu: TUNNEL_MTU,
            icmp_src: Some(icmp_src),
        },
        Action::SetField(SetField::TunnelId(id)),
        Action::SetField(SetField::TunnelDst(peer)),
        Action::Output(port),
    ]
}

/// The connection of `gateway` whose tunnel carries `prefix`: the one with
/// the longest remote prefix containing it; for a wider (user) route, the
/// first whose remote prefixes lie inside it.
fn carrying<'t>(
    topology: &'t Topology,
    gateway: &str,
    prefix: Ipv4Net,
) -> Option<&'t crate::topology::vpn::Connection> {
    let tunnels = topology.vpn.tunnel_routes(gateway);
    let best = tunnels
        .iter()
        .filter(|t| t.prefix.contains(&prefix))
        .max_by_key(|t| t.prefix.prefix_len())
        .or_else(|| tunnels.iter().find(|t| prefix.contains(&t.prefix)))?;
    topology.vpn.connection(&best.connection)
}

/// The arrivals from the tunnels of the gateways this switch carries.
pub(super) fn tunnel_ingress(b: &mut Builder<'_>, neighbor_networks: &mut BTreeSet<String>) {
    let topology = b.topology;
    for (gateway, port) in topology.vpn_gateways_on(&b.switch.name) {
        let Some(network) = topology.network(&gateway.network) else {
            continue;
        };
        let (Some(index), ipnet::IpNet::V4(local)) =
            (b.indexes.network(&network.name), network.cidr)
        else {
            continue;
        };
        let Some(icmp_src) = network.subnets.iter().find_map(|s| s.gateway) else {
            continue;
        };
        neighbor_networks.insert(network.name.clone());
        for tunnel in topology.vpn.tunnel_routes(&gateway.name) {
            let Some(id) = topology.vpn.tunnel_id(&tunnel.connection) else {
                continue;
            };
            b.flow(
                CLASSIFY,
                110,
                ipv4(Match {
                    in_port: Some(port),
                    tunnel_id: Some(u64::from(id)),
                    ip_src: net_prefix(tunnel.prefix),
                    ip_dst: net_prefix(local),
                    ..Match::default()
                }),
                vec![
                    Action::DecTtl { icmp_src },
                    Action::WriteMetadata(metadata(KIND_NEIGH, index)),
                    Action::GotoTable(NEIGHBOR),
                ],
                COOKIE_VPN,
            );
        }
        b.flow(
            CLASSIFY,
            105,
            Match {
                in_port: Some(port),
                ..Match::default()
            },
            Vec::new(),
            COOKIE_REFUSED,
        );
    }
}
