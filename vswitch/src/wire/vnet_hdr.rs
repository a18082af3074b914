//! The virtio-net header (`struct virtio_net_hdr`, virtio 1.x §5.1.6) that
//! AF_PACKET prepends with `PACKET_VNET_HDR`: how the kernel tells a packet
//! socket that a frame is a TSO/GSO super-frame or still needs its checksum.
//! Little-endian, as the kernel uses on little-endian hosts.

use super::{ParseError, Result};

mod field {
    use std::ops::Range;
    pub(super) const FLAGS: usize = 0;
    pub(super) const GSO_TYPE: usize = 1;
    pub(super) const HDR_LEN: Range<usize> = 2..4;
    pub(super) const GSO_SIZE: Range<usize> = 4..6;
    pub(super) const CSUM_START: Range<usize> = 6..8;
    pub(super) const CSUM_OFFSET: Range<usize> = 8..10;
}

/// Length of the header.
pub const HEADER_LEN: usize = field::CSUM_OFFSET.end;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset`
/// holds only the pseudo-header sum and must be completed.
pub const FLAG_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was verified.
pub const FLAG_DATA_VALID: u8 = 2;

/// Segmentation type of a super-frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GsoType {
    /// Not a super-frame.
    #[default]
    None,
    /// TCP over IPv4.
    TcpV4,
    /// UDP fragmentation offload (legacy).
    Udp,
    /// TCP over IPv6.
    TcpV6,
    /// UDP segmentation (USO).
    UdpL4,
    /// Anything else.
    Unknown(u8),
}

impl From<u8> for GsoType {
    fn from(value: u8) -> Self {
        // The ECN bit (0x80) is a modifier of TCP types.
        match value & 0x7f {
            0 => GsoType::None,
            1 => GsoType::TcpV4,
            3 => GsoType::Udp,
            4 => GsoType::TcpV6,
            5 => GsoType::UdpL4,
            _ => GsoType::Unknown(value),
        }
    }
}

impl From<GsoType> for u8 {
    fn from(value: GsoType) -> Self {
        match value {
            GsoType::None => 0,
            GsoType::TcpV4 => 1,
            GsoType::Udp => 3,
            GsoType::TcpV6 => 4,
            GsoType::UdpL4 => 5,
            GsoType::Unknown(other) => other,
        }
    }
}

/// A read/write view of a virtio-net header.
#[derive(Debug, Clone)]
pub struct VnetHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VnetHeader<T> {
    /// Wraps a buffer without checking its length.
    pub fn new_unchecked(buffer: T) -> Self {
        VnetHeader { buffer }
    }

    /// Wraps a buffer of at least `HEADER_LEN` bytes.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let got = buffer.as_ref().len();
        if got < HEADER_LEN {
            return Err(ParseError::Truncated {
                layer: "virtio-net header",
                need: HEADER_LEN,
                got,
            });
        }
        Ok(VnetHeader { buffer })
    }

    fn word(&self, range: std::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[range];
        u16::from_le_bytes([b[0], b[1]])
    }

    /// Flags (`FLAG_*`).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Segmentation type.
    pub fn gso_type(&self) -> GsoType {
        GsoType::from(self.buffer.as_ref()[field::GSO_TYPE])
    }

    /// Length of the headers to repeat in each segment (a hint).
    pub fn hdr_len(&self) -> u16 {
        self.word(field::HDR_LEN)
    }

    /// Payload bytes per segment (the MSS).
    pub fn gso_size(&self) -> u16 {
        self.word(field::GSO_SIZE)
    }

    /// Where checksumming starts (offset from the start of the frame).
    pub fn csum_start(&self) -> u16 {
        self.word(field::CSUM_START)
    }

    /// Where the checksum goes, relative to `csum_start`.
    pub fn csum_offset(&self) -> u16 {
        self.word(field::CSUM_OFFSET)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VnetHeader<T> {
    fn set_word(&mut self, range: std::ops::Range<usize>, value: u16) {
        self.buffer.as_mut()[range].copy_from_slice(&value.to_le_bytes());
    }

    /// Writes every field.
    pub fn write(&mut self, repr: &VnetRepr) {
        self.buffer.as_mut()[field::FLAGS] = repr.flags;
        self.buffer.as_mut()[field::GSO_TYPE] = repr.gso_type.into();
        self.set_word(field::HDR_LEN, repr.hdr_len);
        self.set_word(field::GSO_SIZE, repr.gso_size);
        self.set_word(field::CSUM_START, repr.csum_start);
        self.set_word(field::CSUM_OFFSET, repr.csum_offset);
    }
}

/// The fields of a virtio-net header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetRepr {
    /// Flags (`FLAG_*`).
    pub flags: u8,
    /// Segmentation type.
    pub gso_type: GsoType,
    /// Header length hint.
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Checksum start offset.
    pub csum_start: u16,
    /// Checksum field offset relative to `csum_start`.
    pub csum_offset: u16,
}

impl VnetRepr {
    /// A plain frame: no segmentation, checksums complete.
    pub const PLAIN: VnetRepr = VnetRepr {
        flags: 0,
        gso_type: GsoType::None,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// Reads a checked header.
    pub fn parse<T: AsRef<[u8]>>(header: &VnetHeader<T>) -> VnetRepr {
        VnetRepr {
            flags: header.flags(),
            gso_type: header.gso_type(),
            hdr_len: header.hdr_len(),
            gso_size: header.gso_size(),
            csum_start: header.csum_start(),
            csum_offset: header.csum_offset(),
        }
    }

    /// Whether the frame is a super-frame that needs segmenting before it
    /// can go out of a port without offloads.
    pub fn is_gso(&self) -> bool {
        self.gso_type != GsoType::None
    }

    /// Whether the frame's L4 checksum still has to be completed.
    pub fn needs_checksum(&self) -> bool {
        self.flags & FLAG_NEEDS_CSUM != 0
    }

    /// The header of the same frame after `delta` bytes were added (or,
    /// negative, removed) at its front: offsets that count from the frame
    /// start move with it.
    pub fn shifted(&self, delta: isize) -> VnetRepr {
        let moved = |v: u16| {
            if v == 0 {
                0
            } else {
                (v as isize + delta).clamp(0, u16::MAX as isize) as u16
            }
        };
        VnetRepr {
            csum_start: if self.needs_checksum() {
                moved(self.csum_start)
            } else {
                self.csum_start
            },
            hdr_len: moved(self.hdr_len),
            ..*self
        }
    }

    /// Bytes the header takes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into a buffer of at least `buffer_len()` bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, header: &mut VnetHeader<T>) {
        header.write(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        // A TSO super-frame as the kernel reports it: NEEDS_CSUM, TCPv4, MSS 1448,
        // checksum at 34 + 16.
        let bytes = [1u8, 1, 66, 0, 0xa8, 0x05, 34, 0, 16, 0];
        let repr = VnetRepr::parse(&VnetHeader::new_checked(&bytes[..]).unwrap());
        assert_eq!(repr.gso_type, GsoType::TcpV4);
        assert_eq!(repr.gso_size, 1448);
        assert!(repr.needs_checksum() && repr.is_gso());
        let mut out = [0u8; HEADER_LEN];
        repr.emit(&mut VnetHeader::new_unchecked(&mut out[..]));
        assert_eq!(out, bytes);
        assert!(VnetHeader::new_checked(&bytes[..9]).is_err());
    }

    #[test]
    fn ecn_bit_is_a_modifier() {
        assert_eq!(GsoType::from(0x84), GsoType::TcpV6);
        assert_eq!(GsoType::from(9), GsoType::Unknown(9));
    }
}
