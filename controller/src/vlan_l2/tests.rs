//! The VLAN application's entries run in a real pipeline: frames built here go
//! through the tables it programs, packet-ins come back to it, and what leaves
//! each port is checked byte by byte.

use super::*;
use crate::plan::plan;
use crate::topology::parse;
use sdn_vswitch::flow::FlowSpec;
use sdn_vswitch::pipeline::{Decision, FrameMeta, OwnedFrame, Pipeline, TunnelTarget};
use sdn_vswitch::testutil::{FrameBuilder, mac};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

const AGING: Duration = Duration::from_secs(300);
const HV2: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 2);

/// One copy of a frame leaving the switch.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    port: PortNo,
    tunnel: Option<TunnelTarget>,
    bytes: Vec<u8>,
}

/// A switch running the application's entries, with the controller in the loop.
struct Harness {
    app: VlanSwitch,
    r: Reconciler,
    pipeline: Pipeline,
    ports: BTreeMap<String, PortNo>,
    now: Instant,
}

impl Harness {
    fn new(yaml: &str, switch: &str) -> Harness {
        let topology = parse(yaml, Path::new("test.yaml")).unwrap();
        let plan = plan(&topology, switch).unwrap();
        let ports: BTreeMap<String, PortNo> = plan
            .ports
            .iter()
            .map(|p| (p.name.clone(), p.number))
            .collect();
        let mut numbers: Vec<PortNo> = ports.values().copied().collect();
        if plan.tunnel.is_some() {
            numbers.push(TUNNEL_PORT);
        }
        let app = VlanSwitch::new(plan, AGING, 64);
        let mut r = Reconciler::new();
        for spec in crate::tables::skeleton() {
            r.want(spec);
        }
        app.want_base(&mut r);
        let mut pipeline = Pipeline::new();
        pipeline.set_ports(&numbers);
        let now = Instant::now();
        for m in r.sync_all() {
            pipeline.apply_flow_mod(&m, now).unwrap();
        }
        Harness {
            app,
            r,
            pipeline,
            ports,
            now,
        }
    }

    fn vlan() -> Harness {
        Harness::new(include_str!("../../../topologies/vlan.yaml"), "sw1")
    }

    fn vxlan() -> Harness {
        Harness::new(include_str!("../../../topologies/vxlan.yaml"), "sw1")
    }

    fn port(&self, name: &str) -> PortNo {
        self.ports[name]
    }

    /// Sends `frame` in on `in_port`; returns what left, after the
    /// application handled any packet-in.
    fn send(&mut self, in_port: PortNo, frame: &[u8], tunnel: Option<TunnelMeta>) -> Vec<Sent> {
        let mut buffer = OwnedFrame::new(frame);
        let mut d = Decision::default();
        let meta = FrameMeta {
            tunnel,
            ..FrameMeta::plain(in_port)
        };
        self.pipeline.process(&mut buffer, meta, self.now, &mut d);
        let last = buffer.into_vec();
        let mut sent: Vec<Sent> = d
            .snapshots
            .iter()
            .map(|(o, bytes)| Sent {
                port: o.port,
                tunnel: o.tunnel,
                bytes: bytes.clone(),
            })
            .collect();
        sent.extend(d.outputs.iter().map(|o| Sent {
            port: o.port,
            tunnel: o.tunnel,
            bytes: last.clone(),
        }));
        if let Some(request) = d.controller {
            let seen = d.controller_frame.clone().unwrap_or(last.clone());
            let keep = seen.len().min(usize::from(request.max_len));
            let ids = self
                .app
                .on_packet_in(in_port, &seen[..keep], tunnel, &mut self.r);
            self.apply(&ids);
        }
        sent
    }

    fn apply(&mut self, ids: &[FlowId]) {
        for m in self.r.sync_ids(ids) {
            self.pipeline.apply_flow_mod(&m, self.now).unwrap();
        }
    }

    /// Packets counted by the entries with cookie kind `kind`.
    fn counted(&self, kind: u64) -> u64 {
        self.pipeline
            .flow_stats(None, &Match::default(), 0, 0, self.now)
            .iter()
            .filter(|s| s.spec.cookie & COOKIE_KIND_MASK == kind)
            .map(|s| s.packets)
            .sum()
    }

