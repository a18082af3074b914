//! The validated `load_balancers:` section (Azure Standard Load Balancer
//! model): frontends, backend pools, health probes, load-balancing rules and
//! inbound NAT rules. Names are checked to exist and addresses resolved; the
//! data path compiles flows from these types.

use super::security::InterfaceRef;
use std::net::Ipv4Addr;
use std::time::Duration;

/// The address health probes come from (Azure's well-known 168.63.129.16,
/// what the `AzureLoadBalancer` service tag stands for).
pub const PROBE_SOURCE: Ipv4Addr = Ipv4Addr::new(168, 63, 129, 16);

/// Weight of a pool member that names none.
pub const DEFAULT_WEIGHT: u32 = 1;

/// Largest weight of a pool member (the smallest is 1).
pub const MAX_WEIGHT: u32 = 100;

/// Time between probes of a member when a probe names no `interval`.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Longest default probe timeout: a probe without `timeout` waits half its
/// interval, at most this long (see `default_probe_timeout`).
pub const MAX_DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Consecutive results that change a member's health, when a probe names no
/// `healthy_threshold` or `unhealthy_threshold`.
pub const DEFAULT_THRESHOLD: u32 = 2;

/// The path an HTTP probe requests when it names none.
pub const DEFAULT_HTTP_PATH: &str = "/";

/// How long an idle flow of a rule keeps its backend, when the rule names
/// no `idle_timeout` (Azure's default, 4 minutes).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(4 * 60);

/// The timeout of a probe that names none: half of `interval`, at most
/// `MAX_DEFAULT_PROBE_TIMEOUT` (2 s for the default 5 s interval). Always
/// above zero and below `interval` for an interval above zero.
pub fn default_probe_timeout(interval: Duration) -> Duration {
    (interval / 2).min(MAX_DEFAULT_PROBE_TIMEOUT)
}

/// The transport protocol of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportProtocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl TransportProtocol {
    /// `tcp` or `udp`, as files write it.
    pub fn name(self) -> &'static str {
        match self {
            TransportProtocol::Tcp => "tcp",
            TransportProtocol::Udp => "udp",
        }
    }
}

/// How a probe checks a member.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProbeProtocol {
    /// A TCP handshake to the port: a SYN-ACK is up.
    Tcp,
    /// An HTTP GET of `path` on the port: a 200 answer is up.
    Http {
        /// The requested path (starts with `/`; `DEFAULT_HTTP_PATH` if none
        /// is written).
        path: String,
    },
}

/// How a rule picks the member for a new flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// Members in turn.
    RoundRobin,
    /// Members in turn, each as often as its weight.
    WeightedRoundRobin,
    /// The member with the fewest tracked flows.
    LeastConnections,
    /// A hash of the source address (Azure's `SourceIP`, 2-tuple affinity:
    /// source and destination address).
    SourceIpHash,
    /// A hash of source address, destination address and protocol (Azure's
    /// `SourceIPProtocol`, 3-tuple affinity).
    SourceIpProtocol,
    /// A hash of the 5-tuple (Azure's default distribution).
    #[default]
    FiveTupleHash,
}

impl Algorithm {
    /// Every algorithm with the name files write it with.
    pub const NAMES: [(&'static str, Algorithm); 6] = [
        ("round_robin", Algorithm::RoundRobin),
        ("weighted_round_robin", Algorithm::WeightedRoundRobin),
        ("least_connections", Algorithm::LeastConnections),
        ("source_ip_hash", Algorithm::SourceIpHash),
        ("source_ip_protocol", Algorithm::SourceIpProtocol),
        ("five_tuple_hash", Algorithm::FiveTupleHash),
    ];

    /// The name files write it with.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::WeightedRoundRobin => "weighted_round_robin",
            Algorithm::LeastConnections => "least_connections",
            Algorithm::SourceIpHash => "source_ip_hash",
            Algorithm::SourceIpProtocol => "source_ip_protocol",
            Algorithm::FiveTupleHash => "five_tuple_hash",
        }
    }
}

/// What a rule does with a new flow when its probe finds no member up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NoHealthyBackends {
    /// The flow gets no backend: it is refused (Azure's behaviour).
    #[default]
    Refuse,
    /// Every member counts as up (fail open, as AWS's NLB does).
    AllProbedUp,
}

/// What a frontend address is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FrontendKind {
    /// A public address on the internet edge (a public load balancer); the
    /// network has an internet gateway.
    Public,
    /// An unused address in a subnet of the network (an internal load
    /// balancer).
    Internal {
        /// The subnet (of the load balancer's network) holding the address.
        subnet: String,
    },
}

