//! The load balancer section: the example parsed into the model, defaults,
//! durations, the `AzureLoadBalancer` tag, and each mistake a user can make
//! reported with its line, path and reason.

use super::load_balancer::*;
use super::security::{InterfaceRef, Peer};
use super::*;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

const LB: &str = include_str!("../../../topologies/lb.yaml");

/// Lines of lb.yaml that tests change or add after.
const WEB_FRONTEND: &str = "      - { name: public, address: 203.0.113.50 }\n";
const WEB3: &str = "          - { interface: web3:eth0 }\n";
const HTTP_PROBE: &str = "      - { name: http, protocol: http, port: 80, path: /, interval: 5s, timeout: 2s, unhealthy_threshold: 2, healthy_threshold: 2 }\n";
const HTTP_RULE: &str = "      - { name: http, frontend: public, protocol: tcp, frontend_port: 80, backend_port: 80, pool: web, probe: http, algorithm: five_tuple_hash, idle_timeout: 4m }\n";
const SSH_RULE: &str = "      - { name: ssh-web1, frontend: public, protocol: tcp, frontend_port: 2201, backend_port: 22, target: web1:eth0 }\n";
const TCP_PROBE: &str = "      - { name: tcp-8080, protocol: tcp, port: 8080 }";
const ECHO_RULE: &str =
    "      - { name: echo, frontend: internal, protocol: udp, frontend_port: 7, pool: app }\n";
const APP_SUBNET: &str = "      - { name: app, cidr: 10.30.2.0/24 }\n";
const IGW: &str = "internet_gateways:\n  - { name: igw-hub, network: hub }\n";

/// lb.yaml with the first `from` replaced by `to`.
fn lb_with(from: &str, to: &str) -> String {
    assert!(LB.contains(from), "lb.yaml has no {from:?}");
    LB.replacen(from, to, 1)
}

/// lb.yaml with `extra` added after the line `anchor`.
fn lb_plus(anchor: &str, extra: &str) -> String {
    lb_with(anchor, &format!("{anchor}{extra}"))
}

/// lb.yaml with a third load balancer (its text after `- name: `).
fn third(rest: &str) -> String {
    format!("{LB}\n  - name: {rest}")
}

fn valid(text: &str) -> Topology {
    parse(text, Path::new("lb.yaml")).unwrap_or_else(|e| panic!("should be valid:\n{e}"))
}

fn errors_of(text: &str) -> TopologyErrors {
    parse(text, Path::new("lb.yaml")).expect_err("the file should be refused")
}

/// The 1-based line of the first line outside comments containing `needle`.
fn line_of(text: &str, needle: &str) -> u64 {
    text.lines()
        .position(|l| !l.trim_start().starts_with('#') && l.contains(needle))
        .unwrap_or_else(|| panic!("no line has {needle:?}")) as u64
        + 1
}

/// Asserts that `text` has exactly one error, at `path` on the line holding
/// `at`, whose reason contains `reason`; the message names file and line.
#[track_caller]
fn refused(text: &str, at: &str, path: &str, reason: &str) {
    let e = errors_of(text);
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
    assert!(
        error.to_string().starts_with(&format!("lb.yaml:{line}:")),
        "{error}"
    );
}

/// The (path, reason) pairs of every error of `text`.
fn all_errors(text: &str) -> Vec<(String, String)> {
    errors_of(text)
        .errors
        .into_iter()
        .map(|e| (e.path, e.reason))
        .collect()
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().expect("an IPv4 address")
}

fn iface(host: &str) -> InterfaceRef {
    InterfaceRef {
        host: host.into(),
        interface: "eth0".into(),
    }
}

fn member(host: &str, address: &str, weight: u32) -> PoolMember {
    PoolMember {
        interface: iface(host),
        address: ip(address),
        weight,
        draining: false,
    }
}

#[test]
fn example_parses_into_the_model() {
    let topo = valid(LB);
    assert_eq!(topo.load_balancers.len(), 2);
    assert_eq!(
        topo.load_balancer("web-lb").unwrap(),
        &LoadBalancer {
            name: "web-lb".into(),
            network: "hub".into(),
            frontends: vec![Frontend {
                name: "public".into(),
                address: ip("203.0.113.50"),
                kind: FrontendKind::Public,
            }],
            backend_pools: vec![BackendPool {
                name: "web".into(),
                members: vec![
                    member("web1", "10.30.1.11", 1),
                    member("web2", "10.30.1.12", 2),
                    member("web3", "10.30.1.13", 1),
                ],
            }],
            probes: vec![Probe {
                name: "http".into(),
                protocol: ProbeProtocol::Http { path: "/".into() },
                port: 80,
                interval: Duration::from_secs(5),
                timeout: Duration::from_secs(2),
                unhealthy_threshold: 2,
                healthy_threshold: 2,
            }],
            rules: vec![LoadBalancingRule {
                name: "http".into(),
                frontend: "public".into(),
                protocol: TransportProtocol::Tcp,
                frontend_port: 80,
                backend_port: 80,
                pool: "web".into(),
                probe: Some("http".into()),
                algorithm: Algorithm::FiveTupleHash,
                idle_timeout: Duration::from_secs(240),
                no_healthy_backends: NoHealthyBackends::Refuse,
            }],
            inbound_nat_rules: vec![InboundNatRule {
                name: "ssh-web1".into(),
                frontend: "public".into(),
                protocol: TransportProtocol::Tcp,
                frontend_port: 2201,
                backend_port: 22,
                target: iface("web1"),
                target_address: ip("10.30.1.11"),
            }],
        }
    );
    let app = topo.load_balancer("app-lb").unwrap();
    // No network named: its internal frontend settles it.
    assert_eq!(app.network, "hub");
    assert_eq!(
        app.frontend("internal").unwrap(),
        &Frontend {
            name: "internal".into(),
            address: ip("10.30.2.100"),
            kind: FrontendKind::Internal {
                subnet: "app".into()
            },
        }
    );
    assert_eq!(
        app.pool("app").unwrap().members,
        [
            member("app1", "10.30.2.11", 1),
            member("app2", "10.30.2.12", 1)
        ]
    );
    assert_eq!(app.probe("tcp-8080").unwrap().protocol, ProbeProtocol::Tcp);
    assert_eq!(
        app.rules[1],
        LoadBalancingRule {
            name: "echo".into(),
            frontend: "internal".into(),
            protocol: TransportProtocol::Udp,
            frontend_port: 7,
            backend_port: 7,
            pool: "app".into(),
            probe: None,
            algorithm: Algorithm::FiveTupleHash,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            no_healthy_backends: NoHealthyBackends::Refuse,
        }
    );
    assert!(app.inbound_nat_rules.is_empty());
    assert!(topo.load_balancer("nope").is_none());
}

