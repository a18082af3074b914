//! Topology parsing and validation: the demo file, and each kind of mistake
//! reported with file, line, path and reason.

use super::*;
use std::path::Path;

const DEMO: &str = include_str!("../../../topologies/demo.yaml");

fn errors_of(text: &str) -> TopologyErrors {
    parse(text, Path::new("lab.yaml")).expect_err("the file should be refused")
}

/// The demo file with one line replaced.
fn demo_with(from: &str, to: &str) -> String {
    assert!(DEMO.contains(from), "demo has no {from:?}");
    DEMO.replacen(from, to, 1)
}

fn line_of(text: &str, needle: &str) -> u64 {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle in text") as u64
        + 1
}

#[test]
fn demo_is_valid() {
    let topo = parse(DEMO, Path::new("demo.yaml")).unwrap();
    assert_eq!(topo.name, "demo");
    assert_eq!(topo.hosts.len(), 3);
    assert_eq!(
        topo.switches[0]
            .ports
            .iter()
            .map(|p| p.number)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let h2 = &topo.host("h2").unwrap().interfaces[0];
    assert_eq!(h2.address, "10.0.0.12".parse::<std::net::IpAddr>().unwrap());
    assert_eq!(h2.prefix_len, 24);
    assert!(!h2.mac.is_multicast() && h2.mac.0[0] == 0x02);
    assert_ne!(h2.mac, topo.host("h1").unwrap().interfaces[0].mac);
    assert_eq!(topo.namespace_of("h1"), "demo-h1");
    assert_eq!(
        topo.namespaces(),
        vec!["demo-h1", "demo-h2", "demo-h3", "demo-sw1"]
    );
    assert_eq!(topo.links.len(), 3);
    assert_eq!(topo.controller.listen, Listen::Unix);
}

#[test]
fn unknown_field() {
    let text = demo_with(
        "    fail_mode: secure",
        "    fail_mode: secure\n    colour: blue",
    );
    let e = errors_of(&text);
    assert_eq!(e.errors.len(), 1);
    assert_eq!(e.errors[0].line, Some(line_of(&text, "colour")));
    assert!(e.errors[0].reason.contains("unknown field `colour`"), "{e}");
    assert!(e.to_string().starts_with("lab.yaml:"), "{e}");
    assert!(
        e.to_string().contains("colour: blue"),
        "quotes the line: {e}"
    );
}

#[test]
fn duplicate_names() {
    let text = demo_with("  - name: h3\n", "  - name: h2\n");
    let e = errors_of(&text);
    let dup = e
        .errors
        .iter()
        .find(|x| x.reason.contains("already used"))
        .expect("duplicate reported");
    assert_eq!(dup.path, "hosts[2].name");
    assert_eq!(dup.line, Some(line_of(&text, "- name: h2") + 3));
    let text = demo_with("      - name: p3", "      - name: p2");
    let e = errors_of(&text);
    assert!(
        e.errors
            .iter()
            .any(|x| x.reason == "switch sw1 has two ports named p2"),
        "{e}"
    );
}

#[test]
fn link_to_missing_port_or_node() {
    let text = demo_with("[h3:eth0, sw1:p3]", "[h3:eth0, sw1:p9]");
    let e = errors_of(&text);
    let missing = &e.errors[0];
    assert_eq!(missing.path, "links[2][1]");
    assert_eq!(missing.reason, "sw1 has no port or interface named p9");
    assert_eq!(missing.line, Some(line_of(&text, "sw1:p9")));
    assert!(
        e.errors
            .iter()
            .any(|x| x.reason.contains("sw1:p3 is not linked")),
        "{e}"
    );
    let e = errors_of(&demo_with("[h3:eth0, sw1:p3]", "[h3:eth0, sw9:p3]"));
    assert!(
        e.errors
            .iter()
            .any(|x| x.reason == "no host or switch named sw9"),
        "{e}"
    );
    let e = errors_of(&demo_with("[h3:eth0, sw1:p3]", "[h3:eth0, sw1:p1]"));
    assert!(
        e.errors
            .iter()
            .any(|x| x.reason.contains("sw1:p1 is already linked by links[0][1]")),
        "{e}"
    );
    let e = errors_of(&demo_with("[h3:eth0, sw1:p3]", "[h3-eth0, sw1:p3]"));
    assert!(
        e.errors
            .iter()
            .any(|x| x.reason.contains("want node:device")),
        "{e}"
    );
}

#[test]
fn address_outside_subnet_and_prefix_mismatch() {
    let text = demo_with("address: 10.0.0.13/24", "address: 10.0.1.13/24");
    let e = errors_of(&text);
    assert_eq!(e.errors.len(), 1, "{e}");
    assert_eq!(e.errors[0].path, "hosts[2].interfaces[0].address");
    assert_eq!(
        e.errors[0].reason,
        "10.0.1.13 is not inside subnet vnet1/web (10.0.0.0/24)"
    );
    assert_eq!(e.errors[0].line, Some(line_of(&text, "10.0.1.13")));
    let e = errors_of(&demo_with("address: 10.0.0.13/24", "address: 10.0.0.13/16"));
    assert!(e.errors[0].reason.contains("prefix /16 differs"), "{e}");
    let e = errors_of(&demo_with("address: 10.0.0.13/24", "address: 10.0.0.255"));
    assert!(e.errors[0].reason.contains("broadcast"), "{e}");
    let e = errors_of(&demo_with("address: 10.0.0.13/24", "address: 10.0.0.12"));
    assert!(
        e.errors[0]
            .reason
            .contains("already assigned to hosts[1].interfaces[0]"),
        "{e}"
    );
    let e = errors_of(&demo_with("address: 10.0.0.13/24", "address: ten"));
    assert!(e.errors[0].reason.contains("malformed address"), "{e}");
}

#[test]
fn hosts_keep_off_the_gateway() {
    let text = demo_with("address: 10.0.0.13/24", "address: 10.0.0.1/24");
    let e = errors_of(&text);
    assert_eq!(e.errors.len(), 1, "{e}");
    assert_eq!(e.errors[0].path, "hosts[2].interfaces[0].address");
    assert!(
        e.errors[0]
            .reason
            .starts_with("10.0.0.1 is the gateway of subnet vnet1/web"),
        "{e}"
    );
    assert_eq!(e.errors[0].line, Some(line_of(&text, "10.0.0.1/24")));
    // Another gateway frees .1 and takes its own address.
    let moved = text.replace(
        "cidr: 10.0.0.0/24",
        "cidr: 10.0.0.0/24\n        gateway: 10.0.0.254",
    );
    let topo = parse(&moved, Path::new("t.yaml")).unwrap();
    assert_eq!(
        topo.networks[0].subnets[0].gateway,
        Some("10.0.0.254".parse().unwrap())
    );
    let e = errors_of(
        &demo_with("address: 10.0.0.12/24", "address: 10.0.0.254/24").replace(
            "cidr: 10.0.0.0/24",
            "cidr: 10.0.0.0/24\n        gateway: 10.0.0.254",
        ),
    );
    assert!(e.errors[0].reason.contains("is the gateway"), "{e}");
    for (gateway, reason) in [
        ("10.0.1.1", "not inside subnet"),
        ("10.0.0.0", "network or broadcast"),
        ("ten", "not an IPv4 address"),
    ] {
        let e = errors_of(&demo_with(
            "cidr: 10.0.0.0/24",
            &format!("cidr: 10.0.0.0/24\n        gateway: {gateway}"),
        ));
        assert!(e.errors[0].reason.contains(reason), "{gateway}: {e}");
        assert_eq!(e.errors[0].path, "networks[0].subnets[0].gateway");
    }
    let topo = parse(DEMO, Path::new("demo.yaml")).unwrap();
    assert_eq!(
        topo.networks[0].subnets[0].gateway,
        Some("10.0.0.1".parse().unwrap()),
        "the first host address by default"
    );
}

#[test]
fn subnets_inside_networks_and_not_overlapping() {
    let e = errors_of(&demo_with(
        "        cidr: 10.0.0.0/24\n",
        "        cidr: 10.0.0.0/24\n      - name: app\n        cidr: 10.0.0.128/25\n      - name: db\n        cidr: 10.1.0.0/24\n",
    ));
    let reasons: Vec<&str> = e.errors.iter().map(|x| x.reason.as_str()).collect();
    assert!(
        reasons.contains(&"subnet 10.0.0.128/25 overlaps subnet web (10.0.0.0/24)"),
        "{e}"
    );
    assert!(
        reasons.contains(&"subnet 10.1.0.0/24 is not inside network vnet1 (10.0.0.0/16)"),
        "{e}"
    );
    assert_eq!(e.errors[0].path, "networks[0].subnets[1].cidr");
}

#[test]
fn malformed_cidrs() {
    let e = errors_of(&demo_with("cidr: 10.0.0.0/16", "cidr: 10.0.0/16"));
    assert!(
        e.errors[0].reason.contains("malformed CIDR \"10.0.0/16\""),
        "{e}"
    );
    assert_eq!(e.errors[0].path, "networks[0].cidr");
    let e = errors_of(&demo_with("cidr: 10.0.0.0/24", "cidr: 10.0.0.1/24"));
    assert!(
        e.errors[0]
            .reason
            .contains("has host bits set; did you mean 10.0.0.0/24?"),
        "{e}"
    );
}

#[test]
fn collects_every_error_at_once() {
    let text = demo_with("fail_mode: secure", "fail_mode: open")
        .replacen("address: 10.0.0.11/24", "address: 192.168.0.1/24", 1)
        .replacen("name: demo", "name: Demo!", 1);
    let e = errors_of(&text);
    assert_eq!(e.errors.len(), 3, "{e}");
    let paths: Vec<&str> = e.errors.iter().map(|x| x.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "name",
            "switches[0].fail_mode",
            "hosts[0].interfaces[0].address"
        ]
    );
}

