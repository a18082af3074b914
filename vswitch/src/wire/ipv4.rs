//! IPv4 headers (RFC 791): a zero-copy view and its `Repr`.

use super::{IpProtocol, ParseError, Result, checksum};
use std::net::Ipv4Addr;

mod field {
    use std::ops::Range;
    pub(super) const VER_IHL: usize = 0;
    pub(super) const DSCP_ECN: usize = 1;
    pub(super) const LENGTH: Range<usize> = 2..4;
    pub(super) const IDENT: Range<usize> = 4..6;
    pub(super) const FLAGS_FRAGMENT: Range<usize> = 6..8;
    pub(super) const TTL: usize = 8;
    pub(super) const PROTOCOL: usize = 9;
    pub(super) const CHECKSUM: Range<usize> = 10..12;
    pub(super) const SRC_ADDR: Range<usize> = 12..16;
    pub(super) const DST_ADDR: Range<usize> = 16..20;
}

/// Length of a header without options.
pub const MIN_HEADER_LEN: usize = field::DST_ADDR.end;

/// A read/write view of an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer without checking it.
    pub fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps a buffer after checking the version, the header length and that
    /// the total length fits in the buffer. A total length of zero (a TSO
    /// super-frame larger than 64 KiB) is taken to mean "the whole buffer".
    pub fn new_checked(buffer: T) -> Result<Self> {
        let got = buffer.as_ref().len();
        if got < MIN_HEADER_LEN {
            return Err(ParseError::Truncated {
                layer: "ipv4",
                need: MIN_HEADER_LEN,
                got,
            });
        }
        let packet = Ipv4Packet { buffer };
        if packet.version() != 4 {
            return Err(ParseError::Malformed {
                layer: "ipv4",
                reason: "version is not 4",
            });
        }
        let header_len = packet.header_len();
        if header_len < MIN_HEADER_LEN {
            return Err(ParseError::Malformed {
                layer: "ipv4",
                reason: "header length below 20",
            });
        }
        let total = packet.total_len_field();
        if header_len > got || usize::from(total) > got {
            return Err(ParseError::Truncated {
                layer: "ipv4",
                need: header_len.max(usize::from(total)),
                got,
            });
        }
        if total != 0 && usize::from(total) < header_len {
            return Err(ParseError::Malformed {
                layer: "ipv4",
                reason: "total length shorter than header",
            });
        }
        Ok(packet)
    }

    fn byte(&self, index: usize) -> u8 {
        self.buffer.as_ref()[index]
    }

    fn word(&self, range: std::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[range];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// IP version (4).
    pub fn version(&self) -> u8 {
        self.byte(field::VER_IHL) >> 4
    }

    /// Header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.byte(field::VER_IHL) & 0x0f) * 4
    }

    /// DSCP and ECN (the old TOS byte).
    pub fn dscp_ecn(&self) -> u8 {
        self.byte(field::DSCP_ECN)
    }

    fn total_len_field(&self) -> u16 {
        self.word(field::LENGTH)
    }

    /// Total length in bytes; for a zero length field, the buffer length.
    pub fn total_len(&self) -> usize {
        match self.total_len_field() {
            0 => self.buffer.as_ref().len(),
            len => usize::from(len),
        }
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        self.word(field::IDENT)
    }

    /// Don't Fragment flag.
    pub fn dont_fragment(&self) -> bool {
        self.word(field::FLAGS_FRAGMENT) & 0x4000 != 0
    }

    /// More Fragments flag.
    pub fn more_fragments(&self) -> bool {
        self.word(field::FLAGS_FRAGMENT) & 0x2000 != 0
    }

    /// Fragment offset in bytes.
    pub fn fragment_offset(&self) -> u16 {
        (self.word(field::FLAGS_FRAGMENT) & 0x1fff) * 8
    }

    /// A fragment other than the first: it carries no transport header.
    pub fn is_later_fragment(&self) -> bool {
        self.fragment_offset() != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.byte(field::TTL)
    }

    /// The protocol of the payload.
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.byte(field::PROTOCOL))
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        self.word(field::CHECKSUM)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SRC_ADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::DST_ADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Whether the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(&self.buffer.as_ref()[..self.header_len()]) == 0
    }

    /// The payload, bounded by the total length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..self.total_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    fn set_word(&mut self, range: std::ops::Range<usize>, value: u16) {
        self.buffer.as_mut()[range].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets version 4 and the header length in bytes (a multiple of 4).
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((header_len / 4) as u8 & 0x0f);
    }

    /// Sets DSCP and ECN.
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, len: u16) {
        self.set_word(field::LENGTH, len);
    }

    /// Sets the identification.
    pub fn set_ident(&mut self, ident: u16) {
        self.set_word(field::IDENT, ident);
    }

    /// Sets flags and fragment offset (in bytes, a multiple of 8).
    pub fn set_flags_fragment(&mut self, dont_fragment: bool, more: bool, offset: u16) {
        let value = (u16::from(dont_fragment) << 14) | (u16::from(more) << 13) | (offset / 8);
        self.set_word(field::FLAGS_FRAGMENT, value);
    }

    /// Sets the time to live.
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Sets the payload protocol.
    pub fn set_protocol(&mut self, protocol: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol.into();
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        self.set_word(field::CHECKSUM, value);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Recomputes the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let len = self.header_len();
        let value = checksum::checksum(&self.buffer.as_ref()[..len]);
        self.set_checksum(value);
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), self.total_len());
        &mut self.buffer.as_mut()[start..end]
    }
}

