//! The VPN sections: the example parsed into the model with its defaults,
//! the prefixes each gateway sends into its tunnels, the pre-shared key
//! files, and each mistake a user can make reported with its line, path
//! and reason. Git keeps no mode 0600, so every test writes vpn.yaml's key
//! files (0600) into a directory of its own and parses the text as a file
//! of that directory.

use super::psk::{MAX_PSK_FILE, PskError, read_psk};
use super::routing::VpnGateway;
use super::vpn::*;
use super::*;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const VPN: &str = include_str!("../../../topologies/vpn.yaml");

/// Lines of vpn.yaml that tests change or add after.
const HUB_GW: &str = "  - { name: hub-gw, network: hub, public_ip: 203.0.113.90 }\n";
const BRANCH1: &str = "      - { name: branch1, address: 192.168.50.10 }\n";
const BRANCH_PSK: &str = "    psk_file: branch.psk          # relative to this file\n";
const EAST_WEST_PSK: &str = "    psk_file: east-west.psk\n";
const ESP: &str = "      esp: [aes256gcm16]\n";

/// The key files vpn.yaml names.
const KEY_FILES: [&str; 2] = ["branch.psk", "east-west.psk"];

/// A directory of its own holding vpn.yaml's key files (mode 0600),
/// removed when dropped.
struct Lab {
    dir: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sdn-vpn-tests-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the test directory");
        let lab = Lab { dir };
        for name in KEY_FILES {
            lab.key(name, "c2VjcmV0LWtleS1vZi10aGUtbGFi\n", 0o600);
        }
        lab
    }

    /// Writes the key file `name` with `text` and `mode`; its path.
    fn key(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).expect("write a key file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .expect("set a key file's mode");
        path
    }

    /// Where vpn.yaml is taken to be.
    fn file(&self) -> PathBuf {
        self.dir.join("vpn.yaml")
    }

    fn parse(&self, text: &str) -> Result<Topology, TopologyErrors> {
        parse(text, &self.file())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// vpn.yaml with the first `from` replaced by `to`.
fn vpn_with(from: &str, to: &str) -> String {
    assert!(VPN.contains(from), "vpn.yaml has no {from:?}");
    VPN.replacen(from, to, 1)
}

/// vpn.yaml with `extra` added after the line `anchor`.
fn vpn_plus(anchor: &str, extra: &str) -> String {
    vpn_with(anchor, &format!("{anchor}{extra}"))
}

/// vpn.yaml with `extra` added at its end (after the last connection).
fn vpn_and(extra: &str) -> String {
    format!("{VPN}{extra}")
}

/// vpn.yaml with the hub-to-branch connection's `key: value` line (its
/// first) replaced by `line`, or `line` added to it if it has no such key.
fn hub_to_branch(line: &str) -> String {
    let key = line.trim_start().split(':').next().unwrap();
    let start = VPN.find("  - name: hub-to-branch\n").unwrap();
    let end = VPN.find("  - name: east-to-west").unwrap();
    let connection = &VPN[start..end];
    let changed = match connection.find(&format!("    {key}:")) {
        Some(at) => {
            let eol = at + connection[at..].find('\n').unwrap();
            format!("{}{line}{}", &connection[..at], &connection[eol..])
        }
        None => connection.replacen(BRANCH_PSK, &format!("{BRANCH_PSK}{line}\n"), 1),
    };
    format!("{}{changed}{}", &VPN[..start], &VPN[end..])
}

fn valid(text: &str) -> Topology {
    let lab = Lab::new();
    lab.parse(text)
        .unwrap_or_else(|e| panic!("should be valid:\n{e}"))
}

fn errors_in(lab: &Lab, text: &str) -> TopologyErrors {
    lab.parse(text).expect_err("the file should be refused")
}

/// The 1-based line of the first line outside comments containing `needle`.
fn line_of(text: &str, needle: &str) -> u64 {
    text.lines()
        .position(|l| !l.trim_start().starts_with('#') && l.contains(needle))
        .unwrap_or_else(|| panic!("no line has {needle:?}")) as u64
        + 1
}

/// Asserts that `text`, in `lab`, has exactly one error, at `path` on the
/// line holding `at`, whose reason contains `reason`; the message names
/// file and line.
#[track_caller]
fn refused_in(lab: &Lab, text: &str, at: &str, path: &str, reason: &str) {
    let e = errors_in(lab, text);
    assert_eq!(e.errors.len(), 1, "one error expected:\n{e}");
    let error = &e.errors[0];
    assert_eq!(error.path, path, "{e}");
    assert!(
        error.reason.contains(reason),
        "{:?} lacks {reason:?}",
        error.reason
    );
    let line = line_of(text, at);
    assert_eq!(error.line, Some(line), "{e}");
    let file = lab.file();
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}:{line}:", file.display())),
        "{error}"
    );
}

/// `refused_in` a lab of its own.
#[track_caller]
fn refused(text: &str, at: &str, path: &str, reason: &str) {
    refused_in(&Lab::new(), text, at, path, reason);
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().expect("an IPv4 address")
}

fn net(text: &str) -> ipnet::Ipv4Net {
    text.parse().expect("an IPv4 prefix")
}

fn route(prefix: &str, connection: &str) -> TunnelRoute {
    TunnelRoute {
        prefix: net(prefix),
        connection: connection.into(),
    }
}

