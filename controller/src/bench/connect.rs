//! New TCP connections per second between two network namespaces: a few
//! clients connect and reset at once against one accepting thread. Neither
//! side keeps TIME_WAIT sockets, so a run measures the path's handshakes,
//! not the hosts' socket tables.

use anyhow::{Context, Result, bail};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Port the connection-rate test connects to (the firewall bench's topology
/// allows it).
pub(super) const CONNECT_PORT: u16 = 6000;

/// Clients opening connections at once in the connection-rate test.
const CONNECTORS: usize = 4;

/// Makes closing `stream` send a RST (no TIME_WAIT socket left behind).
fn reset_on_close(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid linger struct of the size passed, on a live socket.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as u32,
        );
    }
}

/// Completed TCP connections per second from `client_ns` to `server`, by
/// `CONNECTORS` clients at once (each connection opened, then reset by the
/// client, so that neither side piles up TIME_WAIT sockets).
pub(super) fn connect_rate(
    server_ns: &str,
    client_ns: &str,
    server: SocketAddr,
    seconds: u64,
) -> Result<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (ns, flag) = (server_ns.to_string(), stop.clone());
    let acceptor = std::thread::spawn(move || -> Result<()> {
        sdn_vswitch::netns::enter(&ns)?;
        let listener = TcpListener::bind(server)?;
        // A deep accept queue: with a shallow one, a path that delivers
        // SYNs faster than this thread accepts drops them, and the clients
        // stall for a retransmission second.
        // SAFETY: listen(2) on a socket this thread owns.
        unsafe { libc::listen(listener.as_raw_fd(), 4096) };
        let _ = ready_tx.send(());
        while !flag.load(Ordering::Relaxed) {
            drop(listener.accept()?);
        }
        Ok(())
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .context("the connection server did not start")?;
    let clients: Vec<_> = (0..CONNECTORS)
        .map(|_| {
            let ns = client_ns.to_string();
            std::thread::spawn(move || -> Result<(u64, Duration)> {
                sdn_vswitch::netns::enter(&ns)?;
                let started = Instant::now();
                let deadline = started + Duration::from_secs(seconds);
                let mut count = 0u64;
                while Instant::now() < deadline {
                    let stream = TcpStream::connect_timeout(&server, Duration::from_secs(2))
                        .context("connect")?;
                    reset_on_close(&stream);
                    count += 1;
                }
                Ok((count, started.elapsed()))
            })
        })
        .collect();
    let mut counted = Ok((0u64, Duration::ZERO));
    for client in clients {
        let result = client
            .join()
            .unwrap_or_else(|_| bail!("connection thread panicked"));
        counted = match (counted, result) {
            (Ok((total, longest)), Ok((count, elapsed))) => {
                Ok((total + count, longest.max(elapsed)))
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
    }
    stop.store(true, Ordering::Relaxed);
    // Wake the acceptor for its last round.
    let ns = client_ns.to_string();
    let _ = std::thread::spawn(move || {
        if sdn_vswitch::netns::enter(&ns).is_ok() {
            let _ = TcpStream::connect_timeout(&server, Duration::from_millis(500));
        }
    })
    .join();
    let _ = acceptor.join();
    let (count, elapsed) = counted?;
    Ok(count as f64 / elapsed.as_secs_f64())
}

/// New connections per second of one path, over runs.
#[derive(Debug, Clone, Default)]
pub(super) struct ConnResult {
    /// Its name in tables.
    pub(super) name: String,
    /// Each run's new connections per second.
    pub(super) rates: Vec<f64>,
    /// Why a run failed or the path was not measured.
    pub(super) note: Option<String>,
}

impl ConnResult {
    /// A path not measured yet.
    pub(super) fn new(name: &str) -> ConnResult {
        ConnResult {
            name: name.into(),
            ..ConnResult::default()
        }
    }

    /// Run number `run` (from 0) of `seconds` against `server` in
    /// `server_ns` from `client_ns`, added to the rates; a failure becomes
    /// the note.
    pub(super) fn measure_once(
        &mut self,
        server_ns: &str,
        client_ns: &str,
        server: SocketAddr,
        seconds: u64,
        run: usize,
    ) {
        match connect_rate(server_ns, client_ns, server, seconds) {
            Ok(rate) => {
                eprintln!(
                    "  {} run {}: {rate:.0} new connections/s",
                    self.name,
                    run + 1
                );
                self.rates.push(rate);
            }
            Err(e) => self.note = Some(format!("connection run failed: {e:#}")),
        }
    }
}
