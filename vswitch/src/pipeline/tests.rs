//! Packet tests of the pipeline: frames built in the test go through it and the
//! decisions and rewritten bytes are checked field by field.

use super::*;
use crate::flow::{
    FlowMod, FlowModCommand, FlowSpec, IpPrefix, MacMatch, Match, SetField, VlanMatch,
};
use crate::testutil::{FrameBuilder, mac};
use crate::wire::EthernetAddress;
use crate::wire::{EthernetFrame, IpPair, Ipv4Packet, TcpSegment, UdpDatagram};
use std::time::Duration;

fn pipeline() -> Pipeline {
    let mut p = Pipeline::new();
    p.set_ports(&[1, 2, 3, 4]);
    p
}

fn add(p: &mut Pipeline, spec: FlowSpec, now: Instant) {
    p.apply_flow_mod(&FlowMod::add(spec), now).unwrap();
}

/// A decision in terms a test compares easily.
#[derive(Debug)]
struct Ran {
    outputs: Vec<PortNo>,
    tunnels: Vec<Option<TunnelTarget>>,
    controller: Option<PacketInRequest>,
    snapshots: Vec<(PortNo, Vec<u8>)>,
}

impl Ran {
    fn is_drop(&self) -> bool {
        self.outputs.is_empty() && self.controller.is_none() && self.snapshots.is_empty()
    }
}

fn run(p: &mut Pipeline, frame: &mut Vec<u8>, in_port: PortNo, now: Instant) -> Ran {
    run_meta(p, frame, FrameMeta::plain(in_port), now)
}

/// Runs `frame` through `p`, leaving the rewritten frame in `frame`.
fn run_meta(p: &mut Pipeline, frame: &mut Vec<u8>, meta: FrameMeta, now: Instant) -> Ran {
    let mut buffer = OwnedFrame::new(frame);
    let mut d = Decision::default();
    p.process(&mut buffer, meta, now, &mut d);
    *frame = buffer.into_vec();
    Ran {
        outputs: d.outputs.iter().map(|o| o.port).collect(),
        tunnels: d.outputs.iter().map(|o| o.tunnel).collect(),
        controller: d.controller,
        snapshots: d
            .snapshots
            .into_iter()
            .map(|(o, bytes)| (o.port, bytes))
            .collect(),
    }
}

fn dst_is(m: u8) -> Match {
    Match {
        eth_dst: Some(MacMatch::exact(mac(m))),
        ..Match::default()
    }
}

fn stats(p: &Pipeline, now: Instant) -> Vec<FlowStats> {
    p.flow_stats(None, &Match::default(), 0, 0, now)
}

#[test]
fn empty_pipeline_drops_and_counts_miss() {
    let now = Instant::now();
    let mut p = pipeline();
    let mut frame = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"x").build();
    assert!(run(&mut p, &mut frame, 1, now).is_drop());
    assert_eq!(p.counters().table_misses, 1);
    let mut runt = vec![0u8; 10];
    assert!(run(&mut p, &mut runt, 1, now).is_drop());
    assert_eq!(p.counters().runts, 1);
}

#[test]
fn output_flood_in_port_and_never_back_out() {
    let now = Instant::now();
    let mut p = pipeline();
    add(
        &mut p,
        FlowSpec::new(0, 10, dst_is(2), vec![Action::Output(2)]),
        now,
    );
    add(
        &mut p,
        FlowSpec::new(0, 10, dst_is(3), vec![Action::Flood]),
        now,
    );
    add(
        &mut p,
        FlowSpec::new(0, 10, dst_is(4), vec![Action::InPort, Action::Output(1)]),
        now,
    );
    let mut to2 = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"").build();
    assert_eq!(run(&mut p, &mut to2, 1, now).outputs, vec![2]);
    assert_eq!(
        run(&mut p, &mut to2, 2, now).outputs,
        Vec::<PortNo>::new(),
        "output to the input port is dropped"
    );
    let mut to3 = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"")
        .dst_mac(mac(3))
        .build();
    assert_eq!(run(&mut p, &mut to3, 2, now).outputs, vec![1, 3, 4]);
    let mut to4 = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"")
        .dst_mac(mac(4))
        .build();
    assert_eq!(run(&mut p, &mut to4, 1, now).outputs, vec![1]);
}

