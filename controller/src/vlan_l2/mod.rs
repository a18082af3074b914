//! The VLAN-aware L2 application, for switches with access and trunk ports
//! and VLANs stretched over VXLAN. Inside the pipeline every frame carries the
//! tag of its VLAN:
//!
//! - `INGRESS`: an untagged frame from an access port (or the native VLAN of
//!   a trunk) gets its VLAN's tag; a tagged frame in an allowed VLAN passes;
//!   a frame from the tunnel gets the tag of the VLAN its VNI maps to.
//!   Anything else (a tag on an access port, a VID a trunk does not carry, an
//!   unknown VNI, a port it does not know) is dropped by an entry whose
//!   counters show it.
//! - `LEARN`: source learning per VLAN, as the plain application does; then
//!   the security and routing stages.
//! - `FORWARD`: forwarding per VLAN. A known MAC gets its egress actions (pop
//!   the tag for an access port or the native VLAN, keep it for a trunk, pop
//!   and tunnel for a MAC behind a remote endpoint); anything else is flooded
//!   within the VLAN: tagged copies to trunks, untagged copies to access ports,
//!   and one tunnelled copy per remote endpoint of the VLAN's VNI (head-end
//!   replication). Frames from the tunnel are never sent back into it.
//!
//! Hosts the topology places behind remote endpoints are programmed; others
//! are learned, from local ports and from the tunnel alike.

use crate::l2::{COOKIE_APP, COOKIE_KIND_MASK, PACKET_IN_BYTES};
use crate::plan::{DEFAULT_VLAN, PlannedPort, SwitchPlan, TUNNEL_PORT, access_vlan, vlans_carried};
use crate::reconcile::{FlowId, Reconciler};
use crate::tables::{FORWARD, INGRESS, LEARN, OUT_CT};
use crate::topology::PortMode;
use rustc_hash::FxHashMap;
use sdn_vswitch::flow::{Action, FlowSpec, MacMatch, Match, PortNo, SetField, VlanMatch};
use sdn_vswitch::pipeline::TunnelMeta;
use sdn_vswitch::wire::{EtherType, EthernetAddress, EthernetFrame, VlanHeader};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Fixed entries of the VLAN application.
pub const COOKIE_VLAN_BASE: u64 = COOKIE_APP | (4 << 40);
/// Entries that drop frames breaking the VLAN rules (their counters count them).
pub const COOKIE_VLAN_DROP: u64 = COOKIE_APP | (5 << 40);
/// Learned source entries.
pub const COOKIE_VLAN_SRC: u64 = COOKIE_APP | (6 << 40);
/// Learned destination entries.
pub const COOKIE_VLAN_DST: u64 = COOKIE_APP | (7 << 40);
/// Programmed entries for hosts behind remote endpoints.
pub const COOKIE_REMOTE: u64 = COOKIE_APP | (8 << 40);

const PRIORITY_PASS: u16 = 100;
const PRIORITY_REFUSE: u16 = 90;
const PRIORITY_LEARNED: u16 = 100;
const PRIORITY_FLOOD: u16 = 1;
/// Misses of ingress and learning (above the pipeline skeleton's pass-through).
const PRIORITY_MISS: u16 = 1;

/// Where a MAC lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Location {
    Port(PortNo),
    Tunnel { vtep: Ipv4Addr, vni: u32 },
}

/// The VLAN application's state for one switch.
#[derive(Debug)]
pub struct VlanSwitch {
    plan: SwitchPlan,
    macs: FxHashMap<(u16, EthernetAddress), Location>,
    aging: Duration,
    capacity: usize,
    /// MACs not learned because the table was full.
    pub refused: u64,
}

/// The port frames from `location` arrive on.
fn in_port_of(location: Location) -> PortNo {
    match location {
        Location::Port(p) => p,
        Location::Tunnel { .. } => TUNNEL_PORT,
    }
}

fn tci(vlan: u16, pcp: u8) -> u16 {
    (u16::from(pcp & 7) << 13) | (vlan & 0x0fff)
}

fn in_vlan(in_port: Option<PortNo>, vlan: VlanMatch) -> Match {
    Match {
        in_port,
        vlan: Some(vlan),
        ..Match::default()
    }
}

impl VlanSwitch {
    /// The application for a switch with `plan`.
    pub fn new(plan: SwitchPlan, aging: Duration, capacity: usize) -> VlanSwitch {
        VlanSwitch {
            plan,
            macs: FxHashMap::default(),
            aging,
            capacity,
            refused: 0,
        }
    }

