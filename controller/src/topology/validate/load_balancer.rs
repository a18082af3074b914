//! Load balancers: names unique (the load balancer among routing and edge
//! resources, its frontends, pools, probes, rules and inbound NAT rules
//! within it); a frontend is a free public address of a network with an
//! internet gateway or a free address in a subnet of the network; members
//! and NAT targets are IPv4 interfaces of the network or a peered one;
//! rules name existing frontends, pools and probes and share no frontend
//! port. Frontends are checked in `frontend`, probes and the rules' other
//! fields in `probe`.

use super::Checker;
use super::frontend::{Claimed, frontends};
use super::probe::{port, probe, rule_settings};
use super::routing::ResourceNames;
use super::security::{Names, interface_ref, word};
use crate::topology::load_balancer::*;
use crate::topology::model::{Host, Network};
use crate::topology::raw::{
    RawBackendPool, RawInboundNatRule, RawLoadBalancer, RawLoadBalancingRule, RawTopology,
};
use crate::topology::routing::{Internet, Routing};
use crate::topology::security::InterfaceRef;
use rustc_hash::{FxHashMap, FxHashSet};
use serde_saphyr::Spanned;
use std::net::{IpAddr, Ipv4Addr};

/// What `load_balancers` needs from the rest of the file.
pub(super) struct Context<'a> {
    pub(super) raw: &'a RawTopology,
    pub(super) networks: &'a [Network],
    pub(super) hosts: &'a [Host],
    pub(super) names: &'a Names<'a>,
    pub(super) routing: &'a Routing,
    pub(super) internet: &'a Internet,
    pub(super) links: &'a [crate::topology::model::Link],
}

/// Validates `load_balancers`.
pub(super) fn load_balancers(
    c: &mut Checker<'_>,
    cx: &Context<'_>,
    resources: &mut ResourceNames,
) -> Vec<LoadBalancer> {
    let mut claimed = Claimed::default();
    let mut out = Vec::new();
    for (i, lb) in cx.raw.load_balancers.iter().enumerate() {
        let path = format!("load_balancers[{i}]");
        resources.claim(c, &lb.value.name, &format!("{path}.name"));
        out.push(load_balancer(c, cx, lb, &path, &mut claimed));
    }
    out
}

/// Reports a name declared twice among one kind of a load balancer's parts.
pub(super) struct Unique<'l> {
    lb: &'l str,
    kind: &'static str,
    seen: FxHashSet<String>,
}

impl<'l> Unique<'l> {
    pub(super) fn new(lb: &'l str, kind: &'static str) -> Unique<'l> {
        Unique {
            lb,
            kind,
            seen: FxHashSet::default(),
        }
    }

    pub(super) fn check(&mut self, c: &mut Checker<'_>, name: &Spanned<String>, path: &str) {
        if c.name(name, path) && !self.seen.insert(name.value.clone()) {
            c.error(
                name,
                path,
                format!(
                    "{} {} is declared twice in load balancer {}",
                    self.kind, name.value, self.lb
                ),
            );
        }
    }
}

