//! The I/O shell of a switch: one thread that polls the ports, moves frames in
//! batches through the pipeline and out again, and talks to the controller
//! agent through a command channel (woken by an eventfd) and an event channel.
//! Frames go out of the very buffers they arrived in; only packet-ins,
//! captures and segmentation for ports without offloads copy.

mod edge;
mod messages;

pub use messages::*;

use edge::{
    Capture, account, capture, fragments_of, gso_size_of, pin_to_cpu, segments_of,
    send_without_offloads,
};

use crate::flow::PortNo;
use crate::gso::Segments;
use crate::pipeline::{
    Decision, FrameMeta, OwnedFrame, PacketInRequest, Pipeline, TunnelMeta, TunnelTarget,
};
use crate::port::{Port, RxBatch, TxFrame};
use crate::probe::{PROBE_PORT, ProbeEngine};
use crate::wire::{VnetHeader, VnetRepr, vnet_hdr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, info, warn};

/// Packet-ins and capture batches waiting for the agent beyond this are dropped.
pub const MAX_PENDING_EVENTS: usize = 1024;

/// Batches taken from one port before the others get a turn.
const ROUNDS_PER_PORT: usize = 4;

/// Wakes the datapath thread from another thread.
#[derive(Debug, Clone)]
pub struct Waker {
    fd: Arc<OwnedFd>,
}

impl Waker {
    fn new() -> io::Result<Waker> {
        // SAFETY: plain eventfd(2) call.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        Ok(Waker {
            fd: Arc::new(unsafe { OwnedFd::from_raw_fd(raw) }),
        })
    }

    /// Makes the next (or current) poll return.
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a live u64 to an eventfd.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    fn drain(&self) {
        let mut buf = [0u8; 8];
        // SAFETY: reading 8 bytes into a live buffer from a non-blocking eventfd.
        unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
    }
}

/// The agent's handle to a running datapath.
#[derive(Debug, Clone)]
pub struct DatapathHandle {
    commands: mpsc::Sender<Command>,
    waker: Waker,
    /// Events sent and not yet consumed (packet-ins, captures).
    pub pending: Arc<AtomicUsize>,
}

impl DatapathHandle {
    /// Queues a command; false if the datapath has stopped.
    pub fn send(&self, command: Command) -> bool {
        let ok = self.commands.send(command).is_ok();
        self.waker.wake();
        ok
    }

    /// Marks a bounded event (packet-in or capture) as consumed.
    pub fn consumed(&self) {
        let _ = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }
}

/// A frame that owns its bytes, waiting to be sent: offload metadata, the
/// frame, and where to tunnel it.
type OwnedTx = (VnetRepr, Vec<u8>, Option<TunnelTarget>);

/// The datapath of one switch.
pub struct Datapath {
    pipeline: Pipeline,
    ports: Vec<Box<dyn Port>>,
    numbers: Vec<PortNo>,
    counters: Vec<PortCounters>,
    rx: Vec<RxBatch>,
    /// Port number → index into `ports`.
    index_of: Vec<Option<usize>>,
    /// Per output port: indexes of frames in the current receive batch.
    tx_lists: Vec<Vec<(usize, Option<TunnelTarget>)>>,
    /// Per output port: frames that own their bytes (snapshots, packet-outs).
    tx_owned: Vec<Vec<OwnedTx>>,
    decision: Decision,
    segments: Segments,
    captures: Vec<Capture>,
    controller: ControllerState,
    stats: DatapathCounters,
    events: UnboundedSender<Event>,
    pending: Arc<AtomicUsize>,
    probes: ProbeEngine,
    /// Probe segments waiting to enter the pipeline.
    probe_frames: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Datapath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Datapath")
            .field("ports", &self.numbers)
            .finish()
    }
}

