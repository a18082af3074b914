//! The VXLAN port on real sockets: two hypervisor namespaces on an underlay,
//! a host behind each, the datapath tunnelling between them; the outer
//! headers read back from the underlay; and the same host talking to a Linux
//! kernel `vxlan` device. Needs root; skips with a message otherwise.

use sdn_vswitch::datapath::{Command, Datapath, DatapathHandle};
use sdn_vswitch::flow::{Action, FlowMod, FlowSpec, Match, PortNo, SetField};
use sdn_vswitch::netns;
use sdn_vswitch::port::af_packet::{AfPacketOptions, AfPacketPort};
use sdn_vswitch::port::vxlan::VxlanPort;
use sdn_vswitch::port::{Port, RxBatch};
use sdn_vswitch::wire::{
    EtherType, EthernetFrame, IpProtocol, Ipv4Packet, UdpDatagram, VxlanPacket,
};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::Command as Shell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const TUNNEL: PortNo = 100;
const VNI: u32 = 42;

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

/// Hosts a and b, hypervisors 1 and 2 on underlay 192.168.77.0/24.
struct Lab {
    prefix: String,
    datapaths: Vec<(DatapathHandle, std::thread::JoinHandle<()>)>,
}

impl Lab {
    fn new() -> Lab {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let lab = Lab {
            prefix: format!(
                "vx{}x{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ),
            datapaths: Vec::new(),
        };
        for node in ["a", "b", "hv1", "hv2"] {
            ip(&["netns", "add", &lab.ns(node)]);
            ip(&["-n", &lab.ns(node), "link", "set", "lo", "up"]);
        }
        ip(&[
            "link",
            "add",
            "u0",
            "netns",
            &lab.ns("hv1"),
            "type",
            "veth",
            "peer",
            "name",
            "u0",
            "netns",
            &lab.ns("hv2"),
        ]);
        for (i, hv) in ["hv1", "hv2"].iter().enumerate() {
            ip(&[
                "-n",
                &lab.ns(hv),
                "addr",
                "add",
                &format!("192.168.77.{}/24", i + 1),
                "dev",
                "u0",
            ]);
            ip(&["-n", &lab.ns(hv), "link", "set", "u0", "up"]);
        }
        lab
    }

    fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.prefix)
    }

    /// Host `host` (10.66.0.N, MTU 1450) behind port p1 of hypervisor `hv`.
    fn attach_host(&self, host: &str, hv: &str, n: u8) {
        let (h, v) = (self.ns(host), self.ns(hv));
        ip(&[
            "link", "add", "eth0", "netns", &h, "mtu", "1450", "type", "veth", "peer", "name",
            "p1", "netns", &v,
        ]);
        ip(&[
            "-n",
            &h,
            "addr",
            "add",
            &format!("10.66.0.{n}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &h, "link", "set", "eth0", "up"]);
        ip(&["-n", &v, "link", "set", "p1", "up"]);
    }

    /// A datapath on hypervisor `hv` tunnelling port 1 to `remote`.
    fn start_switch(&mut self, hv: &str, local: Ipv4Addr, remote: Ipv4Addr) {
        let ports: Vec<(PortNo, Box<dyn Port>)> = netns::run_in(Some(&self.ns(hv)), || {
            Ok(vec![
                (
                    1,
                    Box::new(AfPacketPort::open("p1", AfPacketOptions::default())?)
                        as Box<dyn Port>,
                ),
                (
                    TUNNEL,
                    Box::new(VxlanPort::open(local, 4789, 1450)?) as Box<dyn Port>,
                ),
            ])
        })
        .expect("open ports");
        let (events, _rx) = tokio::sync::mpsc::unbounded_channel();
        std::mem::forget(_rx);
        let (handle, thread) = Datapath::new(ports, events)
            .spawn(hv, None)
            .expect("start datapath");
        let out = FlowSpec::new(
            0,
            10,
            Match {
                in_port: Some(1),
                ..Match::default()
            },
            vec![
                Action::SetField(SetField::TunnelId(VNI)),
                Action::SetField(SetField::TunnelDst(remote)),
                Action::Output(TUNNEL),
            ],
        );
        let back = FlowSpec::new(
            0,
            10,
            Match {
                in_port: Some(TUNNEL),
                tunnel_id: Some(u64::from(VNI)),
                ..Match::default()
            },
            vec![Action::Output(1)],
        );
        for spec in [out, back] {
            assert!(handle.send(Command::FlowMod {
                xid: 1,
                flow_mod: FlowMod::add(spec)
            }));
        }
        self.datapaths.push((handle, thread));
    }

    fn ping(&self, from: &str, to: &str) {
        let out = Shell::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns(from),
                "ping",
                "-c",
                "3",
                "-i",
                "0.2",
                "-W",
                "2",
                to,
            ])
            .output()
            .expect("run ping");
        assert!(
            out.status.success(),
            "ping {to} from {from}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    fn tcp(&self, server_ns: &str, server: &str, client_ns: &str, bytes: usize) {
        let data: Vec<u8> = (0..bytes as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let (server_ns, client_ns) = (self.ns(server_ns), self.ns(client_ns));
        let addr: std::net::SocketAddr = format!("{server}:6001").parse().unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let receiver = std::thread::spawn(move || {
            netns::enter(&server_ns).unwrap();
            let listener = TcpListener::bind(addr).unwrap();
            ready_tx.send(()).unwrap();
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let mut got = Vec::new();
            conn.read_to_end(&mut got).unwrap();
            got
        });
        ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let sent = data.clone();
        std::thread::spawn(move || {
            netns::enter(&client_ns).unwrap();
            let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
            conn.write_all(&sent).unwrap();
        })
        .join()
        .unwrap();
        let got = receiver.join().unwrap();
        assert_eq!(got.len(), data.len());
        assert!(got == data, "TCP through the tunnel arrived altered");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (handle, thread) in self.datapaths.drain(..) {
            handle.send(Command::Shutdown);
            let _ = thread.join();
        }
        for node in ["a", "b", "hv1", "hv2"] {
            let _ = Shell::new("ip")
                .args(["netns", "del", &self.ns(node)])
                .status();
        }
    }
}

#[test]
fn hosts_talk_through_a_vxlan_tunnel_with_correct_outer_headers() {
    if !is_root() {
        return;
    }
    let mut lab = Lab::new();
    lab.attach_host("a", "hv1", 1);
    lab.attach_host("b", "hv2", 2);
    let (hv1, hv2) = (
        Ipv4Addr::new(192, 168, 77, 1),
        Ipv4Addr::new(192, 168, 77, 2),
    );
    // Listen on the underlay of hv2 before anything is sent.
    let mut sniffer = netns::run_in(Some(&lab.ns("hv2")), || {
        AfPacketPort::open(
            "u0",
            AfPacketOptions {
                offloads: false,
                ring: false,
            },
        )
    })
    .expect("sniff the underlay");
    lab.start_switch("hv1", hv1, hv2);
    lab.start_switch("hv2", hv2, hv1);
    lab.ping("a", "10.66.0.2");
    lab.ping("b", "10.66.0.1");

    // Outer headers, field by field, from what crossed the underlay.
    let mut batch = RxBatch::default();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut checked = 0;
    while Instant::now() < deadline && checked == 0 {
        let n = sniffer.recv_batch(&mut batch).expect("receive");
        for k in 0..n {
            let frame = batch.frame(k);
            let eth = EthernetFrame::new_checked(frame).unwrap();
            if eth.ethertype() != EtherType::Ipv4 {
                continue;
            }
            let outer = Ipv4Packet::new_checked(eth.payload()).unwrap();
            if outer.protocol() != IpProtocol::Udp || outer.src_addr() != hv1 {
                continue;
            }
            assert_eq!(outer.dst_addr(), hv2);
            assert!(outer.verify_checksum(), "outer IPv4 checksum valid");
            let udp = UdpDatagram::new_checked(outer.payload()).unwrap();
            assert_eq!(udp.dst_port(), 4789);
            assert!(
                (49152..=65535).contains(&udp.src_port()),
                "source port {} from the flow hash",
                udp.src_port()
            );
            assert_eq!(usize::from(udp.len()), outer.payload().len());
            assert_eq!(udp.checksum(), 0, "zero UDP checksum over IPv4 (RFC 7348)");
            let vxlan = VxlanPacket::new_checked(udp.payload()).unwrap();
            assert_eq!(vxlan.vni(), VNI);
            let inner = EthernetFrame::new_checked(vxlan.payload()).unwrap();
            assert!(matches!(
                inner.ethertype(),
                EtherType::Ipv4 | EtherType::Arp | EtherType::Ipv6
            ));
            checked += 1;
        }
        sniffer.release(&mut batch);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(checked > 0, "saw tunnelled frames on the underlay");

    // Bulk TCP both ways: TSO super-frames are segmented once before encapsulation.
    lab.tcp("b", "10.66.0.2", "a", 4 << 20);
    lab.tcp("a", "10.66.0.1", "b", 4 << 20);
}

#[test]
fn the_tunnel_interoperates_with_a_kernel_vxlan_device() {
    if !is_root() {
        return;
    }
    let mut lab = Lab::new();
    lab.attach_host("a", "hv1", 1);
    let (hv1, hv2) = (
        Ipv4Addr::new(192, 168, 77, 1),
        Ipv4Addr::new(192, 168, 77, 2),
    );
    lab.start_switch("hv1", hv1, hv2);
    // hv2 is a plain Linux VTEP with the overlay address on its vxlan device.
    let v = lab.ns("hv2");
    ip(&[
        "-n",
        &v,
        "link",
        "add",
        "vx0",
        "type",
        "vxlan",
        "id",
        "42",
        "remote",
        "192.168.77.1",
        "local",
        "192.168.77.2",
        "dstport",
        "4789",
        "dev",
        "u0",
    ]);
    ip(&["-n", &v, "link", "set", "vx0", "mtu", "1450"]);
    ip(&["-n", &v, "addr", "add", "10.66.0.2/24", "dev", "vx0"]);
    ip(&["-n", &v, "link", "set", "vx0", "up"]);
    lab.ping("a", "10.66.0.2");
    lab.ping("hv2", "10.66.0.1");
    lab.tcp("hv2", "10.66.0.2", "a", 2 << 20);
    lab.tcp("a", "10.66.0.1", "hv2", 2 << 20);
}
