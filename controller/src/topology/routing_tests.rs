//! The routing and internet sections: the routing example parsed into the
//! model, and each mistake a user can make in it reported with its line,
//! path and reason.

use super::routing::*;
use super::security::{InterfaceRef, SubnetRef};
use super::*;
use std::net::Ipv4Addr;
use std::path::Path;

const ROUTING: &str = include_str!("../../../topologies/routing.yaml");

/// Lines of routing.yaml that later sections are added after.
const BLACKHOLE: &str = "      - { name: blackhole, prefix: 10.99.0.0/16, next_hop: none }\n";
const IGW: &str = "  - { name: igw-hub, network: hub }\n";
const PUBLIC_IP: &str = "  - { name: web1-ip, address: 203.0.113.10, interface: web1:eth0 }\n";
const NAT: &str = "  - { name: nat-hub, address: 203.0.113.20, subnets: [hub/web, hub/app] }\n";
const OPS: &str = "      - { name: ops, cidr: 10.22.1.0/24 }\n";

/// routing.yaml with the first `from` replaced by `to`.
fn routing_with(from: &str, to: &str) -> String {
    assert!(ROUTING.contains(from), "routing.yaml has no {from:?}");
    ROUTING.replacen(from, to, 1)
}

/// routing.yaml with `extra` added after the line `anchor`.
fn routing_plus(anchor: &str, extra: &str) -> String {
    routing_with(anchor, &format!("{anchor}{extra}"))
}

/// routing.yaml without its internet: no internet hosts, internet gateways,
/// public IPs or NAT gateways.
fn without_internet() -> String {
    let start = ROUTING.find("\ninternet:\n").expect("internet section");
    let end = ROUTING.find("\nsecurity:\n").expect("security section");
    format!("{}{}", &ROUTING[..start], &ROUTING[end..])
}

fn valid(text: &str) -> Topology {
    parse(text, Path::new("routing.yaml")).unwrap_or_else(|e| panic!("should be valid:\n{e}"))
}

fn errors_of(text: &str) -> TopologyErrors {
    parse(text, Path::new("routing.yaml")).expect_err("the file should be refused")
}

/// The 1-based line of the first line outside comments containing `needle`.
fn line_of(text: &str, needle: &str) -> u64 {
    text.lines()
        .position(|l| !l.trim_start().starts_with('#') && l.contains(needle))
        .unwrap_or_else(|| panic!("no line has {needle:?}")) as u64
        + 1
}

/// Asserts that `text` has exactly one error, at `path` on the line holding
/// `at`, whose reason contains `reason`.
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
    assert_eq!(error.line, Some(line_of(text, at)), "{e}");
}

/// The (path, reason) pairs of every error of `text`.
fn all_errors(text: &str) -> Vec<(String, String)> {
    errors_of(text)
        .errors
        .into_iter()
        .map(|e| (e.path, e.reason))
        .collect()
}

fn subnet(network: &str, subnet: &str) -> SubnetRef {
    SubnetRef {
        network: network.into(),
        subnet: subnet.into(),
    }
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().expect("an IPv4 address")
}

#[test]
fn example_parses_into_the_model() {
    let topo = valid(ROUTING);
    let gateways: Vec<_> = topo
        .networks
        .iter()
        .flat_map(|n| n.subnets.iter().map(|s| (s.name.as_str(), s.gateway)))
        .collect();
    assert_eq!(
        gateways,
        [
            ("web", Some(ip("10.20.1.1"))),
            ("app", Some(ip("10.20.2.1"))),
            ("db", Some(ip("10.21.1.1"))),
            ("ops", Some(ip("10.22.1.1"))),
        ]
    );
    assert_eq!(
        topo.routing,
        Routing {
            peerings: vec![
                ("hub".into(), "spoke".into()),
                ("spoke".into(), "branch".into())
            ],
            route_tables: vec![RouteTable {
                name: "rt-web".into(),
                routes: vec![
                    UserRoute {
                        name: "spoke-via-nva".into(),
                        prefix: "10.21.0.0/16".parse().unwrap(),
                        next_hop: NextHop::VirtualAppliance(ip("10.20.2.4")),
                    },
                    UserRoute {
                        name: "blackhole".into(),
                        prefix: "10.99.0.0/16".parse().unwrap(),
                        next_hop: NextHop::None,
                    },
                ],
                subnets: vec![subnet("hub", "web")],
            }],
            vpn_gateways: vec![],
        }
    );
    assert_eq!(
        topo.internet,
        Internet {
            present: true,
            hosts: vec![
                InternetHost {
                    name: "client".into(),
                    address: ip("198.51.100.20"),
                    mac: derived_mac("routing", "client", "eth0"),
                },
                InternetHost {
                    name: "server".into(),
                    address: ip("203.0.113.80"),
                    mac: derived_mac("routing", "server", "eth0"),
                },
            ],
            gateways: vec![InternetGateway {
                name: "igw-hub".into(),
                network: "hub".into(),
            }],
            public_ips: vec![PublicIp {
                name: "web1-ip".into(),
                address: ip("203.0.113.10"),
                interface: InterfaceRef {
                    host: "web1".into(),
                    interface: "eth0".into(),
                },
            }],
            nat_gateways: vec![NatGateway {
                name: "nat-hub".into(),
                address: ip("203.0.113.20"),
                ports: DEFAULT_NAT_PORTS,
                subnets: vec![subnet("hub", "web"), subnet("hub", "app")],
                network: "hub".into(),
                switch: "sw1".into(),
            }],
        }
    );
    // Only nva forwards.
    let forwarding: Vec<_> = topo
        .hosts
        .iter()
        .filter(|h| h.interfaces.iter().any(|i| i.ip_forward))
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(forwarding, ["nva"]);
    let ns = topo.namespaces();
    assert_eq!(
        ns[ns.len() - 3..],
        ["routing-internet", "routing-client", "routing-server"]
    );
}

