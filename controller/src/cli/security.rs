//! `sdn apply`, `sdn conntrack` and `sdn rules`: change a running lab's
//! security rules, list a switch's tracked connections, show rules with hit
//! counters.

use crate::client;
use anyhow::{Context, Result, anyhow};
use sdn_proto::management as mgmt;
use serde_json::json;
use std::net::Ipv4Addr;
use std::path::Path;

pub(super) async fn apply(topology: &Path) -> Result<()> {
    let text = std::fs::read_to_string(topology)
        .with_context(|| format!("read {}", topology.display()))?;
    // Check locally first, for errors with the file's lines.
    let parsed = crate::topology::parse(&text, topology)?;
    let lab = super::resolve_lab(Some(&parsed.name))?;
    let mut management = client::connect(&lab.controller).await?;
    let reply = management
        .apply(mgmt::ApplyRequest {
            topology_yaml: text.clone(),
            path: topology.display().to_string(),
        })
        .await
        .map_err(|s| anyhow!("{}", s.message()))?
        .into_inner();
    // A restarted controller reads the lab's copy of the file: keep it current.
    std::fs::write(&lab.topology_copy, &text)
        .with_context(|| format!("update {}", lab.topology_copy.display()))?;
    if reply.changed_switches.is_empty() {
        println!("lab {}: security rules and routes unchanged", parsed.name);
    } else {
        println!(
            "lab {}: security rules and routes applied on {} (+{} -{} flows)",
            parsed.name,
            reply.changed_switches.join(", "),
            reply.flows_added,
            reply.flows_removed
        );
    }
    if reply.connections_cut > 0 {
        println!(
            "cut {} connection(s) the new rules do not allow",
            reply.connections_cut
        );
    }
    Ok(())
}

fn addr(bytes: &[u8]) -> String {
    <[u8; 4]>::try_from(bytes).map_or_else(|_| "?".into(), |b| Ipv4Addr::from(b).to_string())
}

/// Whether a connection's replies come back other than to where it went
/// (its reply tuple is not the original reversed).
fn natted(
    orig: &sdn_proto::southbound::ConnTuple,
    reply: &sdn_proto::southbound::ConnTuple,
) -> bool {
    orig.src != reply.dst
        || orig.dst != reply.src
        || orig.sport != reply.dport
        || orig.dport != reply.sport
}

fn proto_name(proto: u32) -> String {
    u8::try_from(proto).map_or_else(|_| proto.to_string(), crate::security::rules::proto_name)
}

