//! The VPN bench's results and how they are shown: per measure and path
//! the median, range, ratios to strongSwan, boringtun and the VXLAN
//! overlay, the CPU of the processes that forward the path, and beside the
//! VPN's figures the goals they are held to; as a Markdown table or as
//! JSON.

use super::paths::{self, Measured, elsewhere_load, min_max};
use super::{BenchOptions, heading, machine, median, ratio};
use anyhow::Result;
use serde_json::json;

/// What is measured on every path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Measure {
    /// Single-stream TCP throughput, Gbit/s.
    Tcp,
    /// 64-byte UDP datagrams reaching the receiving host's interface per
    /// second (what the path forwarded).
    Udp64Delivered,
    /// 64-byte UDP datagrams the receiving iperf3 read per second.
    Udp64Read,
}

impl Measure {
    /// Every measure, in the order they are run and shown.
    pub(super) const ALL: [Measure; 3] =
        [Measure::Tcp, Measure::Udp64Delivered, Measure::Udp64Read];

    /// Its name in the table.
    pub(super) fn title(self) -> &'static str {
        match self {
            Measure::Tcp => "TCP Gbit/s (iperf3)",
            Measure::Udp64Delivered => "64 B pkt/s delivered",
            Measure::Udp64Read => "64 B pkt/s read by iperf3",
        }
    }

    /// Its key in JSON.
    fn key(self) -> &'static str {
        match self {
            Measure::Tcp => "tcp_gbps",
            Measure::Udp64Delivered => "udp64_pps",
            Measure::Udp64Read => "udp64_app_pps",
        }
    }

    /// Digits after the point.
    pub(super) fn precision(self) -> usize {
        match self {
            Measure::Tcp => 2,
            _ => 0,
        }
    }
}

impl Measured for Measure {
    fn index(self) -> usize {
        match self {
            Measure::Tcp => 0,
            Measure::Udp64Delivered => 1,
            Measure::Udp64Read => 2,
        }
    }
}

/// Everything measured on one path.
pub(super) type PathResults = paths::PathResults<Measure>;

/// A figure the VPN is held to: `measure` at least `at_least` times the
/// path labelled `base`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Goal {
    measure: Measure,
    base: &'static str,
    at_least: f64,
}

/// The throughput goals, against the labels of strongSwan, boringtun and
/// the overlay.
pub(super) fn goals(
    strongswan: &'static str,
    boringtun: &'static str,
    overlay: &'static str,
) -> [Goal; 3] {
    [(strongswan, 10.0), (boringtun, 8.0), (overlay, 0.5)].map(|(base, at_least)| Goal {
        measure: Measure::Tcp,
        base,
        at_least,
    })
}

/// The JSON of one measure: each path's median, range, runs, forwarder
/// CPU and ratios to the peers, and the goals of `ours` on it.
fn measure_json(
    measure: Measure,
    paths: &[PathResults],
    ours: &str,
    goals: &[Goal],
) -> serde_json::Value {
    let median_of = |label: &str| {
        paths
            .iter()
            .find(|p| p.label == label)
            .and_then(|p| median(&p.series(measure).values))
    };
    let rows: Vec<serde_json::Value> = paths
        .iter()
        .map(|path| {
            let series = path.series(measure);
            let value = median(&series.values);
            let vs: serde_json::Map<String, serde_json::Value> = paths
                .iter()
                .filter(|other| other.label != ours)
                .map(|other| {
                    (
                        other.label.to_string(),
                        json!(ratio(value, median_of(other.label))),
                    )
                })
                .collect();
            let range = min_max(&series.values);
            json!({
                "path": path.name,
                "median": value,
                "min": range.map(|r| r.0),
                "max": range.map(|r| r.1),
                "runs": series.values,
                "forwarder_cpu_percent": median(&series.forwarder_cpu),
                "forwarder_cpu_percent_runs": series.forwarder_cpu,
                "elsewhere_cpu_percent_runs": series.elsewhere_cpu,
                "vs": vs,
                "notes": series.notes,
            })
        })
        .collect();
    let ours_median = median_of(ours);
    let goals: Vec<serde_json::Value> = goals
        .iter()
        .filter(|g| g.measure == measure)
        .map(|g| {
            let got = ratio(ours_median, median_of(g.base));
            json!({ "vs": g.base, "at_least": g.at_least, "ratio": got, "met": got.map(|r| r >= g.at_least) })
        })
        .collect();
    json!({ "measure": measure.key(), "paths": rows, "goals": goals })
}

/// `value` at `precision`, or `-`.
fn number(value: &serde_json::Value, precision: usize) -> String {
    value
        .as_f64()
        .map_or("-".into(), |v| format!("{v:.precision$}"))
}

