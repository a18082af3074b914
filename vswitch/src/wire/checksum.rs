//! Internet checksums (RFC 1071): plain, with pseudo-headers, and incremental
//! updates for rewritten fields (RFC 1624).

use std::net::{Ipv4Addr, Ipv6Addr};

/// Adds `data` as big-endian 16-bit words to a 32-bit accumulator. An odd
/// trailing byte is padded with zero (RFC 1071 §4.1).
///
/// The sum runs over 32-bit words in the machine's byte order into 64-bit
/// accumulators (no carries to chase for anything under 16 GiB), and is
/// byte-swapped once at the end: the ones' complement sum does not depend on
/// byte order except for that swap (RFC 1071 §2(B)).
pub fn accumulate(sum: u32, data: &[u8]) -> u32 {
    let mut lanes = [0u64; 4];
    let mut blocks = data.chunks_exact(16);
    for block in &mut blocks {
        for (lane, word) in lanes.iter_mut().zip(block.chunks_exact(4)) {
            *lane += u64::from(u32::from_ne_bytes([word[0], word[1], word[2], word[3]]));
        }
    }
    let rest = blocks.remainder();
    let mut words = rest.chunks_exact(4);
    for word in &mut words {
        lanes[0] += u64::from(u32::from_ne_bytes([word[0], word[1], word[2], word[3]]));
    }
    let wide = lanes.iter().fold(0u64, |a, &l| {
        let (s, carry) = a.overflowing_add(l);
        s + u64::from(carry)
    });
    // Down to 16 bits in machine order, then to network order.
    let mut folded = (wide & 0xffff_ffff) + (wide >> 32);
    folded = (folded & 0xffff) + (folded >> 16);
    folded = (folded & 0xffff) + (folded >> 16);
    folded = (folded & 0xffff) + (folded >> 16);
    // On a little-endian machine the native sum is the network sum swapped.
    let network = u16::from_be(folded as u16);
    let mut total = u32::from(fold(sum)) + u32::from(network);
    let tail = words.remainder();
    let mut pairs = tail.chunks_exact(2);
    for pair in &mut pairs {
        total += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = pairs.remainder() {
        total += u32::from(*last) << 8;
    }
    total
}

/// Folds a 32-bit accumulator into 16 bits with end-around carry.
pub fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The Internet checksum of `data`: the ones' complement of the ones'
/// complement sum.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(accumulate(0, data))
}

/// Sum of the IPv4 pseudo-header for TCP/UDP (RFC 793 §3.1, RFC 768).
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u32 {
    let mut sum = accumulate(0, &src.octets());
    sum = accumulate(sum, &dst.octets());
    sum + u32::from(protocol) + u32::from(length)
}

/// Sum of the IPv6 pseudo-header for upper-layer checksums (RFC 8200 §8.1).
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, length: u32) -> u32 {
    let mut sum = accumulate(0, &src.octets());
    sum = accumulate(sum, &dst.octets());
    sum = sum.wrapping_add(length >> 16).wrapping_add(length & 0xffff);
    sum + u32::from(next_header)
}

/// Updates `checksum` after a 16-bit word of the covered data changed from
/// `old` to `new` (RFC 1624 §3, eqn. 3: HC' = ~(~HC + ~m + m')).
pub fn update_word(checksum: u16, old: u16, new: u16) -> u16 {
    let sum = u32::from(!checksum) + u32::from(!old) + u32::from(new);
    !fold(sum)
}

/// Updates `checksum` after `old` bytes of the covered data became `new`. Both
/// slices have the same even length and start at an even offset of the data.
pub fn update_bytes(mut checksum: u16, old: &[u8], new: &[u8]) -> u16 {
    debug_assert_eq!(old.len(), new.len());
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        checksum = update_word(
            checksum,
            u16::from_be_bytes([o[0], o[1]]),
            u16::from_be_bytes([n[0], n[1]]),
        );
    }
    checksum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(accumulate(0, &data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn known_ipv4_header() {
        // A captured IPv4 header whose checksum field (bytes 10..12) is 0xb861.
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&header), 0, "a valid header sums to zero");
        header[10] = 0;
        header[11] = 0;
        assert_eq!(checksum(&header), 0xb861);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(accumulate(0, &[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
    }

    #[test]
    fn incremental_update_matches_recomputation() {
        let mut data = [
            0x45u8, 0x00, 0x00, 0x73, 0x12, 0x34, 0xab, 0xcd, 0x0a, 0x00, 0x00, 0x01,
        ];
        let before = checksum(&data);
        let old = [data[8], data[9], data[10], data[11]];
        let new = [0xc0, 0xa8, 0x01, 0x02];
        data[8..12].copy_from_slice(&new);
        assert_eq!(update_bytes(before, &old, &new), checksum(&data));
    }

    /// The plain RFC 1071 loop the fast sum must agree with.
    fn reference(sum: u32, data: &[u8]) -> u16 {
        let mut sum = u64::from(sum);
        let mut pairs = data.chunks_exact(2);
        for pair in &mut pairs {
            sum += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        if let [last] = pairs.remainder() {
            sum += u64::from(*last) << 8;
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    proptest::proptest! {
        #[test]
        fn fast_sum_matches_the_plain_loop(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            start in proptest::prelude::any::<u32>(),
        ) {
            proptest::prop_assert_eq!(fold(accumulate(start, &data)), reference(start, &data));
        }
    }

    #[test]
    fn long_data_does_not_overflow() {
        let data = vec![0xffu8; 200_000];
        assert_eq!(fold(accumulate(0, &data)), 0xffff);
    }
}
