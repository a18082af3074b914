//! `sdn bench`: throughput and packet rate between two hosts of a topology
//! through `vswitchd`, and in the same run through the peers it is compared
//! with (Linux bridge; Open vSwitch userspace with TSO where installed). Each
//! figure is the median of several runs and is reported beside its ratio to
//! each baseline: the machine is shared and noisy, ratios travel better than
//! absolute numbers. A topology with a security section gets the firewall
//! bench (`firewall`); one with a NAT gateway, or whose two hosts are in
//! different subnets, the routed bench (`routed`); one with a load balancer,
//! the load-balancer bench (`lb`); one with VPN connections, the VPN bench
//! (`vpn`).

mod baseline;
mod connect;
mod cpu;
mod daemon;
mod firewall;
mod iperf;
mod iperf_pool;
mod lb;
mod lb_report;
mod nft;
mod overlay;
mod pair;
mod paths;
mod proxy_shape;
mod routed;
mod router;
mod vpn;
mod vpn_peers;
mod vpn_report;
mod web;
mod wrk;

use crate::lab::{self, UpOptions, record::LabRecord};
use crate::topology::{self, Topology};
use anyhow::{Context, Result, bail};
use baseline::Shape;
use pair::{Pair, bench_hosts, pick_pair};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// Builds a baseline shape with a name prefix for the pair.
type ShapeMaker = fn(&str, &Pair) -> Result<Shape>;

/// A peer measured beside the switch.
struct Baseline {
    /// Its name in the table.
    name: &'static str,
    /// Its name in "vs" columns and JSON keys.
    label: &'static str,
    make: ShapeMaker,
    /// Why it cannot be measured here, if it cannot.
    unavailable: Option<&'static str>,
}

const OVS_MISSING: &str = "not installed (apt-get install openvswitch-switch)";

/// The peers for a pair: the kernel and Open vSwitch in the same shape.
fn baselines_for(pair: &Pair) -> Vec<Baseline> {
    let ovs = (!baseline::ovs_installed()).then_some(OVS_MISSING);
    if pair.overlay.is_some() {
        vec![
            Baseline {
                name: "kernel bridge + VXLAN",
                label: "kernel",
                make: overlay::kernel_vxlan,
                unavailable: None,
            },
            Baseline {
                name: "Open vSwitch userspace VXLAN",
                label: "OVS",
                make: overlay::ovs_vxlan,
                unavailable: ovs,
            },
        ]
    } else {
        vec![
            Baseline {
                name: "Linux bridge",
                label: "bridge",
                make: |prefix, pair| baseline::linux_bridge(prefix, pair.addresses),
                unavailable: None,
            },
            Baseline {
                name: "Open vSwitch userspace + TSO",
                label: "OVS+TSO",
                make: |prefix, pair| baseline::ovs_userspace_tso(prefix, pair.addresses),
                unavailable: ovs,
            },
        ]
    }
}

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

/// All `options.runs` runs of TCP and 64-byte UDP from `client_ns` to
/// `server` in `server_ns`.
fn measure(
    result: &mut PathResult,
    client_ns: &str,
    server_ns: &str,
    server: std::net::IpAddr,
    options: &BenchOptions,
) {
    for run in 0..options.runs {
        measure_once(result, client_ns, server_ns, server, options, run);
    }
}

/// Run number `run` (from 0) of TCP and 64-byte UDP, added to `result`; a
/// failure becomes its note.
fn measure_once(
    result: &mut PathResult,
    client_ns: &str,
    server_ns: &str,
    server: std::net::IpAddr,
    options: &BenchOptions,
    run: usize,
) {
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

/// A table cell: a number at `precision` with `suffix`, or `-`.
fn cell(v: &serde_json::Value, precision: usize, suffix: &str) -> String {
    v.as_f64()
        .map_or("-".to_string(), |x| format!("{x:.precision$}{suffix}"))
}

/// The heading line of a bench's table: `title` (the lab and what is
/// measured, up to its punctuation), how long, the machine.
fn heading(title: &str, options: &BenchOptions) -> String {
    let machine = machine();
    format!(
        "sdn bench {title} {} s per run, median of {} run(s); {} ({} cores), kernel {}",
        options.seconds,
        options.runs,
        machine["cpu"].as_str().unwrap_or("?"),
        machine["cores"],
        machine["kernel"].as_str().unwrap_or("?")
    )
}

/// Which bench a topology gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Two hosts in one subnet, beside a bridge and Open vSwitch.
    Pair,
    /// A security section: 0, 100 and 1,000 rules, beside nftables.
    Firewall,
    /// A NAT gateway, or two hosts in different subnets: routed, switched
    /// and through a Linux router, and NAT beside nftables masquerade.
    Routed,
    /// A load balancer: HTTP and TCP through its frontend, beside HAProxy
    /// and the client straight to a backend.
    LoadBalancer,
    /// VPN connections: host to host across a VNet-to-VNet connection,
    /// beside strongSwan, boringtun and the VXLAN overlay.
    Vpn,
}

