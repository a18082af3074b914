//! The SAs of an ESP port and what they do to one packet, sans-IO: picking
//! the outbound SA of a tunnel (the newest installed: make-before-break),
//! sealing a frame's inner packet into a send buffer, and turning one
//! received datagram into a frame, an IKE message or a counted drop.

use super::datagram::{
    Datagram, FrameError, NEXT_HEADER_IPV4, NON_ESP_MARKER, classify, inbound_inner_len,
    outbound_inner, write_ethernet_header,
};
use super::stats::{EspCounters, EspStats, SaDirection, SaStats, TunnelStats};
use crate::pipeline::{TunnelMeta, TunnelTarget};
use crate::wire::{EthernetAddress, ethernet};
use rustc_hash::FxHashMap;
use sdn_vpn::esp::{self, EspError, InboundSa, OutboundSa};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::Range;
use std::time::Instant;

/// An outbound SA and where its packets go.
struct Outbound {
    peer: SocketAddrV4,
    sa: OutboundSa,
}

/// An inbound SA and the tunnel its packets enter the pipeline from.
struct Inbound {
    tunnel_id: u32,
    sa: InboundSa,
}

/// What one received datagram became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Received {
    /// A frame of `len` bytes at `start` in the buffer: the opened inner
    /// IPv4 packet with an Ethernet header written in front of it.
    Frame {
        /// Where the frame starts.
        start: usize,
        /// Its length, Ethernet header included.
        len: usize,
        /// The tunnel it came out of.
        tunnel: TunnelMeta,
    },
    /// An IKE message (what follows the non-ESP marker) at this range.
    Ike(Range<usize>),
    /// Nothing to deliver: a keepalive, a dummy packet or a counted drop.
    Nothing,
}

/// The SAs of one ESP port with its counters. Shared between the port and
/// its handle behind one lock, taken once per batch by the port.
#[derive(Default)]
pub(super) struct SaTable {
    /// Per tunnel id, oldest first: the last one seals new packets.
    outbound: FxHashMap<u32, Vec<Outbound>>,
    /// By SPI.
    inbound: FxHashMap<u32, Inbound>,
    /// Per tunnel id.
    tunnels: FxHashMap<u32, TunnelStats>,
    /// Port-wide counters.
    pub(super) counters: EspCounters,
}

fn tunnel_entry(tunnels: &mut FxHashMap<u32, TunnelStats>, tunnel_id: u32) -> &mut TunnelStats {
    tunnels.entry(tunnel_id).or_insert(TunnelStats {
        tunnel_id,
        sealed_packets: 0,
        sealed_bytes: 0,
        opened_packets: 0,
        opened_bytes: 0,
        last_received: None,
    })
}

impl SaTable {
    /// Installs an outbound SA for `tunnel_id` sending to `peer`: new
    /// packets of the tunnel use it from now on; older SAs of the tunnel
    /// stay installed (and used again should it be removed) until removed.
    /// An SA of the tunnel with the same SPI is replaced.
    pub(super) fn install_outbound(&mut self, tunnel_id: u32, peer: SocketAddrV4, sa: OutboundSa) {
        let list = self.outbound.entry(tunnel_id).or_default();
        list.retain(|o| o.sa.spi() != sa.spi());
        list.push(Outbound { peer, sa });
        tunnel_entry(&mut self.tunnels, tunnel_id);
    }

    /// Installs an inbound SA whose packets enter from `tunnel_id`; returns
    /// the tunnel of the SA it replaced under the same SPI, if any.
    pub(super) fn install_inbound(&mut self, tunnel_id: u32, sa: InboundSa) -> Option<u32> {
        tunnel_entry(&mut self.tunnels, tunnel_id);
        self.inbound
            .insert(sa.spi(), Inbound { tunnel_id, sa })
            .map(|old| old.tunnel_id)
    }

    /// Removes the inbound SA with `spi` and every outbound SA with `spi`
    /// (two peers may pick one outbound SPI; see `remove_outbound`).
    /// Returns how many went; their keys are wiped as they drop.
    pub(super) fn remove_sa(&mut self, spi: u32) -> usize {
        let mut removed = usize::from(self.inbound.remove(&spi).is_some());
        for list in self.outbound.values_mut() {
            let before = list.len();
            list.retain(|o| o.sa.spi() != spi);
            removed += before - list.len();
        }
        self.outbound.retain(|_, list| !list.is_empty());
        removed
    }

