//! Priority-ordered wildcard matching by tuple space search (as Open vSwitch's
//! `lib/classifier.c`): entries are grouped by mask into subtables, each a hash
//! map from masked key to entries; a lookup probes subtables in order of their
//! highest priority and stops as soon as no remaining subtable can win.
//! Ties in priority go to the entry inserted first (lowest sequence number).

use crate::flow::{FlowKey, MaskedKey};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

/// Identifies an entry to its owner (the flow table's slot index).
pub type RuleId = u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Candidate {
    priority: u16,
    seq: u64,
    id: RuleId,
}

impl Candidate {
    /// Higher priority wins; among equals, the older entry.
    fn beats(&self, other: &Candidate) -> bool {
        self.priority > other.priority || (self.priority == other.priority && self.seq < other.seq)
    }
}

#[derive(Debug)]
struct Subtable {
    mask: FlowKey,
    /// Entries by masked value, best first.
    buckets: FxHashMap<FlowKey, Vec<Candidate>>,
    /// How many entries have each priority, to know the maximum cheaply.
    priorities: BTreeMap<u16, u32>,
}

impl Subtable {
    fn max_priority(&self) -> u16 {
        self.priorities.keys().next_back().copied().unwrap_or(0)
    }
}

/// The classifier of one flow table.
#[derive(Debug, Default)]
pub struct Classifier {
    /// Sorted by descending maximum priority.
    subtables: Vec<Subtable>,
    len: usize,
}

