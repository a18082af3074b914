//! The datapath's helpers at the edge of the system: sending through ports
//! without offloads, copying frames for captures, pinning the thread,
//! counting what was sent.

use super::{DatapathCounters, PortCounters};
use crate::gso::{self, Segments};
use crate::pipeline::TunnelTarget;
use crate::port::{Port, TxFrame};
use crate::wire::VnetRepr;
use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

/// Frames one capture may hold between flushes before it drops.
const CAPTURE_QUEUE: usize = 4096;

pub(super) struct Capture {
    pub(super) id: u64,
    pub(super) port_index: usize,
    pub(super) snaplen: usize,
    pub(super) frames: Vec<super::CapturedFrame>,
    pub(super) dropped: u64,
}

pub(super) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Wire packets a frame stands for.
pub(super) fn segments_of(frame_len: usize, vnet: &VnetRepr) -> u32 {
    if !vnet.is_gso() || vnet.gso_size == 0 {
        return 1;
    }
    let payload = frame_len.saturating_sub(usize::from(vnet.hdr_len));
    u32::try_from(payload.div_ceil(usize::from(vnet.gso_size)).max(1)).unwrap_or(u32::MAX)
}

/// The payload bytes per segment of a TSO super-frame (0 for any other).
pub(super) fn gso_size_of(vnet: &VnetRepr) -> u16 {
    if vnet.is_gso() { vnet.gso_size } else { 0 }
}

/// The IPv4 fragments of `frame` for a next hop of `mtu` bytes, its partial
/// checksum (if any) completed first, since fragments cannot carry one;
/// `None` (send it as it is) if it cannot be fragmented.
pub(super) fn fragments_of(
    frame: &[u8],
    vnet: &VnetRepr,
    mtu: u16,
    stats: &mut DatapathCounters,
) -> Option<Vec<Vec<u8>>> {
    let mut whole = frame.to_vec();
    if vnet.needs_checksum() {
        gso::complete_checksum(&mut whole, vnet).ok()?;
    }
    let mut pieces = Vec::new();
    crate::fragment::fragment(&whole, mtu, &mut pieces).ok()?;
    stats.fragmented_frames += 1;
    Some(pieces)
}

/// Restricts the calling thread to one CPU.
pub(super) fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("CPU {cpu} is out of range"),
        ));
    }
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it (index checked
    // above); sched_setaffinity(0, ..) applies to the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

pub(super) fn account(
    counters: &mut PortCounters,
    sent: io::Result<usize>,
    queued: usize,
    bytes: u64,
) {
    match sent {
        Ok(n) => {
            counters.tx_packets += n as u64;
            counters.tx_dropped += (queued - n.min(queued)) as u64;
            if n == queued {
                counters.tx_bytes += bytes;
            }
        }
        Err(_) => {
            counters.tx_errors += 1;
            counters.tx_dropped += queued as u64;
        }
    }
}

/// Sends one frame through a port that cannot take offload metadata:
/// segments super-frames and completes partial checksums first.
pub(super) fn send_without_offloads(
    port: &mut dyn Port,
    counters: &mut PortCounters,
    stats: &mut DatapathCounters,
    segments: &mut Segments,
    frame: &[u8],
    vnet: &VnetRepr,
    tunnel: Option<TunnelTarget>,
) {
    if !vnet.is_gso() && !vnet.needs_checksum() {
        let sent = port.send_batch(&mut std::iter::once(TxFrame {
            data: frame,
            tunnel,
        }));
        account(counters, sent, 1, frame.len() as u64);
        return;
    }
    match gso::segment(frame, vnet, segments) {
        Ok(()) => {
            if vnet.is_gso() {
                stats.segmented_frames += 1;
            }
            let bytes: u64 = segments.iter().map(|s| s.len() as u64).sum();
            let sent = port.send_batch(&mut segments.iter().map(|data| TxFrame { data, tunnel }));
            account(counters, sent, segments.len(), bytes);
        }
        Err(_) => counters.tx_dropped += 1,
    }
}

pub(super) fn capture(captures: &mut [Capture], port_index: usize, frame: &[u8], inbound: bool) {
    for c in captures.iter_mut().filter(|c| c.port_index == port_index) {
        if c.frames.len() >= CAPTURE_QUEUE {
            c.dropped += 1;
            continue;
        }
        c.frames.push(super::CapturedFrame {
            timestamp_ns: now_ns(),
            original_len: u32::try_from(frame.len()).unwrap_or(u32::MAX),
            data: frame[..frame.len().min(c.snaplen)].to_vec(),
            inbound,
        });
    }
}
