//! What `sdn up` tells a switch about the VPN gateways it carries: a JSON
//! file (root-only, like the pre-shared keys it names but never holds) that
//! `vswitchd --vpn-config FILE` reads at start. Each gateway is an ESP
//! tunnel port of the switch, bound to the gateway's public address; each
//! of its connections is one IKE SA with its child SAs, and the tunnel id
//! the switch's flows use for it (as a VNI names a VXLAN segment).

use crate::flow::PortNo;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// The VPN gateways of one switch.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpnConfig {
    /// Gateways, one ESP port each.
    pub gateways: Vec<GatewayConfig>,
}

/// One VPN gateway: an ESP port on the gateway's public address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The gateway's name in the topology.
    pub name: String,
    /// The ESP port's number on the switch.
    pub port: PortNo,
    /// The gateway's public address (IKE on UDP 500, ESP and IKE on 4500).
    pub public_ip: Ipv4Addr,
    /// Its connections.
    pub connections: Vec<ConnectionConfig>,
}

/// One connection: an IKE SA with a peer and the child SAs under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    /// The connection's name in the topology.
    pub name: String,
    /// The tunnel id the switch's flows use for this connection: frames
    /// sent to the ESP port with it go to this peer; frames opened from
    /// this connection's SAs enter the pipeline with it.
    pub tunnel_id: u32,
    /// The peer's public address.
    pub peer: Ipv4Addr,
    /// Our IKE identity (ID_IPV4_ADDR of the public address, as strongSwan's
    /// default).
    pub local_id: Ipv4Addr,
    /// The identity the peer must prove.
    pub peer_id: Ipv4Addr,
    /// The pre-shared key's file (mode 0600 or stricter, checked at use).
    pub psk_file: PathBuf,
    /// Our side's traffic selectors.
    pub local_prefixes: Vec<Ipv4Net>,
    /// The peer's side's traffic selectors.
    pub remote_prefixes: Vec<Ipv4Net>,
    /// IKE ciphers offered, in order (`aes256gcm16`, `aes128gcm16`).
    pub ike_ciphers: Vec<String>,
    /// ESP ciphers offered, in order (`aes256gcm16`, `aes128gcm16`,
    /// `chacha20poly1305`).
    pub esp_ciphers: Vec<String>,
    /// IKE SA lifetime, seconds.
    pub ike_lifetime_secs: u64,
    /// Child SA lifetime, seconds.
    pub child_lifetime_secs: u64,
    /// Seconds of silence before a liveness check.
    pub dpd_interval_secs: u64,
    /// Unanswered liveness checks before the peer is declared dead.
    pub dpd_retries: u32,
    /// Whether this side starts IKE (it always answers a peer that does).
    pub initiate: bool,
}

impl VpnConfig {
    /// Reads a configuration file.
    pub fn read(path: &std::path::Path) -> std::io::Result<VpnConfig> {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str(&text)
            .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidData, err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_reads_back_as_written() {
        let config = VpnConfig {
            gateways: vec![GatewayConfig {
                name: "hub-gw".into(),
                port: 65_100,
                public_ip: Ipv4Addr::new(203, 0, 113, 90),
                connections: vec![ConnectionConfig {
                    name: "hub-to-branch".into(),
                    tunnel_id: 1,
                    peer: Ipv4Addr::new(198, 51, 100, 90),
                    local_id: Ipv4Addr::new(203, 0, 113, 90),
                    peer_id: Ipv4Addr::new(198, 51, 100, 90),
                    psk_file: "/tmp/branch.psk".into(),
                    local_prefixes: vec!["10.90.0.0/16".parse().unwrap()],
                    remote_prefixes: vec!["192.168.50.0/24".parse().unwrap()],
                    ike_ciphers: vec!["aes256gcm16".into()],
                    esp_ciphers: vec!["aes256gcm16".into()],
                    ike_lifetime_secs: 28_800,
                    child_lifetime_secs: 3_600,
                    dpd_interval_secs: 10,
                    dpd_retries: 3,
                    initiate: true,
                }],
            }],
        };
        let text = serde_json::to_string(&config).unwrap();
        let back: VpnConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back, config);
        let unknown = text.replacen("\"initiate\"", "\"initiator\"", 1);
        assert!(serde_json::from_str::<VpnConfig>(&unknown).is_err());
    }
}
