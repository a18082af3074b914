//! The datapath on real AF_PACKET ports: two host namespaces joined through a
//! switch namespace, no controller, flows installed by the test. Needs root;
//! skips with a message otherwise. Namespaces are made with `ip` (test
//! tooling only) and removed by a guard even when the test fails.

use sdn_vswitch::datapath::{Command, Datapath, Event};
use sdn_vswitch::flow::{Action, FlowMod, FlowSpec, Match, PortNo};
use sdn_vswitch::netns;
use sdn_vswitch::port::Port;
use sdn_vswitch::port::af_packet::{AfPacketOptions, AfPacketPort};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command as Shell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipping: namespace tests need root (CI runs them as root)");
    }
    root
}

fn ip(args: &[&str]) {
    let status = Shell::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {args:?} failed");
}

/// Namespaces `<prefix>-a`, `<prefix>-b` (hosts) and `<prefix>-s` (switch).
struct Namespaces {
    prefix: String,
}

impl Namespaces {
    fn new() -> Namespaces {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "vst{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let ns = Namespaces { prefix };
        for host in ["a", "b"] {
            let name = ns.name(host);
            ip(&["netns", "add", &name]);
        }
        ip(&["netns", "add", &ns.name("s")]);
        for (i, host) in ["a", "b"].iter().enumerate() {
            let (h, s) = (ns.name(host), ns.name("s"));
            let port = format!("p{}", i + 1);
            ip(&[
                "link", "add", "eth0", "netns", &h, "type", "veth", "peer", "name", &port, "netns",
                &s,
            ]);
            ip(&[
                "-n",
                &h,
                "addr",
                "add",
                &format!("10.55.0.{}/24", i + 1),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &h, "link", "set", "eth0", "up"]);
            ip(&["-n", &h, "link", "set", "lo", "up"]);
            ip(&["-n", &s, "link", "set", &port, "up"]);
        }
        ns
    }

    fn name(&self, node: &str) -> String {
        format!("{}-{node}", self.prefix)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for node in ["a", "b", "s"] {
            let _ = Shell::new("ip")
                .args(["netns", "del", &self.name(node)])
                .status();
        }
    }
}

fn add(handle: &sdn_vswitch::datapath::DatapathHandle, spec: FlowSpec) {
    assert!(handle.send(Command::FlowMod {
        xid: 1,
        flow_mod: FlowMod::add(spec)
    }));
}

#[test]
fn hosts_talk_through_the_datapath_with_offloads_on() {
    if !is_root() {
        return;
    }
    let ns = Namespaces::new();
    let switch_ns = ns.name("s");
    let ports: Vec<(PortNo, Box<dyn Port>)> = netns::run_in(Some(&switch_ns), || {
        Ok(vec![
            (
                1,
                Box::new(AfPacketPort::open("p1", AfPacketOptions::default())?) as Box<dyn Port>,
            ),
            (
                2,
                Box::new(AfPacketPort::open("p2", AfPacketOptions::default())?) as Box<dyn Port>,
            ),
        ])
    })
    .expect("open ports in the switch namespace");
    assert!(
        ports
            .iter()
            .all(|(_, p)| p.info().offloads && p.info().mtu == 1500)
    );
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let (handle, thread) = Datapath::new(ports, events_tx)
        .spawn("test", None)
        .expect("start datapath");
    add(
        &handle,
        FlowSpec::new(0, 0, Match::default(), vec![Action::Flood]),
    );

    // ICMP through the switch.
    let ping = Shell::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name("a"),
            "ping",
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "2",
            "10.55.0.2",
        ])
        .output()
        .expect("run ping");
    assert!(
        ping.status.success(),
        "ping failed: {}",
        String::from_utf8_lossy(&ping.stdout)
    );

    // 8 MB of TCP arrives intact (TSO super-frames cross the switch whole).
    let data: Vec<u8> = (0..8_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let b = ns.name("b");
    let server = std::thread::spawn(move || {
        netns::enter(&b).expect("enter b");
        let listener = TcpListener::bind("10.55.0.2:5001").expect("listen");
        let (mut conn, _) = listener.accept().expect("accept");
        let mut got = Vec::new();
        conn.read_to_end(&mut got).expect("read");
        got
    });
    std::thread::sleep(Duration::from_millis(200));
    let a = ns.name("a");
    let sent = data.clone();
    std::thread::spawn(move || {
        netns::enter(&a).expect("enter a");
        let mut conn =
            TcpStream::connect_timeout(&"10.55.0.2:5001".parse().unwrap(), Duration::from_secs(5))
                .expect("connect");
        conn.write_all(&sent).expect("write");
    })
    .join()
    .expect("client");
    let received = server.join().expect("server");
    assert_eq!(received.len(), data.len());
    assert!(received == data, "TCP payload corrupted in transit");

    // Counters saw super-frames: fewer frames than 1448-byte segments.
    assert!(handle.send(Command::PortStats { xid: 2 }));
    let deadline = Instant::now() + Duration::from_secs(5);
    let stats = loop {
        match events.try_recv() {
            Ok(Event::PortStats { ports, .. }) => break ports,
            Ok(_) => {}
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("no port stats: {e:?}"),
        }
    };
    let from_a = stats.iter().find(|(d, _)| d.number == 1).expect("port 1").1;
    assert!(from_a.rx_bytes as usize >= data.len());
    handle.send(Command::Shutdown);
    thread.join().expect("datapath thread");
}
