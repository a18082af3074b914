//! HTTP requests per second with wrk from a network namespace, with
//! keep-alive or with a new connection for every request, and the parsing
//! of wrk's report.

use super::daemon::output_within;
use super::iperf::command_in;
use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

/// wrk's threads (the reference measurement's `-t2`).
pub(super) const THREADS: u32 = 2;

/// wrk's open connections (the reference measurement's `-c32`).
pub(super) const CONNECTIONS: u32 = 32;

/// Whether wrk is installed (`wrk -v` prints its version and exits 1).
pub(super) fn available() -> bool {
    Command::new("wrk")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// How the connections are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reuse {
    /// Each connection carries request after request.
    KeepAlive,
    /// Every request asks the server to close (`Connection: close`), so
    /// that wrk opens a new connection for the next one.
    NewConnection,
}

/// What wrk reported.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct WrkReport {
    /// Completed requests per second.
    pub(super) requests_per_s: f64,
    /// 99th percentile latency, milliseconds.
    pub(super) p99_ms: Option<f64>,
    /// Socket errors and answers other than 2xx or 3xx, as wrk wrote them.
    pub(super) errors: Vec<String>,
}

/// Loads `http://<server>/` from `namespace` for `seconds` with `THREADS`
/// threads and `CONNECTIONS` connections.
pub(super) fn run(
    namespace: &str,
    server: SocketAddr,
    reuse: Reuse,
    seconds: u64,
) -> Result<WrkReport> {
    let mut command = command_in(namespace, "wrk")?;
    command.args([
        &format!("-t{THREADS}"),
        &format!("-c{CONNECTIONS}"),
        &format!("-d{seconds}s"),
        "--latency",
    ]);
    if reuse == Reuse::NewConnection {
        command.args(["-H", "Connection: close"]);
    }
    command.arg(format!("http://{server}/"));
    let limit = Duration::from_secs(seconds + 15);
    let output = output_within(&mut command, "wrk", limit)?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse(&text).with_context(|| {
        format!(
            "wrk to {server} from {namespace} ({}): {}",
            output.status,
            text.trim()
        )
    })
}

/// Reads wrk's report: `Requests/sec:`, the `99%` latency line, and the
/// error lines.
fn parse(text: &str) -> Result<WrkReport> {
    let mut requests_per_s = None;
    let mut p99_ms = None;
    let mut errors = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(value) = line.strip_prefix("Requests/sec:") {
            requests_per_s = value.trim().parse::<f64>().ok();
        } else if let Some(value) = line.strip_prefix("99%") {
            p99_ms = milliseconds(value.trim());
        } else if line.starts_with("Socket errors:") || line.starts_with("Non-2xx or 3xx") {
            errors.push(line.to_string());
        }
    }
    let Some(requests_per_s) = requests_per_s else {
        bail!("no `Requests/sec:` in wrk's report");
    };
    Ok(WrkReport {
        requests_per_s,
        p99_ms,
        errors,
    })
}

/// A wrk duration (`512.00us`, `1.29ms`, `2.00s`, `1.00m`) in milliseconds.
fn milliseconds(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    match unit {
        "us" => Some(value / 1e3),
        "ms" => Some(value),
        "s" => Some(value * 1e3),
        "m" => Some(value * 60e3),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 5s test @ http://203.0.113.81/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.29ms    1.76ms  36.19ms   89.58%
    Req/Sec    16.19k     4.73k   34.36k    73.00%
  Latency Distribution
     50%  838.00us
     75%    1.36ms
     90%    2.48ms
     99%    8.97ms
  161524 requests in 5.02s, 130.93MB read
  Socket errors: connect 0, read 3, write 0, timeout 0
Requests/sec:  32183.05
Transfer/sec:     26.09MB
";

    #[test]
    fn the_report_gives_the_rate_the_tail_latency_and_the_errors() {
        let report = parse(REPORT).unwrap();
        assert_eq!(report.requests_per_s, 32183.05);
        assert_eq!(report.p99_ms, Some(8.97));
        assert_eq!(
            report.errors,
            vec!["Socket errors: connect 0, read 3, write 0, timeout 0"]
        );
        let clean = REPORT.replace(
            "  Socket errors: connect 0, read 3, write 0, timeout 0\n",
            "",
        );
        assert!(parse(&clean).unwrap().errors.is_empty());
        assert!(parse("unable to connect to 203.0.113.81:80 Connection refused").is_err());
    }

    #[test]
    fn durations_convert_to_milliseconds() {
        assert_eq!(milliseconds("838.00us"), Some(0.838));
        assert_eq!(milliseconds("1.36ms"), Some(1.36));
        assert_eq!(milliseconds("2.00s"), Some(2000.0));
        assert_eq!(milliseconds("1.00m"), Some(60000.0));
        assert_eq!(milliseconds("12"), None);
        assert_eq!(milliseconds("1.0h"), None);
    }
}
