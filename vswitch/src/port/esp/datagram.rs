//! The sans-IO rules of ESP in UDP (RFC 3948) for the ESP port: telling
//! IKE, NAT keepalives and ESP apart, the inner MTU a link leaves, taking
//! the inner IPv4 packet out of a frame to send and checking the one a
//! packet opened to, and the Ethernet header a received packet gets.

use crate::wire::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr, Ipv4Packet, ethernet};
use sdn_vpn::esp;

/// The UDP port of ESP and IKE behind a NAT (RFC 3948 §2, RFC 7296 §2.23).
pub const ESP_UDP_PORT: u16 = 4500;

/// The non-ESP marker: four zero bytes where an ESP packet has its SPI
/// (RFC 3948 §2.2; SPI 0 is reserved, RFC 4303 §2.1).
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// A NAT keepalive: one byte, 0xFF (RFC 3948 §2.3).
pub const NAT_KEEPALIVE: u8 = 0xff;

/// The fixed IKE header (RFC 7296 §3.1); a marked datagram carrying less is
/// no IKE message.
pub const IKE_HEADER_LEN: usize = 28;

/// The next header of a tunnel-mode packet whose inner packet is IPv4
/// (IANA protocol 4, "IPv4 encapsulation").
pub const NEXT_HEADER_IPV4: u8 = 4;

/// Outer IPv4 header without options.
pub const OUTER_IPV4_LEN: usize = 20;

/// Outer UDP header.
pub const OUTER_UDP_LEN: usize = 8;

/// What a datagram received on UDP port 4500 is (RFC 3948 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram {
    /// An IKE message behind the non-ESP marker: the message starts at byte 4.
    Ike,
    /// A NAT keepalive, to ignore.
    Keepalive,
    /// An ESP packet: SPI, sequence number, IV, ciphertext, ICV.
    Esp,
    /// Too short to be any of them (or a marked datagram with less than an
    /// IKE header behind the marker).
    Malformed,
}

/// Classifies a datagram received on UDP port 4500.
pub fn classify(datagram: &[u8]) -> Datagram {
    match datagram {
        [NAT_KEEPALIVE] => Datagram::Keepalive,
        [a, b, c, d, message @ ..] if [*a, *b, *c, *d] == NON_ESP_MARKER => {
            if message.len() >= IKE_HEADER_LEN {
                Datagram::Ike
            } else {
                Datagram::Malformed
            }
        }
        // The shortest ESP packet: header, IV, trailer and ICV.
        _ if datagram.len() >= esp::HEADROOM + esp::TRAILER_LEN + esp::ICV_LEN => Datagram::Esp,
        _ => Datagram::Malformed,
    }
}

/// The largest inner IPv4 packet (bytes, from its IPv4 header on) that an
/// ESP port carries in one outer packet on a link of MTU `link_mtu`:
///
/// ```text
/// link_mtu = outer IPv4 (20) + UDP (8) + ESP header (8) + IV (8)
///          + inner + padding + pad length (1) + next header (1) + ICV (16)
/// ```
///
/// where `inner + padding + 2` is a multiple of 4 (RFC 4303 §2.4). So the
/// room left after the 60 fixed bytes is rounded down to a multiple of 4,
/// less the 2 trailer bytes: 1438 for a link MTU of 1500, 8938 for 9000.
/// 0 when the link is too small to carry anything.
pub fn inner_mtu(link_mtu: u32) -> u32 {
    let fixed = OUTER_IPV4_LEN + OUTER_UDP_LEN + esp::HEADROOM + esp::ICV_LEN;
    let room = (link_mtu as usize).saturating_sub(fixed) / 4 * 4;
    let inner = room.saturating_sub(esp::TRAILER_LEN);
    u32::try_from(inner).unwrap_or(u32::MAX)
}

