//! IEEE 802.1Q VLAN tags: the 4 bytes after the source MAC whose TPID is 0x8100.
//! The view covers the TCI and the inner EtherType (the TPID is the outer
//! Ethernet EtherType).

use super::{EtherType, ParseError, Result};

mod field {
    use std::ops::{Range, RangeFrom};
    pub(super) const TCI: Range<usize> = 0..2;
    pub(super) const ETHERTYPE: Range<usize> = 2..4;
    pub(super) const PAYLOAD: RangeFrom<usize> = 4..;
}

/// Bytes of the TCI and inner EtherType.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// A read/write view of a VLAN tag and what follows it.
#[derive(Debug, Clone)]
pub struct VlanHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanHeader<T> {
    /// Wraps a buffer without checking its length.
    pub fn new_unchecked(buffer: T) -> Self {
        VlanHeader { buffer }
    }

    /// Wraps a buffer that holds at least the TCI and inner EtherType.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let got = buffer.as_ref().len();
        if got < HEADER_LEN {
            return Err(ParseError::Truncated {
                layer: "802.1Q",
                need: HEADER_LEN,
                got,
            });
        }
        Ok(VlanHeader { buffer })
    }

    /// Tag control information: PCP (3 bits), DEI (1 bit), VID (12 bits).
    pub fn tci(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::TCI];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// VLAN identifier (0..=4095).
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// Priority code point (0..=7).
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator.
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// EtherType of the tagged payload.
    pub fn ethertype(&self) -> EtherType {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        EtherType::from(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Everything after the tag.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanHeader<T> {
    /// Sets the whole TCI.
    pub fn set_tci(&mut self, tci: u16) {
        self.buffer.as_mut()[field::TCI].copy_from_slice(&tci.to_be_bytes());
    }

    /// Sets the inner EtherType.
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        let value: u16 = ethertype.into();
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&value.to_be_bytes());
    }
}

/// The meaningful fields of a VLAN tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanRepr {
    /// VLAN identifier (0..=4095).
    pub vid: u16,
    /// Priority code point (0..=7).
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// EtherType of the payload.
    pub ethertype: EtherType,
}

impl VlanRepr {
    /// Reads a checked tag.
    pub fn parse<T: AsRef<[u8]>>(header: &VlanHeader<T>) -> VlanRepr {
        VlanRepr {
            vid: header.vid(),
            pcp: header.pcp(),
            dei: header.dei(),
            ethertype: header.ethertype(),
        }
    }

    /// The TCI these fields make.
    pub fn tci(&self) -> u16 {
        (u16::from(self.pcp & 0x7) << 13) | (u16::from(self.dei) << 12) | (self.vid & 0x0fff)
    }

    /// Bytes the tag takes after the TPID.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the tag into a buffer of at least `buffer_len()` bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, header: &mut VlanHeader<T>) {
        header.set_tci(self.tci());
        header.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes = [0xa0, 0x0a, 0x08, 0x00, 0x45];
        let header = VlanHeader::new_checked(&bytes[..]).unwrap();
        let repr = VlanRepr::parse(&header);
        assert_eq!(
            repr,
            VlanRepr {
                vid: 10,
                pcp: 5,
                dei: false,
                ethertype: EtherType::Ipv4
            }
        );
        let mut out = [0u8; 5];
        out[4] = 0x45;
        repr.emit(&mut VlanHeader::new_unchecked(&mut out[..]));
        assert_eq!(out, bytes);
    }

    #[test]
    fn truncated() {
        assert!(VlanHeader::new_checked(&[0u8; 3][..]).is_err());
    }
}
