//! Namespace tests of the load balancer on `topologies/lb.yaml`: connections
//! from an internet client to the public frontend are spread over the web
//! backends as each algorithm says, the client sees only the frontend's
//! address, the backends see the client's, an inbound NAT rule reaches one
//! backend, and nothing else on the frontend answers. They need root; the
//! lab has a unique name and is removed by its guard.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

const FRONTEND: &str = "203.0.113.50";
const CLIENT: &str = "198.51.100.20";

/// A TCP server in a host's namespace that answers every connection with
/// an HTTP 200 carrying its name (so that HTTP probes find it up), then
/// echoes what it is sent until the client closes; it remembers who
/// connected.
struct NameServer {
    stop: Arc<AtomicBool>,
    peers: Arc<Mutex<Vec<IpAddr>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NameServer {
    fn start(lab: &Lab, host: &str, port: u16, name: &str) -> NameServer {
        let listener: TcpListener = in_ns(&lab.ns(host), move || {
            let l = TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))).expect("listen");
            l.set_nonblocking(true).expect("nonblocking");
            l
        });
        let stop = Arc::new(AtomicBool::new(false));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let body = format!("{name}\n");
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (flag, seen) = (stop.clone(), peers.clone());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, peer)) => {
                        seen.lock().unwrap().push(peer.ip());
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.write_all(answer.as_bytes());
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                        std::thread::spawn(move || {
                            let mut buffer = [0u8; 1024];
                            while let Ok(n @ 1..) = stream.read(&mut buffer) {
                                if stream.write_all(&buffer[..n]).is_err() {
                                    break;
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        NameServer {
            stop,
            peers,
            thread: Some(thread),
        }
    }

    fn peers(&self) -> Vec<IpAddr> {
        self.peers.lock().unwrap().clone()
    }
}

/// Reads a NameServer's answer: the name in its body.
fn read_name(stream: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let mut buffer = [0u8; 256];
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((_, body)) = text.split_once("\r\n\r\n")
            && let Some((name, _)) = body.split_once('\n')
        {
            return Some(name.to_string());
        }
        let n = stream.read(&mut buffer).ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buffer[..n]);
    }
}

impl Drop for NameServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Opens `count` connections from the client to `FRONTEND:port`, one after
/// another, and counts the names that answered; also returns every peer
/// address the client's sockets saw.
fn spread(lab: &Lab, port: u16, count: usize) -> (BTreeMap<String, usize>, Vec<IpAddr>) {
    spread_from(
        lab,
        "client",
        at(FRONTEND, port),
        Duration::from_secs(1),
        count,
    )
}

/// Opens `count` connections from `client` to `target` one after another
/// (each given `patience` to connect): the names that answered (or
/// "(refused)"), and the peer addresses the client saw.
fn spread_from(
    lab: &Lab,
    client: &str,
    target: SocketAddr,
    patience: Duration,
    count: usize,
) -> (BTreeMap<String, usize>, Vec<IpAddr>) {
    in_ns(&lab.ns(client), move || {
        let mut names = BTreeMap::new();
        let mut peers = Vec::new();
        for _ in 0..count {
            let Ok(mut stream) = TcpStream::connect_timeout(&target, patience) else {
                *names.entry("(refused)".to_string()).or_insert(0) += 1;
                continue;
            };
            stream
                .set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
            if let Ok(peer) = stream.peer_addr() {
                peers.push(peer.ip());
            }
            let name = read_name(&mut stream).unwrap_or_else(|| "(no answer)".into());
            *names.entry(name).or_insert(0) += 1;
        }
        (names, peers)
    })
}

/// lb.yaml with extra rules on the public frontend, one per algorithm, each
/// to the same port on the web pool. (Rules sharing a backend port would
/// share the backends' side of the connections too: a client reusing its
/// source port towards another rule could meet a connection still closing
/// under the same tuple there, be refused and retransmit its SYN, which
/// skews an exact count.)
fn topology(name: &str) -> String {
    let text = repository_topology("lb.yaml", name);
    let extra = [
        ("rr", 81, "round_robin"),
        ("wrr", 82, "weighted_round_robin"),
        ("src", 83, "source_ip_hash"),
        ("lc", 84, "least_connections"),
    ]
    .iter()
    .map(|(rule, port, algorithm)| {
        format!(
            "      - {{ name: {rule}, frontend: public, protocol: tcp, frontend_port: {port}, backend_port: {port}, pool: web, algorithm: {algorithm} }}\n"
        )
    })
    .collect::<String>();
    let anchor = "idle_timeout: 4m }\n";
    assert!(text.contains(anchor), "lb.yaml's web rule");
    // Probes every second, so that a backend's fall and rise take seconds.
    let probe = "interval: 5s, timeout: 2s";
    assert!(text.contains(probe), "lb.yaml's http probe");
    let udp = "      - { name: echo-public, frontend: public, protocol: udp, frontend_port: 7, backend_port: 7, pool: web, algorithm: round_robin }\n";
    let with_rules = text
        .replacen(anchor, &format!("{anchor}{extra}{udp}"), 1)
        .replacen(probe, "interval: 1s, timeout: 500ms", 1);
    format!("{with_rules}{WEB_NSG}")
}

/// The web subnet takes from the internet only the test's ports; the
/// default AllowAzureLoadBalancerInBound lets the probes in, and
/// DenyAllInBound everything else.
const WEB_NSG: &str = "
security:
  nsgs:
    - name: web-nsg
      subnets: [hub/web]
      rules:
        - { name: web-from-internet, priority: 200, direction: inbound, access: allow,
            protocol: tcp, source: Internet, destination_ports: 80-84 }
        - { name: ssh-from-internet, priority: 210, direction: inbound, access: allow,
            protocol: tcp, source: Internet, destination_ports: 22 }
        - { name: echo-from-internet, priority: 220, direction: inbound, access: allow,
            protocol: udp, source: Internet, destination_ports: 7 }
";

/// The rule that, added to web-nsg, shuts the probes out of web1.
const NO_PROBES_FOR_WEB1: &str =
    "        - { name: no-probes, priority: 100, direction: inbound, access: deny,
            protocol: any, source: AzureLoadBalancer, destination: 10.30.1.11 }
