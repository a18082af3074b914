//! The validated site-to-site VPN sections (Azure's VPN gateway model):
//! on-premises sites the lab runs (a namespace on the internet running
//! strongSwan, with a LAN behind it), local network gateways (remote peers
//! it does not run) and the IPsec connections of VPN gateways to them or to
//! each other (VNet-to-VNet). Names are checked to exist and each
//! connection's prefixes resolved; a connection holds the path of its
//! pre-shared key, never the key (see `psk::read_psk`).

use ipnet::Ipv4Net;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

/// Lifetime of an IKE SA when a connection names no `ike_lifetime`
/// (Azure's default, 28 800 s).
pub const DEFAULT_IKE_LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// Lifetime of a child (ESP) SA when a connection names no
/// `child_lifetime` (strongSwan's default rekey time, 1 hour).
pub const DEFAULT_CHILD_LIFETIME: Duration = Duration::from_secs(3600);

/// Shortest IKE or child SA lifetime: 2 seconds, short enough for tests to
/// watch rekeys, long enough for an exchange to finish on a lab's links.
pub const MIN_LIFETIME: Duration = Duration::from_secs(2);

/// Longest IKE or child SA lifetime: 48 hours (Azure's maximum is
/// 172 799 s, one second less).
pub const MAX_LIFETIME: Duration = Duration::from_secs(48 * 3600);

/// Time without traffic from the peer after which dead-peer detection
/// sends a liveness check (an empty INFORMATIONAL, RFC 7296 §2.4), when a
/// connection names no `dpd_interval`.
pub const DEFAULT_DPD_INTERVAL: Duration = Duration::from_secs(10);

/// Unanswered liveness checks after which the peer is dead and its SAs
/// are torn down, when a connection names no `dpd_retries`: with the
/// default interval a dead peer is noticed after about 40 s (Azure's DPD
/// timeout is 45 s).
pub const DEFAULT_DPD_RETRIES: u32 = 3;

/// Most liveness checks a connection may wait for.
pub const MAX_DPD_RETRIES: u32 = 10;

/// An AEAD cipher a connection may offer for IKE or ESP (the ones the
/// `sdn-vpn` core implements), by strongSwan's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Aead {
    /// AES-256 in GCM with a 16-byte ICV (RFC 4106).
    Aes256Gcm16,
    /// AES-128 in GCM with a 16-byte ICV (RFC 4106).
    Aes128Gcm16,
    /// ChaCha20-Poly1305 (RFC 7634).
    ChaCha20Poly1305,
}

impl Aead {
    /// Every cipher with the name files (and strongSwan) write it with.
    pub const NAMES: [(&'static str, Aead); 3] = [
        ("aes256gcm16", Aead::Aes256Gcm16),
        ("aes128gcm16", Aead::Aes128Gcm16),
        ("chacha20poly1305", Aead::ChaCha20Poly1305),
    ];

    /// The name files (and strongSwan) write it with.
    pub fn name(self) -> &'static str {
        match self {
            Aead::Aes256Gcm16 => "aes256gcm16",
            Aead::Aes128Gcm16 => "aes128gcm16",
            Aead::ChaCha20Poly1305 => "chacha20poly1305",
        }
    }
}

/// The pseudorandom function of IKE: only HMAC-SHA-256 is spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Prf {
    /// PRF_HMAC_SHA2_256 (strongSwan's `prfsha256`).
    #[default]
    Sha256,
}

impl Prf {
    /// The name files write it with (strongSwan's is `prf` and this).
    pub fn name(self) -> &'static str {
        match self {
            Prf::Sha256 => "sha256",
        }
    }
}

/// The Diffie-Hellman group of IKE: only Curve25519 is spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DhGroup {
    /// Curve25519, IKE group 31 (RFC 8031).
    #[default]
    X25519,
}

