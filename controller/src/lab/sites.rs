//! On-premises sites on the lab's internet. A site's router is the
//! namespace `<lab>-<site>`, linked to the internet router exactly as an
//! internet host is (its public address on `eth0`, its default route via
//! the router, a /32 route to it on the router's side of the link); it
//! forwards, and holds the site's LAN: a bridge `lan` with the router's
//! address (the LAN's first host), which each site host, in a namespace of
//! its own, joins with a veth, routing through the router. strongSwan on
//! the router is `strongswan`'s.

use super::internet::{HOST_DEVICE, MTU, device_for, open, router_namespace, sysctl};
use super::netlink::{self, Netlink, VethEnd};
use crate::topology::routing::INTERNET_ROUTER;
use crate::topology::vpn::OnpremSite;
use crate::topology::{Topology, derived_mac};
use anyhow::{Context, Result};
use sdn_vswitch::netns::run_in;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

/// The bridge of a site's LAN, in the site router's namespace.
pub const LAN_BRIDGE: &str = "lan";

/// The router's device facing site number `index` named `site`.
pub fn router_device(site: &str, index: usize) -> String {
    device_for("site", site, index)
}

/// The site router's port of the LAN bridge for its host number `index`.
pub fn lan_port(host: &str, index: usize) -> String {
    device_for("lan", host, index)
}

/// Builds every site: its router's link to the internet, its LAN and its
/// hosts. The namespaces and the internet router exist already.
pub fn build(topology: &Topology) -> Result<()> {
    if topology.vpn.onprem_sites.is_empty() {
        return Ok(());
    }
    let router = router_namespace(topology);
    let router_file = open(&router)?;
    for (index, site) in topology.vpn.onprem_sites.iter().enumerate() {
        let namespace = topology.namespace_of(&site.name);
        configure_router(&namespace, site)
            .with_context(|| format!("configure site {} in namespace {namespace}", site.name))?;
        link_to_internet(topology, site, index, &router, &router_file)?;
        build_lan(topology, site, &namespace)?;
    }
    Ok(())
}

/// The site router forwards; no IPv6 autoconfiguration chatter, and its
/// LAN bridge stays out of iptables (this kernel has br_netfilter built in).
fn configure_router(namespace: &str, site: &OnpremSite) -> Result<()> {
    run_in(Some(namespace), || {
        for key in ["all", "default"] {
            sysctl(&format!("net/ipv6/conf/{key}/disable_ipv6"), "1")?;
        }
        sysctl("net/ipv4/ip_forward", "1")?;
        for table in ["iptables", "ip6tables", "arptables"] {
            let _ = sysctl(&format!("net/bridge/bridge-nf-call-{table}"), "0");
        }
        let mut nl = Netlink::open()?;
        nl.set_up(netlink::index_of("lo")?)?;
        nl.create_bridge(LAN_BRIDGE)?;
        let lan = netlink::index_of(LAN_BRIDGE)?;
        nl.add_address(lan, site.router.into(), site.lan.prefix_len())?;
        nl.set_up(lan)
    })?;
    Ok(())
}

/// The routed link between the internet router and the site's router.
fn link_to_internet(
    topology: &Topology,
    site: &OnpremSite,
    index: usize,
    router: &str,
    router_file: &File,
) -> Result<()> {
    let namespace = topology.namespace_of(&site.name);
    let file = open(&namespace)?;
    let device = router_device(&site.name, index);
    Netlink::open()?
        .create_veth(
            &VethEnd {
                name: HOST_DEVICE.into(),
                netns_fd: file.as_raw_fd(),
                mac: Some(derived_mac(&topology.name, &site.name, HOST_DEVICE)),
                mtu: Some(MTU),
            },
            &VethEnd {
                name: device.clone(),
                netns_fd: router_file.as_raw_fd(),
                mac: None,
                mtu: Some(MTU),
            },
        )
        .with_context(|| format!("link site {} to the internet router", site.name))?;
    run_in(Some(&namespace), || {
        let mut nl = Netlink::open()?;
        let eth = netlink::index_of(HOST_DEVICE)?;
        nl.add_address(eth, site.public_ip.into(), 32)?;
        nl.set_up(eth)?;
        nl.add_route(Ipv4Addr::UNSPECIFIED, 0, Some(INTERNET_ROUTER), eth, true)
    })
    .with_context(|| {
        format!(
            "give site {} its public address {}",
            site.name, site.public_ip
        )
    })?;
    run_in(Some(router), || {
        let mut nl = Netlink::open()?;
        let link = netlink::index_of(&device)?;
        nl.add_address(link, INTERNET_ROUTER.into(), 32)?;
        nl.set_up(link)?;
        nl.add_route(site.public_ip, 32, None, link, false)
    })
    .with_context(|| format!("route {} to site {}", site.public_ip, site.name))
}

/// The site's hosts, each joined to the LAN bridge by a veth.
fn build_lan(topology: &Topology, site: &OnpremSite, namespace: &str) -> Result<()> {
    let site_file = open(namespace)?;
    for (index, host) in site.hosts.iter().enumerate() {
        let host_namespace = topology.namespace_of(&host.name);
        let host_file = open(&host_namespace)?;
        let port = lan_port(&host.name, index);
        Netlink::open()?
            .create_veth(
                &VethEnd {
                    name: HOST_DEVICE.into(),
                    netns_fd: host_file.as_raw_fd(),
                    mac: Some(derived_mac(&topology.name, &host.name, HOST_DEVICE)),
                    mtu: Some(MTU),
                },
                &VethEnd {
                    name: port.clone(),
                    netns_fd: site_file.as_raw_fd(),
                    mac: None,
                    mtu: Some(MTU),
                },
            )
            .with_context(|| format!("link site host {} to site {}", host.name, site.name))?;
        run_in(Some(namespace), || {
            let mut nl = Netlink::open()?;
            let index = netlink::index_of(&port)?;
            nl.set_master(index, netlink::index_of(LAN_BRIDGE)?)?;
            nl.set_up(index)
        })
        .with_context(|| format!("attach {port} to site {}'s LAN", site.name))?;
        run_in(Some(&host_namespace), || {
            let mut nl = Netlink::open()?;
            nl.set_up(netlink::index_of("lo")?)?;
            let eth = netlink::index_of(HOST_DEVICE)?;
            nl.add_address(eth, host.address.into(), site.lan.prefix_len())?;
            nl.set_up(eth)?;
            nl.add_route(Ipv4Addr::UNSPECIFIED, 0, Some(site.router), eth, false)
        })
        .with_context(|| {
            format!(
                "configure site host {} ({}/{}) in namespace {host_namespace}",
                host.name,
                host.address,
                site.lan.prefix_len()
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_fit_the_kernel() {
        assert_eq!(router_device("branch", 0), "site-branch");
        assert_eq!(router_device("a-very-long-site-name", 3), "site3");
        assert_eq!(lan_port("branch1", 0), "lan-branch1");
        assert!(lan_port("a-long-host-name", 7).len() <= 15);
    }
}
