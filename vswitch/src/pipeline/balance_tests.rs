//! Packet tests of load balancing in the pipeline: connections to a
//! frontend are DNATed to the backend their group picks, stay there for
//! their life, and their replies leave from the frontend.

use super::balance::{GroupApplied, GroupBackend, GroupSpec};
use super::*;
use crate::conntrack::LbMark;
use crate::flow::{CtStateMatch, FlowMod, FlowSpec, IpPrefix, Match};
use crate::testutil::{FrameBuilder, checksums_valid};
use crate::wire::{Ipv4Packet, TcpFlags as F, TcpSegment, UdpDatagram};
use sdn_lb::{Algorithm, NoHealthyBackends};
use std::net::Ipv4Addr;
use std::time::Duration;

const FRONTEND: &str = "203.0.113.50";
const CLIENT: &str = "198.51.100.20";
const TCP_GROUP: u32 = 7;
const UDP_GROUP: u32 = 8;
/// Backends 1, 2, 3 at 10.30.1.11-13, out of ports 2, 3, 4.
const BACKENDS: [(u32, [u8; 4], PortNo); 3] = [
    (1, [10, 30, 1, 11], 2),
    (2, [10, 30, 1, 12], 3),
    (3, [10, 30, 1, 13], 4),
];

fn addr(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

fn backend(id: u32) -> GroupBackend {
    let (_, octets, _) = BACKENDS[id as usize - 1];
    GroupBackend {
        id,
        addr: Ipv4Addr::from(octets),
        port: Some(8080),
        weight: 1,
        healthy: true,
        draining: false,
    }
}

fn group(group: u32, version: u64, algorithm: Algorithm, backends: Vec<GroupBackend>) -> GroupSpec {
    GroupSpec {
        group,
        version,
        algorithm,
        no_healthy: NoHealthyBackends::Refuse,
        backends,
        idle_timeout: None,
    }
}

/// Port 1 faces the client; TCP 80 and UDP 7 to the frontend are balanced
/// (TCP to 8080 on the backends, UDP to 8080 too); the backends' packets
/// go through conntrack to be translated back; then out by destination.
fn balancer(algorithm: Algorithm) -> Pipeline {
    let now = Instant::now();
    let mut p = Pipeline::new();
    p.set_ports(&[1, 2, 3, 4]);
    let mut add = |table, priority, m, actions| {
        p.apply_flow_mod(
            &FlowMod::add(FlowSpec::new(table, priority, m, actions)),
            now,
        )
        .unwrap();
    };
    let ct = |commit, nat| Action::Ct {
        zone: 1,
        commit,
        table: 1,
        nat: Some(nat),
    };
    let to_frontend = |proto, port| Match {
        in_port: Some(1),
        eth_type: Some(0x0800),
        ip_proto: Some(proto),
        ip_dst: Some(IpPrefix::host(addr(FRONTEND).into())),
        tp_dst: Some(port),
        ..Match::default()
    };
    add(
        0,
        10,
        to_frontend(6, 80),
        vec![ct(true, Nat::Balance { group: TCP_GROUP })],
    );
    add(
        0,
        10,
        to_frontend(17, 7),
        vec![ct(true, Nat::Balance { group: UDP_GROUP })],
    );
    for (_, octets, port) in BACKENDS {
        let from = Match {
            in_port: Some(port),
            eth_type: Some(0x0800),
            ..Match::default()
        };
        add(0, 10, from, vec![ct(false, Nat::Existing)]);
        let to = Match {
            ct_state: Some(CtStateMatch::new(ct_state::TRK, ct_state::INV)),
            eth_type: Some(0x0800),
            ip_dst: Some(IpPrefix::host(Ipv4Addr::from(octets).into())),
            ..Match::default()
        };
        add(1, 10, to, vec![Action::Output(port)]);
    }
    let to_client = Match {
        ct_state: Some(CtStateMatch::new(ct_state::TRK, ct_state::INV)),
        eth_type: Some(0x0800),
        ip_dst: Some(IpPrefix::host(addr(CLIENT).into())),
        ..Match::default()
    };
    add(1, 10, to_client, vec![Action::Output(1)]);
    let all = vec![backend(1), backend(2), backend(3)];
    let groups = p.groups_mut();
    groups
        .apply(group(TCP_GROUP, 1, algorithm, all.clone()))
        .unwrap();
    groups.apply(group(UDP_GROUP, 1, algorithm, all)).unwrap();
    p
}

/// Runs a frame in on `in_port`: the ports it left by, and the frame as it
/// left.
fn run(p: &mut Pipeline, frame: Vec<u8>, in_port: PortNo, now: Instant) -> (Vec<PortNo>, Vec<u8>) {
    let mut buffer = OwnedFrame::new(&frame);
    let mut d = Decision::default();
    p.process(&mut buffer, FrameMeta::plain(in_port), now, &mut d);
    let outputs = d.outputs.iter().map(|o| o.port).collect();
    (outputs, buffer.into_vec())
}

fn syn(client_port: u16) -> Vec<u8> {
    FrameBuilder::tcp4(
        &format!("{CLIENT}:{client_port}"),
        &format!("{FRONTEND}:80"),
        b"",
    )
    .tcp_flags(F::SYN)
    .tcp_seq_ack(100, 0)
    .build()
}

/// Addresses and ports of a TCP or UDP frame.
fn ends(frame: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
    let (sport, dport) = match ip.protocol() {
        crate::wire::IpProtocol::Tcp => {
            let t = TcpSegment::new_checked(ip.payload()).unwrap();
            (t.src_port(), t.dst_port())
        }
        _ => {
            let u = UdpDatagram::new_checked(ip.payload()).unwrap();
            (u.src_port(), u.dst_port())
        }
    };
    (ip.src_addr(), sport, ip.dst_addr(), dport)
}

fn port_of_backend(id: u32) -> PortNo {
    BACKENDS[id as usize - 1].2
}

#[test]
fn round_robin_sends_each_new_connection_to_the_next_backend_translated() {
    let now = Instant::now();
    let mut p = balancer(Algorithm::RoundRobin);
    let mut seen = Vec::new();
    for i in 0..6 {
        let (out, frame) = run(&mut p, syn(40_000 + i), 1, now);
        assert_eq!(out.len(), 1);
        let (src, sport, dst, dport) = ends(&frame);
        // The client's own address and port reach the backend (no SNAT).
        assert_eq!((src, sport), (addr(CLIENT), 40_000 + i));
        assert_eq!(dport, 8080);
        let (_, octets, port) = BACKENDS.iter().find(|b| b.2 == out[0]).unwrap();
        assert_eq!(dst, Ipv4Addr::from(*octets), "out of port {port}");
        assert!(checksums_valid(&frame));
        seen.push(out[0]);
    }
    assert_eq!(seen, [2, 3, 4, 2, 3, 4]);
    let conns = p.conntrack().list(None, now);
    assert_eq!(conns.len(), 6);
    let marks: Vec<u32> = conns.iter().map(|c| c.backend.unwrap().backend).collect();
    assert_eq!(marks, [1, 2, 3, 1, 2, 3]);
    for id in 1..=3 {
        assert_eq!(p.conntrack().live_balanced().get(TCP_GROUP, id), 2);
        assert_eq!(p.groups().stats(TCP_GROUP, id).unwrap().connections, 2);
    }
}

#[test]
fn a_connection_stays_on_its_backend_and_replies_leave_from_the_frontend() {
    let now = Instant::now();
    let mut p = balancer(Algorithm::FiveTupleHash);
    let (out, first) = run(&mut p, syn(41_000), 1, now);
    let port = out[0];
    let (_, _, backend_addr, _) = ends(&first);
    // The backend answers to the client from its own address and port.
    let syn_ack = FrameBuilder::tcp4(
        &format!("{backend_addr}:8080"),
        &format!("{CLIENT}:41000"),
        b"",
    )
    .tcp_flags(F::SYN | F::ACK)
    .tcp_seq_ack(500, 101)
    .build();
    let (out, reply) = run(&mut p, syn_ack, port, now);
    assert_eq!(out, [1]);
    assert_eq!(ends(&reply), (addr(FRONTEND), 80, addr(CLIENT), 41_000));
    assert!(checksums_valid(&reply));
    for _ in 0..20 {
        let ack = FrameBuilder::tcp4(
            &format!("{CLIENT}:41000"),
            &format!("{FRONTEND}:80"),
            b"data",
        )
        .tcp_flags(F::ACK | F::PSH)
        .tcp_seq_ack(101, 501)
        .build();
        let (out, frame) = run(&mut p, ack, 1, now);
        assert_eq!(out, [port]);
        assert_eq!(ends(&frame).2, backend_addr);
        assert!(checksums_valid(&frame));
    }
    assert_eq!(p.conntrack().list(None, now)[0].state, "ESTABLISHED");
}

#[test]
fn a_replaced_group_keeps_live_connections_and_drains_the_removed_backend() {
    let now = Instant::now();
    let mut p = balancer(Algorithm::RoundRobin);
    let (out, _) = run(&mut p, syn(42_000), 1, now);
    assert_eq!(out, [port_of_backend(1)]);
    let syn_ack = FrameBuilder::tcp4("10.30.1.11:8080", &format!("{CLIENT}:42000"), b"")
        .tcp_flags(F::SYN | F::ACK)
        .tcp_seq_ack(500, 101)
        .build();
    assert_eq!(run(&mut p, syn_ack, port_of_backend(1), now).0, [1]);
    // Backend 1 is drained: it stays in the group, taking nothing new.
    let mut drained = backend(1);
    drained.draining = true;
    let spec = group(
        TCP_GROUP,
        2,
        Algorithm::RoundRobin,
        vec![drained, backend(2), backend(3)],
    );
    assert_eq!(p.groups_mut().apply(spec), Ok(GroupApplied::Installed));
    for i in 1..7 {
        let (out, _) = run(&mut p, syn(42_000 + i), 1, now);
        assert_ne!(out, [port_of_backend(1)]);
    }
    let ack = FrameBuilder::tcp4(&format!("{CLIENT}:42000"), &format!("{FRONTEND}:80"), b"")
        .tcp_flags(F::ACK)
        .tcp_seq_ack(101, 501)
        .build();
    let (out, _) = run(&mut p, ack, 1, now);
    assert_eq!(
        out,
        [port_of_backend(1)],
        "the live connection still goes to its backend"
    );
    // An older version is ignored.
    let stale = group(TCP_GROUP, 1, Algorithm::RoundRobin, vec![backend(1)]);
    assert_eq!(p.groups_mut().apply(stale), Ok(GroupApplied::Stale));
    assert_eq!(p.groups().spec(TCP_GROUP).unwrap().backends.len(), 3);
}

#[test]
fn no_healthy_backend_refuses_new_connections_unless_all_probed_up() {
    let now = Instant::now();
    let mut p = balancer(Algorithm::RoundRobin);
    let down = |id| GroupBackend {
        healthy: false,
        ..backend(id)
    };
    let mut spec = group(
        TCP_GROUP,
        2,
        Algorithm::RoundRobin,
        vec![down(1), down(2), down(3)],
    );
    p.groups_mut().apply(spec.clone()).unwrap();
    let (out, _) = run(&mut p, syn(43_000), 1, now);
    assert!(out.is_empty());
    assert_eq!(p.conntrack().counters().lb_no_backend, 1);
    assert!(p.conntrack().is_empty());
    spec.version = 3;
    spec.no_healthy = NoHealthyBackends::AllProbedUp;
    p.groups_mut().apply(spec).unwrap();
    let spread: Vec<PortNo> = (1..4)
        .map(|i| run(&mut p, syn(43_000 + i), 1, now).0[0])
        .collect();
    assert_eq!(spread, [2, 3, 4]);
}

#[test]
fn a_connection_for_an_unknown_group_is_refused_and_counted() {
    let now = Instant::now();
    let mut p = balancer(Algorithm::RoundRobin);
    assert!(p.groups_mut().delete(TCP_GROUP));
    let (out, _) = run(&mut p, syn(44_000), 1, now);
    assert!(out.is_empty());
    assert_eq!(p.groups().unknown_group, 1);
    assert_eq!(p.conntrack().counters().lb_no_backend, 1);
}

#[test]
fn least_connections_reads_the_live_counts_from_conntrack() {
    let now = Instant::now();
    let mut p = balancer(Algorithm::LeastConnections);
    let mut firsts = Vec::new();
    for i in 0..3 {
        firsts.push(run(&mut p, syn(45_000 + i), 1, now).0[0]);
    }
    let mut sorted = firsts.clone();
    sorted.sort();
    assert_eq!(sorted, [2, 3, 4], "one each");
    // The connection on the third port ends: that backend is now the least
    // loaded, twice over.
    let ended = p
        .conntrack()
        .list(None, now)
        .into_iter()
        .find(|c| {
            c.backend
                == Some(LbMark {
                    group: TCP_GROUP,
                    backend: 3,
                })
        })
        .unwrap();
    assert!(p.conntrack_mut().remove(1, ended.orig));
    assert_eq!(p.conntrack().live_balanced().get(TCP_GROUP, 3), 0);
    assert_eq!(run(&mut p, syn(45_010), 1, now).0, [port_of_backend(3)]);
}

#[test]
fn udp_is_balanced_and_answered_from_the_frontend() {
    let now = Instant::now();
    let mut p = balancer(Algorithm::SourceIpHash);
    let datagram = |port: u16| {
        FrameBuilder::udp4(
            &format!("{CLIENT}:{port}"),
            &format!("{FRONTEND}:7"),
            b"echo me",
        )
        .build()
    };
    let (out, frame) = run(&mut p, datagram(50_000), 1, now);
    let backend_port = out[0];
    let (_, _, backend_addr, dport) = ends(&frame);
    assert_eq!(dport, 8080);
    assert!(checksums_valid(&frame));
    // Source hashing: the client's other flows land on the same backend.
    for port in 50_001..50_020 {
        assert_eq!(run(&mut p, datagram(port), 1, now).0, [backend_port]);
    }
    let answer = FrameBuilder::udp4(
        &format!("{backend_addr}:8080"),
        &format!("{CLIENT}:50000"),
        b"echo me",
    )
    .build();
    let (out, reply) = run(&mut p, answer, backend_port, now);
    assert_eq!(out, [1]);
    assert_eq!(ends(&reply), (addr(FRONTEND), 7, addr(CLIENT), 50_000));
    assert!(checksums_valid(&reply));
}

/// The three-way handshake of client port `client_port` through the
/// balancer to `backend_addr` on `port`, then a reset from the client.
fn open_then_reset(p: &mut Pipeline, client_port: u16, now: Instant) -> PortNo {
    let (out, first) = run(p, syn(client_port), 1, now);
    let port = out[0];
    let (_, _, backend_addr, _) = ends(&first);
    let syn_ack = FrameBuilder::tcp4(
        &format!("{backend_addr}:8080"),
        &format!("{CLIENT}:{client_port}"),
        b"",
    )
    .tcp_flags(F::SYN | F::ACK)
    .tcp_seq_ack(500, 101)
    .build();
    assert_eq!(run(p, syn_ack, port, now).0, [1]);
    let data = FrameBuilder::tcp4(
        &format!("{CLIENT}:{client_port}"),
        &format!("{FRONTEND}:80"),
        b"0123456789",
    )
    .tcp_flags(F::ACK | F::PSH)
    .tcp_seq_ack(101, 501)
    .build();
    assert_eq!(run(p, data, 1, now).0, [port]);
    let rst = FrameBuilder::tcp4(
        &format!("{CLIENT}:{client_port}"),
        &format!("{FRONTEND}:80"),
        b"",
    )
    .tcp_flags(F::RST | F::ACK)
    .tcp_seq_ack(111, 501)
    .build();
    run(p, rst, 1, now);
    port
}

#[test]
fn a_closed_connection_stops_counting_as_live_and_its_traffic_is_kept() {
    let now = Instant::now();
    let mut p = balancer(Algorithm::RoundRobin);
    let port = open_then_reset(&mut p, 46_000, now);
    let id = BACKENDS.iter().find(|b| b.2 == port).unwrap().0;
    // Closed, its entry lingers (a late segment still finds it), but least
    // connections and a drain no longer count it.
    assert_eq!(p.conntrack().len(), 1);
    assert_eq!(p.conntrack().live_balanced().get(TCP_GROUP, id), 0);
    let mark = LbMark {
        group: TCP_GROUP,
        backend: id,
    };
    let traffic = p.conntrack().balanced_traffic()[&mark];
    assert_eq!(traffic.packets, 4);
    // Forgotten, its packets and bytes still count for the backend.
    p.conntrack_mut().flush(None);
    assert_eq!(p.conntrack().balanced_traffic()[&mark], traffic);
    assert_eq!(p.conntrack().live_balanced().get(TCP_GROUP, id), 0);
}

#[test]
fn a_rules_idle_timeout_bounds_how_long_an_idle_connection_keeps_its_backend() {
    let now = Instant::now();
    let mut p = balancer(Algorithm::RoundRobin);
    let mut spec = p.groups().spec(UDP_GROUP).unwrap().clone();
    spec.version = 2;
    spec.idle_timeout = Some(Duration::from_secs(3));
    p.groups_mut().apply(spec).unwrap();
    let datagram =
        FrameBuilder::udp4(&format!("{CLIENT}:5000"), &format!("{FRONTEND}:7"), b"x").build();
    run(&mut p, datagram, 1, now);
    let conns = p.conntrack().list(None, now);
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].expires_in, Duration::from_secs(3));
    assert!(
        p.conntrack()
            .list(None, now + Duration::from_secs(4))
            .is_empty()
    );
}

#[test]
fn a_group_sent_again_unchanged_keeps_its_round_robin_place() {
    let now = Instant::now();
    let mut p = balancer(Algorithm::RoundRobin);
    assert_eq!(run(&mut p, syn(47_000), 1, now).0, [port_of_backend(1)]);
    let mut same = p.groups().spec(TCP_GROUP).unwrap().clone();
    same.version = 5;
    assert_eq!(p.groups_mut().apply(same), Ok(GroupApplied::Installed));
    assert_eq!(p.groups().spec(TCP_GROUP).unwrap().version, 5);
    assert_eq!(run(&mut p, syn(47_001), 1, now).0, [port_of_backend(2)]);
}
