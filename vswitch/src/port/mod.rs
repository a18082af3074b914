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
pub const BATCH: usize = 64;

/// Bytes per receive buffer: a virtio-net header and the largest TSO
/// super-frame (64 KiB of IP plus Ethernet and VLAN headers).
pub const BUFFER_SIZE: usize = vnet_hdr::HEADER_LEN + 65_535 + 14 + 4 + 64;

/// Where one received frame sits: `len` bytes at `ptr`, laid out as
/// `[virtio-net header][frame]`.
#[derive(Debug, Clone, Copy)]
struct RxFrame {
    ptr: *mut u8,
    len: usize,
    /// The receive-ring slot holding it, to hand back to the kernel.
    ring_slot: Option<u32>,
}

/// The frames of one receive, in buffers reused from batch to batch: either
/// the batch's own buffers or slots of a port's receive ring. Valid until the
/// next `recv_batch` or `release` on the port that filled it.
pub struct RxBatch {
    storage: Vec<Box<[u8]>>,
    frames: Vec<RxFrame>,
}

// SAFETY: the raw pointers point into `storage` (heap memory owned by the
// batch, which moves with it) or into the receive ring of the port that
// filled the batch; the datapath moves a port and its batch to its thread
// together and uses them only there.
unsafe impl Send for RxBatch {}

impl std::fmt::Debug for RxBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxBatch")
            .field("len", &self.frames.len())
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
            storage: (0..slots)
                .map(|_| vec![0u8; BUFFER_SIZE].into_boxed_slice())
                .collect(),
            frames: Vec::with_capacity(slots),
        }
    }

    /// Most frames one receive brings.
    pub fn capacity(&self) -> usize {
        self.storage.len()
    }

    /// Frames received by the last `recv_batch`.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether the last receive brought nothing.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Header and frame `i` together, as a port with offloads sends them.
    pub fn with_vnet(&self, i: usize) -> &[u8] {
        let f = self.frames[i];
        // SAFETY: `f` was recorded by a backend for `len` bytes of memory
        // that stays valid until the next receive or release (see the type).
        unsafe { std::slice::from_raw_parts(f.ptr, f.len) }
    }

    fn with_vnet_mut(&mut self, i: usize) -> &mut [u8] {
        let f = self.frames[i];
        // SAFETY: as in `with_vnet`; `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(f.ptr, f.len) }
    }

    /// The virtio-net header of frame `i`.
    pub fn vnet(&self, i: usize) -> VnetRepr {
        VnetRepr::parse(&VnetHeader::new_unchecked(
            &self.with_vnet(i)[..vnet_hdr::HEADER_LEN],
        ))
    }

    /// The Ethernet frame `i`.
    pub fn frame(&self, i: usize) -> &[u8] {
        &self.with_vnet(i)[vnet_hdr::HEADER_LEN..]
    }

    /// The Ethernet frame `i`, writable.
    pub fn frame_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.with_vnet_mut(i)[vnet_hdr::HEADER_LEN..]
    }

    /// For backends: forgets the previous receive.
    pub(crate) fn clear(&mut self) {
        self.frames.clear();
    }

    /// For backends: the batch's own buffer `i`, to receive into.
    pub(crate) fn storage_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.storage[i]
    }

    /// For backends: records a frame of `len` bytes (header included) in
    /// the batch's own buffer `i`.
    pub(crate) fn push_stored(&mut self, i: usize, len: usize) {
        let len = len.min(BUFFER_SIZE);
        let ptr = self.storage[i].as_mut_ptr();
        self.frames.push(RxFrame {
            ptr,
            len,
            ring_slot: None,
        });
    }

    /// For backends: records a frame of `len` bytes at `ptr` in ring slot
    /// `slot`.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes until the port
    /// that owns the ring releases the batch.
    pub(crate) unsafe fn push_ring(&mut self, ptr: *mut u8, len: usize, slot: u32) {
        self.frames.push(RxFrame {
            ptr,
            len,
            ring_slot: Some(slot),
        });
    }

    /// For backends: the ring slots the batch holds.
    pub(crate) fn ring_slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.frames.iter().filter_map(|f| f.ring_slot)
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
    fn send_batch(&mut self, frames: &mut dyn Iterator<Item = &[u8]>) -> io::Result<usize>;

    /// Hands the buffers of a processed batch back (ring slots to the kernel).
    fn release(&mut self, batch: &mut RxBatch) {
        batch.clear();
    }

    /// Frames dropped by the backend itself (too large, kernel refused).
    fn dropped(&self) -> u64 {
        0
    }
}
