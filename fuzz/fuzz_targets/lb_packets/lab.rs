//! The load balancer under test: a topology the controller compiles into
//! the flows and groups of one switch, and what the target needs to know of
//! it (ports, addresses, rules).

use sdn_controller::app::App;
use sdn_controller::reconcile::Reconciler;
use sdn_controller::routing::addresses::{edge_mac, internet_router_mac, nat_zone, router_mac};
use sdn_controller::routing::switch::Router;
use sdn_controller::security::switch::Firewall;
use sdn_controller::tables;
use sdn_controller::topology::{UPLINK_PORT, parse};
use sdn_lb::Algorithm;
use sdn_vswitch::conntrack::packet::{PROTO_TCP, PROTO_UDP};
use sdn_vswitch::flow::{FlowMod, PortNo};
use sdn_vswitch::pipeline::balance::GroupSpec;
use sdn_vswitch::wire::EthernetAddress;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

/// One switch, three web backends behind a public frontend.
const TOPOLOGY: &str = r#"
name: lbfuzz
networks:
  - name: hub
    cidr: 10.30.0.0/16
    subnets:
      - { name: web, cidr: 10.30.1.0/24 }
switches:
  - name: sw1
    ports:
      - { name: p1 }
      - { name: p2 }
      - { name: p3 }
hosts:
  - { name: web1, interfaces: [{ name: eth0, subnet: hub/web, address: 10.30.1.11/24 }] }
  - { name: web2, interfaces: [{ name: eth0, subnet: hub/web, address: 10.30.1.12/24 }] }
  - { name: web3, interfaces: [{ name: eth0, subnet: hub/web, address: 10.30.1.13/24 }] }
links:
  - [web1:eth0, sw1:p1]
  - [web2:eth0, sw1:p2]
  - [web3:eth0, sw1:p3]
internet:
  hosts:
    - { name: client, address: 198.51.100.20 }
internet_gateways:
  - { name: igw-hub, network: hub }
load_balancers:
  - name: web-lb
    network: hub
    frontends:
      - { name: public, address: 203.0.113.50 }
    backend_pools:
      - name: web
        members:
          - { interface: web1:eth0 }
          - { interface: web2:eth0, weight: 2 }
          - { interface: web3:eth0 }
    rules:
      - { name: http, frontend: public, protocol: tcp, frontend_port: 80, backend_port: 8080, pool: web }
      - { name: dns, frontend: public, protocol: udp, frontend_port: 53, backend_port: 5353, pool: web }
      - { name: https, frontend: public, protocol: tcp, frontend_port: 443, backend_port: 8443, pool: web }
    inbound_nat_rules:
      - { name: ssh-web1, frontend: public, protocol: tcp, frontend_port: 2201, backend_port: 22, target: web1:eth0 }
"#;

/// The switch the load balancer's members are on.
const SWITCH: &str = "sw1";
/// The public frontend.
pub(crate) const FRONTEND: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 50);
/// The rules, in the file's order (so group `i + 1`): protocol, frontend
/// port, backend port.
pub(crate) const RULES: [(u8, u16, u16); 3] = [
    (PROTO_TCP, 80, 8080),
    (PROTO_UDP, 53, 5353),
    (PROTO_TCP, 443, 8443),
];
/// The inbound NAT rule's frontend port.
pub(crate) const NAT_RULE_PORT: u16 = 2201;
/// The algorithm four bits pick. The hashing ones build a Maglev table of
/// 65,537 slots with each group, which takes milliseconds under the
/// fuzzer's instrumentation: they come up less often.
pub(crate) fn algorithm(bits: u8) -> Algorithm {
    match bits % 16 {
        0..=3 => Algorithm::RoundRobin,
        4..=7 => Algorithm::WeightedRoundRobin,
        8..=12 => Algorithm::LeastConnections,
        13 => Algorithm::SourceIpHash,
        14 => Algorithm::SourceIpProtocol,
        _ => Algorithm::FiveTupleHash,
    }
}
/// Weights an input byte picks from: none, small, the topology's largest and
/// the largest the wire carries.
pub(crate) const WEIGHTS: [u32; 8] = [0, 1, 1, 2, 3, 7, 100, u32::MAX];

