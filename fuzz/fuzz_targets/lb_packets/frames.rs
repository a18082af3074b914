//! The frames a step sends: raw bytes, a client's TCP, UDP and ICMP to the
//! frontend, a backend's answers along its connections; each is run
//! through the switch and what it did is checked.

use crate::Run;
use crate::checks::{Sent, ipv4_of};
use crate::lab::{FRONTEND, NAT_RULE_PORT, RULES, client_address};
use sdn_controller::topology::UPLINK_PORT;
use sdn_vswitch::conntrack::packet::{PROTO_TCP, PROTO_UDP, Tuple, probe};
use sdn_vswitch::flow::PortNo;
use sdn_vswitch::pipeline::{Decision, FrameMeta, OwnedFrame};
use sdn_vswitch::testutil::FrameBuilder;
use sdn_vswitch::wire::{IcmpPacket, IpPair, IpProtocol, Ipv4Packet, Ipv4Repr, TcpFlags};

impl Run<'_> {
    /// A raw frame on the uplink (`port % 4 == 0`) or a backend's port.
    /// With bit 7 of `port` the bytes are an IPv4 packet given the Ethernet
    /// header that port's peer sends with; bit 6 then makes it come from a
    /// client to the frontend (or from the backend), bit 5 fixes its header
    /// checksum.
    pub(crate) fn raw_frame(&mut self, port: u8, mut bytes: Vec<u8>) {
        let backend = match port % 4 {
            0 => None,
            n => Some(self.lab.members[usize::from(n) - 1]),
        };
        let in_port = backend.map_or(UPLINK_PORT, |m| m.port);
        if port & 0x80 != 0 {
            if port & 0x40 != 0 && bytes.len() >= 20 {
                let (src, dst) = match backend {
                    None => (client_address(port), FRONTEND),
                    Some(m) => (m.addr, client_address(port)),
                };
                bytes[12..16].copy_from_slice(&src.octets());
                bytes[16..20].copy_from_slice(&dst.octets());
            }
            if port & 0x20 != 0
                && let Ok(mut ip) = Ipv4Packet::new_checked(&mut bytes[..])
            {
                ip.fill_checksum();
            }
            let (src, dst) = match backend {
                None => (self.lab.internet, self.lab.edge),
                Some(m) => (m.mac, self.lab.router),
            };
            let mut frame = Vec::with_capacity(14 + bytes.len());
            frame.extend_from_slice(&dst.0);
            frame.extend_from_slice(&src.0);
            frame.extend_from_slice(&0x0800u16.to_be_bytes());
            frame.extend_from_slice(&bytes);
            bytes = frame;
        }
        self.send(in_port, bytes);
    }

    /// A client's TCP segment to the frontend: one of 32 ports of one of
    /// four clients, to a rule's port, the inbound NAT rule's, the UDP
    /// rule's or any; SYN (its sequence number kept for the answer), ACK,
    /// data, FIN, RST or any flags.
    pub(crate) fn client_tcp(&mut self, [client, client_port, flags, dport, seq]: [u8; 5]) {
        use TcpFlags as F;
        let src = client_address(client);
        let sport = 40_000 + u16::from(client_port % 32);
        let dport = match dport % 8 {
            0..=2 => 80,
            3 | 4 => 443,
            5 => NAT_RULE_PORT,
            6 => 53,
            _ => u16::from(dport),
        };
        let flags = match flags % 8 {
            0 | 1 => F::SYN,
            2 => F::ACK,
            3 => F::ACK | F::PSH,
            4 => F::FIN | F::ACK,
            5 => F::RST,
            6 => F::RST | F::ACK,
            _ => u16::from(flags >> 2),
        };
        let seq = u32::from(seq) * 1000;
        let tuple = Tuple {
            proto: PROTO_TCP,
            src,
            dst: FRONTEND,
            sport,
            dport,
        };
        if flags & (F::SYN | F::ACK | F::RST | F::FIN) == F::SYN {
            self.isn.insert(tuple, seq);
        }
        let frame = FrameBuilder::tcp4(
            &format!("{src}:{sport}"),
            &format!("{FRONTEND}:{dport}"),
            if flags & F::PSH != 0 { b"GET /" } else { b"" },
        )
        .tcp_flags(flags)
        .tcp_seq_ack(seq, 1)
        .src_mac(self.lab.internet)
        .dst_mac(self.lab.edge)
        .build();
        self.send(UPLINK_PORT, frame);
    }

    /// A client's UDP datagram to the frontend: to the UDP rule's port, a
    /// TCP rule's or any.
    pub(crate) fn client_udp(&mut self, [client, client_port, dport, len]: [u8; 4]) {
        let src = client_address(client);
        let sport = 40_000 + u16::from(client_port % 32);
        let dport = match dport % 4 {
            0 | 1 => 53,
            2 => 80,
            _ => u16::from(dport),
        };
        let payload = vec![b'q'; usize::from(len % 32)];
        let frame = FrameBuilder::udp4(
            &format!("{src}:{sport}"),
            &format!("{FRONTEND}:{dport}"),
            &payload,
        )
        .src_mac(self.lab.internet)
        .dst_mac(self.lab.edge)
        .build();
        self.send(UPLINK_PORT, frame);
    }

    /// The backend of a tracked connection answers along it (`kind` picks
    /// the TCP flags, and whether a SYN-ACK acknowledges the right
    /// number); with bit 0 of `spoof` another backend sends it, which the
    /// switch must not let out as the frontend. No connection: a backend
    /// sends unasked.
    pub(crate) fn backend_answer(&mut self, [which, kind, spoof]: [u8; 3]) {
        use TcpFlags as F;
        let connections = self.connections();
        let (reply, orig) = match connections.get(usize::from(which) % connections.len().max(1)) {
            Some(c) => (c.reply, Some(c.orig)),
            None => {
                let m = self.lab.members[usize::from(which) % 3];
                let (proto, _, backend_port) = RULES[usize::from(kind) % RULES.len()];
                let reply = Tuple {
                    proto,
                    src: m.addr,
                    dst: client_address(which),
                    sport: backend_port,
                    dport: 40_000,
                };
                (reply, None)
            }
        };
        let Some(mut member) = self.lab.member_at(reply.src) else {
            return;
        };
        let mut src = reply.src;
        if spoof & 1 != 0 {
            member = self.lab.members[usize::from(spoof >> 1) % 3];
            src = member.addr;
        }
        let (from, to) = (
            format!("{src}:{}", reply.sport),
            format!("{}:{}", reply.dst, reply.dport),
        );
        let frame = match reply.proto {
            PROTO_TCP => {
                let isn = orig.and_then(|o| self.isn.get(&o).copied());
                let (flags, ack) = match kind % 8 {
                    0 | 1 => (F::SYN | F::ACK, isn.map_or(1, |i| i.wrapping_add(1))),
                    2 => (F::ACK, 1),
                    3 => (F::ACK | F::PSH, 1),
                    4 => (F::FIN | F::ACK, 1),
                    5 => (F::RST, 0),
                    6 => (F::SYN | F::ACK, 7),
                    _ => (u16::from(kind >> 2), 1),
                };
                FrameBuilder::tcp4(&from, &to, b"")
                    .tcp_flags(flags)
                    .tcp_seq_ack(500, ack)
            }
            PROTO_UDP => FrameBuilder::udp4(&from, &to, b"answer"),
            _ => return,
        }
        .src_mac(member.mac)
        .dst_mac(self.lab.router)
        .build();
        self.send(member.port, frame);
    }

    /// A client's ICMP error (destination unreachable, code `arg % 16`)
    /// about what it received on a tracked connection: it quotes the
    /// connection's reply as it left the switch (from the frontend).
    pub(crate) fn client_icmp_error(&mut self, arg: u8) {
        let connections = self.connections();
        let Some(c) = connections.get(usize::from(arg) % connections.len().max(1)) else {
            return;
        };
        let (client, frontend) = (c.orig.src, c.orig.dst);
        let quoted_repr = Ipv4Repr {
            src_addr: frontend,
            dst_addr: client,
            protocol: IpProtocol::from(c.orig.proto),
            payload_len: 8,
            ttl: 60,
            dscp_ecn: 0,
            ident: 1,
            dont_fragment: true,
        };
        let mut quoted = vec![0u8; quoted_repr.buffer_len() + 8];
        quoted_repr.emit(&mut Ipv4Packet::new_unchecked(&mut quoted[..]));
        // The quoted transport ports, after the 20-byte header.
        quoted[20..22].copy_from_slice(&c.orig.dport.to_be_bytes());
        quoted[22..24].copy_from_slice(&c.orig.sport.to_be_bytes());
        let mut icmp = vec![3, arg % 16, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&quoted);
        IcmpPacket::new_unchecked(&mut icmp[..]).fill_checksum(IpPair::V4(client, frontend));
        let repr = Ipv4Repr {
            src_addr: client,
            dst_addr: frontend,
            protocol: IpProtocol::Icmp,
            payload_len: icmp.len(),
            ttl: 60,
            dscp_ecn: 0,
            ident: 2,
            dont_fragment: false,
        };
        let mut frame = vec![0u8; 14 + repr.buffer_len() + icmp.len()];
        frame[..6].copy_from_slice(&self.lab.edge.0);
        frame[6..12].copy_from_slice(&self.lab.internet.0);
        frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut frame[14..]));
        frame[14 + repr.buffer_len()..].copy_from_slice(&icmp);
        self.send(UPLINK_PORT, frame);
    }

    /// Runs a frame in and checks what it did.
    pub(crate) fn send(&mut self, in_port: PortNo, frame: Vec<u8>) {
        let before: Vec<Vec<(u32, u64)>> = (0..RULES.len()).map(|i| self.stats(i)).collect();
        let mut buffer = OwnedFrame::new(&frame);
        let mut d = Decision::default();
        self.pipeline
            .process(&mut buffer, FrameMeta::plain(in_port), self.now, &mut d);
        let last = buffer.into_vec();
        let mut sent: Vec<Sent> = d
            .snapshots
            .iter()
            .chain(&d.generated)
            .map(|(o, bytes)| Sent {
                port: o.port,
                bytes: bytes.clone(),
            })
            .collect();
        sent.extend(d.outputs.iter().map(|o| Sent {
            port: o.port,
            bytes: last.clone(),
        }));
        // The tuple conntrack tracks an untagged IPv4 frame under.
        let tuple = ipv4_of(&frame)
            .and_then(|_| probe(frame.get(14..)?).ok())
            .map(|p| p.tuple);
        self.check_picks(&before, tuple);
        self.check_delivery(in_port, &frame, tuple, &sent);
    }
}
