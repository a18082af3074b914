//! Carrying out a path's steps on one frame: outputs (with the tunnel target
//! set so far), flooding, learning, field rewrites, VLAN push and pop. The
//! frame lives in a `FrameBuf` that can grow or shrink at the front.

use super::rewrite;
use super::router_ops::{self, IcmpErrorKind, IcmpLimiter, TtlOutcome};
use super::{Decision, FrameMeta, PacketInRequest};
use crate::flow::action::Nat;
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
        nat: Option<Nat>,
    },
    /// Metadata for later tables (the key carries it; the frame does not).
    WriteMetadata(u32),
    DecTtl {
        icmp_src: Ipv4Addr,
    },
    CheckMtu {
        mtu: u16,
        icmp_src: Option<Ipv4Addr>,
    },
    IcmpUnreachable {
        code: u8,
        icmp_src: Ipv4Addr,
    },
    ArpReply(crate::wire::EthernetAddress),
    IcmpEchoReply,
}

/// How carrying out a path's steps ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ran {
    /// Every step ran (a final `ct` is the pipeline's to do).
    Done,
    /// A step took the frame out of the pipeline (an expired TTL, a packet
    /// too big, an unreachable destination): no further pass.
    Stopped,
    /// A tag could not be pushed for lack of room: the frame is dropped.
    NoHeadroom,
}

