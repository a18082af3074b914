//! The `sdn` command line: argument definitions and dispatch. Each command
//! lives in its own module.

mod capture;
mod demo;
mod flows;
mod labs;
mod lb;
mod routing;
mod security;
mod status;
mod vpn;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// Software-defined network labs in Linux network namespaces.
#[derive(Debug, Parser)]
#[command(name = "sdn", version, about = "Software-defined network labs in Linux network namespaces", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Bring up the lab a topology file describes (needs root).
    Up {
        /// Topology file.
        topology: PathBuf,
        /// Restart the stopped components of a lab that is partly up.
        #[arg(long)]
        resume: bool,
        /// Seconds to wait for every switch to be connected and synced.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Remove a lab: its processes, namespaces and veth pairs (needs root).
    Down {
        /// Topology file of the lab (or use --lab).
        topology: Option<PathBuf>,
        /// Lab name instead of a topology file.
        #[arg(long, conflicts_with = "topology")]
        lab: Option<String>,
        /// Without a record of the lab, delete the namespaces its topology names.
        #[arg(long)]
        force: bool,
    },
    /// Show the labs that are up: processes, switches, hosts, logs.
    Status {
        /// Only this lab.
        #[arg(long)]
        lab: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print a switch's flow tables, as the switch holds them.
    DumpFlows {
        /// Switch name.
        switch: String,
        /// Lab (needed only when several are up).
        #[arg(long)]
        lab: Option<String>,
        /// Only this table.
        #[arg(long)]
        table: Option<u32>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Apply the security section and route tables of an edited topology
    /// file to its running lab: they take effect at once, without
    /// restarting anything.
    Apply {
        /// Topology file.
        topology: PathBuf,
    },
    /// List the connections a switch tracks (tuple, state, age, zone).
    Conntrack {
        /// Switch name.
        switch: String,
        /// Only this zone (a filtered port's number).
        #[arg(long)]
        zone: Option<u32>,
        /// Lab (needed only when several are up).
        #[arg(long)]
        lab: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show the security rules a switch enforces, with hit counters.
    Rules {
        /// Switch name.
        switch: String,
        /// Lab (needed only when several are up).
        #[arg(long)]
        lab: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show the effective routes of the subnets whose hosts a switch holds
    /// (system, peering and user routes, as Azure lists them), with the
    /// packets each carried there.
    Routes {
        /// Switch name.
        switch: String,
        /// Only this subnet (`subnet` or `network/subnet`).
        #[arg(long)]
        subnet: Option<String>,
        /// Lab (needed only when several are up).
        #[arg(long)]
        lab: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Load balancers: `sdn lb status` shows each one's frontends and rules,
    /// and every backend's health, last probe and connections.
    Lb {
        /// What to show.
        #[command(subcommand)]
        action: LbCommand,
    },
    /// VPN gateways: their connections and SAs.
    Vpn {
        /// What to show.
        #[command(subcommand)]
        action: VpnCommand,
    },
    /// Print a switch's port and datapath counters.
    DumpPorts {
        /// Switch name.
        switch: String,
        /// Lab (needed only when several are up).
        #[arg(long)]
        lab: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Write the frames crossing a switch port to a pcap file.
    Capture {
        /// Switch name.
        switch: String,
        /// Port name (or number).
        port: String,
        /// Output file (`-` for standard output).
        #[arg(short = 'w', long = "write")]
        write: PathBuf,
        /// Stop after this many frames.
        #[arg(short = 'c', long)]
        count: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
        /// Bytes kept per frame.
        #[arg(long, default_value_t = 65535)]
        snaplen: u32,
        /// Lab (needed only when several are up).
        #[arg(long)]
        lab: Option<String>,
    },
    /// Bring up a lab (the demo by default) and show traffic flowing through it
    /// (needs root).
    Demo {
        /// Topology file.
        #[arg(default_value = "topologies/demo.yaml")]
        topology: PathBuf,
    },
    /// Check a topology file without creating anything.
    Validate {
        /// Topology file.
        topology: PathBuf,
    },
    /// Run the controller of a lab in the foreground (`sdn up` starts it for you).
    Controller {
        /// Topology file.
        #[arg(long)]
        topology: PathBuf,
        /// Where to listen: unix:/path or tcp:host:port.
        #[arg(long)]
        listen: String,
    },
    /// Measure throughput and packet rate between the first two hosts of a
    /// topology through vswitchd, beside a Linux bridge and Open vSwitch
    /// userspace with TSO measured in the same run (needs root and iperf3).
    /// A topology with a security section gets the firewall bench: 0, 100
    /// and 1,000 rules, and new connections per second, beside nftables.
    /// One with a NAT gateway, or whose first two hosts are in different
    /// subnets, gets the routed bench: routed by the switch, beside the same
    /// hosts switched in one subnet and a Linux router, and new connections
    /// per second through the NAT gateway beside nftables masquerade. One
    /// with a load balancer gets the load-balancer bench: HTTP requests per
    /// second (kept alive and one per connection, wrk) and TCP throughput
    /// through its public frontend to nginx backends, beside HAProxy in TCP
    /// mode and the client straight to one backend.
    Bench {
        /// Topology file (its first two hosts share a subnet, or are routed).
        topology: PathBuf,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Runs of each measurement; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Skip the baselines (Linux bridge, Open vSwitch, nftables, Linux router).
        #[arg(long)]
        no_baselines: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the command line.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sdn: error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            if let Some(topology_errors) = error.downcast_ref::<crate::topology::TopologyErrors>() {
                eprintln!(
                    "sdn: the topology file has {} problem(s):\n{topology_errors}",
                    topology_errors.errors.len()
                );
            } else {
                eprintln!("sdn: error: {error:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Up {
            topology,
            resume,
            timeout,
        } => labs::up(&topology, resume, Duration::from_secs(timeout)).await,
        Command::Down {
            topology,
            lab,
            force,
        } => labs::down(topology.as_deref(), lab.as_deref(), force),
        Command::Status { lab, json } => status::status(lab.as_deref(), json).await,
        Command::DumpFlows {
            switch,
            lab,
            table,
            json,
        } => flows::dump_flows(&switch, lab.as_deref(), table, json).await,
        Command::Apply { topology } => security::apply(&topology).await,
        Command::Conntrack {
            switch,
            zone,
            lab,
            json,
        } => security::conntrack(&switch, zone, lab.as_deref(), json).await,
        Command::Rules { switch, lab, json } => {
            security::rules(&switch, lab.as_deref(), json).await
        }
        Command::Routes {
            switch,
            subnet,
            lab,
            json,
        } => routing::routes(&switch, subnet.as_deref(), lab.as_deref(), json).await,
        Command::Lb {
            action: LbCommand::Status { lab, json },
        } => lb::status(lab.as_deref(), json).await,
        Command::Vpn {
            action: VpnCommand::Status { lab, json },
        } => vpn::status(lab.as_deref(), json),
        Command::Vpn {
            action:
                VpnCommand::Sa {
                    export_keys,
                    lab,
                    output,
                },
        } => vpn::sa(lab.as_deref(), export_keys, output.as_deref()),
        Command::DumpPorts { switch, lab, json } => {
            flows::dump_ports(&switch, lab.as_deref(), json).await
        }
        Command::Capture {
            switch,
            port,
            write,
            count,
            duration,
            snaplen,
            lab,
        } => {
            let limits = capture::Limits {
                count,
                duration: duration.map(Duration::from_secs_f64),
            };
            capture::capture(&switch, &port, &write, limits, snaplen, lab.as_deref()).await
        }
        Command::Validate { topology } => labs::validate(&topology),
        Command::Demo { topology } => demo::demo(&topology).await,
        Command::Controller { topology, listen } => run_controller(&topology, &listen).await,
        Command::Bench {
            topology,
            seconds,
            runs,
            no_baselines,
            json,
        } => {
            let options = crate::bench::BenchOptions {
                seconds,
                runs,
                baselines: !no_baselines,
            };
            crate::bench::run(&topology, &options, json).await
        }
    }
}

async fn run_controller(topology: &std::path::Path, listen: &str) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .init();
    let topology = crate::topology::load(topology)?;
    let address = if let Some(path) = listen.strip_prefix("unix:") {
        crate::server::ListenAddress::Unix(PathBuf::from(path))
    } else {
        let addr = listen.strip_prefix("tcp:").unwrap_or(listen);
        crate::server::ListenAddress::Tcp(
            addr.parse()
                .with_context(|| format!("--listen {listen}: want unix:/path or tcp:host:port"))?,
        )
    };
    tracing::info!(lab = %topology.name, "controller starting");
    let shutdown = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return,
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("controller stopping");
    };
    crate::server::serve(topology, address, shutdown).await
}

/// The record of the lab a command is about: the one named, or the only one up.
fn resolve_lab(name: Option<&str>) -> Result<crate::lab::record::LabRecord> {
    use crate::lab::record::LabRecord;
    if let Some(name) = name {
        return LabRecord::load(name)?.with_context(|| format!("lab {name} is not up"));
    }
    let labs = LabRecord::all();
    match labs.len() {
        0 => bail!("no lab is up; start one with `sdn up FILE`"),
        1 => Ok(labs.into_iter().next().expect("one lab")),
        _ => {
            let names: Vec<String> = labs.iter().map(|l| l.name.clone()).collect();
            bail!(
                "several labs are up ({}); pick one with --lab",
                names.join(", ")
            )
        }
    }
}

/// `sdn vpn` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum VpnCommand {
    /// Per connection: the IKE SA's state, SPIs, when it came up and its
    /// rekeys; packets and bytes each way; each child SA with its replay
    /// and authentication drops; the ESP port's drops.
    Status {
        /// Lab (needed only when several are up).
        #[arg(long)]
        lab: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// The child SAs each gateway has installed (both directions: outer
    /// addresses and SPI). With --export-keys, their keys too, as lines of
    /// Wireshark's ESP SA table (`esp_sa`) to decrypt a capture of the
    /// underlay: anyone holding them can read the lab's VPN traffic.
    Sa {
        /// Write the SAs' keys in Wireshark's `esp_sa` format.
        #[arg(long)]
        export_keys: bool,
        /// Lab (needed only when several are up).
        #[arg(long)]
        lab: Option<String>,
        /// Where the keys go (created with mode 0600); standard output
        /// by default.
        #[arg(long, short = 'o', requires = "export_keys")]
        output: Option<PathBuf>,
    },
}

/// `sdn lb` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum LbCommand {
    /// Each load balancer's frontends and rules, and per backend its
    /// health, last probe result and when, and its live and total
    /// connections.
    Status {
        /// Lab (needed only when several are up).
        #[arg(long)]
        lab: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}