";

/// A UDP echo server on port 7 that prefixes its host's name.
fn udp_echo(lab: &Lab, host: &str) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let socket: std::net::UdpSocket = in_ns(&lab.ns(host), || {
        let s = std::net::UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], 7))).expect("bind");
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        s
    });
    let (flag, name) = (stop.clone(), host.to_string());
    std::thread::spawn(move || {
        let mut buffer = [0u8; 512];
        while !flag.load(Ordering::Relaxed) {
            if let Ok((n, peer)) = socket.recv_from(&mut buffer) {
                let answer = [name.as_bytes(), b":", &buffer[..n]].concat();
                let _ = socket.send_to(&answer, peer);
            }
        }
    });
    stop
}

/// Sends `count` datagrams from the client to the frontend's UDP 7, each
/// from its own socket (so its own flow), and collects the answers.
fn udp_spread(lab: &Lab, count: usize) -> Vec<(String, IpAddr)> {
    in_ns(&lab.ns("client"), move || {
        (0..count)
            .filter_map(|i| {
                let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
                s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
                s.send_to(format!("hello {i}").as_bytes(), at(FRONTEND, 7))
                    .ok()?;
                let mut buffer = [0u8; 512];
                let (n, from) = s.recv_from(&mut buffer).ok()?;
                Some((String::from_utf8_lossy(&buffer[..n]).to_string(), from.ip()))
            })
            .collect()
    })
}

