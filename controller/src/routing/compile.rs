//! Routes into flows for one switch (see `tables` for the stages). The
//! switch routes what its own hosts send to the gateway, so every packet is
//! routed at the first switch it meets:
//!
//! - `CLASSIFY`: a host port's frames carry their subnet in the metadata;
//!   frames on the uplink are told apart by the edge address they are sent
//!   to (from the internet's router, or relayed by another switch).
//! - `ROUTE`: the gateway answers ARP and ping itself; a frame to the
//!   gateway MAC takes the longest matching route of its subnet (a system
//!   route to the network, a peered network or the internet, or a user
//!   route), its TTL decremented; no route answers net-unreachable. Frames
//!   from the internet to a public IP are DNATed, to a NAT gateway un-NATed.
//! - `EDGE_CT`: what came in from the internet is delivered if conntrack
//!   says it may (anything to a public IP; only replies to a NAT gateway).
//! - `NEIGHBOR`: a routed packet gets its host's MAC (gateway MAC as source)
//!   and VLAN, its size checked against the host's MTU; a host the switch
//!   cannot reach by its own segments is reached over the edge, through its
//!   own switch. Internet-bound packets leave from their host's public IP or
//!   their subnet's NAT gateway (SNAT), or are refused.
//! - `NAT_OUT`: source-NATed packets go out of the uplink to the internet's
//!   router; refused translations are dropped.

use super::addresses::{
    Indexes, KIND_EDGE, KIND_INET, KIND_NEIGH, KIND_SUBNET, KIND_TRANSIT, internet_router_mac,
    metadata, nat_zone,
};
use super::routes::{EffectiveRoute, Hop, subnet_routes};
use crate::segments::Segments;
use crate::tables::{CLASSIFY, EDGE_CT, IN_CT, INGRESS, LEARN, NAT_OUT, NEIGHBOR, OUT_CT, ROUTE};
use crate::topology::{Interface, Switch, Topology, UPLINK_PORT};
use rustc_hash::FxHashSet;
use sdn_vswitch::conntrack::state::{EST, INV, REL, TRK};
use sdn_vswitch::flow::action::{Nat, unreachable};
use sdn_vswitch::flow::{
    Action, CtStateMatch, FlowSpec, IpPrefix, MacMatch, Match, MetadataMatch, PortNo, SetField,
    VlanMatch,
};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

/// Cookie bits of the routing application's entries.
pub const COOKIE_ROUTING: u64 = 0x5d03 << 48;
/// Mask of the kind bits of a routing cookie.
pub const COOKIE_KIND_MASK: u64 = 0xffff_ff00_0000_0000;
/// Classification, responders and defaults.
pub const COOKIE_BASE: u64 = COOKIE_ROUTING | (1 << 40);
/// A route (low 32 bits: its index in `CompiledRouting::routes`).
pub const COOKIE_ROUTE: u64 = COOKIE_ROUTING | (2 << 40);
/// Delivery of a routed packet to its host.
pub const COOKIE_DELIVER: u64 = COOKIE_ROUTING | (3 << 40);
/// The way to the internet (SNAT, relay to a NAT gateway's switch).
pub const COOKIE_EGRESS: u64 = COOKIE_ROUTING | (4 << 40);
/// Arrivals from the internet (DNAT of public IPs, un-NAT).
pub const COOKIE_EDGE: u64 = COOKIE_ROUTING | (5 << 40);
/// Refused: unsolicited inbound, failed translations, unknown edge frames.
pub const COOKIE_REFUSED: u64 = COOKIE_ROUTING | (6 << 40);

const PRIORITY_RESPONDER: u16 = 1000;
const PRIORITY_NO_ROUTE: u16 = 99;
const PRIORITY_NOT_IPV4: u16 = 98;
const PRIORITY_STRAY: u16 = 50;
const ETH_IPV4: u16 = 0x0800;
const ETH_ARP: u16 = 0x0806;
const ICMP: u8 = 1;
const ICMP_ECHO_REQUEST: u16 = 8;
const ARP_REQUEST: u8 = 1;
/// MTU of the links to the internet.
pub const UPLINK_MTU: u16 = 1500;

/// A route a `COOKIE_ROUTE` entry stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRef {
    /// The subnet whose route it is.
    pub network: String,
    /// The subnet.
    pub subnet: String,
    /// The route.
    pub route: EffectiveRoute,
}

