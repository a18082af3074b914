//! ICMPv4 (RFC 792) and ICMPv6 (RFC 4443) headers: type, code, checksum and
//! the echo identifier/sequence. One view serves both versions.

use super::{IpPair, IpProtocol, ParseError, Result, checksum};

mod field {
    use std::ops::Range;
    pub(super) const TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
    pub(super) const CHECKSUM: Range<usize> = 2..4;
    pub(super) const ECHO_IDENT: Range<usize> = 4..6;
    pub(super) const ECHO_SEQ: Range<usize> = 6..8;
}

/// Length of the ICMP header including the 4-byte rest-of-header.
pub const HEADER_LEN: usize = field::ECHO_SEQ.end;

/// ICMPv4 echo request type.
pub const V4_ECHO_REQUEST: u8 = 8;
/// ICMPv4 echo reply type.
pub const V4_ECHO_REPLY: u8 = 0;
/// ICMPv6 echo request type.
pub const V6_ECHO_REQUEST: u8 = 128;
/// ICMPv6 echo reply type.
pub const V6_ECHO_REPLY: u8 = 129;

/// A read/write view of an ICMP message.
#[derive(Debug, Clone)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    /// Wraps a buffer without checking it.
    pub fn new_unchecked(buffer: T) -> Self {
        IcmpPacket { buffer }
    }

    /// Wraps a buffer that holds at least the 8-byte header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let got = buffer.as_ref().len();
        if got < HEADER_LEN {
            return Err(ParseError::Truncated {
                layer: "icmp",
                need: HEADER_LEN,
                got,
            });
        }
        Ok(IcmpPacket { buffer })
    }

    /// Message type.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code.
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    fn word(&self, range: std::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[range];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        self.word(field::CHECKSUM)
    }

    /// Echo identifier (meaningful for echo messages).
    pub fn echo_ident(&self) -> u16 {
        self.word(field::ECHO_IDENT)
    }

    /// Echo sequence number (meaningful for echo messages).
    pub fn echo_seq(&self) -> u16 {
        self.word(field::ECHO_SEQ)
    }

    /// Data after the 8-byte header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// Whether the checksum is right. ICMPv6 covers a pseudo-header; ICMPv4
    /// does not.
    pub fn verify_checksum(&self, ips: IpPair) -> bool {
        let data = self.buffer.as_ref();
        let sum = match ips {
            IpPair::V4(..) => 0,
            IpPair::V6(..) => ips.pseudo_header(IpProtocol::Icmpv6, data.len()),
        };
        !checksum::fold(checksum::accumulate(sum, data)) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    /// Sets the type.
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    /// Sets the code.
    pub fn set_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Sets the echo identifier and sequence number.
    pub fn set_echo(&mut self, ident: u16, seq: u16) {
        self.buffer.as_mut()[field::ECHO_IDENT].copy_from_slice(&ident.to_be_bytes());
        self.buffer.as_mut()[field::ECHO_SEQ].copy_from_slice(&seq.to_be_bytes());
    }

    /// Computes the checksum over the whole buffer.
    pub fn fill_checksum(&mut self, ips: IpPair) {
        self.buffer.as_mut()[field::CHECKSUM].fill(0);
        let data = self.buffer.as_ref();
        let sum = match ips {
            IpPair::V4(..) => 0,
            IpPair::V6(..) => ips.pseudo_header(IpProtocol::Icmpv6, data.len()),
        };
        let value = !checksum::fold(checksum::accumulate(sum, data));
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }
}

/// An ICMP echo request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpEchoRepr {
    /// Message type (8/0 for ICMPv4, 128/129 for ICMPv6).
    pub msg_type: u8,
    /// Identifier.
    pub ident: u16,
    /// Sequence number.
    pub seq: u16,
}

impl IcmpEchoRepr {
    /// Reads an echo message, checking the checksum.
    pub fn parse<T: AsRef<[u8]>>(packet: &IcmpPacket<T>, ips: IpPair) -> Result<IcmpEchoRepr> {
        let is_echo = matches!(
            (ips, packet.msg_type()),
            (IpPair::V4(..), V4_ECHO_REQUEST | V4_ECHO_REPLY)
                | (IpPair::V6(..), V6_ECHO_REQUEST | V6_ECHO_REPLY)
        );
        if !is_echo || packet.code() != 0 {
            return Err(ParseError::Unsupported {
                layer: "icmp",
                what: "message other than echo",
            });
        }
        if !packet.verify_checksum(ips) {
            return Err(ParseError::Checksum { layer: "icmp" });
        }
        Ok(IcmpEchoRepr {
            msg_type: packet.msg_type(),
            ident: packet.echo_ident(),
            seq: packet.echo_seq(),
        })
    }

    /// Bytes the header takes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into `packet`, whose buffer is the whole message
    /// (payload already written), and fills the checksum.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut IcmpPacket<T>, ips: IpPair) {
        packet.set_msg_type(self.msg_type);
        packet.set_code(0);
        packet.set_echo(self.ident, self.seq);
        packet.fill_checksum(ips);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn round_trip() {
        let ips = IpPair::V4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let repr = IcmpEchoRepr {
            msg_type: V4_ECHO_REQUEST,
            ident: 0x1234,
            seq: 7,
        };
        let mut bytes = vec![0u8; HEADER_LEN + 4];
        bytes[HEADER_LEN..].copy_from_slice(b"ping");
        repr.emit(&mut IcmpPacket::new_unchecked(&mut bytes[..]), ips);
        let packet = IcmpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(IcmpEchoRepr::parse(&packet, ips).unwrap(), repr);
        let mut again = bytes.clone();
        again[..HEADER_LEN].fill(0);
        repr.emit(&mut IcmpPacket::new_unchecked(&mut again[..]), ips);
        assert_eq!(again, bytes);
        assert!(IcmpPacket::new_checked(&bytes[..7]).is_err());
    }
}