fn load_balancer(
    c: &mut Checker<'_>,
    cx: &Context<'_>,
    raw: &Spanned<RawLoadBalancer>,
    path: &str,
    claimed: &mut Claimed,
) -> LoadBalancer {
    let lb = &raw.value;
    let name = lb.name.value.as_str();
    let (network, frontends) = frontends(c, cx, lb, path, claimed);
    // A public frontend's connections come in and go back through the
    // edge of the load balancer's own network.
    let public = frontends.iter().any(|f| f.kind == FrontendKind::Public);
    let frontend_names: FxHashSet<&str> = lb
        .frontends
        .iter()
        .map(|f| f.value.name.value.as_str())
        .collect();
    let refs = Refs {
        lb: name,
        frontends: &frontend_names,
        pools: lb
            .backend_pools
            .iter()
            .map(|p| p.value.name.value.as_str())
            .collect(),
        probes: lb
            .probes
            .iter()
            .map(|p| p.value.name.value.as_str())
            .collect(),
    };
    let mut unique = Unique::new(name, "backend pool");
    let mut backend_pools = Vec::new();
    for (p, pool) in lb.backend_pools.iter().enumerate() {
        let ppath = format!("{path}.backend_pools[{p}]");
        unique.check(c, &pool.value.name, &format!("{ppath}.name"));
        backend_pools.push(backend_pool(
            c,
            cx,
            &pool.value,
            &ppath,
            network.network(),
            public,
        ));
    }
    let mut unique = Unique::new(name, "probe");
    let mut probes = Vec::new();
    for (p, raw_probe) in lb.probes.iter().enumerate() {
        let ppath = format!("{path}.probes[{p}]");
        unique.check(c, &raw_probe.value.name, &format!("{ppath}.name"));
        probes.extend(probe(c, &raw_probe.value, &ppath));
    }
    let parts = Parts {
        refs: &refs,
        network: network.network(),
        frontends: &frontends,
    };
    let mut listeners = Listeners::default();
    let mut unique = Unique::new(name, "rule");
    let mut rules = Vec::new();
    // What each pool's members answer on, and for which rule: two rules
    // sending one protocol to the same members' port would share the
    // members' side of their connections.
    let mut sends: FxHashMap<(String, TransportProtocol, u16), String> = FxHashMap::default();
    for (r, raw_rule) in lb.rules.iter().enumerate() {
        let rpath = format!("{path}.rules[{r}]");
        unique.check(c, &raw_rule.value.name, &format!("{rpath}.name"));
        let errors = c.errors.len();
        let Some(checked) = rule(c, &raw_rule.value, &rpath, &parts, &mut listeners) else {
            continue;
        };
        if c.errors.len() > errors {
            rules.push(checked);
            continue;
        }
        let key = (checked.pool.clone(), checked.protocol, checked.backend_port);
        if let Some(first) = sends.get(&key) {
            c.error(
                &raw_rule.value.name,
                format!("{rpath}.name"),
                format!(
                    "rule {} sends {} to port {} of pool {}, as rule {first} does: give one of them another backend_port",
                    checked.name,
                    checked.protocol.name(),
                    checked.backend_port,
                    checked.pool
                ),
            );
            continue;
        }
        sends.insert(key, checked.name.clone());
        rules.push(checked);
    }
    let mut unique = Unique::new(name, "inbound NAT rule");
    let mut inbound_nat_rules = Vec::new();
    for (r, raw_rule) in lb.inbound_nat_rules.iter().enumerate() {
        let rpath = format!("{path}.inbound_nat_rules[{r}]");
        unique.check(c, &raw_rule.value.name, &format!("{rpath}.name"));
        let nat = inbound_nat_rule(c, cx, &raw_rule.value, &rpath, &parts, &mut listeners);
        inbound_nat_rules.extend(nat);
    }
    one_switch(c, cx, lb, path);
    LoadBalancer {
        name: name.to_string(),
        network: network
            .network()
            .map_or_else(String::new, |n| n.name.clone()),
        frontends,
        backend_pools,
        probes,
        rules,
        inbound_nat_rules,
    }
}

/// Every member and inbound NAT target of a load balancer must be on one
/// switch: the switch balances there, and its conntrack must see both ways
/// of every balanced connection.
fn one_switch(c: &mut Checker<'_>, cx: &Context<'_>, lb: &RawLoadBalancer, path: &str) {
    let members = lb.backend_pools.iter().enumerate().flat_map(|(p, pool)| {
        pool.value
            .members
            .iter()
            .enumerate()
            .map(move |(m, member)| {
                (
                    &member.value.interface,
                    format!("{path}.backend_pools[{p}].members[{m}].interface"),
                )
            })
    });
    let targets = lb.inbound_nat_rules.iter().enumerate().map(|(r, rule)| {
        (
            &rule.value.target,
            format!("{path}.inbound_nat_rules[{r}].target"),
        )
    });
    let mut home: Option<(String, String)> = None;
    for (at, ipath) in members.chain(targets) {
        let Some((host, device)) = at.value.split_once(':') else {
            continue;
        };
        let Some(switch) = crate::topology::model::peer_of(cx.links, host, device)
            .filter(|e| e.kind == crate::topology::model::NodeKind::Switch)
            .map(|e| e.node.clone())
        else {
            continue;
        };
        match &home {
            None => home = Some((switch, at.value.clone())),
            Some((first, first_member)) if *first != switch => c.error(
                at,
                ipath,
                format!(
                    "{} is on switch {switch}, but load balancer {} balances at {first}, the switch of {first_member}: a load balancer's members and NAT targets must share one switch",
                    at.value, lb.name.value
                ),
            ),
            Some(_) => {}
        }
    }
}

/// The parts of a load balancer a rule names.
#[derive(Clone, Copy)]
enum Part {
    Frontend,
    Pool,
    Probe,
}

/// The names of a load balancer's parts, as written.
struct Refs<'r> {
    lb: &'r str,
    frontends: &'r FxHashSet<&'r str>,
    pools: FxHashSet<&'r str>,
    probes: FxHashSet<&'r str>,
}

