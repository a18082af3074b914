//! What a session hands out: datagrams to send, events for the switch (SAs
//! to install, to send on and to remove; the IKE SA's lifecycle), its
//! counters and its phase.

use crate::esp::{Cipher, EspError, InboundSa, OutboundSa};
use crate::ike::keys::Secret;
use crate::ike::message::TrafficSelector;
use std::net::SocketAddrV4;

/// IKE's port.
pub const IKE_PORT: u16 = 500;
/// IKE and ESP in UDP once a NAT is detected (RFC 3948, RFC 7296 §2.23).
pub const NAT_T_PORT: u16 = 4500;
/// What precedes an IKE message on port 4500, telling it from ESP.
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// A UDP datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub destination: SocketAddrV4,
    /// Our port to send from: [`IKE_PORT`] or [`NAT_T_PORT`].
    pub source_port: u16,
    /// The UDP payload as it goes on the wire: from [`NAT_T_PORT`] it
    /// begins with [`NON_ESP_MARKER`], from [`IKE_PORT`] it is the bare IKE
    /// message.
    pub payload: Vec<u8>,
}

impl Transmit {
    /// The IKE message `message` to `destination` from `source_port`, with
    /// the marker when that port is [`NAT_T_PORT`].
    pub(crate) fn ike(destination: SocketAddrV4, source_port: u16, message: &[u8]) -> Transmit {
        let mut payload = Vec::with_capacity(message.len() + NON_ESP_MARKER.len());
        if source_port == NAT_T_PORT {
            payload.extend_from_slice(&NON_ESP_MARKER);
        }
        payload.extend_from_slice(message);
        Transmit {
            destination,
            source_port,
            payload,
        }
    }

    /// The IKE message, without the marker.
    pub fn message(&self) -> &[u8] {
        if self.source_port == NAT_T_PORT {
            self.payload.get(NON_ESP_MARKER.len()..).unwrap_or_default()
        } else {
            &self.payload
        }
    }
}

/// A child SA's two directions, as the switch installs them.
pub struct ChildSaKeys {
    /// The cipher of both directions.
    pub cipher: Cipher,
    /// The SPI we receive under.
    pub inbound_spi: u32,
    /// The SPI the peer receives under (ours to send with).
    pub outbound_spi: u32,
    /// Keying material of the inbound SA (key, then salt).
    pub inbound_keymat: Secret,
    /// Keying material of the outbound SA.
    pub outbound_keymat: Secret,
    /// Our side's traffic.
    pub local_ts: Vec<TrafficSelector>,
    /// The peer's side's traffic.
    pub remote_ts: Vec<TrafficSelector>,
    /// Whether ESP travels in UDP (a NAT was detected): then to `peer`
    /// from our [`NAT_T_PORT`], else as IP protocol 50 to `peer`'s address.
    pub udp_encapsulated: bool,
    /// The peer's address (and port, for ESP in UDP).
    pub peer: SocketAddrV4,
}

impl std::fmt::Debug for ChildSaKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSaKeys")
            .field("cipher", &self.cipher)
            .field("inbound_spi", &format_args!("{:#010x}", self.inbound_spi))
            .field("outbound_spi", &format_args!("{:#010x}", self.outbound_spi))
            .field("local_ts", &self.local_ts)
            .field("remote_ts", &self.remote_ts)
            .field("udp_encapsulated", &self.udp_encapsulated)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl ChildSaKeys {
    /// The inbound SA.
    ///
    /// # Errors
    /// [`EspError::KeyLength`], which a session's keys never give.
    pub fn inbound_sa(&self) -> Result<InboundSa, EspError> {
        InboundSa::new(self.cipher, self.inbound_spi, &self.inbound_keymat)
    }

    /// The outbound SA.
    ///
    /// # Errors
    /// [`EspError::KeyLength`], which a session's keys never give.
    pub fn outbound_sa(&self) -> Result<OutboundSa, EspError> {
        OutboundSa::new(self.cipher, self.outbound_spi, &self.outbound_keymat)
    }
}

