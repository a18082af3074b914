//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable
//! Software Network Load Balancer", NSDI 2016, §3.4): every backend walks its
//! own permutation of a prime-sized table and the backends take turns
//! claiming their next free slot, so each owns a near-equal share, and
//! removing one of N moves about 1/N of the slots. Weights give a backend as
//! many turns per round as its weight.
//!
//! The paper's permutations are arithmetic progressions, `offset + j * skip`
//! mod M. Any two of those are affine images of each other, and for some
//! pairs of backends the one's preferences run close behind the other's, so
//! that removing one moves more than 1% of flows beyond the other backends'
//! fair 1/N. Here a backend's j-th preference is
//! `offset + skip * (j + shift)^e` mod M, with `e` odd and prime to M - 1 (so
//! that the power is a permutation of the field, M being prime): still two
//! multiplications a step, without the linear structure that correlates
//! backends.

use crate::hash::backend_hashes;
use thiserror::Error;

/// Table size the Maglev paper uses: a prime well above any pool's size.
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;

/// Why a table could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MaglevError {
    /// The size is not a prime (each permutation must visit every slot).
    #[error("Maglev table size {size} is not a prime")]
    NotPrime {
        /// The size asked for.
        size: u32,
    },
    /// Fewer slots than backends (or more backends than an entry can name).
    #[error("Maglev table of {size} slots cannot hold {backends} backends")]
    TooManyBackends {
        /// The size asked for.
        size: u32,
        /// Backends given.
        backends: usize,
    },
}

/// A built lookup table: slot → index of a backend in the list it was built
/// from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaglevTable {
    entries: Box<[u16]>,
}

/// Whether `n` is a prime (trial division: tables are built rarely).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let n = u64::from(n);
    let mut d = 2u64;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

/// One backend's walk through its permutation of the slots.
#[derive(Debug, Clone, Copy)]
struct Walk {
    offset: u64,
    skip: u64,
    shift: u64,
    /// Preferences used so far.
    next: u64,
}

impl Walk {
    /// Its `next`-th preferred slot: `offset + skip * (next + shift)^e`
    /// mod `m`, a permutation of `0..m` as `next` runs over it.
    fn preference(&self, m: u64, exponent: u32) -> u64 {
        let x = (self.next + self.shift) % m;
        (self.offset + self.skip * power_mod(x, exponent, m)) % m
    }
}

/// `base^exponent mod m`, for `m` below 2^32 (products fit in 64 bits).
fn power_mod(base: u64, mut exponent: u32, m: u64) -> u64 {
    let (mut result, mut base) = (1 % m, base % m);
    while exponent > 0 {
        if exponent & 1 == 1 {
            result = result * base % m;
        }
        base = base * base % m;
        exponent >>= 1;
    }
    result
}

/// The smallest odd exponent from 3 up that is prime to `size - 1`: then
/// `x -> x^e` permutes the integers mod the prime `size`.
fn permutation_exponent(size: u32) -> u32 {
    let gcd = |mut a: u32, mut b: u32| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    (3..)
        .step_by(2)
        .find(|&e| gcd(e, size - 1) == 1)
        .unwrap_or(1)
}

