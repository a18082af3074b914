//! VPN gateways in a lab. Each gateway runs on one switch
//! (`Topology::vpn_gateway_switch`); a switch carrying any gets a link of
//! its own to the internet router, `vpn` in its namespace with every one of
//! its gateways' public addresses (/32) and a default route via the router,
//! and on the router's side the router's address and a /32 route to each
//! of those addresses, so that IKE and ESP in UDP reach kernel sockets
//! bound to them in the switch's namespace. Its `vswitchd` gets an ESP port
//! per gateway (`--esp NUMBER=ADDRESS`) and the connections in a root-only
//! `VpnConfig` file (`--vpn-config FILE`).

use super::internet::{MTU, device_for, open, router_namespace};
use super::netlink::{self, Netlink, VethEnd};
use super::private;
use crate::topology::Topology;
use crate::topology::routing::{INTERNET_ROUTER, VpnGateway};
use crate::topology::vpn::{Connection, Initiator, Remote};
use anyhow::{Context, Result};
use ipnet::Ipv4Net;
use sdn_vswitch::netns::run_in;
use sdn_vswitch::vpn_config::{ConnectionConfig, GatewayConfig, VpnConfig};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// A switch's device on its link to the internet router for its gateways.
pub const VPN_DEVICE: &str = "vpn";

/// The internet router's device facing `switch`'s gateways.
pub fn router_device(topology: &Topology, switch: &str) -> String {
    let index = topology
        .switches
        .iter()
        .position(|s| s.name == switch)
        .unwrap_or(0);
    device_for("vpn", switch, index)
}

/// Where `sdn up` writes the VPN configuration of `switch`, in run
/// directory `dir`.
pub fn config_path(dir: &Path, switch: &str) -> PathBuf {
    dir.join(format!("vpn-{switch}.json"))
}

/// The ESP ports of `switch`: its gateways' port numbers and public
/// addresses, in file order.
pub fn esp_ports(topology: &Topology, switch: &str) -> Vec<(u32, Ipv4Addr)> {
    topology
        .vpn_gateways_on(switch)
        .iter()
        .map(|(g, port)| (*port, g.public_ip))
        .collect()
}

/// Links every switch that carries VPN gateways to the internet router.
/// The namespaces and the router exist already.
pub fn build_links(topology: &Topology) -> Result<()> {
    let router = router_namespace(topology);
    for switch in &topology.switches {
        let addresses: Vec<Ipv4Addr> = esp_ports(topology, &switch.name)
            .into_iter()
            .map(|(_, a)| a)
            .collect();
        if addresses.is_empty() {
            continue;
        }
        let namespace = topology.namespace_of(&switch.name);
        let device = router_device(topology, &switch.name);
        let (switch_file, router_file) = (open(&namespace)?, open(&router)?);
        Netlink::open()?
            .create_veth(
                &VethEnd {
                    name: VPN_DEVICE.into(),
                    netns_fd: switch_file.as_raw_fd(),
                    mac: None,
                    mtu: Some(MTU),
                },
                &VethEnd {
                    name: device.clone(),
                    netns_fd: router_file.as_raw_fd(),
                    mac: None,
                    mtu: Some(MTU),
                },
            )
            .with_context(|| {
                format!("link switch {}'s VPN gateways to the internet", switch.name)
            })?;
        run_in(Some(&namespace), || {
            let mut nl = Netlink::open()?;
            let vpn = netlink::index_of(VPN_DEVICE)?;
            for address in &addresses {
                nl.add_address(vpn, (*address).into(), 32)?;
            }
            nl.set_up(vpn)?;
            nl.add_route(Ipv4Addr::UNSPECIFIED, 0, Some(INTERNET_ROUTER), vpn, true)
        })
        .with_context(|| {
            format!(
                "give switch {} its VPN gateways' addresses in namespace {namespace}",
                switch.name
            )
        })?;
        run_in(Some(&router), || {
            let mut nl = Netlink::open()?;
            let link = netlink::index_of(&device)?;
            nl.add_address(link, INTERNET_ROUTER.into(), 32)?;
            nl.set_up(link)?;
            for address in &addresses {
                nl.add_route(*address, 32, None, link, false)?;
            }
            Ok(())
        })
        .with_context(|| {
            format!(
                "route switch {}'s VPN gateway addresses from the internet router",
                switch.name
            )
        })?;
    }
    Ok(())
}

/// The VPN configuration of `switch`: a gateway, with its ESP port, per
/// gateway it runs; `None` if it runs none.
pub fn vpn_config(topology: &Topology, switch: &str) -> Option<VpnConfig> {
    let gateways: Vec<GatewayConfig> = topology
        .vpn_gateways_on(switch)
        .into_iter()
        .map(|(gateway, port)| GatewayConfig {
            name: gateway.name.clone(),
            port,
            public_ip: gateway.public_ip,
            connections: connections_of(topology, gateway),
        })
        .collect();
    (!gateways.is_empty()).then_some(VpnConfig { gateways })
}

