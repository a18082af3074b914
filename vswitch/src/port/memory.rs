//! In-memory port for tests: frames injected by a `MemoryLink` handle arrive at
//! the switch, frames the switch sends are collected for the test to read. An
//! eventfd makes it pollable like a socket.

use super::{Port, PortInfo, RxBatch, TxFrame};
use crate::pipeline::{TunnelMeta, TunnelTarget};
use crate::wire::{EthernetAddress, VnetHeader, VnetRepr, vnet_hdr};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Default)]
struct Queues {
    to_switch: VecDeque<(VnetRepr, Vec<u8>, Option<TunnelMeta>)>,
    from_switch: Vec<Vec<u8>>,
    tunnels: Vec<Option<TunnelTarget>>,
}

/// The test's end of a memory port.
#[derive(Debug, Clone)]
pub struct MemoryLink {
    queues: Arc<Mutex<Queues>>,
    event: Arc<OwnedFd>,
}

impl MemoryLink {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.queues
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a frame for the switch to receive.
    pub fn inject(&self, frame: &[u8]) {
        self.inject_with(VnetRepr::PLAIN, frame);
    }

    /// Queues a frame with offload metadata.
    pub fn inject_with(&self, vnet: VnetRepr, frame: &[u8]) {
        self.lock()
            .to_switch
            .push_back((vnet, frame.to_vec(), None));
        self.signal();
    }

    /// Queues a frame as if it came out of a tunnel.
    pub fn inject_tunneled(&self, tunnel: TunnelMeta, frame: &[u8]) {
        self.lock()
            .to_switch
            .push_back((VnetRepr::PLAIN, frame.to_vec(), Some(tunnel)));
        self.signal();
    }

    /// Takes the tunnel targets of the frames sent so far (in the order of
    /// `take_sent`; take both together).
    pub fn take_tunnels(&self) -> Vec<Option<TunnelTarget>> {
        std::mem::take(&mut self.lock().tunnels)
    }

    fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a live u64 to an eventfd.
        unsafe { libc::write(self.event.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Takes the frames the switch sent so far (with the virtio-net header
    /// when the port has offloads).
    pub fn take_sent(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.lock().from_switch)
    }
}

/// The switch's end of a memory port.
#[derive(Debug)]
pub struct MemoryPort {
    info: PortInfo,
    link: MemoryLink,
}

impl MemoryPort {
    /// A port named `name` and the test's handle to it.
    pub fn new(
        name: &str,
        hw_addr: EthernetAddress,
        offloads: bool,
    ) -> io::Result<(MemoryPort, MemoryLink)> {
        // SAFETY: plain eventfd(2) call.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let event = Arc::new(unsafe { OwnedFd::from_raw_fd(raw) });
        let link = MemoryLink {
            queues: Arc::default(),
            event,
        };
        let port = MemoryPort {
            info: PortInfo {
                name: name.to_string(),
                hw_addr,
                mtu: 1500,
                offloads,
                tunnel_local: None,
            },
            link: link.clone(),
        };
        Ok((port, link))
    }
}

impl Port for MemoryPort {
    fn info(&self) -> &PortInfo {
        &self.info
    }

    fn fd(&self) -> Option<RawFd> {
        Some(self.link.event.as_raw_fd())
    }

    fn recv_batch(&mut self, batch: &mut RxBatch) -> io::Result<usize> {
        let mut counter = [0u8; 8];
        // SAFETY: reading 8 bytes into a live buffer from a non-blocking eventfd.
        unsafe { libc::read(self.link.event.as_raw_fd(), counter.as_mut_ptr().cast(), 8) };
        let mut queues = self.link.lock();
        batch.clear();
        let mut count = 0;
        while count < batch.capacity() {
            let Some((vnet, frame, tunnel)) = queues.to_switch.pop_front() else {
                break;
            };
            let slot = batch.storage_mut(count);
            let len = vnet_hdr::HEADER_LEN + frame.len();
            if len > slot.len() {
                continue;
            }
            vnet.emit(&mut VnetHeader::new_unchecked(
                &mut slot[..vnet_hdr::HEADER_LEN],
            ));
            slot[vnet_hdr::HEADER_LEN..len].copy_from_slice(&frame);
            batch.push_stored_at(count, 0, len, tunnel);
            count += 1;
        }
        if !queues.to_switch.is_empty() {
            // More left: stay readable.
            let one: u64 = 1;
            // SAFETY: as in `inject_with`.
            unsafe { libc::write(self.link.event.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
        Ok(count)
    }

    fn send_batch(&mut self, frames: &mut dyn Iterator<Item = TxFrame<'_>>) -> io::Result<usize> {
        let mut queues = self.link.lock();
        let before = queues.from_switch.len();
        for frame in frames {
            queues.from_switch.push(frame.data.to_vec());
            queues.tunnels.push(frame.tunnel);
        }
        Ok(queues.from_switch.len() - before)
    }
}
