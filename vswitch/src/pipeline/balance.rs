//! The switch's load-balancing groups (in the spirit of OpenFlow select
//! groups and OVN's `ct_lb`): each holds a backend pool from `sdn_lb` and
//! the address and port of every backend. A `ct(...,nat(lb=G))` action
//! asks group G to pick a backend for a connection's first packet, and
//! conntrack DNATs that connection to it for its life. Groups are replaced
//! whole by the controller (a group-mod); tracked connections keep their
//! backends, only new ones see the new set.

use crate::conntrack::packet::Tuple;
use crate::conntrack::{LbMark, LiveCounts, Picked};
use crate::flow::action::Nat;
use rustc_hash::FxHashMap;
use sdn_lb::{Algorithm, Backend, BackendId, FlowTuple, NoHealthyBackends, Pool, Selection};
use std::net::Ipv4Addr;
use std::time::Duration;

/// One backend as the controller describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupBackend {
    /// Stable id within the group.
    pub id: u32,
    /// Where its connections go.
    pub addr: Ipv4Addr,
    /// Their destination port (`None`: the connection's own).
    pub port: Option<u16>,
    /// Relative weight.
    pub weight: u32,
    /// Whether it takes new connections by health.
    pub healthy: bool,
    /// Being removed: no new connections.
    pub draining: bool,
}

/// A whole group, as a group-mod carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    /// The group's number (`nat(lb=N)`).
    pub group: u32,
    /// Grows with each change; an older one than held is ignored.
    pub version: u64,
    /// How new connections pick.
    pub algorithm: Algorithm,
    /// What to do when no backend is healthy.
    pub no_healthy: NoHealthyBackends,
    /// The backends.
    pub backends: Vec<GroupBackend>,
    /// How long a connection may stay idle and keep its backend (`None`:
    /// the tracker's timeouts).
    pub idle_timeout: Option<Duration>,
}

impl GroupSpec {
    /// Whether `other` describes the same group, whatever its version.
    fn same_as(&self, other: &GroupSpec) -> bool {
        GroupSpec {
            version: other.version,
            ..self.clone()
        } == *other
    }
}

/// Why a group-mod was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// Two backends share an id.
    #[error("group {group}: backend id {id} appears twice")]
    DuplicateBackend {
        /// The group.
        group: u32,
        /// The id.
        id: u32,
    },
    /// The pool could not be built.
    #[error("group {group}: {reason}")]
    Pool {
        /// The group.
        group: u32,
        /// Why.
        reason: String,
    },
}

/// What applying a group-mod did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupApplied {
    /// Added or replaced.
    Installed,
    /// Older than the version held: left as it was.
    Stale,
}

/// A backend's counters in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackendStats {
    /// Connections sent to it since it joined the group.
    pub connections: u64,
}

#[derive(Debug)]
struct Group {
    spec: GroupSpec,
    pool: Pool,
    stats: FxHashMap<u32, BackendStats>,
}

/// Every load-balancing group of a switch.
#[derive(Debug, Default)]
pub struct Groups {
    groups: FxHashMap<u32, Group>,
    /// New connections for a group the switch does not hold.
    pub unknown_group: u64,
}

impl Groups {
    /// Adds or replaces a group at once.
    ///
    /// # Errors
    /// [`GroupError`] for a malformed set; the group is left as it was.
    pub fn apply(&mut self, spec: GroupSpec) -> Result<GroupApplied, GroupError> {
        if let Some(held) = self.groups.get(&spec.group)
            && held.spec.version > spec.version
        {
            return Ok(GroupApplied::Stale);
        }
        // Unchanged but for its version: the pool keeps its state (round
        // robin's place, Maglev's table).
        if let Some(held) = self.groups.get_mut(&spec.group)
            && held.spec.same_as(&spec)
        {
            held.spec.version = spec.version;
            return Ok(GroupApplied::Installed);
        }
        let mut ids: Vec<u32> = spec.backends.iter().map(|b| b.id).collect();
        ids.sort_unstable();
        if let Some(pair) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(GroupError::DuplicateBackend {
                group: spec.group,
                id: pair[0],
            });
        }
        let backends = spec
            .backends
            .iter()
            .map(|b| Backend {
                id: BackendId(b.id),
                // Address and port: a backend keeps its Maglev preferences
                // across replacements.
                key: (u64::from(u32::from(b.addr)) << 16) | u64::from(b.port.unwrap_or(0)),
                weight: b.weight,
                healthy: b.healthy,
                draining: b.draining,
            })
            .collect();
        let pool =
            Pool::new(spec.algorithm, spec.no_healthy, backends).map_err(|e| GroupError::Pool {
                group: spec.group,
                reason: e.to_string(),
            })?;
        let old_stats = self
            .groups
            .remove(&spec.group)
            .map(|g| g.stats)
            .unwrap_or_default();
        let stats = spec
            .backends
            .iter()
            .map(|b| (b.id, old_stats.get(&b.id).copied().unwrap_or_default()))
            .collect();
        self.groups.insert(spec.group, Group { spec, pool, stats });
        Ok(GroupApplied::Installed)
    }

    /// Removes a group; returns whether it was there. Its tracked
    /// connections keep their backends until they end.
    pub fn delete(&mut self, group: u32) -> bool {
        self.groups.remove(&group).is_some()
    }

    /// A group as last installed.
    pub fn spec(&self, group: u32) -> Option<&GroupSpec> {
        self.groups.get(&group).map(|g| &g.spec)
    }

    /// Every group's number, ascending.
    pub fn ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.groups.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// A backend's counters.
    pub fn stats(&self, group: u32, backend: u32) -> Option<BackendStats> {
        self.groups.get(&group)?.stats.get(&backend).copied()
    }

    /// The DNAT for a new connection of `group` whose first packet had
    /// `orig`, the mark to count it under and its idle timeout; `None` when
    /// the group is unknown or no backend takes new connections. Allocates
    /// nothing.
    pub fn pick(&mut self, group: u32, orig: Tuple, live: &LiveCounts) -> Option<Picked> {
        let Some(g) = self.groups.get_mut(&group) else {
            self.unknown_group += 1;
            return None;
        };
        let flow = FlowTuple {
            src_addr: orig.src,
            dst_addr: orig.dst,
            protocol: orig.proto,
            src_port: orig.sport,
            dst_port: orig.dport,
        };
        let Selection::Backend(BackendId(id)) = g.pool.select(&flow, |b| live.get(group, b.0))
        else {
            return None;
        };
        let backend = g.spec.backends.iter().find(|b| b.id == id)?;
        if let Some(stats) = g.stats.get_mut(&id) {
            stats.connections += 1;
        }
        Some(Picked {
            nat: Nat::Dst {
                addr: backend.addr,
                port: backend.port,
            },
            mark: LbMark { group, backend: id },
            idle: g.spec.idle_timeout,
        })
    }
}
