//! Namespace test of `topologies/vpn.yaml`: the hub's gateway and the
//! branch office's strongSwan (Debian's charon with kernel-libipsec)
//! establish IKEv2 by themselves; hosts on both sides ping and carry 20 MB
//! of TCP intact each way through ESP in UDP 4500; the internet router's
//! link to the gateway's switch carries only UDP 500 and 4500 and never a
//! marker sent through the tunnel; east and west reach each other
//! VNet-to-VNet. Then the gateway refuses what it must: a captured ESP
//! packet sent again is a counted replay, one with a flipped bit a counted
//! authentication failure, one under an unknown SPI counted as such; none
//! reaches a host. `sdn vpn status` reports all of it. Needs root and
//! strongSwan; skips with a line saying why otherwise.

mod support;

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::*;

const CHARON: &str = "/usr/lib/ipsec/charon";
const MARKER: &[u8] = b"cleartext-marker-through-the-tunnel";
const GATEWAY: [u8; 4] = [203, 0, 113, 90];
const BRANCH: [u8; 4] = [198, 51, 100, 90];

/// An IPv4/UDP frame's source and destination addresses, ports and payload.
type Udp<'a> = ([u8; 4], [u8; 4], u16, u16, &'a [u8]);

fn udp_of(frame: &[u8]) -> Option<Udp<'_>> {
    if frame.len() < 42 || frame[12..14] != [0x08, 0x00] || frame[23] != 17 {
        return None;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let udp = frame.get(14 + ihl..)?;
    let src = frame[26..30].try_into().ok()?;
    let dst = frame[30..34].try_into().ok()?;
    let sport = u16::from_be_bytes([*udp.first()?, *udp.get(1)?]);
    let dport = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    Some((src, dst, sport, dport, udp.get(8..)?))
}