#[test]
fn the_shipped_file_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies/lb.yaml");
    let topo = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(topo.name, "lb");
    // The internet edge is as without load balancers: sw1 has its uplink.
    assert!(topo.has_uplink("sw1"));
    assert!(topo.internet.public_ips.is_empty());
}

#[test]
fn defaults() {
    let probe = valid(LB).load_balancer("app-lb").unwrap().probes[0].clone();
    assert_eq!(
        probe,
        Probe {
            name: "tcp-8080".into(),
            protocol: ProbeProtocol::Tcp,
            port: 8080,
            interval: DEFAULT_PROBE_INTERVAL,
            timeout: Duration::from_secs(2),
            unhealthy_threshold: DEFAULT_THRESHOLD,
            healthy_threshold: DEFAULT_THRESHOLD,
        }
    );
    // An HTTP probe asks for / unless told otherwise.
    let text = lb_with(
        TCP_PROBE,
        "      - { name: tcp-8080, protocol: http, port: 8080 }",
    );
    let topo = valid(&text);
    assert_eq!(
        topo.load_balancer("app-lb").unwrap().probes[0].protocol,
        ProbeProtocol::Http {
            path: DEFAULT_HTTP_PATH.into()
        }
    );
    let text = lb_with(
        TCP_PROBE,
        "      - { name: tcp-8080, protocol: HTTP, port: 8080, path: /healthz?full=1 }",
    );
    assert_eq!(
        valid(&text).load_balancer("app-lb").unwrap().probes[0].protocol,
        ProbeProtocol::Http {
            path: "/healthz?full=1".into()
        }
    );
    // The timeout follows the interval: half of it, at most 2 s.
    for (interval, timeout) in [
        ("1s", Duration::from_millis(500)),
        ("3s", Duration::from_millis(1500)),
        ("10s", Duration::from_secs(2)),
        ("100ms", Duration::from_millis(50)),
    ] {
        let text = lb_with(
            TCP_PROBE,
            &format!(
                "      - {{ name: tcp-8080, protocol: tcp, port: 8080, interval: {interval} }}"
            ),
        );
        let topo = valid(&text);
        let probe = &topo.load_balancer("app-lb").unwrap().probes[0];
        assert_eq!(probe.timeout, timeout, "interval {interval}");
        assert!(probe.timeout < probe.interval);
    }
    assert_eq!(
        default_probe_timeout(DEFAULT_PROBE_INTERVAL),
        MAX_DEFAULT_PROBE_TIMEOUT
    );
    // Weights default to 1; the backend port to the frontend's.
    let text = lb_with("backend_port: 22, ", "");
    let topo = valid(&text);
    let web = topo.load_balancer("web-lb").unwrap();
    assert_eq!(web.inbound_nat_rules[0].backend_port, 2201);
    assert_eq!(web.backend_pools[0].members[0].weight, DEFAULT_WEIGHT);
    assert_eq!(Algorithm::default(), Algorithm::FiveTupleHash);
    assert_eq!(NoHealthyBackends::default(), NoHealthyBackends::Refuse);
}

/// lb.yaml with the echo rule's idle timeout written as `value`.
fn echo_idle(value: &str) -> String {
    lb_with(
        "frontend_port: 7, pool: app }",
        &format!("frontend_port: 7, pool: app, idle_timeout: {value} }}"),
    )
}

#[test]
fn durations() {
    for (written, expected) in [
        ("500ms", Duration::from_millis(500)),
        ("5s", Duration::from_secs(5)),
        ("4m", Duration::from_secs(240)),
        ("1h", Duration::from_secs(3600)),
        ("30", Duration::from_secs(30)),
        ("\"45\"", Duration::from_secs(45)),
        ("\"2 m\"", Duration::from_secs(120)),
    ] {
        let topo = valid(&echo_idle(written));
        let rule = &topo.load_balancer("app-lb").unwrap().rules[1];
        assert_eq!(rule.idle_timeout, expected, "{written}");
    }
    for written in [
        "5x",
        "-1",
        "1.5s",
        "ms",
        "5 sec",
        "99999999999999999999h",
        "\"\"",
    ] {
        let text = echo_idle(written);
        let shown = match written {
            "\"\"" => "",
            w => w,
        };
        refused(
            &text,
            "name: echo",
            "load_balancers[1].rules[1].idle_timeout",
            &format!("{shown:?}: want a duration like 500ms, 5s, 4m, 1h or whole seconds"),
        );
    }
    // Too long to hold in milliseconds.
    refused(
        &echo_idle("18446744073709551615h"),
        "name: echo",
        "load_balancers[1].rules[1].idle_timeout",
        "want a duration like",
    );
    refused(
        &echo_idle("0s"),
        "name: echo",
        "load_balancers[1].rules[1].idle_timeout",
        "idle timeout 0s: want a duration above zero",
    );
}

