//! The I/O shell of a VPN gateway: one task per gateway of the switch,
//! running the sans-IO IKE sessions of its connections (`sdn_vpn::ike::
//! session`) over a UDP socket on the gateway's port 500 and over its ESP
//! port's socket on 4500 (IKE behind the non-ESP marker), and installing the
//! child SAs they agree into the ESP port, which seals and opens the
//! traffic on the datapath thread. Every second it tells the sessions which
//! inbound SAs carried traffic (so dead peer detection only probes a silent
//! peer) and writes the gateway's status, without keys, as JSON for
//! `sdn vpn status`; and, only when `sdn vpn sa --export-keys` asks (a
//! request file beside the status), the keys of its installed child SAs,
//! which it keeps in wiped-on-drop memory until each SA is removed, in
//! Wireshark's `esp_sa` format in a file of mode 0600.

use crate::port::esp::{EspHandle, SaDirection};
use crate::vpn_config::{ConnectionConfig, GatewayConfig};
use crate::vpn_status::{
    ChildSaStatus, ConnectionStatus, EspSaKeys, GatewayStatus, PortStatus, keys_path,
    keys_request_path,
};
use sdn_vpn::esp::{Cipher, OutboundSa};
use sdn_vpn::ike::keys::Secret;
use sdn_vpn::ike::session::{
    Config, DownReason, Event, IKE_PORT, NAT_T_PORT, NON_ESP_MARKER, Phase, Role, Session,
};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::UdpSocket;
use tracing::{info, warn};

/// How often the status is written and ESP activity reported.
const TICK: Duration = Duration::from_secs(1);

/// The cipher a configuration names.
pub fn cipher_named(name: &str) -> Option<Cipher> {
    match name {
        "aes256gcm16" => Some(Cipher::Aes256Gcm16),
        "aes128gcm16" => Some(Cipher::Aes128Gcm16),
        "chacha20poly1305" => Some(Cipher::ChaCha20Poly1305),
        _ => None,
    }
}

/// Why a connection's session cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Its pre-shared key file is missing, readable by others or unreadable.
    #[error("connection {connection}: pre-shared key: {source}")]
    Key {
        /// The connection.
        connection: String,
        /// What is wrong with the file.
        source: sdn_vpn::psk::PskError,
    },
    /// It has no traffic selector on one side.
    #[error("connection {connection}: no {side} prefix")]
    NoPrefix {
        /// The connection.
        connection: String,
        /// `local` or `remote`.
        side: &'static str,
    },
    /// The session refused its settings.
    #[error("connection {connection}: {source}")]
    Settings {
        /// The connection.
        connection: String,
        /// Every setting refused.
        source: sdn_vpn::ike::session::ConfigErrors,
    },
}

/// A session's configuration from a connection's (the key read from its
/// file, which must be the owner's alone).
pub fn session_config(
    gateway: &GatewayConfig,
    c: &ConnectionConfig,
) -> Result<Config, GatewayError> {
    let psk = sdn_vpn::psk::read_psk(&c.psk_file).map_err(|source| GatewayError::Key {
        connection: c.name.clone(),
        source,
    })?;
    let first = |prefixes: &[ipnet::Ipv4Net], side: &'static str| {
        prefixes
            .first()
            .map(|p| (p.network(), p.prefix_len()))
            .ok_or_else(|| GatewayError::NoPrefix {
                connection: c.name.clone(),
                side,
            })
    };
    let mut config = Config::new(
        if c.initiate {
            Role::Initiator
        } else {
            Role::Responder
        },
        gateway.public_ip,
        c.peer,
        &psk,
        first(&c.local_prefixes, "local")?,
        first(&c.remote_prefixes, "remote")?,
    );
    config.id = c.local_id;
    config.peer_id = c.peer_id;
    let ciphers: Vec<Cipher> = c
        .ike_ciphers
        .iter()
        .filter_map(|n| cipher_named(n))
        .collect();
    if !ciphers.is_empty() {
        config.ciphers = ciphers;
    }
    config.ike_lifetime = Duration::from_secs(c.ike_lifetime_secs);
    config.child_lifetime = Duration::from_secs(c.child_lifetime_secs);
    config.dpd_interval = Duration::from_secs(c.dpd_interval_secs);
    config.dpd_retries = c.dpd_retries;
    config.validate().map_err(|source| GatewayError::Settings {
        connection: c.name.clone(),
        source,
    })?;
    Ok(config)
}

