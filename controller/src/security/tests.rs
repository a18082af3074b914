//! The compiled tables against the reference evaluator: random NSG and ACG
//! rule sets on three interfaces of one switch, random first packets between
//! them and an unfiltered host, run through a real pipeline.

use super::compile::{ProtectedPort, SwitchFirewall, compile};
use super::eval::allows;
use super::rules::*;
use crate::tables::{self, FORWARD};
use ipnet::Ipv4Net;
use proptest::prelude::*;
use sdn_vswitch::flow::{Action, FlowMod, FlowSpec, MacMatch, Match};
use sdn_vswitch::pipeline::{Decision, FrameMeta, OwnedFrame, Pipeline};
use sdn_vswitch::testutil::{FrameBuilder, mac};
use sdn_vswitch::wire::TcpFlags;
use std::net::Ipv4Addr;
use std::time::Instant;

/// Hosts 1..=4 on ports 1..=4 with MAC n and 10.0.0.n; 4 is unfiltered.
const HOSTS: u8 = 4;

fn host_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

fn vnet() -> Vec<Ipv4Net> {
    vec!["10.0.0.0/24".parse().unwrap()]
}

fn addresses() -> impl Strategy<Value = Addresses> {
    prop_oneof![
        Just(Addresses::Any),
        (1..=HOSTS).prop_map(|n| Addresses::Prefixes(vec![Ipv4Net::new(host_ip(n), 32).unwrap()])),
        Just(Addresses::Prefixes(vec!["10.0.0.0/30".parse().unwrap()])),
        Just(Addresses::Prefixes(vec![])),
    ]
}

fn ports() -> impl Strategy<Value = Vec<PortRange>> {
    prop_oneof![
        3 => Just(vec![PortRange::ANY]),
        2 => (0u16..4).prop_map(|i| vec![PortRange { lo: 80 + i, hi: 80 + i }]),
        1 => Just(vec![PortRange { lo: 80, hi: 81 }, PortRange { lo: 1000, hi: 1003 }]),
    ]
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![
        Just(Protocol::Any),
        Just(Protocol::Tcp),
        Just(Protocol::Udp),
        Just(Protocol::Icmp),
        Just(Protocol::Esp),
        Just(Protocol::Ah)
    ]
}

fn rule(
    group: String,
    index: usize,
    priority: u32,
    direction: Direction,
) -> impl Strategy<Value = Rule> {
    (
        any::<bool>(),
        protocol(),
        addresses(),
        ports(),
        addresses(),
        ports(),
    )
        .prop_map(
            move |(allow, protocol, src, src_ports, dst, dst_ports)| Rule {
                origin: RuleRef {
                    group: group.clone(),
                    rule: format!("r{index}"),
                    direction,
                    priority,
                },
                access: if allow { Access::Allow } else { Access::Deny },
                protocol,
                src,
                src_ports,
                dst,
                dst_ports,
            },
        )
}

fn nsg(name: &'static str) -> impl Strategy<Value = Layer> {
    let direction = prop_oneof![Just(Direction::Inbound), Just(Direction::Outbound)];
    prop::collection::vec((direction, 1u32..40), 0..6)
        .prop_flat_map(move |heads| {
            let rules: Vec<_> = heads
                .iter()
                .enumerate()
                // Unique priorities per direction: the index breaks ties.
                .map(|(i, &(d, p))| rule(name.into(), i, p * 100 + i as u32, d))
                .collect();
            rules
        })
        .prop_map(move |mut rules| {
            rules.extend(nsg_defaults(
                name,
                &vnet(),
                &crate::topology::routing::INTERNET_RANGES,
            ));
            sort_nsg(&mut rules);
            Layer::Nsg {
                name: name.into(),
                rules,
            }
        })
}