impl MaglevTable {
    /// Builds the table for `backends`, each a stable key (the same backend
    /// keeps its key across rebuilds, so that it keeps its preferences) and a
    /// weight; backends of weight 0 get no slot. An empty list (or all
    /// weights 0) builds an empty table, where every lookup misses.
    ///
    /// # Errors
    /// [`MaglevError::NotPrime`] for a size that is not prime,
    /// [`MaglevError::TooManyBackends`] for more weighted backends than slots
    /// or than 65,535.
    pub fn build(backends: &[(u64, u32)], size: u32) -> Result<Self, MaglevError> {
        if !is_prime(size) {
            return Err(MaglevError::NotPrime { size });
        }
        let weighted = backends.iter().filter(|(_, w)| *w > 0).count();
        if weighted > size as usize || backends.len() > usize::from(u16::MAX) {
            return Err(MaglevError::TooManyBackends {
                size,
                backends: backends.len(),
            });
        }
        if weighted == 0 {
            return Ok(Self {
                entries: Box::new([]),
            });
        }
        let m = u64::from(size);
        let exponent = permutation_exponent(size);
        let mut walks: Vec<Walk> = backends
            .iter()
            .map(|(key, _)| {
                let (h1, h2, h3) = backend_hashes(*key);
                Walk {
                    offset: h1 % m,
                    skip: h2 % (m - 1) + 1,
                    shift: h3 % m,
                    next: 0,
                }
            })
            .collect();
        const FREE: u16 = u16::MAX;
        let mut entries = vec![FREE; size as usize].into_boxed_slice();
        let mut filled = 0u64;
        // Each pass, a backend gains its weight in credit and claims one slot
        // per `heaviest` it holds: the heaviest claim one slot a pass, the
        // others in proportion, interleaved, so that a table that fills up
        // mid-pass leaves no backend short by more than a slot.
        let heaviest = u64::from(backends.iter().map(|(_, w)| *w).max().unwrap_or(1));
        let mut credit = vec![0u64; backends.len()];
        'passes: loop {
            for (index, (_, weight)) in backends.iter().enumerate() {
                credit[index] += u64::from(*weight);
                if credit[index] < heaviest {
                    continue;
                }
                credit[index] -= heaviest;
                let walk = &mut walks[index];
                let mut slot = walk.preference(m, exponent);
                while entries[slot as usize] != FREE {
                    walk.next += 1;
                    slot = walk.preference(m, exponent);
                }
                entries[slot as usize] = index as u16;
                walk.next += 1;
                filled += 1;
                if filled == m {
                    break 'passes;
                }
            }
        }
        Ok(Self { entries })
    }

    /// The backend (an index into the list the table was built from) that a
    /// flow of hash `hash` goes to; `None` for an empty table.
    pub fn lookup(&self, hash: u64) -> Option<usize> {
        let len = self.entries.len() as u64;
        if len == 0 {
            return None;
        }
        Some(usize::from(self.entries[(hash % len) as usize]))
    }

    /// Number of slots (0 for an empty table).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table has no slots (no backends).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Slots each backend owns, by index.
    pub fn shares(&self, backends: usize) -> Vec<usize> {
        let mut counts = vec![0; backends];
        for &entry in self.entries.iter() {
            if let Some(count) = counts.get_mut(usize::from(entry)) {
                *count += 1;
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::mix64;
    use proptest::prelude::*;

    fn keys(n: u64) -> Vec<(u64, u32)> {
        (0..n).map(|i| (1000 + i, 1)).collect()
    }

    /// Fraction of the flow hash space (slots, exactly) whose backend, by
    /// key, differs between the two tables.
    fn moved(
        before: &MaglevTable,
        before_keys: &[(u64, u32)],
        after: &MaglevTable,
        after_keys: &[(u64, u32)],
    ) -> f64 {
        let moved = before
            .entries
            .iter()
            .zip(after.entries.iter())
            .filter(|(a, b)| before_keys[usize::from(**a)].0 != after_keys[usize::from(**b)].0)
            .count();
        moved as f64 / before.len() as f64
    }

    #[test]
    fn lookups_follow_the_slots() {
        let table = MaglevTable::build(&keys(3), 101).unwrap();
        for h in 0..500u64 {
            assert_eq!(
                table.lookup(h),
                Some(usize::from(table.entries[(h % 101) as usize]))
            );
        }
    }

    #[test]
    fn the_power_permutes_the_field() {
        for size in [2u32, 3, 5, 7, 13, 101, 65_537] {
            let e = permutation_exponent(size);
            let mut seen = vec![false; size as usize];
            for x in 0..u64::from(size) {
                seen[power_mod(x, e, u64::from(size)) as usize] = true;
            }
            assert!(seen.iter().all(|s| *s), "size {size}, exponent {e}");
        }
        assert_eq!(permutation_exponent(65_537), 3);
        assert_eq!(permutation_exponent(7), 5, "3 divides 6");
    }

    #[test]
    fn a_pair_of_correlated_backends_moves_no_more_than_its_share() {
        // With the paper's linear permutations these keys' first and
        // seventh backends shadow each other: removing either moved 13.6%
        // of flows among eight backends, 1.1% beyond 1/8.
        let before_keys: Vec<(u64, u32)> = (0..8).map(|i| (158_288 + i * 7919, 1)).collect();
        let before = MaglevTable::build(&before_keys, DEFAULT_TABLE_SIZE).unwrap();
        for removed in [0, 6] {
            let mut after_keys = before_keys.clone();
            after_keys.remove(removed);
            let after = MaglevTable::build(&after_keys, DEFAULT_TABLE_SIZE).unwrap();
            let fraction = moved(&before, &before_keys, &after, &after_keys);
            assert!(fraction <= 0.125 + 0.01, "moved {fraction:.4}");
        }
    }

    #[test]
    fn sizes_must_be_prime_and_hold_the_backends() {
        assert_eq!(
            MaglevTable::build(&keys(3), 65_536),
            Err(MaglevError::NotPrime { size: 65_536 })
        );
        assert_eq!(
            MaglevTable::build(&keys(8), 7),
            Err(MaglevError::TooManyBackends {
                size: 7,
                backends: 8
            })
        );
        assert!(is_prime(65_537) && is_prime(2) && !is_prime(1) && !is_prime(91));
    }

    #[test]
    fn an_empty_pool_builds_an_empty_table() {
        let table = MaglevTable::build(&[], DEFAULT_TABLE_SIZE).unwrap();
        assert!(table.is_empty());
        assert_eq!(table.lookup(7), None);
        let zero = MaglevTable::build(&[(1, 0)], DEFAULT_TABLE_SIZE).unwrap();
        assert_eq!(zero.lookup(7), None);
    }

    #[test]
    fn every_slot_is_filled_and_lookups_name_a_backend() {
        let table = MaglevTable::build(&keys(5), 101).unwrap();
        assert_eq!(table.len(), 101);
        assert_eq!(table.shares(5).iter().sum::<usize>(), 101);
        for h in 0..1000 {
            assert!(table.lookup(mix64(h)).unwrap() < 5);
        }
    }

    #[test]
    fn each_backend_owns_its_fair_share_within_one_percent() {
        for n in [2u64, 3, 5, 7, 10, 16, 33] {
            let table = MaglevTable::build(&keys(n), DEFAULT_TABLE_SIZE).unwrap();
            let fair = f64::from(DEFAULT_TABLE_SIZE) / n as f64;
            for share in table.shares(n as usize) {
                let off = (share as f64 - fair).abs() / f64::from(DEFAULT_TABLE_SIZE);
                assert!(off <= 0.01, "n={n}: share {share} vs fair {fair:.0}");
            }
        }
    }

    #[test]
    fn weights_give_proportional_shares() {
        let backends = [(1, 1), (2, 2), (3, 1)];
        let table = MaglevTable::build(&backends, DEFAULT_TABLE_SIZE).unwrap();
        let shares = table.shares(3);
        let m = f64::from(DEFAULT_TABLE_SIZE);
        for (share, expected) in shares.iter().zip([0.25, 0.5, 0.25]) {
            assert!((*share as f64 / m - expected).abs() <= 0.01, "{shares:?}");
        }
    }

    #[test]
    fn equal_weights_of_any_size_give_equal_shares() {
        for (n, weight) in [(100u64, 100u32), (400, 100), (700, 100), (2, 40_000)] {
            let backends: Vec<(u64, u32)> = (0..n).map(|i| (i * 7919 + 13, weight)).collect();
            let table = MaglevTable::build(&backends, DEFAULT_TABLE_SIZE).unwrap();
            let shares = table.shares(n as usize);
            let (low, high) = (
                shares.iter().min().copied().unwrap_or(0),
                shares.iter().max().copied().unwrap_or(0),
            );
            assert!(high - low <= 1, "n={n} weight={weight}: {low}..{high}");
        }
    }

    #[test]
    fn large_weights_keep_their_proportions() {
        let backends = [(1, 30), (2, 90), (3, 60)];
        let table = MaglevTable::build(&backends, DEFAULT_TABLE_SIZE).unwrap();
        let m = f64::from(DEFAULT_TABLE_SIZE);
        let shares = table.shares(3);
        for (share, expected) in shares.iter().zip([1.0 / 6.0, 0.5, 1.0 / 3.0]) {
            assert!((*share as f64 / m - expected).abs() <= 0.001, "{shares:?}");
        }
    }

    #[test]
    fn the_same_backends_build_the_same_table_in_any_order_of_rebuilds() {
        let a = MaglevTable::build(&keys(4), 1009).unwrap();
        let b = MaglevTable::build(&keys(4), 1009).unwrap();
        assert_eq!(a, b);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Removing one of N backends remaps at most 1/N + 1% of flows.
        #[test]
        fn removing_one_backend_moves_about_one_nth(n in 2u64..12, removed in 0u64..12, base in 0u64..1_000_000) {
            let removed = (removed % n) as usize;
            let before_keys: Vec<(u64, u32)> = (0..n).map(|i| (base + i * 7919, 1)).collect();
            let mut after_keys = before_keys.clone();
            after_keys.remove(removed);
            let before = MaglevTable::build(&before_keys, DEFAULT_TABLE_SIZE).unwrap();
            let after = MaglevTable::build(&after_keys, DEFAULT_TABLE_SIZE).unwrap();
            let fraction = moved(&before, &before_keys, &after, &after_keys);
            prop_assert!(fraction <= 1.0 / n as f64 + 0.01, "n={} moved {:.4}", n, fraction);
        }

        /// Adding one to N backends remaps at most 1/(N+1) + 1% of flows.
        #[test]
        fn adding_one_backend_moves_about_one_in_n_plus_one(n in 1u64..12, base in 0u64..1_000_000) {
            let before_keys: Vec<(u64, u32)> = (0..n).map(|i| (base + i * 7919, 1)).collect();
            let mut after_keys = before_keys.clone();
            after_keys.push((base + 99_991, 1));
            let before = MaglevTable::build(&before_keys, DEFAULT_TABLE_SIZE).unwrap();
            let after = MaglevTable::build(&after_keys, DEFAULT_TABLE_SIZE).unwrap();
            let fraction = moved(&before, &before_keys, &after, &after_keys);
            prop_assert!(fraction <= 1.0 / (n + 1) as f64 + 0.01, "n={} moved {:.4}", n, fraction);
        }
    }
}
