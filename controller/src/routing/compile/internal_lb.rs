//! Internal load balancers at their home switch, for the hosts of that
//! switch: a frontend is an address of a subnet that no host has.
//!
//! - `ROUTE`: in its own subnet the gateway answers ARP for the frontend, so
//!   every client sends to the router; from any subnet whose route to the
//!   frontend is its network, a connection to a rule's address, protocol
//!   and port is DNATed through conntrack to the member the rule's group
//!   picks (an inbound NAT rule's to its target) and delivered in
//!   `NEIGHBOR`. A pool member reaching its own load balancer's frontend
//!   (hair-pinning) is refused with ICMP administratively prohibited.
//! - The members' answers are translated back through the tracked
//!   connection before they reach their client, so clients see only the
//!   frontend: a routed answer (to another subnet) in `NEIGHBOR`, from
//!   where it is delivered in `NAT_OUT`; an answer within the subnet (to the
//!   client's own MAC) in `ROUTE`, below every routed entry.

use super::balance;
use super::builder::{Builder, Host, exact, host_prefix, ipv4};
use super::*;
use crate::topology::load_balancer::{FrontendKind, LoadBalancer};

/// A client's connection to a frontend: above every route.
const PRIORITY_FRONTEND: u16 = 210;
/// A member to its own frontend: above the frontend's entry.
const PRIORITY_HAIRPIN: u16 = 220;
/// A routed member's answer, before delivery (200).
const PRIORITY_ROUTED_ANSWER: u16 = 250;
/// A member's answer within its subnet: below every entry for the router's
/// MAC (the lowest, `PRIORITY_STRAY`, is 50), above the skeleton.
const PRIORITY_LOCAL_ANSWER: u16 = 40;

fn is_internal(kind: &FrontendKind) -> bool {
    matches!(kind, FrontendKind::Internal { .. })
}

/// The internal load balancers switch `b` balances for, with their index.
fn internal_here<'t>(b: &Builder<'t>) -> Vec<(usize, &'t LoadBalancer)> {
    let topology: &'t Topology = b.topology;
    topology
        .load_balancers
        .iter()
        .enumerate()
        .filter(|(_, lb)| balance::home_switch(topology, lb) == Some(b.switch.name.as_str()))
        .filter(|(_, lb)| lb.frontends.iter().any(|f| is_internal(&f.kind)))
        .collect()
}

/// Whether subnet context `s` routes `address` to a host of `network`.
fn routes_to(b: &Builder<'_>, s: usize, address: Ipv4Addr, network: &str) -> bool {
    let Some((own, subnet)) = b.indexes.subnet_at(s) else {
        return false;
    };
    let best = subnet_routes(b.topology, own, subnet)
        .into_iter()
        .filter(|r| r.active && r.prefix.contains(&address))
        .max_by_key(|r| r.priority());
    matches!(best.map(|r| r.hop),
        Some(Hop::VnetLocal { network: n } | Hop::Peering { network: n }) if n == network)
}

