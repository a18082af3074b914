//! Rules into flows, in the security stages of the pipeline (`tables`):
//!
//! - `OUT_CT`: IPv4 from a filtered port, from the interface's own address
//!   (any address if it forwards), goes through conntrack in the port's zone;
//!   any other IPv4 and IPv6 from it is dropped; everything else (ARP) goes
//!   on to routing.
//! - `OUT_NIC`, `OUT_SUBNET`: outbound rules of the sending interface (its
//!   own layer, then its subnet's). Established and related packets skip to
//!   routing, invalid ones are dropped; a new connection that every layer
//!   allows is committed.
//! - `IN_CT`: IPv4 to a filtered interface's MAC (after routing rewrote it)
//!   goes through conntrack in that port's zone; IPv4 to a group address is
//!   dropped (as in cloud networks, which carry no broadcast or multicast);
//!   the rest goes on to forwarding.
//! - `IN_SUBNET`, `IN_NIC`: inbound rules of the receiving interface (subnet
//!   layer first).
//!
//! Rules never match connection state: only new connections reach them, so
//! an established packet costs two conntrack lookups and a few cached table
//! passes whatever the number of rules.

use super::ranges::port_masks;
use super::rules::{Access, Addresses, Direction, Layer, PortPolicy, Protocol, Rule, RuleRef};
use rustc_hash::FxHashMap;
use sdn_vswitch::conntrack::state::{EST, INV, REL, TRK};
use sdn_vswitch::flow::{Action, CtStateMatch, FlowSpec, IpPrefix, MacMatch, Match, PortNo};
use sdn_vswitch::wire::EthernetAddress;
use std::net::IpAddr;

use crate::tables::{FORWARD, ROUTE};
pub use crate::tables::{
    IN_CT as TABLE_IN_CT, IN_NIC as TABLE_IN_NIC, IN_SUBNET as TABLE_IN_SUBNET,
    OUT_CT as TABLE_OUT_CT, OUT_NIC as TABLE_OUT_NIC, OUT_SUBNET as TABLE_OUT_SUBNET,
};

/// Cookie bits of the firewall's entries.
pub const COOKIE_FIREWALL: u64 = 0x5d02 << 48;
/// Mask of the kind bits of a firewall cookie.
pub const COOKIE_KIND_MASK: u64 = 0xffff_ff00_0000_0000;
/// Conntrack and pass-through entries.
pub const COOKIE_BASE: u64 = COOKIE_FIREWALL | (1 << 40);
/// Entries of a rule (low 32 bits: the rule's index in `Compiled::rules`).
pub const COOKIE_RULE: u64 = COOKIE_FIREWALL | (2 << 40);
/// The default deny of an ACG set (low 32 bits: its index in `rules`).
pub const COOKIE_DEFAULT_DENY: u64 = COOKIE_FIREWALL | (3 << 40);
/// Packets that do not fit their connection's state.
pub const COOKIE_INVALID: u64 = COOKIE_FIREWALL | (4 << 40);
/// IPv6, and IPv4 to group addresses, at filtered interfaces.
pub const COOKIE_NOT_FILTERABLE: u64 = COOKIE_FIREWALL | (5 << 40);
/// IPv4 from a filtered interface with a source address not its own.
pub const COOKIE_SPOOFED: u64 = COOKIE_FIREWALL | (6 << 40);

/// Bytes of a denied packet sent to the controller for the flow log.
pub const LOG_BYTES: u16 = 128;

const PRIORITY_STATE: u16 = 65535;
const PRIORITY_INVALID: u16 = 65534;
const PRIORITY_ACG: u16 = 1000;
const PRIORITY_DEFAULT_DENY: u16 = 2;
const PRIORITY_PASS: u16 = 1;
const PRIORITY_CT: u16 = 100;
const PRIORITY_SPOOFED: u16 = 99;
const PRIORITY_GROUP_DROP: u16 = 90;

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;

/// The flow priority of an NSG rule priority (100..=65500): lower numbers
/// win, and every rule sits between the state entries and the pass entries.
pub fn nsg_flow_priority(priority: u32) -> u16 {
    (65_530 - priority.min(65_500)) as u16
}

/// A filtered interface on a switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedPort {
    /// The switch port its host is linked to (also its conntrack zone).
    pub port: PortNo,
    /// The interface's MAC.
    pub mac: EthernetAddress,
    /// The interface's IPv4 address (tells a zone's outbound connections
    /// from its inbound ones).
    pub address: std::net::Ipv4Addr,
    /// Its rules.
    pub policy: PortPolicy,
    /// It forwards packets of others (`ip_forward`), so it may send from any
    /// address (as a cloud NIC with IP forwarding enabled).
    pub forwards: bool,
}

/// What the firewall of one switch enforces.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SwitchFirewall {
    /// Filtered interfaces of the switch.
    pub ports: Vec<ProtectedPort>,
    /// Send denied packets to the controller for the flow log.
    pub log_denied: bool,
}

/// Flows of a switch's firewall and the rules their cookies point to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Compiled {
    /// The entries.
    pub flows: Vec<FlowSpec>,
    /// Rule `i` is what cookie `COOKIE_RULE | i` (or `COOKIE_DEFAULT_DENY | i`) stands for.
    pub rules: Vec<RuleRef>,
}