/// The gateway's ESP counters from `sdn vpn status --json`.
fn gateway_status(lab: &Lab, gateway: &str) -> Value {
    let out = lab.sdn(&["vpn", "status", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    status["gateways"]
        .as_array()
        .expect("gateways")
        .iter()
        .find(|g| g["gateway"] == gateway)
        .unwrap_or_else(|| panic!("{gateway} in {status}"))
        .clone()
}

fn counter(lab: &Lab, name: &str) -> u64 {
    gateway_status(lab, "hub-gw")["port"][name]
        .as_u64()
        .expect("a counter")
}

#[test]
fn the_vpn_topology_carries_traffic_through_strongswan_and_between_networks() {
    if !is_root() {
        return;
    }
    if !Path::new(CHARON).exists() {
        eprintln!(
            "skipping: the VPN test needs strongSwan ({CHARON} is missing): apt-get install strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins libstrongswan-standard-plugins"
        );
        return;
    }
    let name = unique_name("vpn");
    let lab = Lab::new(&name, &repository_topology("vpn.yaml", &name));
    for key in ["branch.psk", "east-west.psk"] {
        let path = lab.dir.join(key);
        std::fs::write(&path, format!("a-lab-key-for-{key}\n")).expect("write a key file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    lab.up();
    let ping = |from: &str, to: &str| {
        lab.exec(from, &["ping", "-c", "1", "-W", "1", to])
            .status
            .success()
    };
    wait_for("the branch tunnel", Duration::from_secs(30), || {
        ping("app1", "192.168.50.10")
    });
    wait_for("the VNet-to-VNet tunnel", Duration::from_secs(30), || {
        ping("east1", "10.92.1.11")
    });
    lab.ping("branch1", "10.90.1.11");
    lab.ping("west1", "10.91.1.11");

    // 20 MB each way, recorded on the internet router's link to sw1.
    let sniffer = Sniffer::start(&lab.ns("internet"), "vpn-sw1");
    let mut data = pattern(20 << 20, 7);
    for at in (0..data.len()).step_by(1 << 16) {
        let end = (at + MARKER.len()).min(data.len());
        data[at..end].copy_from_slice(&MARKER[..end - at]);
    }
    let to_hub = tcp_transfer(
        &lab.ns("app1"),
        &lab.ns("branch1"),
        at("10.90.1.11", 5001),
        &data,
    );
    assert!(
        to_hub == data,
        "branch → hub: {} of {} bytes intact",
        to_hub.len(),
        data.len()
    );
    let to_branch = tcp_transfer(
        &lab.ns("branch1"),
        &lab.ns("app1"),
        at("192.168.50.10", 5002),
        &data,
    );
    assert!(
        to_branch == data,
        "hub → branch: {} of {} bytes",
        to_branch.len(),
        data.len()
    );
    let frames = sniffer.stop(&lab.dir.join("underlay.pcap"));
    let ipv4: Vec<&Vec<u8>> = frames
        .iter()
        .filter(|f| f[12..14] == [0x08, 0x00])
        .collect();
    assert!(
        ipv4.len() > 20_000,
        "the transfers crossed the link: {}",
        ipv4.len()
    );
    for frame in &ipv4 {
        let (_, _, sport, dport, _) =
            udp_of(frame).unwrap_or_else(|| panic!("only UDP on the underlay: {frame:02x?}"));
        assert!(
            [500, 4500].contains(&sport) && [500, 4500].contains(&dport),
            "only IKE and ESP ports: {sport} → {dport}"
        );
        assert!(!carries(frame, MARKER), "the marker crossed in clear");
    }

    // What the switch must refuse, built from an ESP packet of the branch's.
    let esp: Vec<u8> = ipv4
        .iter()
        .find(|f| {
            udp_of(f).is_some_and(|(src, dst, _, dport, payload)| {
                src == BRANCH
                    && dst == GATEWAY
                    && dport == 4500
                    && payload.len() > 40
                    && payload[..4] != [0; 4]
            })
        })
        .map(|f| f.to_vec())
        .expect("an ESP packet from the branch");
    let payload_at = esp.len() - udp_of(&esp).unwrap().4.len();
    let before = (
        counter(&lab, "replayed"),
        counter(&lab, "auth_failed"),
        counter(&lab, "unknown_spi"),
    );
    // A bit flipped in the sequence number, ahead of the window: past the
    // replay check, refused by the ICV (the header is authenticated).
    let mut flipped = esp.clone();
    flipped[payload_at + 4] ^= 0x40;
    let mut unknown = esp.clone();
    unknown[payload_at..payload_at + 4].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    // No UDP checksum: the changed ones' no longer holds, and the
    // capture holds the one the kernel left to offload unfinished.
    let mut replayed = esp.clone();
    for frame in [&mut replayed, &mut flipped, &mut unknown] {
        frame[payload_at - 2..payload_at].fill(0);
    }
    raw_send(
        &lab.ns("internet"),
        "vpn-sw1",
        &[replayed, flipped, unknown],
    );
    let counted = || {
        (
            counter(&lab, "replayed"),
            counter(&lab, "auth_failed"),
            counter(&lab, "unknown_spi"),
        )
    };
    let wanted = (before.0 + 1, before.1 + 1, before.2 + 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while counted() != wanted && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        counted(),
        wanted,
        "replayed, authentication failed, unknown SPI"
    );

    // What the gateways report.
    let hub = gateway_status(&lab, "hub-gw");
    let branch = &hub["connections"][0];
    assert_eq!(branch["name"], "hub-to-branch");
    assert_eq!(branch["state"], "established");
    assert_eq!(
        branch["nat_t"], true,
        "charon's kernel-libipsec floats to 4500"
    );
    assert!(branch["bytes_in"].as_u64().unwrap() > 20 << 20, "{branch}");
    assert!(branch["bytes_out"].as_u64().unwrap() > 20 << 20, "{branch}");
    let east = gateway_status(&lab, "east-gw");
    assert_eq!(east["connections"][0]["state"], "established");
    assert!(east["connections"][0]["packets_out"].as_u64().unwrap() > 0);

    // And strongSwan agrees.
    let vici = format!(
        "unix://{}",
        lab.record()
            .dir()
            .join("strongswan-branch/charon.vici")
            .display()
    );
    let sas = Command::new("swanctl")
        .args(["--list-sas", "--uri", &vici])
        .output()
        .expect("run swanctl");
    let sas = text(&sas.stdout);
    assert!(
        sas.contains("ESTABLISHED") && sas.contains("INSTALLED"),
        "{sas}"
    );

    let down = lab.sdn(&["down", lab.file.to_str().unwrap()]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    assert!(
        lab.namespaces_left().is_empty(),
        "{:?}",
        lab.namespaces_left()
    );
}
