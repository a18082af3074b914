//! Flow-mod semantics (add, modify, delete; strict and wildcard; cookie and
//! out-port filters) and flow statistics.

use super::table::Entry;
use super::timeouts::{Timer, first_deadline};
use super::{FlowModError, FlowRemoved, N_TABLES, Pipeline, RemovedReason};
use crate::classifier::RuleId;
use crate::flow::{FlowMod, FlowModCommand, FlowStats, Match, action};
use std::cmp::Reverse;
use std::time::Instant;

impl Pipeline {
    /// Applies a flow-mod. Returns the removed entries that asked to be
    /// reported (deletes). The tables are unchanged on error.
    pub fn apply_flow_mod(
        &mut self,
        fm: &FlowMod,
        now: Instant,
    ) -> Result<Vec<FlowRemoved>, FlowModError> {
        let spec = &fm.spec;
        let any_table = fm.all_tables && !matches!(fm.command, FlowModCommand::Add);
        if spec.table >= N_TABLES && !any_table {
            return Err(FlowModError::NoSuchTable {
                table: spec.table,
                n_tables: N_TABLES,
            });
        }
        let mut removed = Vec::new();
        match fm.command {
            FlowModCommand::Add => {
                spec.matcher.validate()?;
                action::validate_actions(&spec.actions, spec.table, N_TABLES)?;
                let masked = spec.matcher.to_masked();
                let table = &mut self.tables[usize::from(spec.table)];
                if table.len() >= self.table_capacity
                    && table.find_strict(&masked, spec.priority).is_none()
                {
                    return Err(FlowModError::TableFull {
                        table: spec.table,
                        capacity: self.table_capacity,
                    });
                }
                let seq = self.next_seq;
                self.next_seq += 1;
                let (id, _replaced) = table.insert(Entry {
                    spec: spec.clone(),
                    masked,
                    seq,
                    installed: now,
                    last_used: now,
                    packets: 0,
                    bytes: 0,
                });
                if let Some(deadline) = first_deadline(spec, now, now) {
                    self.timers.push(Reverse(Timer {
                        deadline,
                        table: spec.table,
                        id,
                        seq,
                    }));
                }
            }
            FlowModCommand::Modify { strict } => {
                action::validate_actions(&spec.actions, spec.table, N_TABLES)?;
                for (table, id) in self.select(fm, strict) {
                    if let Some(entry) = self.tables[usize::from(table)].get_mut(id) {
                        entry.spec.actions = spec.actions.clone();
                    }
                }
            }
            FlowModCommand::Delete { strict } => {
                for (table, id) in self.select(fm, strict) {
                    if let Some(entry) = self.tables[usize::from(table)].remove(id)
                        && entry.spec.send_flow_removed
                    {
                        removed.push(FlowRemoved {
                            reason: RemovedReason::Delete,
                            stats: stats_of(&entry, now),
                        });
                    }
                }
            }
        }
        self.cache.clear();
        Ok(removed)
    }

    /// Entries a modify or delete applies to.
    fn select(&self, fm: &FlowMod, strict: bool) -> Vec<(u8, RuleId)> {
        let filter = fm.spec.matcher.to_masked();
        let cookie_ok =
            |e: &Entry| e.spec.cookie & fm.cookie_mask == fm.spec.cookie & fm.cookie_mask;
        let port_ok = |e: &Entry| {
            fm.out_port
                .is_none_or(|p| action::outputs_to(&e.spec.actions, p))
        };
        let tables: Vec<u8> = if fm.all_tables {
            (0..N_TABLES).collect()
        } else {
            vec![fm.spec.table]
        };
        let mut selected = Vec::new();
        for t in tables {
            let table = &self.tables[usize::from(t)];
            if strict {
                if let Some(id) = table.find_strict(&filter, fm.spec.priority)
                    && let Some(entry) = table.get(id)
                    && cookie_ok(entry)
                    && port_ok(entry)
                {
                    selected.push((t, id));
                }
                continue;
            }
            for id in table.ids() {
                if let Some(entry) = table.get(id)
                    && entry.masked.is_covered_by(&filter)
                    && cookie_ok(entry)
                    && port_ok(entry)
                {
                    selected.push((t, id));
                }
            }
        }
        selected
    }

    /// Statistics of the entries `filter` covers, in `table` or all tables,
    /// whose cookie matches under `cookie_mask`; ordered by table, then
    /// descending priority.
    pub fn flow_stats(
        &self,
        table: Option<u8>,
        filter: &Match,
        cookie: u64,
        cookie_mask: u64,
        now: Instant,
    ) -> Vec<FlowStats> {
        let filter = filter.to_masked();
        let mut out = Vec::new();
        for (t, flow_table) in self.tables.iter().enumerate() {
            if table.is_some_and(|wanted| usize::from(wanted) != t) {
                continue;
            }
            let mut entries: Vec<&Entry> = flow_table
                .ids()
                .filter_map(|id| flow_table.get(id))
                .filter(|e| {
                    e.masked.is_covered_by(&filter)
                        && e.spec.cookie & cookie_mask == cookie & cookie_mask
                })
                .collect();
            entries.sort_by_key(|e| (Reverse(e.spec.priority), e.seq));
            out.extend(entries.into_iter().map(|e| stats_of(e, now)));
        }
        out
    }
}

/// The statistics of an entry at `now`.
pub(super) fn stats_of(entry: &Entry, now: Instant) -> FlowStats {
    FlowStats {
        spec: entry.spec.clone(),
        duration: now.saturating_duration_since(entry.installed),
        idle_age: now.saturating_duration_since(entry.last_used),
        packets: entry.packets,
        bytes: entry.bytes,
    }
}