#[test]
fn syntax_and_type_errors_have_locations() {
    let e = errors_of("name: demo\nswitches: [\n");
    assert!(e.errors[0].line.is_some(), "{e}");
    let e = errors_of(
        "name: demo\nswitches:\n  - name: sw1\n    ports:\n      - name: p1\n        number: -3\n",
    );
    assert_eq!(e.errors[0].line, Some(6), "{e}");
    let e = errors_of("switches: []\n");
    assert!(e.errors[0].reason.contains("missing field `name`"), "{e}");
    assert!(
        load(Path::new("/nonexistent/topology.yaml"))
            .unwrap_err()
            .to_string()
            .contains("cannot read")
    );
}

#[test]
fn controller_settings() {
    let text = demo_with(
        "name: demo\n",
        "name: demo\ncontroller:\n  listen: tcp:127.0.0.1:6653\n  mac_aging: 60\n",
    );
    let topo = parse(&text, Path::new("x.yaml")).unwrap();
    assert_eq!(
        topo.controller.listen,
        Listen::Tcp("127.0.0.1:6653".parse().unwrap())
    );
    assert_eq!(
        topo.controller.mac_aging,
        std::time::Duration::from_secs(60)
    );
    let e = errors_of(&demo_with(
        "name: demo\n",
        "name: demo\ncontroller:\n  listen: nowhere\n",
    ));
    assert!(e.errors[0].reason.contains("want \"unix\""), "{e}");
}

