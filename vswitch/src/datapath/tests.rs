//! The datapath thread over in-memory ports: frames in, commands in, frames
//! and events out.

use super::*;
use crate::flow::{Action, FlowMod, FlowSpec, MacMatch, Match};
use crate::port::memory::{MemoryLink, MemoryPort};
use crate::testutil::{FrameBuilder, mac};
use crate::wire::{GsoType, IpPair, Ipv4Packet, TcpRepr, TcpSegment, vnet_hdr};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

struct Harness {
    handle: DatapathHandle,
    links: Vec<MemoryLink>,
    events: UnboundedReceiver<Event>,
    thread: Option<std::thread::JoinHandle<()>>,
    xid: u64,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.handle.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Ports 1..=n; `offloads[i]` for port i+1.
fn harness(offloads: &[bool]) -> Harness {
    let mut ports: Vec<(PortNo, Box<dyn Port>)> = Vec::new();
    let mut links = Vec::new();
    for (i, &off) in offloads.iter().enumerate() {
        let (port, link) =
            MemoryPort::new(&format!("p{}", i + 1), mac(100 + i as u8), off).unwrap();
        ports.push((i as PortNo + 1, Box::new(port)));
        links.push(link);
    }
    let (tx, events) = unbounded_channel();
    let (handle, thread) = Datapath::new(ports, tx).spawn("test", None).unwrap();
    Harness {
        handle,
        links,
        events,
        thread: Some(thread),
        xid: 0,
    }
}

impl Harness {
    fn next_event(&mut self) -> Event {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.events.try_recv() {
                Ok(e) => return e,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
                Err(e) => panic!("no event within 5s: {e:?}"),
            }
        }
    }

    /// Sends the command and a barrier, and waits for the barrier reply,
    /// returning the events before it.
    fn command(&mut self, command: Command) -> Vec<Event> {
        self.xid += 1;
        let xid = self.xid;
        assert!(self.handle.send(command));
        assert!(self.handle.send(Command::Barrier { xid }));
        let mut before = Vec::new();
        loop {
            match self.next_event() {
                Event::BarrierReply { xid: got } if got == xid => return before,
                other => before.push(other),
            }
        }
    }

    fn add(&mut self, spec: FlowSpec) {
        let events = self.command(Command::FlowMod {
            xid: 0,
            flow_mod: FlowMod::add(spec),
        });
        assert!(events.is_empty(), "{events:?}");
    }

    /// Waits until port `n` has sent `count` frames and returns them.
    fn sent(&self, n: usize, count: usize) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        while got.len() < count {
            got.extend(self.links[n - 1].take_sent());
            if Instant::now() > deadline {
                panic!("port {n} sent {} frames, expected {count}", got.len());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        got
    }

    fn quiet(&self, n: usize) {
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            self.links[n - 1].take_sent().is_empty(),
            "port {n} sent something"
        );
    }
}

fn strip_vnet(frame: &[u8]) -> (VnetRepr, &[u8]) {
    let vnet = VnetRepr::parse(&VnetHeader::new_checked(frame).unwrap());
    (vnet, &frame[vnet_hdr::HEADER_LEN..])
}

#[test]
fn floods_and_outputs_the_same_bytes() {
    let mut h = harness(&[true, true, true]);
    h.add(FlowSpec::new(0, 0, Match::default(), vec![Action::Flood]));
    h.add(FlowSpec::new(
        0,
        10,
        Match {
            eth_dst: Some(MacMatch::exact(mac(2))),
            ..Match::default()
        },
        vec![Action::Output(3)],
    ));
    let unknown = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.9:2", b"hello")
        .dst_mac(mac(9))
        .build();
    h.links[0].inject(&unknown);
    for port in [2, 3] {
        let sent = h.sent(port, 1);
        let (vnet, frame) = strip_vnet(&sent[0]);
        assert_eq!(vnet, VnetRepr::PLAIN);
        assert_eq!(frame, &unknown[..]);
    }
    h.quiet(1);
    let known = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"hi").build();
    h.links[0].inject(&known);
    assert_eq!(strip_vnet(&h.sent(3, 1)[0]).1, &known[..]);
    h.quiet(2);
}

