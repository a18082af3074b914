//! Public load balancers at their home switch (the switch of their first
//! pool member, which holds them all): the uplink answers ARP for each
//! public frontend; a connection from the internet to a rule's frontend
//! address, protocol and port is DNATed through conntrack to the backend
//! the rule's load-balancing group picks (`ct(commit,nat(lb=G))`), an
//! inbound NAT rule's to its one target; a backend's packets back to the
//! internet are translated through the tracked connection (so they leave
//! from the frontend), and nothing untranslated from a backend leaves.

use super::builder::{Builder, Host, host_prefix, ipv4, net_prefix, state};
use super::*;
use crate::topology::load_balancer::{
    Algorithm as TopologyAlgorithm, FrontendKind, LoadBalancer, NoHealthyBackends as NoHealthy,
    TransportProtocol,
};
use crate::topology::load_balancer::{PROBE_SOURCE, ProbeProtocol};
use sdn_lb::{Algorithm, NoHealthyBackends, ProbeConfig};
use sdn_vswitch::pipeline::balance::{GroupBackend, GroupSpec};
use sdn_vswitch::probe::{PROBE_PORT, ProbeKind, ProbeSpec};
use sdn_vswitch::wire::EthernetAddress;

const TCP: u8 = 6;
const UDP: u8 = 17;

/// The switch that balances for `lb`: the one its first pool member is on.
pub(crate) fn home_switch<'t>(topology: &'t Topology, lb: &LoadBalancer) -> Option<&'t str> {
    let member = lb.backend_pools.iter().flat_map(|p| &p.members).next()?;
    topology
        .switch_of(&member.interface.host, &member.interface.interface)
        .map(|(s, _)| s.name.as_str())
}

/// The load-balancing group number of rule `rule` of load balancer `lb`
/// (both indexes in the file's order): from 1, counted over the lab.
pub(crate) fn group_of(topology: &Topology, lb: usize, rule: usize) -> u32 {
    let before: usize = topology.load_balancers[..lb]
        .iter()
        .map(|l| l.rules.len())
        .sum();
    (before + rule + 1) as u32
}

fn protocol_number(p: TransportProtocol) -> u8 {
    match p {
        TransportProtocol::Tcp => TCP,
        TransportProtocol::Udp => UDP,
    }
}

fn algorithm(a: TopologyAlgorithm) -> Algorithm {
    match a {
        TopologyAlgorithm::RoundRobin => Algorithm::RoundRobin,
        TopologyAlgorithm::WeightedRoundRobin => Algorithm::WeightedRoundRobin,
        TopologyAlgorithm::LeastConnections => Algorithm::LeastConnections,
        TopologyAlgorithm::SourceIpHash => Algorithm::SourceIpHash,
        TopologyAlgorithm::SourceIpProtocol => Algorithm::SourceIpProtocol,
        TopologyAlgorithm::FiveTupleHash => Algorithm::FiveTupleHash,
    }
}

/// The public load balancers of `network` that this switch balances for,
/// with their index in the file.
fn balanced_here<'t>(b: &Builder<'t>, network: &str) -> Vec<(usize, &'t LoadBalancer)> {
    let topology: &'t Topology = b.topology;
    topology
        .load_balancers
        .iter()
        .enumerate()
        .filter(|(_, lb)| lb.network == network)
        .filter(|(_, lb)| home_switch(topology, lb) == Some(b.switch.name.as_str()))
        .filter(|(_, lb)| lb.frontends.iter().any(|f| f.kind == FrontendKind::Public))
        .collect()
}

/// The public frontend addresses this switch answers ARP for on its uplink.
pub(super) fn public_frontends(b: &Builder<'_>, network: &str) -> Vec<Ipv4Addr> {
    balanced_here(b, network)
        .iter()
        .flat_map(|(_, lb)| &lb.frontends)
        .filter(|f| f.kind == FrontendKind::Public)
        .map(|f| f.address)
        .collect()
}

/// The host interface at `address` in `network`.
fn host_at<'t>(b: &Builder<'t>, network: &str, address: Ipv4Addr) -> Option<Host<'t>> {
    b.hosts()
        .find(|h| h.iface.network == network && h.address == address)
}

