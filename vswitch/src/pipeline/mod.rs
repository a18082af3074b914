//! The sans-IO switching core: frames and a clock in, forwarding decisions out.
//! A multi-table, OpenFlow-like pipeline (priority-ordered wildcard matching
//! per table, goto-table, per-entry counters, idle and hard timeouts) behind a
//! microflow cache keyed by the exact `FlowKey`, so that the cost of an
//! established flow does not grow with the number of entries. Any change to
//! the tables empties the cache.

pub mod balance;
mod execute;
mod flow_mod;
pub(crate) mod rewrite;
pub(crate) mod router_ops;
mod table;
mod timeouts;

pub use execute::{FrameBuf, Output, OwnedFrame, TunnelMeta, TunnelTarget};

use crate::classifier::RuleId;
use crate::conntrack::{Conntrack, LiveCounts, Translation, Verdict, state as ct_state, translate};
use crate::flow::action::Nat;
use crate::flow::{
    Action, ActionError, Extracted, FlowKey, FlowStats, MatchError, PortNo, SetField,
};
use crate::learning::MacLearning;
use execute::{Context, Ran, RouterState, Step, apply_to_key, run_steps};
use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::hash_map::Entry as MapEntry;
use std::time::Instant;
use table::FlowTable;
use timeouts::Timer;

/// Number of flow tables.
pub const N_TABLES: u8 = 32;

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
    /// Where to send the frame (as rewritten), in order.
    pub outputs: Vec<Output>,
    /// Send a packet-in.
    pub controller: Option<PacketInRequest>,
    /// Rare: copies taken for outputs that came before a later rewrite.
    pub snapshots: Vec<(Output, Vec<u8>)>,
    /// Rare: the frame as it was when the controller action ran, if later
    /// steps changed it (the packet-in carries this, not the final frame).
    pub controller_frame: Option<Vec<u8>>,
    /// Rare: frames the switch made itself (ICMP errors), to send as they
    /// are (no offload metadata).
    pub generated: Vec<(Output, Vec<u8>)>,
    /// The frame's outputs carry IPv4 fragments of at most this size (its
    /// datagram is bigger and may be fragmented).
    pub fragment_mtu: Option<u16>,
}

impl Decision {
    /// Empties the decision for the next frame.
    pub fn clear(&mut self) {
        self.outputs.clear();
        self.controller = None;
        self.controller_frame = None;
        self.snapshots.clear();
        self.generated.clear();
        self.fragment_mtu = None;
    }

