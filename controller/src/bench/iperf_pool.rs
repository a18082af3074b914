//! Single-stream TCP throughput with iperf3 to an address that forwards to
//! one of several backends (a load balancer's frontend, a proxy): a
//! one-shot iperf3 server listens on every backend, and the client's
//! connections reach one of them (the path must keep iperf3's control and
//! data connections together).

use super::daemon::{Daemon, output_within};
use super::iperf::command_in;
use anyhow::{Result, anyhow, bail};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// One iperf3 run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct TcpRun {
    /// Throughput received, Gbit/s.
    pub(super) gbps: f64,
    /// Segments the sender retransmitted (spurious ones included).
    pub(super) retransmits: Option<u64>,
}

/// How long each server gets to start listening.
const START_LIMIT: Duration = Duration::from_secs(5);

/// Throughput received over `seconds` by whichever of the servers on `port` in
/// `backends` the path from `client_ns` to `target` reaches. Server logs go
/// to `logs`.
pub(super) fn tcp_gbps(
    client_ns: &str,
    target: SocketAddr,
    backends: &[String],
    port: u16,
    seconds: u64,
    logs: &Path,
) -> Result<TcpRun> {
    let mut servers = Vec::new();
    for (index, namespace) in backends.iter().enumerate() {
        let mut server = Daemon::start(
            &format!("iperf3 server on {namespace}"),
            namespace,
            "iperf3",
            &["-s", "-1", "-p", &port.to_string()],
            &logs.join(format!("iperf3-{index}.log")),
        )?;
        server.wait_listening(namespace, port, START_LIMIT)?;
        servers.push(server);
    }
    let mut client = command_in(client_ns, "iperf3")?;
    client.args([
        "-c",
        &target.ip().to_string(),
        "-p",
        &target.port().to_string(),
        "-t",
        &seconds.to_string(),
        "--connect-timeout",
        "3000",
        "-J",
    ]);
    let output = output_within(&mut client, "iperf3", Duration::from_secs(seconds + 15))?;
    drop(servers);
    read_report(&output.stdout)
}

/// The received throughput and the sender's retransmissions in iperf3's
/// JSON report.
fn read_report(report: &[u8]) -> Result<TcpRun> {
    let value: serde_json::Value = serde_json::from_slice(report)
        .map_err(|e| anyhow!("iperf3 printed no JSON report ({e})"))?;
    if let Some(error) = value.get("error").and_then(|e| e.as_str()) {
        bail!("iperf3: {error}");
    }
    let gbps = value["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|bps| bps / 1e9)
        .ok_or_else(|| anyhow!("iperf3 reported no received throughput"))?;
    Ok(TcpRun {
        gbps,
        retransmits: value["end"]["sum_sent"]["retransmits"].as_u64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_gives_the_received_rate_or_its_error() {
        let report = br#"{"end": {"sum_received": {"bits_per_second": 12500000000.0},
                                  "sum_sent": {"retransmits": 7}}}"#;
        assert_eq!(
            read_report(report).unwrap(),
            TcpRun {
                gbps: 12.5,
                retransmits: Some(7)
            }
        );
        let without = br#"{"end": {"sum_received": {"bits_per_second": 1e9}}}"#;
        assert_eq!(read_report(without).unwrap().retransmits, None);
        let failed = br#"{"error": "unable to connect to server: Connection refused"}"#;
        let error = read_report(failed).unwrap_err();
        assert!(error.to_string().contains("Connection refused"), "{error}");
        assert!(read_report(b"").is_err());
        assert!(read_report(b"{}").is_err());
    }
}