#[test]
fn load_balancer_names() {
    refused(
        &format!(
            "{LB}\n  - {{ name: web-lb, network: hub, frontends: [{{ name: f, address: 203.0.113.51 }}] }}\n"
        ),
        "address: 203.0.113.51",
        "load_balancers[2].name",
        "name web-lb is already used by load_balancers[0].name",
    );
    // Names are shared with the other routing and edge resources.
    refused(
        &lb_with("  - name: app-lb", "  - name: igw-hub"),
        "  - name: igw-hub",
        "load_balancers[1].name",
        "name igw-hub is already used by internet_gateways[0].name",
    );
    refused(
        &lb_with("  - name: app-lb", "  - name: App"),
        "  - name: App",
        "load_balancers[1].name",
        "name \"App\" must be",
    );
}

#[test]
fn part_names_are_unique_in_their_load_balancer() {
    let cases = [
        (
            lb_plus(
                WEB_FRONTEND,
                "      - { name: public, address: 203.0.113.51 }\n",
            ),
            "address: 203.0.113.51",
            "load_balancers[0].frontends[1].name",
            "frontend public is declared twice in load balancer web-lb",
        ),
        (
            lb_plus(WEB3, "      - { name: web }\n"),
            "      - { name: web }",
            "load_balancers[0].backend_pools[1].name",
            "backend pool web is declared twice in load balancer web-lb",
        ),
        (
            lb_plus(
                HTTP_PROBE,
                "      - { name: http, protocol: tcp, port: 81 }\n",
            ),
            "port: 81 }",
            "load_balancers[0].probes[1].name",
            "probe http is declared twice in load balancer web-lb",
        ),
        (
            lb_plus(
                HTTP_RULE,
                "      - { name: http, frontend: public, protocol: tcp, frontend_port: 8080, pool: web }\n",
            ),
            "frontend_port: 8080",
            "load_balancers[0].rules[1].name",
            "rule http is declared twice in load balancer web-lb",
        ),
        (
            lb_plus(
                SSH_RULE,
                "      - { name: ssh-web1, frontend: public, protocol: tcp, frontend_port: 2202, target: web2:eth0 }\n",
            ),
            "frontend_port: 2202",
            "load_balancers[0].inbound_nat_rules[1].name",
            "inbound NAT rule ssh-web1 is declared twice in load balancer web-lb",
        ),
    ];
    for (text, at, path, reason) in cases {
        refused(&text, at, path, reason);
    }
    // Parts of different kinds, or of different load balancers, may share
    // a name (the rule and the probe `http`, the pools `web` and `app`).
    let text = lb_with("      - name: app\n", "      - name: web\n").replacen(
        "pool: app, probe",
        "pool: web, probe",
        1,
    );
    let text = text.replacen("pool: app }", "pool: web }", 1);
    valid(&text);
}

#[test]
fn the_network() {
    refused(
        &lb_with("    network: hub ", "    network: hubs "),
        "network: hubs",
        "load_balancers[0].network",
        "no network named hubs",
    );
    let text = lb_with(
        "    network: hub               # a public frontend does not tell the network: name it\n",
        "",
    );
    refused(
        &text,
        "  - name: web-lb",
        "load_balancers[0].network",
        "frontend public (203.0.113.50) is public, which does not tell the load balancer's network: name it with network:",
    );
    // Two networks hold the internal address (they overlap, unpeered).
    let other = "  - name: other\n    cidr: 10.30.0.0/16\n    subnets:\n      - { name: app, cidr: 10.30.2.0/24 }\n";
    let text = lb_plus(APP_SUBNET, other);
    refused(
        &text,
        "address: 10.30.2.100",
        "load_balancers[1].network",
        "10.30.2.100 is in subnets of networks hub and other: name the load balancer's network with network:",
    );
    // Named, the same internal address may serve each network.
    let text = lb_plus(APP_SUBNET, other).replacen(
        "  - name: app-lb ",
        "  - name: app-lb\n    network: hub ",
        1,
    );
    let text = format!(
        "{text}\n  - name: other-lb\n    network: other\n    frontends: [{{ name: f, address: 10.30.2.100 }}]\n"
    );
    let topo = valid(&text);
    assert_eq!(topo.load_balancer("other-lb").unwrap().network, "other");
    // A load balancer has a frontend.
    refused(
        &third("empty-lb\n    network: hub\n"),
        "name: empty-lb",
        "load_balancers[2].frontends",
        "a load balancer has at least one frontend",
    );
}

/// lb.yaml with web-lb's public frontend at `address`.
fn web_frontend_at(address: &str) -> String {
    lb_with("address: 203.0.113.50 }", &format!("address: {address} }}"))
}

