//! The session's seedable RNG (xorshift64*, seeded through SplitMix64):
//! SPIs, rekey jitter and back-off waits come from it, so that a session is
//! deterministic given its seed and the times it is called with. Key
//! material (nonces, Diffie-Hellman keys) comes from the system instead.

/// A small deterministic generator; not for secrets.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value, zero included).
    pub(crate) fn new(seed: u64) -> Rng {
        // SplitMix64 spreads nearby seeds apart and never yields zero here.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Rng(z | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    pub(crate) fn fraction(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A child SA SPI: not in 0..=255, which RFC 4303 §2.1 reserves.
    pub(crate) fn esp_spi(&mut self) -> u32 {
        loop {
            let spi = (self.next_u64() >> 32) as u32;
            if spi > 255 {
                return spi;
            }
        }
    }

    /// An IKE SPI: not zero.
    pub(crate) fn ike_spi(&mut self) -> u64 {
        loop {
            let spi = self.next_u64();
            if spi != 0 {
                return spi;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_sequence_and_values_stay_in_range() {
        let (mut a, mut b, mut c) = (Rng::new(7), Rng::new(7), Rng::new(8));
        let first: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        assert_eq!(first, (0..4).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert_ne!(first[0], c.next_u64());
        let mut zero = Rng::new(0);
        for _ in 0..1000 {
            let f = zero.fraction();
            assert!((0.0..1.0).contains(&f));
            assert!(zero.esp_spi() > 255);
            assert_ne!(zero.ike_spi(), 0);
        }
    }
}
