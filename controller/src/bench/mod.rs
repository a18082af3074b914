//! `sdn bench`: throughput and packet rate between two hosts of a topology
//! through `vswitchd`, and in the same run through the peers it is compared
//! with (Linux bridge; Open vSwitch userspace with TSO where installed). Each
//! figure is the median of several runs and is reported beside its ratio to
//! each baseline: the machine is shared and noisy, ratios travel better than
//! absolute numbers.

mod baseline;
mod iperf;

use crate::lab::{self, UpOptions, record::LabRecord};
use crate::topology::{self, Topology};
use anyhow::{Context, Result, bail};
use baseline::{Addresses, Shape};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// Builds a baseline shape with a name prefix and the hosts' addresses.
type ShapeMaker = fn(&str, Addresses) -> Result<Shape>;

/// How to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Seconds per measurement.
    pub seconds: u64,
    /// Runs per measurement; the median is reported.
    pub runs: usize,
    /// Measure the baselines too.
    pub baselines: bool,
}

/// Measurements of one path.
#[derive(Debug, Clone, Default)]
struct PathResult {
    name: String,
    tcp_gbps: Vec<f64>,
    /// 64-byte frames delivered to the receiving interface per second.
    udp64_pps: Vec<f64>,
    /// 64-byte datagrams the receiving application read per second.
    udp64_app_pps: Vec<f64>,
    note: Option<String>,
}

fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

fn measure(
    result: &mut PathResult,
    client_ns: &str,
    server_ns: &str,
    server: std::net::IpAddr,
    options: &BenchOptions,
) {
    for run in 0..options.runs {
        let port = 5201 + (run as u16) * 2;
        match iperf::tcp_gbps(server_ns, client_ns, server, port, options.seconds) {
            Ok(v) => result.tcp_gbps.push(v),
            Err(e) => result.note = Some(format!("TCP run failed: {e:#}")),
        }
        match iperf::udp64(server_ns, client_ns, server, port + 1, options.seconds) {
            Ok(rate) => {
                result.udp64_pps.push(rate.delivered_pps);
                result.udp64_app_pps.push(rate.received_pps);
            }
            Err(e) => result.note = Some(format!("UDP run failed: {e:#}")),
        }
        eprintln!(
            "  {} run {}: TCP {} Gbit/s, UDP 64 B {} pkt/s delivered, {} pkt/s read by iperf3",
            result.name,
            run + 1,
            result
                .tcp_gbps
                .last()
                .map_or("-".into(), |v| format!("{v:.2}")),
            result
                .udp64_pps
                .last()
                .map_or("-".into(), |v| format!("{v:.0}")),
            result
                .udp64_app_pps
                .last()
                .map_or("-".into(), |v| format!("{v:.0}"))
        );
    }
}

/// The sending and receiving host of the topology: its first two hosts.
fn pick_pair(topology: &Topology) -> Result<(String, String, Addresses)> {
    let hosts: Vec<_> = topology
        .hosts
        .iter()
        .filter(|h| !h.interfaces.is_empty())
        .take(2)
        .collect();
    let [client, server] = hosts.as_slice() else {
        bail!(
            "{}: a bench topology needs two hosts with interfaces",
            topology.source.display()
        );
    };
    let (c, s) = (&client.interfaces[0], &server.interfaces[0]);
    if c.prefix_len != s.prefix_len || c.network != s.network || c.subnet != s.subnet {
        bail!(
            "{}: the first two hosts must share a subnet",
            topology.source.display()
        );
    }
    Ok((
        client.name.clone(),
        server.name.clone(),
        Addresses {
            client: c.address,
            server: s.address,
            prefix_len: c.prefix_len,
        },
    ))
}

/// Removes the bench's lab even if measuring fails or panics.
struct LabGuard(Option<LabRecord>);

impl Drop for LabGuard {
    fn drop(&mut self) {
        if let Some(lab) = self.0.take() {
            lab::teardown(&lab);
        }
    }
}

fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    json!({ "cpu": cpu, "cores": cores, "kernel": kernel })
}

fn ratio(value: Option<f64>, base: Option<f64>) -> Option<f64> {
    match (value, base) {
        (Some(v), Some(b)) if b > 0.0 => Some(v / b),
        _ => None,
    }
}

