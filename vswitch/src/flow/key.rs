//! `FlowKey`: every header field a flow entry can match, extracted from a frame
//! into a fixed array of words so that masking and hashing are a few word
//! operations (the classifier and the microflow cache both key on it).

use crate::wire::{
    ArpPacket, EtherType, EthernetAddress, EthernetFrame, IcmpPacket, IpProtocol, Ipv4Packet,
    Ipv6Packet, TcpSegment, UdpDatagram, VlanHeader, ethernet, vlan,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Number of 64-bit words in a key.
pub const KEY_WORDS: usize = 10;

/// A port number of the switch (1 and above; 0 means "none").
pub type PortNo = u32;

/// Header fields of a frame, packed into words. Layout:
/// - word 0: in_port (32) | eth_type (16) | vlan_tci (16)
/// - word 1: eth_dst (48) | ip_proto (8) | ip_tos (8)
/// - word 2: eth_src (48) | tp_src (16)
/// - word 3: tp_dst (16) | reserved (16) | recirc (8) | ct_zone (16) | ct_state (8)
/// - words 4-5: ip_src (IPv4 in the low 32 bits of word 5)
/// - words 6-7: ip_dst (IPv4 in the low 32 bits of word 7)
/// - word 8: tunnel_id
/// - word 9: metadata (32, high) | tunnel_src (IPv4 of the remote tunnel endpoint, low 32)
///
/// For ARP, ip_src/ip_dst hold the sender/target protocol addresses and
/// ip_proto the low byte of the operation; for ICMP, tp_src/tp_dst hold the
/// type and code (as Open vSwitch does). `vlan_tci` is 0 for an untagged frame,
/// else `0x1000 | pcp << 13 | vid`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    /// The packed words.
    pub words: [u64; KEY_WORDS],
}

/// Flag in `vlan_tci` that says a tag is present.
pub const VLAN_PRESENT: u16 = 0x1000;

macro_rules! key_field {
    ($get:ident, $set:ident, $ty:ty, $word:expr, $shift:expr, $bits:expr, $doc:literal) => {
        #[doc = $doc]
        pub fn $get(&self) -> $ty {
            ((self.words[$word] >> $shift) & ((1u64 << $bits) - 1)) as $ty
        }

        #[doc = concat!("Sets: ", $doc)]
        pub fn $set(&mut self, value: $ty) {
            let mask = ((1u64 << $bits) - 1) << $shift;
            self.words[$word] = (self.words[$word] & !mask) | ((u64::from(value) << $shift) & mask);
        }
    };
}

impl FlowKey {
    key_field!(in_port, set_in_port, u32, 0, 32, 32, "Input port.");
    key_field!(
        eth_type,
        set_eth_type,
        u16,
        0,
        16,
        16,
        "EtherType (inner, after any VLAN tag)."
    );
    key_field!(
        vlan_tci,
        set_vlan_tci,
        u16,
        0,
        0,
        16,
        "VLAN tag: 0 if none, else `0x1000 | pcp << 13 | vid`."
    );
    key_field!(
        ip_proto,
        set_ip_proto,
        u8,
        1,
        8,
        8,
        "IP protocol (ARP: low byte of the operation)."
    );
    key_field!(
        ip_tos,
        set_ip_tos,
        u8,
        1,
        0,
        8,
        "IPv4 TOS / IPv6 traffic class."
    );
    key_field!(
        tp_src,
        set_tp_src,
        u16,
        2,
        0,
        16,
        "L4 source port (ICMP: type)."
    );
    key_field!(
        tp_dst,
        set_tp_dst,
        u16,
        3,
        48,
        16,
        "L4 destination port (ICMP: code)."
    );

    key_field!(
        ct_state,
        set_ct_state,
        u8,
        3,
        0,
        8,
        "Connection tracking state bits (0 before any `ct` action)."
    );
    key_field!(
        ct_zone,
        set_ct_zone,
        u16,
        3,
        8,
        16,
        "Zone of the last `ct` action."
    );
    key_field!(
        recirc,
        set_recirc,
        u8,
        3,
        24,
        8,
        "Table a frame re-enters after a `ct` action (0 on arrival), so that cached paths of each pass stay apart."
    );

    /// Destination Ethernet address.
    pub fn eth_dst(&self) -> EthernetAddress {
        EthernetAddress::from_u64(self.words[1] >> 16)
    }

    /// Sets the destination Ethernet address.
    pub fn set_eth_dst(&mut self, addr: EthernetAddress) {
        self.words[1] = (self.words[1] & 0xffff) | (addr.to_u64() << 16);
    }

