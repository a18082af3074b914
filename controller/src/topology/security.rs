//! The validated security section: groups, their rules and what they are
//! attached to. Names are checked to exist; `security::resolve` turns them
//! into addresses per interface.

use crate::topology::common::{Access, Direction, PortRange, Protocol};
use ipnet::Ipv4Net;

/// What happens to a live connection when the rule that allowed it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnRuleRemoval {
    /// It stays until it ends or idles out (as cloud providers do: rules are
    /// checked when a connection starts).
    #[default]
    Keep,
    /// Connections the new rules would not allow are cut at once.
    Cut,
}

/// A host interface named in the security section (`host:interface`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InterfaceRef {
    /// Host.
    pub host: String,
    /// Interface.
    pub interface: String,
}

/// A subnet named in the security section.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SubnetRef {
    /// Network.
    pub network: String,
    /// Subnet.
    pub subnet: String,
}

/// The other end of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// Any address.
    Any,
    /// The address space of the interface's network and of the networks
    /// peered with it (Azure's `VirtualNetwork` service tag).
    VirtualNetwork,
    /// The internet's public address space (Azure's `Internet` tag).
    Internet,
    /// The source of load balancer health probes,
    /// `load_balancer::PROBE_SOURCE` (Azure's `AzureLoadBalancer` tag).
    AzureLoadBalancer,
    /// Addresses and prefixes.
    Prefixes(Vec<Ipv4Net>),
    /// The members of an ASG (or, in ACG rules, of an ACG).
    Group(String),
}

/// One NSG rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsgRule {
    /// Name, unique in its NSG.
    pub name: String,
    /// 100..=4096; lower wins; unique per direction in its NSG.
    pub priority: u32,
    /// Direction.
    pub direction: Direction,
    /// Allow or deny.
    pub access: Access,
    /// Protocol.
    pub protocol: Protocol,
    /// Source.
    pub source: Peer,
    /// Source ports.
    pub source_ports: Vec<PortRange>,
    /// Destination.
    pub destination: Peer,
    /// Destination ports.
    pub destination_ports: Vec<PortRange>,
}

/// A network security group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nsg {
    /// Name.
    pub name: String,
    /// Rules, as written.
    pub rules: Vec<NsgRule>,
    /// Interfaces it filters.
    pub interfaces: Vec<InterfaceRef>,
    /// Subnets it filters.
    pub subnets: Vec<SubnetRef>,
}

/// One ACG rule (always allow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcgRule {
    /// Protocol.
    pub protocol: Protocol,
    /// Source (inbound) or destination (outbound).
    pub peer: Peer,
    /// Destination ports.
    pub ports: Vec<PortRange>,
}

/// An access control group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acg {
    /// Name.
    pub name: String,
    /// Interfaces it filters.
    pub interfaces: Vec<InterfaceRef>,
    /// Inbound allow rules.
    pub inbound: Vec<AcgRule>,
    /// Outbound allow rules (none: all outbound allowed).
    pub outbound: Vec<AcgRule>,
}

/// An application security group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asg {
    /// Name.
    pub name: String,
    /// Member interfaces.
    pub members: Vec<InterfaceRef>,
}

/// The security section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Security {
    /// Fate of live connections whose rule goes.
    pub on_rule_removal: OnRuleRemoval,
    /// Maximum tracked connections per switch (the switch's default if none).
    pub conntrack_max: Option<u32>,
    /// Log denied connection attempts, at most this many lines per second.
    pub flow_log_rate: Option<u32>,
    /// Application security groups.
    pub asgs: Vec<Asg>,
    /// Network security groups.
    pub nsgs: Vec<Nsg>,
    /// Access control groups.
    pub acgs: Vec<Acg>,
}

impl Security {
    /// Whether the section asks for anything.
    pub fn is_empty(&self) -> bool {
        self.nsgs.is_empty() && self.acgs.is_empty()
    }
}
