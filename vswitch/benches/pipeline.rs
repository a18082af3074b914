//! Per-frame costs of the data plane: key extraction, classification against
//! tables of different sizes, and the whole pipeline with the microflow cache.
//! Run with `cargo bench -p sdn-vswitch`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sdn_vswitch::classifier::Classifier;
use sdn_vswitch::flow::{Action, FlowKey, FlowMod, FlowSpec, IpPrefix, Match};
use sdn_vswitch::pipeline::{Decision, FrameMeta, OwnedFrame, Pipeline};
use sdn_vswitch::testutil::FrameBuilder;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

/// `n` rules over several masks, none of which matches the probe frame
/// except the lowest-priority catch-all.
fn rules(n: u32) -> Vec<FlowSpec> {
    let mut specs: Vec<FlowSpec> = (0..n)
        .map(|i| {
            let addr = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i));
            let matcher = match i % 3 {
                0 => Match {
                    eth_type: Some(0x0800),
                    ip_dst: Some(IpPrefix::host(addr)),
                    ..Match::default()
                },
                1 => Match {
                    eth_type: Some(0x0800),
                    ip_proto: Some(6),
                    ip_src: Some(IpPrefix { addr, len: 24 }),
                    tp_dst: Some((i % 60_000) as u16),
                    ..Match::default()
                },
                _ => Match {
                    in_port: Some(1 + i % 8),
                    eth_type: Some(0x0800),
                    ip_src: Some(IpPrefix::host(addr)),
                    ..Match::default()
                },
            };
            FlowSpec::new(0, 100 + (i % 1000) as u16, matcher, vec![Action::Output(2)])
        })
        .collect();
    specs.push(FlowSpec::new(0, 0, Match::default(), vec![Action::Flood]));
    specs
}

fn bench_extract(c: &mut Criterion) {
    let frame = FrameBuilder::tcp4("10.0.0.1:40000", "10.0.0.2:80", &[0u8; 1400]).build();
    c.bench_function("flow_key_extract_tcp4", |b| {
        b.iter(|| FlowKey::extract(black_box(&frame), 1))
    });
}

fn bench_classifier(c: &mut Criterion) {
    let frame = FrameBuilder::tcp4("10.0.0.1:40000", "10.0.0.2:80", b"").build();
    let key = FlowKey::extract(&frame, 1).expect("frame").key;
    let mut group = c.benchmark_group("classifier_lookup");
    for n in [10u32, 1_000, 10_000] {
        let mut classifier = Classifier::new();
        for (i, spec) in rules(n).iter().enumerate() {
            classifier.insert(&spec.matcher.to_masked(), spec.priority, i as u64, i as u32);
        }
        group.bench_with_input(BenchmarkId::from_parameter(n), &classifier, |b, cls| {
            b.iter(|| cls.lookup(black_box(&key)))
        });
    }
    group.finish();
}

fn bench_pipeline(c: &mut Criterion) {
    let now = Instant::now();
    let mut group = c.benchmark_group("pipeline_process_cached");
    for n in [10u32, 10_000] {
        let mut pipeline = Pipeline::new();
        pipeline.set_ports(&[1, 2, 3]);
        for spec in rules(n) {
            pipeline
                .apply_flow_mod(&FlowMod::add(spec), now)
                .expect("valid rule");
        }
        let mut frame = OwnedFrame::new(
            &FrameBuilder::tcp4("10.0.0.1:40000", "10.0.0.2:80", &[0u8; 64]).build(),
        );
        bench_process(&mut group, n, &mut pipeline, &mut frame, now);
    }
    group.finish();
}

/// Times `pipeline` on the same frame from port 1, again and again.
fn bench_process(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    n: u32,
    pipeline: &mut Pipeline,
    frame: &mut OwnedFrame,
    now: Instant,
) {
    let mut decision = Decision::default();
    group.bench_function(BenchmarkId::from_parameter(n), |b| {
        b.iter(|| {
            pipeline.process(
                black_box(&mut *frame),
                FrameMeta::plain(1),
                now,
                &mut decision,
            );
            black_box(decision.outputs.len())
        })
    });
}

