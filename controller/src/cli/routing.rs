//! `sdn routes`: the effective routes of the subnets a switch holds, as
//! Azure's "effective routes" lists them.

use crate::client;
use anyhow::{Result, anyhow};
use sdn_proto::management as mgmt;
use serde_json::json;

pub(super) async fn routes(
    switch: &str,
    subnet: Option<&str>,
    lab: Option<&str>,
    as_json: bool,
) -> Result<()> {
    let lab = super::resolve_lab(lab)?;
    let mut management = client::connect(&lab.controller).await?;
    let reply = management
        .routes(mgmt::RoutesRequest {
            switch: switch.to_string(),
            subnet: subnet.unwrap_or_default().to_string(),
        })
        .await
        .map_err(|s| anyhow!("{}", s.message()))?
        .into_inner();
    if as_json {
        let subnets: Vec<_> = reply
            .subnets
            .iter()
            .map(|s| {
                json!({
                    "network": s.network, "subnet": s.subnet, "cidr": s.cidr,
                    "gateway": s.gateway, "route_table": (!s.route_table.is_empty()).then_some(&s.route_table),
                    "routes": s.routes.iter().map(|r| json!({
                        "source": r.source, "state": r.state, "prefix": r.prefix,
                        "next_hop_type": r.next_hop_type,
                        "next_hop": (!r.next_hop.is_empty()).then_some(&r.next_hop),
                        "name": r.name, "packets": r.packets, "bytes": r.bytes,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "switch": switch, "subnets": subnets }))?
        );
        return Ok(());
    }
    if reply.subnets.is_empty() {
        println!("switch {switch} holds no hosts: it routes nothing");
    }
    for s in &reply.subnets {
        let table = if s.route_table.is_empty() {
            String::new()
        } else {
            format!(", route table {}", s.route_table)
        };
        println!(
            "subnet {}/{} ({}, gateway {}{table})",
            s.network, s.subnet, s.cidr, s.gateway
        );
        println!(
            "  {:<8} {:<8} {:<18} {:<22} {:<16} {:<20} {:>10}",
            "source", "state", "prefix", "next hop type", "next hop", "name", "packets"
        );
        for r in &s.routes {
            let hop = if r.next_hop.is_empty() {
                "-"
            } else {
                &r.next_hop
            };
            println!(
                "  {:<8} {:<8} {:<18} {:<22} {:<16} {:<20} {:>10}",
                r.source, r.state, r.prefix, r.next_hop_type, hop, r.name, r.packets
            );
        }
    }
    Ok(())
}
