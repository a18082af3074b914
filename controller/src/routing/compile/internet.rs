//! The internet edge of a switch: the way out of its subnets (public IPs,
//! NAT gateways, relays to the switch that translates), its uplink's ARP
//! answers, and what comes in from the internet or from other switches.

use super::builder::{Builder, Host, MAX_RELAY_VID, exact, host_prefix, ipv4, net_prefix, state};
use super::*;

/// The way out of subnet `s` to the internet: its host's public IP, its NAT
/// gateway, or net-unreachable.
pub(super) fn internet_egress(b: &mut Builder<'_>, s: usize) {
    let Some((network, subnet)) = b.indexes.subnet_at(s) else {
        return;
    };
    let (network, subnet) = (network.to_string(), subnet.to_string());
    let Some(net_index) = b.indexes.network(&network) else {
        return;
    };
    let zone = nat_zone(net_index);
    let ctx = exact(metadata(KIND_INET, s));
    let gateway = b.topology.subnet(&network, &subnet).and_then(|x| x.gateway);
    let check = Action::CheckMtu {
        mtu: UPLINK_MTU,
        icmp_src: gateway,
    };
    let hosts: Vec<Host<'_>> = b
        .hosts()
        .filter(|h| h.iface.network == network && h.iface.subnet == subnet && b.is_local(h))
        .collect();
    for h in &hosts {
        if b.topology
            .internet
            .public_ip_of(h.host, &h.iface.name)
            .is_none()
        {
            continue;
        }
        let way = way_out(b, &network, &subnet, Some(h), zone);
        b.flow(
            NEIGHBOR,
            20,
            ipv4(Match {
                metadata: ctx,
                ip_src: host_prefix(h.address),
                ..Match::default()
            }),
            std::iter::once(check).chain(way).collect(),
            COOKIE_EGRESS,
        );
    }
    if b.topology
        .internet
        .nat_gateway_of(&network, &subnet)
        .is_some()
    {
        let way = way_out(b, &network, &subnet, None, zone);
        b.flow(
            NEIGHBOR,
            10,
            ipv4(Match {
                metadata: ctx,
                ..Match::default()
            }),
            std::iter::once(check).chain(way).collect(),
            COOKIE_EGRESS,
        );
    }
    super::balance::egress_flows(b, &network, &subnet, ctx, zone);
    if let Some(gateway) = gateway {
        b.flow(
            NEIGHBOR,
            1,
            Match {
                metadata: ctx,
                ..Match::default()
            },
            vec![Action::IcmpUnreachable {
                code: unreachable::NET,
                icmp_src: gateway,
            }],
            COOKIE_REFUSED,
        );
    }
    // After translation: to the internet's router, unless it failed.
    b.flow(
        NAT_OUT,
        100,
        Match {
            metadata: ctx,
            ct_state: state(INV),
            ..Match::default()
        },
        Vec::new(),
        COOKIE_REFUSED,
    );
    let out_to = |last: Action| {
        vec![
            Action::SetField(SetField::EthSrc(
                b.indexes.edge_mac(&b.switch.name, &network),
            )),
            Action::SetField(SetField::EthDst(internet_router_mac(&b.indexes.lab))),
            Action::PopVlan,
            last,
        ]
    };
    let (via_in_port, via_uplink) = (out_to(Action::InPort), out_to(Action::Output(UPLINK_PORT)));
    b.flow(
        NAT_OUT,
        20,
        Match {
            metadata: ctx,
            in_port: Some(UPLINK_PORT),
            ..Match::default()
        },
        via_in_port,
        COOKIE_EGRESS,
    );
    b.flow(
        NAT_OUT,
        10,
        Match {
            metadata: ctx,
            ..Match::default()
        },
        via_uplink,
        COOKIE_EGRESS,
    );
}

/// How a packet from subnet `subnet` of `network` (from host `h`, if known)
/// leaves for the internet once its size is checked: from the host's public
/// IP, else through the subnet's NAT gateway (here, or relayed over the edge
/// to the gateway's switch); none (empty) if it has neither.
fn way_out(
    b: &Builder<'_>,
    network: &str,
    subnet: &str,
    h: Option<&Host<'_>>,
    zone: u16,
) -> Vec<Action> {
    let public = h.and_then(|h| b.topology.internet.public_ip_of(h.host, &h.iface.name));
    if let Some(public) = public {
        return vec![Action::Ct {
            zone,
            commit: true,
            table: NAT_OUT,
            nat: Some(Nat::Src {
                addr: public.address,
                ports: None,
            }),
        }];
    }
    let Some(gw) = b.topology.internet.nat_gateway_of(network, subnet) else {
        return Vec::new();
    };
    if gw.switch == b.switch.name {
        vec![Action::Ct {
            zone,
            commit: true,
            table: NAT_OUT,
            nat: Some(Nat::Src {
                addr: gw.address,
                ports: Some(gw.ports),
            }),
        }]
    } else {
        // Relayed over the edge to the switch that translates for it.
        vec![
            Action::SetField(SetField::EthSrc(
                b.indexes.edge_mac(&b.switch.name, network),
            )),
            Action::SetField(SetField::EthDst(b.indexes.edge_mac(&gw.switch, network))),
            Action::PopVlan,
            Action::Output(UPLINK_PORT),
        ]
    }
}

