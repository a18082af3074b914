//! Namespace test of a VPN gateway under an IKE_SA_INIT flood (RFC 7296
//! §2.6): thousands of requests a second, each with a fresh SPI, from the
//! peer's own public address (the worst case: a flood from any other
//! address finds no connection and is dropped unread). The gateway answers
//! them with cookies and keeps no state for them: its memory stays
//! bounded; and the real peer, strongSwan, whose IKE SA is torn down and
//! started again in the middle of the flood, still connects and carries
//! traffic. Needs root and strongSwan; skips with a line saying why
//! otherwise.

mod support;

use sdn_vpn::esp::Cipher;
use sdn_vpn::ike::dh::KeyPair;
use sdn_vpn::ike::message::{Message, Notify, payload};
use sdn_vpn::ike::sa_init::{NONCE_LEN, notify, request};
use std::net::{SocketAddrV4, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::*;

const CHARON: &str = "/usr/lib/ipsec/charon";
const GATEWAY: &str = "203.0.113.90";
const SITE: &str = "198.51.100.90";

/// Whether an IKE_SA_INIT answer asks for a cookie.
fn demands_cookie(answer: &[u8]) -> bool {
    Message::parse(answer).is_ok_and(|m| {
        m.payloads.iter().any(|p| {
            p.kind == payload::NOTIFY
                && answer
                    .get(p.body.clone())
                    .and_then(|b| Notify::parse(b).ok())
                    .is_some_and(|n| n.kind == notify::COOKIE)
        })
    })
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Floods the gateway from the site's namespace until `stop`; returns the
/// requests sent and the answers that demanded a cookie.
fn flood(ns: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, u64)> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        sdn_vswitch::netns::enter(&ns).expect("enter the site's namespace");
        let socket = UdpSocket::bind((SITE, 0)).expect("bind the flood's socket");
        socket.set_nonblocking(true).expect("nonblocking");
        let local = match socket.local_addr().expect("address") {
            std::net::SocketAddr::V4(a) => a,
            other => panic!("{other}"),
        };
        let gateway = SocketAddrV4::new(GATEWAY.parse().unwrap(), 500);
        let pair = KeyPair::generate().expect("a key pair");
        let nonce = [7u8; NONCE_LEN];
        let (mut sent, mut cookies) = (0u64, 0u64);
        let mut buffer = [0u8; 2048];
        let mut spi = 0x0bad_c0de_0000_0000u64;
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..20 {
                spi += 1;
                let message = request(
                    spi,
                    &pair,
                    &nonce,
                    &[Cipher::Aes256Gcm16],
                    None,
                    local,
                    gateway,
                );
                if socket.send_to(&message.bytes, gateway).is_ok() {
                    sent += 1;
                }
            }
            while let Ok(n) = socket.recv(&mut buffer) {
                cookies += u64::from(demands_cookie(&buffer[..n]));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (sent, cookies)
    })
}

#[test]
fn a_flood_of_ike_sa_init_gets_cookies_and_the_real_peer_still_connects() {
    if !is_root() {
        return;
    }
    if !Path::new(CHARON).exists() {
        eprintln!(
            "skipping: the VPN flood test needs strongSwan ({CHARON} is missing): apt-get install strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins libstrongswan-standard-plugins"
        );
        return;
    }
    let name = unique_name("vpnf");
    let lab = Lab::new(&name, &hub_and_branch(&name, "    initiator: peer\n"));
    let key = lab.dir.join("branch.psk");
    std::fs::write(&key, "a-key-for-the-flood-test\n").expect("write the PSK file");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    lab.up();
    let ping = || {
        lab.exec("branch1", &["ping", "-c", "1", "-W", "1", "10.90.1.11"])
            .status
            .success()
    };
    wait_for("strongSwan's first IKE SA", Duration::from_secs(30), ping);
    let switch = lab.record().process("sw1").expect("sw1 runs").pid;
    let before = rss_kib(switch);

    let stop = Arc::new(AtomicBool::new(false));
    let flooder = flood(&lab.ns("branch"), stop.clone());
    std::thread::sleep(Duration::from_secs(2));
    // strongSwan starts over in the middle of the flood.
    let vici = format!(
        "unix://{}",
        lab.record()
            .dir()
            .join("strongswan-branch/charon.vici")
            .display()
    );
    let swanctl = |args: &[&str]| {
        let out = Command::new("swanctl")
            .args(args)
            .args(["--uri", &vici])
            .output()
            .expect("run swanctl");
        assert!(
            out.status.success(),
            "swanctl {args:?}: {}",
            text(&out.stderr)
        );
    };
    swanctl(&["--terminate", "--ike", "hub-to-branch"]);
    let restarted = Instant::now();
    swanctl(&["--initiate", "--child", "hub-to-branch"]);
    wait_for(
        "strongSwan's IKE SA under the flood",
        Duration::from_secs(30),
        ping,
    );
    let reconnected = restarted.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let (sent, cookies) = flooder.join().expect("the flood");
    let after = rss_kib(switch);

    eprintln!(
        "flood: {sent} requests, {cookies} cookies demanded; switch {before} → {after} KiB; strongSwan back in {reconnected:?}"
    );
    assert!(sent > 2_000, "a flood: {sent} requests");
    assert!(
        cookies * 2 > sent,
        "most requests are answered with a cookie: {cookies} of {sent}"
    );
    assert!(
        after < before + 16 * 1024,
        "the switch's memory stays bounded: {before} KiB before, {after} KiB after {sent} requests"
    );
    assert!(reconnected < Duration::from_secs(30), "{reconnected:?}");
    lab.ping("app1", "192.168.50.10");

    let down = lab.sdn(&["down", lab.file.to_str().unwrap()]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    assert!(
        lab.namespaces_left().is_empty(),
        "{:?}",
        lab.namespaces_left()
    );
}
