//! The firewall of one switch as its control session keeps it: the compiled
//! flows it wants from the reconciler, their replacement when the rules
//! change, and which tracked connections a change cuts.

use super::compile::{Compiled, SwitchFirewall, compile, zone_of};
use super::eval::allows;
use super::resolve::switch_firewall;
use super::rules::{Direction, Packet, proto};
use crate::reconcile::{FlowId, FlowSet, Reconciler};
use crate::routing::addresses::NAT_ZONE_BASE;
use crate::topology::Topology;
use sdn_proto::southbound as pb;
use std::net::Ipv4Addr;

/// The firewall flows of a switch.
#[derive(Debug, Default)]
pub struct Firewall {
    source: SwitchFirewall,
    compiled: Compiled,
    flows: FlowSet,
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
            flows: FlowSet::default(),
        }
    }

    /// The compiled flows and rule references.
    pub fn compiled(&self) -> &Compiled {
        &self.compiled
    }

    /// Wants every flow; returns their ids.
    pub fn want(&mut self, r: &mut Reconciler) -> Vec<FlowId> {
        self.flows.want(&self.compiled.flows, r)
    }

    /// Replaces these flows by `next`'s; returns the ids whose desired state
    /// changed (flows gone and flows new or different).
    pub fn replace(&mut self, next: Firewall, r: &mut Reconciler) -> Vec<FlowId> {
        let changed = self.flows.replace(&next.compiled.flows, r);
        self.source = next.source;
        self.compiled = next.compiled;
        changed
    }

    /// The tracked connections the rules no longer allow: connections in
    /// zones no longer filtered, and connections whose first packet the
    /// rules of their zone's interface would now refuse (NAT's zones are
    /// left alone).
    pub fn to_cut(&self, conns: &[pb::TrackedConn]) -> Vec<pb::ConnRef> {
        let mut cut = Vec::new();
        for conn in conns {
            let Some(orig) = &conn.orig else { continue };
            if conn.zone >= u32::from(NAT_ZONE_BASE) {
                // NAT's zones: rules do not decide those connections.
                continue;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn conn(zone: u32, src: [u8; 4], dst: [u8; 4], dport: u32) -> pb::TrackedConn {
        pb::TrackedConn {
            zone,
            orig: Some(pb::ConnTuple {
                proto: 6,
                src: src.to_vec().into(),
                dst: dst.to_vec().into(),
                sport: 40000,
                dport,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_cut_spares_nat_zones_and_allowed_connections() {
        let topology = crate::topology::parse(
            include_str!("../../../topologies/firewall.yaml"),
            Path::new("firewall.yaml"),
        )
        .unwrap();
        let fw = Firewall::for_switch(&topology, "sw1");
        let conns = [
            // client -> web1:80, allowed by web-nsg (zone 2: web1's port).
            conn(2, [10, 30, 0, 10], [10, 30, 0, 11], 80),
            // client -> web1:22, denied by deny-ssh.
            conn(2, [10, 30, 0, 10], [10, 30, 0, 11], 22),
            // A zone no filtered port has.
            conn(42, [10, 30, 0, 10], [10, 30, 0, 11], 80),
            // A NAT zone: rules do not decide it.
            conn(
                u32::from(NAT_ZONE_BASE),
                [10, 30, 0, 10],
                [203, 0, 113, 80],
                80,
            ),
        ];
        let cut: Vec<(u32, u32)> = fw
            .to_cut(&conns)
            .iter()
            .map(|c| (c.zone, c.orig.as_ref().map_or(0, |o| o.dport)))
            .collect();
        assert_eq!(cut, vec![(2, 22), (42, 80)]);
    }
}