    /// Source Ethernet address.
    pub fn eth_src(&self) -> EthernetAddress {
        EthernetAddress::from_u64(self.words[2] >> 16)
    }

    /// Sets the source Ethernet address.
    pub fn set_eth_src(&mut self, addr: EthernetAddress) {
        self.words[2] = (self.words[2] & 0xffff) | (addr.to_u64() << 16);
    }

    /// Source IP (or ARP sender) address as 128 bits (IPv4 in the low 32).
    pub fn ip_src_bits(&self) -> u128 {
        (u128::from(self.words[4]) << 64) | u128::from(self.words[5])
    }

    /// Destination IP (or ARP target) address as 128 bits.
    pub fn ip_dst_bits(&self) -> u128 {
        (u128::from(self.words[6]) << 64) | u128::from(self.words[7])
    }

    /// Sets the source address bits.
    pub fn set_ip_src_bits(&mut self, bits: u128) {
        self.words[4] = (bits >> 64) as u64;
        self.words[5] = bits as u64;
    }

    /// Sets the destination address bits.
    pub fn set_ip_dst_bits(&mut self, bits: u128) {
        self.words[6] = (bits >> 64) as u64;
        self.words[7] = bits as u64;
    }

    /// Tunnel id (VNI) of the frame, 0 if it did not arrive from a tunnel.
    pub fn tunnel_id(&self) -> u64 {
        self.words[8]
    }

    /// Sets the tunnel id.
    pub fn set_tunnel_id(&mut self, id: u64) {
        self.words[8] = id;
    }

    /// The remote tunnel endpoint the frame came from (0.0.0.0 if none).
    pub fn tunnel_src(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.words[9] as u32)
    }

    /// Sets the remote tunnel endpoint.
    pub fn set_tunnel_src(&mut self, addr: Ipv4Addr) {
        self.words[9] = (self.words[9] & !0xffff_ffff) | u64::from(u32::from(addr));
    }

    /// Metadata: 32 bits the tables write (`write_metadata`) and match, 0 on
    /// arrival; it stays with the frame through every pass.
    pub fn metadata(&self) -> u32 {
        (self.words[9] >> 32) as u32
    }

    /// Sets the metadata.
    pub fn set_metadata(&mut self, value: u32) {
        self.words[9] = (self.words[9] & 0xffff_ffff) | (u64::from(value) << 32);
    }

    /// Source address as an `IpAddr`, read according to `eth_type`.
    pub fn ip_src(&self) -> Option<IpAddr> {
        ip_from_bits(self.eth_type(), self.ip_src_bits())
    }

    /// Destination address as an `IpAddr`, read according to `eth_type`.
    pub fn ip_dst(&self) -> Option<IpAddr> {
        ip_from_bits(self.eth_type(), self.ip_dst_bits())
    }

    /// `self & mask`, word by word.
    #[inline]
    pub fn masked(&self, mask: &FlowKey) -> FlowKey {
        let mut out = FlowKey::default();
        for ((o, v), m) in out.words.iter_mut().zip(&self.words).zip(&mask.words) {
            *o = v & m;
        }
        out
    }
}

impl std::fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowKey")
            .field("in_port", &self.in_port())
            .field("eth_src", &self.eth_src())
            .field("eth_dst", &self.eth_dst())
            .field("eth_type", &format_args!("{:#06x}", self.eth_type()))
            .field("vlan_tci", &format_args!("{:#06x}", self.vlan_tci()))
            .field("ip_src", &self.ip_src())
            .field("ip_dst", &self.ip_dst())
            .field("ip_proto", &self.ip_proto())
            .field("tp_src", &self.tp_src())
            .field("tp_dst", &self.tp_dst())
            .field("tunnel_id", &self.tunnel_id())
            .field("tunnel_src", &self.tunnel_src())
            .field("ct_state", &self.ct_state())
            .field("ct_zone", &self.ct_zone())
            .field("metadata", &format_args!("{:#x}", self.metadata()))
            .finish()
    }
}

fn ip_from_bits(eth_type: u16, bits: u128) -> Option<IpAddr> {
    match eth_type {
        0x0800 | 0x0806 => Some(IpAddr::V4(Ipv4Addr::from(bits as u32))),
        0x86dd => Some(IpAddr::V6(Ipv6Addr::from(bits))),
        _ => None,
    }
}

/// Where the layers of a frame start, for actions that rewrite fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Layout {
    /// Offset of the IP (or ARP) header; 0 if none.
    pub l3: u16,
    /// Offset of the TCP/UDP/ICMP header; 0 if none.
    pub l4: u16,
}

