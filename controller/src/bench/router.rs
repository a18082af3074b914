//! The kernel's peers of the routed bench, in namespaces named from the
//! lab's baseline prefix and removed with their `Shape` (even on failure):
//! - a Linux router: both hosts' veths end in one router namespace with
//!   ip_forward on, and each host routes by default to the router's address
//!   on its link;
//! - nftables masquerade: a client routing by default to a router, which
//!   forwards and masquerades what leaves by its outbound veth towards a
//!   server on a public address.

use super::baseline::{Shape, veth};
use super::nft;
use crate::lab::netlink::{self, Netlink};
use anyhow::{Context, Result};
use std::net::Ipv4Addr;

/// A host on a routed link: its address and the router's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RoutedEnd {
    /// The host's address.
    pub(super) address: Ipv4Addr,
    /// Prefix length of the link's subnet.
    pub(super) prefix_len: u8,
    /// The router's address on the link: the host's default gateway.
    pub(super) gateway: Ipv4Addr,
}

/// The router's device towards the server in the masquerade shape.
const OUTBOUND: &str = "out0";

/// Writes a sysctl of the current namespace (`key` with slashes).
fn sysctl(key: &str, value: &str) -> std::io::Result<()> {
    std::fs::write(format!("/proc/sys/{key}"), value)
        .map_err(|e| std::io::Error::new(e.kind(), format!("set {key} to {value}: {e}")))
}

/// Brings up a host namespace's `lo` and `eth0` with its address and a
/// default route to its gateway.
fn routed_host(namespace: &str, end: RoutedEnd) -> Result<()> {
    sdn_vswitch::netns::run_in(Some(namespace), || {
        let mut nl = Netlink::open()?;
        nl.set_up(netlink::index_of("lo")?)?;
        let index = netlink::index_of("eth0")?;
        nl.add_address(index, end.address.into(), end.prefix_len)?;
        nl.set_up(index)?;
        nl.add_route(Ipv4Addr::UNSPECIFIED, 0, Some(end.gateway), index, false)
    })
    .with_context(|| format!("configure host namespace {namespace}"))
}

/// Turns the current namespace into a router: forwarding on, reverse-path
/// filtering off on every device (asymmetric paths are not expected here,
/// but a strict filter would only add a lookup the switch does not make),
/// and each of `links` (device, address, prefix length) up with its address.
fn router(links: &[(&str, Ipv4Addr, u8)]) -> std::io::Result<()> {
    let mut nl = Netlink::open()?;
    nl.set_up(netlink::index_of("lo")?)?;
    sysctl("net/ipv4/ip_forward", "1")?;
    let devices = ["all", "default"]
        .into_iter()
        .chain(links.iter().map(|(device, _, _)| *device));
    for device in devices {
        sysctl(&format!("net/ipv4/conf/{device}/rp_filter"), "0")?;
    }
    // This kernel has br_netfilter built in; there is no bridge here, but
    // keep any from calling into netfilter all the same.
    for table in ["iptables", "ip6tables", "arptables"] {
        let _ = sysctl(&format!("net/bridge/bridge-nf-call-{table}"), "0");
    }
    for (device, address, prefix_len) in links {
        let index = netlink::index_of(device)?;
        nl.add_address(index, (*address).into(), *prefix_len)?;
        nl.set_up(index)?;
    }
    Ok(())
}

/// Two hosts in two subnets joined by a Linux router: `<prefix>-rh1` and
/// `<prefix>-rh2`, each with a veth to `<prefix>-rrt` holding both gateways.
pub(super) fn linux_router(prefix: &str, client: RoutedEnd, server: RoutedEnd) -> Result<Shape> {
    let mut shape = Shape::new(server.address.into(), None);
    let (client_ns, server_ns) = shape.hosts(prefix, "r")?;
    let router_ns = shape.namespace(format!("{prefix}-rrt"))?;
    veth(&client_ns, "eth0", Some(&router_ns), "lan1", None)?;
    veth(&server_ns, "eth0", Some(&router_ns), "lan2", None)?;
    sdn_vswitch::netns::run_in(Some(&router_ns), || {
        router(&[
            ("lan1", client.gateway, client.prefix_len),
            ("lan2", server.gateway, server.prefix_len),
        ])
    })
    .with_context(|| format!("set up the router in {router_ns}"))?;
    routed_host(&client_ns, client)?;
    routed_host(&server_ns, server)?;
    shape.client_ns = client_ns;
    shape.server_ns = server_ns;
    Ok(shape)
}

