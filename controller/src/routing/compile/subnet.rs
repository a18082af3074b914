//! What a switch does for the subnets of its own hosts: the gateways' ARP
//! and ping answers, the subnets' routes, and the delivery of routed packets
//! to the hosts of a network.

use super::builder::{Builder, Host, exact, host_prefix, ipv4, net_prefix};
use super::*;

/// The responders and routes of subnet `s`, whose hosts this switch holds.
pub(super) fn source_subnet(
    b: &mut Builder<'_>,
    s: usize,
    neighbor_networks: &mut BTreeSet<String>,
    inet_subnets: &mut BTreeSet<usize>,
) {
    let Some((network, subnet)) = b.indexes.subnet_at(s) else {
        return;
    };
    let (network, subnet) = (network.to_string(), subnet.to_string());
    let Some(gateway) = b.topology.subnet(&network, &subnet).and_then(|x| x.gateway) else {
        return;
    };
    let router = b.router_mac();
    let ctx = exact(metadata(KIND_SUBNET, s));
    b.flow(
        ROUTE,
        PRIORITY_RESPONDER,
        Match {
            metadata: ctx,
            eth_type: Some(ETH_ARP),
            ip_proto: Some(ARP_REQUEST),
            ip_dst: host_prefix(gateway),
            ..Match::default()
        },
        b.answer_back(Action::ArpReply(router)),
        COOKIE_BASE,
    );
    let gateways: Vec<Ipv4Addr> = b
        .topology
        .network(&network)
        .map(|n| n.subnets.iter().filter_map(|x| x.gateway).collect())
        .unwrap_or_default();
    for g in gateways {
        b.flow(
            ROUTE,
            PRIORITY_RESPONDER,
            ipv4(Match {
                metadata: ctx,
                eth_dst: Some(MacMatch::exact(router)),
                ip_proto: Some(ICMP),
                tp_src: Some(ICMP_ECHO_REQUEST),
                ip_dst: host_prefix(g),
                ..Match::default()
            }),
            b.answer_back(Action::IcmpEchoReply),
            COOKIE_BASE,
        );
    }
    let to_router = ipv4(Match {
        metadata: ctx,
        eth_dst: Some(MacMatch::exact(router)),
        ..Match::default()
    });
    for route in subnet_routes(b.topology, &network, &subnet) {
        if !route.active {
            continue;
        }
        let matcher = Match {
            ip_dst: net_prefix(route.prefix),
            ..to_router.clone()
        };
        let dec = Action::DecTtl { icmp_src: gateway };
        let actions = match &route.hop {
            Hop::VnetLocal { network: n } | Hop::Peering { network: n } => {
                neighbor_networks.insert(n.clone());
                let index = b.indexes.network(n).unwrap_or(usize::MAX);
                vec![
                    dec,
                    Action::WriteMetadata(metadata(KIND_NEIGH, index)),
                    Action::GotoTable(NEIGHBOR),
                ]
            }
            Hop::Internet => {
                inet_subnets.insert(s);
                vec![
                    dec,
                    Action::WriteMetadata(metadata(KIND_INET, s)),
                    Action::GotoTable(NEIGHBOR),
                ]
            }
            Hop::VirtualAppliance(address) => {
                let appliance = b
                    .hosts()
                    .find(|h| h.address == *address && h.iface.ip_forward);
                match appliance {
                    Some(h) => {
                        let cookie = route_cookie(b, &network, &subnet, &route);
                        for (extra, deliver) in b.deliver(&h, Some(gateway)) {
                            let m = Match {
                                in_port: extra.in_port,
                                ..matcher.clone()
                            };
                            let all = std::iter::once(dec).chain(deliver).collect();
                            let bump = u16::from(extra.in_port.is_some());
                            b.flow(ROUTE, route.priority() + bump, m, all, cookie);
                        }
                        continue;
                    }
                    None => Vec::new(),
                }
            }
            Hop::VpnGateway(g) => super::vpn::tunnel_actions(b, g, route.prefix, gateway),
            Hop::None => Vec::new(),
        };
        let cookie = route_cookie(b, &network, &subnet, &route);
        b.flow(ROUTE, route.priority(), matcher, actions, cookie);
    }
    b.flow(
        ROUTE,
        PRIORITY_NO_ROUTE,
        to_router.clone(),
        vec![Action::IcmpUnreachable {
            code: unreachable::NET,
            icmp_src: gateway,
        }],
        COOKIE_BASE,
    );
    b.flow(
        ROUTE,
        PRIORITY_NOT_IPV4,
        Match {
            eth_type: None,
            ..to_router
        },
        Vec::new(),
        COOKIE_REFUSED,
    );
}

fn route_cookie(b: &mut Builder<'_>, network: &str, subnet: &str, route: &EffectiveRoute) -> u64 {
    let index = b.out.routes.len() as u64;
    b.out.routes.push(RouteRef {
        network: network.to_string(),
        subnet: subnet.to_string(),
        route: route.clone(),
    });
    COOKIE_ROUTE | index
}

/// Delivery of routed packets to the hosts of `network`.
pub(super) fn neighbors(b: &mut Builder<'_>, network: &str) {
    let Some(index) = b.indexes.network(network) else {
        return;
    };
    let ctx = exact(metadata(KIND_NEIGH, index));
    let hosts: Vec<Host<'_>> = b.hosts().filter(|h| h.iface.network == network).collect();
    for h in &hosts {
        let Some(gateway) = b.gateway_of(h.iface) else {
            continue;
        };
        let key = ipv4(Match {
            metadata: ctx,
            ip_dst: host_prefix(h.address),
            ..Match::default()
        });
        b.deliver_flows(NEIGHBOR, 200, &key, h, Some(gateway), &[]);
    }
    let subnets: Vec<(ipnet::IpNet, Option<Ipv4Addr>)> = b
        .topology
        .network(network)
        .map(|n| n.subnets.iter().map(|s| (s.cidr, s.gateway)).collect())
        .unwrap_or_default();
    for (cidr, gateway) in subnets {
        let (ipnet::IpNet::V4(cidr), Some(gateway)) = (cidr, gateway) else {
            continue;
        };
        b.flow(
            NEIGHBOR,
            100,
            ipv4(Match {
                metadata: ctx,
                ip_dst: net_prefix(cidr),
                ..Match::default()
            }),
            vec![Action::IcmpUnreachable {
                code: unreachable::HOST,
                icmp_src: gateway,
            }],
            COOKIE_REFUSED,
        );
    }
}