    /// MACs learned or programmed.
    pub fn learned(&self) -> usize {
        self.macs.len()
    }

    fn port(&self, number: PortNo) -> Option<&PlannedPort> {
        self.plan.ports.iter().find(|p| p.number == number)
    }

    /// Every VLAN this switch carries.
    fn vlans(&self) -> BTreeSet<u16> {
        let tunnelled = self.plan.tunnel.iter().flat_map(|t| t.vni_of_vlan.keys());
        vlans_carried(self.plan.ports.iter().map(|p| &p.mode), tunnelled.copied())
    }

    /// What sends a frame of `vlan` (tagged inside the pipeline) to `location`.
    fn egress(&self, vlan: u16, location: Location) -> Vec<Action> {
        match location {
            Location::Port(number) => match self.port(number).map(|p| &p.mode) {
                Some(PortMode::Trunk { native, .. }) if *native != Some(vlan) => {
                    vec![Action::Output(number)]
                }
                _ => vec![Action::PopVlan, Action::Output(number)],
            },
            Location::Tunnel { vtep, vni } => vec![
                Action::PopVlan,
                Action::SetField(SetField::TunnelId(vni)),
                Action::SetField(SetField::TunnelDst(vtep)),
                Action::Output(TUNNEL_PORT),
            ],
        }
    }

    /// Everything a flood of `vlan` does.
    fn flood(&self, vlan: u16) -> Vec<Action> {
        let mut actions: Vec<Action> = self
            .plan
            .ports
            .iter()
            .filter(|p| matches!(&p.mode, PortMode::Trunk { vlans, .. } if vlans.contains(&vlan)))
            .map(|p| Action::Output(p.number))
            .collect();
        actions.push(Action::PopVlan);
        actions.extend(
            self.plan
                .ports
                .iter()
                .filter(|p| access_vlan(&p.mode) == Some(vlan))
                .map(|p| Action::Output(p.number)),
        );
        if let Some(tunnel) = &self.plan.tunnel
            && let Some(&vni) = tunnel.vni_of_vlan.get(&vlan)
        {
            let remotes = tunnel.vteps.get(&vni).map(Vec::as_slice).unwrap_or(&[]);
            if !remotes.is_empty() {
                actions.push(Action::SetField(SetField::TunnelId(vni)));
                for vtep in remotes {
                    actions.push(Action::SetField(SetField::TunnelDst(*vtep)));
                    actions.push(Action::Output(TUNNEL_PORT));
                }
            }
        }
        actions
    }