    fn installed(&self) -> Vec<FlowSpec> {
        self.pipeline
            .flow_stats(None, &Match::default(), 0, 0, self.now)
            .into_iter()
            .map(|s| s.spec)
            .collect()
    }
}

fn tci_of(frame: &[u8]) -> Option<u16> {
    (frame.get(12..14)? == [0x81, 0x00]).then(|| u16::from_be_bytes([frame[14], frame[15]]))
}

fn from(src: u8, dst: EthernetAddress) -> FrameBuilder {
    FrameBuilder::udp4("10.10.0.1:1000", "10.10.0.2:2000", b"hello")
        .src_mac(mac(src))
        .dst_mac(dst)
}

fn broadcast_from(src: u8) -> Vec<u8> {
    from(src, EthernetAddress::BROADCAST).build()
}

fn ports_of(sent: &[Sent]) -> Vec<PortNo> {
    let mut ports: Vec<PortNo> = sent.iter().map(|s| s.port).collect();
    ports.sort();
    ports
}

fn to(sent: &[Sent], port: PortNo) -> &Sent {
    sent.iter()
        .find(|s| s.port == port)
        .unwrap_or_else(|| panic!("nothing sent to port {port}: {sent:?}"))
}

#[test]
fn a_broadcast_stays_in_its_vlan_tagged_on_trunks_untagged_on_access_ports() {
    let mut h = Harness::vlan();
    let (p1, p2, p3, t1) = (h.port("p1"), h.port("p2"), h.port("p3"), h.port("t1"));
    let frame = broadcast_from(1);
    let sent = h.send(p1, &frame, None);
    assert_eq!(
        ports_of(&sent),
        vec![t1],
        "VLAN 10 has no other access port on sw1"
    );
    let on_trunk = &to(&sent, t1).bytes;
    assert_eq!(tci_of(on_trunk), Some(10));
    assert_eq!(
        &on_trunk[16..],
        &frame[12..],
        "the tag is inserted, the rest is intact"
    );

    // From the trunk in VLAN 20: to p2 untagged, never to p1 or p3.
    let tagged = from(2, EthernetAddress::BROADCAST).vlan(20, 0).build();
    let sent = h.send(t1, &tagged, None);
    assert_eq!(ports_of(&sent), vec![p2]);
    assert_eq!(
        to(&sent, p2).bytes,
        broadcast_from(2),
        "the tag comes off at the access port"
    );

    // The native VLAN crosses the trunk untagged, both ways.
    let sent = h.send(p3, &broadcast_from(3), None);
    assert_eq!(ports_of(&sent), vec![t1]);
    assert_eq!(tci_of(&to(&sent, t1).bytes), None);
    let sent = h.send(t1, &broadcast_from(4), None);
    assert_eq!(ports_of(&sent), vec![p3]);
    assert_eq!(to(&sent, p3).bytes, broadcast_from(4));
}

#[test]
fn learning_is_per_vlan() {
    let mut h = Harness::vlan();
    let (p1, p2, t1) = (h.port("p1"), h.port("p2"), h.port("t1"));
    // Host 1 speaks in VLAN 10 on p1; the application learns it there.
    h.send(p1, &broadcast_from(1), None);
    assert_eq!(h.app.learned(), 1);
    let reply = from(9, mac(1)).vlan(10, 0).build();
    let sent = h.send(t1, &reply, None);
    assert_eq!(ports_of(&sent), vec![p1], "known in VLAN 10: unicast");
    assert_eq!(tci_of(&to(&sent, p1).bytes), None);
    // The same MAC asked for in VLAN 20 is unknown there: flooded in VLAN 20 only.
    let other_vlan = from(8, mac(1)).vlan(20, 0).build();
    assert_eq!(ports_of(&h.send(t1, &other_vlan, None)), vec![p2]);
    // Learned entries age and come out.
    let learned = h
        .installed()
        .iter()
        .filter(|f| f.cookie & COOKIE_KIND_MASK == COOKIE_VLAN_DST)
        .count();
    assert_eq!(
        learned, 3,
        "host 1 in VLAN 10, hosts 9 and 8 behind the trunk"
    );
    assert!(
        h.installed()
            .iter()
            .any(|f| f.matcher.in_port == Some(t1) && f.matcher.vlan == Some(VlanMatch::Vid(10)))
    );
}