/// A frontend address, protocol and port, and how its connections are
/// translated.
#[derive(Debug, Clone, Copy)]
pub(super) struct Listener {
    pub(super) address: Ipv4Addr,
    pub(super) protocol: u8,
    pub(super) port: u16,
    pub(super) nat: Nat,
}

/// The listeners of load balancer `lb` (index `index` in the file) on its
/// frontends of the kinds `kinds` takes: each rule balanced by its group,
/// each inbound NAT rule to its one target.
pub(super) fn listeners(
    topology: &Topology,
    index: usize,
    lb: &LoadBalancer,
    kinds: fn(&FrontendKind) -> bool,
) -> Vec<Listener> {
    let wanted = |frontend: &str| lb.frontend(frontend).filter(|f| kinds(&f.kind));
    let rules = lb.rules.iter().enumerate().filter_map(|(r, rule)| {
        let frontend = wanted(&rule.frontend)?;
        Some(Listener {
            address: frontend.address,
            protocol: protocol_number(rule.protocol),
            port: rule.frontend_port,
            nat: Nat::Balance {
                group: group_of(topology, index, r),
            },
        })
    });
    let nat_rules = lb.inbound_nat_rules.iter().filter_map(|n| {
        let frontend = wanted(&n.frontend)?;
        Some(Listener {
            address: frontend.address,
            protocol: protocol_number(n.protocol),
            port: n.frontend_port,
            nat: Nat::Dst {
                addr: n.target_address,
                port: Some(n.backend_port),
            },
        })
    });
    rules.chain(nat_rules).collect()
}

/// Where the members of `lb` answer from for its frontends of the kinds
/// `kinds` takes: (address, protocol, backend port) of each rule's pool
/// members and each inbound NAT rule's target.
pub(super) fn answering_members(
    lb: &LoadBalancer,
    kinds: fn(&FrontendKind) -> bool,
) -> BTreeSet<(Ipv4Addr, u8, u16)> {
    let wanted = |frontend: &str| lb.frontend(frontend).is_some_and(|f| kinds(&f.kind));
    let mut out = BTreeSet::new();
    for rule in lb.rules.iter().filter(|r| wanted(&r.frontend)) {
        let Some(pool) = lb.pool(&rule.pool) else {
            continue;
        };
        for m in &pool.members {
            out.insert((m.address, protocol_number(rule.protocol), rule.backend_port));
        }
    }
    for n in lb.inbound_nat_rules.iter().filter(|n| wanted(&n.frontend)) {
        out.insert((
            n.target_address,
            protocol_number(n.protocol),
            n.backend_port,
        ));
    }
    out
}

fn is_public(kind: &FrontendKind) -> bool {
    kind == &FrontendKind::Public
}

/// From the internet (table `ROUTE`, context `edge_ctx`): balanced and
/// inbound-NAT connections to public frontends, and their delivery to the
/// backends after conntrack (`EDGE_CT`).
pub(super) fn edge_flows(
    b: &mut Builder<'_>,
    network: &str,
    zone: u16,
    edge_ctx: Option<MetadataMatch>,
) {
    let mut backends: BTreeSet<Ipv4Addr> = BTreeSet::new();
    for (index, lb) in balanced_here(b, network) {
        for listener in listeners(b.topology, index, lb, is_public) {
            frontend_flow(b, edge_ctx, zone, listener);
        }
        // ICMP errors about a balanced connection (a router on the way
        // saying the backend's answer is too big, say) reach its backend.
        let frontends: BTreeSet<Ipv4Addr> = lb
            .frontends
            .iter()
            .filter(|f| is_public(&f.kind))
            .map(|f| f.address)
            .collect();
        for address in frontends {
            b.flow(
                ROUTE,
                205,
                ipv4(Match {
                    metadata: edge_ctx,
                    ip_dst: host_prefix(address),
                    ip_proto: Some(ICMP),
                    ..Match::default()
                }),
                vec![Action::Ct {
                    zone,
                    commit: false,
                    table: EDGE_CT,
                    nat: Some(Nat::Existing),
                }],
                COOKIE_BALANCE,
            );
        }
        backends.extend(answering_members(lb, is_public).iter().map(|m| m.0));
    }
    for address in backends {
        let Some(h) = host_at(b, network, address) else {
            continue;
        };
        let key = ipv4(Match {
            metadata: edge_ctx,
            ip_dst: host_prefix(address),
            ct_state: state(0),
            ..Match::default()
        });
        b.deliver_flows(EDGE_CT, 250, &key, &h, None, &[]);
    }
}