#[test]
fn macs_and_mtus() {
    let e = errors_of(&demo_with(
        "address: 10.0.0.11/24 }",
        "address: 10.0.0.11/24, mac: \"01:00:5e:00:00:01\", mtu: 20 }",
    ));
    let reasons: Vec<&str> = e.errors.iter().map(|x| x.reason.as_str()).collect();
    assert!(
        reasons.iter().any(|r| r.contains("not a unicast address")),
        "{e}"
    );
    assert!(reasons.iter().any(|r| r.contains("MTU 20")), "{e}");
}

const VLAN: &str = include_str!("../../../topologies/vlan.yaml");
const VXLAN: &str = include_str!("../../../topologies/vxlan.yaml");

#[test]
fn vlan_and_vxlan_examples_are_valid() {
    let vlan = parse(VLAN, Path::new("vlan.yaml")).unwrap();
    let sw1 = vlan.switch("sw1").unwrap();
    assert!(vlan.vlan_aware(sw1));
    assert_eq!(sw1.ports[0].mode, PortMode::Access { vlan: 10, pcp: 0 });
    assert_eq!(
        sw1.ports[3].mode,
        PortMode::Trunk {
            vlans: vec![10, 20],
            native: Some(30)
        }
    );
    assert!(
        !parse(DEMO, Path::new("demo.yaml"))
            .unwrap()
            .vlan_aware(&parse(DEMO, Path::new("d")).unwrap().switches[0])
    );

    let vxlan = parse(VXLAN, Path::new("vxlan.yaml")).unwrap();
    assert_eq!(
        vxlan.namespace_of("sw1"),
        "vxlan-hv1",
        "a switch lives in its hypervisor's namespace"
    );
    assert_eq!(vxlan.namespace_of("a1"), "vxlan-a1");
    assert_eq!(
        vxlan.namespaces(),
        vec![
            "vxlan-underlay",
            "vxlan-hv1",
            "vxlan-hv2",
            "vxlan-a1",
            "vxlan-b1",
            "vxlan-a2",
            "vxlan-b2"
        ]
    );
    assert_eq!(vxlan.switch("sw2").unwrap().vlan_vni.get(&20), Some(&5002));
    assert_eq!(
        vxlan.host("a1").unwrap().interfaces[0].mtu,
        1450,
        "room for VXLAN's 50 bytes"
    );
    assert_eq!(vxlan.underlay.as_ref().unwrap().mtu, 1500);
}

