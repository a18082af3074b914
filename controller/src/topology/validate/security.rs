//! The security section: group names, rule fields, attachments and the
//! limits of the models imitated (NSG: priorities 100-4096 unique per
//! direction, 1000 rules; ACG: 100 rules, 3 groups per interface).

use super::Checker;
use crate::topology::common::{Access, Direction, PortRange, Protocol};
use crate::topology::raw::{RawAcg, RawAcgRule, RawNsg, RawNsgRule, RawPorts, RawSecurity};
use crate::topology::security::*;
use crate::topology::{Host, Link, Network, NodeKind, peer_of};
use ipnet::Ipv4Net;
use rustc_hash::{FxHashMap, FxHashSet};
use serde_saphyr::Spanned;
use std::net::Ipv4Addr;

/// NSG priorities users may give.
const PRIORITIES: std::ops::RangeInclusive<i64> = 100..=4096;
/// Most rules in one NSG.
const MAX_NSG_RULES: usize = 1000;
/// Most rules in one ACG (inbound and outbound together).
pub(crate) const MAX_ACG_RULES: usize = 100;
/// Most ACGs on one interface.
pub(crate) const MAX_ACGS_PER_INTERFACE: usize = 3;
/// Default flow log rate (lines per second).
const DEFAULT_FLOW_LOG_RATE: u32 = 10;

/// What names in a section can refer to.
pub(super) struct Names<'t> {
    interfaces: FxHashSet<(&'t str, &'t str)>,
    links: &'t [Link],
    subnets: Vec<(&'t str, &'t str)>,
    asgs: FxHashSet<String>,
    acgs: FxHashSet<String>,
}

impl<'t> Names<'t> {
    /// The host interfaces, links and subnets of a file (no groups).
    pub(super) fn new(hosts: &'t [Host], networks: &'t [Network], links: &'t [Link]) -> Names<'t> {
        Names {
            interfaces: hosts
                .iter()
                .flat_map(|h| {
                    h.interfaces
                        .iter()
                        .map(|i| (h.name.as_str(), i.name.as_str()))
                })
                .collect(),
            links,
            subnets: networks
                .iter()
                .flat_map(|n| n.subnets.iter().map(|s| (n.name.as_str(), s.name.as_str())))
                .collect(),
            asgs: FxHashSet::default(),
            acgs: FxHashSet::default(),
        }
    }
}

pub(super) fn security(
    c: &mut Checker<'_>,
    raw: Option<&Spanned<RawSecurity>>,
    hosts: &[Host],
    networks: &[Network],
    links: &[Link],
) -> Security {
    let mut out = Security::default();
    let Some(raw) = raw else { return out };
    let raw = &raw.value;
    if let Some(mode) = &raw.on_rule_removal {
        out.on_rule_removal = match mode.value.as_str() {
            "keep" => OnRuleRemoval::Keep,
            "cut" => OnRuleRemoval::Cut,
            other => {
                c.error(
                    mode,
                    "security.on_rule_removal",
                    format!("{other:?}: want keep (connections stay until idle) or cut"),
                );
                OnRuleRemoval::Keep
            }
        };
    }
    if let Some(max) = &raw.conntrack_max {
        if max.value == 0 || max.value > 10_000_000 {
            c.error(
                max,
                "security.conntrack_max",
                format!("{}: want 1 to 10000000 connections", max.value),
            );
        } else {
            out.conntrack_max = Some(max.value as u32);
        }
    }
    if let Some(log) = &raw.flow_log {
        let rate = log
            .value
            .rate
            .as_ref()
            .map_or(DEFAULT_FLOW_LOG_RATE, |r| r.value);
        if rate == 0 || rate > 10_000 {
            c.error(
                log,
                "security.flow_log.rate",
                format!("{rate} lines/s: want 1 to 10000"),
            );
        }
        out.flow_log_rate = Some(rate);
    }
    let names = Names {
        asgs: raw
            .asgs
            .iter()
            .map(|a| a.value.name.value.clone())
            .collect(),
        acgs: raw
            .acgs
            .iter()
            .map(|a| a.value.name.value.clone())
            .collect(),
        ..Names::new(hosts, networks, links)
    };
    let mut group_names: FxHashSet<String> = FxHashSet::default();
    let mut unique = |c: &mut Checker<'_>, name: &Spanned<String>, path: &str| {
        if c.name(name, path) && !group_names.insert(name.value.clone()) {
            c.error(
                name,
                path,
                format!("group {} is declared twice", name.value),
            );
        }
    };
    for (i, asg) in raw.asgs.iter().enumerate() {
        let path = format!("security.asgs[{i}]");
        unique(c, &asg.value.name, &format!("{path}.name"));
        let members = interface_refs(c, &asg.value.members, &format!("{path}.members"), &names);
        out.asgs.push(Asg {
            name: asg.value.name.value.clone(),
            members,
        });
    }
    for (i, nsg) in raw.nsgs.iter().enumerate() {
        let path = format!("security.nsgs[{i}]");
        unique(c, &nsg.value.name, &format!("{path}.name"));
        out.nsgs.push(nsg_of(c, &nsg.value, &path, &names));
    }
    for (i, acg) in raw.acgs.iter().enumerate() {
        let path = format!("security.acgs[{i}]");
        unique(c, &acg.value.name, &format!("{path}.name"));
        out.acgs.push(acg_of(c, acg, &path, &names));
    }
    attachments(c, raw, &out);
    out
}

