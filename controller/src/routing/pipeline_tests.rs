//! Packets through a switch of `topologies/routing.yaml` running every flow
//! its control session would install (skeleton, VLAN application, firewall,
//! routing): frames built here go in, what leaves each port is checked field
//! by field.

use super::addresses::{edge_mac, internet_router_mac, router_mac};
use super::switch::Router;
use crate::app::App;
use crate::reconcile::Reconciler;
use crate::security::switch::Firewall;
use crate::tables;
use crate::topology::{Topology, UPLINK_PORT, parse};
use sdn_vswitch::pipeline::{Decision, FrameMeta, OwnedFrame, Pipeline};
use sdn_vswitch::testutil::FrameBuilder;
use sdn_vswitch::wire::{
    ArpPacket, EthernetAddress, EthernetFrame, IcmpPacket, IpPair, IpProtocol, Ipv4Packet,
    TcpFlags, TcpSegment, UdpDatagram, checksum,
};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

const LAB: &str = "routing";

pub(super) struct Switch {
    topology: Topology,
    pub(super) pipeline: Pipeline,
    pub(super) now: Instant,
}

/// What left one port.
#[derive(Debug)]
pub(super) struct Sent {
    pub(super) port: u32,
    pub(super) bytes: Vec<u8>,
}

impl Switch {
    fn new(name: &str) -> Switch {
        Switch::of(include_str!("../../../topologies/routing.yaml"), name)
    }

    fn of(yaml: &str, name: &str) -> Switch {
        Switch::with_ports(yaml, name, &[1, 2, 3, 65_000, UPLINK_PORT])
    }

    /// A switch of `yaml` with ports `ports`, holding its load-balancing
    /// groups (every member up).
    fn with_ports(yaml: &str, name: &str, ports: &[u32]) -> Switch {
        Switch::at(yaml, Path::new("lab.yaml"), name, ports)
    }

    /// A switch of `yaml` read as the file `path` (files it names, such as
    /// pre-shared keys, are found next to it).
    pub(super) fn at(yaml: &str, path: &Path, name: &str, ports: &[u32]) -> Switch {
        let topology = parse(yaml, path).unwrap();
        let mut r = Reconciler::new();
        for spec in tables::skeleton() {
            r.want(spec);
        }
        App::for_switch(&topology, name, Duration::from_secs(300)).want_base(&mut r);
        Firewall::for_switch(&topology, name).want(&mut r);
        Router::for_switch(&topology, name).want(&mut r);
        let now = Instant::now();
        let mut pipeline = Pipeline::new();
        pipeline.set_ports(ports);
        for m in r.sync_all() {
            pipeline.apply_flow_mod(&m, now).unwrap();
        }
        for group in &Router::for_switch(&topology, name).compiled().groups {
            pipeline.groups_mut().apply(group.spec.clone()).unwrap();
        }
        Switch {
            topology,
            pipeline,
            now,
        }
    }

    pub(super) fn mac(&self, host: &str) -> EthernetAddress {
        self.topology.host(host).unwrap().interfaces[0].mac
    }

    pub(super) fn send(&mut self, in_port: u32, frame: &[u8]) -> Vec<Sent> {
        let mut buffer = OwnedFrame::new(frame);
        let mut d = Decision::default();
        self.pipeline
            .process(&mut buffer, FrameMeta::plain(in_port), self.now, &mut d);
        let last = buffer.into_vec();
        let mut sent: Vec<Sent> = d
            .snapshots
            .iter()
            .chain(&d.generated)
            .map(|(o, bytes)| Sent {
                port: o.port,
                bytes: bytes.clone(),
            })
            .collect();
        sent.extend(d.outputs.iter().map(|o| Sent {
            port: o.port,
            bytes: last.clone(),
        }));
        sent
    }