/// A key with the layout of the frame it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extracted {
    /// The key.
    pub key: FlowKey,
    /// Layer offsets.
    pub layout: Layout,
}

impl FlowKey {
    /// Extracts the key of `frame` received on `in_port`. Never fails: what
    /// cannot be parsed is left zero (a truncated IP header gives an L2-only
    /// key), and `None` is returned only for a frame shorter than an Ethernet
    /// header.
    pub fn extract(frame: &[u8], in_port: PortNo) -> Option<Extracted> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        let mut key = FlowKey::default();
        let mut layout = Layout::default();
        key.set_in_port(in_port);
        key.set_eth_src(eth.src_addr());
        key.set_eth_dst(eth.dst_addr());
        let mut ethertype = eth.ethertype();
        let mut offset = ethernet::HEADER_LEN;
        // The outer tag, 802.1Q or 802.1ad, is the frame's VLAN (as pop_vlan
        // and the tag checks of the actions see it).
        if matches!(ethertype, EtherType::Vlan | EtherType::QinQ) {
            let Ok(tag) = VlanHeader::new_checked(eth.payload()) else {
                key.set_eth_type(ethertype.into());
                return Some(Extracted { key, layout });
            };
            key.set_vlan_tci(VLAN_PRESENT | (u16::from(tag.pcp()) << 13) | tag.vid());
            ethertype = tag.ethertype();
            offset += vlan::HEADER_LEN;
        }
        key.set_eth_type(ethertype.into());
        let l3 = &frame[offset..];
        match ethertype {
            EtherType::Ipv4 => {
                if let Ok(ip) = Ipv4Packet::new_checked(l3) {
                    layout.l3 = offset as u16;
                    key.set_ip_src_bits(u128::from(u32::from(ip.src_addr())));
                    key.set_ip_dst_bits(u128::from(u32::from(ip.dst_addr())));
                    key.set_ip_proto(ip.protocol().into());
                    key.set_ip_tos(ip.dscp_ecn());
                    if !ip.is_later_fragment() {
                        let l4_offset = offset + ip.header_len();
                        if extract_l4(&mut key, ip.protocol(), ip.payload()) {
                            layout.l4 = l4_offset as u16;
                        }
                    }
                }
            }
            EtherType::Ipv6 => {
                if let Ok(ip) = Ipv6Packet::new_checked(l3) {
                    layout.l3 = offset as u16;
                    key.set_ip_src_bits(u128::from(ip.src_addr()));
                    key.set_ip_dst_bits(u128::from(ip.dst_addr()));
                    key.set_ip_proto(ip.next_header().into());
                    key.set_ip_tos(ip.traffic_class());
                    let l4_offset = offset + crate::wire::ipv6::HEADER_LEN;
                    if extract_l4(&mut key, ip.next_header(), ip.payload()) {
                        layout.l4 = l4_offset as u16;
                    }
                }
            }
            EtherType::Arp => {
                if let Ok(arp) = ArpPacket::new_checked(l3) {
                    layout.l3 = offset as u16;
                    key.set_ip_src_bits(u128::from(u32::from(arp.sender_protocol_addr())));
                    key.set_ip_dst_bits(u128::from(u32::from(arp.target_protocol_addr())));
                    key.set_ip_proto(u16::from(arp.operation()) as u8);
                }
            }
            _ => {}
        }
        Some(Extracted { key, layout })
    }
}

