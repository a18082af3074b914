//! What the tracker keeps for load balancing: which backend of which group
//! each balanced connection went to, and how many live connections each
//! backend holds (least connections reads them; `sdn conntrack` and
//! `sdn lb status` show them).

use rustc_hash::FxHashMap;

/// A balanced connection's group and backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LbMark {
    /// The load-balancing group.
    pub group: u32,
    /// The backend's id in that group.
    pub backend: u32,
}

/// Live connections per backend (a TCP connection stops counting when it
/// closes, before its entry goes), and the traffic of those that ended.
#[derive(Debug, Default, Clone)]
pub struct LiveCounts {
    counts: FxHashMap<LbMark, u32>,
    ended: FxHashMap<LbMark, Traffic>,
}

/// Packets and bytes, both directions together.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    /// Packets.
    pub packets: u64,
    /// Bytes of their IP datagrams.
    pub bytes: u64,
}

impl Traffic {
    pub(super) fn add(&mut self, other: Traffic) {
        self.packets += other.packets;
        self.bytes += other.bytes;
    }
}

impl LiveCounts {
    /// Connections tracked now for `backend` of `group`.
    pub fn get(&self, group: u32, backend: u32) -> u32 {
        self.counts
            .get(&LbMark { group, backend })
            .copied()
            .unwrap_or(0)
    }

    /// Every backend holding connections, with its count.
    pub fn iter(&self) -> impl Iterator<Item = (LbMark, u32)> + '_ {
        self.counts.iter().map(|(m, c)| (*m, *c))
    }

    pub(super) fn opened(&mut self, mark: LbMark) {
        *self.counts.entry(mark).or_default() += 1;
    }

    /// The traffic of `mark`'s connections that ended.
    pub(super) fn ended(&self) -> &FxHashMap<LbMark, Traffic> {
        &self.ended
    }

    pub(super) fn retire(&mut self, mark: LbMark, traffic: Traffic) {
        self.ended.entry(mark).or_default().add(traffic);
    }

    pub(super) fn closed(&mut self, mark: LbMark) {
        if let Some(count) = self.counts.get_mut(&mark) {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(&mark);
            }
        }
    }
}

/// What a group chose for a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Picked {
    /// The DNAT to the backend.
    pub nat: crate::flow::action::Nat,
    /// The group and backend to count it under.
    pub mark: LbMark,
    /// How long it may stay idle before it is forgotten (`None`: the
    /// tracker's timeouts for its state).
    pub idle: Option<std::time::Duration>,
}

/// Picks the translation of a new balanced connection from its first
/// packet's tuple and the live counts, or `None` when no backend takes it.
pub type Pick<'a> = &'a mut dyn FnMut(super::packet::Tuple, &LiveCounts) -> Option<Picked>;
