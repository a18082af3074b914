//! `sdn lb status`: each load balancer's frontends and rules, and every
//! backend's health, last probe and connections.

use crate::client;
use anyhow::{Result, anyhow};
use sdn_proto::management as mgmt;
use serde_json::json;

pub(super) async fn status(lab: Option<&str>, as_json: bool) -> Result<()> {
    let lab = super::resolve_lab(lab)?;
    let mut management = client::connect(&lab.controller).await?;
    let reply = management
        .lb_status(mgmt::LbStatusRequest {})
        .await
        .map_err(|s| anyhow!("{}", s.message()))?
        .into_inner();
    if as_json {
        let lbs: Vec<_> = reply
            .load_balancers
            .iter()
            .map(|lb| {
                json!({
                    "name": lb.name, "network": lb.network, "switch": lb.switch,
                    "frontends": lb.frontends.iter().map(|f| json!({
                        "name": f.name, "address": f.address, "kind": f.kind,
                    })).collect::<Vec<_>>(),
                    "rules": lb.rules.iter().map(|r| json!({
                        "name": r.name, "frontend": r.frontend, "protocol": r.protocol,
                        "frontend_port": r.frontend_port, "backend_port": r.backend_port,
                        "pool": r.pool, "probe": (!r.probe.is_empty()).then_some(&r.probe),
                        "algorithm": r.algorithm, "group": r.group,
                        "backends": r.backends.iter().map(|b| json!({
                            "interface": b.interface, "address": b.address, "weight": b.weight,
                            "health": b.health,
                            "last_probe": (!b.last_probe.is_empty()).then_some(&b.last_probe),
                            "last_probe_age_s": (!b.last_probe.is_empty())
                                .then_some(b.last_probe_age_ms as f64 / 1000.0),
                            "live_connections": b.live_connections,
                            "total_connections": b.total_connections,
                            "packets": b.packets, "bytes": b.bytes, "draining": b.draining,
                        })).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "load_balancers": lbs }))?
        );
        return Ok(());
    }
    if reply.load_balancers.is_empty() {
        println!("lab {} has no load balancers", lab.name);
    }
    for lb in &reply.load_balancers {
        let frontends: Vec<String> = lb
            .frontends
            .iter()
            .map(|f| format!("{} {} ({})", f.name, f.address, f.kind))
            .collect();
        println!(
            "load balancer {} (network {}, on {}): {}",
            lb.name,
            lb.network,
            lb.switch,
            frontends.join(", ")
        );
        for r in &lb.rules {
            let group = format!("lb={}", r.group);
            let probe = if r.probe.is_empty() {
                "no probe".to_string()
            } else {
                format!("probe {}", r.probe)
            };
            println!(
                "  rule {}: {} {}:{} -> pool {}:{}, {}, {probe}, {group}",
                r.name,
                r.protocol,
                r.frontend,
                r.frontend_port,
                r.pool,
                r.backend_port,
                r.algorithm
            );
            println!(
                "    {:<12} {:<14} {:>6} {:<10} {:<16} {:>6} {:>8} {:>10} {:>12}",
                "backend",
                "address",
                "weight",
                "health",
                "last probe",
                "live",
                "total",
                "packets",
                "bytes"
            );
            for b in &r.backends {
                let last = if b.last_probe.is_empty() {
                    "-".to_string()
                } else {
                    format!(
                        "{} {:.1}s ago",
                        b.last_probe,
                        b.last_probe_age_ms as f64 / 1000.0
                    )
                };
                println!(
                    "    {:<12} {:<14} {:>6} {:<10} {:<16} {:>6} {:>8} {:>10} {:>12}",
                    b.interface,
                    b.address,
                    b.weight,
                    b.health,
                    last,
                    b.live_connections,
                    b.total_connections,
                    b.packets,
                    b.bytes
                );
            }
        }
    }
    Ok(())
}
