//! A MAC-learning table per VLAN with aging: the brain of the `NORMAL` action,
//! which a switch in fail-mode `standalone` uses while it has no controller.

use crate::flow::PortNo;
use crate::wire::EthernetAddress;
use rustc_hash::FxHashMap;
use std::time::{Duration, Instant};

/// Default time a learned address is kept without traffic from it.
pub const DEFAULT_AGING: Duration = Duration::from_secs(300);

/// Default maximum number of learned addresses.
pub const DEFAULT_CAPACITY: usize = 8192;

/// Where a frame should go according to the learning table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L2Decision {
    /// To this port.
    Port(PortNo),
    /// To every port but the input port.
    Flood,
    /// Nowhere: the destination lives on the input port.
    Drop,
}

/// Learned (VLAN, address) → port bindings.
#[derive(Debug)]
pub struct MacLearning {
    entries: FxHashMap<(u16, EthernetAddress), (PortNo, Instant)>,
    aging: Duration,
    capacity: usize,
}

impl Default for MacLearning {
    fn default() -> Self {
        MacLearning::new(DEFAULT_AGING, DEFAULT_CAPACITY)
    }
}

impl MacLearning {
    /// A table that forgets addresses after `aging` and holds at most `capacity`.
    pub fn new(aging: Duration, capacity: usize) -> MacLearning {
        MacLearning {
            entries: FxHashMap::default(),
            aging,
            capacity,
        }
    }

    /// Number of learned addresses.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is learned.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Learns the source of a frame and decides where it goes.
    pub fn forward(
        &mut self,
        vlan: u16,
        src: EthernetAddress,
        dst: EthernetAddress,
        in_port: PortNo,
        now: Instant,
    ) -> L2Decision {
        if !src.is_multicast() {
            if self.entries.len() >= self.capacity && !self.entries.contains_key(&(vlan, src)) {
                self.expire(now);
            }
            if self.entries.len() < self.capacity || self.entries.contains_key(&(vlan, src)) {
                self.entries.insert((vlan, src), (in_port, now));
            }
        }
        if dst.is_multicast() {
            return L2Decision::Flood;
        }
        match self.entries.get(&(vlan, dst)) {
            Some(&(port, seen)) if now.saturating_duration_since(seen) < self.aging => {
                if port == in_port {
                    L2Decision::Drop
                } else {
                    L2Decision::Port(port)
                }
            }
            _ => L2Decision::Flood,
        }
    }

    /// Drops entries older than the aging time.
    pub fn expire(&mut self, now: Instant) {
        let aging = self.aging;
        self.entries
            .retain(|_, (_, seen)| now.saturating_duration_since(*seen) < aging);
    }

    /// Forgets everything learned on `port` (the port went away).
    pub fn forget_port(&mut self, port: PortNo) {
        self.entries.retain(|_, (p, _)| *p != port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::mac;

    #[test]
    fn learns_floods_and_ages() {
        let t0 = Instant::now();
        let mut l2 = MacLearning::new(Duration::from_secs(10), 16);
        assert_eq!(l2.forward(0, mac(1), mac(2), 1, t0), L2Decision::Flood);
        assert_eq!(l2.forward(0, mac(2), mac(1), 2, t0), L2Decision::Port(1));
        assert_eq!(l2.forward(0, mac(1), mac(2), 1, t0), L2Decision::Port(2));
        assert_eq!(l2.forward(0, mac(3), mac(2), 2, t0), L2Decision::Drop);
        assert_eq!(
            l2.forward(0, mac(1), EthernetAddress::BROADCAST, 1, t0),
            L2Decision::Flood
        );
        // Per VLAN: the same address in VLAN 10 is unknown.
        assert_eq!(l2.forward(10, mac(5), mac(2), 1, t0), L2Decision::Flood);
        // Aging.
        let later = t0 + Duration::from_secs(11);
        assert_eq!(l2.forward(0, mac(9), mac(2), 3, later), L2Decision::Flood);
        // A moved address follows its latest port.
        assert_eq!(l2.forward(0, mac(9), mac(1), 4, later), L2Decision::Flood);
        assert_eq!(l2.forward(0, mac(1), mac(9), 1, later), L2Decision::Port(4));
    }

    #[test]
    fn multicast_sources_are_not_learned_and_capacity_holds() {
        let t0 = Instant::now();
        let mut l2 = MacLearning::new(Duration::from_secs(10), 2);
        l2.forward(0, EthernetAddress::BROADCAST, mac(1), 1, t0);
        assert!(l2.is_empty());
        for n in 1..=5 {
            l2.forward(0, mac(n), mac(100), u32::from(n), t0);
        }
        assert_eq!(l2.len(), 2);
        l2.forget_port(1);
        assert_eq!(l2.len(), 1);
    }
}