impl Compiled {
    /// The index in `rules` of the rule a cookie stands for.
    pub fn rule_index(&self, cookie: u64) -> Option<usize> {
        match cookie & COOKIE_KIND_MASK {
            COOKIE_RULE | COOKIE_DEFAULT_DENY => {
                let index = (cookie & 0xffff_ffff) as usize;
                (index < self.rules.len()).then_some(index)
            }
            _ => None,
        }
    }

    /// The rule a cookie stands for.
    pub fn rule_of(&self, cookie: u64) -> Option<&RuleRef> {
        self.rule_index(cookie).map(|i| &self.rules[i])
    }
}

/// The zone of a filtered port.
pub fn zone_of(port: PortNo) -> u16 {
    port as u16
}

struct Builder {
    compiled: Compiled,
    index: FxHashMap<RuleRef, u32>,
    deny: Vec<Action>,
}

/// One direction's walk through the tables.
struct Stages {
    tables: [u8; 2],
    /// Where established traffic and a fully allowed new connection go next.
    after: u8,
}

fn stages(direction: Direction) -> Stages {
    match direction {
        Direction::Outbound => Stages {
            tables: [TABLE_OUT_NIC, TABLE_OUT_SUBNET],
            after: ROUTE,
        },
        Direction::Inbound => Stages {
            tables: [TABLE_IN_SUBNET, TABLE_IN_NIC],
            after: FORWARD,
        },
    }
}

impl Builder {
    fn cookie(&mut self, kind: u64, origin: &RuleRef) -> u64 {
        let next = self.compiled.rules.len() as u32;
        let index = *self.index.entry(origin.clone()).or_insert_with(|| {
            self.compiled.rules.push(origin.clone());
            next
        });
        kind | u64::from(index)
    }

    fn flow(
        &mut self,
        table: u8,
        priority: u16,
        matcher: Match,
        actions: Vec<Action>,
        cookie: u64,
    ) {
        self.compiled
            .flows
            .push(FlowSpec::new(table, priority, matcher, actions).with_cookie(cookie));
    }

    /// Entries of one layer (or a pass-through) of one port and direction.
    fn layer(
        &mut self,
        table: u8,
        key: &Match,
        layer: Option<&Layer>,
        direction: Direction,
        onward: &[Action],
    ) {
        let pass = |b: &mut Builder| {
            b.flow(
                table,
                PRIORITY_PASS,
                key.clone(),
                onward.to_vec(),
                COOKIE_BASE,
            );
        };
        let Some(layer) = layer else {
            pass(self);
            return;
        };
        let is_acg = matches!(layer, Layer::Acg { .. });
        for rule in layer.rules(direction) {
            let (priority, actions) = match (is_acg, rule.access) {
                (true, _) => (PRIORITY_ACG, onward.to_vec()),
                (false, access) => (
                    nsg_flow_priority(rule.origin.priority),
                    if access == Access::Allow {
                        onward.to_vec()
                    } else {
                        self.deny.clone()
                    },
                ),
            };
            let cookie = self.cookie(COOKIE_RULE, &rule.origin);
            for matcher in rule_matches(key, rule) {
                self.flow(table, priority, matcher, actions.clone(), cookie);
            }
        }
        if let Layer::Acg {
            names,
            outbound_open,
            ..
        } = layer
        {
            if direction == Direction::Outbound && *outbound_open {
                pass(self);
            } else {
                let origin = RuleRef {
                    group: names.join("+"),
                    rule: "default-deny".into(),
                    direction,
                    priority: 0,
                };
                let cookie = self.cookie(COOKIE_DEFAULT_DENY, &origin);
                let deny = self.deny.clone();
                self.flow(table, PRIORITY_DEFAULT_DENY, key.clone(), deny, cookie);
            }
        }
    }
}