/// The goal cell of a measure's JSON: each goal, its ratio and whether it
/// is met.
fn goal_cell(measure: &serde_json::Value) -> String {
    let goals = measure["goals"].as_array().cloned().unwrap_or_default();
    goals
        .iter()
        .map(|g| {
            let verdict = match g["met"].as_bool() {
                Some(true) => "met",
                Some(false) => "missed",
                None => "not measured",
            };
            let at_least = g["at_least"].as_f64().unwrap_or(0.0);
            format!(
                "≥{at_least}x {}: {verdict}",
                g["vs"].as_str().unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The median and the largest share of one core (percent) that processes
/// outside the bench used during the runs of `paths`.
/// The lines of the Markdown table of `measures` (each measure's JSON from
/// `measure_json`) over `paths`, whose VPN is labelled `ours`.
fn table(
    measures: &[(Measure, serde_json::Value)],
    paths: &[PathResults],
    ours: &str,
) -> Vec<String> {
    let bases: Vec<&str> = paths
        .iter()
        .map(|p| p.label)
        .filter(|l| *l != ours)
        .collect();
    let mut header = vec![
        "measure".to_string(),
        "path".into(),
        "median".into(),
        "range".into(),
    ];
    header.extend(bases.iter().map(|b| format!("vs {b}")));
    header.push("forwarder CPU".into());
    header.push("goal".into());
    let mut lines = vec![
        format!("| {} |", header.join(" | ")),
        format!("|{}", " --- |".repeat(header.len())),
    ];
    for (measure, value) in measures {
        let precision = measure.precision();
        let rows = value["paths"].as_array().cloned().unwrap_or_default();
        for (row, path) in rows.iter().zip(paths) {
            let range = match (row["min"].as_f64(), row["max"].as_f64()) {
                (Some(lo), Some(hi)) => format!("{lo:.precision$}–{hi:.precision$}"),
                _ => "-".into(),
            };
            let mut cells = vec![
                measure.title().to_string(),
                path.name.to_string(),
                number(&row["median"], precision),
                range,
            ];
            cells.extend(bases.iter().map(|b| {
                row["vs"][*b]
                    .as_f64()
                    .map_or("-".into(), |r| format!("{r:.2}x"))
            }));
            cells.push(
                row["forwarder_cpu_percent"]
                    .as_f64()
                    .map_or("-".into(), |c| format!("{c:.0}%")),
            );
            cells.push(if path.label == ours {
                goal_cell(value)
            } else {
                String::new()
            });
            lines.push(format!("| {} |", cells.join(" | ")));
            let notes = row["notes"].as_array().cloned().unwrap_or_default();
            for note in notes.iter().filter_map(|n| n.as_str()) {
                lines.push(format!("|   ({note}) |{}", " |".repeat(header.len() - 1)));
            }
        }
    }
    lines
}

/// Prints the results of `paths` (the VPN's first, labelled `ours`) as a
/// table or as JSON.
pub(super) fn report(
    name: &str,
    options: &BenchOptions,
    paths: &[PathResults],
    ours: &str,
    goals: &[Goal],
    conditions: serde_json::Value,
    as_json: bool,
) -> Result<()> {
    let measures: Vec<(Measure, serde_json::Value)> = Measure::ALL
        .iter()
        .map(|m| (*m, measure_json(*m, paths, ours, goals)))
        .collect();
    if as_json {
        let value = json!({
            "topology": name,
            "machine": machine(),
            "seconds": options.seconds,
            "runs": options.runs,
            "conditions": conditions,
            "elsewhere_cpu_percent": elsewhere_load(paths).map(|(median, max)| json!({ "median": median, "max": max })),
            "tool": "iperf3, single TCP stream; UDP 64-byte payloads, sender unthrottled; \
                     udp64_pps counts frames reaching the receiving host's interface, udp64_app_pps \
                     what iperf3 read; vs holds ratios of medians; forwarder_cpu_percent is the CPU \
                     of both ends' forwarding processes (switches, charons, boringtuns), percent of \
                     one core; elsewhere_cpu_percent_runs is what processes outside the bench's \
                     namespaces used meanwhile (a lower bound)",
            "measures": measures.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "{}",
        heading(&format!("{name} (VPN, host to host): iperf3,"), options)
    );
    for line in table(&measures, paths, ours) {
        println!("{line}");
    }
    if let Some((median, max)) = elsewhere_load(paths) {
        println!(
            "\nMeanwhile other processes on the machine used a median {median:.0}% of one core per run (at most {max:.0}%)."
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(name: &'static str, label: &'static str, values: [[f64; 3]; 3]) -> PathResults {
        let mut path = PathResults::new(name, label);
        for (measure, runs) in Measure::ALL.iter().zip(values) {
            path.series_mut(*measure).values = runs.to_vec();
        }
        path
    }

    fn four() -> Vec<PathResults> {
        vec![
            path(
                "ours",
                "VPN",
                [[4.0, 5.0, 6.0], [300.0, 200.0, 250.0], [100.0; 3]],
            ),
            path(
                "strongswan",
                "strongSwan",
                [[0.4, 0.5, 0.3], [50.0; 3], [50.0; 3]],
            ),
            path(
                "boringtun",
                "boringtun",
                [[0.5, 0.5, 0.7], [100.0; 3], [100.0; 3]],
            ),
            path(
                "overlay",
                "VXLAN",
                [[8.0, 12.0, 10.0], [500.0; 3], [200.0; 3]],
            ),
        ]
    }

    #[test]
    fn ratios_and_goals_come_from_medians() {
        let paths = four();
        let goals = goals("strongSwan", "boringtun", "VXLAN");
        let tcp = measure_json(Measure::Tcp, &paths, "VPN", &goals);
        let ours = &tcp["paths"][0];
        assert_eq!(ours["median"], 5.0);
        assert_eq!(
            (ours["min"].as_f64(), ours["max"].as_f64()),
            (Some(4.0), Some(6.0))
        );
        assert_eq!(ours["vs"]["strongSwan"], 12.5);
        assert_eq!(ours["vs"]["boringtun"], 10.0);
        assert_eq!(ours["vs"]["VXLAN"], 0.5);
        assert!(ours["vs"].get("VPN").is_none(), "no ratio to itself");
        let verdicts: Vec<bool> = tcp["goals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["met"].as_bool().unwrap())
            .collect();
        assert_eq!(verdicts, [true, true, true], "12.5 ≥ 10, 10 ≥ 8, 0.5 ≥ 0.5");
        assert_eq!(
            goal_cell(&tcp),
            "≥10x strongSwan: met; ≥8x boringtun: met; ≥0.5x VXLAN: met"
        );
        // Packet rates are compared but held to no goal.
        let udp = measure_json(Measure::Udp64Delivered, &paths, "VPN", &goals);
        assert_eq!(udp["paths"][0]["vs"]["strongSwan"], 5.0);
        assert_eq!(udp["paths"][3]["vs"]["VXLAN"], 1.0);
        assert!(udp["goals"].as_array().unwrap().is_empty());
        assert_eq!(goal_cell(&udp), "");
    }

    #[test]
    fn the_table_has_a_row_per_measure_and_path_with_cpu_and_goals() {
        let mut paths = four();
        paths[0].series_mut(Measure::Tcp).forwarder_cpu = vec![150.0, 170.0, 160.0];
        paths[2] = PathResults::new("boringtun", "boringtun");
        paths[2].note_all("not installed (cargo install boringtun-cli)");
        let goals = goals("strongSwan", "boringtun", "VXLAN");
        let measures: Vec<(Measure, serde_json::Value)> = Measure::ALL
            .iter()
            .map(|m| (*m, measure_json(*m, &paths, "VPN", &goals)))
            .collect();
        let lines = table(&measures, &paths, "VPN");
        assert_eq!(
            lines[0],
            "| measure | path | median | range | vs strongSwan | vs boringtun | vs VXLAN | forwarder CPU | goal |"
        );
        assert_eq!(
            lines[2],
            "| TCP Gbit/s (iperf3) | ours | 5.00 | 4.00–6.00 | 12.50x | - | 0.50x | 160% | ≥10x strongSwan: met; ≥8x boringtun: not measured; ≥0.5x VXLAN: met |"
        );
        assert_eq!(
            lines[4],
            "| TCP Gbit/s (iperf3) | boringtun | - | - | - | - | - | - |  |"
        );
        assert!(lines[5].contains("(not installed (cargo install boringtun-cli))"));
        // Three measures of four paths, and the boringtun note under each.
        assert_eq!(lines.len(), 2 + 3 * 4 + 3);
    }

    #[test]
    fn other_load_is_summed_over_every_run() {
        let mut paths = four();
        assert_eq!(elsewhere_load(&paths), None);
        paths[0].series_mut(Measure::Tcp).elsewhere_cpu = vec![10.0, 90.0];
        paths[1].series_mut(Measure::Udp64Read).elsewhere_cpu = vec![20.0];
        assert_eq!(elsewhere_load(&paths), Some((20.0, 90.0)));
        assert_eq!(min_max(&[]), None);
    }
}
