//! What must hold after each step: the picks against a model of each
//! group's algorithm, what left the switch against the connections
//! conntrack holds, and conntrack's live counts against its connections.

use crate::Run;
use crate::lab::{FRONTEND, RULES, group_of};
use sdn_controller::topology::UPLINK_PORT;
use sdn_lb::{Algorithm, NoHealthyBackends};
use sdn_vswitch::conntrack::LbMark;
use sdn_vswitch::conntrack::packet::Tuple;
use sdn_vswitch::flow::PortNo;
use sdn_vswitch::pipeline::balance::{GroupBackend, GroupSpec};
use sdn_vswitch::wire::{
    EtherType, EthernetFrame, IpProtocol, Ipv4Packet, TcpSegment, UdpDatagram,
};
use std::collections::BTreeMap;

/// The inputs a group's algorithm hashes, the rest zeroed: the key under
/// which a hashing group must keep picking one backend.
fn hash_key(algorithm: Algorithm, t: &Tuple) -> Option<Tuple> {
    let mut key = *t;
    match algorithm {
        Algorithm::SourceIpHash => {
            key.proto = 0;
            key.sport = 0;
            key.dport = 0;
        }
        Algorithm::SourceIpProtocol => {
            key.sport = 0;
            key.dport = 0;
        }
        Algorithm::FiveTupleHash => {}
        _ => return None,
    }
    Some(key)
}

/// What the target knows of one group: the spec the switch must hold, and
/// the picks since it was installed (the algorithms' state restarts then).
#[derive(Debug, Default)]
pub(crate) struct GroupModel {
    /// As installed (`None`: removed).
    pub(crate) spec: Option<GroupSpec>,
    /// Backends picked since.
    pub(crate) picks: u64,
    /// Of those, each backend's.
    pub(crate) shares: BTreeMap<u32, u64>,
    /// A hashing group's first pick for each key it hashes.
    pub(crate) sticky: BTreeMap<Tuple, u32>,
    /// Whether `picks` counts from the pool's first turn. A group
    /// re-installed unchanged but for its version may keep its pool's state
    /// or start it over: the turn-taking checks wait for a real change.
    pub(crate) ordered: bool,
}

impl GroupModel {
    /// The switch installed `spec` for the group.
    pub(crate) fn installed(&mut self, spec: GroupSpec) {
        let unchanged = self.spec.as_ref().is_some_and(|held| {
            GroupSpec {
                version: spec.version,
                ..held.clone()
            } == spec
        });
        if unchanged {
            self.spec = Some(spec);
            self.ordered = false;
            return;
        }
        *self = GroupModel {
            spec: Some(spec),
            ordered: true,
            ..GroupModel::default()
        };
    }

    /// The backends that take new connections, in the group's order (as
    /// `sdn_lb::Pool` keeps its candidates).
    pub(crate) fn candidates(&self) -> Vec<GroupBackend> {
        let Some(spec) = &self.spec else {
            return Vec::new();
        };
        let open = |b: &&GroupBackend| !b.draining && b.weight > 0;
        let healthy: Vec<GroupBackend> = spec
            .backends
            .iter()
            .filter(open)
            .filter(|b| b.healthy)
            .copied()
            .collect();
        if healthy.is_empty() && spec.no_healthy == NoHealthyBackends::AllProbedUp {
            return spec.backends.iter().filter(open).copied().collect();
        }
        healthy
    }
}

/// A frame that left the switch.
pub(crate) struct Sent {
    pub(crate) port: PortNo,
    pub(crate) bytes: Vec<u8>,
}

/// The IPv4 packet of an untagged frame.
pub(crate) fn ipv4_of(frame: &[u8]) -> Option<Ipv4Packet<&[u8]>> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::Ipv4 {
        return None;
    }
    Ipv4Packet::new_checked(frame.get(14..)?).ok()
}

/// The ports of a whole TCP or UDP packet (`None` for anything else).
fn ports_of(ip: &Ipv4Packet<&[u8]>) -> Option<(u16, u16)> {
    if ip.more_fragments() || ip.fragment_offset() != 0 {
        return None;
    }
    match ip.protocol() {
        IpProtocol::Tcp => TcpSegment::new_checked(ip.payload())
            .ok()
            .map(|t| (t.src_port(), t.dst_port())),
        IpProtocol::Udp => UdpDatagram::new_checked(ip.payload())
            .ok()
            .map(|u| (u.src_port(), u.dst_port())),
        _ => None,
    }
}

