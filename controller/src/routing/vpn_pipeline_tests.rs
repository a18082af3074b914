//! Packets through sw1 of `topologies/vpn.yaml`, which carries all three
//! VPN gateways: what hub's hosts send to the branch office leaves by
//! hub-gw's ESP port tagged for connection hub-to-branch; what that tunnel
//! brings from the branch's LAN is routed to its host; a tunnel's packet
//! from a prefix that is not its own, or with another tunnel's id, goes
//! nowhere; VNet-to-VNet traffic leaves by east-gw's port and arrives by
//! west-gw's; a packet too big for the tunnel is answered with
//! fragmentation-needed.

use super::addresses::router_mac;
use super::compile::vpn::TUNNEL_MTU;
use super::pipeline_tests::Switch;
use crate::topology::ESP_PORT_BASE;
use sdn_vswitch::pipeline::{Decision, FrameMeta, OwnedFrame, TunnelMeta, TunnelTarget};
use sdn_vswitch::testutil::FrameBuilder;
use sdn_vswitch::wire::{EthernetFrame, Ipv4Packet, checksum};
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

const VPN: &str = include_str!("../../../topologies/vpn.yaml");
const LAB: &str = "vpn";
/// sw1's ports: app1, app2, east1, west1, then one ESP port per gateway.
const APP1: u32 = 1;
const WEST1: u32 = 4;
const HUB_GW: u32 = ESP_PORT_BASE;
const EAST_GW: u32 = ESP_PORT_BASE + 1;
const WEST_GW: u32 = ESP_PORT_BASE + 2;
/// Tunnel ids: 1 + the connection's index.
const HUB_TO_BRANCH: u32 = 1;
const EAST_TO_WEST: u32 = 2;

