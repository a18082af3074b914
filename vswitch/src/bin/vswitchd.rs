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
use sdn_vswitch::port::esp::{EspHandle, EspPort as EspTunnel};
use sdn_vswitch::port::vxlan::VxlanPort;
use sdn_vswitch::vpn_config::VpnConfig;
use sdn_vswitch::vpn_gateway::Gateway;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;
use tracing::{info, warn};

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

    /// A VPN gateway's ESP port as port NUMBER on the gateway's public
    /// address ADDRESS, in the same namespace as the ports (repeat per
    /// gateway). Opened with its IKE socket (UDP 500).
    #[arg(long = "esp", value_name = "NUMBER=ADDRESS", value_parser = parse_esp)]
    esp: Vec<EspPort>,

    /// The VPN gateways' connections (JSON, as `sdn up` writes them),
    /// checked against the `--esp` ports; each gateway's status is written
    /// beside it.
    #[arg(long, value_name = "FILE", value_parser = read_vpn_config)]
    vpn_config: Option<VpnConfigFile>,
}

/// An ESP port of `--esp NUMBER=ADDRESS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EspPort {
    number: PortNo,
    address: Ipv4Addr,
}

/// A `--vpn-config` file, read.
#[derive(Debug, Clone)]
struct VpnConfigFile {
    path: PathBuf,
    config: VpnConfig,
}

fn parse_esp(text: &str) -> Result<EspPort, String> {
    parse_endpoint("--esp", text)
        .map(|(number, address)| EspPort { number, address })
        .map_err(|e| format!("{e:#}"))
}

fn read_vpn_config(text: &str) -> Result<VpnConfigFile, String> {
    let path = PathBuf::from(text);
    VpnConfig::read(&path)
        .map(|config| VpnConfigFile {
            path: path.clone(),
            config,
        })
        .map_err(|e| format!("read the VPN configuration {}: {e}", path.display()))
}

struct PortSpec {
    number: PortNo,
    device: String,
    offloads: bool,
}

/// `NUMBER=ADDRESS` of a VXLAN endpoint.
fn parse_vxlan(text: &str) -> Result<(PortNo, Ipv4Addr)> {
    parse_endpoint("--vxlan", text)
}

/// `NUMBER=ADDRESS` of a tunnel endpoint given with `flag`.
fn parse_endpoint(flag: &str, text: &str) -> Result<(PortNo, Ipv4Addr)> {
    let (number, address) = text
        .split_once('=')
        .with_context(|| format!("{flag} {text}: want NUMBER=ADDRESS"))?;
    let number: PortNo = number
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .with_context(|| format!("{flag} {text}: port number must be 1 or more"))?;
    let address = address
        .parse()
        .with_context(|| format!("{flag} {text}: {address:?} is not an IPv4 address"))?;
    Ok((number, address))
}

