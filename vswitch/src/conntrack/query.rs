//! Requests to change or list the tracker from outside the datapath (the
//! controller's `sdn conntrack`, rule changes that cut connections).

use super::packet::Tuple;
use super::{ConnInfo, Conntrack, Counters};
use std::time::Instant;

/// Changes to the connection tracker (applied in this order) and what to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConntrackQuery {
    /// New maximum number of connections.
    pub set_capacity: Option<usize>,
    /// Zones to empty.
    pub flush_zones: Vec<u16>,
    /// Connections to forget: zone and the tuple of the first packet.
    pub remove: Vec<(u16, Tuple)>,
    /// List connections.
    pub list: bool,
    /// Only of this zone.
    pub zone: Option<u16>,
}

/// What the connection tracker holds after a query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConntrackReport {
    /// Connections listed.
    pub conns: Vec<ConnInfo>,
    /// Connections tracked.
    pub count: usize,
    /// Maximum.
    pub capacity: usize,
    /// Counters.
    pub counters: Counters,
    /// Connections the query removed.
    pub removed: usize,
}

impl Conntrack {
    /// Applies `query` and reports what is left.
    pub fn answer(&mut self, query: &ConntrackQuery, now: Instant) -> ConntrackReport {
        if let Some(capacity) = query.set_capacity {
            self.set_capacity(capacity);
        }
        let mut removed = 0;
        for &zone in &query.flush_zones {
            removed += self.flush(Some(zone));
        }
        for &(zone, orig) in &query.remove {
            removed += usize::from(self.remove(zone, orig));
        }
        ConntrackReport {
            conns: if query.list {
                self.list(query.zone, now)
            } else {
                Vec::new()
            },
            count: self.len(),
            capacity: self.capacity(),
            counters: self.counters(),
            removed,
        }
    }
}