/// Where the list `raw` names `iface` (entries that did not resolve are not
/// in the model, so the model's index `j` is only a fallback).
fn written<'r>(
    raw: &'r [Spanned<String>],
    j: usize,
    iface: &InterfaceRef,
) -> (usize, &'r Spanned<String>) {
    let text = format!("{}:{}", iface.host, iface.interface);
    let at = raw.iter().position(|t| t.value == text).unwrap_or(j);
    (at, &raw[at])
}

/// Per interface and subnet: one NSG, at most three ACGs, not both models.
fn attachments(c: &mut Checker<'_>, raw: &RawSecurity, sec: &Security) {
    let mut nsg_of: FxHashMap<&InterfaceRef, &str> = FxHashMap::default();
    let mut acgs_of: FxHashMap<&InterfaceRef, Vec<&str>> = FxHashMap::default();
    for (i, nsg) in sec.nsgs.iter().enumerate() {
        for (j, iface) in nsg.interfaces.iter().enumerate() {
            if let Some(other) = nsg_of.insert(iface, &nsg.name) {
                let (j, at) = written(&raw.nsgs[i].value.interfaces, j, iface);
                c.error(
                    at,
                    format!("security.nsgs[{i}].interfaces[{j}]"),
                    format!(
                        "{}:{} already has NSG {other}; an interface takes one NSG",
                        iface.host, iface.interface
                    ),
                );
            }
        }
    }
    let mut subnet_nsg: FxHashMap<&SubnetRef, &str> = FxHashMap::default();
    for (i, nsg) in sec.nsgs.iter().enumerate() {
        for (j, subnet) in nsg.subnets.iter().enumerate() {
            if let Some(other) = subnet_nsg.insert(subnet, &nsg.name) {
                let list = &raw.nsgs[i].value.subnets;
                let qualified = format!("{}/{}", subnet.network, subnet.subnet);
                let j = list
                    .iter()
                    .position(|t| t.value == subnet.subnet || t.value == qualified)
                    .unwrap_or(j);
                let at = &list[j];
                c.error(
                    at,
                    format!("security.nsgs[{i}].subnets[{j}]"),
                    format!(
                        "subnet {} already has NSG {other}; a subnet takes one NSG",
                        subnet.subnet
                    ),
                );
            }
        }
    }
    for (i, acg) in sec.acgs.iter().enumerate() {
        for (j, iface) in acg.interfaces.iter().enumerate() {
            let (j, at) = written(&raw.acgs[i].value.interfaces, j, iface);
            let path = format!("security.acgs[{i}].interfaces[{j}]");
            let list = acgs_of.entry(iface).or_default();
            list.push(&acg.name);
            if list.len() == MAX_ACGS_PER_INTERFACE + 1 {
                c.error(
                    at,
                    &path,
                    format!(
                        "{}:{} is in {} ACGs ({}); at most {MAX_ACGS_PER_INTERFACE} per interface",
                        iface.host,
                        iface.interface,
                        list.len(),
                        list.join(", ")
                    ),
                );
            }
            if let Some(nsg) = nsg_of.get(iface) {
                c.error(
                    at,
                    &path,
                    format!(
                        "{}:{} already has NSG {nsg}; an interface uses NSG or ACG rules, not both",
                        iface.host, iface.interface
                    ),
                );
            }
        }
    }
}

pub(super) fn interface_refs(
    c: &mut Checker<'_>,
    raw: &[Spanned<String>],
    path: &str,
    names: &Names<'_>,
) -> Vec<InterfaceRef> {
    let mut out = Vec::new();
    for (j, text) in raw.iter().enumerate() {
        let path = format!("{path}[{j}]");
        let Some(r) = interface_ref(c, text, &path, names) else {
            continue;
        };
        if out.contains(&r) {
            c.error(text, path, format!("{} is listed twice", text.value));
            continue;
        }
        out.push(r);
    }
    out
}

