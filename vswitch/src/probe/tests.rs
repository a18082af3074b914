use super::*;
use crate::testutil::{FrameBuilder, checksums_valid, mac};
use std::time::Duration;

const WEB1: Ipv4Addr = Ipv4Addr::new(10, 30, 1, 11);
const WEB2: Ipv4Addr = Ipv4Addr::new(10, 30, 1, 12);

fn spec(kind: ProbeKind) -> ProbeSpec {
    ProbeSpec {
        probe: 1,
        kind,
        port: 80,
        config: ProbeConfig {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
        },
        router_mac: mac(0xfe),
        targets: vec![(11, WEB1), (12, WEB2)],
    }
}

/// (target, source port, seq) of a probe SYN, checked field by field.
fn syn_of(frame: &[u8]) -> (Ipv4Addr, u16, u32) {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    assert_eq!((eth.src_addr(), eth.dst_addr()), (PROBE_MAC, mac(0xfe)));
    assert!(checksums_valid(frame));
    let (src, tcp, payload) = read_segment(&frame[14..]).unwrap();
    assert_eq!(src, PROBE_SOURCE);
    assert_eq!(tcp.flags.0, TcpFlags::SYN);
    assert_eq!(tcp.dst_port, 80);
    assert!(payload.is_empty());
    let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
    (ip.dst_addr(), tcp.src_port, tcp.seq_number)
}

fn answer(from: Ipv4Addr, port: u16, flags: u16, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    FrameBuilder::tcp4(
        &format!("{from}:80"),
        &format!("{PROBE_SOURCE}:{port}"),
        payload,
    )
    .tcp_flags(flags)
    .tcp_seq_ack(seq, ack)
    .build()
}

#[test]
fn tcp_probes_go_out_through_the_gateway_and_settle_health() {
    let t0 = Instant::now();
    let mut engine = ProbeEngine::default();
    engine.set(vec![spec(ProbeKind::Tcp)], t0);
    assert_eq!(engine.poll_timeout(), Some(t0));
    let mut out = Vec::new();
    engine.handle_timeout(t0, &mut out);
    assert_eq!(out.len(), 2, "one SYN per backend");
    let syns: Vec<_> = out.iter().map(|f| syn_of(f)).collect();
    assert_eq!(syns[0].0, WEB1);
    assert_ne!(syns[0].1, syns[1].1, "each attempt its own port");
    // web1 answers, web2 refuses.
    let mut back = Vec::new();
    let (_, port1, seq1) = syns[0];
    engine.handle_frame(
        &answer(
            WEB1,
            port1,
            TcpFlags::SYN | TcpFlags::ACK,
            9000,
            seq1 + 1,
            b"",
        ),
        t0,
        &mut back,
    );
    assert_eq!(back.len(), 1);
    let (_, rst, _) = read_segment(&back[0][14..]).unwrap();
    assert_eq!(rst.flags.0 & TcpFlags::RST, TcpFlags::RST);
    let (_, port2, seq2) = syns[1];
    engine.handle_frame(
        &answer(WEB2, port2, TcpFlags::RST | TcpFlags::ACK, 0, seq2 + 1, b""),
        t0,
        &mut back,
    );
    let changes: Vec<_> = std::iter::from_fn(|| engine.poll_change()).collect();
    assert_eq!(changes.len(), 2);
    assert_eq!(
        (changes[0].backend, changes[0].health),
        (11, Health::Healthy)
    );
    assert_eq!(
        (changes[1].backend, changes[1].health),
        (12, Health::Unhealthy)
    );
    // A stray answer (no attempt) is counted and ignored.
    engine.handle_frame(
        &answer(
            WEB1,
            port1,
            TcpFlags::SYN | TcpFlags::ACK,
            9000,
            seq1 + 1,
            b"",
        ),
        t0,
        &mut back,
    );
    assert_eq!(engine.stray, 1);
}