#[test]
fn public_frontends() {
    let at = "{ name: public, address:";
    let path = "load_balancers[0].frontends[0].address";
    for (address, reason) in [
        ("203.0.113.300", "\"203.0.113.300\" is not an IPv4 address"),
        (
            "203.0.113.0",
            "203.0.113.0 is the network or broadcast address of its range",
        ),
        (
            "192.0.2.255",
            "192.0.2.255 is the network or broadcast address of its range",
        ),
        ("192.0.2.1", "192.0.2.1 is the internet's router"),
        (
            "198.51.100.20",
            "198.51.100.20 is already used by internet.hosts[0].address",
        ),
        (
            "8.8.8.8",
            "8.8.8.8 is neither a public address of the lab's internet (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) nor inside network hub (10.30.0.0/16)",
        ),
    ] {
        refused(&web_frontend_at(address), at, path, reason);
    }
    // Public IPs and NAT gateways hold theirs.
    let extra = "public_ips:\n  - { name: web3-ip, address: 203.0.113.60, interface: web3:eth0 }\n\nnat_gateways:\n  - { name: nat-hub, address: 203.0.113.70, subnets: [hub/app] }\n\n";
    let with_edge = |address: &str| {
        web_frontend_at(address).replacen(
            "load_balancers:\n",
            &format!("{extra}load_balancers:\n"),
            1,
        )
    };
    valid(&with_edge("203.0.113.50"));
    refused(
        &with_edge("203.0.113.60"),
        at,
        path,
        "203.0.113.60 is already used by public_ips[0].address",
    );
    refused(
        &with_edge("203.0.113.70"),
        at,
        path,
        "203.0.113.70 is already used by nat_gateways[0].address",
    );
    // A public frontend needs the network's internet gateway.
    refused(
        &lb_with(IGW, ""),
        at,
        path,
        "203.0.113.50 is public but network hub has no internet gateway (add one under internet_gateways)",
    );
    // Once across the lab.
    refused(
        &lb_plus(
            WEB_FRONTEND,
            "      - { name: second, address: 203.0.113.50 }\n",
        ),
        "name: second",
        "load_balancers[0].frontends[1].address",
        "203.0.113.50 is already used by load_balancers[0].frontends[0].address",
    );
    refused(
        &third(
            "more-lb\n    network: hub\n    frontends:\n      - { name: f, address: 203.0.113.50 }\n",
        ),
        "name: f, address: 203.0.113.50",
        "load_balancers[2].frontends[0].address",
        "203.0.113.50 is already used by load_balancers[0].frontends[0].address",
    );
}

/// lb.yaml with app-lb's internal frontend at `address`.
fn app_frontend_at(address: &str) -> String {
    lb_with("address: 10.30.2.100 }", &format!("address: {address} }}"))
}

#[test]
fn internal_frontends() {
    let at = "{ name: internal, address:";
    let path = "load_balancers[1].frontends[0].address";
    for (address, reason) in [
        (
            "10.30.2.0",
            "10.30.2.0 is the network or broadcast address of 10.30.2.0/24",
        ),
        (
            "10.30.2.255",
            "10.30.2.255 is the network or broadcast address of 10.30.2.0/24",
        ),
        (
            "10.30.2.1",
            "10.30.2.1 is the gateway of subnet hub/app (the switch answers for it)",
        ),
        ("10.30.2.11", "10.30.2.11 is used by app1:eth0"),
        (
            "10.30.9.5",
            "10.30.9.5 is neither a public address of the lab's internet (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) nor in a subnet of any network",
        ),
        ("fd00::5", "\"fd00::5\" is not an IPv4 address"),
    ] {
        refused(&app_frontend_at(address), at, path, reason);
    }
    // With the network named, an address outside its subnets.
    let named = |address: &str| {
        app_frontend_at(address).replacen(
            "  - name: app-lb ",
            "  - name: app-lb\n    network: hub ",
            1,
        )
    };
    refused(
        &named("10.30.9.5"),
        at,
        path,
        "10.30.9.5 is inside network hub (10.30.0.0/16) but in none of its subnets",
    );
    // An internal frontend may be in any subnet of the network.
    let topo = valid(&named("10.30.1.100"));
    assert_eq!(
        topo.load_balancer("app-lb").unwrap().frontends[0].kind,
        FrontendKind::Internal {
            subnet: "web".into()
        }
    );
    refused(
        &named("10.40.0.5"),
        at,
        path,
        "10.40.0.5 is neither a public address of the lab's internet (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) nor inside network hub (10.30.0.0/16)",
    );
    // Once in the network.
    refused(
        &third("more-lb\n    frontends:\n      - { name: f, address: 10.30.2.100 }\n"),
        "name: f, address: 10.30.2.100",
        "load_balancers[2].frontends[0].address",
        "10.30.2.100 is already used by load_balancers[1].frontends[0].address",
    );
}

/// lb.yaml with a network `spoke` (10.31.0.0/16) holding host db1 on
/// sw1:p7, and `peerings` written after the networks.
fn with_spoke(peerings: &str) -> String {
    let spoke = format!(
        "  - name: spoke\n    cidr: 10.31.0.0/16\n    subnets:\n      - {{ name: db, cidr: 10.31.1.0/24 }}\n\n{peerings}"
    );
    lb_plus(APP_SUBNET, &spoke)
        .replacen(
            "      - { name: p6 }\n",
            "      - { name: p6 }\n      - { name: p7 }\n",
            1,
        )
        .replacen(
            "\nlinks:\n",
            "  - { name: db1, interfaces: [{ name: eth0, subnet: spoke/db, address: 10.31.1.11/24 }] }\n\nlinks:\n  - [db1:eth0, sw1:p7]\n",
            1,
        )
}