    /// Whether the frame goes nowhere.
    pub fn is_drop(&self) -> bool {
        self.outputs.is_empty()
            && self.controller.is_none()
            && self.snapshots.is_empty()
            && self.generated.is_empty()
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
    /// It came out of a tunnel.
    pub tunnel: Option<TunnelMeta>,
    /// For a TSO super-frame: the payload bytes of each segment (0: not one).
    pub gso_size: u16,
}

impl FrameMeta {
    /// A plain frame from `in_port`.
    pub fn plain(in_port: PortNo) -> FrameMeta {
        FrameMeta {
            in_port,
            segments: 1,
            partial_checksum: false,
            tunnel: None,
            gso_size: 0,
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
    /// Frames dropped because a tag could not be pushed (no room in front).
    pub no_headroom: u64,
    /// ICMP errors the switch sent as a router.
    pub icmp_sent: u64,
    /// ICMP errors not sent because of the rate limits.
    pub icmp_limited: u64,
    /// Routed packets whose TTL ran out.
    pub ttl_expired: u64,
    /// Routed packets too big for the next hop with DF set.
    pub too_big: u64,
}

/// The outcome of classifying one key: the entries it hit and what to do.
#[derive(Debug)]
struct CachedPath {
    hits: Vec<(u8, RuleId)>,
    steps: Vec<Step>,
    /// Some table had no matching entry (the frame stopped there).
    missed: bool,
    /// For a path that ends in `ct`: the key as the steps left it.
    exit_key: FlowKey,
    /// The steps move the frame's layers (a VLAN push or pop).
    moves_layers: bool,
}

/// Most passes a frame makes through the tables (each `ct` starts one; as
/// `ct` only goes to later tables, there can be no more than the tables).
const MAX_PASSES: usize = N_TABLES as usize;

/// The switching core of one switch.
#[derive(Debug)]
pub struct Pipeline {
    tables: Vec<FlowTable>,
    cache: FxHashMap<FlowKey, CachedPath>,
    timers: BinaryHeap<Reverse<Timer>>,
    next_seq: u64,
    ports: Vec<PortNo>,
    learning: MacLearning,
    conntrack: Conntrack,
    router: RouterState,
    groups: balance::Groups,
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
            conntrack: Conntrack::default(),
            router: RouterState::default(),
            groups: balance::Groups::default(),
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
        PipelineCounters {
            icmp_sent: self.router.icmp_sent,
            icmp_limited: self.router.icmp_limited,
            ttl_expired: self.router.ttl_expired,
            too_big: self.router.too_big,
            ..self.counters
        }
    }

    /// Entries across all tables.
    pub fn flow_count(&self) -> usize {
        self.tables.iter().map(FlowTable::len).sum()
    }

    /// Addresses learned by the `NORMAL` action.
    pub fn learned_addresses(&self) -> usize {
        self.learning.len()
    }

    /// The connection tracker.
    pub fn conntrack(&self) -> &Conntrack {
        &self.conntrack
    }

    /// The connection tracker, to change.
    pub fn conntrack_mut(&mut self) -> &mut Conntrack {
        &mut self.conntrack
    }

    /// The load-balancing groups.
    pub fn groups(&self) -> &balance::Groups {
        &self.groups
    }

    /// The load-balancing groups, to install or remove one.
    pub fn groups_mut(&mut self) -> &mut balance::Groups {
        &mut self.groups
    }

    /// Decides what to do with `frame`, rewriting it in place if an action
    /// says so, and bumps the counters of the entries it hits.
    pub fn process(
        &mut self,
        frame: &mut dyn FrameBuf,
        meta: FrameMeta,
        now: Instant,
        out: &mut Decision,
    ) {
        out.clear();
        let Some(key_and_layout) = extract(frame, &meta) else {
            self.counters.runts += 1;
            return;
        };
        let Extracted {
            mut key,
            mut layout,
        } = key_and_layout;
        let Pipeline {
            tables,
            cache,
            ports,
            learning,
            conntrack,
            router,
            groups,
            counters,
            ..
        } = self;
        let bytes = frame.bytes().len() as u64;
        let mut start = 0u8;
        for _ in 0..MAX_PASSES {
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
                    miss.insert(classify(tables, key, start))
                }
            };
            for &(table, id) in &path.hits {
                if let Some(entry) = tables[usize::from(table)].get_mut(id) {
                    entry.packets += u64::from(meta.segments);
                    entry.bytes += bytes;
                    entry.last_used = now;
                }
            }
            let cx = Context {
                key: &key,
                layout,
                meta,
                now,
                ports,
                learning,
                router,
            };
            match run_steps(&path.steps, frame, cx, out) {
                Ran::Done => {}
                Ran::Stopped => return,
                Ran::NoHeadroom => {
                    counters.no_headroom += 1;
                    return;
                }
            }
            if path.missed {
                counters.table_misses += 1;
            }
            let Some(&Step::Ct {
                zone,
                commit,
                table,
                nat,
            }) = path.steps.last()
            else {
                return;
            };
            let exit_key = path.exit_key;
            if path.moves_layers {
                match FlowKey::extract(frame.bytes(), meta.in_port) {
                    Some(again) => layout = again.layout,
                    None => return,
                }
            }
            key = exit_key;
            let earlier = key.ct_state();
            let state = if key.eth_type() == 0x0800 && layout.l3 != 0 {
                let l3_at = usize::from(layout.l3);
                let verdict = match frame.bytes().get(l3_at..) {
                    Some(l3)
                        if nat.is_none()
                            && commit
                            && earlier & ct_state::TRK != 0
                            && key.ct_zone() == zone =>
                    {
                        // An earlier pass tracked this packet in this zone.
                        Verdict {
                            bits: conntrack.commit_tracked(l3, zone, earlier, now),
                            translation: None,
                        }
                    }
                    Some(l3) => match nat {
                        Some(Nat::Balance { group }) => {
                            let mut pick = |orig, live: &LiveCounts| groups.pick(group, orig, live);
                            conntrack.track_balanced(l3, zone, commit, group, &mut pick, now)
                        }
                        _ => conntrack.track_nat(l3, zone, commit, nat, now),
                    },
                    None => Verdict {
                        bits: ct_state::TRK | ct_state::INV,
                        translation: None,
                    },
                };
                if let Some(translation) = verdict.translation {
                    // Outputs taken before keep the frame as it was.
                    execute::snapshot(frame, out);
                    if let Some(l3) = frame.bytes().get_mut(l3_at..) {
                        translate::apply(l3, &translation, meta.partial_checksum);
                    }
                    translated_key(&mut key, &translation);
                }
                verdict.bits
            } else {
                ct_state::TRK | ct_state::INV
            };
            key.set_ct_state(state);
            key.set_ct_zone(zone);
            key.set_recirc(table);
            start = table;
        }
    }

    /// Runs an action list on a frame that did not come through the tables (a
    /// packet-out). `goto_table` is not allowed here and is ignored.
    pub fn execute_actions(
        &mut self,
        frame: &mut dyn FrameBuf,
        meta: FrameMeta,
        actions: &[Action],
        now: Instant,
        out: &mut Decision,
    ) {
        let steps: Vec<Step> = actions
            .iter()
            .filter_map(|a| step_of(a, 0, u64::MAX))
            .collect();
        self.run_outside_tables(frame, meta, &steps, now, out);
    }