#[test]
fn example_parses_into_the_model() {
    let lab = Lab::new();
    let topo = lab.parse(VPN).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        topo.routing.vpn_gateways,
        [
            VpnGateway {
                name: "hub-gw".into(),
                network: "hub".into(),
                public_ip: ip("203.0.113.90"),
            },
            VpnGateway {
                name: "east-gw".into(),
                network: "east".into(),
                public_ip: ip("203.0.113.91"),
            },
            VpnGateway {
                name: "west-gw".into(),
                network: "west".into(),
                public_ip: ip("203.0.113.92"),
            },
        ]
    );
    assert_eq!(
        topo.vpn.onprem_sites,
        [OnpremSite {
            name: "branch".into(),
            public_ip: ip("198.51.100.90"),
            lan: net("192.168.50.0/24"),
            router: ip("192.168.50.1"),
            ipsec: SiteIpsec::StrongSwan,
            hosts: vec![SiteHost {
                name: "branch1".into(),
                address: ip("192.168.50.10"),
            }],
        }]
    );
    assert!(topo.vpn.local_network_gateways.is_empty());
    assert_eq!(
        topo.vpn.connection("hub-to-branch").unwrap(),
        &Connection {
            name: "hub-to-branch".into(),
            gateway: "hub-gw".into(),
            remote: Remote::Site("branch".into()),
            local_prefix: net("10.90.0.0/16"),
            remote_prefixes: vec![net("192.168.50.0/24")],
            psk_file: lab.dir.join("branch.psk"),
            policy: IpsecPolicy {
                ike: vec![Aead::Aes256Gcm16, Aead::Aes128Gcm16],
                prf: Prf::Sha256,
                dh: DhGroup::X25519,
                esp: vec![Aead::Aes256Gcm16],
            },
            ike_lifetime: Duration::from_secs(8 * 3600),
            child_lifetime: Duration::from_secs(3600),
            dpd_interval: Duration::from_secs(10),
            dpd_retries: 3,
            initiator: Initiator::Gateway,
        }
    );
    // The lab has an internet, which the gateways and the site are on.
    assert!(topo.internet.present);
    assert!(topo.vpn.site("nope").is_none());
    assert!(topo.vpn.connection("nope").is_none());
}

#[test]
fn defaults() {
    let topo = valid(VPN);
    assert_eq!(
        topo.vpn.connection("east-to-west").unwrap(),
        &Connection {
            name: "east-to-west".into(),
            gateway: "east-gw".into(),
            remote: Remote::PeerGateway("west-gw".into()),
            local_prefix: net("10.91.0.0/16"),
            remote_prefixes: vec![net("10.92.0.0/16")],
            psk_file: topo.source.parent().unwrap().join("east-west.psk"),
            policy: IpsecPolicy::default(),
            ike_lifetime: DEFAULT_IKE_LIFETIME,
            child_lifetime: DEFAULT_CHILD_LIFETIME,
            dpd_interval: DEFAULT_DPD_INTERVAL,
            dpd_retries: DEFAULT_DPD_RETRIES,
            initiator: Initiator::Gateway,
        }
    );
    assert_eq!(
        IpsecPolicy::default(),
        IpsecPolicy {
            ike: vec![Aead::Aes256Gcm16],
            prf: Prf::Sha256,
            dh: DhGroup::X25519,
            esp: vec![Aead::Aes256Gcm16],
        }
    );
    assert_eq!(DhGroup::X25519.group(), 31);
    // A policy that names some fields takes the defaults of the others.
    let text = vpn_with(
        "      ike: [aes256gcm16, aes128gcm16]\n",
        "      dh: x25519\n",
    )
    .replacen(ESP, "      esp: [chacha20poly1305, aes128gcm16]\n", 1);
    let policy = &valid(&text).vpn.connections[0].policy;
    assert_eq!(
        policy,
        &IpsecPolicy {
            esp: vec![Aead::ChaCha20Poly1305, Aead::Aes128Gcm16],
            ..IpsecPolicy::default()
        }
    );
    // Short timers, for tests that watch rekeys and dead peers.
    let text = hub_to_branch("    ike_lifetime: 4s")
        .replacen("child_lifetime: 1h", "child_lifetime: 2", 1)
        .replacen("dpd_interval: 10s", "dpd_interval: 1s", 1);
    let hub = valid(&text).vpn.connections[0].clone();
    assert_eq!(
        (hub.ike_lifetime, hub.child_lifetime, hub.dpd_interval),
        (
            Duration::from_secs(4),
            Duration::from_secs(2),
            Duration::from_secs(1)
        )
    );
    for (word, initiator) in [
        ("peer", Initiator::Peer),
        ("both", Initiator::Both),
        ("Gateway", Initiator::Gateway),
    ] {
        let text = hub_to_branch(&format!("    initiator: {word}"));
        assert_eq!(valid(&text).vpn.connections[0].initiator, initiator);
    }
    let text = hub_to_branch("    dpd_retries: 10");
    assert_eq!(valid(&text).vpn.connections[0].dpd_retries, 10);
}

#[test]
fn the_shipped_file_validates() {
    // A copy beside its key files, read from disk as `sdn up` reads it.
    let lab = Lab::new();
    std::fs::write(lab.file(), VPN).unwrap();
    let topo = load(&lab.file()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(topo.name, "vpn");
    assert_eq!(topo.vpn.connections.len(), 2);
    // Without its key files it is refused, each saying how to make one.
    for name in KEY_FILES {
        std::fs::remove_file(lab.dir.join(name)).unwrap();
    }
    let e = load(&lab.file()).expect_err("no key files");
    let reasons: Vec<&str> = e.errors.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons.len(), 2, "{e}");
    for (reason, name) in reasons.iter().zip(KEY_FILES) {
        assert!(
            reason.contains(name) && reason.contains("head -c 32"),
            "{e}"
        );
    }
}