/// A frontend: an address clients connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontend {
    /// Name, unique in its load balancer.
    pub name: String,
    /// The address; unique among frontends (public ones across the lab,
    /// internal ones within their network).
    pub address: Ipv4Addr,
    /// Public or internal.
    pub kind: FrontendKind,
}

/// A member of a backend pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolMember {
    /// The host interface (in the load balancer's network or one peered
    /// with it; at most once per pool).
    pub interface: InterfaceRef,
    /// Its IPv4 address (the interface's).
    pub address: Ipv4Addr,
    /// Its relative share of new flows, `1..=MAX_WEIGHT` (default
    /// `DEFAULT_WEIGHT`).
    pub weight: u32,
    /// Removed from the pool by `sdn apply` while connections it holds
    /// finish: it takes no new ones (never set by a file).
    pub draining: bool,
}

/// A backend pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendPool {
    /// Name, unique in its load balancer.
    pub name: String,
    /// Members, as written.
    pub members: Vec<PoolMember>,
}

/// A health probe, sent to each member of the pools whose rules name it,
/// from `PROBE_SOURCE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Name, unique in its load balancer.
    pub name: String,
    /// TCP or HTTP.
    pub protocol: ProbeProtocol,
    /// The member port probed, 1..=65535.
    pub port: u16,
    /// Time between probes of a member, above zero (default
    /// `DEFAULT_PROBE_INTERVAL`).
    pub interval: Duration,
    /// How long a probe waits for its answer, above zero and below
    /// `interval` (default `default_probe_timeout(interval)`).
    pub timeout: Duration,
    /// Consecutive failures that mark an up member down, at least 1
    /// (default `DEFAULT_THRESHOLD`).
    pub unhealthy_threshold: u32,
    /// Consecutive successes that mark a down member up, at least 1
    /// (default `DEFAULT_THRESHOLD`).
    pub healthy_threshold: u32,
}

/// A load-balancing rule: flows to a frontend port spread over a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancingRule {
    /// Name, unique in its load balancer.
    pub name: String,
    /// The frontend's name (one of the load balancer's).
    pub frontend: String,
    /// Protocol.
    pub protocol: TransportProtocol,
    /// Port on the frontend, 1..=65535; no other rule or inbound NAT rule
    /// uses this frontend address, protocol and port.
    pub frontend_port: u16,
    /// Port on the members, 1..=65535 (default `frontend_port`).
    pub backend_port: u16,
    /// The pool's name (one of the load balancer's).
    pub pool: String,
    /// The probe's name (one of the load balancer's); without one, every
    /// member counts as up.
    pub probe: Option<String>,
    /// How a member is picked for a new flow (default `FiveTupleHash`).
    pub algorithm: Algorithm,
    /// How long an idle flow keeps its member, above zero (default
    /// `DEFAULT_IDLE_TIMEOUT`).
    pub idle_timeout: Duration,
    /// What happens when the probe finds no member up (default `Refuse`;
    /// no effect without a probe).
    pub no_healthy_backends: NoHealthyBackends,
}

/// An inbound NAT rule: a frontend port forwarded to one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundNatRule {
    /// Name, unique in its load balancer.
    pub name: String,
    /// The frontend's name (one of the load balancer's).
    pub frontend: String,
    /// Protocol.
    pub protocol: TransportProtocol,
    /// Port on the frontend, 1..=65535; no other rule or inbound NAT rule
    /// uses this frontend address, protocol and port.
    pub frontend_port: u16,
    /// Port on the target, 1..=65535 (default `frontend_port`).
    pub backend_port: u16,
    /// The host interface it forwards to (in the load balancer's network or
    /// one peered with it).
    pub target: InterfaceRef,
    /// The target's IPv4 address.
    pub target_address: Ipv4Addr,
}

/// A load balancer of a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancer {
    /// Name, unique among the lab's routing and edge resources.
    pub name: String,
    /// Its network.
    pub network: String,
    /// Frontends (at least one).
    pub frontends: Vec<Frontend>,
    /// Backend pools.
    pub backend_pools: Vec<BackendPool>,
    /// Health probes.
    pub probes: Vec<Probe>,
    /// Load-balancing rules.
    pub rules: Vec<LoadBalancingRule>,
    /// Inbound NAT rules.
    pub inbound_nat_rules: Vec<InboundNatRule>,
}

impl LoadBalancer {
    /// The frontend named `name`.
    pub fn frontend(&self, name: &str) -> Option<&Frontend> {
        self.frontends.iter().find(|f| f.name == name)
    }

    /// The backend pool named `name`.
    pub fn pool(&self, name: &str) -> Option<&BackendPool> {
        self.backend_pools.iter().find(|p| p.name == name)
    }

    /// The probe named `name`.
    pub fn probe(&self, name: &str) -> Option<&Probe> {
        self.probes.iter().find(|p| p.name == name)
    }
}