/// The connections `gateway` is an end of, in `connections` order. A
/// connection's tunnel id is 1 + its index there, the same at both ends of
/// a VNet-to-VNet connection; the peer gateway's side swaps the prefixes
/// and initiates when the peer is to.
fn connections_of(topology: &Topology, gateway: &VpnGateway) -> Vec<ConnectionConfig> {
    topology
        .vpn
        .connections
        .iter()
        .zip(1u32..)
        .filter_map(|(connection, tunnel_id)| {
            let end = if connection.gateway == gateway.name {
                End {
                    peer: remote_address(topology, &connection.remote)?,
                    local_prefixes: vec![connection.local_prefix],
                    remote_prefixes: connection.remote_prefixes.clone(),
                    initiate: matches!(connection.initiator, Initiator::Gateway | Initiator::Both),
                }
            } else if connection.remote == Remote::PeerGateway(gateway.name.clone()) {
                End {
                    peer: topology.routing.vpn_gateway(&connection.gateway)?.public_ip,
                    local_prefixes: connection.remote_prefixes.clone(),
                    remote_prefixes: vec![connection.local_prefix],
                    initiate: matches!(connection.initiator, Initiator::Peer | Initiator::Both),
                }
            } else {
                return None;
            };
            Some(connection_config(connection, tunnel_id, gateway, end))
        })
        .collect()
}

/// One gateway's view of a connection.
struct End {
    peer: Ipv4Addr,
    local_prefixes: Vec<Ipv4Net>,
    remote_prefixes: Vec<Ipv4Net>,
    initiate: bool,
}

fn connection_config(
    connection: &Connection,
    tunnel_id: u32,
    gateway: &VpnGateway,
    end: End,
) -> ConnectionConfig {
    ConnectionConfig {
        name: connection.name.clone(),
        tunnel_id,
        peer: end.peer,
        local_id: gateway.public_ip,
        peer_id: end.peer,
        psk_file: absolute(&connection.psk_file),
        local_prefixes: end.local_prefixes,
        remote_prefixes: end.remote_prefixes,
        ike_ciphers: names(&connection.policy.ike),
        esp_ciphers: names(&connection.policy.esp),
        ike_lifetime_secs: connection.ike_lifetime.as_secs(),
        child_lifetime_secs: connection.child_lifetime.as_secs(),
        dpd_interval_secs: connection.dpd_interval.as_secs(),
        dpd_retries: connection.dpd_retries,
        initiate: end.initiate,
    }
}

fn names(ciphers: &[crate::topology::vpn::Aead]) -> Vec<String> {
    ciphers.iter().map(|c| c.name().to_string()).collect()
}

/// The public address of a connection's far end.
pub fn remote_address(topology: &Topology, remote: &Remote) -> Option<Ipv4Addr> {
    match remote {
        Remote::Site(name) => topology.vpn.site(name).map(|s| s.public_ip),
        Remote::LocalNetworkGateway(name) => {
            topology.vpn.local_network_gateway(name).map(|g| g.address)
        }
        Remote::PeerGateway(name) => topology.routing.vpn_gateway(name).map(|g| g.public_ip),
    }
}