    /// The one frame that left `port`.
    fn out_of(&mut self, in_port: u32, frame: &[u8], port: u32) -> Vec<u8> {
        let sent = self.send(in_port, frame);
        let mut on_port: Vec<Sent> = sent.into_iter().filter(|s| s.port == port).collect();
        assert_eq!(
            on_port.len(),
            1,
            "one frame out of port {port}: {on_port:?}"
        );
        on_port.remove(0).bytes
    }
}

fn addr(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

/// The IPv4 packet of an untagged frame.
fn ip_of(frame: &[u8]) -> Ipv4Packet<&[u8]> {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    assert_eq!(u16::from(eth.ethertype()), 0x0800, "untagged IPv4");
    Ipv4Packet::new_checked(&frame[14..]).unwrap()
}

/// Whether the IPv4 header and the L4 checksum verify.
fn checksums_valid(frame: &[u8]) -> bool {
    let ip = ip_of(frame);
    let ips = IpPair::V4(ip.src_addr(), ip.dst_addr());
    let l4 = match ip.protocol() {
        IpProtocol::Tcp => TcpSegment::new_checked(ip.payload())
            .unwrap()
            .verify_checksum(ips),
        IpProtocol::Udp => UdpDatagram::new_checked(ip.payload())
            .unwrap()
            .verify_checksum(ips),
        IpProtocol::Icmp => IcmpPacket::new_checked(ip.payload())
            .unwrap()
            .verify_checksum(ips),
        _ => true,
    };
    ip.verify_checksum() && l4
}

fn with_ttl(mut frame: Vec<u8>, ttl: u8) -> Vec<u8> {
    frame[22] = ttl;
    frame[24..26].fill(0);
    let sum = checksum::checksum(&frame[14..34]);
    frame[24..26].copy_from_slice(&sum.to_be_bytes());
    frame
}

/// sw1's ports: p1 web1 (VLAN 10), p2 app1 (VLAN 20), p3 nva (VLAN 20).
const WEB1_PORT: u32 = 1;
const APP1_PORT: u32 = 2;

#[test]
fn a_routed_frame_gets_new_macs_a_lower_ttl_and_a_right_checksum() {
    let mut sw = Switch::new("sw1");
    // A SYN: web1's NSG tracks connections, and lets its network in.
    let frame = FrameBuilder::tcp4("10.20.2.11:40000", "10.20.1.11:80", b"routed")
        .tcp_flags(TcpFlags::SYN)
        .tcp_seq_ack(1, 0)
        .src_mac(sw.mac("app1"))
        .dst_mac(router_mac(LAB))
        .build();
    let out = sw.out_of(APP1_PORT, &frame, WEB1_PORT);
    let eth = EthernetFrame::new_checked(&out[..]).unwrap();
    assert_eq!(eth.src_addr(), router_mac(LAB), "the gateway MAC as source");
    assert_eq!(eth.dst_addr(), sw.mac("web1"), "the host's MAC");
    let ip = ip_of(&out);
    assert_eq!(ip.ttl(), 63);
    assert_eq!(
        (ip.src_addr(), ip.dst_addr()),
        (addr("10.20.2.11"), addr("10.20.1.11"))
    );
    assert!(checksums_valid(&out));
    assert_eq!(
        &out[34..],
        &frame[34..],
        "the TCP segment crosses untouched"
    );
}

#[test]
fn ttl_one_gives_time_exceeded_from_the_gateway_quoting_the_packet() {
    let mut sw = Switch::new("sw1");
    let frame = with_ttl(
        FrameBuilder::udp4("10.20.2.11:33434", "10.20.1.12:33434", b"probe")
            .src_mac(sw.mac("app1"))
            .dst_mac(router_mac(LAB))
            .build(),
        1,
    );
    let out = sw.out_of(APP1_PORT, &frame, APP1_PORT);
    let eth = EthernetFrame::new_checked(&out[..]).unwrap();
    assert_eq!(
        (eth.src_addr(), eth.dst_addr()),
        (router_mac(LAB), sw.mac("app1"))
    );
    let ip = ip_of(&out);
    assert_eq!(
        ip.src_addr(),
        addr("10.20.2.1"),
        "from the sender's gateway"
    );
    assert_eq!(ip.dst_addr(), addr("10.20.2.11"));
    assert!(checksums_valid(&out));
    let icmp = IcmpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!((icmp.msg_type(), icmp.code()), (11, 0));
    assert_eq!(
        &ip.payload()[8..8 + 28],
        &frame[14..14 + 28],
        "the original header"
    );
    assert!(
        sw.send(APP1_PORT, &frame)
            .iter()
            .all(|s| s.port == APP1_PORT)
    );
}

#[test]
fn no_route_gives_net_unreachable() {
    let mut sw = Switch::new("sw2");
    let ops1 = sw.mac("ops1");
    // Branch has no internet gateway: nothing routes 8.8.8.8.
    let frame = FrameBuilder::udp4("10.22.1.11:5000", "8.8.8.8:53", b"q")
        .src_mac(ops1)
        .dst_mac(router_mac(LAB))
        .build();
    let out = sw.out_of(3, &frame, 3);
    let ip = ip_of(&out);
    assert_eq!(ip.src_addr(), addr("10.22.1.1"));
    let icmp = IcmpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!((icmp.msg_type(), icmp.code()), (3, 0));
}

#[test]
fn too_big_with_df_gives_fragmentation_needed_with_the_mtu() {
    let mut sw = Switch::new("sw1");
    // app1 (MTU 1500) to web2 (MTU 1450, across VXLAN); the builder sets DF.
    let frame = FrameBuilder::udp4("10.20.2.11:5000", "10.20.1.12:53", &[0u8; 1472])
        .src_mac(sw.mac("app1"))
        .dst_mac(router_mac(LAB))
        .build();
    let sent = sw.send(APP1_PORT, &frame);
    assert_eq!(sent.len(), 1, "only the error leaves: {sent:?}");
    let ip = ip_of(&sent[0].bytes);
    let icmp = IcmpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!((icmp.msg_type(), icmp.code()), (3, 4));
    assert_eq!(&ip.payload()[6..8], &1450u16.to_be_bytes());
    assert!(checksums_valid(&sent[0].bytes));
    // A packet that fits crosses, tunnelled.
    let fits = FrameBuilder::udp4("10.20.2.11:5000", "10.20.1.12:53", &[0u8; 1422])
        .src_mac(sw.mac("app1"))
        .dst_mac(router_mac(LAB))
        .build();
    assert!(sw.send(APP1_PORT, &fits).iter().any(|s| s.port == 65_000));
}

#[test]
fn arp_for_the_gateway_is_answered_by_the_switch() {
    let mut sw = Switch::new("sw1");
    let app1 = sw.mac("app1");
    let request = FrameBuilder::arp_request(app1, "10.20.2.11", "10.20.2.1").build();
    let out = sw.out_of(APP1_PORT, &request, APP1_PORT);
    let eth = EthernetFrame::new_checked(&out[..]).unwrap();
    assert_eq!((eth.src_addr(), eth.dst_addr()), (router_mac(LAB), app1));
    assert_eq!(
        u16::from(eth.ethertype()),
        0x0806,
        "untagged on the access port"
    );
    let arp = ArpPacket::new_checked(eth.payload()).unwrap();
    assert_eq!(u16::from(arp.operation()), 2);
    assert_eq!(arp.sender_protocol_addr(), addr("10.20.2.1"));
    assert_eq!(arp.sender_hardware_addr(), router_mac(LAB));
    // The answer stays on the port: nobody else sees the request.
    assert!(
        sw.send(APP1_PORT, &request)
            .iter()
            .all(|s| s.port == APP1_PORT)
    );
}

/// The reply the server sends to a translated packet (addresses and ports
/// swapped).
fn reply_to(out: &[u8], payload: &[u8]) -> FrameBuilder {
    let ip = ip_of(out);
    let ports = |b: &[u8]| {
        (
            u16::from_be_bytes([b[0], b[1]]),
            u16::from_be_bytes([b[2], b[3]]),
        )
    };
    let (sport, dport) = ports(ip.payload());
    let (from, to) = (
        format!("{}:{dport}", ip.dst_addr()),
        format!("{}:{sport}", ip.src_addr()),
    );
    match ip.protocol() {
        IpProtocol::Udp => FrameBuilder::udp4(&from, &to, payload),
        _ => FrameBuilder::tcp4(&from, &to, payload),
    }
}

#[test]
fn the_nat_gateway_translates_tcp_udp_and_echo_both_ways() {
    let mut sw = Switch::new("sw1");
    let app1 = sw.mac("app1");
    let edge = edge_mac(LAB, "sw1", "hub");
    let isp = internet_router_mac(LAB);
    for udp in [false, true] {
        let builder = if udp {
            FrameBuilder::udp4("10.20.2.11:5353", "203.0.113.80:53", b"query")
        } else {
            FrameBuilder::tcp4("10.20.2.11:41000", "203.0.113.80:80", b"")
                .tcp_flags(TcpFlags::SYN)
                .tcp_seq_ack(10, 0)
        };
        let frame = builder.src_mac(app1).dst_mac(router_mac(LAB)).build();
        let out = sw.out_of(APP1_PORT, &frame, UPLINK_PORT);
        let eth = EthernetFrame::new_checked(&out[..]).unwrap();
        assert_eq!((eth.src_addr(), eth.dst_addr()), (edge, isp));
        let ip = ip_of(&out);
        assert_eq!(ip.src_addr(), addr("203.0.113.20"), "from the NAT gateway");
        assert_eq!(ip.ttl(), 63);
        assert!(checksums_valid(&out));
        let sport = u16::from_be_bytes([ip.payload()[0], ip.payload()[1]]);
        assert!(sport >= 1024);
        let back = if udp {
            reply_to(&out, b"answer")
        } else {
            reply_to(&out, b"")
                .tcp_flags(TcpFlags::SYN | TcpFlags::ACK)
                .tcp_seq_ack(500, 11)
        };
        let back = back.src_mac(isp).dst_mac(edge).build();
        let delivered = sw.out_of(UPLINK_PORT, &back, APP1_PORT);
        let eth = EthernetFrame::new_checked(&delivered[..]).unwrap();
        assert_eq!((eth.src_addr(), eth.dst_addr()), (router_mac(LAB), app1));
        let ip = ip_of(&delivered);
        assert_eq!(ip.dst_addr(), addr("10.20.2.11"));
        let dport = u16::from_be_bytes([ip.payload()[2], ip.payload()[3]]);
        assert_eq!(dport, if udp { 5353 } else { 41000 }, "its own port back");
        assert!(checksums_valid(&delivered));
    }
    // Echo: the identifier is translated and restored.
    let ping = FrameBuilder::icmp4_echo("10.20.2.11", "203.0.113.80", 1)
        .src_mac(app1)
        .dst_mac(router_mac(LAB))
        .build();
    let out = sw.out_of(APP1_PORT, &ping, UPLINK_PORT);
    assert!(checksums_valid(&out));
    let mut pong = FrameBuilder::icmp4_echo("203.0.113.80", "203.0.113.20", 1)
        .echo_reply(true)
        .src_mac(isp)
        .dst_mac(edge)
        .build();
    // With the identifier the request left with.
    pong[38..40].copy_from_slice(&out[38..40]);
    pong[36..38].fill(0);
    let sum = checksum::checksum(&pong[34..]);
    pong[36..38].copy_from_slice(&sum.to_be_bytes());
    let delivered = sw.out_of(UPLINK_PORT, &pong, APP1_PORT);
    let ip = ip_of(&delivered);
    assert_eq!(ip.dst_addr(), addr("10.20.2.11"));
    assert_eq!(&delivered[38..40], &ping[38..40], "the original identifier");
    assert!(checksums_valid(&delivered));
    // Unsolicited: nothing gets in.
    let knock = FrameBuilder::tcp4("198.51.100.20:5000", "203.0.113.20:22", b"")
        .tcp_flags(TcpFlags::SYN)
        .src_mac(isp)
        .dst_mac(edge)
        .build();
    assert!(sw.send(UPLINK_PORT, &knock).is_empty());
}

#[test]
fn an_icmp_error_about_a_natted_connection_reaches_its_host_translated() {
    let mut sw = Switch::new("sw1");
    let app1 = sw.mac("app1");
    let edge = edge_mac(LAB, "sw1", "hub");
    let isp = internet_router_mac(LAB);
    let query = FrameBuilder::udp4("10.20.2.11:5353", "203.0.113.80:53", b"query")
        .src_mac(app1)
        .dst_mac(router_mac(LAB))
        .build();
    let out = sw.out_of(APP1_PORT, &query, UPLINK_PORT);
    // The server answers: port unreachable, quoting the translated query.
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&out[14..14 + 28]);
    let sum = checksum::checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut error = Vec::new();
    error.extend_from_slice(&edge.0);
    error.extend_from_slice(&isp.0);
    error.extend_from_slice(&[0x08, 0x00]);
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
    ip[2..4].copy_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&addr("203.0.113.80").octets());
    ip.extend_from_slice(&addr("203.0.113.20").octets());
    let sum = checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    error.extend_from_slice(&ip);
    error.extend_from_slice(&icmp);
    let delivered = sw.out_of(UPLINK_PORT, &error, APP1_PORT);
    let outer = ip_of(&delivered);
    assert_eq!(outer.dst_addr(), addr("10.20.2.11"));
    assert!(checksums_valid(&delivered));
    let quoted = &outer.payload()[8..];
    assert_eq!(
        &quoted[12..28],
        &query[14 + 12..14 + 28],
        "the quoted addresses and ports as app1 sent them"
    );
    assert_eq!(
        checksum::checksum(&quoted[..20]),
        0,
        "the quoted header's checksum"
    );
}