#[test]
fn pool_members() {
    let path = "load_balancers[0].backend_pools[0].members[2].interface";
    refused(
        &lb_with("interface: web3:eth0", "interface: web9:eth0"),
        "interface: web9:eth0",
        path,
        "no host interface web9:eth0 (nor a switch port linked to one)",
    );
    refused(
        &lb_with("interface: web3:eth0", "interface: web3"),
        "interface: web3 }",
        path,
        "\"web3\": want host:interface, like web1:eth0",
    );
    // A switch port stands for the host interface linked to it.
    let topo = valid(&lb_with("interface: web3:eth0", "interface: sw1:p3"));
    assert_eq!(
        topo.load_balancer("web-lb").unwrap().backend_pools[0].members[2],
        member("web3", "10.30.1.13", 1)
    );
    refused(
        &lb_plus(WEB3, "          - { interface: sw1:p1 }\n"),
        "interface: sw1:p1",
        "load_balancers[0].backend_pools[0].members[3].interface",
        "sw1:p1 is already a member of backend pool web",
    );
    // A member of another network, unless peered.
    let text = with_spoke("").replacen(
        WEB3,
        &format!("{WEB3}          - {{ interface: db1:eth0 }}\n"),
        1,
    );
    refused(
        &text,
        "interface: db1:eth0",
        "load_balancers[0].backend_pools[0].members[3].interface",
        "db1:eth0 is in network spoke, which is neither the load balancer's network hub nor peered with it",
    );
    // Peered, it may serve an internal frontend, not a public one (whose
    // connections come and go through the network's own edge).
    let text = with_spoke("peerings:\n  - [hub, spoke]\n\n").replacen(
        WEB3,
        &format!("{WEB3}          - {{ interface: db1:eth0 }}\n"),
        1,
    );
    refused(
        &text,
        "interface: db1:eth0",
        "load_balancers[0].backend_pools[0].members[3].interface",
        "db1:eth0 is in network spoke, peered with hub: the members of a load balancer with a public frontend must be in its own network hub (a peered network's members can serve internal frontends)",
    );
    let app2 = "          - { interface: app2:eth0 }\n";
    let text = with_spoke("peerings:\n  - [hub, spoke]\n\n").replacen(
        app2,
        &format!("{app2}          - {{ interface: db1:eth0 }}\n"),
        1,
    );
    let topo = valid(&text);
    assert_eq!(
        topo.load_balancer("app-lb").unwrap().backend_pools[0].members[2],
        member("db1", "10.31.1.11", 1)
    );
    // Members are IPv4.
    let six = "  - name: six\n    cidr: fd00::/48\n    subnets:\n      - { name: s, cidr: \"fd00::/64\" }\n\npeerings:\n  - [hub, six]\n\n";
    let text = lb_plus(APP_SUBNET, six)
        .replacen(
            "      - { name: p6 }\n",
            "      - { name: p6 }\n      - { name: p7 }\n",
            1,
        )
        .replacen(
            "\nlinks:\n",
            "  - { name: v6h, interfaces: [{ name: eth0, subnet: six/s, address: \"fd00::10/64\" }] }\n\nlinks:\n  - [v6h:eth0, sw1:p7]\n",
            1,
        );
    valid(&text);
    refused(
        &text.replacen("interface: web3:eth0", "interface: v6h:eth0", 1),
        "interface: v6h:eth0",
        path,
        "v6h:eth0 has no IPv4 address (fd00::10): load balancer backends are IPv4",
    );
}

#[test]
fn weights() {
    let at = "interface: web2:eth0, weight:";
    let path = "load_balancers[0].backend_pools[0].members[1].weight";
    for weight in ["0", "101", "-1", "4294967297"] {
        refused(
            &lb_with("weight: 2 }", &format!("weight: {weight} }}")),
            at,
            path,
            &format!("{weight}: want a weight from 1 to 100"),
        );
    }
    let topo = valid(&lb_with("weight: 2 }", "weight: 100 }"));
    assert_eq!(
        topo.load_balancer("web-lb").unwrap().backend_pools[0].members[1].weight,
        MAX_WEIGHT
    );
}

#[test]
fn ports() {
    for (from, to, at, path) in [
        (
            "frontend_port: 80,",
            "frontend_port: 0,",
            "frontend_port: 0,",
            "load_balancers[0].rules[0].frontend_port",
        ),
        (
            "backend_port: 80,",
            "backend_port: 65536,",
            "backend_port: 65536,",
            "load_balancers[0].rules[0].backend_port",
        ),
        (
            "frontend_port: 2201,",
            "frontend_port: -22,",
            "frontend_port: -22,",
            "load_balancers[0].inbound_nat_rules[0].frontend_port",
        ),
        (
            "backend_port: 22,",
            "backend_port: 0,",
            "backend_port: 0,",
            "load_balancers[0].inbound_nat_rules[0].backend_port",
        ),
        (
            "protocol: http, port: 80,",
            "protocol: http, port: 70000,",
            "port: 70000,",
            "load_balancers[0].probes[0].port",
        ),
    ] {
        let written = to.rsplit(": ").next().unwrap().trim_end_matches(',');
        refused(
            &lb_with(from, to),
            at,
            path,
            &format!("{written}: want a port from 1 to 65535"),
        );
    }
    let topo = valid(&lb_with("frontend_port: 80,", "frontend_port: 65535,"));
    assert_eq!(
        topo.load_balancer("web-lb").unwrap().rules[0].frontend_port,
        65535
    );
}