/// The nftables ruleset of the masquerading router: connections leaving by
/// `outbound` get its address as their source (conntrack keeps the mapping
/// and reverses it for replies).
pub(super) fn masquerade_ruleset(outbound: &str) -> String {
    format!(
        "table ip bench_nat {{\n chain postrouting {{\n  type nat hook postrouting priority srcnat; policy accept;\n  oifname \"{outbound}\" masquerade\n }}\n}}\n"
    )
}

/// Addresses of the masquerade shape.
#[derive(Debug, Clone, Copy)]
pub(super) struct NatAddresses {
    /// The client and its router's inside address.
    pub(super) client: RoutedEnd,
    /// The router's public address (what the server sees).
    pub(super) public: Ipv4Addr,
    /// The server's public address.
    pub(super) server: Ipv4Addr,
}

/// A client behind nftables masquerade: `<prefix>-nh1` routes to
/// `<prefix>-nrt`, which masquerades on its outbound veth to `<prefix>-nsrv`.
/// Both public addresses are /32s with routes to each other on the link, as
/// on the lab's internet.
pub(super) fn nftables_masquerade(prefix: &str, nat: NatAddresses) -> Result<Shape> {
    let mut shape = Shape::new(nat.server.into(), None);
    let client_ns = shape.namespace(format!("{prefix}-nh1"))?;
    let router_ns = shape.namespace(format!("{prefix}-nrt"))?;
    let server_ns = shape.namespace(format!("{prefix}-nsrv"))?;
    veth(&client_ns, "eth0", Some(&router_ns), "in0", None)?;
    veth(&router_ns, OUTBOUND, Some(&server_ns), "eth0", None)?;
    sdn_vswitch::netns::run_in(Some(&router_ns), || {
        router(&[
            ("in0", nat.client.gateway, nat.client.prefix_len),
            (OUTBOUND, nat.public, 32),
        ])?;
        Netlink::open()?.add_route(nat.server, 32, None, netlink::index_of(OUTBOUND)?, false)
    })
    .with_context(|| format!("set up the router in {router_ns}"))?;
    nft::load(&router_ns, &masquerade_ruleset(OUTBOUND))
        .with_context(|| format!("load the masquerade rules in {router_ns}"))?;
    sdn_vswitch::netns::run_in(Some(&server_ns), || {
        let mut nl = Netlink::open()?;
        nl.set_up(netlink::index_of("lo")?)?;
        let index = netlink::index_of("eth0")?;
        nl.add_address(index, nat.server.into(), 32)?;
        nl.set_up(index)?;
        nl.add_route(nat.public, 32, None, index, false)
    })
    .with_context(|| format!("configure server namespace {server_ns}"))?;
    routed_host(&client_ns, nat.client)?;
    shape.client_ns = client_ns;
    shape.server_ns = server_ns;
    Ok(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_masquerade_ruleset_translates_only_what_leaves_outbound() {
        let rules = masquerade_ruleset("out0");
        assert_eq!(
            rules,
            "table ip bench_nat {\n chain postrouting {\n  type nat hook postrouting priority srcnat; policy accept;\n  oifname \"out0\" masquerade\n }\n}\n"
        );
        // One table, one chain, one rule: nothing filters, nothing else is translated.
        assert_eq!(rules.matches("chain ").count(), 1);
        assert!(!rules.contains("drop"));
        assert_eq!(rules.matches('{').count(), rules.matches('}').count());
    }
}
