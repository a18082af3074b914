//! `sdn status`: what is up, whether it runs, where its logs are.

use crate::lab::record::LabRecord;
use crate::{client, topology};
use anyhow::Result;
use sdn_proto::management as mgmt;
use serde_json::{Value, json};
use std::time::Duration;

/// Asks a lab's controller for its status, if it answers within a second or two.
async fn controller_status(lab: &LabRecord) -> Option<mgmt::StatusReply> {
    let attempt = async {
        let mut management = client::connect(&lab.controller).await.ok()?;
        management
            .status(mgmt::StatusRequest {})
            .await
            .ok()
            .map(|r| r.into_inner())
    };
    tokio::time::timeout(Duration::from_secs(3), attempt)
        .await
        .ok()
        .flatten()
}

fn lab_json(lab: &LabRecord, status: Option<&mgmt::StatusReply>) -> Value {
    let topology = topology::load(&lab.topology_copy).ok();
    let controller = lab.process("controller");
    let switches: Vec<Value> = lab
        .processes
        .iter()
        .filter(|p| p.role == "switch")
        .map(|p| {
            let live = status.and_then(|s| s.switches.iter().find(|w| w.name == p.name));
            json!({
                "name": p.name,
                "pid": p.pid,
                "running": p.is_alive(),
                "log": p.log,
                "namespace": topology.as_ref().map_or_else(|| format!("{}-{}", lab.name, p.name), |t| t.namespace_of(&p.name)),
                "connected": live.map(|w| w.connected),
                "synced": live.map(|w| w.synced),
                "datapath_id": live.map(|w| format!("{:#x}", w.datapath_id)),
                "flows": live.map(|w| w.flow_count),
                "learned_macs": live.map(|w| w.learned_macs),
                "connections": live.map(|w| w.connections),
                "ports": live.map(|w| w.ports.iter().map(|p| json!({"number": p.number, "name": p.name, "offloads": p.offloads})).collect::<Vec<_>>()),
                "vlans": live.map(|w| w.port_vlans.iter().map(port_vlans_json).collect::<Vec<_>>()),
                "vtep": live.and_then(|w| w.vtep.as_ref()).map(vtep_json),
            })
        })
        .collect();
    let hosts: Vec<Value> = topology
        .as_ref()
        .map(|t| {
            t.hosts
                .iter()
                .map(|h| {
                    json!({
                        "name": h.name,
                        "namespace": t.namespace_of(&h.name),
                        "interfaces": h.interfaces.iter().map(|i| json!({
                            "name": i.name,
                            "address": format!("{}/{}", i.address, i.prefix_len),
                            "mac": i.mac.to_string(),
                            "subnet": format!("{}/{}", i.network, i.subnet),
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let (networks, internet) = topology
        .as_ref()
        .map(|t| (networks_json(t), internet_json(t)))
        .unwrap_or_default();
    // On-premises sites: their router, hosts and IPsec daemon.
    let sites: Vec<Value> = topology
        .as_ref()
        .map(|t| {
            t.vpn
                .onprem_sites
                .iter()
                .map(|site| {
                    let ipsec = lab
                        .processes
                        .iter()
                        .find(|p| p.role == "ipsec" && p.name == format!("charon-{}", site.name));
                    json!({
                        "name": site.name,
                        "namespace": t.namespace_of(&site.name),
                        "public_ip": site.public_ip.to_string(),
                        "lan": site.lan.to_string(),
                        "hosts": site.hosts.iter().map(|h| json!({
                            "name": h.name,
                            "namespace": t.namespace_of(&h.name),
                            "address": h.address.to_string(),
                        })).collect::<Vec<_>>(),
                        "ipsec": ipsec.map(|p| json!({
                            "name": p.name,
                            "pid": p.pid,
                            "running": p.is_alive(),
                            "log": p.log,
                        })),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "name": lab.name,
        "topology": lab.topology,
        "created_unix": lab.created_unix,
        "run_dir": lab.dir(),
        "controller": {
            "address": lab.controller,
            "pid": controller.map(|p| p.pid),
            "running": controller.is_some_and(|p| p.is_alive()),
            "answering": status.is_some(),
            "log": controller.map(|p| p.log.clone()),
        },
        "switches": switches,
        "hosts": hosts,
        "networks": networks,
        "internet": internet,
        "sites": sites,
        "namespaces": lab.namespaces,
    })
}

/// Networks with their subnets' gateways, route tables and NAT gateways.
fn networks_json(t: &topology::Topology) -> Value {
    let networks: Vec<Value> = t
        .networks
        .iter()
        .map(|n| {
            let peers: Vec<&str> = t
                .networks
                .iter()
                .filter(|o| t.routing.peered(&n.name, &o.name))
                .map(|o| o.name.as_str())
                .collect();
            json!({
                "name": n.name,
                "cidr": n.cidr.to_string(),
                "internet_gateway": t.internet.gateway_of(&n.name).map(|g| g.name.clone()),
                "peered_with": peers,
                "subnets": n.subnets.iter().map(|s| json!({
                    "name": s.name,
                    "cidr": s.cidr.to_string(),
                    "gateway": s.gateway.map(|g| g.to_string()),
                    "route_table": t.routing.table_of(&n.name, &s.name).map(|r| r.name.clone()),
                    "nat_gateway": t.internet.nat_gateway_of(&n.name, &s.name).map(|g| g.name.clone()),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Value::from(networks)
}

/// The internet's router and hosts, public IPs and NAT gateways.
fn internet_json(t: &topology::Topology) -> Value {
    if !t.internet.present {
        return Value::Null;
    }
    json!({
        "namespace": crate::lab::internet::router_namespace(t),
        "router": crate::topology::routing::INTERNET_ROUTER.to_string(),
        "hosts": t.internet.hosts.iter().map(|h| json!({
            "name": h.name,
            "address": h.address.to_string(),
            "namespace": t.namespace_of(&h.name),
        })).collect::<Vec<_>>(),
        "public_ips": t.internet.public_ips.iter().map(|p| json!({
            "name": p.name,
            "address": p.address.to_string(),
            "interface": format!("{}:{}", p.interface.host, p.interface.interface),
        })).collect::<Vec<_>>(),
        "nat_gateways": t.internet.nat_gateways.iter().map(|g| json!({
            "name": g.name,
            "address": g.address.to_string(),
            "ports": format!("{}-{}", g.ports.0, g.ports.1),
            "switch": g.switch,
        })).collect::<Vec<_>>(),
    })
}

/// `sdn status` lines for the networks and the internet.
fn network_lines(lab: &Value) -> Vec<String> {
    let text = |v: &Value| v.as_str().unwrap_or("?").to_string();
    let mut lines = Vec::new();
    for n in lab["networks"].as_array().into_iter().flatten() {
        let mut line = format!("network {} {}", text(&n["name"]), text(&n["cidr"]));
        if let Some(igw) = n["internet_gateway"].as_str() {
            line.push_str(&format!("  internet gateway {igw}"));
        }
        let peers: Vec<String> = n["peered_with"]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect();
        if !peers.is_empty() {
            line.push_str(&format!("  peered with {}", peers.join(", ")));
        }
        lines.push(line);
        for s in n["subnets"].as_array().into_iter().flatten() {
            let mut line = format!(
                "        subnet {:<8} {:<18} gateway {}",
                text(&s["name"]),
                text(&s["cidr"]),
                s["gateway"].as_str().unwrap_or("none")
            );
            if let Some(rt) = s["route_table"].as_str() {
                line.push_str(&format!("  route table {rt}"));
            }
            if let Some(nat) = s["nat_gateway"].as_str() {
                line.push_str(&format!("  NAT gateway {nat}"));
            }
            lines.push(line);
        }
    }
    let i = &lab["internet"];
    if i.is_object() {
        lines.push(format!(
            "internet netns {}  router {}",
            text(&i["namespace"]),
            text(&i["router"])
        ));
        for h in i["hosts"].as_array().into_iter().flatten() {
            lines.push(format!(
                "        host {:<10} {:<15} netns {}",
                text(&h["name"]),
                text(&h["address"]),
                text(&h["namespace"])
            ));
        }
        for p in i["public_ips"].as_array().into_iter().flatten() {
            lines.push(format!(
                "        public IP {} {} -> {}",
                text(&p["name"]),
                text(&p["address"]),
                text(&p["interface"])
            ));
        }
        for g in i["nat_gateways"].as_array().into_iter().flatten() {
            lines.push(format!(
                "        NAT gateway {} {} ports {} on {}",
                text(&g["name"]),
                text(&g["address"]),
                text(&g["ports"]),
                text(&g["switch"])
            ));
        }
    }
    lines
}

fn port_vlans_json(p: &mgmt::PortVlans) -> Value {
    json!({
        "port": p.name,
        "number": p.number,
        "mode": p.mode,
        "untagged_vlan": (p.untagged_vlan != 0).then_some(p.untagged_vlan),
        "tagged_vlans": p.tagged_vlans,
        "pcp": p.pcp,
        "dropped": p.dropped,
    })
}

fn vtep_json(v: &mgmt::Vtep) -> Value {
    json!({
        "address": v.address,
        "reported": v.reported,
        "udp_port": v.udp_port,
        "dropped": v.dropped,
        "vnis": v.vnis.iter().map(|n| json!({
            "vni": n.vni,
            "vlan": n.vlan,
            "remotes": n.remotes,
            "remote_macs": n.remote_macs,
        })).collect::<Vec<_>>(),
    })
}

/// One line per port: `p1 access 10`, `t1 trunk 10,20 native 30`.
fn vlan_lines(s: &Value) -> Vec<String> {
    let text = |v: &Value| v.as_str().unwrap_or("?").to_string();
    let dropped = |v: &Value| {
        v.as_u64()
            .map(|n| format!("  {n} dropped"))
            .unwrap_or_default()
    };
    let mut lines: Vec<String> = s["vlans"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let tagged: Vec<String> = p["tagged_vlans"]
                .as_array()
                .into_iter()
                .flatten()
                .map(Value::to_string)
                .collect();
            let untagged = p["untagged_vlan"].as_u64();
            let what = match (text(&p["mode"]).as_str(), untagged) {
                ("trunk", Some(n)) => format!("trunk {} native {n}", tagged.join(",")),
                ("trunk", None) => format!("trunk {}", tagged.join(",")),
                (_, Some(n)) if p["pcp"].as_u64().unwrap_or(0) > 0 => {
                    format!("access {n} pcp {}", p["pcp"])
                }
                (_, n) => format!("access {}", n.unwrap_or(0)),
            };
            format!(
                "port {:<6} {what}{}",
                text(&p["port"]),
                dropped(&p["dropped"])
            )
        })
        .collect();
    if let Some(v) = s["vtep"].as_object() {
        let reported = v["reported"]
            .as_str()
            .filter(|r| !r.is_empty() && Some(*r) != v["address"].as_str());
        lines.push(format!(
            "vtep {}:{}{}{}",
            text(&v["address"]),
            v["udp_port"],
            reported
                .map(|r| format!(" (switch reports {r})"))
                .unwrap_or_default(),
            dropped(&v["dropped"]),
        ));
        for n in v["vnis"].as_array().into_iter().flatten() {
            let remotes: Vec<String> = n["remotes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            let number = |key: &str| n[key].as_u64().unwrap_or(0);
            lines.push(format!(
                "vni {:<8} vlan {:<4} floods to {}; {} remote host(s) programmed",
                number("vni"),
                number("vlan"),
                if remotes.is_empty() {
                    "nobody".to_string()
                } else {
                    remotes.join(" ")
                },
                number("remote_macs"),
            ));
        }
    }
    lines
}

fn running(flag: bool) -> &'static str {
    if flag { "running" } else { "STOPPED" }
}

fn print_lab(lab: &Value) {
    let text = |v: &Value| v.as_str().unwrap_or("?").to_string();
    println!(
        "lab {}  (from {}; run dir {})",
        text(&lab["name"]),
        text(&lab["topology"]),
        text(&lab["run_dir"])
    );
    let c = &lab["controller"];
    println!(
        "  controller  pid {:<7} {}{}  {}  log {}",
        c["pid"],
        running(c["running"].as_bool().unwrap_or(false)),
        if c["answering"].as_bool().unwrap_or(false) {
            ""
        } else {
            ", not answering"
        },
        text(&c["address"]),
        text(&c["log"])
    );
    for s in lab["switches"].as_array().into_iter().flatten() {
        let state = match (s["connected"].as_bool(), s["synced"].as_bool()) {
            (Some(true), Some(true)) => format!(
                "connected, synced, {} flows, {} MACs learned",
                s["flows"], s["learned_macs"]
            ),
            (Some(true), _) => "connected, syncing".to_string(),
            (Some(false), _) => "not connected to the controller".to_string(),
            _ => "controller unreachable".to_string(),
        };
        println!(
            "  switch {:<4} pid {:<7} {}  {}  log {}",
            text(&s["name"]),
            s["pid"],
            running(s["running"].as_bool().unwrap_or(false)),
            state,
            text(&s["log"])
        );
        let ports: Vec<String> = s["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| format!("{}({})", text(&p["name"]), p["number"]))
            .collect();
        if !ports.is_empty() {
            println!(
                "              netns {}  ports {}",
                text(&s["namespace"]),
                ports.join(" ")
            );
        }
        for line in vlan_lines(s) {
            println!("              {line}");
        }
    }
    for h in lab["hosts"].as_array().into_iter().flatten() {
        let interfaces: Vec<String> = h["interfaces"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                format!(
                    "{} {} {}",
                    text(&i["name"]),
                    text(&i["address"]),
                    text(&i["mac"])
                )
            })
            .collect();
        println!(
            "  host   {:<4} netns {:<14} {}",
            text(&h["name"]),
            text(&h["namespace"]),
            interfaces.join(", ")
        );
    }
    for site in lab["sites"].as_array().into_iter().flatten() {
        let hosts: Vec<String> = site["hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| format!("{} {}", text(&h["name"]), text(&h["address"])))
            .collect();
        println!(
            "  site   {:<4} netns {:<14} {} lan {}  hosts {}",
            text(&site["name"]),
            text(&site["namespace"]),
            text(&site["public_ip"]),
            text(&site["lan"]),
            hosts.join(", ")
        );
        let ipsec = &site["ipsec"];
        if !ipsec.is_null() {
            println!(
                "              {} pid {:<7} {}  log {}",
                text(&ipsec["name"]),
                ipsec["pid"],
                running(ipsec["running"].as_bool().unwrap_or(false)),
                text(&ipsec["log"])
            );
        }
    }
    for line in network_lines(lab) {
        println!("  {line}");
    }
}

pub(super) async fn status(name: Option<&str>, as_json: bool) -> Result<()> {
    let labs = match name {
        Some(name) => vec![super::resolve_lab(Some(name))?],
        None => LabRecord::all(),
    };
    let mut values = Vec::new();
    for lab in &labs {
        let live = controller_status(lab).await;
        values.push(lab_json(lab, live.as_ref()));
    }
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "labs": values }))?
        );
    } else if values.is_empty() {
        println!("no lab is up; start one with `sudo sdn up topologies/demo.yaml`");
    } else {
        for lab in &values {
            print_lab(lab);
        }
    }
    Ok(())
}
