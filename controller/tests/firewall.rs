//! Namespace tests of stateful security groups on `topologies/firewall.yaml`:
//! TCP, UDP and ICMP along allowed and denied paths, replies of allowed
//! connections, NSG priorities, ACG unions, what reaches a protected host,
//! out-of-state packets, a full connection table, and live rule changes.
//! They need root; each lab has a unique name and is removed by its guard.

mod support;

use serde_json::Value;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;
use support::*;

const CLIENT: &str = "10.30.0.10";
const WEB1: &str = "10.30.0.11";
const WEB2: &str = "10.30.0.12";
const APP1: &str = "10.30.0.21";
const DB1: &str = "10.30.0.31";

/// Whether a TCP connection opens and carries data both ways.
fn tcp_works(lab: &Lab, client: &str, server: &str, address: SocketAddr) -> bool {
    connect(lab, client, server, address).is_some_and(|mut c| c.echoes(b"hello"))
}

/// Sends a UDP datagram from `client` to `server`; returns whether it
/// arrived and whether the server's answer came back.
fn udp_exchange(
    lab: &Lab,
    client: &str,
    from: SocketAddr,
    server: &str,
    to: SocketAddr,
) -> (bool, bool) {
    let timeout = Some(Duration::from_millis(1000));
    let server_socket: UdpSocket =
        in_ns(&lab.ns(server), move || UdpSocket::bind(to).expect("bind"));
    let client_socket: UdpSocket = in_ns(&lab.ns(client), move || {
        UdpSocket::bind(from).expect("bind")
    });
    server_socket.set_read_timeout(timeout).expect("timeout");
    client_socket.set_read_timeout(timeout).expect("timeout");
    client_socket.send_to(b"query", to).expect("send");
    let mut buf = [0u8; 64];
    let Ok((_, peer)) = server_socket.recv_from(&mut buf) else {
        return (false, false);
    };
    server_socket.send_to(b"answer", peer).expect("answer");
    (true, client_socket.recv_from(&mut buf).is_ok())
}

fn pings(lab: &Lab, node: &str, address: &str) -> bool {
    lab.exec(node, &["ping", "-c", "2", "-i", "0.2", "-W", "1", address])
        .status
        .success()
}

