//! The load-balancer bench's results and how they are shown: per measure
//! and path the median, range and ratios to HAProxy and to the direct
//! path, and beside the switch's figures the goals they are held to; as a
//! Markdown table or as JSON.

pub(super) use super::paths::Series;
use super::paths::{self, Measured, elsewhere_load, min_max};
use super::{BenchOptions, heading, machine, median, ratio};
use anyhow::Result;
use serde_json::json;

/// What is measured on every path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Measure {
    /// HTTP requests per second over kept-alive connections.
    KeepAlive,
    /// HTTP requests per second with a new connection for every request.
    NewConnection,
    /// Single-stream TCP throughput.
    Tcp,
}

impl Measure {
    /// Every measure, in the order they are run and shown.
    pub(super) const ALL: [Measure; 3] = [Measure::KeepAlive, Measure::NewConnection, Measure::Tcp];

    /// Its name in the table.
    pub(super) fn title(self) -> &'static str {
        match self {
            Measure::KeepAlive => "HTTP keep-alive req/s",
            Measure::NewConnection => "HTTP new conn/s (1 req each)",
            Measure::Tcp => "TCP Gbit/s (iperf3)",
        }
    }

    /// Its key in JSON.
    fn key(self) -> &'static str {
        match self {
            Measure::KeepAlive => "http_keepalive_rps",
            Measure::NewConnection => "http_new_connection_rps",
            Measure::Tcp => "tcp_gbps",
        }
    }

    /// Digits after the point.
    fn precision(self) -> usize {
        match self {
            Measure::Tcp => 2,
            _ => 0,
        }
    }
}

impl Measured for Measure {
    fn index(self) -> usize {
        match self {
            Measure::KeepAlive => 0,
            Measure::NewConnection => 1,
            Measure::Tcp => 2,
        }
    }
}

/// Everything measured on one path.
pub(super) type PathResults = paths::PathResults<Measure>;

/// A figure the switch's load balancer is held to: `measure` at least
/// `at_least` times the path labelled `base`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Goal {
    measure: Measure,
    base: &'static str,
    at_least: f64,
}

/// The goals, against the peers' labels.
pub(super) fn goals(haproxy: &'static str, direct: &'static str) -> [Goal; 4] {
    [
        Goal {
            measure: Measure::KeepAlive,
            base: haproxy,
            at_least: 1.3,
        },
        Goal {
            measure: Measure::KeepAlive,
            base: direct,
            at_least: 0.9,
        },
        Goal {
            measure: Measure::NewConnection,
            base: haproxy,
            at_least: 1.5,
        },
        Goal {
            measure: Measure::Tcp,
            base: direct,
            at_least: 0.9,
        },
    ]
}