#[test]
fn ip_forward_is_read_as_written() {
    let text = routing_with(
        "address: 10.20.2.11/24 }",
        "address: 10.20.2.11/24, ip_forward: false }",
    );
    let topo = valid(&text);
    assert!(!topo.host("app1").unwrap().interfaces[0].ip_forward);
    let text = routing_with(
        "address: 10.20.2.11/24 }",
        "address: 10.20.2.11/24, ip_forward: true }",
    );
    assert!(valid(&text).host("app1").unwrap().interfaces[0].ip_forward);
    let text = routing_with(
        "address: 10.20.2.11/24 }",
        "address: 10.20.2.11/24, ip_forward: yes please }",
    );
    let e = errors_of(&text);
    assert_eq!(e.errors[0].line, Some(line_of(&text, "yes please")), "{e}");
}

#[test]
fn model_helpers() {
    let topo = valid(ROUTING);
    let routing = &topo.routing;
    assert!(routing.peered("hub", "spoke") && routing.peered("spoke", "hub"));
    assert!(routing.peered("branch", "spoke"));
    assert!(
        !routing.peered("hub", "branch"),
        "peering is not transitive"
    );
    assert!(!routing.peered("hub", "hub"));
    assert_eq!(routing.table_of("hub", "web").unwrap().name, "rt-web");
    assert!(routing.table_of("hub", "app").is_none());
    assert!(routing.table_of("spoke", "web").is_none());

    let internet = &topo.internet;
    assert_eq!(internet.gateway_of("hub").unwrap().name, "igw-hub");
    assert!(internet.gateway_of("spoke").is_none());
    assert_eq!(
        internet.public_ip_of("web1", "eth0").unwrap().name,
        "web1-ip"
    );
    assert!(internet.public_ip_of("web2", "eth0").is_none());
    assert!(internet.public_ip_of("web1", "eth1").is_none());
    assert_eq!(
        internet.nat_gateway_of("hub", "app").unwrap().name,
        "nat-hub"
    );
    assert!(internet.nat_gateway_of("spoke", "db").is_none());
    assert!(internet.nat_gateway_of("spoke", "web").is_none());

    // sw1 and sw2 both hold hosts of hub, which has an internet gateway.
    assert!(topo.has_uplink("sw1") && topo.has_uplink("sw2"));
    assert!(!topo.has_uplink("sw9"));
    // With web2 moved to spoke, sw2 holds no host of hub...
    let moved = routing_with(
        "subnet: hub/web, address: 10.20.1.12/24",
        "subnet: spoke/db, address: 10.21.1.12/24",
    );
    let topo = valid(&moved);
    assert!(topo.has_uplink("sw1") && !topo.has_uplink("sw2"));
    // ...unless it translates for a NAT gateway.
    let text = moved.replacen(
        "subnets: [hub/web, hub/app] }",
        "subnets: [hub/web, hub/app], switch: sw2 }",
        1,
    );
    let topo = valid(&text);
    assert_eq!(topo.internet.nat_gateways[0].switch, "sw2");
    assert!(topo.has_uplink("sw2"));
    // Without an internet nothing has an uplink.
    let topo = valid(&without_internet());
    assert!(!topo.internet.present);
    assert!(!topo.has_uplink("sw1") && !topo.has_uplink("sw2"));
    assert!(!topo.namespaces().iter().any(|n| n == "routing-internet"));
}

#[test]
fn subnet_gateways() {
    const WEB: &str = "{ name: web, cidr: 10.20.1.0/24 }";
    let with_gateway = |gateway: &str| {
        routing_with(
            WEB,
            &format!("{{ name: web, cidr: 10.20.1.0/24, gateway: {gateway} }}"),
        )
    };
    let topo = valid(&with_gateway("10.20.1.254"));
    assert_eq!(
        topo.subnet("hub", "web").unwrap().gateway,
        Some(ip("10.20.1.254"))
    );
    for (gateway, reason) in [
        ("10.20.2.1", "10.20.2.1 is not inside subnet 10.20.1.0/24"),
        (
            "10.20.1.0",
            "10.20.1.0 is the network or broadcast address of 10.20.1.0/24",
        ),
        (
            "10.20.1.255",
            "10.20.1.255 is the network or broadcast address of 10.20.1.0/24",
        ),
        ("gw", "\"gw\" is not an IPv4 address"),
    ] {
        let text = with_gateway(gateway);
        refused(
            &text,
            &format!("gateway: {gateway}"),
            "networks[0].subnets[0].gateway",
            reason,
        );
    }
    // A host may not take the gateway's address, the default one or another.
    let text = routing_with("address: 10.20.1.11/24", "address: 10.20.1.1/24");
    refused(
        &text,
        "10.20.1.1/24",
        "hosts[0].interfaces[0].address",
        "10.20.1.1 is the gateway of subnet hub/web (the switch answers for it)",
    );
    let text = with_gateway("10.20.1.11");
    refused(
        &text,
        "10.20.1.11/24",
        "hosts[0].interfaces[0].address",
        "10.20.1.11 is the gateway of subnet hub/web",
    );
    // Moving the gateway frees .1.
    let text =
        with_gateway("10.20.1.254").replacen("address: 10.20.1.11/24", "address: 10.20.1.1/24", 1);
    assert_eq!(
        valid(&text).host("web1").unwrap().interfaces[0].address,
        ip("10.20.1.1")
    );
    // IPv6 subnets have no gateway.
    let v6 = "  - name: six\n    cidr: fd00::/48\n    subnets:\n      - { name: s, cidr: \"fd00::/64\" }\n";
    let topo = valid(&routing_plus(OPS, v6));
    assert_eq!(topo.subnet("six", "s").unwrap().gateway, None);
    let text = routing_plus(
        OPS,
        &v6.replace("fd00::/64\" }", "fd00::/64\", gateway: 10.0.0.1 }"),
    );
    refused(
        &text,
        "gateway: 10.0.0.1",
        "networks[3].subnets[0].gateway",
        "IPv6 subnets are not routed: they have no gateway",
    );
}