impl Datapath {
    /// A datapath over `ports` (number, backend), reporting to `events`.
    /// Starts with empty tables and no controller.
    pub fn new(ports: Vec<(PortNo, Box<dyn Port>)>, events: UnboundedSender<Event>) -> Datapath {
        let max = ports.iter().map(|(n, _)| *n as usize).max().unwrap_or(0);
        let mut index_of = vec![None; max + 1];
        for (i, (n, _)) in ports.iter().enumerate() {
            index_of[*n as usize] = Some(i);
        }
        let numbers: Vec<PortNo> = ports.iter().map(|(n, _)| *n).collect();
        let mut pipeline = Pipeline::new();
        pipeline.set_ports(&numbers);
        let count = ports.len();
        Datapath {
            pipeline,
            ports: ports.into_iter().map(|(_, p)| p).collect(),
            numbers,
            counters: vec![PortCounters::default(); count],
            rx: (0..count).map(|_| RxBatch::default()).collect(),
            index_of,
            tx_lists: vec![Vec::new(); count],
            tx_owned: vec![Vec::new(); count],
            decision: Decision::default(),
            segments: Segments::default(),
            captures: Vec::new(),
            controller: ControllerState::Disconnected,
            stats: DatapathCounters::default(),
            events,
            pending: Arc::new(AtomicUsize::new(0)),
            probes: ProbeEngine::default(),
            probe_frames: Vec::new(),
        }
    }

    /// The ports, for the controller's hello.
    pub fn port_descriptions(&self) -> Vec<PortDescription> {
        self.numbers
            .iter()
            .zip(&self.ports)
            .map(|(n, p)| PortDescription {
                number: *n,
                info: p.info().clone(),
            })
            .collect()
    }