/// One connection: its session and what the status reports of it.
struct Connection {
    name: String,
    tunnel_id: u32,
    peer: Ipv4Addr,
    session: Session,
    /// Outbound SAs agreed but not yet sent on, by outbound SPI.
    waiting: HashMap<u32, (SocketAddrV4, OutboundSa)>,
    /// Inbound SPI → packets opened when last reported.
    opened: HashMap<u32, u64>,
    established_at: Option<u64>,
    last_down: Option<String>,
    cipher: Option<String>,
    nat: bool,
    spis: Option<(u64, u64)>,
    /// The installed child SAs' keys, for export on request, oldest first.
    keys: Vec<ExportableChild>,
}

/// What key export needs of an installed child SA: both directions.
struct ExportableChild {
    inbound_spi: u32,
    inbound: EspSaKeys,
    outbound: EspSaKeys,
}

/// One gateway's task state.
pub struct Gateway {
    name: String,
    public_ip: Ipv4Addr,
    esp: EspHandle,
    connections: Vec<Connection>,
    status_path: Option<PathBuf>,
}

/// A session's seed (its SPIs and jitter follow from it), from the OS:
/// two gateways of one switch must not pick the same SPIs.
fn random_seed() -> u64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // No OS randomness: the time still differs between processes.
        return unix_now() ^ u64::from(std::process::id()).rotate_left(32);
    }
    u64::from_le_bytes(bytes)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Gateway {
    /// A gateway over its ESP port's handle, with a session per connection.
    pub fn new(
        config: &GatewayConfig,
        esp: EspHandle,
        status_path: Option<PathBuf>,
        now: Instant,
    ) -> Result<Gateway, GatewayError> {
        let mut connections = Vec::new();
        for c in &config.connections {
            let session_config = session_config(config, c)?;
            let seed = random_seed();
            let session = Session::new(session_config, seed, now).map_err(|source| {
                GatewayError::Settings {
                    connection: c.name.clone(),
                    source,
                }
            })?;
            connections.push(Connection {
                name: c.name.clone(),
                tunnel_id: c.tunnel_id,
                peer: c.peer,
                session,
                waiting: HashMap::new(),
                opened: HashMap::new(),
                established_at: None,
                last_down: None,
                cipher: None,
                nat: false,
                spis: None,
                keys: Vec::new(),
            });
        }
        Ok(Gateway {
            name: config.name.clone(),
            public_ip: config.public_ip,
            esp,
            connections,
            status_path,
        })
    }

    fn connection_of(&mut self, from: SocketAddrV4) -> Option<&mut Connection> {
        self.connections.iter_mut().find(|c| c.peer == *from.ip())
    }

    /// An IKE datagram that arrived on `local_port` (with the marker on
    /// 4500).
    fn datagram(&mut self, now: Instant, from: SocketAddrV4, local_port: u16, bytes: &[u8]) {
        match self.connection_of(from) {
            Some(c) => c.session.handle_datagram(now, from, local_port, bytes),
            None => tracing::debug!(gateway = %self.name, %from, "IKE from no peer of ours"),
        }
    }

    /// Sends what the sessions want sent and applies their events.
    async fn drain(&mut self, socket: &UdpSocket) {
        for c in &mut self.connections {
            while let Some(t) = c.session.poll_transmit() {
                let sent = if t.source_port == NAT_T_PORT {
                    self.esp.send_ike(t.destination, t.message())
                } else {
                    socket.send_to(&t.payload, t.destination).await.map(|_| ())
                };
                if let Err(err) = sent {
                    warn!(gateway = %self.name, connection = %c.name, to = %t.destination, error = %err, "IKE send failed");
                }
            }
            while let Some(event) = c.session.poll_event() {
                apply(&self.esp, &self.name, c, event);
            }
        }
    }

    /// Reports the inbound SAs that carried traffic since the last tick.
    fn report_traffic(&mut self, now: Instant) {
        let stats = self.esp.stats();
        for c in &mut self.connections {
            for sa in stats
                .sas
                .iter()
                .filter(|s| s.tunnel_id == c.tunnel_id && s.direction == SaDirection::Inbound)
            {
                let before = c.opened.insert(sa.spi, sa.packets).unwrap_or(0);
                if sa.packets > before {
                    c.session.esp_received(now, sa.spi);
                }
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.connections
            .iter()
            .filter_map(|c| c.session.poll_timeout())
            .min()
    }

    fn timeouts(&mut self, now: Instant) {
        for c in &mut self.connections {
            if c.session.poll_timeout().is_some_and(|t| t <= now) {
                c.session.handle_timeout(now);
            }
        }
    }

    /// The gateway's status: per connection, its IKE SA and child SAs.
    pub fn status(&self) -> GatewayStatus {
        let stats = self.esp.stats();
        GatewayStatus {
            gateway: self.name.clone(),
            public_ip: self.public_ip,
            updated: unix_now(),
            port: PortStatus {
                unknown_spi: stats.port.unknown_spi,
                replayed: stats.port.replayed,
                auth_failed: stats.port.auth_failed,
                malformed: stats.port.malformed,
                no_sa: stats.port.no_sa,
                dropped: stats.port.dropped(),
            },
            connections: self
                .connections
                .iter()
                .map(|c| {
                    let s = c.session.stats();
                    let tunnel = stats.tunnel(c.tunnel_id);
                    ConnectionStatus {
                        name: c.name.clone(),
                        peer: c.peer,
                        state: match c.session.phase() {
                            Phase::Idle => "idle",
                            Phase::Connecting => "connecting",
                            Phase::Established => "established",
                            Phase::Closed => "closed",
                        }
                        .into(),
                        ike_spis: c
                            .spis
                            .map(|(i, r)| (format!("{i:016x}"), format!("{r:016x}"))),
                        algorithms: c.cipher.clone(),
                        nat_t: c.nat,
                        established_at: c.established_at,
                        last_down: c.last_down.clone(),
                        child_rekeys: s.child_rekeys,
                        ike_rekeys: s.ike_rekeys,
                        retransmissions: s.retransmissions,
                        liveness_checks: s.liveness_checks,
                        peer_dead: s.peer_dead,
                        packets_out: tunnel.map_or(0, |t| t.sealed_packets),
                        bytes_out: tunnel.map_or(0, |t| t.sealed_bytes),
                        packets_in: tunnel.map_or(0, |t| t.opened_packets),
                        bytes_in: tunnel.map_or(0, |t| t.opened_bytes),
                        child_sas: stats
                            .sas
                            .iter()
                            .filter(|sa| sa.tunnel_id == c.tunnel_id)
                            .map(|sa| ChildSaStatus {
                                spi: format!("{:08x}", sa.spi),
                                direction: match sa.direction {
                                    SaDirection::Inbound => "in",
                                    SaDirection::Outbound => "out",
                                }
                                .into(),
                                current: sa.current,
                                packets: sa.packets,
                                bytes: sa.bytes,
                                replayed: sa.replayed,
                                auth_failed: sa.auth_failed,
                            })
                            .collect(),
                    }
                })
                .collect(),
        }
    }

    /// Every installed child SA's two directions as lines of Wireshark's
    /// `esp_sa` table (inbound first), in memory wiped when dropped.
    fn esp_sa_lines(&self) -> (Secret, usize) {
        let lines: Vec<Secret> = self
            .connections
            .iter()
            .flat_map(|c| &c.keys)
            .flat_map(|k| [k.inbound.esp_sa_line(), k.outbound.esp_sa_line()])
            .collect();
        // Reserved at once: growing would leave copies in freed memory.
        let mut text = Secret::new(Vec::with_capacity(lines.iter().map(|l| l.len()).sum()));
        for line in &lines {
            text.extend_from_slice(line);
        }
        (text, lines.len())
    }

    /// Writes the keys file if a key request is there that it has not
    /// answered (the keys file is missing or older than the request).
    fn answer_key_request(&self) {
        let Some(dir) = self.status_path.as_deref().and_then(Path::parent) else {
            return;
        };
        let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let path = keys_path(dir, &self.name);
        if !key_request_due(modified(&keys_request_path(dir)), modified(&path)) {
            return;
        }
        let (text, count) = self.esp_sa_lines();
        match write_private(&path, &text) {
            Ok(()) => {
                info!(gateway = %self.name, sas = count, file = %path.display(), "child SA keys exported on request")
            }
            Err(err) => {
                warn!(gateway = %self.name, file = %path.display(), error = %err, "cannot export the child SA keys")
            }
        }
    }

    fn write_status(&self) {
        let Some(path) = &self.status_path else {
            return;
        };
        let Ok(text) = serde_json::to_vec_pretty(&self.status()) else {
            return;
        };
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .is_err()
        {
            tracing::debug!(path = %path.display(), "cannot write the VPN status");
        }
    }

    /// Runs the gateway until the task is dropped: IKE on `socket` (port
    /// 500) and on the ESP port's 4500.
    pub async fn run(mut self, socket: UdpSocket) {
        let Some(mut ike_4500) = self.esp.take_ike_receiver() else {
            warn!(gateway = %self.name, "the ESP port's IKE messages go elsewhere; the gateway does not run");
            return;
        };
        info!(gateway = %self.name, address = %self.public_ip, connections = self.connections.len(), "VPN gateway running");
        let mut tick = tokio::time::interval(TICK);
        let mut buffer = vec![0u8; 65_536];
        let mut marked = Vec::with_capacity(2048);
        loop {
            self.drain(&socket).await;
            let deadline = self
                .next_deadline()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + TICK);
            tokio::select! {
                got = socket.recv_from(&mut buffer) => {
                    if let Ok((n, std::net::SocketAddr::V4(from))) = got {
                        self.datagram(Instant::now(), from, IKE_PORT, &buffer[..n]);
                    }
                }
                message = ike_4500.recv() => {
                    let Some((from, bytes)) = message else { return };
                    // The session reads port 4500's datagrams whole.
                    marked.clear();
                    marked.extend_from_slice(&NON_ESP_MARKER);
                    marked.extend_from_slice(&bytes);
                    self.datagram(Instant::now(), from, NAT_T_PORT, &marked);
                }
                _ = tokio::time::sleep_until(deadline) => {
                    self.timeouts(Instant::now());
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    self.report_traffic(now);
                    self.timeouts(now);
                    self.write_status();
                    self.answer_key_request();
                }
            }
        }
    }
}

/// Applies one session event to the ESP port.
fn apply(esp: &EspHandle, gateway: &str, c: &mut Connection, event: Event) {
    match event {
        Event::IkeEstablished {
            spi_i,
            spi_r,
            initiator,
            nat,
        } => {
            info!(gateway, connection = %c.name, peer = %c.peer, initiator, nat, "IKE SA established");
            c.established_at = Some(unix_now());
            c.spis = Some((spi_i, spi_r));
            c.nat = nat;
        }
        Event::IkeRekeyed { spi_i, spi_r } => {
            info!(gateway, connection = %c.name, "IKE SA rekeyed");
            c.spis = Some((spi_i, spi_r));
        }
        Event::IkeDown { reason } => {
            let why = down_reason(reason);
            warn!(gateway, connection = %c.name, peer = %c.peer, reason = why, "IKE SA down");
            c.last_down = Some(why.into());
            c.established_at = None;
            c.spis = None;
            c.waiting.clear();
            c.keys.clear();
        }
        Event::ChildSaInstalled(keys) => {
            // ESP always travels in UDP here (this kernel has no ESP).
            let peer = if keys.udp_encapsulated {
                keys.peer
            } else {
                SocketAddrV4::new(*keys.peer.ip(), NAT_T_PORT)
            };
            match (keys.inbound_sa(), keys.outbound_sa()) {
                (Ok(inbound), Ok(outbound)) => {
                    info!(gateway, connection = %c.name, inbound_spi = %format_args!("{:08x}", keys.inbound_spi), outbound_spi = %format_args!("{:08x}", keys.outbound_spi), "child SA installed");
                    c.cipher = Some(format!("{:?}", keys.cipher));
                    esp.install_inbound(c.tunnel_id, inbound);
                    c.waiting.insert(keys.outbound_spi, (peer, outbound));
                    let local = *esp.local().ip();
                    c.keys.push(ExportableChild {
                        inbound_spi: keys.inbound_spi,
                        inbound: EspSaKeys {
                            source: *keys.peer.ip(),
                            destination: local,
                            spi: keys.inbound_spi,
                            cipher: keys.cipher,
                            keymat: keys.inbound_keymat,
                        },
                        outbound: EspSaKeys {
                            source: local,
                            destination: *keys.peer.ip(),
                            spi: keys.outbound_spi,
                            cipher: keys.cipher,
                            keymat: keys.outbound_keymat,
                        },
                    });
                }
                _ => warn!(gateway, connection = %c.name, "child SA keys of the wrong length"),
            }
        }
        Event::ChildSaSending { outbound_spi, .. } => {
            if let Some((peer, sa)) = c.waiting.remove(&outbound_spi) {
                esp.install_outbound(c.tunnel_id, peer, sa);
            }
        }
        Event::ChildSaRemoved {
            inbound_spi,
            outbound_spi,
        } => {
            c.waiting.remove(&outbound_spi);
            c.keys.retain(|k| k.inbound_spi != inbound_spi);
            esp.remove_sa(inbound_spi);
            esp.remove_outbound(c.tunnel_id, outbound_spi);
            c.opened.remove(&inbound_spi);
            info!(gateway, connection = %c.name, inbound_spi = %format_args!("{inbound_spi:08x}"), "child SA removed");
        }
    }
}

/// Whether a key request made at `asked` still wants an answer, the keys
/// file having been written at `answered`. Timestamps are as coarse as
/// the file system's clock: a file written in the same tick as the request
/// counts as its answer (the CLI reads it so too).
fn key_request_due(asked: Option<SystemTime>, answered: Option<SystemTime>) -> bool {
    match (asked, answered) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(asked), Some(answered)) => answered < asked,
    }
}