#[test]
fn peerings() {
    let text = routing_with("[spoke, branch]", "[spoke, brunch]");
    refused(
        &text,
        "[spoke, brunch]",
        "peerings[1][1]",
        "no network named brunch",
    );
    let text = routing_with("[spoke, branch]", "[spoke, spoke]");
    refused(
        &text,
        "[spoke, spoke]",
        "peerings[1]",
        "peers network spoke with itself",
    );
    // branch grown to 10.16.0.0/12 holds spoke's 10.21.0.0/16.
    let text = routing_with("cidr: 10.22.0.0/16", "cidr: 10.16.0.0/12");
    refused(
        &text,
        "[spoke, branch]",
        "peerings[1]",
        "networks spoke (10.21.0.0/16) and branch (10.16.0.0/12) overlap; overlapping networks cannot be peered",
    );
    // Unpeered, overlapping networks are fine.
    valid(&text.replacen("  - [spoke, branch]\n", "", 1));
    // The same pair either way round; the message names it as written.
    for (a, b) in [("hub", "spoke"), ("spoke", "hub"), ("branch", "spoke")] {
        // Spaced, so that its line is told from the first peering's.
        let text = routing_plus("  - [spoke, branch]\n", &format!("  - [ {a}, {b} ]\n"));
        refused(
            &text,
            &format!("- [ {a}, {b} ]"),
            "peerings[2]",
            &format!("networks {a} and {b} are already peered"),
        );
    }
    for (pair, got) in [("[hub]", 1), ("[hub, spoke, branch]", 3), ("[]", 0)] {
        let text = routing_with("[spoke, branch]", pair);
        refused(
            &text,
            &format!("- {pair}"),
            "peerings[1]",
            &format!("a peering joins exactly two networks, like [vnet-a, vnet-b]; got {got}"),
        );
    }
}

#[test]
fn route_prefixes() {
    let text = routing_with("prefix: 10.99.0.0/16", "prefix: 10.99.0.1/16");
    refused(
        &text,
        "prefix: 10.99.0.1/16",
        "route_tables[0].routes[1].prefix",
        "10.99.0.1/16 has host bits set; did you mean 10.99.0.0/16?",
    );
    let text = routing_with("prefix: 10.99.0.0/16", "prefix: \"2001:db8::/32\"");
    refused(
        &text,
        "2001:db8::/32",
        "route_tables[0].routes[1].prefix",
        "2001:db8::/32: routes are IPv4",
    );
    let text = routing_with("prefix: 10.99.0.0/16", "prefix: 10.99.0.0");
    refused(
        &text,
        "prefix: 10.99.0.0,",
        "route_tables[0].routes[1].prefix",
        "malformed CIDR \"10.99.0.0\"",
    );
    let text = routing_with("prefix: 10.99.0.0/16", "prefix: 10.21.0.0/16");
    refused(
        &text,
        "name: blackhole",
        "route_tables[0].routes[1].prefix",
        "prefix 10.21.0.0/16 is already routed by spoke-via-nva; one route per prefix",
    );
    // A default route, and a route without a name (named by its index).
    let text = routing_with(
        "{ name: blackhole, prefix: 10.99.0.0/16,",
        "{ prefix: 0.0.0.0/0,",
    );
    let topo = valid(&text);
    let route = &topo.routing.route_tables[0].routes[1];
    assert_eq!(route.name, "route1");
    assert_eq!(route.prefix, "0.0.0.0/0".parse().unwrap());
}

#[test]
fn route_names() {
    let text = routing_with("name: blackhole", "name: spoke-via-nva");
    refused(
        &text,
        "prefix: 10.99.0.0/16",
        "route_tables[0].routes[1].name",
        "route spoke-via-nva is declared twice in this table",
    );
    let text = routing_with("name: blackhole", "name: Blackhole");
    refused(
        &text,
        "Blackhole",
        "route_tables[0].routes[1].name",
        "name \"Blackhole\" must be",
    );
    // The same route name in another table is fine.
    let text = routing_plus(
        BLACKHOLE,
        "  - name: rt-db\n    subnets: [spoke/db]\n    routes:\n      - { name: blackhole, prefix: 10.99.0.0/16, next_hop: none }\n",
    );
    assert_eq!(valid(&text).routing.route_tables.len(), 2);
    // At most 400 routes.
    let routes: String = (0..401)
        .map(|r| {
            format!(
                "      - {{ prefix: 10.{}.{}.0/24, next_hop: none }}\n",
                100 + r / 256,
                r % 256
            )
        })
        .collect();
    let text = routing_plus(
        BLACKHOLE,
        &format!("  - name: rt-big\n    subnets: [spoke/db]\n    routes:\n{routes}"),
    );
    refused(
        &text,
        "name: rt-big",
        "route_tables[1].routes",
        "401 routes; at most 400",
    );
}

