//! VXLAN headers (RFC 7348 §5): 8 bytes in front of the inner Ethernet frame,
//! carried in UDP (destination port 4789).

use super::{ParseError, Result};

mod field {
    use std::ops::{Range, RangeFrom};
    pub(super) const FLAGS: usize = 0;
    pub(super) const VNI: Range<usize> = 4..7;
    pub(super) const PAYLOAD: RangeFrom<usize> = 8..;
}

/// Length of the VXLAN header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// The IANA-assigned UDP port (RFC 7348 §5).
pub const UDP_PORT: u16 = 4789;

/// The I flag: the VNI is valid (RFC 7348 §5).
pub const FLAG_VNI: u8 = 0x08;

/// Largest VNI (24 bits).
pub const MAX_VNI: u32 = 0x00ff_ffff;

/// A read/write view of a VXLAN header and the frame it carries.
#[derive(Debug, Clone)]
pub struct VxlanPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanPacket<T> {
    /// Wraps a buffer without checking it.
    pub fn new_unchecked(buffer: T) -> Self {
        VxlanPacket { buffer }
    }

    /// Wraps a buffer that holds the header and has the I flag set (RFC 7348
    /// §5: "the I flag MUST be set to 1 for a valid VXLAN Network ID").
    pub fn new_checked(buffer: T) -> Result<Self> {
        let got = buffer.as_ref().len();
        if got < HEADER_LEN {
            return Err(ParseError::Truncated {
                layer: "vxlan",
                need: HEADER_LEN,
                got,
            });
        }
        let packet = VxlanPacket { buffer };
        if packet.flags() & FLAG_VNI == 0 {
            return Err(ParseError::Malformed {
                layer: "vxlan",
                reason: "I flag not set",
            });
        }
        Ok(packet)
    }

    /// Flags byte.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// VXLAN network identifier (24 bits).
    pub fn vni(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VNI];
        (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2])
    }

    /// The inner Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

/// The meaningful fields of a VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanRepr {
    /// VXLAN network identifier (24 bits).
    pub vni: u32,
}

impl VxlanRepr {
    /// Reads a checked header.
    pub fn parse<T: AsRef<[u8]>>(packet: &VxlanPacket<T>) -> VxlanRepr {
        VxlanRepr { vni: packet.vni() }
    }

    /// Bytes the header takes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header (I flag set, reserved fields zero) into the first
    /// `buffer_len()` bytes of `buffer`.
    pub fn emit(&self, buffer: &mut [u8]) {
        buffer[..HEADER_LEN].fill(0);
        buffer[field::FLAGS] = FLAG_VNI;
        let vni = self.vni & MAX_VNI;
        buffer[field::VNI].copy_from_slice(&[(vni >> 16) as u8, (vni >> 8) as u8, vni as u8]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        // RFC 7348 layout: flags 0x08, 24 reserved bits, VNI, 8 reserved bits.
        let bytes = [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0, 0xaa];
        let packet = VxlanPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.vni(), 0x123456);
        assert_eq!(packet.payload(), &[0xaa]);
        let mut out = [0xffu8; 9];
        VxlanRepr::parse(&packet).emit(&mut out);
        out[8] = 0xaa;
        assert_eq!(out, bytes);
    }

    #[test]
    fn refuses_missing_flag_and_short_headers() {
        assert!(VxlanPacket::new_checked(&[0u8; 8][..]).is_err());
        assert!(VxlanPacket::new_checked(&[0x08u8; 7][..]).is_err());
    }
}
