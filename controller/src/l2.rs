//! The L2 application: MAC learning from packet-ins, as Faucet does it. The
//! switch always forwards by itself, so the controller is never in the path of
//! a frame:
//!
//! - `LEARN`: a known (source MAC, port) pair goes on; a frame with a group
//!   source address is dropped; anything else is copied to the controller
//!   (the first 128 bytes) and goes on (to the security and routing stages);
//! - `FORWARD`: a known destination MAC goes out of its port; anything else
//!   is flooded within the switch.
//!
//! Learned entries time out after the MAC aging time; when either entry of a
//! MAC goes, the MAC is forgotten and its other entry removed, so the next
//! frame from it is learned afresh. Cookies mark which entries are learned, so
//! that a restarted controller adopts what the switch already learned.

use crate::reconcile::{FlowId, Reconciler};
use crate::tables::{FORWARD, LEARN, OUT_CT};
use rustc_hash::FxHashMap;
use sdn_vswitch::flow::{Action, FlowSpec, MacMatch, Match, PortNo};
use sdn_vswitch::wire::{EthernetAddress, EthernetFrame};
use std::time::Duration;

/// Cookie bits that say "this entry belongs to the L2 application".
pub const COOKIE_APP: u64 = 0x5d01 << 48;
/// Mask of the application and kind bits of a cookie.
pub const COOKIE_KIND_MASK: u64 = 0xffff_ff00_0000_0000;
/// Cookie of the application's fixed entries.
pub const COOKIE_BASE: u64 = COOKIE_APP | (1 << 40);
/// Cookie of learned source entries (table 0).
pub const COOKIE_LEARNED_SRC: u64 = COOKIE_APP | (2 << 40);
/// Cookie of learned destination entries (table 1).
pub const COOKIE_LEARNED_DST: u64 = COOKIE_APP | (3 << 40);

/// Bytes of a frame sent to the controller for learning.
pub const PACKET_IN_BYTES: u16 = 128;

/// Default most MACs learned per switch (as Open vSwitch's mac-table-size).
pub const DEFAULT_CAPACITY: usize = 8192;

const PRIORITY_LEARNED: u16 = 100;
const PRIORITY_DROP_GROUP_SRC: u16 = 200;
/// The learning miss (above the pipeline skeleton's pass-through).
const PRIORITY_MISS: u16 = 1;

/// MAC learning state of one switch.
#[derive(Debug)]
pub struct L2Switch {
    macs: FxHashMap<EthernetAddress, PortNo>,
    aging: Duration,
    capacity: usize,
    /// MACs not learned because the table was full.
    pub refused: u64,
    /// Where unknown and group destinations go: every port (`None`), or
    /// these only (a switch with an uplink keeps its frames off the edge).
    flood_ports: Option<Vec<PortNo>>,
}

fn src_flow(mac: EthernetAddress, port: PortNo, aging: Duration) -> FlowSpec {
    FlowSpec::new(
        LEARN,
        PRIORITY_LEARNED,
        Match {
            in_port: Some(port),
            eth_src: Some(MacMatch::exact(mac)),
            ..Match::default()
        },
        vec![Action::GotoTable(OUT_CT)],
    )
    .with_cookie(COOKIE_LEARNED_SRC)
    .with_idle_timeout(aging)
}

fn dst_flow(mac: EthernetAddress, port: PortNo, aging: Duration) -> FlowSpec {
    FlowSpec::new(
        FORWARD,
        PRIORITY_LEARNED,
        Match {
            eth_dst: Some(MacMatch::exact(mac)),
            ..Match::default()
        },
        vec![Action::Output(port)],
    )
    .with_cookie(COOKIE_LEARNED_DST)
    .with_idle_timeout(aging)
}

fn exact(m: Option<MacMatch>) -> Option<EthernetAddress> {
    m.filter(|m| m.mask == EthernetAddress::BROADCAST)
        .map(|m| m.value)
}

impl L2Switch {
    /// A switch that forgets MACs after `aging` and learns at most `capacity`.
    pub fn new(aging: Duration, capacity: usize) -> L2Switch {
        L2Switch {
            macs: FxHashMap::default(),
            aging,
            capacity,
            refused: 0,
            flood_ports: None,
        }
    }

    /// Floods to `ports` only, rather than to every port of the switch.
    pub fn flooding_to(mut self, ports: Vec<PortNo>) -> L2Switch {
        self.flood_ports = Some(ports);
        self
    }

    /// MACs learned.
    pub fn learned(&self) -> usize {
        self.macs.len()
    }

    /// Where `mac` was learned.
    pub fn port_of(&self, mac: EthernetAddress) -> Option<PortNo> {
        self.macs.get(&mac).copied()
    }

    fn flood_actions(&self) -> Vec<Action> {
        match &self.flood_ports {
            None => vec![Action::Flood],
            Some(ports) => ports.iter().map(|&p| Action::Output(p)).collect(),
        }
    }

