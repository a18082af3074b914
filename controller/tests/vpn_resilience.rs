//! Namespace tests of a VPN connection's resilience, on a hub network whose
//! gateway has a connection to an on-premises site running strongSwan
//! (`vpn_lab.rs`'s shape), one lab per test:
//!
//! - a TCP stream from the site to the hub keeps flowing, intact and never
//!   reset, through several child SA rekeys and IKE SA rekeys (4 s and
//!   12 s lifetimes), after which both ends hold other SPIs;
//! - charon killed: the gateway declares the peer dead within its dead
//!   peer detection's bound and counts what it cannot send meanwhile
//!   (no SA); `sdn up --resume` restarts charon and the gateway, which
//!   initiates, re-establishes by itself;
//! - the site's key changed: nothing is established, both ends say the
//!   authentication failed, and no key is in a log or the status;
//! - `sdn vpn sa --export-keys` writes the child SAs' keys in Wireshark's
//!   `esp_sa` format, with which tshark decrypts a capture of the
//!   underlay to the pings inside.
//!
//! The tests run one at a time (their timings are dead peer detection's).
//! Needs root and strongSwan (and tshark for the last); skips with a line
//! saying why otherwise.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use support::*;

const CHARON: &str = "/usr/lib/ipsec/charon";

/// The key in the test's PSK file.
const KEY: &str = "cmVzaWxpZW5jZS1vZi10aGUtbGFiLXZwbg==";

/// The connection, the gateway and the hosts' addresses.
const CONNECTION: &str = "hub-to-branch";
const GATEWAY: &str = "hub-gw";
const APP1: &str = "10.90.1.11";
const BRANCH1: &str = "192.168.50.10";

/// Dead peer detection in every test: a check after 2 s of silence, sent
/// again twice.
const DPD_INTERVAL: Duration = Duration::from_secs(2);
const DPD_RETRIES: u32 = 2;

/// One test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether the namespace test can run; says why not.
fn can_run() -> bool {
    if !is_root() {
        return false;
    }
    if !Path::new(CHARON).exists() {
        eprintln!(
            "skipping: the VPN resilience tests need strongSwan ({CHARON} is missing): apt-get install strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins libstrongswan-standard-plugins"
        );
        return false;
    }
    true
}

/// The hub and branch of `support`, with `lifetimes` (topology lines of
/// the connection) and the tests' dead peer detection.
fn hub_and_branch_with(name: &str, lifetimes: &str) -> String {
    hub_and_branch(
        name,
        &format!(
            "    initiator: gateway\n    dpd_interval: {}s\n    dpd_retries: {DPD_RETRIES}\n{lifetimes}",
            DPD_INTERVAL.as_secs()
        ),
    )
}

/// A lab up with `lifetimes`, its tunnel established (a ping crossed it,
/// and the gateway's status says so).
fn vpn_lab(tag: &str, lifetimes: &str) -> Lab {
    let name = unique_name(tag);
    let lab = Lab::new(&name, &hub_and_branch_with(&name, lifetimes));
    let key = lab.dir.join("branch.psk");
    std::fs::write(&key, format!("{KEY}\n")).expect("write the PSK file");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    lab.up();
    wait_for("the tunnel", Duration::from_secs(60), || {
        pings(&lab, "app1", BRANCH1)
    });
    // The status is written every second: it may not say so yet.
    wait_for(
        "the status to say established",
        Duration::from_secs(5),
        || {
            let c = connection(&lab);
            c["state"] == "established" && !c["ike_spis"].is_null()
        },
    );
    lab
}

/// Whether one ping from `from` to `to` is answered within a second.
fn pings(lab: &Lab, from: &str, to: &str) -> bool {
    lab.exec(from, &["ping", "-c", "1", "-W", "1", to])
        .status
        .success()
}

