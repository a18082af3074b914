//! Port backends: one small, batch-oriented trait and one file per backend
//! (AF_PACKET on a veth, VXLAN and ESP tunnels over UDP, and an in-memory
//! backend for tests), in the manner of Open vSwitch's `netdev-provider.h`.
//!
//! Every received frame sits in a reused buffer laid out as
//! `[virtio-net header (10 bytes)][Ethernet frame]`, whether or not the
//! backend speaks virtio-net headers (a backend without them writes a plain
//! header), so that the datapath can forward the same bytes to a port with
//! offloads without copying.

pub mod af_packet;
pub mod esp;
pub mod memory;
mod sys;
pub mod vxlan;

use crate::pipeline::{FrameBuf, TunnelMeta, TunnelTarget};
use crate::wire::{EthernetAddress, VnetHeader, VnetRepr, vnet_hdr};
use std::io;
use std::os::fd::RawFd;

/// Frames moved per system call.
pub const BATCH: usize = 64;

/// Room kept in front of a received frame, for tags pushed by actions.
pub const HEADROOM: usize = 64;

/// Bytes per receive buffer: headroom, a virtio-net header and the largest
/// TSO super-frame (64 KiB of IP plus Ethernet and VLAN headers).
pub const BUFFER_SIZE: usize = HEADROOM + vnet_hdr::HEADER_LEN + 65_535 + 14 + 4 + 64;

/// Where one received frame sits: `len` bytes at `ptr`, laid out as
/// `[virtio-net header][frame]`.
#[derive(Debug, Clone, Copy)]
struct RxFrame {
    ptr: *mut u8,
    len: usize,
    /// Writable bytes in front of `ptr`.
    headroom: usize,
    /// The receive-ring slot holding it, to hand back to the kernel.
    ring_slot: Option<u32>,
    /// The tunnel it came out of.
    tunnel: Option<TunnelMeta>,
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

    /// The tunnel frame `i` came out of.
    pub fn tunnel(&self, i: usize) -> Option<TunnelMeta> {
        self.frames[i].tunnel
    }

    /// Frame `i` as a buffer the pipeline may rewrite, grow and shrink.
    pub fn frame_buf(&mut self, i: usize) -> RxFrameBuf<'_> {
        RxFrameBuf {
            frame: &mut self.frames[i],
        }
    }

    /// For backends: the batch's own buffer `i` past its headroom, to
    /// receive `[virtio-net header][frame]` into.
    pub(crate) fn storage_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.storage[i][HEADROOM..]
    }

    /// For backends: records a frame of `len` bytes (header included) at the
    /// start of `storage_mut(i)`.
    pub(crate) fn push_stored(&mut self, i: usize, len: usize) {
        self.push_stored_at(i, 0, len, None);
    }

    /// For backends: records a frame of `len` bytes (header included) that
    /// starts `offset` bytes into `storage_mut(i)`, out of `tunnel`.
    pub(crate) fn push_stored_at(
        &mut self,
        i: usize,
        offset: usize,
        len: usize,
        tunnel: Option<TunnelMeta>,
    ) {
        let space = BUFFER_SIZE - HEADROOM;
        let offset = offset.min(space);
        let len = len.min(space - offset);
        // SAFETY: HEADROOM + offset lies inside the buffer.
        let ptr = unsafe { self.storage[i].as_mut_ptr().add(HEADROOM + offset) };
        self.frames.push(RxFrame {
            ptr,
            len,
            headroom: HEADROOM + offset,
            ring_slot: None,
            tunnel,
        });
    }

    /// For backends: records a frame of `len` bytes at `ptr` in ring slot
    /// `slot`, with `headroom` writable bytes in front.
    ///
    /// # Safety
    /// `ptr - headroom .. ptr + len` must be valid for reads and writes until
    /// the port that owns the ring releases the batch.
    pub(crate) unsafe fn push_ring(
        &mut self,
        ptr: *mut u8,
        len: usize,
        headroom: usize,
        slot: u32,
    ) {
        self.frames.push(RxFrame {
            ptr,
            len,
            headroom,
            ring_slot: Some(slot),
            tunnel: None,
        });
    }

    /// For backends: the ring slots the batch holds.
    pub(crate) fn ring_slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.frames.iter().filter_map(|f| f.ring_slot)
    }
}

