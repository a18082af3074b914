//! Namespace tests of virtual networks: the VLAN lab (access and trunk ports
//! between two switches) and the VXLAN lab (two hypervisors on an underlay,
//! two tenants with the same addresses), brought up with the `sdn` binary.
//! Captures on the trunk, on access ports and on the underlay are read back
//! from pcap files and checked field by field. A Linux `vxlan` device stands
//! in for a third-party tunnel endpoint. They need root and skip otherwise.

mod support;

use sdn_controller::topology;
use sdn_vswitch::testutil::FrameBuilder;
use sdn_vswitch::wire::{
    EtherType, EthernetAddress, EthernetFrame, IpProtocol, Ipv4Packet, UdpDatagram, VlanHeader,
    VxlanPacket,
};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use support::*;

fn status_json(lab: &Lab) -> Value {
    let out = lab.sdn(&["status", "--lab", &lab.name, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let value: Value = serde_json::from_slice(&out.stdout).expect("status is JSON");
    value["labs"][0].clone()
}

fn switch_status<'a>(status: &'a Value, switch: &str) -> &'a Value {
    status["switches"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == switch))
        .unwrap_or_else(|| panic!("{switch} in status: {status}"))
}

/// Frames the VLAN rules of `switch` dropped on `port`, as `sdn status` says.
fn dropped_on(lab: &Lab, switch: &str, port: &str) -> u64 {
    let status = status_json(lab);
    let vlans = switch_status(&status, switch)["vlans"].clone();
    vlans
        .as_array()
        .and_then(|ports| ports.iter().find(|p| p["port"] == port))
        .and_then(|p| p["dropped"].as_u64())
        .unwrap_or_else(|| panic!("drop counter of {switch}:{port} in {vlans}"))
}

fn mac_of(lab: &Lab, host: &str) -> EthernetAddress {
    let topo = topology::load(&lab.file).expect("topology");
    topo.host(host).expect("host").interfaces[0].mac
}

fn ping_fails(lab: &Lab, node: &str, address: &str) {
    let out = lab.exec(node, &["ping", "-c", "2", "-i", "0.2", "-W", "1", address]);
    assert!(
        !out.status.success(),
        "{node} reached {address}, which it must not:\n{}",
        text(&out.stdout)
    );
}

/// The 802.1Q tag of a frame, if it has one: (VID, PCP).
fn tag_of(frame: &[u8]) -> Option<(u16, u8)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::Vlan {
        return None;
    }
    let tag = VlanHeader::new_checked(eth.payload()).ok()?;
    Some((tag.vid(), tag.pcp()))
}

/// The frame without its 802.1Q tag.
fn untagged(frame: &[u8]) -> Vec<u8> {
    match tag_of(frame) {
        Some(_) => [&frame[..12], &frame[16..]].concat(),
        None => frame.to_vec(),
    }
}

/// Whether a frame (maybe tagged) is a UDP datagram carrying `needle` (and
/// not, say, an ICMP error quoting one).
fn udp_carries(frame: &[u8], needle: &[u8]) -> bool {
    let plain = untagged(frame);
    let Ok(eth) = EthernetFrame::new_checked(&plain[..]) else {
        return false;
    };
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
        return false;
    };
    eth.ethertype() == EtherType::Ipv4
        && ip.protocol() == IpProtocol::Udp
        && UdpDatagram::new_checked(ip.payload()).is_ok_and(|u| carries(u.payload(), needle))
}

/// The frames that are UDP datagrams carrying `needle`.
fn find<'a>(frames: &'a [Vec<u8>], needle: &[u8]) -> Vec<&'a Vec<u8>> {
    frames.iter().filter(|f| udp_carries(f, needle)).collect()
}

fn udp(lab: &Lab, host: &str, from: &str, to: &str, payload: &[u8]) {
    let (from, to): (SocketAddr, SocketAddr) = (from.parse().unwrap(), to.parse().unwrap());
    udp_send(&lab.ns(host), from, to, payload);
}

