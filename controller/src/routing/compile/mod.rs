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
//!
//! A VPN gateway's switch sends the routes to it into its ESP port and
//! routes what the port opens (`vpn`).

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
/// Load balancing: connections to frontends, backends' way back.
pub const COOKIE_BALANCE: u64 = COOKIE_ROUTING | (7 << 40);

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
    /// The load-balancing groups the flows' `nat(lb=G)` name.
    pub groups: Vec<balance::ProbedGroup>,
    /// The health probes the switch runs for them.
    pub probes: Vec<sdn_vswitch::probe::ProbeSpec>,
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

pub mod balance;
mod builder;
mod internal_lb;
mod internet;
mod subnet;
pub mod vpn;

use builder::{Builder, Host};
use internet::{edge, internet_egress};
use subnet::{neighbors, source_subnet};

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
    internal_lb::internal_flows(&mut b, &contexts, &mut neighbor_networks);
    vpn::tunnel_ingress(&mut b, &mut neighbor_networks);
    for network in &neighbor_networks {
        neighbors(&mut b, network);
    }
    for &s in &inet_subnets {
        internet_egress(&mut b, s);
    }
    balance::probe_flows(&mut b);
    b.out.groups = balance::groups(topology, name);
    b.out.probes = balance::probes(topology, name, b.router_mac());
    b.out
}
