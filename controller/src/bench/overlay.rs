//! The peers measured beside a VXLAN overlay, in the same shape: two
//! hypervisors on an underlay, a host behind each, one VNI between them.
//! - the kernel: in each hypervisor namespace a Linux bridge joining the
//!   host's veth and a `vxlan` device, the hypervisors on an underlay bridge;
//! - Open vSwitch's userspace datapath with VXLAN ports: an instance of its
//!   own in each hypervisor namespace, with an integration bridge (host port,
//!   VXLAN port) and a physical bridge holding the underlay address.

use super::baseline::{Shape, bridge_of, host, run, veth};
use super::iperf::command_in;
use super::pair::Pair;
use crate::lab::ethtool;
use crate::lab::netlink::{self, KernelVxlan, Netlink};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// The kernel's bridge and VXLAN devices.
pub(super) fn kernel_vxlan(prefix: &str, pair: &Pair) -> Result<Shape> {
    let overlay = pair.overlay.context("the pair is not on an overlay")?;
    let addresses = pair.addresses;
    let mut shape = Shape::new(addresses.server, None);
    let (client, server) = shape.hosts(prefix, "k")?;
    let underlay = shape.namespace(format!("{prefix}-kul"))?;
    let ends = [
        (&client, "hv1", overlay.client_vtep, overlay.server_vtep),
        (&server, "hv2", overlay.server_vtep, overlay.client_vtep),
    ];
    for (host_ns, name, local, remote) in ends {
        let hv = shape.namespace(format!("{prefix}-k{name}"))?;
        veth(&hv, "u0", Some(&underlay), name, Some(overlay.underlay_mtu))?;
        veth(host_ns, "eth0", Some(&hv), "v0", Some(pair.host_mtu))?;
        sdn_vswitch::netns::run_in(Some(&hv), || {
            let mut nl = Netlink::open()?;
            nl.set_up(netlink::index_of("lo")?)?;
            let u0 = netlink::index_of("u0")?;
            nl.add_address(u0, local.into(), overlay.underlay_prefix)?;
            nl.set_up(u0)?;
            nl.create_vxlan(&KernelVxlan {
                name: "vx0".into(),
                vni: overlay.vni,
                local,
                remote,
                underlay: u0,
                port: sdn_vswitch::wire::vxlan::UDP_PORT,
                mtu: Some(pair.host_mtu),
            })?;
            bridge_of("br0", &["v0", "vx0"])
        })
        .with_context(|| format!("set up kernel VXLAN in {hv}"))?;
    }
    sdn_vswitch::netns::run_in(Some(&underlay), || bridge_of("ul", &["hv1", "hv2"]))
        .context("set up the underlay bridge")?;
    host(&client, addresses.client, addresses.prefix_len)?;
    host(&server, addresses.server, addresses.prefix_len)?;
    shape.client_ns = client;
    shape.server_ns = server;
    Ok(shape)
}

/// An Open vSwitch of its own (database server and switch daemon) running in
/// a hypervisor namespace, with its files in `dir`. The shape's namespace
/// removal kills both daemons.
struct OvsInstance {
    dir: PathBuf,
}

impl OvsInstance {
    fn start(namespace: &str, dir: PathBuf) -> Result<OvsInstance> {
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let instance = OvsInstance { dir };
        let db = instance.path("conf.db");
        run(
            "ovsdb-tool",
            &["create", &db, "/usr/share/openvswitch/vswitch.ovsschema"],
        )?;
        instance.daemon(
            namespace,
            "ovsdb-server",
            &[
                &db,
                &format!("--remote=punix:{}", instance.path("db.sock")),
                &format!("--unixctl={}", instance.path("ovsdb-server.ctl")),
            ],
        )?;
        instance.vsctl(&["--no-wait", "init"])?;
        instance.daemon(
            namespace,
            "ovs-vswitchd",
            &[
                &format!("unix:{}", instance.path("db.sock")),
                &format!("--unixctl={}", instance.path("ovs-vswitchd.ctl")),
            ],
        )?;
        Ok(instance)
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    /// Starts `program` detached inside `namespace` with its pid file and
    /// log in the instance's directory; returns once it is ready.
    fn daemon(&self, namespace: &str, program: &str, args: &[&str]) -> Result<()> {
        let status = command_in(namespace, program)?
            .args(args)
            .arg(format!(
                "--pidfile={}",
                self.path(&format!("{program}.pid"))
            ))
            .arg(format!(
                "--log-file={}",
                self.path(&format!("{program}.log"))
            ))
            .arg("--detach")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("start {program}"))?;
        if !status.success() {
            bail!(
                "{program} did not start; see {}",
                self.path(&format!("{program}.log"))
            );
        }
        Ok(())
    }

    fn vsctl(&self, args: &[&str]) -> Result<String> {
        let db = format!("--db=unix:{}", self.path("db.sock"));
        let mut argv = vec![db.as_str(), "--timeout=10"];
        argv.extend_from_slice(args);
        run("ovs-vsctl", &argv)
    }

