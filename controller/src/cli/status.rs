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
                "namespace": format!("{}-{}", lab.name, p.name),
                "connected": live.map(|w| w.connected),
                "synced": live.map(|w| w.synced),
                "datapath_id": live.map(|w| format!("{:#x}", w.datapath_id)),
                "flows": live.map(|w| w.flow_count),
                "learned_macs": live.map(|w| w.learned_macs),
                "connections": live.map(|w| w.connections),
                "ports": live.map(|w| w.ports.iter().map(|p| json!({"number": p.number, "name": p.name, "offloads": p.offloads})).collect::<Vec<_>>()),
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
        "namespaces": lab.namespaces,
    })
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
