//! Test fixtures shared by unit tests, integration tests, benchmarks and fuzz
//! targets: frames built with the wire `Repr`s.

use crate::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr,
    IcmpEchoRepr, IcmpPacket, IpPair, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr,
    TcpFlags, TcpRepr, TcpSegment, UdpDatagram, UdpRepr, VlanHeader, VlanRepr, icmp,
};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Whether an untagged IPv4 frame's header checksum and its TCP, UDP or
/// ICMP checksum verify (false for anything else or anything truncated).
pub fn checksums_valid(frame: &[u8]) -> bool {
    let Some(ip) = frame
        .get(14..)
        .and_then(|l3| Ipv4Packet::new_checked(l3).ok())
    else {
        return false;
    };
    let ips = IpPair::V4(ip.src_addr(), ip.dst_addr());
    let l4 = match ip.protocol() {
        IpProtocol::Tcp => {
            TcpSegment::new_checked(ip.payload()).is_ok_and(|s| s.verify_checksum(ips))
        }
        IpProtocol::Udp => {
            UdpDatagram::new_checked(ip.payload()).is_ok_and(|d| d.verify_checksum(ips))
        }
        IpProtocol::Icmp => {
            IcmpPacket::new_checked(ip.payload()).is_ok_and(|i| i.verify_checksum(ips))
        }
        _ => true,
    };
    ip.verify_checksum() && l4
}

/// The locally administered address `02:00:00:00:00:nn`.
pub fn mac(n: u8) -> EthernetAddress {
    EthernetAddress([0x02, 0, 0, 0, 0, n])
}

#[derive(Debug, Clone)]
enum Body {
    Tcp {
        src: SocketAddr,
        dst: SocketAddr,
        flags: TcpFlags,
        seq: u32,
        ack: u32,
    },
    Udp {
        src: SocketAddr,
        dst: SocketAddr,
    },
    Icmp4Echo {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        seq: u16,
        reply: bool,
    },
    Arp(ArpRepr),
}

/// Builds Ethernet frames for tests.
#[derive(Debug, Clone)]
pub struct FrameBuilder {
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    vlan: Option<(u16, u8)>,
    body: Body,
    payload: Vec<u8>,
}

fn sock(text: &str) -> SocketAddr {
    text.parse().expect("test socket address")
}

impl FrameBuilder {
    fn new(body: Body, payload: &[u8]) -> FrameBuilder {
        FrameBuilder {
            src_mac: mac(1),
            dst_mac: mac(2),
            vlan: None,
            body,
            payload: payload.to_vec(),
        }
    }

    /// TCP over IPv4 ("10.0.0.1:1000" style addresses), flags ACK|PSH.
    pub fn tcp4(src: &str, dst: &str, payload: &[u8]) -> FrameBuilder {
        Self::new(
            Body::Tcp {
                src: sock(src),
                dst: sock(dst),
                flags: TcpFlags(TcpFlags::ACK | TcpFlags::PSH),
                seq: 1,
                ack: 1,
            },
            payload,
        )
    }

    /// TCP over IPv6 ("[fd00::1]:1000" style addresses).
    pub fn tcp6(src: &str, dst: &str, payload: &[u8]) -> FrameBuilder {
        Self::tcp4(src, dst, payload)
    }

    /// UDP over IPv4 or IPv6.
    pub fn udp4(src: &str, dst: &str, payload: &[u8]) -> FrameBuilder {
        Self::new(
            Body::Udp {
                src: sock(src),
                dst: sock(dst),
            },
            payload,
        )
    }

    /// ICMPv4 echo request.
    pub fn icmp4_echo(src: &str, dst: &str, seq: u16) -> FrameBuilder {
        Self::new(
            Body::Icmp4Echo {
                src: src.parse().expect("test address"),
                dst: dst.parse().expect("test address"),
                seq,
                reply: false,
            },
            b"0123456789abcdef",
        )
    }

    /// Broadcast ARP request from `sender` asking for `target`.
    pub fn arp_request(sender: EthernetAddress, spa: &str, tpa: &str) -> FrameBuilder {
        let mut b = Self::new(
            Body::Arp(ArpRepr {
                operation: ArpOperation::Request,
                sender_hardware_addr: sender,
                sender_protocol_addr: spa.parse().expect("test address"),
                target_hardware_addr: EthernetAddress([0; 6]),
                target_protocol_addr: tpa.parse().expect("test address"),
            }),
            b"",
        );
        b.src_mac = sender;
        b.dst_mac = EthernetAddress::BROADCAST;
        b
    }

    /// Sets the source MAC.
    pub fn src_mac(mut self, m: EthernetAddress) -> Self {
        self.src_mac = m;
        self
    }

    /// Sets the destination MAC.
    pub fn dst_mac(mut self, m: EthernetAddress) -> Self {
        self.dst_mac = m;
        self
    }

    /// Adds an 802.1Q tag.
    pub fn vlan(mut self, vid: u16, pcp: u8) -> Self {
        self.vlan = Some((vid, pcp));
        self
    }

    /// Sets TCP flags (TCP frames only).
    pub fn tcp_flags(mut self, bits: u16) -> Self {
        if let Body::Tcp { flags, .. } = &mut self.body {
            *flags = TcpFlags(bits);
        }
        self
    }

    /// Makes an ICMP echo request a reply, or back (ICMP echo frames only).
    pub fn echo_reply(mut self, is_reply: bool) -> Self {
        if let Body::Icmp4Echo { reply, .. } = &mut self.body {
            *reply = is_reply;
        }
        self
    }

