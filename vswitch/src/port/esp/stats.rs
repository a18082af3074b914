//! What an ESP port counts, as a snapshot its handle hands out: per tunnel,
//! per SA and for the port as a whole.

use std::net::SocketAddrV4;
use std::time::Instant;

/// The counters of one ESP port, its tunnels and its SAs at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EspStats {
    /// Port-wide counters.
    pub port: EspCounters,
    /// Every tunnel that has had an SA, by tunnel id.
    pub tunnels: Vec<TunnelStats>,
    /// Every installed SA: outbound by tunnel id then age (oldest first),
    /// then inbound by SPI.
    pub sas: Vec<SaStats>,
}

impl EspStats {
    /// The counters of tunnel `tunnel_id`, if it has had an SA.
    pub fn tunnel(&self, tunnel_id: u32) -> Option<&TunnelStats> {
        self.tunnels.iter().find(|t| t.tunnel_id == tunnel_id)
    }

    /// The installed SA with `spi` in `direction`, if any (the first, should
    /// two peers have picked one outbound SPI).
    pub fn sa(&self, spi: u32, direction: SaDirection) -> Option<&SaStats> {
        self.sas
            .iter()
            .find(|s| s.spi == spi && s.direction == direction)
    }
}

/// Port-wide counters. Every drop is counted in exactly one of them (and
/// replay and authentication drops in their SA's counters too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EspCounters {
    /// Frames to send whose tunnel has no outbound SA.
    pub no_sa: u64,
    /// Frames flooded to the port without a tunnel target (broadcasts of
    /// the switch's own segments): not for any tunnel, discarded, and not
    /// counted as drops.
    pub untargeted: u64,
    /// Frames to send that are not IPv4 (another EtherType, a VLAN tag).
    pub not_ipv4: u64,
    /// Frames to send that do not hold a whole IPv4 packet.
    pub bad_frames: u64,
    /// Frames not sent because their SA used up its sequence numbers (it
    /// should have been rekeyed).
    pub sequence_exhausted: u64,
    /// Sealed packets the kernel refused to send.
    pub send_refused: u64,
    /// ESP packets whose SPI no inbound SA has.
    pub unknown_spi: u64,
    /// Datagrams too short for what they claim to be, truncated, or ESP
    /// packets that authenticated with a bad trailer.
    pub malformed: u64,
    /// ESP packets refused by their SA's anti-replay window.
    pub replayed: u64,
    /// ESP packets whose ICV did not verify.
    pub auth_failed: u64,
    /// ESP packets that opened to something other than an IPv4 packet.
    pub inner_not_ipv4: u64,
    /// Dummy packets (next header 59, RFC 4303 §2.6), dropped as they
    /// should be.
    pub dummies: u64,
    /// IKE messages handed to the IKE receiver.
    pub ike_queued: u64,
    /// IKE messages dropped because the IKE receiver's queue was full (or
    /// it was gone).
    pub ike_dropped: u64,
    /// NAT keepalives received (and ignored).
    pub keepalives: u64,
}

impl EspCounters {
    /// Packets dropped in either direction: everything above but untargeted
    /// frames and dummy packets (discarded by design), keepalives and IKE
    /// messages.
    pub fn dropped(&self) -> u64 {
        self.no_sa
            + self.not_ipv4
            + self.bad_frames
            + self.sequence_exhausted
            + self.send_refused
            + self.unknown_spi
            + self.malformed
            + self.replayed
            + self.auth_failed
            + self.inner_not_ipv4
    }
}

/// The counters of one tunnel (one connection's child SAs together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelStats {
    /// The tunnel id.
    pub tunnel_id: u32,
    /// Packets sealed for it (handed to the kernel unless it refused).
    pub sealed_packets: u64,
    /// Bytes of inner IPv4 packets sealed.
    pub sealed_bytes: u64,
    /// Packets opened from its SAs and delivered.
    pub opened_packets: u64,
    /// Bytes of inner IPv4 packets delivered.
    pub opened_bytes: u64,
    /// When the last authentic ESP packet of the tunnel arrived (dead peer
    /// detection: traffic proves liveness). Taken once per received batch.
    pub last_received: Option<Instant>,
}

/// Which way an SA carries packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaDirection {
    /// Sealing packets for the peer.
    Outbound,
    /// Opening the peer's packets.
    Inbound,
}

/// The counters of one installed SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaStats {
    /// The tunnel it belongs to.
    pub tunnel_id: u32,
    /// Its SPI.
    pub spi: u32,
    /// Its direction.
    pub direction: SaDirection,
    /// Outbound: where its packets go.
    pub peer: Option<SocketAddrV4>,
    /// Outbound: whether new packets of the tunnel use it (the newest
    /// installed). Inbound: always true.
    pub current: bool,
    /// Packets sealed or opened.
    pub packets: u64,
    /// Bytes of inner packets sealed or opened.
    pub bytes: u64,
    /// Outbound: the last sequence number used; inbound: the highest
    /// authenticated.
    pub seq: u32,
    /// Inbound: packets refused by the anti-replay window.
    pub replayed: u64,
    /// Inbound: packets whose ICV did not verify.
    pub auth_failed: u64,
    /// Inbound: packets too short or with a bad trailer.
    pub malformed: u64,
}
