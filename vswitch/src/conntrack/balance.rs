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

/// Live connections per backend.
#[derive(Debug, Default, Clone)]
pub struct LiveCounts {
    counts: FxHashMap<LbMark, u32>,
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

    pub(super) fn closed(&mut self, mark: LbMark) {
        if let Some(count) = self.counts.get_mut(&mark) {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(&mark);
            }
        }
    }
}

/// Picks the translation of a new balanced connection from its first
/// packet's tuple and the live counts: the DNAT to a backend and the mark
/// to count it under, or `None` when no backend takes it.
pub type Pick<'a> = &'a mut dyn FnMut(
    super::packet::Tuple,
    &LiveCounts,
) -> Option<(crate::flow::action::Nat, LbMark)>;