fn acg() -> impl Strategy<Value = Layer> {
    let direction = prop_oneof![Just(Direction::Inbound), Just(Direction::Outbound)];
    prop::collection::vec(direction, 0..6)
        .prop_flat_map(|dirs| {
            let rules: Vec<_> = dirs
                .iter()
                .enumerate()
                .map(|(i, &d)| rule(format!("acg{}", i % 3), i, 0, d))
                .collect();
            rules
        })
        .prop_map(|rules| {
            let rules: Vec<Rule> = rules
                .into_iter()
                .map(|r| Rule {
                    access: Access::Allow,
                    ..r
                })
                .collect();
            Layer::Acg {
                names: vec!["acg0".into(), "acg1".into(), "acg2".into()],
                outbound_open: !rules
                    .iter()
                    .any(|r| r.origin.direction == Direction::Outbound),
                rules,
            }
        })
}

fn policy() -> impl Strategy<Value = PortPolicy> {
    let nic = prop_oneof![Just(None), nsg("nic").prop_map(Some), acg().prop_map(Some)];
    let subnet = prop_oneof![2 => Just(None), 1 => nsg("subnet").prop_map(Some)];
    (subnet, nic).prop_map(|(subnet, nic)| PortPolicy { subnet, nic })
}

/// A first packet: protocol, hosts and ports.
#[derive(Debug, Clone, Copy)]
struct Probe {
    proto: u8,
    from: u8,
    to: u8,
    sport: u16,
    dport: u16,
}

fn probe() -> impl Strategy<Value = Probe> {
    (
        prop_oneof![Just(proto::TCP), Just(proto::UDP), Just(proto::ICMP)],
        1..=HOSTS,
        1..=HOSTS,
        prop_oneof![Just(1000u16), Just(1002), Just(5000), 79u16..84],
        79u16..84,
    )
        .prop_filter("two hosts", |(_, a, b, _, _)| a != b)
        .prop_map(|(proto, from, to, sport, dport)| Probe {
            proto,
            from,
            to,
            sport,
            dport,
        })
}

fn frame(proto: u8, from: u8, to: u8, sport: u16, dport: u16, reply: bool) -> Vec<u8> {
    let (src, dst) = (host_ip(from), host_ip(to));
    let builder = match proto {
        proto::TCP => {
            let b = FrameBuilder::tcp4(&format!("{src}:{sport}"), &format!("{dst}:{dport}"), b"");
            if reply {
                b.tcp_flags(TcpFlags::SYN | TcpFlags::ACK)
                    .tcp_seq_ack(900, 2)
            } else {
                b.tcp_flags(TcpFlags::SYN).tcp_seq_ack(1, 0)
            }
        }
        proto::UDP => {
            FrameBuilder::udp4(&format!("{src}:{sport}"), &format!("{dst}:{dport}"), b"x")
        }
        _ => FrameBuilder::icmp4_echo(&src.to_string(), &dst.to_string(), 1).echo_reply(reply),
    };
    builder.src_mac(mac(from)).dst_mac(mac(to)).build()
}

fn delivered(p: &mut Pipeline, bytes: Vec<u8>, in_port: u32, to: u32, now: Instant) -> bool {
    let mut f = OwnedFrame::new(&bytes);
    let mut d = Decision::default();
    p.process(&mut f, FrameMeta::plain(in_port), now, &mut d);
    d.outputs.iter().any(|o| o.port == to)
}

fn pipeline_for(policies: &[PortPolicy]) -> Pipeline {
    let now = Instant::now();
    let fw = SwitchFirewall {
        ports: policies
            .iter()
            .enumerate()
            .filter(|(_, policy)| !policy.is_empty())
            .map(|(i, policy)| ProtectedPort {
                port: i as u32 + 1,
                mac: mac(i as u8 + 1),
                address: host_ip(i as u8 + 1),
                policy: policy.clone(),
                forwards: false,
            })
            .collect(),
        log_denied: false,
    };
    let mut p = Pipeline::new();
    p.set_ports(&[1, 2, 3, 4]);
    let compiled = compile(&fw);
    for spec in tables::skeleton().into_iter().chain(compiled.flows) {
        p.apply_flow_mod(&FlowMod::add(spec), now).unwrap();
    }
    for n in 1..=HOSTS {
        let m = Match {
            eth_dst: Some(MacMatch::exact(mac(n))),
            ..Match::default()
        };
        let spec = FlowSpec::new(FORWARD, 1, m, vec![Action::Output(u32::from(n))]);
        p.apply_flow_mod(&FlowMod::add(spec), now).unwrap();
    }
    p
}