/// The flows of every internal load balancer switch `b` balances for, in
/// the subnet contexts `contexts` of its hosts. Adds the networks whose
/// delivery entries the flows use to `neighbor_networks`.
pub(super) fn internal_flows(
    b: &mut Builder<'_>,
    contexts: &BTreeSet<usize>,
    neighbor_networks: &mut BTreeSet<String>,
) {
    for (index, lb) in internal_here(b) {
        let Some(net_index) = b.indexes.network(&lb.network) else {
            continue;
        };
        let zone = nat_zone(net_index);
        let neigh = metadata(KIND_NEIGH, net_index);
        let listeners = balance::listeners(b.topology, index, lb, is_internal);
        let members = balance::answering_members(lb, is_internal);
        neighbor_networks.insert(lb.network.clone());
        for &s in contexts {
            let Some((network, subnet)) = b.indexes.subnet_at(s) else {
                continue;
            };
            let (network, subnet) = (network.to_string(), subnet.to_string());
            let Some(gateway) = b.topology.subnet(&network, &subnet).and_then(|x| x.gateway) else {
                continue;
            };
            let ctx = exact(metadata(KIND_SUBNET, s));
            let router = b.router_mac();
            let in_subnet = |address: Ipv4Addr| {
                b.topology
                    .subnet(&network, &subnet)
                    .is_some_and(|x| x.cidr.contains(&IpAddr::V4(address)))
            };
            let frontends: BTreeSet<Ipv4Addr> = listeners.iter().map(|l| l.address).collect();
            let local_members: BTreeSet<Ipv4Addr> = lb
                .backend_pools
                .iter()
                .flat_map(|p| &p.members)
                .map(|m| m.address)
                .filter(|a| in_subnet(*a))
                .collect();
            for &frontend in &frontends {
                if network == lb.network && in_subnet(frontend) {
                    b.flow(
                        ROUTE,
                        PRIORITY_RESPONDER,
                        Match {
                            metadata: ctx,
                            eth_type: Some(ETH_ARP),
                            ip_proto: Some(ARP_REQUEST),
                            ip_dst: host_prefix(frontend),
                            ..Match::default()
                        },
                        b.answer_back(Action::ArpReply(router)),
                        COOKIE_BALANCE,
                    );
                }
                for &member in &local_members {
                    b.flow(
                        ROUTE,
                        PRIORITY_HAIRPIN,
                        ipv4(Match {
                            metadata: ctx,
                            eth_dst: Some(MacMatch::exact(router)),
                            ip_src: host_prefix(member),
                            ip_dst: host_prefix(frontend),
                            ..Match::default()
                        }),
                        vec![Action::IcmpUnreachable {
                            code: unreachable::ADMIN,
                            icmp_src: gateway,
                        }],
                        COOKIE_REFUSED,
                    );
                }
            }
            for listener in &listeners {
                if !routes_to(b, s, listener.address, &lb.network) {
                    continue;
                }
                b.flow(
                    ROUTE,
                    PRIORITY_FRONTEND,
                    ipv4(Match {
                        metadata: ctx,
                        eth_dst: Some(MacMatch::exact(router)),
                        ip_dst: host_prefix(listener.address),
                        ip_proto: Some(listener.protocol),
                        tp_dst: Some(listener.port),
                        ..Match::default()
                    }),
                    vec![
                        Action::DecTtl { icmp_src: gateway },
                        Action::WriteMetadata(neigh),
                        Action::Ct {
                            zone,
                            commit: true,
                            table: NEIGHBOR,
                            nat: Some(listener.nat),
                        },
                    ],
                    COOKIE_BALANCE,
                );
            }
            for &member in members.iter().filter(|m| in_subnet(m.0)) {
                let at = (ROUTE, PRIORITY_LOCAL_ANSWER, ctx);
                answer_flow(b, at, member, zone, IN_CT);
            }
        }
        // Members in a peered network are delivered from this network's
        // context, where the frontend's connections continue.
        let outside: Vec<Host<'_>> = b
            .hosts()
            .filter(|h| h.iface.network != lb.network)
            .filter(|h| members.iter().any(|m| m.0 == h.address))
            .collect();
        for h in &outside {
            let key = ipv4(Match {
                metadata: exact(neigh),
                ip_dst: host_prefix(h.address),
                ..Match::default()
            });
            let gateway = b.gateway_of(h.iface);
            b.deliver_flows(NEIGHBOR, 200, &key, h, gateway, &[]);
        }
        routed_answers(b, zone, &members, neighbor_networks);
    }
}

/// The members' routed answers, to any network this switch delivers to:
/// translated back through conntrack, then delivered from `NAT_OUT`.
fn routed_answers(
    b: &mut Builder<'_>,
    zone: u16,
    members: &BTreeSet<(Ipv4Addr, u8, u16)>,
    neighbor_networks: &BTreeSet<String>,
) {
    for network in neighbor_networks {
        let Some(index) = b.indexes.network(network) else {
            continue;
        };
        let ctx = exact(metadata(KIND_NEIGH, index));
        for &member in members {
            answer_flow(
                b,
                (NEIGHBOR, PRIORITY_ROUTED_ANSWER, ctx),
                member,
                zone,
                NAT_OUT,
            );
        }
        let hosts: Vec<Host<'_>> = b.hosts().filter(|h| &h.iface.network == network).collect();
        for h in &hosts {
            let key = ipv4(Match {
                metadata: ctx,
                ip_dst: host_prefix(h.address),
                ..Match::default()
            });
            let gateway = b.gateway_of(h.iface);
            b.deliver_flows(NAT_OUT, 200, &key, h, gateway, &[]);
        }
    }
}

/// In `table` at `priority` in context `ctx`: a member's packets from its
/// answering port go through the connection they answer (translated back
/// to the frontend), then on to table `next`.
fn answer_flow(
    b: &mut Builder<'_>,
    (table, priority, ctx): (u8, u16, Option<MetadataMatch>),
    (address, protocol, port): (Ipv4Addr, u8, u16),
    zone: u16,
    next: u8,
) {
    b.flow(
        table,
        priority,
        ipv4(Match {
            metadata: ctx,
            ip_src: host_prefix(address),
            ip_proto: Some(protocol),
            tp_src: Some(port),
            ..Match::default()
        }),
        vec![Action::Ct {
            zone,
            commit: false,
            table: next,
            nat: Some(Nat::Existing),
        }],
        COOKIE_BALANCE,
    );
}