/// Adjusts a key as a step changes the frame, for the tables after it.
pub(super) fn apply_to_key(key: &mut FlowKey, step: &Step) {
    match *step {
        Step::SetField(field) => rewrite::apply_to_key(key, field),
        Step::PushVlan(tci) => key.set_vlan_tci(crate::flow::key::VLAN_PRESENT | (tci & 0xefff)),
        Step::PopVlan => key.set_vlan_tci(0),
        Step::WriteMetadata(value) => key.set_metadata(value),
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
pub(super) fn snapshot(frame: &mut dyn FrameBuf, out: &mut Decision) {
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
    pub(super) router: &'a mut RouterState,
}

/// What the router steps keep between frames: the ICMP rate limits and
/// their counters.
#[derive(Debug, Default)]
pub(super) struct RouterState {
    pub(super) limiter: IcmpLimiter,
    /// ICMP errors the switch sent.
    pub(super) icmp_sent: u64,
    /// ICMP errors the rate limits held back.
    pub(super) icmp_limited: u64,
    /// Packets whose TTL ran out.
    pub(super) ttl_expired: u64,
    /// Packets too big with DF set.
    pub(super) too_big: u64,
}

impl RouterState {
    /// Answers the IPv4 packet at `l3` of `frame` (whose source is `to`)
    /// with an ICMP error, if the rate limits allow, as a frame of its own
    /// sent back out of `in_port`.
    fn answer(
        &mut self,
        frame: &[u8],
        l3: usize,
        kind: IcmpErrorKind,
        icmp_src: Ipv4Addr,
        cx: (Ipv4Addr, PortNo, Instant),
        out: &mut Decision,
    ) {
        let (to, in_port, now) = cx;
        if !self.limiter.allow(to, kind, now) {
            self.icmp_limited += 1;
            return;
        }
        let mut error = Vec::new();
        if router_ops::icmp_error(frame, l3, kind, icmp_src, &mut error) {
            self.icmp_sent += 1;
            out.generated.push((Output::to(in_port), error));
        }
    }
}

/// The largest IPv4 packet `frame` puts on the wire: its own length, or for
/// a TSO super-frame the length of each segment it becomes.
fn wire_size(frame: &[u8], layout: Layout, key: &FlowKey, gso_size: u16) -> Option<(u16, bool)> {
    let (total, df) = router_ops::ipv4_size(frame, usize::from(layout.l3))?;
    if gso_size == 0 || layout.l4 == 0 {
        return Some((total, df));
    }
    let l4 = usize::from(layout.l4);
    let l4_header = match key.ip_proto() {
        6 => usize::from(*frame.get(l4 + 12)? >> 4) * 4,
        _ => 8,
    };
    let segment = (l4 - usize::from(layout.l3)) + l4_header + usize::from(gso_size);
    Some((u16::try_from(segment).unwrap_or(u16::MAX).min(total), df))
}

/// Carries out `steps` on one frame.
pub(super) fn run_steps(
    steps: &[Step],
    frame: &mut dyn FrameBuf,
    cx: Context<'_>,
    out: &mut Decision,
) -> Ran {
    let Context {
        key,
        mut layout,
        meta,
        now,
        ports,
        learning,
        router,
    } = cx;
    let ipv4 = key.eth_type() == 0x0800 && layout.l3 != 0;
    // The sender an ICMP error goes back to (read only when one is made).
    let source = || match key.ip_src() {
        Some(std::net::IpAddr::V4(a)) => a,
        _ => Ipv4Addr::UNSPECIFIED,
    };
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
            Step::SetField(SetField::VlanVid(vid)) if !is_tagged(frame.bytes()) => {
                // As Open vSwitch's mod_vlan_vid: an untagged frame gets a tag.
                snapshot(frame, out);
                if !frame.push_front(TAG_LEN) {
                    out.clear();
                    return Ran::NoHeadroom;
                }
                let bytes = frame.bytes();
                bytes.copy_within(TAG_LEN..TAG_LEN + 12, 0);
                bytes[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
                bytes[14..16].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
                layout = shift(layout, TAG_LEN as i32);
            }
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
                    return Ran::NoHeadroom;
                }
                let bytes = frame.bytes();
                bytes.copy_within(TAG_LEN..TAG_LEN + 12, 0);
                bytes[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
                bytes[14..16].copy_from_slice(&tci.to_be_bytes());
                layout = shift(layout, TAG_LEN as i32);
            }
            Step::Ct { .. } | Step::WriteMetadata(_) => {}
            Step::DecTtl { icmp_src } if ipv4 => {
                snapshot(frame, out);
                let l3 = usize::from(layout.l3);
                if router_ops::dec_ttl(frame.bytes(), l3) == TtlOutcome::Expired {
                    router.ttl_expired += 1;
                    let cx = (source(), meta.in_port, now);
                    let kind = IcmpErrorKind::TimeExceeded;
                    router.answer(frame.bytes(), l3, kind, icmp_src, cx, out);
                    return Ran::Stopped;
                }
            }
            Step::CheckMtu { mtu, icmp_src } if ipv4 => {
                let Some((size, df)) = wire_size(frame.bytes(), layout, key, meta.gso_size) else {
                    continue;
                };
                if size <= mtu {
                    continue;
                }
                if !df {
                    if meta.gso_size == 0 {
                        out.fragment_mtu = Some(mtu);
                    }
                    continue;
                }
                router.too_big += 1;
                if let Some(src) = icmp_src {
                    let cx = (source(), meta.in_port, now);
                    let l3 = usize::from(layout.l3);
                    let kind = IcmpErrorKind::FragNeeded(mtu);
                    router.answer(frame.bytes(), l3, kind, src, cx, out);
                }
                return Ran::Stopped;
            }
            Step::IcmpUnreachable { code, icmp_src } => {
                if ipv4 {
                    let cx = (source(), meta.in_port, now);
                    let l3 = usize::from(layout.l3);
                    let kind = IcmpErrorKind::Unreachable(code);
                    router.answer(frame.bytes(), l3, kind, icmp_src, cx, out);
                }
                return Ran::Stopped;
            }
            Step::ArpReply(mac) => {
                snapshot(frame, out);
                router_ops::arp_reply(frame.bytes(), usize::from(layout.l3), mac);
            }
            Step::IcmpEchoReply if ipv4 => {
                snapshot(frame, out);
                router_ops::echo_reply(frame.bytes(), usize::from(layout.l3));
            }
            Step::DecTtl { .. } | Step::CheckMtu { .. } | Step::IcmpEchoReply => {}
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
    Ran::Done
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