impl Refs<'_> {
    /// Reports a name of no part of its kind.
    fn check(&self, c: &mut Checker<'_>, name: &Spanned<String>, path: &str, part: Part) {
        let (names, kind) = match part {
            Part::Frontend => (self.frontends, "frontend"),
            Part::Pool => (&self.pools, "backend pool"),
            Part::Probe => (&self.probes, "probe"),
        };
        if !names.contains(name.value.as_str()) {
            c.error(
                name,
                path,
                format!(
                    "no {kind} named {} in load balancer {}",
                    name.value, self.lb
                ),
            );
        }
    }
}

/// A rule's or NAT rule's frontend port.
struct Listener<'a> {
    frontend: &'a Spanned<String>,
    protocol: Option<TransportProtocol>,
    port: Option<u16>,
    at: &'a Spanned<i64>,
    path: String,
    owner: String,
}

/// Frontend ports in use: (frontend, protocol, port) → the rule using it.
#[derive(Default)]
struct Listeners(FxHashMap<(String, TransportProtocol, u16), String>);

impl Listeners {
    /// Claims a frontend port; reports one already used.
    fn claim(&mut self, c: &mut Checker<'_>, l: Listener<'_>, frontends: &[Frontend]) {
        let (Some(protocol), Some(port)) = (l.protocol, l.port) else {
            return;
        };
        let key = (l.frontend.value.clone(), protocol, port);
        if let Some(first) = self.0.get(&key) {
            let address = frontends
                .iter()
                .find(|f| f.name == l.frontend.value)
                .map_or_else(String::new, |f| format!(" ({})", f.address));
            c.error(
                l.at,
                l.path,
                format!(
                    "{} port {port} of frontend {}{address} is already used by {first}",
                    protocol.name(),
                    l.frontend.value
                ),
            );
        } else {
            self.0.insert(key, l.owner);
        }
    }
}

/// `tcp` or `udp`.
fn protocol(c: &mut Checker<'_>, raw: &Spanned<String>, path: &str) -> Option<TransportProtocol> {
    word(
        c,
        raw,
        path,
        &[
            ("tcp", TransportProtocol::Tcp),
            ("udp", TransportProtocol::Udp),
        ],
    )
}

/// A member or NAT target: an IPv4 host interface of `network` or (for a
/// load balancer without a `public` frontend) a network peered with it. Its
/// reference and address if so.
fn backend(
    c: &mut Checker<'_>,
    cx: &Context<'_>,
    at: &Spanned<String>,
    path: &str,
    network: Option<&Network>,
    public: bool,
) -> Option<(InterfaceRef, Ipv4Addr)> {
    let r = interface_ref(c, at, path, cx.names)?;
    let iface = cx
        .hosts
        .iter()
        .find(|h| h.name == r.host)
        .and_then(|h| h.interfaces.iter().find(|i| i.name == r.interface))?;
    let IpAddr::V4(address) = iface.address else {
        c.error(
            at,
            path,
            format!(
                "{} has no IPv4 address ({}): load balancer backends are IPv4",
                at.value, iface.address
            ),
        );
        return None;
    };
    let network = network?;
    if iface.network != network.name && !cx.routing.peered(&iface.network, &network.name) {
        c.error(
            at,
            path,
            format!(
                "{} is in network {}, which is neither the load balancer's network {} nor peered with it",
                at.value, iface.network, network.name
            ),
        );
        return None;
    }
    if public && iface.network != network.name {
        c.error(
            at,
            path,
            format!(
                "{} is in network {}, peered with {}: the members of a load balancer with a public frontend must be in its own network {} (a peered network's members can serve internal frontends)",
                at.value, iface.network, network.name, network.name
            ),
        );
        return None;
    }
    Some((r, address))
}

fn backend_pool(
    c: &mut Checker<'_>,
    cx: &Context<'_>,
    raw: &RawBackendPool,
    path: &str,
    network: Option<&Network>,
    public: bool,
) -> BackendPool {
    let mut members: Vec<PoolMember> = Vec::new();
    for (m, member) in raw.members.iter().enumerate() {
        let mpath = format!("{path}.members[{m}]");
        let weight = match &member.value.weight {
            None => Some(DEFAULT_WEIGHT),
            Some(w) => match u32::try_from(w.value) {
                Ok(weight) if (1..=MAX_WEIGHT).contains(&weight) => Some(weight),
                _ => {
                    c.error(
                        w,
                        format!("{mpath}.weight"),
                        format!("{}: want a weight from 1 to {MAX_WEIGHT}", w.value),
                    );
                    None
                }
            },
        };
        let at = &member.value.interface;
        let ipath = format!("{mpath}.interface");
        let Some((interface, address)) = backend(c, cx, at, &ipath, network, public) else {
            continue;
        };
        if members.iter().any(|o| o.interface == interface) {
            c.error(
                at,
                ipath,
                format!(
                    "{} is already a member of backend pool {}",
                    at.value, raw.name.value
                ),
            );
            continue;
        }
        if let Some(weight) = weight {
            members.push(PoolMember {
                interface,
                address,
                weight,
                draining: false,
            });
        }
    }
    BackendPool {
        name: raw.name.value.clone(),
        members,
    }
}