/// From the internet to a frontend's address, protocol and port: through
/// conntrack with its translation, then on to delivery.
fn frontend_flow(b: &mut Builder<'_>, edge_ctx: Option<MetadataMatch>, zone: u16, l: Listener) {
    b.flow(
        ROUTE,
        210,
        ipv4(Match {
            metadata: edge_ctx,
            ip_dst: host_prefix(l.address),
            ip_proto: Some(l.protocol),
            tp_dst: Some(l.port),
            ..Match::default()
        }),
        vec![Action::Ct {
            zone,
            commit: true,
            table: EDGE_CT,
            nat: Some(l.nat),
        }],
        COOKIE_BALANCE,
    );
}

/// On the way to the internet from subnet context `ctx` (table `NEIGHBOR`):
/// a backend's packets from a rule's backend port go through its tracked
/// connection, which translates them to the frontend; in `NAT_OUT` what is
/// still from a backend's private address (no connection) is dropped.
pub(super) fn egress_flows(
    b: &mut Builder<'_>,
    network: &str,
    subnet: &str,
    ctx: Option<MetadataMatch>,
    zone: u16,
) {
    let sources: BTreeSet<(Ipv4Addr, u8, u16)> = balanced_here(b, network)
        .into_iter()
        .flat_map(|(_, lb)| answering_members(lb, is_public))
        .collect();
    let in_subnet = |address: Ipv4Addr| {
        b.topology
            .subnet(network, subnet)
            .is_some_and(|s| s.cidr.contains(&IpAddr::V4(address)))
    };
    let sources: Vec<_> = sources
        .into_iter()
        .filter(|(a, _, _)| in_subnet(*a))
        .collect();
    let mut addresses: BTreeSet<Ipv4Addr> = BTreeSet::new();
    for (address, proto, port) in sources {
        b.flow(
            NEIGHBOR,
            15,
            ipv4(Match {
                metadata: ctx,
                ip_src: host_prefix(address),
                ip_proto: Some(proto),
                tp_src: Some(port),
                ..Match::default()
            }),
            vec![
                Action::CheckMtu {
                    mtu: UPLINK_MTU,
                    icmp_src: None,
                },
                Action::Ct {
                    zone,
                    commit: false,
                    table: NAT_OUT,
                    nat: Some(Nat::Existing),
                },
            ],
            COOKIE_BALANCE,
        );
        addresses.insert(address);
    }
    for address in addresses {
        b.flow(
            NAT_OUT,
            90,
            ipv4(Match {
                metadata: ctx,
                ip_src: host_prefix(address),
                ..Match::default()
            }),
            Vec::new(),
            COOKIE_REFUSED,
        );
    }
}

/// The probe number of probe `probe` of load balancer `lb` (indexes in the
/// file's order): from 1, counted over the lab.
pub(crate) fn probe_number(topology: &Topology, lb: usize, probe: usize) -> u32 {
    let before: usize = topology.load_balancers[..lb]
        .iter()
        .map(|l| l.probes.len())
        .sum();
    (before + probe + 1) as u32
}

/// A load-balancing group and the probe whose results decide its members'
/// health (`None`: every member counts as up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbedGroup {
    /// The group, every member healthy.
    pub spec: GroupSpec,
    /// The probe of the rule.
    pub probe: Option<u32>,
}