/// The gateway's status, from `sdn vpn status --json`.
fn gateway_status(lab: &Lab) -> Value {
    let out = lab.sdn(&["vpn", "status", "--json", "--lab", &lab.name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    status["gateways"]
        .as_array()
        .expect("gateways")
        .iter()
        .find(|g| g["gateway"] == GATEWAY)
        .unwrap_or_else(|| panic!("{GATEWAY} in {status}"))
        .clone()
}

/// The connection's status.
fn connection(lab: &Lab) -> Value {
    let gateway = gateway_status(lab);
    let c = gateway["connections"][0].clone();
    assert_eq!(c["name"], CONNECTION, "{gateway}");
    c
}

fn number(value: &Value, field: &str) -> u64 {
    value[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {value}"))
}

/// The gateway's IKE SPIs and child SA SPIs.
fn gateway_spis(c: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let ike = c["ike_spis"]
        .as_array()
        .map(|pair| format!("{}_{}", pair[0], pair[1]))
        .into_iter()
        .collect();
    let children = c["child_sas"]
        .as_array()
        .expect("child SAs")
        .iter()
        .map(|sa| sa["spi"].as_str().expect("an SPI").to_string())
        .collect();
    (ike, children)
}

/// The site's charon's vici socket, as swanctl's `--uri`.
fn vici(lab: &Lab) -> String {
    format!(
        "unix://{}",
        lab.record()
            .dir()
            .join("strongswan-branch/charon.vici")
            .display()
    )
}

/// swanctl with `args` against the site's charon (its credentials from the
/// site's directory).
fn swanctl(lab: &Lab, args: &[&str]) -> Output {
    let dir = lab.record().dir().join("strongswan-branch");
    Command::new("swanctl")
        .env("SWANCTL_DIR", &dir)
        .args(args)
        .args(["--uri", &vici(lab)])
        .output()
        .expect("run swanctl")
}

/// `swanctl --list-sas`.
fn charon_sas(lab: &Lab) -> String {
    text(&swanctl(lab, &["--list-sas"]).stdout)
}

/// The IKE SA SPI pairs and the child SA SPIs in `swanctl --list-sas`
/// output, e.g. `hub-to-branch: #1, ESTABLISHED, IKEv2, 5f..._i 8c..._r*`
/// and `in  c8f2e1a3 (-|0x00000000), ...`.
fn charon_spis(listing: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut ike = BTreeSet::new();
    let mut children = BTreeSet::new();
    for line in listing.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if line.contains(", ESTABLISHED, IKEv2,") {
            let spis: Vec<&str> = words
                .iter()
                .map(|w| w.trim_end_matches('*'))
                .filter(|w| w.ends_with("_i") || w.ends_with("_r"))
                .collect();
            ike.insert(spis.join(" "));
        }
        if let ["in" | "out", spi, ..] = words[..] {
            children.insert(spi.trim_end_matches(',').to_string());
        }
    }
    (ike, children)
}

fn assert_disjoint(what: &str, before: &BTreeSet<String>, after: &BTreeSet<String>) {
    assert!(
        !before.is_empty() && !after.is_empty(),
        "{what}: {before:?} then {after:?}"
    );
    assert!(
        before.is_disjoint(after),
        "{what} changed: {before:?} then {after:?}"
    );
}

/// Brings the lab down and checks nothing of it is left.
fn down(lab: &Lab) {
    let record = lab.record();
    let out = lab.sdn(&["down", lab.file.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        lab.namespaces_left().is_empty(),
        "namespaces left: {:?}",
        lab.namespaces_left()
    );
    assert!(
        record.processes.iter().all(|p| !p.is_alive()),
        "processes left"
    );
    assert!(!record.dir().exists(), "run directory left");
}

/// Byte `at` of the stream: a pattern no shift of it repeats soon.
fn stream_byte(at: u64) -> u8 {
    (at.wrapping_mul(2_654_435_761) >> 13) as u8 ^ (at >> 16) as u8
}

/// What a TCP stream carried: bytes, where they first differed from the
/// pattern, and the longest wait for data.
struct Received {
    bytes: u64,
    first_wrong: Option<u64>,
    longest_stall: Duration,
}

/// Sends the pattern from the client for `duration`, at about 800 kB/s,
/// while the server reads and checks it; returns what was sent and what
/// arrived. Panics if either end sees an error (a reset, a timeout).
fn stream(conn: Conn, duration: Duration) -> (u64, Received) {
    let Conn {
        mut client,
        mut server,
    } = conn;
    server
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let reader = std::thread::spawn(move || {
        let mut buffer = vec![0u8; 65_536];
        let mut got = Received {
            bytes: 0,
            first_wrong: None,
            longest_stall: Duration::ZERO,
        };
        let mut last = Instant::now();
        loop {
            let n = server
                .read(&mut buffer)
                .unwrap_or_else(|e| panic!("the server's read after {} bytes: {e}", got.bytes));
            if n == 0 {
                return got;
            }
            got.longest_stall = got.longest_stall.max(last.elapsed());
            last = Instant::now();
            for (i, byte) in buffer[..n].iter().enumerate() {
                let at = got.bytes + i as u64;
                if got.first_wrong.is_none() && *byte != stream_byte(at) {
                    got.first_wrong = Some(at);
                }
            }
            got.bytes += n as u64;
        }
    });
    let mut sent = 0u64;
    let end = Instant::now() + duration;
    let mut chunk = vec![0u8; 16 * 1024];
    while Instant::now() < end {
        for (i, byte) in chunk.iter_mut().enumerate() {
            *byte = stream_byte(sent + i as u64);
        }
        client
            .write_all(&chunk)
            .unwrap_or_else(|e| panic!("the client's write after {sent} bytes: {e}"));
        sent += chunk.len() as u64;
        std::thread::sleep(Duration::from_millis(20));
    }
    client
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let got = reader.join().expect("the reader");
    (sent, got)
}

#[test]
fn a_tcp_stream_survives_child_and_ike_rekeys() {
    if !can_run() {
        return;
    }
    let _serial = serial();
    let lab = vpn_lab("vrk", "    child_lifetime: 4s\n    ike_lifetime: 12s\n");
    let before = connection(&lab);
    let port_before = gateway_status(&lab)["port"].clone();
    let charon_before = charon_sas(&lab);
    let conn = connect(&lab, "branch1", "app1", at(APP1, 5010)).expect("a TCP connection");
    let (sent, got) = stream(conn, Duration::from_secs(25));
    eprintln!(
        "{sent} bytes sent, {} received; longest wait for data {:?}",
        got.bytes, got.longest_stall
    );
    assert_eq!(got.first_wrong, None, "the stream arrived as sent");
    assert_eq!(got.bytes, sent, "every byte arrived");

    let after = connection(&lab);
    let child_rekeys = number(&after, "child_rekeys") - number(&before, "child_rekeys");
    let ike_rekeys = number(&after, "ike_rekeys") - number(&before, "ike_rekeys");
    eprintln!(
        "rekeys during the stream: child {child_rekeys}, IKE {ike_rekeys}; ESP port drops {port_before} before, {} after",
        gateway_status(&lab)["port"]
    );
    assert!(
        child_rekeys >= 3 && ike_rekeys >= 1,
        "rekeys during the stream: child {child_rekeys}, IKE {ike_rekeys}: {after}"
    );
    assert!(number(&after, "child_rekeys") >= 3 && number(&after, "ike_rekeys") >= 1);
    // Make before break: the gateway always had an SA to send with.
    assert_eq!(
        number(&gateway_status(&lab)["port"], "no_sa"),
        number(&port_before, "no_sa"),
        "packets for the tunnel without an SA during the rekeys"
    );
    assert_eq!(after["state"], "established", "{after}");
    assert_eq!(
        number(&after, "peer_dead"),
        0,
        "no rekey lost the peer: {after}"
    );
    assert!(pings(&lab, "app1", BRANCH1), "the tunnel still carries");

    // Other SPIs at both ends.
    let (ike_before, children_before) = gateway_spis(&before);
    let (ike_after, children_after) = gateway_spis(&after);
    assert_disjoint("the gateway's IKE SPIs", &ike_before, &ike_after);
    assert_disjoint(
        "the gateway's child SPIs",
        &children_before,
        &children_after,
    );
    let charon_after = charon_sas(&lab);
    let (ike_before, children_before) = charon_spis(&charon_before);
    let (ike_after, children_after) = charon_spis(&charon_after);
    assert_disjoint(
        &format!("charon's IKE SPIs ({charon_before}\n{charon_after})"),
        &ike_before,
        &ike_after,
    );
    assert_disjoint("charon's child SPIs", &children_before, &children_after);
    down(&lab);
}

#[test]
fn a_killed_charon_is_declared_dead_and_comes_back_after_resume() {
    if !can_run() {
        return;
    }
    let _serial = serial();
    let lab = vpn_lab("vdp", "");
    let before = connection(&lab);
    assert_eq!(number(&before, "peer_dead"), 0);
    let record = lab.record();
    let charon = record
        .processes
        .iter()
        .find(|p| p.role == "ipsec")
        .expect("charon is a lab process")
        .clone();

    // SAFETY: kill(2) of the lab's charon, alive as recorded.
    assert!(charon.is_alive());
    assert_eq!(unsafe { libc::kill(charon.pid as i32, libc::SIGKILL) }, 0);
    let killed = Instant::now();
    wait_for("charon to die", Duration::from_secs(5), || {
        !charon.is_alive()
    });

    // Silence for dpd_interval, then the liveness check and its
    // retransmissions on the schedule's waits; a tick to report the
    // last ESP and one to write the status, and room for a loaded machine.
    let schedule = sdn_vpn::ike::session::Retransmit::DEFAULT.give_up_after(DPD_RETRIES + 1);
    let bound = DPD_INTERVAL * DPD_RETRIES + schedule + Duration::from_secs(12);
    let mut dead = Value::Null;
    wait_for("the peer declared dead", bound, || {
        dead = connection(&lab);
        number(&dead, "peer_dead") >= 1
    });
    eprintln!(
        "peer declared dead {:?} after the kill (bound {bound:?})",
        killed.elapsed()
    );
    assert_ne!(dead["state"], "established", "{dead}");
    assert_eq!(dead["last_down"], "peer dead", "{dead}");
    assert!(
        dead["child_sas"].as_array().unwrap().is_empty(),
        "no SA left: {dead}"
    );
    assert!(number(&dead, "liveness_checks") >= 1, "{dead}");

    // Packets for the tunnel now have no SA: counted, not sent.
    let no_sa = number(&gateway_status(&lab)["port"], "no_sa");
    assert!(!pings(&lab, "app1", BRANCH1), "nothing crosses");
    let out = lab.exec(
        "app1",
        &["ping", "-c", "5", "-i", "0.2", "-W", "1", BRANCH1],
    );
    assert!(!out.status.success());
    let mut counted = 0;
    wait_for("the drops counted", Duration::from_secs(5), || {
        counted = number(&gateway_status(&lab)["port"], "no_sa");
        counted >= no_sa + 5
    });
    eprintln!("no SA: {no_sa} before the pings, {counted} after");

    // charon again: the gateway, which initiates, comes back by itself.
    let out = lab.sdn(&["up", "--resume", lab.file.to_str().expect("utf-8 path")]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let restarted = lab.record();
    let charon_again = restarted
        .processes
        .iter()
        .find(|p| p.role == "ipsec")
        .expect("charon");
    assert!(charon_again.is_alive() && charon_again.pid != charon.pid);
    // The initiator's attempts retransmit on the schedule: one reaches the
    // new charon within its waits.
    wait_for("the tunnel re-established", Duration::from_secs(60), || {
        pings(&lab, "app1", BRANCH1)
    });
    lab.ping("branch1", APP1);
    let back = connection(&lab);
    assert_eq!(back["state"], "established", "{back}");
    assert_eq!(back["last_down"], "peer dead", "{back}");
    assert!(charon_sas(&lab).contains("INSTALLED"));
    down(&lab);
}

/// A file's text, empty if it cannot be read.
fn read(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_wrong_key_establishes_nothing_and_says_authentication_failed() {
    if !can_run() {
        return;
    }
    let _serial = serial();
    let lab = vpn_lab("vpk", "");
    let dir = lab.record().dir();
    let site = dir.join("strongswan-branch");

    // The site's key changes: charon loads it, and ends the IKE SA made
    // with the old one. The gateway, which initiates, tries again.
    const WRONG: &str = "not-the-gateway's-key";
    let secrets = site.join("secrets.conf");
    let old = read(&secrets);
    assert!(
        old.contains(&hex(KEY.as_bytes())),
        "the key in secrets.conf"
    );
    let new: String = old
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("secret = ") {
                format!("    secret = 0x{}\n", hex(WRONG.as_bytes()))
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    sdn_controller::lab::private::write_file(&secrets, new.as_bytes()).expect("rewrite");
    let swanctl_conf = site.join("swanctl.conf");
    let loaded = swanctl(
        &lab,
        &[
            "--load-creds",
            "--noprompt",
            "--file",
            swanctl_conf.to_str().unwrap(),
        ],
    );
    assert!(
        loaded.status.success(),
        "{}{}",
        text(&loaded.stdout),
        text(&loaded.stderr)
    );
    let terminated = swanctl(&lab, &["--terminate", "--ike", CONNECTION]);
    assert!(
        terminated.status.success(),
        "{}{}",
        text(&terminated.stdout),
        text(&terminated.stderr)
    );

    let mut refused = Value::Null;
    wait_for(
        "the gateway to see the authentication fail",
        Duration::from_secs(30),
        || {
            refused = connection(&lab);
            refused["last_down"] == "authentication failed"
        },
    );
    // Nothing comes up, however often the gateway tries.
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        let c = connection(&lab);
        assert_ne!(c["state"], "established", "{c}");
        assert!(c["child_sas"].as_array().unwrap().is_empty(), "{c}");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(!pings(&lab, "app1", BRANCH1), "no ping crosses");
    let sas = charon_sas(&lab);
    assert!(
        !sas.contains("ESTABLISHED") && !sas.contains("INSTALLED"),
        "charon holds no SA:\n{sas}"
    );

    // Both logs say so, and neither they nor the status hold a key.
    let charon_log = read(&dir.join("charon-branch.log"));
    // charon (level 1) names the notify AUTHENTICATION_FAILED (24) it
    // answers the gateway's IKE_AUTH with as N(AUTH_FAILED).
    assert!(
        charon_log
            .lines()
            .any(|l| l.contains("generating IKE_AUTH response") && l.contains("N(AUTH_FAILED)")),
        "charon's log:\n{charon_log}"
    );
    let switch_log = read(&dir.join("sw1.log"));
    assert!(
        switch_log.contains("authentication failed"),
        "sw1's log:\n{switch_log}"
    );
    let status = read(&sdn_vswitch::vpn_status::status_path(&dir, GATEWAY));
    assert!(status.contains("authentication failed"), "{status}");
    for (what, text) in [
        ("charon's log", &charon_log),
        ("sw1's log", &switch_log),
        ("the status", &status),
    ] {
        for key in [KEY, WRONG] {
            assert!(!text.contains(key), "{what} holds a key");
            assert!(!text.contains(&hex(key.as_bytes())), "{what} holds a key");
        }
    }
    down(&lab);
}

/// What tshark calls the preference that turns ESP decryption on: it was
/// renamed between versions.
fn esp_decryption_preference() -> &'static str {
    let prefs = Command::new("tshark")
        .args(["-G", "defaultprefs"])
        .output()
        .expect("run tshark");
    if text(&prefs.stdout).contains("esp.enable_encryption_decode:") {
        "esp.enable_encryption_decode"
    } else {
        "esp.enable_encryption_dissection"
    }
}

#[test]
fn exported_keys_let_tshark_decrypt_the_underlay() {
    if !can_run() {
        return;
    }
    let tshark_runs = Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !tshark_runs {
        eprintln!("skipping: decrypting the capture needs tshark: apt-get install tshark");
        return;
    }
    let _serial = serial();
    let lab = vpn_lab("vkx", "");
    let dir = lab.record().dir();

    // Pings with a payload of ours, recorded on the internet router's link
    // to the gateway's switch.
    const PAYLOAD: &str = "5e5a1e55c0ffee42";
    let sniffer = Sniffer::start(&lab.ns("internet"), "vpn-sw1");
    let out = lab.exec(
        "app1",
        &[
            "ping", "-c", "5", "-i", "0.2", "-W", "2", "-p", PAYLOAD, BRANCH1,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stdout));
    let pcap = lab.dir.join("underlay.pcap");
    let frames = sniffer.stop(&pcap);
    assert!(
        !frames
            .iter()
            .any(|f| carries(f, &[0x5e, 0x5a, 0x1e, 0x55, 0xc0, 0xff, 0xee, 0x42])),
        "the payload crossed in clear"
    );

    // The keys: a warning, a private file, one line per SA direction.
    let listed = lab.sdn(&["vpn", "sa", "--lab", &lab.name]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let listing = text(&listed.stdout);
    assert!(
        listing.contains(" in ") && listing.contains(" out ") && !listing.contains("0x0x"),
        "{listing}"
    );
    let keys = lab.dir.join("keys.esp_sa");
    let exported = lab.sdn(&[
        "vpn",
        "sa",
        "--export-keys",
        "--lab",
        &lab.name,
        "--output",
        keys.to_str().unwrap(),
    ]);
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    assert!(
        text(&exported.stderr).contains("decrypt"),
        "a warning: {}",
        text(&exported.stderr)
    );
    assert_eq!(std::fs::metadata(&keys).unwrap().mode() & 0o777, 0o600);
    let table = read(&keys);
    let lines: Vec<&str> = table.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len(), 2, "both directions of one child SA:\n{table}");
    for (line, (src, dst)) in lines.iter().zip([
        ("198.51.100.90", "203.0.113.90"),
        ("203.0.113.90", "198.51.100.90"),
    ]) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 8, "{line}");
        let (src, dst) = (format!("\"{src}\""), format!("\"{dst}\""));
        assert_eq!(
            fields[..3],
            ["\"IPv4\"", src.as_str(), dst.as_str()],
            "{line}"
        );
        assert_eq!(fields[4], "\"AES-GCM with 16 octet ICV [RFC4106]\"");
        // AES-256: 32 bytes of key, 4 of salt.
        assert_eq!(fields[5].len(), 2 + 2 + 72, "{line}");
        assert_eq!(fields[6..], ["\"NULL\"", "\"\""]);
        assert!(
            listing.contains(&fields[3][3..11]),
            "{listing} names {line}"
        );
    }
    let to_stdout = lab.sdn(&["vpn", "sa", "--export-keys", "--lab", &lab.name]);
    assert!(to_stdout.status.success(), "{}", text(&to_stdout.stderr));
    assert_eq!(
        text(&to_stdout.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        lines,
        "the same keys on standard output"
    );

    // No key left on disk, or in the switch's log or status.
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("vpn-keys-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let switch_log = read(&dir.join("sw1.log"));
    let status = read(&sdn_vswitch::vpn_status::status_path(&dir, GATEWAY));
    for line in &lines {
        let key = &line.split(',').nth(5).unwrap()[3..75];
        assert!(!switch_log.contains(key) && !status.contains(key));
    }
    assert!(switch_log.contains("child SA keys exported on request"));

    // tshark decrypts the ESP to the pings, both ways.
    // Without the keys, nothing; with them (a Wireshark configuration
    // directory holding them as its esp_sa table), the pings.
    let decrypt = |config: &Path| {
        Command::new("tshark")
            .env("WIRESHARK_CONFIG_DIR", config)
            .args(["-n", "-r", pcap.to_str().unwrap()])
            .args(["-o", &format!("{}:TRUE", esp_decryption_preference())])
            .args(["-Y", "esp && icmp", "-T", "fields"])
            .args(["-e", "esp.spi", "-e", "icmp.type", "-e", "data.data"])
            .output()
            .expect("run tshark")
    };
    let config = lab.dir.join("wireshark");
    std::fs::create_dir_all(&config).unwrap();
    let keyless = decrypt(&config);
    assert!(keyless.status.success(), "{}", text(&keyless.stderr));
    assert_eq!(text(&keyless.stdout), "", "no ICMP without the keys");
    std::fs::copy(&keys, config.join("esp_sa")).unwrap();
    let decoded = decrypt(&config);
    let fields = text(&decoded.stdout);
    assert!(
        decoded.status.success(),
        "{fields}{}",
        text(&decoded.stderr)
    );
    let rows: Vec<Vec<&str>> = fields.lines().map(|l| l.split('\t').collect()).collect();
    let of_type = |t: &str| {
        rows.iter()
            .filter(|r| r.get(1) == Some(&t) && r.get(2).is_some_and(|d| d.contains(PAYLOAD)))
            .count()
    };
    eprintln!(
        "tshark decrypted {} echo requests and {} replies carrying the payload",
        of_type("8"),
        of_type("0")
    );
    assert!(
        of_type("8") >= 5 && of_type("0") >= 5,
        "5 echo requests and 5 replies decrypted, with the payload:\n{fields}{}",
        text(&decoded.stderr)
    );
    down(&lab);
}