pub(super) async fn conntrack(
    switch: &str,
    zone: Option<u32>,
    lab: Option<&str>,
    as_json: bool,
) -> Result<()> {
    let lab = super::resolve_lab(lab)?;
    let mut management = client::connect(&lab.controller).await?;
    let reply = management
        .conntrack(mgmt::ConntrackRequest {
            switch: switch.to_string(),
            zone,
        })
        .await
        .map_err(|s| anyhow!("{}", s.message()))?
        .into_inner();
    let tracker = reply.tracker.unwrap_or_default();
    let port_of = |zone: u32| reply.zone_ports.get(&zone).cloned().unwrap_or_default();
    if as_json {
        let conns: Vec<_> = tracker
            .conns
            .iter()
            .map(|c| {
                let t = c.orig.clone().unwrap_or_default();
                let r = c.reply.clone().unwrap_or_default();
                json!({
                    "zone": c.zone, "port": port_of(c.zone), "proto": proto_name(t.proto),
                    "src": addr(&t.src), "sport": t.sport, "dst": addr(&t.dst), "dport": t.dport,
                    "reply": {"src": addr(&r.src), "sport": r.sport, "dst": addr(&r.dst), "dport": r.dport},
                    "nat": natted(&t, &r),
                    "state": c.state, "age_s": c.age_ms as f64 / 1000.0,
                    "expires_in_s": c.expires_in_ms as f64 / 1000.0,
                    "packets_orig": c.packets_orig, "packets_reply": c.packets_reply,
                    "lb": c.lb_group.map(|group| json!({
                        "group": group,
                        "backend": std::net::Ipv4Addr::from(c.lb_backend).to_string(),
                    })),
                })
            })
            .collect();
        let value = json!({
            "switch": switch, "connections": conns, "count": tracker.count,
            "capacity": tracker.capacity, "committed": tracker.committed,
            "expired": tracker.expired, "invalid": tracker.invalid, "full_drops": tracker.full_drops,
            "nat_exhausted": tracker.nat_exhausted, "lb_no_backend": tracker.lb_no_backend,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "{:<6} {:<10} {:<5} {:<22} {:<22} {:<12} {:>8} {:>9}",
        "zone", "port", "proto", "source", "destination", "state", "age", "expires"
    );
    let ends = |t: &sdn_proto::southbound::ConnTuple| {
        if t.proto == 1 {
            (addr(&t.src), format!("{} id={}", addr(&t.dst), t.sport))
        } else {
            (
                format!("{}:{}", addr(&t.src), t.sport),
                format!("{}:{}", addr(&t.dst), t.dport),
            )
        }
    };
    for c in &tracker.conns {
        let t = c.orig.clone().unwrap_or_default();
        let (src, dst) = ends(&t);
        println!(
            "{:<6} {:<10} {:<5} {:<22} {:<22} {:<12} {:>7.1}s {:>8.1}s",
            c.zone,
            port_of(c.zone),
            proto_name(t.proto),
            src,
            dst,
            c.state,
            c.age_ms as f64 / 1000.0,
            c.expires_in_ms as f64 / 1000.0
        );
        if let Some(r) = c.reply.as_ref().filter(|r| natted(&t, r)) {
            let (src, dst) = ends(r);
            println!("{:<24}NAT: replies {src} -> {dst}", "");
        }
        if let Some(group) = c.lb_group {
            // Backend ids are their addresses (see routing::compile::balance).
            let backend = std::net::Ipv4Addr::from(c.lb_backend);
            println!("{:<24}balanced: lb={group} to backend {backend}", "");
        }
    }
    println!(
        "{} tracked of at most {}; committed {}, expired {}, invalid packets {}, refused when full {}, refused for want of a NAT port {}, refused for want of a backend {}",
        tracker.count,
        tracker.capacity,
        tracker.committed,
        tracker.expired,
        tracker.invalid,
        tracker.full_drops,
        tracker.nat_exhausted,
        tracker.lb_no_backend
    );
    Ok(())
}

pub(super) async fn rules(switch: &str, lab: Option<&str>, as_json: bool) -> Result<()> {
    let lab = super::resolve_lab(lab)?;
    let mut management = client::connect(&lab.controller).await?;
    let reply = management
        .rules(mgmt::RulesRequest {
            switch: switch.to_string(),
        })
        .await
        .map_err(|s| anyhow!("{}", s.message()))?
        .into_inner();
    if as_json {
        let rules: Vec<_> = reply
            .rules
            .iter()
            .map(|r| {
                json!({
                    "group": r.group, "rule": r.rule, "direction": r.direction,
                    "priority": r.priority, "access": r.access,
                    "packets": r.packets, "bytes": r.bytes, "flows": r.flows,
                })
            })
            .collect();
        let value =
            json!({ "switch": switch, "rules": rules, "invalid_packets": reply.invalid_packets });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "{:<16} {:<24} {:<9} {:>8} {:<6} {:>10} {:>12} {:>6}",
        "group", "rule", "direction", "priority", "access", "packets", "bytes", "flows"
    );
    for r in &reply.rules {
        let priority = if r.priority == 0 {
            "-".to_string()
        } else {
            r.priority.to_string()
        };
        println!(
            "{:<16} {:<24} {:<9} {:>8} {:<6} {:>10} {:>12} {:>6}",
            r.group, r.rule, r.direction, priority, r.access, r.packets, r.bytes, r.flows
        );
    }
    println!("packets dropped as out of state: {}", reply.invalid_packets);
    Ok(())
}
