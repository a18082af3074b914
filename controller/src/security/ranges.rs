//! Port ranges as value/mask pairs, the way a flow matches them: the fewest
//! aligned power-of-two blocks that cover the range exactly.

use super::rules::PortRange;

/// The (value, mask) pairs covering `range`.
pub fn port_masks(range: PortRange) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let mut lo = u32::from(range.lo);
    let hi = u32::from(range.hi);
    while lo <= hi {
        // The largest aligned block starting at `lo` that stays inside.
        let mut size = if lo == 0 {
            1 << 16
        } else {
            1 << lo.trailing_zeros()
        };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        let mask = !(size - 1) as u16;
        out.push((lo as u16, mask));
        lo += size;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_ranges() {
        assert_eq!(port_masks(PortRange { lo: 80, hi: 80 }), vec![(80, 0xffff)]);
        assert_eq!(port_masks(PortRange::ANY), vec![(0, 0)]);
        assert_eq!(
            port_masks(PortRange { lo: 1024, hi: 2047 }),
            vec![(1024, 0xfc00)]
        );
        assert_eq!(port_masks(PortRange { lo: 1, hi: 65535 }).len(), 16);
    }

    proptest! {
        #[test]
        fn masks_cover_exactly_the_range(a: u16, b: u16, probe: u16) {
            let range = PortRange { lo: a.min(b), hi: a.max(b) };
            let masks = port_masks(range);
            prop_assert!(masks.len() <= 30);
            let hits = masks.iter().filter(|(v, m)| probe & m == *v).count();
            prop_assert_eq!(hits, usize::from(range.contains(probe)));
        }
    }
}