#[test]
fn priorities_and_ties() {
    let now = Instant::now();
    let mut p = pipeline();
    add(
        &mut p,
        FlowSpec::new(0, 5, Match::default(), vec![Action::Output(4)]),
        now,
    );
    add(
        &mut p,
        FlowSpec::new(0, 10, dst_is(2), vec![Action::Output(2)]),
        now,
    );
    add(
        &mut p,
        FlowSpec::new(
            0,
            10,
            Match {
                in_port: Some(1),
                ..Match::default()
            },
            vec![Action::Output(3)],
        ),
        now,
    );
    let mut frame = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"").build();
    assert_eq!(
        run(&mut p, &mut frame, 1, now).outputs,
        vec![2],
        "equal priority: first installed wins"
    );
    add(
        &mut p,
        FlowSpec::new(
            0,
            11,
            Match {
                in_port: Some(1),
                ..Match::default()
            },
            vec![Action::Output(3)],
        ),
        now,
    );
    assert_eq!(
        run(&mut p, &mut frame, 1, now).outputs,
        vec![3],
        "a new higher priority entry beats the cached path"
    );
    let mut other = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"")
        .dst_mac(mac(9))
        .build();
    assert_eq!(run(&mut p, &mut other, 2, now).outputs, vec![4]);
}

#[test]
fn add_replaces_same_match_and_priority() {
    let now = Instant::now();
    let mut p = pipeline();
    add(
        &mut p,
        FlowSpec::new(0, 10, dst_is(2), vec![Action::Output(2)]),
        now,
    );
    let mut frame = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"").build();
    run(&mut p, &mut frame, 1, now);
    add(
        &mut p,
        FlowSpec::new(0, 10, dst_is(2), vec![Action::Output(3)]),
        now,
    );
    assert_eq!(p.flow_count(), 1);
    assert_eq!(run(&mut p, &mut frame, 1, now).outputs, vec![3]);
    assert_eq!(
        stats(&p, now)[0].packets,
        1,
        "counters restart with the replacement"
    );
}

#[test]
fn strict_and_wildcard_delete() {
    let now = Instant::now();
    let mut p = pipeline();
    let by_dst = dst_is(2);
    let by_dst_and_port = Match {
        in_port: Some(1),
        ..dst_is(2)
    };
    add(
        &mut p,
        FlowSpec::new(0, 10, by_dst.clone(), vec![Action::Output(2)]),
        now,
    );
    add(
        &mut p,
        FlowSpec::new(0, 20, by_dst_and_port.clone(), vec![Action::Output(2)]),
        now,
    );
    add(
        &mut p,
        FlowSpec::new(0, 10, dst_is(3), vec![Action::Output(3)]),
        now,
    );
    // Strict: exact match and priority only.
    let strict_wrong_priority =
        FlowMod::delete_strict(FlowSpec::new(0, 11, by_dst.clone(), vec![]));
    p.apply_flow_mod(&strict_wrong_priority, now).unwrap();
    assert_eq!(p.flow_count(), 3);
    p.apply_flow_mod(
        &FlowMod::delete_strict(FlowSpec::new(0, 10, by_dst.clone(), vec![])),
        now,
    )
    .unwrap();
    assert_eq!(p.flow_count(), 2);
    // Wildcard: everything the filter covers, any priority.
    add(
        &mut p,
        FlowSpec::new(0, 10, by_dst.clone(), vec![Action::Output(2)]),
        now,
    );
    let wildcard = FlowMod {
        command: FlowModCommand::Delete { strict: false },
        ..FlowMod::add(FlowSpec::new(0, 0, by_dst, vec![]))
    };
    p.apply_flow_mod(&wildcard, now).unwrap();
    let left = stats(&p, now);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].spec.matcher, dst_is(3));
}

#[test]
fn delete_filters_by_cookie_and_out_port_and_reports() {
    let now = Instant::now();
    let mut p = pipeline();
    add(
        &mut p,
        FlowSpec::new(0, 10, dst_is(2), vec![Action::Output(2)]).with_cookie(0x1_0001),
        now,
    );
    add(
        &mut p,
        FlowSpec::new(0, 10, dst_is(3), vec![Action::Output(3)]).with_cookie(0x1_0002),
        now,
    );
    add(
        &mut p,
        FlowSpec::new(1, 10, dst_is(4), vec![Action::Output(4)])
            .with_cookie(0x2_0001)
            .with_idle_timeout(Duration::from_secs(60)),
        now,
    );
    let by_cookie = FlowMod {
        command: FlowModCommand::Delete { strict: false },
        cookie_mask: 0xffff_0000,
        all_tables: true,
        ..FlowMod::add(FlowSpec::new(0, 0, Match::default(), vec![]).with_cookie(0x2_0000))
    };
    let removed = p.apply_flow_mod(&by_cookie, now).unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].reason, RemovedReason::Delete);
    assert_eq!(p.flow_count(), 2);
    let by_port = FlowMod {
        command: FlowModCommand::Delete { strict: false },
        out_port: Some(3),
        ..FlowMod::add(FlowSpec::new(0, 0, Match::default(), vec![]))
    };
    p.apply_flow_mod(&by_port, now).unwrap();
    let left = stats(&p, now);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].spec.cookie, 0x1_0001);
}