#[test]
fn route_table_subnets() {
    let text = routing_with("subnets: [hub/web]", "subnets: [hub/webs]");
    refused(
        &text,
        "subnets: [hub/webs]",
        "route_tables[0].subnets[0]",
        "no subnet hub/webs",
    );
    // A subnet named without its network, when only one network has it.
    let text = routing_with("subnets: [hub/web]", "subnets: [web]");
    assert_eq!(
        valid(&text).routing.route_tables[0].subnets,
        [subnet("hub", "web")]
    );
    let second = "  - name: rt-two\n    subnets:\n      - hub/app\n      - hub/web\n";
    let text = routing_plus(BLACKHOLE, second);
    refused(
        &text,
        "      - hub/web",
        "route_tables[1].subnets[1]",
        "subnet hub/web already has route table rt-web; a subnet takes one",
    );
    // After an entry that does not resolve, the error still names the entry
    // as written.
    let text = routing_plus(BLACKHOLE, &second.replace("hub/app", "hub/nope"));
    let e = errors_of(&text);
    let found: Vec<_> = e
        .errors
        .iter()
        .map(|e| (e.path.as_str(), e.line.unwrap_or(0)))
        .collect();
    assert_eq!(
        found,
        [
            ("route_tables[1].subnets[0]", line_of(&text, "- hub/nope")),
            (
                "route_tables[1].subnets[1]",
                line_of(&text, "      - hub/web")
            ),
        ],
        "{e}"
    );
    // A subnet listed twice in one table.
    let text = routing_with("subnets: [hub/web]", "subnets: [hub/web, web]");
    refused(
        &text,
        "subnets: [hub/web, web]",
        "route_tables[0].subnets[1]",
        "web is listed twice",
    );
    // A table with no subnets is kept (attached later).
    let text = routing_plus(BLACKHOLE, "  - name: rt-spare\n");
    let topo = valid(&text);
    assert!(topo.routing.route_tables[1].subnets.is_empty());
}

/// routing.yaml with the blackhole route's next hop replaced by `hop`.
fn blackhole_via(hop: &str) -> String {
    routing_with("next_hop: none }", &format!("next_hop: {hop} }}"))
}

const HOP_PATH: &str = "route_tables[0].routes[1].next_hop";

#[test]
fn next_hop_words_and_shapes() {
    let text = blackhole_via("nowhere");
    refused(
        &text,
        "next_hop: nowhere",
        HOP_PATH,
        "\"nowhere\": want none, internet, { virtual_appliance: ADDRESS } or { vpn_gateway: NAME }",
    );
    let text = blackhole_via("{ appliance: 10.20.2.4 }");
    refused(
        &text,
        "{ appliance: 10.20.2.4 }",
        HOP_PATH,
        "want none, internet, { virtual_appliance: ADDRESS } or { vpn_gateway: NAME }",
    );
    let text = blackhole_via("{ virtual_appliance: 10.20.2.4, vpn_gateway: v }");
    refused(&text, "vpn_gateway: v }", HOP_PATH, "want none, internet");
    let text = blackhole_via("{ virtual_appliance: nva }");
    refused(
        &text,
        "virtual_appliance: nva",
        HOP_PATH,
        "\"nva\" is not an IPv4 address",
    );
    // hub has an internet gateway, so its subnets may route to the internet.
    let topo = valid(&blackhole_via("internet"));
    assert_eq!(
        topo.routing.route_tables[0].routes[1].next_hop,
        NextHop::Internet
    );
}

#[test]
fn internet_next_hop_needs_an_internet_gateway() {
    let text = routing_plus(
        BLACKHOLE,
        "  - name: rt-db\n    subnets: [spoke/db]\n    routes:\n      - { name: out, prefix: 0.0.0.0/0, next_hop: internet }\n",
    );
    refused(
        &text,
        "next_hop: internet",
        "route_tables[1].routes[0].next_hop",
        "network spoke has no internet gateway (add one under internet_gateways)",
    );
    // One error per network, however many of its subnets the table steers.
    let text = without_internet().replacen("subnets: [hub/web]", "subnets: [hub/web, hub/app]", 1);
    let text = text.replacen("next_hop: none }", "next_hop: internet }", 1);
    assert_eq!(
        all_errors(&text),
        [(
            HOP_PATH.to_string(),
            "network hub has no internet gateway (add one under internet_gateways)".to_string()
        )]
    );
}

