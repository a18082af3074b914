//! The firewall of one switch as its control session keeps it: the compiled
//! flows it wants from the reconciler, their replacement when the rules
//! change, and which tracked connections a change cuts.

use super::compile::{APP_TABLE, Compiled, SwitchFirewall, compile, zone_of};
use super::eval::allows;
use super::resolve::switch_firewall;
use super::rules::{Direction, Packet, proto};
use crate::reconcile::{FlowId, Reconciler};
use crate::topology::Topology;
use rustc_hash::FxHashSet;
use sdn_proto::southbound as pb;
use std::net::Ipv4Addr;

/// The firewall flows of a switch.
#[derive(Debug, Default)]
pub struct Firewall {
    source: SwitchFirewall,
    compiled: Compiled,
    ids: Vec<FlowId>,
}

impl Firewall {
    /// The firewall `topology` asks of switch `name` (empty if no port of it
    /// is filtered).
    pub fn for_switch(topology: &Topology, name: &str) -> Firewall {
        let source = switch_firewall(topology, name);
        let compiled = if source.ports.is_empty() {
            Compiled::default()
        } else {
            compile(&source)
        };
        Firewall {
            source,
            compiled,
            ids: Vec::new(),
        }
    }

    /// First table of the L2 application behind it.
    pub fn app_table(&self) -> u8 {
        if self.source.ports.is_empty() {
            0
        } else {
            APP_TABLE
        }
    }

    /// The compiled flows and rule references.
    pub fn compiled(&self) -> &Compiled {
        &self.compiled
    }

    /// Wants every flow; returns their ids.
    pub fn want(&mut self, r: &mut Reconciler) -> Vec<FlowId> {
        self.ids = self
            .compiled
            .flows
            .iter()
            .map(|spec| r.want(spec.clone()))
            .collect();
        self.ids.clone()
    }

    /// Replaces these flows by `next`'s; returns the ids whose desired state
    /// changed (flows gone and flows new or different).
    pub fn replace(&mut self, mut next: Firewall, r: &mut Reconciler) -> Vec<FlowId> {
        let wanted = next.want(r);
        let keep: FxHashSet<&FlowId> = wanted.iter().collect();
        let mut changed: Vec<FlowId> = self
            .ids
            .iter()
            .filter(|id| !keep.contains(id))
            .cloned()
            .collect();
        for id in &changed {
            r.unwant(id);
        }
        changed.extend(wanted);
        *self = next;
        changed
    }

    /// The tracked connections the rules no longer allow: connections in
    /// zones no longer filtered, and connections whose first packet the
    /// rules of their zone's interface would now refuse.
    pub fn to_cut(&self, conns: &[pb::TrackedConn]) -> Vec<pb::ConnRef> {
        let mut cut = Vec::new();
        for conn in conns {
            let Some(orig) = &conn.orig else { continue };
            let port = self
                .source
                .ports
                .iter()
                .find(|p| u32::from(zone_of(p.port)) == conn.zone);
            let keep = port.is_some_and(|p| {
                let addr = |b: &[u8]| <[u8; 4]>::try_from(b).map(Ipv4Addr::from).ok();
                let (Some(src), Some(dst)) = (addr(&orig.src), addr(&orig.dst)) else {
                    return false;
                };
                let ported = matches!(orig.proto as u8, proto::TCP | proto::UDP);
                let packet = Packet {
                    proto: orig.proto as u8,
                    src,
                    dst,
                    sport: if ported { orig.sport as u16 } else { 0 },
                    dport: if ported { orig.dport as u16 } else { 0 },
                };
                let direction = if src == p.address {
                    Direction::Outbound
                } else {
                    Direction::Inbound
                };
                allows(&p.policy, direction, &packet)
            });
            if !keep {
                cut.push(pb::ConnRef {
                    zone: conn.zone,
                    orig: Some(orig.clone()),
                });
            }
        }
        cut
    }
}