#[test]
fn floods_of_a_plain_switch_stay_off_the_uplink() {
    let yaml = "name: routing
networks:
  - name: net
    cidr: 10.5.0.0/16
    subnets: [{ name: a, cidr: 10.5.1.0/24 }, { name: b, cidr: 10.5.2.0/24 }]
internet: { hosts: [{ name: server, address: 203.0.113.5 }] }
internet_gateways: [{ name: igw, network: net }]
nat_gateways: [{ name: nat, address: 203.0.113.6, subnets: [a] }]
switches:
  - { name: sw1, ports: [{ name: p1 }, { name: p2 }] }
hosts:
  - { name: h1, interfaces: [{ name: eth0, subnet: a, address: 10.5.1.10/24 }] }
  - { name: h2, interfaces: [{ name: eth0, subnet: b, address: 10.5.2.10/24 }] }
links:
  - [h1:eth0, sw1:p1]
  - [h2:eth0, sw1:p2]
";
    let mut sw = Switch::of(yaml, "sw1");
    let broadcast = FrameBuilder::arp_request(sw.mac("h1"), "10.5.1.10", "10.5.1.99").build();
    let ports: Vec<u32> = sw.send(1, &broadcast).iter().map(|s| s.port).collect();
    assert_eq!(
        ports,
        vec![2],
        "flooded to the other host port, not the uplink"
    );
    // Routed to h2 and NATed to the internet as on a VLAN-aware switch.
    let routed = FrameBuilder::udp4("10.5.1.10:1", "10.5.2.10:2", b"x")
        .src_mac(sw.mac("h1"))
        .dst_mac(router_mac(LAB))
        .build();
    let out = sw.out_of(1, &routed, 2);
    assert_eq!(
        EthernetFrame::new_checked(&out[..]).unwrap().dst_addr(),
        sw.mac("h2")
    );
    let out_bound = FrameBuilder::udp4("10.5.1.10:1", "203.0.113.5:2", b"x")
        .src_mac(sw.mac("h1"))
        .dst_mac(router_mac(LAB))
        .build();
    let out = sw.out_of(1, &out_bound, UPLINK_PORT);
    assert_eq!(ip_of(&out).src_addr(), addr("203.0.113.6"));
}

