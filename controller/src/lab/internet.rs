//! The lab's internet, in namespaces: `<lab>-internet` is its router. Each
//! of the internet's hosts, in a namespace of its own with one public
//! address, is a routed link of the router's (the router's address on
//! every one). The switches' uplinks face the router's edge: the uplink's
//! own link when one switch has an uplink, a bridge `edge` that the
//! uplinks join when several do (the switch that owns an address answers
//! ARP for it). Either way the frames from the edge carry the router's
//! one edge address. The router knows every public address: an internet
//! host's on its link, a public IP, NAT gateway or frontend of the lab on
//! the edge. It has no route to any private address, so the internet
//! reaches the lab only through public addresses. Links without a bridge
//! keep a bridge's per-packet work off the path.

use super::netlink::{self, Netlink, VethEnd};
use crate::routing::addresses::internet_router_mac;
use crate::topology::routing::INTERNET_ROUTER;
use crate::topology::{Topology, UPLINK_PORT_NAME};
use anyhow::{Context, Result};
use sdn_vswitch::netns::{path_of, run_in};
use std::fs::File;
use std::os::fd::AsRawFd;

/// The router's bridge for the switches' uplinks, unless exactly one switch has one.
pub const EDGE_BRIDGE: &str = "edge";
/// MTU of the internet's links.
pub(super) const MTU: u32 = 1500;
/// An internet host's device.
pub const HOST_DEVICE: &str = "eth0";

/// The internet router's namespace of a lab.
pub fn router_namespace(topology: &Topology) -> String {
    format!("{}-internet", topology.name)
}

/// A device name for the router's side of a link to `name` (number `index`):
/// `<prefix>-<name>`, or `<prefix><index>` when that is too long for a
/// device name.
pub(super) fn device_for(prefix: &str, name: &str, index: usize) -> String {
    let wanted = format!("{prefix}-{name}");
    if wanted.len() <= 15 {
        wanted
    } else {
        format!("{prefix}{index}")
    }
}

/// The router's device facing switch `index`'s uplink.
pub fn uplink_device(topology: &Topology, switch: &str) -> String {
    let index = topology
        .switches
        .iter()
        .position(|s| s.name == switch)
        .unwrap_or(0);
    device_for("up", switch, index)
}

pub(super) fn sysctl(key: &str, value: &str) -> std::io::Result<()> {
    std::fs::write(format!("/proc/sys/{key}"), value)
}

pub(super) fn open(namespace: &str) -> Result<File> {
    File::open(path_of(namespace)).with_context(|| format!("open namespace {namespace}"))
}