/// A pool member as the switch sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Member {
    /// Its id in the groups (the controller uses the address).
    pub(crate) id: u32,
    /// Its address and MAC.
    pub(crate) addr: Ipv4Addr,
    pub(crate) mac: EthernetAddress,
    /// The switch port it is on.
    pub(crate) port: PortNo,
}

/// What the controller would install on the switch, compiled once.
pub(crate) struct Lab {
    /// Every flow of its control session (skeleton, L2, firewall, routing).
    pub(crate) flows: Vec<FlowMod>,
    /// The groups, one per rule in the file's order.
    pub(crate) groups: Vec<GroupSpec>,
    /// The switch's ports, the uplink last.
    pub(crate) ports: Vec<PortNo>,
    /// The backend pool's members.
    pub(crate) members: Vec<Member>,
    /// The switch's address on the uplink, and the internet router's.
    pub(crate) edge: EthernetAddress,
    pub(crate) internet: EthernetAddress,
    /// The gateway MAC hosts send routed frames to.
    pub(crate) router: EthernetAddress,
    /// The conntrack zone the load balancer's connections are tracked in.
    pub(crate) zone: u16,
}

/// The lab, compiled on first use.
pub(crate) static LAB: LazyLock<Lab> = LazyLock::new(|| {
    let topology = parse(TOPOLOGY, Path::new("lbfuzz.yaml")).expect("the fuzz topology is valid");
    let mut r = Reconciler::new();
    for spec in tables::skeleton() {
        r.want(spec);
    }
    App::for_switch(&topology, SWITCH, Duration::from_secs(300)).want_base(&mut r);
    Firewall::for_switch(&topology, SWITCH).want(&mut r);
    let mut router = Router::for_switch(&topology, SWITCH);
    router.want(&mut r);
    let groups: Vec<GroupSpec> = router
        .compiled()
        .groups
        .iter()
        .map(|g| g.spec.clone())
        .collect();
    assert_eq!(groups.len(), RULES.len(), "one group per rule");
    let switch = topology
        .switch(SWITCH)
        .expect("the switch is in the topology");
    let members = ["web1", "web2", "web3"]
        .iter()
        .map(|name| {
            let interface = &topology
                .host(name)
                .expect("the host is in the topology")
                .interfaces[0];
            let IpAddr::V4(addr) = interface.address else {
                panic!("{name} has an IPv4 address");
            };
            let (_, port) = topology
                .switch_of(name, &interface.name)
                .expect("the host is linked to the switch");
            Member {
                id: u32::from(addr),
                addr,
                port: port.number,
                mac: interface.mac,
            }
        })
        .collect();
    let mut ports: Vec<PortNo> = switch.ports.iter().map(|p| p.number).collect();
    ports.push(UPLINK_PORT);
    Lab {
        flows: r.sync_all(),
        groups,
        ports,
        members,
        edge: edge_mac(&topology.name, SWITCH, "hub"),
        internet: internet_router_mac(&topology.name),
        router: router_mac(&topology.name),
        zone: nat_zone(0),
    }
});

impl Lab {
    /// The member at `addr`.
    pub(crate) fn member_at(&self, addr: Ipv4Addr) -> Option<Member> {
        self.members.iter().copied().find(|m| m.addr == addr)
    }

    /// The member behind `port`.
    pub(crate) fn member_on(&self, port: PortNo) -> Option<Member> {
        self.members.iter().copied().find(|m| m.port == port)
    }
}

/// The group of a rule by its index (groups count from 1).
pub(crate) fn group_of(index: usize) -> u32 {
    index as u32 + 1
}

/// A client on the internet, one of four.
pub(crate) fn client_address(selector: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, 20 + selector % 4)
}