#[test]
fn an_internal_frontend_is_balanced_and_answered_from_its_own_address() {
    let yaml = include_str!("../../../topologies/lb.yaml").replace("name: lb\n", "name: routing\n");
    let mut sw = Switch::with_ports(&yaml, "sw1", &[1, 2, 3, 4, 5, 6, UPLINK_PORT]);
    let (web1, app1, app2, jobs) = (1, 4, 5, 6);
    // From web1's subnet, routed: DNATed to a member of the app pool.
    let syn = FrameBuilder::tcp4("10.30.1.11:40000", "10.30.2.100:8080", b"")
        .tcp_flags(TcpFlags::SYN)
        .tcp_seq_ack(1, 0)
        .src_mac(sw.mac("web1"))
        .dst_mac(router_mac(LAB))
        .build();
    // (Flooded: the switch has learned no MAC in this test.)
    let sent = sw.send(web1, &syn);
    let out = &sent[0].bytes;
    let ip = ip_of(out);
    let member = ip.dst_addr();
    let (host, port) = if member == addr("10.30.2.11") {
        ("app1", app1)
    } else {
        assert_eq!(member, addr("10.30.2.12"));
        ("app2", app2)
    };
    assert_eq!(&out[0..6], sw.mac(host).as_bytes());
    assert_eq!((ip.src_addr(), ip.ttl()), (addr("10.30.1.11"), 63));
    assert!(checksums_valid(out));
    // The member's answer leaves from the frontend.
    let syn_ack = FrameBuilder::tcp4(&format!("{member}:8080"), "10.30.1.11:40000", b"")
        .tcp_flags(TcpFlags::SYN | TcpFlags::ACK)
        .tcp_seq_ack(9, 2)
        .src_mac(sw.mac(host))
        .dst_mac(router_mac(LAB))
        .build();
    let back = sw.out_of(port, &syn_ack, web1);
    let ip = ip_of(&back);
    assert_eq!(
        (ip.src_addr(), ip.dst_addr()),
        (addr("10.30.2.100"), addr("10.30.1.11"))
    );
    assert!(checksums_valid(&back));
    // In the frontend's own subnet the gateway answers ARP for it.
    let arp = FrameBuilder::arp_request(sw.mac("jobs"), "10.30.2.20", "10.30.2.100").build();
    let reply = sw.out_of(jobs, &arp, jobs);
    assert_eq!(
        &reply[22..28],
        router_mac(LAB).as_bytes(),
        "the router's MAC"
    );
    // A member to its own frontend: administratively prohibited.
    let hairpin = FrameBuilder::tcp4("10.30.2.11:40001", "10.30.2.100:8080", b"")
        .tcp_flags(TcpFlags::SYN)
        .tcp_seq_ack(1, 0)
        .src_mac(sw.mac("app1"))
        .dst_mac(router_mac(LAB))
        .build();
    let refused = sw.out_of(app1, &hairpin, app1);
    let ip = ip_of(&refused);
    assert_eq!(
        (ip.src_addr(), ip.dst_addr(), refused[23]),
        (addr("10.30.2.1"), addr("10.30.2.11"), 1),
        "ICMP from the gateway"
    );
    let icmp = &refused[14 + 20..];
    assert_eq!(
        (icmp[0], icmp[1]),
        (3, 13),
        "destination unreachable, administratively prohibited"
    );
}