#[test]
fn frames_breaking_the_vlan_rules_are_dropped_and_counted() {
    let mut h = Harness::vlan();
    let (p1, t1) = (h.port("p1"), h.port("t1"));
    let tagged_on_access = from(1, EthernetAddress::BROADCAST).vlan(10, 0).build();
    assert!(h.send(p1, &tagged_on_access, None).is_empty());
    let vid_not_carried = from(2, EthernetAddress::BROADCAST).vlan(99, 0).build();
    assert!(h.send(t1, &vid_not_carried, None).is_empty());
    let priority_tagged = from(3, EthernetAddress::BROADCAST).vlan(0, 5).build();
    assert!(h.send(p1, &priority_tagged, None).is_empty());
    assert_eq!(h.counted(COOKIE_VLAN_DROP), 3);
    assert_eq!(h.app.learned(), 0, "nothing learned from refused frames");
}

#[test]
fn a_trunk_without_native_vlan_refuses_untagged_frames() {
    let yaml = include_str!("../../../topologies/vlan.yaml").replace(", native_vlan: 30", "");
    let mut h = Harness::new(&yaml, "sw1");
    let (p3, t1) = (h.port("p3"), h.port("t1"));
    assert!(h.send(t1, &broadcast_from(4), None).is_empty());
    assert_eq!(h.counted(COOKIE_VLAN_DROP), 1);
    assert!(
        h.send(p3, &broadcast_from(3), None).is_empty(),
        "VLAN 30 now lives on p3 alone"
    );
}

#[test]
fn access_pcp_is_set_on_the_tag() {
    let yaml = include_str!("../../../topologies/vlan.yaml").replacen(
        "{ name: p1, mode: access, vlan: 10 }",
        "{ name: p1, mode: access, vlan: 10, pcp: 5 }",
        1,
    );
    let mut h = Harness::new(&yaml, "sw1");
    let (p1, t1) = (h.port("p1"), h.port("t1"));
    let sent = h.send(p1, &broadcast_from(1), None);
    assert_eq!(tci_of(&to(&sent, t1).bytes), Some((5 << 13) | 10));
}

#[test]
fn a_broadcast_goes_to_each_remote_endpoint_of_its_vni() {
    let mut h = Harness::vxlan();
    let (p1, p2) = (h.port("p1"), h.port("p2"));
    let frame = broadcast_from(1);
    let sent = h.send(p1, &frame, None);
    assert_eq!(
        sent,
        vec![Sent {
            port: TUNNEL_PORT,
            tunnel: Some(TunnelTarget {
                vni: 5001,
                dst: HV2
            }),
            bytes: frame
        }]
    );
    let sent = h.send(p2, &broadcast_from(2), None);
    assert_eq!(ports_of(&sent), vec![TUNNEL_PORT]);
    assert_eq!(
        sent[0].tunnel,
        Some(TunnelTarget {
            vni: 5002,
            dst: HV2
        }),
        "tenant B's VNI"
    );
}

#[test]
fn hosts_behind_remote_endpoints_are_programmed() {
    let yaml = include_str!("../../../topologies/vxlan.yaml");
    let topology = parse(yaml, Path::new("vxlan.yaml")).unwrap();
    let a2 = topology.host("a2").unwrap().interfaces[0].mac;
    let b2 = topology.host("b2").unwrap().interfaces[0].mac;
    let mut h = Harness::vxlan();
    let (p1, p2) = (h.port("p1"), h.port("p2"));
    let sent = h.send(p1, &from(1, a2).build(), None);
    assert_eq!(ports_of(&sent), vec![TUNNEL_PORT]);
    assert_eq!(
        sent[0].tunnel,
        Some(TunnelTarget {
            vni: 5001,
            dst: HV2
        })
    );
    // Tenant B's host asking for tenant A's MAC does not reach it: VLAN 20 floods.
    let sent = h.send(p2, &from(2, a2).build(), None);
    assert_eq!(
        sent[0].tunnel,
        Some(TunnelTarget {
            vni: 5002,
            dst: HV2
        })
    );
    let sent = h.send(p2, &from(2, b2).build(), None);
    assert_eq!(
        sent[0].tunnel,
        Some(TunnelTarget {
            vni: 5002,
            dst: HV2
        })
    );
    assert_eq!(
        h.counted(COOKIE_REMOTE),
        2,
        "a2 and b2 via their programmed entries"
    );
}