#[test]
fn vlans_stay_apart_and_the_trunk_carries_their_tags() {
    if !is_root() {
        return;
    }
    let name = unique_name("vlan");
    let lab = Lab::new(&name, &repository_topology("vlan.yaml", &name));
    lab.up();
    lab.ping("a1", "10.10.0.3"); // VLAN 10 across the trunk
    lab.ping("b1", "10.10.0.4"); // VLAN 20
    lab.ping("c2", "10.10.0.5"); // native VLAN 30
    ping_fails(&lab, "a1", "10.10.0.2"); // VLAN 10 to VLAN 20, same switch
    ping_fails(&lab, "a1", "10.10.0.4"); // VLAN 10 to VLAN 20, across the trunk
    ping_fails(&lab, "b2", "10.10.0.6"); // VLAN 20 to the native VLAN

    let trunk = lab.capture("sw1", "t1", 3);
    let access = lab.capture("sw2", "p1", 3);
    let other_access = lab.capture("sw2", "p2", 3);
    std::thread::sleep(Duration::from_millis(300));
    udp(
        &lab,
        "a1",
        "10.10.0.7:4000",
        "10.10.0.3:9999",
        b"vlan-10-payload",
    );
    udp(
        &lab,
        "b1",
        "10.10.0.2:4000",
        "10.10.0.255:9999",
        b"vlan-20-broadcast",
    );
    udp(
        &lab,
        "c1",
        "10.10.0.5:4000",
        "10.10.0.6:9999",
        b"vlan-30-payload",
    );
    let trunk = trunk.frames();
    let access = access.frames();
    let other_access = other_access.frames();

    let a1 = mac_of(&lab, "a1");
    let on_trunk = find(&trunk, b"vlan-10-payload");
    assert_eq!(on_trunk.len(), 1, "a1's datagram crosses the trunk once");
    assert_eq!(tag_of(on_trunk[0]), Some((10, 0)), "tagged VID 10, PCP 0");
    let inner = untagged(on_trunk[0]);
    let eth = EthernetFrame::new_checked(&inner[..]).unwrap();
    assert_eq!(eth.src_addr(), a1);
    assert_eq!(eth.ethertype(), EtherType::Ipv4);
    let at_a2 = find(&access, b"vlan-10-payload");
    assert_eq!(at_a2.len(), 1, "a2's access port delivers it once");
    assert_eq!(tag_of(at_a2[0]), None, "untagged on the access port");
    assert_eq!(
        *at_a2[0], inner,
        "the frame on the access port is the trunk's frame untagged"
    );

    let broadcast = find(&trunk, b"vlan-20-broadcast");
    assert_eq!(broadcast.len(), 1);
    assert_eq!(tag_of(broadcast[0]), Some((20, 0)));
    assert!(
        find(&access, b"vlan-20-broadcast").is_empty(),
        "VLAN 20's broadcast stays out of VLAN 10"
    );
    assert_eq!(
        find(&other_access, b"vlan-20-broadcast").len(),
        1,
        "and reaches b2, untagged"
    );
    assert!(other_access.iter().all(|f| tag_of(f).is_none()));

    let native = find(&trunk, b"vlan-30-payload");
    assert_eq!(native.len(), 1);
    assert_eq!(
        tag_of(native[0]),
        None,
        "the native VLAN crosses the trunk untagged"
    );
    assert!(
        trunk
            .iter()
            .filter(|f| tag_of(f).is_some())
            .all(|f| matches!(tag_of(f), Some((10 | 20, 0))))
    );

    // A tagged frame on an access port, and a VID the trunk does not carry,
    // are dropped and counted.
    let before = (dropped_on(&lab, "sw1", "p1"), dropped_on(&lab, "sw1", "t1"));
    let tagged = FrameBuilder::udp4("10.10.0.7:1", "10.10.0.255:2", b"smuggled-tag")
        .src_mac(a1)
        .dst_mac(EthernetAddress::BROADCAST)
        .vlan(20, 0)
        .build();
    raw_send(&lab.ns("a1"), "eth0", &[tagged.clone(), tagged]);
    let foreign = FrameBuilder::udp4("10.10.0.3:1", "10.10.0.255:2", b"vid-99")
        .dst_mac(EthernetAddress::BROADCAST)
        .vlan(99, 0)
        .build();
    // Sent into the trunk from sw2's end of it.
    raw_send(&lab.ns("sw2"), "t1", &[foreign]);
    wait_for("drop counters", Duration::from_secs(5), || {
        dropped_on(&lab, "sw1", "p1") >= before.0 + 2 && dropped_on(&lab, "sw1", "t1") > before.1
    });

    // TCP across the trunk, with the hosts' segmentation and checksum offloads.
    let data = pattern(4 << 20, 7);
    let received = tcp_transfer(
        &lab.ns("a2"),
        &lab.ns("a1"),
        "10.10.0.3:7001".parse().unwrap(),
        &data,
    );
    assert!(received == data, "TCP over the trunk arrives intact");

    let out = lab.sdn(&["status", "--lab", &name]);
    let shown = text(&out.stdout);
    assert!(
        shown.contains("port t1     trunk 10,20 native 30"),
        "{shown}"
    );
    assert!(shown.contains("port p1     access 10"), "{shown}");
    let flows = text(&lab.sdn(&["dump-flows", "sw1", "--lab", &name]).stdout);
    assert!(flows.contains("push_vlan:vid=10"), "{flows}");
    assert!(flows.contains("pop_vlan"), "{flows}");
}