#[test]
fn virtual_appliances() {
    let text = blackhole_via("{ virtual_appliance: 10.20.2.99 }");
    refused(
        &text,
        "10.20.2.99",
        HOP_PATH,
        "no host interface has address 10.20.2.99: a virtual appliance is a host interface with ip_forward: true",
    );
    let text = blackhole_via("{ virtual_appliance: 10.20.2.11 }");
    refused(
        &text,
        "virtual_appliance: 10.20.2.11",
        HOP_PATH,
        "app1:eth0 (10.20.2.11) does not forward: give it ip_forward: true to make it a virtual appliance",
    );
    // branch is not peered with hub.
    let text = blackhole_via("{ virtual_appliance: 10.22.1.11 }");
    refused(
        &text,
        "virtual_appliance: 10.22.1.11",
        HOP_PATH,
        "appliance 10.22.1.11 (ops1:eth0) is in network branch, which subnet hub/web cannot reach (not its network, not peered)",
    );
    // spoke is: a forwarding interface there is an appliance for web.
    let text = blackhole_via("{ virtual_appliance: 10.21.1.11 }").replacen(
        "address: 10.21.1.11/24 }",
        "address: 10.21.1.11/24, ip_forward: true }",
        1,
    );
    assert_eq!(
        valid(&text).routing.route_tables[0].routes[1].next_hop,
        NextHop::VirtualAppliance(ip("10.21.1.11"))
    );
    // A table no subnet uses yet still names existing, forwarding appliances.
    let spare = |hop: &str| {
        routing_plus(
            BLACKHOLE,
            &format!(
                "  - name: rt-spare\n    routes:\n      - {{ name: r, prefix: 10.50.0.0/16, next_hop: {hop} }}\n"
            ),
        )
    };
    let text = spare("{ virtual_appliance: 10.9.9.9 }");
    refused(
        &text,
        "10.9.9.9",
        "route_tables[1].routes[0].next_hop",
        "no host interface has address 10.9.9.9",
    );
    let text = spare("{ virtual_appliance: 10.20.2.11 }");
    refused(
        &text,
        "prefix: 10.50.0.0/16",
        "route_tables[1].routes[0].next_hop",
        "app1:eth0 (10.20.2.11) does not forward",
    );
    valid(&spare("{ virtual_appliance: 10.20.2.4 }"));
    // Two subnets: a missing appliance is reported once.
    let text = blackhole_via("{ virtual_appliance: 10.20.2.99 }").replacen(
        "subnets: [hub/web]",
        "subnets: [hub/web, hub/app]",
        1,
    );
    assert_eq!(errors_of(&text).errors.len(), 1);
}

#[test]
fn vpn_gateways() {
    let vpn = |gateways: &str| {
        routing_with(
            "\ninternet:\n",
            &format!("\nvpn_gateways:\n{gateways}\ninternet:\n"),
        )
    };
    let text = vpn("  - { name: vpn-hub, network: hub, public_ip: 203.0.113.90 }\n");
    let text = text.replacen(
        "next_hop: none }",
        "next_hop: { vpn_gateway: vpn-hub } }",
        1,
    );
    let topo = valid(&text);
    assert_eq!(
        topo.routing.vpn_gateways,
        [VpnGateway {
            name: "vpn-hub".into(),
            network: "hub".into(),
            public_ip: ip("203.0.113.90"),
        }]
    );
    assert_eq!(
        topo.routing.route_tables[0].routes[1].next_hop,
        NextHop::VpnGateway("vpn-hub".into())
    );
    let text = blackhole_via("{ vpn_gateway: vpn-x }");
    refused(
        &text,
        "vpn_gateway: vpn-x",
        HOP_PATH,
        "no VPN gateway named vpn-x (see vpn_gateways)",
    );
    let text = vpn("  - { name: vpn-spoke, network: spoke, public_ip: 203.0.113.90 }\n").replacen(
        "next_hop: none }",
        "next_hop: { vpn_gateway: vpn-spoke } }",
        1,
    );
    refused(
        &text,
        "vpn_gateway: vpn-spoke }",
        HOP_PATH,
        "VPN gateway vpn-spoke belongs to network spoke, not to hub",
    );
    let text = vpn("  - { name: vpn-x, network: hubs, public_ip: 203.0.113.90 }\n");
    refused(
        &text,
        "network: hubs",
        "vpn_gateways[0].network",
        "no network named hubs",
    );
    // An unattached table still names an existing VPN gateway.
    let text = routing_plus(
        BLACKHOLE,
        "  - name: rt-spare\n    routes:\n      - { name: r, prefix: 10.50.0.0/16, next_hop: { vpn_gateway: vpn-x } }\n",
    );
    refused(
        &text,
        "vpn_gateway: vpn-x",
        "route_tables[1].routes[0].next_hop",
        "no VPN gateway named vpn-x",
    );
}

#[test]
fn resource_names_are_unique_across_kinds() {
    let text = routing_with("name: rt-web", "name: igw-hub");
    refused(
        &text,
        "  - name: igw-hub",
        "route_tables[0].name",
        "name igw-hub is already used by internet_gateways[0].name",
    );
    let text = routing_with("name: nat-hub", "name: web1-ip");
    refused(
        &text,
        "address: 203.0.113.20",
        "nat_gateways[0].name",
        "name web1-ip is already used by public_ips[0].name",
    );
    let text = routing_with("name: web1-ip", "name: igw-hub");
    refused(
        &text,
        "address: 203.0.113.10",
        "public_ips[0].name",
        "name igw-hub is already used by internet_gateways[0].name",
    );
    let text = routing_plus(IGW, "  - { name: igw-hub, network: spoke }\n");
    refused(
        &text,
        "network: spoke }",
        "internet_gateways[1].name",
        "name igw-hub is already used by internet_gateways[0].name",
    );
    let text = routing_with(
        "\ninternet:\n",
        "\nvpn_gateways:\n  - { name: rt-web, network: hub, public_ip: 203.0.113.90 }\n\ninternet:\n",
    );
    refused(
        &text,
        "  - name: rt-web",
        "route_tables[0].name",
        "name rt-web is already used by vpn_gateways[0].name",
    );
    // Hosts are another kind: a route table may share a host's name.
    valid(&routing_with("name: rt-web", "name: web1"));
}