/// Checks the ESP ports against the other ports and each other, and the
/// VPN configuration's gateways against the ESP ports: each gateway's port
/// is an `--esp` port on the gateway's address.
fn check_vpn(
    esp: &[EspPort],
    ports: &[PortSpec],
    vxlan: Option<(PortNo, Ipv4Addr)>,
    vpn_config: Option<&VpnConfigFile>,
) -> Result<()> {
    for (i, port) in esp.iter().enumerate() {
        let number = port.number;
        if ports.iter().any(|p| p.number == number) {
            bail!("--esp port number {number} is also a --port");
        }
        if vxlan.is_some_and(|(n, _)| n == number) {
            bail!("--esp port number {number} is also the --vxlan port");
        }
        if let Some(other) = esp[..i]
            .iter()
            .find(|o| o.number == number || o.address == port.address)
        {
            bail!(
                "--esp {number}={} and --esp {}={} share a port number or address",
                port.address,
                other.number,
                other.address
            );
        }
    }
    let Some(file) = vpn_config else {
        return Ok(());
    };
    for gateway in &file.config.gateways {
        let wanted = EspPort {
            number: gateway.port,
            address: gateway.public_ip,
        };
        if !esp.contains(&wanted) {
            bail!(
                "{}: VPN gateway {} has ESP port {}={}, which no --esp gives",
                file.path.display(),
                gateway.name,
                gateway.port,
                gateway.public_ip
            );
        }
    }
    Ok(())
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

/// The link MTU under an ESP port (the gateway's link to the internet).
const ESP_LINK_MTU: u32 = 1500;

/// A locally administered MAC for ESP port `number` (frames it opens carry
/// it as their destination).
fn esp_mac(number: PortNo) -> sdn_vswitch::wire::EthernetAddress {
    let n = number.to_be_bytes();
    sdn_vswitch::wire::EthernetAddress([0x02, 0xe5, 0x00, n[1], n[2], n[3]])
}

/// Starts one task per VPN gateway of the configuration, over its ESP
/// port's handle and its IKE socket. A gateway that cannot start (a key
/// file refused, say) is logged and left out; the others run.
fn start_gateways(
    file: &VpnConfigFile,
    handles: Vec<(PortNo, EspHandle)>,
    sockets: Vec<(PortNo, std::net::UdpSocket)>,
) {
    let dir = file.path.parent().unwrap_or(std::path::Path::new("."));
    let mut sockets: std::collections::HashMap<PortNo, std::net::UdpSocket> =
        sockets.into_iter().collect();
    for gateway in &file.config.gateways {
        let (Some((_, handle)), Some(socket)) = (
            handles.iter().find(|(n, _)| *n == gateway.port),
            sockets.remove(&gateway.port),
        ) else {
            warn!(gateway = %gateway.name, port = gateway.port, "no ESP port for the gateway");
            continue;
        };
        let status = sdn_vswitch::vpn_status::status_path(dir, &gateway.name);
        let started = Gateway::new(gateway, handle.clone(), Some(status), Instant::now())
            .map_err(anyhow::Error::from)
            .and_then(|g| Ok((g, tokio::net::UdpSocket::from_std(socket)?)));
        match started {
            Ok((g, socket)) => {
                tokio::spawn(g.run(socket));
            }
            Err(err) => warn!(gateway = %gateway.name, error = %err, "VPN gateway not started"),
        }
    }
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
    check_vpn(&args.esp, &specs, vxlan, args.vpn_config.as_ref())?;
    // The ESP ports and the gateways' IKE sockets (UDP 500), in the
    // switch's namespace, where the gateways' public addresses are.
    let mut esp_handles: Vec<(PortNo, EspHandle)> = Vec::new();
    let mut ike_sockets: Vec<(PortNo, std::net::UdpSocket)> = Vec::new();
    let mut esp_ports: Vec<(PortNo, Box<dyn Port>)> = Vec::new();
    netns::run_in(args.netns.as_deref(), || {
        for esp in &args.esp {
            let (port, handle) = EspTunnel::open(esp.address, esp_mac(esp.number), ESP_LINK_MTU)?;
            let ike = std::net::UdpSocket::bind((esp.address, sdn_vpn::ike::session::IKE_PORT))?;
            ike.set_nonblocking(true)?;
            esp_handles.push((esp.number, handle));
            ike_sockets.push((esp.number, ike));
            esp_ports.push((esp.number, Box::new(port) as Box<dyn Port>));
        }
        Ok::<(), std::io::Error>(())
    })
    .with_context(|| format!("open the ESP ports of {}", args.name))?;
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
            .collect::<std::io::Result<Vec<_>>>()
    })
    .map(|mut ports| {
        ports.append(&mut esp_ports);
        ports
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
        if let Some(file) = &args.vpn_config {
            start_gateways(file, esp_handles, ike_sockets);
        }
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

    fn esp(number: PortNo, address: &str) -> EspPort {
        EspPort {
            number,
            address: address.parse().unwrap(),
        }
    }

    #[test]
    fn esp_and_vpn_config_arguments() {
        assert_eq!(
            parse_esp("65100=203.0.113.90").unwrap(),
            esp(65_100, "203.0.113.90")
        );
        for bad in ["65100", "0=203.0.113.90", "x=1.2.3.4", "1=fd00::1", "1="] {
            let error = parse_esp(bad).unwrap_err();
            assert!(error.starts_with(&format!("--esp {bad}: ")), "{error}");
        }
        let args = Args::try_parse_from([
            "vswitchd",
            "--name",
            "sw1",
            "--controller",
            "unix:/c.sock",
            "--port",
            "1=p1",
            "--esp",
            "65100=203.0.113.90",
            "--esp",
            "65101=203.0.113.91",
        ])
        .unwrap();
        assert_eq!(
            args.esp,
            [esp(65_100, "203.0.113.90"), esp(65_101, "203.0.113.91")]
        );
        assert!(args.vpn_config.is_none());
        let ports = [parse_port("1=p1").unwrap()];
        assert!(check_vpn(&args.esp, &ports, None, None).is_ok());

        let clash = [esp(1, "203.0.113.90")];
        let error = check_vpn(&clash, &ports, None, None).unwrap_err();
        assert_eq!(error.to_string(), "--esp port number 1 is also a --port");
        let vxlan = Some((65_100, "192.168.100.1".parse().unwrap()));
        assert!(check_vpn(&args.esp, &ports, vxlan, None).is_err());
        let twice = [esp(65_100, "203.0.113.90"), esp(65_101, "203.0.113.90")];
        assert!(check_vpn(&twice, &ports, None, None).is_err());
        let twice = [esp(65_100, "203.0.113.90"), esp(65_100, "203.0.113.91")];
        assert!(check_vpn(&twice, &ports, None, None).is_err());
    }

    #[test]
    fn the_vpn_configuration_is_read_and_matched_to_the_esp_ports() {
        use sdn_vswitch::vpn_config::GatewayConfig;
        let path = std::env::temp_dir().join(format!("vswitchd-vpn-{}.json", std::process::id()));
        let config = VpnConfig {
            gateways: vec![GatewayConfig {
                name: "hub-gw".into(),
                port: 65_100,
                public_ip: "203.0.113.90".parse().unwrap(),
                connections: Vec::new(),
            }],
        };
        std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
        let file = read_vpn_config(path.to_str().unwrap()).unwrap();
        assert_eq!(file.config, config);
        assert!(check_vpn(&[esp(65_100, "203.0.113.90")], &[], None, Some(&file)).is_ok());
        let error = check_vpn(&[esp(65_101, "203.0.113.90")], &[], None, Some(&file)).unwrap_err();
        assert!(
            error.to_string().ends_with(
                "VPN gateway hub-gw has ESP port 65100=203.0.113.90, which no --esp gives"
            ),
            "{error}"
        );
        std::fs::write(&path, "{\"gateways\": 3}").unwrap();
        let error = read_vpn_config(path.to_str().unwrap()).unwrap_err();
        assert!(
            error.starts_with(&format!("read the VPN configuration {}: ", path.display())),
            "{error}"
        );
        std::fs::remove_file(&path).unwrap();
        let error = read_vpn_config("/nonexistent/vpn-sw1.json").unwrap_err();
        assert!(
            error.contains("/nonexistent/vpn-sw1.json: No such file"),
            "{error}"
        );
        let parsed = Args::try_parse_from([
            "vswitchd",
            "--name",
            "sw1",
            "--controller",
            "unix:/c.sock",
            "--port",
            "1=p1",
            "--vpn-config",
            "/nonexistent/vpn-sw1.json",
        ]);
        assert!(
            parsed
                .unwrap_err()
                .to_string()
                .contains("read the VPN configuration")
        );
    }
}