#[test]
fn tunnel_routes() {
    let topo = valid(VPN);
    assert_eq!(
        topo.vpn.tunnel_routes("hub-gw"),
        [route("192.168.50.0/24", "hub-to-branch")]
    );
    // A VNet-to-VNet connection counts for both its gateways.
    assert_eq!(
        topo.vpn.tunnel_routes("east-gw"),
        [route("10.92.0.0/16", "east-to-west")]
    );
    assert_eq!(
        topo.vpn.tunnel_routes("west-gw"),
        [route("10.91.0.0/16", "east-to-west")]
    );
    assert_eq!(topo.vpn.connections_of("west-gw").count(), 1);
    assert!(topo.vpn.tunnel_routes("nope").is_empty());
    // A local network gateway's prefixes, in order.
    let text = vpn_and(concat!(
        "\n  - { name: hub-to-aws, gateway: hub-gw, local_network_gateway: aws-vpc, psk_file: branch.psk }\n",
        "\nlocal_network_gateways:\n",
        "  - { name: aws-vpc, address: 198.51.100.120, prefixes: [172.31.0.0/16, 172.16.0.0/16] }\n",
    ));
    let topo = valid(&text);
    assert_eq!(
        topo.vpn.local_network_gateway("aws-vpc").unwrap(),
        &LocalNetworkGateway {
            name: "aws-vpc".into(),
            address: ip("198.51.100.120"),
            prefixes: vec![net("172.31.0.0/16"), net("172.16.0.0/16")],
        }
    );
    assert_eq!(
        topo.vpn.tunnel_routes("hub-gw"),
        [
            route("192.168.50.0/24", "hub-to-branch"),
            route("172.31.0.0/16", "hub-to-aws"),
            route("172.16.0.0/16", "hub-to-aws"),
        ]
    );
    assert_eq!(topo.routing.vpn_gateway_of("hub").unwrap().name, "hub-gw");
    assert_eq!(
        topo.routing.vpn_gateway("west-gw").unwrap().public_ip,
        ip("203.0.113.92")
    );
}

#[test]
fn gateways() {
    let text = vpn_with(HUB_GW, "  - { name: hub-gw, network: hub }\n");
    let e = errors_in(&Lab::new(), &text);
    assert_eq!(e.errors.len(), 1, "{e}");
    assert!(
        e.errors[0].reason.contains("missing field `public_ip`"),
        "{e}"
    );
    refused(
        &vpn_with("public_ip: 203.0.113.90", "public_ip: 10.90.0.9"),
        "public_ip: 10.90.0.9",
        "vpn_gateways[0].public_ip",
        "10.90.0.9 is not a public address of the lab's internet",
    );
    refused(
        &vpn_with("public_ip: 203.0.113.90", "public_ip: 8.8.8.8"),
        "public_ip: 8.8.8.8",
        "vpn_gateways[0].public_ip",
        "8.8.8.8 is not a public address of the lab's internet (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24)",
    );
    refused(
        &vpn_with("public_ip: 203.0.113.90", "public_ip: gw"),
        "public_ip: gw",
        "vpn_gateways[0].public_ip",
        "\"gw\" is not an IPv4 address",
    );
    refused(
        &vpn_with("public_ip: 203.0.113.91", "public_ip: 203.0.113.90"),
        "network: east, public_ip: 203.0.113.90",
        "vpn_gateways[1].public_ip",
        "203.0.113.90 is already used by vpn_gateways[0].public_ip",
    );
    refused(
        &vpn_plus(
            HUB_GW,
            "  - { name: hub-gw2, network: hub, public_ip: 203.0.113.93 }\n",
        ),
        "name: hub-gw2",
        "vpn_gateways[1].network",
        "network hub already has VPN gateway hub-gw; a network takes one",
    );
}

#[test]
fn public_addresses_are_unique_across_sections() {
    let client = "\ninternet:\n  hosts:\n    - { name: client, address: 203.0.113.90 }\n";
    refused(
        &vpn_and(client),
        "address: 203.0.113.90",
        "internet.hosts[0].address",
        "203.0.113.90 is already used by vpn_gateways[0].public_ip",
    );
    refused(
        &vpn_with("public_ip: 198.51.100.90", "public_ip: 203.0.113.92"),
        "    public_ip: 203.0.113.92",
        "onprem_sites[0].public_ip",
        "203.0.113.92 is already used by vpn_gateways[2].public_ip",
    );
    let aws = "\nlocal_network_gateways:\n  - { name: aws-vpc, address: 198.51.100.90, prefixes: [172.31.0.0/16] }\n";
    refused(
        &vpn_and(aws),
        "address: 198.51.100.90",
        "local_network_gateways[0].address",
        "198.51.100.90 is already used by onprem_sites[0].public_ip",
    );
    let aws = "\nlocal_network_gateways:\n  - { name: aws-vpc, address: 192.0.2.1, prefixes: [172.31.0.0/16] }\n";
    refused(
        &vpn_and(aws),
        "address: 192.0.2.1",
        "local_network_gateways[0].address",
        "192.0.2.1 is the internet's router",
    );
    // A load balancer's public frontend is checked against them all.
    let lb = concat!(
        "\ninternet_gateways:\n  - { name: igw-hub, network: hub }\n",
        "\nload_balancers:\n  - name: lb1\n    network: hub\n",
        "    frontends:\n      - { name: public, address: 198.51.100.90 }\n",
    );
    refused(
        &vpn_and(lb),
        "address: 198.51.100.90",
        "load_balancers[0].frontends[0].address",
        "198.51.100.90 is already used by onprem_sites[0].public_ip",
    );
}

