//! `vswitchd`: one userspace virtual switch. Opens its ports (AF_PACKET on
//! devices, inside a network namespace if asked), runs the datapath thread and
//! connects to the controller.

use anyhow::{Context, Result, bail};
use clap::Parser;
use sdn_vswitch::agent::{self, AgentConfig, ControllerAddress, FailMode};
use sdn_vswitch::datapath::Datapath;
use sdn_vswitch::flow::PortNo;
use sdn_vswitch::netns;
use sdn_vswitch::port::Port;
use sdn_vswitch::port::af_packet::{AfPacketOptions, AfPacketPort};
use sdn_vswitch::port::vxlan::VxlanPort;
use std::time::Duration;
use tracing::info;

/// A userspace virtual switch programmed by the sdn controller.
#[derive(Debug, Parser)]
#[command(name = "vswitchd", version)]
struct Args {
    /// Switch name (as in the topology).
    #[arg(long)]
    name: String,

    /// Datapath id; derived from the name when absent.
    #[arg(long)]
    datapath_id: Option<u64>,

    /// Controller address: unix:/path/to.sock, tcp:host:port or host:port.
    #[arg(long)]
    controller: ControllerAddress,

    /// Network namespace that holds the port devices (default: the current one).
    #[arg(long)]
    netns: Option<String>,

    /// A port, as NUMBER=DEVICE or NUMBER=DEVICE:no-offloads (repeat per port).
    #[arg(
        long = "port",
        value_name = "NUMBER=DEVICE[:no-offloads]",
        required = true
    )]
    ports: Vec<String>,

    /// What to do without a controller: secure or standalone.
    #[arg(long, default_value = "secure")]
    fail_mode: FailMode,

    /// A VXLAN tunnel endpoint as port NUMBER with local address ADDRESS, in
    /// the same namespace as the ports (NUMBER=ADDRESS).
    #[arg(long, value_name = "NUMBER=ADDRESS")]
    vxlan: Option<String>,

    /// UDP port of VXLAN (4789, the IANA port, unless a peer uses another).
    #[arg(long, default_value_t = sdn_vswitch::wire::vxlan::UDP_PORT)]
    vxlan_udp_port: u16,

    /// Largest inner frame the tunnel carries without fragmenting the
    /// underlay (the underlay MTU minus 50).
    #[arg(long, default_value_t = 1450)]
    vxlan_mtu: u32,

    /// Pin the datapath thread to this CPU (default: leave it to the scheduler).
    #[arg(long)]
    cpu: Option<usize>,

    /// Seconds without a controller before a standalone switch fails open.
    #[arg(long, default_value_t = 3.0)]
    fail_open_after: f64,
}

struct PortSpec {
    number: PortNo,
    device: String,
    offloads: bool,
}

/// `NUMBER=ADDRESS` of a VXLAN endpoint.
fn parse_vxlan(text: &str) -> Result<(PortNo, std::net::Ipv4Addr)> {
    let (number, address) = text
        .split_once('=')
        .with_context(|| format!("--vxlan {text}: want NUMBER=ADDRESS"))?;
    let number: PortNo = number
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .with_context(|| format!("--vxlan {text}: port number must be 1 or more"))?;
    let address = address
        .parse()
        .with_context(|| format!("--vxlan {text}: {address:?} is not an IPv4 address"))?;
    Ok((number, address))
}

fn parse_port(text: &str) -> Result<PortSpec> {
    let (number, rest) = text
        .split_once('=')
        .with_context(|| format!("--port {text}: want NUMBER=DEVICE"))?;
    let number: PortNo = number
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .with_context(|| format!("--port {text}: port number must be 1 or more"))?;
    let (device, offloads) = match rest.split_once(':') {
        Some((device, "no-offloads")) => (device, false),
        Some((_, flag)) => bail!("--port {text}: unknown flag {flag:?} (want no-offloads)"),
        None => (rest, true),
    };
    if device.is_empty() {
        bail!("--port {text}: empty device name");
    }
    Ok(PortSpec {
        number,
        device: device.to_string(),
        offloads,
    })
}

/// A stable datapath id from the switch name (FNV-1a).
fn datapath_id_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) & 0x0000_ffff_ffff_ffff
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .init();
    let args = Args::parse();
    let specs = args
        .ports
        .iter()
        .map(|p| parse_port(p))
        .collect::<Result<Vec<_>>>()?;
    let mut seen = std::collections::HashSet::new();
    for spec in &specs {
        if !seen.insert(spec.number) {
            bail!("port number {} given twice", spec.number);
        }
    }
    let vxlan = args.vxlan.as_deref().map(parse_vxlan).transpose()?;
    if let Some((number, _)) = vxlan
        && specs.iter().any(|s| s.number == number)
    {
        bail!("--vxlan port number {number} is also a --port");
    }
    let ports: Vec<(PortNo, Box<dyn Port>)> = netns::run_in(args.netns.as_deref(), || {
        let tunnel = match vxlan {
            Some((number, local)) => {
                let port = VxlanPort::open(local, args.vxlan_udp_port, args.vxlan_mtu)?;
                Some((number, Box::new(port) as Box<dyn Port>))
            }
            None => None,
        };
        specs
            .iter()
            .map(|spec| {
                let port = AfPacketPort::open(
                    &spec.device,
                    AfPacketOptions {
                        offloads: spec.offloads,
                        ..AfPacketOptions::default()
                    },
                )?;
                Ok((spec.number, Box::new(port) as Box<dyn Port>))
            })
            .chain(tunnel.map(Ok))
            .collect()
    })
    .with_context(|| {
        format!(
            "open the ports of {} in namespace {}",
            args.name,
            args.netns.as_deref().unwrap_or("(current)")
        )
    })?;
    for (number, port) in &ports {
        let info = port.info();
        info!(switch = %args.name, port = number, device = %info.name, mac = %info.hw_addr, offloads = info.offloads, "port added");
    }
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let datapath = Datapath::new(ports, events_tx);
    let descriptions = datapath.port_descriptions();
    let (handle, thread) = datapath
        .spawn(&args.name, args.cpu)
        .context("start the datapath thread")?;

    let mut config = AgentConfig::new(
        &args.name,
        args.datapath_id
            .unwrap_or_else(|| datapath_id_of(&args.name)),
        args.controller.clone(),
        args.fail_mode,
    );
    config.fail_open_after = Duration::from_secs_f64(args.fail_open_after.max(0.0));
    info!(switch = %args.name, controller = %args.controller, fail_mode = ?args.fail_mode, "vswitchd starting");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async {
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing a SIGTERM handler succeeds in a fresh runtime");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        agent::run(config, descriptions, handle.clone(), events_rx, shutdown).await;
    });
    info!(switch = %args.name, "vswitchd stopping");
    handle.send(sdn_vswitch::datapath::Command::Shutdown);
    let _ = thread.join();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_arguments() {
        let p = parse_port("3=p3").unwrap();
        assert_eq!((p.number, p.device.as_str(), p.offloads), (3, "p3", true));
        let p = parse_port("4=veth9:no-offloads").unwrap();
        assert!(!p.offloads);
        for bad in ["p3", "0=p3", "x=p3", "3=", "3=p3:fast"] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_vxlan("65000=192.168.100.1").unwrap(),
            (65000, "192.168.100.1".parse().unwrap())
        );
        for bad in ["65000", "0=1.2.3.4", "1=fd00::1", "1=host"] {
            assert!(parse_vxlan(bad).is_err(), "{bad}");
        }
        assert_ne!(datapath_id_of("sw1"), datapath_id_of("sw2"));
    }
}
