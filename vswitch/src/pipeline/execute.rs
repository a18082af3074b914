//! Carrying out a path's steps on one frame: outputs (with the tunnel target
//! set so far), flooding, learning, field rewrites, VLAN push and pop. The
//! frame lives in a `FrameBuf` that can grow or shrink at the front.

use super::rewrite;
use super::{Decision, FrameMeta, PacketInRequest};
use crate::flow::{FlowKey, Layout, PortNo, SetField};
use crate::learning::{L2Decision, MacLearning};
use std::net::Ipv4Addr;
use std::time::Instant;

/// Bytes of an 802.1Q tag.
const TAG_LEN: usize = 4;

/// A frame being switched, in a buffer with room in front of it: actions may
/// rewrite its bytes and grow or shrink it at the front (VLAN push and pop).
/// An implementation keeps any metadata that points into the frame (offload
/// checksum offsets) right when the frame moves.
pub trait FrameBuf {
    /// The Ethernet frame.
    fn bytes(&mut self) -> &mut [u8];
    /// Grows the frame by `n` bytes at the front (their content unspecified);
    /// false if there is no room.
    fn push_front(&mut self, n: usize) -> bool;
    /// Shrinks the frame by `n` bytes at the front; false if it is shorter.
    fn pull_front(&mut self, n: usize) -> bool;
}

/// A frame in a vector with headroom, for tests, packet-outs and tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedFrame {
    data: Vec<u8>,
    start: usize,
}

impl OwnedFrame {
    /// Headroom given to a frame made with `new`.
    pub const HEADROOM: usize = 64;

    /// `frame` with `HEADROOM` bytes of room in front.
    pub fn new(frame: &[u8]) -> OwnedFrame {
        let mut data = vec![0u8; Self::HEADROOM + frame.len()];
        data[Self::HEADROOM..].copy_from_slice(frame);
        OwnedFrame {
            data,
            start: Self::HEADROOM,
        }
    }

    /// The frame's bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.data[self.start..]
    }

    /// The frame's bytes, owned.
    pub fn into_vec(mut self) -> Vec<u8> {
        self.data.drain(..self.start);
        self.data
    }
}

impl FrameBuf for OwnedFrame {
    fn bytes(&mut self) -> &mut [u8] {
        &mut self.data[self.start..]
    }

    fn push_front(&mut self, n: usize) -> bool {
        if self.start < n {
            return false;
        }
        self.start -= n;
        true
    }

    fn pull_front(&mut self, n: usize) -> bool {
        if self.data.len() - self.start < n {
            return false;
        }
        self.start += n;
        true
    }
}

/// Where a frame from a tunnel came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TunnelMeta {
    /// VNI it carried.
    pub vni: u32,
    /// Remote endpoint that sent it.
    pub src: Ipv4Addr,
}

/// Where a frame sent to a tunnel port goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TunnelTarget {
    /// VNI to carry it in.
    pub vni: u32,
    /// Remote endpoint.
    pub dst: Ipv4Addr,
}

/// One place a frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    /// Port.
    pub port: PortNo,
    /// For a tunnel port: VNI and remote endpoint set by earlier actions.
    pub tunnel: Option<TunnelTarget>,
}

impl Output {
    /// An output to a plain port.
    pub fn to(port: PortNo) -> Output {
        Output { port, tunnel: None }
    }
}

/// One step of a cached path.
#[derive(Debug, Clone, Copy)]
pub(super) enum Step {
    Output(PortNo),
    Flood,
    InPort,
    Normal,
    Controller(PacketInRequest),
    SetField(SetField),
    PushVlan(u16),
    PopVlan,
    /// Connection tracking, then another pass from `table` (always last;
    /// carried out by the pipeline, not here).
    Ct {
        zone: u16,
        commit: bool,
        table: u8,
    },
}

/// Adjusts a key as a step changes the frame, for the tables after it.
pub(super) fn apply_to_key(key: &mut FlowKey, step: &Step) {
    match *step {
        Step::SetField(field) => rewrite::apply_to_key(key, field),
        Step::PushVlan(tci) => key.set_vlan_tci(crate::flow::key::VLAN_PRESENT | (tci & 0xefff)),
        Step::PopVlan => key.set_vlan_tci(0),
        _ => {}
    }
}

fn flood(
    ports: &[PortNo],
    in_port: PortNo,
    tunnel: Option<TunnelTarget>,
    outputs: &mut Vec<Output>,
) {
    outputs.extend(
        ports
            .iter()
            .copied()
            .filter(|&p| p != in_port)
            .map(|port| Output { port, tunnel }),
    );
}

fn is_tagged(frame: &[u8]) -> bool {
    matches!(frame.get(12..14), Some([0x81, 0x00] | [0x88, 0xa8]))
}