/// routing.yaml with the client's address replaced by `address`.
fn client_at(address: &str) -> String {
    routing_with("address: 198.51.100.20", &format!("address: {address}"))
}

#[test]
fn internet_host_addresses() {
    for (address, reason) in [
        (
            "8.8.8.8",
            "8.8.8.8 is not a public address of the lab's internet (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24)",
        ),
        ("192.0.2.1", "192.0.2.1 is the internet's router"),
        (
            "198.51.100.0",
            "198.51.100.0 is the network or broadcast address of its range",
        ),
        (
            "192.0.2.255",
            "192.0.2.255 is the network or broadcast address of its range",
        ),
        ("client", "\"client\" is not an IPv4 address"),
    ] {
        refused(
            &client_at(address),
            "name: client",
            "internet.hosts[0].address",
            reason,
        );
    }
    // Two hosts on one address: the later one is refused.
    refused(
        &client_at("203.0.113.80"),
        "name: server",
        "internet.hosts[1].address",
        "203.0.113.80 is already used by internet.hosts[0].address",
    );
    // Any other address of the three ranges will do.
    let topo = valid(&client_at("192.0.2.2"));
    assert_eq!(topo.internet.hosts[0].address, ip("192.0.2.2"));
    // The public IP and NAT gateway addresses are taken.
    let text = client_at("203.0.113.10");
    refused(
        &text,
        "name: web1-ip",
        "public_ips[0].address",
        "203.0.113.10 is already used by internet.hosts[0].address",
    );
}

#[test]
fn internet_host_names() {
    let text = routing_with("name: client", "name: web1");
    refused(
        &text,
        "address: 198.51.100.20",
        "internet.hosts[0].name",
        "name web1 is already used by hosts[0].name",
    );
    let text = routing_with("name: client", "name: sw2");
    refused(
        &text,
        "address: 198.51.100.20",
        "internet.hosts[0].name",
        "name sw2 is already used by switches[1].name",
    );
    let text = routing_with("name: client", "name: hv1");
    refused(
        &text,
        "address: 198.51.100.20",
        "internet.hosts[0].name",
        "name hv1 is already used by hypervisors[0].name",
    );
    let text = routing_with("name: server", "name: client");
    refused(
        &text,
        "address: 203.0.113.80",
        "internet.hosts[1].name",
        "name client is already used by internet.hosts[0].name",
    );
    let text = routing_with("name: client", "name: internet");
    refused(
        &text,
        "address: 198.51.100.20",
        "internet.hosts[0].name",
        "name internet is reserved (the lab's internet namespace); choose another",
    );
    let text = routing_with("name: client", "name: Client");
    refused(
        &text,
        "address: 198.51.100.20",
        "internet.hosts[0].name",
        "name \"Client\" must be",
    );
}

#[test]
fn networks_keep_off_the_internet() {
    let dmz = "  - name: dmz\n    cidr: 203.0.113.64/26\n";
    let text = routing_plus(OPS, dmz);
    let e = errors_of(&text);
    let found: Vec<_> = e
        .errors
        .iter()
        .map(|e| (e.path.as_str(), e.reason.as_str(), e.line.unwrap_or(0)))
        .collect();
    assert_eq!(
        found,
        [
            (
                "networks[3].cidr",
                "network dmz (203.0.113.64/26) overlaps the internet's public range 203.0.113.0/24",
                line_of(&text, "cidr: 203.0.113.64/26"),
            ),
            (
                "internet.hosts[1].address",
                "203.0.113.80 is inside network dmz (203.0.113.64/26); public addresses are in no network",
                line_of(&text, "name: server"),
            ),
        ],
        "{e}"
    );
    // A network holding a whole range, and one inside the router's range.
    let text = routing_plus(OPS, "  - name: dmz\n    cidr: 192.0.0.0/16\n");
    refused(
        &text,
        "cidr: 192.0.0.0/16",
        "networks[3].cidr",
        "network dmz (192.0.0.0/16) overlaps the internet's public range 192.0.2.0/24",
    );
    // Without an internet the ranges are free.
    let text = without_internet().replacen(OPS, &format!("{OPS}{dmz}"), 1);
    valid(&text);
}

#[test]
fn internet_gateways() {
    let text = routing_with("network: hub }", "network: hubs }");
    let e = errors_of(&text);
    let first = &e.errors[0];
    assert_eq!(first.path, "internet_gateways[0].network", "{e}");
    assert_eq!(first.reason, "no network named hubs");
    assert_eq!(first.line, Some(line_of(&text, "network: hubs")));
    // What relied on it is refused too.
    assert!(
        e.errors[1..]
            .iter()
            .all(|e| e.reason.contains("network hub has no internet gateway")
                || e.reason
                    .contains("network hub of web1:eth0 has no internet gateway")),
        "{e}"
    );
    let text = routing_plus(IGW, "  - { name: igw-two, network: hub }\n");
    refused(
        &text,
        "name: igw-two",
        "internet_gateways[1].network",
        "network hub already has internet gateway igw-hub; a network takes one",
    );
    // An internet gateway alone makes an internet (the router).
    let text = without_internet().replacen(
        "\nsecurity:\n",
        "\ninternet_gateways:\n  - { name: igw-spoke, network: spoke }\n\nsecurity:\n",
        1,
    );
    let topo = valid(&text);
    assert!(topo.internet.present && topo.internet.hosts.is_empty());
    assert!(topo.has_uplink("sw2") && !topo.has_uplink("sw1"));
}