impl DhGroup {
    /// The name files (and strongSwan) write it with.
    pub fn name(self) -> &'static str {
        match self {
            DhGroup::X25519 => "x25519",
        }
    }

    /// The IKE transform ID (RFC 7296 §3.3.2, IANA group number).
    pub fn group(self) -> u16 {
        match self {
            DhGroup::X25519 => 31,
        }
    }
}

/// What a connection offers in IKE_SA_INIT and for its child SAs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpsecPolicy {
    /// IKE ciphers in order of preference, none twice (default
    /// `[aes256gcm16]`).
    pub ike: Vec<Aead>,
    /// IKE's pseudorandom function (default `sha256`).
    pub prf: Prf,
    /// IKE's Diffie-Hellman group (default `x25519`).
    pub dh: DhGroup,
    /// ESP ciphers in order of preference, none twice (default
    /// `[aes256gcm16]`).
    pub esp: Vec<Aead>,
}

impl Default for IpsecPolicy {
    /// The policy of a connection with no `ipsec_policy`, and what each
    /// field it leaves out takes.
    fn default() -> IpsecPolicy {
        IpsecPolicy {
            ike: vec![Aead::Aes256Gcm16],
            prf: Prf::default(),
            dh: DhGroup::default(),
            esp: vec![Aead::Aes256Gcm16],
        }
    }
}

/// Which end of a connection starts IKE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Initiator {
    /// The connection's `gateway` initiates; the remote end responds (the
    /// default).
    #[default]
    Gateway,
    /// The remote end (site, local network gateway or peer gateway)
    /// initiates; the gateway waits.
    Peer,
    /// Both may initiate (a simultaneous start is resolved as RFC 7296
    /// §2.8.1 says).
    Both,
}

impl Initiator {
    /// Every choice with the name files write it with.
    pub const NAMES: [(&'static str, Initiator); 3] = [
        ("gateway", Initiator::Gateway),
        ("peer", Initiator::Peer),
        ("both", Initiator::Both),
    ];
}

/// What an on-premises site runs for IPsec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SiteIpsec {
    /// A real strongSwan (charon, configured through swanctl by `sdn up`).
    StrongSwan,
}

/// A host on a site's LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteHost {
    /// Name (its namespace is `<lab>-<name>`).
    pub name: String,
    /// Its address, inside the site's LAN, not the router's.
    pub address: Ipv4Addr,
}

/// An on-premises site: a branch office on the internet with a LAN behind
/// its router, which runs IPsec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnpremSite {
    /// Name (its router's namespace is `<lab>-<name>`).
    pub name: String,
    /// The router's public address on the internet.
    pub public_ip: Ipv4Addr,
    /// The LAN's prefix (IPv4, at most a /30).
    pub lan: Ipv4Net,
    /// The router's address on the LAN: the LAN's first host address.
    pub router: Ipv4Addr,
    /// What the router runs for IPsec.
    pub ipsec: SiteIpsec,
    /// Hosts on the LAN.
    pub hosts: Vec<SiteHost>,
}

/// A remote VPN peer the lab does not run (Azure's local network gateway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNetworkGateway {
    /// Name.
    pub name: String,
    /// Its public address.
    pub address: Ipv4Addr,
    /// The prefixes behind it (at least one, none overlapping).
    pub prefixes: Vec<Ipv4Net>,
}

/// The far end of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Remote {
    /// An on-premises site of the lab.
    Site(String),
    /// A local network gateway.
    LocalNetworkGateway(String),
    /// Another network's VPN gateway (VNet-to-VNet).
    PeerGateway(String),
}

