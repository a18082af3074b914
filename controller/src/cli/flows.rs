//! `sdn dump-flows` and `sdn dump-ports`: a switch's tables and counters,
//! read from the switch through the controller.

use crate::client;
use anyhow::{Context, Result};
use sdn_proto::management as mgmt;
use sdn_vswitch::flow::text::format_flow;
use sdn_vswitch::flow::{FlowStats, PortNo};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

async fn port_names(
    management: &mut sdn_proto::management::management_client::ManagementClient<
        tonic::transport::Channel,
    >,
    switch: &str,
) -> HashMap<PortNo, String> {
    match management.status(mgmt::StatusRequest {}).await {
        Ok(reply) => reply
            .into_inner()
            .switches
            .into_iter()
            .filter(|s| s.name == switch)
            .flat_map(|s| s.ports)
            .map(|p| (p.number, p.name))
            .collect(),
        Err(_) => HashMap::new(),
    }
}

/// A text match like `tcp,in_port=p1,tp_dst=80` as a JSON object.
fn fields_json(text: &str) -> Value {
    let mut map = Map::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some((k, v)) => map.insert(k.to_string(), Value::String(v.to_string())),
            None => map.insert(part.to_string(), Value::Bool(true)),
        };
    }
    Value::Object(map)
}

pub(super) async fn dump_flows(
    switch: &str,
    lab: Option<&str>,
    table: Option<u32>,
    as_json: bool,
) -> Result<()> {
    let lab = super::resolve_lab(lab)?;
    let mut management = client::connect(&lab.controller).await?;
    let names = port_names(&mut management, switch).await;
    let reply = management
        .dump_flows(mgmt::DumpFlowsRequest {
            switch: switch.to_string(),
            table_id: table,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    let flows: Vec<FlowStats> = reply
        .flows
        .iter()
        .map(FlowStats::try_from)
        .collect::<Result<_, _>>()
        .context("the switch sent a flow this tool cannot read")?;
    let name_of = |p: PortNo| names.get(&p).cloned();
    if as_json {
        let entries: Vec<Value> = flows
            .iter()
            .map(|f| {
                let mut matcher = String::new();
                let _ = f.spec.matcher.write_text(&mut matcher, &name_of);
                let mut actions = String::new();
                let _ = sdn_vswitch::flow::action::write_actions(
                    &mut actions,
                    &f.spec.actions,
                    &name_of,
                );
                json!({
                    "table": f.spec.table,
                    "priority": f.spec.priority,
                    "cookie": format!("{:#x}", f.spec.cookie),
                    "match": fields_json(&matcher),
                    "match_text": matcher,
                    "actions": actions,
                    "n_packets": f.packets,
                    "n_bytes": f.bytes,
                    "duration_s": f.duration.as_secs_f64(),
                    "idle_age_s": f.idle_age.as_secs_f64(),
                    "idle_timeout": f.spec.idle_timeout.as_secs(),
                    "hard_timeout": f.spec.hard_timeout.as_secs(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({ "switch": switch, "lab": lab.name, "flows": entries })
            )?
        );
    } else {
        for f in &flows {
            println!(" {}", format_flow(f, &name_of));
        }
    }
    Ok(())
}

pub(super) async fn dump_ports(switch: &str, lab: Option<&str>, as_json: bool) -> Result<()> {
    let lab = super::resolve_lab(lab)?;
    let mut management = client::connect(&lab.controller).await?;
    let reply = management
        .port_stats(mgmt::PortStatsRequest {
            switch: switch.to_string(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    let datapath = reply.datapath.unwrap_or_default();
    if as_json {
        let ports: Vec<Value> = reply
            .ports
            .iter()
            .map(|p| {
                json!({
                    "port": p.port, "name": p.name,
                    "rx_packets": p.rx_packets, "rx_bytes": p.rx_bytes, "rx_dropped": p.rx_dropped, "rx_errors": p.rx_errors,
                    "tx_packets": p.tx_packets, "tx_bytes": p.tx_bytes, "tx_dropped": p.tx_dropped, "tx_errors": p.tx_errors,
                })
            })
            .collect();
        let value = json!({
            "switch": switch,
            "ports": ports,
            "datapath": {
                "packet_in_sent": datapath.packet_in_sent,
                "packet_in_dropped": datapath.packet_in_dropped,
                "cache_hits": datapath.cache_hits,
                "cache_misses": datapath.cache_misses,
                "segmented_frames": datapath.segmented_frames,
                "icmp_sent": datapath.icmp_sent,
                "icmp_limited": datapath.icmp_limited,
                "ttl_expired": datapath.ttl_expired,
                "too_big": datapath.too_big,
                "fragmented_frames": datapath.fragmented_frames,
            }
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        for p in &reply.ports {
            println!(
                "  port {:>3} {:<8} rx pkts={} bytes={} drop={} errs={}\n               tx pkts={} bytes={} drop={} errs={}",
                p.port,
                p.name,
                p.rx_packets,
                p.rx_bytes,
                p.rx_dropped,
                p.rx_errors,
                p.tx_packets,
                p.tx_bytes,
                p.tx_dropped,
                p.tx_errors
            );
        }
        println!(
            "  datapath: cache hits={} misses={}, packet-ins sent={} dropped={}, segmented={}",
            datapath.cache_hits,
            datapath.cache_misses,
            datapath.packet_in_sent,
            datapath.packet_in_dropped,
            datapath.segmented_frames
        );
        println!(
            "  router:   ICMP errors sent={} rate-limited={}, TTL expired={}, too big (DF)={}, fragmented={}",
            datapath.icmp_sent,
            datapath.icmp_limited,
            datapath.ttl_expired,
            datapath.too_big,
            datapath.fragmented_frames
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_text_as_json() {
        assert_eq!(
            fields_json("tcp,in_port=p1,tp_dst=80"),
            json!({"tcp": true, "in_port": "p1", "tp_dst": "80"})
        );
        assert_eq!(fields_json(""), json!({}));
    }
}
