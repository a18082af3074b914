//! The peers measured beside the switch, in the same two-host shape: a Linux
//! bridge in a middle namespace, and Open vSwitch's userspace datapath with
//! userspace TSO (when installed; Open vSwitch is driven with its own tools).
//! Every shape removes itself when dropped.

use crate::lab::netlink::{self, Netlink, VethEnd};
use crate::lab::netns;
use anyhow::{Context, Result, bail};
use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Two hosts joined through something; the pair iperf3 runs between.
pub(super) struct Shape {
    /// Namespace of the sending host.
    pub(super) client_ns: String,
    /// Namespace of the receiving host.
    pub(super) server_ns: String,
    /// Address of the receiving host.
    pub(super) server_addr: IpAddr,
    namespaces: Vec<String>,
    ovs: Option<OvsState>,
}

impl Drop for Shape {
    fn drop(&mut self) {
        if let Some(ovs) = self.ovs.take() {
            ovs.restore();
        }
        for namespace in &self.namespaces {
            crate::lab::process::kill_namespace_members(namespace);
            let _ = netns::delete(namespace);
        }
    }
}

/// Addresses of the two hosts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Addresses {
    /// Sending host.
    pub(super) client: IpAddr,
    /// Receiving host.
    pub(super) server: IpAddr,
    /// Prefix length of both.
    pub(super) prefix_len: u8,
}

fn host(namespace: &str, address: IpAddr, prefix_len: u8) -> Result<()> {
    sdn_vswitch::netns::run_in(Some(namespace), || {
        let mut nl = Netlink::open()?;
        nl.set_up(netlink::index_of("lo")?)?;
        let index = netlink::index_of("eth0")?;
        nl.add_address(index, address, prefix_len)?;
        nl.set_up(index)
    })
    .with_context(|| format!("configure host namespace {namespace}"))
}

fn veth(a_ns: &str, a_name: &str, b_ns: Option<&str>, b_name: &str) -> Result<()> {
    let a_file = File::open(sdn_vswitch::netns::path_of(a_ns))?;
    let b_file = match b_ns {
        Some(ns) => File::open(sdn_vswitch::netns::path_of(ns))?,
        None => File::open("/proc/thread-self/ns/net")?,
    };
    let mut nl = Netlink::open()?;
    nl.create_veth(
        &VethEnd {
            name: a_name.into(),
            netns_fd: a_file.as_raw_fd(),
            mac: None,
            mtu: None,
        },
        &VethEnd {
            name: b_name.into(),
            netns_fd: b_file.as_raw_fd(),
            mac: None,
            mtu: None,
        },
    )
    .with_context(|| format!("create veth {a_name}/{b_name}"))
}

fn make_hosts(prefix: &str, tag: &str, namespaces: &mut Vec<String>) -> Result<(String, String)> {
    let client = format!("{prefix}-{tag}h1");
    let server = format!("{prefix}-{tag}h2");
    for ns in [&client, &server] {
        if netns::exists(ns) {
            bail!(
                "namespace {ns} already exists (a previous bench left it?); delete it with `ip netns delete {ns}`"
            );
        }
        namespaces.push(ns.clone());
        netns::create(ns)?;
    }
    Ok((client, server))
}

/// Two hosts on a Linux bridge, in a namespace of its own with the bridge's
/// netfilter calls off (`br_netfilter` is built into this kernel).
pub(super) fn linux_bridge(prefix: &str, addresses: Addresses) -> Result<Shape> {
    let mut shape = Shape {
        client_ns: String::new(),
        server_ns: String::new(),
        server_addr: addresses.server,
        namespaces: Vec::new(),
        ovs: None,
    };
    let (client, server) = make_hosts(prefix, "b", &mut shape.namespaces)?;
    let middle = format!("{prefix}-bbr");
    shape.namespaces.push(middle.clone());
    netns::create(&middle)?;
    veth(&client, "eth0", Some(&middle), "v1")?;
    veth(&server, "eth0", Some(&middle), "v2")?;
    sdn_vswitch::netns::run_in(Some(&middle), || {
        for key in [
            "bridge-nf-call-iptables",
            "bridge-nf-call-ip6tables",
            "bridge-nf-call-arptables",
        ] {
            let _ = std::fs::write(format!("/proc/sys/net/bridge/{key}"), "0");
        }
        let mut nl = Netlink::open()?;
        nl.create_bridge("br0")?;
        let bridge = netlink::index_of("br0")?;
        for port in ["v1", "v2"] {
            let index = netlink::index_of(port)?;
            nl.set_master(index, bridge)?;
            nl.set_up(index)?;
        }
        nl.set_up(bridge)
    })
    .context("set up the bridge")?;
    host(&client, addresses.client, addresses.prefix_len)?;
    host(&server, addresses.server, addresses.prefix_len)?;
    shape.client_ns = client;
    shape.server_ns = server;
    Ok(shape)
}