#[test]
fn sites() {
    // The site, and the connection to it, renamed.
    let named = |name: &str| {
        vpn_with("  - name: branch\n", &format!("  - name: {name}\n")).replacen(
            "site: branch",
            &format!("site: {name}"),
            1,
        )
    };
    refused(
        &named("app1"),
        "  - name: app1",
        "onprem_sites[0].name",
        "name app1 is already used by hosts[0].name",
    );
    refused(
        &named("internet"),
        "  - name: internet",
        "onprem_sites[0].name",
        "name internet is reserved",
    );
    refused(
        &named("Branch"),
        "  - name: Branch",
        "onprem_sites[0].name",
        "name \"Branch\" must be 1-32 characters",
    );
    for (lan, reason) in [
        ("192.168.50.0/33", "malformed CIDR \"192.168.50.0/33\""),
        (
            "192.168.50.1/24",
            "192.168.50.1/24 has host bits set; did you mean 192.168.50.0/24?",
        ),
        ("fd00::/64", "fd00::/64: VPN prefixes are IPv4"),
        (
            "192.168.50.0/31",
            "192.168.50.0/31 has no room for the site's router and a host: want a /30 or larger",
        ),
        (
            "198.51.100.0/25",
            "198.51.100.0/25 overlaps the internet's public range 198.51.100.0/24",
        ),
    ] {
        refused(
            &vpn_with("lan: 192.168.50.0/24", &format!("lan: {lan}")),
            "lan: ",
            "onprem_sites[0].lan",
            reason,
        );
    }
    refused(
        &vpn_with("ipsec: strongswan ", "ipsec: libreswan "),
        "ipsec: libreswan",
        "onprem_sites[0].ipsec",
        "\"libreswan\": want one of strongswan",
    );
    let e = errors_in(&Lab::new(), &vpn_with("    ipsec: strongswan", "    #"));
    assert_eq!(e.errors.len(), 1, "{e}");
    assert!(e.errors[0].reason.contains("missing field `ipsec`"), "{e}");
    // A site with no hosts is a router alone.
    let text = vpn_with(&format!("    hosts:\n{BRANCH1}"), "");
    assert!(valid(&text).vpn.onprem_sites[0].hosts.is_empty());
}

#[test]
fn site_hosts() {
    let at = |address: &str| vpn_with("address: 192.168.50.10", &format!("address: {address}"));
    for (address, reason) in [
        (
            "192.168.51.10",
            "192.168.51.10 is not inside site branch's LAN 192.168.50.0/24",
        ),
        (
            "192.168.50.1",
            "192.168.50.1 is site branch's router (the LAN's first host address)",
        ),
        (
            "192.168.50.0",
            "192.168.50.0 is the network or broadcast address of 192.168.50.0/24",
        ),
        (
            "192.168.50.255",
            "192.168.50.255 is the network or broadcast address of 192.168.50.0/24",
        ),
        (
            "192.168.50.10/24",
            "\"192.168.50.10/24\" is not an IPv4 address",
        ),
    ] {
        refused(
            &at(address),
            "name: branch1",
            "onprem_sites[0].hosts[0].address",
            reason,
        );
    }
    refused(
        &vpn_plus(
            BRANCH1,
            "      - { name: branch2, address: 192.168.50.10 }\n",
        ),
        "name: branch2",
        "onprem_sites[0].hosts[1].address",
        "192.168.50.10 is already used by onprem_sites[0].hosts[0].address",
    );
    // Host names are node names: unique among hosts, switches, internet
    // hosts and sites.
    refused(
        &vpn_with("name: branch1", "name: west1"),
        "{ name: west1, address",
        "onprem_sites[0].hosts[0].name",
        "name west1 is already used by hosts[3].name",
    );
    refused(
        &vpn_with("name: branch1", "name: branch"),
        "{ name: branch, address",
        "onprem_sites[0].hosts[0].name",
        "name branch is already used by onprem_sites[0].name",
    );
    refused(
        &vpn_and("\ninternet:\n  hosts:\n    - { name: branch1, address: 198.51.100.20 }\n"),
        "{ name: branch1, address: 192",
        "onprem_sites[0].hosts[0].name",
        "name branch1 is already used by internet.hosts[0].name",
    );
}

#[test]
fn local_network_gateways() {
    let lng = |fields: &str| {
        vpn_and(&format!(
            "\nlocal_network_gateways:\n  - {{ name: aws-vpc, {fields} }}\n"
        ))
    };
    refused(
        &lng("address: 198.51.100.120"),
        "name: aws-vpc",
        "local_network_gateways[0].prefixes",
        "a local network gateway has at least one prefix",
    );
    refused(
        &lng("address: 198.51.100.120, prefixes: []"),
        "name: aws-vpc",
        "local_network_gateways[0].prefixes",
        "a local network gateway has at least one prefix",
    );
    refused(
        &lng("address: 10.92.0.5, prefixes: [172.31.0.0/16]"),
        "name: aws-vpc",
        "local_network_gateways[0].address",
        "10.92.0.5 is not a public address of the lab's internet",
    );
    for (prefixes, path, reason) in [
        (
            "[172.31.0.0/16, 172.31.4.0/24]",
            "local_network_gateways[0].prefixes[1]",
            "172.31.4.0/24 overlaps 172.31.0.0/16, also behind local network gateway aws-vpc",
        ),
        (
            "[172.31.0.0/16, 172.32.0.1/16]",
            "local_network_gateways[0].prefixes[1]",
            "172.32.0.1/16 has host bits set",
        ),
        (
            "[0.0.0.0/0]",
            "local_network_gateways[0].prefixes[0]",
            "0.0.0.0/0 overlaps the internet's public range 192.0.2.0/24",
        ),
        (
            "[2001:db8::/32]",
            "local_network_gateways[0].prefixes[0]",
            "2001:db8::/32: VPN prefixes are IPv4",
        ),
    ] {
        refused(
            &lng(&format!("address: 198.51.100.120, prefixes: {prefixes}")),
            "name: aws-vpc",
            path,
            reason,
        );
    }
    refused(
        &lng("address: 198.51.100.120, prefixes: [172.31.0.0/16], psk: hunter2"),
        "name: aws-vpc",
        "",
        "unknown field `psk`",
    );
    // Its name is a resource name, as a connection's is.
    refused(
        &lng("name: hub-gw, address: 198.51.100.120, prefixes: [172.31.0.0/16]").replacen(
            "name: aws-vpc, ",
            "",
            1,
        ),
        "{ name: hub-gw, address: 198",
        "local_network_gateways[0].name",
        "name hub-gw is already used by vpn_gateways[0].name",
    );
}