    /// The fixed entries (ingress rules, learning miss, per-VLAN floods) and
    /// the programmed remote hosts; returns their ids.
    pub fn want_base(&self, r: &mut Reconciler) -> Vec<FlowId> {
        let mut ids = Vec::new();
        let mut want = |r: &mut Reconciler, spec: FlowSpec| ids.push(r.want(spec));
        let base = |table, priority, m, actions| {
            FlowSpec::new(table, priority, m, actions).with_cookie(COOKIE_VLAN_BASE)
        };
        let refuse = |m| {
            FlowSpec::new(INGRESS, PRIORITY_REFUSE, m, Vec::new()).with_cookie(COOKIE_VLAN_DROP)
        };
        let onward = Action::GotoTable(LEARN);
        for port in &self.plan.ports {
            let p = Some(port.number);
            match &port.mode {
                PortMode::Plain | PortMode::Access { .. } => {
                    let (vlan, pcp) = match port.mode {
                        PortMode::Access { vlan, pcp } => (vlan, pcp),
                        _ => (DEFAULT_VLAN, 0),
                    };
                    want(
                        r,
                        base(
                            INGRESS,
                            PRIORITY_PASS,
                            in_vlan(p, VlanMatch::Untagged),
                            vec![Action::PushVlan(tci(vlan, pcp)), onward],
                        ),
                    );
                    want(r, refuse(in_vlan(p, VlanMatch::AnyTagged)));
                }
                PortMode::Trunk { vlans, native } => {
                    for &vlan in vlans {
                        want(
                            r,
                            base(
                                INGRESS,
                                PRIORITY_PASS,
                                in_vlan(p, VlanMatch::Vid(vlan)),
                                vec![onward],
                            ),
                        );
                    }
                    match native {
                        Some(n) => want(
                            r,
                            base(
                                INGRESS,
                                PRIORITY_PASS,
                                in_vlan(p, VlanMatch::Untagged),
                                vec![Action::PushVlan(tci(*n, 0)), onward],
                            ),
                        ),
                        None => want(r, refuse(in_vlan(p, VlanMatch::Untagged))),
                    }
                    want(r, refuse(in_vlan(p, VlanMatch::AnyTagged)));
                }
            }
        }
        if let Some(tunnel) = &self.plan.tunnel {
            for (&vlan, &vni) in &tunnel.vni_of_vlan {
                let from_vni = Match {
                    in_port: Some(TUNNEL_PORT),
                    tunnel_id: Some(u64::from(vni)),
                    ..Match::default()
                };
                want(
                    r,
                    base(
                        INGRESS,
                        PRIORITY_PASS,
                        from_vni,
                        vec![Action::PushVlan(tci(vlan, 0)), onward],
                    ),
                );
            }
            want(
                r,
                refuse(Match {
                    in_port: Some(TUNNEL_PORT),
                    ..Match::default()
                }),
            );
            for remote in &tunnel.remote_macs {
                let location = Location::Tunnel {
                    vtep: remote.vtep,
                    vni: remote.vni,
                };
                for spec in self.mac_entries(remote.vlan, remote.mac, location, COOKIE_REMOTE) {
                    want(r, spec);
                }
            }
        }
        want(
            r,
            base(
                LEARN,
                200,
                Match {
                    eth_src: Some(MacMatch::multicast()),
                    ..Match::default()
                },
                Vec::new(),
            ),
        );
        want(
            r,
            base(
                LEARN,
                PRIORITY_MISS,
                Match::default(),
                vec![
                    Action::Controller {
                        max_len: PACKET_IN_BYTES,
                    },
                    Action::GotoTable(OUT_CT),
                ],
            ),
        );
        // Frames from ports the application does not know never get in.
        want(
            r,
            FlowSpec::new(INGRESS, PRIORITY_MISS, Match::default(), Vec::new())
                .with_cookie(COOKIE_VLAN_DROP),
        );
        for vlan in self.vlans() {
            want(
                r,
                base(
                    FORWARD,
                    PRIORITY_FLOOD,
                    in_vlan(None, VlanMatch::Vid(vlan)),
                    self.flood(vlan),
                ),
            );
        }
        ids
    }

    /// The source and destination entries of `mac` in `vlan` at `location`.
    fn mac_entries(
        &self,
        vlan: u16,
        mac: EthernetAddress,
        location: Location,
        cookie: u64,
    ) -> [FlowSpec; 2] {
        let in_port = in_port_of(location);
        let tunnel_src = match location {
            Location::Tunnel { vtep, .. } => Some(vtep),
            Location::Port(_) => None,
        };
        let src = FlowSpec::new(
            LEARN,
            PRIORITY_LEARNED,
            Match {
                in_port: Some(in_port),
                vlan: Some(VlanMatch::Vid(vlan)),
                eth_src: Some(MacMatch::exact(mac)),
                tunnel_src,
                ..Match::default()
            },
            vec![Action::GotoTable(OUT_CT)],
        );
        let dst = FlowSpec::new(
            FORWARD,
            PRIORITY_LEARNED,
            Match {
                vlan: Some(VlanMatch::Vid(vlan)),
                eth_dst: Some(MacMatch::exact(mac)),
                ..Match::default()
            },
            self.egress(vlan, location),
        );
        if cookie == COOKIE_REMOTE {
            [src.with_cookie(cookie), dst.with_cookie(cookie)]
        } else {
            [
                src.with_cookie(COOKIE_VLAN_SRC)
                    .with_idle_timeout(self.aging),
                dst.with_cookie(COOKIE_VLAN_DST)
                    .with_idle_timeout(self.aging),
            ]
        }
    }

    /// The programmed location of `mac` in `vlan`, if the topology gives one.
    fn programmed(&self, vlan: u16, mac: EthernetAddress) -> Option<Location> {
        let tunnel = self.plan.tunnel.as_ref()?;
        tunnel
            .remote_macs
            .iter()
            .find(|m| m.vlan == vlan && m.mac == mac)
            .map(|m| Location::Tunnel {
                vtep: m.vtep,
                vni: m.vni,
            })
    }

