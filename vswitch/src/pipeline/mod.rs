//! The sans-IO switching core: frames and a clock in, forwarding decisions out.
//! A multi-table, OpenFlow-like pipeline (priority-ordered wildcard matching
//! per table, goto-table, per-entry counters, idle and hard timeouts) behind a
//! microflow cache keyed by the exact `FlowKey`, so that the cost of an
//! established flow does not grow with the number of entries. Any change to
//! the tables empties the cache.

mod flow_mod;
pub(crate) mod rewrite;
mod table;
mod timeouts;

use crate::classifier::RuleId;
use crate::flow::{
    Action, ActionError, Extracted, FlowKey, FlowStats, MatchError, PortNo, SetField,
};
use crate::learning::{L2Decision, MacLearning};
use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::hash_map::Entry as MapEntry;
use std::time::Instant;
use table::FlowTable;
use timeouts::Timer;

/// Number of flow tables.
pub const N_TABLES: u8 = 8;

/// Default maximum number of entries per table.
pub const DEFAULT_TABLE_CAPACITY: usize = 200_000;

/// The microflow cache is emptied when it reaches this many keys.
const CACHE_CAPACITY: usize = 65_536;

/// Why an entry left its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovedReason {
    /// No hit for its idle timeout.
    IdleTimeout,
    /// Its hard timeout passed.
    HardTimeout,
    /// A delete flow-mod.
    Delete,
}

/// An entry that left its table and asked to be reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRemoved {
    /// Why.
    pub reason: RemovedReason,
    /// The entry and its final counters.
    pub stats: FlowStats,
}

/// A flow-mod that cannot be applied; the tables are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowModError {
    /// The match breaks a prerequisite.
    #[error("bad match: {0}")]
    Match(#[from] MatchError),
    /// The action list is invalid.
    #[error("bad actions: {0}")]
    Action(#[from] ActionError),
    /// The table does not exist.
    #[error("table {table} does not exist (the switch has tables 0..{n_tables})")]
    NoSuchTable {
        /// Requested table.
        table: u8,
        /// Number of tables.
        n_tables: u8,
    },
    /// The table holds as many entries as it may.
    #[error("table {table} is full ({capacity} entries)")]
    TableFull {
        /// The table.
        table: u8,
        /// Its capacity.
        capacity: usize,
    },
}

/// Why a frame goes to the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketInReason {
    /// A `controller` action.
    Action,
    /// No entry matched (unused by the default table-miss behaviour, which drops).
    NoMatch,
}

/// A request to send (part of) a frame to the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInRequest {
    /// Why.
    pub reason: PacketInReason,
    /// Table of the entry that asked.
    pub table: u8,
    /// Cookie of the entry that asked.
    pub cookie: u64,
    /// Bytes to send (0 = whole frame).
    pub max_len: u16,
}

/// What to do with one frame. Reused between frames to avoid allocation.
#[derive(Debug, Default)]
pub struct Decision {
    /// Ports to send the frame (as rewritten) to, in order.
    pub outputs: Vec<PortNo>,
    /// Send a packet-in.
    pub controller: Option<PacketInRequest>,
    /// Rare: copies taken for outputs that came before a later rewrite.
    pub snapshots: Vec<(PortNo, Vec<u8>)>,
}

impl Decision {
    /// Empties the decision for the next frame.
    pub fn clear(&mut self) {
        self.outputs.clear();
        self.controller = None;
        self.snapshots.clear();
    }

    /// Whether the frame goes nowhere.
    pub fn is_drop(&self) -> bool {
        self.outputs.is_empty() && self.controller.is_none() && self.snapshots.is_empty()
    }
}

/// Facts about a frame besides its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMeta {
    /// Port it arrived on.
    pub in_port: PortNo,
    /// Wire packets it stands for (more than one for a TSO super-frame).
    pub segments: u32,
    /// Its L4 checksum field holds only the pseudo-header sum.
    pub partial_checksum: bool,
}

impl FrameMeta {
    /// A plain frame from `in_port`.
    pub fn plain(in_port: PortNo) -> FrameMeta {
        FrameMeta {
            in_port,
            segments: 1,
            partial_checksum: false,
        }
    }
}