#[test]
fn connection_ends() {
    refused(
        &vpn_with("  - name: east-to-west ", "  - name: west-gw "),
        "  - name: west-gw ",
        "connections[1].name",
        "name west-gw is already used by vpn_gateways[2].name",
    );
    refused(
        &vpn_with("gateway: hub-gw\n", "gateway: hub-gw9\n"),
        "gateway: hub-gw9",
        "connections[0].gateway",
        "no VPN gateway named hub-gw9 (see vpn_gateways)",
    );
    refused(
        &vpn_with("    site: branch\n", ""),
        "  - name: hub-to-branch",
        "connections[0]",
        "a connection names its far end with exactly one of site, local_network_gateway or peer_gateway; it names none",
    );
    refused(
        &vpn_plus("    site: branch\n", "    peer_gateway: east-gw\n"),
        "    peer_gateway: east-gw",
        "connections[0].peer_gateway",
        "exactly one of site, local_network_gateway or peer_gateway; it names site and peer_gateway",
    );
    refused(
        &vpn_with("    site: branch\n", "    site: branch9\n"),
        "site: branch9",
        "connections[0].site",
        "no on-premises site named branch9 (see onprem_sites)",
    );
    refused(
        &vpn_with("    site: branch\n", "    local_network_gateway: aws\n"),
        "local_network_gateway: aws",
        "connections[0].local_network_gateway",
        "no local network gateway named aws (see local_network_gateways)",
    );
    refused(
        &vpn_with("peer_gateway: west-gw", "peer_gateway: north-gw"),
        "peer_gateway: north-gw",
        "connections[1].peer_gateway",
        "no VPN gateway named north-gw (see vpn_gateways)",
    );
    refused(
        &vpn_with("peer_gateway: west-gw", "peer_gateway: east-gw"),
        "peer_gateway: east-gw",
        "connections[1].peer_gateway",
        "connects gateway east-gw to itself: a peer gateway is another network's VPN gateway",
    );
    // A peer gateway is in another network: a network has one VPN gateway,
    // and a connection to a refused gateway says nothing more.
    refused(
        &vpn_with(
            "name: west-gw, network: west",
            "name: west-gw, network: east",
        ),
        "name: west-gw, network: east",
        "vpn_gateways[2].network",
        "network east already has VPN gateway east-gw; a network takes one",
    );
    // Two gateways take one connection, whichever makes it.
    let again = "\n  - { name: west-to-east, gateway: west-gw, peer_gateway: east-gw, psk_file: east-west.psk }\n";
    refused(
        &vpn_and(again),
        "name: west-to-east",
        "connections[2].peer_gateway",
        "gateways east-gw and west-gw are already connected by connection east-to-west: two VPN gateways take one connection, in either direction",
    );
    // A refused site says why once; connections naming it say nothing.
    refused(
        &vpn_with("lan: 192.168.50.0/24", "lan: 192.168.50.0/31"),
        "lan: 192.168.50.0/31",
        "onprem_sites[0].lan",
        "no room",
    );
    // A connection of the hub to a local network gateway.
    let text = vpn_and(concat!(
        "\n  - { name: hub-to-aws, gateway: hub-gw, local_network_gateway: aws-vpc, psk_file: branch.psk, initiator: peer }\n",
        "\nlocal_network_gateways:\n",
        "  - { name: aws-vpc, address: 198.51.100.120, prefixes: [172.31.0.0/16] }\n",
    ));
    let topo = valid(&text);
    assert_eq!(
        topo.vpn.connection("hub-to-aws").unwrap().remote,
        Remote::LocalNetworkGateway("aws-vpc".into())
    );
}

