//! The memory-mapped `TPACKET_V2` receive ring of a packet socket: slots the
//! kernel fills in the sender's context and hands over through each slot's
//! `tp_status` word (packet(7), Documentation/networking/packet_mmap).

use super::{check, set_int_option};
use std::io;
use std::mem;
use std::os::fd::RawFd;

const PACKET_RX_RING: libc::c_int = 5;
const PACKET_COPY_THRESH: libc::c_int = 7;
const PACKET_VERSION: libc::c_int = 10;
const TPACKET_V2: libc::c_int = 1;
/// The slot holds a frame for the process.
pub(super) const TP_STATUS_USER: u32 = 1;
/// The frame did not fit the slot and is queued whole on the socket.
pub(super) const TP_STATUS_COPY: u32 = 2;
/// The kernel took an 802.1Q tag out of the frame.
pub(super) const TP_STATUS_VLAN_VALID: u32 = 0x10;
/// The tag's TPID is recorded too.
pub(super) const TP_STATUS_VLAN_TPID_VALID: u32 = 0x40;

/// `struct tpacket2_hdr` field offsets.
pub(super) mod ring_field {
    pub(in super::super) const STATUS: usize = 0;
    pub(in super::super) const LEN: usize = 4;
    pub(in super::super) const SNAPLEN: usize = 8;
    pub(in super::super) const MAC: usize = 12;
    pub(in super::super) const VLAN_TCI: usize = 24;
    pub(in super::super) const VLAN_TPID: usize = 26;
    /// `TPACKET2_HDRLEN`: the header and the `sockaddr_ll` after it.
    pub(in super::super) const END: usize = 52;
}

/// Ring geometry: 2 KiB slots fit any frame of a 1500-byte MTU; 8192 slots
/// (16 MiB) absorb the milliseconds the switch thread is not running during
/// a 64-byte flood on a busy core.
pub(super) const RING_FRAME_SIZE: u32 = 2048;
const RING_BLOCK_SIZE: u32 = 64 * 1024;
const RING_FRAMES: u32 = 8192;

/// A `TPACKET_V2` receive ring mapped into this process.
pub(super) struct RxRing {
    base: *mut u8,
    size: usize,
    pub(super) frames: u32,
    frames_per_block: u32,
    /// Next slot the kernel fills.
    pub(super) head: u32,
}

impl RxRing {
    pub(super) fn slot(&self, index: u32) -> *mut u8 {
        let block = index / self.frames_per_block;
        let within = index % self.frames_per_block;
        let offset =
            block as usize * RING_BLOCK_SIZE as usize + within as usize * RING_FRAME_SIZE as usize;
        // SAFETY: index < frames, so the offset lies inside the mapping.
        unsafe { self.base.add(offset) }
    }

    pub(super) fn status(&self, index: u32) -> &std::sync::atomic::AtomicU32 {
        // SAFETY: every slot starts with a 4-byte aligned `tp_status` the
        // kernel and this process share; atomics give the ordering the ring
        // protocol needs.
        unsafe {
            &*(self.slot(index).add(ring_field::STATUS) as *const std::sync::atomic::AtomicU32)
        }
    }

    pub(super) fn read_u32(&self, index: u32, at: usize) -> u32 {
        // SAFETY: `at` is a header field offset inside the slot.
        unsafe { std::ptr::read_unaligned(self.slot(index).add(at) as *const u32) }
    }

    pub(super) fn read_u16(&self, index: u32, at: usize) -> u16 {
        // SAFETY: as above.
        unsafe { std::ptr::read_unaligned(self.slot(index).add(at) as *const u16) }
    }

    pub(super) fn give_back(&self, index: u32) {
        self.status(index)
            .store(0, std::sync::atomic::Ordering::Release);
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in `setup_ring`.
        unsafe { libc::munmap(self.base.cast(), self.size) };
    }
}

/// Sets up and maps the receive ring of a packet socket (after
/// `PACKET_VNET_HDR`). Frames too large for a slot are queued whole on the
/// socket (`PACKET_COPY_THRESH`).
pub(super) fn setup_ring(fd: RawFd) -> io::Result<RxRing> {
    set_int_option(
        fd,
        libc::SOL_PACKET,
        PACKET_VERSION,
        TPACKET_V2,
        "PACKET_VERSION",
    )?;
    // Frames that do not fit a slot are queued whole on the socket.
    set_int_option(
        fd,
        libc::SOL_PACKET,
        PACKET_COPY_THRESH,
        1,
        "PACKET_COPY_THRESH",
    )?;
    #[repr(C)]
    struct TpacketReq {
        block_size: u32,
        block_nr: u32,
        frame_size: u32,
        frame_nr: u32,
    }
    let frames_per_block = RING_BLOCK_SIZE / RING_FRAME_SIZE;
    let request = TpacketReq {
        block_size: RING_BLOCK_SIZE,
        block_nr: RING_FRAMES / frames_per_block,
        frame_size: RING_FRAME_SIZE,
        frame_nr: RING_FRAMES,
    };
    // SAFETY: `request` outlives the call and its size is passed.
    check(
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                PACKET_RX_RING,
                (&request as *const TpacketReq).cast(),
                mem::size_of::<TpacketReq>() as libc::socklen_t,
            )
        },
        "PACKET_RX_RING",
    )?;
    let size = (RING_BLOCK_SIZE * request.block_nr) as usize;
    // SAFETY: mapping the ring the kernel just allocated for this socket.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::new(
            io::Error::last_os_error().kind(),
            format!("mmap the receive ring: {}", io::Error::last_os_error()),
        ));
    }
    Ok(RxRing {
        base: base.cast(),
        size,
        frames: RING_FRAMES,
        frames_per_block,
        head: 0,
    })
}