/// A stateful firewall in front of an output: conntrack in table 0, `n`
/// rules for new connections in table 1 (none matching the probe's port but
/// the last), established packets skip them.
fn firewall(n: u16, now: Instant) -> Pipeline {
    use sdn_vswitch::conntrack::state::{EST, NEW, TRK};
    use sdn_vswitch::flow::CtStateMatch;
    let mut p = Pipeline::new();
    p.set_ports(&[1, 2]);
    let mut add = |spec| {
        p.apply_flow_mod(&FlowMod::add(spec), now)
            .expect("valid rule")
    };
    let ip = Match {
        eth_type: Some(0x0800),
        ..Match::default()
    };
    let ct = |commit, table| Action::Ct {
        zone: 1,
        commit,
        table,
        nat: None,
    };
    add(FlowSpec::new(0, 1, ip.clone(), vec![ct(false, 1)]));
    let est = Match {
        ct_state: Some(CtStateMatch::new(TRK | EST, 0)),
        ..Match::default()
    };
    add(FlowSpec::new(1, 65535, est, vec![Action::GotoTable(2)]));
    for i in 0..n {
        let rule = Match {
            ct_state: Some(CtStateMatch::new(TRK | NEW, 0)),
            ip_proto: Some(6),
            tp_dst: Some(if i + 1 == n { 80 } else { 10_000 + i }),
            ..ip.clone()
        };
        add(FlowSpec::new(1, 100 + i, rule, vec![ct(true, 2)]));
    }
    add(FlowSpec::new(
        2,
        1,
        Match::default(),
        vec![Action::Output(2)],
    ));
    p
}

fn bench_firewall(c: &mut Criterion) {
    use sdn_vswitch::wire::TcpFlags;
    let now = Instant::now();
    let mut group = c.benchmark_group("pipeline_established_through_ct");
    for n in [1u16, 1_000] {
        let mut pipeline = firewall(n, now);
        let mut decision = Decision::default();
        let segment = |src: &str, dst: &str, flags: u16, seq: u32, ack: u32| {
            FrameBuilder::tcp4(src, dst, &[0u8; 64])
                .tcp_flags(flags)
                .tcp_seq_ack(seq, ack)
                .build()
        };
        let (client, server) = ("10.0.0.1:40000", "10.0.0.2:80");
        for (frame, port) in [
            (segment(client, server, TcpFlags::SYN, 1, 0), 1),
            (
                segment(server, client, TcpFlags::SYN | TcpFlags::ACK, 9, 2),
                2,
            ),
            (segment(client, server, TcpFlags::ACK, 2, 10), 1),
        ] {
            pipeline.process(
                &mut OwnedFrame::new(&frame),
                FrameMeta::plain(port),
                now,
                &mut decision,
            );
        }
        assert_eq!(decision.outputs.len(), 1, "the handshake passes");
        let mut frame = OwnedFrame::new(&segment(client, server, TcpFlags::ACK, 2, 10));
        bench_process(&mut group, n.into(), &mut pipeline, &mut frame, now);
    }
    group.finish();
}

/// A load balancer in the shape the controller gives it: connections to
/// 203.0.113.50:80 from port 1 go through `ct(commit,nat(lb=1))` to one of
/// three backends (five-tuple Maglev), their answers through the tracked
/// connection back to port 1.
fn balancer(now: Instant) -> Pipeline {
    use sdn_lb::{Algorithm, NoHealthyBackends};
    use sdn_vswitch::flow::IpPrefix;
    use sdn_vswitch::flow::action::Nat;
    use sdn_vswitch::pipeline::balance::{GroupBackend, GroupSpec};
    let mut p = Pipeline::new();
    p.set_ports(&[1, 2, 3, 4]);
    let mut add = |spec| {
        p.apply_flow_mod(&FlowMod::add(spec), now)
            .expect("valid flow")
    };
    let ct = |commit, nat| Action::Ct {
        zone: 1,
        commit,
        table: 1,
        nat: Some(nat),
    };
    let host = |a: [u8; 4]| Some(IpPrefix::host(std::net::Ipv4Addr::from(a).into()));
    add(FlowSpec::new(
        0,
        10,
        Match {
            in_port: Some(1),
            eth_type: Some(0x0800),
            ip_proto: Some(6),
            ip_dst: host([203, 0, 113, 50]),
            tp_dst: Some(80),
            ..Match::default()
        },
        vec![ct(true, Nat::Balance { group: 1 })],
    ));
    for port in 2..=4u32 {
        add(FlowSpec::new(
            0,
            10,
            Match {
                in_port: Some(port),
                eth_type: Some(0x0800),
                ..Match::default()
            },
            vec![ct(false, Nat::Existing)],
        ));
        add(FlowSpec::new(
            1,
            10,
            Match {
                eth_type: Some(0x0800),
                ip_dst: host([10, 30, 1, 9 + port as u8]),
                ..Match::default()
            },
            vec![Action::Output(port)],
        ));
    }
    add(FlowSpec::new(
        1,
        10,
        Match {
            eth_type: Some(0x0800),
            ip_dst: host([198, 51, 100, 20]),
            ..Match::default()
        },
        vec![Action::Output(1)],
    ));
    let backends = (2..=4u32)
        .map(|port| GroupBackend {
            id: port,
            addr: std::net::Ipv4Addr::new(10, 30, 1, 9 + port as u8),
            port: Some(80),
            weight: 1,
            healthy: true,
            draining: false,
        })
        .collect();
    p.groups_mut()
        .apply(GroupSpec {
            group: 1,
            version: 1,
            algorithm: Algorithm::FiveTupleHash,
            no_healthy: NoHealthyBackends::Refuse,
            backends,
            idle_timeout: None,
        })
        .expect("a valid group");
    p
}