#[test]
fn a_silent_backend_falls_after_its_timeouts() {
    let t0 = Instant::now();
    let mut engine = ProbeEngine::default();
    let mut one = spec(ProbeKind::Tcp);
    one.targets.truncate(1);
    engine.set(vec![one], t0);
    let mut out = Vec::new();
    for s in [0u64, 2, 5, 7] {
        engine.handle_timeout(t0 + Duration::from_secs(s), &mut out);
    }
    // Unknown → unhealthy at the first timeout (2 s).
    let change = engine.poll_change().unwrap();
    assert_eq!((change.backend, change.health), (11, Health::Unhealthy));
    assert_eq!(out.len(), 2, "a SYN at 0 s and at 5 s");
    assert_eq!(engine.reports()[0].health, Health::Unhealthy);
}

#[test]
fn an_http_probe_needs_a_200() {
    let t0 = Instant::now();
    let mut engine = ProbeEngine::default();
    let mut one = spec(ProbeKind::Http("/".into()));
    one.targets.truncate(1);
    engine.set(vec![one], t0);
    let mut out = Vec::new();
    engine.handle_timeout(t0, &mut out);
    let (_, port, seq) = syn_of(&out[0]);
    let mut back = Vec::new();
    engine.handle_frame(
        &answer(WEB1, port, TcpFlags::SYN | TcpFlags::ACK, 500, seq + 1, b""),
        t0,
        &mut back,
    );
    let (_, get, payload) = read_segment(&back[0][14..]).unwrap();
    assert!(payload.starts_with(b"GET / HTTP/1.1\r\n"));
    assert!(checksums_valid(&back[0]));
    let acked = seq + 1 + payload.len() as u32;
    assert_eq!(get.ack_number, 501);
    engine.handle_frame(
        &answer(
            WEB1,
            port,
            TcpFlags::ACK | TcpFlags::PSH,
            501,
            acked,
            b"HTTP/1.1 200 OK\r\n\r\nweb1\n",
        ),
        t0,
        &mut back,
    );
    assert_eq!(engine.poll_change().unwrap().health, Health::Healthy);
}

#[test]
fn probes_sent_again_keep_their_state_and_attempts_and_report_it_whole() {
    let t0 = Instant::now();
    let mut engine = ProbeEngine::default();
    engine.set(vec![spec(ProbeKind::Tcp)], t0);
    let mut out = Vec::new();
    engine.handle_timeout(t0, &mut out);
    let (_, port1, seq1) = syn_of(&out[0]);
    let (_, port2, seq2) = syn_of(&out[1]);
    let mut back = Vec::new();
    let syn_ack = TcpFlags::SYN | TcpFlags::ACK;
    engine.handle_frame(
        &answer(WEB1, port1, syn_ack, 9000, seq1 + 1, b""),
        t0,
        &mut back,
    );
    while engine.poll_change().is_some() {}
    // The same probes again (a controller re-syncing): web2's attempt under
    // way still counts, and the settled states are reported again.
    engine.set(vec![spec(ProbeKind::Tcp)], t0);
    let again: Vec<_> = std::iter::from_fn(|| engine.poll_change()).collect();
    assert_eq!(
        again
            .iter()
            .map(|r| (r.backend, r.health))
            .collect::<Vec<_>>(),
        [(11, Health::Healthy)]
    );
    engine.handle_frame(
        &answer(WEB2, port2, syn_ack, 7000, seq2 + 1, b""),
        t0,
        &mut back,
    );
    assert_eq!(engine.stray, 0);
    let changes: Vec<_> = std::iter::from_fn(|| engine.poll_change()).collect();
    assert_eq!(changes[0].health, Health::Healthy, "{changes:?}");
    // Another port is another probe: its state starts over.
    let mut moved = spec(ProbeKind::Tcp);
    moved.port = 8080;
    engine.set(vec![moved], t0);
    assert!(engine.poll_change().is_none());
    assert!(engine.reports().iter().all(|r| r.health == Health::Unknown));
}