/// The routing flows of a switch and the routes their cookies point to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompiledRouting {
    /// The entries.
    pub flows: Vec<FlowSpec>,
    /// Route `i` is what cookie `COOKIE_ROUTE | i` stands for.
    pub routes: Vec<RouteRef>,
}

impl CompiledRouting {
    /// The route a cookie stands for.
    pub fn route_of(&self, cookie: u64) -> Option<&RouteRef> {
        if cookie & COOKIE_KIND_MASK != COOKIE_ROUTE {
            return None;
        }
        self.routes.get((cookie & 0xffff_ffff) as usize)
    }
}

/// A host interface of the lab, with where it lives.
#[derive(Clone, Copy)]
struct Host<'t> {
    host: &'t str,
    iface: &'t Interface,
    address: Ipv4Addr,
    /// Its number among the lab's host interfaces (from 1): the VLAN id a
    /// frame relayed over the edge for it carries there.
    relay_vid: u16,
}

/// Highest VLAN id a relayed frame can carry (802.1Q).
const MAX_RELAY_VID: u16 = 4094;

struct Builder<'t> {
    topology: &'t Topology,
    switch: &'t Switch,
    indexes: Indexes,
    segments: Segments,
    vlan_aware: bool,
    uplink: bool,
    out: CompiledRouting,
}

fn exact(value: u32) -> Option<MetadataMatch> {
    Some(MetadataMatch::exact(value))
}

fn host_prefix(address: Ipv4Addr) -> Option<IpPrefix> {
    Some(IpPrefix::host(IpAddr::V4(address)))
}

fn state(set: u8) -> Option<CtStateMatch> {
    Some(CtStateMatch::new(TRK | set, 0))
}

fn ipv4(matcher: Match) -> Match {
    Match {
        eth_type: Some(ETH_IPV4),
        ..matcher
    }
}

impl<'t> Builder<'t> {
    fn flow(
        &mut self,
        table: u8,
        priority: u16,
        matcher: Match,
        actions: Vec<Action>,
        cookie: u64,
    ) {
        self.out
            .flows
            .push(FlowSpec::new(table, priority, matcher, actions).with_cookie(cookie));
    }

    fn router_mac(&self) -> sdn_vswitch::wire::EthernetAddress {
        self.indexes.router_mac()
    }

    /// Every IPv4 host interface of the lab.
    fn hosts(&self) -> impl Iterator<Item = Host<'t>> + use<'t> {
        let topology: &'t Topology = self.topology;
        topology
            .hosts
            .iter()
            .flat_map(|h| h.interfaces.iter().map(move |iface| (h, iface)))
            .enumerate()
            .filter_map(|(i, (h, iface))| match iface.address {
                IpAddr::V4(address) => Some(Host {
                    host: &h.name,
                    iface,
                    address,
                    relay_vid: u16::try_from(i + 1).unwrap_or(u16::MAX),
                }),
                IpAddr::V6(_) => None,
            })
    }