/// Pipeline-wide counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PipelineCounters {
    /// Frames whose path came from the microflow cache.
    pub cache_hits: u64,
    /// Frames classified through the tables.
    pub cache_misses: u64,
    /// Frames no entry matched in some table (dropped).
    pub table_misses: u64,
    /// Frames shorter than an Ethernet header (dropped).
    pub runts: u64,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Output(PortNo),
    Flood,
    InPort,
    Normal,
    Controller(PacketInRequest),
    SetField(SetField),
}

/// The outcome of classifying one key: the entries it hit and what to do.
#[derive(Debug)]
struct CachedPath {
    hits: Vec<(u8, RuleId)>,
    steps: Vec<Step>,
    /// Some table had no matching entry (the frame stopped there).
    missed: bool,
}

/// The switching core of one switch.
#[derive(Debug)]
pub struct Pipeline {
    tables: Vec<FlowTable>,
    cache: FxHashMap<FlowKey, CachedPath>,
    timers: BinaryHeap<Reverse<Timer>>,
    next_seq: u64,
    ports: Vec<PortNo>,
    learning: MacLearning,
    counters: PipelineCounters,
    table_capacity: usize,
}

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline::new()
    }
}

impl Pipeline {
    /// An empty pipeline: every table empty, so every frame is dropped.
    pub fn new() -> Pipeline {
        Pipeline {
            tables: (0..N_TABLES).map(|_| FlowTable::default()).collect(),
            cache: FxHashMap::default(),
            timers: BinaryHeap::new(),
            next_seq: 0,
            ports: Vec::new(),
            learning: MacLearning::default(),
            counters: PipelineCounters::default(),
            table_capacity: DEFAULT_TABLE_CAPACITY,
        }
    }

    /// Limits the number of entries per table.
    pub fn set_table_capacity(&mut self, capacity: usize) {
        self.table_capacity = capacity;
    }

    /// The ports `flood` sends to (besides never the input port).
    pub fn set_ports(&mut self, ports: &[PortNo]) {
        self.ports = ports.to_vec();
        self.learning.clear();
    }

    /// Pipeline-wide counters.
    pub fn counters(&self) -> PipelineCounters {
        self.counters
    }

    /// Entries across all tables.
    pub fn flow_count(&self) -> usize {
        self.tables.iter().map(FlowTable::len).sum()
    }

    /// Addresses learned by the `NORMAL` action.
    pub fn learned_addresses(&self) -> usize {
        self.learning.len()
    }

    /// Decides what to do with `frame`, rewriting it in place if an action
    /// says so, and bumps the counters of the entries it hits.
    pub fn process(&mut self, frame: &mut [u8], meta: FrameMeta, now: Instant, out: &mut Decision) {
        out.clear();
        let Some(Extracted { key, layout }) = FlowKey::extract(frame, meta.in_port) else {
            self.counters.runts += 1;
            return;
        };
        let Pipeline {
            tables,
            cache,
            ports,
            learning,
            counters,
            ..
        } = self;
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        let path = match cache.entry(key) {
            MapEntry::Occupied(hit) => {
                counters.cache_hits += 1;
                hit.into_mut()
            }
            MapEntry::Vacant(miss) => {
                counters.cache_misses += 1;
                miss.insert(classify(tables, key))
            }
        };
        let bytes = frame.len() as u64;
        for &(table, id) in &path.hits {
            if let Some(entry) = tables[usize::from(table)].get_mut(id) {
                entry.packets += u64::from(meta.segments);
                entry.bytes += bytes;
                entry.last_used = now;
            }
        }
        run_steps(
            &path.steps,
            frame,
            &key,
            layout,
            meta,
            now,
            ports,
            learning,
            out,
        );
        if path.missed {
            counters.table_misses += 1;
        }
    }

    /// Runs an action list on a frame that did not come through the tables (a
    /// packet-out). `goto_table` is not allowed here and is ignored.
    pub fn execute_actions(
        &mut self,
        frame: &mut [u8],
        meta: FrameMeta,
        actions: &[Action],
        now: Instant,
        out: &mut Decision,
    ) {
        let steps: Vec<Step> = actions
            .iter()
            .filter_map(|a| match *a {
                Action::Output(p) => Some(Step::Output(p)),
                Action::Flood => Some(Step::Flood),
                Action::InPort => Some(Step::InPort),
                Action::Normal => Some(Step::Normal),
                Action::SetField(f) => Some(Step::SetField(f)),
                Action::Controller { max_len } => Some(Step::Controller(PacketInRequest {
                    reason: PacketInReason::Action,
                    table: 0,
                    cookie: u64::MAX,
                    max_len,
                })),
                Action::GotoTable(_) => None,
            })
            .collect();
        self.run_outside_tables(frame, meta, &steps, now, out);
    }