/// `path` made absolute (resolving links), for a daemon that may run
/// elsewhere than `sdn up` did.
fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// Writes `switch`'s VPN configuration into run directory `dir` (mode
/// 0600: it names the key files); its path, or `None` if the switch runs no
/// gateway.
pub fn write_config(topology: &Topology, switch: &str, dir: &Path) -> Result<Option<PathBuf>> {
    let Some(config) = vpn_config(topology, switch) else {
        return Ok(None);
    };
    let path = config_path(dir, switch);
    let text = serde_json::to_vec_pretty(&config).context("encode a VPN configuration")?;
    private::write_file(&path, &text)?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{VPN, VpnFixture};
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn net(text: &str) -> Ipv4Net {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    fn with_initiator(initiator: &str) -> String {
        VPN.replacen(
            "    psk_file: east-west.psk\n",
            &format!("    psk_file: east-west.psk\n    initiator: {initiator}\n"),
            1,
        )
    }

    #[test]
    fn the_example_gives_sw1_every_gateway() {
        let fixture = VpnFixture::new(VPN);
        let topology = fixture.topology();
        let config = vpn_config(&topology, "sw1").expect("sw1 runs the gateways");
        let gateways: Vec<(&str, u32, Ipv4Addr, usize)> = config
            .gateways
            .iter()
            .map(|g| (g.name.as_str(), g.port, g.public_ip, g.connections.len()))
            .collect();
        assert_eq!(
            gateways,
            [
                ("hub-gw", 65_100, ip("203.0.113.90"), 1),
                ("east-gw", 65_101, ip("203.0.113.91"), 1),
                ("west-gw", 65_102, ip("203.0.113.92"), 1),
            ]
        );
        assert_eq!(
            config.gateways[0].connections[0],
            ConnectionConfig {
                name: "hub-to-branch".into(),
                tunnel_id: 1,
                peer: ip("198.51.100.90"),
                local_id: ip("203.0.113.90"),
                peer_id: ip("198.51.100.90"),
                psk_file: std::fs::canonicalize(fixture.dir().join("branch.psk")).unwrap(),
                local_prefixes: vec![net("10.90.0.0/16")],
                remote_prefixes: vec![net("192.168.50.0/24")],
                ike_ciphers: vec!["aes256gcm16".into(), "aes128gcm16".into()],
                esp_ciphers: vec!["aes256gcm16".into()],
                ike_lifetime_secs: 28_800,
                child_lifetime_secs: 3_600,
                dpd_interval_secs: 10,
                dpd_retries: 3,
                initiate: true,
            }
        );
        let east = &config.gateways[1].connections[0];
        let west = &config.gateways[2].connections[0];
        for (end, us, them) in [
            (east, "203.0.113.91", "203.0.113.92"),
            (west, "203.0.113.92", "203.0.113.91"),
        ] {
            assert_eq!(end.name, "east-to-west");
            assert_eq!(end.tunnel_id, 2, "the same tunnel id at both ends");
            assert_eq!(
                (end.local_id, end.peer, end.peer_id),
                (ip(us), ip(them), ip(them))
            );
            assert!(end.psk_file.is_absolute());
            assert_eq!(end.ike_ciphers, ["aes256gcm16"]);
            assert_eq!(end.esp_ciphers, ["aes256gcm16"]);
            assert_eq!(
                (
                    end.ike_lifetime_secs,
                    end.child_lifetime_secs,
                    end.dpd_interval_secs,
                    end.dpd_retries
                ),
                (28_800, 3_600, 10, 3)
            );
        }
        assert_eq!(east.local_prefixes, [net("10.91.0.0/16")]);
        assert_eq!(east.remote_prefixes, [net("10.92.0.0/16")]);
        assert_eq!(west.local_prefixes, [net("10.92.0.0/16")]);
        assert_eq!(west.remote_prefixes, [net("10.91.0.0/16")]);
        // initiator: gateway (the default) — east-gw starts, west-gw waits.
        assert!(east.initiate && !west.initiate);
        assert_eq!(
            esp_ports(&topology, "sw1"),
            [
                (65_100, ip("203.0.113.90")),
                (65_101, ip("203.0.113.91")),
                (65_102, ip("203.0.113.92"))
            ]
        );
    }

    #[test]
    fn who_initiates_a_vnet_to_vnet_connection() {
        for (initiator, east, west) in [
            ("gateway", true, false),
            ("peer", false, true),
            ("both", true, true),
        ] {
            let fixture = VpnFixture::new(&with_initiator(initiator));
            let config = vpn_config(&fixture.topology(), "sw1").unwrap();
            let flags = (
                config.gateways[1].connections[0].initiate,
                config.gateways[2].connections[0].initiate,
            );
            assert_eq!(flags, (east, west), "initiator: {initiator}");
        }
    }

    #[test]
    fn gateways_go_to_the_first_switch_of_their_network() {
        // east1 and west1 on a second switch: sw1 keeps hub-gw alone, and
        // sw2's gateways are numbered from the base again.
        let text = VPN
            .replacen("      - { name: p3 }\n      - { name: p4 }\n", "", 1)
            .replacen(
                "\nhosts:\n",
                "  - name: sw2\n    ports:\n      - { name: p1 }\n      - { name: p2 }\n\nhosts:\n",
                1,
            )
            .replacen("[east1:eth0, sw1:p3]", "[east1:eth0, sw2:p1]", 1)
            .replacen("[west1:eth0, sw1:p4]", "[west1:eth0, sw2:p2]", 1);
        let fixture = VpnFixture::new(&text);
        let topology = fixture.topology();
        assert_eq!(topology.vpn_gateway_switch("east-gw").unwrap().name, "sw2");
        assert_eq!(esp_ports(&topology, "sw1"), [(65_100, ip("203.0.113.90"))]);
        assert_eq!(
            esp_ports(&topology, "sw2"),
            [(65_100, ip("203.0.113.91")), (65_101, ip("203.0.113.92"))]
        );
        let sw2 = vpn_config(&topology, "sw2").unwrap();
        assert_eq!(sw2.gateways.len(), 2);
        assert_eq!(router_device(&topology, "sw2"), "vpn-sw2");
    }

    #[test]
    fn the_file_is_private_and_reads_back() {
        let fixture = VpnFixture::new(VPN);
        let topology = fixture.topology();
        let dir = fixture.scratch("run");
        let path = write_config(&topology, "sw1", &dir).unwrap().unwrap();
        assert_eq!(path, dir.join("vpn-sw1.json"));
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            VpnConfig::read(&path).unwrap(),
            vpn_config(&topology, "sw1").unwrap()
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains(super::super::testutil::KEY),
            "names the key file, never the key"
        );
    }
}