/// The load-balancing groups switch `name` holds: one per rule of each
/// load balancer it balances for, every member healthy (the probes'
/// results change that) and draining if `sdn apply` removed it.
pub fn groups(topology: &Topology, name: &str) -> Vec<ProbedGroup> {
    let mut out = Vec::new();
    for (index, lb) in topology.load_balancers.iter().enumerate() {
        if home_switch(topology, lb) != Some(name) {
            continue;
        }
        for (r, rule) in lb.rules.iter().enumerate() {
            let Some(pool) = lb.pool(&rule.pool) else {
                continue;
            };
            let probe = rule.probe.as_ref().and_then(|p| {
                let at = lb.probes.iter().position(|x| &x.name == p)?;
                Some(probe_number(topology, index, at))
            });
            let spec = GroupSpec {
                group: group_of(topology, index, r),
                version: 0,
                algorithm: algorithm(rule.algorithm),
                no_healthy: match rule.no_healthy_backends {
                    NoHealthy::Refuse => NoHealthyBackends::Refuse,
                    NoHealthy::AllProbedUp => NoHealthyBackends::AllProbedUp,
                },
                backends: pool
                    .members
                    .iter()
                    .map(|m| GroupBackend {
                        // The address names a member stably across edits.
                        id: u32::from(m.address),
                        addr: m.address,
                        port: Some(rule.backend_port),
                        weight: m.weight,
                        healthy: true,
                        draining: m.draining,
                    })
                    .collect(),
                idle_timeout: Some(rule.idle_timeout),
            };
            out.push(ProbedGroup { spec, probe });
        }
    }
    out
}

/// The probes switch `name` runs: each probe of a load balancer it balances
/// for that a rule uses, over the members of those rules' pools.
pub fn probes(topology: &Topology, name: &str, router_mac: EthernetAddress) -> Vec<ProbeSpec> {
    let mut out = Vec::new();
    for (index, lb) in topology.load_balancers.iter().enumerate() {
        if home_switch(topology, lb) != Some(name) {
            continue;
        }
        for (p, probe) in lb.probes.iter().enumerate() {
            let mut targets: Vec<(u32, Ipv4Addr)> = lb
                .rules
                .iter()
                .filter(|r| r.probe.as_deref() == Some(probe.name.as_str()))
                .filter_map(|r| lb.pool(&r.pool))
                .flat_map(|pool| {
                    pool.members
                        .iter()
                        .map(|m| (u32::from(m.address), m.address))
                })
                .collect();
            targets.sort_unstable();
            targets.dedup();
            if targets.is_empty() {
                continue;
            }
            out.push(ProbeSpec {
                probe: probe_number(topology, index, p),
                kind: match &probe.protocol {
                    ProbeProtocol::Tcp => ProbeKind::Tcp,
                    ProbeProtocol::Http { path } => ProbeKind::Http(path.clone()),
                },
                port: probe.port,
                config: ProbeConfig {
                    interval: probe.interval,
                    timeout: probe.timeout,
                    healthy_threshold: probe.healthy_threshold,
                    unhealthy_threshold: probe.unhealthy_threshold,
                },
                router_mac,
                targets,
            });
        }
    }
    out
}

/// Probe segments enter on the probe pseudo-port and are routed in their
/// target's subnet; the targets' answers to the probe address go back out
/// of that port.
pub(super) fn probe_flows(b: &mut Builder<'_>) {
    let specs = probes(b.topology, &b.switch.name, b.router_mac());
    let mut subnets: BTreeSet<usize> = BTreeSet::new();
    for spec in &specs {
        for &(_, address) in &spec.targets {
            let Some(h) = b.hosts().find(|h| h.address == address) else {
                continue;
            };
            if let Some(s) = b.indexes.subnet(&h.iface.network, &h.iface.subnet) {
                subnets.insert(s);
            }
        }
    }
    for s in subnets {
        let Some((network, subnet)) = b.indexes.subnet_at(s) else {
            continue;
        };
        let Some(ipnet::IpNet::V4(cidr)) = b.topology.subnet(network, subnet).map(|x| x.cidr)
        else {
            continue;
        };
        b.flow(
            CLASSIFY,
            300,
            ipv4(Match {
                in_port: Some(PROBE_PORT),
                ip_dst: net_prefix(cidr),
                ..Match::default()
            }),
            vec![
                Action::WriteMetadata(metadata(KIND_SUBNET, s)),
                Action::GotoTable(ROUTE),
            ],
            COOKIE_BALANCE,
        );
        b.flow(
            ROUTE,
            PRIORITY_PROBE_ANSWER,
            ipv4(Match {
                metadata: Some(MetadataMatch::exact(metadata(KIND_SUBNET, s))),
                ip_dst: host_prefix(PROBE_SOURCE),
                ..Match::default()
            }),
            vec![Action::Output(PROBE_PORT)],
            COOKIE_BALANCE,
        );
    }
}

/// Above every route, below the gateway's own responders.
const PRIORITY_PROBE_ANSWER: u16 = 900;