const OVS_CTL: &str = "/usr/share/openvswitch/scripts/ovs-ctl";
const OVS_BRIDGE: &str = "sdnbench0";

/// Whether Open vSwitch's tools are installed.
pub(super) fn ovs_installed() -> bool {
    Command::new("ovs-vsctl")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        && std::path::Path::new(OVS_CTL).exists()
}

fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// What to undo in Open vSwitch after the measurement.
struct OvsState {
    started_here: bool,
    previous_tso: Option<String>,
    ports: [String; 2],
}

impl OvsState {
    fn restore(self) {
        let _ = run("ovs-vsctl", &["--if-exists", "del-br", OVS_BRIDGE]);
        for port in &self.ports {
            if let Ok(index) = netlink::index_of(port)
                && let Ok(mut nl) = Netlink::open()
            {
                let _ = nl.delete_link(index);
            }
        }
        if self.started_here {
            let _ = run(OVS_CTL, &["stop"]);
            return;
        }
        let restored = match &self.previous_tso {
            Some(value) => run(
                "ovs-vsctl",
                &[
                    "set",
                    "Open_vSwitch",
                    ".",
                    &format!("other_config:userspace-tso-enable={value}"),
                ],
            ),
            None => run(
                "ovs-vsctl",
                &[
                    "remove",
                    "Open_vSwitch",
                    ".",
                    "other_config",
                    "userspace-tso-enable",
                ],
            ),
        };
        if restored.is_ok() {
            let _ = run(OVS_CTL, &["restart", "--no-ovsdb-server", "--no-monitor"]);
        }
    }
}

/// Two hosts on Open vSwitch's userspace datapath (AF_PACKET ports on veth
/// ends in the root namespace) with userspace TSO on.
pub(super) fn ovs_userspace_tso(prefix: &str, addresses: Addresses) -> Result<Shape> {
    let running = run("ovs-vsctl", &["--timeout=2", "show"]).is_ok();
    if !running {
        run(
            OVS_CTL,
            &[
                "start",
                "--system-id=random",
                "--no-monitor",
                "--no-ovs-vswitchd",
            ],
        )?;
        run(OVS_CTL, &["start", "--no-ovsdb-server", "--no-monitor"])?;
    }
    let previous_tso = run(
        "ovs-vsctl",
        &[
            "get",
            "Open_vSwitch",
            ".",
            "other_config:userspace-tso-enable",
        ],
    )
    .ok()
    .map(|v| v.trim_matches('"').to_string());
    let tag = std::process::id() % 10_000;
    let ports = [format!("sdnb{tag}a"), format!("sdnb{tag}b")];
    let mut shape = Shape {
        client_ns: String::new(),
        server_ns: String::new(),
        server_addr: addresses.server,
        namespaces: Vec::new(),
        ovs: Some(OvsState {
            started_here: !running,
            previous_tso,
            ports: ports.clone(),
        }),
    };
    run(
        "ovs-vsctl",
        &[
            "set",
            "Open_vSwitch",
            ".",
            "other_config:userspace-tso-enable=true",
        ],
    )?;
    // Userspace TSO is read when ovs-vswitchd starts.
    run(OVS_CTL, &["restart", "--no-ovsdb-server", "--no-monitor"])?;
    std::thread::sleep(Duration::from_secs(1));
    let (client, server) = make_hosts(prefix, "o", &mut shape.namespaces)?;
    veth(&client, "eth0", None, &ports[0])?;
    veth(&server, "eth0", None, &ports[1])?;
    let mut nl = Netlink::open()?;
    for port in &ports {
        nl.set_up(netlink::index_of(port)?)?;
    }
    run(
        "ovs-vsctl",
        &[
            "--may-exist",
            "add-br",
            OVS_BRIDGE,
            "--",
            "set",
            "bridge",
            OVS_BRIDGE,
            "datapath_type=netdev",
        ],
    )?;
    run(
        "ovs-vsctl",
        &[
            "add-port", OVS_BRIDGE, &ports[0], "--", "add-port", OVS_BRIDGE, &ports[1],
        ],
    )?;
    if let Ok(index) = netlink::index_of(OVS_BRIDGE) {
        let _ = nl.set_up(index);
    }
    host(&client, addresses.client, addresses.prefix_len)?;
    host(&server, addresses.server, addresses.prefix_len)?;
    shape.client_ns = client;
    shape.server_ns = server;
    Ok(shape)
}
