//! The flow model shared by the switch and the controller: keys, matches,
//! actions, flow specifications and flow-mod commands, plus their protocol
//! conversions and text form.

pub mod action;
pub mod convert;
pub mod key;
pub mod matcher;
pub mod text;

pub use action::{Action, ActionError, SetField};
pub use key::{Extracted, FlowKey, Layout, PortNo};
pub use matcher::{
    CtStateMatch, IpPrefix, MacMatch, MaskedKey, Match, MatchError, MetadataMatch, VlanMatch,
};

use std::time::Duration;

/// Everything that defines one flow entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowSpec {
    /// Table the entry lives in.
    pub table: u8,
    /// Higher wins; ties go to the entry installed first.
    pub priority: u16,
    /// Which frames.
    pub matcher: Match,
    /// What to do, in order; empty drops.
    pub actions: Vec<Action>,
    /// Opaque controller value, used to find entries again.
    pub cookie: u64,
    /// Remove after this long without a hit (zero = never).
    pub idle_timeout: Duration,
    /// Remove this long after installation (zero = never).
    pub hard_timeout: Duration,
    /// Tell the controller when the entry goes.
    pub send_flow_removed: bool,
}

impl FlowSpec {
    /// An entry with no timeouts and cookie 0.
    pub fn new(table: u8, priority: u16, matcher: Match, actions: Vec<Action>) -> FlowSpec {
        FlowSpec {
            table,
            priority,
            matcher,
            actions,
            cookie: 0,
            idle_timeout: Duration::ZERO,
            hard_timeout: Duration::ZERO,
            send_flow_removed: false,
        }
    }

    /// Sets the cookie.
    pub fn with_cookie(mut self, cookie: u64) -> FlowSpec {
        self.cookie = cookie;
        self
    }

    /// Sets the idle timeout and asks for a flow-removed message.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> FlowSpec {
        self.idle_timeout = timeout;
        self.send_flow_removed = true;
        self
    }
}

/// What a flow-mod does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowModCommand {
    /// Install; replaces an entry with the same table, priority and match.
    Add,
    /// Change the actions of covered entries (`strict`: the one exact entry).
    Modify {
        /// Only the entry with exactly this match and priority.
        strict: bool,
    },
    /// Remove covered entries (`strict`: the one exact entry).
    Delete {
        /// Only the entry with exactly this match and priority.
        strict: bool,
    },
}

/// A change to the flow tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowMod {
    /// What to do.
    pub command: FlowModCommand,
    /// The entry (for add), or the filter (match, priority, table) and new
    /// actions (for modify).
    pub spec: FlowSpec,
    /// For modify/delete: only entries with `cookie & mask == spec.cookie & mask`.
    pub cookie_mask: u64,
    /// For delete: only entries that output to this port.
    pub out_port: Option<PortNo>,
    /// For modify/delete: every table.
    pub all_tables: bool,
}

impl FlowMod {
    /// Adds `spec`.
    pub fn add(spec: FlowSpec) -> FlowMod {
        FlowMod {
            command: FlowModCommand::Add,
            spec,
            cookie_mask: 0,
            out_port: None,
            all_tables: false,
        }
    }

    /// Deletes exactly the entry with `spec`'s table, priority and match.
    pub fn delete_strict(spec: FlowSpec) -> FlowMod {
        FlowMod {
            command: FlowModCommand::Delete { strict: true },
            ..FlowMod::add(spec)
        }
    }

    /// Deletes every entry in every table.
    pub fn delete_all() -> FlowMod {
        FlowMod {
            command: FlowModCommand::Delete { strict: false },
            all_tables: true,
            ..FlowMod::add(FlowSpec::new(0, 0, Match::default(), Vec::new()))
        }
    }
}

/// An installed entry with its counters, as flow statistics report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowStats {
    /// The entry.
    pub spec: FlowSpec,
    /// Time since installation.
    pub duration: Duration,
    /// Time since the last hit (or installation).
    pub idle_age: Duration,
    /// Frames matched (a TSO super-frame counts as the segments it carries).
    pub packets: u64,
    /// Bytes matched.
    pub bytes: u64,
}
