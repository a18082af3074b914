//! What a switch's VPN gateways report: for `sdn vpn status`, a JSON file
//! per gateway, `vpn-status-<gateway>.json` beside the switch's VPN
//! configuration, rewritten every second, which holds no keys; and for
//! `sdn vpn sa --export-keys`, only while a request file is there, each
//! gateway's child SA keys in Wireshark's `esp_sa` format
//! (`vpn-keys-<gateway>.esp_sa`, mode 0600).

use sdn_vpn::esp::Cipher;
use sdn_vpn::ike::keys::Secret;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Where the status of gateway `gateway` goes, in directory `dir`.
pub fn status_path(dir: &Path, gateway: &str) -> PathBuf {
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

/// The file whose presence in the status directory asks every gateway for
/// its child SA keys (created by `sdn vpn sa --export-keys`, mode 0600).
pub const KEYS_REQUEST: &str = "vpn-keys-request";

/// The key files' names begin with this.
pub const KEYS_PREFIX: &str = "vpn-keys-";

/// The key files' names end with this.
pub const KEYS_SUFFIX: &str = ".esp_sa";

/// Where the key request goes, in directory `dir`.
pub fn keys_request_path(dir: &Path) -> PathBuf {
    dir.join(KEYS_REQUEST)
}

/// Where gateway `gateway` answers a key request, in directory `dir`.
pub fn keys_path(dir: &Path, gateway: &str) -> PathBuf {
    dir.join(format!("{KEYS_PREFIX}{gateway}{KEYS_SUFFIX}"))
}

/// Wireshark's name of `cipher` in its ESP SA table (`esp_sa`, the
/// encryption values of `epan/dissectors/packet-ipsec.c`). Wireshark
/// tells AES-128 from AES-256 by the key's length; ChaCha20-Poly1305 is
/// known from Wireshark 4.2 on.
pub fn wireshark_encryption(cipher: Cipher) -> &'static str {
    match cipher {
        Cipher::Aes128Gcm16 | Cipher::Aes256Gcm16 => "AES-GCM with 16 octet ICV [RFC4106]",
        Cipher::ChaCha20Poly1305 => "ChaCha20 with Poly1305 [RFC7634]",
    }
}

/// One direction of a child SA, as Wireshark needs it to decrypt: the
/// outer addresses, the SPI, the cipher and the keying material (the key,
/// then the 4-byte salt, as RFC 4106 §8.1 and RFC 7634 §2 derive it),
/// wiped when dropped. Its `Debug` leaves the keys out.
pub struct EspSaKeys {
    /// The sender's public address.
    pub source: Ipv4Addr,
    /// The receiver's public address.
    pub destination: Ipv4Addr,
    /// The SPI the receiver chose.
    pub spi: u32,
    /// The AEAD cipher.
    pub cipher: Cipher,
    /// Key then salt.
    pub keymat: Secret,
}

impl std::fmt::Debug for EspSaKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EspSaKeys")
            .field("source", &self.source)
            .field("destination", &self.destination)
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("cipher", &self.cipher)
            .finish_non_exhaustive()
    }
}

/// Room for an `esp_sa` line besides its key's hex digits.
const LINE_ROOM: usize = 160;