    /// Removes the outbound SA of `tunnel_id` with `spi`; returns whether
    /// there was one.
    pub(super) fn remove_outbound(&mut self, tunnel_id: u32, spi: u32) -> bool {
        let Some(list) = self.outbound.get_mut(&tunnel_id) else {
            return false;
        };
        let before = list.len();
        list.retain(|o| o.sa.spi() != spi);
        let removed = list.len() != before;
        if list.is_empty() {
            self.outbound.remove(&tunnel_id);
        }
        removed
    }

    /// A snapshot of every counter.
    pub(super) fn stats(&self) -> EspStats {
        let mut tunnels: Vec<TunnelStats> = self.tunnels.values().copied().collect();
        tunnels.sort_by_key(|t| t.tunnel_id);
        let mut outbound: Vec<(&u32, &Vec<Outbound>)> = self.outbound.iter().collect();
        outbound.sort_by_key(|(id, _)| **id);
        let mut sas = Vec::new();
        for (&tunnel_id, list) in outbound {
            for (i, o) in list.iter().enumerate() {
                sas.push(SaStats {
                    tunnel_id,
                    spi: o.sa.spi(),
                    direction: SaDirection::Outbound,
                    peer: Some(o.peer),
                    current: i + 1 == list.len(),
                    packets: o.sa.stats.packets,
                    bytes: o.sa.stats.bytes,
                    seq: o.sa.last_seq(),
                    replayed: 0,
                    auth_failed: 0,
                    malformed: 0,
                });
            }
        }
        let mut inbound: Vec<&Inbound> = self.inbound.values().collect();
        inbound.sort_by_key(|i| i.sa.spi());
        sas.extend(inbound.into_iter().map(|i| SaStats {
            tunnel_id: i.tunnel_id,
            spi: i.sa.spi(),
            direction: SaDirection::Inbound,
            peer: None,
            current: true,
            packets: i.sa.stats.packets,
            bytes: i.sa.stats.bytes,
            seq: i.sa.highest_seq(),
            replayed: i.sa.stats.replayed,
            auth_failed: i.sa.stats.auth_failed,
            malformed: i.sa.stats.malformed,
        }));
        EspStats {
            port: self.counters,
            tunnels,
            sas,
        }
    }

    /// Seals the inner IPv4 packet of Ethernet frame `frame` for `tunnel`
    /// with the tunnel's newest outbound SA: copies it once to
    /// `slot[esp::HEADROOM..]` and seals it in place there. Returns where
    /// to send the ESP packet and its length (from `slot[0]`); `None` for a
    /// counted drop.
    pub(super) fn seal(
        &mut self,
        frame: &[u8],
        tunnel: Option<TunnelTarget>,
        slot: &mut [u8],
    ) -> Option<(SocketAddrV4, usize)> {
        let Some(target) = tunnel else {
            self.counters.untargeted += 1;
            return None;
        };
        let inner = match outbound_inner(frame) {
            Ok(inner) => inner,
            Err(FrameError::NotIpv4) => {
                self.counters.not_ipv4 += 1;
                return None;
            }
            Err(FrameError::Malformed) => {
                self.counters.bad_frames += 1;
                return None;
            }
        };
        let Some(out) = self
            .outbound
            .get_mut(&target.vni)
            .and_then(|l| l.last_mut())
        else {
            self.counters.no_sa += 1;
            return None;
        };
        let Some(room) = slot.get_mut(esp::HEADROOM..esp::HEADROOM + inner.len()) else {
            self.counters.bad_frames += 1;
            return None;
        };
        room.copy_from_slice(inner);
        match out.sa.seal_in_place(slot, inner.len(), NEXT_HEADER_IPV4) {
            Ok(len) => {
                let t = tunnel_entry(&mut self.tunnels, target.vni);
                t.sealed_packets += 1;
                t.sealed_bytes += inner.len() as u64;
                Some((out.peer, len))
            }
            Err(EspError::SequenceExhausted) => {
                self.counters.sequence_exhausted += 1;
                None
            }
            Err(_) => {
                self.counters.bad_frames += 1;
                None
            }
        }
    }

