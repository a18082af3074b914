//! The control side of an ESP port: installing and removing SAs, reading
//! counters, and IKE messages in and out of UDP port 4500 (the IKE daemon's
//! end, shared with the datapath thread that runs the port).

use super::datagram::NON_ESP_MARKER;
use super::stats::{EspCounters, EspStats};
use super::table::SaTable;
use sdn_vpn::esp::{InboundSa, OutboundSa};
use std::io;
use std::net::{SocketAddrV4, UdpSocket};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// An IKE message received on UDP port 4500: who sent it and the message
/// (the non-ESP marker removed).
pub type IkeMessage = (SocketAddrV4, Vec<u8>);

/// IKE messages queued for the IKE receiver before more are dropped.
pub const IKE_QUEUE: usize = 64;

/// What the port and its handles share.
pub(super) struct Shared {
    /// The SAs and counters; the port locks it once per batch.
    table: Mutex<SaTable>,
    /// A duplicate of the port's socket, to send IKE messages from
    /// local:4500 (the port alone receives).
    socket: UdpSocket,
    /// The IKE receiver until someone takes it.
    ike_receiver: Mutex<Option<mpsc::Receiver<IkeMessage>>>,
}

impl Shared {
    /// The shared state over `socket` and the receiving end of the IKE
    /// queue.
    pub(super) fn new(socket: UdpSocket, ike_receiver: mpsc::Receiver<IkeMessage>) -> Shared {
        Shared {
            table: Mutex::new(SaTable::default()),
            socket,
            ike_receiver: Mutex::new(Some(ike_receiver)),
        }
    }

    /// The SA table. A thread that panicked holding it left counters at
    /// worst half updated; the SAs themselves stay whole, so go on.
    pub(super) fn table(&self) -> MutexGuard<'_, SaTable> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Hands an IKE message from `from` to the IKE receiver without waiting;
/// counts it queued, or dropped when the queue is full or closed.
pub(super) fn queue_ike(
    sender: &mpsc::Sender<IkeMessage>,
    counters: &mut EspCounters,
    from: SocketAddrV4,
    message: &[u8],
) {
    if sender.capacity() == 0 {
        // Full: no copy made for nothing.
        counters.ike_dropped += 1;
        return;
    }
    match sender.try_send((from, message.to_vec())) {
        Ok(()) => counters.ike_queued += 1,
        Err(_) => counters.ike_dropped += 1,
    }
}

/// The control handle of an ESP port: clone it freely; every clone works on
/// the same port. Calls lock the port's SA table briefly (at most the time
/// the port takes over one batch).
#[derive(Clone)]
pub struct EspHandle {
    shared: Arc<Shared>,
    local: SocketAddrV4,
}

impl std::fmt::Debug for EspHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EspHandle")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl EspHandle {
    pub(super) fn new(shared: Arc<Shared>, local: SocketAddrV4) -> EspHandle {
        EspHandle { shared, local }
    }

    /// The port's address: its local IPv4 address and UDP port 4500.
    pub fn local(&self) -> SocketAddrV4 {
        self.local
    }

    /// Installs `sa` to seal the packets of tunnel `tunnel_id` for `peer`
    /// (its address and UDP port: 4500, or what NAT traversal found). It
    /// seals every new packet of the tunnel from now on; the tunnel's older
    /// outbound SAs stay installed until removed (make-before-break: install
    /// the new inbound SA first, then the new outbound, then remove the
    /// old). An SA of the tunnel with the same SPI is replaced.
    pub fn install_outbound(&self, tunnel_id: u32, peer: SocketAddrV4, sa: OutboundSa) {
        let spi = sa.spi();
        self.shared.table().install_outbound(tunnel_id, peer, sa);
        info!(port = %self.local, tunnel_id, spi = format_args!("{spi:#010x}"), %peer, "outbound SA installed");
    }