/// What a rule or inbound NAT rule is checked against.
struct Parts<'a> {
    refs: &'a Refs<'a>,
    network: Option<&'a Network>,
    frontends: &'a [Frontend],
}

/// A rule's ports: the frontend's, and the backend's (the frontend's if it
/// names none).
fn ports(
    c: &mut Checker<'_>,
    frontend: &Spanned<i64>,
    backend: Option<&Spanned<i64>>,
    path: &str,
) -> (Option<u16>, Option<u16>) {
    let frontend_port = port(c, frontend, &format!("{path}.frontend_port"));
    let backend_port = match backend {
        Some(p) => port(c, p, &format!("{path}.backend_port")),
        None => frontend_port,
    };
    (frontend_port, backend_port)
}

fn rule(
    c: &mut Checker<'_>,
    raw: &RawLoadBalancingRule,
    path: &str,
    parts: &Parts<'_>,
    listeners: &mut Listeners,
) -> Option<LoadBalancingRule> {
    let refs = parts.refs;
    refs.check(
        c,
        &raw.frontend,
        &format!("{path}.frontend"),
        Part::Frontend,
    );
    refs.check(c, &raw.pool, &format!("{path}.pool"), Part::Pool);
    if let Some(probe) = &raw.probe {
        refs.check(c, probe, &format!("{path}.probe"), Part::Probe);
    }
    let protocol = protocol(c, &raw.protocol, &format!("{path}.protocol"));
    let (frontend_port, backend_port) =
        ports(c, &raw.frontend_port, raw.backend_port.as_ref(), path);
    let listener = Listener {
        frontend: &raw.frontend,
        protocol,
        port: frontend_port,
        at: &raw.frontend_port,
        path: format!("{path}.frontend_port"),
        owner: format!("rule {}", raw.name.value),
    };
    listeners.claim(c, listener, parts.frontends);
    let settings = rule_settings(c, raw, path)?;
    Some(LoadBalancingRule {
        name: raw.name.value.clone(),
        frontend: raw.frontend.value.clone(),
        protocol: protocol?,
        frontend_port: frontend_port?,
        backend_port: backend_port?,
        pool: raw.pool.value.clone(),
        probe: raw.probe.as_ref().map(|p| p.value.clone()),
        algorithm: settings.algorithm,
        idle_timeout: settings.idle_timeout,
        no_healthy_backends: settings.no_healthy_backends,
    })
}

fn inbound_nat_rule(
    c: &mut Checker<'_>,
    cx: &Context<'_>,
    raw: &RawInboundNatRule,
    path: &str,
    parts: &Parts<'_>,
    listeners: &mut Listeners,
) -> Option<InboundNatRule> {
    parts.refs.check(
        c,
        &raw.frontend,
        &format!("{path}.frontend"),
        Part::Frontend,
    );
    let protocol = protocol(c, &raw.protocol, &format!("{path}.protocol"));
    let (frontend_port, backend_port) =
        ports(c, &raw.frontend_port, raw.backend_port.as_ref(), path);
    let listener = Listener {
        frontend: &raw.frontend,
        protocol,
        port: frontend_port,
        at: &raw.frontend_port,
        path: format!("{path}.frontend_port"),
        owner: format!("inbound NAT rule {}", raw.name.value),
    };
    listeners.claim(c, listener, parts.frontends);
    let public = parts
        .frontends
        .iter()
        .any(|f| f.kind == FrontendKind::Public);
    let target = backend(
        c,
        cx,
        &raw.target,
        &format!("{path}.target"),
        parts.network,
        public,
    );
    let (target, target_address) = target?;
    Some(InboundNatRule {
        name: raw.name.value.clone(),
        frontend: raw.frontend.value.clone(),
        protocol: protocol?,
        frontend_port: frontend_port?,
        backend_port: backend_port?,
        target,
        target_address,
    })
}