#[test]
fn public_ips() {
    let text = routing_with("interface: web1:eth0", "interface: web9:eth0");
    refused(
        &text,
        "interface: web9:eth0",
        "public_ips[0].interface",
        "no host interface web9:eth0 (nor a switch port linked to one)",
    );
    let text = routing_with("interface: web1:eth0", "interface: web1");
    refused(
        &text,
        "interface: web1 }",
        "public_ips[0].interface",
        "\"web1\": want host:interface, like web1:eth0",
    );
    // A switch port stands for the host interface linked to it.
    let text = routing_with("interface: web1:eth0", "interface: sw1:p1");
    assert_eq!(
        valid(&text).internet.public_ips[0].interface,
        InterfaceRef {
            host: "web1".into(),
            interface: "eth0".into()
        }
    );
    let text = routing_with("interface: web1:eth0", "interface: db1:eth0");
    refused(
        &text,
        "interface: db1:eth0",
        "public_ips[0].interface",
        "network spoke of db1:eth0 has no internet gateway (add one under internet_gateways)",
    );
    let text = routing_plus(
        PUBLIC_IP,
        "  - { name: web1-ip2, address: 203.0.113.11, interface: sw1:p1 }\n",
    );
    refused(
        &text,
        "interface: sw1:p1",
        "public_ips[1].interface",
        "sw1:p1 already has public IP web1-ip",
    );
    let text = routing_with("address: 203.0.113.10", "address: 203.0.113.20");
    refused(
        &text,
        "name: nat-hub",
        "nat_gateways[0].address",
        "203.0.113.20 is already used by public_ips[0].address",
    );
    let text = routing_with("address: 203.0.113.10", "address: 10.20.1.11");
    refused(
        &text,
        "address: 10.20.1.11,",
        "public_ips[0].address",
        "10.20.1.11 is not a public address of the lab's internet",
    );
    // A public IP maps to an IPv4 interface.
    let text = routing_plus(
        OPS,
        "  - name: six\n    cidr: fd00::/48\n    subnets:\n      - { name: s, cidr: \"fd00::/64\" }\n",
    )
    .replacen(
        "      - { name: p3, mode: access, vlan: 20 }\n",
        "      - { name: p3, mode: access, vlan: 20 }\n      - { name: p4 }\n",
        1,
    )
    .replacen(
        "\nlinks:\n",
        "  - { name: v6h, interfaces: [{ name: eth0, subnet: six/s, address: \"fd00::10/64\" }] }\n\nlinks:\n  - [v6h:eth0, sw1:p4]\n",
        1,
    );
    valid(&text);
    let text = text.replacen("interface: web1:eth0", "interface: v6h:eth0", 1);
    refused(
        &text,
        "interface: v6h:eth0",
        "public_ips[0].interface",
        "a public IP maps to an IPv4 interface",
    );
    // A second public IP elsewhere is fine.
    let text = routing_plus(
        PUBLIC_IP,
        "  - { name: web2-ip, address: 203.0.113.11, interface: web2:eth0 }\n",
    );
    let topo = valid(&text);
    assert_eq!(
        topo.internet.public_ip_of("web2", "eth0").unwrap().address,
        ip("203.0.113.11")
    );
}

#[test]
fn nat_gateway_subnets() {
    let text = routing_with("subnets: [hub/web, hub/app] }", "subnets: [] }");
    refused(
        &text,
        "name: nat-hub",
        "nat_gateways[0].subnets",
        "a NAT gateway serves at least one subnet",
    );
    let text = routing_with(
        "address: 203.0.113.20, subnets: [hub/web, hub/app] }",
        "address: 203.0.113.20 }",
    );
    refused(
        &text,
        "name: nat-hub",
        "nat_gateways[0].subnets",
        "a NAT gateway serves at least one subnet",
    );
    let text = routing_with(
        "subnets: [hub/web, hub/app] }",
        "subnets: [hub/web, spoke/db] }",
    );
    refused(
        &text,
        "name: nat-hub",
        "nat_gateways[0].subnets[1]",
        "subnet spoke/db is not in network hub: a NAT gateway serves one network",
    );
    let text = routing_with(
        "subnets: [hub/web, hub/app] }",
        "subnets: [hub/web, hub/nope] }",
    );
    refused(
        &text,
        "name: nat-hub",
        "nat_gateways[0].subnets[1]",
        "no subnet hub/nope",
    );
    let two = "  - name: nat-two\n    address: 203.0.113.21\n    subnets:\n      - hub/nope\n      - hub/app\n";
    let text = routing_plus(NAT, two);
    let e = errors_of(&text);
    let found: Vec<_> = e
        .errors
        .iter()
        .map(|e| (e.path.as_str(), e.reason.as_str(), e.line.unwrap_or(0)))
        .collect();
    assert_eq!(
        found,
        [
            (
                "nat_gateways[1].subnets[0]",
                "no subnet hub/nope",
                line_of(&text, "- hub/nope")
            ),
            (
                "nat_gateways[1].subnets[1]",
                "subnet hub/app already has NAT gateway nat-hub",
                line_of(&text, "      - hub/app")
            ),
        ],
        "{e}"
    );
    let text = routing_with("subnets: [hub/web, hub/app] }", "subnets: [hub/web, web] }");
    refused(
        &text,
        "name: nat-hub",
        "nat_gateways[0].subnets[1]",
        "web is listed twice",
    );
}