/// The uplink: ARP for the public addresses this switch owns, arrivals from
/// the internet's router and relays from other switches, per network.
pub(super) fn edge(
    b: &mut Builder<'_>,
    neighbor_networks: &mut BTreeSet<String>,
    inet_subnets: &mut BTreeSet<usize>,
) {
    let topology = b.topology;
    let me = b.switch.name.clone();
    let networks: Vec<String> = topology
        .networks
        .iter()
        .filter(|n| b.on_edge(&me, &n.name))
        .map(|n| n.name.clone())
        .collect();
    let from_uplink = Match {
        in_port: Some(UPLINK_PORT),
        ..Match::default()
    };
    b.flow(
        CLASSIFY,
        100,
        from_uplink.clone(),
        Vec::new(),
        COOKIE_REFUSED,
    );
    for network in networks {
        let Some(net_index) = b.indexes.network(&network) else {
            continue;
        };
        let zone = nat_zone(net_index);
        let mine = b.indexes.edge_mac(&me, &network);
        let public_hosts: Vec<(Host<'_>, Ipv4Addr)> = b
            .hosts()
            .filter(|h| h.iface.network == network && b.is_local(h))
            .filter_map(|h| {
                let ip = topology.internet.public_ip_of(h.host, &h.iface.name)?;
                Some((h, ip.address))
            })
            .collect();
        let nat_gateways: Vec<_> = topology
            .internet
            .nat_gateways
            .iter()
            .filter(|g| g.network == network && g.switch == me)
            .collect();
        let owned = public_hosts
            .iter()
            .map(|(_, p)| *p)
            .chain(nat_gateways.iter().map(|g| g.address))
            .chain(super::balance::public_frontends(b, &network));
        for address in owned {
            b.flow(
                CLASSIFY,
                200,
                Match {
                    eth_type: Some(ETH_ARP),
                    ip_proto: Some(ARP_REQUEST),
                    ip_dst: host_prefix(address),
                    ..from_uplink.clone()
                },
                vec![Action::ArpReply(mine), Action::InPort],
                COOKIE_EDGE,
            );
        }
        let arrive = |kind| {
            vec![
                Action::WriteMetadata(metadata(kind, net_index)),
                Action::GotoTable(OUT_CT),
            ]
        };
        let to_me = Match {
            eth_dst: Some(MacMatch::exact(mine)),
            ..from_uplink.clone()
        };
        b.flow(
            CLASSIFY,
            150,
            Match {
                eth_src: Some(MacMatch::exact(internet_router_mac(&b.indexes.lab))),
                ..to_me.clone()
            },
            arrive(KIND_EDGE),
            COOKIE_EDGE,
        );
        let peers: Vec<String> = topology
            .switches
            .iter()
            .filter(|s| s.name != me && b.on_edge(&s.name, &network))
            .map(|s| s.name.clone())
            .collect();
        for peer in &peers {
            b.flow(
                CLASSIFY,
                150,
                Match {
                    eth_src: Some(MacMatch::exact(b.indexes.edge_mac(peer, &network))),
                    ..to_me.clone()
                },
                arrive(KIND_TRANSIT),
                COOKIE_EDGE,
            );
        }
        // Relayed by another switch for one of this switch's hosts, named
        // by the tag it carries.
        let relayed: Vec<Host<'_>> = b
            .hosts()
            .filter(|h| h.iface.network == network && b.is_local(h))
            .filter(|h| h.relay_vid <= MAX_RELAY_VID)
            .collect();
        // Only from the other switches' edge addresses: a tagged frame from
        // anyone else on the edge is no relay.
        for h in &relayed {
            let Some(here) = b.deliver_here(h, b.gateway_of(h.iface)) else {
                continue;
            };
            let actions: Vec<Action> = std::iter::once(Action::PopVlan).chain(here).collect();
            for peer in &peers {
                b.flow(
                    CLASSIFY,
                    160,
                    Match {
                        eth_src: Some(MacMatch::exact(b.indexes.edge_mac(peer, &network))),
                        vlan: Some(VlanMatch::Vid(h.relay_vid)),
                        ..to_me.clone()
                    },
                    actions.clone(),
                    COOKIE_DELIVER,
                );
            }
        }
        // From the internet: DNAT to a public IP's host, un-NAT of a NAT
        // gateway's connections; conntrack decides in EDGE_CT.
        let edge_ctx = exact(metadata(KIND_EDGE, net_index));
        for (h, public) in &public_hosts {
            b.flow(
                ROUTE,
                200,
                ipv4(Match {
                    metadata: edge_ctx,
                    ip_dst: host_prefix(*public),
                    ..Match::default()
                }),
                vec![Action::Ct {
                    zone,
                    commit: true,
                    table: EDGE_CT,
                    nat: Some(Nat::Dst {
                        addr: h.address,
                        port: None,
                    }),
                }],
                COOKIE_EDGE,
            );
            let key = ipv4(Match {
                metadata: edge_ctx,
                ip_dst: host_prefix(h.address),
                ct_state: state(0),
                ..Match::default()
            });
            b.deliver_flows(EDGE_CT, 200, &key, h, None, &[]);
        }
        super::balance::edge_flows(b, &network, zone, edge_ctx);
        let mut served: FxHashSet<(String, String)> = FxHashSet::default();
        for gw in &nat_gateways {
            b.flow(
                ROUTE,
                200,
                ipv4(Match {
                    metadata: edge_ctx,
                    ip_dst: host_prefix(gw.address),
                    ..Match::default()
                }),
                vec![Action::Ct {
                    zone,
                    commit: false,
                    table: EDGE_CT,
                    nat: Some(Nat::Existing),
                }],
                COOKIE_EDGE,
            );
            for s in &gw.subnets {
                served.insert((s.network.clone(), s.subnet.clone()));
                if let Some(index) = b.indexes.subnet(&s.network, &s.subnet) {
                    inet_subnets.insert(index);
                }
            }
        }
        let answered: Vec<Host<'_>> = b
            .hosts()
            .filter(|h| served.contains(&(h.iface.network.clone(), h.iface.subnet.clone())))
            .collect();
        for h in &answered {
            for bits in [EST, REL] {
                let key = ipv4(Match {
                    metadata: edge_ctx,
                    ip_dst: host_prefix(h.address),
                    ct_state: state(bits),
                    ..Match::default()
                });
                b.deliver_flows(EDGE_CT, 100, &key, h, None, &[]);
            }
        }
        b.flow(
            EDGE_CT,
            300,
            Match {
                metadata: edge_ctx,
                ct_state: state(INV),
                ..Match::default()
            },
            Vec::new(),
            COOKIE_REFUSED,
        );
        for table in [ROUTE, EDGE_CT] {
            b.flow(
                table,
                1,
                Match {
                    metadata: edge_ctx,
                    ..Match::default()
                },
                Vec::new(),
                COOKIE_REFUSED,
            );
        }
        // Relayed by another switch: replies for this switch's hosts, and
        // traffic for the NAT gateways this switch translates for.
        let transit = exact(metadata(KIND_TRANSIT, net_index));
        let neigh = metadata(KIND_NEIGH, net_index);
        let here: Vec<Ipv4Addr> = b
            .hosts()
            .filter(|h| h.iface.network == network && b.is_local(h))
            .map(|h| h.address)
            .collect();
        if !here.is_empty() {
            neighbor_networks.insert(network.clone());
        }
        for address in here {
            b.flow(
                ROUTE,
                200,
                ipv4(Match {
                    metadata: transit,
                    ip_dst: host_prefix(address),
                    ..Match::default()
                }),
                vec![Action::WriteMetadata(neigh), Action::GotoTable(NEIGHBOR)],
                COOKIE_EDGE,
            );
        }
        for gw in &nat_gateways {
            for s in &gw.subnets {
                let (Some(index), Some(subnet)) = (
                    b.indexes.subnet(&s.network, &s.subnet),
                    topology.subnet(&s.network, &s.subnet),
                ) else {
                    continue;
                };
                let ipnet::IpNet::V4(cidr) = subnet.cidr else {
                    continue;
                };
                b.flow(
                    ROUTE,
                    100,
                    ipv4(Match {
                        metadata: transit,
                        ip_src: net_prefix(cidr),
                        ..Match::default()
                    }),
                    vec![
                        Action::WriteMetadata(metadata(KIND_INET, index)),
                        Action::GotoTable(NEIGHBOR),
                    ],
                    COOKIE_EDGE,
                );
            }
        }
        b.flow(
            ROUTE,
            1,
            Match {
                metadata: transit,
                ..Match::default()
            },
            Vec::new(),
            COOKIE_REFUSED,
        );
    }
}