    /// Handles the datagram at `buffer[datagram]` from `src`, received at
    /// `now`: an ESP packet is opened in place and, if it holds an IPv4
    /// packet, gets an Ethernet header (to `port_mac`) written in front of
    /// the inner packet, over the ESP header and IV it no longer needs (16
    /// bytes, room for the 14 of the Ethernet header).
    pub(super) fn receive(
        &mut self,
        buffer: &mut [u8],
        datagram: Range<usize>,
        src: Ipv4Addr,
        port_mac: EthernetAddress,
        now: Instant,
    ) -> Received {
        let Some(bytes) = buffer.get_mut(datagram.clone()) else {
            self.counters.malformed += 1;
            return Received::Nothing;
        };
        match classify(bytes) {
            Datagram::Keepalive => {
                self.counters.keepalives += 1;
                Received::Nothing
            }
            Datagram::Malformed => {
                self.counters.malformed += 1;
                Received::Nothing
            }
            Datagram::Ike => Received::Ike(datagram.start + NON_ESP_MARKER.len()..datagram.end),
            Datagram::Esp => self.open(bytes, datagram.start, src, port_mac, now),
        }
    }

    /// Opens the ESP packet `packet`, which starts `at` bytes into its
    /// buffer; see `receive`.
    fn open(
        &mut self,
        packet: &mut [u8],
        at: usize,
        src: Ipv4Addr,
        port_mac: EthernetAddress,
        now: Instant,
    ) -> Received {
        let Some(spi) = esp::spi_of(packet) else {
            self.counters.malformed += 1;
            return Received::Nothing;
        };
        let Some(entry) = self.inbound.get_mut(&spi) else {
            self.counters.unknown_spi += 1;
            return Received::Nothing;
        };
        let opened = match entry.sa.open(packet) {
            Ok(opened) => opened,
            Err(EspError::Replayed(_)) => {
                self.counters.replayed += 1;
                return Received::Nothing;
            }
            Err(EspError::Authentication) => {
                self.counters.auth_failed += 1;
                return Received::Nothing;
            }
            Err(_) => {
                self.counters.malformed += 1;
                return Received::Nothing;
            }
        };
        let tunnel_id = entry.tunnel_id;
        // Authentic: the peer is alive, whatever the packet holds.
        let tunnel = tunnel_entry(&mut self.tunnels, tunnel_id);
        tunnel.last_received = Some(now);
        if opened.next_header == esp::NEXT_HEADER_DUMMY {
            self.counters.dummies += 1;
            return Received::Nothing;
        }
        let inner_len = packet
            .get(opened.inner.clone())
            .filter(|_| opened.next_header == NEXT_HEADER_IPV4)
            .and_then(inbound_inner_len);
        let Some(inner_len) = inner_len else {
            self.counters.inner_not_ipv4 += 1;
            return Received::Nothing;
        };
        // The Ethernet header goes over the last 14 bytes of the ESP header
        // and IV, which `open` has read.
        let Some(start) = opened.inner.start.checked_sub(ethernet::HEADER_LEN) else {
            self.counters.malformed += 1;
            return Received::Nothing;
        };
        let written = packet
            .get_mut(start..opened.inner.start)
            .is_some_and(|header| write_ethernet_header(header, port_mac, tunnel_id));
        if !written {
            self.counters.malformed += 1;
            return Received::Nothing;
        }
        tunnel.opened_packets += 1;
        tunnel.opened_bytes += inner_len as u64;
        Received::Frame {
            start: at + start,
            len: ethernet::HEADER_LEN + inner_len,
            tunnel: TunnelMeta {
                vni: tunnel_id,
                src,
            },
        }
    }
}

// The Ethernet header of an opened packet fits over its ESP header and IV.
const _: () = assert!(esp::HEADROOM >= ethernet::HEADER_LEN);

#[cfg(test)]
mod tests;