#[test]
fn modify_strict_and_wildcard() {
    let now = Instant::now();
    let mut p = pipeline();
    add(
        &mut p,
        FlowSpec::new(0, 10, dst_is(2), vec![Action::Output(2)]),
        now,
    );
    add(
        &mut p,
        FlowSpec::new(
            0,
            20,
            Match {
                in_port: Some(1),
                ..dst_is(2)
            },
            vec![Action::Output(2)],
        ),
        now,
    );
    let strict = FlowMod {
        command: FlowModCommand::Modify { strict: true },
        ..FlowMod::add(FlowSpec::new(0, 10, dst_is(2), vec![Action::Output(3)]))
    };
    p.apply_flow_mod(&strict, now).unwrap();
    let actions: Vec<_> = stats(&p, now).into_iter().map(|s| s.spec.actions).collect();
    assert_eq!(
        actions,
        vec![vec![Action::Output(2)], vec![Action::Output(3)]]
    );
    let wildcard = FlowMod {
        command: FlowModCommand::Modify { strict: false },
        ..FlowMod::add(FlowSpec::new(0, 0, dst_is(2), vec![Action::Output(4)]))
    };
    p.apply_flow_mod(&wildcard, now).unwrap();
    assert!(
        stats(&p, now)
            .iter()
            .all(|s| s.spec.actions == vec![Action::Output(4)])
    );
    let mut frame = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"").build();
    assert_eq!(run(&mut p, &mut frame, 1, now).outputs, vec![4]);
}

#[test]
fn invalid_flow_mods_change_nothing() {
    let now = Instant::now();
    let mut p = pipeline();
    let bad_match = FlowSpec::new(
        0,
        1,
        Match {
            tp_dst: Some(80),
            ..Match::default()
        },
        vec![],
    );
    assert!(matches!(
        p.apply_flow_mod(&FlowMod::add(bad_match), now),
        Err(FlowModError::Match(_))
    ));
    let bad_goto = FlowSpec::new(2, 1, Match::default(), vec![Action::GotoTable(1)]);
    assert!(matches!(
        p.apply_flow_mod(&FlowMod::add(bad_goto), now),
        Err(FlowModError::Action(_))
    ));
    let bad_table = FlowSpec::new(N_TABLES, 1, Match::default(), vec![]);
    assert!(matches!(
        p.apply_flow_mod(&FlowMod::add(bad_table), now),
        Err(FlowModError::NoSuchTable { .. })
    ));
    p.set_table_capacity(1);
    add(&mut p, FlowSpec::new(0, 1, dst_is(1), vec![]), now);
    let over = FlowSpec::new(0, 1, dst_is(2), vec![]);
    assert!(matches!(
        p.apply_flow_mod(&FlowMod::add(over), now),
        Err(FlowModError::TableFull { .. })
    ));
    assert_eq!(p.flow_count(), 1);
}

#[test]
fn goto_table_and_controller() {
    let now = Instant::now();
    let mut p = pipeline();
    add(
        &mut p,
        FlowSpec::new(
            0,
            0,
            Match::default(),
            vec![Action::Controller { max_len: 128 }, Action::GotoTable(1)],
        )
        .with_cookie(7),
        now,
    );
    add(
        &mut p,
        FlowSpec::new(1, 0, Match::default(), vec![Action::Flood]),
        now,
    );
    add(
        &mut p,
        FlowSpec::new(1, 10, dst_is(2), vec![Action::Output(2)]),
        now,
    );
    let mut frame = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"").build();
    let d = run(&mut p, &mut frame, 1, now);
    assert_eq!(d.outputs, vec![2]);
    assert_eq!(
        d.controller,
        Some(PacketInRequest {
            reason: PacketInReason::Action,
            table: 0,
            cookie: 7,
            max_len: 128
        })
    );
    let mut unknown = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"")
        .dst_mac(mac(9))
        .build();
    assert_eq!(run(&mut p, &mut unknown, 3, now).outputs, vec![1, 2, 4]);
    let s = stats(&p, now);
    assert_eq!(
        s.iter().map(|f| f.packets).collect::<Vec<_>>(),
        vec![2, 1, 1]
    );
}

