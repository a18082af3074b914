//! Namespace tests of routing on `topologies/routing.yaml`: gateways answered
//! by the switches, traffic routed across subnets, switches and hypervisors,
//! TTL and MTU errors from the gateway, a virtual appliance and a `none`
//! route, peering that is not transitive, the internet reached through a
//! public IP and a NAT gateway (and nothing private reached from it), NAT
//! ports running out, and a route table changed live. They need root; each
//! lab has a unique name and is removed by its guard.

mod support;

use sdn_vswitch::wire::{EtherType, EthernetFrame, Ipv4Packet};
use serde_json::Value;
use std::net::Ipv4Addr;
use std::time::Duration;
use support::*;

const WEB1: &str = "10.20.1.11";
const APP1: &str = "10.20.2.11";
const WEB2: &str = "10.20.1.12";
const DB1: &str = "10.21.1.11";
const OPS1: &str = "10.22.1.11";
const CLIENT: &str = "198.51.100.20";
const SERVER: &str = "203.0.113.80";
const WEB1_PUBLIC: &str = "203.0.113.10";
const NAT: &str = "203.0.113.20";

fn pings(lab: &Lab, node: &str, address: &str) -> bool {
    lab.exec(node, &["ping", "-c", "2", "-i", "0.2", "-W", "1", address])
        .status
        .success()
}

/// `ping` output of one probe from `node` with extra options.
fn ping_text(lab: &Lab, node: &str, options: &[&str], address: &str) -> String {
    let mut args = vec!["ping", "-c", "1", "-W", "1"];
    args.extend(options);
    args.push(address);
    text(&lab.exec(node, &args).stdout)
}