/// Fills the L4 fields; returns whether an L4 header was read.
fn extract_l4(key: &mut FlowKey, protocol: IpProtocol, payload: &[u8]) -> bool {
    match protocol {
        IpProtocol::Tcp => match TcpSegment::new_checked(payload) {
            Ok(tcp) => {
                key.set_tp_src(tcp.src_port());
                key.set_tp_dst(tcp.dst_port());
                true
            }
            Err(_) => false,
        },
        IpProtocol::Udp => match UdpDatagram::new_checked(payload) {
            Ok(udp) => {
                key.set_tp_src(udp.src_port());
                key.set_tp_dst(udp.dst_port());
                true
            }
            Err(_) => false,
        },
        IpProtocol::Icmp | IpProtocol::Icmpv6 => match IcmpPacket::new_checked(payload) {
            Ok(icmp) => {
                key.set_tp_src(u16::from(icmp.msg_type()));
                key.set_tp_dst(u16::from(icmp.code()));
                true
            }
            Err(_) => false,
        },
        IpProtocol::Unknown(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{FrameBuilder, mac};

    #[test]
    fn extracts_udp_over_ipv4() {
        let frame = FrameBuilder::udp4("10.0.0.1:5000", "10.0.0.2:53", b"query").build();
        let Extracted { key, layout } = FlowKey::extract(&frame, 3).unwrap();
        assert_eq!(key.in_port(), 3);
        assert_eq!(key.eth_src(), mac(1));
        assert_eq!(key.eth_dst(), mac(2));
        assert_eq!(key.eth_type(), 0x0800);
        assert_eq!(key.vlan_tci(), 0);
        assert_eq!(key.ip_src(), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(key.ip_dst(), Some("10.0.0.2".parse().unwrap()));
        assert_eq!(key.ip_proto(), 17);
        assert_eq!((key.tp_src(), key.tp_dst()), (5000, 53));
        assert_eq!(layout, Layout { l3: 14, l4: 34 });
    }

    #[test]
    fn extracts_tcp_over_ipv6_with_vlan() {
        let frame = FrameBuilder::tcp6("[fd00::1]:40000", "[fd00::2]:80", b"")
            .vlan(10, 3)
            .build();
        let Extracted { key, layout } = FlowKey::extract(&frame, 1).unwrap();
        assert_eq!(key.vlan_tci(), VLAN_PRESENT | (3 << 13) | 10);
        assert_eq!(key.eth_type(), 0x86dd);
        assert_eq!(key.ip_dst(), Some("fd00::2".parse().unwrap()));
        assert_eq!((key.ip_proto(), key.tp_src(), key.tp_dst()), (6, 40000, 80));
        assert_eq!(layout, Layout { l3: 18, l4: 58 });
    }

    #[test]
    fn an_802_1ad_outer_tag_is_the_frames_vlan() {
        let mut frame = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"")
            .vlan(10, 0)
            .build();
        // S-tag 100 in front of the C-tag 10.
        frame.splice(12..12, [0x88, 0xa8, 0x00, 100]);
        let key = FlowKey::extract(&frame, 1).unwrap().key;
        assert_eq!(key.vlan_tci(), VLAN_PRESENT | 100);
        assert_eq!(key.eth_type(), 0x8100, "the inner tag is not looked into");
    }

    #[test]
    fn extracts_arp_and_icmp() {
        let arp = FrameBuilder::arp_request(mac(1), "10.0.0.1", "10.0.0.2").build();
        let key = FlowKey::extract(&arp, 1).unwrap().key;
        assert_eq!(key.eth_type(), 0x0806);
        assert_eq!(key.ip_proto(), 1);
        assert_eq!(key.ip_dst(), Some("10.0.0.2".parse().unwrap()));

        let ping = FrameBuilder::icmp4_echo("10.0.0.1", "10.0.0.2", 7).build();
        let key = FlowKey::extract(&ping, 1).unwrap().key;
        assert_eq!((key.ip_proto(), key.tp_src(), key.tp_dst()), (1, 8, 0));
    }

    #[test]
    fn truncated_layers_leave_fields_zero() {
        let frame = FrameBuilder::udp4("10.0.0.1:5000", "10.0.0.2:53", b"").build();
        assert!(FlowKey::extract(&frame[..13], 1).is_none());
        let l2_only = FlowKey::extract(&frame[..30], 1).unwrap();
        assert_eq!(l2_only.key.eth_type(), 0x0800);
        assert_eq!(l2_only.key.ip_src_bits(), 0);
        assert_eq!(l2_only.layout, Layout::default());
    }

    #[test]
    fn setters_do_not_disturb_neighbours() {
        let mut key = FlowKey::default();
        key.set_eth_dst(EthernetAddress::BROADCAST);
        key.set_ip_proto(6);
        key.set_ip_tos(0xff);
        assert_eq!(key.eth_dst(), EthernetAddress::BROADCAST);
        assert_eq!((key.ip_proto(), key.ip_tos()), (6, 0xff));
        key.set_tp_src(0xffff);
        key.set_eth_src(mac(9));
        assert_eq!((key.tp_src(), key.eth_src()), (0xffff, mac(9)));
        key.set_metadata(0xdead_beef);
        key.set_tunnel_src(Ipv4Addr::new(192, 168, 1, 2));
        assert_eq!(key.metadata(), 0xdead_beef);
        key.set_metadata(7);
        assert_eq!(key.tunnel_src(), Ipv4Addr::new(192, 168, 1, 2));
        assert_eq!(key.metadata(), 7);
    }
}