#[test]
fn port_mode_mistakes() {
    let cases = [
        (
            "{ name: p1, mode: access, vlan: 10 }",
            "{ name: p1, mode: access }",
            "an access port needs vlan",
        ),
        (
            "{ name: p1, mode: access, vlan: 10 }",
            "{ name: p1, mode: access, vlan: 4095 }",
            "VLAN 4095: want 1 to 4094",
        ),
        (
            "{ name: p1, mode: access, vlan: 10 }",
            "{ name: p1, mode: access, vlan: 10, pcp: 9 }",
            "PCP 9",
        ),
        (
            "{ name: p1, mode: access, vlan: 10 }",
            "{ name: p1, mode: hybrid, vlan: 10 }",
            "mode \"hybrid\"",
        ),
        (
            "{ name: p1, mode: access, vlan: 10 }",
            "{ name: p1, mode: access, vlan: 10, vlans: [20] }",
            "vlans belongs to a trunk",
        ),
        (
            "{ name: t1, mode: trunk, vlans: [10, 20], native_vlan: 30 }",
            "{ name: t1, mode: trunk, vlans: [10, 10] }",
            "VLAN 10 is listed twice",
        ),
        (
            "{ name: t1, mode: trunk, vlans: [10, 20], native_vlan: 30 }",
            "{ name: t1, mode: trunk }",
            "a trunk needs vlans",
        ),
        (
            "{ name: t1, mode: trunk, vlans: [10, 20], native_vlan: 30 }",
            "{ name: t1, vlans: [10], vlan: 3 }",
            "either vlan (access) or vlans (trunk)",
        ),
    ];
    for (from, to, reason) in cases {
        let e = errors_of(&VLAN.replacen(from, to, 1));
        assert!(
            e.errors.iter().any(|x| x.reason.contains(reason)),
            "{to}: {e}"
        );
        assert!(e.errors.iter().all(|x| x.line.is_some()), "{e}");
    }
}