/// Runs the benchmark on the topology at `path`.
pub async fn run(path: &Path, options: &BenchOptions, as_json: bool) -> Result<()> {
    lab::require_root("sdn bench")?;
    if !iperf::available() {
        bail!(
            "iperf3 is not installed; `apt-get install iperf3` (the bench drives it in each namespace)"
        );
    }
    if options.runs == 0 || options.seconds == 0 {
        bail!("--runs and --seconds must be at least 1");
    }
    let topology = topology::load(path)?;
    let (client, server, addresses) = pick_pair(&topology)?;
    let mut results = Vec::new();

    eprintln!(
        "bench {}: {client} → {server} through vswitchd",
        topology.name
    );
    let record = lab::up(
        &topology,
        &UpOptions {
            resume: false,
            timeout: Duration::from_secs(30),
        },
    )
    .await
    .context("bring up the bench lab")?;
    let guard = LabGuard(Some(record));
    // Let the switch learn both hosts before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ours = PathResult {
        name: "vswitchd (this project)".into(),
        ..PathResult::default()
    };
    measure(
        &mut ours,
        &topology.namespace_of(&client),
        &topology.namespace_of(&server),
        addresses.server,
        options,
    );
    drop(guard);
    results.push(ours);

    if options.baselines {
        let prefix = format!("{}-bl", topology.name);
        let shapes: Vec<(&str, ShapeMaker, bool)> = vec![
            ("Linux bridge", baseline::linux_bridge, true),
            (
                "Open vSwitch userspace + TSO",
                baseline::ovs_userspace_tso,
                baseline::ovs_installed(),
            ),
        ];
        for (name, make, available) in shapes {
            let mut result = PathResult {
                name: name.into(),
                ..PathResult::default()
            };
            if !available {
                result.note = Some("not installed (apt-get install openvswitch-switch)".into());
                results.push(result);
                continue;
            }
            eprintln!(
                "bench {}: {client} → {server} through {name}",
                topology.name
            );
            match make(&prefix, addresses) {
                Ok(shape) => measure(
                    &mut result,
                    &shape.client_ns,
                    &shape.server_ns,
                    shape.server_addr,
                    options,
                ),
                Err(e) => result.note = Some(format!("could not be set up: {e:#}")),
            }
            results.push(result);
        }
    }
    report(&topology, options, &results, as_json)
}

fn report(
    topology: &Topology,
    options: &BenchOptions,
    results: &[PathResult],
    as_json: bool,
) -> Result<()> {
    let machine = machine();
    let find = |name: &str| results.iter().find(|r| r.name.starts_with(name));
    let bridge = find("Linux bridge");
    let ovs = find("Open vSwitch");
    let rows: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            let tcp = median(&r.tcp_gbps);
            let udp = median(&r.udp64_pps);
            let app = median(&r.udp64_app_pps);
            json!({
                "path": r.name,
                "tcp_gbps": tcp,
                "tcp_gbps_runs": r.tcp_gbps,
                "udp64_pps": udp,
                "udp64_pps_runs": r.udp64_pps,
                "tcp_vs_bridge": ratio(tcp, bridge.and_then(|b| median(&b.tcp_gbps))),
                "tcp_vs_ovs_tso": ratio(tcp, ovs.and_then(|b| median(&b.tcp_gbps))),
                "udp64_vs_bridge": ratio(udp, bridge.and_then(|b| median(&b.udp64_pps))),
                "udp64_vs_ovs_tso": ratio(udp, ovs.and_then(|b| median(&b.udp64_pps))),
                "udp64_app_pps": app,
                "udp64_app_pps_runs": r.udp64_app_pps,
                "udp64_app_vs_bridge": ratio(app, bridge.and_then(|b| median(&b.udp64_app_pps))),
                "udp64_app_vs_ovs_tso": ratio(app, ovs.and_then(|b| median(&b.udp64_app_pps))),
                "note": r.note,
            })
        })
        .collect();
    if as_json {
        let value = json!({
            "topology": topology.name,
            "machine": machine,
            "seconds": options.seconds,
            "runs": options.runs,
            "tool": "iperf3, single TCP stream; UDP 64-byte payloads, sender unthrottled; \
                     udp64_pps counts frames reaching the receiving interface, udp64_app_pps what iperf3 read",
            "paths": rows,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "sdn bench {}: iperf3, {} s per run, median of {} run(s); {} ({} cores), kernel {}",
        topology.name,
        options.seconds,
        options.runs,
        machine["cpu"].as_str().unwrap_or("?"),
        machine["cores"],
        machine["kernel"].as_str().unwrap_or("?")
    );
    println!(
        "| path | TCP Gbit/s | vs bridge | vs OVS+TSO | 64 B pkt/s delivered | vs bridge | vs OVS+TSO | 64 B pkt/s read by iperf3 | vs bridge | vs OVS+TSO |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    let cell = |v: &serde_json::Value, precision: usize, suffix: &str| {
        v.as_f64()
            .map_or("-".to_string(), |x| format!("{x:.precision$}{suffix}"))
    };
    for row in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row["path"].as_str().unwrap_or("?"),
            cell(&row["tcp_gbps"], 2, ""),
            cell(&row["tcp_vs_bridge"], 2, "x"),
            cell(&row["tcp_vs_ovs_tso"], 2, "x"),
            cell(&row["udp64_pps"], 0, ""),
            cell(&row["udp64_vs_bridge"], 2, "x"),
            cell(&row["udp64_vs_ovs_tso"], 2, "x"),
            cell(&row["udp64_app_pps"], 0, ""),
            cell(&row["udp64_app_vs_bridge"], 2, "x"),
            cell(&row["udp64_app_vs_ovs_tso"], 2, "x"),
        );
        if let Some(note) = row["note"].as_str() {
            println!("|   ({note}) | | | | | | | | | |");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN]), None);
        assert_eq!(ratio(Some(6.0), Some(3.0)), Some(2.0));
        assert_eq!(ratio(Some(6.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(3.0)), None);
    }
}