#[test]
fn set_field_rewrites_and_later_tables_see_it() {
    let now = Instant::now();
    let mut p = pipeline();
    let server: std::net::Ipv4Addr = "10.0.0.100".parse().unwrap();
    add(
        &mut p,
        FlowSpec::new(
            0,
            10,
            Match {
                eth_type: Some(0x0800),
                ..Match::default()
            },
            vec![
                Action::SetField(SetField::Ipv4Dst(server)),
                Action::SetField(SetField::EthDst(mac(5))),
                Action::SetField(SetField::TpDst(8080)),
                Action::GotoTable(1),
            ],
        ),
        now,
    );
    add(
        &mut p,
        FlowSpec::new(
            1,
            10,
            Match {
                eth_type: Some(0x0800),
                ip_dst: Some(IpPrefix::host(server.into())),
                eth_dst: Some(MacMatch::exact(mac(5))),
                ..Match::default()
            },
            vec![Action::Output(3)],
        ),
        now,
    );
    let mut frame = FrameBuilder::tcp4("10.0.0.1:40000", "10.0.0.2:80", b"GET /").build();
    let d = run(&mut p, &mut frame, 1, now);
    assert_eq!(d.outputs, vec![3]);
    let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
    assert_eq!(eth.dst_addr(), mac(5));
    assert_eq!(eth.src_addr(), mac(1));
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(ip.dst_addr(), server);
    assert_eq!(
        ip.src_addr(),
        "10.0.0.1".parse::<std::net::Ipv4Addr>().unwrap()
    );
    assert!(ip.verify_checksum());
    let tcp = TcpSegment::new_checked(ip.payload()).unwrap();
    assert_eq!((tcp.src_port(), tcp.dst_port()), (40000, 8080));
    assert!(tcp.verify_checksum(IpPair::V4(ip.src_addr(), ip.dst_addr())));
    assert_eq!(tcp.payload(), b"GET /");
}

#[test]
fn output_before_rewrite_keeps_the_original() {
    let now = Instant::now();
    let mut p = pipeline();
    add(
        &mut p,
        FlowSpec::new(
            0,
            1,
            Match::default(),
            vec![
                Action::Output(2),
                Action::SetField(SetField::EthDst(mac(9))),
                Action::Output(3),
            ],
        ),
        now,
    );
    let mut frame = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"").build();
    let original = frame.clone();
    let d = run(&mut p, &mut frame, 1, now);
    assert_eq!(d.outputs, vec![3]);
    assert_eq!(d.snapshots, vec![(2, original)]);
    assert_eq!(
        EthernetFrame::new_checked(&frame[..]).unwrap().dst_addr(),
        mac(9)
    );
    let udp_ok = {
        let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
        UdpDatagram::new_checked(ip.payload())
            .unwrap()
            .verify_checksum(IpPair::V4(ip.src_addr(), ip.dst_addr()))
    };
    assert!(udp_ok);
}

#[test]
fn counters_count_segments_and_bytes() {
    let now = Instant::now();
    let mut p = pipeline();
    add(
        &mut p,
        FlowSpec::new(0, 1, Match::default(), vec![Action::Output(2)]),
        now,
    );
    let mut frame = FrameBuilder::tcp4("10.0.0.1:1", "10.0.0.2:2", &[7u8; 3000]).build();
    let len = frame.len() as u64;
    let meta = FrameMeta {
        segments: 3,
        ..FrameMeta::plain(1)
    };
    run_meta(&mut p, &mut frame, meta, now);
    run_meta(&mut p, &mut frame, meta, now);
    let s = &stats(&p, now)[0];
    assert_eq!((s.packets, s.bytes), (6, 2 * len));
    assert_eq!(p.counters().cache_hits, 1);
    assert_eq!(p.counters().cache_misses, 1);
}

#[test]
fn idle_timeout_is_refreshed_by_traffic() {
    let t0 = Instant::now();
    let mut p = pipeline();
    add(
        &mut p,
        FlowSpec::new(0, 1, dst_is(2), vec![Action::Output(2)])
            .with_idle_timeout(Duration::from_secs(10)),
        t0,
    );
    assert_eq!(p.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    let mut frame = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"").build();
    run(&mut p, &mut frame, 1, t0 + Duration::from_secs(8));
    assert!(p.handle_timeout(t0 + Duration::from_secs(9)).is_empty());
    assert!(
        p.handle_timeout(t0 + Duration::from_secs(10)).is_empty(),
        "hit at 8s moves expiry to 18s"
    );
    assert_eq!(p.flow_count(), 1);
    assert_eq!(p.poll_timeout(), Some(t0 + Duration::from_secs(18)));
    let removed = p.handle_timeout(t0 + Duration::from_secs(18));
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].reason, RemovedReason::IdleTimeout);
    assert_eq!(removed[0].stats.packets, 1);
    assert_eq!(p.flow_count(), 0);
    assert!(
        run(&mut p, &mut frame, 1, t0 + Duration::from_secs(19)).is_drop(),
        "the cache forgot the entry"
    );
    assert_eq!(p.poll_timeout(), None);
}

#[test]
fn hard_timeout_ignores_traffic_and_replacement_resets_timers() {
    let t0 = Instant::now();
    let mut p = pipeline();
    let mut spec = FlowSpec::new(0, 1, dst_is(2), vec![Action::Output(2)]);
    spec.hard_timeout = Duration::from_secs(5);
    add(&mut p, spec.clone(), t0);
    let mut frame = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"").build();
    run(&mut p, &mut frame, 1, t0 + Duration::from_secs(4));
    // Re-adding at 3s replaces the entry; the stale timer must not remove the new one.
    add(&mut p, spec, t0 + Duration::from_secs(3));
    assert!(p.handle_timeout(t0 + Duration::from_secs(5)).is_empty());
    assert_eq!(p.flow_count(), 1);
    assert!(
        p.handle_timeout(t0 + Duration::from_secs(8)).is_empty(),
        "no send_flow_removed: removed silently"
    );
    assert_eq!(p.flow_count(), 0);
}