#[test]
fn packet_in_only_with_a_controller() {
    let mut h = harness(&[true, true]);
    h.add(
        FlowSpec::new(
            0,
            0,
            Match::default(),
            vec![Action::Controller { max_len: 20 }],
        )
        .with_cookie(5),
    );
    let frame = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"payload").build();
    h.links[0].inject(&frame);
    let events = h.command(Command::PortStats { xid: 9 });
    assert!(
        events.iter().all(|e| !matches!(e, Event::PacketIn { .. })),
        "no packet-in while disconnected"
    );
    h.command(Command::Controller(ControllerState::Connected));
    h.links[1].inject(&frame);
    match h.next_event() {
        Event::PacketIn {
            in_port,
            request,
            total_len,
            data,
            ..
        } => {
            assert_eq!(in_port, 2);
            assert_eq!(request.cookie, 5);
            assert_eq!(total_len as usize, frame.len());
            assert_eq!(data, frame[..20].to_vec());
            h.handle.consumed();
        }
        other => panic!("expected a packet-in, got {other:?}"),
    }
    let events = h.command(Command::PortStats { xid: 10 });
    let Some(Event::PortStats {
        ports, datapath, ..
    }) = events.into_iter().next()
    else {
        panic!("no port stats");
    };
    assert_eq!(datapath.packet_in_dropped, 1);
    assert_eq!(datapath.packet_in_sent, 1);
    assert_eq!(ports[0].1.rx_packets, 1);
    assert_eq!(ports[1].1.rx_packets, 1);
    assert_eq!(ports[0].0.info.name, "p1");
}

#[test]
fn super_frames_pass_to_offload_ports_and_are_segmented_for_others() {
    let mut h = harness(&[true, true, false]);
    h.add(FlowSpec::new(0, 0, Match::default(), vec![Action::Flood]));
    let payload: Vec<u8> = (0..5000).map(|i| i as u8).collect();
    let mut frame = FrameBuilder::tcp4("10.0.0.1:1000", "10.0.0.2:80", &payload).build();
    // The TCP checksum field holds the pseudo-header sum, as for CHECKSUM_PARTIAL.
    let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
    let ips = IpPair::V4(ip.src_addr(), ip.dst_addr());
    let pseudo = crate::wire::checksum::fold(
        ips.pseudo_header(crate::wire::IpProtocol::Tcp, frame.len() - 34),
    );
    frame[50..52].copy_from_slice(&pseudo.to_be_bytes());
    let vnet = VnetRepr {
        flags: vnet_hdr::FLAG_NEEDS_CSUM,
        gso_type: GsoType::TcpV4,
        hdr_len: 54,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
    };
    h.links[0].inject_with(vnet, &frame);
    let through = h.sent(2, 1);
    assert_eq!(
        strip_vnet(&through[0]),
        (vnet, &frame[..]),
        "offload port gets the super-frame untouched"
    );
    let segments = h.sent(3, 4);
    let mut data = Vec::new();
    for seg in &segments {
        let ip = Ipv4Packet::new_checked(&seg[14..]).unwrap();
        assert!(ip.total_len() <= 1500);
        let tcp = TcpSegment::new_checked(ip.payload()).unwrap();
        TcpRepr::parse(&tcp, ips).expect("complete checksum");
        data.extend_from_slice(tcp.payload());
    }
    assert_eq!(data, payload);
    let events = h.command(Command::PortStats { xid: 1 });
    let Some(Event::PortStats {
        datapath, ports, ..
    }) = events.into_iter().next()
    else {
        panic!()
    };
    assert_eq!(datapath.segmented_frames, 1);
    assert_eq!(ports[2].1.tx_packets, 4);
}

#[test]
fn capture_sees_both_directions() {
    let mut h = harness(&[true, true]);
    h.add(FlowSpec::new(0, 0, Match::default(), vec![Action::Flood]));
    h.command(Command::CaptureStart {
        id: 7,
        port: 2,
        snaplen: 0,
    });
    let a = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"a").build();
    let b = FrameBuilder::udp4("10.0.0.2:2", "10.0.0.1:1", b"b")
        .src_mac(mac(2))
        .dst_mac(mac(1))
        .build();
    h.links[0].inject(&a);
    h.sent(2, 1);
    h.links[1].inject(&b);
    h.sent(1, 1);
    let mut frames = Vec::new();
    while frames.len() < 2 {
        if let Event::Capture {
            id,
            frames: got,
            dropped,
        } = h.next_event()
        {
            assert_eq!((id, dropped), (7, 0));
            frames.extend(got);
            h.handle.consumed();
        }
    }
    assert_eq!((frames[0].inbound, &frames[0].data), (false, &a));
    assert_eq!((frames[1].inbound, &frames[1].data), (true, &b));
    h.command(Command::CaptureStop { id: 7 });
    h.links[0].inject(&a);
    h.sent(2, 1);
    let events = h.command(Command::PortStats { xid: 3 });
    assert!(events.iter().all(|e| !matches!(e, Event::Capture { .. })));
}

#[test]
fn fail_open_forwards_as_a_learning_switch() {
    let mut h = harness(&[true, true, true]);
    let a = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"a").build();
    h.links[0].inject(&a);
    h.quiet(2);
    h.command(Command::Controller(ControllerState::FailOpen));
    h.links[0].inject(&a);
    h.sent(2, 1);
    h.sent(3, 1);
    let reply = FrameBuilder::udp4("10.0.0.2:2", "10.0.0.1:1", b"b")
        .src_mac(mac(2))
        .dst_mac(mac(1))
        .build();
    h.links[1].inject(&reply);
    h.sent(1, 1);
    h.quiet(3);
}

