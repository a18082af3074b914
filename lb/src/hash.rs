//! The tuple a connection is balanced by and the hashes the algorithms take
//! of it: a 64-bit mix (SplitMix64's finalizer) over packed fields, so that
//! hashing a packet reads no memory beyond the tuple and allocates nothing.

use std::net::Ipv4Addr;

/// A connection's addresses, protocol and ports, as its first packet
/// carries them (the destination is the frontend).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowTuple {
    /// The client's address.
    pub src_addr: Ipv4Addr,
    /// The frontend address.
    pub dst_addr: Ipv4Addr,
    /// IP protocol number (6 TCP, 17 UDP).
    pub protocol: u8,
    /// The client's port.
    pub src_port: u16,
    /// The frontend port.
    pub dst_port: u16,
}

/// SplitMix64's finalizer: a bijection on 64 bits whose every output bit
/// depends on every input bit.
pub const fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Seeds that keep the hashes below independent of each other.
const SEED_FIVE_TUPLE: u64 = 0x6a09_e667_f3bc_c908;
const SEED_SOURCE: u64 = 0xbb67_ae85_84ca_a73b;
const SEED_SOURCE_PROTOCOL: u64 = 0x3c6e_f372_fe94_f82b;
const SEED_OFFSET: u64 = 0xa54f_f53a_5f1d_36f1;
const SEED_SKIP: u64 = 0x510e_527f_ade6_82d1;
const SEED_SHIFT: u64 = 0x1f83_d9ab_fb41_bd6b;

impl FlowTuple {
    /// Both addresses in one word.
    fn addresses(&self) -> u64 {
        (u64::from(u32::from(self.src_addr)) << 32) | u64::from(u32::from(self.dst_addr))
    }

    /// Hash of all five fields (Azure's default distribution).
    pub fn five_tuple_hash(&self) -> u64 {
        let ports = (u64::from(self.protocol) << 32)
            | (u64::from(self.src_port) << 16)
            | u64::from(self.dst_port);
        mix64(mix64(self.addresses() ^ SEED_FIVE_TUPLE) ^ ports)
    }

    /// Hash of the two addresses (Azure's "client IP" affinity): every
    /// connection of one client to one frontend hashes alike.
    pub fn source_hash(&self) -> u64 {
        mix64(self.addresses() ^ SEED_SOURCE)
    }

    /// Hash of the two addresses and the protocol (Azure's "client IP and
    /// protocol" affinity).
    pub fn source_protocol_hash(&self) -> u64 {
        mix64(mix64(self.addresses() ^ SEED_SOURCE_PROTOCOL) ^ u64::from(self.protocol))
    }
}

/// A backend's three Maglev hashes of its stable key: its permutation's
/// offset, step and shift.
pub fn backend_hashes(key: u64) -> (u64, u64, u64) {
    (
        mix64(key ^ SEED_OFFSET),
        mix64(key ^ SEED_SKIP),
        mix64(key ^ SEED_SHIFT),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(src_port: u16) -> FlowTuple {
        FlowTuple {
            src_addr: Ipv4Addr::new(198, 51, 100, 20),
            dst_addr: Ipv4Addr::new(203, 0, 113, 50),
            protocol: 6,
            src_port,
            dst_port: 80,
        }
    }

    #[test]
    fn mix64_is_known_splitmix_output() {
        // SplitMix64's first output for seed 0 is mix64(0x9e3779b97f4a7c15).
        assert_eq!(mix64(0x9e37_79b9_7f4a_7c15), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn source_hashes_ignore_ports_and_five_tuple_does_not() {
        let (a, b) = (tuple(40000), tuple(40001));
        assert_eq!(a.source_hash(), b.source_hash());
        assert_eq!(a.source_protocol_hash(), b.source_protocol_hash());
        assert_ne!(a.five_tuple_hash(), b.five_tuple_hash());
        let udp = FlowTuple { protocol: 17, ..a };
        assert_eq!(a.source_hash(), udp.source_hash());
        assert_ne!(a.source_protocol_hash(), udp.source_protocol_hash());
    }

    #[test]
    fn the_two_backend_hashes_differ() {
        let (offset, skip, shift) = backend_hashes(42);
        assert!(offset != skip && skip != shift && offset != shift);
        assert_ne!(backend_hashes(42), backend_hashes(43));
    }
}