#[test]
fn normal_action_learns() {
    let now = Instant::now();
    let mut p = pipeline();
    add(
        &mut p,
        FlowSpec::new(0, 0, Match::default(), vec![Action::Normal]),
        now,
    );
    let mut a_to_b = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"").build();
    let mut b_to_a = FrameBuilder::udp4("10.0.0.2:2", "10.0.0.1:1", b"")
        .src_mac(mac(2))
        .dst_mac(mac(1))
        .build();
    assert_eq!(run(&mut p, &mut a_to_b, 1, now).outputs, vec![2, 3, 4]);
    assert_eq!(run(&mut p, &mut b_to_a, 3, now).outputs, vec![1]);
    assert_eq!(
        run(&mut p, &mut a_to_b, 1, now).outputs,
        vec![3],
        "cached path still consults learning"
    );
    assert_eq!(p.learned_addresses(), 2);
}

fn tci_of(frame: &[u8]) -> Option<u16> {
    (frame[12..14] == [0x81, 0x00]).then(|| u16::from_be_bytes([frame[14], frame[15]]))
}

#[test]
fn push_pop_and_rewrite_tags() {
    let now = Instant::now();
    let mut p = pipeline();
    add(
        &mut p,
        FlowSpec::new(
            0,
            10,
            Match {
                in_port: Some(1),
                vlan: Some(VlanMatch::Untagged),
                ..Match::default()
            },
            vec![Action::PushVlan(10), Action::Output(2)],
        ),
        now,
    );
    add(
        &mut p,
        FlowSpec::new(
            0,
            10,
            Match {
                in_port: Some(2),
                vlan: Some(VlanMatch::Vid(10)),
                ..Match::default()
            },
            vec![Action::PopVlan, Action::Output(1)],
        ),
        now,
    );
    add(
        &mut p,
        FlowSpec::new(
            0,
            10,
            Match {
                in_port: Some(3),
                vlan: Some(VlanMatch::Vid(10)),
                ..Match::default()
            },
            vec![
                Action::SetField(SetField::VlanVid(20)),
                Action::SetField(SetField::VlanPcp(3)),
                Action::Output(4),
            ],
        ),
        now,
    );
    let original = FrameBuilder::tcp4("10.0.0.1:1000", "10.0.0.2:80", b"payload").build();
    let mut frame = original.clone();
    assert_eq!(run(&mut p, &mut frame, 1, now).outputs, vec![2]);
    assert_eq!(frame.len(), original.len() + 4);
    assert_eq!(&frame[..12], &original[..12], "MACs stay first");
    assert_eq!(tci_of(&frame), Some(10), "VID 10, PCP 0");
    assert_eq!(
        &frame[16..],
        &original[12..],
        "ethertype and payload follow the tag intact"
    );
    let extracted = FlowKey::extract(&frame, 1).unwrap();
    assert_eq!(extracted.key.vlan_tci(), 0x1000 | 10);
    assert_eq!(extracted.key.tp_dst(), 80);

    // Back the other way: the tag comes off and the frame is the original again.
    assert_eq!(run(&mut p, &mut frame, 2, now).outputs, vec![1]);
    assert_eq!(frame, original);

    // Rewrite of a tag on a trunk.
    let mut tagged = FrameBuilder::tcp4("10.0.0.1:1000", "10.0.0.2:80", b"payload")
        .vlan(10, 0)
        .build();
    assert_eq!(run(&mut p, &mut tagged, 3, now).outputs, vec![4]);
    assert_eq!(tci_of(&tagged), Some((3 << 13) | 20));
}

#[test]
fn packet_in_carries_the_frame_as_the_controller_action_saw_it() {
    let now = Instant::now();
    let mut p = pipeline();
    let tag_and_ask = vec![
        Action::PushVlan(10),
        Action::Controller { max_len: 0 },
        Action::GotoTable(1),
    ];
    add(
        &mut p,
        FlowSpec::new(0, 10, Match::default(), tag_and_ask),
        now,
    );
    add(
        &mut p,
        FlowSpec::new(
            1,
            10,
            Match::default(),
            vec![Action::PopVlan, Action::Output(2)],
        ),
        now,
    );
    let original = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"x").build();
    let mut buffer = OwnedFrame::new(&original);
    let mut d = Decision::default();
    p.process(&mut buffer, FrameMeta::plain(1), now, &mut d);
    assert!(d.controller.is_some());
    let seen = d
        .controller_frame
        .clone()
        .expect("a copy taken before the pop");
    assert_eq!(tci_of(&seen), Some(10), "the controller sees the tag");
    assert_eq!(
        buffer.into_vec(),
        original,
        "port 2 gets the frame untagged"
    );
    // The cached path takes the same copy.
    let mut buffer = OwnedFrame::new(&original);
    p.process(&mut buffer, FrameMeta::plain(1), now, &mut d);
    assert_eq!(d.controller_frame.as_deref(), Some(seen.as_slice()));
    // Without a later rewrite no copy is made.
    let mut q = pipeline();
    let ask = vec![Action::Controller { max_len: 0 }, Action::Output(2)];
    add(&mut q, FlowSpec::new(0, 10, Match::default(), ask), now);
    let mut buffer = OwnedFrame::new(&original);
    q.process(&mut buffer, FrameMeta::plain(1), now, &mut d);
    assert!(d.controller.is_some() && d.controller_frame.is_none());
}