fn sdn_json(lab: &Lab, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--lab", &lab.name, "--json"]);
    let out = lab.sdn(&all);
    assert!(out.status.success(), "sdn {args:?}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

/// The packets route `name` of subnet `subnet` carried on `switch`, and its state.
fn route(lab: &Lab, switch: &str, subnet: &str, name: &str) -> (u64, String) {
    let routes = sdn_json(lab, &["routes", switch, "--subnet", subnet]);
    let found = routes["subnets"][0]["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no route {name} in {routes}"))
        .clone();
    (
        found["packets"].as_u64().unwrap_or(0),
        found["state"].as_str().unwrap_or("").to_string(),
    )
}

/// The address the server saw a TCP connection from `client` to
/// `address:port` come from (the server listens on every address).
fn seen_from(lab: &Lab, client: &str, server: &str, address: &str, port: u16) -> Option<Ipv4Addr> {
    let mut conn = connect_to(lab, client, server, at("0.0.0.0", port), at(address, port))?;
    assert!(
        conn.echoes(b"hello"),
        "{client} -> {address}:{port} carries data"
    );
    match conn.server.peer_addr().ok()?.ip() {
        std::net::IpAddr::V4(a) => Some(a),
        std::net::IpAddr::V6(_) => None,
    }
}

/// IPv4 (source, destination) of the frames of a capture.
fn ip_pairs(frames: &[Vec<u8>]) -> Vec<(Ipv4Addr, Ipv4Addr)> {
    frames
        .iter()
        .filter_map(|f| {
            let eth = EthernetFrame::new_checked(&f[..]).ok()?;
            (eth.ethertype() == EtherType::Ipv4).then_some(())?;
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            Some((ip.src_addr(), ip.dst_addr()))
        })
        .collect()
}

fn addr(text: &str) -> Ipv4Addr {
    text.parse().expect("address")
}

#[test]
fn networks_route_and_reach_the_internet_as_declared() {
    if !is_root() {
        return;
    }
    let name = unique_name("route");
    let lab = Lab::new(&name, &repository_topology("routing.yaml", &name));
    lab.up();

    let status = sdn_json(&lab, &["status"]);
    let hub = &status["labs"][0]["networks"][0];
    assert_eq!(hub["subnets"][0]["gateway"], "10.20.1.1", "{hub}");
    assert_eq!(hub["subnets"][0]["route_table"], "rt-web");
    assert_eq!(hub["internet_gateway"], "igw-hub");

    // The gateways answer; routing across subnets, switches and hypervisors.
    assert!(pings(&lab, "web1", "10.20.1.1"), "the gateway answers ping");
    assert!(
        pings(&lab, "app1", "10.20.1.1"),
        "another subnet's gateway too"
    );
    assert!(
        pings(&lab, "app1", WEB2),
        "app (hv1) to web (hv2) across VXLAN"
    );
    assert!(pings(&lab, "web2", APP1), "and back");
    assert!(pings(&lab, "db1", OPS1), "spoke to branch: peered");
    assert!(pings(&lab, "db1", WEB2), "spoke to hub: peered");
    let data = pattern(2 * 1024 * 1024, 3);
    let got = tcp_transfer(&lab.ns("web2"), &lab.ns("app1"), at(WEB2, 7001), &data);
    assert!(got == data, "2 MB app1 -> web2 arrived altered");
    let got = tcp_transfer(&lab.ns("app1"), &lab.ns("web2"), at(APP1, 7002), &data);
    assert!(got == data, "2 MB web2 -> app1 arrived altered");

    // Security rules see routed traffic: spoke's db subnet takes its
    // database port from hub's app tier only, and replies come back.
    let mut db = connect(&lab, "app1", "db1", at(DB1, 5432)).expect("app1 -> db1:5432");
    assert!(db.echoes(b"select 1"));
    assert!(
        connect(&lab, "web2", "db1", at(DB1, 5432)).is_none(),
        "web2 is not the app tier"
    );
    drop(db);

    // Peering is not transitive.
    assert!(
        !pings(&lab, "web1", OPS1),
        "hub reached branch through spoke"
    );
    assert!(
        !pings(&lab, "ops1", WEB1),
        "branch reached hub through spoke"
    );

    // TTL and MTU: errors from the gateway, path MTU discovery works.
    let expired = ping_text(&lab, "app1", &["-t", "1"], WEB2);
    assert!(
        expired.contains("From 10.20.2.1") && expired.contains("Time to live exceeded"),
        "{expired}"
    );
    let too_big = ping_text(&lab, "app1", &["-M", "do", "-s", "1472"], WEB2);
    assert!(too_big.contains("mtu = 1450"), "{too_big}");
    let fits = ping_text(&lab, "app1", &["-M", "do", "-s", "1422"], WEB2);
    assert!(fits.contains("1430 bytes from"), "{fits}");
    let fragmented = ping_text(&lab, "app1", &["-M", "dont", "-s", "1472"], WEB2);
    assert!(
        fragmented.contains("1480 bytes from"),
        "a non-DF datagram is fragmented: {fragmented}"
    );
    let unreachable = ping_text(&lab, "web1", &[], "10.20.2.99");
    assert!(
        unreachable.contains("Destination Host Unreachable"),
        "{unreachable}"
    );

    // The virtual appliance carries web's traffic to spoke; the peering's
    // route of the same prefix is overridden.
    let capture = lab.capture("sw1", "p3", 2);
    assert!(pings(&lab, "web1", DB1));
    let seen = ip_pairs(&capture.frames());
    assert!(
        seen.contains(&(addr(WEB1), addr(DB1))),
        "the appliance's port saw web1 -> db1: {seen:?}"
    );
    let (via_nva, state) = route(&lab, "sw1", "hub/web", "spoke-via-nva");
    assert!(via_nva > 0);
    assert_eq!(state, "active");
    assert_eq!(route(&lab, "sw1", "hub/web", "peering-spoke").1, "invalid");
    // The none route drops without a word (web2: web1's NSG would stop it
    // before it is routed, as it denies outbound traffic to neither the
    // networks nor the internet).
    assert!(!pings(&lab, "web2", "10.99.0.1"));
    assert!(ping_text(&lab, "web2", &[], "10.99.0.1").contains("100% packet loss"));
    assert!(route(&lab, "sw2", "hub/web", "blackhole").0 > 0);

    // The internet: web1 through its public IP, web2 and app1 through the NAT
    // gateway (web2's switch relays to the NAT gateway's); nothing private.
    assert_eq!(
        seen_from(&lab, "web1", "server", SERVER, 8080),
        Some(addr(WEB1_PUBLIC))
    );
    assert_eq!(
        seen_from(&lab, "web2", "server", SERVER, 8081),
        Some(addr(NAT))
    );
    assert_eq!(
        seen_from(&lab, "app1", "server", SERVER, 8082),
        Some(addr(NAT))
    );
    assert_eq!(
        seen_from(&lab, "client", "web1", WEB1_PUBLIC, 80),
        Some(addr(CLIENT)),
        "web1 sees the client's own address"
    );
    assert!(
        connect_to(
            &lab,
            "client",
            "web1",
            at("0.0.0.0", 22),
            at(WEB1_PUBLIC, 22)
        )
        .is_none(),
        "web1's NSG lets the internet in on port 80 only"
    );
    assert!(pings(&lab, "client", WEB1_PUBLIC));
    assert!(
        !pings(&lab, "client", WEB1),
        "a private address from the internet"
    );
    assert!(
        connect_to(&lab, "client", "app1", at("0.0.0.0", 8083), at(NAT, 8083)).is_none(),
        "unsolicited inbound to the NAT gateway"
    );
    let ct = sdn_json(&lab, &["conntrack", "sw1"]);
    let bindings: Vec<&Value> = ct["connections"]
        .as_array()
        .expect("connections")
        .iter()
        .filter(|c| c["nat"] == true)
        .collect();
    assert!(
        bindings
            .iter()
            .any(|c| c["src"] == APP1 && c["reply"]["dst"] == NAT && c["port"] == "nat:hub"),
        "{ct}"
    );
    let flows = text(&lab.sdn(&["dump-flows", "sw1", "--lab", &name]).stdout);
    for needle in [
        "dec_ttl(icmp_src=10.20.1.1)",
        "->eth_dst",
        "ct(commit,zone=65280,nat(src=203.0.113.20:1024-65535),table=9)",
        "ct(commit,zone=65280,nat(dst=10.20.1.11),table=7)",
        "arp_reply(",
    ] {
        assert!(flows.contains(needle), "dump-flows shows {needle}");
    }

    // A live route-table change: web's traffic to spoke goes direct; a
    // connection that still has a route keeps flowing.
    let mut conn = connect(&lab, "web1", "db1", at(DB1, 7003)).expect("web1 -> db1");
    assert!(conn.echoes(b"before"));
    let edited = std::fs::read_to_string(&lab.file)
        .expect("topology")
        .replace(
            "      - { name: spoke-via-nva, prefix: 10.21.0.0/16, next_hop: { virtual_appliance: 10.20.2.4 } }\n",
            "",
        );
    let edited_file = lab.dir.join("edited.yaml");
    std::fs::write(&edited_file, &edited).expect("write");
    let applied = lab.sdn(&["apply", edited_file.to_str().expect("utf-8")]);
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    assert!(
        text(&applied.stdout).contains("applied on sw1"),
        "{}",
        text(&applied.stdout)
    );
    assert!(conn.echoes(b"after"), "the connection survives the change");
    assert_eq!(route(&lab, "sw1", "hub/web", "peering-spoke").1, "active");
    let capture = lab.capture("sw1", "p3", 1);
    assert!(pings(&lab, "web1", DB1));
    let seen = ip_pairs(&capture.frames());
    assert!(
        !seen.contains(&(addr(WEB1), addr(DB1))),
        "the appliance no longer sees web1 -> db1: {seen:?}"
    );
    drop(conn);
    drop(lab);
    assert!(
        sdn_controller::lab::netns::list_with_prefix(&format!("{name}-")).is_empty(),
        "sdn down leaves nothing behind"
    );
}

#[test]
fn a_nat_gateway_out_of_ports_refuses_new_connections() {
    if !is_root() {
        return;
    }
    let name = unique_name("natx");
    let topology = repository_topology("routing.yaml", &name).replace(
        "subnets: [hub/web, hub/app] }",
        "subnets: [hub/web, hub/app], ports: 40000-40001 }",
    );
    let lab = Lab::new(&name, &topology);
    lab.up();
    let open: Vec<_> = (0..2)
        .map(|i| {
            let mut c = connect(&lab, "app1", "server", at(SERVER, 9000))
                .unwrap_or_else(|| panic!("connection {i} through the NAT gateway"));
            assert!(c.echoes(b"x"));
            c
        })
        .collect();
    let ports: Vec<u16> = open
        .iter()
        .map(|c| c.server.peer_addr().expect("peer").port())
        .collect();
    assert!(
        ports.iter().all(|p| (40000..=40001).contains(p)),
        "{ports:?}"
    );
    assert_ne!(ports[0], ports[1]);
    assert!(
        connect(&lab, "app1", "server", at(SERVER, 9000)).is_none(),
        "a third connection to the same server finds no port"
    );
    let ct = sdn_json(&lab, &["conntrack", "sw1"]);
    assert!(ct["nat_exhausted"].as_u64().unwrap_or(0) >= 1, "{ct}");
    // Another server port is another reply tuple: ports are free for it.
    assert!(connect(&lab, "app1", "server", at(SERVER, 9001)).is_some());
    drop(open);
    std::thread::sleep(Duration::from_millis(10));
}
