//! UDP datagrams (RFC 768): a zero-copy view and its `Repr`.

use super::{IpPair, ParseError, Result, checksum};

mod field {
    use std::ops::Range;
    pub(super) const SRC_PORT: Range<usize> = 0..2;
    pub(super) const DST_PORT: Range<usize> = 2..4;
    pub(super) const LENGTH: Range<usize> = 4..6;
    pub(super) const CHECKSUM: Range<usize> = 6..8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

/// A read/write view of a UDP datagram.
#[derive(Debug, Clone)]
pub struct UdpDatagram<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpDatagram<T> {
    /// Wraps a buffer without checking it.
    pub fn new_unchecked(buffer: T) -> Self {
        UdpDatagram { buffer }
    }

    /// Wraps a buffer that holds at least the header. The length field is not
    /// checked here (GSO super-frames carry a per-segment length); `Repr::parse`
    /// checks it.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let got = buffer.as_ref().len();
        if got < HEADER_LEN {
            return Err(ParseError::Truncated {
                layer: "udp",
                need: HEADER_LEN,
                got,
            });
        }
        Ok(UdpDatagram { buffer })
    }

    fn word(&self, range: std::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[range];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.word(field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.word(field::DST_PORT)
    }

    /// Length field (header and payload).
    pub fn len(&self) -> u16 {
        self.word(field::LENGTH)
    }

    /// True when the length field is zero (never valid for a real datagram).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        self.word(field::CHECKSUM)
    }

    /// Everything after the header in the buffer.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// Whether the checksum over the whole buffer is right (zero means "none"
    /// for IPv4, RFC 768).
    pub fn verify_checksum(&self, ips: IpPair) -> bool {
        if self.checksum() == 0 && matches!(ips, IpPair::V4(..)) {
            return true;
        }
        let data = self.buffer.as_ref();
        let sum = ips.pseudo_header(super::IpProtocol::Udp, data.len());
        !checksum::fold(checksum::accumulate(sum, data)) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpDatagram<T> {
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

    /// Sets the length field.
    pub fn set_len(&mut self, len: u16) {
        self.set_word(field::LENGTH, len);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        self.set_word(field::CHECKSUM, value);
    }

    /// Computes the checksum over the whole buffer (RFC 768: 0 is sent as 0xffff).
    pub fn fill_checksum(&mut self, ips: IpPair) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let sum = ips.pseudo_header(super::IpProtocol::Udp, data.len());
        let value = match !checksum::fold(checksum::accumulate(sum, data)) {
            0 => 0xffff,
            v => v,
        };
        self.set_checksum(value);
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// The meaningful fields of a UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl UdpRepr {
    /// Reads a checked datagram whose buffer is exactly the datagram, checking
    /// the length field and the checksum.
    pub fn parse<T: AsRef<[u8]>>(datagram: &UdpDatagram<T>, ips: IpPair) -> Result<UdpRepr> {
        let got = datagram.buffer.as_ref().len();
        let len = usize::from(datagram.len());
        if len < HEADER_LEN || len > got {
            return Err(ParseError::Malformed {
                layer: "udp",
                reason: "length field disagrees with the datagram",
            });
        }
        if !datagram.verify_checksum(ips) {
            return Err(ParseError::Checksum { layer: "udp" });
        }
        Ok(UdpRepr {
            src_port: datagram.src_port(),
            dst_port: datagram.dst_port(),
        })
    }

    /// Bytes the header takes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into `datagram`, whose buffer is the whole datagram
    /// (header and the already written payload), and fills the checksum.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, datagram: &mut UdpDatagram<T>, ips: IpPair) {
        let len = u16::try_from(datagram.buffer.as_ref().len()).unwrap_or(0);
        datagram.set_src_port(self.src_port);
        datagram.set_dst_port(self.dst_port);
        datagram.set_len(len);
        datagram.fill_checksum(ips);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ips() -> IpPair {
        IpPair::V4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2))
    }

    #[test]
    fn round_trip_with_checksum() {
        let mut bytes = vec![0u8; HEADER_LEN + 5];
        bytes[HEADER_LEN..].copy_from_slice(b"hello");
        let repr = UdpRepr {
            src_port: 5353,
            dst_port: 53,
        };
        repr.emit(&mut UdpDatagram::new_unchecked(&mut bytes[..]), ips());
        let datagram = UdpDatagram::new_checked(&bytes[..]).unwrap();
        assert_eq!(datagram.len(), 13);
        assert_eq!(UdpRepr::parse(&datagram, ips()).unwrap(), repr);
        let mut again = bytes.clone();
        again[..HEADER_LEN].fill(0);
        repr.emit(&mut UdpDatagram::new_unchecked(&mut again[..]), ips());
        assert_eq!(again, bytes);
        bytes[HEADER_LEN] ^= 1;
        assert_eq!(
            UdpRepr::parse(&UdpDatagram::new_checked(&bytes[..]).unwrap(), ips()),
            Err(ParseError::Checksum { layer: "udp" })
        );
    }

    #[test]
    fn bad_length() {
        let mut bytes = [0u8; HEADER_LEN];
        bytes[5] = 20;
        let datagram = UdpDatagram::new_checked(&bytes[..]).unwrap();
        assert!(UdpRepr::parse(&datagram, ips()).is_err());
        assert!(UdpDatagram::new_checked(&bytes[..7]).is_err());
    }
}