/// lb.yaml with app-lb's probe written as `probe` (a flow mapping's inside).
fn app_probe(probe: &str) -> String {
    lb_with(TCP_PROBE, &format!("      - {{ name: tcp-8080, {probe} }}"))
}

#[test]
fn probes() {
    let at = "name: tcp-8080, ";
    let probe = |field: &str| format!("load_balancers[1].probes[0].{field}");
    for (written, field, reason) in [
        (
            "protocol: icmp, port: 8080",
            "protocol",
            "\"icmp\": want one of tcp, http",
        ),
        (
            "protocol: tcp, port: 8080, path: /",
            "path",
            "a tcp probe has no path (path is for http probes)",
        ),
        (
            "protocol: http, port: 8080, path: healthz",
            "path",
            "\"healthz\": want a path starting with / of at most 1024 visible ASCII characters, like /healthz",
        ),
        (
            "protocol: http, port: 8080, path: \"/a b\"",
            "path",
            "\"/a b\": want a path starting with /",
        ),
        (
            "protocol: tcp, port: 8080, interval: 0s",
            "interval",
            "interval 0s: want a duration above zero",
        ),
        (
            "protocol: tcp, port: 8080, interval: 0",
            "interval",
            "interval 0s: want a duration above zero",
        ),
        (
            "protocol: tcp, port: 8080, timeout: 0ms",
            "timeout",
            "timeout 0s: want a duration above zero",
        ),
        (
            "protocol: tcp, port: 8080, interval: 5s, timeout: 5s",
            "timeout",
            "timeout 5s is not shorter than the interval (5s): a probe ends before the next starts",
        ),
        (
            "protocol: tcp, port: 8080, interval: 1s, timeout: 1500ms",
            "timeout",
            "timeout 1500ms is not shorter than the interval (1s)",
        ),
        (
            "protocol: tcp, port: 8080, timeout: 1m",
            "timeout",
            "timeout 1m is not shorter than the interval (5s, the default)",
        ),
        (
            "protocol: tcp, port: 8080, interval: soon",
            "interval",
            "\"soon\": want a duration like 500ms, 5s, 4m, 1h or whole seconds",
        ),
        (
            "protocol: tcp, port: 8080, unhealthy_threshold: 0",
            "unhealthy_threshold",
            "0: want a threshold from 1 to 4294967295",
        ),
        (
            "protocol: tcp, port: 8080, healthy_threshold: -3",
            "healthy_threshold",
            "-3: want a threshold from 1 to 4294967295",
        ),
    ] {
        refused(&app_probe(written), at, &probe(field), reason);
    }
    // Every field at once: each mistake is reported.
    let text = app_probe(
        "protocol: tcp, port: 0, path: /, interval: 0s, timeout: 0s, unhealthy_threshold: 0, healthy_threshold: 0",
    );
    let fields: Vec<String> = all_errors(&text).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        fields,
        [
            "path",
            "port",
            "interval",
            "timeout",
            "unhealthy_threshold",
            "healthy_threshold"
        ]
        .map(probe)
    );
    let topo = valid(&app_probe(
        "protocol: tcp, port: 8080, interval: 10s, timeout: 9s, unhealthy_threshold: 3, healthy_threshold: 1",
    ));
    let probe = &topo.load_balancer("app-lb").unwrap().probes[0];
    assert_eq!(
        (
            probe.interval,
            probe.timeout,
            probe.unhealthy_threshold,
            probe.healthy_threshold
        ),
        (Duration::from_secs(10), Duration::from_secs(9), 3, 1)
    );
}

#[test]
fn rule_references_and_words() {
    let at = "name: http, frontend:";
    let rule = |field: &str| format!("load_balancers[0].rules[0].{field}");
    for (from, to, field, reason) in [
        (
            "frontend: public, protocol: tcp, frontend_port: 80",
            "frontend: pub, protocol: tcp, frontend_port: 80",
            "frontend",
            "no frontend named pub in load balancer web-lb",
        ),
        (
            "pool: web, probe: http",
            "pool: webs, probe: http",
            "pool",
            "no backend pool named webs in load balancer web-lb",
        ),
        (
            "probe: http, algorithm",
            "probe: https, algorithm",
            "probe",
            "no probe named https in load balancer web-lb",
        ),
        (
            "protocol: tcp, frontend_port: 80",
            "protocol: icmp, frontend_port: 80",
            "protocol",
            "\"icmp\": want one of tcp, udp",
        ),
        (
            "algorithm: five_tuple_hash",
            "algorithm: random",
            "algorithm",
            "\"random\": want one of round_robin, weighted_round_robin, least_connections, source_ip_hash, source_ip_protocol, five_tuple_hash",
        ),
        (
            "idle_timeout: 4m",
            "idle_timeout: 4m, no_healthy_backends: maybe",
            "no_healthy_backends",
            "\"maybe\": want one of refuse, all_probed_up",
        ),
        (
            "idle_timeout: 4m",
            "idle_timeout: 0",
            "idle_timeout",
            "idle timeout 0s: want a duration above zero",
        ),
    ] {
        refused(&lb_with(from, to), at, &rule(field), reason);
    }
    // A pool of another load balancer is not this one's.
    refused(
        &lb_with("pool: web, probe: http", "pool: app, probe: http"),
        at,
        &rule("pool"),
        "no backend pool named app in load balancer web-lb",
    );
    for (name, algorithm) in Algorithm::NAMES {
        let text = lb_with("algorithm: five_tuple_hash", &format!("algorithm: {name}"));
        let topo = valid(&text);
        let rule = &topo.load_balancer("web-lb").unwrap().rules[0];
        assert_eq!(rule.algorithm, algorithm);
        assert_eq!(algorithm.name(), name);
    }
    let text = lb_with(
        "idle_timeout: 4m",
        "idle_timeout: 30m, no_healthy_backends: all_probed_up",
    );
    let topo = valid(&text);
    let rule = &topo.load_balancer("web-lb").unwrap().rules[0];
    assert_eq!(rule.no_healthy_backends, NoHealthyBackends::AllProbedUp);
    assert_eq!(rule.idle_timeout, Duration::from_secs(1800));
}