impl EspSaKeys {
    /// Its line of Wireshark's `esp_sa` table, newline included:
    /// `"IPv4","SRC","DST","0xSPI","ENCRYPTION","0xKEY","NULL",""` (the
    /// AEAD ciphers authenticate by themselves: no authentication
    /// algorithm, no key). The line is wiped when dropped, and is built in
    /// memory reserved beforehand, so that no copy of it is left behind.
    pub fn esp_sa_line(&self) -> Secret {
        use std::io::Write;
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut line = Secret::new(Vec::with_capacity(LINE_ROOM + 2 * self.keymat.len()));
        // Writing to a vector does not fail.
        let _ = write!(
            line,
            "\"IPv4\",\"{}\",\"{}\",\"0x{:08x}\",\"{}\",\"0x",
            self.source,
            self.destination,
            self.spi,
            wireshark_encryption(self.cipher)
        );
        for byte in self.keymat.iter() {
            line.push(HEX[usize::from(byte >> 4)]);
            line.push(HEX[usize::from(byte & 0x0f)]);
        }
        line.extend_from_slice(b"\",\"NULL\",\"\"\n");
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(cipher: Cipher) -> EspSaKeys {
        EspSaKeys {
            source: Ipv4Addr::new(203, 0, 113, 90),
            destination: Ipv4Addr::new(198, 51, 100, 90),
            spi: 0x00c0_ffee,
            cipher,
            keymat: Secret::new((0..cipher.keymat_len()).map(|i| i as u8).collect()),
        }
    }

    #[test]
    fn an_aes_gcm_sa_is_a_line_of_wiresharks_esp_sa_table() {
        let line = keys(Cipher::Aes128Gcm16).esp_sa_line();
        assert_eq!(
            std::str::from_utf8(&line).unwrap(),
            "\"IPv4\",\"203.0.113.90\",\"198.51.100.90\",\"0x00c0ffee\",\"AES-GCM with 16 octet ICV [RFC4106]\",\"0x000102030405060708090a0b0c0d0e0f10111213\",\"NULL\",\"\"\n"
        );
        let line = keys(Cipher::Aes256Gcm16).esp_sa_line();
        let text = std::str::from_utf8(&line).unwrap();
        let fields: Vec<&str> = text.trim_end().split(',').collect();
        assert_eq!(fields.len(), 8, "{text}");
        assert_eq!(fields[4], "\"AES-GCM with 16 octet ICV [RFC4106]\"");
        // 32 bytes of key and 4 of salt: 288 bits, which Wireshark reads
        // as AES-256-GCM.
        assert_eq!(fields[5].len(), 2 + 2 + 2 * 36, "{}", fields[5]);
        assert!(fields[5].ends_with("20212223\""), "the salt last");
        assert_eq!(&fields[6..], ["\"NULL\"", "\"\""]);
    }

    #[test]
    fn a_chacha20_sa_names_wiresharks_rfc_7634_cipher() {
        let line = keys(Cipher::ChaCha20Poly1305).esp_sa_line();
        let text = std::str::from_utf8(&line).unwrap();
        assert!(
            text.contains(",\"ChaCha20 with Poly1305 [RFC7634]\",\"0x0001"),
            "{text}"
        );
    }

    #[test]
    fn the_line_fits_the_room_reserved_for_it() {
        let mut widest = keys(Cipher::ChaCha20Poly1305);
        widest.source = Ipv4Addr::new(255, 255, 255, 255);
        widest.destination = Ipv4Addr::new(255, 255, 255, 255);
        widest.spi = u32::MAX;
        let line = widest.esp_sa_line();
        assert!(line.len() <= LINE_ROOM + 2 * widest.keymat.len());
        assert_eq!(line.capacity(), LINE_ROOM + 2 * widest.keymat.len());
    }

    #[test]
    fn debug_leaves_the_keys_out() {
        let text = format!("{:?}", keys(Cipher::Aes128Gcm16));
        assert!(text.contains("0x00c0ffee"), "{text}");
        assert!(
            !text.contains("keymat") && !text.contains("[0, 1"),
            "{text}"
        );
    }

    #[test]
    fn the_key_files_are_named_by_gateway() {
        let dir = Path::new("/run/sdn/lab");
        assert_eq!(
            keys_path(dir, "hub-gw"),
            Path::new("/run/sdn/lab/vpn-keys-hub-gw.esp_sa")
        );
        assert_eq!(
            keys_request_path(dir),
            Path::new("/run/sdn/lab/vpn-keys-request")
        );
        assert_eq!(
            status_path(dir, "hub-gw"),
            Path::new("/run/sdn/lab/vpn-status-hub-gw.json")
        );
    }
}
