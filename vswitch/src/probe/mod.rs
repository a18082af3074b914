//! Health probes that the switch sends itself, from the well-known probe
//! address (Azure's 168.63.129.16), through its own tables: a probe's
//! segments enter the pipeline on the pseudo-port [`PROBE_PORT`] addressed
//! to the gateway MAC, so they are routed to the backend and meet its
//! security rules as any traffic does; the flows send the backends' answers
//! to that address back out of [`PROBE_PORT`], where they reach the engine.
//! The engine runs `sdn_lb`'s probe state machine per probe and a small TCP
//! client per attempt, and reports each backend's changes of health.

mod client;

pub use client::{ProbeClient, ProbeKind, Segment, read_segment};

use crate::flow::PortNo;
use crate::wire::{
    EtherType, EthernetAddress, EthernetFrame, EthernetRepr, IpPair, IpProtocol, Ipv4Packet,
    Ipv4Repr, TcpFlags, TcpRepr, TcpSegment, ethernet,
};
use rustc_hash::FxHashMap;
use sdn_lb::{BackendId, Health, ProbeConfig, ProbeOutcome, ProbeStart, Prober};
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::Instant;

/// The pseudo-port probes enter the pipeline by and their answers leave by.
pub const PROBE_PORT: PortNo = 65_002;

/// The address probes come from (what the `AzureLoadBalancer` tag names).
pub const PROBE_SOURCE: Ipv4Addr = Ipv4Addr::new(168, 63, 129, 16);

/// The MAC probes are sent from (locally administered).
pub const PROBE_MAC: EthernetAddress = EthernetAddress([0x02, 0xa8, 0x3f, 0x81, 0x10, 0x10]);

/// Source ports probes use.
const PORTS: (u16, u16) = (32_768, 60_999);

/// One probe and the backends it checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// The probe's number.
    pub probe: u32,
    /// TCP or HTTP.
    pub kind: ProbeKind,
    /// The backends' port it checks.
    pub port: u16,
    /// Interval, timeout and thresholds.
    pub config: ProbeConfig,
    /// The gateway MAC probes are addressed to (the pipeline routes them).
    pub router_mac: EthernetAddress,
    /// The backends: (id, address).
    pub targets: Vec<(u32, Ipv4Addr)>,
}

/// A backend's state under a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeReport {
    /// The probe.
    pub probe: u32,
    /// The backend.
    pub backend: u32,
    /// Its health.
    pub health: Health,
    /// Its last result, and when.
    pub last: Option<(ProbeOutcome, Instant)>,
}

#[derive(Debug)]
struct ProbeSet {
    spec: ProbeSpec,
    prober: Prober,
}

#[derive(Debug)]
struct Attempt {
    set: usize,
    start: ProbeStart,
    client: ProbeClient,
    target: Ipv4Addr,
    /// After this the attempt is the prober's timeout, and forgotten.
    until: Instant,
}

/// Every probe of a switch.
#[derive(Debug, Default)]
pub struct ProbeEngine {
    sets: Vec<ProbeSet>,
    attempts: FxHashMap<u16, Attempt>,
    next_port: u16,
    changes: VecDeque<ProbeReport>,
    /// The earliest timer of any probe, kept so that the datapath's loop
    /// asks in constant time.
    deadline: Option<Instant>,
    /// Answers to the probe address that matched no attempt.
    pub stray: u64,
}

impl ProbeEngine {
    /// Replaces the probes: a probe kept with the same timing, kind and port
    /// keeps its backends' state and its attempts under way; new backends
    /// are probed at once. Afterwards every backend's settled state is a
    /// change to report (whoever listens may have missed the earlier ones).
    pub fn set(&mut self, specs: Vec<ProbeSpec>, now: Instant) {
        let mut old: Vec<Option<ProbeSet>> = std::mem::take(&mut self.sets)
            .into_iter()
            .map(Some)
            .collect();
        // Where each kept probe's attempts move: old index to new.
        let mut moved: FxHashMap<usize, usize> = FxHashMap::default();
        for spec in specs {
            let ids: Vec<BackendId> = spec.targets.iter().map(|t| BackendId(t.0)).collect();
            let kept = old.iter().position(|s| {
                s.as_ref().is_some_and(|s| {
                    s.spec.probe == spec.probe
                        && s.spec.config == spec.config
                        && s.spec.kind == spec.kind
                        && s.spec.port == spec.port
                })
            });
            let prober = match kept.and_then(|i| Some((i, old[i].take()?))) {
                Some((i, set)) => {
                    moved.insert(i, self.sets.len());
                    let mut prober = set.prober;
                    prober.set_backends(&ids, now);
                    prober
                }
                None => Prober::new(spec.config, &ids, now),
            };
            self.sets.push(ProbeSet { spec, prober });
        }
        self.attempts.retain(|_, a| match moved.get(&a.set) {
            Some(&to) => {
                a.set = to;
                true
            }
            None => false,
        });
        self.changes = self
            .reports()
            .into_iter()
            .filter(|r| r.health != Health::Unknown)
            .collect();
        self.update_deadline();
    }

    fn update_deadline(&mut self) {
        self.deadline = self
            .sets
            .iter()
            .filter_map(|s| s.prober.poll_timeout())
            .min();
    }