    /// Forwards a frame as a plain MAC-learning switch, bypassing the tables
    /// (fail-mode standalone without a controller).
    pub fn process_normal(
        &mut self,
        frame: &mut [u8],
        meta: FrameMeta,
        now: Instant,
        out: &mut Decision,
    ) {
        self.run_outside_tables(frame, meta, &[Step::Normal], now, out);
    }

    /// Runs `steps` on a frame without consulting the tables or the cache.
    fn run_outside_tables(
        &mut self,
        frame: &mut [u8],
        meta: FrameMeta,
        steps: &[Step],
        now: Instant,
        out: &mut Decision,
    ) {
        out.clear();
        let Some(Extracted { key, layout }) = FlowKey::extract(frame, meta.in_port) else {
            self.counters.runts += 1;
            return;
        };
        run_steps(
            steps,
            frame,
            &key,
            layout,
            meta,
            now,
            &self.ports,
            &mut self.learning,
            out,
        );
    }
}

fn flood(ports: &[PortNo], in_port: PortNo, outputs: &mut Vec<PortNo>) {
    outputs.extend(ports.iter().copied().filter(|&p| p != in_port));
}

/// Carries out the steps of a path on one frame.
#[allow(clippy::too_many_arguments)]
fn run_steps(
    steps: &[Step],
    frame: &mut [u8],
    key: &FlowKey,
    layout: crate::flow::Layout,
    meta: FrameMeta,
    now: Instant,
    ports: &[PortNo],
    learning: &mut MacLearning,
    out: &mut Decision,
) {
    for step in steps {
        match *step {
            Step::Output(port) => {
                if port != meta.in_port {
                    out.outputs.push(port);
                }
            }
            Step::Flood => flood(ports, meta.in_port, &mut out.outputs),
            Step::InPort => out.outputs.push(meta.in_port),
            Step::Controller(request) => out.controller = Some(request),
            Step::Normal => {
                let vlan = key.vlan_tci() & 0x0fff;
                match learning.forward(vlan, key.eth_src(), key.eth_dst(), meta.in_port, now) {
                    L2Decision::Port(port) => out.outputs.push(port),
                    L2Decision::Flood => flood(ports, meta.in_port, &mut out.outputs),
                    L2Decision::Drop => {}
                }
            }
            Step::SetField(field) => {
                if !out.outputs.is_empty() {
                    let copy = frame.to_vec();
                    for port in out.outputs.drain(..) {
                        out.snapshots.push((port, copy.clone()));
                    }
                }
                rewrite::apply(frame, key, layout, meta.partial_checksum, field);
            }
        }
    }
}

/// Walks the tables from table 0 for `key`.
fn classify(tables: &[FlowTable], mut key: FlowKey) -> CachedPath {
    let mut path = CachedPath {
        hits: Vec::new(),
        steps: Vec::new(),
        missed: false,
    };
    let mut table = 0u8;
    loop {
        let flow_table = &tables[usize::from(table)];
        let Some(id) = flow_table.lookup(&key) else {
            path.missed = true;
            return path;
        };
        let Some(entry) = flow_table.get(id) else {
            return path;
        };
        path.hits.push((table, id));
        let mut next = None;
        for action in &entry.spec.actions {
            match *action {
                Action::Output(port) => path.steps.push(Step::Output(port)),
                Action::Flood => path.steps.push(Step::Flood),
                Action::InPort => path.steps.push(Step::InPort),
                Action::Normal => path.steps.push(Step::Normal),
                Action::Controller { max_len } => {
                    path.steps.push(Step::Controller(PacketInRequest {
                        reason: PacketInReason::Action,
                        table,
                        cookie: entry.spec.cookie,
                        max_len,
                    }))
                }
                Action::SetField(field) => {
                    path.steps.push(Step::SetField(field));
                    rewrite::apply_to_key(&mut key, field);
                }
                Action::GotoTable(t) => next = Some(t),
            }
        }
        match next {
            Some(t) if t > table && t < N_TABLES => table = t,
            _ => return path,
        }
    }
}

#[cfg(test)]
mod tests;