impl Classifier {
    /// An empty classifier.
    pub fn new() -> Classifier {
        Classifier::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of distinct masks (subtables probed by a full lookup).
    pub fn subtable_count(&self) -> usize {
        self.subtables.len()
    }

    /// Adds an entry. `seq` orders entries of equal priority (lower wins) and
    /// must be unique.
    pub fn insert(&mut self, matcher: &MaskedKey, priority: u16, seq: u64, id: RuleId) {
        let index = match self.subtables.iter().position(|s| s.mask == matcher.mask) {
            Some(i) => i,
            None => {
                self.subtables.push(Subtable {
                    mask: matcher.mask,
                    buckets: FxHashMap::default(),
                    priorities: BTreeMap::new(),
                });
                self.subtables.len() - 1
            }
        };
        let subtable = &mut self.subtables[index];
        let candidate = Candidate { priority, seq, id };
        let bucket = subtable.buckets.entry(matcher.value).or_default();
        let at = bucket
            .iter()
            .position(|c| candidate.beats(c))
            .unwrap_or(bucket.len());
        bucket.insert(at, candidate);
        *subtable.priorities.entry(priority).or_insert(0) += 1;
        self.len += 1;
        self.sort_subtables();
    }

    /// Removes an entry; returns whether it was present.
    pub fn remove(&mut self, matcher: &MaskedKey, id: RuleId) -> bool {
        let Some(index) = self.subtables.iter().position(|s| s.mask == matcher.mask) else {
            return false;
        };
        let subtable = &mut self.subtables[index];
        let Some(bucket) = subtable.buckets.get_mut(&matcher.value) else {
            return false;
        };
        let Some(at) = bucket.iter().position(|c| c.id == id) else {
            return false;
        };
        let removed = bucket.remove(at);
        if bucket.is_empty() {
            subtable.buckets.remove(&matcher.value);
        }
        if let Some(count) = subtable.priorities.get_mut(&removed.priority) {
            *count -= 1;
            if *count == 0 {
                subtable.priorities.remove(&removed.priority);
            }
        }
        if subtable.buckets.is_empty() {
            self.subtables.remove(index);
        }
        self.len -= 1;
        self.sort_subtables();
        true
    }

    fn sort_subtables(&mut self) {
        self.subtables
            .sort_by_key(|s| std::cmp::Reverse(s.max_priority()));
    }

    /// The best entry matching `key`.
    pub fn lookup(&self, key: &FlowKey) -> Option<RuleId> {
        let mut best: Option<Candidate> = None;
        for subtable in &self.subtables {
            if let Some(b) = best
                && b.priority > subtable.max_priority()
            {
                // Subtables are in descending priority order: nothing later can win.
                break;
            }
            let masked = key.masked(&subtable.mask);
            if let Some(candidate) = subtable.buckets.get(&masked).and_then(|b| b.first())
                && best.is_none_or(|b| candidate.beats(&b))
            {
                best = Some(*candidate);
            }
        }
        best.map(|c| c.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{IpPrefix, MacMatch, Match};
    use crate::testutil::mac;
    use proptest::prelude::*;

    struct Rule {
        masked: MaskedKey,
        priority: u16,
        seq: u64,
        id: RuleId,
    }

    /// The reference: scan every rule, keep the best.
    fn linear_lookup(rules: &[Rule], key: &FlowKey) -> Option<RuleId> {
        let mut best: Option<&Rule> = None;
        for rule in rules.iter().filter(|r| r.masked.matches(key)) {
            let better = match best {
                None => true,
                Some(b) => {
                    rule.priority > b.priority || (rule.priority == b.priority && rule.seq < b.seq)
                }
            };
            if better {
                best = Some(rule);
            }
        }
        best.map(|r| r.id)
    }

    /// Small value domains so that random rules and keys actually collide.
    fn arb_match() -> impl Strategy<Value = Match> {
        (
            proptest::option::of(1u32..4),
            proptest::option::of(1u8..4),
            proptest::option::of(1u8..4),
            proptest::option::of(prop_oneof![Just(0x0800u16), Just(0x86dd)]),
            proptest::option::of((0u8..4, prop_oneof![Just(8u8), Just(24), Just(32)])),
            proptest::option::of(prop_oneof![Just(6u8), Just(17)]),
            proptest::option::of(79u16..82),
        )
            .prop_map(
                |(in_port, src, dst, eth_type, ip_dst, proto, tp_dst)| Match {
                    in_port,
                    eth_src: src.map(|n| MacMatch::exact(mac(n))),
                    eth_dst: dst.map(|n| {
                        if n == 3 {
                            MacMatch::multicast()
                        } else {
                            MacMatch::exact(mac(n))
                        }
                    }),
                    eth_type,
                    ip_dst: ip_dst.map(|(host, len)| IpPrefix {
                        addr: std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, host % 2, host)),
                        len,
                    }),
                    ip_proto: proto,
                    tp_dst,
                    ..Match::default()
                },
            )
    }

    fn arb_key() -> impl Strategy<Value = FlowKey> {
        (
            1u32..4,
            1u8..4,
            1u8..4,
            prop_oneof![Just(0x0800u16), Just(0x86dd)],
            0u8..4,
            prop_oneof![Just(6u8), Just(17)],
            79u16..82,
        )
            .prop_map(|(in_port, src, dst, eth_type, host, proto, tp_dst)| {
                let mut key = FlowKey::default();
                key.set_in_port(in_port);
                key.set_eth_src(mac(src));
                key.set_eth_dst(if dst == 3 {
                    crate::wire::EthernetAddress::BROADCAST
                } else {
                    mac(dst)
                });
                key.set_eth_type(eth_type);
                key.set_ip_dst_bits(u128::from(u32::from(std::net::Ipv4Addr::new(
                    10,
                    0,
                    host % 2,
                    host,
                ))));
                key.set_ip_proto(proto);
                key.set_tp_dst(tp_dst);
                key
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// The classifier agrees with a linear scan, also after removals.
        #[test]
        fn agrees_with_linear_scan(
            matches in proptest::collection::vec((arb_match(), 0u16..5), 0..40),
            keys in proptest::collection::vec(arb_key(), 1..40),
            removals in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
        ) {
            let mut classifier = Classifier::new();
            let mut rules: Vec<Rule> = Vec::new();
            for (seq, (m, priority)) in matches.iter().enumerate() {
                let masked = m.to_masked();
                classifier.insert(&masked, *priority, seq as u64, seq as RuleId);
                rules.push(Rule { masked, priority: *priority, seq: seq as u64, id: seq as RuleId });
            }
            for key in &keys {
                prop_assert_eq!(classifier.lookup(key), linear_lookup(&rules, key));
            }
            for index in removals {
                if rules.is_empty() { break; }
                let rule = rules.remove(index.index(rules.len()));
                prop_assert!(classifier.remove(&rule.masked, rule.id));
                prop_assert_eq!(classifier.len(), rules.len());
                for key in &keys {
                    prop_assert_eq!(classifier.lookup(key), linear_lookup(&rules, key));
                }
            }
        }
    }

    #[test]
    fn priority_then_age() {
        let mut c = Classifier::new();
        let any = Match::default().to_masked();
        let by_port = Match {
            in_port: Some(1),
            ..Match::default()
        }
        .to_masked();
        c.insert(&any, 10, 0, 100);
        c.insert(&by_port, 10, 1, 101);
        let mut key = FlowKey::default();
        key.set_in_port(1);
        assert_eq!(
            c.lookup(&key),
            Some(100),
            "equal priority: the older entry wins"
        );
        c.insert(&by_port, 11, 2, 102);
        assert_eq!(c.lookup(&key), Some(102));
        assert!(c.remove(&by_port, 102));
        assert!(!c.remove(&by_port, 102));
        assert_eq!(c.lookup(&key), Some(100));
        assert_eq!(c.len(), 2);
        key.set_in_port(2);
        assert_eq!(c.lookup(&key), Some(100));
    }
}