/// Takes copies for the outputs recorded so far, and for a packet-in asked
/// for earlier, before the frame changes.
fn snapshot(frame: &mut dyn FrameBuf, out: &mut Decision) {
    if out.controller.is_some() && out.controller_frame.is_none() {
        out.controller_frame = Some(frame.bytes().to_vec());
    }
    if out.outputs.is_empty() {
        return;
    }
    let copy = frame.bytes().to_vec();
    for output in out.outputs.drain(..) {
        out.snapshots.push((output, copy.clone()));
    }
}

/// What running steps needs besides the frame.
pub(super) struct Context<'a> {
    pub(super) key: &'a FlowKey,
    pub(super) layout: Layout,
    pub(super) meta: FrameMeta,
    pub(super) now: Instant,
    pub(super) ports: &'a [PortNo],
    pub(super) learning: &'a mut MacLearning,
}

/// Carries out `steps` on one frame. Returns false if the frame had to be
/// dropped (a tag could not be pushed for lack of room).
pub(super) fn run_steps(
    steps: &[Step],
    frame: &mut dyn FrameBuf,
    cx: Context<'_>,
    out: &mut Decision,
) -> bool {
    let Context {
        key,
        mut layout,
        meta,
        now,
        ports,
        learning,
    } = cx;
    let mut vni = None;
    let mut tunnel_dst = None;
    for step in steps {
        let tunnel = match (vni, tunnel_dst) {
            (Some(vni), Some(dst)) => Some(TunnelTarget { vni, dst }),
            _ => None,
        };
        match *step {
            Step::Output(port) => {
                if port != meta.in_port {
                    out.outputs.push(Output { port, tunnel });
                }
            }
            Step::Flood => flood(ports, meta.in_port, tunnel, &mut out.outputs),
            Step::InPort => out.outputs.push(Output {
                port: meta.in_port,
                tunnel,
            }),
            Step::Controller(request) => out.controller = Some(request),
            Step::Normal => {
                let vlan = key.vlan_tci() & 0x0fff;
                match learning.forward(vlan, key.eth_src(), key.eth_dst(), meta.in_port, now) {
                    L2Decision::Port(port) => out.outputs.push(Output { port, tunnel }),
                    L2Decision::Flood => flood(ports, meta.in_port, tunnel, &mut out.outputs),
                    L2Decision::Drop => {}
                }
            }
            Step::SetField(SetField::TunnelId(id)) => vni = Some(id),
            Step::SetField(SetField::TunnelDst(dst)) => tunnel_dst = Some(dst),
            Step::SetField(field @ (SetField::VlanVid(_) | SetField::VlanPcp(_))) => {
                snapshot(frame, out);
                let bytes = frame.bytes();
                if is_tagged(bytes) && bytes.len() >= 16 {
                    let tci = u16::from_be_bytes([bytes[14], bytes[15]]);
                    let tci = match field {
                        SetField::VlanVid(vid) => (tci & 0xf000) | (vid & 0x0fff),
                        SetField::VlanPcp(pcp) => (tci & 0x1fff) | (u16::from(pcp & 7) << 13),
                        _ => tci,
                    };
                    bytes[14..16].copy_from_slice(&tci.to_be_bytes());
                }
            }
            Step::SetField(field) => {
                snapshot(frame, out);
                rewrite::apply(frame.bytes(), key, layout, meta.partial_checksum, field);
            }
            Step::PushVlan(tci) => {
                snapshot(frame, out);
                if !frame.push_front(TAG_LEN) {
                    out.clear();
                    return false;
                }
                let bytes = frame.bytes();
                bytes.copy_within(TAG_LEN..TAG_LEN + 12, 0);
                bytes[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
                bytes[14..16].copy_from_slice(&tci.to_be_bytes());
                layout = shift(layout, TAG_LEN as i32);
            }
            Step::Ct { .. } => {}
            Step::PopVlan => {
                let tagged = is_tagged(frame.bytes()) && frame.bytes().len() >= 12 + TAG_LEN + 2;
                if tagged {
                    snapshot(frame, out);
                    frame.bytes().copy_within(0..12, TAG_LEN);
                    frame.pull_front(TAG_LEN);
                    layout = shift(layout, -(TAG_LEN as i32));
                }
            }
        }
    }
    true
}

/// Moves layer offsets by `delta` bytes (0 stays 0: "no such layer").
fn shift(layout: Layout, delta: i32) -> Layout {
    let moved = |offset: u16| {
        if offset == 0 {
            0
        } else {
            (i32::from(offset) + delta).max(0) as u16
        }
    };
    Layout {
        l3: moved(layout.l3),
        l4: moved(layout.l4),
    }
}