    /// The fixed entries, wanted in `r`; returns their ids.
    pub fn want_base(&self, r: &mut Reconciler) -> Vec<FlowId> {
        vec![
            r.want(
                FlowSpec::new(
                    LEARN,
                    PRIORITY_MISS,
                    Match::default(),
                    vec![
                        Action::Controller {
                            max_len: PACKET_IN_BYTES,
                        },
                        Action::GotoTable(OUT_CT),
                    ],
                )
                .with_cookie(COOKIE_BASE),
            ),
            r.want(
                FlowSpec::new(
                    LEARN,
                    PRIORITY_DROP_GROUP_SRC,
                    Match {
                        eth_src: Some(MacMatch::multicast()),
                        ..Match::default()
                    },
                    Vec::new(),
                )
                .with_cookie(COOKIE_BASE),
            ),
            r.want(
                FlowSpec::new(FORWARD, 0, Match::default(), self.flood_actions())
                    .with_cookie(COOKIE_BASE),
            ),
        ]
    }

    /// Learns from a frame the switch sent up; returns the ids whose desired
    /// state changed.
    pub fn on_packet_in(
        &mut self,
        in_port: PortNo,
        frame: &[u8],
        r: &mut Reconciler,
    ) -> Vec<FlowId> {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return Vec::new();
        };
        let mac = eth.src_addr();
        if mac.is_multicast() || mac == EthernetAddress([0; 6]) {
            return Vec::new();
        }
        let mut changed = Vec::new();
        match self.macs.get(&mac).copied() {
            Some(port) if port == in_port => return changed,
            Some(old_port) => {
                // The MAC moved: its old source entry must go.
                let old = FlowId::of(&src_flow(mac, old_port, self.aging));
                r.unwant(&old);
                changed.push(old);
            }
            None if self.macs.len() >= self.capacity => {
                self.refused += 1;
                return changed;
            }
            None => {}
        }
        self.macs.insert(mac, in_port);
        changed.push(r.want(src_flow(mac, in_port, self.aging)));
        changed.push(r.want(dst_flow(mac, in_port, self.aging)));
        changed
    }

    /// The switch removed an entry (timeout or delete); `removed` is the entry
    /// as installed. Forgets the MAC if it was one of its learned entries.
    /// Returns ids whose desired state changed.
    pub fn on_flow_removed(&mut self, removed: &FlowSpec, r: &mut Reconciler) -> Vec<FlowId> {
        r.forget_removed(removed);
        let (mac, port) = match removed.cookie & COOKIE_KIND_MASK {
            COOKIE_LEARNED_SRC => match (exact(removed.matcher.eth_src), removed.matcher.in_port) {
                (Some(mac), Some(port)) => (mac, port),
                _ => return Vec::new(),
            },
            COOKIE_LEARNED_DST => match (exact(removed.matcher.eth_dst), removed.actions.first()) {
                (Some(mac), Some(Action::Output(port))) => (mac, *port),
                _ => return Vec::new(),
            },
            _ => return Vec::new(),
        };
        if self.macs.get(&mac) != Some(&port) {
            return Vec::new();
        }
        self.macs.remove(&mac);
        let ids = vec![
            FlowId::of(&src_flow(mac, port, self.aging)),
            FlowId::of(&dst_flow(mac, port, self.aging)),
        ];
        for id in &ids {
            r.unwant(id);
        }
        ids
    }

    /// Takes over MACs the switch already learned (after a controller
    /// restart): every source entry with a matching destination entry.
    pub fn adopt<'a>(
        &mut self,
        installed: impl IntoIterator<Item = &'a FlowSpec>,
        r: &mut Reconciler,
    ) {
        let mut sources: FxHashMap<EthernetAddress, PortNo> = FxHashMap::default();
        let mut destinations: FxHashMap<EthernetAddress, PortNo> = FxHashMap::default();
        for flow in installed {
            match flow.cookie & COOKIE_KIND_MASK {
                COOKIE_LEARNED_SRC => {
                    if let (Some(mac), Some(port)) =
                        (exact(flow.matcher.eth_src), flow.matcher.in_port)
                    {
                        sources.insert(mac, port);
                    }
                }
                COOKIE_LEARNED_DST => {
                    if let (Some(mac), Some(Action::Output(port))) =
                        (exact(flow.matcher.eth_dst), flow.actions.first())
                    {
                        destinations.insert(mac, *port);
                    }
                }
                _ => {}
            }
        }
        for (mac, port) in sources {
            if destinations.get(&mac) == Some(&port) && self.macs.len() < self.capacity {
                self.macs.insert(mac, port);
                r.want(src_flow(mac, port, self.aging));
                r.want(dst_flow(mac, port, self.aging));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdn_vswitch::flow::FlowModCommand;
    use sdn_vswitch::testutil::{FrameBuilder, mac};

    fn frame_from(src: u8) -> Vec<u8> {
        FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"")
            .src_mac(mac(src))
            .build()
    }

    fn setup() -> (L2Switch, Reconciler) {
        let l2 = L2Switch::new(Duration::from_secs(300), 2);
        let mut r = Reconciler::new();
        l2.want_base(&mut r);
        assert_eq!(r.sync_all().len(), 3);
        (l2, r)
    }

    #[test]
    fn learns_once_and_follows_moves() {
        let (mut l2, mut r) = setup();
        let ids = l2.on_packet_in(1, &frame_from(1), &mut r);
        let mods = r.sync_ids(&ids);
        assert_eq!(mods.len(), 2);
        assert_eq!(mods[0].spec.matcher.in_port, Some(1));
        assert_eq!(mods[1].spec.actions, vec![Action::Output(1)]);
        assert!(
            mods.iter().all(
                |m| m.spec.send_flow_removed && m.spec.idle_timeout == Duration::from_secs(300)
            )
        );
        assert!(
            l2.on_packet_in(1, &frame_from(1), &mut r).is_empty(),
            "a repeat changes nothing"
        );
        // Moves to port 2: old source entry deleted, new source entry, destination replaced.
        let ids = l2.on_packet_in(2, &frame_from(1), &mut r);
        let mods = r.sync_ids(&ids);
        let kinds: Vec<_> = mods.iter().map(|m| (m.command, m.spec.table)).collect();
        assert_eq!(
            kinds,
            vec![
                (FlowModCommand::Delete { strict: true }, LEARN),
                (FlowModCommand::Add, LEARN),
                (FlowModCommand::Add, FORWARD)
            ]
        );
        assert_eq!(l2.port_of(mac(1)), Some(2));
    }

    #[test]
    fn ignores_group_sources_and_respects_capacity() {
        let (mut l2, mut r) = setup();
        let broadcast_src = FrameBuilder::udp4("10.0.0.1:1", "10.0.0.2:2", b"")
            .src_mac(EthernetAddress::BROADCAST)
            .build();
        assert!(l2.on_packet_in(1, &broadcast_src, &mut r).is_empty());
        assert!(
            l2.on_packet_in(1, &[0u8; 5], &mut r).is_empty(),
            "runt frames are ignored"
        );
        l2.on_packet_in(1, &frame_from(1), &mut r);
        l2.on_packet_in(2, &frame_from(2), &mut r);
        assert!(l2.on_packet_in(3, &frame_from(3), &mut r).is_empty());
        assert_eq!((l2.learned(), l2.refused), (2, 1));
    }

    #[test]
    fn expiry_of_either_entry_forgets_the_mac() {
        let (mut l2, mut r) = setup();
        let ids = l2.on_packet_in(1, &frame_from(1), &mut r);
        r.sync_ids(&ids);
        let expired_dst = dst_flow(mac(1), 1, Duration::from_secs(300));
        let ids = l2.on_flow_removed(&expired_dst, &mut r);
        let mods = r.sync_ids(&ids);
        assert_eq!(mods.len(), 1, "only the source entry is left to delete");
        assert_eq!(mods[0].command, FlowModCommand::Delete { strict: true });
        assert_eq!(mods[0].spec.table, LEARN);
        assert_eq!(l2.learned(), 0);
        // A stale removal (from an old binding) does nothing.
        l2.on_packet_in(2, &frame_from(1), &mut r);
        assert!(
            l2.on_flow_removed(&src_flow(mac(1), 1, Duration::from_secs(300)), &mut r)
                .is_empty()
        );
        assert_eq!(l2.port_of(mac(1)), Some(2));
    }

    #[test]
    fn adopts_what_the_switch_learned() {
        let aging = Duration::from_secs(300);
        let installed = vec![
            src_flow(mac(1), 1, aging),
            dst_flow(mac(1), 1, aging),
            src_flow(mac(2), 2, aging), // no partner: not adopted
            FlowSpec::new(3, 7, Match::default(), vec![]), // foreign: deleted
        ];
        let mut l2 = L2Switch::new(aging, 10);
        let mut r = Reconciler::new();
        l2.want_base(&mut r);
        l2.adopt(&installed, &mut r);
        r.set_installed(installed.clone());
        let mods = r.sync_all();
        let deletes = mods
            .iter()
            .filter(|m| matches!(m.command, FlowModCommand::Delete { .. }))
            .count();
        let adds = mods
            .iter()
            .filter(|m| m.command == FlowModCommand::Add)
            .count();
        assert_eq!(
            (deletes, adds),
            (2, 3),
            "stale source and foreign entry go; base entries come"
        );
        assert_eq!(l2.port_of(mac(1)), Some(1));
        assert_eq!(l2.port_of(mac(2)), None);
    }
}
