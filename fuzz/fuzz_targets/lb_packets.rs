//! Load balancing through a switch running the flows the controller compiles
//! for a public load balancer (two TCP rules and a UDP rule on one frontend,
//! an inbound NAT rule) and its groups, driven by a sequence of steps read
//! from the input: frames from the internet (raw, or TCP and UDP to the
//! frontend with fuzzed ports and flags), answers from the backends along
//! their connections, group replacements (members, weights, health,
//! draining, algorithm, stale versions), conntrack flushes and a virtual
//! clock that lets connections expire. Besides never panicking, it checks
//! that:
//!
//! - conntrack's live count of each backend lies between its balanced
//!   connections still open and all it holds (a closed one may stop
//!   counting before it goes), and no count is left once the connections
//!   are flushed or have expired;
//! - a new connection goes to a backend that takes new connections in its
//!   group as installed, as the group's algorithm says: round robin in
//!   order, smooth weighted round robin in exact shares per cycle, least
//!   connections to a least loaded backend, hashes the same backend for the
//!   same key while the group is unchanged;
//! - what leaves a backend's port for the frontend is addressed (IP and MAC)
//!   to one of the backends, and a connection's packets to the backend it
//!   holds, at its rule's backend port;
//! - nothing leaves the uplink from a backend's private address, and a
//!   backend's answer leaves from the frontend address and port its client
//!   used.
//!
//! The first three bytes pick each group's algorithm, the fourth the
//! conntrack capacity; then each step is an opcode byte and its arguments
//! (see [`Run::step`]).
#![no_main]

#[path = "lb_packets/checks.rs"]
mod checks;
#[path = "lb_packets/frames.rs"]
mod frames;
#[path = "lb_packets/lab.rs"]
mod lab;

use checks::GroupModel;
use lab::{FRONTEND, LAB, Lab, RULES, WEIGHTS, algorithm, client_address, group_of};
use sdn_controller::topology::UPLINK_PORT;
use sdn_lb::NoHealthyBackends;
use sdn_vswitch::conntrack::ConnInfo;
use sdn_vswitch::conntrack::packet::Tuple;
use sdn_vswitch::pipeline::Pipeline;
use sdn_vswitch::pipeline::balance::{GroupApplied, GroupBackend, GroupSpec};
use sdn_vswitch::testutil::FrameBuilder;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Group replacements an input applies at most: each may build a Maglev
/// table (see [`algorithm`]).
const MAX_GROUP_MODS: usize = 6;
/// Longer than any conntrack timeout.
const EVERYTHING_EXPIRES: Duration = Duration::from_secs(25 * 3600);

/// One input's run.
struct Run<'a> {
    lab: &'a Lab,
    pipeline: Pipeline,
    start: Instant,
    now: Instant,
    models: Vec<GroupModel>,
    /// The initial sequence number of each client SYN, by its tuple, so
    /// that a backend can answer it with the right acknowledgement.
    isn: BTreeMap<Tuple, u32>,
    /// Group replacements applied so far.
    group_mods: usize,
}

/// Reads step arguments; past the end they are zero.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn arg(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }

    fn args<const N: usize>(&mut self) -> [u8; N] {
        std::array::from_fn(|_| self.arg())
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }
}

