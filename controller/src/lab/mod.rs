//! Bringing a lab up and down: namespaces and veth pairs through netlink, the
//! controller and one `vswitchd` per switch in the background (and charon
//! on the on-premises sites), a record of everything made (written before
//! each step), rollback when a step fails, and a teardown that leaves
//! nothing behind.

mod argv;
pub mod copy;
pub mod ethtool;
pub mod internet;
pub mod netlink;
pub mod netns;
pub mod private;
pub mod process;
pub mod record;
pub mod sites;
pub mod strongswan;
#[cfg(test)]
mod testutil;
pub mod vpn;

use crate::client;
use crate::topology::{Listen, NodeKind, Topology, UNDERLAY_BRIDGE, UNDERLAY_DEVICE};
use anyhow::{Context, Result, anyhow, bail};
use netlink::{Netlink, VethEnd};
use process::ProcessRecord;
use record::LabRecord;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Options of `sdn up`.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Restart the stopped components of a lab that is partly up.
    pub resume: bool,
    /// How long to wait for every switch to be connected and synced.
    pub timeout: Duration,
}

/// Fails unless running as root.
pub fn require_root(what: &str) -> Result<()> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} needs root (it creates network namespaces); run it with sudo");
    }
    Ok(())
}

/// A program installed next to this one, or on `PATH`.
pub fn sibling_binary(name: &str) -> Result<PathBuf> {
    let own = std::env::current_exe().context("find this program's path")?;
    let mut dirs: Vec<PathBuf> = own.parent().map(Path::to_path_buf).into_iter().collect();
    // Test binaries live in target/<profile>/deps; the real ones one level up.
    if let Some(parent) = own.parent().and_then(Path::parent) {
        dirs.push(parent.to_path_buf());
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "cannot find {name} next to {} or on PATH (build it with `cargo build --release`)",
        own.display()
    )
}