#[test]
fn later_tables_see_a_pushed_tag_and_checksums_survive() {
    let now = Instant::now();
    let mut p = pipeline();
    add(
        &mut p,
        FlowSpec::new(
            0,
            0,
            Match::default(),
            vec![Action::PushVlan(0x2000 | 30), Action::GotoTable(1)],
        ),
        now,
    );
    add(
        &mut p,
        FlowSpec::new(
            1,
            10,
            Match {
                vlan: Some(VlanMatch::Vid(30)),
                eth_type: Some(0x0800),
                ..Match::default()
            },
            vec![
                Action::SetField(SetField::Ipv4Dst("10.9.9.9".parse().unwrap())),
                Action::Output(3),
            ],
        ),
        now,
    );
    let mut frame = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"x").build();
    assert_eq!(run(&mut p, &mut frame, 1, now).outputs, vec![3]);
    assert_eq!(tci_of(&frame), Some((1 << 13) | 30));
    let ip = Ipv4Packet::new_checked(&frame[18..]).unwrap();
    assert_eq!(
        ip.dst_addr(),
        "10.9.9.9".parse::<std::net::Ipv4Addr>().unwrap()
    );
    assert!(ip.verify_checksum());
    let udp = UdpDatagram::new_checked(ip.payload()).unwrap();
    assert!(
        udp.verify_checksum(IpPair::V4(ip.src_addr(), ip.dst_addr())),
        "the rewrite found the L4 header after the tag"
    );
}

#[test]
fn one_flood_to_trunk_and_access_ports() {
    let now = Instant::now();
    let mut p = pipeline();
    // A tagged frame in VLAN 10 flooded: trunk port 2 keeps the tag, access ports 3 and 4 get it untagged.
    add(
        &mut p,
        FlowSpec::new(
            0,
            0,
            Match::default(),
            vec![
                Action::Output(2),
                Action::PopVlan,
                Action::Output(3),
                Action::Output(4),
            ],
        ),
        now,
    );
    let mut frame = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"bum")
        .vlan(10, 0)
        .dst_mac(EthernetAddress::BROADCAST)
        .build();
    let tagged = frame.clone();
    let ran = run(&mut p, &mut frame, 1, now);
    assert_eq!(ran.snapshots, vec![(2, tagged)]);
    assert_eq!(ran.outputs, vec![3, 4]);
    assert_eq!(tci_of(&frame), None);
    assert_eq!(
        frame,
        FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"bum")
            .dst_mac(EthernetAddress::BROADCAST)
            .build()
    );
}

#[test]
fn tunnel_targets_follow_the_actions() {
    let now = Instant::now();
    let mut p = pipeline();
    let (r1, r2): (std::net::Ipv4Addr, std::net::Ipv4Addr) = (
        "192.168.100.2".parse().unwrap(),
        "192.168.100.3".parse().unwrap(),
    );
    // Head-end replication: the same frame to two remote endpoints, and locally untunneled.
    add(
        &mut p,
        FlowSpec::new(
            0,
            0,
            Match::default(),
            vec![
                Action::Output(2),
                Action::SetField(SetField::TunnelId(100)),
                Action::SetField(SetField::TunnelDst(r1)),
                Action::Output(9),
                Action::SetField(SetField::TunnelDst(r2)),
                Action::Output(9),
            ],
        ),
        now,
    );
    let mut frame = FrameBuilder::arp_request(mac(1), "10.0.0.1", "10.0.0.2").build();
    let ran = run(&mut p, &mut frame, 1, now);
    assert_eq!(ran.outputs, vec![2, 9, 9]);
    assert_eq!(
        ran.tunnels,
        vec![
            None,
            Some(TunnelTarget { vni: 100, dst: r1 }),
            Some(TunnelTarget { vni: 100, dst: r2 })
        ]
    );
    assert!(
        ran.snapshots.is_empty(),
        "tunnel metadata does not change the frame"
    );
}