    /// When [`ProbeEngine::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Starts the probes due and times out the late ones; the frames to send
    /// into the pipeline (on [`PROBE_PORT`]) are appended to `out`.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        if self.deadline.is_none_or(|at| at > now) {
            return;
        }
        self.attempts.retain(|_, a| a.until > now);
        for set in 0..self.sets.len() {
            self.sets[set].prober.handle_timeout(now);
            while let Some(start) = self.sets[set].prober.poll_start() {
                let port = self.allocate_port();
                let spec = &self.sets[set].spec;
                let Some(&(_, target)) = spec.targets.iter().find(|t| t.0 == start.backend.0)
                else {
                    continue;
                };
                let iss = (sdn_lb::hash::mix64(start.attempt ^ u64::from(port)) >> 32) as u32;
                let (client, syn) = ProbeClient::start(spec.kind.clone(), target, iss);
                out.push(probe_frame(spec, target, port, &syn));
                let until = now + spec.config.timeout;
                self.attempts.insert(
                    port,
                    Attempt {
                        set,
                        start,
                        client,
                        target,
                        until,
                    },
                );
            }
            self.collect(set);
        }
        self.update_deadline();
    }

    fn allocate_port(&mut self) -> u16 {
        let span = PORTS.1 - PORTS.0 + 1;
        for _ in 0..span {
            let port = PORTS.0 + self.next_port % span;
            self.next_port = self.next_port.wrapping_add(1) % span;
            if !self.attempts.contains_key(&port) {
                return port;
            }
        }
        PORTS.0
    }

    /// A frame the pipeline sent out of [`PROBE_PORT`]: an answer to a
    /// probe. Frames to send back are appended to `out`.
    pub fn handle_frame(&mut self, frame: &[u8], now: Instant, out: &mut Vec<Vec<u8>>) {
        let Some(l3) = ipv4_of(frame) else {
            self.stray += 1;
            return;
        };
        let Some((src, repr, payload)) = read_segment(l3) else {
            self.stray += 1;
            return;
        };
        let Some(attempt) = self.attempts.get_mut(&repr.dst_port) else {
            self.stray += 1;
            return;
        };
        let set = attempt.set;
        let spec = &self.sets[set].spec;
        if src != attempt.target || repr.src_port != spec.port {
            self.stray += 1;
            return;
        }
        let mut segments = Vec::new();
        let outcome = attempt.client.on_segment(
            repr.flags.0,
            repr.seq_number,
            repr.ack_number,
            payload,
            &mut segments,
        );
        for segment in &segments {
            out.push(probe_frame(spec, attempt.target, repr.dst_port, segment));
        }
        if let Some(outcome) = outcome {
            let start = attempt.start;
            self.attempts.remove(&repr.dst_port);
            self.sets[set].prober.on_result(start, outcome, now);
            self.collect(set);
            self.update_deadline();
        }
    }

    fn collect(&mut self, set: usize) {
        let probe = self.sets[set].spec.probe;
        while let Some(t) = self.sets[set].prober.poll_transition() {
            let last = self.sets[set].prober.last_result(t.backend);
            self.changes.push_back(ProbeReport {
                probe,
                backend: t.backend.0,
                health: t.to,
                last,
            });
        }
    }

    /// The next change of a backend's health.
    pub fn poll_change(&mut self) -> Option<ProbeReport> {
        self.changes.pop_front()
    }

    /// Every backend's state under every probe.
    pub fn reports(&self) -> Vec<ProbeReport> {
        self.sets
            .iter()
            .flat_map(|s| {
                s.spec.targets.iter().filter_map(|&(id, _)| {
                    Some(ProbeReport {
                        probe: s.spec.probe,
                        backend: id,
                        health: s.prober.health(BackendId(id))?,
                        last: s.prober.last_result(BackendId(id)),
                    })
                })
            })
            .collect()
    }
}

fn ipv4_of(frame: &[u8]) -> Option<&[u8]> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    (eth.ethertype() == EtherType::Ipv4).then(|| &frame[ethernet::HEADER_LEN..])
}

/// A probe segment from the probe address and `port` to `target`, as a frame
/// to the gateway.
fn probe_frame(spec: &ProbeSpec, target: Ipv4Addr, port: u16, segment: &Segment) -> Vec<u8> {
    let tcp = TcpRepr {
        src_port: port,
        dst_port: spec.port,
        seq_number: segment.seq,
        ack_number: segment.ack,
        flags: TcpFlags(segment.flags | if segment.ack != 0 { TcpFlags::ACK } else { 0 }),
        window: 64_240,
    };
    let ip = Ipv4Repr {
        src_addr: PROBE_SOURCE,
        dst_addr: target,
        protocol: IpProtocol::Tcp,
        payload_len: tcp.buffer_len() + segment.payload.len(),
        ttl: 64,
        dscp_ecn: 0,
        ident: 0,
        dont_fragment: true,
    };
    let eth = EthernetRepr {
        src_addr: PROBE_MAC,
        dst_addr: spec.router_mac,
        ethertype: EtherType::Ipv4,
    };
    let l3_at = ethernet::HEADER_LEN;
    let l4_at = l3_at + ip.buffer_len();
    let mut bytes = vec![0u8; l4_at + ip.payload_len];
    eth.emit(&mut EthernetFrame::new_unchecked(&mut bytes[..]));
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut bytes[l3_at..]));
    let data_at = l4_at + tcp.buffer_len();
    bytes[data_at..].copy_from_slice(&segment.payload);
    tcp.emit(
        &mut TcpSegment::new_unchecked(&mut bytes[l4_at..]),
        IpPair::V4(PROBE_SOURCE, target),
    );
    bytes
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