/// The controller address a topology asks for, given its run directory.
fn controller_address(topology: &Topology, dir: &Path) -> String {
    match topology.controller.listen {
        Listen::Unix => format!("unix:{}", record::controller_socket(dir).display()),
        Listen::Tcp(addr) => format!("tcp:{addr}"),
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Brings `topology` up, or resumes it. Returns the record of what exists.
pub async fn up(topology: &Topology, options: &UpOptions) -> Result<LabRecord> {
    require_root("sdn up")?;
    if let Some(existing) = LabRecord::load(&topology.name)? {
        let stopped: Vec<&ProcessRecord> = existing
            .processes
            .iter()
            .filter(|p| !p.is_alive())
            .collect();
        let missing: Vec<&String> = existing
            .namespaces
            .iter()
            .filter(|n| !netns::exists(n))
            .collect();
        if !missing.is_empty() {
            bail!(
                "lab {} is broken: namespace {} is gone; remove the rest with `sdn down {}`",
                topology.name,
                missing[0],
                topology.source.display()
            );
        }
        if stopped.is_empty() {
            bail!(
                "lab {} is already up (see `sdn status`); `sdn down {}` removes it",
                topology.name,
                topology.source.display()
            );
        }
        if !options.resume {
            let names: Vec<String> = stopped
                .iter()
                .map(|p| format!("{} (pid {})", p.name, p.pid))
                .collect();
            bail!(
                "lab {} is partly up: {} stopped. `sdn up --resume {}` restarts it; `sdn down {}` removes the lab",
                topology.name,
                names.join(", "),
                topology.source.display(),
                topology.source.display()
            );
        }
        return resume(existing, options).await;
    }
    if options.resume {
        bail!("lab {} is not up: nothing to resume", topology.name);
    }
    if !strongswan::charon_sites(topology).is_empty() {
        strongswan::require_installed()?;
    }
    let clashes: Vec<String> = topology
        .namespaces()
        .into_iter()
        .filter(|n| netns::exists(n))
        .collect();
    if !clashes.is_empty() {
        bail!(
            "network namespace {} already exists, but there is no record of lab {}; \
             `sdn down --force {}` removes the lab's namespaces",
            clashes.join(", "),
            topology.name,
            topology.source.display()
        );
    }
    let dir = record::run_dir(&topology.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let copy = copy::place(topology, &dir)?;
    let mut lab = LabRecord {
        name: topology.name.clone(),
        topology: std::fs::canonicalize(&topology.source)
            .unwrap_or_else(|_| topology.source.clone()),
        topology_copy: copy,
        created_unix: now_unix(),
        controller: controller_address(topology, &dir),
        namespaces: Vec::new(),
        processes: Vec::new(),
    };
    lab.save()?;
    match build(topology, &mut lab, options).await {
        Ok(()) => Ok(lab),
        Err(error) => {
            let report = teardown(&lab);
            let rolled_back = if report.leftovers.is_empty() {
                "everything it made was removed".to_string()
            } else {
                format!("could not remove: {}", report.leftovers.join(", "))
            };
            Err(error.context(format!("sdn up {} failed; {rolled_back}", topology.name)))
        }
    }
}

async fn build(topology: &Topology, lab: &mut LabRecord, options: &UpOptions) -> Result<()> {
    for namespace in topology.namespaces() {
        lab.namespaces.push(namespace.clone());
        lab.save()?;
        netns::create(&namespace)?;
    }
    for switch in &topology.switches {
        configure_switch_namespace(&topology.namespace_of(&switch.name))?;
    }
    build_underlay(topology)?;
    for link in &topology.links {
        create_link(topology, link)?;
    }
    internet::build(topology)?;
    sites::build(topology)?;
    vpn::build_links(topology)?;
    for switch in &topology.switches {
        bring_up_ports(topology, switch)?;
        for port in switch.ports.iter().filter(|p| !p.offloads) {
            disable_peer_offloads(topology, &switch.name, &port.name)?;
        }
    }
    for host in &topology.hosts {
        configure_host(topology, host)?;
    }
    let dir = lab.dir();
    let charon_sites = strongswan::charon_sites(topology);
    for site in &charon_sites {
        strongswan::write_config(topology, site, &dir)?;
    }
    let argv = argv::controller_argv(&lab.topology_copy, &lab.controller)?;
    let controller = process::spawn_detached(
        "controller",
        "controller",
        &argv,
        &dir.join("controller.log"),
    )?;
    lab.processes.push(controller);
    lab.save()?;
    for switch in &topology.switches {
        vpn::write_config(topology, &switch.name, &dir)?;
        let argv = argv::switch_argv(topology, &switch.name, &lab.controller, &dir)?;
        let log = dir.join(format!("{}.log", switch.name));
        let spawned = process::spawn_detached("switch", &switch.name, &argv, &log)?;
        lab.processes.push(spawned);
        lab.save()?;
    }
    for site in &charon_sites {
        let charon = strongswan::start(topology, site, &dir)?;
        lab.processes.push(charon.clone());
        lab.save()?;
        strongswan::load(&charon)?;
    }
    wait_until_synced(lab, options.timeout).await
}

/// Restarts the stopped processes of a lab and waits for the switches.
async fn resume(mut lab: LabRecord, options: &UpOptions) -> Result<LabRecord> {
    for index in 0..lab.processes.len() {
        let record = &lab.processes[index];
        if record.is_alive() {
            continue;
        }
        if record.role == strongswan::ROLE {
            strongswan::clear_leftovers(record);
        }
        let restarted = process::spawn_launched(
            &record.role,
            &record.name,
            &record.argv,
            &record.launch,
            &record.log,
        )?;
        lab.processes[index] = restarted.clone();
        lab.save()?;
        if restarted.role == strongswan::ROLE {
            strongswan::load(&restarted)?;
        }
    }
    wait_until_synced(&lab, options.timeout).await?;
    Ok(lab)
}

/// Waits until the controller reports every switch connected and synced.
pub async fn wait_until_synced(lab: &LabRecord, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last_problem;
    loop {
        if let Some(dead) = lab.processes.iter().find(|p| !p.is_alive()) {
            bail!(
                "{} exited; last lines of {}:\n{}",
                dead.name,
                dead.log.display(),
                process::log_tail(&dead.log, 15)
            );
        }
        match client::connect(&lab.controller).await {
            Ok(mut management) => match management
                .status(sdn_proto::management::StatusRequest {})
                .await
            {
                Ok(status) => {
                    let status = status.into_inner();
                    let waiting: Vec<String> = status
                        .switches
                        .iter()
                        .filter(|s| !s.synced)
                        .map(|s| {
                            format!(
                                "{} ({})",
                                s.name,
                                if s.connected {
                                    "syncing"
                                } else {
                                    "not connected"
                                }
                            )
                        })
                        .collect();
                    if waiting.is_empty() {
                        return Ok(());
                    }
                    last_problem = format!("waiting for {}", waiting.join(", "));
                }
                Err(status) => last_problem = status.message().to_string(),
            },
            Err(error) => last_problem = format!("{error:#}"),
        }
        if Instant::now() > deadline {
            bail!(
                "switches not ready after {:?}: {last_problem}; logs are in {}",
                timeout,
                lab.dir().display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Switch namespaces carry frames only: no IPv6 autoconfiguration that would
/// make the kernel send its own packets out of the switch's ports.
fn configure_switch_namespace(namespace: &str) -> Result<()> {
    sdn_vswitch::netns::run_in(Some(namespace), || {
        for key in ["all", "default"] {
            std::fs::write(format!("/proc/sys/net/ipv6/conf/{key}/disable_ipv6"), "1")?;
        }
        let mut nl = Netlink::open()?;
        nl.set_up(netlink::index_of("lo")?)
    })
    .with_context(|| format!("configure namespace {namespace}"))
}

/// The underlay: a bridge in its own namespace, and each hypervisor linked to
/// it with its underlay address, all at the underlay's MTU.
fn build_underlay(topology: &Topology) -> Result<()> {
    let Some(underlay) = &topology.underlay else {
        return Ok(());
    };
    let namespace = topology.underlay_namespace();
    configure_switch_namespace(&namespace)?;
    sdn_vswitch::netns::run_in(Some(&namespace), || {
        let mut nl = Netlink::open()?;
        nl.create_bridge(UNDERLAY_BRIDGE)?;
        nl.set_up(netlink::index_of(UNDERLAY_BRIDGE)?)
    })
    .with_context(|| format!("create the underlay bridge in namespace {namespace}"))?;
    let underlay_file = File::open(sdn_vswitch::netns::path_of(&namespace))
        .with_context(|| format!("open namespace {namespace}"))?;
    for hv in &topology.hypervisors {
        let hv_namespace = topology.namespace_of(&hv.name);
        configure_switch_namespace(&hv_namespace)?;
        let hv_file = File::open(sdn_vswitch::netns::path_of(&hv_namespace))
            .with_context(|| format!("open namespace {hv_namespace}"))?;
        let end = |name: &str, file: &File| VethEnd {
            name: name.to_string(),
            netns_fd: file.as_raw_fd(),
            mac: None,
            mtu: Some(underlay.mtu),
        };
        Netlink::open()?
            .create_veth(
                &end(UNDERLAY_DEVICE, &hv_file),
                &end(&hv.name, &underlay_file),
            )
            .with_context(|| format!("link hypervisor {} to the underlay", hv.name))?;
        sdn_vswitch::netns::run_in(Some(&namespace), || {
            let mut nl = Netlink::open()?;
            let port = netlink::index_of(&hv.name)?;
            nl.set_master(port, netlink::index_of(UNDERLAY_BRIDGE)?)?;
            nl.set_up(port)
        })
        .with_context(|| format!("attach hypervisor {} to the underlay bridge", hv.name))?;
        sdn_vswitch::netns::run_in(Some(&hv_namespace), || {
            let mut nl = Netlink::open()?;
            let device = netlink::index_of(UNDERLAY_DEVICE)?;
            nl.add_address(device, hv.address.into(), underlay.cidr.prefix_len())?;
            nl.set_up(device)
        })
        .with_context(|| {
            format!(
                "give hypervisor {} its underlay address {}",
                hv.name, hv.address
            )
        })?;
    }
    Ok(())
}

/// A port without offloads cannot take super-frames or partial checksums:
/// the device at the other end of its link must not send any.
fn disable_peer_offloads(topology: &Topology, switch: &str, port: &str) -> Result<()> {
    let peer = crate::topology::peer_of(&topology.links, switch, port);
    let Some(peer) = peer else { return Ok(()) };
    let namespace = topology.namespace_of(&peer.node);
    sdn_vswitch::netns::run_in(Some(&namespace), || ethtool::disable_offloads(&peer.device))
        .with_context(|| {
            format!(
                "turn off offloads of {}:{} (peer of {switch}:{port})",
                peer.node, peer.device
            )
        })
}

fn bring_up_ports(topology: &Topology, switch: &crate::topology::Switch) -> Result<()> {
    let namespace = topology.namespace_of(&switch.name);
    sdn_vswitch::netns::run_in(Some(&namespace), || {
        let mut nl = Netlink::open()?;
        for port in &switch.ports {
            nl.set_up(netlink::index_of(&port.name)?)?;
        }
        Ok(())
    })
    .with_context(|| {
        format!(
            "bring up the ports of {} in namespace {namespace}",
            switch.name
        )
    })
}

fn configure_host(topology: &Topology, host: &crate::topology::Host) -> Result<()> {
    let namespace = topology.namespace_of(&host.name);
    // The default route goes to the gateway of the first interface's subnet.
    let default_route = host.interfaces.iter().find_map(|i| {
        let gateway = topology.subnet(&i.network, &i.subnet)?.gateway?;
        i.address.is_ipv4().then(|| (i.name.clone(), gateway))
    });
    let forwards = host.interfaces.iter().any(|i| i.ip_forward);
    sdn_vswitch::netns::run_in(Some(&namespace), || {
        let mut nl = Netlink::open()?;
        nl.set_up(netlink::index_of("lo")?)?;
        for iface in &host.interfaces {
            let index = netlink::index_of(&iface.name)?;
            nl.add_address(index, iface.address, iface.prefix_len)?;
            nl.set_up(index)?;
        }
        if let Some((device, gateway)) = &default_route {
            let index = netlink::index_of(device)?;
            nl.add_route(
                std::net::Ipv4Addr::UNSPECIFIED,
                0,
                Some(*gateway),
                index,
                false,
            )?;
        }
        if forwards {
            // A virtual appliance: forwards, and (one-armed) never tells
            // senders to go around it.
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
            let mut keys: Vec<String> = vec!["all".into(), "default".into()];
            keys.extend(host.interfaces.iter().map(|i| i.name.clone()));
            for key in keys {
                for (setting, value) in [("send_redirects", "0"), ("rp_filter", "0")] {
                    std::fs::write(format!("/proc/sys/net/ipv4/conf/{key}/{setting}"), value)?;
                }
            }
        }
        Ok(())
    })
    .with_context(|| format!("configure host {} in namespace {namespace}", host.name))
}

fn create_link(topology: &Topology, link: &crate::topology::Link) -> Result<()> {
    let end = |e: &crate::topology::Endpoint| -> Result<(VethEnd, File)> {
        let namespace = topology.namespace_of(&e.node);
        let file = File::open(sdn_vswitch::netns::path_of(&namespace))
            .with_context(|| format!("open namespace {namespace}"))?;
        let (mac, mtu) = match e.kind {
            NodeKind::Host => {
                let iface = topology
                    .host(&e.node)
                    .and_then(|h| h.interfaces.iter().find(|i| i.name == e.device))
                    .ok_or_else(|| anyhow!("no interface {}:{}", e.node, e.device))?;
                (Some(iface.mac), Some(iface.mtu))
            }
            NodeKind::Switch => (None, None),
        };
        Ok((
            VethEnd {
                name: e.device.clone(),
                netns_fd: file.as_raw_fd(),
                mac,
                mtu,
            },
            file,
        ))
    };
    let (mut a, _a_file) = end(&link.a)?;
    let (mut b, _b_file) = end(&link.b)?;
    // A switch port carries whatever its host sends: give it the host's MTU.
    if a.mtu.is_none() {
        a.mtu = b.mtu;
    }
    if b.mtu.is_none() {
        b.mtu = a.mtu;
    }
    let mut nl = Netlink::open()?;
    nl.create_veth(&a, &b).with_context(|| {
        format!(
            "link {}:{} to {}:{}",
            link.a.node, link.a.device, link.b.node, link.b.device
        )
    })
}

/// What a teardown did.
#[derive(Debug, Default)]
pub struct Teardown {
    /// Lab processes stopped.
    pub stopped: usize,
    /// Other processes killed inside lab namespaces.
    pub killed: usize,
    /// Namespaces deleted.
    pub namespaces: usize,
    /// Things that could not be removed.
    pub leftovers: Vec<String>,
}

/// Stops every process and deletes every namespace of a lab (the links
/// between them go with them), then its run directory.
pub fn teardown(lab: &LabRecord) -> Teardown {
    let mut report = Teardown::default();
    // The sites' charon first (it says goodbye to its peers); switches
    // before the controller, so they do not fail open while it goes.
    for role in [strongswan::ROLE, "switch", "controller"] {
        for p in lab.processes.iter().filter(|p| p.role == role) {
            if p.is_alive() {
                p.stop(Duration::from_secs(3));
                report.stopped += 1;
            }
            if p.is_alive() {
                report
                    .leftovers
                    .push(format!("process {} (pid {})", p.name, p.pid));
            }
        }
    }
    for namespace in &lab.namespaces {
        if !netns::exists(namespace) {
            continue;
        }
        report.killed += process::kill_namespace_members(namespace);
        match netns::delete(namespace) {
            Ok(()) => report.namespaces += 1,
            Err(e) => report
                .leftovers
                .push(format!("namespace {namespace} ({e})")),
        }
    }
    if report.leftovers.is_empty() {
        let dir = lab.dir();
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            report
                .leftovers
                .push(format!("run directory {} ({e})", dir.display()));
        }
    }
    report
}

/// Deletes the namespaces a topology would make, without a record (`--force`).
pub fn force_remove(topology: &Topology) -> Teardown {
    let lab = LabRecord {
        name: topology.name.clone(),
        topology: topology.source.clone(),
        topology_copy: PathBuf::new(),
        created_unix: 0,
        controller: String::new(),
        namespaces: topology.namespaces(),
        processes: Vec::new(),
    };
    teardown(&lab)
}