/// Writes `contents` to `path` with mode 0600, through a temporary file
/// renamed over it, so that a reader sees all of it or none, and no one
/// else ever can.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    // `mode` applies only to a file it creates.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(contents)?;
    std::fs::rename(&tmp, path)
}

fn down_reason(reason: DownReason) -> &'static str {
    match reason {
        DownReason::PeerDead => "peer dead",
        DownReason::AuthFailed => "authentication failed",
        DownReason::PeerDeleted => "peer deleted",
        DownReason::NoProposalChosen => "no proposal chosen",
        DownReason::Refused(_) => "refused",
        DownReason::Expired => "expired",
        DownReason::Replaced => "replaced",
        DownReason::Closed => "closed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::esp::EspPort;
    use crate::vpn_config::ConnectionConfig;
    use sdn_vpn::ike::session::ChildSaKeys;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    const PEER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 90);

    /// A scratch directory of this test's own.
    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sdn-gateway-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A responder gateway on an ESP port at `local` (a loopback address
    /// of the test's own), its status and key files in `dir`.
    fn gateway(local: Ipv4Addr, dir: &Path) -> Gateway {
        let psk = dir.join("peer.psk");
        std::fs::write(&psk, "a-test-key\n").unwrap();
        std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = GatewayConfig {
            name: "hub-gw".into(),
            port: 65_100,
            public_ip: local,
            connections: vec![ConnectionConfig {
                name: "hub-to-branch".into(),
                tunnel_id: 1,
                peer: PEER,
                local_id: local,
                peer_id: PEER,
                psk_file: psk,
                local_prefixes: vec!["10.90.0.0/16".parse().unwrap()],
                remote_prefixes: vec!["192.168.50.0/24".parse().unwrap()],
                ike_ciphers: vec!["aes256gcm16".into()],
                esp_ciphers: vec!["aes256gcm16".into()],
                ike_lifetime_secs: 28_800,
                child_lifetime_secs: 3_600,
                dpd_interval_secs: 10,
                dpd_retries: 3,
                initiate: false,
            }],
        };
        let (_port, handle) = EspPort::open(
            local,
            crate::wire::EthernetAddress([2, 0, 0, 0, 0, 1]),
            1500,
        )
        .expect("an ESP port on a loopback address");
        let status = crate::vpn_status::status_path(dir, "hub-gw");
        Gateway::new(&config, handle, Some(status), Instant::now()).unwrap()
    }

    /// A child SA's keys: AES-256-GCM, each direction's keying material
    /// one repeated byte.
    fn child(inbound_spi: u32, outbound_spi: u32, byte: u8) -> ChildSaKeys {
        ChildSaKeys {
            cipher: Cipher::Aes256Gcm16,
            inbound_spi,
            outbound_spi,
            inbound_keymat: Secret::new(vec![byte; 36]),
            outbound_keymat: Secret::new(vec![byte + 1; 36]),
            local_ts: Vec::new(),
            remote_ts: Vec::new(),
            udp_encapsulated: true,
            peer: SocketAddrV4::new(PEER, NAT_T_PORT),
        }
    }

    fn event(g: &mut Gateway, event: Event) {
        let Gateway {
            esp,
            name,
            connections,
            ..
        } = g;
        apply(esp, name, &mut connections[0], event);
    }

    fn lines(g: &Gateway) -> Vec<String> {
        let (text, count) = g.esp_sa_lines();
        let text = String::from_utf8(text.to_vec()).unwrap();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        assert_eq!(lines.len(), count);
        lines
    }

    #[test]
    fn installed_child_sas_keep_their_keys_for_export_until_removed() {
        let local = Ipv4Addr::new(127, 0, 77, 1);
        let dir = scratch("keys");
        let mut g = gateway(local, &dir);
        assert!(lines(&g).is_empty(), "no SA, no keys");
        event(&mut g, Event::ChildSaInstalled(child(0xc1, 0xd1, 0x11)));
        let hex = |byte: u8| format!("0x{}", format!("{byte:02x}").repeat(36));
        assert_eq!(
            lines(&g),
            [
                format!(
                    "\"IPv4\",\"198.51.100.90\",\"127.0.77.1\",\"0x000000c1\",\"AES-GCM with 16 octet ICV [RFC4106]\",\"{}\",\"NULL\",\"\"",
                    hex(0x11)
                ),
                format!(
                    "\"IPv4\",\"127.0.77.1\",\"198.51.100.90\",\"0x000000d1\",\"AES-GCM with 16 octet ICV [RFC4106]\",\"{}\",\"NULL\",\"\"",
                    hex(0x12)
                ),
            ]
        );
        // A rekey: the new child SA beside the old until the old goes.
        event(&mut g, Event::ChildSaInstalled(child(0xc2, 0xd2, 0x21)));
        assert_eq!(lines(&g).len(), 4);
        event(
            &mut g,
            Event::ChildSaRemoved {
                inbound_spi: 0xc1,
                outbound_spi: 0xd1,
            },
        );
        let left = lines(&g);
        assert_eq!(left.len(), 2);
        assert!(left[0].contains("\"0x000000c2\"") && left[1].contains("\"0x000000d2\""));
        assert!(
            !left.concat().contains(&hex(0x11)[2..]),
            "the old keys are gone"
        );
        // Down: nothing left to export.
        event(&mut g, Event::ChildSaInstalled(child(0xc3, 0xd3, 0x31)));
        event(
            &mut g,
            Event::IkeDown {
                reason: DownReason::PeerDead,
            },
        );
        assert!(lines(&g).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keys_are_written_only_when_asked_once_per_request_and_never_in_the_status() {
        let local = Ipv4Addr::new(127, 0, 77, 2);
        let dir = scratch("request");
        let mut g = gateway(local, &dir);
        event(&mut g, Event::ChildSaInstalled(child(0xc1, 0xd1, 0xab)));
        let keys = keys_path(&dir, "hub-gw");
        let key_hex = "ab".repeat(36);

        g.write_status();
        g.answer_key_request();
        assert!(!keys.exists(), "no request, no keys file");
        let status = std::fs::read_to_string(crate::vpn_status::status_path(&dir, "hub-gw"))
            .expect("a status file");
        assert!(status.contains("hub-to-branch") && !status.contains(&key_hex));

        std::fs::write(keys_request_path(&dir), "").unwrap();
        g.answer_key_request();
        let written = std::fs::read_to_string(&keys).expect("the keys file");
        assert_eq!(written.lines().count(), 2);
        assert!(written.contains(&key_hex));
        assert_eq!(std::fs::metadata(&keys).unwrap().mode() & 0o777, 0o600);

        // Answered: a later tick leaves the file alone.
        std::fs::remove_file(&keys).unwrap();
        std::fs::write(&keys, "answered").unwrap();
        let answered = std::fs::metadata(&keys).unwrap().modified().unwrap();
        let request = std::fs::metadata(keys_request_path(&dir))
            .unwrap()
            .modified()
            .unwrap();
        assert!(answered >= request);
        g.answer_key_request();
        assert_eq!(std::fs::read_to_string(&keys).unwrap(), "answered");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_request_is_due_until_a_keys_file_at_least_as_new_answers_it() {
        let t = UNIX_EPOCH + Duration::from_secs(1_000);
        let later = t + Duration::from_millis(4);
        assert!(!key_request_due(None, None), "no request");
        assert!(!key_request_due(None, Some(t)));
        assert!(key_request_due(Some(t), None), "asked, not answered");
        assert!(key_request_due(Some(later), Some(t)), "an older answer");
        assert!(!key_request_due(Some(t), Some(t)), "the same tick");
        assert!(!key_request_due(Some(t), Some(later)));
    }
}