#[test]
fn nat_gateway_ports() {
    let with_ports = |ports: &str| {
        routing_with(
            "subnets: [hub/web, hub/app] }",
            &format!("subnets: [hub/web, hub/app], ports: {ports} }}"),
        )
    };
    let topo = valid(&with_ports("2000-3000"));
    assert_eq!(topo.internet.nat_gateways[0].ports, (2000, 3000));
    let topo = valid(&with_ports("5000"));
    assert_eq!(topo.internet.nat_gateways[0].ports, (5000, 5000));
    for ports in ["\"80,443\"", "0-10", "\"*\"", "3000-2000", "70000", "many"] {
        let text = with_ports(ports);
        let written = ports.trim_matches('"');
        refused(
            &text,
            "name: nat-hub",
            "nat_gateways[0].ports",
            &format!("{written:?}: want one range of source ports, like 1024-65535"),
        );
    }
}

#[test]
fn nat_gateway_switch_and_network() {
    let text = routing_with(
        "subnets: [hub/web, hub/app] }",
        "subnets: [hub/web, hub/app], switch: sw9 }",
    );
    refused(
        &text,
        "switch: sw9",
        "nat_gateways[0].switch",
        "no switch named sw9",
    );
    // By default the first switch holding hosts of its subnets: sw2 is the
    // first with a host of spoke/db.
    let spoke = routing_plus(IGW, "  - { name: igw-spoke, network: spoke }\n");
    let text = spoke.replacen(
        NAT,
        &format!("{NAT}  - {{ name: nat-spoke, address: 203.0.113.21, subnets: [spoke/db] }}\n"),
        1,
    );
    let topo = valid(&text);
    let nat = topo.internet.nat_gateway_of("spoke", "db").unwrap();
    assert_eq!(
        (nat.name.as_str(), nat.switch.as_str()),
        ("nat-spoke", "sw2")
    );
    assert_eq!(nat.network, "spoke");
    // Without spoke's internet gateway.
    let text = routing_plus(
        NAT,
        "  - { name: nat-spoke, address: 203.0.113.21, subnets: [spoke/db] }\n",
    );
    refused(
        &text,
        "name: nat-spoke",
        "nat_gateways[1]",
        "network spoke has no internet gateway (add one under internet_gateways)",
    );
    // A subnet no switch holds hosts of needs its switch named.
    let spare = spoke.replacen(
        "      - { name: db, cidr: 10.21.1.0/24 }\n",
        "      - { name: db, cidr: 10.21.1.0/24 }\n      - { name: spare, cidr: 10.21.9.0/24 }\n",
        1,
    );
    let text = spare.replacen(
        NAT,
        &format!("{NAT}  - {{ name: nat-spare, address: 203.0.113.21, subnets: [spoke/spare] }}\n"),
        1,
    );
    refused(
        &text,
        "name: nat-spare",
        "nat_gateways[1].switch",
        "no switch has hosts of its subnets: name the switch that translates with switch:",
    );
    let text = spare.replacen(
        NAT,
        &format!(
            "{NAT}  - {{ name: nat-spare, address: 203.0.113.21, subnets: [spoke/spare], switch: sw1 }}\n"
        ),
        1,
    );
    let topo = valid(&text);
    assert_eq!(
        topo.internet
            .nat_gateway_of("spoke", "spare")
            .unwrap()
            .switch,
        "sw1"
    );
    assert!(topo.has_uplink("sw1"));
}

#[test]
fn reserved_names_and_port_numbers() {
    let text = ROUTING.replace("ops1", "internet");
    refused(
        &text,
        "name: internet,",
        "hosts[5].name",
        "name internet is reserved (the lab's internet namespace); choose another",
    );
    let text = ROUTING.replace("sw2", "underlay");
    refused(
        &text,
        "name: underlay",
        "switches[1].name",
        "name underlay is reserved (the lab's underlay namespace); choose another",
    );
    let text = ROUTING
        .replacen(
            "      - { name: p3, mode: access, vlan: 20 }",
            "      - { name: uplink, mode: access, vlan: 20 }",
            1,
        )
        .replacen("sw1:p3", "sw1:uplink", 1);
    refused(
        &text,
        "name: uplink",
        "switches[0].ports[2].name",
        "port name uplink is reserved for the internet uplink; choose another",
    );
    for number in [65_000, 65_001] {
        let text = routing_with(
            "{ name: p1, mode: access, vlan: 10 }",
            &format!("{{ name: p1, number: {number}, mode: access, vlan: 10 }}"),
        );
        refused(
            &text,
            &format!("number: {number}"),
            "switches[0].ports[0].number",
            &format!(
                "port number {number} is reserved (65000: the VXLAN endpoint, 65001: the internet uplink)"
            ),
        );
    }
    let text = routing_with(
        "{ name: p1, mode: access, vlan: 10 }",
        "{ name: p1, number: 65002, mode: access, vlan: 10 }",
    );
    assert_eq!(valid(&text).switches[0].ports[0].number, 65_002);
}
