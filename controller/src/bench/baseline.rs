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
    /// Directories made for the shape, removed with it.
    pub(super) dirs: Vec<std::path::PathBuf>,
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
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
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

/// Brings up a host namespace's `lo` and `eth0` with its address.
pub(super) fn host(namespace: &str, address: IpAddr, prefix_len: u8) -> Result<()> {
    sdn_vswitch::netns::run_in(Some(namespace), || {
        let mut nl = Netlink::open()?;
        nl.set_up(netlink::index_of("lo")?)?;
        let index = netlink::index_of("eth0")?;
        nl.add_address(index, address, prefix_len)?;
        nl.set_up(index)
    })
    .with_context(|| format!("configure host namespace {namespace}"))
}

/// A veth pair between two namespaces (`None`: the current one).
pub(super) fn veth(
    a_ns: &str,
    a_name: &str,
    b_ns: Option<&str>,
    b_name: &str,
    mtu: Option<u32>,
) -> Result<()> {
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
            mtu,
        },
        &VethEnd {
            name: b_name.into(),
            netns_fd: b_file.as_raw_fd(),
            mac: None,
            mtu,
        },
    )
    .with_context(|| format!("create veth {a_name}/{b_name}"))
}

impl Shape {
    /// A shape with nothing in it yet, measuring towards `server_addr`.
    pub(super) fn new(server_addr: IpAddr, ovs: Option<OvsState>) -> Shape {
        Shape {
            client_ns: String::new(),
            server_ns: String::new(),
            server_addr,
            namespaces: Vec::new(),
            ovs,
            dirs: Vec::new(),
        }
    }

    /// Creates a namespace the shape removes when dropped.
    pub(super) fn namespace(&mut self, name: String) -> Result<String> {
        if netns::exists(&name) {
            bail!(
                "namespace {name} already exists (a previous bench left it?); delete it with `ip netns delete {name}`"
            );
        }
        self.namespaces.push(name.clone());
        netns::create(&name)?;
        Ok(name)
    }

    /// Creates the two host namespaces, `<prefix>-<tag>h1` and `…h2`.
    pub(super) fn hosts(&mut self, prefix: &str, tag: &str) -> Result<(String, String)> {
        let client = self.namespace(format!("{prefix}-{tag}h1"))?;
        let server = self.namespace(format!("{prefix}-{tag}h2"))?;
        Ok((client, server))
    }
}

/// Creates bridge `name` in the current namespace with `ports` attached and
/// everything up; the bridge's netfilter calls are turned off first
/// (`br_netfilter` is built into this kernel).
pub(super) fn bridge_of(name: &str, ports: &[&str]) -> std::io::Result<()> {
    for key in [
        "bridge-nf-call-iptables",
        "bridge-nf-call-ip6tables",
        "bridge-nf-call-arptables",
    ] {
        let _ = std::fs::write(format!("/proc/sys/net/bridge/{key}"), "0");
    }
    let mut nl = Netlink::open()?;
    nl.create_bridge(name)?;
    let bridge = netlink::index_of(name)?;
    for port in ports {
        let index = netlink::index_of(port)?;
        nl.set_master(index, bridge)?;
        nl.set_up(index)?;
    }
    nl.set_up(bridge)
}

/// Two hosts on a Linux bridge, in a namespace of its own with the bridge's
/// netfilter calls off (`br_netfilter` is built into this kernel).
pub(super) fn linux_bridge(prefix: &str, addresses: Addresses) -> Result<Shape> {
    let mut shape = Shape::new(addresses.server, None);
    let (client, server) = shape.hosts(prefix, "b")?;
    let middle = shape.namespace(format!("{prefix}-bbr"))?;
    veth(&client, "eth0", Some(&middle), "v1", None)?;
    veth(&server, "eth0", Some(&middle), "v2", None)?;
    sdn_vswitch::netns::run_in(Some(&middle), || bridge_of("br0", &["v1", "v2"]))
        .context("set up the bridge")?;
    host(&client, addresses.client, addresses.prefix_len)?;
    host(&server, addresses.server, addresses.prefix_len)?;
    shape.client_ns = client;
    shape.server_ns = server;
    Ok(shape)
}

