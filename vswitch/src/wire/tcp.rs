//! TCP segments (RFC 9293 §3.1): a zero-copy view and its `Repr`.

use super::{IpPair, IpProtocol, ParseError, Result, checksum};

mod field {
    use std::ops::Range;
    pub(super) const SRC_PORT: Range<usize> = 0..2;
    pub(super) const DST_PORT: Range<usize> = 2..4;
    pub(super) const SEQ: Range<usize> = 4..8;
    pub(super) const ACK: Range<usize> = 8..12;
    pub(super) const OFFSET_FLAGS: Range<usize> = 12..14;
    pub(super) const WINDOW: Range<usize> = 14..16;
    pub(super) const CHECKSUM: Range<usize> = 16..18;
    pub(super) const URGENT: Range<usize> = 18..20;
}

/// Length of a header without options.
pub const MIN_HEADER_LEN: usize = field::URGENT.end;

/// TCP control bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags(pub u16);

impl TcpFlags {
    /// FIN.
    pub const FIN: u16 = 0x001;
    /// SYN.
    pub const SYN: u16 = 0x002;
    /// RST.
    pub const RST: u16 = 0x004;
    /// PSH.
    pub const PSH: u16 = 0x008;
    /// ACK.
    pub const ACK: u16 = 0x010;

    /// Whether every bit of `bits` is set.
    pub fn contains(self, bits: u16) -> bool {
        self.0 & bits == bits
    }
}

/// A read/write view of a TCP segment.
#[derive(Debug, Clone)]
pub struct TcpSegment<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpSegment<T> {
    /// Wraps a buffer without checking it.
    pub fn new_unchecked(buffer: T) -> Self {
        TcpSegment { buffer }
    }

    /// Wraps a buffer that holds the whole header, options included.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let got = buffer.as_ref().len();
        if got < MIN_HEADER_LEN {
            return Err(ParseError::Truncated {
                layer: "tcp",
                need: MIN_HEADER_LEN,
                got,
            });
        }
        let segment = TcpSegment { buffer };
        let header_len = segment.header_len();
        if header_len < MIN_HEADER_LEN {
            return Err(ParseError::Malformed {
                layer: "tcp",
                reason: "data offset below 5",
            });
        }
        if header_len > got {
            return Err(ParseError::Truncated {
                layer: "tcp",
                need: header_len,
                got,
            });
        }
        Ok(segment)
    }

    fn word(&self, range: std::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[range];
        u16::from_be_bytes([b[0], b[1]])
    }

    fn dword(&self, range: std::ops::Range<usize>) -> u32 {
        let b = &self.buffer.as_ref()[range];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.word(field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.word(field::DST_PORT)
    }

    /// Sequence number.
    pub fn seq_number(&self) -> u32 {
        self.dword(field::SEQ)
    }

    /// Acknowledgment number.
    pub fn ack_number(&self) -> u32 {
        self.dword(field::ACK)
    }

    /// Header length in bytes (data offset × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.word(field::OFFSET_FLAGS) >> 12) * 4
    }

    /// Control bits.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.word(field::OFFSET_FLAGS) & 0x01ff)
    }

    /// Window.
    pub fn window(&self) -> u16 {
        self.word(field::WINDOW)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        self.word(field::CHECKSUM)
    }

    /// The data after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Whether the checksum over the whole buffer is right.
    pub fn verify_checksum(&self, ips: IpPair) -> bool {
        let data = self.buffer.as_ref();
        let sum = ips.pseudo_header(IpProtocol::Tcp, data.len());
        !checksum::fold(checksum::accumulate(sum, data)) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpSegment<T> {
    fn set_word(&mut self, range: std::ops::Range<usize>, value: u16) {
        self.buffer.as_mut()[range].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the source port.
    pub fn set_src_port(&mut self, port: u16) {
        self.set_word(field::SRC_PORT, port);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, port: u16) {
        self.set_word(field::DST_PORT, port);
    }

    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, value: u32) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the acknowledgment number.
    pub fn set_ack_number(&mut self, value: u32) {
        self.buffer.as_mut()[field::ACK].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the header length (a multiple of 4) and the control bits.
    pub fn set_header_len_and_flags(&mut self, header_len: usize, flags: TcpFlags) {
        let value = (((header_len / 4) as u16) << 12) | (flags.0 & 0x01ff);
        self.set_word(field::OFFSET_FLAGS, value);
    }

    /// Sets the window.
    pub fn set_window(&mut self, window: u16) {
        self.set_word(field::WINDOW, window);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        self.set_word(field::CHECKSUM, value);
    }

    /// Computes the checksum over the whole buffer.
    pub fn fill_checksum(&mut self, ips: IpPair) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let sum = ips.pseudo_header(IpProtocol::Tcp, data.len());
        let value = !checksum::fold(checksum::accumulate(sum, data));
        self.set_checksum(value);
    }
}

/// The meaningful fields of a TCP header without options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgment number.
    pub ack_number: u32,
    /// Control bits.
    pub flags: TcpFlags,
    /// Window.
    pub window: u16,
}