#[test]
fn frontend_ports_are_used_once() {
    refused(
        &lb_plus(
            HTTP_RULE,
            "      - { name: http2, frontend: public, protocol: tcp, frontend_port: 80, backend_port: 8080, pool: web }\n",
        ),
        "name: http2",
        "load_balancers[0].rules[1].frontend_port",
        "tcp port 80 of frontend public (203.0.113.50) is already used by rule http",
    );
    refused(
        &lb_with("frontend_port: 80,", "frontend_port: 2201,"),
        "name: ssh-web1",
        "load_balancers[0].inbound_nat_rules[0].frontend_port",
        "tcp port 2201 of frontend public (203.0.113.50) is already used by rule http",
    );
    refused(
        &lb_plus(
            SSH_RULE,
            "      - { name: ssh-web2, frontend: public, protocol: tcp, frontend_port: 2201, target: web2:eth0 }\n",
        ),
        "name: ssh-web2",
        "load_balancers[0].inbound_nat_rules[1].frontend_port",
        "tcp port 2201 of frontend public (203.0.113.50) is already used by inbound NAT rule ssh-web1",
    );
    refused(
        &lb_plus(
            ECHO_RULE,
            "      - { name: echo2, frontend: internal, protocol: udp, frontend_port: 7, pool: app }\n",
        ),
        "name: echo2",
        "load_balancers[1].rules[2].frontend_port",
        "udp port 7 of frontend internal (10.30.2.100) is already used by rule echo",
    );
    // Another protocol, port or frontend is free.
    let text = lb_plus(
        ECHO_RULE,
        "      - { name: echo-tcp, frontend: internal, protocol: tcp, frontend_port: 7, pool: app }\n",
    );
    valid(&text);
    let text = lb_plus(
        WEB_FRONTEND,
        "      - { name: second, address: 203.0.113.51 }\n",
    );
    let text = lb_plus_in(
        &text,
        HTTP_RULE,
        "      - { name: http2, frontend: second, protocol: tcp, frontend_port: 80, backend_port: 8080, pool: web }\n",
    );
    let topo = valid(&text);
    assert_eq!(topo.load_balancer("web-lb").unwrap().rules.len(), 2);
    // Two rules may not send one protocol to the same port of one pool.
    refused(
        &text.replacen(
            "frontend_port: 80, backend_port: 8080",
            "frontend_port: 80",
            1,
        ),
        "name: http2",
        "load_balancers[0].rules[1].name",
        "rule http2 sends tcp to port 80 of pool web, as rule http does: give one of them another backend_port",
    );
}

/// `text` with `extra` added after the line `anchor`.
fn lb_plus_in(text: &str, anchor: &str, extra: &str) -> String {
    assert!(text.contains(anchor), "no {anchor:?}");
    text.replacen(anchor, &format!("{anchor}{extra}"), 1)
}

#[test]
fn inbound_nat_rules() {
    let at = "name: ssh-web1";
    let path = "load_balancers[0].inbound_nat_rules[0]";
    refused(
        &lb_with("target: web1:eth0", "target: web9:eth0"),
        at,
        &format!("{path}.target"),
        "no host interface web9:eth0 (nor a switch port linked to one)",
    );
    refused(
        &lb_with(
            "frontend: public, protocol: tcp, frontend_port: 2201",
            "frontend: private, protocol: tcp, frontend_port: 2201",
        ),
        at,
        &format!("{path}.frontend"),
        "no frontend named private in load balancer web-lb",
    );
    refused(
        &lb_with(
            "protocol: tcp, frontend_port: 2201",
            "protocol: any, frontend_port: 2201",
        ),
        at,
        &format!("{path}.protocol"),
        "\"any\": want one of tcp, udp",
    );
    let text = with_spoke("").replacen("target: web1:eth0", "target: db1:eth0", 1);
    refused(
        &text,
        at,
        &format!("{path}.target"),
        "db1:eth0 is in network spoke, which is neither the load balancer's network hub nor peered with it",
    );
    let text = with_spoke("peerings:\n  - [spoke, hub]\n\n").replacen(
        "target: web1:eth0",
        "target: db1:eth0",
        1,
    );
    refused(
        &text,
        at,
        &format!("{path}.target"),
        "db1:eth0 is in network spoke, peered with hub: the members of a load balancer with a public frontend must be in its own network hub (a peered network's members can serve internal frontends)",
    );
    let topo = valid(&lb_with("target: web1:eth0", "target: sw1:p2"));
    assert_eq!(
        topo.load_balancer("web-lb").unwrap().inbound_nat_rules[0].target,
        iface("web2")
    );
}

