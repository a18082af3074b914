//! `sdn vpn status`: per VPN connection its IKE SA (state, SPIs, when it
//! came up, rekeys), its child SAs and what crossed them, and the drops of
//! the gateway's ESP port, read from the status each gateway's switch
//! writes every second in the lab's run directory.

use anyhow::{Context, Result};
use sdn_vswitch::vpn_status::{GatewayStatus, STATUS_PREFIX};
use std::path::Path;

/// Every gateway status file in `dir`, by gateway name.
pub(crate) fn read_statuses(dir: &Path) -> Result<Vec<GatewayStatus>> {
    let mut statuses = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(statuses),
        Err(err) => return Err(err).with_context(|| format!("read {}", dir.display())),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(STATUS_PREFIX) && name.ends_with(".json")) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path())
            .with_context(|| format!("read {}", entry.path().display()))?;
        let status: GatewayStatus = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a gateway status", entry.path().display()))?;
        statuses.push(status);
    }
    statuses.sort_by(|a, b| a.gateway.cmp(&b.gateway));
    Ok(statuses)
}

fn age(updated: u64, at: u64) -> String {
    match at.checked_sub(updated) {
        Some(s) if s <= 3 => String::new(),
        Some(s) => format!(" (status {s}s old: is the switch running?)"),
        None => String::new(),
    }
}

fn since(at: Option<u64>, now: u64) -> String {
    at.map_or_else(|| "-".into(), |t| format!("{}s ago", now.saturating_sub(t)))
}

pub(super) fn status(lab: Option<&str>, as_json: bool) -> Result<()> {
    let lab = super::resolve_lab(lab)?;
    let statuses = read_statuses(&crate::lab::record::run_dir(&lab.name))?;
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "gateways": statuses }))?
        );
        return Ok(());
    }
    if statuses.is_empty() {
        println!("lab {} has no running VPN gateway", lab.name);
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for g in &statuses {
        println!(
            "gateway {} {}{}: ESP drops {} (unknown SPI {}, replayed {}, authentication {}, malformed {}, no SA {})",
            g.gateway,
            g.public_ip,
            age(g.updated, now),
            g.port.dropped,
            g.port.unknown_spi,
            g.port.replayed,
            g.port.auth_failed,
            g.port.malformed,
            g.port.no_sa
        );
        for c in &g.connections {
            let spis = c
                .ike_spis
                .as_ref()
                .map_or_else(|| "-".into(), |(i, r)| format!("{i}/{r}"));
            println!(
                "  connection {} → {}: {}{} IKE SA {} up {} rekeys child {} IKE {}{}",
                c.name,
                c.peer,
                c.state,
                if c.nat_t { " (UDP 4500)" } else { "" },
                spis,
                since(c.established_at, now),
                c.child_rekeys,
                c.ike_rekeys,
                c.last_down
                    .as_ref()
                    .map_or(String::new(), |d| format!(", last down: {d}"))
            );
            println!(
                "    {} out: {} packets {} bytes; in: {} packets {} bytes; retransmissions {}, liveness checks {}, peer dead {}",
                c.algorithms.as_deref().unwrap_or("-"),
                c.packets_out,
                c.bytes_out,
                c.packets_in,
                c.bytes_in,
                c.retransmissions,
                c.liveness_checks,
                c.peer_dead
            );
            for sa in &c.child_sas {
                println!(
                    "    child SA {} {}{}: {} packets {} bytes, replayed {}, authentication failed {}",
                    sa.direction,
                    sa.spi,
                    if sa.current { "" } else { " (draining)" },
                    sa.packets,
                    sa.bytes,
                    sa.replayed,
                    sa.auth_failed
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdn_vswitch::vpn_status::{ConnectionStatus, PortStatus, status_path};

    #[test]
    fn the_status_files_of_a_run_directory_read_back_by_gateway() {
        let dir = std::env::temp_dir().join(format!("sdn-vpn-status-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = |name: &str| GatewayStatus {
            gateway: name.into(),
            public_ip: "203.0.113.90".parse().unwrap(),
            updated: 1,
            port: PortStatus {
                unknown_spi: 1,
                replayed: 2,
                auth_failed: 3,
                malformed: 0,
                no_sa: 0,
                dropped: 6,
            },
            connections: vec![ConnectionStatus {
                name: "c".into(),
                peer: "198.51.100.90".parse().unwrap(),
                state: "established".into(),
                ike_spis: Some(("01".into(), "02".into())),
                algorithms: Some("Aes256Gcm16".into()),
                nat_t: true,
                established_at: Some(1),
                last_down: None,
                child_rekeys: 3,
                ike_rekeys: 1,
                retransmissions: 0,
                liveness_checks: 0,
                peer_dead: 0,
                packets_out: 10,
                bytes_out: 840,
                packets_in: 9,
                bytes_in: 756,
                child_sas: Vec::new(),
            }],
        };
        for name in ["west-gw", "east-gw"] {
            let text = serde_json::to_string(&status(name)).unwrap();
            std::fs::write(status_path(&dir, name), text).unwrap();
        }
        std::fs::write(dir.join("lab.json"), "{}").unwrap();
        let read = read_statuses(&dir).unwrap();
        let names: Vec<&str> = read.iter().map(|g| g.gateway.as_str()).collect();
        assert_eq!(names, ["east-gw", "west-gw"]);
        assert_eq!(read[0].connections[0].child_rekeys, 3);
        assert_eq!(read[0].port.replayed, 2);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            read_statuses(&dir).unwrap().is_empty(),
            "no directory, no gateways"
        );
    }
}
