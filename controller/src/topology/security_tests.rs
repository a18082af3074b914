//! The security section: the firewall example, and each mistake reported
//! with its line and reason.

use super::security::*;
use super::*;
use crate::security::resolve::switch_firewall;
use crate::security::rules::{Direction, Layer};
use std::path::Path;

const FIREWALL: &str = include_str!("../../../topologies/firewall.yaml");

fn firewall_with(from: &str, to: &str) -> String {
    assert!(FIREWALL.contains(from), "firewall.yaml has no {from:?}");
    FIREWALL.replacen(from, to, 1)
}

/// The single error of `text`: (line, path, reason).
fn only_error(text: &str) -> (u64, String, String) {
    let e = parse(text, Path::new("fw.yaml")).expect_err("the file should be refused");
    assert_eq!(e.errors.len(), 1, "{e}");
    let error = &e.errors[0];
    (
        error.line.unwrap_or(0),
        error.path.clone(),
        error.reason.clone(),
    )
}

fn line_of(text: &str, needle: &str) -> u64 {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle") as u64
        + 1
}

#[test]
fn firewall_example_resolves_per_port() {
    let topo = parse(FIREWALL, Path::new("firewall.yaml")).unwrap();
    assert_eq!(topo.security.nsgs.len(), 2);
    assert_eq!(topo.security.acgs.len(), 2);
    assert_eq!(topo.security.flow_log_rate, Some(20));
    let fw = switch_firewall(&topo, "sw1");
    // client (p1) is not filtered; web1, web2, app1 and db1 are.
    assert_eq!(
        fw.ports.iter().map(|p| p.port).collect::<Vec<_>>(),
        vec![2, 3, 4, 5]
    );
    let db = fw.ports.iter().find(|p| p.port == 5).unwrap();
    let Some(Layer::Acg {
        names,
        outbound_open,
        rules,
    }) = &db.policy.nic
    else {
        panic!("db1 has ACGs");
    };
    assert_eq!(names, &["db-app", "db-monitoring"]);
    assert!(outbound_open);
    assert_eq!(rules.len(), 3);
    let app = fw.ports.iter().find(|p| p.port == 4).unwrap();
    let Some(layer @ Layer::Nsg { .. }) = &app.policy.nic else {
        panic!("app1 has an NSG");
    };
    // The ASG `web` became the two web servers' addresses.
    let from_web = layer.rules(Direction::Inbound).next().unwrap();
    assert_eq!(from_web.origin.rule, "from-web");
    assert_eq!(
        from_web.src,
        crate::security::rules::Addresses::Prefixes(vec![
            "10.30.0.11/32".parse().unwrap(),
            "10.30.0.12/32".parse().unwrap()
        ])
    );
    // Defaults follow the user's rules in each direction.
    let names: Vec<_> = layer
        .rules(Direction::Outbound)
        .map(|r| r.origin.rule.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "AllowVnetOutBound",
            "AllowInternetOutBound",
            "DenyAllOutBound"
        ]
    );
}

#[test]
fn priority_out_of_range_or_reused() {
    let text = firewall_with("priority: 300,", "priority: 99,");
    let (line, path, reason) = only_error(&text);
    assert_eq!(line, line_of(&text, "priority: 99,"));
    assert_eq!(path, "security.nsgs[0].rules[2].priority");
    assert!(reason.contains("want 100 to 4096"), "{reason}");
    let text = firewall_with("priority: 300,", "priority: 200,");
    let (_, _, reason) = only_error(&text);
    assert!(
        reason.contains("already used by inbound rule allow-web"),
        "{reason}"
    );
    // The same priority in the other direction is fine.
    let text = firewall_with(
        "name: to-app, priority: 100,",
        "name: to-app, priority: 200,",
    );
    assert!(parse(&text, Path::new("fw.yaml")).is_ok());
}

#[test]
fn bad_ports_and_addresses() {
    let text = firewall_with("destination_ports: 1-1024", "destination_ports: 1024-1");
    let (_, path, reason) = only_error(&text);
    assert_eq!(path, "security.nsgs[0].rules[1].destination_ports");
    assert!(reason.contains("runs backwards"), "{reason}");
    let text = firewall_with("destination_ports: 1-1024", "destination_ports: 70000");
    assert!(only_error(&text).2.contains("not a port"));
    let text = firewall_with("source: 10.30.0.10 }", "source: 10.30.0.300 }");
    let (line, _, reason) = only_error(&text);
    assert_eq!(line, line_of(&text, "10.30.0.300"));
    assert!(reason.contains("not an IPv4 address or CIDR"), "{reason}");
    let text = firewall_with("source: 10.30.0.10 }", "source: 10.30.0.10/8 }");
    assert!(
        only_error(&text)
            .2
            .contains("not an IPv4 address or CIDR without host bits")
    );
    let text = firewall_with("source: web,", "source: webs,");
    assert!(only_error(&text).2.contains("an ASG of this file"));
    let text = firewall_with(
        "protocol: icmp }",
        "protocol: icmp, destination_ports: 80 }",
    );
    assert!(only_error(&text).2.contains("ICMP has no ports"));
    let text = firewall_with("protocol: icmp }", "protocol: gre }");
    assert!(only_error(&text).2.contains("want one of"));
    // ESP and AH are protocols of their own, without ports.
    for (written, name) in [("esp", "ESP"), ("ah", "AH")] {
        let text = firewall_with("protocol: icmp }", &format!("protocol: {written} }}"));
        assert!(parse(&text, Path::new("fw.yaml")).is_ok(), "{written}");
        let text = firewall_with(
            "protocol: icmp }",
            &format!("protocol: {written}, destination_ports: 500 }}"),
        );
        assert!(
            only_error(&text)
                .2
                .contains(&format!("{name} has no ports"))
        );
    }
}