#[test]
fn unknown_fields_are_refused() {
    for (from, to, field) in [
        (
            "  - name: app-lb ",
            "  - name: app-lb\n    sku: standard ",
            "sku",
        ),
        (
            "{ name: public, address: 203.0.113.50 }",
            "{ name: public, address: 203.0.113.50, zone: 1 }",
            "zone",
        ),
        (
            "{ interface: web2:eth0, weight: 2 }",
            "{ interface: web2:eth0, weight: 2, drain: true }",
            "drain",
        ),
        (
            "      - name: web\n",
            "      - name: web\n        kind: nic\n",
            "kind",
        ),
        (
            TCP_PROBE,
            "      - { name: tcp-8080, protocol: tcp, port: 8080, method: GET }",
            "method",
        ),
        (
            "idle_timeout: 4m }",
            "idle_timeout: 4m, floating_ip: true }",
            "floating_ip",
        ),
        (
            "target: web1:eth0 }",
            "target: web1:eth0, pool: web }",
            "pool",
        ),
    ] {
        let text = lb_with(from, to);
        let e = errors_of(&text);
        assert_eq!(e.errors.len(), 1, "{e}");
        let error = &e.errors[0];
        assert!(
            error.reason.contains(&format!("unknown field `{field}`")),
            "{e}"
        );
        // The line that has the field (the last line `to` wrote).
        let written = to.trim_end().lines().last().unwrap().trim();
        assert_eq!(error.line, Some(line_of(&text, written)), "{e}");
    }
}

#[test]
fn every_mistake_is_reported_at_once() {
    let text = lb_with("weight: 2 }", "weight: 0 }")
        .replacen("port: 80, path: /,", "port: 0, path: /,", 1)
        .replacen("pool: web, probe: http", "pool: webs, probe: http", 1)
        .replacen("target: web1:eth0", "target: web9:eth0", 1)
        .replacen("address: 10.30.2.100", "address: 10.30.2.11", 1);
    let paths: Vec<String> = all_errors(&text).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        paths,
        [
            "load_balancers[0].backend_pools[0].members[1].weight",
            "load_balancers[0].probes[0].port",
            "load_balancers[0].rules[0].pool",
            "load_balancers[0].inbound_nat_rules[0].target",
            "load_balancers[1].frontends[0].address",
        ]
    );
}

#[test]
fn the_azure_load_balancer_tag() {
    let nsg = "\nsecurity:\n  nsgs:\n    - name: web-nsg\n      subnets: [hub/web]\n      rules:\n        - { name: http-in, priority: 100, direction: inbound, access: allow, protocol: tcp, source: Internet, destination_ports: 80 }\n        - { name: probes, priority: 200, direction: inbound, access: allow, source: AzureLoadBalancer }\n        - { name: no-probes-out, priority: 300, direction: outbound, access: deny, destination: azureloadbalancer }\n";
    let text = format!("{LB}{nsg}");
    let topo = valid(&text);
    let rules = &topo.security.nsgs[0].rules;
    assert_eq!(rules[1].source, Peer::AzureLoadBalancer);
    assert_eq!(rules[2].destination, Peer::AzureLoadBalancer);
    // It resolves to the probe source, and the defaults let probes in.
    use crate::security::rules::{Access, Addresses, Direction};
    let web1 = &topo.host("web1").unwrap().interfaces[0];
    let policy = crate::security::resolve::port_policy(&topo, "web1", web1);
    let layer = policy.subnet.expect("the subnet's NSG");
    let probe_source = Addresses::Prefixes(vec![ipnet::Ipv4Net::new(PROBE_SOURCE, 32).unwrap()]);
    let inbound: Vec<_> = layer.rules(Direction::Inbound).collect();
    assert_eq!(inbound[1].origin.rule, "probes");
    assert_eq!(inbound[1].src, probe_source);
    let default = inbound
        .iter()
        .find(|r| r.origin.rule == "AllowAzureLoadBalancerInBound")
        .expect("the default rule");
    assert_eq!(default.origin.priority, 65001);
    assert_eq!(default.access, Access::Allow);
    assert_eq!(default.src, probe_source);
    assert_eq!(default.dst, Addresses::Any);
    assert!(default.src.contains(ip("168.63.129.16")));
    assert!(!default.src.contains(ip("168.63.129.17")));
    // An unknown tag names the known ones.
    let text = text.replacen("source: AzureLoadBalancer", "source: AzureLB", 1);
    refused(
        &text,
        "source: AzureLB",
        "security.nsgs[0].rules[1].source",
        "any, VirtualNetwork, Internet, AzureLoadBalancer, or an ASG of this file",
    );
}

#[test]
fn members_on_another_switch_are_refused() {
    let text = lb_with("  - [web3:eth0, sw1:p3]\n", "  - [web3:eth0, sw2:p1]\n")
        .replacen("      - { name: p3 }\n", "", 1)
        .replacen(
            "switches:\n",
            "switches:\n  - name: sw2\n    ports: [{ name: p1 }]\n",
            1,
        );
    refused(
        &text,
        "interface: web3:eth0",
        "load_balancers[0].backend_pools[0].members[2].interface",
        "web3:eth0 is on switch sw2, but load balancer web-lb balances at sw1, the switch of web1:eth0",
    );
}
