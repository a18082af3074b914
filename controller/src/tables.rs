//! The pipeline every switch runs: which table holds which stage, in the
//! order a frame meets them, and the skeleton of default entries that lets a
//! frame walk past the stages nothing claims. Applications own their stages'
//! entries and override a default by a higher priority.
//!
//! ```text
//!  0 CLASSIFY    where a frame comes from: host ports get their subnet in the
//!                metadata; the internet uplink is sorted by edge address
//!  1 INGRESS     VLAN tags pushed and checked (VLAN-aware switches)
//!  2 LEARN       source MAC learning
//!  3 OUT_CT  4 OUT_NIC  5 OUT_SUBNET    outbound security rules (stateful)
//!  6 ROUTE       gateway ARP and ping, routes per source subnet, edge arrivals
//!  7 EDGE_CT     what may come in through a NAT gateway after conntrack
//!  8 NEIGHBOR    routed packets to their host; the way to the internet
//!  9 NAT_OUT     source-NATed packets out of the uplink
//! 10 IN_CT  11 IN_SUBNET  12 IN_NIC     inbound security rules (stateful)
//! 13 FORWARD     destination MAC to port, or flood
//! ```

use sdn_vswitch::flow::{Action, FlowSpec, Match};

/// Where a frame comes from.
pub const CLASSIFY: u8 = 0;
/// VLAN ingress rules.
pub const INGRESS: u8 = 1;
/// Source MAC learning.
pub const LEARN: u8 = 2;
/// Conntrack for frames from filtered ports.
pub const OUT_CT: u8 = 3;
/// Outbound rules of the interface's own layer (NSG or ACGs).
pub const OUT_NIC: u8 = 4;
/// Outbound rules of its subnet's NSG.
pub const OUT_SUBNET: u8 = 5;
/// Gateway responders and routes.
pub const ROUTE: u8 = 6;
/// Admission after un-NAT of traffic to a NAT gateway.
pub const EDGE_CT: u8 = 7;
/// Routed packets to their host; internet egress.
pub const NEIGHBOR: u8 = 8;
/// Source-NATed packets to the uplink.
pub const NAT_OUT: u8 = 9;
/// Conntrack for frames to filtered interfaces.
pub const IN_CT: u8 = 10;
/// Inbound rules of the subnet's NSG.
pub const IN_SUBNET: u8 = 11;
/// Inbound rules of the interface's own layer.
pub const IN_NIC: u8 = 12;
/// Destination MAC to port.
pub const FORWARD: u8 = 13;

// Every stage is a table the switches have.
const _: () = assert!(FORWARD < sdn_vswitch::pipeline::N_TABLES);

/// Cookie of the skeleton's entries.
pub const COOKIE_SKELETON: u64 = 0x5d00 << 48 | (1 << 40);

/// The default entries (priority 0) that pass a frame on from each stage to
/// the next one that every frame visits.
pub fn skeleton() -> Vec<FlowSpec> {
    [
        (CLASSIFY, INGRESS),
        (INGRESS, LEARN),
        (LEARN, OUT_CT),
        (OUT_CT, ROUTE),
        (ROUTE, IN_CT),
        (IN_CT, FORWARD),
    ]
    .into_iter()
    .map(|(table, next)| {
        FlowSpec::new(table, 0, Match::default(), vec![Action::GotoTable(next)])
            .with_cookie(COOKIE_SKELETON)
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_in_order_and_the_skeleton_moves_forward() {
        let order = [
            CLASSIFY, INGRESS, LEARN, OUT_CT, OUT_NIC, OUT_SUBNET, ROUTE, EDGE_CT, NEIGHBOR,
            NAT_OUT, IN_CT, IN_SUBNET, IN_NIC, FORWARD,
        ];
        assert!(order.windows(2).all(|w| w[0] < w[1]));
        for spec in skeleton() {
            assert!(
                matches!(spec.actions[..], [Action::GotoTable(next)] if next > spec.table),
                "{spec:?}"
            );
        }
    }
}
