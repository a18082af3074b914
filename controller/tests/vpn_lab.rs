//! Namespace test of a VPN lab: `sdn up` of a hub network whose VPN gateway
//! has a connection to an on-premises site running strongSwan. The site's
//! host reaches its router over the site's LAN, the internet router
//! reaches the site's and the gateway's public addresses, charon runs in
//! the site's namespace with the connection loaded (its addresses and
//! traffic selectors, the key only in a root-only file), and `sdn down`
//! leaves no namespace, process or file behind. The traffic through the
//! tunnel is `vpn.rs`'s. Needs root and strongSwan; skips with a line
//! saying why otherwise.

mod support;

use serde_json::Value;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use support::*;

const CHARON: &str = "/usr/lib/ipsec/charon";

/// The key in the test's PSK file.
const KEY: &str = "dGhlLWxhYidzLXZwbi10ZXN0LWtleQ==";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode()
        & 0o777
}

#[test]
fn a_vpn_lab_runs_strongswan_on_its_site_and_comes_down_clean() {
    if !is_root() {
        return;
    }
    if !Path::new(CHARON).exists() {
        eprintln!(
            "skipping: the VPN lab test needs strongSwan ({CHARON} is missing): apt-get install strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins libstrongswan-standard-plugins"
        );
        return;
    }
    let name = unique_name("vpn");
    let lab = Lab::new(&name, &hub_and_branch(&name, ""));
    let key = lab.dir.join("branch.psk");
    std::fs::write(&key, format!("{KEY}\n")).expect("write the PSK file");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    lab.up();

    // The site: its host on its LAN, its router on the internet.
    lab.ping("branch1", "192.168.50.1");
    lab.ping("internet", "198.51.100.90");
    // The gateway's public address, on sw1's link to the internet router.
    lab.ping("internet", "203.0.113.90");

    let record = lab.record();
    for namespace in ["branch", "branch1"] {
        assert!(
            record.namespaces.contains(&lab.ns(namespace)),
            "{namespace} is in the record: {:?}",
            record.namespaces
        );
    }
    let charon = record
        .processes
        .iter()
        .find(|p| p.role == "ipsec")
        .expect("charon is a lab process")
        .clone();
    assert_eq!(charon.name, "charon-branch");
    assert!(charon.is_alive(), "charon runs");
    assert!(
        sdn_controller::lab::netns::pids_in(&lab.ns("branch")).contains(&charon.pid),
        "charon runs in the site's namespace"
    );
    assert!(
        charon.log.starts_with(record.dir()),
        "{}",
        charon.log.display()
    );

    // The connection charon has loaded.
    let site_dir = record.dir().join("strongswan-branch");
    let vici = format!("unix://{}", site_dir.join("charon.vici").display());
    let listed = Command::new("swanctl")
        .args(["--list-conns", "--uri", &vici])
        .output()
        .expect("run swanctl");
    let conns = text(&listed.stdout);
    assert!(listed.status.success(), "{conns}{}", text(&listed.stderr));
    let has = |words: &[&str]| conns.lines().any(|l| words.iter().all(|w| l.contains(w)));
    assert!(has(&["hub-to-branch:", "IKEv2"]), "{conns}");
    assert!(has(&["local:", "198.51.100.90"]), "{conns}");
    assert!(has(&["remote:", "203.0.113.90"]), "{conns}");
    assert!(has(&["local:", "192.168.50.0/24"]), "{conns}");
    assert!(has(&["remote:", "10.90.0.0/16"]), "{conns}");
    assert!(has(&["hub-to-branch:", "TUNNEL"]), "{conns}");

    // Root-only files; the key only in the secrets file.
    assert_eq!(mode(&site_dir), 0o700);
    let secrets = site_dir.join("secrets.conf");
    assert_eq!(mode(&secrets), 0o600);
    let hex: String = KEY.bytes().map(|b| format!("{b:02x}")).collect();
    assert!(std::fs::read_to_string(&secrets).unwrap().contains(&hex));
    let swanctl_conf = std::fs::read_to_string(site_dir.join("swanctl.conf")).unwrap();
    assert!(!swanctl_conf.contains(KEY) && !swanctl_conf.contains(&hex));
    let config = record.dir().join("vpn-sw1.json");
    assert_eq!(mode(&config), 0o600);
    let switch = record.process("sw1").expect("sw1 runs");
    let argv = switch.argv.join(" ");
    assert!(
        argv.contains(&format!(
            "--esp 65100=203.0.113.90 --vpn-config {}",
            config.display()
        )),
        "{argv}"
    );

    let out = lab.sdn(&["status", "--lab", &name, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).expect("status is JSON");
    let listed: Vec<&str> = status["labs"][0]["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(listed.contains(&lab.ns("branch").as_str()), "{listed:?}");
    assert!(listed.contains(&lab.ns("branch1").as_str()), "{listed:?}");
    assert_eq!(status["labs"][0]["switches"][0]["synced"], true);

    let down = lab.sdn(&["down", lab.file.to_str().unwrap()]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    assert!(
        lab.namespaces_left().is_empty(),
        "namespaces left: {:?}",
        lab.namespaces_left()
    );
    assert!(
        record.processes.iter().all(|p| !p.is_alive()),
        "processes left: {:?}",
        record
            .processes
            .iter()
            .filter(|p| p.is_alive())
            .map(|p| &p.name)
            .collect::<Vec<_>>()
    );
    assert!(!record.dir().exists(), "run directory left");
    assert!(key.exists(), "the user's key file stays");
}