/// The Ethernet source address of frames out of tunnel `tunnel_id`: locally
/// administered and unicast (first byte 0x02), then 0xe5, then the tunnel
/// id, so that learning and captures tell the tunnels apart.
pub fn tunnel_mac(tunnel_id: u32) -> EthernetAddress {
    let [a, b, c, d] = tunnel_id.to_be_bytes();
    EthernetAddress([0x02, 0xe5, a, b, c, d])
}

/// Writes the Ethernet header of a frame out of tunnel `tunnel_id` into the
/// front of `header` (at least 14 bytes; shorter buffers are left alone and
/// `false` returned): destination `port_mac`, source `tunnel_mac`, IPv4.
pub fn write_ethernet_header(header: &mut [u8], port_mac: EthernetAddress, tunnel_id: u32) -> bool {
    let Ok(mut frame) = EthernetFrame::new_checked(header) else {
        return false;
    };
    EthernetRepr {
        src_addr: tunnel_mac(tunnel_id),
        dst_addr: port_mac,
        ethertype: EtherType::Ipv4,
    }
    .emit(&mut frame);
    true
}

/// Why a frame handed to the ESP port is not sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Not an IPv4 frame (another EtherType, or a VLAN tag): ESP here
    /// carries IPv4 only.
    NotIpv4,
    /// An IPv4 frame that does not hold a whole IPv4 packet.
    Malformed,
}

/// The inner IPv4 packet of an Ethernet frame to send: the bytes after the
/// Ethernet header up to the IPv4 total length (Ethernet padding of short
/// frames is not carried).
pub fn outbound_inner(frame: &[u8]) -> Result<&[u8], FrameError> {
    let frame = EthernetFrame::new_checked(frame).map_err(|_| FrameError::Malformed)?;
    if frame.ethertype() != EtherType::Ipv4 {
        return Err(FrameError::NotIpv4);
    }
    let payload = &frame.into_inner()[ethernet::HEADER_LEN..];
    let len = Ipv4Packet::new_checked(payload)
        .map_err(|_| FrameError::Malformed)?
        .total_len();
    payload.get(..len).ok_or(FrameError::Malformed)
}