#[test]
fn frames_out_of_a_tunnel_match_on_their_vni() {
    let now = Instant::now();
    let mut p = pipeline();
    add(
        &mut p,
        FlowSpec::new(
            0,
            10,
            Match {
                tunnel_id: Some(100),
                ..Match::default()
            },
            vec![Action::Output(2)],
        ),
        now,
    );
    add(
        &mut p,
        FlowSpec::new(
            0,
            10,
            Match {
                tunnel_id: Some(200),
                ..Match::default()
            },
            vec![Action::Output(3)],
        ),
        now,
    );
    let from = |vni| FrameMeta {
        tunnel: Some(TunnelMeta {
            vni,
            src: "192.168.100.2".parse().unwrap(),
        }),
        ..FrameMeta::plain(9)
    };
    let mut frame = FrameBuilder::udp4("10.0.1.1:1", "10.0.1.2:2", b"tenant").build();
    assert_eq!(
        run_meta(&mut p, &mut frame, from(100), now).outputs,
        vec![2]
    );
    assert_eq!(
        run_meta(&mut p, &mut frame, from(200), now).outputs,
        vec![3]
    );
    assert!(
        run_meta(&mut p, &mut frame, from(300), now).is_drop(),
        "no other VNI reaches a tenant"
    );
    assert!(
        run(&mut p, &mut frame, 9, now).is_drop(),
        "an untunneled frame has no VNI"
    );
}

#[test]
fn tagged_frames_on_an_access_port_are_dropped_and_counted() {
    let now = Instant::now();
    let mut p = pipeline();
    let drop_tagged = Match {
        in_port: Some(1),
        vlan: Some(VlanMatch::AnyTagged),
        ..Match::default()
    };
    add(&mut p, FlowSpec::new(0, 20, drop_tagged, vec![]), now);
    add(
        &mut p,
        FlowSpec::new(
            0,
            10,
            Match {
                in_port: Some(1),
                ..Match::default()
            },
            vec![Action::Output(2)],
        ),
        now,
    );
    for vid in [5, 10, 4094] {
        let mut tagged = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"x")
            .vlan(vid, 0)
            .build();
        assert!(run(&mut p, &mut tagged, 1, now).is_drop(), "VID {vid}");
    }
    let mut untagged = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"x").build();
    assert_eq!(run(&mut p, &mut untagged, 1, now).outputs, vec![2]);
    assert_eq!(
        stats(&p, now)[0].packets,
        3,
        "the drop entry counts what it dropped"
    );
}

#[test]
fn a_push_without_headroom_drops_the_frame() {
    struct NoRoom(Vec<u8>);
    impl FrameBuf for NoRoom {
        fn bytes(&mut self) -> &mut [u8] {
            &mut self.0
        }
        fn push_front(&mut self, _: usize) -> bool {
            false
        }
        fn pull_front(&mut self, _: usize) -> bool {
            false
        }
    }
    let now = Instant::now();
    let mut p = pipeline();
    add(
        &mut p,
        FlowSpec::new(
            0,
            0,
            Match::default(),
            vec![Action::PushVlan(10), Action::Output(2)],
        ),
        now,
    );
    let mut frame = NoRoom(FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"x").build());
    let mut d = Decision::default();
    p.process(&mut frame, FrameMeta::plain(1), now, &mut d);
    assert!(d.is_drop());
    assert_eq!(p.counters().no_headroom, 1);
}

/// A stateful firewall between port 1 (inside) and port 2 (outside): TCP to
/// port 80 may be opened from inside; replies come back through `ct`.
fn firewall(now: Instant) -> Pipeline {
    use crate::conntrack::state::{EST, INV, NEW, REL, TRK};
    use crate::flow::CtStateMatch;
    let mut p = pipeline();
    let ip = |port| Match {
        in_port: Some(port),
        eth_type: Some(0x0800),
        ..Match::default()
    };
    let ct = |zone, commit, table| Action::Ct {
        zone,
        commit,
        table,
        nat: None,
    };
    for port in [1, 2] {
        add(
            &mut p,
            FlowSpec::new(0, 10, ip(port), vec![ct(5, false, 1)]),
            now,
        );
    }
    let state = |set, clear| Some(CtStateMatch::new(TRK | set, clear));
    let est = Match {
        ct_state: state(EST, INV),
        ..Match::default()
    };
    let rel = Match {
        ct_state: state(REL, INV),
        ..Match::default()
    };
    let web = Match {
        ct_state: state(NEW, EST | INV),
        ip_proto: Some(6),
        tp_dst: Some(80),
        ..ip(1)
    };
    add(
        &mut p,
        FlowSpec::new(1, 30, est, vec![Action::GotoTable(3)]),
        now,
    );
    add(
        &mut p,
        FlowSpec::new(1, 30, rel, vec![Action::GotoTable(3)]),
        now,
    );
    add(&mut p, FlowSpec::new(1, 20, web, vec![ct(5, true, 2)]), now);
    add(
        &mut p,
        FlowSpec::new(2, 0, Match::default(), vec![Action::GotoTable(3)]),
        now,
    );
    add(
        &mut p,
        FlowSpec::new(3, 1, ip(1), vec![Action::Output(2)]),
        now,
    );
    add(
        &mut p,
        FlowSpec::new(3, 1, ip(2), vec![Action::Output(1)]),
        now,
    );
    p
}