/// The JSON of one measure: each path's median, range, runs and ratios to
/// the others, and the goals of `ours` on it.
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
                "elsewhere_cpu_percent_runs": series.elsewhere_cpu,
                "p99_ms": median(&series.p99_ms),
                "retransmits_runs": series.retransmits,
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
            format!(
                "≥{:.1}x {}: {verdict}",
                g["at_least"].as_f64().unwrap_or(0.0),
                g["vs"].as_str().unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The median and the largest share of one core (percent) that processes
/// outside the bench used during the runs of `paths`.
/// Prints the results of `paths` (the switch's first, labelled `ours`)
/// as a table or as JSON.
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
            "tool": "wrk (threads and connections in conditions) for HTTP, keep-alive and with \
                     `Connection: close`; iperf3 single TCP stream; vs holds ratios of medians; \
                     forwarder_cpu_percent is the switch's or HAProxy's CPU, percent of one core; \
                     elsewhere_cpu_percent_runs is what processes outside the bench's namespaces \
                     used meanwhile (the shared machine's other load; a lower bound)",
            "measures": measures.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "{}",
        heading(
            &format!(
                "{name} (load balancer): wrk -t{} -c{}, iperf3,",
                super::wrk::THREADS,
                super::wrk::CONNECTIONS
            ),
            options
        )
    );
    let bases: Vec<&str> = paths
        .iter()
        .map(|p| p.label)
        .filter(|l| *l != ours)
        .collect();
    let mut header = vec!["measure", "path", "median", "range"];
    let vs: Vec<String> = bases.iter().map(|b| format!("vs {b}")).collect();
    header.extend(vs.iter().map(String::as_str));
    header.push("goal");
    println!("| {} |", header.join(" | "));
    println!("|{}", " --- |".repeat(header.len()));
    for (measure, value) in &measures {
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
            cells.push(if path.label == ours {
                goal_cell(value)
            } else {
                String::new()
            });
            println!("| {} |", cells.join(" | "));
            let notes = row["notes"].as_array().cloned().unwrap_or_default();
            for note in notes.iter().filter_map(|n| n.as_str()) {
                println!("|   ({note}) |{}", " |".repeat(header.len() - 1));
            }
        }
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

    #[test]
    fn ratios_and_goals_come_from_medians() {
        let paths = [
            path(
                "ours",
                "vswitchd",
                [[60.0, 50.0, 70.0], [30.0, 31.0, 29.0], [9.0, 9.5, 8.0]],
            ),
            path(
                "proxy",
                "HAProxy",
                [[40.0, 40.0, 40.0], [20.0, 25.0, 15.0], [5.0, 5.0, 5.0]],
            ),
            path(
                "direct",
                "direct",
                [[75.0, 50.0, 100.0], [40.0, 40.0, 40.0], [10.0, 10.0, 10.0]],
            ),
        ];
        let goals = goals("HAProxy", "direct");
        let keep_alive = measure_json(Measure::KeepAlive, &paths, "vswitchd", &goals);
        let ours = &keep_alive["paths"][0];
        assert_eq!(ours["median"], 60.0);
        assert_eq!(
            (ours["min"].as_f64(), ours["max"].as_f64()),
            (Some(50.0), Some(70.0))
        );
        assert_eq!(ours["vs"]["HAProxy"], 1.5);
        assert_eq!(ours["vs"]["direct"], 0.8);
        assert!(ours["vs"].get("vswitchd").is_none(), "no ratio to itself");
        assert_eq!(keep_alive["goals"][0]["met"], true, "1.5x >= 1.3x HAProxy");
        assert_eq!(keep_alive["goals"][1]["met"], false, "0.8x < 0.9x direct");
        assert_eq!(
            goal_cell(&keep_alive),
            "≥1.3x HAProxy: met; ≥0.9x direct: missed"
        );
        let new_conns = measure_json(Measure::NewConnection, &paths, "vswitchd", &goals);
        assert_eq!(new_conns["goals"].as_array().unwrap().len(), 1);
        assert_eq!(new_conns["goals"][0]["met"], true, "30/20 = 1.5x");
        let tcp = measure_json(Measure::Tcp, &paths, "vswitchd", &goals);
        assert_eq!(tcp["goals"][0]["vs"], "direct");
        assert_eq!(tcp["goals"][0]["met"], true, "9/10 = 0.9x");
    }

    #[test]
    fn a_path_without_runs_leaves_its_goals_unjudged() {
        let mut haproxy = PathResults::new("proxy", "HAProxy");
        haproxy.note_all("not installed (apt-get install haproxy)");
        let paths = [
            path("ours", "vswitchd", [[1.0; 3], [1.0; 3], [1.0; 3]]),
            haproxy,
        ];
        let value = measure_json(
            Measure::KeepAlive,
            &paths,
            "vswitchd",
            &goals("HAProxy", "direct"),
        );
        assert_eq!(value["goals"][0]["met"], serde_json::Value::Null);
        assert_eq!(value["paths"][1]["median"], serde_json::Value::Null);
        assert_eq!(
            value["paths"][1]["notes"][0],
            "not installed (apt-get install haproxy)"
        );
        assert!(goal_cell(&value).starts_with("≥1.3x HAProxy: not measured"));
        assert_eq!(min_max(&[]), None);
        assert_eq!(elsewhere_load(&paths), None);
        let mut busy = paths.to_vec();
        busy[0].series_mut(Measure::Tcp).elsewhere_cpu = vec![10.0, 90.0];
        busy[1].series_mut(Measure::KeepAlive).elsewhere_cpu = vec![20.0];
        assert_eq!(elsewhere_load(&busy), Some((20.0, 90.0)));
    }
}