#[test]
fn remote_prefixes_overlap_no_reachable_network() {
    refused(
        &vpn_with("lan: 192.168.50.0/24", "lan: 10.90.50.0/24").replacen(
            "address: 192.168.50.10",
            "address: 10.90.50.10",
            1,
        ),
        "site: branch",
        "connections[0].site",
        "site branch's LAN 10.90.50.0/24 overlaps network hub (10.90.0.0/16) of gateway hub-gw",
    );
    // Peered networks are reached too.
    let peered = |text: &str| {
        text.replacen(
            "\nswitches:\n",
            "\npeerings:\n  - [hub, east]\n\nswitches:\n",
            1,
        )
    };
    refused(
        &peered(
            &vpn_with("lan: 192.168.50.0/24", "lan: 10.91.50.0/24").replacen(
                "address: 192.168.50.10",
                "address: 10.91.50.10",
                1,
            ),
        ),
        "site: branch",
        "connections[0].site",
        "site branch's LAN 10.91.50.0/24 overlaps network east (10.91.0.0/16), peered with hub, the network of gateway hub-gw",
    );
    // A peered network is already reached without a tunnel.
    refused(
        &peered(VPN).replacen("[hub, east]", "[east, west]", 1),
        "peer_gateway: west-gw",
        "connections[1].peer_gateway",
        "peer gateway west-gw's network west 10.92.0.0/16 overlaps network west (10.92.0.0/16), peered with east, the network of gateway east-gw",
    );
    // Overlapping networks cannot be joined VNet-to-VNet.
    refused(
        &vpn_with("cidr: 10.92.0.0/16", "cidr: 10.91.0.0/16")
            .replacen("cidr: 10.92.1.0/24", "cidr: 10.91.1.0/24", 1)
            .replacen("address: 10.92.1.11/24", "address: 10.91.1.12/24", 1),
        "peer_gateway: west-gw",
        "connections[1].peer_gateway",
        "peer gateway west-gw's network west 10.91.0.0/16 overlaps network east (10.91.0.0/16) of gateway east-gw",
    );
    // The peer gateway's side: west-gw sends east's range, which a network
    // peered with west holds (networks that are not peered may overlap).
    let text = vpn_plus(
        "      - { name: web, cidr: 10.92.1.0/24 }\n",
        "  - name: north\n    cidr: 10.91.0.0/16\n",
    );
    refused(
        &peered(&text).replacen("[hub, east]", "[west, north]", 1),
        "peer_gateway: west-gw",
        "connections[1].peer_gateway",
        "gateway east-gw's network east 10.91.0.0/16 overlaps network north (10.91.0.0/16), peered with west, the network of peer gateway west-gw",
    );
}

#[test]
fn remote_prefixes_overlap_no_other_tunnel() {
    let aws = |prefixes: &str, gateway: &str| {
        vpn_and(&format!(
            "\n  - {{ name: to-aws, gateway: {gateway}, local_network_gateway: aws-vpc, psk_file: branch.psk }}\n\nlocal_network_gateways:\n  - {{ name: aws-vpc, address: 198.51.100.120, prefixes: {prefixes} }}\n"
        ))
    };
    refused(
        &aws("[172.31.0.0/16, 192.168.0.0/16]", "hub-gw"),
        "name: to-aws",
        "connections[2].local_network_gateway",
        "local network gateway aws-vpc's prefix 192.168.0.0/16 overlaps 192.168.50.0/24, which gateway hub-gw already sends into the tunnel of connection hub-to-branch",
    );
    // Another gateway's tunnels are its own.
    valid(&aws("[192.168.0.0/16]", "east-gw"));
    // A VNet-to-VNet connection sends the gateway's network from the peer
    // gateway too: hub-gw's network 10.90.0.0/16 from east-gw, which
    // already sends it to aws-vpc.
    let text = vpn_with(
        "  - name: east-to-west ",
        "  - { name: to-aws, gateway: east-gw, local_network_gateway: aws-vpc, psk_file: branch.psk }\n  - { name: hub-to-east, gateway: hub-gw, peer_gateway: east-gw, psk_file: east-west.psk }\n  - name: east-to-west ",
    ) + "\nlocal_network_gateways:\n  - { name: aws-vpc, address: 198.51.100.120, prefixes: [10.90.0.0/16] }\n";
    refused(
        &text,
        "name: hub-to-east",
        "connections[2].peer_gateway",
        "gateway hub-gw's network hub 10.90.0.0/16 overlaps 10.90.0.0/16, which gateway east-gw already sends into the tunnel of connection to-aws",
    );
    // The same site twice on one gateway is one overlap.
    let twice =
        "\n  - { name: hub-to-branch2, gateway: hub-gw, site: branch, psk_file: branch.psk }\n";
    refused(
        &vpn_and(twice),
        "name: hub-to-branch2",
        "connections[2].site",
        "site branch's LAN 192.168.50.0/24 overlaps 192.168.50.0/24, which gateway hub-gw already sends into the tunnel of connection hub-to-branch",
    );
}

#[test]
fn algorithms() {
    let ike = |list: &str| vpn_with("ike: [aes256gcm16, aes128gcm16]", &format!("ike: {list}"));
    refused(
        &ike("[aes256gcm16, aes256cbc]"),
        "ike: [",
        "connections[0].ipsec_policy.ike[1]",
        "\"aes256cbc\": want one of aes256gcm16, aes128gcm16, chacha20poly1305",
    );
    refused(
        &ike("[aes128gcm16, AES128GCM16]"),
        "ike: [",
        "connections[0].ipsec_policy.ike[1]",
        "aes128gcm16 is listed twice",
    );
    refused(
        &ike("[]"),
        "ike: []",
        "connections[0].ipsec_policy.ike",
        "an empty list: want at least one of aes256gcm16, aes128gcm16, chacha20poly1305",
    );
    refused(
        &vpn_with(ESP, "      esp: [3des]\n"),
        "esp: [3des]",
        "connections[0].ipsec_policy.esp[0]",
        "\"3des\": want one of aes256gcm16, aes128gcm16, chacha20poly1305",
    );
    refused(
        &vpn_plus(ESP, "      prf: sha1\n"),
        "prf: sha1",
        "connections[0].ipsec_policy.prf",
        "\"sha1\": want one of sha256",
    );
    refused(
        &vpn_plus(ESP, "      dh: modp2048\n"),
        "dh: modp2048",
        "connections[0].ipsec_policy.dh",
        "\"modp2048\": want one of x25519",
    );
    let e = errors_in(&Lab::new(), &vpn_plus(ESP, "      integrity: sha256\n"));
    assert_eq!(e.errors.len(), 1, "{e}");
    assert!(
        e.errors[0].reason.contains("unknown field `integrity`"),
        "{e}"
    );
}