/// The bench for a topology: the VPN bench for VPN connections, the
/// load-balancer bench for a load balancer, the firewall bench for a
/// security section, the routed bench for a NAT gateway or for first two
/// hosts in different subnets, else the two-host bench.
fn kind_of(topology: &Topology) -> Result<Kind> {
    if !topology.vpn.connections.is_empty() {
        return Ok(Kind::Vpn);
    }
    if !topology.load_balancers.is_empty() {
        return Ok(Kind::LoadBalancer);
    }
    if !topology.security.is_empty() {
        return Ok(Kind::Firewall);
    }
    if !topology.internet.nat_gateways.is_empty() {
        return Ok(Kind::Routed);
    }
    let (client, server) = bench_hosts(topology)?;
    let (c, s) = (&client.interfaces[0], &server.interfaces[0]);
    Ok(if (&c.network, &c.subnet) == (&s.network, &s.subnet) {
        Kind::Pair
    } else {
        Kind::Routed
    })
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
    // Git keeps no key files, and validation reads them: the VPN bench
    // writes its own into a copy before validating.
    if vpn::has_connections(path) {
        return vpn::run(path, options, as_json).await;
    }
    let topology = topology::load(path)?;
    match kind_of(&topology)? {
        Kind::Vpn => return vpn::run(path, options, as_json).await,
        Kind::Firewall => return firewall::run(path, options, as_json).await,
        Kind::Routed => return routed::run(path, options, as_json).await,
        Kind::LoadBalancer => return lb::run(path, options, as_json).await,
        Kind::Pair => {}
    }
    let pair = pick_pair(&topology)?;
    let (client, server) = (&pair.client, &pair.server);
    let baselines = if options.baselines {
        baselines_for(&pair)
    } else {
        Vec::new()
    };
    let mut results = Vec::new();

    eprintln!(
        "bench {}: {client} → {server} through vswitchd{}",
        topology.name,
        if pair.overlay.is_some() {
            " across a VXLAN overlay"
        } else {
            ""
        }
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
        &topology.namespace_of(client),
        &topology.namespace_of(server),
        pair.addresses.server,
        options,
    );
    drop(guard);
    results.push(ours);

    let prefix = format!("{}-bl", topology.name);
    for baseline in &baselines {
        let mut result = PathResult {
            name: baseline.name.into(),
            ..PathResult::default()
        };
        if let Some(reason) = baseline.unavailable {
            result.note = Some(reason.into());
            results.push(result);
            continue;
        }
        eprintln!(
            "bench {}: {client} → {server} through {}",
            topology.name, baseline.name
        );
        match (baseline.make)(&prefix, &pair) {
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
    report(&topology, options, &baselines, &results, as_json)
}

fn report(
    topology: &Topology,
    options: &BenchOptions,
    baselines: &[Baseline],
    results: &[PathResult],
    as_json: bool,
) -> Result<()> {
    let bases: Vec<(&str, &PathResult)> = baselines
        .iter()
        .filter_map(|b| Some((b.label, results.iter().find(|r| r.name == b.name)?)))
        .collect();
    let rows = path_rows(results, &bases);
    if as_json {
        let value = json!({
            "topology": topology.name,
            "machine": machine(),
            "seconds": options.seconds,
            "runs": options.runs,
            "tool": "iperf3, single TCP stream; UDP 64-byte payloads, sender unthrottled; \
                     udp64_pps counts frames reaching the receiving interface, udp64_app_pps what iperf3 read; \
                     vs holds ratios to each baseline",
            "paths": rows,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "{}",
        heading(&format!("{}: iperf3,", topology.name), options)
    );
    let labels: Vec<&str> = bases.iter().map(|(label, _)| *label).collect();
    print_path_table(&labels, &rows);
    Ok(())
}

/// The JSON rows of a throughput table: each path's medians and runs, and
/// under `vs` its ratios to each labelled base.
fn path_rows(results: &[PathResult], bases: &[(&str, &PathResult)]) -> Vec<serde_json::Value> {
    let medians = |r: &PathResult| {
        [
            median(&r.tcp_gbps),
            median(&r.udp64_pps),
            median(&r.udp64_app_pps),
        ]
    };
    let bases: Vec<(&str, [Option<f64>; 3])> = bases
        .iter()
        .map(|(label, result)| (*label, medians(result)))
        .collect();
    results
        .iter()
        .map(|r| {
            let [tcp, udp, app] = medians(r);
            let vs: serde_json::Map<String, serde_json::Value> = bases
                .iter()
                .map(|(label, [b_tcp, b_udp, b_app])| {
                    (
                        label.to_string(),
                        json!({
                            "tcp": ratio(tcp, *b_tcp),
                            "udp64": ratio(udp, *b_udp),
                            "udp64_app": ratio(app, *b_app),
                        }),
                    )
                })
                .collect();
            json!({
                "path": r.name,
                "tcp_gbps": tcp,
                "tcp_gbps_runs": r.tcp_gbps,
                "udp64_pps": udp,
                "udp64_pps_runs": r.udp64_pps,
                "udp64_app_pps": app,
                "udp64_app_pps_runs": r.udp64_app_pps,
                "vs": vs,
                "note": r.note,
            })
        })
        .collect()
}

/// Prints `rows` (from `path_rows`) as a Markdown table with a "vs" column
/// for each of `labels` after each measure.
fn print_path_table(labels: &[&str], rows: &[serde_json::Value]) {
    let mut header = vec!["path".to_string()];
    for measure in [
        "TCP Gbit/s",
        "64 B pkt/s delivered",
        "64 B pkt/s read by iperf3",
    ] {
        header.push(measure.to_string());
        header.extend(labels.iter().map(|l| format!("vs {l}")));
    }
    println!("| {} |", header.join(" | "));
    println!("|{}", " --- |".repeat(header.len()));
    for row in rows {
        let mut cells = vec![row["path"].as_str().unwrap_or("?").to_string()];
        for (value, key, precision) in [
            ("tcp_gbps", "tcp", 2),
            ("udp64_pps", "udp64", 0),
            ("udp64_app_pps", "udp64_app", 0),
        ] {
            cells.push(cell(&row[value], precision, ""));
            cells.extend(labels.iter().map(|l| cell(&row["vs"][*l][key], 2, "x")));
        }
        println!("| {} |", cells.join(" | "));
        if let Some(note) = row["note"].as_str() {
            println!("|   ({note}) |{}", " |".repeat(header.len() - 1));
        }
    }
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

    fn load(name: &str) -> Topology {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../topologies")
            .join(name);
        topology::load(&path).expect("repository topology loads")
    }

    #[test]
    fn each_topology_gets_its_bench() {
        assert_eq!(kind_of(&load("bench-2hosts.yaml")).unwrap(), Kind::Pair);
        assert_eq!(kind_of(&load("bench-vxlan.yaml")).unwrap(), Kind::Pair);
        assert_eq!(
            kind_of(&load("bench-firewall.yaml")).unwrap(),
            Kind::Firewall
        );
        assert_eq!(kind_of(&load("bench-routed.yaml")).unwrap(), Kind::Routed);
        assert_eq!(kind_of(&load("bench-lb.yaml")).unwrap(), Kind::LoadBalancer);
        assert_eq!(kind_of(&load("lb.yaml")).unwrap(), Kind::LoadBalancer);
        // A VPN topology is told before validation (which needs its key
        // files): see `vpn`'s tests for `kind_of` on one.
        let bench_vpn = Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies/bench-vpn.yaml");
        assert!(vpn::has_connections(&bench_vpn));
        let bench_vxlan =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies/bench-vxlan.yaml");
        assert!(!vpn::has_connections(&bench_vxlan));
        assert!(!vpn::has_connections(Path::new("/nonexistent/bench.yaml")));
        // A NAT gateway (and a security section, which wins).
        assert_eq!(kind_of(&load("routing.yaml")).unwrap(), Kind::Firewall);
        let mut routing = load("routing.yaml");
        routing.security = Default::default();
        assert_eq!(kind_of(&routing).unwrap(), Kind::Routed);

        // Hosts in two subnets without a NAT gateway are routed; a NAT
        // gateway alone is enough too.
        let text = include_str!("../../../topologies/bench-routed.yaml");
        let no_nat = &text[..text.find("\ninternet:").unwrap() + 1];
        let path = Path::new("bench-routed.yaml");
        assert_eq!(
            kind_of(&topology::parse(no_nat, path).unwrap()).unwrap(),
            Kind::Routed
        );
        let one_subnet = text.replace(
            "net/b, address: 10.79.2.2/24",
            "net/a, address: 10.79.1.2/24",
        );
        let one_subnet = topology::parse(&one_subnet, path).unwrap();
        assert_eq!(kind_of(&one_subnet).unwrap(), Kind::Routed);
        let without = no_nat.replace(
            "net/b, address: 10.79.2.2/24",
            "net/a, address: 10.79.1.2/24",
        );
        assert_eq!(
            kind_of(&topology::parse(&without, path).unwrap()).unwrap(),
            Kind::Pair
        );
    }
}