    /// The switch a host interface is linked to.
    fn switch_of(&self, h: &Host<'_>) -> Option<&'t str> {
        self.topology
            .switch_of(h.host, &h.iface.name)
            .map(|(s, _)| s.name.as_str())
    }

    fn is_local(&self, h: &Host<'_>) -> bool {
        self.switch_of(h) == Some(self.switch.name.as_str())
    }

    /// The gateway of a host's subnet.
    fn gateway_of(&self, iface: &Interface) -> Option<Ipv4Addr> {
        self.topology.subnet(&iface.network, &iface.subnet)?.gateway
    }

    /// Whether `switch` has an uplink that carries `network`.
    fn on_edge(&self, switch: &str, network: &str) -> bool {
        self.topology.internet.gateway_of(network).is_some() && self.topology.has_uplink(switch)
    }

    /// The ways to hand a packet to `h` from this switch: (extra match,
    /// actions). `icmp_src` is where errors about a packet too big come
    /// from (`None`: such packets are dropped).
    fn deliver(&self, h: &Host<'_>, icmp_src: Option<Ipv4Addr>) -> Vec<(Match, Vec<Action>)> {
        let mtu = u16::try_from(h.iface.mtu).unwrap_or(u16::MAX);
        if let Some(actions) = self.deliver_here(h, icmp_src) {
            return vec![(Match::default(), actions)];
        }
        let network = &h.iface.network;
        if let Some(home) = self.switch_of(h)
            && h.relay_vid <= MAX_RELAY_VID
            && self.on_edge(&self.switch.name, network)
            && self.on_edge(home, network)
        {
            let relay = |last: Action| {
                vec![
                    Action::CheckMtu {
                        mtu: mtu.min(UPLINK_MTU),
                        icmp_src,
                    },
                    Action::SetField(SetField::EthSrc(
                        self.indexes.edge_mac(&self.switch.name, network),
                    )),
                    Action::SetField(SetField::EthDst(self.indexes.edge_mac(home, network))),
                    // The host it is for, as a tag the other switch reads.
                    Action::SetField(SetField::VlanVid(h.relay_vid)),
                    last,
                ]
            };
            let from_uplink = Match {
                in_port: Some(UPLINK_PORT),
                ..Match::default()
            };
            return vec![
                (from_uplink, relay(Action::InPort)),
                (Match::default(), relay(Action::Output(UPLINK_PORT))),
            ];
        }
        let refuse = match (icmp_src, self.gateway_of(h.iface)) {
            (Some(_), Some(gateway)) => vec![Action::IcmpUnreachable {
                code: unreachable::HOST,
                icmp_src: gateway,
            }],
            _ => Vec::new(),
        };
        vec![(Match::default(), refuse)]
    }

    /// The actions that hand a packet to `h` through this switch's own
    /// segments (its MAC as destination, the gateway MAC as source, its VLAN
    /// on a VLAN-aware switch), if they reach it.
    fn deliver_here(&self, h: &Host<'_>, icmp_src: Option<Ipv4Addr>) -> Option<Vec<Action>> {
        let vlan = self
            .segments
            .reach(&self.switch.name, (h.host, &h.iface.name))?;
        let mtu = u16::try_from(h.iface.mtu).unwrap_or(u16::MAX);
        let mut actions = vec![
            Action::CheckMtu { mtu, icmp_src },
            Action::SetField(SetField::EthSrc(self.router_mac())),
            Action::SetField(SetField::EthDst(h.iface.mac)),
        ];
        if let (true, Some(vid)) = (self.vlan_aware, vlan) {
            actions.push(Action::SetField(SetField::VlanVid(vid)));
        }
        actions.push(Action::GotoTable(IN_CT));
        Some(actions)
    }

    /// Entries in `table` matching `key` (plus each way's own match) that
    /// deliver to `h`.
    fn deliver_flows(
        &mut self,
        table: u8,
        priority: u16,
        key: &Match,
        h: &Host<'_>,
        icmp_src: Option<Ipv4Addr>,
        prefix: &[Action],
    ) {
        for (extra, actions) in self.deliver(h, icmp_src) {
            let matcher = Match {
                in_port: extra.in_port.or(key.in_port),
                ..key.clone()
            };
            let bump = u16::from(extra.in_port.is_some());
            let all = prefix.iter().copied().chain(actions).collect();
            self.flow(table, priority + bump, matcher, all, COOKIE_DELIVER);
        }
    }
}

/// The routing flows of switch `name` (none for a switch the topology does
/// not know).
pub fn compile(topology: &Topology, name: &str) -> CompiledRouting {
    let Some(switch) = topology.switch(name) else {
        return CompiledRouting::default();
    };
    let mut b = Builder {
        topology,
        switch,
        indexes: Indexes::of(topology),
        segments: Segments::of(topology),
        vlan_aware: topology.vlan_aware(switch),
        uplink: topology.has_uplink(name),
        out: CompiledRouting::default(),
    };
    // Routed frames crossing to other switches keep the gateway MAC as
    // their source: it is never learned.
    let router = b.router_mac();
    b.flow(
        LEARN,
        150,
        Match {
            eth_src: Some(MacMatch::exact(router)),
            ..Match::default()
        },
        vec![Action::GotoTable(OUT_CT)],
        COOKIE_BASE,
    );
    b.flow(
        ROUTE,
        PRIORITY_STRAY,
        Match {
            eth_dst: Some(MacMatch::exact(router)),
            ..Match::default()
        },
        Vec::new(),
        COOKIE_REFUSED,
    );
    let mut neighbor_networks: BTreeSet<String> = BTreeSet::new();
    let mut inet_subnets: BTreeSet<usize> = BTreeSet::new();
    let local: Vec<(PortNo, Host<'_>)> = switch
        .ports
        .iter()
        .filter_map(|p| {
            let (host, iface) = topology.host_on(name, &p.name)?;
            let h = b
                .hosts()
                .find(|h| h.host == host.name && h.iface.name == iface.name)?;
            Some((p.number, h))
        })
        .collect();
    let mut contexts: BTreeSet<usize> = BTreeSet::new();
    for (port, h) in &local {
        let Some(s) = b.indexes.subnet(&h.iface.network, &h.iface.subnet) else {
            continue;
        };
        if b.gateway_of(h.iface).is_none() {
            continue;
        }
        b.flow(
            CLASSIFY,
            100,
            Match {
                in_port: Some(*port),
                ..Match::default()
            },
            vec![
                Action::WriteMetadata(metadata(KIND_SUBNET, s)),
                Action::GotoTable(INGRESS),
            ],
            COOKIE_BASE,
        );
        contexts.insert(s);
    }
    for &s in &contexts {
        source_subnet(&mut b, s, &mut neighbor_networks, &mut inet_subnets);
    }
    if b.uplink {
        edge(&mut b, &mut neighbor_networks, &mut inet_subnets);
    }
    for network in &neighbor_networks {
        neighbors(&mut b, network);
    }
    for &s in &inet_subnets {
        internet_egress(&mut b, s);
    }
    b.out
}

/// The responders and routes of subnet `s`, whose hosts this switch holds.
fn source_subnet(
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
    let back = |b: &Builder<'_>, first: Action| {
        let mut actions = vec![first];
        if b.vlan_aware {
            actions.push(Action::PopVlan);
        }
        actions.push(Action::InPort);
        actions
    };
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
        back(b, Action::ArpReply(router)),
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
            back(b, Action::IcmpEchoReply),
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
            ip_dst: Some(IpPrefix {
                addr: IpAddr::V4(route.prefix.network()),
                len: route.prefix.prefix_len(),
            }),
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
            // Dropped; a VPN gateway has no tunnel to send to yet.
            Hop::None | Hop::VpnGateway(_) => Vec::new(),
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
fn neighbors(b: &mut Builder<'_>, network: &str) {
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
                ip_dst: Some(IpPrefix {
                    addr: IpAddr::V4(cidr.network()),
                    len: cidr.prefix_len(),
                }),
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

/// The way out of subnet `s` to the internet: its host's public IP, its NAT
/// gateway, or net-unreachable.
fn internet_egress(b: &mut Builder<'_>, s: usize) {
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
        let Some(public) = b.topology.internet.public_ip_of(h.host, &h.iface.name) else {
            continue;
        };
        b.flow(
            NEIGHBOR,
            20,
            ipv4(Match {
                metadata: ctx,
                ip_src: host_prefix(h.address),
                ..Match::default()
            }),
            vec![
                check,
                Action::Ct {
                    zone,
                    commit: true,
                    table: NAT_OUT,
                    nat: Some(Nat::Src {
                        addr: public.address,
                        ports: None,
                    }),
                },
            ],
            COOKIE_EGRESS,
        );
    }
    if let Some(gw) = b.topology.internet.nat_gateway_of(&network, &subnet) {
        let actions = if gw.switch == b.switch.name {
            vec![
                check,
                Action::Ct {
                    zone,
                    commit: true,
                    table: NAT_OUT,
                    nat: Some(Nat::Src {
                        addr: gw.address,
                        ports: Some(gw.ports),
                    }),
                },
            ]
        } else {
            // Relayed over the edge to the switch that translates for it.
            vec![
                check,
                Action::SetField(SetField::EthSrc(
                    b.indexes.edge_mac(&b.switch.name, &network),
                )),
                Action::SetField(SetField::EthDst(b.indexes.edge_mac(&gw.switch, &network))),
                Action::PopVlan,
                Action::Output(UPLINK_PORT),
            ]
        };
        b.flow(
            NEIGHBOR,
            10,
            ipv4(Match {
                metadata: ctx,
                ..Match::default()
            }),
            actions,
            COOKIE_EGRESS,
        );
    }
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

/// The uplink: ARP for the public addresses this switch owns, arrivals from
/// the internet's router and relays from other switches, per network.
fn edge(
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
            .chain(nat_gateways.iter().map(|g| g.address));
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
        for h in &relayed {
            let Some(here) = b.deliver_here(h, b.gateway_of(h.iface)) else {
                continue;
            };
            let actions = std::iter::once(Action::PopVlan).chain(here).collect();
            b.flow(
                CLASSIFY,
                160,
                Match {
                    vlan: Some(VlanMatch::Vid(h.relay_vid)),
                    ..to_me.clone()
                },
                actions,
                COOKIE_DELIVER,
            );
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
                        ip_src: Some(IpPrefix {
                            addr: IpAddr::V4(cidr.network()),
                            len: cidr.prefix_len(),
                        }),
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