/// An IPsec connection of a VPN gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Name.
    pub name: String,
    /// The VPN gateway (see `Routing::vpn_gateways`).
    pub gateway: String,
    /// The far end.
    pub remote: Remote,
    /// The range of the gateway's network: what the far end reaches
    /// through the tunnel.
    pub local_prefix: Ipv4Net,
    /// The prefixes behind the far end: the site's LAN, the local network
    /// gateway's prefixes or the peer gateway's network's range.
    pub remote_prefixes: Vec<Ipv4Net>,
    /// The pre-shared key's file, resolved against the topology file's
    /// directory; checked when validated and again when read.
    pub psk_file: PathBuf,
    /// What it offers.
    pub policy: IpsecPolicy,
    /// IKE SA lifetime, whole seconds from `MIN_LIFETIME` to
    /// `MAX_LIFETIME` (default `DEFAULT_IKE_LIFETIME`).
    pub ike_lifetime: Duration,
    /// Child SA lifetime, whole seconds from `MIN_LIFETIME`, below
    /// `ike_lifetime` (default `DEFAULT_CHILD_LIFETIME`).
    pub child_lifetime: Duration,
    /// Dead-peer detection interval, whole seconds above zero and below
    /// `child_lifetime` (default `DEFAULT_DPD_INTERVAL`).
    pub dpd_interval: Duration,
    /// Unanswered liveness checks before the peer is dead, 1 to
    /// `MAX_DPD_RETRIES` (default `DEFAULT_DPD_RETRIES`).
    pub dpd_retries: u32,
    /// Which end starts IKE (default `Initiator::Gateway`).
    pub initiator: Initiator,
}

/// A prefix a VPN gateway sends into one of its tunnels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelRoute {
    /// Destination prefix.
    pub prefix: Ipv4Net,
    /// The connection whose tunnel carries it.
    pub connection: String,
}

/// The VPN sections of a lab.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Vpn {
    /// On-premises sites.
    pub onprem_sites: Vec<OnpremSite>,
    /// Local network gateways.
    pub local_network_gateways: Vec<LocalNetworkGateway>,
    /// Connections.
    pub connections: Vec<Connection>,
}

impl Vpn {
    /// The site named `name`.
    pub fn site(&self, name: &str) -> Option<&OnpremSite> {
        self.onprem_sites.iter().find(|s| s.name == name)
    }

    /// The local network gateway named `name`.
    pub fn local_network_gateway(&self, name: &str) -> Option<&LocalNetworkGateway> {
        self.local_network_gateways.iter().find(|g| g.name == name)
    }

    /// The connection named `name`.
    pub fn connection(&self, name: &str) -> Option<&Connection> {
        self.connections.iter().find(|c| c.name == name)
    }

    /// The tunnel id of connection `name`: 1 + its index in `connections`.
    /// Both ends' switches (of a VNet-to-VNet connection) use the same one.
    pub fn tunnel_id(&self, name: &str) -> Option<u32> {
        let index = self.connections.iter().position(|c| c.name == name)?;
        u32::try_from(index + 1).ok()
    }

    /// The connections VPN gateway `gateway` is an end of: those it makes,
    /// and VNet-to-VNet connections that name it as their peer.
    pub fn connections_of<'v>(&'v self, gateway: &'v str) -> impl Iterator<Item = &'v Connection> {
        self.connections.iter().filter(move |c| {
            c.gateway == gateway || c.remote == Remote::PeerGateway(gateway.to_string())
        })
    }

    /// The prefixes VPN gateway `gateway` sends into its tunnels, in
    /// connection order: the remote prefixes of the connections it makes,
    /// and the gateway's network of VNet-to-VNet connections naming it as
    /// their peer. These are the `vpn_gateway` next-hop system routes of
    /// the gateway's network; validation keeps them from overlapping each
    /// other and the networks the gateway's network reaches.
    pub fn tunnel_routes(&self, gateway: &str) -> Vec<TunnelRoute> {
        self.connections_of(gateway)
            .flat_map(|c| {
                let prefixes = if c.gateway == gateway {
                    c.remote_prefixes.clone()
                } else {
                    vec![c.local_prefix]
                };
                prefixes.into_iter().map(|prefix| TunnelRoute {
                    prefix,
                    connection: c.name.clone(),
                })
            })
            .collect()
    }
}