/// The length of the IPv4 packet at the front of what an ESP packet opened
/// to (`inner`), if it is one: tunnel mode may add TFC padding behind it
/// (RFC 4303 §2.7), which is cut off.
pub fn inbound_inner_len(inner: &[u8]) -> Option<usize> {
    let len = Ipv4Packet::new_checked(inner).ok()?.total_len();
    (len <= inner.len()).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FrameBuilder;

    #[test]
    fn datagrams_are_told_apart_by_rfc_3948() {
        assert_eq!(classify(&[0xff]), Datagram::Keepalive);
        let mut ike = vec![0, 0, 0, 0];
        ike.extend_from_slice(&[7u8; IKE_HEADER_LEN]);
        assert_eq!(classify(&ike), Datagram::Ike);
        assert_eq!(
            classify(&ike[..4 + IKE_HEADER_LEN - 1]),
            Datagram::Malformed,
            "a marker with less than an IKE header"
        );
        assert_eq!(classify(&[0, 0, 0, 0]), Datagram::Malformed);
        let shortest = esp::HEADROOM + esp::TRAILER_LEN + esp::ICV_LEN;
        let mut packet = vec![0xc0u8; shortest];
        assert_eq!(classify(&packet), Datagram::Esp);
        packet.pop();
        assert_eq!(classify(&packet), Datagram::Malformed, "too short for ESP");
        for short in [&[][..], &[0xfe], &[0xff, 0xff], &[1, 2, 3]] {
            assert_eq!(classify(short), Datagram::Malformed, "{short:?}");
        }
        // A keepalive byte at the front of a longer datagram is ESP (SPI 0xff..).
        let mut esp_ff = vec![0xffu8; shortest];
        esp_ff[1] = 0;
        assert_eq!(classify(&esp_ff), Datagram::Esp);
    }

    #[test]
    fn the_inner_mtu_leaves_room_for_every_outer_header() {
        assert_eq!(inner_mtu(1500), 1438);
        assert_eq!(inner_mtu(9000), 8938);
        assert_eq!(inner_mtu(0), 0);
        assert_eq!(inner_mtu(61), 0);
        for link in 64..2000u32 {
            let inner = inner_mtu(link) as usize;
            let outer = OUTER_IPV4_LEN + OUTER_UDP_LEN + esp::sealed_len(inner).unwrap();
            assert!(outer <= link as usize, "{link}: {inner} fits");
            let bigger = OUTER_IPV4_LEN + OUTER_UDP_LEN + esp::sealed_len(inner + 1).unwrap();
            assert!(bigger > link as usize, "{link}: {inner} is the largest");
        }
    }

    #[test]
    fn received_frames_get_a_tunnel_source_and_the_port_as_destination() {
        let port = EthernetAddress([0x02, 0, 0, 0, 0, 0x10]);
        let mut header = [0u8; 14];
        assert!(write_ethernet_header(&mut header, port, 0x0102_0304));
        let frame = EthernetFrame::new_checked(&header[..]).unwrap();
        assert_eq!(frame.dst_addr(), port);
        assert_eq!(frame.src_addr(), EthernetAddress([2, 0xe5, 1, 2, 3, 4]));
        assert_eq!(frame.ethertype(), EtherType::Ipv4);
        let mac = tunnel_mac(7);
        assert_eq!(mac.0[0] & 0x03, 0x02, "locally administered unicast");
        assert_ne!(tunnel_mac(7), tunnel_mac(8));
        assert!(!write_ethernet_header(&mut [0u8; 13], port, 1));
    }

    #[test]
    fn only_whole_ipv4_packets_leave_and_ethernet_padding_stays_behind() {
        let frame = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"hi").build();
        let inner = outbound_inner(&frame).unwrap();
        assert_eq!(inner, &frame[14..]);
        let mut padded = frame.clone();
        padded.resize(60, 0);
        assert_eq!(
            outbound_inner(&padded).unwrap(),
            &frame[14..],
            "padding cut"
        );
        let v6 = FrameBuilder::tcp6("[fd00::1]:1", "[fd00::2]:2", b"x").build();
        assert_eq!(outbound_inner(&v6), Err(FrameError::NotIpv4));
        let arp =
            FrameBuilder::arp_request(crate::testutil::mac(1), "10.0.0.1", "10.0.0.2").build();
        assert_eq!(outbound_inner(&arp), Err(FrameError::NotIpv4));
        let tagged = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"hi")
            .vlan(5, 0)
            .build();
        assert_eq!(outbound_inner(&tagged), Err(FrameError::NotIpv4));
        assert_eq!(outbound_inner(&frame[..13]), Err(FrameError::Malformed));
        assert_eq!(
            outbound_inner(&frame[..frame.len() - 1]),
            Err(FrameError::Malformed)
        );
        let mut v5 = frame.clone();
        v5[14] = 0x55;
        assert_eq!(outbound_inner(&v5), Err(FrameError::Malformed));
    }

    #[test]
    fn an_opened_packet_must_be_ipv4_and_loses_its_tfc_padding() {
        let frame = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"hello").build();
        let ip = &frame[14..];
        assert_eq!(inbound_inner_len(ip), Some(ip.len()));
        let mut padded = ip.to_vec();
        padded.extend_from_slice(&[0; 9]);
        assert_eq!(inbound_inner_len(&padded), Some(ip.len()));
        assert_eq!(inbound_inner_len(&ip[..ip.len() - 1]), None);
        assert_eq!(inbound_inner_len(&ip[..10]), None);
        assert_eq!(inbound_inner_len(&[0x60; 40]), None, "IPv6 is not carried");
        assert_eq!(inbound_inner_len(&[]), None);
    }

    #[test]
    fn no_input_panics() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect();
            let _ = classify(&bytes);
            let _ = outbound_inner(&bytes);
            let _ = inbound_inner_len(&bytes);
        }
    }
}