/// An ICMP error from `from` on the internet to `to`, quoting the first 28
/// bytes of the IPv4 packet in `frame`, as the internet's router sends it to
/// the switch's edge address.
fn icmp_error_frame(
    frame: &[u8],
    kind: [u8; 2],
    from: &str,
    to: &str,
    edge: EthernetAddress,
) -> Vec<u8> {
    let mut icmp = vec![kind[0], kind[1], 0, 0, 0, 0, 0x05, 0x78];
    icmp.extend_from_slice(&frame[14..14 + 28]);
    let sum = checksum::checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut error = Vec::new();
    error.extend_from_slice(&edge.0);
    error.extend_from_slice(&internet_router_mac(LAB).0);
    error.extend_from_slice(&[0x08, 0x00]);
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
    ip[2..4].copy_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&addr(from).octets());
    ip.extend_from_slice(&addr(to).octets());
    let sum = checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    error.extend_from_slice(&ip);
    error.extend_from_slice(&icmp);
    error
}

#[test]
fn an_icmp_error_about_a_balanced_connection_reaches_its_backend() {
    let yaml = include_str!("../../../topologies/lb.yaml").replace("name: lb\n", "name: routing\n");
    let mut sw = Switch::with_ports(&yaml, "sw1", &[1, 2, 3, 4, 5, 6, UPLINK_PORT]);
    let edge = edge_mac(LAB, "sw1", "hub");
    let syn = FrameBuilder::tcp4("198.51.100.20:40000", "203.0.113.50:80", b"")
        .tcp_flags(TcpFlags::SYN)
        .tcp_seq_ack(1, 0)
        .src_mac(internet_router_mac(LAB))
        .dst_mac(edge)
        .build();
    let sent = sw.send(UPLINK_PORT, &syn);
    let backend = ip_of(&sent[0].bytes).dst_addr();
    let port = sent[0].port;
    // The backend's answer leaves from the frontend...
    let host = match backend.octets()[3] {
        11 => "web1",
        12 => "web2",
        _ => "web3",
    };
    let answer = FrameBuilder::tcp4(&format!("{backend}:80"), "198.51.100.20:40000", b"")
        .tcp_flags(TcpFlags::SYN | TcpFlags::ACK)
        .tcp_seq_ack(9, 2)
        .src_mac(sw.mac(host))
        .dst_mac(router_mac(LAB))
        .build();
    let out = sw.out_of(port, &answer, UPLINK_PORT);
    assert_eq!(ip_of(&out).src_addr(), addr("203.0.113.50"));
    // ... and a router's "fragmentation needed" about it reaches the
    // backend, addressed to it and quoting its own addresses.
    let error = icmp_error_frame(&out, [3, 4], "198.51.100.1", "203.0.113.50", edge);
    let delivered = sw.out_of(UPLINK_PORT, &error, port);
    let outer = ip_of(&delivered);
    assert_eq!(outer.dst_addr(), backend);
    assert!(checksums_valid(&delivered));
    let quoted = &outer.payload()[8..];
    assert_eq!(
        &quoted[12..16],
        &backend.octets(),
        "the quoted source is the backend"
    );
}

#[test]
fn a_tagged_frame_from_the_internet_is_no_relay() {
    let yaml = include_str!("../../../topologies/lb.yaml").replace("name: lb\n", "name: routing\n");
    let mut sw = Switch::with_ports(&yaml, "sw1", &[1, 2, 3, 4, 5, 6, UPLINK_PORT]);
    // Tagged with web1's relay id, from the internet's router: not a frame
    // another switch relays (there is none), so it reaches no host.
    let frame = FrameBuilder::tcp4("198.51.100.20:40000", "10.30.1.11:22", b"")
        .tcp_flags(TcpFlags::SYN)
        .tcp_seq_ack(1, 0)
        .src_mac(internet_router_mac(LAB))
        .dst_mac(edge_mac(LAB, "sw1", "hub"))
        .vlan(1, 0)
        .build();
    let sent = sw.send(UPLINK_PORT, &frame);
    assert!(sent.is_empty(), "{sent:?}");
}