    /// Starts the datapath thread, pinned to `cpu` if given (a pinned
    /// datapath does not migrate between cores with the traffic it carries).
    pub fn spawn(
        self,
        name: &str,
        cpu: Option<usize>,
    ) -> io::Result<(DatapathHandle, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel();
        let waker = Waker::new()?;
        let handle = DatapathHandle {
            commands: tx,
            waker: waker.clone(),
            pending: self.pending.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("datapath-{name}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    match pin_to_cpu(cpu) {
                        Ok(()) => info!(cpu, "datapath thread pinned"),
                        Err(err) => warn!(cpu, error = %err, "cannot pin the datapath thread; it runs unpinned"),
                    }
                }
                self.run(rx, waker)
            })?;
        Ok((handle, thread))
    }

    fn run(mut self, commands: mpsc::Receiver<Command>, waker: Waker) {
        let mut pollfds: Vec<libc::pollfd> = std::iter::once(waker.fd.as_raw_fd())
            .chain(self.ports.iter().map(|p| p.fd().unwrap_or(-1)))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        info!(ports = self.ports.len(), "datapath running");
        loop {
            let deadline = match (self.pipeline.poll_timeout(), self.probes.poll_timeout()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let timeout_ms = match deadline {
                Some(deadline) => {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    // Round up so we do not spin just before a deadline.
                    i32::try_from(wait.as_millis() + 1).unwrap_or(i32::MAX)
                }
                None => 1000,
            };
            let timeout_ms = if self.captures.iter().any(|c| !c.frames.is_empty()) {
                0
            } else {
                timeout_ms
            };
            // SAFETY: `pollfds` is a live, correctly sized array of pollfd.
            let ready = unsafe {
                libc::poll(
                    pollfds.as_mut_ptr(),
                    pollfds.len() as libc::nfds_t,
                    timeout_ms,
                )
            };
            if ready < 0 {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    warn!(error = %err, "poll failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            let now = Instant::now();
            if pollfds[0].revents != 0 {
                waker.drain();
                loop {
                    match commands.try_recv() {
                        Ok(Command::Shutdown) | Err(TryRecvError::Disconnected) => {
                            info!("datapath stopping");
                            return;
                        }
                        Ok(command) => self.handle_command(command, now),
                        Err(TryRecvError::Empty) => break,
                    }
                }
            }
            for i in 0..self.ports.len() {
                if pollfds[i + 1].revents & (libc::POLLIN | libc::POLLERR) == 0 {
                    continue;
                }
                for _ in 0..ROUNDS_PER_PORT {
                    let n = match self.ports[i].recv_batch(&mut self.rx[i]) {
                        Ok(n) => n,
                        Err(err) => {
                            self.counters[i].rx_errors += 1;
                            debug!(port = %self.ports[i].info().name, error = %err, "receive failed");
                            0
                        }
                    };
                    if n == 0 {
                        break;
                    }
                    self.process_batch(i, n, now);
                    if n < self.rx[i].capacity() {
                        break;
                    }
                }
            }
            for removed in self.pipeline.handle_timeout(now) {
                let _ = self.events.send(Event::FlowRemoved(removed));
            }
            self.probes.handle_timeout(now, &mut self.probe_frames);
            self.run_probes(now);
            self.flush_captures();
        }
    }

    fn send_bounded(&mut self, event: Event) -> bool {
        if self.pending.load(Ordering::Relaxed) >= MAX_PENDING_EVENTS {
            return false;
        }
        self.pending.fetch_add(1, Ordering::Relaxed);
        self.events.send(event).is_ok()
    }

    fn process_batch(&mut self, i: usize, n: usize, now: Instant) {
        let in_port = self.numbers[i];
        for k in 0..n {
            let vnet = self.rx[i].vnet(k);
            let frame_len = self.rx[i].frame(k).len();
            self.counters[i].rx_packets += 1;
            self.counters[i].rx_bytes += frame_len as u64;
            if !self.captures.is_empty() {
                capture(&mut self.captures, i, self.rx[i].frame(k), true);
            }
            let tunnel = self.rx[i].tunnel(k);
            let meta = FrameMeta {
                in_port,
                segments: segments_of(frame_len, &vnet),
                partial_checksum: vnet.needs_checksum(),
                tunnel,
                gso_size: gso_size_of(&vnet),
            };
            let mut frame = self.rx[i].frame_buf(k);
            if self.controller == ControllerState::FailOpen {
                self.pipeline
                    .process_normal(&mut frame, meta, now, &mut self.decision);
            } else {
                self.pipeline
                    .process(&mut frame, meta, now, &mut self.decision);
            }
            if self.decision.is_drop() {
                continue;
            }
            self.queue_generated();
            let fragments = self.decision.fragment_mtu.and_then(|mtu| {
                let now_len = self.rx[i].frame(k).len();
                let vnet = vnet.shifted(now_len as isize - frame_len as isize);
                fragments_of(self.rx[i].frame(k), &vnet, mtu, &mut self.stats)
            });
            for out in &self.decision.outputs {
                if out.port == PROBE_PORT {
                    let frame = self.rx[i].frame(k);
                    self.probes.handle_frame(frame, now, &mut self.probe_frames);
                    continue;
                }
                if let Some(Some(j)) = self.index_of.get(out.port as usize) {
                    match &fragments {
                        // Too big for the next hop and free to fragment.
                        Some(pieces) => self.tx_owned[*j].extend(
                            pieces
                                .iter()
                                .map(|p| (VnetRepr::default(), p.clone(), out.tunnel)),
                        ),
                        None => self.tx_lists[*j].push((k, out.tunnel)),
                    }
                }
            }
            for (out, bytes) in self.decision.snapshots.drain(..) {
                if let Some(Some(j)) = self.index_of.get(out.port as usize) {
                    // A copy taken with a tag pushed or popped: its header's
                    // offsets move with its front.
                    let vnet = vnet.shifted(bytes.len() as isize - frame_len as isize);
                    self.tx_owned[*j].push((vnet, bytes, out.tunnel));
                }
            }
            if let Some(request) = self.decision.controller {
                self.packet_in(i, k, request, self.rx[i].vnet(k), tunnel);
            }
        }
        self.flush(Some(i));
        self.ports[i].release(&mut self.rx[i]);
        self.run_probes(now);
    }

    /// Sends the probe segments waiting into the pipeline (on the probe
    /// pseudo-port), and the health changes to the controller.
    fn run_probes(&mut self, now: Instant) {
        let changes: Vec<_> = std::iter::from_fn(|| self.probes.poll_change()).collect();
        if !changes.is_empty() {
            let _ = self.events.send(Event::ProbeChange(changes));
        }
        if self.probe_frames.is_empty() {
            return;
        }
        for data in std::mem::take(&mut self.probe_frames) {
            let mut frame = OwnedFrame::new(&data);
            self.pipeline.process(
                &mut frame,
                FrameMeta::plain(PROBE_PORT),
                now,
                &mut self.decision,
            );
            let data = frame.into_vec();
            let outputs = std::mem::take(&mut self.decision.outputs);
            for out in &outputs {
                if let Some(Some(j)) = self.index_of.get(out.port as usize) {
                    self.tx_owned[*j].push((VnetRepr::default(), data.clone(), out.tunnel));
                }
            }
            self.decision.outputs = outputs;
            for (out, bytes) in self.decision.snapshots.drain(..) {
                if let Some(Some(j)) = self.index_of.get(out.port as usize) {
                    self.tx_owned[*j].push((VnetRepr::default(), bytes, out.tunnel));
                }
            }
            self.queue_generated();
        }
        self.flush(None);
    }

    /// Queues the frames the pipeline made (ICMP errors): they carry no
    /// offload metadata.
    fn queue_generated(&mut self) {
        for (out, bytes) in self.decision.generated.drain(..) {
            if let Some(Some(j)) = self.index_of.get(out.port as usize) {
                self.tx_owned[*j].push((VnetRepr::default(), bytes, out.tunnel));
            }
        }
    }

    fn packet_in(
        &mut self,
        i: usize,
        k: usize,
        request: PacketInRequest,
        vnet: VnetRepr,
        tunnel: Option<TunnelMeta>,
    ) {
        if self.controller != ControllerState::Connected {
            self.stats.packet_in_dropped += 1;
            return;
        }
        // The frame as the controller action saw it, if later steps changed it.
        let frame = match &self.decision.controller_frame {
            Some(earlier) => earlier.as_slice(),
            None => self.rx[i].frame(k),
        };
        let keep = match request.max_len {
            0 => frame.len(),
            n => frame.len().min(usize::from(n)),
        };
        let event = Event::PacketIn {
            in_port: self.numbers[i],
            request,
            total_len: u32::try_from(frame.len()).unwrap_or(u32::MAX),
            data: frame[..keep].to_vec(),
            vnet,
            tunnel,
        };
        if self.send_bounded(event) {
            self.stats.packet_in_sent += 1;
        } else {
            self.stats.packet_in_dropped += 1;
        }
    }

    /// Sends what the last batch (of port `source`, if any) queued.
    fn flush(&mut self, source: Option<usize>) {
        for j in 0..self.ports.len() {
            if self.tx_lists[j].is_empty() && self.tx_owned[j].is_empty() {
                continue;
            }
            let offloads = self.ports[j].info().offloads;
            let list = std::mem::take(&mut self.tx_lists[j]);
            if let Some(i) = source
                && !list.is_empty()
            {
                let rx = &self.rx[i];
                if !self.captures.is_empty() {
                    for &(k, _) in &list {
                        capture(&mut self.captures, j, rx.frame(k), false);
                    }
                }
                if offloads {
                    let bytes: u64 = list.iter().map(|&(k, _)| rx.frame(k).len() as u64).sum();
                    let mut frames = list.iter().map(|&(k, tunnel)| TxFrame {
                        data: rx.with_vnet(k),
                        tunnel,
                    });
                    let sent = self.ports[j].send_batch(&mut frames);
                    account(&mut self.counters[j], sent, list.len(), bytes);
                } else {
                    // Runs of frames that need no segmenting or checksum go
                    // out in one batch; the others one by one, finished first.
                    let plain = |k: usize| {
                        let vnet = rx.vnet(k);
                        !vnet.is_gso() && !vnet.needs_checksum()
                    };
                    let mut rest = &list[..];
                    while !rest.is_empty() {
                        let run = rest.iter().take_while(|&&(k, _)| plain(k)).count();
                        if run > 0 {
                            let (batch, after) = rest.split_at(run);
                            let bytes: u64 =
                                batch.iter().map(|&(k, _)| rx.frame(k).len() as u64).sum();
                            let mut frames = batch.iter().map(|&(k, tunnel)| TxFrame {
                                data: rx.frame(k),
                                tunnel,
                            });
                            let sent = self.ports[j].send_batch(&mut frames);
                            account(&mut self.counters[j], sent, run, bytes);
                            rest = after;
                            continue;
                        }
                        let (k, tunnel) = rest[0];
                        send_without_offloads(
                            self.ports[j].as_mut(),
                            &mut self.counters[j],
                            &mut self.stats,
                            &mut self.segments,
                            rx.frame(k),
                            &rx.vnet(k),
                            tunnel,
                        );
                        rest = &rest[1..];
                    }
                }
            }
            let mut list = list;
            list.clear();
            self.tx_lists[j] = list;
            let owned = std::mem::take(&mut self.tx_owned[j]);
            for (vnet, mut bytes, tunnel) in owned {
                if !self.captures.is_empty() {
                    capture(&mut self.captures, j, &bytes, false);
                }
                if offloads {
                    let mut with_header = vec![0u8; vnet_hdr::HEADER_LEN];
                    vnet.emit(&mut VnetHeader::new_unchecked(&mut with_header[..]));
                    with_header.append(&mut bytes);
                    let len = with_header.len() - vnet_hdr::HEADER_LEN;
                    let sent = self.ports[j].send_batch(&mut std::iter::once(TxFrame {
                        data: &with_header,
                        tunnel,
                    }));
                    account(&mut self.counters[j], sent, 1, len as u64);
                } else {
                    let port = self.ports[j].as_mut();
                    send_without_offloads(
                        port,
                        &mut self.counters[j],
                        &mut self.stats,
                        &mut self.segments,
                        &bytes,
                        &vnet,
                        tunnel,
                    );
                }
            }
        }
    }

    fn handle_command(&mut self, command: Command, now: Instant) {
        match command {
            Command::FlowMod { xid, flow_mod } => {
                match self.pipeline.apply_flow_mod(&flow_mod, now) {
                    Ok(removed) => {
                        for r in removed {
                            let _ = self.events.send(Event::FlowRemoved(r));
                        }
                    }
                    Err(err) => {
                        let _ = self.events.send(Event::Error {
                            xid,
                            message: err.to_string(),
                        });
                    }
                }
            }
            Command::Barrier { xid } => {
                let _ = self.events.send(Event::BarrierReply { xid });
            }
            Command::PacketOut {
                xid,
                in_port,
                actions,
                data,
                vnet,
            } => {
                if data.len() < crate::wire::ethernet::HEADER_LEN {
                    let _ = self.events.send(Event::Error {
                        xid,
                        message: "packet-out frame shorter than an Ethernet header".into(),
                    });
                    return;
                }
                let meta = FrameMeta {
                    in_port,
                    segments: segments_of(data.len(), &vnet),
                    partial_checksum: vnet.needs_checksum(),
                    tunnel: None,
                    gso_size: gso_size_of(&vnet),
                };
                let before = data.len();
                let mut frame = OwnedFrame::new(&data);
                self.pipeline
                    .execute_actions(&mut frame, meta, &actions, now, &mut self.decision);
                let data = frame.into_vec();
                // A pushed or popped tag moves what the offload offsets point at.
                let vnet = vnet.shifted(data.len() as isize - before as isize);
                let outputs = std::mem::take(&mut self.decision.outputs);
                for out in &outputs {
                    if let Some(Some(j)) = self.index_of.get(out.port as usize) {
                        self.tx_owned[*j].push((vnet, data.clone(), out.tunnel));
                    }
                }
                self.decision.outputs = outputs;
                for (out, bytes) in self.decision.snapshots.drain(..) {
                    if let Some(Some(j)) = self.index_of.get(out.port as usize) {
                        self.tx_owned[*j].push((vnet, bytes, out.tunnel));
                    }
                }
                self.queue_generated();
                self.flush(None);
            }
            Command::FlowStats {
                xid,
                table,
                filter,
                cookie,
                cookie_mask,
            } => {
                let flows = self
                    .pipeline
                    .flow_stats(table, &filter, cookie, cookie_mask, now);
                let _ = self.events.send(Event::FlowStats { xid, flows });
            }
            Command::PortStats { xid } => {
                let mut ports = Vec::new();
                for (i, description) in self.port_descriptions().into_iter().enumerate() {
                    let mut counters = self.counters[i];
                    counters.tx_dropped += self.ports[i].dropped();
                    ports.push((description, counters));
                }
                let mut datapath = self.stats;
                datapath.pipeline = self.pipeline.counters();
                let _ = self.events.send(Event::PortStats {
                    xid,
                    ports,
                    datapath,
                });
            }
            Command::LbStats { xid } => {
                let groups = self.pipeline.groups();
                let conntrack = self.pipeline.conntrack();
                let live = conntrack.live_balanced();
                let traffic = conntrack.balanced_traffic();
                let backends = groups
                    .ids()
                    .into_iter()
                    .flat_map(|group| {
                        let ids: Vec<u32> = groups
                            .spec(group)
                            .map(|s| s.backends.iter().map(|b| b.id).collect())
                            .unwrap_or_default();
                        ids.into_iter().map(move |backend| (group, backend))
                    })
                    .map(|(group, backend)| BackendReport {
                        group,
                        backend,
                        live: u64::from(live.get(group, backend)),
                        total: groups.stats(group, backend).map_or(0, |s| s.connections),
                        traffic: traffic
                            .get(&crate::conntrack::LbMark { group, backend })
                            .copied()
                            .unwrap_or_default(),
                    })
                    .collect();
                let probes = self.probes.reports();
                let _ = self.events.send(Event::LbStats {
                    xid,
                    backends,
                    probes,
                });
            }
            Command::ProbeMod { probes } => {
                info!(probes = probes.len(), "health probes replaced");
                self.probes.set(probes, now);
            }
            Command::GroupMod { xid, change } => {
                let groups = self.pipeline.groups_mut();
                let result = match change {
                    Ok(spec) => groups.apply(spec).map(|_| ()),
                    Err(group) => {
                        groups.delete(group);
                        Ok(())
                    }
                };
                if let Err(err) = result {
                    let _ = self.events.send(Event::Error {
                        xid,
                        message: err.to_string(),
                    });
                }
            }
            Command::Conntrack { xid, query } => {
                let report = self.pipeline.conntrack_mut().answer(&query, Instant::now());
                let _ = self.events.send(Event::Conntrack { xid, report });
            }
            Command::CaptureStart { id, port, snaplen } => match self.index_of.get(port as usize) {
                Some(Some(port_index)) => {
                    let snaplen = if snaplen == 0 {
                        65_535
                    } else {
                        snaplen as usize
                    };
                    info!(capture = id, port, "capture started");
                    self.captures.push(Capture {
                        id,
                        port_index: *port_index,
                        snaplen,
                        frames: Vec::new(),
                        dropped: 0,
                    });
                }
                _ => {
                    let _ = self.events.send(Event::Error {
                        xid: id,
                        message: format!("no port {port} to capture"),
                    });
                }
            },
            Command::CaptureStop { id } => {
                self.flush_captures();
                self.captures.retain(|c| c.id != id);
                info!(capture = id, "capture stopped");
            }
            Command::Controller(state) => {
                if state != self.controller {
                    info!(?state, "controller state");
                }
                self.controller = state;
            }
            Command::Shutdown => {}
        }
    }

    fn flush_captures(&mut self) {
        for c in 0..self.captures.len() {
            if self.captures[c].frames.is_empty() {
                continue;
            }
            let frames = std::mem::take(&mut self.captures[c].frames);
            let event = Event::Capture {
                id: self.captures[c].id,
                frames,
                dropped: self.captures[c].dropped,
            };
            if !self.send_bounded(event) {
                self.captures[c].dropped += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests;