#[test]
fn overlay_mistakes() {
    let cases = [
        (
            "    hypervisor: hv1\n",
            "    hypervisor: hv9\n",
            "no hypervisor named hv9",
        ),
        (
            "    hypervisor: hv2\n",
            "    hypervisor: hv1\n",
            "hypervisor hv1 already runs switch sw1",
        ),
        (
            "{ name: hv2, address: 192.168.100.2 }",
            "{ name: hv2, address: 192.168.200.2 }",
            "not inside the underlay",
        ),
        (
            "{ name: hv2, address: 192.168.100.2 }",
            "{ name: hv2, address: 192.168.100.1 }",
            "already the address of",
        ),
        (
            "vlan_vni: { 10: 5001, 20: 5002 }   #",
            "vlan_vni: { 10: 5001, 20: 5001 }   #",
            "VNI 5001 is mapped from two VLANs",
        ),
        (
            "vlan_vni: { 10: 5001, 20: 5002 }   #",
            "vlan_vni: { 10: 16777216 }   #",
            "VNI 16777216",
        ),
        ("  mtu: 1500\n", "  mtu: 100\n", "MTU 100"),
        (
            "  - { name: hv2, address: 192.168.100.2 }\n",
            "  - { name: underlay, address: 192.168.100.2 }\n",
            "names its port on the underlay bridge",
        ),
        (
            "  - { name: hv2, address: 192.168.100.2 }\n",
            "  - { name: hypervisor-number-two, address: 192.168.100.2 }\n",
            "use at most 15 characters",
        ),
        (
            "      - { name: p2, mode: access, vlan: 20 }\n",
            "      - { name: underlay0, mode: access, vlan: 20 }\n",
            "is the hypervisor's underlay device",
        ),
        (
            "{ name: eth0, subnet: tenant-a/web, address: 10.1.1.3/24 }",
            "{ name: eth0, subnet: tenant-a/web, address: 10.1.1.3/24, mtu: 1500 }",
            "does not fit VXLAN over an underlay of MTU 1500: use at most 1450, or raise underlay.mtu to 1550",
        ),
    ];
    for (from, to, reason) in cases {
        assert!(VXLAN.contains(from), "{from}");
        let e = errors_of(&VXLAN.replacen(from, to, 1));
        assert!(
            e.errors.iter().any(|x| x.reason.contains(reason)),
            "{to}: {e}"
        );
    }
    let no_underlay = VXLAN.replacen("underlay:\n  cidr: 192.168.100.0/24\n  mtu: 1500\n", "", 1);
    let e = errors_of(&no_underlay);
    assert!(
        e.errors
            .iter()
            .any(|x| x.reason.contains("hypervisors need an underlay")),
        "{e}"
    );
    let no_hypervisor = VXLAN.replacen("    hypervisor: hv1\n", "", 1);
    let e = errors_of(&no_hypervisor);
    assert!(
        e.errors
            .iter()
            .any(|x| x.reason.contains("runs on a hypervisor")),
        "{e}"
    );
    // Raising the underlay MTU makes room for 1500-byte hosts.
    let jumbo = VXLAN
        .replacen("  mtu: 1500\n", "  mtu: 1550\n", 1)
        .replacen(
            "address: 10.1.1.3/24 }",
            "address: 10.1.1.3/24, mtu: 1500 }",
            1,
        );
    assert_eq!(
        parse(&jumbo, Path::new("j.yaml"))
            .unwrap()
            .host("a1")
            .unwrap()
            .interfaces[0]
            .mtu,
        1500
    );
}