/// Builds the router, its bridges, the uplinks of the switches that have
/// one, and the internet's hosts. Namespaces exist already.
pub fn build(topology: &Topology) -> Result<()> {
    if !topology.internet.present {
        return Ok(());
    }
    let router = router_namespace(topology);
    let uplinks: Vec<_> = topology
        .switches
        .iter()
        .filter(|s| topology.has_uplink(&s.name))
        .collect();
    let bridged = uplinks.len() != 1;
    // Where the router sends the lab's public addresses.
    let edge_device = match uplinks.as_slice() {
        [only] => uplink_device(topology, &only.name),
        _ => EDGE_BRIDGE.to_string(),
    };
    run_in(Some(&router), || {
        for key in ["all", "default"] {
            sysctl(&format!("net/ipv6/conf/{key}/disable_ipv6"), "1")?;
            sysctl(&format!("net/ipv4/conf/{key}/rp_filter"), "1")?;
        }
        sysctl("net/ipv4/ip_forward", "1")?;
        // This kernel has br_netfilter built in: keep the bridges out of iptables.
        for table in ["iptables", "ip6tables", "arptables"] {
            let _ = sysctl(&format!("net/bridge/bridge-nf-call-{table}"), "0");
        }
        let mut nl = Netlink::open()?;
        nl.set_up(netlink::index_of("lo")?)?;
        if bridged {
            nl.create_bridge(EDGE_BRIDGE)?;
            let edge = netlink::index_of(EDGE_BRIDGE)?;
            nl.set_mac(edge, internet_router_mac(&topology.name))?;
            nl.set_up(edge)?;
        }
        Ok(())
    })
    .with_context(|| format!("build the internet's router in namespace {router}"))?;
    let router_file = open(&router)?;
    for switch in &uplinks {
        let namespace = topology.namespace_of(&switch.name);
        let file = open(&namespace)?;
        let device = uplink_device(topology, &switch.name);
        Netlink::open()?
            .create_veth(
                &VethEnd {
                    name: UPLINK_PORT_NAME.into(),
                    netns_fd: file.as_raw_fd(),
                    mac: None,
                    mtu: Some(MTU),
                },
                &VethEnd {
                    name: device.clone(),
                    netns_fd: router_file.as_raw_fd(),
                    // Unbridged, the link itself is the router's edge.
                    mac: (!bridged).then(|| internet_router_mac(&topology.name)),
                    mtu: Some(MTU),
                },
            )
            .with_context(|| format!("link switch {} to the internet", switch.name))?;
        if bridged {
            attach(&router, &device, EDGE_BRIDGE)?;
        } else {
            bring_up(&router, &device)?;
        }
        run_in(Some(&namespace), || {
            Netlink::open()?.set_up(netlink::index_of(UPLINK_PORT_NAME)?)
        })
        .with_context(|| format!("bring up the uplink of {}", switch.name))?;
    }
    for (index, host) in topology.internet.hosts.iter().enumerate() {
        let namespace = topology.namespace_of(&host.name);
        let file = open(&namespace)?;
        let device = device_for("ih", &host.name, index);
        Netlink::open()?
            .create_veth(
                &VethEnd {
                    name: HOST_DEVICE.into(),
                    netns_fd: file.as_raw_fd(),
                    mac: Some(host.mac),
                    mtu: Some(MTU),
                },
                &VethEnd {
                    name: device.clone(),
                    netns_fd: router_file.as_raw_fd(),
                    mac: None,
                    mtu: Some(MTU),
                },
            )
            .with_context(|| format!("link internet host {} to the router", host.name))?;
        run_in(Some(&namespace), || {
            let mut nl = Netlink::open()?;
            nl.set_up(netlink::index_of("lo")?)?;
            let eth = netlink::index_of(HOST_DEVICE)?;
            nl.add_address(eth, host.address.into(), 32)?;
            nl.set_up(eth)?;
            nl.add_route(
                std::net::Ipv4Addr::UNSPECIFIED,
                0,
                Some(INTERNET_ROUTER),
                eth,
                true,
            )
        })
        .with_context(|| format!("configure internet host {}", host.name))?;
        run_in(Some(&router), || {
            let mut nl = Netlink::open()?;
            let link = netlink::index_of(&device)?;
            nl.add_address(link, INTERNET_ROUTER.into(), 32)?;
            nl.set_up(link)?;
            nl.add_route(host.address, 32, None, link, false)
        })
        .with_context(|| format!("route {} to internet host {}", host.address, host.name))?;
    }
    let lab_addresses = topology
        .internet
        .public_ips
        .iter()
        .map(|p| p.address)
        .chain(topology.internet.nat_gateways.iter().map(|g| g.address))
        .chain(
            topology
                .load_balancers
                .iter()
                .flat_map(|lb| &lb.frontends)
                .filter(|f| f.kind == crate::topology::load_balancer::FrontendKind::Public)
                .map(|f| f.address),
        );
    for address in lab_addresses {
        run_in(Some(&router), || {
            let edge = netlink::index_of(&edge_device)?;
            Netlink::open()?.add_route(address, 32, None, edge, false)
        })
        .with_context(|| format!("route public address {address} to the lab's edge"))?;
    }
    Ok(())
}

/// Puts the router's `device` into `bridge` and brings it up.
fn attach(router: &str, device: &str, bridge: &str) -> Result<()> {
    run_in(Some(router), || {
        let mut nl = Netlink::open()?;
        let index = netlink::index_of(device)?;
        nl.set_master(index, netlink::index_of(bridge)?)?;
        nl.set_up(index)
    })
    .with_context(|| format!("attach {device} to bridge {bridge}"))
}

/// Brings the router's `device` up.
fn bring_up(router: &str, device: &str) -> Result<()> {
    run_in(Some(router), || {
        Netlink::open()?.set_up(netlink::index_of(device)?)
    })
    .with_context(|| format!("bring up {device}"))
}
