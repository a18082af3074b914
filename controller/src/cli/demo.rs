//! `sdn demo`: brings a lab up (if it is not) and shows traffic flowing:
//! ping between every pair of hosts that share a segment and a subnet, one
//! routed ping between every pair of subnets (answered where routes go both
//! ways), one probe between each pair of segments that must stay apart
//! (VLANs, tenants),
//! a 10 MB TCP transfer checked byte for byte, and what the switches learned.
//! The lab stays up to explore.

use crate::lab::{self, UpOptions, record::LabRecord};
use crate::segments::{Segments, same_subnet};
use crate::topology::{Interface, Topology};
use crate::{client, topology, traffic};
use anyhow::{Result, bail};
use sdn_proto::management as mgmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
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
    let Some(((client, _), (server, server_address))) =
        reachable_pairs(&topology).into_iter().next()
    else {
        bail!("the demo needs two hosts with IPv4 addresses in one subnet and one segment");
    };
    let failures = ping_all(&topology)?;
    let data = traffic::pattern(10 * 1024 * 1024, 1);
    let (transfer, _) = traffic::tcp_transfer(
        &topology.namespace_of(&server),
        &topology.namespace_of(&client),
        SocketAddr::new(IpAddr::V4(server_address), 5999),
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
        topology.namespace_of(&client),
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

/// A host and the IPv4 address of one of its interfaces.
type Station = (String, Ipv4Addr);

/// Ordered pairs of host interfaces that should reach each other: one
/// segment, one subnet, distinct addresses.
pub(super) fn reachable_pairs(topology: &Topology) -> Vec<(Station, Station)> {
    let segments = Segments::of(topology);
    let interfaces = ipv4_interfaces(topology);
    let mut pairs = Vec::new();
    for (from, a, a_addr) in &interfaces {
        for (to, b, b_addr) in &interfaces {
            if from != to
                && a_addr != b_addr
                && same_subnet(a, b)
                && segments.together((from, &a.name), (to, &b.name))
            {
                pairs.push(((from.clone(), *a_addr), (to.clone(), *b_addr)));
            }
        }
    }
    pairs
}

fn ipv4_interfaces(topology: &Topology) -> Vec<(String, &Interface, Ipv4Addr)> {
    topology
        .hosts
        .iter()
        .flat_map(|h| h.interfaces.iter().map(move |i| (h, i)))
        .filter_map(|(h, i)| match i.address {
            IpAddr::V4(a) => Some((h.name.clone(), i, a)),
            IpAddr::V6(_) => None,
        })
        .collect()
}

/// One probe per pair of segments that must not reach each other: from a
/// host of one to an on-link address of the other that its own segment does
/// not also use. Returns the probes, each once per unordered pair of segments.
fn isolation_probes(topology: &Topology) -> Vec<(Station, Station)> {
    let segments = Segments::of(topology);
    let interfaces = ipv4_interfaces(topology);
    let mut probes: Vec<(Station, Station)> = Vec::new();
    let mut covered = std::collections::HashSet::new();
    for (from, a, a_addr) in &interfaces {
        for (to, b, b_addr) in &interfaces {
            let (Some(x), Some(y)) = (segments.id((from, &a.name)), segments.id((to, &b.name)))
            else {
                continue;
            };
            let on_link =
                ipnet::Ipv4Net::new(*a_addr, a.prefix_len).is_ok_and(|n| n.contains(b_addr));
            // An address its own segment also uses would be answered there.
            let shadowed = interfaces
                .iter()
                .any(|(h, i, addr)| addr == b_addr && segments.id((h, &i.name)) == Some(x));
            if x != y && on_link && !shadowed && covered.insert((x.min(y), x.max(y))) {
                probes.push(((from.clone(), *a_addr), (to.clone(), *b_addr)));
            }
        }
    }
    probes
}

/// One pair per pair of subnets whose hosts (unfiltered, so that only
/// routes decide) the source subnet's routes reach or refuse: a host of
/// each, and whether the ping should be answered.
fn routed_probes(topology: &Topology) -> Vec<(Station, Station, bool)> {
    use crate::routing::routes::{Hop, lookup, subnet_routes};
    let interfaces: Vec<_> = ipv4_interfaces(topology)
        .into_iter()
        .filter(|(h, i, _)| crate::security::resolve::port_policy(topology, h, i).is_empty())
        .collect();
    let mut probes = Vec::new();
    let mut covered = std::collections::HashSet::new();
    for (from, a, _) in &interfaces {
        let routes = subnet_routes(topology, &a.network, &a.subnet);
        for (to, b, b_addr) in &interfaces {
            if same_subnet(a, b) {
                continue;
            }
            let key = (
                a.network.clone(),
                a.subnet.clone(),
                b.network.clone(),
                b.subnet.clone(),
            );
            if !covered.insert(key) {
                continue;
            }
            let answered = match lookup(&routes, *b_addr).map(|r| &r.hop) {
                Some(Hop::VnetLocal { .. } | Hop::Peering { .. } | Hop::VirtualAppliance(_)) => {
                    // The reply is routed by the destination's subnet.
                    let back = subnet_routes(topology, &b.network, &b.subnet);
                    let from_addr = interfaces
                        .iter()
                        .find(|(h, i, _)| h == from && i.name == a.name)
                        .map(|(_, _, addr)| *addr);
                    from_addr.and_then(|f| lookup(&back, f)).is_some_and(|r| {
                        matches!(
                            r.hop,
                            Hop::VnetLocal { .. } | Hop::Peering { .. } | Hop::VirtualAppliance(_)
                        )
                    })
                }
                _ => false,
            };
            let source = match a.address {
                IpAddr::V4(v4) => v4,
                IpAddr::V6(_) => continue,
            };
            probes.push(((from.clone(), source), (to.clone(), *b_addr), answered));
        }
    }
    probes
}

/// Pings every reachable pair and probes every pair of segments; returns
/// how many did not behave.
fn ping_all(topology: &Topology) -> Result<usize> {
    let mut failures = 0;
    println!("\nping (3 echo requests each way, between hosts of one segment and subnet):");
    for ((from, _), (to, address)) in reachable_pairs(topology) {
        let rtts = traffic::ping(&topology.namespace_of(&from), address, 3)?;
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
    let routed = routed_probes(topology);
    if !routed.is_empty() {
        println!(
            "\nrouted (one echo request from a host of each subnet to a host of every other):"
        );
    }
    for ((from, _), (to, address), expected) in routed {
        let answered = traffic::ping(&topology.namespace_of(&from), address, 1)?
            .iter()
            .flatten()
            .count()
            > 0;
        if answered != expected {
            failures += 1;
        }
        let what = match (answered, expected) {
            (true, true) => "answered, routed",
            (false, false) => "no reply: no route there (or back), as intended",
            (true, false) => "ANSWERED, though no route should take it",
            (false, true) => "NO REPLY, though routes should carry it",
        };
        println!("  {from:>4} -> {to:<4} ({address:<15}) {what}");
    }
    let probes = isolation_probes(topology);
    if !probes.is_empty() {
        println!("\nisolation (one echo request between segments that must stay apart):");
    }
    for ((from, _), (to, address)) in probes {
        let answered = traffic::ping(&topology.namespace_of(&from), address, 1)?
            .iter()
            .flatten()
            .count();
        if answered > 0 {
            failures += 1;
        }
        println!(
            "  {from:>4} -> {to:<4} ({address:<15}) {}",
            if answered > 0 {
                "ANSWERED: the segments leak"
            } else {
                "no reply, as intended"
            }
        );
    }
    Ok(failures)
}
