//! The VLAN and tunnel part of a switch's status: each port's VLANs and the
//! tunnel endpoint's VNIs from the switch's plan, with the drop counters of
//! the VLAN rules read from the switch.

use crate::l2::COOKIE_KIND_MASK;
use crate::plan::{SwitchPlan, TUNNEL_PORT};
use crate::topology::PortMode;
use crate::vlan_l2::COOKIE_VLAN_DROP;
use sdn_proto::management as mgmt;
use sdn_proto::southbound::{
    self as pb, controller_message::Body as ToSwitch, switch_message::Body as FromSwitch,
};
use sdn_vswitch::flow::{FlowStats, PortNo};
use sdn_vswitch::wire::vxlan::UDP_PORT;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use super::state::SessionHandle;

/// How long status waits for a switch's drop counters.
const COUNTERS_TIMEOUT: Duration = Duration::from_secs(1);

/// Frames dropped by the VLAN rules, per input port.
pub(super) type Drops = BTreeMap<PortNo, u64>;

/// Reads the counters of the VLAN drop entries of a switch; `None` if it does
/// not answer in time.
pub(super) async fn read_drops(handle: &SessionHandle) -> Option<Drops> {
    let request = ToSwitch::FlowStatsRequest(pb::FlowStatsRequest {
        cookie: COOKIE_VLAN_DROP,
        cookie_mask: COOKIE_KIND_MASK,
        ..Default::default()
    });
    let reply = tokio::time::timeout(COUNTERS_TIMEOUT, handle.request(request))
        .await
        .ok()?
        .ok()?;
    let Some(FromSwitch::FlowStatsReply(reply)) = reply.body else {
        return None;
    };
    let mut drops = Drops::new();
    for stats in reply
        .flows
        .iter()
        .filter_map(|f| FlowStats::try_from(f).ok())
    {
        if let Some(port) = stats.spec.matcher.in_port {
            *drops.entry(port).or_default() += stats.packets;
        }
    }
    Some(drops)
}

/// Each port's VLAN treatment (empty unless the switch is VLAN-aware).
pub(super) fn port_vlans(plan: &SwitchPlan, drops: Option<&Drops>) -> Vec<mgmt::PortVlans> {
    if !plan.vlan_aware {
        return Vec::new();
    }
    plan.ports
        .iter()
        .map(|port| {
            let (mode, untagged, tagged, pcp) = match &port.mode {
                PortMode::Plain => ("access", crate::plan::DEFAULT_VLAN, Vec::new(), 0),
                PortMode::Access { vlan, pcp } => ("access", *vlan, Vec::new(), *pcp),
                PortMode::Trunk { vlans, native } => {
                    ("trunk", native.unwrap_or(0), vlans.clone(), 0)
                }
            };
            mgmt::PortVlans {
                number: port.number,
                name: port.name.clone(),
                mode: mode.into(),
                untagged_vlan: u32::from(untagged),
                tagged_vlans: tagged.into_iter().map(u32::from).collect(),
                pcp: u32::from(pcp),
                dropped: drops.map(|d| d.get(&port.number).copied().unwrap_or(0)),
            }
        })
        .collect()
}

/// The tunnel endpoint, if the switch has one; `reported` is the local
/// address the switch announced for its tunnel port.
pub(super) fn vtep(
    plan: &SwitchPlan,
    reported: Option<Ipv4Addr>,
    drops: Option<&Drops>,
) -> Option<mgmt::Vtep> {
    let tunnel = plan.tunnel.as_ref()?;
    let vnis = tunnel
        .vni_of_vlan
        .iter()
        .map(|(&vlan, &vni)| mgmt::VniInfo {
            vni,
            vlan: u32::from(vlan),
            remotes: tunnel
                .vteps
                .get(&vni)
                .into_iter()
                .flatten()
                .map(Ipv4Addr::to_string)
                .collect(),
            remote_macs: tunnel.remote_macs.iter().filter(|m| m.vni == vni).count() as u32,
        })
        .collect();
    Some(mgmt::Vtep {
        address: tunnel.local.to_string(),
        reported: reported.map(|a| a.to_string()).unwrap_or_default(),
        udp_port: u32::from(UDP_PORT),
        vnis,
        dropped: drops.map(|d| d.get(&TUNNEL_PORT).copied().unwrap_or(0)),
    })
}

/// The local address a switch announced for its tunnel port.
pub(super) fn reported_vtep(ports: &[pb::Port]) -> Option<Ipv4Addr> {
    let port = ports.iter().find(|p| p.number == TUNNEL_PORT)?;
    let octets: [u8; 4] = port.tunnel_local[..].try_into().ok()?;
    Some(Ipv4Addr::from(octets))
}