fn tcp_frame(src: &str, dst: &str, flags: u16, seq: u32, ack: u32) -> Vec<u8> {
    FrameBuilder::tcp4(src, dst, b"")
        .tcp_flags(flags)
        .tcp_seq_ack(seq, ack)
        .build()
}

#[test]
fn ct_lets_replies_of_allowed_connections_back() {
    use crate::wire::TcpFlags as F;
    let now = Instant::now();
    let mut p = firewall(now);
    let (inside, outside) = ("10.0.0.1:4000", "10.0.0.2:80");
    let mut syn = tcp_frame(inside, outside, F::SYN, 100, 0);
    assert_eq!(run(&mut p, &mut syn, 1, now).outputs, vec![2]);
    let mut syn_ack = tcp_frame(outside, inside, F::SYN | F::ACK, 500, 101);
    assert_eq!(run(&mut p, &mut syn_ack, 2, now).outputs, vec![1]);
    for _ in 0..3 {
        let mut ack = tcp_frame(inside, outside, F::ACK, 101, 501);
        assert_eq!(run(&mut p, &mut ack, 1, now).outputs, vec![2]);
        let mut data = tcp_frame(outside, inside, F::ACK | F::PSH, 501, 101);
        assert_eq!(run(&mut p, &mut data, 2, now).outputs, vec![1]);
    }
    let conns = p.conntrack().list(None, now);
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].state, "ESTABLISHED");
    // The SYN went through the lookup and the commit pass, counted once.
    assert_eq!(conns[0].packets, [4, 4]);
    // Established packets come from the cache: two passes per frame, each a hit.
    let before = p.counters();
    let mut ack = tcp_frame(inside, outside, F::ACK, 101, 501);
    run(&mut p, &mut ack, 1, now);
    assert_eq!(p.counters().cache_hits - before.cache_hits, 2);
    assert_eq!(p.counters().cache_misses, before.cache_misses);
}

#[test]
fn ct_drops_what_no_rule_or_state_allows() {
    use crate::wire::TcpFlags as F;
    let now = Instant::now();
    let mut p = firewall(now);
    // A SYN-ACK nobody asked for, a SYN from outside, a SYN to another port.
    let mut syn_ack = tcp_frame("10.0.0.2:80", "10.0.0.1:4000", F::SYN | F::ACK, 5, 9);
    assert!(run(&mut p, &mut syn_ack, 2, now).is_drop());
    let mut syn_in = tcp_frame("10.0.0.2:5000", "10.0.0.1:80", F::SYN, 1, 0);
    assert!(run(&mut p, &mut syn_in, 2, now).is_drop());
    let mut ssh = tcp_frame("10.0.0.1:4001", "10.0.0.2:22", F::SYN, 1, 0);
    assert!(run(&mut p, &mut ssh, 1, now).is_drop());
    // Data before the handshake completes.
    let mut syn = tcp_frame("10.0.0.1:4002", "10.0.0.2:80", F::SYN, 10, 0);
    assert_eq!(run(&mut p, &mut syn, 1, now).outputs, vec![2]);
    let mut early = tcp_frame("10.0.0.1:4002", "10.0.0.2:80", F::ACK | F::PSH, 11, 1);
    assert!(run(&mut p, &mut early, 1, now).is_drop());
    assert_eq!(
        p.conntrack().len(),
        1,
        "denied packets never add connections"
    );
    assert!(p.conntrack().counters().invalid >= 2);
}

#[test]
fn ct_on_a_frame_that_is_not_ipv4_is_invalid() {
    let now = Instant::now();
    let mut p = pipeline();
    let any = Match::default();
    add(
        &mut p,
        FlowSpec::new(
            0,
            1,
            any.clone(),
            vec![Action::Ct {
                zone: 1,
                commit: true,
                table: 1,
                nat: None,
            }],
        ),
        now,
    );
    let inv = Match {
        ct_state: Some(crate::flow::CtStateMatch::new(
            crate::conntrack::state::INV,
            0,
        )),
        ..Match::default()
    };
    add(
        &mut p,
        FlowSpec::new(1, 1, inv, vec![Action::Output(3)]),
        now,
    );
    let mut arp = FrameBuilder::arp_request(mac(1), "10.0.0.1", "10.0.0.2").build();
    assert_eq!(run(&mut p, &mut arp, 1, now).outputs, vec![3]);
}
