//! The datapath's vocabulary: commands the agent sends it, events it reports,
//! and the counters and descriptions those carry.

use crate::conntrack::{ConntrackQuery, ConntrackReport};
use crate::flow::{Action, FlowMod, FlowStats, Match, PortNo};
use crate::pipeline::{FlowRemoved, PacketInRequest, PipelineCounters, TunnelMeta};
use crate::port::PortInfo;
use crate::wire::VnetRepr;

/// Counters of one port.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames received (a super-frame counts once).
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames received but not usable (runts, too large).
    pub rx_dropped: u64,
    /// Frames that could not be sent (no room, could not be segmented).
    pub tx_dropped: u64,
    /// Receive errors reported by the system.
    pub rx_errors: u64,
    /// Send errors reported by the system.
    pub tx_errors: u64,
}

/// Switch-wide counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DatapathCounters {
    /// Pipeline counters (cache, misses, runts).
    pub pipeline: PipelineCounters,
    /// Packet-ins handed to the agent.
    pub packet_in_sent: u64,
    /// Packet-ins dropped: no controller, or the agent fell behind.
    pub packet_in_dropped: u64,
    /// Super-frames segmented in software for ports without offloads.
    pub segmented_frames: u64,
    /// Routed datagrams fragmented for a next hop with a smaller MTU.
    pub fragmented_frames: u64,
}

/// A port as the controller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortDescription {
    /// Port number.
    pub number: PortNo,
    /// Static facts.
    pub info: PortInfo,
}

/// A frame seen by a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedFrame {
    /// Wall-clock time, nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// Length before truncation to the snap length.
    pub original_len: u32,
    /// The bytes kept.
    pub data: Vec<u8>,
    /// Received on the port (true) or sent out of it (false).
    pub inbound: bool,
}

/// The controller's state as far as the datapath cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControllerState {
    /// Connected: packet-ins flow, tables come from the controller.
    Connected,
    /// Gone; installed flows keep working, packet-ins are dropped.
    Disconnected,
    /// Gone long enough that a standalone switch forwards as a learning switch.
    FailOpen,
}

/// Requests to the datapath thread.
#[derive(Debug)]
pub enum Command {
    /// Change the flow tables.
    FlowMod {
        /// Transaction id for errors.
        xid: u64,
        /// The change.
        flow_mod: FlowMod,
    },
    /// Answer once every earlier command is done.
    Barrier {
        /// Transaction id.
        xid: u64,
    },
    /// Send a frame built by the controller.
    PacketOut {
        /// Transaction id for errors.
        xid: u64,
        /// Port the frame counts as coming from (0 = none).
        in_port: PortNo,
        /// What to do with it.
        actions: Vec<Action>,
        /// The frame.
        data: Vec<u8>,
        /// Its offload metadata.
        vnet: VnetRepr,
    },
    /// Report flow statistics.
    FlowStats {
        /// Transaction id.
        xid: u64,
        /// One table or all.
        table: Option<u8>,
        /// Wildcard filter.
        filter: Match,
        /// Cookie filter value.
        cookie: u64,
        /// Cookie filter mask.
        cookie_mask: u64,
    },
    /// Report port and datapath counters.
    PortStats {
        /// Transaction id.
        xid: u64,
    },
    /// Start copying the frames of a port.
    CaptureStart {
        /// Capture id.
        id: u64,
        /// Port.
        port: PortNo,
        /// Bytes kept per frame.
        snaplen: u32,
    },
    /// Stop a capture.
    CaptureStop {
        /// Capture id.
        id: u64,
    },
    /// Change and/or report the connection tracker.
    Conntrack {
        /// Transaction id.
        xid: u64,
        /// What to do.
        query: ConntrackQuery,
    },
    /// Install, replace or delete a load-balancing group.
    GroupMod {
        /// Transaction id.
        xid: u64,
        /// The group to install, or `Err(group)` to delete that group.
        change: Result<crate::pipeline::balance::GroupSpec, u32>,
    },
    /// Report the load-balancing groups' counters and the probes' state.
    LbStats {
        /// Transaction id.
        xid: u64,
    },
    /// Replace the health probes.
    ProbeMod {
        /// Every probe the switch runs from now on.
        probes: Vec<crate::probe::ProbeSpec>,
    },
    /// The controller connection changed.
    Controller(ControllerState),
    /// Stop the thread.
    Shutdown,
}

/// Reports from the datapath thread.
#[derive(Debug)]
pub enum Event {
    /// Backends' health changed under their probes (or the probes were
    /// replaced: then every backend's state).
    ProbeChange(Vec<crate::probe::ProbeReport>),
    /// Answer to `Command::LbStats`.
    LbStats {
        /// Transaction id.
        xid: u64,
        /// Every backend of every group.
        backends: Vec<BackendReport>,
        /// Every backend's state under every probe.
        probes: Vec<crate::probe::ProbeReport>,
    },
    /// A frame for the controller.
    PacketIn {
        /// Input port.
        in_port: PortNo,
        /// Why and from which entry.
        request: PacketInRequest,
        /// Length before truncation.
        total_len: u32,
        /// The (truncated) frame.
        data: Vec<u8>,
        /// Offload metadata of the frame.
        vnet: VnetRepr,
        /// The tunnel it came out of.
        tunnel: Option<TunnelMeta>,
    },
    /// An entry left the tables.
    FlowRemoved(FlowRemoved),
    /// Every command before the barrier is done.
    BarrierReply {
        /// Transaction id.
        xid: u64,
    },
    /// Flow statistics.
    FlowStats {
        /// Transaction id.
        xid: u64,
        /// Entries.
        flows: Vec<FlowStats>,
    },
    /// Port and datapath counters.
    PortStats {
        /// Transaction id.
        xid: u64,
        /// Per port.
        ports: Vec<(PortDescription, PortCounters)>,
        /// Switch-wide.
        datapath: DatapathCounters,
    },
    /// A command failed.
    Error {
        /// Transaction id of the command.
        xid: u64,
        /// Why.
        message: String,
    },
    /// The connection tracker's answer.
    Conntrack {
        /// Transaction id.
        xid: u64,
        /// What it holds and counted.
        report: ConntrackReport,
    },
    /// Captured frames.
    Capture {
        /// Capture id.
        id: u64,
        /// Frames since the last report.
        frames: Vec<CapturedFrame>,
        /// Frames dropped so far.
        dropped: u64,
    },
}

/// What a switch counts of one backend of one load-balancing group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendReport {
    /// The group.
    pub group: u32,
    /// The backend's id in it.
    pub backend: u32,
    /// Connections live now.
    pub live: u64,
    /// Connections sent to it since it joined the group.
    pub total: u64,
    /// Their packets and bytes, live and ended.
    pub traffic: crate::conntrack::Traffic,
}
