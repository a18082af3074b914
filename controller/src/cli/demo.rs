//! `sdn demo`: brings a lab up (if it is not) and shows traffic flowing:
//! ping between every pair of hosts, a 10 MB TCP transfer checked byte for
//! byte, and what the switches learned. The lab stays up to explore.

use crate::lab::{self, UpOptions, record::LabRecord};
use crate::{client, topology, traffic};
use anyhow::{Result, bail};
use sdn_proto::management as mgmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

pub(super) async fn demo(path: &Path) -> Result<()> {
    let topology = topology::load(path)?;
    lab::require_root("sdn demo")?;
    let lab = match LabRecord::load(&topology.name)? {
        Some(lab) if lab.processes.iter().all(|p| p.is_alive()) => {
            println!("lab {} is already up", topology.name);
            lab
        }
        _ => {
            let lab = lab::up(
                &topology,
                &UpOptions {
                    resume: LabRecord::load(&topology.name)?.is_some(),
                    timeout: Duration::from_secs(30),
                },
            )
            .await?;
            println!(
                "lab {} is up: {} hosts, {} switch(es)",
                topology.name,
                topology.hosts.len(),
                topology.switches.len()
            );
            lab
        }
    };
    let hosts: Vec<(String, std::net::Ipv4Addr)> = topology
        .hosts
        .iter()
        .filter_map(|h| match h.interfaces.first().map(|i| i.address) {
            Some(IpAddr::V4(a)) => Some((h.name.clone(), a)),
            _ => None,
        })
        .collect();
    if hosts.len() < 2 {
        bail!("the demo needs two hosts with IPv4 addresses");
    }
    println!("\nping (3 echo requests each way):");
    let mut failures = 0;
    for (i, (from, _)) in hosts.iter().enumerate() {
        for (to, address) in hosts.iter().skip(i + 1).chain(hosts.iter().take(i)) {
            if to == from {
                continue;
            }
            let rtts = traffic::ping(&topology.namespace_of(from), *address, 3)?;
            let answered: Vec<f64> = rtts
                .iter()
                .flatten()
                .map(|d| d.as_secs_f64() * 1000.0)
                .collect();
            if answered.len() < rtts.len() {
                failures += 1;
            }
            let average = if answered.is_empty() {
                f64::NAN
            } else {
                answered.iter().sum::<f64>() / answered.len() as f64
            };
            println!(
                "  {from:>4} -> {to:<4} ({address:<15}) {}/{} replies, avg {average:.3} ms",
                answered.len(),
                rtts.len()
            );
        }
    }
    let ((client, _), (server, server_address)) = (&hosts[0], &hosts[1]);
    let data = traffic::pattern(10 * 1024 * 1024, 1);
    let (transfer, _) = traffic::tcp_transfer(
        &topology.namespace_of(server),
        &topology.namespace_of(client),
        SocketAddr::new(IpAddr::V4(*server_address), 5999),
        data,
    )?;
    println!(
        "\ntcp {client} -> {server}: {} bytes in {:.3} s ({:.2} Gbit/s), {}",
        transfer.bytes,
        transfer.elapsed.as_secs_f64(),
        transfer.bytes as f64 * 8.0 / transfer.elapsed.as_secs_f64() / 1e9,
        if transfer.intact {
            "intact"
        } else {
            "CORRUPTED"
        }
    );
    let mut management = client::connect(&lab.controller).await?;
    let status = management
        .status(mgmt::StatusRequest {})
        .await?
        .into_inner();
    println!();
    for switch in &status.switches {
        println!(
            "switch {}: {} flows, {} MACs learned (see `sudo sdn dump-flows {}`)",
            switch.name, switch.flow_count, switch.learned_macs, switch.name
        );
    }
    println!(
        "\nexplore: sudo sdn status | sudo ip netns exec {} ping {} | sudo sdn capture {} <port> -w out.pcap -c 20\nremove:  sudo sdn down {}",
        topology.namespace_of(client),
        server_address,
        topology.switches.first().map_or("sw1", |s| s.name.as_str()),
        path.display()
    );
    if failures > 0 || !transfer.intact {
        bail!(
            "traffic did not flow as expected; logs are in {}",
            lab.dir().display()
        );
    }
    Ok(())
}