    /// Forwards a frame as a plain MAC-learning switch, bypassing the tables
    /// (fail-mode standalone without a controller).
    pub fn process_normal(
        &mut self,
        frame: &mut dyn FrameBuf,
        meta: FrameMeta,
        now: Instant,
        out: &mut Decision,
    ) {
        self.run_outside_tables(frame, meta, &[Step::Normal], now, out);
    }

    /// Runs `steps` on a frame without consulting the tables or the cache.
    fn run_outside_tables(
        &mut self,
        frame: &mut dyn FrameBuf,
        meta: FrameMeta,
        steps: &[Step],
        now: Instant,
        out: &mut Decision,
    ) {
        out.clear();
        let Some(Extracted { key, layout }) = extract(frame, &meta) else {
            self.counters.runts += 1;
            return;
        };
        let cx = Context {
            key: &key,
            layout,
            meta,
            now,
            ports: &self.ports,
            learning: &mut self.learning,
            router: &mut self.router,
        };
        if run_steps(steps, frame, cx, out) == Ran::NoHeadroom {
            self.counters.no_headroom += 1;
        }
    }
}

/// The key of a frame after NAT rewrote its addresses (and ports), for the
/// tables of the next pass.
fn translated_key(key: &mut FlowKey, translation: &Translation) {
    match *translation {
        Translation::Packet { to } => {
            key.set_ip_src_bits(u128::from(u32::from(to.src)));
            key.set_ip_dst_bits(u128::from(u32::from(to.dst)));
            if matches!(key.ip_proto(), 6 | 17) {
                key.set_tp_src(to.sport);
                key.set_tp_dst(to.dport);
            }
        }
        Translation::Error {
            outer_src,
            outer_dst,
            ..
        } => {
            key.set_ip_src_bits(u128::from(u32::from(outer_src)));
            key.set_ip_dst_bits(u128::from(u32::from(outer_dst)));
        }
    }
}

/// The key of a frame, with the tunnel it came out of.
fn extract(frame: &mut dyn FrameBuf, meta: &FrameMeta) -> Option<Extracted> {
    let mut extracted = FlowKey::extract(frame.bytes(), meta.in_port)?;
    if let Some(tunnel) = meta.tunnel {
        extracted.key.set_tunnel_id(u64::from(tunnel.vni));
        extracted.key.set_tunnel_src(tunnel.src);
    }
    Some(extracted)
}

/// The step an action becomes (`None` for goto-table, which is not a step).
fn step_of(action: &Action, table: u8, cookie: u64) -> Option<Step> {
    Some(match *action {
        Action::Output(port) => Step::Output(port),
        Action::Flood => Step::Flood,
        Action::InPort => Step::InPort,
        Action::Normal => Step::Normal,
        Action::Controller { max_len } => Step::Controller(PacketInRequest {
            reason: PacketInReason::Action,
            table,
            cookie,
            max_len,
        }),
        Action::SetField(field) => Step::SetField(field),
        Action::PushVlan(tci) => Step::PushVlan(tci),
        Action::PopVlan => Step::PopVlan,
        Action::Ct {
            zone,
            commit,
            table,
            nat,
        } => Step::Ct {
            zone,
            commit,
            table,
            nat,
        },
        Action::WriteMetadata(value) => Step::WriteMetadata(value),
        Action::DecTtl { icmp_src } => Step::DecTtl { icmp_src },
        Action::CheckMtu { mtu, icmp_src } => Step::CheckMtu { mtu, icmp_src },
        Action::IcmpUnreachable { code, icmp_src } => Step::IcmpUnreachable { code, icmp_src },
        Action::ArpReply(mac) => Step::ArpReply(mac),
        Action::IcmpEchoReply => Step::IcmpEchoReply,
        Action::GotoTable(_) => return None,
    })
}

/// Walks the tables from table `start` for `key`, up to the end or a `ct`.
fn classify(tables: &[FlowTable], mut key: FlowKey, start: u8) -> CachedPath {
    let mut path = CachedPath {
        hits: Vec::new(),
        steps: Vec::new(),
        missed: false,
        exit_key: key,
        moves_layers: false,
    };
    let mut table = start;
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
            match step_of(action, table, entry.spec.cookie) {
                Some(step @ Step::Ct { .. }) => {
                    path.steps.push(step);
                    path.exit_key = key;
                    return path;
                }
                Some(step) => {
                    let tags = matches!(step, Step::PushVlan(_) | Step::PopVlan)
                        || (matches!(step, Step::SetField(SetField::VlanVid(_)))
                            && key.vlan_tci() == 0);
                    path.moves_layers |= tags;
                    apply_to_key(&mut key, &step);
                    path.steps.push(step);
                }
                None => {
                    if let Action::GotoTable(t) = *action {
                        next = Some(t);
                    }
                }
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

#[cfg(test)]
mod balance_tests;