/// Why the connection is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    /// A request went unanswered through its last retransmission.
    PeerDead,
    /// An AUTH did not verify (another pre-shared key or identity), ours
    /// at the peer or the peer's here.
    AuthFailed,
    /// The peer deleted the IKE SA, or its last child SA.
    PeerDeleted,
    /// No proposal of one side was acceptable to the other.
    NoProposalChosen,
    /// The peer refused with another error notify (e.g. 38,
    /// TS_UNACCEPTABLE).
    Refused(u16),
    /// An SA's lifetime ran out before it was rekeyed.
    Expired,
    /// The peer established a new IKE SA, which replaces this one.
    Replaced,
    /// [`super::Session::close`] was called.
    Closed,
}

/// What the session tells its owner.
#[derive(Debug)]
pub enum Event {
    /// An IKE SA is up (after IKE_AUTH).
    IkeEstablished {
        /// The initiator's SPI.
        spi_i: u64,
        /// The responder's SPI.
        spi_r: u64,
        /// Whether we initiated it.
        initiator: bool,
        /// Whether a NAT was detected (IKE and ESP on UDP 4500).
        nat: bool,
    },
    /// The IKE SA was replaced by a rekeyed one (children carry over).
    IkeRekeyed {
        /// The new SA's initiator SPI.
        spi_i: u64,
        /// The new SA's responder SPI.
        spi_r: u64,
    },
    /// The connection is down: an established IKE SA ended, or an attempt
    /// failed for a reason other than silence (an initiator's unanswered
    /// attempts are only counted). Every child SA was removed before.
    IkeDown {
        /// Why.
        reason: DownReason,
    },
    /// Install this child SA's inbound and outbound SAs. Packets on its
    /// inbound SPI are accepted from now on; send on its outbound SA only
    /// once [`Event::ChildSaSending`] names it.
    ChildSaInstalled(ChildSaKeys),
    /// Send through this child SA's outbound SA from now on (instead of
    /// the one before, whose inbound side stays until removed).
    ChildSaSending {
        /// Its inbound SPI.
        inbound_spi: u32,
        /// Its outbound SPI.
        outbound_spi: u32,
    },
    /// Remove this child SA, both directions.
    ChildSaRemoved {
        /// Its inbound SPI.
        inbound_spi: u32,
        /// Its outbound SPI.
        outbound_spi: u32,
    },
}

/// Counters of a session.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Requests of ours sent again on their deadline.
    pub retransmissions: u64,
    /// Repeated requests of the peer's answered from the cache.
    pub responses_resent: u64,
    /// IKE_SA_INIT exchanges started as initiator.
    pub attempts: u64,
    /// IKE SAs established (by either side's initiation).
    pub established: u64,
    /// Child SAs rekeyed (by either side).
    pub child_rekeys: u64,
    /// IKE SAs rekeyed (by either side).
    pub ike_rekeys: u64,
    /// Rekeys that crossed one of the peer's (RFC 7296 §2.8.1).
    pub rekey_collisions: u64,
    /// Liveness checks sent.
    pub liveness_checks: u64,
    /// Times the peer was declared dead.
    pub peer_dead: u64,
    /// Cookies demanded of IKE_SA_INIT requests.
    pub cookies_demanded: u64,
    /// Datagrams that are not IKE messages or do not parse.
    pub malformed: u64,
    /// Messages of an IKE SA whose encrypted payload did not open.
    pub unauthenticated: u64,
    /// Messages for no SA of ours, stale requests and responses to nothing
    /// outstanding.
    pub unexpected: u64,
}

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No IKE SA, none being made by us (a responder waits; an initiator
    /// waits for its next attempt).
    Idle,
    /// Our IKE_SA_INIT or IKE_AUTH is under way.
    Connecting,
    /// An IKE SA is up.
    Established,
    /// Closed: nothing is started or accepted until `connect`.
    Closed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_from_port_4500_carries_the_marker() {
        let at: SocketAddrV4 = "192.0.2.2:4500".parse().unwrap();
        let floated = Transmit::ike(at, NAT_T_PORT, &[1, 2, 3]);
        assert_eq!(floated.payload, [0, 0, 0, 0, 1, 2, 3]);
        assert_eq!(floated.message(), [1, 2, 3]);
        let plain = Transmit::ike(at, IKE_PORT, &[1, 2, 3]);
        assert_eq!(plain.payload, [1, 2, 3]);
        assert_eq!(plain.message(), [1, 2, 3]);
    }
}