/// The matches of `rule` for traffic selected by `key`: one per protocol,
/// source and destination prefix, and port block.
fn rule_matches(key: &Match, rule: &Rule) -> Vec<Match> {
    let protos: Vec<Option<u8>> = match rule.protocol {
        Protocol::Tcp => vec![Some(6)],
        Protocol::Udp => vec![Some(17)],
        Protocol::Icmp => vec![Some(1)],
        // Ports restrict TCP and UDP only: such a rule matches no ESP or AH
        // (files may not write it; the reference evaluator agrees).
        Protocol::Esp | Protocol::Ah if rule.restricts_ports() => Vec::new(),
        Protocol::Esp => vec![Some(50)],
        Protocol::Ah => vec![Some(51)],
        Protocol::Any if rule.restricts_ports() => vec![Some(6), Some(17)],
        Protocol::Any => vec![None],
    };
    let prefixes = |a: &Addresses| -> Vec<Option<IpPrefix>> {
        match a {
            Addresses::Any => vec![None],
            Addresses::Prefixes(nets) => nets
                .iter()
                .map(|n| {
                    Some(IpPrefix {
                        addr: IpAddr::V4(n.network()),
                        len: n.prefix_len(),
                    })
                })
                .collect(),
        }
    };
    let blocks = |ranges: &[super::rules::PortRange]| -> Vec<Option<(u16, u16)>> {
        if ranges.iter().any(|r| r.is_any()) {
            return vec![None];
        }
        ranges
            .iter()
            .flat_map(|r| port_masks(*r))
            .map(Some)
            .collect()
    };
    let (srcs, dsts) = (prefixes(&rule.src), prefixes(&rule.dst));
    let ported = rule.restricts_ports();
    let (sports, dports) = if ported {
        (blocks(&rule.src_ports), blocks(&rule.dst_ports))
    } else {
        (vec![None], vec![None])
    };
    let mut out = Vec::new();
    for &proto in &protos {
        for src in &srcs {
            for dst in &dsts {
                for sport in &sports {
                    for dport in &dports {
                        let mut m = Match {
                            eth_type: Some(ETH_IPV4),
                            ip_proto: proto,
                            ip_src: *src,
                            ip_dst: *dst,
                            ..key.clone()
                        };
                        if let Some((value, mask)) = *sport {
                            m.tp_src = Some(value);
                            m.tp_src_mask = Some(mask);
                        }
                        if let Some((value, mask)) = *dport {
                            m.tp_dst = Some(value);
                            m.tp_dst_mask = Some(mask);
                        }
                        out.push(m);
                    }
                }
            }
        }
    }
    out
}

fn state(bits: u8) -> Option<CtStateMatch> {
    Some(CtStateMatch::new(TRK | bits, 0))
}

/// The firewall flows of one switch.
pub fn compile(fw: &SwitchFirewall) -> Compiled {
    let mut b = Builder {
        compiled: Compiled::default(),
        index: FxHashMap::default(),
        deny: if fw.log_denied {
            vec![Action::Controller { max_len: LOG_BYTES }]
        } else {
            Vec::new()
        },
    };
    let ip = |eth_type| Match {
        eth_type: Some(eth_type),
        ..Match::default()
    };
    if !fw.ports.is_empty() {
        let group = Match {
            eth_dst: Some(MacMatch::multicast()),
            ..ip(ETH_IPV4)
        };
        b.flow(
            TABLE_IN_CT,
            PRIORITY_GROUP_DROP,
            group,
            Vec::new(),
            COOKIE_NOT_FILTERABLE,
        );
    }
    for direction in [Direction::Outbound, Direction::Inbound] {
        let Stages { tables, after } = stages(direction);
        let onward = vec![Action::GotoTable(after)];
        for bits in [EST, REL] {
            let m = Match {
                ct_state: state(bits),
                ..Match::default()
            };
            b.flow(tables[0], PRIORITY_STATE, m, onward.clone(), COOKIE_BASE);
        }
        let invalid = Match {
            ct_state: state(INV),
            ..Match::default()
        };
        let deny = b.deny.clone();
        b.flow(tables[0], PRIORITY_INVALID, invalid, deny, COOKIE_INVALID);
    }
    for p in &fw.ports {
        let zone = zone_of(p.port);
        let from_port = Match {
            in_port: Some(p.port),
            ..Match::default()
        };
        let to_port = Match {
            eth_dst: Some(MacMatch::exact(p.mac)),
            ..Match::default()
        };
        for (table, key, next) in [
            (TABLE_OUT_CT, &from_port, TABLE_OUT_NIC),
            (TABLE_IN_CT, &to_port, TABLE_IN_SUBNET),
        ] {
            let ct = Action::Ct {
                zone,
                commit: false,
                table: next,
                nat: None,
            };
            let m4 = Match {
                eth_type: Some(ETH_IPV4),
                ..key.clone()
            };
            let m6 = Match {
                eth_type: Some(ETH_IPV6),
                ..key.clone()
            };
            if table == TABLE_OUT_CT && !p.forwards {
                // A filtered interface sends from its own address only (as a
                // cloud NIC does): a forged source cannot borrow another
                // group's rules.
                let own = Match {
                    ip_src: Some(IpPrefix::host(IpAddr::V4(p.address))),
                    ..m4.clone()
                };
                b.flow(table, PRIORITY_CT, own, vec![ct], COOKIE_BASE);
                let deny = b.deny.clone();
                b.flow(table, PRIORITY_SPOOFED, m4, deny, COOKIE_SPOOFED);
            } else {
                b.flow(table, PRIORITY_CT, m4, vec![ct], COOKIE_BASE);
            }
            b.flow(table, PRIORITY_CT, m6, Vec::new(), COOKIE_NOT_FILTERABLE);
        }
        for (direction, key) in [
            (Direction::Outbound, &from_port),
            (Direction::Inbound, &to_port),
        ] {
            let Stages { tables, after } = stages(direction);
            let layers = p.policy.layers(direction);
            let commit = [Action::Ct {
                zone,
                commit: true,
                table: after,
                nat: None,
            }];
            b.layer(
                tables[0],
                key,
                layers[0],
                direction,
                &[Action::GotoTable(tables[1])],
            );
            b.layer(tables[1], key, layers[1], direction, &commit);
        }
    }
    b.compiled
}
