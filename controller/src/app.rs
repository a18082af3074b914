//! The L2 application a switch runs, chosen by what the topology asks of it:
//! the plain learning switch, or the VLAN-aware one for switches with access
//! or trunk ports or a tunnel endpoint.

use crate::l2::{DEFAULT_CAPACITY, L2Switch};
use crate::plan::plan;
use crate::reconcile::{FlowId, Reconciler};
use crate::topology::Topology;
use crate::vlan_l2::VlanSwitch;
use sdn_vswitch::flow::{FlowSpec, PortNo};
use sdn_vswitch::pipeline::TunnelMeta;
use std::time::Duration;

/// One switch's L2 application.
#[derive(Debug)]
pub enum App {
    /// A learning switch without VLANs.
    Plain(L2Switch),
    /// Access and trunk ports, VLANs mapped to VNIs.
    Vlan(VlanSwitch),
}

impl App {
    /// The application for switch `name` of `topology` (the plain one for a
    /// switch the topology does not know).
    pub fn for_switch(topology: &Topology, name: &str, aging: Duration) -> App {
        match plan(topology, name) {
            Some(plan) if plan.vlan_aware => {
                App::Vlan(VlanSwitch::new(plan, aging, DEFAULT_CAPACITY))
            }
            Some(plan) if topology.has_uplink(name) => {
                // Floods stay off the uplink: the edge carries routed traffic only.
                let ports = plan.ports.iter().map(|p| p.number).collect();
                App::Plain(L2Switch::new(aging, DEFAULT_CAPACITY).flooding_to(ports))
            }
            _ => App::Plain(L2Switch::new(aging, DEFAULT_CAPACITY)),
        }
    }

    /// MACs learned.
    pub fn learned(&self) -> usize {
        match self {
            App::Plain(a) => a.learned(),
            App::Vlan(a) => a.learned(),
        }
    }

    /// Wants the fixed entries.
    pub fn want_base(&self, r: &mut Reconciler) -> Vec<FlowId> {
        match self {
            App::Plain(a) => a.want_base(r),
            App::Vlan(a) => a.want_base(r),
        }
    }

    /// Takes over what the switch learned before.
    pub fn adopt(&mut self, installed: &[FlowSpec], r: &mut Reconciler) {
        match self {
            App::Plain(a) => a.adopt(installed, r),
            App::Vlan(a) => a.adopt(installed, r),
        }
    }

    /// Learns from a packet-in; returns the ids whose desired state changed.
    pub fn on_packet_in(
        &mut self,
        in_port: PortNo,
        frame: &[u8],
        tunnel: Option<TunnelMeta>,
        r: &mut Reconciler,
    ) -> Vec<FlowId> {
        match self {
            App::Plain(a) => a.on_packet_in(in_port, frame, r),
            App::Vlan(a) => a.on_packet_in(in_port, frame, tunnel, r),
        }
    }

    /// Handles an entry the switch removed (`removed` as installed).
    pub fn on_flow_removed(&mut self, removed: &FlowSpec, r: &mut Reconciler) -> Vec<FlowId> {
        match self {
            App::Plain(a) => a.on_flow_removed(removed, r),
            App::Vlan(a) => a.on_flow_removed(removed, r),
        }
    }
}
