//! iperf3 measurements between two network namespaces: single-stream TCP
//! throughput and 64-byte UDP packet rate. The processes enter their
//! namespaces themselves (`setns` before exec).

use anyhow::{Context, Result, anyhow, bail};
use std::fs::File;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether iperf3 is installed.
pub(super) fn available() -> bool {
    Command::new("iperf3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `program` ready to run inside network namespace `namespace`.
pub(super) fn command_in(namespace: &str, program: &str) -> Result<Command> {
    let file = File::open(sdn_vswitch::netns::path_of(namespace))
        .with_context(|| format!("open namespace {namespace}"))?;
    let fd: OwnedFd = file.into();
    let mut command = Command::new(program);
    // SAFETY: setns(2) is async-signal-safe; `fd` stays open in the child
    // until exec because the closure owns it.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(command)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(namespace: &str, port: u16) -> Result<Server> {
    let child = command_in(namespace, "iperf3")?
        .args(["-s", "-1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start the iperf3 server")?;
    // Give it a moment to listen.
    std::thread::sleep(Duration::from_millis(300));
    Ok(Server(child))
}

fn run_client(
    namespace: &str,
    server: IpAddr,
    port: u16,
    extra: &[&str],
    seconds: u64,
) -> Result<serde_json::Value> {
    let mut command = command_in(namespace, "iperf3")?;
    command
        .args([
            "-c",
            &server.to_string(),
            "-p",
            &port.to_string(),
            "-t",
            &seconds.to_string(),
            "-J",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    let started = Instant::now();
    let output = command.output().context("run the iperf3 client")?;
    let value: serde_json::Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("iperf3 printed no JSON after {:?}", started.elapsed()))?;
    if let Some(error) = value.get("error").and_then(|e| e.as_str()) {
        bail!("iperf3: {error}");
    }
    Ok(value)
}

/// Single-stream TCP throughput from `client_ns` to `server` in `server_ns`, Gbit/s.
pub(super) fn tcp_gbps(
    server_ns: &str,
    client_ns: &str,
    server: IpAddr,
    port: u16,
    seconds: u64,
) -> Result<f64> {
    let _server = start_server(server_ns, port)?;
    let value = run_client(client_ns, server, port, &[], seconds)?;
    value["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|bps| bps / 1e9)
        .ok_or_else(|| anyhow!("iperf3 reported no received throughput"))
}

/// Packets received by every device of a namespace except loopback, from
/// `/proc/thread-self/net/dev` read inside it.
fn rx_packets(namespace: &str) -> Result<u64> {
    let text = sdn_vswitch::netns::run_in(Some(namespace), || {
        std::fs::read_to_string("/proc/thread-self/net/dev")
    })
    .with_context(|| format!("read the counters of namespace {namespace}"))?;
    Ok(text
        .lines()
        .skip(2)
        .filter_map(|line| line.split_once(':'))
        .filter(|(device, _)| device.trim() != "lo")
        .filter_map(|(_, fields)| fields.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum())
}

/// One 64-byte UDP measurement, in packets per second.
#[derive(Debug, Clone, Copy)]
pub(super) struct UdpRate {
    /// Frames that reached the receiving host's interface: what the path forwarded.
    pub(super) delivered_pps: f64,
    /// Datagrams the receiving iperf3 read: bounded by the receiver's CPU share.
    pub(super) received_pps: f64,
}

/// 64-byte UDP datagrams with the sender unthrottled.
pub(super) fn udp64(
    server_ns: &str,
    client_ns: &str,
    server: IpAddr,
    port: u16,
    seconds: u64,
) -> Result<UdpRate> {
    let _server = start_server(server_ns, port)?;
    let before = rx_packets(server_ns)?;
    let value = run_client(
        client_ns,
        server,
        port,
        &["-u", "-b", "0", "-l", "64"],
        seconds,
    )?;
    let after = rx_packets(server_ns)?;
    let sum = &value["end"]["sum"];
    let packets = sum["packets"]
        .as_f64()
        .ok_or_else(|| anyhow!("iperf3 reported no packets"))?;
    let lost = sum["lost_packets"].as_f64().unwrap_or(0.0);
    let elapsed = sum["seconds"]
        .as_f64()
        .filter(|s| *s > 0.0)
        .ok_or_else(|| anyhow!("iperf3 reported no duration"))?;
    Ok(UdpRate {
        delivered_pps: after.saturating_sub(before) as f64 / elapsed,
        received_pps: (packets - lost).max(0.0) / elapsed,
    })
}