fn sdn_json(lab: &Lab, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--lab", &lab.name, "--json"]);
    let out = lab.sdn(&all);
    assert!(out.status.success(), "sdn {args:?}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

fn rule_packets(lab: &Lab, group: &str, rule: &str) -> u64 {
    let rules = sdn_json(lab, &["rules", "sw1"]);
    rules["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter(|r| r["group"] == group && r["rule"] == rule)
        .map(|r| r["packets"].as_u64().unwrap_or(0))
        .sum()
}

fn firewall_lab(tag: &str, edit: impl Fn(String) -> String) -> Lab {
    let name = unique_name(tag);
    let lab = Lab::new(&name, &edit(repository_topology("firewall.yaml", &name)));
    lab.up();
    lab
}

/// IPv4 TCP frames to `port` of `dst` among `frames`.
fn tcp_frames_to(frames: &[Vec<u8>], dst: &str, port: u16) -> usize {
    let dst: Ipv4Addr = dst.parse().expect("address");
    frames
        .iter()
        .filter_map(|f| sdn_vswitch::flow::FlowKey::extract(f, 0))
        .filter(|e| {
            let k = e.key;
            k.eth_type() == 0x0800
                && k.ip_proto() == 6
                && k.ip_dst() == Some(dst.into())
                && k.tp_dst() == port
        })
        .count()
}

#[test]
fn three_tiers_open_only_the_intended_paths() {
    if !is_root() {
        return;
    }
    let lab = firewall_lab("fw", |t| t);
    // ICMP: client may ping web and (monitoring ACG) the database, not app.
    assert!(pings(&lab, "client", WEB1));
    assert!(!pings(&lab, "client", APP1));
    assert!(pings(&lab, "client", DB1));
    // TCP along the tiers, both ways.
    assert!(tcp_works(&lab, "client", "web1", at(WEB1, 80)));
    assert!(tcp_works(&lab, "web2", "app1", at(APP1, 8080)));
    assert!(tcp_works(&lab, "app1", "db1", at(DB1, 5432)));
    // Denied: a deny at priority 100 beats the allow of 1-1024 at 200; app
    // takes only web; web may not reach the database, nor the client.
    assert!(!tcp_works(&lab, "client", "web1", at(WEB1, 22)));
    assert!(!tcp_works(&lab, "client", "app1", at(APP1, 8080)));
    assert!(!tcp_works(&lab, "web1", "db1", at(DB1, 5432)));
    // UDP: the monitoring ACG lets SNMP in (and its answer back); the web
    // NSG refuses UDP.
    assert_eq!(
        udp_exchange(&lab, "client", at(CLIENT, 40000), "db1", at(DB1, 161)),
        (true, true)
    );
    assert_eq!(
        udp_exchange(&lab, "client", at(CLIENT, 40001), "web1", at(WEB1, 161)),
        (false, false)
    );
    // The reply of an allowed outbound connection comes back although no
    // inbound rule of app lets the client in.
    assert!(tcp_works(&lab, "app1", "client", at(CLIENT, 9000)));
    // So does an ICMP error about it: the client's port unreachable is
    // related to app1's datagram, and app1's socket hears the refusal.
    let refused = in_ns(&lab.ns("app1"), || {
        let socket = UdpSocket::bind(at(APP1, 40100)).expect("bind");
        socket.connect(at(CLIENT, 9999)).expect("connect");
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        socket.send(b"anyone?").expect("send");
        socket.recv(&mut [0u8; 16]).map_err(|e| e.kind())
    });
    assert_eq!(refused, Err(std::io::ErrorKind::ConnectionRefused));

    // Tracked connections, rule counters and the flow log.
    let ct = sdn_json(&lab, &["conntrack", "sw1"]);
    let conns = ct["connections"].as_array().expect("connections");
    assert!(
        conns.iter().any(|c| c["port"] == "p5"
            && c["dport"] == 5432
            && c["state"].as_str().is_some_and(|s| s != "SYN_SENT")),
        "{ct}"
    );
    assert!(rule_packets(&lab, "web-nsg", "deny-ssh") >= 1);
    assert!(rule_packets(&lab, "web-nsg", "allow-web") >= 1);
    assert!(rule_packets(&lab, "db-monitoring", "inbound[1]") >= 1);
    let flows = lab.sdn(&["dump-flows", "sw1", "--lab", &lab.name]);
    assert!(text(&flows.stdout).contains("actions=ct(commit,zone=5,table=13)"));
    let log_path = sdn_controller::lab::record::run_dir(&lab.name).join("flow-log.jsonl");
    wait_for("the flow log", Duration::from_secs(5), || {
        std::fs::read_to_string(&log_path).is_ok_and(|t| t.contains("\"rule\":\"deny-ssh\""))
    });
    let log = std::fs::read_to_string(&log_path).expect("flow log");
    let ssh: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .filter(|v: &Value| v["rule"] == "deny-ssh")
        .collect();
    assert_eq!(
        ssh.len(),
        1,
        "one line per attempt, retransmissions aside: {log}"
    );
    assert_eq!(ssh[0]["dst"], WEB1);
    assert_eq!(ssh[0]["dport"], 22);
}

#[test]
fn denied_packets_never_reach_the_protected_host() {
    if !is_root() {
        return;
    }
    let lab = firewall_lab("fwcap", |t| t);
    let capture = lab.capture("sw1", "p5", 4);
    assert!(!tcp_works(&lab, "client", "db1", at(DB1, 5432)));
    assert!(!tcp_works(&lab, "web1", "db1", at(DB1, 5432)));
    assert!(tcp_works(&lab, "app1", "db1", at(DB1, 5432)));
    let frames = capture.frames();
    // Only the application's connection reached the database's port.
    let to_db = frames
        .iter()
        .filter_map(|f| sdn_vswitch::flow::FlowKey::extract(f, 0))
        .filter(|e| e.key.ip_proto() == 6 && e.key.tp_dst() == 5432)
        .map(|e| e.key.ip_src())
        .collect::<Vec<_>>();
    assert!(!to_db.is_empty(), "the allowed connection was captured");
    assert!(
        to_db.iter().all(|src| *src == Some(APP1.parse().unwrap())),
        "{to_db:?}"
    );
    assert_eq!(tcp_frames_to(&frames, DB1, 5432), to_db.len());
}

#[test]
fn out_of_state_packets_and_a_full_table_are_dropped() {
    if !is_root() {
        return;
    }
    let lab = firewall_lab("fwct", |t| {
        t.replace(
            "  on_rule_removal: keep\n",
            "  on_rule_removal: keep\n  conntrack_max: 6\n",
        )
    });
    let topology = sdn_controller::topology::load(&lab.file).expect("topology");
    let mac = |host: &str| topology.host(host).expect("host").interfaces[0].mac;
    // A SYN-ACK nobody asked for, to a port web1 accepts connections on.
    let syn_ack = sdn_vswitch::testutil::FrameBuilder::tcp4(
        &format!("{CLIENT}:80"),
        &format!("{WEB1}:40000"),
        b"",
    )
    .tcp_flags(sdn_vswitch::wire::TcpFlags::SYN | sdn_vswitch::wire::TcpFlags::ACK)
    .src_mac(mac("client"))
    .dst_mac(mac("web1"))
    .build();
    let sniffer = Sniffer::start(&lab.ns("web1"), "eth0");
    raw_send(&lab.ns("client"), "eth0", &[syn_ack.clone(), syn_ack]);
    std::thread::sleep(Duration::from_millis(300));
    let seen = sniffer.stop(&lab.dir.join("web1.pcap"));
    assert_eq!(
        tcp_frames_to(&seen, WEB1, 40000),
        0,
        "the SYN-ACK reached web1"
    );
    assert!(sdn_json(&lab, &["rules", "sw1"])["invalid_packets"].as_u64() >= Some(2));

    // An established connection, then the table filled with new ones.
    let mut established = connect(&lab, "client", "web1", at(WEB1, 80)).expect("connect");
    assert!(established.echoes(b"before"));
    for port in 0..8 {
        udp_exchange(
            &lab,
            "client",
            at(CLIENT, 41000 + port),
            "db1",
            at(DB1, 161),
        );
    }
    let ct = sdn_json(&lab, &["conntrack", "sw1"]);
    assert_eq!(ct["count"], 6, "{ct}");
    assert!(ct["full_drops"].as_u64() >= Some(1), "{ct}");
    assert!(
        !tcp_works(&lab, "client", "web2", at(WEB2, 80)),
        "a new connection got in"
    );
    assert!(
        established.echoes(b"after"),
        "the established connection stopped"
    );
}

#[test]
fn a_live_rule_change_applies_without_restarting_anything() {
    if !is_root() {
        return;
    }
    let lab = firewall_lab("fwlive", |t| t);
    let sessions = |lab: &Lab| sdn_json(lab, &["status"]).to_string();
    let before = sessions(&lab);
    let mut live = connect(&lab, "client", "web1", at(WEB1, 80)).expect("connect");
    assert!(live.echoes(b"one"));
    let original = std::fs::read_to_string(&lab.file).expect("topology");
    let apply = |text: &str| {
        std::fs::write(&lab.file, text).expect("write topology");
        let out = lab.sdn(&["apply", lab.file.to_str().expect("utf-8")]);
        assert!(out.status.success(), "sdn apply: {}", text_of(&out.stderr));
    };
    // Web now takes 443 only: new connections to 80 fail at once, the live
    // one stays (on_rule_removal: keep).
    let https_only = original.replace("destination_ports: 1-1024 }", "destination_ports: 443 }");
    apply(&https_only);
    assert!(!tcp_works(&lab, "client", "web2", at(WEB2, 80)));
    assert!(tcp_works(&lab, "client", "web2", at(WEB2, 443)));
    assert!(live.echoes(b"two"), "keep cut a live connection");
    // With cut, the live connection the rules no longer allow goes.
    apply(&https_only.replace("on_rule_removal: keep", "on_rule_removal: cut"));
    assert!(!live.echoes(b"three"), "cut kept the connection");
    // Anything besides the security section needs a new lab.
    std::fs::write(
        &lab.file,
        original.replace("10.30.0.12/24", "10.30.0.13/24"),
    )
    .expect("write");
    let refused = lab.sdn(&["apply", lab.file.to_str().expect("utf-8")]);
    assert!(!refused.status.success());
    assert!(
        text_of(&refused.stderr).contains("only the security section"),
        "{}",
        text_of(&refused.stderr)
    );
    // Back to the original rules.
    apply(&original);
    assert!(tcp_works(&lab, "client", "web1", at(WEB1, 80)));
    // No switch reconnected or restarted on the way.
    let after = sessions(&lab);
    let switches = |s: &str| -> Vec<(Value, Value)> {
        let v: Value = serde_json::from_str(s).expect("json");
        v.pointer("/labs/0/switches")
            .and_then(Value::as_array)
            .expect("switches in the status")
            .iter()
            .map(|s| (s["pid"].clone(), s["connections"].clone()))
            .collect()
    };
    let (was, is) = (switches(&before), switches(&after));
    assert!(!was.is_empty() && was[0].1 == 1, "{before}");
    assert_eq!(was, is, "a switch restarted or reconnected");
}

fn text_of(bytes: &[u8]) -> String {
    text(bytes)
}

#[test]
fn rules_filter_across_a_vxlan_overlay_and_vlans() {
    if !is_root() {
        return;
    }
    let name = unique_name("fwvx");
    let topology = repository_topology("bench-vxlan.yaml", &name)
        + "
security:
  nsgs:
    - name: h2-nsg
      interfaces: [h2:eth0]
      rules:
        - { name: ping, priority: 100, direction: inbound, access: allow, protocol: icmp }
        - { name: rest, priority: 4096, direction: inbound, access: deny }
";
    let lab = Lab::new(&name, &topology);
    lab.up();
    // h2 sits behind sw2, an access port in VLAN 10 carried over VNI 5010.
    assert!(pings(&lab, "h1", "10.150.0.2"));
    assert!(!tcp_works(&lab, "h1", "h2", at("10.150.0.2", 80)));
    assert!(tcp_works(&lab, "h2", "h1", at("10.150.0.3", 80)));
    let ct = lab.sdn(&["conntrack", "sw2", "--lab", &lab.name]);
    assert!(
        text(&ct.stdout).contains("10.150.0.3:80"),
        "{}",
        text(&ct.stdout)
    );
}
