//! Port backends: one small, batch-oriented trait and one file per backend
//! (AF_PACKET on a veth, and an in-memory backend for tests), in the manner
//! of Open vSwitch's `netdev-provider.h`.
//!
//! Every received frame sits in a reused buffer laid out as
//! `[virtio-net header (10 bytes)][Ethernet frame]`, whether or not the
//! backend speaks virtio-net headers (a backend without them writes a plain
//! header), so that the datapath can forward the same bytes to a port with
//! offloads without copying.

pub mod af_packet;
pub mod memory;

use crate::wire::{EthernetAddress, VnetHeader, VnetRepr, vnet_hdr};
use std::io;
use std::os::fd::RawFd;

/// Frames moved per system call.
pub const BATCH: usize = 32;

/// Bytes per receive buffer: a virtio-net header and the largest TSO
/// super-frame (64 KiB of IP plus Ethernet and VLAN headers).
pub const BUFFER_SIZE: usize = vnet_hdr::HEADER_LEN + 65_535 + 14 + 4 + 64;

/// Reused receive buffers for one port.
pub struct RxBatch {
    buffers: Vec<Box<[u8]>>,
    lens: Vec<usize>,
    count: usize,
}

impl std::fmt::Debug for RxBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxBatch")
            .field("count", &self.count)
            .finish()
    }
}

impl Default for RxBatch {
    fn default() -> Self {
        RxBatch::new(BATCH)
    }
}

impl RxBatch {
    /// `slots` buffers of `BUFFER_SIZE` bytes, allocated once.
    pub fn new(slots: usize) -> RxBatch {
        RxBatch {
            buffers: (0..slots)
                .map(|_| vec![0u8; BUFFER_SIZE].into_boxed_slice())
                .collect(),
            lens: vec![0; slots],
            count: 0,
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.buffers.len()
    }

    /// Frames received by the last `recv_batch`.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the last receive brought nothing.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The virtio-net header of frame `i`.
    pub fn vnet(&self, i: usize) -> VnetRepr {
        VnetRepr::parse(&VnetHeader::new_unchecked(
            &self.buffers[i][..vnet_hdr::HEADER_LEN],
        ))
    }

    /// The Ethernet frame `i`.
    pub fn frame(&self, i: usize) -> &[u8] {
        &self.buffers[i][vnet_hdr::HEADER_LEN..self.lens[i]]
    }

    /// The Ethernet frame `i`, writable.
    pub fn frame_mut(&mut self, i: usize) -> &mut [u8] {
        let end = self.lens[i];
        &mut self.buffers[i][vnet_hdr::HEADER_LEN..end]
    }

    /// Header and frame `i` together, as a port with offloads sends them.
    pub fn with_vnet(&self, i: usize) -> &[u8] {
        &self.buffers[i][..self.lens[i]]
    }

    /// For backends: the raw slots to fill.
    pub(crate) fn slots_mut(&mut self) -> &mut [Box<[u8]>] {
        &mut self.buffers
    }

    /// For backends: records that the first `count` slots hold frames.
    pub(crate) fn set_received(&mut self, count: usize) {
        self.count = count;
    }

    /// For backends: sets the total length (header included) of slot `i`.
    pub(crate) fn set_len(&mut self, i: usize, len: usize) {
        self.lens[i] = len.min(BUFFER_SIZE);
    }
}

/// Static facts about a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// Device name.
    pub name: String,
    /// Ethernet address of the switch's end.
    pub hw_addr: EthernetAddress,
    /// MTU of the device.
    pub mtu: u32,
    /// Takes virtio-net headers: TSO super-frames and partial checksums.
    pub offloads: bool,
}

/// A source and sink of Ethernet frames, moved in batches.
pub trait Port: Send {
    /// Facts about the port.
    fn info(&self) -> &PortInfo;

    /// A descriptor that polls readable when frames wait, if any.
    fn fd(&self) -> Option<RawFd>;

    /// Receives up to `batch.capacity()` frames without blocking; returns how
    /// many (0 when none wait). Frames too large for a buffer are dropped and
    /// counted by the backend.
    fn recv_batch(&mut self, batch: &mut RxBatch) -> io::Result<usize>;

    /// Sends frames without blocking; each is `[virtio-net header][frame]`
    /// when `info().offloads`, else a bare frame. Returns how many were
    /// accepted; the rest were dropped (and counted in `dropped`).
    fn send_batch<'a>(&mut self, frames: &mut dyn Iterator<Item = &'a [u8]>) -> io::Result<usize>;

    /// Frames dropped by the backend itself (too large, kernel refused).
    fn dropped(&self) -> u64 {
        0
    }
}