impl<'a> Run<'a> {
    fn new(lab: &'a Lab, algorithms: [u8; 3], capacity: u8) -> Run<'a> {
        let start = Instant::now();
        let mut pipeline = Pipeline::new();
        pipeline.set_ports(&lab.ports);
        for m in &lab.flows {
            pipeline
                .apply_flow_mod(m, start)
                .expect("the controller's flows install");
        }
        if capacity < 0x80 {
            // A small table, so that it fills and refuses.
            pipeline
                .conntrack_mut()
                .set_capacity(4 + usize::from(capacity));
        }
        let mut models = Vec::new();
        for (spec, pick) in lab.groups.iter().zip(algorithms) {
            let spec = GroupSpec {
                algorithm: algorithm(pick),
                ..spec.clone()
            };
            assert_eq!(
                pipeline.groups_mut().apply(spec.clone()),
                Ok(GroupApplied::Installed)
            );
            let mut model = GroupModel::default();
            model.installed(spec);
            assert!(model.ordered);
            models.push(model);
        }
        Run {
            lab,
            pipeline,
            start,
            now: start,
            models,
            isn: BTreeMap::new(),
            group_mods: 0,
        }
    }

    /// Every connection in the load balancer's zone, expired or not: each
    /// expires after `start`, so listing at `start` shows them all (the live
    /// counts hold a connection until it is removed, not when it expires).
    fn connections(&self) -> Vec<ConnInfo> {
        self.pipeline
            .conntrack()
            .list(Some(self.lab.zone), self.start)
    }

    /// Runs one step; false once the input is used up.
    fn step(&mut self, input: &mut Bytes<'_>) -> bool {
        let Some(op) = input.next() else {
            return false;
        };
        match op % 8 {
            // A raw frame `[port, length, bytes…]`; see `raw_frame`.
            0 => {
                let (port, len) = (input.arg(), input.arg());
                let bytes = input.take(usize::from(len)).to_vec();
                self.raw_frame(port, bytes);
            }
            // A TCP segment from a client: `[client, client port, flags,
            // destination port, sequence number]`.
            1 | 2 => self.client_tcp(input.args()),
            // A UDP datagram from a client: `[client, client port,
            // destination port, payload length]`.
            3 => self.client_udp(input.args()),
            // A backend's answer along a tracked connection: `[connection,
            // kind, spoof]`.
            4 => self.backend_answer(input.args()),
            // A group replacement or removal: `[group and version, algorithm
            // and members, backend 1, backend 2, backend 3]`.
            5 => self.group_mod(input.args()),
            // Time passes: `[amount]`.
            6 => {
                let amount = input.arg();
                let seconds = u64::from(amount >> 2);
                self.now += Duration::from_secs(match amount & 3 {
                    0 => seconds,
                    1 => seconds * 10,
                    2 => seconds * 60,
                    _ => 24 * 3600 + seconds * 600,
                });
            }
            // Conntrack and control-plane events: `[kind, argument]`.
            _ => self.event(input.args()),
        }
        self.check_live_counts();
        true
    }

    /// Replaces group `1 + (select % 4)` or, for 3, removes group `1 +
    /// (select >> 4) % 3`. Bits 2–3 of `select` pick the version: the next,
    /// the same (which replaces), the one before (stale unless the same) or
    /// far ahead; bit 6 reverses the members' order. `shape` picks the
    /// algorithm (bits 0–2 and 7, see [`algorithm`]), whether an unhealthy
    /// group spreads over all (bit 3) and which members are in it (bits 4–6;
    /// none is an empty group). Each member's byte picks its weight (bits
    /// 0–2), ill health (bit 3) and draining (bit 4).
    fn group_mod(&mut self, [select, shape, b1, b2, b3]: [u8; 5]) {
        if self.group_mods == MAX_GROUP_MODS {
            return;
        }
        self.group_mods += 1;
        if select % 4 == 3 {
            let index = usize::from(select >> 4) % RULES.len();
            let held = self.models[index].spec.is_some();
            assert_eq!(self.pipeline.groups_mut().delete(group_of(index)), held);
            self.models[index] = GroupModel::default();
            return;
        }
        let index = usize::from(select % 4);
        let group = group_of(index);
        let template = &self.lab.groups[index];
        let held = self.models[index].spec.as_ref().map_or(0, |s| s.version);
        let version = match (select >> 2) % 4 {
            0 => held + 1,
            1 => held,
            2 => held.saturating_sub(1),
            _ => held + 1000,
        };
        let mut backends: Vec<GroupBackend> = template
            .backends
            .iter()
            .zip([b1, b2, b3])
            .enumerate()
            .filter(|(i, _)| shape & (0x10 << i) != 0)
            .map(|(_, (b, byte))| GroupBackend {
                weight: WEIGHTS[usize::from(byte % 8)],
                healthy: byte & 8 == 0,
                draining: byte & 0x10 != 0,
                ..*b
            })
            .collect();
        if select & 0x40 != 0 {
            backends.reverse();
        }
        // The compiled group with the fields a group-mod changes replaced
        // (the rest, such as its number, as the controller sends them).
        let mut spec = template.clone();
        spec.version = version;
        spec.algorithm = algorithm((shape & 7) | (shape >> 4 & 8));
        spec.no_healthy = if shape & 8 != 0 {
            NoHealthyBackends::AllProbedUp
        } else {
            NoHealthyBackends::Refuse
        };
        spec.backends = backends;
        let applied = self
            .pipeline
            .groups_mut()
            .apply(spec.clone())
            .expect("a group of distinct members applies");
        match applied {
            GroupApplied::Installed => self.models[index].installed(spec),
            GroupApplied::Stale => assert!(
                self.models[index]
                    .spec
                    .as_ref()
                    .is_some_and(|s| s.version > version),
                "only an older version is stale"
            ),
        }
        assert_eq!(
            self.pipeline.groups().spec(group),
            self.models[index].spec.as_ref()
        );
    }

    /// Conntrack and control-plane events, by `kind`: a flush of all or of
    /// the load balancer's zone, one connection forgotten, a client's ICMP
    /// error about a connection, the switch's timers, a ping and an ARP
    /// request for the frontend, a new conntrack size.
    fn event(&mut self, [kind, arg]: [u8; 2]) {
        match kind % 8 {
            0 => {
                self.pipeline.conntrack_mut().flush(None);
                assert!(self.pipeline.conntrack().is_empty());
                assert_eq!(
                    self.pipeline.conntrack().live_balanced().iter().count(),
                    0,
                    "live counts outlast a flush"
                );
            }
            1 => {
                self.pipeline.conntrack_mut().flush(Some(self.lab.zone));
                assert_eq!(self.pipeline.conntrack().live_balanced().iter().count(), 0);
            }
            2 => {
                let connections = self.connections();
                if let Some(c) = connections.get(usize::from(arg) % connections.len().max(1)) {
                    assert!(self.pipeline.conntrack_mut().remove(c.zone, c.orig));
                }
            }
            3 => self.client_icmp_error(arg),
            4 => {
                let _ = self.pipeline.handle_timeout(self.now);
            }
            5 => {
                let frame = FrameBuilder::icmp4_echo(
                    &client_address(arg).to_string(),
                    &FRONTEND.to_string(),
                    u16::from(arg),
                )
                .src_mac(self.lab.internet)
                .dst_mac(self.lab.edge)
                .build();
                self.send(UPLINK_PORT, frame);
            }
            6 => {
                let frame = FrameBuilder::arp_request(
                    self.lab.internet,
                    &client_address(arg).to_string(),
                    &FRONTEND.to_string(),
                )
                .build();
                self.send(UPLINK_PORT, frame);
            }
            _ => self
                .pipeline
                .conntrack_mut()
                .set_capacity(4 + usize::from(arg)),
        }
    }

    /// Once everything has expired, nothing is counted live.
    fn finish(mut self) {
        self.now += EVERYTHING_EXPIRES;
        let _ = self.pipeline.handle_timeout(self.now);
        assert!(
            self.pipeline.conntrack().is_empty(),
            "connections outlived every timeout"
        );
        assert_eq!(
            self.pipeline.conntrack().live_balanced().iter().count(),
            0,
            "live counts outlived their connections"
        );
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let lab = &*LAB;
    let mut input = Bytes(data);
    let [first, second, third, capacity] = input.args();
    let mut run = Run::new(lab, [first, second, third], capacity);
    while run.step(&mut input) {}
    run.finish();
});