/// A received frame as the pipeline sees it: growing or shrinking it at the
/// front moves its virtio-net header along and keeps the header's offsets
/// (checksum start, header length) pointing at the same bytes.
pub struct RxFrameBuf<'a> {
    frame: &'a mut RxFrame,
}

impl RxFrameBuf<'_> {
    fn whole(&mut self) -> &mut [u8] {
        // SAFETY: the descriptor's memory is valid for `len` bytes (see RxBatch).
        unsafe { std::slice::from_raw_parts_mut(self.frame.ptr, self.frame.len) }
    }

    /// Adds `delta` to the header's offsets that count from the frame start.
    fn shift_offsets(&mut self, delta: isize) {
        let header = &mut self.whole()[..vnet_hdr::HEADER_LEN];
        let mut vnet = VnetRepr::parse(&VnetHeader::new_unchecked(&*header));
        let moved = |v: u16| {
            if v == 0 {
                0
            } else {
                (v as isize + delta).clamp(0, u16::MAX as isize) as u16
            }
        };
        if vnet.needs_checksum() {
            vnet.csum_start = moved(vnet.csum_start);
        }
        vnet.hdr_len = moved(vnet.hdr_len);
        vnet.emit(&mut VnetHeader::new_unchecked(header));
    }
}

impl FrameBuf for RxFrameBuf<'_> {
    fn bytes(&mut self) -> &mut [u8] {
        &mut self.whole()[vnet_hdr::HEADER_LEN..]
    }

    fn push_front(&mut self, n: usize) -> bool {
        if self.frame.headroom < n {
            return false;
        }
        // SAFETY: `n` bytes in front of `ptr` are headroom of this frame; the
        // header moves within memory the descriptor covers.
        unsafe {
            let new = self.frame.ptr.sub(n);
            std::ptr::copy(self.frame.ptr, new, vnet_hdr::HEADER_LEN);
            self.frame.ptr = new;
        }
        self.frame.len += n;
        self.frame.headroom -= n;
        self.shift_offsets(n as isize);
        true
    }

    fn pull_front(&mut self, n: usize) -> bool {
        if self.frame.len < vnet_hdr::HEADER_LEN + n {
            return false;
        }
        // SAFETY: the header moves forward by `n` inside the frame's memory.
        unsafe {
            let new = self.frame.ptr.add(n);
            std::ptr::copy(self.frame.ptr, new, vnet_hdr::HEADER_LEN);
            self.frame.ptr = new;
        }
        self.frame.len -= n;
        self.frame.headroom += n;
        self.shift_offsets(-(n as isize));
        true
    }
}

/// A frame to send: `[virtio-net header][frame]` on a port with offloads,
/// else the bare frame, and where to tunnel it if the port is a tunnel.
#[derive(Debug, Clone, Copy)]
pub struct TxFrame<'a> {
    /// The bytes.
    pub data: &'a [u8],
    /// For a tunnel port: VNI and remote endpoint.
    pub tunnel: Option<TunnelTarget>,
}

impl<'a> TxFrame<'a> {
    /// A frame for a plain port.
    pub fn plain(data: &'a [u8]) -> TxFrame<'a> {
        TxFrame { data, tunnel: None }
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
    /// For a tunnel endpoint: its local IPv4 address.
    pub tunnel_local: Option<std::net::Ipv4Addr>,
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
    fn send_batch(&mut self, frames: &mut dyn Iterator<Item = TxFrame<'_>>) -> io::Result<usize>;

    /// Hands the buffers of a processed batch back (ring slots to the kernel).
    fn release(&mut self, batch: &mut RxBatch) {
        batch.clear();
    }

    /// Frames dropped by the backend itself (too large, kernel refused).
    fn dropped(&self) -> u64 {
        0
    }
}