#[test]
fn lifetimes() {
    for (line, at, path, reason) in [
        (
            "    ike_lifetime: 1s",
            "ike_lifetime: 1s",
            "connections[0].ike_lifetime",
            "IKE lifetime 1s is below the shortest, 2s",
        ),
        (
            "    ike_lifetime: 49h",
            "ike_lifetime: 49h",
            "connections[0].ike_lifetime",
            "IKE lifetime 49h is above the longest, 48h",
        ),
        (
            "    ike_lifetime: soon",
            "ike_lifetime: soon",
            "connections[0].ike_lifetime",
            "\"soon\": want a duration like 500ms, 5s, 4m, 1h or whole seconds",
        ),
        (
            "    ike_lifetime: 1500ms",
            "ike_lifetime: 1500ms",
            "connections[0].ike_lifetime",
            "IKE lifetime 1500ms: want whole seconds",
        ),
        (
            "    ike_lifetime: 30m",
            "child_lifetime: 1h",
            "connections[0].child_lifetime",
            "child lifetime 1h is not below the IKE lifetime (30m)",
        ),
        (
            "    child_lifetime: 0s",
            "child_lifetime: 0s",
            "connections[0].child_lifetime",
            "child lifetime 0s is below the shortest, 2s",
        ),
        (
            "    child_lifetime: 8h",
            "child_lifetime: 8h",
            "connections[0].child_lifetime",
            "child lifetime 8h is not below the IKE lifetime (8h): a child SA lives inside its IKE SA",
        ),
    ] {
        refused(&hub_to_branch(line), at, path, reason);
    }
    // Against a default, the message says so, at the field written.
    let east = |line: &str| vpn_plus(EAST_WEST_PSK, &format!("{line}\n"));
    refused(
        &east("    child_lifetime: 9h"),
        "child_lifetime: 9h",
        "connections[1].child_lifetime",
        "child lifetime 9h is not below the IKE lifetime (8h, the default)",
    );
    refused(
        &east("    ike_lifetime: 1h"),
        "ike_lifetime: 1h",
        "connections[1].ike_lifetime",
        "IKE lifetime 1h is not above the child lifetime (1h, the default)",
    );
}

#[test]
fn dead_peer_detection() {
    for (line, at, path, reason) in [
        (
            "    dpd_interval: 0s",
            "dpd_interval: 0s",
            "connections[0].dpd_interval",
            "dpd interval 0s: want a duration above zero",
        ),
        (
            "    dpd_interval: 1h",
            "dpd_interval: 1h",
            "connections[0].dpd_interval",
            "dpd interval 1h is not below the child lifetime (1h): dead-peer detection checks the peer within an SA's life",
        ),
        (
            "    dpd_interval: 2500ms",
            "dpd_interval: 2500ms",
            "connections[0].dpd_interval",
            "dpd interval 2500ms: want whole seconds",
        ),
        (
            "    dpd_retries: 0",
            "dpd_retries: 0",
            "connections[0].dpd_retries",
            "0: want 1 to 10 unanswered liveness checks",
        ),
        (
            "    dpd_retries: 11",
            "dpd_retries: 11",
            "connections[0].dpd_retries",
            "11: want 1 to 10 unanswered liveness checks",
        ),
        (
            "    initiator: responder",
            "initiator: responder",
            "connections[0].initiator",
            "\"responder\": want one of gateway, peer, both",
        ),
    ] {
        refused(&hub_to_branch(line), at, path, reason);
    }
    let east = |line: &str| vpn_plus(EAST_WEST_PSK, &format!("{line}\n"));
    refused(
        &east("    child_lifetime: 5s"),
        "child_lifetime: 5s",
        "connections[1].child_lifetime",
        "child lifetime 5s is not above the dpd interval (10s, the default)",
    );
    refused(
        &east("    dpd_interval: 2h"),
        "dpd_interval: 2h",
        "connections[1].dpd_interval",
        "dpd interval 2h is not below the child lifetime (1h, the default)",
    );
}

#[test]
fn key_files() {
    let lab = Lab::new();
    let branch = lab.dir.join("branch.psk");
    let at = "psk_file: branch.psk";
    let path = "connections[0].psk_file";
    std::fs::remove_file(&branch).unwrap();
    let hint = format!(
        "PSK file {0} does not exist; create one with `head -c 32 /dev/urandom | base64 > {0} && chmod 600 {0}`",
        branch.display()
    );
    refused_in(&lab, VPN, at, path, &hint);
    lab.key("branch.psk", "c2VjcmV0\n", 0o644);
    refused_in(
        &lab,
        VPN,
        at,
        path,
        &format!(
            "PSK file {} has mode 0644, readable by others: want 0600 or stricter",
            branch.display()
        ),
    );
    lab.key("branch.psk", "c2VjcmV0\n", 0o640);
    refused_in(&lab, VPN, at, path, "has mode 0640, readable by others");
    lab.key("branch.psk", "c2VjcmV0\n", 0o620);
    refused_in(&lab, VPN, at, path, "has mode 0620, writable by others");
    lab.key("branch.psk", "c2VjcmV0\n", 0o601);
    refused_in(&lab, VPN, at, path, "has mode 0601, executable by others");
    // Stricter than 0600 is fine.
    lab.key("branch.psk", "c2VjcmV0\n", 0o400);
    lab.parse(VPN).unwrap_or_else(|e| panic!("{e}"));
    for (text, reason) in [
        ("", "is empty"),
        ("\n", "is empty"),
        (
            "two words\n",
            "holds something other than one line of visible ASCII",
        ),
        (
            "one\ntwo\n",
            "holds something other than one line of visible ASCII",
        ),
        (
            "key\n\n",
            "holds something other than one line of visible ASCII",
        ),
    ] {
        lab.key("branch.psk", text, 0o600);
        refused_in(&lab, VPN, at, path, reason);
    }
    let big = "k".repeat(MAX_PSK_FILE as usize + 1);
    lab.key("branch.psk", &big, 0o600);
    refused_in(
        &lab,
        VPN,
        at,
        path,
        "is 1025 bytes; a PSK file holds at most 1024",
    );
    std::fs::remove_file(&branch).unwrap();
    std::fs::create_dir(&branch).unwrap();
    refused_in(&lab, VPN, at, path, "is not a regular file (a directory)");
    std::fs::remove_dir(&branch).unwrap();
    refused_in(
        &lab,
        &vpn_with("psk_file: branch.psk ", "psk_file: \"\" "),
        "psk_file: \"\"",
        path,
        "want the path of a file holding the pre-shared key",
    );
    // An absolute path is taken as it is.
    let elsewhere = Lab::new();
    let text = vpn_with(
        "psk_file: branch.psk ",
        &format!(
            "psk_file: {} ",
            elsewhere.dir.join("east-west.psk").display()
        ),
    );
    let topo = lab.parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        topo.vpn.connections[0].psk_file,
        elsewhere.dir.join("east-west.psk")
    );
    // An inline key is not a field.
    let e = errors_in(&lab, &vpn_plus(BRANCH_PSK, "    psk: hunter2\n"));
    assert!(e.errors[0].reason.contains("unknown field `psk`"), "{e}");
}