fn expected(policies: &[PortPolicy], probe: &Probe) -> bool {
    let packet = Packet {
        proto: probe.proto,
        src: host_ip(probe.from),
        dst: host_ip(probe.to),
        sport: if probe.proto == proto::ICMP {
            0
        } else {
            probe.sport
        },
        dport: if probe.proto == proto::ICMP {
            0
        } else {
            probe.dport
        },
    };
    allows(
        &policies[usize::from(probe.from) - 1],
        Direction::Outbound,
        &packet,
    ) && allows(
        &policies[usize::from(probe.to) - 1],
        Direction::Inbound,
        &packet,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn compiled_tables_agree_with_the_reference(
        policies in prop::collection::vec(policy(), 3),
        probes in prop::collection::vec(probe(), 1..12),
    ) {
        let mut policies = policies;
        policies.push(PortPolicy::default());
        let mut p = pipeline_for(&policies);
        let now = Instant::now();
        for probe in &probes {
            // Each probe opens a connection of its own: a tuple reused the
            // other way round while tracked is conntrack's business, not
            // the rules'.
            p.conntrack_mut().flush(None);
            let first = frame(probe.proto, probe.from, probe.to, probe.sport, probe.dport, false);
            let passed = delivered(&mut p, first, u32::from(probe.from), u32::from(probe.to), now);
            prop_assert_eq!(passed, expected(&policies, probe), "{:?} under {:#?}", probe, policies);
            if passed {
                // The reply of an allowed connection always comes back.
                let reply = frame(probe.proto, probe.to, probe.from, probe.dport, probe.sport, true);
                prop_assert!(delivered(&mut p, reply, u32::from(probe.to), u32::from(probe.from), now));
            }
        }
    }
}

#[test]
fn deny_at_100_beats_allow_at_200() {
    let rule = |priority, access| Rule {
        origin: RuleRef {
            group: "web".into(),
            rule: format!("p{priority}"),
            direction: Direction::Inbound,
            priority,
        },
        access,
        protocol: Protocol::Tcp,
        src: Addresses::Any,
        src_ports: vec![PortRange::ANY],
        dst: Addresses::Any,
        dst_ports: vec![PortRange { lo: 80, hi: 80 }],
    };
    let mut rules = vec![rule(200, Access::Allow), rule(100, Access::Deny)];
    rules.extend(nsg_defaults(
        "web",
        &vnet(),
        &crate::topology::routing::INTERNET_RANGES,
    ));
    sort_nsg(&mut rules);
    let policy = PortPolicy {
        subnet: None,
        nic: Some(Layer::Nsg {
            name: "web".into(),
            rules,
        }),
    };
    let policies = vec![
        policy,
        PortPolicy::default(),
        PortPolicy::default(),
        PortPolicy::default(),
    ];
    let mut p = pipeline_for(&policies);
    let now = Instant::now();
    // Port 80 is denied even from inside the virtual network; 81 is allowed by AllowVnetInBound.
    assert!(!delivered(
        &mut p,
        frame(proto::TCP, 4, 1, 1000, 80, false),
        4,
        1,
        now
    ));
    assert!(delivered(
        &mut p,
        frame(proto::TCP, 4, 1, 1000, 81, false),
        4,
        1,
        now
    ));
}

#[test]
fn a_filtered_interface_sends_from_its_own_address_only() {
    let open = Layer::Acg {
        names: vec!["open".into()],
        rules: Vec::new(),
        outbound_open: true,
    };
    let policies = vec![
        PortPolicy {
            subnet: None,
            nic: Some(open),
        },
        PortPolicy::default(),
        PortPolicy::default(),
        PortPolicy::default(),
    ];
    let mut p = pipeline_for(&policies);
    let now = Instant::now();
    assert!(delivered(
        &mut p,
        frame(proto::UDP, 1, 4, 1000, 80, false),
        1,
        4,
        now
    ));
    // The same datagram with another host's source address.
    let forged = FrameBuilder::udp4("10.0.0.3:1000", "10.0.0.4:80", b"x")
        .src_mac(mac(1))
        .dst_mac(mac(4))
        .build();
    assert!(!delivered(&mut p, forged, 1, 4, now));
}