#[test]
fn frames_from_the_tunnel_land_in_the_vlan_of_their_vni_and_never_go_back() {
    let mut h = Harness::vxlan();
    let (p1, p2) = (h.port("p1"), h.port("p2"));
    let from_hv2 = |vni| Some(TunnelMeta { vni, src: HV2 });
    let frame = broadcast_from(7);
    let sent = h.send(TUNNEL_PORT, &frame, from_hv2(5001));
    assert_eq!(
        sent,
        vec![Sent {
            port: p1,
            tunnel: None,
            bytes: frame.clone()
        }]
    );
    let sent = h.send(TUNNEL_PORT, &frame, from_hv2(5002));
    assert_eq!(
        ports_of(&sent),
        vec![p2],
        "the same MAC in the other VNI is the other tenant's"
    );
    assert!(
        h.send(TUNNEL_PORT, &frame, from_hv2(4242)).is_empty(),
        "an unknown VNI is dropped"
    );
    assert_eq!(h.counted(COOKIE_VLAN_DROP), 1);
    // Host 7 was learned behind hv2 in both VLANs: replies go straight back.
    assert_eq!(h.app.learned(), 2);
    let sent = h.send(p1, &from(1, mac(7)).build(), None);
    assert_eq!(ports_of(&sent), vec![TUNNEL_PORT]);
    assert_eq!(
        sent[0].tunnel,
        Some(TunnelTarget {
            vni: 5001,
            dst: HV2
        })
    );
    assert_eq!(
        sent[0].bytes,
        from(1, mac(7)).build(),
        "the tag never reaches the wire"
    );
}

#[test]
fn a_learned_host_moving_and_aging_out_restores_what_the_topology_says() {
    let yaml = include_str!("../../../topologies/vxlan.yaml");
    let topology = parse(yaml, Path::new("vxlan.yaml")).unwrap();
    let a2 = topology.host("a2").unwrap().interfaces[0].mac;
    let mut h = Harness::vxlan();
    let p1 = h.port("p1");
    // a2's MAC shows up on a local port (someone moved a VM).
    let moved = FrameBuilder::udp4("10.1.1.2:1", "10.1.1.1:2", b"")
        .src_mac(a2)
        .dst_mac(EthernetAddress::BROADCAST)
        .build();
    h.send(p1, &moved, None);
    let sent = h.send(
        TUNNEL_PORT,
        &from(9, a2).build(),
        Some(TunnelMeta {
            vni: 5001,
            src: HV2,
        }),
    );
    assert_eq!(ports_of(&sent), vec![p1], "now delivered locally");
    // It ages out: the programmed entries come back.
    let later = h.now + AGING + Duration::from_secs(1);
    let removed = h.pipeline.handle_timeout(later);
    h.now = later;
    assert!(!removed.is_empty());
    for gone in removed {
        let ids = h.app.on_flow_removed(&gone.stats.spec, &mut h.r);
        h.apply(&ids);
    }
    let sent = h.send(p1, &from(1, a2).build(), None);
    assert_eq!(ports_of(&sent), vec![TUNNEL_PORT]);
    assert_eq!(
        sent[0].tunnel,
        Some(TunnelTarget {
            vni: 5001,
            dst: HV2
        })
    );
}

#[test]
fn a_restarted_controller_adopts_what_the_switch_learned() {
    let mut h = Harness::vxlan();
    h.send(h.port("p1"), &broadcast_from(1), None);
    h.send(
        TUNNEL_PORT,
        &broadcast_from(7),
        Some(TunnelMeta {
            vni: 5002,
            src: HV2,
        }),
    );
    assert_eq!(h.app.learned(), 2);
    let topology = parse(
        include_str!("../../../topologies/vxlan.yaml"),
        Path::new("vxlan.yaml"),
    )
    .unwrap();
    let mut fresh = VlanSwitch::new(plan(&topology, "sw1").unwrap(), AGING, 64);
    let mut r = Reconciler::new();
    for spec in crate::tables::skeleton() {
        r.want(spec);
    }
    fresh.want_base(&mut r);
    let installed = h.installed();
    r.set_installed(installed.iter().cloned());
    fresh.adopt(&installed, &mut r);
    assert_eq!(fresh.learned(), 2);
    assert!(r.sync_all().is_empty(), "nothing to change on the switch");
}