    fn appctl(&self, args: &[&str]) -> Result<String> {
        let target = self.path("ovs-vswitchd.ctl");
        let mut argv = vec!["-t", target.as_str()];
        argv.extend_from_slice(args);
        run("ovs-appctl", &argv)
    }
}

/// Open vSwitch's userspace datapath with VXLAN tunnel ports, one instance
/// per hypervisor namespace: an integration bridge holding the host's port
/// and a VXLAN port, and a physical bridge holding the underlay port and,
/// on its own device, the tunnel address (how Open vSwitch's userspace
/// tunnels are set up). Its userspace TSO does not cover tunnels in this
/// version, so it runs without TSO and with the veths' offloads off, as
/// Open vSwitch asks of veth ports.
pub(super) fn ovs_vxlan(prefix: &str, pair: &Pair) -> Result<Shape> {
    let overlay = pair.overlay.context("the pair is not on an overlay")?;
    let addresses = pair.addresses;
    let mut shape = Shape::new(addresses.server, None);
    let (client, server) = shape.hosts(prefix, "v")?;
    let underlay = shape.namespace(format!("{prefix}-vul"))?;
    sdn_vswitch::netns::run_in(Some(&underlay), || bridge_of("ul", &[]))
        .context("set up the underlay bridge")?;
    let ends = [
        (&client, "hv1", overlay.client_vtep, overlay.server_vtep),
        (&server, "hv2", overlay.server_vtep, overlay.client_vtep),
    ];
    let mut instances = Vec::new();
    for (host_ns, name, local, remote) in ends {
        let hv = shape.namespace(format!("{prefix}-v{name}"))?;
        veth(&hv, "u0", Some(&underlay), name, Some(overlay.underlay_mtu))?;
        veth(host_ns, "eth0", Some(&hv), "v0", Some(pair.host_mtu))?;
        sdn_vswitch::netns::run_in(Some(&underlay), || {
            let mut nl = Netlink::open()?;
            let port = netlink::index_of(name)?;
            nl.set_master(port, netlink::index_of("ul")?)?;
            nl.set_up(port)
        })
        .context("attach to the underlay bridge")?;
        sdn_vswitch::netns::run_in(Some(&hv), || {
            let mut nl = Netlink::open()?;
            nl.set_up(netlink::index_of("lo")?)?;
            for device in ["u0", "v0"] {
                nl.set_up(netlink::index_of(device)?)?;
                ethtool::disable_offloads(device)?;
            }
            Ok(())
        })
        .with_context(|| format!("set up {hv}"))?;
        sdn_vswitch::netns::run_in(Some(host_ns), || ethtool::disable_offloads("eth0"))
            .with_context(|| format!("turn off offloads in {host_ns}"))?;

        let dir = std::env::temp_dir().join(format!("sdn-bench-ovs-{}-{name}", std::process::id()));
        shape.dirs.push(dir.clone());
        let ovs =
            OvsInstance::start(&hv, dir).with_context(|| format!("start Open vSwitch in {hv}"))?;
        let remote_ip = format!("options:remote_ip={remote}");
        let key = format!("options:key={}", overlay.vni);
        ovs.vsctl(&[
            "add-br",
            "br-phy",
            "--",
            "set",
            "bridge",
            "br-phy",
            "datapath_type=netdev",
            "--",
            "add-port",
            "br-phy",
            "u0",
            "--",
            "add-br",
            "br-int",
            "--",
            "set",
            "bridge",
            "br-int",
            "datapath_type=netdev",
            "--",
            "add-port",
            "br-int",
            "v0",
            "--",
            "add-port",
            "br-int",
            "vx0",
            "--",
            "set",
            "interface",
            "vx0",
            "type=vxlan",
            &remote_ip,
            &key,
        ])?;
        sdn_vswitch::netns::run_in(Some(&hv), || {
            let mut nl = Netlink::open()?;
            let phy = netlink::index_of("br-phy")?;
            nl.set_mtu(phy, overlay.underlay_mtu)?;
            nl.add_address(phy, local.into(), overlay.underlay_prefix)?;
            nl.set_up(phy)?;
            nl.set_up(netlink::index_of("br-int")?)
        })
        .with_context(|| format!("give br-phy in {hv} the tunnel address"))?;
        instances.push((hv, ovs, remote));
    }
    // Resolve the underlay neighbours before measuring.
    for (hv, ovs, remote) in &instances {
        let reached = (0..20).any(|_| {
            let ok = command_in(hv, "ping")
                .and_then(|mut c| {
                    Ok(c.args(["-c", "1", "-W", "1", &remote.to_string()])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()?)
                })
                .is_ok_and(|s| s.success());
            if !ok {
                std::thread::sleep(Duration::from_millis(200));
            }
            ok
        });
        if !reached {
            let routes = ovs.appctl(&["ovs/route/show"]).unwrap_or_default();
            bail!(
                "{hv} cannot reach the other tunnel endpoint {remote} over the underlay; routes:\n{routes}"
            );
        }
    }
    host(&client, addresses.client, addresses.prefix_len)?;
    host(&server, addresses.server, addresses.prefix_len)?;
    shape.client_ns = client;
    shape.server_ns = server;
    Ok(shape)
}