/// The VXLAN header and inner frame of an underlay frame, with its outer
/// addresses and UDP source port.
struct Tunnelled {
    src: std::net::Ipv4Addr,
    dst: std::net::Ipv4Addr,
    source_port: u16,
    vni: u32,
    flags: u8,
    inner: Vec<u8>,
}

fn tunnelled(frame: &[u8]) -> Option<Tunnelled> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if eth.ethertype() != EtherType::Ipv4 || ip.protocol() != IpProtocol::Udp {
        return None;
    }
    assert!(ip.verify_checksum(), "outer IPv4 checksum");
    let udp = UdpDatagram::new_checked(ip.payload()).ok()?;
    if udp.dst_port() != 4789 {
        return None;
    }
    let vxlan = VxlanPacket::new_checked(udp.payload()).ok()?;
    Some(Tunnelled {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        source_port: udp.src_port(),
        vni: vxlan.vni(),
        flags: vxlan.flags(),
        inner: vxlan.payload().to_vec(),
    })
}

#[test]
fn tenants_cross_the_underlay_in_their_own_vnis() {
    if !is_root() {
        return;
    }
    let name = unique_name("vx");
    let lab = Lab::new(&name, &repository_topology("vxlan.yaml", &name));
    lab.up();
    lab.ping("a1", "10.1.1.2");
    lab.ping("b1", "10.1.1.2");
    let mtu = text(&lab.exec("a1", &["cat", "/sys/class/net/eth0/mtu"]).stdout);
    assert_eq!(
        mtu.trim(),
        "1450",
        "host MTU leaves room for VXLAN over a 1500 underlay"
    );

    let wire = Sniffer::start(&lab.ns("underlay"), "hv1");
    let at_a2 = lab.capture("sw2", "p1", 3);
    let at_b2 = lab.capture("sw2", "p2", 3);
    std::thread::sleep(Duration::from_millis(300));
    udp(
        &lab,
        "a1",
        "10.1.1.3:5000",
        "10.1.1.2:9999",
        b"tenant-a-secret",
    );
    udp(
        &lab,
        "a1",
        "10.1.1.3:5000",
        "10.1.1.2:9999",
        b"tenant-a-again",
    );
    udp(
        &lab,
        "b1",
        "10.1.1.3:5000",
        "10.1.1.2:9999",
        b"tenant-b-secret",
    );
    udp(
        &lab,
        "a1",
        "10.1.1.3:5001",
        "10.1.1.255:9999",
        b"tenant-a-broadcast",
    );
    let at_a2 = at_a2.frames();
    let at_b2 = at_b2.frames();
    let wire = wire.stop(&lab.dir.join("underlay.pcap"));

    let tunnelled: Vec<Tunnelled> = wire.iter().filter_map(|f| tunnelled(f)).collect();
    let of = |needle: &[u8]| -> Vec<&Tunnelled> {
        tunnelled
            .iter()
            .filter(|t| udp_carries(&t.inner, needle))
            .collect()
    };
    let (a, a_again, b) = (
        of(b"tenant-a-secret"),
        of(b"tenant-a-again"),
        of(b"tenant-b-secret"),
    );
    assert_eq!(
        (a.len(), b.len()),
        (1, 1),
        "each datagram crosses the underlay once"
    );
    let hv1: std::net::Ipv4Addr = "192.168.100.1".parse().unwrap();
    let hv2: std::net::Ipv4Addr = "192.168.100.2".parse().unwrap();
    for t in a.iter().chain(&b) {
        assert_eq!((t.src, t.dst), (hv1, hv2));
        assert_eq!(t.flags, 0x08, "I flag set, the rest zero");
        assert!(
            (49152..=65535).contains(&t.source_port),
            "source port {}",
            t.source_port
        );
    }
    assert_eq!(a[0].vni, 5001);
    assert_eq!(b[0].vni, 5002);
    assert_eq!(
        a_again[0].source_port, a[0].source_port,
        "one flow, one source port"
    );
    let inner = EthernetFrame::new_checked(&a[0].inner[..]).unwrap();
    assert_eq!(inner.src_addr(), mac_of(&lab, "a1"));
    assert_eq!(
        inner.dst_addr(),
        mac_of(&lab, "a2"),
        "a2 is known behind hv2: unicast"
    );
    assert_eq!(tag_of(&a[0].inner), None, "no VLAN tag inside the tunnel");
    let delivered = find(&at_a2, b"tenant-a-secret");
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        *delivered[0], a[0].inner,
        "a2 gets the inner frame exactly as a1 sent it"
    );

    let broadcast = of(b"tenant-a-broadcast");
    assert_eq!(
        broadcast.len(),
        1,
        "one copy per remote endpoint of VNI 5001"
    );
    assert_eq!(broadcast[0].vni, 5001);

    for secret in [
        &b"tenant-a-secret"[..],
        b"tenant-a-again",
        b"tenant-a-broadcast",
    ] {
        assert!(
            find(&at_b2, secret).is_empty(),
            "tenant A's frames never reach tenant B"
        );
    }
    assert_eq!(find(&at_b2, b"tenant-b-secret").len(), 1);
    assert!(find(&at_a2, b"tenant-b-secret").is_empty());

    // TCP across the overlay, both tenants.
    let data = pattern(2 << 20, 3);
    let received = tcp_transfer(
        &lab.ns("a2"),
        &lab.ns("a1"),
        "10.1.1.2:7001".parse().unwrap(),
        &data,
    );
    assert!(received == data, "TCP over VXLAN arrives intact");
    let received = tcp_transfer(
        &lab.ns("b1"),
        &lab.ns("b2"),
        "10.1.1.3:7002".parse().unwrap(),
        &data,
    );
    assert!(received == data, "and for the other tenant");

    let status = status_json(&lab);
    let vtep = &switch_status(&status, "sw1")["vtep"];
    assert_eq!(vtep["address"], "192.168.100.1");
    assert_eq!(
        vtep["reported"], "192.168.100.1",
        "the switch's endpoint is where the plan put it"
    );
    assert_eq!(vtep["udp_port"], 4789);
    let vnis: Vec<(u64, u64)> = vtep["vnis"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["vni"].as_u64().unwrap(), v["vlan"].as_u64().unwrap()))
        .collect();
    assert_eq!(vnis, vec![(5001, 10), (5002, 20)]);
    let flows = text(&lab.sdn(&["dump-flows", "sw1", "--lab", &name]).stdout);
    assert!(
        flows.contains("set_field:0x1389->tun_id,set_field:192.168.100.2->tun_dst"),
        "{flows}"
    );
}