impl Run<'_> {
    /// Each backend's count of connections sent to it, for group `index`.
    pub(crate) fn stats(&self, index: usize) -> Vec<(u32, u64)> {
        let Some(spec) = &self.models[index].spec else {
            return Vec::new();
        };
        spec.backends
            .iter()
            .map(|b| {
                let stats = self
                    .pipeline
                    .groups()
                    .stats(group_of(index), b.id)
                    .expect("every member of a group has stats");
                (b.id, stats.connections)
            })
            .collect()
    }

    /// At most one backend was picked by the frame, one that takes new
    /// connections, as its group's algorithm says.
    pub(crate) fn check_picks(&mut self, before: &[Vec<(u32, u64)>], tuple: Option<Tuple>) {
        let mut picked = Vec::new();
        for (index, was) in before.iter().enumerate() {
            for ((id, then), (_, now)) in was.iter().zip(self.stats(index)) {
                assert!(now >= *then, "a backend's connection count went down");
                for _ in *then..now {
                    picked.push((index, *id));
                }
            }
        }
        assert!(picked.len() <= 1, "one frame picked twice: {picked:?}");
        let Some(&(index, id)) = picked.first() else {
            return;
        };
        let group = group_of(index);
        let candidates = self.models[index].candidates();
        let Some(chosen) = candidates.iter().position(|b| b.id == id) else {
            panic!("group {group} picked {id}, which takes no new connections: {candidates:?}");
        };
        let model = &mut self.models[index];
        let spec = model.spec.as_ref().expect("a picking group is installed");
        let (algorithm, n) = (spec.algorithm, candidates.len());
        // The connection it made, if it was committed.
        let mark = LbMark { group, backend: id };
        let made = tuple.is_some_and(|t| {
            self.pipeline
                .conntrack()
                .list(Some(self.lab.zone), self.start)
                .iter()
                .any(|c| c.orig == t && c.backend == Some(mark) && c.packets == [1, 0])
        });
        if let Some(t) = tuple {
            let (proto, frontend_port, _) = RULES[index];
            assert_eq!(
                (t.dst, t.proto, t.dport),
                (FRONTEND, proto, frontend_port),
                "group {group} picked for another rule's connection"
            );
        }
        match algorithm {
            Algorithm::RoundRobin | Algorithm::WeightedRoundRobin if !model.ordered => {}
            Algorithm::RoundRobin => {
                let expected = (model.picks % n as u64) as usize;
                assert_eq!(
                    chosen, expected,
                    "round robin pick {} of {candidates:?}",
                    model.picks
                );
            }
            Algorithm::WeightedRoundRobin => {
                *model.shares.entry(id).or_default() += 1;
                let total: u64 = candidates.iter().map(|b| u64::from(b.weight)).sum();
                if (model.picks + 1).is_multiple_of(total) {
                    let cycles = (model.picks + 1) / total;
                    for b in &candidates {
                        assert_eq!(
                            model.shares.get(&b.id).copied().unwrap_or(0),
                            u64::from(b.weight) * cycles,
                            "weighted round robin shares after {cycles} cycles of {candidates:?}"
                        );
                    }
                }
            }
            Algorithm::LeastConnections => {
                // The counts the pick read: now, less the connection it made.
                let live = self.pipeline.conntrack().live_balanced();
                let at_pick = |b: &GroupBackend| {
                    let count = live.get(group, b.id);
                    let count = if b.id == id && made {
                        count.checked_sub(1).expect("the new connection is counted")
                    } else {
                        count
                    };
                    u128::from(count)
                };
                let mine = &candidates[chosen];
                for other in &candidates {
                    assert!(
                        at_pick(mine) * u128::from(other.weight)
                            <= at_pick(other) * u128::from(mine.weight),
                        "least connections picked {id} with {} over {} with {}",
                        at_pick(mine),
                        other.id,
                        at_pick(other)
                    );
                }
            }
            hashing => {
                if let Some(key) = tuple.and_then(|t| hash_key(hashing, &t)) {
                    let first = *model.sticky.entry(key).or_insert(id);
                    assert_eq!(first, id, "{hashing:?} moved {key:?}");
                }
            }
        }
        model.picks += 1;
    }

    /// What the frame made leave: for the frontend, to a backend (its
    /// connection's, at its rule's port); out of the uplink, never from a
    /// backend's own address.
    pub(crate) fn check_delivery(
        &self,
        in_port: PortNo,
        frame: &[u8],
        tuple: Option<Tuple>,
        sent: &[Sent],
    ) {
        let to_frontend =
            in_port == UPLINK_PORT && ipv4_of(frame).is_some_and(|ip| ip.dst_addr() == FRONTEND);
        let connections = self.connections();
        for s in sent {
            let Some(ip) = ipv4_of(&s.bytes) else {
                continue;
            };
            // The switch reaches a host through its L2 tables, which may
            // flood a frame to every host port until they learn where the
            // host is: what matters is whom it is addressed to.
            if to_frontend && self.lab.member_on(s.port).is_some() {
                let Some(member) = self.lab.member_at(ip.dst_addr()) else {
                    panic!(
                        "a frame for the frontend left port {} for {}",
                        s.port,
                        ip.dst_addr()
                    );
                };
                let mac = EthernetFrame::new_checked(&s.bytes[..]).map(|e| e.dst_addr());
                assert_eq!(
                    mac,
                    Ok(member.mac),
                    "a frame for {member:?} sent to another MAC"
                );
                // A connection of a rule: to its backend, at its port.
                let conn = tuple.and_then(|t| connections.iter().find(|c| c.orig == t));
                if let (Some(c), Some((_, dport))) = (conn, ports_of(&ip)) {
                    assert_eq!(
                        (ip.dst_addr(), dport),
                        (c.reply.src, c.reply.sport),
                        "a frame of {c:?} left for another backend"
                    );
                    if let Some(mark) = c.backend {
                        assert_eq!(mark.backend, member.id, "{c:?} went to another backend");
                        let (proto, frontend_port, backend_port) = RULES[mark.group as usize - 1];
                        assert_eq!((c.orig.proto, c.orig.dport), (proto, frontend_port));
                        assert_eq!(dport, backend_port);
                    }
                }
            }
            if s.port == UPLINK_PORT {
                assert!(
                    self.lab.member_at(ip.src_addr()).is_none(),
                    "a backend's private address left the uplink: {:?}",
                    ip.src_addr()
                );
                if self.lab.member_on(in_port).is_some() {
                    assert_eq!(ip.src_addr(), FRONTEND, "a backend's frame left as another");
                    // An answer along a connection leaves as its frontend.
                    let answered = tuple.and_then(|t| connections.iter().find(|c| c.reply == t));
                    if let (Some(c), Some((sport, dport))) = (answered, ports_of(&ip)) {
                        assert_eq!(
                            (ip.src_addr(), sport, ip.dst_addr(), dport),
                            (c.orig.dst, c.orig.dport, c.orig.src, c.orig.sport),
                            "an answer of {c:?} left translated wrong"
                        );
                    }
                }
            }
        }
    }

    /// Each backend's live count lies between its balanced connections
    /// that are still open and all those conntrack holds (a closed TCP
    /// connection may stop counting before its entry goes), and no backend
    /// is counted that holds none.
    pub(crate) fn check_live_counts(&self) {
        let mut held: BTreeMap<LbMark, (u32, u32)> = BTreeMap::new();
        for c in self.pipeline.conntrack().list(None, self.start) {
            if let Some(mark) = c.backend {
                assert_eq!(
                    c.zone, self.lab.zone,
                    "a balanced connection outside its zone"
                );
                let (open, all) = held.entry(mark).or_default();
                *all += 1;
                if !matches!(c.state, "TIME_WAIT" | "CLOSED") {
                    *open += 1;
                }
            }
        }
        let live = self.pipeline.conntrack().live_balanced();
        for (mark, count) in live.iter() {
            assert!(
                held.contains_key(&mark),
                "{mark:?} counts {count} and holds none"
            );
        }
        for (mark, (open, all)) in held {
            let count = live.get(mark.group, mark.backend);
            assert!(
                (open..=all).contains(&count),
                "{mark:?} counts {count} live with {open} open of {all} held"
            );
        }
    }
}