/// One `host:interface`, or a `switch:port` standing for the host interface
/// linked to it; `path` is where `text` is.
pub(super) fn interface_ref(
    c: &mut Checker<'_>,
    text: &Spanned<String>,
    path: &str,
    names: &Names<'_>,
) -> Option<InterfaceRef> {
    let Some((host, interface)) = text.value.split_once(':') else {
        c.error(
            text,
            path,
            format!("{:?}: want host:interface, like web1:eth0", text.value),
        );
        return None;
    };
    if names.interfaces.contains(&(host, interface)) {
        return Some(InterfaceRef {
            host: host.into(),
            interface: interface.into(),
        });
    }
    if let Some(end) =
        peer_of(names.links, host, interface).filter(|end| end.kind == NodeKind::Host)
    {
        // A switch port stands for the host interface linked to it.
        return Some(InterfaceRef {
            host: end.node.clone(),
            interface: end.device.clone(),
        });
    }
    c.error(
        text,
        path,
        format!(
            "no host interface {} (nor a switch port linked to one)",
            text.value
        ),
    );
    None
}

pub(super) fn subnet_refs(
    c: &mut Checker<'_>,
    raw: &[Spanned<String>],
    path: &str,
    names: &Names<'_>,
) -> Vec<SubnetRef> {
    subnet_refs_at(c, raw, path, names)
        .into_iter()
        .map(|(_, s)| s)
        .collect()
}

/// The subnets `raw` names, each with its index in `raw`: entries that do
/// not resolve (or repeat one) are left out, so later errors need the index
/// to point at the entry as written.
pub(super) fn subnet_refs_at(
    c: &mut Checker<'_>,
    raw: &[Spanned<String>],
    path: &str,
    names: &Names<'_>,
) -> Vec<(usize, SubnetRef)> {
    let mut out: Vec<(usize, SubnetRef)> = Vec::new();
    for (j, text) in raw.iter().enumerate() {
        let path = format!("{path}[{j}]");
        let found: Vec<_> = names
            .subnets
            .iter()
            .filter(|(net, sub)| match text.value.split_once('/') {
                Some((n, s)) => *net == n && *sub == s,
                None => *sub == text.value,
            })
            .collect();
        match found.as_slice() {
            [(network, subnet)] => {
                let r = SubnetRef {
                    network: network.to_string(),
                    subnet: subnet.to_string(),
                };
                if out.iter().any(|(_, o)| *o == r) {
                    c.error(text, path, format!("{} is listed twice", text.value));
                } else {
                    out.push((j, r));
                }
            }
            [] => c.error(text, path, format!("no subnet {}", text.value)),
            _ => c.error(
                text,
                path,
                format!(
                    "subnet {} is in several networks; write network/subnet",
                    text.value
                ),
            ),
        }
    }
    out
}

/// A rule's free-text description: kept short.
fn description(c: &mut Checker<'_>, raw: Option<&Spanned<String>>, path: &str) {
    if let Some(d) = raw
        && d.value.chars().count() > 140
    {
        c.error(d, path, "a description has at most 140 characters");
    }
}

/// One of `choices` (matched without regard to case).
pub(super) fn word<T: Copy>(
    c: &mut Checker<'_>,
    at: &Spanned<String>,
    path: &str,
    choices: &[(&str, T)],
) -> Option<T> {
    let found = choices
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(&at.value))
        .map(|(_, v)| *v);
    if found.is_none() {
        let want: Vec<_> = choices.iter().map(|(n, _)| *n).collect();
        c.error(
            at,
            path,
            format!("{:?}: want one of {}", at.value, want.join(", ")),
        );
    }
    found
}

fn protocol(c: &mut Checker<'_>, raw: Option<&Spanned<String>>, path: &str) -> Protocol {
    let choices = [
        ("any", Protocol::Any),
        ("*", Protocol::Any),
        ("tcp", Protocol::Tcp),
        ("udp", Protocol::Udp),
        ("icmp", Protocol::Icmp),
        ("esp", Protocol::Esp),
        ("ah", Protocol::Ah),
    ];
    raw.and_then(|p| word(c, p, path, &choices))
        .unwrap_or(Protocol::Any)
}