#[test]
fn unreadable_key_files() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        eprintln!("skipped: root reads a file whatever its mode");
        return;
    }
    let lab = Lab::new();
    lab.key("branch.psk", "c2VjcmV0\n", 0o200);
    refused_in(
        &lab,
        VPN,
        "psk_file: branch.psk",
        "connections[0].psk_file",
        "cannot read PSK file",
    );
}

#[test]
fn reading_a_key() {
    let lab = Lab::new();
    let check = |text: &str, want: &[u8]| {
        let path = lab.key("k.psk", text, 0o600);
        assert_eq!(read_psk(&path).unwrap().as_slice(), want, "{text:?}");
    };
    check("c2VjcmV0\n", b"c2VjcmV0");
    check("c2VjcmV0", b"c2VjcmV0");
    check("c2VjcmV0\r\n", b"c2VjcmV0");
    check("p@ss-w0rd!", b"p@ss-w0rd!");
    // The mode is checked again when the key is used.
    let topo = lab.parse(VPN).unwrap_or_else(|e| panic!("{e}"));
    let file = &topo.vpn.connections[0].psk_file;
    assert!(read_psk(file).is_ok());
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
    match read_psk(file) {
        Err(PskError::OpenToOthers { mode, what, .. }) => {
            assert_eq!((mode, what), (0o644, "readable by others"));
        }
        other => panic!("{other:?}"),
    }
    std::fs::remove_file(file).unwrap();
    assert!(matches!(read_psk(file), Err(PskError::Missing { .. })));
    assert!(matches!(
        read_psk(Path::new("/dev/null")),
        Err(PskError::NotRegular {
            kind: "a device",
            ..
        })
    ));
}

#[test]
fn every_mistake_is_reported_at_once() {
    let text = vpn_with("public_ip: 203.0.113.90", "public_ip: 10.90.0.9")
        .replacen("address: 192.168.50.10", "address: 192.168.50.1", 1)
        .replacen("      esp: [aes256gcm16]", "      esp: [aes256cbc]", 1)
        .replacen("child_lifetime: 1h", "child_lifetime: 1s", 1)
        .replacen("peer_gateway: west-gw", "peer_gateway: east-gw", 1);
    let paths: Vec<String> = errors_in(&Lab::new(), &text)
        .errors
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(
        paths,
        [
            "vpn_gateways[0].public_ip",
            "onprem_sites[0].hosts[0].address",
            "connections[0].ipsec_policy.esp[0]",
            "connections[0].child_lifetime",
            "connections[1].peer_gateway",
        ]
    );
}

#[test]
fn a_gateway_runs_on_the_first_switch_holding_its_network() {
    let topo = valid(VPN);
    for gateway in ["hub-gw", "east-gw", "west-gw"] {
        assert_eq!(
            topo.vpn_gateway_switch(gateway).map(|s| s.name.as_str()),
            Some("sw1"),
            "{gateway}"
        );
    }
    assert!(topo.vpn_gateway_switch("no-such-gw").is_none());
    let names: Vec<&str> = topo
        .vpn_gateways_on("sw1")
        .iter()
        .map(|(g, _)| g.name.as_str())
        .collect();
    assert_eq!(names, ["hub-gw", "east-gw", "west-gw"]);
    assert_eq!(
        &topo.site_namespaces(),
        &["vpn-branch".to_string(), "vpn-branch1".to_string()]
    );
    assert!(topo.namespaces().ends_with(&topo.site_namespaces()));

    let spare = vpn_plus(
        "      - { name: web, cidr: 10.92.1.0/24 }\n",
        "  - name: spare\n    cidr: 10.93.0.0/16\n",
    );
    let spare = spare.replacen(
        HUB_GW,
        &format!("{HUB_GW}  - {{ name: spare-gw, network: spare, public_ip: 203.0.113.93 }}\n"),
        1,
    );
    refused(
        &spare,
        "name: spare-gw",
        "vpn_gateways[1].network",
        "network spare has no host on a switch: VPN gateway spare-gw runs on the switch of a host of its network",
    );
}