#[test]
fn flow_removed_and_errors_are_reported() {
    let mut h = harness(&[true, true]);
    let spec = FlowSpec::new(0, 5, Match::default(), vec![Action::Output(2)])
        .with_idle_timeout(Duration::from_secs(60));
    h.add(spec.clone());
    let events = h.command(Command::FlowMod {
        xid: 4,
        flow_mod: FlowMod::delete_strict(spec),
    });
    assert!(
        matches!(&events[..], [Event::FlowRemoved(r)] if r.reason == crate::pipeline::RemovedReason::Delete)
    );
    let bad = FlowSpec::new(
        0,
        5,
        Match {
            tp_dst: Some(1),
            ..Match::default()
        },
        vec![],
    );
    let events = h.command(Command::FlowMod {
        xid: 5,
        flow_mod: FlowMod::add(bad),
    });
    assert!(matches!(&events[..], [Event::Error { xid: 5, .. }]));
    let events = h.command(Command::PacketOut {
        xid: 6,
        in_port: 0,
        actions: vec![Action::Output(1)],
        data: vec![1, 2],
        vnet: VnetRepr::PLAIN,
    });
    assert!(matches!(&events[..], [Event::Error { xid: 6, .. }]));
    let frame = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"out").build();
    h.command(Command::PacketOut {
        xid: 7,
        in_port: 0,
        actions: vec![Action::Output(1)],
        data: frame.clone(),
        vnet: VnetRepr::PLAIN,
    });
    assert_eq!(strip_vnet(&h.sent(1, 1)[0]).1, &frame[..]);
}

#[test]
fn pushing_and_popping_tags_keeps_offload_offsets_right() {
    let mut h = harness(&[true, true]);
    h.add(FlowSpec::new(
        0,
        10,
        Match {
            in_port: Some(1),
            ..Match::default()
        },
        vec![Action::PushVlan(0x2000 | 42), Action::Output(2)],
    ));
    h.add(FlowSpec::new(
        0,
        10,
        Match {
            in_port: Some(2),
            ..Match::default()
        },
        vec![Action::PopVlan, Action::Output(1)],
    ));
    let frame = FrameBuilder::tcp4("10.0.0.1:1000", "10.0.0.2:80", &[5u8; 3000]).build();
    let vnet = VnetRepr {
        flags: vnet_hdr::FLAG_NEEDS_CSUM,
        gso_type: GsoType::TcpV4,
        hdr_len: 54,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
    };
    h.links[0].inject_with(vnet, &frame);
    let sent = h.sent(2, 1);
    let (out_vnet, tagged) = strip_vnet(&sent[0]);
    assert_eq!(&tagged[12..16], &[0x81, 0x00, 0x20, 42]);
    assert_eq!(&tagged[16..], &frame[12..]);
    assert_eq!(
        out_vnet,
        VnetRepr {
            csum_start: 38,
            hdr_len: 58,
            ..vnet
        },
        "offsets follow the frame"
    );
    h.links[1].inject_with(out_vnet, tagged);
    let back = h.sent(1, 1);
    assert_eq!(strip_vnet(&back[0]), (vnet, &frame[..]));
}

#[test]
fn copies_taken_before_a_pop_keep_their_own_offsets() {
    // A flood in a VLAN: the trunk (port 2) gets the frame tagged, then the tag
    // comes off for the access port (port 3). The trunk's copy is a snapshot.
    let mut h = harness(&[true, true, true]);
    h.add(FlowSpec::new(
        0,
        10,
        Match {
            in_port: Some(1),
            ..Match::default()
        },
        vec![
            Action::PushVlan(10),
            Action::Output(2),
            Action::PopVlan,
            Action::Output(3),
        ],
    ));
    let frame = FrameBuilder::tcp4("10.0.0.1:1000", "10.0.0.2:80", &[5u8; 3000]).build();
    let vnet = VnetRepr {
        flags: vnet_hdr::FLAG_NEEDS_CSUM,
        gso_type: GsoType::TcpV4,
        hdr_len: 54,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
    };
    h.links[0].inject_with(vnet, &frame);
    let on_trunk = h.sent(2, 1);
    let (trunk_vnet, tagged) = strip_vnet(&on_trunk[0]);
    assert_eq!(&tagged[12..16], &[0x81, 0x00, 0x00, 10]);
    assert_eq!(
        trunk_vnet,
        VnetRepr {
            csum_start: 38,
            hdr_len: 58,
            ..vnet
        },
        "the tagged copy's offsets count the tag"
    );
    let on_access = h.sent(3, 1);
    assert_eq!(strip_vnet(&on_access[0]), (vnet, &frame[..]));
}