fn bench_balancer(c: &mut Criterion) {
    use sdn_vswitch::wire::TcpFlags;
    let now = Instant::now();
    let segment = |src: &str, dst: &str, flags: u16, seq: u32, ack: u32| {
        FrameBuilder::tcp4(src, dst, &[0u8; 64])
            .tcp_flags(flags)
            .tcp_seq_ack(seq, ack)
            .build()
    };
    let mut group = c.benchmark_group("pipeline_balanced");
    // An established connection's packet to the frontend: one conntrack
    // lookup and the DNAT rewrite.
    let mut pipeline = balancer(now);
    let mut decision = Decision::default();
    let (client, frontend) = ("198.51.100.20:40000", "203.0.113.50:80");
    let mut first = OwnedFrame::new(&segment(client, frontend, TcpFlags::SYN, 1, 0));
    pipeline.process(&mut first, FrameMeta::plain(1), now, &mut decision);
    let backend = decision.outputs[0].port;
    let answer = segment(
        &format!("10.30.1.{}:80", 9 + backend),
        client,
        TcpFlags::SYN | TcpFlags::ACK,
        9,
        2,
    );
    pipeline.process(
        &mut OwnedFrame::new(&answer),
        FrameMeta::plain(backend),
        now,
        &mut decision,
    );
    let data = segment(client, frontend, TcpFlags::ACK, 2, 10);
    group.bench_function("established", |b| {
        b.iter(|| {
            let mut frame = OwnedFrame::new(&data);
            pipeline.process(&mut frame, FrameMeta::plain(1), now, &mut decision);
            black_box(decision.outputs.len())
        })
    });
    // A whole short connection: SYN, SYN-ACK, ACK, and resets both ways, on
    // a new client port each time (each first packet picks a backend).
    let mut pipeline = balancer(now);
    let mut port = 1024u16;
    group.bench_function("connection", |b| {
        b.iter(|| {
            port = if port == u16::MAX { 1024 } else { port + 1 };
            let client = format!("198.51.100.20:{port}");
            let mut syn = OwnedFrame::new(&segment(&client, frontend, TcpFlags::SYN, 1, 0));
            pipeline.process(&mut syn, FrameMeta::plain(1), now, &mut decision);
            let Some(backend) = decision.outputs.first().map(|o| o.port) else {
                return;
            };
            let server = format!("10.30.1.{}:80", 9 + backend);
            for (frame, from) in [
                (
                    segment(&server, &client, TcpFlags::SYN | TcpFlags::ACK, 9, 2),
                    backend,
                ),
                (segment(&client, frontend, TcpFlags::ACK, 2, 10), 1),
                (
                    segment(&client, frontend, TcpFlags::RST | TcpFlags::ACK, 2, 10),
                    1,
                ),
            ] {
                pipeline.process(
                    &mut OwnedFrame::new(&frame),
                    FrameMeta::plain(from),
                    now,
                    &mut decision,
                );
            }
            black_box(decision.outputs.len());
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_extract,
    bench_classifier,
    bench_pipeline,
    bench_firewall,
    bench_balancer
);
criterion_main!(benches);