/// vpn.yaml in a directory of its own with its key files (0600).
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sdn-vpn-pipeline-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for key in ["branch.psk", "east-west.psk"] {
            let path = dir.join(key);
            std::fs::write(&path, "a-key-for-the-pipeline-tests\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sw1() -> (Switch, Dir) {
    let dir = Dir::new();
    let sw = Switch::at(
        VPN,
        &dir.0.join("vpn.yaml"),
        "sw1",
        &[1, 2, 3, 4, HUB_GW, EAST_GW, WEST_GW],
    );
    (sw, dir)
}

fn addr(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

/// Every output of one frame: port, tunnel target and the bytes.
fn run(
    sw: &mut Switch,
    in_port: u32,
    tunnel: Option<TunnelMeta>,
    frame: &[u8],
) -> Vec<(u32, Option<TunnelTarget>, Vec<u8>)> {
    let mut buffer = OwnedFrame::new(frame);
    let mut d = Decision::default();
    let meta = FrameMeta {
        tunnel,
        ..FrameMeta::plain(in_port)
    };
    sw.pipeline.process(&mut buffer, meta, sw.now, &mut d);
    let last = buffer.into_vec();
    let mut out: Vec<_> = d
        .generated
        .iter()
        .map(|(o, b)| (o.port, o.tunnel, b.clone()))
        .collect();
    out.extend(d.outputs.iter().map(|o| (o.port, o.tunnel, last.clone())));
    out
}

fn from_tunnel(id: u32, peer: &str) -> Option<TunnelMeta> {
    Some(TunnelMeta {
        vni: id,
        src: addr(peer),
    })
}

/// The one frame `out` sends out of host port `port`. Without the
/// controller's learning the switch floods a routed frame to a MAC it has
/// not learned; the tunnels never take one (no output has a tunnel target).
fn delivered(out: &[(u32, Option<TunnelTarget>, Vec<u8>)], port: u32) -> Vec<u8> {
    assert!(
        out.iter().all(|(_, tunnel, _)| tunnel.is_none()),
        "nothing goes into a tunnel: {out:?}"
    );
    let on_port: Vec<_> = out.iter().filter(|(p, _, _)| *p == port).collect();
    assert_eq!(on_port.len(), 1, "one frame out of port {port}: {out:?}");
    on_port[0].2.clone()
}

fn ttl(frame: &[u8]) -> u8 {
    Ipv4Packet::new_checked(&frame[14..]).unwrap().ttl()
}

#[test]
fn hub_traffic_to_the_branch_leaves_by_the_gateways_port_for_its_connection() {
    let (mut sw, _dir) = sw1();
    let frame = FrameBuilder::icmp4_echo("10.90.1.11", "192.168.50.10", 1)
        .src_mac(sw.mac("app1"))
        .dst_mac(router_mac(LAB))
        .build();
    let out = run(&mut sw, APP1, None, &frame);
    assert_eq!(out.len(), 1, "one way out: {out:?}");
    let (port, tunnel, bytes) = &out[0];
    assert_eq!(*port, HUB_GW);
    assert_eq!(
        *tunnel,
        Some(TunnelTarget {
            vni: HUB_TO_BRANCH,
            dst: addr("198.51.100.90"),
        }),
        "the branch's connection, towards its public address"
    );
    assert_eq!(ttl(bytes), 63, "routed: one hop less");
    assert_eq!(
        &bytes[34..],
        &frame[34..],
        "the ICMP message crosses untouched"
    );
}

#[test]
fn what_the_branch_tunnel_brings_is_routed_to_its_host() {
    let (mut sw, _dir) = sw1();
    let frame = FrameBuilder::icmp4_echo("192.168.50.10", "10.90.1.11", 1)
        .echo_reply(true)
        .build();
    let out = run(
        &mut sw,
        HUB_GW,
        from_tunnel(HUB_TO_BRANCH, "198.51.100.90"),
        &frame,
    );
    let bytes = delivered(&out, APP1);
    let eth = EthernetFrame::new_checked(&bytes[..]).unwrap();
    assert_eq!(
        (eth.src_addr(), eth.dst_addr()),
        (router_mac(LAB), sw.mac("app1"))
    );
    assert_eq!(ttl(&bytes), 63);
}

#[test]
fn a_tunnel_packet_from_a_prefix_not_its_own_or_with_another_tunnels_id_goes_nowhere() {
    let (mut sw, _dir) = sw1();
    let spoofed = FrameBuilder::icmp4_echo("10.92.1.11", "10.90.1.11", 1).build();
    let out = run(
        &mut sw,
        HUB_GW,
        from_tunnel(HUB_TO_BRANCH, "198.51.100.90"),
        &spoofed,
    );
    assert!(
        out.is_empty(),
        "west's prefix through the branch tunnel: {out:?}"
    );
    let branch = FrameBuilder::icmp4_echo("192.168.50.10", "10.90.1.11", 1).build();
    let out = run(
        &mut sw,
        HUB_GW,
        from_tunnel(EAST_TO_WEST, "203.0.113.91"),
        &branch,
    );
    assert!(
        out.is_empty(),
        "the branch's prefix under another id: {out:?}"
    );
}

#[test]
fn vnet_to_vnet_leaves_by_one_gateway_and_arrives_by_the_other() {
    let (mut sw, _dir) = sw1();
    let frame = FrameBuilder::udp4("10.91.1.11:5000", "10.92.1.11:6000", b"east to west")
        .src_mac(sw.mac("east1"))
        .dst_mac(router_mac(LAB))
        .build();
    let out = run(&mut sw, 3, None, &frame);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, EAST_GW);
    assert_eq!(
        out[0].1,
        Some(TunnelTarget {
            vni: EAST_TO_WEST,
            dst: addr("203.0.113.92"),
        }),
        "towards west-gw's public address"
    );
    // The same packet, opened by west-gw's port.
    let out = run(
        &mut sw,
        WEST_GW,
        from_tunnel(EAST_TO_WEST, "203.0.113.91"),
        &out[0].2,
    );
    assert_eq!(ttl(&delivered(&out, WEST1)), 62, "a hop at each gateway");
}

#[test]
fn a_packet_too_big_for_the_tunnel_is_answered_with_fragmentation_needed() {
    let (mut sw, _dir) = sw1();
    let payload = vec![7u8; usize::from(TUNNEL_MTU) - 28 + 1];
    let mut frame = FrameBuilder::udp4("10.90.1.11:5000", "192.168.50.10:6000", &payload)
        .src_mac(sw.mac("app1"))
        .dst_mac(router_mac(LAB))
        .build();
    // Don't fragment.
    frame[20] |= 0x40;
    frame[24..26].fill(0);
    let sum = checksum::checksum(&frame[14..34]);
    frame[24..26].copy_from_slice(&sum.to_be_bytes());
    let out = run(&mut sw, APP1, None, &frame);
    assert_eq!(out.len(), 1, "{out:?}");
    let (port, _, bytes) = &out[0];
    assert_eq!(*port, APP1, "back to the sender");
    let ip = Ipv4Packet::new_checked(&bytes[14..]).unwrap();
    assert_eq!(ip.dst_addr(), addr("10.90.1.11"));
    let icmp = ip.payload();
    assert_eq!((icmp[0], icmp[1]), (3, 4), "fragmentation needed");
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), TUNNEL_MTU);
}