/// Parses `80`, `1000-2000`, `80,443`, `*` or `any`.
pub(crate) fn parse_ports(text: &str) -> Result<Vec<PortRange>, String> {
    let text = text.trim();
    if text == "*" || text.eq_ignore_ascii_case("any") {
        return Ok(vec![PortRange::ANY]);
    }
    let mut out = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let port = |t: &str| -> Result<u16, String> {
            t.trim()
                .parse::<u16>()
                .map_err(|_| format!("{t:?} is not a port (0-65535)"))
        };
        let range = match part.split_once('-') {
            Some((lo, hi)) => PortRange {
                lo: port(lo)?,
                hi: port(hi)?,
            },
            None => {
                let p = port(part)?;
                PortRange { lo: p, hi: p }
            }
        };
        if range.lo > range.hi {
            return Err(format!("range {part} runs backwards"));
        }
        out.push(range);
    }
    Ok(out)
}

fn ports(
    c: &mut Checker<'_>,
    raw: Option<&Spanned<RawPorts>>,
    path: &str,
    protocol: Protocol,
) -> Vec<PortRange> {
    let Some(raw) = raw else {
        return vec![PortRange::ANY];
    };
    let text = match &raw.value {
        RawPorts::Number(n) => n.to_string(),
        RawPorts::Text(t) => t.clone(),
    };
    match parse_ports(&text) {
        Ok(ranges)
            if matches!(protocol, Protocol::Icmp | Protocol::Esp | Protocol::Ah)
                && !ranges.iter().any(|r| r.is_any()) =>
        {
            c.error(
                raw,
                path,
                format!(
                    "{} has no ports; leave ports out or use \"*\"",
                    protocol.name().to_uppercase()
                ),
            );
            ranges
        }
        Ok(ranges) => ranges,
        Err(reason) => {
            c.error(
                raw,
                path,
                format!("{text:?}: {reason} (want like 80, 1000-2000, 80,443 or *)"),
            );
            vec![PortRange::ANY]
        }
    }
}

/// A rule's source or destination. `acg_names` says whether ACG names count
/// as groups (in ACG rules they do).
fn peer(
    c: &mut Checker<'_>,
    raw: Option<&Spanned<String>>,
    path: &str,
    names: &Names<'_>,
    acg_names: bool,
) -> Peer {
    let Some(raw) = raw else { return Peer::Any };
    let text = raw.value.trim();
    if text == "*" || text.eq_ignore_ascii_case("any") {
        return Peer::Any;
    }
    if text.eq_ignore_ascii_case("virtualnetwork") {
        return Peer::VirtualNetwork;
    }
    if text.eq_ignore_ascii_case("internet") {
        return Peer::Internet;
    }
    if text.eq_ignore_ascii_case("azureloadbalancer") {
        return Peer::AzureLoadBalancer;
    }
    if names.asgs.contains(text) || (acg_names && names.acgs.contains(text)) {
        return Peer::Group(text.to_string());
    }
    let mut prefixes = Vec::new();
    for part in text.split(',').map(str::trim) {
        let parsed = part
            .parse::<Ipv4Net>()
            .ok()
            .filter(|n| n.trunc() == *n)
            .or_else(|| {
                part.parse::<Ipv4Addr>()
                    .ok()
                    .map(|a| Ipv4Net::new(a, 32).expect("/32"))
            });
        match parsed {
            Some(net) => prefixes.push(net),
            None => {
                let groups = if acg_names { "an ASG or ACG" } else { "an ASG" };
                c.error(
                    raw,
                    path,
                    format!("{part:?} is not an IPv4 address or CIDR without host bits, any, VirtualNetwork, Internet, AzureLoadBalancer, or {groups} of this file"),
                );
                return Peer::Any;
            }
        }
    }
    Peer::Prefixes(prefixes)
}

