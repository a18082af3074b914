//! The routing flows in a real pipeline, against the reference lookup: for
//! random route tables and destinations, the route entry a packet hits is
//! the one the plain longest-prefix match over the subnet's effective
//! routes picks.

use super::addresses::router_mac;
use super::compile::{COOKIE_KIND_MASK, COOKIE_ROUTE, compile};
use super::routes::{Hop, Source, lookup, subnet_routes};
use crate::tables;
use crate::topology::{Topology, parse};
use proptest::prelude::*;
use sdn_vswitch::flow::{FlowMod, Match};
use sdn_vswitch::pipeline::{Decision, FrameMeta, OwnedFrame, Pipeline};
use sdn_vswitch::testutil::FrameBuilder;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Instant;

/// Two peered networks, an internet gateway, an appliance, and a route
/// table on `web` holding `routes` (YAML flow mappings).
fn lab(routes: &[String]) -> String {
    let table = if routes.is_empty() {
        String::new()
    } else {
        format!(
            "route_tables:\n  - name: rt\n    subnets: [vnet/web]\n    routes:\n{}",
            routes
                .iter()
                .map(|r| format!("      - {r}\n"))
                .collect::<String>()
        )
    };
    format!(
        "name: rt
networks:
  - name: vnet
    cidr: 10.0.0.0/16
    subnets:
      - {{ name: web, cidr: 10.0.1.0/24 }}
      - {{ name: app, cidr: 10.0.2.0/24 }}
  - name: other
    cidr: 10.1.0.0/16
    subnets: [{{ name: db, cidr: 10.1.0.0/24 }}]
peerings:
  - [vnet, other]
internet: {{}}
internet_gateways:
  - {{ name: igw, network: vnet }}
switches:
  - name: sw1
    ports: [{{ name: p1 }}, {{ name: p2 }}, {{ name: p3 }}]
hosts:
  - {{ name: web1, interfaces: [{{ name: eth0, subnet: vnet/web, address: 10.0.1.10/24 }}] }}
  - {{ name: nva, interfaces: [{{ name: eth0, subnet: vnet/app, address: 10.0.2.4/24, ip_forward: true }}] }}
  - {{ name: db1, interfaces: [{{ name: eth0, subnet: other/db, address: 10.1.0.10/24 }}] }}
links:
  - [web1:eth0, sw1:p1]
  - [nva:eth0, sw1:p2]
  - [db1:eth0, sw1:p3]
{table}"
    )
}

fn pipeline_of(topology: &Topology) -> (Pipeline, super::compile::CompiledRouting) {
    let now = Instant::now();
    let compiled = compile(topology, "sw1");
    let mut p = Pipeline::new();
    p.set_ports(&[1, 2, 3]);
    for spec in tables::skeleton().into_iter().chain(compiled.flows.clone()) {
        p.apply_flow_mod(&FlowMod::add(spec), now)
            .expect("the routing flows install");
    }
    (p, compiled)
}

/// The route the pipeline used for a packet from web1 to `dst`: the route
/// entry whose counter moved.
fn route_taken(
    p: &mut Pipeline,
    compiled: &super::compile::CompiledRouting,
    dst: Ipv4Addr,
) -> Option<super::routes::EffectiveRoute> {
    let now = Instant::now();
    let before = p.flow_stats(Some(tables::ROUTE), &Match::default(), 0, 0, now);
    let frame = FrameBuilder::udp4("10.0.1.10:5000", &format!("{dst}:53"), b"q")
        .dst_mac(router_mac("rt"))
        .build();
    let mut f = OwnedFrame::new(&frame);
    let mut d = Decision::default();
    p.process(&mut f, FrameMeta::plain(1), now, &mut d);
    let after = p.flow_stats(Some(tables::ROUTE), &Match::default(), 0, 0, now);
    let moved = after
        .iter()
        .zip(&before)
        .find(|(a, b)| a.packets > b.packets)
        .map(|(a, _)| a.spec.cookie)?;
    if moved & COOKIE_KIND_MASK != COOKIE_ROUTE {
        return None;
    }
    compiled.route_of(moved).map(|r| r.route.clone())
}

#[test]
fn system_routes_of_a_subnet() {
    let t = parse(&lab(&[]), Path::new("t.yaml")).unwrap();
    let routes = subnet_routes(&t, "vnet", "web");
    let shown: Vec<(Source, String, &str)> = routes
        .iter()
        .map(|r| (r.source, r.prefix.to_string(), r.hop.type_name()))
        .collect();
    assert_eq!(
        shown,
        vec![
            (Source::System, "10.0.0.0/16".into(), "VnetLocal"),
            (Source::Peering, "10.1.0.0/16".into(), "VNetPeering"),
            (Source::System, "0.0.0.0/0".into(), "Internet"),
        ]
    );
    let with_user = parse(
        &lab(&[
            "{ name: via-nva, prefix: 10.1.0.0/16, next_hop: { virtual_appliance: 10.0.2.4 } }"
                .into(),
        ]),
        Path::new("t.yaml"),
    )
    .unwrap();
    let routes = subnet_routes(&with_user, "vnet", "web");
    let peering = routes.iter().find(|r| r.source == Source::Peering).unwrap();
    assert!(
        !peering.active,
        "the user route of the same prefix takes over"
    );
    let chosen = lookup(&routes, "10.1.0.10".parse().unwrap()).unwrap();
    assert_eq!(
        chosen.hop,
        Hop::VirtualAppliance("10.0.2.4".parse().unwrap())
    );
    assert_eq!(
        subnet_routes(&with_user, "vnet", "app").len(),
        3,
        "the table is web's only"
    );
}

/// A random user route: a prefix around the lab's addresses, and a next hop.
fn route_strategy() -> impl Strategy<Value = (u32, u8, u8)> {
    (
        prop_oneof![
            Just(0x0a00_0000u32),
            Just(0x0a01_0000u32),
            Just(0x0a00_0100u32),
            any::<u32>(),
            (0u32..0x0003_0000).prop_map(|x| 0x0a00_0000 | x),
        ],
        0u8..=32,
        0u8..3,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// For random route tables and destinations the compiled tables take the
    /// route the reference longest-prefix match picks (none: the no-route
    /// entry).
    #[test]
    fn compiled_routes_follow_the_reference_lookup(
        user in proptest::collection::vec(route_strategy(), 0..6),
        dsts in proptest::collection::vec(
            prop_oneof![any::<u32>(), (0u32..0x0002_0000).prop_map(|x| 0x0a00_0000 | x)],
            1..12,
        ),
    ) {
        let mut seen = std::collections::BTreeSet::new();
        let routes: Vec<String> = user
            .iter()
            .enumerate()
            .filter_map(|(i, &(addr, len, hop))| {
                let net = ipnet::Ipv4Net::new(Ipv4Addr::from(addr), len).ok()?.trunc();
                seen.insert(net).then(|| {
                    let hop = match hop {
                        0 => "none",
                        1 => "internet",
                        _ => "{ virtual_appliance: 10.0.2.4 }",
                    };
                    format!("{{ name: r{i}, prefix: {net}, next_hop: {hop} }}")
                })
            })
            .collect();
        let t = parse(&lab(&routes), Path::new("t.yaml")).expect("a valid lab");
        let (mut p, compiled) = pipeline_of(&t);
        let reference = subnet_routes(&t, "vnet", "web");
        for dst in dsts {
            let dst = Ipv4Addr::from(dst);
            let want = lookup(&reference, dst).cloned();
            let got = route_taken(&mut p, &compiled, dst);
            prop_assert_eq!(got, want, "to {}", dst);
        }
    }
}