/// `sdn lb status --json`: rule `rule` of load balancer `lb`'s backends.
fn lb_backends(lab: &Lab, lb: &str, rule: &str) -> Vec<serde_json::Value> {
    let out = lab.sdn(&["lb", "status", "--lab", &lab.name, "--json"]);
    assert!(out.status.success(), "sdn lb status: {}", text(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let lbs = status["load_balancers"]
        .as_array()
        .expect("load balancers")
        .clone();
    let found = lbs
        .iter()
        .find(|l| l["name"] == lb)
        .expect("the load balancer");
    let rules = found["rules"].as_array().expect("rules").clone();
    let r = rules.iter().find(|r| r["name"] == rule).expect("the rule");
    r["backends"].as_array().expect("backends").clone()
}

fn health_of(backends: &[serde_json::Value], interface: &str) -> String {
    backends
        .iter()
        .find(|b| b["interface"] == interface)
        .and_then(|b| b["health"].as_str())
        .unwrap_or("")
        .to_string()
}

fn count(names: &BTreeMap<String, usize>, name: &str) -> usize {
    names.get(name).copied().unwrap_or(0)
}

#[test]
fn the_public_frontend_spreads_connections_over_the_backends() {
    if !is_root() {
        return;
    }
    let name = unique_name("lb");
    let lab = Lab::new(&name, &topology(&name));
    lab.up();
    let mut servers: Vec<NameServer> = ["web1", "web2", "web3"]
        .iter()
        .flat_map(|h| [80, 81, 82, 83, 84].map(|port| NameServer::start(&lab, h, port, h)))
        .collect();
    let ssh = NameServer::start(&lab, "web1", 22, "web1-ssh");
    // The HTTP probe finds them up (rise: two successes a second apart).
    wait_for(
        "the web backends to probe healthy",
        Duration::from_secs(10),
        || {
            let (names, _) = spread(&lab, 80, 9);
            names.len() == 3 && !names.contains_key("(refused)")
        },
    );

    let before: u64 = lb_backends(&lab, "web-lb", "http")
        .iter()
        .map(|b| b["total_connections"].as_u64().unwrap_or(0))
        .sum();
    // The client sees only the frontend.
    let sniffer = Sniffer::start(&lab.ns("client"), "eth0");
    // Five-tuple hashing (the file's rule), web2 with weight 2.
    let (names, peers) = spread(&lab, 80, 300);
    let capture = sniffer.stop(&std::env::temp_dir().join(format!("{name}-client.pcap")));
    assert_eq!(names.values().sum::<usize>(), 300);
    assert_eq!(count(&names, "(refused)"), 0, "{names:?}");
    let (web1, web2, web3) = (
        count(&names, "web1"),
        count(&names, "web2"),
        count(&names, "web3"),
    );
    assert!(
        (40..=110).contains(&web1) && (40..=110).contains(&web3),
        "{names:?}"
    );
    assert!((110..=190).contains(&web2), "web2 weighs twice: {names:?}");
    // sdn lb status counts them per backend, and shows the probe's verdict.
    let backends = lb_backends(&lab, "web-lb", "http");
    let total: u64 = backends
        .iter()
        .map(|b| b["total_connections"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(total - before, 300, "{backends:?}");
    for b in &backends {
        assert_eq!(b["health"], "healthy", "{b}");
        assert_eq!(b["last_probe"], "ok", "{b}");
    }
    let frontend: IpAddr = FRONTEND.parse().unwrap();
    assert!(
        peers.iter().all(|p| *p == frontend),
        "client sockets saw {peers:?}"
    );
    let client: Ipv4Addr = CLIENT.parse().unwrap();
    let ipv4 = capture.iter().filter_map(|f| {
        let eth = sdn_vswitch::wire::EthernetFrame::new_checked(&f[..]).ok()?;
        (eth.ethertype() == sdn_vswitch::wire::EtherType::Ipv4).then_some(())?;
        let ip = sdn_vswitch::wire::Ipv4Packet::new_checked(eth.payload()).ok()?;
        // The client's TCP (the internet's router also multicasts IGMP).
        (ip.protocol() == sdn_vswitch::wire::IpProtocol::Tcp).then_some(())?;
        Some((ip.src_addr(), ip.dst_addr()))
    });
    let mut seen = 0;
    for (src, dst) in ipv4 {
        seen += 1;
        let other = if src == client { dst } else { src };
        assert_eq!(IpAddr::V4(other), frontend, "the client saw {src} -> {dst}");
    }
    assert!(
        seen >= 300 * 3,
        "the capture holds the connections ({seen} packets)"
    );
    // The backends see the client's own address.
    // The backends see the client's own address, and the HTTP probe's
    // well-known source on the probed port.
    let probe_source = IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16));
    for server in servers.iter().step_by(5) {
        let peers = server.peers();
        assert!(peers.contains(&IpAddr::V4(client)), "{peers:?}");
        assert!(peers.contains(&probe_source), "probed: {peers:?}");
        assert!(
            peers
                .iter()
                .all(|p| *p == IpAddr::V4(client) || *p == probe_source),
            "{peers:?}"
        );
    }

    // Round robin ignores weights and cycles exactly; weighted round robin
    // gives web2 twice the others' share; source hashing keeps the client
    // on one backend; least connections, with connections that end before
    // the next, alternates.
    let (rr, _) = spread(&lab, 81, 300);
    assert_eq!(
        (count(&rr, "web1"), count(&rr, "web2"), count(&rr, "web3")),
        (100, 100, 100),
        "{rr:?}"
    );
    let (wrr, _) = spread(&lab, 82, 300);
    assert_eq!(
        (
            count(&wrr, "web1"),
            count(&wrr, "web2"),
            count(&wrr, "web3")
        ),
        (75, 150, 75),
        "{wrr:?}"
    );
    let (src, _) = spread(&lab, 83, 60);
    assert_eq!(src.len(), 1, "one backend for one client: {src:?}");
    let (lc, _) = spread(&lab, 84, 60);
    assert!(lc.len() == 3 && !lc.contains_key("(refused)"), "{lc:?}");

    // The inbound NAT rule reaches web1's port 22 and no other backend.
    let (nat, _) = spread(&lab, 2201, 10);
    assert_eq!(count(&nat, "web1-ssh"), 10, "{nat:?}");
    assert!(ssh.peers().iter().all(|p| *p == IpAddr::V4(client)));
    // Nothing else on the frontend answers.
    let (other, _) = spread(&lab, 8080, 1);
    assert_eq!(count(&other, "(refused)"), 1, "{other:?}");

    // UDP: a datagram per flow, round robin over the three, answered from
    // the frontend.
    let echo_stops: Vec<_> = ["web1", "web2", "web3"]
        .iter()
        .map(|h| udp_echo(&lab, h))
        .collect();
    let answers = udp_spread(&lab, 9);
    assert_eq!(answers.len(), 9, "{answers:?}");
    assert!(
        answers.iter().all(|(_, from)| *from == frontend),
        "{answers:?}"
    );
    for host in ["web1", "web2", "web3"] {
        let n = answers
            .iter()
            .filter(|(a, _)| a.starts_with(&format!("{host}:hello")))
            .count();
        assert_eq!(n, 3, "{host}: {answers:?}");
    }
    for stop in &echo_stops {
        stop.store(true, Ordering::Relaxed);
    }

    // web3's server stops: its probe fails, and within interval x fall
    // (1 s x 2) no new connection reaches it, while a long-lived
    // connection to another backend keeps flowing.
    let mut long = in_ns(&lab.ns("client"), || {
        for _ in 0..20 {
            let mut stream = TcpStream::connect_timeout(&at(FRONTEND, 80), Duration::from_secs(2))
                .expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
            if read_name(&mut stream).as_deref() != Some("web3") {
                return stream;
            }
        }
        panic!("every connection went to web3");
    });
    let echoes = |stream: &mut TcpStream| {
        let mut got = [0u8; 5];
        stream.write_all(b"still").is_ok()
            && stream.read_exact(&mut got).is_ok()
            && &got == b"still"
    };
    assert!(echoes(&mut long));
    drop(servers.drain(10..15));
    std::thread::sleep(Duration::from_millis(3500));
    let (after, _) = spread(&lab, 80, 60);
    assert_eq!(
        count(&after, "web3"),
        0,
        "web3 is out of rotation: {after:?}"
    );
    assert_eq!(
        count(&after, "(refused)") + count(&after, "(no answer)"),
        0,
        "{after:?}"
    );
    assert!(echoes(&mut long), "the live connection keeps flowing");
    assert_eq!(
        health_of(&lb_backends(&lab, "web-lb", "http"), "web3:eth0"),
        "unhealthy"
    );
    // Restarted, it is back within interval x rise.
    servers.extend([80, 81, 82, 83, 84].map(|port| NameServer::start(&lab, "web3", port, "web3")));
    wait_for("web3 back in rotation", Duration::from_secs(10), || {
        count(&spread(&lab, 80, 30).0, "web3") > 0
    });

    // Probes meet the backends' NSG like any traffic: a rule that denies
    // AzureLoadBalancer on web1, applied live, takes web1 out of rotation.
    let file = std::fs::read_to_string(&lab.file).expect("topology");
    let anchor = "      rules:\n        - { name: web-from-internet";
    assert!(file.contains(anchor));
    let denied = file.replacen(
        anchor,
        &format!("      rules:\n{NO_PROBES_FOR_WEB1}        - {{ name: web-from-internet"),
        1,
    );
    std::fs::write(&lab.file, denied).expect("write topology");
    let out = lab.sdn(&["apply", lab.file.to_str().expect("utf-8")]);
    assert!(out.status.success(), "sdn apply: {}", text(&out.stderr));
    std::thread::sleep(Duration::from_millis(3500));
    let (shut, _) = spread(&lab, 80, 60);
    assert_eq!(
        count(&shut, "web1"),
        0,
        "web1's probes are denied: {shut:?}"
    );
    assert!(
        count(&shut, "web2") > 0 && count(&shut, "web3") > 0,
        "{shut:?}"
    );
}

const INTERNAL: &str = "10.30.2.100";

/// lb.yaml whose app-lb probe checks a port of its own (8081) every second,
/// so that a test can fail the probe while the service (8080) still
/// answers, and whose UDP flows are forgotten after 2 s idle.
fn internal_topology(name: &str) -> String {
    let text = repository_topology("lb.yaml", name);
    let probe = "{ name: tcp-8080, protocol: tcp, port: 8080 }";
    let echo = "frontend_port: 7, pool: app }";
    assert!(
        text.contains(probe) && text.contains(echo),
        "lb.yaml's app-lb"
    );
    text.replacen(
        probe,
        "{ name: tcp-8080, protocol: tcp, port: 8081, interval: 1s, timeout: 500ms }",
        1,
    )
    .replacen(echo, "frontend_port: 7, pool: app, idle_timeout: 2s }", 1)
}

/// Opens `count` connections from `client` to the internal frontend's
/// 8080 one after another: the names that answered (or "(refused)"), and
/// the peer addresses the client saw.
fn internal_spread(
    lab: &Lab,
    client: &str,
    count: usize,
) -> (BTreeMap<String, usize>, Vec<IpAddr>) {
    let target = at(INTERNAL, 8080);
    spread_from(lab, client, target, Duration::from_millis(700), count)
}

/// Replaces `from` with `to` in the lab's file and applies it.
fn apply_edit(lab: &Lab, from: &str, to: &str) {
    let file = std::fs::read_to_string(&lab.file).expect("topology");
    assert!(file.contains(from), "{from:?} in the lab's file");
    std::fs::write(&lab.file, file.replacen(from, to, 1)).expect("write topology");
    let out = lab.sdn(&["apply", lab.file.to_str().expect("utf-8")]);
    assert!(out.status.success(), "sdn apply: {}", text(&out.stderr));
}

#[test]
fn the_internal_frontend_balances_and_its_pool_changes_live() {
    if !is_root() {
        return;
    }
    let name = unique_name("ilb");
    let lab = Lab::new(&name, &internal_topology(&name));
    lab.up();
    let app = ["app1", "app2"].map(|h| NameServer::start(&lab, h, 8080, h));
    let mut probed: Vec<NameServer> = ["app1", "app2"]
        .iter()
        .map(|h| NameServer::start(&lab, h, 8081, h))
        .collect();
    wait_for(
        "app1 and app2 to probe healthy",
        Duration::from_secs(10),
        || internal_spread(&lab, "web1", 20).0.len() == 2,
    );

    // From another subnet (routed) and from the frontend's own subnet (the
    // gateway answers ARP for it): spread over both, answered from the
    // frontend; the members see the client's own address.
    let frontend: IpAddr = INTERNAL.parse().unwrap();
    for client in ["web1", "jobs"] {
        let (names, peers) = internal_spread(&lab, client, 100);
        assert_eq!(names.values().sum::<usize>(), 100);
        assert!(
            count(&names, "app1") >= 25 && count(&names, "app2") >= 25,
            "{client}: {names:?}"
        );
        assert!(peers.iter().all(|p| *p == frontend), "{client}: {peers:?}");
    }
    let seen: Vec<IpAddr> = app.iter().flat_map(NameServer::peers).collect();
    for client in ["10.30.1.11", "10.30.2.20"] {
        let ip: IpAddr = client.parse().unwrap();
        assert!(seen.contains(&ip), "the members see {client}");
    }
    assert!(!seen.contains(&frontend), "no source NAT");

    // UDP echo (no probe), answered from the frontend.
    let echoes = ["app1", "app2"].map(|h| udp_echo(&lab, h));
    let answers: Vec<(String, IpAddr)> = in_ns(&lab.ns("web1"), || {
        (0..6)
            .filter_map(|i| {
                let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
                s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
                s.send_to(format!("hi {i}").as_bytes(), at(INTERNAL, 7))
                    .ok()?;
                let mut buffer = [0u8; 512];
                let (n, from) = s.recv_from(&mut buffer).ok()?;
                Some((String::from_utf8_lossy(&buffer[..n]).to_string(), from.ip()))
            })
            .collect()
    });
    assert_eq!(answers.len(), 6, "{answers:?}");
    assert!(
        answers.iter().all(|(_, from)| *from == frontend),
        "{answers:?}"
    );
    for stop in &echoes {
        stop.store(true, Ordering::Relaxed);
    }

    // Hair-pinning: a member reaching its own load balancer is refused at
    // once (ICMP administratively prohibited), not left to time out.
    let hairpin = in_ns(&lab.ns("app1"), || {
        TcpStream::connect_timeout(&at(INTERNAL, 8080), Duration::from_secs(3)).map(|_| ())
    });
    let error = hairpin.expect_err("app1 to its own frontend");
    assert_ne!(error.kind(), std::io::ErrorKind::TimedOut, "{error}");

    // Weights and algorithm change live: weighted round robin, app1 three
    // times app2's weight.
    apply_edit(
        &lab,
        "          - { interface: app1:eth0 }\n",
        "          - { interface: app1:eth0, weight: 3 }\n",
    );
    apply_edit(
        &lab,
        "backend_port: 8080, pool: app, probe: tcp-8080 }",
        "backend_port: 8080, pool: app, probe: tcp-8080, algorithm: weighted_round_robin }",
    );
    let (names, _) = internal_spread(&lab, "web1", 40);
    assert_eq!(
        (count(&names, "app1"), count(&names, "app2")),
        (30, 10),
        "{names:?}"
    );

    // Removing app2 from the pool drains it: a live connection to it keeps
    // flowing, no new one reaches it; once it closes (and the echo rule's
    // UDP flows idle out, after 2 s), app2 leaves the pool.
    let mut long = in_ns(&lab.ns("web1"), || {
        for _ in 0..20 {
            let mut stream =
                TcpStream::connect_timeout(&at(INTERNAL, 8080), Duration::from_secs(2))
                    .expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
            if read_name(&mut stream).as_deref() == Some("app2") {
                return stream;
            }
        }
        panic!("no connection went to app2");
    });
    let echoes_on = |stream: &mut TcpStream| {
        let mut got = [0u8; 5];
        stream.write_all(b"still").is_ok()
            && stream.read_exact(&mut got).is_ok()
            && &got == b"still"
    };
    apply_edit(&lab, "          - { interface: app2:eth0 }\n", "");
    let (names, _) = internal_spread(&lab, "web1", 30);
    assert_eq!(count(&names, "app1"), 30, "{names:?}");
    assert!(
        echoes_on(&mut long),
        "the drained member's connection flows"
    );
    let health = health_of(&lb_backends(&lab, "app-lb", "app"), "app2:eth0");
    assert_eq!(health, "draining");
    drop(long);
    wait_for("app2 to leave the pool", Duration::from_secs(10), || {
        lb_backends(&lab, "app-lb", "app")
            .iter()
            .all(|b| b["interface"] != "app2:eth0")
    });
    let backends = lb_backends(&lab, "app-lb", "app");
    let app1 = backends
        .iter()
        .find(|b| b["interface"] == "app1:eth0")
        .expect("app1");
    assert!(app1["packets"].as_u64().unwrap_or(0) > 0, "{app1}");
    assert!(app1["bytes"].as_u64().unwrap_or(0) > 0, "{app1}");

    // No healthy member: new connections are refused by default...
    apply_edit(
        &lab,
        "          - { interface: app1:eth0, weight: 3 }\n",
        "          - { interface: app1:eth0, weight: 3 }\n          - { interface: app2:eth0 }\n",
    );
    probed.clear();
    wait_for("both members unhealthy", Duration::from_secs(10), || {
        lb_backends(&lab, "app-lb", "app")
            .iter()
            .all(|b| b["health"] == "unhealthy")
    });
    let (names, _) = internal_spread(&lab, "web1", 4);
    assert_eq!(count(&names, "(refused)"), 4, "{names:?}");
    // ... and spread over every member with all_probed_up.
    apply_edit(
        &lab,
        "algorithm: weighted_round_robin }",
        "algorithm: weighted_round_robin, no_healthy_backends: all_probed_up }",
    );
    let (names, _) = internal_spread(&lab, "web1", 40);
    assert_eq!(
        (count(&names, "app1"), count(&names, "app2")),
        (30, 10),
        "{names:?}"
    );
}