fn nsg_of(c: &mut Checker<'_>, raw: &RawNsg, path: &str, names: &Names<'_>) -> Nsg {
    if raw.rules.len() > MAX_NSG_RULES {
        c.error(
            &raw.name,
            format!("{path}.rules"),
            format!(
                "{} rules; an NSG holds at most {MAX_NSG_RULES}",
                raw.rules.len()
            ),
        );
    }
    let mut rule_names = FxHashSet::default();
    let mut priorities: FxHashMap<(Direction, i64), String> = FxHashMap::default();
    let mut rules = Vec::new();
    for (k, rule) in raw.rules.iter().enumerate() {
        let rpath = format!("{path}.rules[{k}]");
        let r: &RawNsgRule = &rule.value;
        if r.name.value.is_empty() || r.name.value.len() > 80 {
            c.error(
                &r.name,
                format!("{rpath}.name"),
                "a rule name has 1 to 80 characters",
            );
        } else if !rule_names.insert(r.name.value.clone()) {
            c.error(
                &r.name,
                format!("{rpath}.name"),
                format!(
                    "rule {} is declared twice in NSG {}",
                    r.name.value, raw.name.value
                ),
            );
        }
        let direction = word(
            c,
            &r.direction,
            &format!("{rpath}.direction"),
            &[
                ("inbound", Direction::Inbound),
                ("outbound", Direction::Outbound),
            ],
        );
        let access = word(
            c,
            &r.access,
            &format!("{rpath}.access"),
            &[("allow", Access::Allow), ("deny", Access::Deny)],
        );
        if !PRIORITIES.contains(&r.priority.value) {
            c.error(
                &r.priority,
                format!("{rpath}.priority"),
                format!(
                    "{}: want {} to {} (lower wins)",
                    r.priority.value,
                    PRIORITIES.start(),
                    PRIORITIES.end()
                ),
            );
        } else if let Some(direction) = direction
            && let Some(other) =
                priorities.insert((direction, r.priority.value), r.name.value.clone())
        {
            c.error(&r.priority, format!("{rpath}.priority"), format!("priority {} is already used by {} rule {other}; priorities are unique per direction", r.priority.value, direction.name()));
        }
        description(c, r.description.as_ref(), &format!("{rpath}.description"));
        let protocol = protocol(c, r.protocol.as_ref(), &format!("{rpath}.protocol"));
        rules.push(NsgRule {
            name: r.name.value.clone(),
            priority: r.priority.value.clamp(0, 65_535) as u32,
            direction: direction.unwrap_or(Direction::Inbound),
            access: access.unwrap_or(Access::Deny),
            protocol,
            source: peer(
                c,
                r.source.as_ref(),
                &format!("{rpath}.source"),
                names,
                false,
            ),
            source_ports: ports(
                c,
                r.source_ports.as_ref(),
                &format!("{rpath}.source_ports"),
                protocol,
            ),
            destination: peer(
                c,
                r.destination.as_ref(),
                &format!("{rpath}.destination"),
                names,
                false,
            ),
            destination_ports: ports(
                c,
                r.destination_ports.as_ref(),
                &format!("{rpath}.destination_ports"),
                protocol,
            ),
        });
    }
    Nsg {
        name: raw.name.value.clone(),
        rules,
        interfaces: interface_refs(c, &raw.interfaces, &format!("{path}.interfaces"), names),
        subnets: subnet_refs(c, &raw.subnets, &format!("{path}.subnets"), names),
    }
}

fn acg_rules(
    c: &mut Checker<'_>,
    raw: &[Spanned<RawAcgRule>],
    path: &str,
    direction: Direction,
    names: &Names<'_>,
) -> Vec<AcgRule> {
    let mut out = Vec::new();
    for (k, rule) in raw.iter().enumerate() {
        let rpath = format!("{path}[{k}]");
        let r = &rule.value;
        let (wanted, unwanted, field) = match direction {
            Direction::Inbound => (r.source.as_ref(), r.destination.as_ref(), "source"),
            Direction::Outbound => (r.destination.as_ref(), r.source.as_ref(), "destination"),
        };
        if let Some(extra) = unwanted {
            c.error(
                extra,
                &rpath,
                format!(
                    "a {} rule names its {field} only (the interface is the other end)",
                    direction.name()
                ),
            );
        }
        description(c, r.description.as_ref(), &format!("{rpath}.description"));
        let protocol = protocol(c, r.protocol.as_ref(), &format!("{rpath}.protocol"));
        out.push(AcgRule {
            protocol,
            peer: peer(c, wanted, &format!("{rpath}.{field}"), names, true),
            ports: ports(c, r.ports.as_ref(), &format!("{rpath}.ports"), protocol),
        });
    }
    out
}

fn acg_of(c: &mut Checker<'_>, raw: &Spanned<RawAcg>, path: &str, names: &Names<'_>) -> Acg {
    let acg = &raw.value;
    let total = acg.inbound.len() + acg.outbound.len();
    if total > MAX_ACG_RULES {
        c.error(
            &acg.name,
            path,
            format!(
                "{total} rules in ACG {}; at most {MAX_ACG_RULES} (inbound and outbound together)",
                acg.name.value
            ),
        );
    }
    Acg {
        name: acg.name.value.clone(),
        interfaces: interface_refs(c, &acg.interfaces, &format!("{path}.interfaces"), names),
        inbound: acg_rules(
            c,
            &acg.inbound,
            &format!("{path}.inbound"),
            Direction::Inbound,
            names,
        ),
        outbound: acg_rules(
            c,
            &acg.outbound,
            &format!("{path}.outbound"),
            Direction::Outbound,
            names,
        ),
    }
}
