//! The firewall bench: the same two hosts with 0, 100 and 1,000 NSG rules in
//! front of the receiving host (rules that never match the measured
//! traffic, placed ahead of the ones that allow it), through vswitchd and
//! through a Linux bridge with the same rules in the receiving host's
//! nftables with connection tracking. Established traffic should not notice
//! the rules; new connections pass through them all.

use super::baseline::{self, Shape};
use super::connect::{CONNECT_PORT, ConnResult};
use super::pair::pick_pair;
use super::{
    BenchOptions, LabGuard, PathResult, cell, heading, machine, measure, median, nft, ratio,
};
use crate::lab::{self, UpOptions};
use crate::topology;
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Rule counts measured (all the rules of the receiving host's NSG; 0 is
/// the same lab without a security section, and nftables without rules).
const RULE_COUNTS: [usize; 3] = [0, 100, 1000];

/// The line of the bench topology where filler rules go.
const MARKER: &str = "# bench: filler rules go here";

/// Rules that never match the bench's traffic, each from its own address to
/// its own port, at priorities ahead of the allowing rules.
fn filler_yaml(indent: &str, count: usize) -> String {
    (0..count)
        .map(|i| {
            format!(
                "{indent}- {{ name: filler-{i}, priority: {}, direction: inbound, access: deny, protocol: tcp, source: 192.0.{}.{}, destination_ports: {} }}\n",
                100 + i,
                2 + i / 250,
                1 + i % 250,
                10_000 + i
            )
        })
        .collect()
}

/// Rules the bench topology's NSG holds besides the fillers.
const BASE_RULES: usize = 4;

/// The bench topology with `rules` rules in all: without its security
/// section for 0, else with fillers ahead of its own rules.
fn with_rules(text: &str, rules: usize) -> Result<String> {
    if rules == 0 {
        let Some(at) = text.find("\nsecurity:") else {
            bail!("the firewall bench topology has no security section");
        };
        return Ok(text[..=at].to_string());
    }
    with_fillers(text, rules.saturating_sub(BASE_RULES))
}

/// The bench topology with `count` filler rules.
fn with_fillers(text: &str, count: usize) -> Result<String> {
    let Some(line) = text.lines().find(|l| l.trim() == MARKER) else {
        bail!("the firewall bench needs a line `{MARKER}` inside the NSG's rules");
    };
    let indent: String = line.chars().take_while(|c| *c == ' ').collect();
    Ok(text.replacen(line, &filler_yaml(&indent, count), 1))
}

/// The same rules as nftables in the receiving host: established first,
/// invalid dropped, fillers, then what the bench needs.
fn nft_ruleset(count: usize) -> String {
    let mut rules = String::from(
        "table inet bench {\n chain input {\n  type filter hook input priority 0; policy drop;\n  ct state established,related accept\n  ct state invalid drop\n  iifname \"lo\" accept\n  meta l4proto icmp accept\n",
    );
    for i in 0..count {
        rules.push_str(&format!(
            "  ip saddr 192.0.{}.{} tcp dport {} drop\n",
            2 + i / 250,
            1 + i % 250,
            10_000 + i
        ));
    }
    rules.push_str(&format!(
        "  tcp dport 5201-5299 accept\n  udp dport 5201-5299 accept\n  tcp dport {CONNECT_PORT} accept\n }}\n}}\n"
    ));
    rules
}

/// One measured configuration.
struct Row {
    result: PathResult,
    rules: usize,
    conns: Vec<f64>,
}

fn measure_row(
    row: &mut Row,
    client_ns: &str,
    server_ns: &str,
    server: std::net::IpAddr,
    options: &BenchOptions,
) {
    measure(&mut row.result, client_ns, server_ns, server, options);
    let mut conns = ConnResult::new(&row.result.name);
    for run in 0..options.runs {
        conns.measure_once(
            server_ns,
            client_ns,
            SocketAddr::new(server, CONNECT_PORT),
            options.seconds,
            run,
        );
    }
    row.conns = conns.rates;
    if conns.note.is_some() {
        row.result.note = conns.note;
    }
}

impl Row {
    fn new(name: &str, rules: usize) -> Row {
        Row {
            result: PathResult {
                name: name.into(),
                ..PathResult::default()
            },
            rules,
            conns: Vec::new(),
        }
    }
}

/// The same pair through a Linux bridge, with `count` rules in the
/// receiving host's nftables.
fn nftables_row(lab: &str, pair: &super::pair::Pair, count: usize, options: &BenchOptions) -> Row {
    let mut row = Row::new("Linux bridge + nftables conntrack", count);
    if count > 0 && !nft::available() {
        row.result.note = Some("nft is not installed (apt-get install nftables)".into());
        return row;
    }
    eprintln!("bench {lab}: through a Linux bridge with {count} nftables rules");
    let prefix = format!("{lab}-bl");
    let shape: Result<Shape> = baseline::linux_bridge(&prefix, pair.addresses).and_then(|shape| {
        if count > 0 {
            nft::load(
                &shape.server_ns,
                &nft_ruleset(count.saturating_sub(BASE_RULES)),
            )?;
        }
        Ok(shape)
    });
    match shape {
        Ok(shape) => measure_row(
            &mut row,
            &shape.client_ns,
            &shape.server_ns,
            shape.server_addr,
            options,
        ),
        Err(e) => row.result.note = Some(format!("could not be set up: {e:#}")),
    }
    row
}

/// Runs the firewall bench on the topology at `path`.
pub(super) async fn run(path: &Path, options: &BenchOptions, as_json: bool) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let scratch = std::env::temp_dir().join(format!("sdn-bench-fw-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let lab_name = topology::load(path)?.name;
    let mut rows = Vec::new();
    // Each rule count through vswitchd, then at once through the kernel, so
    // that each pair compared is measured close together.
    for &count in &RULE_COUNTS {
        let file = scratch.join(format!("rules-{count}.yaml"));
        std::fs::write(&file, with_rules(&text, count)?)?;
        let topology = topology::load(&file)?;
        let pair = pick_pair(&topology)?;
        eprintln!(
            "bench {}: {} → {} through vswitchd with {count} rules",
            topology.name, pair.client, pair.server
        );
        let record = lab::up(
            &topology,
            &UpOptions {
                resume: false,
                timeout: Duration::from_secs(60),
            },
        )
        .await
        .context("bring up the bench lab")?;
        let guard = LabGuard(Some(record));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut row = Row::new("vswitchd (this project)", count);
        measure_row(
            &mut row,
            &topology.namespace_of(&pair.client),
            &topology.namespace_of(&pair.server),
            pair.addresses.server,
            options,
        );
        drop(guard);
        rows.push(row);
        if options.baselines {
            rows.push(nftables_row(&topology.name, &pair, count, options));
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    report(&lab_name, options, &rows, as_json)
}

fn report(name: &str, options: &BenchOptions, rows: &[Row], as_json: bool) -> Result<()> {
    let values = |r: &Row| {
        [
            median(&r.result.tcp_gbps),
            median(&r.result.udp64_pps),
            median(&r.conns),
        ]
    };
    let find = |path_is_ours: bool, rules: usize| {
        rows.iter()
            .find(|r| r.rules == rules && r.result.name.starts_with("vswitchd") == path_is_ours)
            .map(values)
    };
    let json_rows: Vec<_> = rows
        .iter()
        .map(|r| {
            let [tcp, pps, conns] = values(r);
            let ours = r.result.name.starts_with("vswitchd");
            let zero = find(ours, 0).unwrap_or([None; 3]);
            let other = find(!ours, r.rules).unwrap_or([None; 3]);
            json!({
                "path": r.result.name,
                "rules": r.rules,
                "tcp_gbps": tcp, "tcp_gbps_runs": r.result.tcp_gbps,
                "udp64_pps": pps, "udp64_pps_runs": r.result.udp64_pps,
                "new_conns_per_s": conns, "new_conns_per_s_runs": r.conns,
                "vs_zero_rules": { "tcp": ratio(tcp, zero[0]), "udp64": ratio(pps, zero[1]), "conns": ratio(conns, zero[2]) },
                "vs_other": { "tcp": ratio(tcp, other[0]), "udp64": ratio(pps, other[1]), "conns": ratio(conns, other[2]) },
                "note": r.result.note,
            })
        })
        .collect();
    if as_json {
        let value = json!({
            "topology": name,
            "machine": machine(),
            "seconds": options.seconds,
            "runs": options.runs,
            "tool": "iperf3 single TCP stream and UDP 64-byte payloads; new connections: sequential connect and reset; \
                     vs_zero_rules: ratio to the same path without rules; vs_other: vswitchd against nftables with the same rule count, or back",
            "paths": json_rows,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("{}", heading(&format!("{name} (firewall):"), options));
    println!(
        "| path | rules | TCP Gbit/s | vs 0 rules | vs other | 64 B pkt/s | vs 0 rules | vs other | new conn/s | vs 0 rules | vs other |"
    );
    println!("|{}", " --- |".repeat(11));
    for row in &json_rows {
        let mut cells = vec![
            row["path"].as_str().unwrap_or("?").to_string(),
            row["rules"].to_string(),
        ];
        for (value, key, precision) in [
            ("tcp_gbps", "tcp", 2),
            ("udp64_pps", "udp64", 0),
            ("new_conns_per_s", "conns", 0),
        ] {
            cells.push(cell(&row[value], precision, ""));
            cells.push(cell(&row["vs_zero_rules"][key], 2, "x"));
            cells.push(cell(&row["vs_other"][key], 2, "x"));
        }
        println!("| {} |", cells.join(" | "));
        if let Some(note) = row["note"].as_str() {
            println!("|   ({note}) |{}", " |".repeat(10));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fillers_make_a_valid_topology_that_nftables_mirrors() {
        let text = include_str!("../../../topologies/bench-firewall.yaml");
        let with = with_rules(text, 1000).unwrap();
        let topology = topology::parse(&with, Path::new("bench-firewall.yaml")).unwrap();
        assert_eq!(topology.security.nsgs[0].rules.len(), 1000);
        let without = with_rules(text, 0).unwrap();
        let topology = topology::parse(&without, Path::new("bench-firewall.yaml")).unwrap();
        assert!(topology.security.is_empty());
        assert!(with_fillers("name: x\n", 1).is_err());
        let nft = nft_ruleset(100);
        assert_eq!(nft.matches(" drop\n").count(), 101);
        assert!(nft.contains("ct state established,related accept"));
    }
}