#[test]
fn a_kernel_vxlan_endpoint_talks_with_hosts_behind_the_switch() {
    if !is_root() {
        return;
    }
    let name = unique_name("kvx");
    let topology = format!(
        "name: {name}
underlay: {{ cidr: 192.168.100.0/24 }}
hypervisors:
  - {{ name: hv1, address: 192.168.100.1 }}
  - {{ name: linux, address: 192.168.100.2, vnis: [5001] }}
networks:
  - name: tenant
    cidr: 10.1.0.0/16
    subnets: [{{ name: web, cidr: 10.1.1.0/24 }}]
switches:
  - name: sw1
    hypervisor: hv1
    vlan_vni: {{ 10: 5001 }}
    ports: [{{ name: p1, mode: access, vlan: 10 }}]
hosts:
  - {{ name: a1, interfaces: [{{ name: eth0, subnet: web, address: 10.1.1.3/24 }}] }}
links:
  - [a1:eth0, sw1:p1]
"
    );
    let lab = Lab::new(&name, &topology);
    lab.up();
    // The Linux endpoint: a vxlan device of VNI 5001 with the switch as remote.
    for command in [
        &[
            "ip",
            "link",
            "add",
            "vx0",
            "type",
            "vxlan",
            "id",
            "5001",
            "local",
            "192.168.100.2",
            "remote",
            "192.168.100.1",
            "dstport",
            "4789",
            "dev",
            "underlay0",
        ][..],
        &["ip", "address", "add", "10.1.1.2/24", "dev", "vx0"],
        &["ip", "link", "set", "vx0", "up"],
    ] {
        let out = lab.exec("linux", command);
        assert!(out.status.success(), "{command:?}: {}", text(&out.stderr));
    }
    let mtu = text(&lab.exec("linux", &["cat", "/sys/class/net/vx0/mtu"]).stdout);
    assert_eq!(
        mtu.trim(),
        "1450",
        "the kernel's own choice matches the hosts'"
    );
    lab.ping("a1", "10.1.1.2");
    lab.ping("linux", "10.1.1.3");
    let data = pattern(2 << 20, 11);
    let received = tcp_transfer(
        &lab.ns("linux"),
        &lab.ns("a1"),
        "10.1.1.2:7003".parse().unwrap(),
        &data,
    );
    assert!(
        received == data,
        "TCP from a host behind the switch to the kernel endpoint"
    );
    let received = tcp_transfer(
        &lab.ns("a1"),
        &lab.ns("linux"),
        "10.1.1.3:7004".parse().unwrap(),
        &data,
    );
    assert!(received == data, "and back");
    // The kernel endpoint's MAC was not in the topology: the switch learned it
    // from the tunnel, behind the kernel's address.
    let flows = text(&lab.sdn(&["dump-flows", "sw1", "--lab", &name]).stdout);
    assert!(
        flows.lines().any(|l| l.contains("in_port=vxlan")
            && l.contains("tun_src=192.168.100.2")
            && l.contains("idle_timeout")),
        "a learned entry for the kernel endpoint's MAC:\n{flows}"
    );
}
