//! What a switch's VPN gateways report for `sdn vpn status`: a JSON file
//! per gateway, `vpn-status-<gateway>.json` beside the switch's VPN
//! configuration, rewritten every second. It holds no keys.

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// Where the status of gateway `gateway` goes, in directory `dir`.
pub fn status_path(dir: &std::path::Path, gateway: &str) -> std::path::PathBuf {
    dir.join(format!("{STATUS_PREFIX}{gateway}.json"))
}

/// The status files' names begin with this.
pub const STATUS_PREFIX: &str = "vpn-status-";

/// What `sdn vpn status` reads of a gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatewayStatus {
    /// Its name.
    pub gateway: String,
    /// Its public address.
    pub public_ip: Ipv4Addr,
    /// When this was written (Unix seconds).
    pub updated: u64,
    /// The ESP port's drops.
    pub port: PortStatus,
    /// Its connections.
    pub connections: Vec<ConnectionStatus>,
}

/// The ESP port's drops.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortStatus {
    /// ESP for no SA of ours.
    pub unknown_spi: u64,
    /// Refused by an anti-replay window.
    pub replayed: u64,
    /// ICV did not verify.
    pub auth_failed: u64,
    /// Too short or malformed.
    pub malformed: u64,
    /// To send with no SA.
    pub no_sa: u64,
    /// Every drop.
    pub dropped: u64,
}

/// One connection's status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectionStatus {
    /// Its name.
    pub name: String,
    /// The peer's public address.
    pub peer: Ipv4Addr,
    /// idle, connecting, established or closed.
    pub state: String,
    /// The IKE SA's SPIs (initiator, responder).
    pub ike_spis: Option<(String, String)>,
    /// The child SAs' cipher.
    pub algorithms: Option<String>,
    /// Whether IKE and ESP moved to UDP 4500 for a NAT.
    pub nat_t: bool,
    /// When the IKE SA came up (Unix seconds).
    pub established_at: Option<u64>,
    /// Why it last went down.
    pub last_down: Option<String>,
    /// Child SA rekeys.
    pub child_rekeys: u64,
    /// IKE SA rekeys.
    pub ike_rekeys: u64,
    /// IKE requests sent again.
    pub retransmissions: u64,
    /// Liveness checks sent.
    pub liveness_checks: u64,
    /// Times the peer was declared dead.
    pub peer_dead: u64,
    /// Packets sealed.
    pub packets_out: u64,
    /// Bytes sealed.
    pub bytes_out: u64,
    /// Packets opened.
    pub packets_in: u64,
    /// Bytes opened.
    pub bytes_in: u64,
    /// Its child SAs.
    pub child_sas: Vec<ChildSaStatus>,
}

/// One child SA direction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChildSaStatus {
    /// SPI, hex.
    pub spi: String,
    /// in or out.
    pub direction: String,
    /// Outbound: the one new packets use.
    pub current: bool,
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
    /// Inbound: replayed packets dropped.
    pub replayed: u64,
    /// Inbound: packets failing authentication.
    pub auth_failed: u64,
}