#[test]
fn acg_limits() {
    // A fourth ACG on one interface.
    let mut text = FIREWALL.to_string();
    for n in 0..2 {
        text.push_str(&format!(
            "    - {{ name: extra{n}, interfaces: [db1:eth0], inbound: [{{ protocol: tcp, ports: 1 }}] }}\n"
        ));
    }
    let (line, path, reason) = only_error(&text);
    assert_eq!(line, line_of(&text, "name: extra1"));
    assert_eq!(path, "security.acgs[3].interfaces[0]");
    assert!(reason.contains("at most 3 per interface"), "{reason}");
    // 101 rules in one ACG.
    let rules: Vec<String> = (0..101)
        .map(|p| format!("{{ protocol: tcp, ports: {} }}", p + 1))
        .collect();
    let text = format!(
        "{FIREWALL}    - {{ name: big, interfaces: [], inbound: [{}] }}\n",
        rules.join(", ")
    );
    assert!(only_error(&text).2.contains("at most 100"));
    // An ACG where an NSG is attached.
    let text = firewall_with(
        "interfaces: [db1:eth0]",
        "interfaces: [db1:eth0, app1:eth0]",
    );
    assert!(only_error(&text).2.contains("NSG or ACG rules, not both"));
    // An inbound ACG rule naming a destination.
    let text = firewall_with(
        "{ protocol: icmp, source: 10.30.0.10 }",
        "{ protocol: icmp, destination: 10.30.0.10 }",
    );
    assert!(only_error(&text).2.contains("names its source only"));
}

#[test]
fn attachments_must_exist() {
    let text = firewall_with("interfaces: [app1:eth0]", "interfaces: [app9:eth0]");
    let (_, path, reason) = only_error(&text);
    assert_eq!(path, "security.nsgs[1].interfaces[0]");
    assert!(reason.contains("no host interface app9:eth0"), "{reason}");
    // An error about a later entry points at that entry, whatever came before.
    let text = firewall_with(
        "interfaces: [app1:eth0]",
        "interfaces: [nope:eth0, web1:eth0]",
    );
    let e = parse(&text, Path::new("fw.yaml")).expect_err("refused");
    let paths: Vec<&str> = e.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "security.nsgs[1].interfaces[0]",
            "security.nsgs[1].interfaces[1]"
        ]
    );
    assert!(e.errors[1].reason.contains("already has NSG web-nsg"));
    // A switch port names the host interface linked to it.
    let text = firewall_with("interfaces: [app1:eth0]", "interfaces: [sw1:p4]");
    let topo = parse(&text, Path::new("fw.yaml")).unwrap();
    assert_eq!(
        topo.security.nsgs[1].interfaces,
        vec![InterfaceRef {
            host: "app1".into(),
            interface: "eth0".into()
        }]
    );
    let text = firewall_with("on_rule_removal: keep", "on_rule_removal: later");
    assert!(only_error(&text).2.contains("want keep"));
}

#[test]
fn subnet_nsg_applies_to_its_interfaces() {
    let text = firewall_with(
        "      interfaces: [app1:eth0]\n",
        "      interfaces: [app1:eth0]\n      subnets: [tiers]\n",
    );
    let topo = parse(&text, Path::new("fw.yaml")).unwrap();
    assert_eq!(
        topo.security.nsgs[1].subnets,
        vec![SubnetRef {
            network: "vnet".into(),
            subnet: "tiers".into()
        }]
    );
    // A subnet named twice in one list is a repeat, not a second NSG.
    let twice = firewall_with(
        "      interfaces: [app1:eth0]\n",
        "      interfaces: [app1:eth0]\n      subnets: [tiers, vnet/tiers]\n",
    );
    let (line, path, reason) = only_error(&twice);
    assert_eq!(line, line_of(&twice, "vnet/tiers"));
    assert_eq!(path, "security.nsgs[1].subnets[1]");
    assert_eq!(reason, "vnet/tiers is listed twice");
    let fw = switch_firewall(&topo, "sw1");
    // The client is now filtered too, by the subnet's NSG.
    assert_eq!(fw.ports.len(), 5);
    let client = fw.ports.iter().find(|p| p.port == 1).unwrap();
    assert!(client.policy.nic.is_none() && client.policy.subnet.is_some());
}