    /// Installs `sa` to open ESP packets with its SPI; what they hold enters
    /// the pipeline from tunnel `tunnel_id`. An SA with the same SPI is
    /// replaced (and its keys wiped).
    pub fn install_inbound(&self, tunnel_id: u32, sa: InboundSa) {
        let spi = sa.spi();
        let replaced = self.shared.table().install_inbound(tunnel_id, sa);
        info!(port = %self.local, tunnel_id, spi = format_args!("{spi:#010x}"), "inbound SA installed");
        if let Some(old) = replaced {
            warn!(port = %self.local, tunnel_id, old_tunnel_id = old, spi = format_args!("{spi:#010x}"), "inbound SA replaced one with the same SPI");
        }
    }

    /// Removes the inbound SA with `spi` and every outbound SA with `spi`
    /// (two peers may have picked the same outbound SPI: see
    /// [`EspHandle::remove_outbound`]). Returns how many SAs were removed.
    /// Their keys are wiped as they drop.
    pub fn remove_sa(&self, spi: u32) -> usize {
        let removed = self.shared.table().remove_sa(spi);
        info!(port = %self.local, spi = format_args!("{spi:#010x}"), removed, "SA removed");
        removed
    }

    /// Removes the outbound SA with `spi` of tunnel `tunnel_id` only;
    /// returns whether there was one.
    pub fn remove_outbound(&self, tunnel_id: u32, spi: u32) -> bool {
        let removed = self.shared.table().remove_outbound(tunnel_id, spi);
        info!(port = %self.local, tunnel_id, spi = format_args!("{spi:#010x}"), removed, "outbound SA removed");
        removed
    }

    /// The port's counters now.
    pub fn stats(&self) -> EspStats {
        self.shared.table().stats()
    }

    /// Sends IKE message `message` to `to` from local:4500, behind the
    /// non-ESP marker (RFC 3948 §2.2). Does not wait.
    ///
    /// # Errors
    /// The socket's: `WouldBlock` when its send buffer is full, or what the
    /// kernel says of the destination.
    pub fn send_ike(&self, to: SocketAddrV4, message: &[u8]) -> io::Result<()> {
        let mut datagram = Vec::with_capacity(NON_ESP_MARKER.len() + message.len());
        datagram.extend_from_slice(&NON_ESP_MARKER);
        datagram.extend_from_slice(message);
        let sent = self.shared.socket.send_to(&datagram, to)?;
        if sent != datagram.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!(
                    "IKE message to {to}: sent {sent} of {} bytes",
                    datagram.len()
                ),
            ));
        }
        Ok(())
    }

    /// The receiver of IKE messages that arrive on UDP port 4500, the first
    /// time it is asked for; `None` after. Until it is taken, and while it is
    /// full, messages are dropped and counted (`ike_dropped`).
    pub fn take_ike_receiver(&self) -> Option<mpsc::Receiver<IkeMessage>> {
        self.shared
            .ike_receiver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn the_handle_goes_to_any_thread() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<EspHandle>();
    }

    #[test]
    fn ike_messages_queue_until_full_then_count_as_dropped() {
        let (sender, mut receiver) = mpsc::channel(2);
        let mut counters = EspCounters::default();
        let from = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 4500);
        for i in 0..3u8 {
            queue_ike(&sender, &mut counters, from, &[i; 30]);
        }
        assert_eq!((counters.ike_queued, counters.ike_dropped), (2, 1));
        assert_eq!(receiver.try_recv().unwrap(), (from, vec![0; 30]));
        queue_ike(&sender, &mut counters, from, &[9; 30]);
        assert_eq!(counters.ike_queued, 3, "room again after one was read");
        drop(receiver);
        queue_ike(&sender, &mut counters, from, &[9; 30]);
        assert_eq!(counters.ike_dropped, 2, "a closed queue drops");
        assert_eq!(counters.dropped(), 0, "IKE drops are no packet drops");
    }
}