    /// Learns from a frame sent up from table 1 (tagged with its VLAN).
    /// Returns the ids whose desired state changed.
    pub fn on_packet_in(
        &mut self,
        in_port: PortNo,
        frame: &[u8],
        tunnel: Option<TunnelMeta>,
        r: &mut Reconciler,
    ) -> Vec<FlowId> {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return Vec::new();
        };
        if eth.ethertype() != EtherType::Vlan {
            return Vec::new();
        }
        let Ok(tag) = VlanHeader::new_checked(eth.payload()) else {
            return Vec::new();
        };
        let (vlan, mac) = (tag.vid(), eth.src_addr());
        if mac.is_multicast() || mac == EthernetAddress([0; 6]) {
            return Vec::new();
        }
        let location = match (in_port, tunnel) {
            (TUNNEL_PORT, Some(t)) => Location::Tunnel {
                vtep: t.src,
                vni: t.vni,
            },
            (TUNNEL_PORT, None) => return Vec::new(),
            (port, _) => Location::Port(port),
        };
        let mut changed = Vec::new();
        match self.macs.get(&(vlan, mac)).copied() {
            Some(known) if known == location => return changed,
            Some(old) => {
                // It moved: the old source entry no longer describes it.
                let [src, _] = self.mac_entries(vlan, mac, old, COOKIE_VLAN_SRC);
                let id = FlowId::of(&src);
                r.unwant(&id);
                changed.push(id);
            }
            None if self.macs.len() >= self.capacity => {
                self.refused += 1;
                return changed;
            }
            None => {}
        }
        self.macs.insert((vlan, mac), location);
        for spec in self.mac_entries(vlan, mac, location, COOKIE_VLAN_SRC) {
            changed.push(r.want(spec));
        }
        changed
    }

    /// The switch removed an entry; forgets a learned MAC when either of its
    /// entries goes (a programmed host gets its entries back).
    pub fn on_flow_removed(&mut self, removed: &FlowSpec, r: &mut Reconciler) -> Vec<FlowId> {
        r.forget_removed(removed);
        let kind = removed.cookie & COOKIE_KIND_MASK;
        if kind != COOKIE_VLAN_SRC && kind != COOKIE_VLAN_DST {
            return Vec::new();
        }
        let Some(VlanMatch::Vid(vlan)) = removed.matcher.vlan else {
            return Vec::new();
        };
        let mac = match (
            kind == COOKIE_VLAN_SRC,
            removed.matcher.eth_src,
            removed.matcher.eth_dst,
        ) {
            (true, Some(m), _) | (false, _, Some(m)) if m.mask == EthernetAddress::BROADCAST => {
                m.value
            }
            _ => return Vec::new(),
        };
        let Some(&location) = self.macs.get(&(vlan, mac)) else {
            return Vec::new();
        };
        let entries = self.mac_entries(vlan, mac, location, COOKIE_VLAN_SRC);
        let current =
            |e: &FlowSpec| FlowId::of(e) == FlowId::of(removed) && e.actions == removed.actions;
        if !entries.iter().any(current) {
            // An entry from before the MAC moved.
            return Vec::new();
        }
        self.macs.remove(&(vlan, mac));
        let mut ids = Vec::new();
        for spec in entries {
            let id = FlowId::of(&spec);
            r.unwant(&id);
            ids.push(id);
        }
        if let Some(programmed) = self.programmed(vlan, mac) {
            for spec in self.mac_entries(vlan, mac, programmed, COOKIE_REMOTE) {
                ids.push(r.want(spec));
            }
        }
        ids
    }

    /// Takes over what the switch already learned (after a controller
    /// restart): learned destination entries whose source entry is there too.
    pub fn adopt<'a>(
        &mut self,
        installed: impl IntoIterator<Item = &'a FlowSpec>,
        r: &mut Reconciler,
    ) {
        let installed: Vec<&FlowSpec> = installed.into_iter().collect();
        for dst in installed
            .iter()
            .filter(|f| f.cookie & COOKIE_KIND_MASK == COOKIE_VLAN_DST)
        {
            let (Some(VlanMatch::Vid(vlan)), Some(m)) = (dst.matcher.vlan, dst.matcher.eth_dst)
            else {
                continue;
            };
            let location = match dst.actions.as_slice() {
                [
                    ..,
                    Action::SetField(SetField::TunnelId(vni)),
                    Action::SetField(SetField::TunnelDst(vtep)),
                    Action::Output(TUNNEL_PORT),
                ] => Location::Tunnel {
                    vtep: *vtep,
                    vni: *vni,
                },
                [.., Action::Output(port)] => Location::Port(*port),
                _ => continue,
            };
            let entries = self.mac_entries(vlan, m.value, location, COOKIE_VLAN_SRC);
            let src_present = installed
                .iter()
                .any(|f| FlowId::of(f) == FlowId::of(&entries[0]));
            if src_present && self.macs.len() < self.capacity {
                self.macs.insert((vlan, m.value), location);
                for spec in entries {
                    r.want(spec);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