/// The meaningful fields of an IPv4 header without options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Payload protocol.
    pub protocol: IpProtocol,
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// DSCP and ECN.
    pub dscp_ecn: u8,
    /// Identification.
    pub ident: u16,
    /// Don't Fragment flag.
    pub dont_fragment: bool,
}

impl Ipv4Repr {
    /// Reads a checked packet; options are skipped, fragments and bad
    /// checksums are refused.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Ipv4Repr> {
        if packet.more_fragments() || packet.fragment_offset() != 0 {
            return Err(ParseError::Unsupported {
                layer: "ipv4",
                what: "fragment",
            });
        }
        if !packet.verify_checksum() {
            return Err(ParseError::Checksum { layer: "ipv4" });
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: packet.total_len() - packet.header_len(),
            ttl: packet.ttl(),
            dscp_ecn: packet.dscp_ecn(),
            ident: packet.ident(),
            dont_fragment: packet.dont_fragment(),
        })
    }

    /// Bytes the header takes (no options).
    pub const fn buffer_len(&self) -> usize {
        MIN_HEADER_LEN
    }

    /// Writes the header, checksum included, into a buffer of at least
    /// `buffer_len()` bytes. `payload_len` must fit the 16-bit length field.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) {
        packet.set_version_and_header_len(MIN_HEADER_LEN);
        packet.set_dscp_ecn(self.dscp_ecn);
        let total = u16::try_from(MIN_HEADER_LEN + self.payload_len).unwrap_or(0);
        packet.set_total_len(total);
        packet.set_ident(self.ident);
        packet.set_flags_fragment(self.dont_fragment, false, 0);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 192.168.0.1 -> 192.168.0.199, UDP, 0x73 bytes, DF, ttl 64.
    const HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    fn packet_bytes() -> Vec<u8> {
        let mut bytes = HEADER.to_vec();
        bytes.resize(0x73, 0xab);
        bytes
    }

    #[test]
    fn parse_fields() {
        let bytes = packet_bytes();
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.header_len(), 20);
        assert_eq!(packet.total_len(), 0x73);
        assert!(packet.dont_fragment());
        assert_eq!(packet.protocol(), IpProtocol::Udp);
        assert_eq!(packet.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(packet.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert!(packet.verify_checksum());
        assert_eq!(packet.payload().len(), 0x73 - 20);
    }

    #[test]
    fn round_trip() {
        let bytes = packet_bytes();
        let repr = Ipv4Repr::parse(&Ipv4Packet::new_checked(&bytes[..]).unwrap()).unwrap();
        let mut out = bytes.clone();
        out[..20].fill(0);
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, bytes);
    }

    #[test]
    fn rejects_bad_input() {
        let bytes = packet_bytes();
        assert!(matches!(
            Ipv4Packet::new_checked(&bytes[..19]),
            Err(ParseError::Truncated { .. })
        ));
        assert!(matches!(
            Ipv4Packet::new_checked(&bytes[..0x72]),
            Err(ParseError::Truncated { .. })
        ));
        let mut v6 = bytes.clone();
        v6[0] = 0x65;
        assert!(matches!(
            Ipv4Packet::new_checked(&v6[..]),
            Err(ParseError::Malformed { .. })
        ));
        let mut short_ihl = bytes.clone();
        short_ihl[0] = 0x44;
        assert!(Ipv4Packet::new_checked(&short_ihl[..]).is_err());
        let mut long_ihl = bytes.clone();
        long_ihl[0] = 0x4f;
        long_ihl.truncate(40);
        long_ihl[2] = 0;
        long_ihl[3] = 40;
        assert!(Ipv4Packet::new_checked(&long_ihl[..]).is_err());
        let mut bad_sum = bytes.clone();
        bad_sum[11] ^= 1;
        let packet = Ipv4Packet::new_checked(&bad_sum[..]).unwrap();
        assert_eq!(
            Ipv4Repr::parse(&packet),
            Err(ParseError::Checksum { layer: "ipv4" })
        );
    }

    #[test]
    fn zero_total_length_means_whole_buffer() {
        let mut bytes = packet_bytes();
        bytes[2] = 0;
        bytes[3] = 0;
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.total_len(), bytes.len());
    }
}