    /// Sets TCP sequence and acknowledgement numbers (TCP frames only).
    pub fn tcp_seq_ack(mut self, seq_number: u32, ack_number: u32) -> Self {
        if let Body::Tcp { seq, ack, .. } = &mut self.body {
            *seq = seq_number;
            *ack = ack_number;
        }
        self
    }

    fn ethertype(&self) -> EtherType {
        match &self.body {
            Body::Arp(_) => EtherType::Arp,
            Body::Icmp4Echo { .. } => EtherType::Ipv4,
            Body::Tcp { src, .. } | Body::Udp { src, .. } => {
                if src.is_ipv4() {
                    EtherType::Ipv4
                } else {
                    EtherType::Ipv6
                }
            }
        }
    }

    /// The L3 payload (transport header and data) with checksums filled.
    fn l4_bytes(&self, ips: IpPair) -> (IpProtocol, Vec<u8>) {
        match &self.body {
            Body::Tcp {
                src,
                dst,
                flags,
                seq,
                ack,
            } => {
                let repr = TcpRepr {
                    src_port: src.port(),
                    dst_port: dst.port(),
                    seq_number: *seq,
                    ack_number: *ack,
                    flags: *flags,
                    window: 64240,
                };
                let mut bytes = vec![0u8; repr.buffer_len() + self.payload.len()];
                bytes[repr.buffer_len()..].copy_from_slice(&self.payload);
                repr.emit(&mut TcpSegment::new_unchecked(&mut bytes[..]), ips);
                (IpProtocol::Tcp, bytes)
            }
            Body::Udp { src, dst } => {
                let repr = UdpRepr {
                    src_port: src.port(),
                    dst_port: dst.port(),
                };
                let mut bytes = vec![0u8; repr.buffer_len() + self.payload.len()];
                bytes[repr.buffer_len()..].copy_from_slice(&self.payload);
                repr.emit(&mut UdpDatagram::new_unchecked(&mut bytes[..]), ips);
                (IpProtocol::Udp, bytes)
            }
            Body::Icmp4Echo { seq, reply, .. } => {
                let repr = IcmpEchoRepr {
                    msg_type: if *reply {
                        icmp::V4_ECHO_REPLY
                    } else {
                        icmp::V4_ECHO_REQUEST
                    },
                    ident: 0x4242,
                    seq: *seq,
                };
                let mut bytes = vec![0u8; repr.buffer_len() + self.payload.len()];
                bytes[repr.buffer_len()..].copy_from_slice(&self.payload);
                repr.emit(&mut IcmpPacket::new_unchecked(&mut bytes[..]), ips);
                (IpProtocol::Icmp, bytes)
            }
            Body::Arp(_) => (IpProtocol::Unknown(0), Vec::new()),
        }
    }

    /// The frame's bytes.
    pub fn build(&self) -> Vec<u8> {
        let l3: Vec<u8> = match &self.body {
            Body::Arp(repr) => {
                let mut bytes = vec![0u8; repr.buffer_len()];
                repr.emit(&mut ArpPacket::new_unchecked(&mut bytes[..]));
                bytes
            }
            Body::Icmp4Echo { src, dst, .. } => {
                ipv4_packet(*src, *dst, self.l4_bytes(IpPair::V4(*src, *dst)))
            }
            Body::Tcp { src, dst, .. } | Body::Udp { src, dst } => match (src.ip(), dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    ipv4_packet(s, d, self.l4_bytes(IpPair::V4(s, d)))
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    let (protocol, l4) = self.l4_bytes(IpPair::V6(s, d));
                    let repr = Ipv6Repr {
                        src_addr: s,
                        dst_addr: d,
                        next_header: protocol,
                        payload_len: l4.len(),
                        hop_limit: 64,
                        traffic_class: 0,
                        flow_label: 0,
                    };
                    let mut bytes = vec![0u8; repr.buffer_len() + l4.len()];
                    bytes[repr.buffer_len()..].copy_from_slice(&l4);
                    repr.emit(&mut Ipv6Packet::new_unchecked(&mut bytes[..]));
                    bytes
                }
                _ => panic!("mixed address families in a test frame"),
            },
        };
        let eth = EthernetRepr {
            src_addr: self.src_mac,
            dst_addr: self.dst_mac,
            ethertype: if self.vlan.is_some() {
                EtherType::Vlan
            } else {
                self.ethertype()
            },
        };
        let tag_len = if self.vlan.is_some() { 4 } else { 0 };
        let mut frame = vec![0u8; eth.buffer_len() + tag_len + l3.len()];
        eth.emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
        if let Some((vid, pcp)) = self.vlan {
            let tag = VlanRepr {
                vid,
                pcp,
                dei: false,
                ethertype: self.ethertype(),
            };
            tag.emit(&mut VlanHeader::new_unchecked(&mut frame[14..]));
        }
        frame[eth.buffer_len() + tag_len..].copy_from_slice(&l3);
        frame
    }
}

fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, (protocol, l4): (IpProtocol, Vec<u8>)) -> Vec<u8> {
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol,
        payload_len: l4.len(),
        ttl: 64,
        dscp_ecn: 0,
        ident: 0x1234,
        dont_fragment: true,
    };
    let mut bytes = vec![0u8; repr.buffer_len() + l4.len()];
    bytes[repr.buffer_len()..].copy_from_slice(&l4);
    repr.emit(&mut Ipv4Packet::new_unchecked(&mut bytes[..]));
    bytes
}