impl TcpRepr {
    /// Reads a checked segment whose buffer is exactly the segment, checking
    /// the checksum. Options are skipped.
    pub fn parse<T: AsRef<[u8]>>(segment: &TcpSegment<T>, ips: IpPair) -> Result<TcpRepr> {
        if !segment.verify_checksum(ips) {
            return Err(ParseError::Checksum { layer: "tcp" });
        }
        Ok(TcpRepr {
            src_port: segment.src_port(),
            dst_port: segment.dst_port(),
            seq_number: segment.seq_number(),
            ack_number: segment.ack_number(),
            flags: segment.flags(),
            window: segment.window(),
        })
    }

    /// Bytes the header takes (no options).
    pub const fn buffer_len(&self) -> usize {
        MIN_HEADER_LEN
    }

    /// Writes the header into `segment`, whose buffer is the whole segment
    /// (header and the already written payload), and fills the checksum.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, segment: &mut TcpSegment<T>, ips: IpPair) {
        segment.set_src_port(self.src_port);
        segment.set_dst_port(self.dst_port);
        segment.set_seq_number(self.seq_number);
        segment.set_ack_number(self.ack_number);
        segment.set_header_len_and_flags(MIN_HEADER_LEN, self.flags);
        segment.set_window(self.window);
        segment.buffer.as_mut()[field::URGENT].fill(0);
        segment.fill_checksum(ips);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn round_trip_v6() {
        let ips = IpPair::V6(
            "fd00::1".parse::<Ipv6Addr>().unwrap(),
            "fd00::2".parse::<Ipv6Addr>().unwrap(),
        );
        let repr = TcpRepr {
            src_port: 40000,
            dst_port: 80,
            seq_number: 0x01020304,
            ack_number: 0x0a0b0c0d,
            flags: TcpFlags(TcpFlags::SYN | TcpFlags::ACK),
            window: 65535,
        };
        let mut bytes = vec![0u8; MIN_HEADER_LEN + 3];
        bytes[MIN_HEADER_LEN..].copy_from_slice(b"abc");
        repr.emit(&mut TcpSegment::new_unchecked(&mut bytes[..]), ips);
        let segment = TcpSegment::new_checked(&bytes[..]).unwrap();
        assert_eq!(segment.payload(), b"abc");
        assert_eq!(TcpRepr::parse(&segment, ips).unwrap(), repr);
        let mut again = bytes.clone();
        again[..MIN_HEADER_LEN].fill(0);
        repr.emit(&mut TcpSegment::new_unchecked(&mut again[..]), ips);
        assert_eq!(again, bytes);
    }

    #[test]
    fn rejects_bad_offsets() {
        let mut bytes = [0u8; MIN_HEADER_LEN];
        bytes[12] = 0x40;
        assert!(TcpSegment::new_checked(&bytes[..]).is_err());
        bytes[12] = 0x60;
        assert!(TcpSegment::new_checked(&bytes[..]).is_err());
        assert!(TcpSegment::new_checked(&bytes[..19]).is_err());
    }
}