const OVS_CTL: &str = "/usr/share/openvswitch/scripts/ovs-ctl";

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

/// Runs an Open vSwitch tool, its stderr in the error.
pub(super) fn run(program: &str, args: &[&str]) -> Result<String> {
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
pub(super) struct OvsState {
    started_here: bool,
    previous_tso: Option<String>,
    /// Bridges the shape made.
    pub(super) bridges: Vec<String>,
    /// Devices in the root namespace the shape made.
    pub(super) ports: Vec<String>,
}

impl OvsState {
    /// Starts Open vSwitch if it is not running and (re)starts
    /// `ovs-vswitchd` with userspace TSO on or off, remembering what to
    /// restore.
    pub(super) fn prepare(tso: bool) -> Result<OvsState> {
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
        let state = OvsState {
            started_here: !running,
            previous_tso,
            bridges: Vec::new(),
            ports: Vec::new(),
        };
        run(
            "ovs-vsctl",
            &[
                "set",
                "Open_vSwitch",
                ".",
                &format!("other_config:userspace-tso-enable={tso}"),
            ],
        )?;
        // Userspace TSO is read when ovs-vswitchd starts.
        run(OVS_CTL, &["restart", "--no-ovsdb-server", "--no-monitor"])?;
        std::thread::sleep(Duration::from_secs(1));
        Ok(state)
    }

    fn restore(self) {
        for bridge in &self.bridges {
            let _ = run("ovs-vsctl", &["--if-exists", "del-br", bridge]);
        }
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

/// Names of devices and bridges an Open vSwitch shape makes in the root
/// namespace, unique to this process.
fn ovs_name(what: &str) -> String {
    format!("sdnb{}{what}", std::process::id() % 10_000)
}

impl Shape {
    /// Adds a userspace-datapath bridge, removed with the shape.
    pub(super) fn ovs_bridge(&mut self, name: &str) -> Result<()> {
        if let Some(state) = &mut self.ovs {
            state.bridges.push(name.to_string());
        }
        run(
            "ovs-vsctl",
            &[
                "--may-exist",
                "add-br",
                name,
                "--",
                "set",
                "bridge",
                name,
                "datapath_type=netdev",
            ],
        )?;
        Ok(())
    }

    /// Links device `device` of namespace `ns` to device `port` in the
    /// root namespace, removed with the shape, and adds `port` to `bridge`.
    pub(super) fn ovs_link(
        &mut self,
        bridge: &str,
        port: &str,
        ns: &str,
        device: &str,
    ) -> Result<()> {
        if let Some(state) = &mut self.ovs {
            state.ports.push(port.to_string());
        }
        veth(ns, device, None, port, None)?;
        Netlink::open()?.set_up(netlink::index_of(port)?)?;
        run("ovs-vsctl", &["add-port", bridge, port])?;
        Ok(())
    }
}

/// Two hosts on Open vSwitch's userspace datapath (AF_PACKET ports on veth
/// ends in the root namespace) with userspace TSO on.
pub(super) fn ovs_userspace_tso(prefix: &str, addresses: Addresses) -> Result<Shape> {
    let mut shape = Shape::new(addresses.server, Some(OvsState::prepare(true)?));
    let bridge = ovs_name("br");
    shape.ovs_bridge(&bridge)?;
    let (client, server) = shape.hosts(prefix, "o")?;
    shape.ovs_link(&bridge, &ovs_name("a"), &client, "eth0")?;
    shape.ovs_link(&bridge, &ovs_name("b"), &server, "eth0")?;
    if let Ok(index) = netlink::index_of(&bridge) {
        let _ = Netlink::open()?.set_up(index);
    }
    host(&client, addresses.client, addresses.prefix_len)?;
    host(&server, addresses.server, addresses.prefix_len)?;
    shape.client_ns = client;
    shape.server_ns = server;
    Ok(shape)
}
